"""The naive baseline: the same decision service wired the way a first attempt does it.

Per request: Feast SDK ``get_online_features`` for the identifier and for the ``nba_v1``
feature service (with its on-demand view), the features as a one-row pandas frame, MLflow
pyfunc ``predict`` on a pandas frame once per candidate action, the rules applied row by
row in pandas, and the decision appended to a JSON-lines log with ``fsync``. Same data,
catalog, policy and champion as the product service; it exists only to be measured
against it (``benchmarks/http_bench.py``).

Start: ``NEXTBEST_HOME=... bentoml serve benchmarks.naive_service:NaiveNextBest``.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from datetime import UTC, datetime
from typing import Any

import bentoml
import pandas as pd
from pydantic import BaseModel, Field

from nextbest.core.settings import get_settings


class Customer(BaseModel):
    """How the caller identifies the customer."""

    id: str = Field(min_length=1, max_length=256)
    id_type: str = "customer_id"


_OPS = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "in": lambda a, b: a in b,
    "not_in": lambda a, b: a not in b,
}


@bentoml.service(
    name="nextbest-naive", logging={"access": {"enabled": False}}, traffic={"timeout": 30}
)
class NaiveNextBest:
    """Feast SDK + MLflow pyfunc + pandas rules, per request."""

    def __init__(self) -> None:
        import mlflow

        from nextbest.customers.feast_store import feature_store
        from nextbest.decisions.runtime import load_catalog_and_policy, load_stock
        from nextbest.models.registry import configure_mlflow

        self.settings = get_settings()
        self.store = feature_store(self.settings)
        self.catalog, self.policy = load_catalog_and_policy(self.settings)
        self.stock = load_stock(self.settings.stock_path)
        configure_mlflow(self.settings)
        self.pyfunc = mlflow.pyfunc.load_model(f"models:/{self.settings.model_name}@champion")
        self.feature_names = self.pyfunc.unwrap_python_model().unwrap().feature_names
        self.log_dir = self.settings.decision_log_dir / "naive"
        self.log_dir.mkdir(parents=True, exist_ok=True)

    def _features(self, customer: Customer) -> tuple[str | None, pd.DataFrame]:
        from nextbest.customers.normalise import identifier_key

        key = identifier_key(customer.id_type, customer.id, self.settings.identifier_salt)
        got = self.store.get_online_features(
            features=["identity_lookup:customer_id"], entity_rows=[{"identifier": key}]
        ).to_dict()
        cid = got["customer_id"][0]
        if not cid:
            return None, pd.DataFrame()
        fs = self.store.get_feature_service("nba_v1")
        row = self.store.get_online_features(
            features=fs,
            entity_rows=[{"customer_id": cid, "request_ts": datetime.now(UTC).timestamp()}],
        ).to_df()
        return cid, row

    def _excluded(self, action: Any, row: pd.Series, channel: str) -> str | None:
        pol = self.policy
        v = lambda name: row.get(name)  # noqa: E731
        if not (v(f"consent_{action.purpose}_{channel}") == 1):
            return "no_consent"
        for p in action.eligibility:
            x = v(p.feature)
            if x is None or pd.isna(x) or not _OPS[p.op](x, p.value):
                return "not_eligible"
        for cap in pol.caps:
            name = (
                f"contacts_total_{cap.period_days}d"
                if cap.channel == "all"
                else f"contacts_{cap.channel}_{cap.period_days}d"
            )
            if cap.channel in ("all", channel) and name in row and row[name] >= cap.max_contacts:
                return "contact_cap"
        if pol.case_pause.enabled and action.purpose in pol.case_pause.purposes:
            if (v(pol.case_pause.feature) or 0) > 0:
                return "case_open"
        if pol.complaint_block.enabled and action.kind in pol.complaint_block.kinds:
            if (v(pol.complaint_block.feature) or 9999) < pol.complaint_block.days:
                return "recent_complaint"
        if pol.suppression.never_offer_held and action.product:
            if v(f"holds_{action.product}") == 1:
                return "already_held"
        if pol.suppression.respect_stock and action.needs_stock:
            if self.stock.get(action.product, 0) <= 0:
                return "out_of_stock"
        if pol.suppression.cooldown and action.cooldown_days:
            if (v(f"days_since_shown_{action.arm}") or 9999) < action.cooldown_days:
                return "cooldown"
        return None

    @bentoml.api(route="/decide")
    def decide(
        self,
        customer: Customer,
        channel: str,
        k: int = 3,
        context: dict[str, Any] = Field(default_factory=dict),
    ) -> dict[str, Any]:
        """The first-attempt decision: SDK features, pyfunc per action, pandas rules."""
        cid, frame = self._features(customer)
        ranked: list[dict[str, Any]] = []
        excluded: list[dict[str, Any]] = []
        group = "unknown"
        if cid is not None:
            h = hashlib.sha256(f"{self.policy.holdout.salt}:{cid}".encode()).digest()
            group = (
                "holdout"
                if int.from_bytes(h[:8], "big") / 2**64 < self.policy.holdout.share
                else "decided"
            )
            row = frame.iloc[0]
            X = frame.reindex(columns=self.feature_names).astype(float)
            for action in self.catalog.actions:
                if channel not in action.channels:
                    continue
                reason = self._excluded(action, row, channel)
                if reason:
                    excluded.append({"action_id": action.id, "reason": reason})
                    continue
                out = self.pyfunc.predict(X)  # one pandas round trip per action
                p1 = float(out[f"p_{action.arm}"].iloc[0])
                p0 = float(out["p_no_action"].iloc[0])
                value = float(out[f"value_{action.arm}"].iloc[0]) or action.value
                score = ((p1 - p0) * value - action.cost) * action.lever
                ranked.append({"action_id": action.id, "score": score, "uplift": p1 - p0})
            ranked = sorted((r for r in ranked if r["score"] > 0), key=lambda r: -r["score"])[:k]
        chosen = ranked[0]["action_id"] if ranked and group == "decided" else None
        record = {
            "decision_id": str(uuid.uuid4()),
            "decided_at": datetime.now(UTC).isoformat(),
            "customer_id": cid,
            "channel": channel,
            "group": group,
            "chosen_action": chosen,
            "ranked": ranked,
            "excluded": excluded,
        }
        path = self.log_dir / f"decisions-{datetime.now(UTC).date().isoformat()}.jsonl"
        with open(path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return record

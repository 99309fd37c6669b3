"""What one ``decide`` call is given besides features, and what it returns.

:class:`DecisionContext` holds the channel, time, placement, stock and request of a call;
:class:`Decisions` holds its arrays and renders them as decision-log records (with reason
sentences), as columns for batch, or as an Arrow table.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from nextbest.decisions.reasons import Reason, row_sentence, sentence
from nextbest.decisions.rules import Plan

#: Column index of "no action" in ``Plan.action_ids_with_control`` (its last entry).
NO_ACTION = -1


@dataclass(frozen=True)
class DecisionContext:
    """Everything about one decision call that is not a customer feature."""

    channel: str
    now: datetime
    k: int = 3
    placement: str | None = None
    #: product id -> units in stock, or an array aligned with ``Plan.stock_products``.
    stock: Mapping[str, float] | np.ndarray | None = None
    feature_snapshot_time: datetime | None = None
    request: Mapping[str, Any] = field(default_factory=dict)
    #: Seed of the exploration draw; None: the policy's time bucket of ``now``.
    decision_seed: str | None = None
    #: [n] bool: rows whose customer is inside the channel's quiet hours (policy
    #: ``send_windows``); every action no rule excluded is excluded with QUIET_HOURS.
    quiet: np.ndarray | None = None


@dataclass
class Decisions:
    """Arrays of one ``decide`` call; ``records`` and ``to_columns`` render them."""

    plan: Plan
    context: DecisionContext
    customer_ids: np.ndarray  # [n] object
    features: np.ndarray  # [n, F] (a reference, kept for reason sentences)
    codes: np.ndarray  # [n, C] int8 Reason per action (0 = eligible and ranked)
    failed_check: np.ndarray  # [n, C] index into the channel plan's checks, -1
    p_control: np.ndarray  # [n]
    p_treated: np.ndarray  # [n, C]
    value: np.ndarray  # [n, C]
    score: np.ndarray  # [n, C] expected incremental value
    ranked: np.ndarray  # [n, k] catalog column, -1 past the last ranked action
    greedy: np.ndarray  # [n] best ranked action (-1 = no action)
    chosen: np.ndarray  # [n] logged action (-1 = no action)
    propensity: np.ndarray  # [n]
    holdout: np.ndarray  # [n] bool
    explored: np.ndarray  # [n] bool
    explore_options: np.ndarray  # [n, C] bool actions the exploration could pick
    epsilon: np.ndarray  # [n] exploration probability actually applied
    row_reason: np.ndarray  # [n] Reason explaining the chosen action
    control_value: np.ndarray | None = None  # [n] value of a response without action (NaN)

    @property
    def n(self) -> int:
        """Number of customers."""
        return len(self.customer_ids)

    @property
    def chosen_action(self) -> np.ndarray:
        """Chosen action ids ([n] object, ``no_action`` for none)."""
        return self.plan.action_ids_with_control[self.chosen]

    @property
    def uplift(self) -> np.ndarray:
        """p_treated - p_control, [n, C]."""
        return self.p_treated - self.p_control[:, None]

    def action_probabilities(self) -> np.ndarray:
        """Probability of each action (columns: catalog order, then no_action) per row."""
        n_opt = self.explore_options.sum(axis=1) + 1
        probs = np.zeros((self.n, len(self.plan.action_ids) + 1))
        probs[:, :-1] = self.explore_options * (self.epsilon / n_opt)[:, None]
        probs[:, -1] = self.epsilon / n_opt
        target = np.where(self.holdout, NO_ACTION, self.greedy)
        probs[np.arange(self.n), target] += 1.0 - self.epsilon
        return probs

    def records(
        self,
        decision_ids: Sequence[str] | None = None,
        deterministic_ids: bool = False,
        include_off_channel: bool = False,
    ) -> list[dict[str, Any]]:
        """One decision-log record per customer (see module docs for the fields)."""
        from nextbest.decisions.decision_log import check_customer_id

        plan, ctx = self.plan, self.context
        cplan = plan.channels[ctx.channel]
        now = ctx.now if ctx.now.tzinfo else ctx.now.replace(tzinfo=UTC)
        decided_at = now.isoformat()
        snap = ctx.feature_snapshot_time.isoformat() if ctx.feature_snapshot_time else None
        ids = plan.action_ids.tolist()
        with_control = plan.action_ids_with_control.tolist()
        cost_a = np.zeros(len(ids))
        lever_a = np.ones(len(ids))
        cost_a[cplan.action_idx] = cplan.cost
        lever_a[cplan.action_idx] = cplan.lever
        cost, lever = cost_a.tolist(), lever_a.tolist()
        # Python floats and ints once per call: indexing numpy arrays element by element
        # costs ~100 ns a value, and a record reads ~60 of them (the same numbers: tolist
        # gives the float64 values themselves, and float arithmetic is IEEE double either way).
        score, p_treated, value = self.score.tolist(), self.p_treated.tolist(), self.value.tolist()
        p_control = self.p_control.tolist()
        control_value = None if self.control_value is None else self.control_value.tolist()
        ranked_all, codes_all = self.ranked.tolist(), self.codes.tolist()
        chosen_all, row_reason_all = self.chosen.tolist(), self.row_reason.tolist()
        holdout_all, explored_all = self.holdout.tolist(), self.explored.tolist()
        propensity_all = self.propensity.tolist()
        model_version = plan.model_version
        out = []
        for i in range(self.n):
            cid = self.customer_ids[i]
            cid = None if cid is None or cid == "" else str(cid)
            if cid is not None:
                check_customer_id(cid)
            if decision_ids is not None:
                did = str(decision_ids[i])
            elif deterministic_ids:
                did = str(uuid.uuid5(uuid.NAMESPACE_URL, f"nextbest:{cid}:{decided_at}"))
            else:
                did = str(uuid.uuid4())
            score_i, pt_i, value_i, pc = score[i], p_treated[i], value[i], p_control[i]
            cv = None if control_value is None else control_value[i]
            cv = None if cv is None or cv != cv else cv  # NaN: no control value
            ranked = []
            for r, c in enumerate(ranked_all[i]):
                if c < 0:
                    break
                ranked.append(
                    {
                        "action_id": ids[c],
                        "rank": r + 1,
                        "score": score_i[c],
                        "p_treated": pt_i[c],
                        "p_control": pc,
                        "uplift": pt_i[c] - pc,
                        "value": value_i[c],
                        "control_value": cv,
                        "cost": cost[c],
                        "lever": lever[c],
                    }
                )
            excluded = []
            feats: list[float] = []
            failed: list[int] = []
            for c, code in enumerate(codes_all[i]):
                if not code or (code == _NOT_ON_CHANNEL and not include_off_channel):
                    continue
                if not failed:
                    feats, failed = self.features[i].tolist(), self.failed_check[i].tolist()
                excluded.append(
                    {
                        "action_id": ids[c],
                        "reason": _REASON_NAME[code],
                        "sentence": self._sentence(i, c, code, failed[c], feats),
                    }
                )
            chosen = chosen_all[i]
            fields: dict[str, Any] = {}
            if chosen >= 0:
                fields = {
                    "action": plan.catalog.actions[chosen].name,
                    "score": score_i[chosen],
                }
            row_reason = row_reason_all[i]
            out.append(
                {
                    "decision_id": did,
                    "decided_at": decided_at,
                    "customer_id": cid,
                    "channel": ctx.channel,
                    "placement": ctx.placement,
                    "group": "holdout" if holdout_all[i] else "treatment",
                    "chosen_action": with_control[chosen],
                    "propensity": propensity_all[i],
                    "explored": explored_all[i],
                    "reason": _REASON_NAME[row_reason],
                    "reason_text": row_sentence(row_reason, fields, plan.channel_phrases),
                    "ranked": ranked,
                    "excluded": excluded,
                    "model_version": model_version,
                    "policy_version": plan.policy.version,
                    "catalog_version": plan.catalog.version,
                    "feature_snapshot_time": snap,
                    "context": dict(ctx.request),
                }
            )
        return out

    def _sentence(self, i: int, c: int, code: int, j: int, feats: list[float]) -> str:
        """Exclusion sentence of action ``c`` for row ``i``; ``j`` its failed check,
        ``feats`` the row's features as Python floats."""
        observed: float | None = None
        if j >= 0:
            col = self.plan.channels[self.context.channel].check_cols[j]
            if col >= 0:
                observed = feats[col]
        if code == Reason.NEGATIVE_VALUE:  # carries the score: too many distinct values
            return self._render_sentence(i, c, code, j, observed)
        cache = self.plan.sentence_cache
        key = (
            self.context.channel,
            self.context.placement,
            c,
            code,
            j,
            # the exact bits: NaN (!= itself) and -0.0 (== 0.0, printed "-0") keep their own keys
            None if observed is None else observed.hex(),
        )
        text = cache.get(key)
        if text is None:
            text = self._render_sentence(i, c, code, j, observed)
            if len(cache) < _SENTENCE_CACHE_LIMIT:
                cache[key] = text
        return text

    def _render_sentence(self, i: int, c: int, code: int, j: int, observed: float | None) -> str:
        action = self.plan.catalog.actions[c]
        fields: dict[str, Any] = {
            "action": action.name,
            "channel": self.context.channel,
            "placement": self.context.placement,
            "purpose": action.purpose,
            "product": action.product or action.category,
        }
        if j >= 0:
            fields.update(self.plan.channels[self.context.channel].checks[j].fields)
            if observed is not None:
                fields["observed"] = observed
        if code in (Reason.NEGATIVE_VALUE,):
            fields["score"] = float(self.score[i, c])
        return sentence(code, fields, self.plan.channel_phrases)

    def to_columns(self) -> dict[str, np.ndarray]:
        """Columnar form for batch: one entry per customer, top-k flattened into columns."""
        ids = self.plan.action_ids_with_control
        cols: dict[str, np.ndarray] = {
            "customer_id": self.customer_ids,
            "group": np.where(self.holdout, "holdout", "treatment").astype(object),
            "chosen_action": ids[self.chosen],
            "propensity": self.propensity,
            "explored": self.explored,
            "reason": _REASON_NAMES[self.row_reason],
        }
        rows = np.arange(self.n)
        for r in range(self.ranked.shape[1]):
            c = self.ranked[:, r]
            ok = c >= 0
            cols[f"rank_{r + 1}_action"] = np.where(ok, ids[c], None).astype(object)
            cols[f"rank_{r + 1}_score"] = np.where(ok, self.score[rows, c], np.nan)
        return cols

    def to_arrow(self) -> Any:
        """The columnar form as a pyarrow Table, with versions and times as metadata."""
        import pyarrow as pa

        cols = self.to_columns()
        table = pa.table({k: pa.array(v) for k, v in cols.items()})
        meta = {
            "channel": self.context.channel,
            "decided_at": self.context.now.isoformat(),
            "model_version": self.plan.model_version,
            "policy_version": self.plan.policy.version,
            "catalog_version": self.plan.catalog.version,
            "feature_snapshot_time": (
                self.context.feature_snapshot_time.isoformat()
                if self.context.feature_snapshot_time
                else ""
            ),
        }
        return table.replace_schema_metadata(meta)


_REASON_NAMES = np.array([r.name for r in Reason], dtype=object)
#: Reason code -> name, without the enum call per excluded action of every record.
_REASON_NAME = {int(r): r.name for r in Reason}
_NOT_ON_CHANNEL = int(Reason.NOT_ON_CHANNEL)
_SENTENCE_CACHE_LIMIT = 100_000

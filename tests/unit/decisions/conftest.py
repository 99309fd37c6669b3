"""Shared fixtures for the serving tests: the default config, a feature layout and a
small deterministic response model (the real one is trained in ``training``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from nextbest.decisions.catalog import Catalog, load_catalog
from nextbest.decisions.engine import DecisionContext
from nextbest.decisions.policy import Policy, load_policy
from nextbest.decisions.rules import Plan, compile_plan
from tests.conftest import demo_terms

ROOT = Path(__file__).resolve().parents[3]
PRODUCTS = ("phone_premium", "bb_fibre", "acc_earbuds", "ins_device", "loan_personal")
CATEGORIES = ("phones", "accessories", "broadband", "insurance", "loans")
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


class ViewsModel:
    """Test fixture model: uplift grows with ``views_30d_phones``, per-arm base rates.

    p_control = 0.02; p_treated[a] = 0.02 + (0.05 + 0.02 a) * views / 5; value 0 (so the
    catalog value applies) except for the arm named in ``value_arm``.
    """

    def __init__(self, arm_ids: list[str], value_arm: str | None = None) -> None:
        self.arm_ids = list(arm_ids)
        self.feature_names = ["tenure_days", "value_tier", "age", "views_30d_phones"]
        self.version = "fixture-1"
        self.value_arm = value_arm
        self.seen: list[np.ndarray] = []

    def predict_arms(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.seen.append(X.copy())
        n, a = X.shape[0], len(self.arm_ids)
        base = 0.05 + 0.02 * np.arange(a)
        p_c = np.full(n, 0.02)
        p_t = p_c[:, None] + base[None, :] * (X[:, 3:4] / 5.0)
        value = np.zeros((n, a))
        if self.value_arm is not None:
            value[:, self.arm_ids.index(self.value_arm)] = 1000.0
        return p_c, p_t, value


def feature_names(action_ids: list[str]) -> list[str]:
    terms = demo_terms()
    names = [f"consent_{p}_{c}" for p in terms.purposes for c in terms.channels]
    names += [f"contacts_{c}_{w}d" for c in terms.channels for w in (7, 30)]
    names += ["contacts_total_7d"]
    names += [f"days_since_shown_{a}" for a in action_ids]
    names += ["open_cases", "complaints_90d", "days_since_complaint"]
    names += [f"holds_{p}" for p in PRODUCTS]
    names += ["tenure_days", "value_tier", "age"] + [f"views_30d_{c}" for c in CATEGORIES]
    names += [n for b in terms.behaviour for n in b.feature_names()]
    return names


def default_row(names: list[str]) -> dict[str, float]:
    """A customer every rule allows: consents given, no contacts, nothing held."""
    row = dict.fromkeys(names, 0.0)
    for n in names:
        if n.startswith("consent_"):
            row[n] = 1.0
        if n.startswith("days_since"):
            row[n] = 9999.0
    row.update(tenure_days=1000.0, value_tier=2.0, age=40.0, views_30d_phones=5.0)
    return row


def matrix(names: list[str], rows: list[dict[str, float]]) -> np.ndarray:
    return np.array([[r[n] for n in names] for r in rows], dtype=np.float64)


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog(ROOT / "config" / "catalog.yaml")


@pytest.fixture(scope="session")
def policy(catalog: Catalog) -> Policy:
    return load_policy(ROOT / "config" / "policy.yaml", catalog.terms())


@pytest.fixture(scope="session")
def names(catalog: Catalog) -> list[str]:
    return feature_names(catalog.ids)


@pytest.fixture()
def plan(catalog: Catalog, policy: Policy, names: list[str]) -> Plan:
    return compile_plan(catalog, policy, names, ViewsModel(catalog.ids))


def ctx(channel: str = "email", **kw: object) -> DecisionContext:
    kw.setdefault("stock", {"phone_premium": 10})
    kw.setdefault("now", NOW)
    return DecisionContext(channel=channel, **kw)  # type: ignore[arg-type]

"""Consent recorded once for all channels (the catalog's ``consent_scope``): the feature
build gives every channel's column the latest record on any channel; per channel stays
the default."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from nextbest.customers.feature_schema import CatalogTerms
from nextbest.customers.features import _consent_view

T = pd.Timestamp(datetime(2026, 6, 1, tzinfo=UTC))
CHANNELS = ("email", "sms", "branch", "web")


def terms(*scoped: str) -> CatalogTerms:
    return CatalogTerms(
        products=(),
        categories=(),
        action_ids=(),
        channels=CHANNELS,
        purposes=("marketing", "profiling"),
        all_channel_purposes=scoped,
    )


def consent_log() -> pd.DataFrame:
    day = timedelta(days=1)
    rows = [
        # 0: profiling captured in a branch; marketing by e-mail only
        (0, "profiling", "branch", True, T - 30 * day),
        (0, "marketing", "email", True, T - 30 * day),
        # 1: captured in a branch, withdrawn later in online banking
        (1, "profiling", "branch", True, T - 30 * day),
        (1, "profiling", "web", False, T - 3 * day),
        # 2: withdrawn online first, given again in a branch later
        (2, "profiling", "web", False, T - 30 * day),
        (2, "profiling", "branch", True, T - 3 * day),
        # 3: captured by SMS after the snapshot time: not in this snapshot
        (3, "profiling", "sms", True, T + day),
    ]
    return pd.DataFrame(rows, columns=["customer_id", "purpose", "channel", "granted", "ts"])


def view(t: CatalogTerms) -> pd.DataFrame:
    ids = pd.Index([f"K{i}" for i in range(4)], name="customer_id")
    cust = pd.RangeIndex(4, name="customer_id")
    return _consent_view(consent_log(), cust, ids, T, t).set_index("customer_id")


def cols(purpose: str) -> list[str]:
    return [f"consent_{purpose}_{c}" for c in CHANNELS]


def test_all_channels_the_latest_record_on_any_channel_holds_everywhere():
    v = view(terms("profiling"))
    assert v.loc["K0", cols("profiling")].tolist() == [1, 1, 1, 1]
    assert v.loc["K1", cols("profiling")].tolist() == [0, 0, 0, 0]  # withdrawn anywhere
    assert v.loc["K2", cols("profiling")].tolist() == [1, 1, 1, 1]
    assert v.loc["K3", cols("profiling")].tolist() == [0, 0, 0, 0]  # deny by default
    # marketing stays per channel
    assert v.loc["K0", cols("marketing")].tolist() == [1, 0, 0, 0]


def test_per_channel_is_the_default_and_unchanged():
    v = view(terms())
    assert v.loc["K0", cols("profiling")].tolist() == [0, 0, 1, 0]
    assert v.loc["K1", cols("profiling")].tolist() == [0, 0, 1, 0]
    assert v.loc["K2", cols("profiling")].tolist() == [0, 0, 1, 0]
    pd.testing.assert_series_equal(
        v["customer_consent_as_of_ts"], view(terms("profiling"))["customer_consent_as_of_ts"]
    )


def test_the_terms_name_the_columns_one_record_sets():
    t = terms("profiling")
    assert t.consent_columns("profiling", "branch") == tuple(cols("profiling"))
    assert t.consent_columns("marketing", "sms") == ("consent_marketing_sms",)
    with pytest.raises(ValueError, match="not among the purposes"):
        CatalogTerms((), (), (), CHANNELS, ("marketing",), all_channel_purposes=("profiling",))

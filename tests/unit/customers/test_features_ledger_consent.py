"""The feature build reads consent from the export and from records beside it (the event
ledger's) by event time: the newest record per customer, purpose and channel wins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from nextbest.customers.features import _view_rows
from nextbest.customers.identity_io import resolve_generated
from nextbest.customers.sources.coded_exports import (
    load_coded_sources,
    with_extra_consent,
)
from nextbest.demo.generate import generate
from tests.conftest import demo_terms
from tests.params import SEED

AS_OF = datetime(2025, 10, 1, tzinfo=UTC)
T = pd.Timestamp(AS_OF)


@pytest.fixture(scope="module")
def coded(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("ledger_consent")
    raw, unified = home / "raw", home / "unified"
    generate(400, SEED, raw, as_of=AS_OF)
    resolve_generated(raw, unified)
    return load_coded_sources(raw, unified, terms=demo_terms(), salt="test-salt")


def _consent(src, ids) -> pd.DataFrame:
    rows = _view_rows(src, ids, T, demo_terms())["customer_consent"]
    return rows.set_index("customer_id")


def test_ledger_consent_joins_the_export_by_event_time(coded) -> None:
    src, ids = coded
    before = _consent(src, ids)
    granted = before.index[before["consent_marketing_email"] == 1]
    assert len(granted) >= 2
    withdrawn, regranted = granted[0], granted[1]
    # the export's newest record for the second customer's cell
    last = src.consent.loc[
        (src.consent["customer_id"] == ids.get_loc(regranted))
        & (src.consent["purpose"] == "marketing")
        & (src.consent["channel"] == "email")
        & (src.consent["ts"] < T),
        "ts",
    ].max()
    extra = pd.DataFrame(
        {
            "customer_id": [withdrawn, regranted, "nobody-we-know"],
            "purpose": ["marketing"] * 3,
            "channel": ["email"] * 3,
            "granted": [False, False, False],
            # after everything the export holds / before the export's newest / unknown
            "ts": [T - timedelta(seconds=1), last - timedelta(days=1), T - timedelta(days=1)],
        }
    )
    after = _consent(with_extra_consent(src, ids, extra), ids)
    assert after.loc[withdrawn, "consent_marketing_email"] == 0
    assert (
        after.loc[withdrawn, "customer_consent_as_of_ts"] == (T - timedelta(seconds=1)).timestamp()
    )
    assert after.loc[regranted, "consent_marketing_email"] == 1  # the export's is newer
    unchanged = before.drop(index=[withdrawn])
    pd.testing.assert_frame_equal(after.drop(index=[withdrawn]), unchanged)
    # records dated at or after the snapshot time are not in it
    future = extra.iloc[:1].assign(ts=[T])
    pd.testing.assert_frame_equal(_consent(with_extra_consent(src, ids, future), ids), before)


def test_no_extra_consent_is_the_export_alone(coded) -> None:
    src, ids = coded
    assert with_extra_consent(src, ids, None) is src
    assert with_extra_consent(src, ids, pd.DataFrame()) is src

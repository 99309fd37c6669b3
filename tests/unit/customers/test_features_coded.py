"""The source loader and the feature tables built from it.

:func:`nextbest.customers.sources.coded_exports.load_coded_sources` maps native ids straight
to customer codes; a hand-made world pins what it returns. ``build_feature_tables`` writes each
snapshot's view rows, the same in this process and in forked snapshot workers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from nextbest.customers.feature_schema import CatalogTerms
from nextbest.customers.features import (
    SourceData,
    _fmax,
    _last_masked,
    _last_ts,
    _view_rows,
    build_feature_tables,
    snapshot_times,
    view_names,
)
from nextbest.customers.identity_io import resolve_generated
from nextbest.customers.normalise import identifier_keys
from nextbest.customers.sources.coded_exports import SECS, load_coded_sources
from nextbest.customers.sources.files import export_path
from nextbest.demo.generate import generate
from tests.conftest import demo_terms
from tests.params import SEED, SMALL_CUSTOMERS

AS_OF = datetime(2025, 10, 1, tzinfo=UTC)
SALT = "test-salt"


def _inputs() -> dict:
    return {"terms": demo_terms(), "salt": SALT}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    home = tmp_path_factory.mktemp("coded")
    raw, unified = home / "raw", home / "unified"
    generate(SMALL_CUSTOMERS, SEED, raw, as_of=AS_OF)
    resolve_generated(raw, unified)
    return raw, unified


def _ts(day: int) -> pd.Timestamp:
    return pd.Timestamp("2025-01-01", tz="UTC") + pd.Timedelta(days=day)


def _write(folder: Path, name: str, rows: dict[str, list]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(folder / f"{name}.parquet", index=False)


def _hand_made_world(raw: Path, unified: Path) -> None:
    """Customer CB (CRM K2, email lead E1) and CA (CRM K1, loyalty L1, app A1, web
    device D1 that logged in as A1), in that order in the identity output; events of
    unknown ids (K9, L9, A9, device D7 that never logged in, an unknown email)."""
    none2 = [None, None]
    _write(
        raw,
        "crm_accounts",
        {
            "crm_id": ["K1", "K2"],
            "email": ["ca@x.com", "cb@x.com"],
            "phone": none2,
            "first_name": ["Ann", "Bob"],
            "last_name": ["A", "B"],
            "date_of_birth": ["1980-05-01", "not a date"],
            "street": none2,
            "city": none2,
            "postcode": none2,
            "created_at": [_ts(10), _ts(20)],
        },
    )
    _write(
        raw,
        "email_leads",
        {
            "lead_id": ["E1"],
            "email": ["cb@x.com"],
            "phone": [None],
            "first_name": ["Bob"],
            "last_name": ["B"],
            "created_at": [_ts(5)],
        },
    )
    _write(
        raw,
        "loyalty_members",
        {
            "loyalty_id": ["L1", "L9"],
            "email": none2,
            "phone": none2,
            "first_name": none2,
            "last_name": none2,
            "postcode": none2,
            "joined_at": [_ts(8), _ts(1)],
        },
    )
    _write(
        raw,
        "app_accounts",
        {
            "app_account_id": ["A1"],
            "email": [None],
            "phone": [None],
            "first_name": [None],
            "created_at": [_ts(30)],
        },
    )
    _write(
        raw,
        "web_events",
        {
            "device_id": ["D1", "D7", "D1"],
            "app_account_id": ["A1", None, None],
            "ts": [_ts(40), _ts(0), _ts(3)],
            "event_type": ["view", "view", "configure"],
            "category": ["phones", "tv", "phones"],
            "config_id": [None, None, "cfg1"],
        },
    )
    _write(
        raw,
        "pos_baskets",
        {
            "loyalty_id": ["L1", "L9", "L1"],
            "ts": [_ts(50), _ts(51), _ts(52)],
            "category": ["phones", "tv", "audio"],
            "amount": [100.0, 5.0, 20.5],
        },
    )
    _write(
        raw,
        "app_events",
        {
            "app_account_id": ["A9", "A1"],
            "ts": [_ts(60), _ts(61)],
            "event_type": ["open", "view"],
            "category": [None, "phones"],
        },
    )
    _write(
        raw,
        "service_cases",
        {
            "crm_id": ["K9", "K2"],
            "opened_at": [_ts(70), _ts(71)],
            "closed_at": [None, _ts(75)],
            "complaint": [False, True],
        },
    )
    _write(raw, "holdings", {"crm_id": ["K1"], "product_id": ["phone_premium"], "since": [_ts(2)]})
    _write(
        raw,
        "consent",
        {
            "id_type": ["email", "crm_id", "email"],
            "id_value": ["CB@x.com", "K1", "nobody@x.com"],
            "purpose": ["marketing", "profiling", "marketing"],
            "channel": ["email", "sms", "email"],
            "granted": [True, False, True],
            "ts": [_ts(80), _ts(81), _ts(82)],
        },
    )
    _write(
        raw,
        "campaign_exposures",
        {
            "crm_id": ["K1", "K2", "K2"],
            "exposed_at": [_ts(90), _ts(91), _ts(92)],
            "action_id": ["email_phone_upgrade", "no_action", "call_retention_offer"],
        },
    )
    _write(
        unified,
        "identity",
        {
            "record_id": ["crm:K2", "crm:K1", "email_lead:E1", "loyalty:L1", "app:A1", "web:D1"],
            "customer_id": ["CB", "CA", "CB", "CA", "CA", "CA"],
        },
    )
    _write(unified, "households", {"customer_id": ["CA"], "household_id": ["H1"]})


def test_coded_sources_of_a_hand_made_world(tmp_path: Path) -> None:
    raw, unified = tmp_path / "raw", tmp_path / "unified"
    _hand_made_world(raw, unified)
    src, ids = load_coded_sources(raw, unified, **_inputs())
    assert list(ids) == ["CB", "CA"]  # codes in order of first appearance
    CB, CA = 0, 1

    c = src.customers.set_index("customer_id")
    assert list(c.index) == [CB, CA]
    # first seen: the lead (day 5) for CB; CA's earliest web event (day 3), before its
    # loyalty (8) and CRM (10) accounts; the unknown L9 (day 1) and D7 (day 0) count for no one
    assert list(c["first_seen"]) == [_ts(5), _ts(3)]
    assert c.loc[CA, "dob"] == pd.Timestamp("1980-05-01", tz="UTC")
    assert pd.isna(c.loc[CB, "dob"])  # does not parse
    assert list(c["n_source_records"]) == [2, 4]
    assert pd.isna(c.loc[CB, "household_id"]) and c.loc[CA, "household_id"] == "H1"

    b = src.baskets
    assert list(b["customer_id"]) == [CA, CA]
    assert list(b["category"]) == ["phones", "audio"]
    assert list(b["amount"]) == [100.0, 20.5]
    assert list(b["ts" + SECS]) == [_ts(50).timestamp(), _ts(52).timestamp()]

    a = src.activity  # web events first, then app events; anonymous rows dropped
    assert list(a["customer_id"]) == [CA, CA, CA]
    assert list(a["ts"]) == [_ts(40), _ts(3), _ts(61)]
    assert list(a["event_type"]) == ["view", "configure", "view"]
    assert list(a["config_id"]) == [None, "cfg1", None]

    k = src.cases
    assert list(k["customer_id"]) == [CB]
    assert list(k["complaint"]) == [True]
    assert list(k["closed_at"]) == [_ts(75)]

    h = src.holdings
    assert list(zip(h["customer_id"], h["product_id"], strict=True)) == [(CA, "phone_premium")]

    # consent reaches a customer through any identifier of its records (the email
    # normalised, the CRM id); the unknown email reaches no one
    cs = src.consent
    assert list(cs["customer_id"]) == [CB, CA]
    assert list(cs["purpose"]) == ["marketing", "profiling"]
    assert list(cs["granted"]) == [True, False]

    ct = src.contacts  # no_action rows are no contact
    assert list(ct["customer_id"]) == [CA, CB]
    assert list(ct["channel"]) == ["email", "call_center"]
    assert list(ct["action_id"]) == ["email_phone_upgrade", "call_retention_offer"]

    idents = dict(zip(src.identifiers["identifier"], src.identifiers["customer_id"], strict=True))
    want = {
        "customer_id:CB": "CB",
        "customer_id:CA": "CA",
        identifier_keys("email", pd.Series(["cb@x.com"]), SALT)[0]: "CB",
        identifier_keys("email", pd.Series(["ca@x.com"]), SALT)[0]: "CA",
        identifier_keys("crm_id", pd.Series(["K1"]), SALT)[0]: "CA",
        identifier_keys("crm_id", pd.Series(["K2"]), SALT)[0]: "CB",
        identifier_keys("loyalty_id", pd.Series(["L1"]), SALT)[0]: "CA",
        identifier_keys("app_account_id", pd.Series(["A1"]), SALT)[0]: "CA",
        identifier_keys("device_id", pd.Series(["D1"]), SALT)[0]: "CA",
    }
    assert idents == want


def test_the_exposures_export_under_its_retired_name_reads_as_today(tmp_path: Path) -> None:
    """A home generated before the rename holds ``raw/campaign_history.parquet``: it is
    read in place of ``campaign_exposures.parquet``, with the same result."""
    raw, unified = tmp_path / "raw", tmp_path / "unified"
    _hand_made_world(raw, unified)
    today, _ = load_coded_sources(raw, unified, **_inputs())
    assert export_path(raw, "campaign_exposures.parquet") == raw / "campaign_exposures.parquet"
    (raw / "campaign_exposures.parquet").rename(raw / "campaign_history.parquet")
    assert export_path(raw, "campaign_exposures.parquet") == raw / "campaign_history.parquet"
    old, _ = load_coded_sources(raw, unified, **_inputs())
    pd.testing.assert_frame_equal(old.contacts, today.contacts)
    assert len(today.contacts) == 2


def test_feature_tables_hold_each_snapshots_view_rows(
    world: tuple[Path, Path], tmp_path: Path
) -> None:
    """One row group per snapshot, each the view rows of that snapshot."""
    raw, unified = world
    out = tmp_path / "coded"
    paths = build_feature_tables(raw, unified, out, AS_OF, months=3, **_inputs())
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths.values())
    coded, ids = load_coded_sources(raw, unified, **_inputs())
    times = snapshot_times(AS_OF, 3)
    for name in view_names(demo_terms()):
        want = pd.concat(
            [_view_rows(coded, ids, t, demo_terms())[name] for t in times], ignore_index=True
        )
        want["event_timestamp"] = want["event_timestamp"].astype("datetime64[us, UTC]")
        got = pq.read_table(paths[name]).to_pandas()
        assert len(got) == len(ids) * len(times), name
        assert pq.ParquetFile(paths[name]).num_row_groups == len(times), name
        pd.testing.assert_frame_equal(got, want, check_exact=True, obj=name)


def _events(rng: np.random.Generator, n: int, customers: int) -> pd.DataFrame:
    ts = pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(
        rng.integers(0, 365 * 86_400, n), unit="s"
    )
    df = pd.DataFrame({"customer_id": rng.integers(0, customers, n).astype(np.int64), "ts": ts})
    df["ts" + SECS] = (df["ts"] - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return df


@pytest.mark.parametrize("n_a, n_b", [(5_000, 800), (0, 300), (300, 0), (0, 0)])
def test_masked_latest_times_equal_last_ts_of_the_concatenated_rows(n_a: int, n_b: int) -> None:
    rng = np.random.default_rng(SEED)
    a, b = _events(rng, n_a, 500), _events(rng, n_b, 700)
    if n_a:
        a.loc[a.index[::7], "ts" + SECS] = np.nan  # a NaT's epoch is NaN
    t = pd.Timestamp("2025-07-01", tz="UTC")
    mask = (a["ts"] < t).to_numpy()
    got_a = _last_masked(a, mask)
    pd.testing.assert_series_equal(got_a, _last_ts(a, t))
    both = ["customer_id", "ts", "ts" + SECS]
    want = _last_ts(pd.concat([a[both], b.loc[b["ts"] < t, both]]), t)
    got = _fmax(got_a, _last_ts(b, t))
    pd.testing.assert_series_equal(got, want)
    if n_a and n_b:
        assert np.isfinite(got).sum() > 400


def test_forked_and_serial_builds_write_identical_files(
    world: tuple[Path, Path], tmp_path: Path
) -> None:
    """Snapshot workers change who computes a snapshot, not a byte of any file."""
    raw, unified = world
    serial = build_feature_tables(
        raw, unified, tmp_path / "serial", AS_OF, months=4, workers=1, **_inputs()
    )
    forked = build_feature_tables(
        raw, unified, tmp_path / "forked", AS_OF, months=4, workers=2, **_inputs()
    )
    for name, path in serial.items():
        assert path.read_bytes() == forked[name].read_bytes(), name


def test_a_failing_snapshot_worker_fails_the_build_and_leaves_no_scratch(
    world: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nextbest.customers.features as features

    raw, unified = world
    real = features._view_rows

    def broken(
        src: SourceData, ids: pd.Index, t: pd.Timestamp, terms: CatalogTerms
    ) -> dict[str, pd.DataFrame]:
        if t.month == AS_OF.month:  # the last snapshot, built in a worker
            raise RuntimeError("snapshot failed")
        return real(src, ids, t, terms)

    monkeypatch.setattr(features, "_view_rows", broken)
    out = tmp_path / "broken"
    with pytest.raises(RuntimeError, match="snapshot failed"):
        build_feature_tables(raw, unified, out, AS_OF, months=3, workers=2, **_inputs())
    assert not (out / ".snapshots").exists()


def test_identifier_table_on_the_hard_cases() -> None:
    """Shared identifiers (dropped), one identifier named twice by the same customer
    (kept once), identifiers that do not normalise, unresolved records, missing values."""
    import pyarrow as pa

    from nextbest.customers.sources.coded_exports import _identifier_table_coded

    ids = pd.Index(["C1", "C2", "C3"], dtype=object)
    codes = np.array([0, 1, 0, -1, 2, 1, 2], dtype=np.int64)
    records = pa.table(
        {
            "email": ["a@x.com", "a@x.com", "b@x.com", "c@x.com", None, "B@X.com", "not-an-email"],
            "phone": [None, "+44 20 7946 0000", None, None, "+44 20 7946 0001", None, None],
            "crm_id": ["K1", None, "K1", "K9", "K3", "K2", None],
        }
    )
    got, got_codes = _identifier_table_coded(
        records, codes, ids, partial(identifier_keys, salt=SALT)
    )

    def key(id_type: str, value: str) -> str:
        return identifier_keys(id_type, pd.Series([value]), SALT)[0]

    # a@x.com is claimed by C1 and C2, b@x.com by C1 and (as B@X.com) by C2: no emails;
    # C1 names K1 twice (kept once); K9's record is unresolved
    want = pd.DataFrame(
        {
            "identifier": [
                "customer_id:C1",
                "customer_id:C2",
                "customer_id:C3",
                key("phone", "+44 20 7946 0000"),
                key("phone", "+44 20 7946 0001"),
                key("crm_id", "K1"),
                key("crm_id", "K3"),
                key("crm_id", "K2"),
            ],
            "customer_id": ["C1", "C2", "C3", "C2", "C3", "C1", "C3", "C2"],
        }
    )
    pd.testing.assert_frame_equal(got, want)
    assert list(ids[got_codes]) == list(want["customer_id"])

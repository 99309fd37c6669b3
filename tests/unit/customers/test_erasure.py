"""Erasure of one person from the table files and the online store, and the tombstone
that keeps them out of resolution and the feature build, on the hand-made world of
``test_features_coded`` (customer CA: CRM K1, loyalty L1, app A1, web device D1; CB: CRM
K2, email lead E1)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from nextbest.core.errors import InputError
from nextbest.core.settings import Settings, get_settings
from nextbest.customers.erasure import (
    OWN_ERASER,
    UnknownPersonError,
    erase_online,
    erase_tables,
    find_person,
    plan_tables,
    table_files,
)
from nextbest.customers.features import build_feature_tables
from nextbest.customers.identity import ResolutionSettings, resolve_records
from nextbest.customers.sources.identity_records import load_canonical_records
from nextbest.customers.tombstone import (
    add_to_tombstone,
    load_tombstone,
    tombstone_path,
    tombstoned_records,
)
from tests.conftest import demo_terms
from tests.integration.test_features import redis_server  # noqa: F401  (a fixture)
from tests.unit.customers.test_features_coded import _hand_made_world

AS_OF = datetime(2025, 10, 1, tzinfo=UTC)
SALT = "test-salt"
CA_RECORDS = {"crm:K1", "loyalty:L1", "app:A1", "web:D1"}


def _home(root: Path, **overrides: object) -> Settings:
    settings = get_settings(home=root, identifier_salt=SALT, as_of=AS_OF, **overrides)
    _hand_made_world(settings.raw_dir, settings.unified_dir)
    build_feature_tables(
        settings.raw_dir,
        settings.unified_dir,
        settings.features_dir,
        AS_OF,
        months=2,
        terms=demo_terms(),
        salt=SALT,
    )
    pd.DataFrame(
        {"record_id_a": ["crm:K1", "email_lead:E1"], "record_id_b": ["crm:K2", "crm:K2"]}
    ).to_csv(settings.unified_dir / "review_pairs.csv", index=False)
    truth = settings.raw_dir / "truth"
    truth.mkdir()
    pd.DataFrame(
        {"record_id": ["crm:K1", "crm:K2", "web:D1"], "person_id": ["P1", "P2", "P1"]}
    ).to_parquet(truth / "records.parquet")
    pd.DataFrame({"person_id": ["P1", "P2"], "age": [40, 50]}).to_parquet(truth / "persons.parquet")
    (truth / OWN_ERASER).write_text("its owner's eraser\n")  # as the generator marks it
    return settings


def _hashes(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*.*")}


def test_find_person_by_any_identifier(tmp_path: Path) -> None:
    settings = _home(tmp_path)
    person = find_person(settings, "email", "CA@x.com")
    assert person.customer_id == "CA" and person.record_ids == CA_RECORDS
    assert find_person(settings, "loyalty_id", "L1") == person
    assert find_person(settings, "customer_id", "CB").record_ids == {"crm:K2", "email_lead:E1"}
    with pytest.raises(UnknownPersonError, match="no customer has this email"):
        find_person(settings, "email", "nobody@x.com")
    with pytest.raises(InputError, match="identifier: .*email"):
        find_person(settings, "email", "not an email")


def test_erase_tables_removes_the_persons_rows_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nextbest.customers.erasure

    settings = _home(tmp_path)
    person = find_person(settings, "email", "ca@x.com")
    before = _hashes(tmp_path)
    reads: list[Path] = []
    read_once = nextbest.customers.erasure._read

    def counted(path: Path) -> pd.DataFrame:
        reads.append(path)
        return read_once(path)

    monkeypatch.setattr(nextbest.customers.erasure, "_read", counted)
    files = table_files(tmp_path)
    plan = plan_tables(files, person, SALT)
    assert _hashes(tmp_path) == before  # planning writes nothing
    assert sorted(reads) == files  # each file read once
    assert not any("truth" in p.parts for p in files)
    removed = erase_tables(plan)
    raw = settings.raw_dir

    def read(path: Path) -> pd.DataFrame:
        return pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)

    assert list(read(raw / "crm_accounts.parquet")["crm_id"]) == ["K2"]
    assert list(read(raw / "web_events.parquet")["device_id"]) == ["D7"]
    assert list(read(raw / "pos_baskets.parquet")["loyalty_id"]) == ["L9"]
    assert list(read(raw / "consent.parquet")["id_value"]) == ["CB@x.com", "nobody@x.com"]
    assert list(read(raw / "campaign_exposures.parquet")["crm_id"]) == ["K2", "K2"]
    assert list(read(settings.unified_dir / "review_pairs.csv")["record_id_a"]) == ["email_lead:E1"]
    assert set(read(settings.unified_dir / "identity.parquet")["customer_id"]) == {"CB"}
    lookup = read(settings.features_dir / "identity_lookup.parquet")
    assert set(lookup["customer_id"]) == {"CB"} and not lookup["identifier"].isin(person.keys).any()
    assert set(read(settings.features_dir / "customer_profile.parquet")["customer_id"]) == {"CB"}
    assert removed[str(raw / "web_events.parquet")] == 2
    # Columns and types are kept.
    assert read(raw / "crm_accounts.parquet").dtypes["created_at"] == "datetime64[ns, UTC]"


def test_the_tombstone_keeps_the_person_out_of_resolution_and_features(tmp_path: Path) -> None:
    settings = _home(tmp_path)
    person = find_person(settings, "email", "ca@x.com")
    path = tombstone_path(settings.privacy_dir)
    assert add_to_tombstone(path, person.tombstone(SALT)) == len(person.tombstone(SALT))
    assert add_to_tombstone(path, person.tombstone(SALT)) == 0
    text = path.read_text()
    assert "ca@x.com" not in text and "CA" not in text and "K1" not in text
    tombstone = load_tombstone(path)

    # The next export still holds the person: resolution drops their records ...
    records = load_canonical_records(settings.raw_dir)
    flagged = set(records.loc[tombstoned_records(records, tombstone, SALT), "record_id"])
    assert flagged == CA_RECORDS
    rs = ResolutionSettings(use_splink=False, tombstone=tombstone, tombstone_salt=SALT)
    assigned = resolve_records(records, rs).assignments
    assert set(assigned["record_id"]) == set(records["record_id"]) - CA_RECORDS

    # ... and the feature build leaves out a customer with any of their keys.
    out = tmp_path / "rebuilt"
    build_feature_tables(
        settings.raw_dir,
        settings.unified_dir,
        out,
        AS_OF,
        months=2,
        terms=demo_terms(),
        salt=SALT,
        tombstone=tombstone,
    )
    for p in out.glob("*.parquet"):
        assert set(pd.read_parquet(p)["customer_id"]) == {"CB"}, p.name


@pytest.mark.parametrize("online_store", ["sqlite", "redis"])
def test_erase_online_deletes_the_persons_rows(
    tmp_path: Path, online_store: str, request: pytest.FixtureRequest
) -> None:
    from nextbest.customers.feast_store import apply, feature_store, lookup_customer, materialize
    from nextbest.customers.normalise import identifier_key

    extra = {}
    if online_store == "redis":
        extra = {
            "online_store": "redis",
            "redis_connection": request.getfixturevalue("redis_server"),
        }
    settings = _home(tmp_path, **extra)
    apply(settings, demo_terms())
    materialize(settings, end=AS_OF)
    person = find_person(settings, "email", "ca@x.com")
    store = feature_store(settings)
    key_a = identifier_key("loyalty_id", "L1", SALT)
    key_b = identifier_key("crm_id", "K2", SALT)
    assert lookup_customer(store, key_a) == "CA" and lookup_customer(store, key_b) == "CB"

    assert erase_online(settings, person) > 0
    store = feature_store(settings)
    assert lookup_customer(store, key_a) is None and lookup_customer(store, key_b) == "CB"
    rows = store.get_online_features(
        features=["customer_profile:n_source_records"],
        entity_rows=[{"customer_id": "CA"}, {"customer_id": "CB"}],
    ).to_dict()["n_source_records"]
    assert rows[0] is None and rows[1] is not None
    if online_store == "sqlite":
        data = (settings.feast_dir / "online.db").read_bytes()
        assert all(k.split(":", 1)[1].encode() not in data for k in person.keys)


def test_a_copied_homes_registry_names_only_the_copy(tmp_path: Path) -> None:
    import shutil

    from nextbest.customers.feast_store import apply, feature_store

    original = _home(tmp_path / "original")
    apply(original, demo_terms())
    shutil.copytree(original.root, tmp_path / "copy")
    registry = original.feast_dir / "registry.db"
    before = registry.read_bytes()
    copy = get_settings(home=tmp_path / "copy", identifier_salt=SALT, as_of=AS_OF)
    store = feature_store(copy)
    for fv in store.list_feature_views():
        assert Path(fv.batch_source.path).parent == copy.features_dir, fv.name
    assert str(original.root).encode() not in (copy.feast_dir / "registry.db").read_bytes()
    assert registry.read_bytes() == before

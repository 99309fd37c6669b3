"""Homes are independent of where they lie, and a forgotten person leaves no trace.

Both tests work on copies of the session world: the first copies a home, uses the copy
(an event, a feature rebuild, the champion's decisions) and checks the original is
byte-identical and not needed; the second erases one person through the CLI and one over
HTTP, then rebuilds from the unchanged exports and checks neither comes back.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from datetime import timedelta
from pathlib import Path

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

from devtools.process import Server, stop_server
from nextbest.core.settings import get_settings
from nextbest.customers.as_of import resolve_as_of
from nextbest.customers.erasure import Person
from tests.conftest import World, start_service

pytestmark = [pytest.mark.slow, pytest.mark.integration]

UNKNOWN_EMAIL = "nobody@example.invalid"


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


#: Measurement outputs (batch summaries of the measured runs, the demo measurement) record
#: where those runs read and wrote, as provenance; nothing reads them to find a store.
REPORTS = ("measurement/",)


def _files_holding(
    root: Path, needles: list[str], skip: tuple[str, ...] = ()
) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for p in root.rglob("*"):
        if p.is_file() and not str(p.relative_to(root)).startswith(skip):
            data = p.read_bytes()
            hits = [n for n in needles if n.encode() in data]
            if hits:
                found[str(p.relative_to(root))] = hits
    return found


def _latest_consent(features_dir: Path, column: str) -> pd.Series:
    df = pd.read_parquet(features_dir / "customer_consent.parquet")
    df = df.sort_values("event_timestamp").drop_duplicates("customer_id", keep="last")
    return df.set_index("customer_id")[column]


def test_a_copied_home_works_alone_and_leaves_the_original_untouched(
    world: World, tmp_path: Path
) -> None:
    from nextbest.customers.feast_store import feature_store
    from nextbest.decisions.decision_log import read_log
    from nextbest.models.registry import load_model_by_alias
    from nextbest.pipeline import build_features
    from serving.decider import OnlineDecider
    from serving.requests import CustomerRef, DecideRequest

    # The original: a private copy of the session world, made its own home by opening its
    # feature store and loading its champion once (its stores then name only itself).
    original = tmp_path / "original"
    shutil.copytree(world.home, original)
    feature_store(get_settings(home=original))
    load_model_by_alias(get_settings(home=original))
    assert _files_holding(original, [str(world.home)], REPORTS) == {}
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    before = _hashes(original)

    settings = get_settings(home=copy)
    consent = _latest_consent(settings.features_dir, "consent_marketing_email")
    cid = str(consent.index[consent == 1][0])
    decider = OnlineDecider(settings)
    decider.apply_event(
        CustomerRef(cid),
        "consent_changed",
        # before the newest snapshot
        (resolve_as_of(settings).time - timedelta(days=10)).isoformat(),
        {"purpose": "marketing", "channel": "email", "granted": False},
    )
    (first,) = decider.decide_and_log([DecideRequest(CustomerRef(cid), "email")]).wait()
    assert first["customer_id"] == cid
    build_features(settings)

    moved = tmp_path / "original-moved"
    os.rename(original, moved)
    after_move = OnlineDecider(settings)
    (answer,) = after_move.decide_and_log([DecideRequest(CustomerRef(cid), "email")]).wait()
    assert answer["customer_id"] == cid
    assert answer["decision_id"] in set(read_log(settings.decision_log_dir)["decision_id"])
    # The withdrawal went through the copy's ledger into the copy's rebuilt features.
    assert _latest_consent(settings.features_dir, "consent_marketing_email")[cid] == 0

    assert _hashes(moved) == before
    assert not original.exists()
    assert _files_holding(copy, [str(original), str(world.home)], REPORTS) == {}


def _decide(server: Server, email: str) -> dict:
    r = httpx.post(
        f"{server.url}/decide",
        json={"customer": {"id": email, "id_type": "email"}, "channel": "email"},
        headers=server.headers,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.json()


def _people(settings: object, n: int) -> list[tuple[str, Person]]:
    """``n`` customers with a CRM e-mail that names them, as (email, person)."""
    from nextbest.customers.erasure import UnknownPersonError, find_person

    crm = pd.read_parquet(settings.raw_dir / "crm_accounts.parquet")  # type: ignore[attr-defined]
    out = []
    for email in crm["email"].dropna():
        try:
            person = find_person(settings, "email", email)  # type: ignore[arg-type]
        except UnknownPersonError:
            continue
        if len(person.record_ids) > 1 and all(p.customer_id != person.customer_id for _, p in out):
            out.append((email, person))
        if len(out) == n:
            return out
    raise AssertionError("the world has too few customers with several records")


def _needles(email: str, person: Person, truth: pd.DataFrame) -> list[str]:
    """Every value naming ``person``: customer id, e-mail, identity keys and the values
    they hash, record ids, native ids, and the generator's person ids of their records."""
    keys = person.keys
    needles = [person.customer_id, email, *keys, *(k.split(":", 1)[1] for k in keys)]
    needles += sorted(person.record_ids)
    needles += [n for src in ("crm", "loyalty", "app", "web") for n in person.natives(src)]
    mine = truth["record_id"].isin(person.record_ids)
    return needles + sorted(set(truth.loc[mine, "person_id"]))


def test_forget_leaves_no_trace_and_the_person_stays_gone(world: World, tmp_path: Path) -> None:
    from nextbest.cli import app
    from nextbest.decisions.decision_log import read_log
    from nextbest.decisions.privacy import audit_path, read_audit
    from nextbest.pipeline import build_features, resolve

    home = tmp_path / "home"
    shutil.copytree(world.home, home)
    settings = get_settings(home=home)
    (email_a, a), (email_b, b) = _people(settings, 2)
    truth = pd.read_parquet(settings.raw_dir / "truth" / "records.parquet")
    needles_a, needles_b = _needles(email_a, a, truth), _needles(email_b, b, truth)
    assert truth["record_id"].isin(a.record_ids).any()  # the truth names them both
    assert truth["record_id"].isin(b.record_ids).any()
    runner = CliRunner()
    env = {"NEXTBEST_HOME": str(home)}

    server = start_service(home, tmp_path / "serve.log")
    try:
        _decide(server, email_a)
        _decide(server, email_b)
        unknown = _decide(server, UNKNOWN_EMAIL)

        before = _hashes(home)
        refused = runner.invoke(app, ["forget", UNKNOWN_EMAIL, "--reason", "request 1"], env=env)
        assert refused.exit_code != 0 and "no customer has this email" in refused.output
        assert _hashes(home) == before

        done = runner.invoke(app, ["forget", email_a, "--reason", "erasure request 7"], env=env)
        assert done.exit_code == 0, done.output
        # The whole home, the generator's truth/ included: the CLI's forget erases it too.
        assert _files_holding(home, needles_a) == {}

        after = _decide(server, email_a)
        same = ("customer_id", "chosen_action", "actions", "reason")
        assert {k: after[k] for k in same} == {k: unknown[k] for k in same}
        assert after["reason"]["code"] == "UNKNOWN_CUSTOMER"
        # The decision log took the new line after its file was rewritten.
        assert after["decision_id"] in set(read_log(settings.decision_log_dir)["decision_id"])

        entry = read_audit(settings)[-1]
        assert entry["action"] == "forget" and entry["reason"] == "erasure request 7"
        assert entry["identifier_type"] == "email" and len(entry["identifier_hash"]) == 32
        assert entry["removed"]["online_store"] > 0 and entry["removed"]["raw"] > 0
        assert entry["removed"]["decision_log"] >= 1
        assert entry["removed"]["truth"] >= 2  # their records and their persons row
        assert email_a.encode() not in audit_path(settings).read_bytes()

        body = {"customer": {"id": email_b, "id_type": "email"}, "reason": "erasure request 8"}
        url = f"{server.url}/admin/forget"
        r = httpx.post(url, json=body, headers=server.headers, timeout=120)
        assert r.status_code == 200, r.text
        assert r.json()["removed"]["features"] > 0
        # The route is the product's forget alone: it never reads the generator's truth/
        # (synthetic evaluation data, which only the CLI's forget erases; docs/privacy.md).
        assert _files_holding(home, needles_b, ("raw/truth/",)) == {}
        assert "truth" not in r.json()["removed"]
        assert _decide(server, email_b)["reason"]["code"] == "UNKNOWN_CUSTOMER"
        again = httpx.post(url, json=body, headers=server.headers, timeout=60)
        assert again.status_code == 404
        assert email_b not in again.text
    finally:
        stop_server(server.proc)

    # The team's next export still holds both: the rebuild must not bring them back.
    shutil.rmtree(settings.raw_dir)
    shutil.copytree(world.home / "raw", settings.raw_dir)
    resolve(settings)
    build_features(settings)
    for person in (a, b):
        lookup = pd.read_parquet(settings.features_dir / "identity_lookup.parquet")
        assert not lookup["identifier"].isin(person.keys).any()
        identity = pd.read_parquet(settings.unified_dir / "identity.parquet")
        assert not identity["record_id"].isin(person.record_ids).any()
        profile = pd.read_parquet(settings.features_dir / "customer_profile.parquet")
        assert person.customer_id not in set(profile["customer_id"])

"""One decision across channels and quiet hours, over real HTTP: ``channels: "any"``
returns the best action x channel pair with every other channel's reason; a channel
inside the customer's quiet hours (policy ``send_windows``, in the request's time zone)
is excluded with its reason; the one-channel form answers as before."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pandas as pd
import pytest

from devtools.process import Server
from nextbest.decisions.policy import load_policy
from nextbest.decisions.send_windows import in_quiet_hours
from tests.conftest import World

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _decide(service: Server, body: dict) -> httpx.Response:
    return httpx.post(f"{service.url}/decide", headers=service.headers, json=body, timeout=30)


def _zones(world: World, channel: str) -> tuple[str, str]:
    """A fixed-offset zone where ``channel`` is quiet now, and one where it is not."""
    quiet = load_policy(world.settings.policy).send_windows.quiet_hours[channel]
    now = datetime.now(UTC)
    zones = [f"Etc/GMT{h:+d}" if h else "Etc/GMT" for h in range(-12, 13)]
    inside = [z for z in zones if in_quiet_hours(quiet, z, now)]
    outside = [z for z in zones if not in_quiet_hours(quiet, z, now)]
    return inside[len(inside) // 2], outside[len(outside) // 2]


@pytest.fixture(scope="module")
def sms_customer(world: World, service: Server) -> tuple[str, str, str]:
    """A customer offered an SMS action outside quiet hours, with the two zones."""
    quiet_zone, open_zone = _zones(world, "sms")
    consent = pd.read_parquet(world.settings.features_dir / "customer_consent.parquet")
    ids = consent.loc[consent["consent_marketing_sms"] == 1, "customer_id"].unique()
    for cid in ids[len(ids) // 3 : len(ids) // 3 + 300]:
        r = _decide(
            service, {"customer": {"id": str(cid)}, "channel": "sms", "time_zone": open_zone}
        )
        assert r.status_code == 200, r.text
        if r.json()["actions"]:
            return str(cid), quiet_zone, open_zone
    pytest.skip("no customer offered an SMS action in the world")


def test_quiet_hours_exclude_the_channel_with_its_reason(service: Server, sms_customer) -> None:
    cid, quiet_zone, _ = sms_customer
    r = _decide(service, {"customer": {"id": cid}, "channel": "sms", "time_zone": quiet_zone})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["chosen_action"] == "no_action" and d["actions"] == []
    assert "QUIET_HOURS" in {e["reasons"][0]["code"] for e in d["excluded"]}
    assert "report_delivery" in d and d["report_delivery"] is None


def test_any_channel_returns_the_best_pair_and_explains_the_others(
    service: Server, sms_customer
) -> None:
    cid, quiet_zone, _ = sms_customer
    body = {"customer": {"id": cid}, "channels": "any", "time_zone": quiet_zone, "k": 2}
    d = _decide(service, body).json()
    others = {o["channel"]: o for o in d["channels"]}
    assert d["channel"] not in others
    assert {d["channel"], *others} == {"email", "sms", "push", "web", "app", "call_center"}
    assert others.get("sms", {}).get("reason") in ("QUIET_HOURS", "HOLDOUT")
    if d["chosen_action"] != "no_action":
        best = d["actions"][0]["score"]
        assert all(o["score"] <= best for o in others.values() if o["reason"] == "LOWER_VALUE")
        assert d["report_delivery"]["payload"]["channel"] == d["channel"]
    # The same pair when the channels are listed; one channel alone answers as before.
    listed = _decide(service, {**body, "channels": ["sms", d["channel"]]}).json()
    assert listed["channel"] == d["channel"] and listed["chosen_action"] == d["chosen_action"]
    one = _decide(service, {"customer": {"id": cid}, "channel": "email"}).json()
    assert "channels" not in one


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"channels": ["email", "fax"]}, "channels"),
        ({"channels": ["email", "email"]}, "channels"),
        ({"channels": []}, "channels"),
        ({"channel": "email", "channels": "any"}, "channel"),
        ({}, "channel"),
        ({"channel": "sms", "time_zone": "Mars/Olympus"}, "time_zone"),
    ],
)
def test_bad_channel_requests_are_refused_naming_the_field(
    service: Server, sms_customer, body: dict, field: str
) -> None:
    r = _decide(service, {"customer": {"id": sms_customer[0]}, **body})
    assert r.status_code == 400, r.text
    assert field in r.text


def test_batch_scores_the_best_pair_per_customer(world: World, tmp_path) -> None:
    from typer.testing import CliRunner

    from nextbest.cli import app

    ids = pd.read_parquet(
        world.settings.features_dir / "customer_profile.parquet", columns=["customer_id"]
    )["customer_id"].unique()[:300]
    (tmp_path / "ids.txt").write_text("\n".join(ids))
    out = tmp_path / "best.parquet"
    args = ["score", "--channels", "email,sms,web", "--out", str(out)]
    res = CliRunner().invoke(app, [*args, "--customers", str(tmp_path / "ids.txt")])
    assert res.exit_code == 0, res.output
    best = pd.read_parquet(out).set_index("customer_id")
    assert len(best) == len(ids)
    per = {
        c: pd.read_parquet(tmp_path / "best.parquet.channels" / f"{c}.parquet").set_index(
            "customer_id"
        )
        for c in ("email", "sms", "web")
    }
    for cid, row in best.iterrows():
        worth = {
            c: f.at[cid, "rank_1_score"]
            for c, f in per.items()
            if f.at[cid, "chosen_action"] != "no_action" and f.at[cid, "group"] == "treatment"
        }
        if worth:
            assert row["channel"] == max(
                worth, key=lambda c: (worth[c], -["email", "sms", "web"].index(c))
            )
            assert row["chosen_action"] == per[row["channel"]].at[cid, "chosen_action"]
            assert all(row[f"why_{c}"] == "LOWER_VALUE" for c in worth if c != row["channel"])
        else:
            assert row["chosen_action"] == "no_action"
    bad = CliRunner().invoke(app, ["score", "--channels", "email,fax", "--out", str(out)])
    assert bad.exit_code != 0 and "fax" in bad.output

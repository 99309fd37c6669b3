"""Micro-batched decisions equal one-at-a-time decisions, and every one is logged."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest

from nextbest.decisions.decision_log import read_log
from nextbest.decisions.group_commit import GroupCommitLog
from serving.batching import MicroBatcher
from serving.decider import OnlineDecider
from serving.requests import CustomerRef, DecideRequest
from tests.conftest import World
from tests.params import SEED

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _requests(world: World, n: int) -> list[DecideRequest]:
    ids = pd.read_parquet(world.settings.unified_dir / "identity.parquet")["customer_id"]
    cids = ids.drop_duplicates().sample(n, random_state=SEED).tolist()
    reqs = [DecideRequest(CustomerRef(c), "email", k=1 + i % 4) for i, c in enumerate(cids)]
    reqs.append(DecideRequest(CustomerRef("nobody@example.invalid", "email"), "email"))
    reqs.append(DecideRequest(CustomerRef(cids[0]), "web", context={"page": "home"}))
    return reqs


@pytest.fixture(scope="module")
def decider(world: World, tmp_path_factory: pytest.TempPathFactory) -> OnlineDecider:
    d = OnlineDecider(world.settings)
    d.log = GroupCommitLog(tmp_path_factory.mktemp("batched_log"))
    return d


def _without_id(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "decision_id"}


def test_a_batch_decides_as_one_call_per_request(world: World, decider: OnlineDecider) -> None:
    now = datetime.now(UTC)
    reqs = _requests(world, 40)
    batched = decider.decide_records(reqs, now)
    single = [decider.decide_records([r], now)[0] for r in reqs]
    assert [_without_id(r) for r in batched] == [_without_id(r) for r in single]
    assert sum(bool(r["ranked"]) for r in single) > 5  # offers were really ranked
    assert all(len(r["ranked"]) <= q.k for r, q in zip(single, reqs, strict=True))


def test_a_bad_request_fails_alone(decider: OnlineDecider) -> None:
    reqs = [
        DecideRequest(CustomerRef("C0000001"), "fax"),
        DecideRequest(CustomerRef("x", "passport"), "email"),
        DecideRequest(CustomerRef("C0000001"), "email", k=0),
        DecideRequest(CustomerRef("C0000001"), "email"),
    ]
    out = decider.decide_records(reqs)
    assert "channel" in str(out[0]) and "id_type" in str(out[1]) and "k:" in str(out[2])
    assert isinstance(out[3], dict)


def test_concurrent_requests_share_engine_calls_and_are_all_logged(
    world: World, decider: OnlineDecider
) -> None:
    batcher = MicroBatcher(decider)
    reqs = [r for r in _requests(world, 30) if r.channel == "email"]

    async def run() -> list[dict]:
        return await asyncio.gather(*(batcher.decide(r) for r in reqs))

    records = asyncio.run(run())
    assert batcher.decisions == len(reqs) and batcher.calls < len(reqs)
    logged = set(read_log(decider.log.directory)["decision_id"])
    assert {r["decision_id"] for r in records} <= logged


def test_a_client_that_goes_away_leaves_the_others_answered_and_logged(
    world: World, decider: OnlineDecider
) -> None:
    batcher = MicroBatcher(decider)
    reqs = [r for r in _requests(world, 12) if r.channel == "email"]

    async def run() -> list[Any]:
        tasks = [asyncio.ensure_future(batcher.decide(r)) for r in reqs]
        await asyncio.sleep(0)  # every handler has queued; the batch runs on the next turn
        tasks[0].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    out = asyncio.run(run())
    assert isinstance(out[0], asyncio.CancelledError)
    answered = out[1:]
    assert answered and all(isinstance(r, dict) for r in answered)
    assert batcher.calls == 1  # the cancelled one was decided with the others
    logged = set(read_log(decider.log.directory)["decision_id"])
    assert {r["decision_id"] for r in answered} <= logged


def test_online_compiled_scoring_decides_as_lightgbm(world: World, decider: OnlineDecider) -> None:
    """The champion scored through the compiled trees gives the records LightGBM gives."""
    from dataclasses import replace

    from nextbest.models import compiled_trees
    from nextbest.models.scoring import StackedScorer

    if not compiled_trees.available():
        pytest.skip("numba not installed")
    compiled = decider.plan
    assert compiled.model.compiled and compiled.model.check_rows == 0
    lightgbm = replace(compiled, model=StackedScorer.from_model(decider.runtime.model))
    assert not lightgbm.model.compiled
    now = datetime.now(UTC)
    reqs = _requests(world, 60)
    out = {}
    try:
        for name, plan in (("compiled", compiled), ("lightgbm", lightgbm)):
            decider.plan = plan
            out[name] = [
                _without_id(r) if isinstance(r, dict) else str(r)
                for batch in (reqs[:1], reqs[1:9], reqs[9:])
                for r in decider.decide_records(batch, now)
            ]
    finally:
        decider.plan = compiled
    assert out["compiled"] == out["lightgbm"]
    assert sum(bool(r["ranked"]) for r in out["lightgbm"] if isinstance(r, dict)) > 5
    assert decider.plan.model.compiled  # nothing fell back


def test_online_compiled_trees_can_be_switched_off(world: World) -> None:
    off = OnlineDecider(world.settings.model_copy(update={"online_compiled_trees": False}))
    assert not off.plan.model.compiled


def test_a_lone_request_is_synced_inline_and_a_batch_by_the_writer(
    world: World, decider: OnlineDecider
) -> None:
    log = decider.log
    reqs = [r for r in _requests(world, 24) if r.channel == "email"]

    async def one_by_one(batcher: MicroBatcher) -> list[dict]:
        return [await batcher.decide(r) for r in reqs[:8]]

    async def together(batcher: MicroBatcher) -> list[dict]:
        return await asyncio.gather(*(batcher.decide(r) for r in reqs[8:]))

    inline0, syncs0 = log.inline_syncs, log.syncs
    lone = asyncio.run(one_by_one(MicroBatcher(decider)))
    assert log.inline_syncs - inline0 == 8 == log.syncs - syncs0
    batch = asyncio.run(together(MicroBatcher(decider)))
    assert log.inline_syncs - inline0 == 8 and log.syncs - syncs0 == 9  # one group commit
    off = MicroBatcher(decider, inline_sync=False)
    switched_off = asyncio.run(one_by_one(off))
    assert log.inline_syncs - inline0 == 8 and log.syncs - syncs0 == 17
    logged = set(read_log(log.directory)["decision_id"])
    assert {r["decision_id"] for r in lone + batch + switched_off} <= logged

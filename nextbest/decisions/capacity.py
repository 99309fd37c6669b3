"""The policy's limits over a whole book of decisions: which rows the allocation changes,
and how they read.

:func:`limit_rows` turns the policy's ``limits`` into the weight matrix of one channel's
actions (1 per offer, or its contact cost); :func:`allocate_decisions` solves the
allocation (:mod:`nextbest.decisions.allocation`) over the engine's decisions for every
customer and rewrites them in place: an action a limit excluded is marked ``CAPACITY``,
the customer gets the allocated action (``ALLOCATED`` when the limit moved them off their
best one, ``CAPACITY`` when it left them nothing), and the ranking, the logged propensity
and the reasons follow. Holdout rows stay without action; an explored row keeps its
random pick while the limits have room for it (its propensity is the one logged).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nextbest.decisions.allocation import Allocation, allocate
from nextbest.decisions.outcome import NO_ACTION, Decisions
from nextbest.decisions.policy import Limit
from nextbest.decisions.reasons import Reason
from nextbest.decisions.rules import Plan


@dataclass(frozen=True)
class LimitRows:
    """The limits that apply to one channel, as rows over its local actions."""

    limits: list[Limit]
    weights: np.ndarray  # [K, Cc] what one offer of each action uses of each limit
    capacity: np.ndarray  # [K] what is left of each for this allocation


def limit_rows(
    plan: Plan,
    channel: str,
    periods: Sequence[str] = ("day", "run", "total"),
    used: dict[str, float] | None = None,
) -> LimitRows:
    """The policy's limits of ``periods`` that count offers on ``channel``, with what is
    left of each (``max`` minus ``used[limit id]``, never below 0)."""
    cp = plan.channels[channel]
    local_ids = [str(plan.action_ids[c]) for c in cp.action_idx]
    used = used or {}
    chosen: list[Limit] = []
    rows: list[np.ndarray] = []
    for limit in plan.policy.limits:
        if limit.per not in periods or limit.channel not in (None, channel):
            continue
        covers = np.array([not limit.actions or a in limit.actions for a in local_ids], dtype=bool)
        if not covers.any():
            continue
        unit = np.ones(len(local_ids)) if limit.unit == "count" else cp.cost
        chosen.append(limit)
        rows.append(np.where(covers, unit, 0.0))
    W = np.array(rows).reshape(len(rows), len(local_ids))
    cap = np.array([max(0.0, lim.max - used.get(lim.id, 0.0)) for lim in chosen])
    return LimitRows(chosen, W, cap)


def allocate_decisions(decisions: Sequence[Decisions], rows: LimitRows) -> Allocation | None:
    """Allocate every customer of ``decisions`` (one channel's chunks) under ``rows`` and
    rewrite them in place; None when no limit applies."""
    if not decisions or not rows.limits:
        return None
    plan = decisions[0].plan
    cp = plan.channels[decisions[0].context.channel]
    W, cap = rows.weights, rows.capacity.copy()
    # Explored picks are random and logged with their propensity: they go first, in order.
    local_of = np.full(len(plan.action_ids), -1)
    local_of[cp.action_idx] = np.arange(len(cp.action_idx))
    scores, keep_pick = [], []
    for d in decisions:
        S = np.where(d.codes == Reason.ELIGIBLE, d.score, np.nan)[:, cp.action_idx]
        S[d.holdout | d.explored] = np.nan
        keep = np.zeros(d.n, dtype=bool)
        for i in np.flatnonzero(d.explored & (d.chosen >= 0)).tolist():
            w = W[:, local_of[d.chosen[i]]]
            if (w <= cap).all():
                cap -= w
                keep[i] = True
        scores.append(S)
        keep_pick.append(keep)
    result = allocate(np.vstack(scores), W, cap)
    names = limit_names(rows, cp, len(plan.action_ids))
    start = 0
    for d, keep in zip(decisions, keep_pick, strict=True):
        local = result.assigned[start : start + d.n]
        start += d.n
        allocated = np.where(local >= 0, cp.action_idx[np.maximum(local, 0)], NO_ACTION)
        rewrite(d, allocated, keep, names)
    return result


def limit_names(rows: LimitRows, cp: object, n_act: int) -> dict[int, str]:
    """Catalog column -> the names of the limits that count it ("a, b")."""
    out: dict[int, str] = {}
    for k, limit in enumerate(rows.limits):
        for j in np.flatnonzero(rows.weights[k] > 0).tolist():
            c = int(cp.action_idx[j])  # type: ignore[attr-defined]
            out[c] = f"{out[c]}, {limit.id}" if c in out else limit.id
    return out


def rewrite(
    d: Decisions, allocated: np.ndarray, keep_pick: np.ndarray, names: dict[int, str]
) -> None:
    """Put the allocation into ``d``: chosen, greedy, ranked, codes, reasons, propensity.

    ``allocated`` is each row's catalog column (-1: none), ``keep_pick`` whether an
    explored row's pick had room, ``names`` the limits counting each catalog column."""
    d.limit_names = names
    # An explored pick the limits had no room for is no action; the others stand.
    dropped = d.explored & ~keep_pick & (d.chosen >= 0)
    explored = d.explored & ~dropped
    active = ~d.holdout & ~d.explored
    rows = np.arange(d.n)
    alloc_score = np.where(allocated >= 0, d.score[rows, np.maximum(allocated, 0)], 0.0)
    limited = np.zeros(d.codes.shape[1], dtype=bool)
    limited[list(names)] = True
    eligible = d.codes == Reason.ELIGIBLE
    # Eligible limited actions worth more than what the customer gets: the limit excluded them.
    over = (
        eligible
        & limited[None, :]
        & (d.score > alloc_score[:, None])
        & ~d.holdout[:, None]
        & ~explored[:, None]
    )
    got = np.flatnonzero(allocated >= 0)
    over[got, allocated[got]] = False
    d.codes[over] = Reason.CAPACITY
    moved = over.any(axis=1)
    greedy = np.where(d.holdout, d.greedy, allocated)
    d.greedy = np.where(explored, d.greedy, greedy)
    new_chosen = np.where(explored, d.chosen, allocated)
    d.chosen = np.where(d.holdout, NO_ACTION, np.where(dropped, NO_ACTION, new_chosen))
    d.ranked = _rerank(d, d.codes == Reason.ELIGIBLE, d.ranked.shape[1], first=~explored)
    with np.errstate(invalid="ignore"):
        n_opt = d.explore_options.sum(axis=1) + 1
        d.propensity = np.where(
            d.holdout,
            1.0,
            d.epsilon / n_opt + np.where(d.chosen == d.greedy, 1.0 - d.epsilon, 0.0),
        )
    reason = d.row_reason.copy()
    hit = moved & active
    reason[hit & (d.chosen >= 0)] = Reason.ALLOCATED
    reason[hit & (d.chosen < 0)] = Reason.CAPACITY
    reason[dropped] = Reason.CAPACITY
    d.row_reason = reason.astype(np.int8)


def _rerank(d: Decisions, rankable: np.ndarray, k: int, first: np.ndarray) -> np.ndarray:
    """[n, k] the rankable actions by score, the chosen one first where ``first`` (an
    explored row's ranking stays the greedy one, as the engine gives it)."""
    masked = np.where(rankable, d.score, -np.inf)
    rows = np.arange(d.n)
    has = (d.chosen >= 0) & first
    masked[rows[has], d.chosen[has]] = np.inf
    order = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    ranked = np.where(masked[rows[:, None], order] > -np.inf, order, -1)
    out = np.full((d.n, k), -1, dtype=np.intp)
    out[:, : ranked.shape[1]] = ranked
    return out

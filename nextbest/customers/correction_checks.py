"""Checks a human identity decision passes before it is recorded.

Both records must exist in the current identity records, and a link the merge guard
(:func:`nextbest.customers.identity.link_conflict`, the resolver's own rules) refuses between the
two current customers needs ``force`` and a reason. Requests come from the command line
or from a filled-in review file (:func:`review_requests`); all are checked before any is
recorded (:func:`nextbest.customers.corrections.record_decisions`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from nextbest.core.errors import InputError
from nextbest.customers.corrections import DECISIONS, NO_REASON, clean_pair
from nextbest.customers.identity import ResolutionSettings, link_conflict


@dataclass(frozen=True)
class Request:
    """A decision a person asked for; ``where`` names it in messages (``row 7`` of a
    review file), empty on the command line."""

    record_id_a: str
    record_id_b: str
    decision: str
    reason: str = ""
    where: str = ""


@dataclass(frozen=True)
class CurrentIdentity:
    """What a decision is checked against: the canonical ``records`` the next resolve
    reads and the customer of each record after the last resolve (``customer_of``:
    record_id -> customer_id; a record not in it is a customer of its own)."""

    records: pd.DataFrame
    customer_of: pd.Series


def _members(current: CurrentIdentity, known: pd.Index, record_id: str) -> list[str]:
    """The record ids of the current customer of ``record_id`` that still exist."""
    cust = current.customer_of.get(record_id)
    if cust is None:
        return [record_id]
    ids = current.customer_of.index[current.customer_of.to_numpy() == cust]
    return sorted(set(ids[ids.isin(known)]) | {record_id})


def _check_one(
    req: Request,
    current: CurrentIdentity,
    known: pd.Index,
    splits: list[tuple[str, str]],
    force: bool,
    settings: ResolutionSettings | None,
) -> list[object]:
    """One request as a decisions row, or an :class:`InputError` saying what is wrong."""
    decision = req.decision.strip().lower()
    if decision not in DECISIONS:
        raise InputError(f"decision must be link or split, not {req.decision!r}")
    a, b = clean_pair(req.record_id_a, req.record_id_b)
    unknown = [x for x in (a, b) if x not in known]
    if unknown:
        names = " and ".join(repr(x) for x in unknown)
        what = "record id" if len(unknown) == 1 else "record ids"
        raise InputError(
            f"{what} {names} {'does' if len(unknown) == 1 else 'do'} not exist in the "
            "current identity records"
        )
    reason = req.reason.strip()
    conflict = ""
    if decision == "link":
        side_a, side_b = _members(current, known, a), _members(current, known, b)
        if not set(side_a) & set(side_b):
            pair = {a, b}
            others = [(x, y) for x, y in splits if {x, y} != pair]
            found = link_conflict(current.records, side_a, side_b, others, settings)
            conflict = found or ""
        if conflict and not (force and reason):
            how = (
                "--force needs a non-empty reason"
                if force
                else "if they are one person, force it with --force and a reason"
            )
            raise InputError(
                f"the merge guard refuses to link {a!r} and {b!r} (conflict: {conflict}); {how}"
            )
    return [a, b, decision, reason or NO_REASON, conflict]


def check_requests(
    requests: list[Request],
    current: CurrentIdentity,
    decisions: pd.DataFrame,
    force: bool = False,
    settings: ResolutionSettings | None = None,
) -> pd.DataFrame:
    """The rows to record for ``requests`` once every one of them is valid.

    Each request must name two different records of ``current.records``; a link the
    merge guard (:func:`nextbest.customers.identity.link_conflict`) refuses between the two
    current customers, earlier human splits included, needs ``force`` and a non-empty
    reason and keeps the conflict it overrode in ``guard_conflict``. ``decisions`` are the
    decisions recorded so far; ``settings`` give the guard's country code and CRM
    name-change evidence (None: the defaults ``nextbest resolve`` uses). Raises
    :class:`~nextbest.core.errors.InputError` naming the first bad request (its ``where``) and how
    many others are bad; nothing is to be recorded then.
    """
    known = pd.Index(current.records["record_id"].astype(str))
    split = decisions[decisions["decision"] == "split"]
    splits = list(zip(split["record_id_a"], split["record_id_b"], strict=True))
    rows: list[list[object]] = []
    errors: list[str] = []
    for req in requests:
        try:
            rows.append(_check_one(req, current, known, splits, force, settings))
        except InputError as exc:
            errors.append(f"{req.where}: {exc}" if req.where else str(exc))
    if errors:
        more = f" ({len(errors) - 1} more bad)" if len(errors) > 1 else ""
        raise InputError(f"{errors[0]}{more}; nothing recorded")
    return pd.DataFrame(
        rows, columns=["record_id_a", "record_id_b", "decision", "reason", "guard_conflict"]
    )


def review_requests(review_path: Path) -> list[Request]:
    """The filled-in rows of a review file as requests (``where``: the file and its row).

    Raises :class:`~nextbest.core.errors.InputError` naming the file when a column is missing.
    """
    df = pd.read_csv(review_path, dtype=str, keep_default_na=False)
    for c in ("record_id_a", "record_id_b", "decision"):
        if c not in df.columns:
            raise InputError(f"{review_path}: missing column {c!r}")
    reasons = df["reason"] if "reason" in df.columns else pd.Series("", index=df.index)
    filled = df["decision"].str.strip() != ""
    return [
        Request(
            df.at[i, "record_id_a"],
            df.at[i, "record_id_b"],
            df.at[i, "decision"],
            reasons[i],
            f"{review_path}: row {int(i) + 2}",
        )
        for i in df.index[filled]
    ]

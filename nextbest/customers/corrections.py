"""Human corrections that last, and the review file that asks for them.

A decision is ``link`` (these two records are one person, whatever the guard says) or
``split`` (never in one customer). Decisions live in one CSV file (``record_id_a,
record_id_b, decision, reason, decided_at, guard_conflict``); the latest decision on a
pair wins, and every later :func:`nextbest.customers.identity.resolve_records` call that is given
the file honours them: forced links are merged first and listed with their reason, split
pairs refuse any edge that would join them (reported with conflict ``human_split``).

A decision asked for is checked before anything is written
(:func:`nextbest.customers.correction_checks.check_requests`):
both records must exist in the current identity records, and a link the merge guard
would refuse between the two current customers is refused unless forced with a reason;
a forced link keeps the conflict it overrode in ``guard_conflict``. A file written
before that column existed reads as having none.

The review file lists the uncertain band: pairs Splink scored between
``review_weight`` and the match threshold, with both records masked (first letter of
names and streets, year of birth, outward postcode) and the per-field match weights, so
a reviewer sees why the model hesitated without the file holding identifying values.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from nextbest.core.errors import InputError
from nextbest.customers.erasure import write_atomic

DECISIONS: tuple[str, ...] = ("link", "split")
#: Columns every decisions file has (``guard_conflict`` came later: absent reads as "").
REQUIRED_DECISION_COLUMNS: tuple[str, ...] = (
    "record_id_a",
    "record_id_b",
    "decision",
    "reason",
    "decided_at",
)
DECISION_COLUMNS: tuple[str, ...] = (*REQUIRED_DECISION_COLUMNS, "guard_conflict")
#: The reason written when none was given (never enough to force a link).
NO_REASON = "(no reason given)"


def decisions_path(root: Path) -> Path:
    """Where the human decisions of a working directory live (kept across rebuilds)."""
    return Path(root) / "identity" / "decisions.csv"


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in DECISION_COLUMNS})


def load_decisions(path: Path | None) -> pd.DataFrame:
    """Decisions in ``path`` (latest per pair); empty when ``path`` is None or absent.

    Raises ``ValueError`` naming the file when a column is missing or a decision is
    neither ``link`` nor ``split``.
    """
    if path is None or not Path(path).exists():
        return _empty()
    df = _read_all(Path(path))
    bad = ~df["decision"].isin(DECISIONS)
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + 2
        raise InputError(
            f"{path}: decision must be one of {list(DECISIONS)}; row {row} has "
            f"{df['decision'][bad].iloc[0]!r}"
        )
    key = df[["record_id_a", "record_id_b"]].apply(lambda r: tuple(sorted(r)), axis=1)
    return df.loc[~key.duplicated(keep="last"), list(DECISION_COLUMNS)].reset_index(drop=True)


def _read_all(path: Path) -> pd.DataFrame:
    """Every row of a decisions file, oldest first, with :data:`DECISION_COLUMNS`."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in REQUIRED_DECISION_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; expected {list(DECISION_COLUMNS)}")
    for c in DECISION_COLUMNS:
        if c not in df.columns:
            df[c] = ""
    return df.loc[:, list(DECISION_COLUMNS)]


def clean_pair(record_id_a: object, record_id_b: object) -> tuple[str, str]:
    """Two record ids, stripped; an :class:`InputError` when one is empty or both are one."""
    a, b = str(record_id_a).strip(), str(record_id_b).strip()
    if not a or not b:
        raise InputError("both record ids are required")
    if a == b:
        raise InputError(f"a record cannot be linked to or split from itself ({a!r})")
    return a, b


def record_decisions(path: Path, rows: pd.DataFrame) -> pd.DataFrame:
    """Add ``rows`` (:data:`DECISION_COLUMNS`; ``decided_at`` and ``guard_conflict``
    filled in when absent) to the decisions file ``path`` in one atomic replace, so a
    failure leaves the file as it was; returns all decisions (latest per pair).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = rows.copy()
    if "decided_at" not in new.columns:
        new["decided_at"] = datetime.now(UTC).isoformat()
    if "guard_conflict" not in new.columns:
        new["guard_conflict"] = ""
    old = _read_all(path) if path.exists() else _empty()
    frames = [f for f in (old, new.loc[:, list(DECISION_COLUMNS)]) if len(f)]
    table = pd.concat(frames, ignore_index=True) if frames else _empty()
    write_atomic(path, lambda tmp: table.to_csv(tmp, index=False))
    return load_decisions(path)


def record_decision(
    path: Path, record_id_a: str, record_id_b: str, decision: str, reason: str
) -> pd.DataFrame:
    """Append a human decision to ``path`` (created if absent) without the checks of
    :func:`nextbest.customers.correction_checks.check_requests`; returns all decisions.

    Raises :class:`~nextbest.core.errors.InputError` (a ``ValueError``) for an unknown decision,
    an empty or repeated record id.
    """
    if decision not in DECISIONS:
        raise InputError(f"decision must be one of {list(DECISIONS)}, not {decision!r}")
    a, b = clean_pair(record_id_a, record_id_b)
    row = pd.DataFrame(
        [[a, b, decision, reason.strip() or NO_REASON]],
        columns=["record_id_a", "record_id_b", "decision", "reason"],
    )
    return record_decisions(path, row)


def decision_pairs(
    decisions: pd.DataFrame, record_ids: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per decision kind: record positions ``a, b`` and reasons, for records present.

    ``record_ids`` are the resolver's record ids in its order. Pairs naming an absent record are
    left out: a decision outlives the records it was made on.
    """
    index = pd.Index(record_ids)
    out: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for kind in DECISIONS:
        d = decisions[decisions["decision"] == kind]
        pa = index.get_indexer(d["record_id_a"].astype(str))
        pb = index.get_indexer(d["record_id_b"].astype(str))
        ok = (pa >= 0) & (pb >= 0)
        out[kind] = (
            pa[ok].astype(np.int64),
            pb[ok].astype(np.int64),
            d["reason"].to_numpy(object)[ok],
        )
    return out


# --- review file ------------------------------------------------------------------------


def _mask_initial(values: pd.Series) -> pd.Series:
    s = values.astype("string")
    return (s.str[:1] + "*" * 4).astype(object).where(s.notna(), None)


def mask_records(norm: pd.DataFrame) -> pd.DataFrame:
    """Masked model columns: initials of names, street and city; year of birth; outward
    postcode (all but the last three characters)."""
    out = pd.DataFrame(index=norm.index)
    for c in ("first_name", "last_name", "street", "city"):
        out[c] = _mask_initial(norm[c])
    dob = norm["date_of_birth"].astype("string")
    out["date_of_birth"] = (dob.str[:4] + "-**-**").astype(object).where(dob.notna(), None)
    pc = norm["postcode"].astype("string")
    out["postcode"] = (pc.str[:-3] + " ***").astype(object).where(pc.str.len() > 3, None)
    return out


def review_table(pairs: pd.DataFrame, norm: pd.DataFrame) -> pd.DataFrame:
    """The review file: one row per uncertain pair, both records masked, field weights.

    ``pairs`` has ``a, b`` (positions in ``norm``), ``match_weight``,
    ``match_probability`` and ``mw_*`` columns (:func:`nextbest.customers.linkage.score_pairs`).
    An empty ``decision`` column is left for the reviewer (``link``/``split``).
    """
    masked = mask_records(norm).reset_index(drop=True)
    rid = norm["record_id"].to_numpy(object)
    a = pairs["a"].to_numpy(np.int64)
    b = pairs["b"].to_numpy(np.int64)
    out = pd.DataFrame({"record_id_a": rid[a], "record_id_b": rid[b]})
    out["match_weight"] = pairs["match_weight"].astype(float).round(2).to_numpy()
    out["match_probability"] = pairs["match_probability"].astype(float).round(4).to_numpy()
    for c in masked.columns:
        out[f"{c}_a"] = masked[c].to_numpy(object)[a]
        out[f"{c}_b"] = masked[c].to_numpy(object)[b]
        w = f"mw_{c}"
        if w in pairs.columns:
            out[f"weight_{c}"] = pairs[w].astype(float).round(2).to_numpy()
    out["decision"] = ""
    out["reason"] = ""
    return out.sort_values(["match_weight", "record_id_a"], ascending=[False, True]).reset_index(
        drop=True
    )

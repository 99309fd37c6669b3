"""Human corrections that last, and the review file that asks for them.

A decision is ``link`` (these two records are one person, whatever the guard says) or
``split`` (never in one customer). Decisions live in one CSV file (``record_id_a,
record_id_b, decision, reason, decided_at``); the latest decision on a pair wins, and
every later :func:`customers.identity.resolve_records` call that is given the file
honours them: forced links are merged first and listed with their reason, split pairs
refuse any edge that would join them (reported with conflict ``human_split``).

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

from core.errors import InputError

DECISIONS: tuple[str, ...] = ("link", "split")
DECISION_COLUMNS: tuple[str, ...] = (
    "record_id_a",
    "record_id_b",
    "decision",
    "reason",
    "decided_at",
)


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
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in DECISION_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; expected {list(DECISION_COLUMNS)}")
    bad = ~df["decision"].isin(DECISIONS)
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + 2
        raise InputError(
            f"{path}: decision must be one of {list(DECISIONS)}; row {row} has "
            f"{df['decision'][bad].iloc[0]!r}"
        )
    key = df[["record_id_a", "record_id_b"]].apply(lambda r: tuple(sorted(r)), axis=1)
    return df.loc[~key.duplicated(keep="last"), list(DECISION_COLUMNS)].reset_index(drop=True)


def record_decision(
    path: Path, record_id_a: str, record_id_b: str, decision: str, reason: str
) -> pd.DataFrame:
    """Append a human decision to ``path`` (created if absent); returns all decisions.

    Raises :class:`~core.errors.InputError` (a ``ValueError``) for an unknown decision,
    an empty or repeated record id.
    """
    if decision not in DECISIONS:
        raise InputError(f"decision must be one of {list(DECISIONS)}, not {decision!r}")
    a, b = str(record_id_a).strip(), str(record_id_b).strip()
    if not a or not b:
        raise InputError("both record ids are required")
    if a == b:
        raise InputError(f"a record cannot be linked to or split from itself ({a!r})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    row = pd.DataFrame(
        [[a, b, decision, reason.strip() or "(no reason given)", datetime.now(UTC).isoformat()]],
        columns=list(DECISION_COLUMNS),
    )
    row.to_csv(path, mode="a", header=not path.exists(), index=False)
    return load_decisions(path)


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
    ``match_probability`` and ``mw_*`` columns (:func:`customers.linkage.score_pairs`).
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


def decisions_from_review(review_path: Path, decisions_path: Path) -> int:
    """Record every row of a filled-in review file whose ``decision`` is link or split.

    Returns the number recorded. Raises ``ValueError`` naming the row of an unknown
    decision.
    """
    df = pd.read_csv(review_path, dtype=str, keep_default_na=False)
    for c in ("record_id_a", "record_id_b", "decision"):
        if c not in df.columns:
            raise InputError(f"{review_path}: missing column {c!r}")
    filled = df[df["decision"].str.strip() != ""]
    n = 0
    for i, row in filled.iterrows():
        decision = row["decision"].strip().lower()
        if decision not in DECISIONS:
            raise InputError(
                f"{review_path}: row {int(i) + 2}: decision must be link or split, not "
                f"{row['decision']!r}"
            )
        record_decision(
            decisions_path,
            row["record_id_a"],
            row["record_id_b"],
            decision,
            row.get("reason", "") or "reviewed",
        )
        n += 1
    return n

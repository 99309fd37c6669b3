"""Append-only, durable decision log: one JSON line per decision, one file per UTC day
(the day the decision was taken). The log stamps every line with its write time
(``logged_at``, UTC), so a batch decided as of an earlier day is still known to be new.

A batch of records becomes one ``write()`` on a file opened with ``O_APPEND``, followed by
``fsync`` before ``append`` returns, so a decision that was answered is on disk and
several processes can log to the same directory without interleaving lines.
Records must never carry a raw email, phone or name: ``append`` refuses them.

Erasure and retention rewrite a day's file (:func:`erase_customers`, :func:`drop_older`):
the rewrite holds an exclusive ``flock`` on the file and replaces it atomically (or
removes it once nothing is left); every writer holds a shared lock while it writes and
reopens a file that was replaced (:func:`lock_for_append`), so no line is lost to a
rewrite. Retention goes by the later of the decision time and the write time
(:func:`retention_day`).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from nextbest.core.vocabulary import RETIRED_GROUPS


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)+")
#: What the log refuses as an e-mail address (the privacy audit log refuses it too).
EMAIL_PATTERN = _EMAIL
_PHONE_CHARS = re.compile(r"^\+?[\d\s().\-/]+$")
_FILE = re.compile(r"^decisions-(\d{4}-\d{2}-\d{2})\.jsonl$")


class PersonalDataError(ValueError):
    """A decision record carries something that looks like a raw email or phone number."""


def looks_like_email(text: str) -> bool:
    """True for strings holding something shaped like an e-mail address."""
    # The "@" test first: the regex alone is quadratic on long runs of word chars.
    return "@" in text and _EMAIL.search(text) is not None


def looks_like_phone(text: str) -> bool:
    """True for strings made of phone characters holding 7 to 15 digits."""
    if not _PHONE_CHARS.match(text):
        return False
    digits = sum(ch.isdigit() for ch in text)
    return 7 <= digits <= 15


def check_customer_id(customer_id: str) -> None:
    """Raise :class:`PersonalDataError` if a customer id looks like an email or a phone."""
    if "@" in customer_id or looks_like_email(customer_id):
        raise PersonalDataError("customer_id looks like an email address; pass the customer_id")
    if looks_like_phone(customer_id):
        raise PersonalDataError("customer_id looks like a phone number; pass the customer_id")


class DecisionLog:
    """Durable JSON-lines log of decision records under ``directory``."""

    def __init__(
        self,
        directory: str | Path,
        fsync: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.fsync = fsync
        #: The write time stamped on each line (``logged_at``); UTC now unless given.
        self.clock = clock or _now
        self.directory.mkdir(parents=True, exist_ok=True)
        self._paths: dict[date, Path] = {}  # every append asks for today's file

    def path_for(self, day: date) -> Path:
        """The file holding decisions taken on ``day`` (UTC)."""
        path = self._paths.get(day)
        if path is None:
            if len(self._paths) > 64:
                self._paths.clear()
            path = self._paths[day] = self.directory / f"decisions-{day.isoformat()}.jsonl"
        return path

    def append(self, records: Iterable[dict[str, Any]]) -> int:
        """Write records as one block and make it durable; returns the number written.

        Raises :class:`PersonalDataError` (and writes nothing) if any record carries a
        customer id that looks like an email or a phone, or an email anywhere in it.
        """
        blocks = self.encode(records)
        for day, block in blocks.items():
            self._write(self.path_for(day), block)
        return sum(block.count(b"\n") for block in blocks.values())

    def encode(self, records: Iterable[dict[str, Any]]) -> dict[date, bytes]:
        """The JSON lines of ``records`` by UTC day of ``decided_at``, each stamped with
        the write time ``logged_at`` (the log's clock; a record's own value is replaced),
        checked for personal data.

        Raises :class:`PersonalDataError` if any record carries a customer id that looks
        like an email or a phone, or an email anywhere in it.
        """
        by_day: dict[date, list[bytes]] = {}
        logged_at = self.clock().astimezone(UTC).isoformat()
        for rec in records:
            cid = rec.get("customer_id")
            if cid is not None:
                check_customer_id(str(cid))
            line = _dumps({**rec, "logged_at": logged_at})
            # The "@" test first: the regex alone is quadratic on long runs of word chars.
            if b"@" in line and _EMAIL.search(line.decode("utf-8", "replace")):
                raise PersonalDataError(
                    f"decision {rec.get('decision_id')} contains an email address"
                )
            by_day.setdefault(_day_of(rec), []).append(line)
        return {day: b"\n".join(lines) + b"\n" for day, lines in by_day.items()}

    def _write(self, path: Path, block: bytes) -> None:
        """One O_APPEND write of the whole block, then fsync."""
        fd = lock_for_append(path, os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640))
        try:
            view = memoryview(block)
            written = os.write(fd, view)
            while written < len(block):  # a short write only happens on full disks/signals
                written += os.write(fd, view[written:])
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)


def lock_for_append(path: Path, fd: int) -> int:
    """``fd`` (open on ``path`` for appending) under a shared lock, or, when a rewrite
    replaced ``path`` since ``fd`` was opened, a new descriptor on the new file (locked);
    the caller writes, then unlocks or closes what this returns."""
    while True:
        fcntl.flock(fd, fcntl.LOCK_SH)
        if os.fstat(fd).st_nlink > 0:
            return fd
        os.close(fd)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)


def _rewrite(path: Path, keep: Any) -> tuple[int, bool]:
    """Replace ``path`` by its lines for which ``keep(record)`` holds, atomically and
    synced, under an exclusive lock, or remove it when no line is left; returns the lines
    removed (0: file untouched) and whether the file was removed."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with open(fd, "rb", closefd=False) as fh:
            lines = fh.read().splitlines(keepends=True)
        kept = [line for line in lines if line.strip() and keep(orjson.loads(line))]
        removed = sum(1 for line in lines if line.strip()) - len(kept)
        if removed and not kept:
            # Removed while locked: a writer waiting for the lock finds the file unlinked
            # and opens a new one (lock_for_append), so its line is not lost.
            path.unlink()
            _sync_dir(path.parent)
            return removed, True
        if removed:
            _replace(path, b"".join(kept))
        return removed, False
    finally:
        os.close(fd)  # releases the lock


def _replace(path: Path, data: bytes) -> None:
    """Write ``data`` beside ``path``, sync it, rename it over ``path``, sync the folder."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _sync_dir(path.parent)


def _sync_dir(folder: Path) -> None:
    dfd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def erase_customers(directory: str | Path, customer_ids: Iterable[str]) -> int:
    """Remove every decision record of ``customer_ids`` from the log; returns how many."""
    ids = frozenset(customer_ids)
    return sum(
        _rewrite(p, lambda rec: rec.get("customer_id") not in ids)[0]
        for p in _files(Path(directory), None, None)
    )


def retention_day(rec: dict[str, Any]) -> date:
    """The UTC day retention ages a record by: the later of its decision day and its
    write day (``logged_at``; a record written before the log stamped it has only the
    decision day)."""
    day = _day_of(rec)
    logged = _parse(rec.get("logged_at"))
    return max(day, logged.date()) if logged is not None else day


def drop_older(directory: str | Path, before: date) -> tuple[int, int]:
    """Delete the records whose :func:`retention_day` is before ``before``; returns the
    day files removed (nothing left in them) and the records deleted.

    A decision taken as of an old day but written recently (a back-dated batch) stays
    until its write day ages out. Only files of days before ``before`` are read: a record
    in a later file was decided, so is retained, on or after ``before``.
    """
    files = records = 0
    for p in _files(Path(directory), None, None):
        m = _FILE.match(p.name)
        if m and date.fromisoformat(m.group(1)) < before:
            removed, gone = _rewrite(p, lambda rec: retention_day(rec) >= before)
            records += removed
            files += gone
    return files, records


def _parse(t: Any) -> datetime | None:
    """A record's timestamp (ISO text or datetime) in UTC (naive read as UTC), or None."""
    if isinstance(t, str):
        t = datetime.fromisoformat(t)
    if isinstance(t, datetime):
        return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC)
    return None


def _now() -> datetime:
    return datetime.now(UTC)


def _day_of(rec: dict[str, Any]) -> date:
    """UTC day of a record's ``decided_at`` (today when absent)."""
    t = _parse(rec.get("decided_at"))
    return t.date() if t is not None else datetime.now(UTC).date()


def _files(directory: Path, since: datetime | None, until: datetime | None) -> list[Path]:
    out = []
    for p in sorted(directory.glob("decisions-*.jsonl")):
        m = _FILE.match(p.name)
        if not m:
            continue
        day = date.fromisoformat(m.group(1))
        if since is not None and day < since.astimezone(UTC).date():
            continue
        if until is not None and day > until.astimezone(UTC).date():
            continue
        out.append(p)
    return out


def _utc(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


LOG_COLUMNS = [
    "decision_id",
    "decided_at",
    "customer_id",
    "channel",
    "placement",
    "group",
    "chosen_action",
    "propensity",
    "explored",
    "reason",
    "top_score",
    "n_ranked",
    "n_excluded",
    "model_version",
    "policy_version",
    "catalog_version",
    "feature_snapshot_time",
    "ranked",
    "excluded",
]


def current_group(group: Any) -> Any:
    """A logged ``group`` under its current name: logs written by earlier versions say
    ``treatment`` for today's ``decided`` (``RETIRED_GROUPS``); the files are never
    rewritten, so every reader of the log maps it here."""
    return RETIRED_GROUPS.get(group, group) if isinstance(group, str) else group


def read_log(
    directory: str | Path, since: datetime | None = None, until: datetime | None = None
) -> pd.DataFrame:
    """Decision records as a flat DataFrame (one row per decision) for analysis.

    ``decided_at`` and ``feature_snapshot_time`` are UTC timestamps; ``since`` is
    inclusive, ``until`` exclusive. The nested ``ranked`` and ``excluded`` lists are kept
    as object columns next to their summaries. A retired ``group`` name reads as its
    current one (:func:`current_group`).
    """
    d = Path(directory)
    since, until = _utc(since), _utc(until)
    rows: list[dict[str, Any]] = []
    for path in _files(d, since, until):
        with path.open("rb") as fh:
            for raw in fh:
                if not raw.strip():
                    continue
                rec = json.loads(raw)
                ranked = rec.get("ranked") or []
                rows.append(
                    {
                        **{c: rec.get(c) for c in LOG_COLUMNS},
                        "group": current_group(rec.get("group")),
                        "top_score": ranked[0]["score"] if ranked else 0.0,
                        "n_ranked": len(ranked),
                        "n_excluded": len(rec.get("excluded") or []),
                    }
                )
    df = pd.DataFrame(rows, columns=LOG_COLUMNS)
    df["decided_at"] = pd.to_datetime(df["decided_at"], utc=True, format="ISO8601")
    df["feature_snapshot_time"] = pd.to_datetime(
        df["feature_snapshot_time"], utc=True, format="ISO8601"
    )
    df["propensity"] = df["propensity"].astype(float)
    if since is not None:
        df = df[df["decided_at"] >= pd.Timestamp(since)]
    if until is not None:
        df = df[df["decided_at"] < pd.Timestamp(until)]
    return df.sort_values("decided_at", kind="stable").reset_index(drop=True)

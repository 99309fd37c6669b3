"""Erasure of a person (``nextbest forget``, ``POST /admin/forget``), retention
(``nextbest retention apply``) and their append-only audit log (docs/privacy.md).

:func:`forget` checks everything before it changes anything: the identifier must name a
customer of this home and the reason must be given (and hold no e-mail address). Then the
person is tombstoned (:mod:`nextbest.customers.tombstone`) and removed from every store: the
table files under the home (raw exports, staged contract tables, unified record, feature
tables, identity decisions, scores; :mod:`nextbest.customers.erasure`), the online store, the
event ledger and the decision log. MLflow holds no customer rows (the logged model's
input example is a row of medians). An audit entry records who, when, why, a salted
hash of the identifier and the counts removed per store, never the raw value.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from nextbest.core.errors import InputError
from nextbest.core.settings import Settings
from nextbest.customers.erasure import (
    erase_online,
    erase_tables,
    find_person,
    plan_tables,
    table_files,
    write_atomic,
)
from nextbest.customers.normalise import identifier_key
from nextbest.customers.tombstone import add_to_tombstone, tombstone_hash, tombstone_path
from nextbest.decisions.decision_log import (
    EMAIL_PATTERN,
    drop_older,
    erase_customers,
    looks_like_phone,
)
from nextbest.decisions.ledger import Ledger

if TYPE_CHECKING:
    from collections.abc import Callable

    from nextbest.customers.erasure import Person

#: Folders under the home that are not tables of customer rows, or have their own eraser
#: here. A folder another owner erases says so itself (``nextbest.customers.erasure.OWN_ERASER``);
#: that owner passes its eraser as ``forget``'s ``also``.
_NOT_TABLES = ("mlartifacts", "feast", "privacy", "decisions")
_REASON_MAX = 500


def audit_path(settings: Settings) -> Path:
    """The append-only audit log of erasures and retention runs."""
    return settings.privacy_dir / "audit.jsonl"


def append_audit(settings: Settings, entry: dict[str, Any]) -> None:
    """Append one JSON line to the audit log and sync it."""
    path = audit_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, orjson.dumps(entry) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


def read_audit(settings: Settings) -> list[dict[str, Any]]:
    """Every audit entry, oldest first."""
    path = audit_path(settings)
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _check_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise InputError("reason: required (why the person is erased, for the audit log)")
    if len(reason) > _REASON_MAX:
        raise InputError(f"reason: at most {_REASON_MAX} characters")
    # A word of phone characters with 9 or more digits reads as a phone number (a date
    # such as 2026-12-06 has 8).
    phone = any(looks_like_phone(w) and sum(c.isdigit() for c in w) >= 9 for w in reason.split())
    if "@" in reason or EMAIL_PATTERN.search(reason) or phone:
        raise InputError("reason: must not hold an e-mail address or phone number")
    return reason


@dataclass
class ForgetReport:
    """What :func:`forget` removed, as written to the audit log."""

    action: str
    at: str
    actor: str
    reason: str
    identifier_type: str
    identifier_hash: str
    removed: dict[str, int] = field(default_factory=dict)
    tombstoned: int = 0


def forget(
    settings: Settings,
    identifier: str,
    id_type: str,
    reason: str,
    actor: str,
    also: Callable[[Person], dict[str, int]] | None = None,
) -> ForgetReport:
    """Erase the person ``identifier`` names from every store of the home, tombstone them
    and audit it; a bad identifier or reason raises :class:`InputError` (an unknown one
    :class:`nextbest.customers.erasure.UnknownPersonError`) with nothing changed.

    ``also`` erases the person from stores this module does not know (the caller's own),
    returning the rows removed per store for the audit entry. It runs after the checks
    and before the identity lookup is rewritten, so a failed run can still be repeated.
    """
    reason = _check_reason(reason)
    actor = (actor or "").strip() or "unknown"
    salt = settings.identifier_salt
    person = find_person(settings, id_type, identifier)
    plan = plan_tables(table_files(settings.root, skip=_NOT_TABLES), person, salt)
    # The identity lookup goes last: until it is rewritten, a failed run can be repeated.
    lookup = settings.features_dir / "identity_lookup.parquet"
    plan = dict(sorted(plan.items(), key=lambda kv: kv[0] == lookup))

    # Tombstoned before anything is erased: a build running meanwhile leaves them out.
    tombstoned = add_to_tombstone(tombstone_path(settings.privacy_dir), person.tombstone(salt))
    removed: Counter[str] = Counter()
    if (settings.feast_dir / "registry.db").exists():
        removed["online_store"] = erase_online(settings, person)
    if settings.ledger_path.exists():
        ledger = Ledger(settings.ledger_path)
        try:
            removed["ledger"] = ledger.erase_customers([person.customer_id])
        finally:
            ledger.close()
    removed["decision_log"] = erase_customers(settings.decision_log_dir, person.customer_ids)
    if also is not None:
        removed.update(also(person))
    for path, n in erase_tables(plan).items():
        removed[Path(path).relative_to(settings.root).parts[0]] += n
    report = ForgetReport(
        action="forget",
        at=datetime.now(UTC).isoformat(),
        actor=actor,
        reason=reason,
        identifier_type=id_type,
        identifier_hash=tombstone_hash(identifier_key(id_type, identifier, salt), salt),
        removed=dict(sorted(removed.items())),
        tombstoned=tombstoned,
    )
    append_audit(settings, asdict(report))
    return report


# --- retention ------------------------------------------------------------------------------

#: Event-time column of the source-export tables retention ages out, first one found.
EVENT_TIME_COLUMNS = ("ts", "exposed_at", "opened_at")
#: Tables retention never touches: consent (proof of consent).
_KEEP_TABLES = ("consent", "consent_events")


@dataclass
class RetentionReport:
    """What one retention run deleted, as written to the audit log."""

    action: str
    at: str
    actor: str
    settings: dict[str, int | None]
    removed: dict[str, int] = field(default_factory=dict)


def _event_tables(folder: Path) -> list[tuple[Path, str]]:
    """The parquet tables directly under ``folder`` with an event-time column, consent
    excepted, and that column."""
    out = []
    if not folder.exists():
        return out
    for path in sorted(folder.glob("*.parquet")):
        if path.stem in _KEEP_TABLES:
            continue
        names = pq.read_schema(path).names
        column = next((c for c in EVENT_TIME_COLUMNS if c in names), None)
        if column is not None:
            out.append((path, column))
    return out


def apply_retention(settings: Settings, actor: str, now: datetime | None = None) -> RetentionReport:
    """Delete what is older than the retention settings allow (a setting of None keeps
    everything of its store), then audit the run.

    ``retention_decision_log_days``: decision records by the later of their decision
    and write times (:func:`nextbest.decisions.decision_log.retention_day`), so a batch back-dated
    with ``--as-of`` lives as long as one decided the day it was written;
    ``retention_ledger_days``: ledger events, consent changes and identify events kept;
    ``retention_raw_days``: rows of the source-export event tables (raw/ and contract/:
    baskets, app and web events, contacts, service cases) dated before the cutoff;
    identity records (accounts) and consent are kept.
    """
    now = now or datetime.now(UTC)
    removed: dict[str, int] = {}
    if settings.retention_decision_log_days is not None:
        cutoff = (now - timedelta(days=settings.retention_decision_log_days)).date()
        files, records = drop_older(settings.decision_log_dir, cutoff)
        removed["decision_log_files"], removed["decision_log"] = files, records
    if settings.retention_ledger_days is not None and settings.ledger_path.exists():
        ledger = Ledger(settings.ledger_path)
        try:
            cutoff_s = (now - timedelta(days=settings.retention_ledger_days)).timestamp()
            removed["ledger"] = ledger.drop_before(cutoff_s)
        finally:
            ledger.close()
    if settings.retention_raw_days is not None:
        cutoff_ts = pa.scalar(now - timedelta(days=settings.retention_raw_days))
        for folder in (settings.raw_dir, settings.contract_dir):
            for path, column in _event_tables(folder):
                table = pq.read_table(path)
                times = table.column(column)
                old = pc.fill_null(pc.less(times, cutoff_ts.cast(times.type)), False)
                n = int(pc.sum(old).as_py() or 0)
                if n:
                    kept = table.filter(pc.invert(old))
                    write_atomic(path, lambda tmp, t=kept: pq.write_table(t, tmp))
                key = f"{folder.name}/{path.stem}"
                removed[key] = n
    report = RetentionReport(
        action="retention",
        at=now.isoformat(),
        actor=(actor or "").strip() or "unknown",
        settings={
            "decision_log_days": settings.retention_decision_log_days,
            "ledger_days": settings.retention_ledger_days,
            "raw_days": settings.retention_raw_days,
        },
        removed=removed,
    )
    append_audit(settings, asdict(report))
    return report

"""Erasure of one person from the customer data: who they are, and every row of them.

:func:`find_person` resolves an identifier to the unified customer through the home's
identity lookup table and gathers the person's traces: the customer id, the identity
records of their cluster (``unified/identity.parquet``) and their identity lookup keys
(every hashed email, phone and native id of the cluster). :func:`plan_tables` finds, in
every table file under a folder (parquet and CSV: raw exports, staged contract tables,
the unified record, feature tables, human identity decisions, batch scores), the rows
that name the person; :func:`erase_tables` rewrites those files without them (each
atomically, synced). :func:`erase_online` deletes the person's online rows (Feast's
SQLite or Redis online store).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from nextbest.core.errors import InputError
from nextbest.core.settings import Settings
from nextbest.core.sqlite_tx import immediate_transaction
from nextbest.customers.feast_store import feature_store
from nextbest.customers.id_map import ALL, IdMapFile
from nextbest.customers.normalise import identifier_key, identifier_keys
from nextbest.customers.tombstone import IDENTIFIER_COLUMNS, record_key, tombstone_hash

#: Native id column of each source's exports -> the source its values belong to.
NATIVE_COLUMNS: dict[str, str] = {
    "crm_id": "crm",
    "lead_id": "email_lead",
    "loyalty_id": "loyalty",
    "app_account_id": "app",
    "device_id": "web",
}
#: Columns holding canonical record ids.
RECORD_COLUMNS = ("record_id", "record_id_a", "record_id_b")


class UnknownPersonError(InputError):
    """No customer has the identifier asked for."""


@dataclass(frozen=True)
class Person:
    """Everything that names one unified customer in the home's tables."""

    customer_id: str
    record_ids: frozenset[str]
    #: The identity lookup keys of the customer (``email:<hash>``, ``customer_id:<id>``, ...).
    keys: frozenset[str]
    #: The customer's earlier ids merged into this one (the id map), whose rows are theirs.
    earlier_ids: frozenset[str] = frozenset()

    @property
    def customer_ids(self) -> frozenset[str]:
        """The customer id and every earlier id wholly the person's."""
        return self.earlier_ids | {self.customer_id}

    def natives(self, source: str) -> frozenset[str]:
        """The native ids of the person's records of ``source``."""
        prefix = source + ":"
        return frozenset(r[len(prefix) :] for r in self.record_ids if r.startswith(prefix))

    def tombstone(self, salt: str) -> set[str]:
        """The tombstone entries that keep this person out of later builds."""
        keys = {*self.keys, *(f"customer_id:{c}" for c in self.customer_ids)}
        keys |= {record_key(r) for r in self.record_ids}
        return {tombstone_hash(k, salt) for k in keys}


def find_person(settings: Settings, id_type: str, value: str) -> Person:
    """The person an identifier names, through the home's identity lookup table.

    Raises :class:`InputError` for an unknown id type or a value that is not a valid one,
    :class:`UnknownPersonError` when no customer has it; nothing is changed either way.
    """
    try:
        key = identifier_key(id_type, value, settings.identifier_salt)
    except ValueError as exc:
        raise InputError(f"identifier: {exc}") from None
    lookup_path = settings.features_dir / "identity_lookup.parquet"
    if not lookup_path.exists():
        raise InputError(
            f"no identity lookup table at {lookup_path}; run `nextbest features build`"
        )
    lookup = pd.read_parquet(lookup_path, columns=["identifier", "customer_id"])
    hit = lookup.loc[lookup["identifier"] == key, "customer_id"]
    if hit.empty:
        raise UnknownPersonError(f"identifier: no customer has this {id_type}")
    customer_id = str(hit.iloc[0])
    keys = frozenset(lookup.loc[lookup["customer_id"] == customer_id, "identifier"].astype(str))
    identity_path = settings.unified_dir / "identity.parquet"
    records: frozenset[str] = frozenset()
    if identity_path.exists():
        identity = pd.read_parquet(identity_path, columns=["record_id", "customer_id"])
        records = frozenset(identity.loc[identity["customer_id"] == customer_id, "record_id"])
    aliases = IdMapFile(settings.root).get().aliases(customer_id)
    earlier = frozenset(k for k, scope in aliases.items() if scope == ALL) - {customer_id}
    return Person(customer_id, records, keys | {key}, earlier)


def _strings(s: pd.Series) -> pd.Series:
    return s.astype(object).where(s.notna(), None).map(lambda v: None if v is None else str(v))


def rows_of(frame: pd.DataFrame, person: Person, salt: str) -> np.ndarray:
    """Which rows of a table name ``person``: a record id of theirs, their customer id, a
    native id of their records, or an identifier whose key is theirs (email, phone, ... or
    an ``id_type``/``id_value`` pair, or an ``identifier`` key)."""
    hit = np.zeros(len(frame), dtype=bool)
    if frame.empty:
        return hit
    cols = set(frame.columns)
    for col in RECORD_COLUMNS:
        if col in cols:
            hit |= _strings(frame[col]).isin(person.record_ids).to_numpy()
    if "customer_id" in cols:
        hit |= _strings(frame["customer_id"]).isin(person.customer_ids).to_numpy()
    if "identifier" in cols:
        hit |= _strings(frame["identifier"]).isin(person.keys).to_numpy()
    for col, source in NATIVE_COLUMNS.items():
        if col in cols:
            hit |= _strings(frame[col]).isin(person.natives(source)).to_numpy()
    for col in IDENTIFIER_COLUMNS:
        if col in cols:
            keys = identifier_keys(col, _strings(frame[col]).reset_index(drop=True), salt)
            hit |= keys.isin(person.keys).to_numpy()
    if {"id_type", "id_value"} <= cols:
        types = _strings(frame["id_type"]).reset_index(drop=True)
        known = types.isin(IDENTIFIER_COLUMNS).to_numpy()
        if known.any():
            values = _strings(frame["id_value"]).reset_index(drop=True)
            keys = identifier_keys(types[known], values[known], salt)
            hit[known] |= keys.isin(person.keys).to_numpy()
    return hit


#: A folder holding a file of this name has an eraser of its own (its owner passes it to
#: :func:`nextbest.decisions.privacy.forget` as ``also``): the product's walk leaves it unread.
OWN_ERASER = ".own-eraser"


def table_files(folder: Path, skip: Iterable[str] = ()) -> list[Path]:
    """Every parquet and CSV file under ``folder``, except under the ``skip`` folders and
    under folders that hold an :data:`OWN_ERASER` file."""
    skipped = [Path(folder) / s for s in skip]
    skipped += [marker.parent for marker in Path(folder).rglob(OWN_ERASER)]
    return sorted(
        p
        for p in Path(folder).rglob("*")
        if p.suffix in (".parquet", ".csv")
        and p.is_file()
        and not any(p.is_relative_to(s) for s in skipped)
    )


def _read(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    return pd.read_parquet(path)


def plan_tables(files: Iterable[Path], person: Person, salt: str) -> dict[Path, np.ndarray]:
    """For each file holding rows of ``person``, the mask of those rows (nothing written;
    each file read once)."""
    plan: dict[Path, np.ndarray] = {}
    for path in files:
        mask = rows_of(_read(path), person, salt)
        if mask.any():
            plan[path] = mask
    return plan


def write_atomic(path: Path, write: Any) -> None:
    """``write(tmp)`` beside ``path``, synced, then renamed over ``path``."""
    tmp = path.with_name(f".{path.name}.erasing")
    write(tmp)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def erase_tables(plan: dict[Path, np.ndarray]) -> dict[str, int]:
    """Rewrite each planned file without its masked rows (schema kept; each file replaced
    atomically and synced); returns the rows removed per file."""
    removed: dict[str, int] = {}
    for path, mask in plan.items():
        if path.suffix == ".csv":
            frame = _read(path).loc[~mask]
            write_atomic(path, lambda tmp, f=frame: f.to_csv(tmp, index=False))
        else:
            table = pq.read_table(path).filter(pa.array(~mask))
            write_atomic(path, lambda tmp, t=table: pq.write_table(t, tmp))
        removed[str(path)] = int(mask.sum())
    return removed


def erase_online(settings: Settings, person: Person) -> int:
    """Delete the person's rows from the online store (every customer view's row of the
    customer id, every identity lookup row of their keys); returns the rows deleted."""
    store = feature_store(settings)
    config = store.config
    targets: list[tuple[Any, list[str]]] = []
    for fv in store.list_feature_views():
        join_key = fv.entity_columns[0].name
        values = sorted(person.customer_ids) if join_key == "customer_id" else sorted(person.keys)
        targets.append((fv, [join_key, *values]))
    if settings.online_store == "redis":
        return _erase_redis(config, targets)
    return _erase_sqlite(config, targets)


def _entity_key(join_key: str, value: str) -> Any:
    # lazy: feast loads after import_feast, and only where a store is used
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    return EntityKey(join_keys=[join_key], entity_values=[Value(string_val=value)])


def _erase_sqlite(config: Any, targets: list[tuple[Any, list[str]]]) -> int:
    # lazy: feast loads after import_feast, and only where a store is used
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.infra.online_stores.helpers import compute_table_id

    version = config.entity_key_serialization_version
    versioning = getattr(config.registry, "enable_online_feature_view_versioning", False)
    # secure_delete: the freed pages are zeroed, so the deleted rows leave the file.
    with immediate_transaction(config.online_store.path, pragmas=("secure_delete=ON",)) as conn:
        n = 0
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for fv, (join_key, *values) in targets:
            table = compute_table_id(config.project, fv, versioning)
            if table not in tables:  # a view never materialised holds no rows
                continue
            keys = [serialize_entity_key(_entity_key(join_key, v), version) for v in values]
            marks = ",".join("?" * len(keys))
            sql = f'DELETE FROM "{table}" WHERE entity_key IN ({marks})'
            n += conn.execute(sql, keys).rowcount
    return n


def _erase_redis(config: Any, targets: list[tuple[Any, list[str]]]) -> int:
    # lazy: feast loads after import_feast, and only where a store is used
    from feast.infra.online_stores.helpers import _redis_key
    from feast.infra.online_stores.redis import RedisOnlineStore

    client = RedisOnlineStore()._get_client(config.online_store)
    version = config.entity_key_serialization_version
    # One Redis hash per entity holds every view's features of it.
    keys = {
        _redis_key(config.project, _entity_key(join_key, v), version)
        for _, (join_key, *values) in targets
        for v in values
    }
    return int(client.delete(*keys)) if keys else 0

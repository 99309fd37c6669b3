"""Stable customer ids and the id map: a customer id, once issued, stays with the person.

Identity resolution clusters records afresh on every run; this module turns the run's
clusters into ids that survive it (docs/identity.md, "Stable customer ids"):

- each id issued before goes with the cluster that holds most of its records (ties: the
  cluster of the smallest record id);
- a cluster that several earlier ids go with (a **merge**) keeps the oldest of them (the
  first issued; ties by id) and each other one becomes its alias;
- an id whose records now sit in several clusters (a **split**) stays with the cluster
  holding most of them; every other cluster that took some of its records gets a safety
  link from it: consent withdrawals, cases and complaints recorded under the old id apply
  there too, because nobody can tell which side they were about;
- a cluster no earlier id goes with gets a new id, ``"C" + sha1(smallest record_id)[:12]``,
  never one issued before.

Every change is kept in ``<home>/identity/id_map.parquet`` (old id, new id, when, kind
``merge`` or ``split``, cause ``export`` or ``correction``, scope ``all`` or ``safety``),
append-only, beside the last assignment of each record (``ids.parquet``) and every id
ever issued (``issued.parquet``). :class:`IdMap` reads the changes back: the ledger, the
consent history, the feature build, erasure and measurement ask it which stored ids belong
to a customer now.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

#: Every event of the old id applies to the new one (a merge).
ALL = "all"
#: Only the events that are safe to over-apply: withdrawals, cases, complaints (a split).
SAFETY = "safety"
MERGE = "merge"
SPLIT = "split"
#: What changed the clusters: a source export (new, changed or removed records) or a
#: human decision (``nextbest identity link|split``, an ``identify`` review).
EXPORT = "export"
CORRECTION = "correction"

MAP_COLUMNS: tuple[str, ...] = ("old_id", "new_id", "at", "kind", "cause", "scope")
_FILES = {"ids": "ids.parquet", "issued": "issued.parquet", "map": "id_map.parquet"}


def identity_dir(root: Path) -> Path:
    """The durable identity folder of a home (kept across rebuilds of ``unified/``)."""
    return Path(root) / "identity"


def id_map_path(root: Path) -> Path:
    """The id map of a home."""
    return identity_dir(root) / _FILES["map"]


def new_id(record_id: str, salt: int = 0) -> str:
    """The id a new cluster gets from its smallest record id (``salt`` > 0 on a clash)."""
    key = record_id if salt == 0 else f"{record_id}#{salt}"
    return "C" + hashlib.sha1(key.encode()).hexdigest()[:12]


# --- assignment --------------------------------------------------------------------------


@dataclass(frozen=True)
class Registry:
    """What earlier runs left: each record's id and every id issued, in issue order."""

    ids: Mapping[str, str]
    issued: Sequence[str]
    issued_at: Sequence[float]

    @classmethod
    def empty(cls) -> Registry:
        """No earlier run."""
        return cls({}, (), ())


@dataclass(frozen=True)
class Assignment:
    """The stable id of each record of a run and what changed."""

    customer_ids: np.ndarray
    changes: pd.DataFrame  # MAP_COLUMNS
    issued: list[str]


def _claims(prev: pd.Series, labels: np.ndarray) -> pd.DataFrame:
    """Records per (earlier id, cluster), each earlier id's home cluster marked."""
    df = pd.DataFrame({"prev": prev.to_numpy(object), "label": labels})
    df = df.loc[df["prev"].notna()]
    counts = df.groupby(["prev", "label"], sort=True).size().rename("n").reset_index()
    # Most records first, then the cluster with the smallest record id (the lower rank).
    ranked = counts.sort_values(["prev", "n", "label"], ascending=[True, False, True])
    ranked["home"] = ~ranked.duplicated("prev")
    return ranked


def _corrected(
    pairs: Sequence[tuple[str, str]],
    rid: pd.Series,
    prev: pd.Series,
    labels: np.ndarray,
    together: bool,
) -> set[str]:
    """Earlier ids a human decision changed: a link whose two records had different ids
    and are together now (``together``), or a split whose records had one id and are
    apart now."""
    if not pairs:
        return set()
    index = pd.Index(rid)
    a = index.get_indexer([p[0] for p in pairs])
    b = index.get_indexer([p[1] for p in pairs])
    ok = (a >= 0) & (b >= 0)
    a, b = a[ok], b[ok]
    pa, pb = prev.to_numpy(object)[a], prev.to_numpy(object)[b]
    same_now = labels[a] == labels[b]
    hit = same_now & (pa != pb) if together else ~same_now & (pa == pb)
    return {x for x in (*pa[hit], *pb[hit]) if x is not None}


def _smallest(rid: pd.Series, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each cluster code and its smallest record id (vectorised: a sort, not a groupby)."""
    order = np.argsort(rid.to_numpy(object), kind="stable")
    codes, first = np.unique(labels[order], return_index=True)
    return codes, rid.to_numpy(object)[order[first]]


def assign_stable_ids(
    record_ids: np.ndarray,
    labels: np.ndarray,
    registry: Registry,
    now: float,
    links: Sequence[tuple[str, str]] = (),
    splits: Sequence[tuple[str, str]] = (),
) -> Assignment:
    """Stable ids for one run's clusters.

    ``labels[i]``: the cluster code (0..k-1) of ``record_ids[i]``; ties between clusters
    go to the one with the smaller record id. ``links``/``splits``: the human decisions'
    record pairs, to tell a correction from an export change.
    """
    n = int(labels.max()) + 1 if len(labels) else 0
    rid = pd.Series(record_ids, dtype=object)
    prev = rid.map(registry.ids) if registry.ids else pd.Series([None] * len(rid), dtype=object)
    codes, smallest = _smallest(rid, labels)
    rank = np.empty(n, dtype=np.int64)
    rank[codes] = np.arange(len(codes))
    order = {cid: i for i, cid in enumerate(registry.issued)}
    claims = _claims(prev, rank[labels])
    claims["label"] = codes[claims["label"].to_numpy(np.int64)]
    homes = claims.loc[claims["home"]].copy()
    homes["order"] = homes["prev"].map(order).fillna(len(order))
    homes = homes.sort_values(["label", "order", "prev"])
    kept = ~homes["label"].duplicated()

    id_of = np.full(n, None, dtype=object)
    id_of[homes.loc[kept, "label"].to_numpy(np.int64)] = homes.loc[kept, "prev"].to_numpy(object)
    linked = _corrected(links, rid, prev, labels, together=True)
    parted = _corrected(splits, rid, prev, labels, together=False)

    changes: list[tuple[str, str, float, str, str, str]] = []
    merged = homes.loc[~kept]
    for other, label in zip(merged["prev"], merged["label"], strict=True):
        cause = CORRECTION if other in linked else EXPORT
        changes.append((other, id_of[label], now, MERGE, cause, ALL))

    taken = set(order)
    taken.update(x for x in id_of if x is not None)
    issued: list[str] = []
    for label, first in zip(codes, smallest, strict=True):
        if id_of[label] is not None:
            continue
        salt, cid = 0, new_id(first)
        while cid in taken:
            salt += 1
            cid = new_id(first, salt)
        taken.add(cid)
        issued.append(cid)
        id_of[label] = cid

    away = claims.loc[~claims["home"]]
    for old, label in zip(away["prev"], away["label"], strict=True):
        cause = CORRECTION if old in parted else EXPORT
        changes.append((old, id_of[label], now, SPLIT, cause, SAFETY))

    table = pd.DataFrame(changes, columns=list(MAP_COLUMNS))
    return Assignment(id_of[labels], table, issued)


# --- storage -----------------------------------------------------------------------------


def _replace(df: pd.DataFrame, path: Path) -> None:
    """Write ``df`` next to ``path`` and rename it into place (readers see old or new)."""
    tmp = path.with_name(path.name + ".tmp")
    df.to_parquet(tmp, index=False)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_registry(root: Path, fallback: Path | None = None) -> Registry:
    """The registry of a home; a home resolved before ids were stable starts from its
    last ``fallback`` assignment (``unified/identity.parquet``)."""
    folder = identity_dir(root)
    ids_path = folder / _FILES["ids"]
    if ids_path.exists():
        ids = pd.read_parquet(ids_path)
        issued = pd.read_parquet(folder / _FILES["issued"])
        return Registry(
            dict(zip(ids["record_id"], ids["customer_id"], strict=True)),
            list(issued["customer_id"]),
            list(issued["issued_at"]),
        )
    if fallback is not None and fallback.exists():
        ids = pd.read_parquet(fallback, columns=["record_id", "customer_id"])
        first = sorted(ids["customer_id"].unique())
        return Registry(
            dict(zip(ids["record_id"], ids["customer_id"], strict=True)),
            first,
            [0.0] * len(first),
        )
    return Registry.empty()


def save_assignment(
    root: Path, registry: Registry, record_ids: np.ndarray, result: Assignment, now: float
) -> None:
    """Persist a run: the records' ids, the ids issued, and the changes appended."""
    folder = identity_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    issued = pd.DataFrame(
        {
            "customer_id": [*registry.issued, *result.issued],
            "issued_at": [*registry.issued_at, *([now] * len(result.issued))],
        }
    )
    old = read_changes(root)
    parts = [t for t in (old, result.changes) if len(t)]
    changes = pd.concat(parts, ignore_index=True) if parts else result.changes
    ids = pd.DataFrame({"record_id": record_ids, "customer_id": result.customer_ids})
    # The map first: a reader that sees the new ids must already see how to reach them.
    _replace(changes.astype({"at": "float64"}), folder / _FILES["map"])
    _replace(issued, folder / _FILES["issued"])
    _replace(ids, folder / _FILES["ids"])


def read_changes(root: Path) -> pd.DataFrame:
    """Every id change of a home, oldest first (empty when ids never changed)."""
    path = id_map_path(root)
    if not path.exists():
        return pd.DataFrame({c: pd.Series(dtype=object) for c in MAP_COLUMNS})
    return pd.read_parquet(path)


def stabilise(
    root: Path,
    record_ids: np.ndarray,
    labels: np.ndarray,
    previous: Path | None = None,
    links: Sequence[tuple[str, str]] = (),
    splits: Sequence[tuple[str, str]] = (),
    now: float | None = None,
) -> Assignment:
    """The resolve step's id assignment for a home: read the registry, assign, persist."""
    at = time.time() if now is None else now
    registry = load_registry(root, previous)
    result = assign_stable_ids(record_ids, labels, registry, at, links, splits)
    save_assignment(root, registry, record_ids, result, at)
    return result


# --- reading through the map -------------------------------------------------------------


class IdMap:
    """Which stored ids belong to which customer now (built from the change table)."""

    def __init__(self, changes: pd.DataFrame | None = None) -> None:
        self._forward: dict[str, list[tuple[str, str]]] = {}
        self._back: dict[str, list[tuple[str, str]]] = {}
        if changes is not None and len(changes):
            for old, new, scope in zip(
                changes["old_id"], changes["new_id"], changes["scope"], strict=True
            ):
                self._forward.setdefault(old, []).append((new, scope))
                self._back.setdefault(new, []).append((old, scope))

    def __bool__(self) -> bool:
        return bool(self._forward)

    def current(self, customer_id: str) -> str:
        """Where an id's person is now: followed through merges (itself if current)."""
        seen = {customer_id}
        cid = customer_id
        while True:
            nxt = [n for n, s in self._forward.get(cid, ()) if s == ALL and n not in seen]
            if not nxt:
                return cid
            cid = nxt[0]
            seen.add(cid)

    def aliases(self, customer_id: str) -> dict[str, str]:
        """Every stored id whose events belong to ``customer_id`` now, with the scope
        (``all``, or ``safety`` when any step on the way is a split); itself is ``all``."""
        out = {customer_id: ALL}
        todo = [customer_id]
        while todo:
            cid = todo.pop()
            for old, scope in self._back.get(cid, ()):
                s = ALL if scope == ALL and out[cid] == ALL else SAFETY
                if old not in out or (s == ALL and out[old] == SAFETY):
                    out[old] = s
                    todo.append(old)
        return out

    def expand(self, customer_ids: Iterable[str]) -> dict[str, list[tuple[str, str]]]:
        """Stored id -> the asked customers it belongs to, each with its scope."""
        out: dict[str, list[tuple[str, str]]] = {}
        for cid in dict.fromkeys(customer_ids):
            for stored, scope in self.aliases(cid).items():
                out.setdefault(stored, []).append((cid, scope))
        return out

    def targets(self, stored_id: str) -> list[tuple[str, str]]:
        """The customers now holding a stored id's events, each with its scope."""
        out: dict[str, str] = {}
        todo = [(stored_id, ALL)]
        seen = {stored_id}
        while todo:
            cid, scope = todo.pop()
            nxt = self._forward.get(cid, ())
            if not any(s == ALL for _, s in nxt):
                out[cid] = ALL if scope == ALL or out.get(cid) == ALL else SAFETY
            for new, s in nxt:
                if new not in seen:
                    seen.add(new)
                    todo.append((new, ALL if s == ALL and scope == ALL else SAFETY))
        return sorted(out.items())


class IdMapFile:
    """An :class:`IdMap` that re-reads its file when a resolve has replaced it."""

    def __init__(self, root: Path) -> None:
        self.path = id_map_path(root)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._map = IdMap()

    def get(self) -> IdMap:
        """The current map (one ``stat`` per call; a re-read only after a change)."""
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            return self._map if self._stamp is None else self._reset()
        if stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    self._map = IdMap(pd.read_parquet(self.path))
                    self._stamp = stamp
        return self._map

    def _reset(self) -> IdMap:
        with self._lock:
            self._map, self._stamp = IdMap(), None
        return self._map

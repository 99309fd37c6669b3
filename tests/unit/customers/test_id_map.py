"""Stable customer ids: a cluster keeps its id, a merge keeps the oldest, a split issues a
new id with a safety link, no id is issued twice, and the map reads back transitively."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nextbest.customers.id_map import (
    ALL,
    CORRECTION,
    EXPORT,
    MERGE,
    SAFETY,
    SPLIT,
    IdMap,
    IdMapFile,
    new_id,
    read_changes,
    stabilise,
)

RECORDS = np.array(["a", "b", "c", "d", "e"], dtype=object)


def _run(root: Path, labels: list[int], records: np.ndarray = RECORDS, **kw) -> np.ndarray:
    return stabilise(root, records, np.asarray(labels, dtype=np.int64), now=len(kw) + 1.0, **kw)


@pytest.fixture
def first(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """Run 1: {a, b}, {c}, {d, e}."""
    res = _run(tmp_path, [0, 0, 1, 2, 2])
    return tmp_path, res.customer_ids


def test_first_run_names_clusters_by_their_smallest_record(first) -> None:
    _, ids = first
    assert list(ids) == [new_id("a"), new_id("a"), new_id("c"), new_id("d"), new_id("d")]


def test_the_same_clusters_keep_their_ids_and_record_nothing(first) -> None:
    root, ids = first
    again = _run(root, [0, 0, 1, 2, 2])
    assert list(again.customer_ids) == list(ids)
    assert again.changes.empty and again.issued == []
    assert read_changes(root).empty


def test_a_cluster_that_loses_its_smallest_record_keeps_its_id(first) -> None:
    root, ids = first
    # "a" is gone from the export: the cluster {b} keeps the id a's hash named.
    res = _run(root, [0, 1, 2, 2], records=RECORDS[1:])
    assert res.customer_ids[0] == ids[0]


def test_a_merge_keeps_the_oldest_id_and_aliases_the_other(first) -> None:
    root, ids = first
    res = _run(root, [0, 0, 0, 1, 1])
    assert set(res.customer_ids[:3]) == {ids[0]}  # both first issued; ties by id
    ch = res.changes.iloc[0]
    assert (ch.old_id, ch.new_id, ch.kind, ch.cause, ch.scope) == (
        ids[2],
        ids[0],
        MERGE,
        EXPORT,
        ALL,
    )
    m = IdMap(read_changes(root))
    assert m.current(ids[2]) == ids[0]
    assert m.aliases(ids[0]) == {ids[0]: ALL, ids[2]: ALL}


def test_a_merge_keeps_the_id_issued_first_not_the_smaller(tmp_path: Path) -> None:
    _run(tmp_path, [0, 1], records=np.array(["x", "y"], dtype=object))  # both at time 1
    late = _run(tmp_path, [0, 1, 2], records=np.array(["x", "y", "a"], dtype=object))
    newest = late.customer_ids[2]
    assert late.issued == [newest]
    merged = _run(tmp_path, [0, 1, 0], records=np.array(["x", "y", "a"], dtype=object))
    assert merged.customer_ids[2] == new_id("x") and merged.customer_ids[0] == new_id("x")
    assert merged.changes.iloc[0].old_id == newest


def test_a_split_keeps_the_id_on_the_larger_side_and_links_the_other_for_safety(first) -> None:
    root, ids = first
    res = _run(root, [0, 0, 1, 2, 3], splits=[("d", "e")])
    assert res.customer_ids[3] == ids[3]
    fresh = res.customer_ids[4]
    assert fresh not in set(ids) and res.issued == [fresh]
    ch = res.changes.iloc[-1]
    assert (ch.old_id, ch.new_id, ch.kind, ch.cause, ch.scope) == (
        ids[3],
        fresh,
        SPLIT,
        CORRECTION,
        SAFETY,
    )
    m = IdMap(read_changes(root))
    assert m.current(ids[3]) == ids[3]
    assert m.aliases(fresh) == {fresh: ALL, ids[3]: SAFETY}
    assert dict(m.targets(ids[3])) == {ids[3]: ALL, fresh: SAFETY}


def test_an_id_is_never_issued_twice(first) -> None:
    root, ids = first
    # c merges into a's customer; then c is on its own again: c's hash is taken (retired).
    _run(root, [0, 0, 0, 1, 1])
    res = _run(root, [0, 0, 1, 2, 2])
    assert res.customer_ids[2] not in set(ids)
    assert res.customer_ids[2] == new_id("c", 1)


def test_chains_are_followed(first) -> None:
    root, ids = first
    _run(root, [0, 0, 0, 1, 1])  # c -> a
    res = _run(root, [0, 0, 0, 0, 0])  # d -> a (a issued first: ties by id)
    assert set(res.customer_ids) == {ids[0]}
    m = IdMap(read_changes(root))
    assert set(m.aliases(ids[0])) == {ids[0], ids[2], ids[3]}
    assert m.targets(ids[2]) == [(ids[0], ALL)]


def test_a_home_resolved_before_stable_ids_keeps_its_ids(tmp_path: Path) -> None:
    legacy = tmp_path / "identity.parquet"
    pd.DataFrame({"record_id": ["a", "b"], "customer_id": ["Cold1", "Cold1"]}).to_parquet(legacy)
    res = stabilise(tmp_path, np.array(["a", "b", "c"], dtype=object), np.array([0, 0, 1]), legacy)
    assert list(res.customer_ids) == ["Cold1", "Cold1", new_id("c")]


def test_the_file_reader_sees_a_new_map(first) -> None:
    root, ids = first
    reader = IdMapFile(root)
    assert not reader.get()
    _run(root, [0, 0, 0, 1, 1])
    assert reader.get().current(ids[2]) == ids[0]

"""The SQLite write transaction: committed whole, rolled back whole, the lock taken at once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from nextbest.core.sqlite_tx import immediate_transaction


def _db(tmp_path: Path) -> Path:
    path = tmp_path / "t.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (v INTEGER)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    conn.close()
    return path


def _values(path: Path) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT v FROM t ORDER BY v")]
    finally:
        conn.close()


def test_the_block_is_committed_when_it_ends(tmp_path: Path) -> None:
    path = _db(tmp_path)
    with immediate_transaction(path, pragmas=("secure_delete=ON",)) as conn:
        assert conn.in_transaction
        assert conn.execute("PRAGMA secure_delete").fetchone()[0] == 1
        conn.execute("INSERT INTO t VALUES (2)")
        conn.execute("DELETE FROM t WHERE v = 1")
    assert _values(path) == [2]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_raising_block_changes_nothing(tmp_path: Path, error: type[BaseException]) -> None:
    path = _db(tmp_path)
    with pytest.raises(error), immediate_transaction(path) as conn:
        conn.execute("INSERT INTO t VALUES (2)")
        conn.execute("DELETE FROM t WHERE v = 1")
        raise error
    assert _values(path) == [1]
    # The connection was closed and the lock released: another writer gets in at once.
    with immediate_transaction(path, timeout=0.1) as conn:
        conn.execute("INSERT INTO t VALUES (3)")
    assert _values(path) == [1, 3]


def test_the_write_lock_is_taken_at_the_start(tmp_path: Path) -> None:
    path = _db(tmp_path)
    with immediate_transaction(path) as conn:
        conn.execute("SELECT v FROM t").fetchall()  # a read only, yet the lock is held
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            with immediate_transaction(path, timeout=0.1):
                pass


def test_a_block_that_ends_its_transaction_is_left_so(tmp_path: Path) -> None:
    path = _db(tmp_path)
    with immediate_transaction(path) as conn:
        conn.execute("INSERT INTO t VALUES (2)")
        conn.execute("ROLLBACK")
    assert _values(path) == [1]

"""One write transaction on a SQLite file: taken at once, committed or rolled back whole."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def immediate_transaction(
    path: str | Path, pragmas: Iterable[str] = (), timeout: float = 60.0
) -> Iterator[sqlite3.Connection]:
    """A connection to the SQLite file ``path`` inside ``BEGIN IMMEDIATE``.

    The write lock is taken at the start (a second writer waits up to ``timeout`` seconds
    there rather than failing halfway), so a read-then-write block sees no other writer's
    changes in between. The transaction is committed when the block ends, rolled back when
    it raises (interrupts included), and the connection closed either way; a block that
    ended the transaction itself is left as it ended it. Each of ``pragmas``
    (``"secure_delete=ON"``) is set on the connection before the transaction begins.
    """
    # Autocommit mode: the module's implicit transactions would otherwise begin (and
    # commit) on their own around the statements.
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    try:
        for pragma in pragmas:
            conn.execute(f"PRAGMA {pragma}")
        conn.execute("BEGIN IMMEDIATE")
        yield conn
        if conn.in_transaction:
            conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()

"""The decision log with group commit, for the online service: concurrent appends share
one ``fdatasync`` (see :class:`GroupCommitLog`)."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nextbest.decisions.decision_log import DecisionLog, lock_for_append


class GroupCommitLog(DecisionLog):
    """The decision log with group commit: concurrent appends share one ``fdatasync``.

    One writer thread owns the files: appends queue their encoded lines, and the writer
    writes everything queued (one ``write`` per file) and syncs once. An append is done
    only once its own lines are on disk: :meth:`append` blocks until then, and
    :meth:`append_async` returns a future that resolves then, so an asyncio handler can
    serve other requests meanwhile, whose decisions join the next sync. Files stay open
    (one per day), which saves the ``open``/``close`` per decision; ``fdatasync`` on an
    ``O_APPEND`` file also persists the new size, so the appended lines survive a crash.
    """

    def __init__(
        self,
        directory: str | Path,
        fsync: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(directory, fsync=fsync, clock=clock)
        self._cv = threading.Condition()
        self._pending: list[tuple[list[tuple[Path, bytes]], Future[int]]] = []
        self._writer: threading.Thread | None = None
        self._fds: dict[Path, int] = {}
        # Set while a thread writes and syncs the files: the writer, or an inline append.
        self._busy = False
        #: How many syncs ran and how many appends they carried (for benchmarks).
        self.syncs = 0
        self.appends = 0
        #: How many of those syncs ran in the appending thread (:meth:`append_inline`).
        self.inline_syncs = 0

    def append(self, records: Iterable[dict[str, Any]]) -> int:
        """Write records and return once they are on disk; returns the number written."""
        return self.append_async(records).result()

    def append_async(self, records: Iterable[dict[str, Any]]) -> Future[int]:
        """Queue records for the next group commit; the future resolves once they are on disk.

        Raises :class:`~nextbest.decisions.decision_log.PersonalDataError` at once (nothing queued)
        for a record that carries an email or phone.
        """
        return self._enqueue(self._blocks(records))

    def append_inline(self, records: Iterable[dict[str, Any]]) -> Future[int]:
        """Write and sync ``records`` in the calling thread if the writer is idle, else queue
        them as :meth:`append_async` does; either way a future that resolves once they are
        on disk (already resolved when written here).

        For a caller that has nothing else to do meanwhile (an event loop with no other
        request in flight): it saves the hand-off to the writer thread and back (two thread
        wake-ups and the GIL passed twice), ~0.1-0.3 ms of CPU per sync here. Personal
        data raises as in :meth:`append_async`.
        """
        blocks = self._blocks(records)
        with self._cv:
            if self._pending or self._busy or not blocks:
                return self._enqueue(blocks)
            self._busy = True
        fut: Future[int] = Future()
        fut.set_running_or_notify_cancel()
        try:
            self._flush([(blocks, fut)])
        except BaseException as exc:
            fut.set_exception(exc)
        else:
            self.syncs += 1
            self.appends += 1
            self.inline_syncs += 1
            fut.set_result(sum(block.count(b"\n") for _, block in blocks))
        finally:
            with self._cv:
                self._busy = False
                self._cv.notify()  # the writer may have been handed work meanwhile
        return fut

    def _blocks(self, records: Iterable[dict[str, Any]]) -> list[tuple[Path, bytes]]:
        return [(self.path_for(day), block) for day, block in self.encode(records).items()]

    def _enqueue(self, blocks: list[tuple[Path, bytes]]) -> Future[int]:
        fut: Future[int] = Future()
        fut.set_running_or_notify_cancel()
        if not blocks:
            fut.set_result(0)
            return fut
        with self._cv:
            self._pending.append((blocks, fut))
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(
                    target=self._run, name="decision-log-writer", daemon=True
                )
                self._writer.start()
            self._cv.notify()
        return fut

    def _fd(self, path: Path) -> int:
        fd = self._fds.get(path)
        if fd is not None and not _same_file(fd, path):
            # The file (or its directory) was moved or removed: lines go where the log is,
            # or the append fails, never into a file nobody reads any more.
            os.close(self._fds.pop(path))
            fd = None
        if fd is None:
            for old in list(self._fds):  # a new day: the old file is complete
                os.close(self._fds.pop(old))
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            self._fds[path] = fd
        return fd

    def check(self) -> None:
        """Raise ``OSError`` if the log cannot be written now: its directory missing or not
        writable, or today's file not writable (cheap: no write, no sync)."""
        if not self.directory.is_dir():
            raise NotADirectoryError(f"decision log directory missing: {self.directory}")
        path = self.path_for(datetime.now(UTC).date())
        target = path if path.exists() else self.directory
        if not os.access(target, os.W_OK):
            raise PermissionError(f"decision log not writable: {target}")

    def close(self, timeout: float = 10.0) -> None:
        """Wait (at most ``timeout`` seconds) until every queued append is on disk, then
        close the files (at shutdown)."""
        with self._cv:
            self._cv.wait_for(lambda: not self._pending and not self._busy, timeout)
            self._drop_files()

    def _drop_files(self) -> None:
        """Close every open file: after a failed write the next one reopens its file (a
        failed descriptor, or a file moved away, is not written to again)."""
        for path in list(self._fds):
            try:
                os.close(self._fds.pop(path))
            except OSError:
                pass

    def _flush(self, batch: list[tuple[list[tuple[Path, bytes]], Future[int]]]) -> None:
        try:
            self._write_and_sync(batch)
        except BaseException:
            self._drop_files()
            raise

    def _write_and_sync(self, batch: list[tuple[list[tuple[Path, bytes]], Future[int]]]) -> None:
        parts: dict[Path, list[bytes]] = {}
        for blocks, _ in batch:
            for path, block in blocks:
                parts.setdefault(path, []).append(block)
        for path, chunks in parts.items():
            # A file rewritten by erasure or retention is reopened (decision_log).
            fd = self._fds[path] = lock_for_append(path, self._fd(path))
            data = memoryview(b"".join(chunks))
            written = 0
            try:
                while written < len(data):  # one write per file; short writes: full disks
                    written += os.write(fd, data[written:])
                if self.fsync:
                    os.fdatasync(fd)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _run(self) -> None:
        """The writer: take everything queued, write and sync it, tell every appender."""
        while True:
            with self._cv:
                while not self._pending or self._busy:
                    self._cv.wait()
                batch, self._pending = self._pending, []
                self._busy = True
            try:
                self._flush(batch)
            except BaseException as exc:  # every appender of the batch must hear of it
                for _, fut in batch:
                    fut.set_exception(exc)
                continue
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()  # close() may be waiting for the queue to drain
            self.syncs += 1
            self.appends += len(batch)
            for blocks, fut in batch:
                fut.set_result(sum(block.count(b"\n") for _, block in blocks))

    def _write(self, path: Path, block: bytes) -> None:
        """One file's block through the writer (the base class's ``append`` path)."""
        self._enqueue([(path, block)]).result()


def _same_file(fd: int, path: Path) -> bool:
    """Whether the open ``fd`` is still the file at ``path`` (two stat calls per sync)."""
    try:
        st = os.stat(path)
    except OSError:  # gone, or its directory replaced
        return False
    own = os.fstat(fd)
    return (st.st_ino, st.st_dev) == (own.st_ino, own.st_dev)

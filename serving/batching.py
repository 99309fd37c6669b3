"""Micro-batching: the decisions of concurrent requests in one engine call and one group
commit of the decision log."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from serving.requests import DecideRequest
from serving.stages import CLOCKS, now_ns

if TYPE_CHECKING:
    from serving.decider import LoggedDecisions, OnlineDecider


class MicroBatcher:
    """Decisions of concurrent requests in one engine call and one group commit (asyncio).

    :meth:`decide` queues a request and returns at once with a future; the first request
    of a loop iteration schedules :meth:`_run` with ``call_soon``, so every request that
    reaches the handler before the loop turns (the requests the server read in the same
    wake-up) is decided and logged in the same ``OnlineDecider.decide_and_log`` call, and
    their records share one group commit. A request's future resolves only once its
    record is on disk: the log writer's completion is handed to the loop once per batch
    (one ``call_soon_threadsafe``), which then answers every request of the batch.

    With ``offload`` the decisions run on a thread of their own, not on the loop: for a
    feature store reached over the network (Redis through the Feast SDK), whose reads may
    wait up to the store timeout, while the loop goes on answering ``/livez`` and the rest.
    """

    def __init__(
        self,
        decider: OnlineDecider,
        max_batch: int = 64,
        inline_sync: bool = True,
        offload: bool = False,
    ) -> None:
        self.decider = decider
        self.max_batch = max_batch
        self._pool = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="decide") if offload else None
        )
        #: Sync a lone request's record in the loop's own thread (see ``_decide_batch``).
        self.inline_sync = inline_sync
        self._queue: list[tuple[DecideRequest, asyncio.Future[Any]]] = []
        self._scheduled = False
        self._queued_at = 0
        # Batches handed to the log and not yet answered.
        self._on_the_way = 0
        #: Engine calls and decisions so far (for benchmarks).
        self.calls = 0
        self.decisions = 0

    async def decide(self, request: DecideRequest) -> dict[str, Any]:
        """The decision-log record of ``request``, once it is on disk."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.append((request, fut))
        if not self._scheduled:
            self._scheduled = True
            self._queued_at = now_ns()
            loop.call_soon(self._run)
        # Only this request's own future: a client that goes away cancels it alone; the
        # batch's log write goes on and answers the others.
        return await fut

    def _run(self) -> None:
        self._scheduled = False
        queue, self._queue = self._queue, []
        # the wait of the batch's first request for its loop turn
        CLOCKS.add("queue", self._queued_at, len(queue))
        # One request alone in its loop turn: a sequential caller (under load, requests
        # arrive together, and those that arrive during an inline sync form a batch).
        alone = len(queue) == 1
        for start in range(0, len(queue), self.max_batch):
            batch = queue[start : start + self.max_batch]
            # A request alone in its loop turn, with no batch on its way to disk: the loop
            # has nothing to do while the disk syncs, so it syncs there, without the
            # writer thread. Otherwise the writer syncs while the loop decides the next
            # requests (syncing a batch inline would leave the loop idle under load).
            inline = self.inline_sync and alone and not self._on_the_way
            if self._pool is None:
                self._decide_batch(batch, inline)
            else:
                self._decide_in_thread(batch, inline)

    def _decide_in_thread(
        self, batch: list[tuple[DecideRequest, asyncio.Future[Any]]], inline: bool
    ) -> None:
        decided = asyncio.get_running_loop().run_in_executor(
            self._pool, self.decider.decide_and_log, [req for req, _ in batch], None, inline
        )

        def answer_them(done: asyncio.Future[Any]) -> None:  # back on the loop
            exc = done.exception()
            if exc is not None:
                self._fail(batch, exc)
            else:
                self._answer_when_logged(batch, done.result())

        decided.add_done_callback(answer_them)

    @staticmethod
    def _fail(batch: list[tuple[DecideRequest, asyncio.Future[Any]]], exc: BaseException) -> None:
        for _, fut in batch:
            if not fut.done():
                fut.set_exception(exc)

    def _decide_batch(
        self, batch: list[tuple[DecideRequest, asyncio.Future[Any]]], inline: bool = False
    ) -> None:
        try:
            decided = self.decider.decide_and_log([req for req, _ in batch], inline=inline)
        except Exception as exc:  # a bug, or a store down, must fail these requests only
            self._fail(batch, exc)
            return
        self._answer_when_logged(batch, decided)

    def _answer_when_logged(
        self, batch: list[tuple[DecideRequest, asyncio.Future[Any]]], decided: LoggedDecisions
    ) -> None:
        """Answer a refused request at once, the others once their log write is on disk."""
        self.calls += 1
        self.decisions += len(batch)
        for (_, fut), result in zip(batch, decided.results, strict=True):
            if isinstance(result, Exception) and not fut.done():  # nothing logged: at once
                fut.set_exception(result)
        for write, positions in decided.writes:
            waiting = [(batch[i][1], decided.results[i]) for i in positions]
            self._when_logged(write, waiting, decided.logged_at)

    def _when_logged(
        self,
        logged: Future[int],
        waiting: list[tuple[asyncio.Future[Any], Any]],
        start: int = 0,
    ) -> None:
        """Answer ``waiting`` on this loop once ``logged`` (the writer's future) is done;
        the time since ``start`` (the append) is the log stage of these decisions."""
        loop = asyncio.get_running_loop()
        self._on_the_way += 1

        def answer(done: Future[int]) -> None:
            self._on_the_way -= 1
            if start:
                CLOCKS.add("log", start, len(waiting))
            exc = done.exception()
            for fut, record in waiting:
                if fut.done():  # the client went away
                    continue
                if exc is not None:
                    fut.set_exception(exc)
                else:
                    fut.set_result(record)

        def on_disk(done: Future[int]) -> None:  # runs on the writer thread
            try:
                loop.call_soon_threadsafe(answer, done)
            except RuntimeError:  # the loop closed meanwhile: nobody is waiting any more
                pass

        if logged.done():  # synced inline, on this loop's thread: answer at once
            answer(logged)
        else:
            logged.add_done_callback(on_disk)

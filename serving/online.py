"""The online decision path: identifier -> customer -> online features -> decide -> log.

:class:`OnlineDecider` is built once at start-up (model, catalog, policy, plan, Feast
store, decision log) and answers one request at a time with numpy; the BentoML service is
a thin shell around it. Events (case opened, complaint, purchase, consent change,
contact) are turned into updated feature rows and pushed to Feast, so the next decision
already sees them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from core.settings import Settings
from customers.fast_features import FastOnlineFeatures
from customers.feature_schema import CHANNELS, PURPOSES, view_specs
from decisions.decision_log import DecisionLog
from decisions.engine import DecisionContext, decide
from decisions.runtime import Runtime, load_runtime, stock_vector
from models.scoring import StackedScorer

log = logging.getLogger(__name__)

ID_TYPES = ("customer_id", "email", "phone", "loyalty_id", "crm_id", "device_id", "app_account_id")
EVENT_TYPES = (
    "service_case_opened",
    "service_case_closed",
    "complaint",
    "purchase",
    "consent_changed",
    "contact",
)


class RequestError(ValueError):
    """A request that cannot be answered as sent (answered with a 4xx naming the field)."""


@dataclass
class CustomerRef:
    """How the caller identifies the customer."""

    id: str
    id_type: str = "customer_id"


@dataclass(frozen=True)
class DecideRequest:
    """One ``/decide`` request: who, on which channel, how many ranked actions, context."""

    customer: CustomerRef
    channel: str
    k: int = 3
    context: Mapping[str, Any] | None = None


def _utc(ts: datetime | str | float | None) -> datetime:
    if ts is None:
        return datetime.now(UTC)
    if isinstance(ts, int | float):
        return datetime.fromtimestamp(float(ts), UTC)
    if isinstance(ts, datetime):  # as pandas would, without building a Timestamp
        return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    t = pd.Timestamp(ts)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return t.to_pydatetime()


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

    def __init__(self, directory: str | Path, fsync: bool = True) -> None:
        super().__init__(directory, fsync=fsync)
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

        Raises :class:`~decisions.decision_log.PersonalDataError` at once (nothing queued)
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
        if fd is None:
            for old in list(self._fds):  # a new day: the old file is complete
                os.close(self._fds.pop(old))
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            self._fds[path] = fd
        return fd

    def _flush(self, batch: list[tuple[list[tuple[Path, bytes]], Future[int]]]) -> None:
        parts: dict[Path, list[bytes]] = {}
        for blocks, _ in batch:
            for path, block in blocks:
                parts.setdefault(path, []).append(block)
        for path, chunks in parts.items():
            fd = self._fd(path)
            data = memoryview(b"".join(chunks))
            written = 0
            while written < len(data):  # one write per file; short writes only on full disks
                written += os.write(fd, data[written:])
            if self.fsync:
                os.fdatasync(fd)

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
            self.syncs += 1
            self.appends += len(batch)
            for blocks, fut in batch:
                fut.set_result(sum(block.count(b"\n") for _, block in blocks))

    def _write(self, path: Path, block: bytes) -> None:
        """One file's block through the writer (the base class's ``append`` path)."""
        self._enqueue([(path, block)]).result()


class OnlineDecider:
    """Decisions and events for the online service."""

    def __init__(
        self,
        settings: Settings,
        runtime: Runtime | None = None,
        store: Any | None = None,
        fast_features: bool | None = None,
    ) -> None:
        from customers.feast_store import FEATURE_SERVICE, feature_store

        self.settings = settings
        self.runtime = runtime or load_runtime(settings)
        self.store = store or feature_store(settings)
        try:
            self.feature_service = self.store.get_feature_service(FEATURE_SERVICE)
        except Exception as exc:  # Feast raises its own not-found types
            from decisions.runtime import StartupError

            raise StartupError(
                f"Feast feature service {FEATURE_SERVICE!r} not found in the registry under "
                f"{settings.feast_dir}; run `nextbest features build` first ({exc})"
            ) from exc
        self.log: GroupCommitLog = GroupCommitLog(settings.decision_log_dir)
        # All arms of a decision in one call per booster (bit-identical numbers); a model
        # shape the stacked scorer does not know still skips the sklearn wrapper.
        scorer = StackedScorer.from_model(
            self.runtime.model, compiled=settings.online_compiled_trees, check_rows=0
        )
        if scorer is None:
            lean_lightgbm(self.runtime.model)
        elif scorer.compiled:
            # The compiled trees skip LightGBM's ~60 us of set-up per call and share the
            # arms' tree paths (a one-row decision's scoring ~280 -> ~80 us). Online calls
            # are too small to re-score a sample each time, so the check is made once, here,
            # on rows at every split threshold's edges; a difference means LightGBM for good.
            scorer.verify()
        if scorer is not None:
            log.info(
                "model %s scored through %s",
                scorer.version,
                "compiled trees (checked at start-up)" if scorer.compiled else "LightGBM",
            )
        self.plan = self.runtime.plan
        if scorer is not None:
            self.plan = replace(self.runtime.plan, model=scorer)
        self.stock = stock_vector(self.runtime)
        self.names = self.runtime.feature_names
        self._views = {v.name: v for v in view_specs()}
        # Events read, modify and push whole feature rows: one at a time, or two concurrent
        # events for one customer could lose an update.
        self._event_lock = threading.Lock()
        # The direct SQLite reader answers as the SDK does at a fraction of the cost; Redis
        # (and NEXTBEST_FAST_FEATURES=0) keeps the SDK path.
        if fast_features is None:
            fast_features = settings.fast_features
        self.fast: FastOnlineFeatures | None = None
        if fast_features and settings.online_store == "sqlite":
            self.fast = FastOnlineFeatures(self.store, self.names)

    # --- identity and features -----------------------------------------------------------

    def resolve(self, ref: CustomerRef) -> str | None:
        """The unified customer id of an identifier, or None when nobody has it."""
        from customers.feast_store import lookup_customer
        from customers.normalise import identifier_key

        if ref.id_type not in ID_TYPES:
            raise RequestError(
                f"customer.id_type: {ref.id_type!r} is not one of {', '.join(ID_TYPES)}"
            )
        try:
            key = identifier_key(ref.id_type, ref.id)
        except ValueError as exc:
            raise RequestError(f"customer.id: {exc}") from exc
        if self.fast is not None:
            return self.fast.lookup(key)
        return lookup_customer(self.store, key)

    def features(self, customer_ids: list[str | None], now: datetime) -> np.ndarray:
        """Online features in the plan's column order (NaN rows for unknown customers)."""
        from customers.feast_store import online_features

        X = np.full((len(customer_ids), len(self.names)), np.nan)
        known = [i for i, c in enumerate(customer_ids) if c]
        if known and self.fast is not None:
            X[known] = self.fast.features([customer_ids[i] for i in known], now.timestamp())
        elif known:
            X[known] = online_features(
                self.store, [customer_ids[i] for i in known], now.timestamp(), self.names
            )
        return X

    # --- decisions -------------------------------------------------------------------------

    def decide(
        self,
        customer: CustomerRef,
        channel: str,
        k: int = 3,
        context: Mapping[str, Any] | None = None,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """Decide for one customer on ``channel``; the record is on disk before returning."""
        record = self.decide_record(customer, channel, k, context, now)
        self.log.append([record])
        return response_from_record(record)

    def decide_record(
        self,
        customer: CustomerRef,
        channel: str,
        k: int = 3,
        context: Mapping[str, Any] | None = None,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """The decision-log record of one decision, not yet logged.

        The caller must make it durable (``log.append`` or ``log.append_async``) before
        answering; :meth:`decide` does both.
        """
        result = self.decide_records([DecideRequest(customer, channel, k, context)], now)[0]
        if isinstance(result, Exception):
            raise result
        return result

    def decide_records(
        self, requests: Sequence[DecideRequest], now: datetime | None = None
    ) -> list[dict[str, Any] | RequestError]:
        """Records of several decisions taken at ``now``: one engine call per channel, k and
        context, the same records as one call per request (the engine decides each row on
        its own). A request that cannot be answered gets its :class:`RequestError` in its
        place; nothing is logged here.
        """
        now = _utc(now)
        out: list[dict[str, Any] | RequestError] = []
        groups: dict[tuple[str, int, bytes], list[tuple[int, str | None]]] = {}
        contexts: dict[bytes, dict[str, Any]] = {}
        for i, req in enumerate(requests):
            out.append(RequestError("not decided"))
            try:
                if req.channel not in self.plan.channels:
                    raise RequestError(
                        f"channel: {req.channel!r} is not one of "
                        f"{', '.join(sorted(self.plan.channels))}"
                    )
                if not 1 <= int(req.k) <= 20:
                    raise RequestError(f"k: must be between 1 and 20, got {req.k}")
                cid = self.resolve(req.customer)
            except RequestError as exc:
                out[i] = exc
                continue
            try:
                ctx_key = orjson.dumps(req.context or {}, option=orjson.OPT_SORT_KEYS)
            except TypeError:  # not JSON (an in-process caller): a group of its own
                ctx_key = f"#{i}".encode()
            contexts.setdefault(ctx_key, dict(req.context or {}))
            groups.setdefault((req.channel, int(req.k), ctx_key), []).append((i, cid))
        for (channel, k, ctx_key), members in groups.items():
            cids = [cid for _, cid in members]
            X = self.features(cids, now)
            ctx = DecisionContext(
                channel=channel,
                now=now,
                k=k,
                stock=self.stock,
                feature_snapshot_time=now,
                request=contexts[ctx_key],
            )
            records = decide(X, np.array(cids, dtype=object), self.plan, ctx).records()
            for (i, _), record in zip(members, records, strict=True):
                out[i] = record
        return out

    # --- events ----------------------------------------------------------------------------

    def _current_row(self, view: str, customer_id: str) -> dict[str, float]:
        spec = self._views[view]
        names = spec.feature_names
        resp = self.store.get_online_features(
            features=[f"{view}:{n}" for n in names], entity_rows=[{"customer_id": customer_id}]
        ).to_dict()
        return {n: (resp.get(n) or [None])[0] for n in names}

    def _push(self, view: str, customer_id: str, row: dict[str, Any], ts: datetime) -> None:
        from customers.feast_store import push_rows

        spec = self._views[view]
        row[spec.as_of_feature.name] = ts.timestamp()
        data = {"customer_id": [customer_id], "event_timestamp": [pd.Timestamp(ts)]}
        for f in spec.all_features:
            v = row.get(f.name)
            v = 0 if v is None or (isinstance(v, float) and np.isnan(v)) else v
            data[f.name] = [int(v) if f.kind == "int" else float(v)]
        df = pd.DataFrame(data)
        df["event_timestamp"] = df["event_timestamp"].astype("datetime64[us, UTC]")
        push_rows(self.store, view, df, offline=self.settings.push_offline)

    def apply_event(
        self,
        customer: CustomerRef,
        event_type: str,
        timestamp: datetime | str | float | None,
        payload: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Turn an event into updated feature rows and push them online (and offline)."""
        with self._event_lock:
            return self._apply_event(customer, event_type, timestamp, payload)

    def _apply_event(
        self,
        customer: CustomerRef,
        event_type: str,
        timestamp: datetime | str | float | None,
        payload: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        if event_type not in EVENT_TYPES:
            raise RequestError(f"type: {event_type!r} is not one of {', '.join(EVENT_TYPES)}")
        payload = dict(payload or {})
        cid = self.resolve(customer)
        if cid is None:
            raise RequestError("customer: identifier does not resolve to a known customer")
        ts = _utc(timestamp)
        t = ts.timestamp()
        updated: list[str] = []
        if event_type in ("service_case_opened", "service_case_closed", "complaint"):
            row = self._current_row("customer_service", cid)
            if event_type == "service_case_opened":
                row["open_cases"] = (row.get("open_cases") or 0) + 1
            elif event_type == "service_case_closed":
                row["open_cases"] = max((row.get("open_cases") or 0) - 1, 0)
            else:
                row["complaints_90d"] = (row.get("complaints_90d") or 0) + 1
                row["last_complaint_ts"] = t
            self._push("customer_service", cid, row, ts)
            updated.append("customer_service")
        elif event_type == "consent_changed":
            purpose, channel = payload.get("purpose"), payload.get("channel")
            if purpose not in PURPOSES:
                raise RequestError(f"payload.purpose: {purpose!r} is not one of {PURPOSES}")
            if channel not in CHANNELS:
                raise RequestError(f"payload.channel: {channel!r} is not one of {CHANNELS}")
            if not isinstance(payload.get("granted"), bool):
                raise RequestError("payload.granted: must be true or false")
            row = self._current_row("customer_consent", cid)
            row[f"consent_{purpose}_{channel}"] = int(payload["granted"])
            self._push("customer_consent", cid, row, ts)
            updated.append("customer_consent")
        elif event_type == "contact":
            channel, action = payload.get("channel"), payload.get("action_id")
            if channel not in CHANNELS:
                raise RequestError(f"payload.channel: {channel!r} is not one of {CHANNELS}")
            row = self._current_row("customer_contacts", cid)
            for w in (7, 30):
                row[f"contacts_{channel}_{w}d"] = (row.get(f"contacts_{channel}_{w}d") or 0) + 1
            row["contacts_total_7d"] = (row.get("contacts_total_7d") or 0) + 1
            if action is not None:
                key = f"last_shown_ts_{action}"
                if key not in row:
                    raise RequestError(f"payload.action_id: unknown action {action!r}")
                row[key] = t
            self._push("customer_contacts", cid, row, ts)
            updated.append("customer_contacts")
        elif event_type == "purchase":
            amount = float(payload.get("amount", 0.0))
            if amount < 0:
                raise RequestError("payload.amount: must be >= 0")
            row = self._current_row("customer_transactions", cid)
            for w in (7, 30, 90, 365):
                row[f"txn_count_{w}d"] = (row.get(f"txn_count_{w}d") or 0) + 1
                row[f"txn_amount_{w}d"] = (row.get(f"txn_amount_{w}d") or 0) + amount
            row["last_purchase_ts"] = t
            category = payload.get("category")
            if category is not None and f"spend_365d_{category}" in row:
                row[f"spend_365d_{category}"] = (row.get(f"spend_365d_{category}") or 0) + amount
            self._push("customer_transactions", cid, row, ts)
            updated.append("customer_transactions")
            product = payload.get("product_id")
            if product is not None:
                hold = self._current_row("customer_holdings", cid)
                if f"holds_{product}" not in hold:
                    raise RequestError(f"payload.product_id: unknown product {product!r}")
                hold[f"holds_{product}"] = 1
                self._push("customer_holdings", cid, hold, ts)
                updated.append("customer_holdings")
        return {
            "customer_id": cid,
            "type": event_type,
            "updated_views": updated,
            "timestamp": ts.isoformat(),
        }


class MicroBatcher:
    """Decisions of concurrent requests in one engine call and one group commit (asyncio).

    :meth:`decide` queues a request and returns at once with a future; the first request
    of a loop iteration schedules :meth:`_run` with ``call_soon``, so every request that
    reaches the handler before the loop turns (the requests the server read in the same
    wake-up) is decided in the same ``decide_records`` call, and their records share one
    ``append_async``. A request's future resolves only once its record is on disk: the log
    writer's completion is handed to the loop once per batch (one
    ``call_soon_threadsafe``), which then answers every request of the batch.
    """

    def __init__(
        self, decider: OnlineDecider, max_batch: int = 64, inline_sync: bool = True
    ) -> None:
        self.decider = decider
        self.max_batch = max_batch
        #: Sync a lone request's record in the loop's own thread (see ``_decide_batch``).
        self.inline_sync = inline_sync
        self._queue: list[tuple[DecideRequest, asyncio.Future[Any]]] = []
        self._scheduled = False
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
            loop.call_soon(self._run)
        # Only this request's own future: a client that goes away cancels it alone; the
        # batch's log write goes on and answers the others.
        return await fut

    def _run(self) -> None:
        self._scheduled = False
        queue, self._queue = self._queue, []
        # One request alone in its loop turn: a sequential caller (under load, requests
        # arrive together, and those that arrive during an inline sync form a batch).
        alone = len(queue) == 1
        for start in range(0, len(queue), self.max_batch):
            self._decide_batch(queue[start : start + self.max_batch], alone)

    def _decide_batch(
        self, batch: list[tuple[DecideRequest, asyncio.Future[Any]]], alone: bool = False
    ) -> None:
        try:
            results = self.decider.decide_records([req for req, _ in batch])
        except Exception as exc:  # a bug must fail these requests, not the server
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        self.calls += 1
        self.decisions += len(batch)
        waiting: list[tuple[asyncio.Future[Any], dict[str, Any]]] = []
        for (_, fut), result in zip(batch, results, strict=True):
            if isinstance(result, Exception):
                if not fut.done():  # nothing to log: answered at once
                    fut.set_exception(result)
            else:
                waiting.append((fut, result))
        if not waiting:
            return
        log = self.decider.log
        # A request alone in its loop turn, with no batch on its way to disk: the loop has
        # nothing to do while the disk syncs, so it syncs here, without the writer thread.
        # Otherwise the writer syncs while the loop decides the next requests (syncing a
        # batch here would leave the loop idle during every sync under load).
        append = (
            log.append_inline
            if self.inline_sync and alone and not self._on_the_way
            else log.append_async
        )
        try:
            self._when_logged(append([r for _, r in waiting]), waiting)
        except Exception:  # e.g. personal data in one record: log them one by one
            for fut, record in waiting:
                try:
                    self._when_logged(log.append_async([record]), [(fut, record)])
                except Exception as exc:
                    if not fut.done():
                        fut.set_exception(exc)

    def _when_logged(
        self, logged: Future[int], waiting: list[tuple[asyncio.Future[Any], dict[str, Any]]]
    ) -> None:
        """Answer ``waiting`` on this loop once ``logged`` (the writer's future) is done."""
        loop = asyncio.get_running_loop()
        self._on_the_way += 1

        def answer(done: Future[int]) -> None:
            self._on_the_way -= 1
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


def lean_lightgbm(model: Any) -> int:
    """Make every LightGBM estimator inside ``model`` predict through its booster, one thread.

    A decision scores one row through ~17 LightGBM calls (one per arm and per value arm);
    the scikit-learn wrapper adds ~0.3 ms of parameter copying and validation per call, and
    the OpenMP thread pool it asks for stalls on a busy 2-core machine. The booster gives
    the same numbers (same trees, same iterations); returns how many estimators changed.
    """
    import lightgbm

    seen: set[int] = set()
    changed = 0

    def lean(est: Any) -> None:
        booster = est.booster_
        est.set_params(n_jobs=1)
        if isinstance(est, lightgbm.LGBMClassifier) and est.n_classes_ == 2:

            def predict_proba(X: Any, *args: Any, **kwargs: Any) -> np.ndarray:
                if args or kwargs:
                    return type(est).predict_proba(est, X, *args, **kwargs)
                p = booster.predict(np.asarray(X, dtype=np.float64), num_threads=1)
                return np.column_stack([1.0 - p, p])

            est.predict_proba = predict_proba
        elif isinstance(est, lightgbm.LGBMRegressor):

            def predict(X: Any, *args: Any, **kwargs: Any) -> np.ndarray:
                if args or kwargs:
                    return type(est).predict(est, X, *args, **kwargs)
                return booster.predict(np.asarray(X, dtype=np.float64), num_threads=1)

            est.predict = predict

    def walk(obj: Any, depth: int = 0) -> None:
        nonlocal changed
        if id(obj) in seen or depth > 8:
            return
        seen.add(id(obj))
        if isinstance(obj, lightgbm.LGBMModel):
            if getattr(obj, "fitted_", False) or hasattr(obj, "_Booster"):
                lean(obj)
                changed += 1
            return
        if isinstance(obj, list | tuple):
            for x in obj:
                walk(x, depth + 1)
        elif isinstance(obj, dict):
            for x in obj.values():
                walk(x, depth + 1)
        elif hasattr(obj, "__dict__") and not isinstance(obj, type | np.ndarray):
            for x in vars(obj).values():
                walk(x, depth + 1)

    walk(model)
    return changed


def response_from_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """The ``/decide`` answer built from the decision-log record (same facts, no copy)."""
    return {
        "decision_id": record["decision_id"],
        "customer_id": record["customer_id"],
        "group": record["group"],
        "chosen_action": record.get("chosen_action"),
        "propensity": record.get("propensity"),
        "actions": [
            {
                "action_id": a["action_id"],
                "rank": a.get("rank"),
                "score": a["score"],
                "uplift": a["uplift"],
                "value": a["value"],
                "control_value": a.get("control_value"),
                "p_treated": a["p_treated"],
                "p_control": a["p_control"],
                "cost": a["cost"],
                "lever": a["lever"],
                "reasons": [score_sentence(a)],
            }
            for a in record.get("ranked", [])
        ],
        "excluded": [
            {"action_id": e["action_id"], "reasons": [{"code": e["reason"], "text": e["sentence"]}]}
            for e in record.get("excluded", [])
        ],
        "reason": {"code": record.get("reason"), "text": record.get("reason_text")},
        "model_version": record.get("model_version"),
        "policy_version": record.get("policy_version"),
        "catalog_version": record.get("catalog_version"),
    }


def score_sentence(a: Mapping[str, Any]) -> str:
    """The score parts of a ranked action in words an agent can read."""
    v0 = a.get("control_value")
    worth = (
        f"worth {a['value']:.2f} per response"
        if v0 is None
        else f"worth {a['value']:.2f} per response to the offer and {v0:.2f} per response without"
    )
    return (
        f"Expected incremental value {a['score']:.2f}: response {a['p_treated']:.1%} if offered "
        f"vs {a['p_control']:.1%} if not (uplift {a['uplift']:+.1%}), {worth}, minus cost "
        f"{a['cost']:.2f}, times business lever {a['lever']:g}."
    )

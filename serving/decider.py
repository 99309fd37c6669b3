"""The online decider: identifier -> customer -> online features -> decide -> log.

:class:`OnlineDecider` is built once at start-up (model, catalog, policy, plan, Feast
store, decision log) and answers one request at a time with numpy; the BentoML service is
a thin shell around it. Events go to :class:`serving.events.EventHandler`, which appends
them to the event ledger; every decision reads its customers' ledger events and applies
their state, as of the decision time, over the online features.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import Any

import numpy as np
import orjson

from nextbest.core.errors import DependencyUnavailable
from nextbest.core.settings import Settings
from nextbest.customers.fast_features import FastOnlineFeatures
from nextbest.customers.feast_store import (
    FEATURE_SERVICE,
    bound_redis_retries,
    feature_service,
    feature_store,
    lookup_customer,
    online_features,
)
from nextbest.customers.normalise import identifier_key
from nextbest.decisions.budgets import ONLINE_PERIODS, LimitCounters, reserve_decisions
from nextbest.decisions.capacity import limit_rows
from nextbest.decisions.channel_choice import choose_channel
from nextbest.decisions.engine import DecisionContext, decide
from nextbest.decisions.group_commit import GroupCommitLog
from nextbest.decisions.identity_links import IdentityLinks, resolve_key
from nextbest.decisions.ledger import Ledger, LedgerEvent, consent_history
from nextbest.decisions.ledger_state import apply_ledger
from nextbest.decisions.rule_families import SERVICE_MODE
from nextbest.decisions.runtime import Runtime, StartupError, load_runtime
from nextbest.decisions.send_windows import time_zone
from nextbest.decisions.stock import LiveStock, StockContextError, context_stock, with_context
from nextbest.models.scoring import StackedScorer
from serving.events import EventHandler, event_vocabulary
from serving.health import Readiness, store_errors
from serving.requests import (
    ANY_CHANNEL,
    ID_TYPES,
    CustomerRef,
    DecideRequest,
    RequestError,
    request_time,
)
from serving.stages import CLOCKS, now_ns

log = logging.getLogger(__name__)


@dataclass
class LoggedDecisions:
    """A batch decided and handed to the decision log (:meth:`OnlineDecider.decide_and_log`)."""

    #: Each request's decision-log record, or the error that answers it (nothing logged).
    results: list[dict[str, Any] | Exception]
    #: Each write to the log and the positions of the requests whose records it holds; it
    #: resolves once they are on disk, or fails (the log down: ``DependencyUnavailable``).
    writes: list[tuple[Future[int], list[int]]]
    #: When the records were handed to the log (``now_ns``): the start of their log stage.
    logged_at: int = 0

    def wait(self) -> list[dict[str, Any] | Exception]:
        """Each request's record once on disk, or the error that answers it (blocks)."""
        out = list(self.results)
        for write, positions in self.writes:
            exc = write.exception()
            if exc is not None:
                for i in positions:
                    out[i] = exc
        return out


class OnlineDecider:
    """Decisions and events for the online service."""

    def __init__(
        self,
        settings: Settings,
        runtime: Runtime | None = None,
        store: Any | None = None,
        fast_features: bool | None = None,
    ) -> None:
        self.settings = settings
        #: What a store call raises when its store is down (answered 503, never 500).
        self.store_errors = store_errors()
        self.runtime = runtime or load_runtime(settings)
        self.store = store or feature_store(settings)
        try:
            feature_service(self.store, FEATURE_SERVICE)
        except Exception as exc:  # Feast raises its own not-found types
            raise StartupError(
                f"Feast feature service {FEATURE_SERVICE!r} not found in the registry under "
                f"{settings.feast_dir}; run `nextbest features build` first ({exc})"
            ) from exc
        # Every online read fails within the store timeout (no retries with backoff).
        bound_redis_retries(self.store)
        self.log: GroupCommitLog = GroupCommitLog(settings.decision_log_dir)
        # All arms of a decision in one call per booster (bit-identical numbers); a model
        # whose heads are not all plain LightGBM scores through its own estimators.
        scorer = StackedScorer.from_model(
            self.runtime.model, compiled=settings.online_compiled_trees, check_rows=0
        )
        if scorer is not None and scorer.compiled:
            # The compiled trees skip LightGBM's per-call set-up and share the arms' tree
            # paths. Online calls are too small to re-score a sample each time, so the check
            # is made once, here, on rows at every split threshold's edges; a difference
            # means LightGBM for good.
            scorer.verify()
        if scorer is not None:
            log.info(
                "model %s scored through %s",
                scorer.version,
                "compiled trees (checked at start-up)" if scorer.compiled else "LightGBM",
            )
        self.plan = self.runtime.plan
        service_plan = self.runtime.service_plan
        if scorer is not None:
            self.plan = replace(self.runtime.plan, model=scorer)
            if service_plan is not None:
                service_plan = replace(service_plan, model=scorer)
        #: The plan of each ``/decide`` mode.
        self.plans = {"marketing": self.plan}
        if service_plan is not None:
            self.plans["service"] = service_plan
        self.names = self.runtime.feature_names
        self._index = {n: j for j, n in enumerate(self.names)}
        #: The catalog's terms: which consent records set which features (ledger events).
        self.terms = self.plan.terms
        self.ledger = Ledger(settings.ledger_path, timeout=settings.store_timeout_seconds)
        #: Stock of the table (re-read when it changes) and the ledger's stock events.
        self.stock = LiveStock(settings.stock_path, self.ledger, self.plan.stock_products)
        self._products = frozenset(self.runtime.terms.products)
        self._context_stock = self.runtime.policy.suppression.context_stock
        #: Identifiers attached through identify events, read when the lookup lacks one.
        self.links = IdentityLinks(self.ledger)
        #: The policy's per-day and total limits per channel, and their counters (ledger).
        self.limits = {
            ch: limit_rows(self.plan, ch, periods=ONLINE_PERIODS) for ch in self.plan.channels
        }
        self.counters = (
            LimitCounters(self.ledger) if any(r.limits for r in self.limits.values()) else None
        )
        self.events = EventHandler(
            self.ledger,
            self.resolve,
            event_vocabulary(self.runtime.catalog),
            lookup=self.lookup_key,
            salt=settings.identifier_salt,
            links=self.links,
        )
        # The direct SQLite reader answers as the SDK does at a fraction of the cost; Redis
        # (and NEXTBEST_FAST_FEATURES=0) keeps the SDK path.
        if fast_features is None:
            fast_features = settings.fast_features
        self.fast: FastOnlineFeatures | None = None
        if fast_features and settings.online_store == "sqlite":
            self.fast = FastOnlineFeatures(
                self.store, self.names, timeout=settings.store_timeout_seconds
            )
        #: Which dependency is down, if any (``/readyz``), probed at most once a second.
        self.readiness = Readiness(
            {
                "features": self._check_features,
                "ledger": self._check_ledger,
                "decision_log": self._check_decision_log,
                "model": self._check_model,
            }
        )

    # --- dependencies ----------------------------------------------------------------------

    def features_down(self, exc: BaseException) -> DependencyUnavailable:
        """The 503 error for a failed online-store read; the failed connections are dropped
        so that a later request reconnects."""
        if self.fast is not None:
            self.fast.reset()
        log.warning("online feature store unavailable: %s: %s", type(exc).__name__, exc)
        return DependencyUnavailable(
            "features", "the online feature store cannot be read; retry later"
        )

    def ledger_down(self, exc: BaseException) -> DependencyUnavailable:
        """The 503 error for a failed ledger read or write (this thread's connection is
        dropped and reopened on its next use)."""
        try:
            self.ledger.close()
        except self.store_errors:
            pass
        log.warning("event ledger unavailable: %s: %s", type(exc).__name__, exc)
        return DependencyUnavailable("ledger", "the event ledger cannot be used; retry later")

    @staticmethod
    def decision_log_down(exc: BaseException) -> DependencyUnavailable:
        """The 503 error for a decision that could not be logged (so must not be answered)."""
        log.warning("decision log unavailable: %s: %s", type(exc).__name__, exc)
        return DependencyUnavailable(
            "decision_log", "the decision log cannot be written; retry later"
        )

    def _guarded(self, call: Callable[[], Any], down: Callable[[BaseException], Exception]) -> Any:
        try:
            return call()
        except self.store_errors as exc:
            raise down(exc) from exc

    def _check_features(self) -> None:
        if self.fast is not None:
            self._guarded(self.fast.check, self.features_down)
        else:
            self._guarded(lambda: lookup_customer(self.store, ""), self.features_down)

    def _check_ledger(self) -> None:
        self._guarded(self.ledger.check, self.ledger_down)

    def _check_decision_log(self) -> None:
        self._guarded(self.log.check, self.decision_log_down)

    def _check_model(self) -> None:
        if self.runtime.model is None or self.plan is None:
            raise DependencyUnavailable("model", "no decision model is loaded")

    # --- identity and features -----------------------------------------------------------

    def resolve(self, ref: CustomerRef) -> str | None:
        """The unified customer id of an identifier, or None when nobody has it: the
        identity lookup first, then the identify links
        (:func:`nextbest.decisions.identity_links.resolve_key`)."""
        if ref.id_type not in ID_TYPES:
            raise RequestError(
                f"customer.id_type: {ref.id_type!r} is not one of {', '.join(ID_TYPES)}"
            )
        try:
            key = identifier_key(ref.id_type, ref.id, self.settings.identifier_salt)
        except ValueError as exc:
            raise RequestError(f"customer.id: {exc}") from exc
        found = resolve_key(key, self.lookup_key, self._linked)
        # An id retired by a merge (kept by a caller) reaches the customer the person is now.
        id_map = self.ledger.ids.get()
        if found is None and ref.id_type == "customer_id" and id_map:
            current = id_map.current(ref.id)
            return None if current == ref.id else self.resolve(CustomerRef(current))
        return found

    def lookup_key(self, key: str) -> str | None:
        """The customer the identity lookup (the last features build) gives an identifier
        key, through the id map, or None."""
        try:
            fast = self.fast
            found = fast.lookup(key) if fast is not None else lookup_customer(self.store, key)
        except self.store_errors as exc:
            raise self.features_down(exc) from exc
        # An id the online store still holds until the next build replaces its rows, but a
        # merge has retired: the customer the person is now.
        id_map = self.ledger.ids.get()
        return id_map.current(found) if found is not None and id_map else found

    def _linked(self, key: str) -> str | None:
        """The customer an identify link gives an identifier key (503 if the ledger is down)."""
        return self._guarded(lambda: self.links.customer_of(key), self.ledger_down)

    def features(
        self,
        customer_ids: list[str | None],
        now: datetime,
        events: Mapping[str, Sequence[LedgerEvent]] | None = None,
    ) -> np.ndarray:
        """Online features in the plan's column order (NaN rows for unknown customers), with
        the state of the customers' ledger events at ``now`` applied (read here unless
        ``events`` is given)."""
        start = now_ns()
        X = np.full((len(customer_ids), len(self.names)), np.nan)
        known = [i for i, c in enumerate(customer_ids) if c]
        try:
            if known and self.fast is not None:
                X[known] = self.fast.features([customer_ids[i] for i in known], now.timestamp())
            elif known:
                X[known] = online_features(
                    self.store, [customer_ids[i] for i in known], now.timestamp(), self.names
                )
        except self.store_errors as exc:
            raise self.features_down(exc) from exc
        start = CLOCKS.add("features", start, len(customer_ids))
        if events is None:
            events = self.ledger_events(customer_ids)
        # The function batch decisions applies per chunk; its ledger read (the build's
        # watermark) answers 503 when the ledger is down, as every ledger read here does.
        self._guarded(
            lambda: apply_ledger(
                X,
                self.names,
                customer_ids,
                self.ledger,
                now.timestamp(),
                events=events,
                index=self._index,
                terms=self.terms,
            ),
            self.ledger_down,
        )
        CLOCKS.add("ledger", start, 0)  # the events' read counted the decisions
        return X

    def ledger_events(self, customer_ids: Sequence[str | None]) -> dict[str, list[LedgerEvent]]:
        """The ledger events of these customers that change features (one indexed query)."""
        ids = [c for c in customer_ids if c]
        return self._guarded(lambda: self.ledger.events_for(ids), self.ledger_down)

    # --- decisions -------------------------------------------------------------------------

    def decide_and_log(
        self,
        requests: Sequence[DecideRequest],
        now: datetime | None = None,
        inline: bool = False,
        amend: Callable[[dict[str, Any]], None] | None = None,
    ) -> LoggedDecisions:
        """Decide ``requests`` (:meth:`decide_records`) and hand their records to the
        decision log in one group commit; the one way a decision is taken and logged.

        ``inline``: sync in this thread when the log's writer is idle (a caller with
        nothing else to do meanwhile, ``GroupCommitLog.append_inline``). A batch the log
        refuses as a whole (personal data in one record) is logged record by record, so
        only the offending record fails. ``amend`` adds a caller's own fields to each
        decided record before it is logged (the triggers worker's trigger and journey).
        Raises what :meth:`decide_records` raises for the whole batch (a store down).
        """
        results: list[dict[str, Any] | Exception] = list(self.decide_records(requests, now))
        good = [i for i, r in enumerate(results) if not isinstance(r, Exception)]
        if amend is not None:
            for i in good:
                amend(results[i])  # type: ignore[arg-type]
        writes: list[tuple[Future[int], list[int]]] = []
        if not good:
            return LoggedDecisions(results, writes)
        append = self.log.append_inline if inline else self.log.append_async
        logged_at = now_ns()  # before the append: an inline one syncs before it returns
        try:
            writes.append((self._written(append([results[i] for i in good])), good))
        except Exception:  # e.g. personal data in one record: log them one by one
            for i in good:
                try:
                    writes.append((self._written(self.log.append_async([results[i]])), [i]))
                except Exception as exc:
                    results[i] = exc
        return LoggedDecisions(results, writes, logged_at)

    def _written(self, write: Future[int]) -> Future[int]:
        """``write`` with a store error turned into the decision log's 503 error: a record
        that did not reach the disk must not be answered."""
        out: Future[int] = Future()
        out.set_running_or_notify_cancel()

        def relay(done: Future[int]) -> None:
            exc = done.exception()
            if exc is None:
                out.set_result(done.result())
            else:
                out.set_exception(
                    self.decision_log_down(exc) if isinstance(exc, self.store_errors) else exc
                )

        write.add_done_callback(relay)
        return out

    def decide_records(
        self, requests: Sequence[DecideRequest], now: datetime | None = None
    ) -> list[dict[str, Any] | RequestError]:
        """Records of several decisions taken at ``now``: one engine call per channel, k and
        context, the same records as one call per request (the engine decides each row on
        its own). A request naming several ``channels`` is decided on each, and the best
        action x channel pair is kept with the others' reasons
        (:func:`nextbest.decisions.channel_choice.choose_channel`). A request that cannot
        be answered gets its :class:`RequestError` in its place; nothing is logged here.
        """
        start = now_ns()
        now = request_time(now)
        out: list[dict[str, Any] | RequestError] = []
        asked: dict[int, tuple[str, ...]] = {}
        groups: dict[tuple[str, int, bytes, str], list[tuple[int, str | None, str]]] = {}
        contexts: dict[bytes, dict[str, Any]] = {}
        stocks: dict[bytes, dict[str, float] | None] = {}
        for i, req in enumerate(requests):
            out.append(RequestError("not decided"))
            try:
                channels = self._channels_of(req)
                if req.mode not in self.plans:
                    raise RequestError(f"mode: {req.mode!r} is not one of {', '.join(self.plans)}")
                if not 1 <= int(req.k) <= 20:
                    raise RequestError(f"k: must be between 1 and 20, got {req.k}")
                tz = self._time_zone(req.time_zone)
                cid = self.resolve(req.customer)
                ctx_stock = self._request_stock(req.context)
            except RequestError as exc:
                out[i] = exc
                continue
            try:
                ctx_key = orjson.dumps(req.context or {}, option=orjson.OPT_SORT_KEYS)
            except TypeError:  # not JSON (an in-process caller): a group of its own
                ctx_key = f"#{i}".encode()
            contexts.setdefault(ctx_key, dict(req.context or {}))
            stocks.setdefault(ctx_key, ctx_stock)
            asked[i] = channels
            for channel in channels:
                key = (channel, int(req.k), ctx_key, req.mode)
                groups.setdefault(key, []).append((i, cid, tz))
        start = CLOCKS.add("resolve", start, len(requests))
        # One ledger query for every customer of the batch.
        events = self.ledger_events([cid for members in groups.values() for _, cid, _ in members])
        stock = self._guarded(self.stock.vector, self.ledger_down)
        CLOCKS.add("ledger", start, sum(len(m) for m in groups.values()))
        decided: dict[int, dict[str, dict[str, Any]]] = {}
        for (channel, k, ctx_key, mode), members in groups.items():
            cids = [cid for _, cid, _ in members]
            X = self.features(cids, now, events)
            request = contexts[ctx_key]
            placement = request.get("placement")
            ctx = DecisionContext(
                channel=channel,
                now=now,
                k=k,
                placement=placement if isinstance(placement, str) else None,
                stock=with_context(stock, self.plan.stock_products, stocks[ctx_key]),
                feature_snapshot_time=now,
                request=request,
                # Quiet hours hold back contacts we start; in service mode the customer
                # started the contact and is on the channel now.
                quiet=None
                if mode == SERVICE_MODE
                else self._quiet(channel, [tz for _, _, tz in members], now),
            )
            start = now_ns()
            d = decide(X, np.array(cids, dtype=object), self.plans[mode], ctx)
            counters, rows = self.counters, self.limits[channel]
            if counters is not None and rows.limits:
                reserve = partial(reserve_decisions, d, rows, counters, now)
                self._guarded(reserve, self.ledger_down)
            start = CLOCKS.add("engine", start, len(cids))
            records = d.records()
            CLOCKS.add("records", start, len(cids))
            for (i, _, _), record in zip(members, records, strict=True):
                decided.setdefault(i, {})[channel] = record
        for i, channels in asked.items():
            if requests[i].channels is None:
                out[i] = decided[i][channels[0]]
            else:
                out[i] = choose_channel(decided[i], channels)
        return out

    def _channels_of(self, req: DecideRequest) -> tuple[str, ...]:
        """The channels a request asks about, in its order: its ``channel``, or its
        ``channels`` (``("any",)``: every catalog channel); exactly one of the two."""
        known = self.runtime.catalog.channel_ids
        if (req.channel is None) == (req.channels is None):
            raise RequestError('channel: give either channel or channels (a list, or "any")')
        if req.channels is None:
            wanted: tuple[str, ...] = (str(req.channel),)
            field = "channel"
        elif tuple(req.channels) == (ANY_CHANNEL,):
            return tuple(c for c in known if c in self.plan.channels)
        else:
            wanted, field = tuple(req.channels), "channels"
            if not wanted:
                raise RequestError('channels: must name at least one channel, or be "any"')
            if len(set(wanted)) != len(wanted):
                raise RequestError("channels: must not repeat a channel")
        for c in wanted:
            if c not in self.plan.channels:
                raise RequestError(
                    f"{field}: {c!r} is not one of {', '.join(sorted(self.plan.channels))}"
                )
        return wanted

    def _time_zone(self, name: str | None) -> str:
        """The time zone quiet hours are read in: the request's, else the default setting."""
        if name is None:
            return self.settings.default_time_zone
        try:
            time_zone(name)
        except ValueError as exc:
            raise RequestError(f"time_zone: {exc}") from exc
        return name

    def _quiet(self, channel: str, zones: Sequence[str], now: datetime) -> np.ndarray | None:
        """[n] bool: the rows inside ``channel``'s quiet hours at ``now`` (None: the
        channel has none)."""
        windows = self.runtime.policy.send_windows
        if channel not in windows.quiet_hours:
            return None
        quiet = {z: windows.is_quiet(channel, z, now) for z in set(zones)}
        return np.fromiter((quiet[z] for z in zones), dtype=bool, count=len(zones))

    def _request_stock(self, context: Mapping[str, Any] | None) -> dict[str, float] | None:
        """The request's ``context.stock`` where the policy lets it override the stock."""
        if not self._context_stock:
            return None
        try:
            return context_stock(context, self._products)
        except StockContextError as exc:
            raise RequestError(str(exc)) from exc

    # --- events ----------------------------------------------------------------------------

    def apply_event(
        self,
        customer: CustomerRef | None,
        event_type: str,
        timestamp: datetime | str | float | None,
        payload: Mapping[str, Any] | None = None,
        event_id: str | None = None,
        source: str | None = None,
        actor: str = "anonymous",
    ) -> dict[str, Any]:
        """Validate an event and append it to the ledger (on disk before returning); the
        next decision for the customer sees it."""
        return self._guarded(
            lambda: self.events.apply(
                customer, event_type, timestamp, payload, event_id, source, actor
            ),
            self.ledger_down,
        )

    def consent_history(self, customer: CustomerRef) -> dict[str, Any]:
        """A customer's consent changes in the ledger, in event time, with source and actor,
        and the identifiers attached to it through identify events (masked)."""
        cid = self.resolve(customer)
        if cid is None:
            raise RequestError("customer: identifier does not resolve to a known customer")
        changes = self._guarded(lambda: consent_history(self.ledger, cid), self.ledger_down)
        linked = self._guarded(lambda: self.links.history(cid), self.ledger_down)
        return {"customer_id": cid, "changes": changes, "identifiers": linked}

"""The agent console at ``/console``: server-rendered pages (Jinja2, no script) for an agent
in a live contact, mounted in the BentoML service beside the JSON APIs.

Routes (all under ``/console``; every POST form carries a CSRF token):

- ``GET /``: the sign-in form, or the search form once signed in;
- ``POST /login``, ``POST /logout``: sign in with an API key holding the ``agent`` scope
  (a signed session cookie, :mod:`serving.console_session`), sign out;
- ``POST /search``: find a customer by any identifier (sent in the body, never in a URL);
- ``GET /customers/{customer_id}``: the unified record, the consent matrix and the
  service-mode decision for the agent's channel (``?channel=``), logged like any decision;
- ``POST /customers/{customer_id}/outcome``: offered, accepted, declined or not now for a
  ranked action (a ``contact`` event with its outcome), then the page again;
- ``POST /customers/{customer_id}/case``: the open case resolved (``service_case_closed``);
- ``POST /customers/{customer_id}/consent``: a consent change on the customer's request
  (keys with the ``admin`` scope only).

Every change goes through the decider's ``apply_event`` (the ledger, as ``/events``), with
the key's name as actor and ``console`` as source, so caps, cooldowns and the next decision
see it at once. The module is a thin shell: the views are :mod:`serving.console_view`.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from nextbest.core.errors import DependencyUnavailable
from nextbest.core.vocabulary import ID_TYPES
from nextbest.customers.identifier_index import IdentifierIndex, build_identifier_index
from nextbest.decisions.ledger import CONTACT_OUTCOMES
from serving.console_session import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    ConsoleAuthError,
    ConsoleSessions,
    Session,
)
from serving.console_view import decision_view, record_view, search
from serving.decider import OnlineDecider
from serving.requests import CustomerRef, DecideRequest, RequestError, request_time
from serving.templating import templates

log = logging.getLogger(__name__)

PREFIX = "/console"
#: What each outcome button says.
OUTCOME_LABELS = {
    "offered": "Offered",
    "accepted": "Accepted",
    "declined": "Declined",
    "not_now": "Not now",
}
#: Security headers of every console answer: no framing, no script, nothing cached.
_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    # same-origin, not no-referrer: with no-referrer browsers send ``Origin: null`` on
    # form posts, and the origin check below needs the real one.
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


class ConsoleState:
    """What the console keeps per worker: the decider, the sessions, the identifier index
    (built on first use, off the request that needed it only once)."""

    def __init__(self, decider: OnlineDecider, sessions: ConsoleSessions, channel: str) -> None:
        self.decider = decider
        self.sessions = sessions
        self.channel = channel
        self._index: IdentifierIndex | None = None
        self._index_failed = False
        self._lock = threading.Lock()

    def index(self) -> IdentifierIndex | None:
        """The identifier index of the source exports (None when they are not here)."""
        if self._index is None and not self._index_failed:
            with self._lock:
                if self._index is None and not self._index_failed:
                    self._index = self._build_index()
        return self._index

    def _build_index(self) -> IdentifierIndex | None:
        s = self.decider.settings
        try:
            return build_identifier_index(s.raw_dir, s.unified_dir, s.identifier_salt)
        except Exception as exc:  # exports absent or unreadable: the console goes on without
            log.warning("console: no identifier index (%s)", type(exc).__name__)
            self._index_failed = True
            return None


StateGetter = Callable[[], ConsoleState | None]


def _page(name: str, status: int = 200, **ctx: Any) -> Response:
    """A rendered console page with the console's security headers."""
    body = templates().get_template(name).render(**ctx)
    return HTMLResponse(body, status_code=status, headers=_HEADERS)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _set_cookie(response: Response, request: Request, name: str, value: str, age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=age,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def _redirect(path: str, **query: str) -> RedirectResponse:
    url = PREFIX + path + (f"?{urlencode(query)}" if query else "")
    return RedirectResponse(url, status_code=303, headers=_HEADERS)


def _same_origin(request: Request) -> bool:
    """A POST from a page of this service: its ``Origin`` is ours, or (a browser that
    hides it) ``Sec-Fetch-Site`` says same-origin; a client that sends neither relies on
    the CSRF token alone."""
    origin = request.headers.get("origin")
    fetch_site = request.headers.get("sec-fetch-site")
    if origin is None or origin == "null":
        return fetch_site in (None, "same-origin") and (origin is None or fetch_site is not None)
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


class Console:
    """The console's request handlers over the running service's :class:`ConsoleState`."""

    def __init__(self, state: StateGetter) -> None:
        self.state = state

    def _state(self) -> ConsoleState:
        state = self.state()
        if state is None:
            raise DependencyUnavailable("model", "the service is starting")
        return state

    def _session(self, request: Request) -> Session | None:
        return self._state().sessions.session(request.cookies.get(SESSION_COOKIE))

    def _login_page(self, request: Request, message: str = "", status: int = 200) -> Response:
        sessions = self._state().sessions
        cookie, nonce = sessions.login_nonce()
        response = _page("console_login.html", status, message=message, csrf=sessions.token(nonce))
        _set_cookie(response, request, LOGIN_COOKIE, cookie, 1800)
        return response

    def _base(self, session: Session) -> dict[str, Any]:
        state = self._state()
        return {
            "csrf": state.sessions.token(session.nonce),
            "agent": session.key.name,
            "is_admin": session.is_admin,
            "id_types": ("auto", *ID_TYPES),
            "channels": state.decider.terms.channels,
        }

    async def _form(self, request: Request, session: Session | None) -> dict[str, str] | None:
        """The POSTed form when its CSRF token and origin are right, else None."""
        if not _same_origin(request):
            return None
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        sessions = self._state().sessions
        if session is not None:
            nonce: str | None = session.nonce
        else:
            nonce = sessions.login_form_nonce(request.cookies.get(LOGIN_COOKIE))
        return form if sessions.check_token(nonce, form.get("csrf")) else None

    # --- routes --------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        session = self._session(request)
        if session is None:
            return self._login_page(request)
        return _page("console_search.html", **self._base(session), result=None, id_type="auto")

    async def login(self, request: Request) -> Response:
        form = await self._form(request, None)
        if form is None:
            return self._login_page(request, "The form expired: sign in again.", 403)
        try:
            cookie, session = self._state().sessions.sign_in(form.get("key", ""))
        except ConsoleAuthError as exc:
            log.info("/console/login refused: %s", str(exc).split(":", 1)[0])
            message = str(exc)
            return self._login_page(request, message[:1].upper() + message[1:] + ".", 403)
        log.info("/console/login: key %s signed in", session.key.name)
        response = _redirect("/")
        _set_cookie(response, request, SESSION_COOKIE, cookie, self._state().sessions.max_age)
        response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
        return response

    async def logout(self, request: Request) -> Response:
        session = self._session(request)
        if session is not None and await self._form(request, session) is None:
            return _page("console_error.html", 403, message="The form expired: reload the page.")
        response = _redirect("/")
        response.delete_cookie(SESSION_COOKIE, path=PREFIX)
        return response

    async def do_search(self, request: Request) -> Response:
        session = self._session(request)
        if session is None:
            return self._login_page(request, "Sign in first.", 401)
        form = await self._form(request, session)
        if form is None:
            return _page("console_error.html", 403, message="The form expired: reload the page.")
        id_type = form.get("id_type", "auto")
        state = self._state()
        result = await _threaded(
            lambda: search(state.decider, state.index, id_type, form.get("value", ""))
        )
        if result.customer_id is not None:
            return _redirect(f"/customers/{result.customer_id}")
        status = 200 if result.candidates else 404
        return _page(
            "console_search.html", status, **self._base(session), result=result, id_type=id_type
        )

    async def customer(self, request: Request) -> Response:
        session = self._session(request)
        if session is None:
            return self._login_page(request, "Sign in first.", 401)
        state = self._state()
        cid = request.path_params["customer_id"]
        channel = request.query_params.get("channel", state.channel)
        if channel not in state.decider.terms.channels:
            channel = state.channel
        try:
            view = await _threaded(lambda: self._customer_view(cid, channel))
        except RequestError:
            return _page("console_error.html", 404, message="No customer has this id.")
        done = request.query_params.get("done", "")
        return _page(
            "console_customer.html",
            **self._base(session),
            record=view["record"],
            decision=view["decision"],
            channel=channel,
            outcomes=OUTCOME_LABELS,
            done=DONE_MESSAGES.get(done, ""),
        )

    def _customer_view(self, cid: str, channel: str) -> dict[str, Any]:
        state = self._state()
        decider = state.decider
        resolved = decider.resolve(CustomerRef(cid, "customer_id"))
        if resolved is None:
            raise RequestError("customer: no customer has this id")
        now = request_time(None)
        request = DecideRequest(CustomerRef(resolved, "customer_id"), channel, 8, {}, "service")
        record = decider.decide_and_log([request], now).wait()[0]  # on disk before shown
        if isinstance(record, Exception):
            raise record
        return {
            "record": record_view(decider, state.index(), resolved, now),
            "decision": decision_view(record, decider),
        }

    async def outcome(self, request: Request) -> Response:
        return await self._change(request, self._outcome_event)

    async def case(self, request: Request) -> Response:
        return await self._change(request, self._case_event)

    async def consent(self, request: Request) -> Response:
        return await self._change(request, self._consent_event, admin=True)

    async def _change(
        self,
        request: Request,
        event: Callable[[str, dict[str, str], Session], tuple[str, dict[str, Any], str]],
        admin: bool = False,
    ) -> Response:
        session = self._session(request)
        if session is None:
            return self._login_page(request, "Sign in first.", 401)
        if admin and not session.is_admin:
            return _page("console_error.html", 403, message="Consent changes need an admin key.")
        form = await self._form(request, session)
        if form is None:
            return _page("console_error.html", 403, message="The form expired: reload the page.")
        cid = request.path_params["customer_id"]
        channel = form.get("channel", self._state().channel)
        try:
            kind, payload, done = event(cid, form, session)
            await _threaded(lambda: self._apply(cid, kind, payload, form, session))
        except RequestError as exc:
            field = str(exc).split(":", 1)[0]
            log.info("/console change refused: invalid %s", field)
            return _page("console_error.html", 400, message=f"Not recorded: {exc}")
        return _redirect(f"/customers/{cid}", channel=channel, done=done)

    def _apply(
        self, cid: str, kind: str, payload: dict[str, Any], form: dict[str, str], s: Session
    ) -> None:
        decider = self._state().decider
        event_id = f"console-{kind}-{secrets.token_hex(8)}"
        decider.apply_event(
            CustomerRef(cid, "customer_id"),
            kind,
            None,
            payload,
            event_id=event_id,
            source="console",
            actor=s.key.name,
        )

    @staticmethod
    def _outcome_event(
        cid: str, form: dict[str, str], s: Session
    ) -> tuple[str, dict[str, Any], str]:
        outcome = form.get("outcome", "")
        if outcome not in CONTACT_OUTCOMES:
            raise RequestError(f"outcome: must be one of {', '.join(CONTACT_OUTCOMES)}")
        payload = {
            "channel": form.get("channel", ""),
            "action_id": form.get("action_id", ""),
            "outcome": outcome,
        }
        if form.get("decision_id"):
            payload["decision_id"] = form["decision_id"]
        return "contact", payload, outcome

    def _case_event(
        self, cid: str, form: dict[str, str], s: Session
    ) -> tuple[str, dict[str, Any], str]:
        case_id = form.get("case_id") or f"console-{secrets.token_hex(6)}"
        return "service_case_closed", {"case_id": case_id}, "case_resolved"

    @staticmethod
    def _consent_event(
        cid: str, form: dict[str, str], s: Session
    ) -> tuple[str, dict[str, Any], str]:
        granted = form.get("granted")
        if granted not in ("yes", "no"):
            raise RequestError("granted: must be yes or no")
        payload = {
            "purpose": form.get("purpose", ""),
            "channel": form.get("channel", ""),
            "granted": granted == "yes",
            "legal_basis": "customer_request",
        }
        return "consent_changed", payload, "consent_changed"


#: The line shown after a change (by the ``done`` query value: no personal value).
DONE_MESSAGES = {
    **{k: f"Recorded: {v.lower()}." for k, v in OUTCOME_LABELS.items()},
    "case_resolved": "Recorded: the case is resolved. The actions below are decided again.",
    "consent_changed": "Recorded: the consent change.",
}


async def _threaded(call: Callable[[], Any]) -> Any:
    """Run a blocking call (stores, the ledger) off the event loop."""
    return await run_in_threadpool(call)


def console_app(state: StateGetter) -> Starlette:
    """The console's ASGI app (mounted at ``/console`` by the service)."""
    c = Console(state)
    app = Starlette(
        routes=[
            Route("/", c.home, methods=["GET"]),
            Route("/login", c.login, methods=["POST"]),
            Route("/logout", c.logout, methods=["POST"]),
            Route("/search", c.do_search, methods=["POST"]),
            Route("/customers/{customer_id}", c.customer, methods=["GET"]),
            Route("/customers/{customer_id}/outcome", c.outcome, methods=["POST"]),
            Route("/customers/{customer_id}/case", c.case, methods=["POST"]),
            Route("/customers/{customer_id}/consent", c.consent, methods=["POST"]),
        ],
        exception_handlers={DependencyUnavailable: _unavailable},
    )
    return app


async def _unavailable(request: Request, exc: Exception) -> Response:
    reason = getattr(exc, "reason", "unavailable")
    log.warning("/console 503: %s", reason)
    return _page(
        "console_error.html",
        503,
        message=f"A store the console needs is not available now ({reason}): try again shortly.",
    )

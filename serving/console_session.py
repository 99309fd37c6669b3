"""Browser sign-in of the agent console: an API key once, then a signed session cookie.

The agent pastes an API key into the sign-in form; a key holding the ``agent`` scope gets
a session cookie (``nb_console``: HttpOnly, SameSite=Strict, Path=/console, Secure over
HTTPS) signed with itsdangerous and the console secret, holding the key's SHA-256 (never
the key), a random session nonce and the time of sign-in. Every request checks the
signature and age (``console_session_minutes``) and looks the key's hash up in the key
ring again, so a revoked key or a removed scope ends its sessions at once.

Every form carries a CSRF token: an HMAC of the session nonce (the sign-in form: of a
pre-session nonce in its own short-lived cookie) under the same secret; a POST without
the right token, or from another origin, is refused and changes nothing.

The secret is ``console_secret`` from the settings, else a random one created once in
``console-secret`` under home (mode 0600) and shared by the service's workers.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer

from nextbest.core.api_keys import ApiKeyRecord, KeyRing
from nextbest.core.settings import Settings

#: The session cookie and the sign-in form's pre-session cookie.
SESSION_COOKIE = "nb_console"
LOGIN_COOKIE = "nb_console_login"
#: The scope a key needs to use the console; ``admin`` adds consent changes on request.
AGENT_SCOPE = "agent"
ADMIN_SCOPE = "admin"
#: Shortest configured secret accepted.
MIN_SECRET_CHARS = 32
#: How long a sign-in form stays valid, in seconds.
LOGIN_FORM_SECONDS = 1800


class ConsoleAuthError(ValueError):
    """A sign-in that cannot go on; the message is shown to the person signing in."""


def console_secret(settings: Settings) -> bytes:
    """The secret that signs sessions and CSRF tokens (see the module docs)."""
    if settings.console_secret is not None:
        value = settings.console_secret.get_secret_value()
        if len(value) < MIN_SECRET_CHARS:
            raise ConsoleAuthError(
                f"console_secret: must be at least {MIN_SECRET_CHARS} characters"
            )
        return value.encode()
    return _secret_file(settings.console_secret_path)


def _secret_file(path: Path) -> bytes:
    """The secret kept in ``path``, created (0600, atomically: a link fails if another
    worker made it first) when absent."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip().encode()


@dataclass(frozen=True)
class Session:
    """A signed-in agent: the key's record and the session's nonce."""

    key: ApiKeyRecord
    nonce: str

    @property
    def is_admin(self) -> bool:
        """Whether the key may change consent on the customer's request."""
        return ADMIN_SCOPE in self.key.scopes


class ConsoleSessions:
    """Signs and checks the console's cookies and CSRF tokens."""

    def __init__(self, secret: bytes, keys: KeyRing, max_age_seconds: int) -> None:
        self.secret = secret
        self.keys = keys
        self.max_age = max_age_seconds
        self._signer = URLSafeTimedSerializer(secret, salt="nextbest-console-session")

    # --- sign-in -------------------------------------------------------------------------

    def sign_in(self, presented: str) -> tuple[str, Session]:
        """The session cookie's value for a presented key, or :class:`ConsoleAuthError`
        (unknown key, or a key without the agent scope)."""
        self.keys.refresh()
        record = self.keys.lookup(presented.strip()) if presented else None
        if record is None:
            raise ConsoleAuthError("unknown API key")
        if AGENT_SCOPE not in record.scopes:
            raise ConsoleAuthError(
                f"this API key lacks the scope {AGENT_SCOPE!r}: the console is for agents"
            )
        nonce = secrets.token_urlsafe(16)
        return self._signer.dumps({"k": record.sha256, "n": nonce}), Session(record, nonce)

    def session(self, cookie: str | None) -> Session | None:
        """The session of a cookie value: None when absent, forged, expired, or its key
        revoked or no longer an agent's."""
        if not cookie:
            return None
        try:
            data = self._signer.loads(cookie, max_age=self.max_age)
        except BadSignature:
            return None
        if not isinstance(data, dict):
            return None
        self.keys.refresh()
        record = next((r for r in self.keys.records() if r.sha256 == data.get("k")), None)
        if record is None or AGENT_SCOPE not in record.scopes:
            return None
        return Session(record, str(data.get("n", "")))

    # --- CSRF ----------------------------------------------------------------------------

    def token(self, nonce: str) -> str:
        """The CSRF token of forms in the session (or sign-in form) with ``nonce``."""
        return hmac.new(self.secret, f"csrf:{nonce}".encode(), hashlib.sha256).hexdigest()

    def check_token(self, nonce: str | None, token: str | None) -> bool:
        """Whether ``token`` is the CSRF token of ``nonce``."""
        if not nonce or not token:
            return False
        return hmac.compare_digest(self.token(nonce), token)

    def login_nonce(self) -> tuple[str, str]:
        """A fresh sign-in form: (the pre-session cookie's value, the nonce)."""
        nonce = secrets.token_urlsafe(16)
        return self._signer.dumps({"login": nonce}), nonce

    def login_form_nonce(self, cookie: str | None) -> str | None:
        """The nonce of a pre-session cookie (None when absent, forged or too old)."""
        if not cookie:
            return None
        try:
            data = self._signer.loads(cookie, max_age=LOGIN_FORM_SECONDS)
        except BadSignature:
            return None
        return data.get("login") if isinstance(data, dict) else None

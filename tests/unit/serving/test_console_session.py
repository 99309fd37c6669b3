"""The console's sign-in: only agent keys, signed cookies that end with their key, CSRF
tokens bound to the session, and a secret shared by the workers."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from nextbest.core.api_keys import KeyRing, create_key, revoke_key
from nextbest.core.settings import get_settings
from serving.console_session import ConsoleAuthError, ConsoleSessions, console_secret


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture()
def keys(tmp_path: Path) -> tuple[Path, KeyRing, Clock]:
    path = tmp_path / "api_keys.json"
    create_key(path, "seed", ["decide"])
    clock = Clock()
    return path, KeyRing(path, clock=clock), clock


def test_only_an_agent_key_signs_in_and_the_cookie_holds_no_key(keys) -> None:
    path, ring, clock = keys
    agent, _ = create_key(path, "alice", ["agent"])
    decide_only, _ = create_key(path, "web", ["decide"])
    clock.t += 5
    sessions = ConsoleSessions(b"s" * 32, ring, 3600)
    with pytest.raises(ConsoleAuthError, match="lacks the scope 'agent'"):
        sessions.sign_in(decide_only)
    with pytest.raises(ConsoleAuthError, match="unknown API key"):
        sessions.sign_in("nb_" + "x" * 43)
    cookie, session = sessions.sign_in(agent)
    assert agent not in cookie and session.key.name == "alice"
    assert sessions.session(cookie).key.name == "alice"
    assert sessions.session(cookie[:-2] + "xx") is None  # forged
    assert ConsoleSessions(b"t" * 32, ring, 3600).session(cookie) is None  # other secret
    revoke_key(path, "alice")
    clock.t += 5
    assert sessions.session(cookie) is None  # a revoked key ends its sessions


def test_csrf_tokens_are_bound_to_their_session(keys) -> None:
    _, ring, _ = keys
    sessions = ConsoleSessions(b"s" * 32, ring, 3600)
    token = sessions.token("nonce-a")
    assert sessions.check_token("nonce-a", token)
    assert not sessions.check_token("nonce-b", token)
    assert not sessions.check_token("nonce-a", None) and not sessions.check_token(None, token)
    cookie, nonce = sessions.login_nonce()
    assert sessions.login_form_nonce(cookie) == nonce
    assert sessions.login_form_nonce("forged") is None


def test_the_generated_secret_is_private_and_shared(tmp_path: Path) -> None:
    settings = get_settings(home=tmp_path)
    first = console_secret(settings)
    assert console_secret(settings) == first and len(first) >= 32
    assert stat.S_IMODE(settings.console_secret_path.stat().st_mode) == 0o600
    short = get_settings(home=tmp_path, console_secret="too-short")
    with pytest.raises(ConsoleAuthError, match="at least 32"):
        console_secret(short)

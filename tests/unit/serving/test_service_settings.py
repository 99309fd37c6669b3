"""The service's switches come from the one typed settings object."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from core.settings import PROJECT_ROOT, Settings


@pytest.mark.parametrize(
    ("field", "default"),
    [
        ("trace_decide", False),
        ("fast_features", True),
        ("fast_http", True),
        ("inline_log_sync", True),
    ],
)
def test_the_service_switches_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, field: str, default: bool
) -> None:
    var = "NEXTBEST_" + field.upper()
    monkeypatch.delenv(var, raising=False)
    assert getattr(Settings(), field) is default
    monkeypatch.setenv(var, "false" if default else "1")
    assert getattr(Settings(), field) is (not default)
    monkeypatch.setenv(var, "maybe")
    with pytest.raises(ValueError, match=field):
        Settings()


def _last_line_printed(code: str, **env: str) -> str:
    """The last line ``code`` prints in a fresh interpreter (BentoML reads the service's
    options when the class is decorated, so each check imports the module afresh)."""
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        env={**os.environ, "BENTOML_DO_NOT_TRACK": "True", **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.strip().splitlines()[-1]


@pytest.mark.parametrize(("value", "excluded"), [("0", ["/decide"]), ("1", [])])
def test_the_service_class_takes_its_tracing_option_from_settings(
    value: str, excluded: list[str]
) -> None:
    # BentoML reads the option when the class is decorated: import the module afresh.
    code = "import serving.service as s; print(s.NextBest.config['tracing']['excluded_urls'])"
    assert _last_line_printed(code, NEXTBEST_TRACE_DECIDE=value) == repr(excluded)


def test_the_fast_decide_middleware_is_in_the_service_chain() -> None:
    # Whether it answers is decided per request (the running instance's handler, set when
    # fast_http is on and trace_decide off); the middleware itself is always in the chain.
    # BentoML's app builds its service middlewares in the order added, the first outermost:
    # the key check comes before the fast path.
    code = (
        "import serving.service as s; m = s.NextBest.middlewares; "
        "print([c.__name__ for c, _ in m], [(o['path'], o['server'], o['get_handler']()) "
        "for c, o in m if c.__name__ == 'FastDecideMiddleware'])"
    )
    line = _last_line_printed(code)
    assert line == (
        "['AuthMiddleware', 'OpenAPIMiddleware', 'FastDecideMiddleware'] "
        "[('/decide', 'BentoML Service/nextbest', None)]"
    )


def test_importing_the_service_module_reads_no_settings() -> None:
    # A setting BentoML would refuse is harmless until the service is built.
    code = "import serving.service as s; print('built' if 'NextBest' in vars(s) else 'not built')"
    assert _last_line_printed(code, NEXTBEST_TRACE_DECIDE="maybe") == "not built"


@pytest.mark.parametrize(
    ("fast_http", "trace_decide", "enabled"),
    [(True, False, True), (False, False, False), (True, True, False), (False, True, False)],
)
def test_the_fast_path_is_off_when_switched_off_or_traced(
    fast_http: bool, trace_decide: bool, enabled: bool
) -> None:
    from serving.service import fast_http_enabled

    s = Settings(fast_http=fast_http, trace_decide=trace_decide)
    assert fast_http_enabled(s) is enabled

"""The service's switches come from the one typed settings object."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nextbest.core.settings import PROJECT_ROOT, Settings


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


def test_the_service_chain_limits_bodies_serves_the_spec_and_answers_the_json_apis() -> None:
    # Whether the JSON middleware answers is decided per request (the running instance's
    # handler); the middlewares themselves are always in the chain, the key check first
    # (BentoML's app builds the service's middlewares in the order added, the first outermost).
    code = (
        "import serving.service as s; "
        "print([(m.__name__, o.get('max_bytes'), o.get('paths')) "
        "for m, o in s.NextBest.middlewares])"
    )
    line = _last_line_printed(code, NEXTBEST_MAX_REQUEST_BYTES="2048")
    assert line == (
        "[('AuthMiddleware', None, None), ('BodyLimitMiddleware', 2048, None), "
        "('OpenAPIMiddleware', None, None), "
        "('JsonApiMiddleware', None, ('/decide', '/events'))]"
    )


def test_the_decide_context_is_typed_by_the_policy_allow_list(tmp_path: Path) -> None:
    policy = yaml.safe_load((PROJECT_ROOT / "config" / "policy.yaml").read_text())
    policy["context"] = {"shelf": {"type": "integer", "minimum": 1, "maximum": 9}}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    code = (
        "import json, serving.service as s; "
        "m = s.NextBest.apis['decide'].input_spec; "
        "print(json.dumps(m.model_json_schema()['$defs']['DecideContext']['properties']))"
    )
    shown = json.loads(_last_line_printed(code, NEXTBEST_POLICY=str(path)))
    assert list(shown) == ["shelf"]
    assert {"type": "integer", "minimum": 1, "maximum": 9}.items() <= shown["shelf"]["anyOf"][
        0
    ].items()


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


def test_the_decide_channel_enum_is_the_catalog_s() -> None:
    # Read when the class is decorated: a catalog with a branch channel gets it in the enum.
    code = (
        "import serving.service as s; "
        "print(s.NextBest.apis['decide'].input_spec.model_json_schema()"
        "['properties']['channel']['anyOf'][0]['enum'])"
    )
    # with the bank's policy: the demo's caps name channels the bank lacks, which stops
    # the service at start
    bank = PROJECT_ROOT / "tests" / "worlds" / "bank"
    shown = _last_line_printed(
        code,
        NEXTBEST_CATALOG=str(bank / "catalog.yaml"),
        NEXTBEST_POLICY=str(bank / "policy.yaml"),
    )
    assert shown == repr(["email", "sms", "branch", "web"])
    demo = ["email", "sms", "push", "web", "app", "call_center"]
    assert _last_line_printed(code) == repr(demo)

"""The API key store: keys stored hashed, validated files, reload on change."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from nextbest.core.api_keys import (
    ApiKeyError,
    ApiKeyRecord,
    KeyRing,
    create_key,
    hash_key,
    load_keys,
    revoke_key,
)
from nextbest.core.settings import get_settings


def test_a_created_key_is_stored_as_its_hash_only(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    key, record = create_key(path, "crm", ["events", "decide"], rate_per_second=5)
    assert key.startswith("nb_") and len(key) == 3 + 43
    text = path.read_text()
    assert key not in text and key[3:] not in text
    assert hash_key(key) in text
    assert os.stat(path).st_mode & 0o777 == 0o600
    [loaded] = load_keys(path)
    assert loaded == record
    assert (loaded.name, loaded.scopes, loaded.rate_per_second) == ("crm", ("events", "decide"), 5)
    assert set(orjson.loads(text)["keys"][0]) == {
        "name",
        "sha256",
        "scopes",
        "rate_per_second",
        "created",
    }
    other, _ = create_key(path, "ops", ["admin"])
    assert other != key
    assert [r.name for r in load_keys(path)] == ["crm", "ops"]


def test_key_commands_refuse_without_writing(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    create_key(path, "crm", ["events"])
    before = path.read_bytes()
    with pytest.raises(ApiKeyError, match="'crm' exists already"):
        create_key(path, "crm", ["decide"])
    with pytest.raises(ApiKeyError, match=r"scopes\.0.*got 'write'"):
        create_key(path, "new", ["write"])
    with pytest.raises(ApiKeyError, match="name"):
        create_key(path, "has space", ["decide"])
    with pytest.raises(ApiKeyError, match="no key named 'nobody'"):
        revoke_key(path, "nobody")
    assert path.read_bytes() == before
    assert revoke_key(path, "crm").name == "crm"
    assert load_keys(path) == []


def _write(path: Path, keys: list[dict]) -> None:
    path.write_bytes(orjson.dumps({"keys": keys}))


def test_a_bad_key_file_is_a_clear_error_naming_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    good = {"name": "a", "sha256": "0" * 64, "scopes": ["decide"]}
    _write(path, [{**good, "scopes": ["decide", "superuser"]}])
    with pytest.raises(ApiKeyError, match=r"keys\.json: keys\.0\.scopes\.1.*'superuser'"):
        load_keys(path)
    with pytest.raises(ApiKeyError, match=r"keys\.json: keys\.0\.sha256"):
        _write(path, [{**good, "sha256": "not-a-hash"}])
        load_keys(path)
    with pytest.raises(ApiKeyError, match=r"keys\.0\.key"):  # a raw key has no place here
        _write(path, [{**good, "key": "nb_x"}])
        load_keys(path)
    with pytest.raises(ApiKeyError, match="'a' is used twice"):
        _write(path, [good, {**good, "sha256": "1" * 64}])
        load_keys(path)
    assert load_keys(tmp_path / "absent.json") == []


def test_settings_hold_inline_keys_and_refuse_unknown_scopes(tmp_path: Path) -> None:
    settings = get_settings(home=tmp_path)
    assert settings.api_keys_path == tmp_path.resolve() / "api_keys.json"
    inline = [{"name": "env", "sha256": hash_key("k"), "scopes": ["decide"]}]
    assert get_settings(home=tmp_path, api_keys=inline).api_keys[0].name == "env"
    with pytest.raises(ValueError, match="scopes"):
        get_settings(home=tmp_path, api_keys=[{**inline[0], "scopes": ["root"]}])


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_the_ring_finds_keys_by_hash_and_reloads_a_changed_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    key, _ = create_key(path, "crm", ["events"])
    inline = ApiKeyRecord(name="env", sha256=hash_key("inline-key"), scopes=("decide",))
    clock = Clock()
    ring = KeyRing(path, [inline], clock=clock)
    assert ring.lookup(key).name == "crm"
    assert ring.lookup("inline-key").name == "env"
    assert ring.lookup(key + "x") is None and ring.lookup("") is None
    assert ring.lookup("x" * 10_000) is None

    revoke_key(path, "crm")
    clock.t += 0.5
    assert ring.refresh() is True  # first check: the file changed
    assert ring.lookup(key) is None
    second, _ = create_key(path, "ops", ["admin"])
    clock.t += 0.5
    assert ring.refresh() is False  # checked less than a second ago: not even a stat
    assert ring.lookup(second) is None
    clock.t += 0.6
    assert ring.refresh() is True and ring.lookup(second).name == "ops"
    clock.t += 1.0
    assert ring.refresh() is False  # unchanged

    path.write_text("{not json")  # broken while serving: no file key, inline ones still
    clock.t += 1.0
    assert ring.refresh() is True and ring.error is not None
    assert ring.lookup(second) is None and ring.lookup("inline-key").name == "env"


def test_a_ring_refuses_a_bad_file_or_a_clash_at_start_up(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    create_key(path, "env", ["events"])
    inline = ApiKeyRecord(name="env", sha256=hash_key("k"), scopes=("decide",))
    with pytest.raises(ApiKeyError, match="'env' is used twice"):
        KeyRing(path, [inline])
    path.write_text('{"keys": [{"name": "x", "sha256": "%s", "scopes": ["all"]}]}' % ("0" * 64))
    with pytest.raises(ApiKeyError, match="scopes"):
        KeyRing(path)

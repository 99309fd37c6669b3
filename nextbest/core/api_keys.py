"""API keys of the decision service: created, listed, revoked and looked up.

A key is a high-entropy random token (``nb_`` and 43 URL-safe characters, 256 bits) shown
once when it is created. Only its SHA-256 is stored, with the key's name, scopes, rate
limit and creation time, in a JSON file (``{"keys": [...]}``, mode 0600, replaced
atomically) or inline in the settings. A presented key is hashed and looked up by its hash
(a dict lookup), then compared with :func:`hmac.compare_digest`.

:class:`KeyRing` is what the service holds: the inline keys plus the file's, reloaded when
the file changes (its ``stat`` is checked at most once per second), so a revoked key stops
working without a restart. docs/security.md describes keys, scopes and rotation.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nextbest.core.errors import InputError
from nextbest.core.vocabulary import API_SCOPES

Scope = Literal[API_SCOPES]  # type: ignore[valid-type]

#: Every key starts with this, so a leaked one is recognisable (secret scanners).
KEY_PREFIX = "nb_"
#: Random bytes of a key (43 URL-safe characters).
KEY_BYTES = 32
#: Longer presented keys are refused without hashing them.
MAX_KEY_CHARS = 256
#: A key name: what logs and the event ledger's ``actor`` show.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class ApiKeyError(InputError):
    """A key file or key configuration that cannot be used, or a key command that cannot
    be done (duplicate name, unknown name)."""


class ApiKeyRecord(BaseModel):
    """One stored key: its hash, never the key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="Who holds the key (logs, actor).")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the key, hex.")
    scopes: tuple[Scope, ...] = Field(min_length=1, description="What the key may call.")
    rate_per_second: float | None = Field(
        None, gt=0, description="Requests per second over all workers (unset: unlimited)."
    )
    burst: int | None = Field(
        None, ge=1, description="Requests allowed at once (unset: one second's worth)."
    )
    created: datetime | None = Field(None, description="When the key was created (UTC).")


class _KeyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[ApiKeyRecord] = Field(default_factory=list)


def hash_key(key: str) -> str:
    """The stored form of a key: SHA-256, hex."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def new_key() -> str:
    """A fresh random key."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def _describe(exc: ValidationError, where: str) -> str:
    """The first problem of a key file, by field; the key hash is never quoted."""
    err = exc.errors()[0]
    loc = ".".join(map(str, err["loc"])) or "(top level)"
    got = f" (got {err['input']!r})" if err["type"] == "literal_error" else ""
    return f"{where}: {loc}: {err['msg']}{got}; scopes are {', '.join(API_SCOPES)}"


def load_keys(path: Path) -> list[ApiKeyRecord]:
    """The keys of a key file (none if it does not exist); a malformed file, an unknown
    scope or a repeated name or hash raises :class:`ApiKeyError` naming file and field."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    try:
        records = _KeyFile.model_validate_json(raw).keys
    except ValidationError as exc:
        raise ApiKeyError(_describe(exc, str(path))) from None
    check_unique(records, str(path))
    return records


def check_unique(records: Iterable[ApiKeyRecord], where: str) -> None:
    """Raise :class:`ApiKeyError` if two keys share a name or a hash."""
    names: set[str] = set()
    hashes: set[str] = set()
    for r in records:
        if r.name in names:
            raise ApiKeyError(f"{where}: key name {r.name!r} is used twice")
        if r.sha256 in hashes:
            raise ApiKeyError(f"{where}: key {r.name!r} has the hash of another key")
        names.add(r.name)
        hashes.add(r.sha256)


def save_keys(path: Path, records: list[ApiKeyRecord]) -> None:
    """Write the key file atomically (a reader sees the old or the new file), mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = orjson.dumps(
        {"keys": [r.model_dump(mode="json", exclude_none=True) for r in records]},
        option=orjson.OPT_INDENT_2,
    )
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:  # mkstemp creates it 0600
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def create_key(
    path: Path,
    name: str,
    scopes: Iterable[str],
    rate_per_second: float | None = None,
    burst: int | None = None,
) -> tuple[str, ApiKeyRecord]:
    """Add a key to the key file; returns the key (shown once, not stored) and its record.
    A used name or an unknown scope raises :class:`ApiKeyError` and writes nothing."""
    records = load_keys(path)
    if any(r.name == name for r in records):
        raise ApiKeyError(f"key name {name!r} exists already in {path}: revoke it first")
    key = new_key()
    try:
        record = ApiKeyRecord(
            name=name,
            sha256=hash_key(key),
            scopes=tuple(dict.fromkeys(scopes)),
            rate_per_second=rate_per_second,
            burst=burst,
            created=datetime.now(UTC).replace(microsecond=0),
        )
    except ValidationError as exc:
        raise ApiKeyError(_describe(exc, "key")) from None
    save_keys(path, [*records, record])
    return key, record


def revoke_key(path: Path, name: str) -> ApiKeyRecord:
    """Remove the key called ``name`` from the key file; an unknown name raises."""
    records = load_keys(path)
    kept = [r for r in records if r.name != name]
    if len(kept) == len(records):
        raise ApiKeyError(f"no key named {name!r} in {path}")
    save_keys(path, kept)
    return next(r for r in records if r.name == name)


def write_secret(path: Path, key: str) -> None:
    """Write a raw key to ``path`` readable by its owner only (0600, even if it existed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(key + "\n")


def _file_version(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class KeyRing:
    """The keys a server accepts, by hash: ``inline`` ones and those of ``path``.

    The file is re-read when its modification time (or size, or inode) changes, checked at
    most once per ``interval`` seconds. A file that turns invalid while serving is logged
    by :meth:`refresh`'s caller and accepts no file key until fixed (fail closed): inline
    keys keep working.
    """

    def __init__(
        self,
        path: Path | None,
        inline: Iterable[ApiKeyRecord] = (),
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.inline = list(inline)
        self.interval = interval
        self.clock = clock
        check_unique(self.inline, "settings api_keys")
        self._by_hash: dict[str, ApiKeyRecord] = {}
        self._version: tuple[int, int, int] | None = None
        self._checked = -float("inf")
        #: The last reload's error (None: the file is valid or absent).
        self.error: ApiKeyError | None = None
        self._load(raise_errors=True)

    def _load(self, raise_errors: bool) -> None:
        version = _file_version(self.path) if self.path else None
        try:
            records = load_keys(self.path) if self.path else []
            check_unique([*self.inline, *records], f"{self.path} with settings api_keys")
        except ApiKeyError as exc:
            if raise_errors:
                raise
            self.error, records = exc, []
        else:
            self.error = None
        self._by_hash = {r.sha256: r for r in [*self.inline, *records]}
        self._version = version

    def refresh(self) -> bool:
        """Reload the file if it changed (stat at most once per interval); whether it did."""
        now = self.clock()
        if now - self._checked < self.interval:
            return False
        self._checked = now
        if self.path is None or _file_version(self.path) == self._version:
            return False
        self._load(raise_errors=False)
        return True

    def lookup(self, key: str) -> ApiKeyRecord | None:
        """The record of a presented key, or None for an unknown one."""
        if len(key) > MAX_KEY_CHARS:
            return None
        digest = hash_key(key)
        record = self._by_hash.get(digest)
        if record is None or not hmac.compare_digest(record.sha256, digest):
            return None
        return record

    def records(self) -> list[ApiKeyRecord]:
        """Every key accepted now."""
        return list(self._by_hash.values())

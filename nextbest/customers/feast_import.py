"""Import Feast once per process, without typeguard's import-time instrumentation.

Feast decorates its definition classes (``FeatureView``, ``Entity``, data sources, ...)
with typeguard's ``@typechecked``, which re-parses and re-compiles the source of every
decorated module when it is imported, several times the CPU of the import without it
(benchmarks/README.md). Every ``bentoml serve`` worker, training job and notebook kernel
pays that at start-up. The checks only validate the argument types of Feast's own
constructors; ``settings.feast_type_checks`` keeps them (the tests build the project's
definitions once with them on, so a wrongly typed definition is still caught).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from nextbest.core.settings import Settings

# Feast modules that use @typechecked and are not loaded by ``import feast`` itself but
# by this project (the SQLite online store: the fast reader and the bulk engine).
_ALSO = ("feast.infra.online_stores.sqlite",)


def _passthrough(target: Any = None, **_: Any) -> Any:
    """``typechecked`` that returns its target unchanged (also as ``@typechecked(...)``)."""
    if target is None:
        return lambda t: t
    return target


def import_feast(settings: Settings) -> ModuleType:
    """The ``feast`` package, imported now unless this process already has it.

    Without ``settings.feast_type_checks`` typeguard's decorator is replaced by a
    pass-through for the duration of the import only; nothing else in the process sees
    the change. Once Feast is imported (by this or any other path) this is a lookup.
    """
    if "feast" in sys.modules:
        return sys.modules["feast"]
    if settings.feast_type_checks:
        # lazy: feast loads after import_feast, and only where a store is used
        import feast

        return feast
    # lazy: typeguard is optional
    import typeguard

    original: Callable[..., Any] = typeguard.typechecked
    typeguard.typechecked = _passthrough  # type: ignore[assignment]
    try:
        # lazy: feast loads after import_feast, and only where a store is used
        import feast

        for name in _ALSO:
            __import__(name)
    finally:
        typeguard.typechecked = original  # type: ignore[assignment]
    return feast

"""Feast definitions for the plain ``feast`` CLI run in this folder.

The objects are built by :func:`nextbest.customers.feast_definitions.build_definitions` from the
settings (``Settings()``: ``NEXTBEST_*`` variables and ``.env``, default home ``var/``) and
the action catalog's products, categories and actions; ``nextbest features apply`` builds
the same objects from its own settings without importing this file.
"""

from nextbest.core.settings import PROJECT_ROOT, Settings
from nextbest.customers.feast_definitions import build_definitions
from nextbest.decisions.catalog import load_catalog

_settings = Settings()
if not _settings.home.is_absolute():
    # As in feature_store.yaml: a relative home is the project's, wherever the CLI runs.
    _settings = Settings(home=PROJECT_ROOT / _settings.home)
_definitions = build_definitions(_settings, load_catalog(_settings.catalog).terms())

# The CLI collects Feast objects from this module's names.
globals().update(_definitions.named)
push_sources = _definitions.push_sources

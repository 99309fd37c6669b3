"""The Jinja2 environment of the service's pages (the API page and the console): templates
from ``serving/templates``, every value escaped."""

from __future__ import annotations

import functools
from pathlib import Path

import jinja2

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"


@functools.cache
def templates() -> jinja2.Environment:
    """The one environment (built on first use); autoescape on for every template."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )

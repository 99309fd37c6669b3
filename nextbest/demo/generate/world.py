"""The entry point: :func:`generate` runs the steps in the order they draw and write, and
says what it wrote (:data:`EXPORT_FILES`, :data:`OUTPUT_FILES`, :class:`GenerationSummary`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from nextbest.core.errors import InputError
from nextbest.demo.generate.arrays import _rng
from nextbest.demo.generate.behaviour import _app_events, _baskets, _web_events
from nextbest.demo.generate.campaigns import _campaigns
from nextbest.demo.generate.catalog import DEFAULT_AS_OF
from nextbest.demo.generate.consent_cases import _consent, _service_cases
from nextbest.demo.generate.holdings import _holdings_and_products
from nextbest.demo.generate.identity import _identity_sources
from nextbest.demo.generate.noise import _name_variants
from nextbest.demo.generate.people import _FIRST_NAMES, _LAST_NAMES, _population
from nextbest.demo.generate.response import _State
from nextbest.demo.generate.truth_tables import _truth
from nextbest.demo.generate.writer import ProgressCallback, _Writer
from nextbest.demo.truth import mark_own_eraser

#: Source-system exports written to ``out_dir`` (without the ``.parquet`` suffix).
EXPORT_FILES: tuple[str, ...] = (
    "crm_accounts",
    "email_leads",
    "loyalty_members",
    "pos_baskets",
    "app_accounts",
    "app_events",
    "web_events",
    "service_cases",
    "consent",
    "holdings",
    "products",
    "campaign_exposures",
)


@dataclass(frozen=True)
class GenerationSummary:
    """What :func:`generate` wrote."""

    out_dir: Path
    seed: int
    as_of: datetime
    n_persons: int
    n_households: int
    rows: dict[str, int] = field(default_factory=dict)


#: Files written, in order (for progress bars).
OUTPUT_FILES: tuple[str, ...] = (
    "crm_accounts",
    "email_leads",
    "loyalty_members",
    "app_accounts",
    "service_cases",
    "web_events",
    "app_events",
    "pos_baskets",
    "holdings",
    "products",
    "consent",
    "campaign_exposures",
    "campaign_truth",
    "persons",
    "households",
    "records",
    "response",
)


def generate(
    n_customers: int,
    seed: int,
    out_dir: Path,
    as_of: datetime | None = None,
    progress: ProgressCallback | None = None,
) -> GenerationSummary:
    """Generate the source exports for ``n_customers`` persons into ``out_dir``.

    Exports go to ``out_dir/*.parquet`` and the truth to ``out_dir/truth/``. The same
    ``(n_customers, seed, as_of)`` gives byte-identical files; ``as_of`` (the end of the
    data, nothing is later) defaults to :data:`DEFAULT_AS_OF`. ``progress`` is called with
    the name of each file once it is written (see :data:`OUTPUT_FILES`).
    """
    if n_customers < 10:
        raise InputError(
            f"--customers: a generated world needs at least 10 persons, got {n_customers}"
        )
    as_of = DEFAULT_AS_OF if as_of is None else as_of
    if as_of.tzinfo is None:
        raise InputError("as_of must be timezone-aware (UTC)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    as_of_s = int(as_of.timestamp())
    writer = _Writer(out_dir, progress)

    pop = _population(n_customers, seed, as_of_s)
    name_rng = _rng(seed, "names")
    first_v = _name_variants(_FIRST_NAMES, name_rng)
    last_v = _name_variants(_LAST_NAMES, name_rng)
    ids = _identity_sources(pop, seed, as_of_s, writer, first_v, last_v)
    complaint_keys = _service_cases(pop, ids, seed, as_of_s, writer)
    repeat_keys = _web_events(pop, ids, seed, as_of_s, writer)
    _app_events(pop, ids, seed, as_of_s, writer)
    _baskets(pop, ids, seed, as_of_s, writer)
    hp, hj, since = _holdings_and_products(pop, ids, seed, as_of_s, writer)
    _consent(pop, ids, seed, as_of_s, writer)
    state = _State(complaint_keys, repeat_keys, hp, hj, since)
    _campaigns(pop, ids, state, seed, as_of_s, writer)
    _truth(pop, ids, state, as_of_s, writer)
    mark_own_eraser(out_dir / "truth")
    return GenerationSummary(
        out_dir=out_dir,
        seed=seed,
        as_of=as_of,
        n_persons=pop.n,
        n_households=pop.n_households,
        rows=dict(writer.rows),
    )

"""Synthetic multi-source customer data with a known truth.

Persons with latent attributes (age, income, tenure, category interests, digital
affinity, churn risk, complaint propensity, household) are drawn first; every source
system then exports its own, noisy view of them (own record ids, spelling, formats and
missing fields). Randomised campaigns with stated assignment probabilities record
exposures and outcomes whose response probabilities follow a heterogeneous uplift model
driven by the same attributes, so that features built from the observable exports can
learn it. The truth (person of each record, latent attributes, response probabilities)
goes only under ``out_dir/truth/``.

Everything is vectorised with numpy and pyarrow; the output is byte-identical for a
given seed and size (fixed row order, no wall-clock values, one writer setting).

The steps, in the order :func:`generate` (``world.py``) runs them: ``people`` (persons and
households), ``identity`` (CRM, email leads, loyalty, app accounts, devices),
``consent_cases`` (service cases), ``behaviour`` (web and app events, baskets), ``holdings``
(holdings, products and stock), ``consent_cases`` (consent), ``campaigns`` and
``truth_tables``. They share ``catalog`` (products, actions, time spans), ``noise``
(spellings and formats), ``records`` (native ids, record truth), ``response`` (the uplift
model), ``arrays`` (vectorised helpers) and ``writer`` (parquet files).
"""

from __future__ import annotations

from nextbest.demo.generate.catalog import (
    ACTIONS,
    CATEGORIES,
    CHANNELS,
    COMPLAINT_WINDOW_DAYS,
    DAY,
    DEFAULT_AS_OF,
    HISTORY_DAYS,
    OUTCOME_WINDOW_DAYS,
    PRODUCTS,
    PURPOSES,
    REPEAT_WINDOW_DAYS,
    Action,
    Product,
)
from nextbest.demo.generate.noise import RECORD_NOISE
from nextbest.demo.generate.world import EXPORT_FILES, OUTPUT_FILES, GenerationSummary, generate
from nextbest.demo.generate.writer import ProgressCallback

__all__ = [
    "ACTIONS",
    "CATEGORIES",
    "CHANNELS",
    "COMPLAINT_WINDOW_DAYS",
    "DAY",
    "DEFAULT_AS_OF",
    "EXPORT_FILES",
    "HISTORY_DAYS",
    "OUTCOME_WINDOW_DAYS",
    "OUTPUT_FILES",
    "PRODUCTS",
    "PURPOSES",
    "RECORD_NOISE",
    "REPEAT_WINDOW_DAYS",
    "Action",
    "GenerationSummary",
    "Product",
    "ProgressCallback",
    "generate",
]

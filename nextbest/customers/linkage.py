"""The Splink model for person records: comparisons, blocking, training, scoring.

Configured as the Splink documentation recommends for people (the FEBRL examples and
the comparison templates of ``splink.comparison_library``):

- **Names**: Jaro-Winkler levels (0.92, 0.88, 0.7) with term-frequency adjustment on the
  exact level, so a shared rare surname counts for more than a shared common one, and a
  "columns reversed" level so a record with first and last name swapped still agrees.
- **Date of birth**: graded: exact; one edit apart (a digit typo); day and month
  swapped; same year only; anything else.
- **Postcode**: exact (term frequencies), one edit apart (a typo), same sector, same
  district (UK postcodes, derived before Splink sees them).
- **Street and city**: exact (term frequencies) and Jaro-Winkler >= 0.9.

Several blocking rules (full name, swapped name, date of birth, postcode with a name
initial, three-letter name prefixes, street) so one typo cannot hide a pair from every
rule. The prior is estimated from deterministic rules with an assumed recall, u by
random sampling, m by expectation maximisation blocked on date of birth and then on
postcode, as in the Splink FEBRL examples. Every pair at or above ``min_weight`` is
returned with its match weight and comparison levels; the caller applies the threshold.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

#: The columns the model compares (canonical names after normalisation).
MODEL_COLUMNS: tuple[str, ...] = (
    "first_name",
    "last_name",
    "date_of_birth",
    "postcode",
    "street",
    "city",
)
#: Per-comparison partial match weights returned with each pair (Splink's ``mw_``
#: columns): which level each field reached, as the evidence it gave for or against.
LEVEL_COLUMNS: tuple[str, ...] = tuple(f"mw_{c}" for c in MODEL_COLUMNS)


@dataclass(frozen=True)
class ModelSettings:
    """Training knobs of :func:`score_pairs`.

    ``prior_recall`` is the share of true pairs the deterministic rules (same full name
    and date of birth, or the same with names swapped) are assumed to find; Splink turns
    it into the prior match probability. ``u_max_pairs`` bounds the random sample for u;
    ``em_max_pairs`` the pairs EM sees per blocking rule; ``seed`` fixes both samples.
    """

    prior_recall: float = 0.8
    u_max_pairs: float = 2e6
    em_max_pairs: float = 2e6
    seed: int = 42
    threads: int = 2


def _uk_postcode_parts(postcode: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Sector and district of normalised UK postcodes (no space); missing otherwise.

    Splink's ``PostcodeComparison`` expects the spaced form; ours is normalised without
    the space, so the parts are cut here: the inward code is the last three characters.
    """
    uk = postcode.str.fullmatch(r"[A-Z]{1,2}[0-9][A-Z0-9]?[0-9][A-Z]{2}", na=False)
    sector = postcode.str[:-2].where(uk)
    district = postcode.str[:-3].where(uk)
    return sector, district


def model_input(norm: pd.DataFrame) -> pd.DataFrame:
    """The frame Splink sees: ``uid`` (record position), model columns, postcode parts."""
    out = norm.loc[:, list(MODEL_COLUMNS)].copy()
    out.insert(0, "uid", np.arange(len(norm), dtype=np.int64))
    out["postcode_sector"], out["postcode_district"] = _uk_postcode_parts(norm["postcode"])
    return out


def _name(col: str, other: str):
    # lazy: splink is heavy and needed only to link
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    return cl.CustomComparison(
        output_column_name=col,
        comparison_levels=[
            cll.NullLevel(col),
            cll.ExactMatchLevel(col, term_frequency_adjustments=True),
            cll.ColumnsReversedLevel(col, other, symmetrical=True).configure(
                label_for_charts=f"{col} equals the other record's {other}"
            ),
            cll.JaroWinklerLevel(col, 0.92),
            cll.JaroWinklerLevel(col, 0.88),
            cll.JaroWinklerLevel(col, 0.7),
            cll.ElseLevel(),
        ],
    )


def _date_of_birth():
    # lazy: splink is heavy and needed only to link
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    # ISO strings (YYYY-MM-DD): characters 6-7 are the month, 9-10 the day.
    swapped = (
        "substr(date_of_birth_l, 1, 4) = substr(date_of_birth_r, 1, 4)"
        " and substr(date_of_birth_l, 6, 2) = substr(date_of_birth_r, 9, 2)"
        " and substr(date_of_birth_l, 9, 2) = substr(date_of_birth_r, 6, 2)"
    )
    return cl.CustomComparison(
        output_column_name="date_of_birth",
        comparison_levels=[
            cll.NullLevel("date_of_birth"),
            cll.ExactMatchLevel("date_of_birth"),
            cll.DamerauLevenshteinLevel("date_of_birth", 1).configure(
                label_for_charts="One edit apart (digit typo)"
            ),
            cll.CustomLevel(swapped, label_for_charts="Day and month swapped"),
            cll.CustomLevel(
                "substr(date_of_birth_l, 1, 4) = substr(date_of_birth_r, 1, 4)",
                label_for_charts="Same year only",
            ),
            cll.ElseLevel(),
        ],
    )


def _postcode():
    # lazy: splink is heavy and needed only to link
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    return cl.CustomComparison(
        output_column_name="postcode",
        comparison_levels=[
            cll.NullLevel("postcode"),
            cll.ExactMatchLevel("postcode", term_frequency_adjustments=True),
            cll.DamerauLevenshteinLevel("postcode", 1).configure(
                label_for_charts="One edit apart (typo)"
            ),
            cll.ExactMatchLevel("postcode_sector").configure(label_for_charts="Same sector"),
            cll.ExactMatchLevel("postcode_district").configure(label_for_charts="Same district"),
            cll.ElseLevel(),
        ],
    )


def settings_creator(prior: float = 1e-4):
    """Splink ``SettingsCreator`` of the person model (see the module docstring)."""
    # lazy: splink is heavy and needed only to link
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="uid",
        probability_two_random_records_match=prior,
        blocking_rules_to_generate_predictions=[
            block_on("first_name", "last_name"),
            "l.first_name = r.last_name and l.last_name = r.first_name",
            block_on("date_of_birth"),
            block_on("postcode", "substr(first_name, 1, 1)"),
            block_on("postcode", "substr(last_name, 1, 1)"),
            block_on("substr(first_name, 1, 3)", "substr(last_name, 1, 3)"),
            block_on("street", "substr(last_name, 1, 1)"),
        ],
        comparisons=[
            _name("first_name", "last_name"),
            _name("last_name", "first_name"),
            _date_of_birth(),
            _postcode(),
            cl.JaroWinklerAtThresholds("street", [0.9]).configure(term_frequency_adjustments=True),
            cl.JaroWinklerAtThresholds("city", [0.9]).configure(term_frequency_adjustments=True),
        ],
        # The comparison levels go to the review file; they are intermediate columns.
        retain_intermediate_calculation_columns=True,
        retain_matching_columns=False,
    )


def spark_backend(threads: int = 2, master: str | None = None):
    """Splink's Spark backend on a Spark session with master ``master`` (None:
    ``local[threads]``; a cluster's URL runs it there), with the similarity functions
    (Jaro-Winkler, Damerau-Levenshtein) Splink ships as a jar.

    An active session is reused as Spark does (``getOrCreate``), whatever its master.
    """
    # lazy: pyspark (the spark extra) is optional and heavy
    from pyspark.sql import SparkSession
    from splink.backends.spark import SparkAPI, similarity_jar_location

    jar = similarity_jar_location()
    spark = (
        SparkSession.builder.master(master or f"local[{threads}]")
        .appName("nextbest-identity")
        .config("spark.jars", jar)
        .config("spark.sql.shuffle.partitions", str(max(2 * threads, 2)))
        .config("spark.driver.memory", "2g")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    if jar not in spark.sparkContext.getConf().get("spark.jars", ""):
        # getOrCreate returned a session started without the jar (e.g. by batch decisions
        # in the same process): add it to that session so Splink can register its UDFs.
        spark.sql(f"ADD JAR '{jar}'")
    spark.sparkContext.setLogLevel("ERROR")
    if spark.sparkContext.master.startswith("local"):
        # Splink checkpoints between steps; a local directory keeps lineage short. A
        # cluster needs a directory every executor shares: its own spark.checkpoint.dir.
        spark.sparkContext.setCheckpointDir(str(Path(tempfile.gettempdir()) / "nextbest-splink"))
    return SparkAPI(spark_session=spark)


def trained_linker(frame: pd.DataFrame, settings: ModelSettings, backend=None):
    """A Splink linker on ``frame`` (:func:`model_input`) with prior, u and m estimated.

    ``backend`` is a Splink database API (``DuckDBAPI`` in process by default,
    ``SparkAPI`` past one machine); the settings and training are the same for both.
    """
    # lazy: splink is heavy and needed only to link
    from splink import Linker, block_on

    if backend is None:
        # lazy: duckdb is needed only by this query
        import duckdb
        from splink import DuckDBAPI

        con = duckdb.connect()
        con.execute(f"SET threads TO {settings.threads}")
        backend = DuckDBAPI(con)
    table = backend.register(frame)
    linker = Linker(table, settings_creator(prior=1.0 / max(len(frame), 2)))
    # Splink cannot estimate the prior from rules that match nothing (small data): the
    # records then keep the prior of one match per record.
    names = np.sort(frame[["first_name", "last_name"]].fillna("").to_numpy(str), axis=1)
    keys = pd.DataFrame(names).assign(dob=frame["date_of_birth"].to_numpy(object))
    keys = keys[(names != "").all(axis=1) & keys["dob"].notna().to_numpy()]
    if keys.duplicated().any():
        linker.training.estimate_probability_two_random_records_match(
            [
                block_on("first_name", "last_name", "date_of_birth"),
                "l.first_name = r.last_name and l.last_name = r.first_name"
                " and l.date_of_birth = r.date_of_birth",
            ],
            recall=settings.prior_recall,
        )
    linker.training.estimate_u_using_random_sampling(
        max_pairs=settings.u_max_pairs, seed=settings.seed
    )
    for column in ("date_of_birth", "postcode"):
        before = linker.misc.save_model_to_json()
        try:
            linker.training.estimate_parameters_using_expectation_maximisation(
                block_on(column),
                estimate_without_term_frequencies=True,
                max_pairs=settings.em_max_pairs,
            )
        except ValueError as exc:
            # On small or clean data EM can drive a level seen only among non-matches to
            # an m probability below what float64 holds; Splink refuses to store it and
            # leaves the session half written. The model goes on as it was before the
            # session (the other session's estimates, or the defaults).
            if "below the minimum allowed value" not in str(exc):
                raise
            log.warning("Splink EM blocked on %s left out: %s", column, exc)
            linker = Linker(table, before)
    return linker


def score_pairs(
    norm: pd.DataFrame, settings: ModelSettings, min_weight: float, backend=None
) -> pd.DataFrame:
    """Scored pairs of ``norm`` rows at or above match weight ``min_weight``.

    Columns: ``a, b`` (row positions, ``a < b``), ``match_weight``, ``match_probability``
    and the per-comparison weights (:data:`LEVEL_COLUMNS`). Rows without any name, or with
    neither date of birth nor postcode, take no part: a name alone links strangers.
    """
    cols = ["a", "b", "match_weight", "match_probability", *LEVEL_COLUMNS]
    frame = model_input(norm)
    has_name = norm["first_name"].notna() | norm["last_name"].notna()
    has_anchor = norm["date_of_birth"].notna() | norm["postcode"].notna()
    frame = frame[(has_name & has_anchor).to_numpy()]
    if len(frame) < 50:
        return pd.DataFrame(columns=cols)
    splink_logger = logging.getLogger("splink")
    level = splink_logger.level
    splink_logger.setLevel(max(level, logging.WARNING))
    try:
        linker = trained_linker(frame, settings, backend)
        pred = linker.inference.predict(threshold_match_weight=min_weight).as_pandas_dataframe()
    finally:
        splink_logger.setLevel(level)
    if pred.empty:
        return pd.DataFrame(columns=cols)
    a = pred["uid_l"].to_numpy(np.int64)
    b = pred["uid_r"].to_numpy(np.int64)
    out = pd.DataFrame(
        {
            "a": np.minimum(a, b),
            "b": np.maximum(a, b),
            "match_weight": pred["match_weight"].to_numpy(float),
            "match_probability": pred["match_probability"].to_numpy(float),
        }
    )
    for c in LEVEL_COLUMNS:
        out[c] = pred[c].to_numpy(float)
    return out

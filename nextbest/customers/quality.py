"""Identity-resolution quality against the generator's truth.

The only module of the identity step that may read ``truth/``. Pairwise precision and
recall are computed from the cluster x person contingency counts (sum of ``n choose 2``
over cells, rows and columns), never by enumerating record pairs, so they cost one
groupby at any size.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)


def _pairs(counts: np.ndarray) -> int:
    c = counts.astype(np.int64)
    return int((c * (c - 1) // 2).sum())


def load_truth(path: Path) -> pd.DataFrame:
    """Read a truth table (``record_id, person_id``) from parquet or CSV."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"truth file {path} does not exist")
    df = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    missing = {"record_id", "person_id"} - set(df.columns)
    if missing:
        raise ValueError(f"truth file {path}: missing columns {sorted(missing)}")
    return df


def identity_quality(
    assignments: pd.DataFrame,
    truth_records: pd.DataFrame,
    exclude_record_ids: Iterable[str] | None = None,
) -> dict[str, float | int]:
    """Pairwise precision/recall and cluster-level error shares of an assignment.

    ``assignments`` has ``record_id, customer_id``; ``truth_records`` has ``record_id,
    person_id``. Records missing from the truth are ignored (and counted).
    ``exclude_record_ids`` leaves records out of every figure, e.g. anonymous devices that
    carry no identifying value at all and so cannot be linked by any method.

    Returns ``pairwise_precision``, ``pairwise_recall``, ``pairwise_f1``,
    ``persons_split_share`` (persons spread over several customers),
    ``customers_merged_share`` (customers holding several persons), ``resolution_rate``
    (records in a customer with at least one other record) and counts.
    """
    for name, df, cols in (
        ("assignments", assignments, ("record_id", "customer_id")),
        ("truth_records", truth_records, ("record_id", "person_id")),
    ):
        missing = set(cols) - set(df.columns)
        if missing:
            raise ValueError(f"{name}: missing columns {sorted(missing)}")
    a = assignments[["record_id", "customer_id"]]
    if exclude_record_ids is not None:
        a = a[~a["record_id"].isin(pd.Index(list(exclude_record_ids)))]
    m = a.merge(truth_records[["record_id", "person_id"]], on="record_id", how="inner")
    not_in_truth = len(a) - len(m)
    if not_in_truth:
        logger.warning("%d assigned records are not in the truth; ignored", not_in_truth)

    cust = pd.factorize(m["customer_id"])[0]
    pers = pd.factorize(m["person_id"])[0]
    n_pers = int(pers.max()) + 1 if len(pers) else 1
    cells = np.unique(cust.astype(np.int64) * n_pers + pers, return_counts=True)[1]
    cust_sizes = np.bincount(cust)
    pers_sizes = np.bincount(pers)
    tp, pred, true = _pairs(cells), _pairs(cust_sizes), _pairs(pers_sizes)
    precision = tp / pred if pred else 1.0
    recall = tp / true if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0

    pairs = pd.DataFrame({"c": cust, "p": pers}).drop_duplicates()
    customers_per_person = np.bincount(pairs["p"].to_numpy(), minlength=len(pers_sizes))
    persons_per_customer = np.bincount(pairs["c"].to_numpy(), minlength=len(cust_sizes))
    n = len(m)
    return {
        "pairwise_precision": float(precision),
        "pairwise_recall": float(recall),
        "pairwise_f1": float(f1),
        "persons_split_share": float((customers_per_person > 1).mean()) if n else 0.0,
        "customers_merged_share": float((persons_per_customer > 1).mean()) if n else 0.0,
        "resolution_rate": float((cust_sizes[cust] > 1).mean()) if n else 0.0,
        "n_records": int(n),
        "n_customers": int(len(cust_sizes)),
        "n_persons": int(len(pers_sizes)),
        "true_pairs": true,
        "predicted_pairs": pred,
        "true_positive_pairs": tp,
        "records_not_in_truth": int(not_in_truth),
    }


def log_quality(
    metrics: dict[str, float | int],
    tracking_uri: str | None,
    experiment: str,
    linkable: dict[str, float | int] | None = None,
    extra: dict[str, float | int] | None = None,
    run_name: str = "identity-resolution",
) -> str | None:
    """Log quality figures (and, prefixed ``linkable_``, the linkable-only ones).

    Always to the module logger; to MLflow too when ``tracking_uri`` is given. Returns the
    MLflow run id or ``None``. Only aggregate figures are logged, never record values.
    """
    logger.info(
        "identity quality: precision %.4f recall %.4f (linkable recall %s), resolution %.3f",
        metrics["pairwise_precision"],
        metrics["pairwise_recall"],
        f"{linkable['pairwise_recall']:.4f}" if linkable else "n/a",
        metrics["resolution_rate"],
    )
    if not tracking_uri:
        return None
    # lazy: mlflow takes seconds to import
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    figures = {**metrics, **{f"linkable_{k}": v for k, v in (linkable or {}).items()}}
    figures.update({f"resolve_{k}": v for k, v in (extra or {}).items()})
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_metrics({k: float(v) for k, v in figures.items()})
    return run.info.run_id


#: Causes of a missed pair, in the order they are tested (first that applies wins).
MISSED_CAUSES: tuple[str, ...] = (
    "shared_email_refused",
    "shared_phone_refused",
    "different_emails",
    "different_phones",
    "no_common_identifier",
)


def missed_pairs(
    assignments: pd.DataFrame,
    truth_records: pd.DataFrame,
    normalised: pd.DataFrame,
) -> pd.DataFrame:
    """Count the true pairs an assignment missed, by source pair and cause.

    ``normalised`` holds the normalised canonical records
    (:func:`nextbest.customers.identity.normalise_records`). A missed pair is two records of one
    person in different customers. Its cause is the first of :data:`MISSED_CAUSES` that
    holds: the two records share an email (or a phone) and the guard refused the link;
    both carry an email (a phone) but different ones; or they hold no identifier type in
    common. ``names`` says what else the two agree on (``first+last``, ``first``,
    ``last`` or ``none``), so "shares nothing but a name" is visible. Returns one row per
    (``source_pair``, ``cause``, ``names``) with ``missed_pairs``, largest first. Costs
    the pairs inside each split person, which are few.
    """
    cols = ["record_id", "source", "email", "phone", "first_name", "last_name"]
    df = (
        normalised[cols]
        .merge(assignments[["record_id", "customer_id"]], on="record_id")
        .merge(truth_records[["record_id", "person_id"]], on="record_id")
    )
    split = df.groupby("person_id")["customer_id"].transform("nunique") > 1
    df = df[split.to_numpy()]
    left = df.add_suffix("_a").rename(columns={"person_id_a": "person_id"})
    right = df.add_suffix("_b").rename(columns={"person_id_b": "person_id"})
    pairs = left.merge(right, on="person_id")
    pairs = pairs[
        (pairs["record_id_a"] < pairs["record_id_b"])
        & (pairs["customer_id_a"] != pairs["customer_id_b"])
    ]
    if pairs.empty:
        return pd.DataFrame(columns=["source_pair", "cause", "names", "missed_pairs"])

    def both(col: str) -> pd.Series:
        return pairs[f"{col}_a"].notna() & pairs[f"{col}_b"].notna()

    def same(col: str) -> pd.Series:
        return both(col) & (pairs[f"{col}_a"] == pairs[f"{col}_b"])

    cause = np.select(
        [same("email"), same("phone"), both("email"), both("phone")],
        list(MISSED_CAUSES[:4]),
        default=MISSED_CAUSES[4],
    )
    first, last = same("first_name").to_numpy(), same("last_name").to_numpy()
    names = np.select([first & last, first, last], ["first+last", "first", "last"], default="none")
    src = np.sort(pairs[["source_a", "source_b"]].to_numpy(str), axis=1)
    out = pd.DataFrame(
        {"source_pair": np.char.add(np.char.add(src[:, 0], "-"), src[:, 1]), "cause": cause}
    )
    out["names"] = names
    return (
        out.groupby(["source_pair", "cause", "names"])
        .size()
        .rename("missed_pairs")
        .reset_index()
        .sort_values(["missed_pairs", "source_pair"], ascending=[False, True], ignore_index=True)
    )


def evaluate_resolution(
    result: object, truth_path: Path | None, raw_dir: Path | None = None
) -> tuple[dict[str, float | int], dict[str, float | int]] | None:
    """Quality of a resolution against a truth file, on all records and on the linkable
    ones; the generated truth under ``raw_dir/truth`` is used when no path is given.
    None when there is no truth (a user's own records)."""
    if truth_path is None and raw_dir is not None:
        default = raw_dir / "truth" / "records.parquet"
        truth_path = default if default.exists() else None
    if truth_path is None:
        return None
    truth = load_truth(truth_path)
    assignments = result.assignments  # type: ignore[attr-defined]
    linkable = identity_quality(
        assignments,
        truth,
        exclude_record_ids=result.unlinkable_record_ids,  # type: ignore[attr-defined]
    )
    return identity_quality(assignments, truth), linkable

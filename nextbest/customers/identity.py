"""Identity resolution: records from many sources -> customers, safely, and households.

The steps, all on normalised values (:mod:`nextbest.customers.normalise`); docs/identity.md has
the model, the threshold procedure and the guard in full:

1. **Human decisions first.** Links recorded with ``nextbest identity link`` are merged
   before any rule; splits are never joined (:mod:`nextbest.customers.corrections`).
2. **Candidate edges.** Deterministic edges join records that share a normalised strong
   identifier (native ids ``crm_id, loyalty_id, app_account_id, device_id``; a web device
   that logged in to an app account carries that account's id, giving a
   ``device_login`` edge; then ``email``, then ``phone``). Each group of records sharing a
   value becomes a star (first record to each other), so edges grow with records, not
   with pairs. Probabilistic edges come from the Splink person model
   (:mod:`nextbest.customers.linkage`) for pairs at or above the match-weight threshold.
3. **Safe merging, strongest rule first.** Rules are merged tier by tier (native ids,
   email, phone, Splink). For each tier the connected components of the current
   clusters are computed with :func:`scipy.sparse.csgraph.connected_components`; a
   component whose records hold at most one date of birth, at most one CRM id, (phone
   tier) at most one first name and no human split is merged at once, vectorised. Only
   the few remaining components go through a Python union-find that replays their edges
   in order and refuses an edge that would put two dates of birth in one cluster that
   are not typos of one another vouched for by names and address, two CRM ids whose
   records are neither a duplicate account nor a name change of one person
   (:func:`nextbest.customers.merge_guard._one_customer`), (phone tier) two first names
   that are not spellings of one another, or a human split (the guard:
   :mod:`nextbest.customers.merge_guard`). A shared household landline or address
   therefore never merges two family members. Refused edges are reported with both
   record ids, the rule and the conflicting field, never the values.
4. **Ids.** Within one run a cluster is named ``"C" + sha1(smallest record_id)[:12]``;
   resolving into a home then makes the ids stable across runs
   (:func:`nextbest.customers.identity_io.with_stable_ids`,
   :mod:`nextbest.customers.id_map`: a cluster keeps the id of most of its records, a merge keeps
   the oldest id, a split issues a new one, and the id map records each change).
   Households group customers by normalised address (postcode and street) and are never
   a merge of persons.

Splink runs on DuckDB in process; :func:`nextbest.customers.linkage.trained_linker` takes another
Splink backend (``splink.SparkAPI``) with the same settings.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from nextbest.core.errors import InputError
from nextbest.customers import normalise as nz
from nextbest.customers.corrections import decision_pairs, review_table
from nextbest.customers.linkage import ModelSettings, score_pairs, spark_backend
from nextbest.customers.merge_guard import Attrs, Edges, Merge, force_links, link_guard, merge_tier
from nextbest.customers.sources.identity_records import CANONICAL_COLUMNS
from nextbest.customers.tombstone import tombstoned_records

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS: tuple[str, ...] = ("record_id", "source")
OPTIONAL_COLUMNS: tuple[str, ...] = tuple(c for c in CANONICAL_COLUMNS if c not in REQUIRED_COLUMNS)
#: Native id columns: a value shared by two records names one person.
NATIVE_IDS: tuple[str, ...] = ("crm_id", "loyalty_id", "app_account_id", "device_id")
#: Rule tiers in merge order (strongest first) and whether a tier is weak (checks first
#: names: a shared landline alone says nothing about who is calling).
TIERS: tuple[tuple[str, bool], ...] = (
    ("native", False),
    ("email", False),
    ("phone", True),
    # Not weak: the Splink model has already weighed first-name disagreement (a first
    # name replaced by another is common in real exports), so only the date of birth
    # and CRM guards apply to its edges.
    ("splink", False),
)
SINGLETON = "singleton"
#: Splink backends :func:`resolve_records` can run on.
ENGINES: tuple[str, ...] = ("duckdb", "spark")
OUTPUT_COLUMNS: tuple[str, ...] = ("record_id", "customer_id", "match_rule", "match_probability")

ProgressCallback = Callable[[str], None]


@dataclass(frozen=True)
class ResolutionSettings:
    """Knobs of :func:`resolve_records`.

    ``match_weight_threshold`` is the Splink match weight (log2 Bayes factor including
    the prior) an edge needs; it was chosen by the procedure in docs/identity.md on
    labelled data. Pairs from ``review_weight`` up to it are the uncertain band written
    for review. Two records with different dates of birth that are not typos of one
    another are merged only by a Splink edge of at least ``dob_conflict_weight`` with
    agreeing full names and address (a date of birth replaced in one export); ``inf``
    refuses every such merge. Deterministic rules never merge them. Two records with
    different customer numbers (``crm_id``) are one person only as a duplicate account
    (names and date of birth agree) or a name change: first name and date of birth
    agree, the surname differs and at least ``crm_name_change_evidence`` of phone,
    e-mail and address agree (4 refuses every name change). ``prior_recall``
    is the assumed recall of the deterministic rules Splink estimates the prior from;
    ``seed`` fixes Splink's samples; ``u_max_pairs`` and ``em_max_pairs`` bound them.
    m and u are estimated on the data itself (no labels). ``country_code`` completes
    national phone numbers. ``engine`` is Splink's backend: ``duckdb`` in process or
    ``spark`` (same model, same settings) on a Spark session with master
    ``spark_master`` (None: ``local[threads]``). ``tombstone``: hashes
    of erased persons' identifiers (:mod:`nextbest.customers.tombstone`, hashed with
    ``tombstone_salt``); a record carrying one is dropped before anything else.
    """

    use_splink: bool = True
    engine: str = "duckdb"
    spark_master: str | None = None
    match_weight_threshold: float = 1.0
    review_weight: float = -4.0
    dob_conflict_weight: float = 11.0
    crm_name_change_evidence: int = 2
    prior_recall: float = 0.8
    seed: int = 42
    u_max_pairs: float = 2e6
    em_max_pairs: float = 2e6
    threads: int = 2
    country_code: str = nz.DEFAULT_COUNTRY_CODE
    tombstone: frozenset[str] = frozenset()
    tombstone_salt: str = ""


@dataclass
class ResolutionResult:
    """What :func:`resolve_records` produced.

    ``assignments``: one row per record (:data:`OUTPUT_COLUMNS`); ``households``:
    ``customer_id, household_id, household_size``; ``refused_links``: ``record_id_a,
    record_id_b, rule, conflict_field``; ``unlinkable_record_ids``: records that carry no
    value any other record shares and no name, date of birth or address (e.g. anonymous
    devices): no method can link them; ``stats``: counts and timings;
    ``review_pairs``: the uncertain band, masked
    (:func:`nextbest.customers.corrections.review_table`);
    ``forced_links``: human links honoured, ``record_id_a, record_id_b, reason,
    guard_conflict`` (what the guard would have refused, if anything).
    """

    assignments: pd.DataFrame
    households: pd.DataFrame
    refused_links: pd.DataFrame
    unlinkable_record_ids: pd.Index
    stats: dict[str, float | int] = field(default_factory=dict)
    review_pairs: pd.DataFrame = field(default_factory=pd.DataFrame)
    forced_links: pd.DataFrame = field(default_factory=pd.DataFrame)


# --- input ------------------------------------------------------------------------------


def validate_records(records: pd.DataFrame, name: str = "records") -> pd.DataFrame:
    """Check the canonical schema and add absent optional columns as missing.

    Raises :class:`~nextbest.core.errors.InputError` (a ``ValueError``) naming ``name`` when
    ``record_id`` or ``source`` is absent, a ``record_id`` is missing or duplicated, or no
    identifying column is present.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in records.columns]
    if missing:
        raise InputError(
            f"{name}: missing required column(s) {missing}; the canonical schema is "
            f"{list(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)}"
        )
    present = [c for c in OPTIONAL_COLUMNS if c in records.columns]
    if not present:
        raise InputError(
            f"{name}: no identifying column; expected some of {list(OPTIONAL_COLUMNS)}"
        )
    rid = records["record_id"]
    if rid.isna().any():
        raise InputError(f"{name}: {int(rid.isna().sum())} rows have no record_id")
    dup = rid.astype(str).duplicated(keep=False)
    if dup.any():
        examples = rid[dup].astype(str).unique()[:3].tolist()
        raise InputError(
            f"{name}: record_id must be unique; {int(dup.sum())} rows share ids, e.g. {examples}"
        )
    out = records.loc[:, list(REQUIRED_COLUMNS) + present].copy()
    out["record_id"] = out["record_id"].astype(str)
    out["source"] = out["source"].astype(str)
    for c in OPTIONAL_COLUMNS:
        if c not in out.columns:
            out[c] = None
    return out.loc[:, list(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)]


def normalise_records(
    records: pd.DataFrame, country_code: str = nz.DEFAULT_COUNTRY_CODE
) -> pd.DataFrame:
    """Normalised copy of validated canonical records (same index, same columns)."""
    out = pd.DataFrame(index=records.index)
    out["record_id"] = records["record_id"]
    out["source"] = records["source"]
    out["email"] = nz.normalise_emails(records["email"])
    out["phone"] = nz.normalise_phones(records["phone"], country_code)
    for c in NATIVE_IDS:
        out[c] = nz.normalise_ids(records[c])
    out["first_name"] = nz.normalise_names(records["first_name"])
    out["last_name"] = nz.normalise_names(records["last_name"])
    out["date_of_birth"] = nz.normalise_dobs(records["date_of_birth"])
    out["street"] = nz.normalise_streets(records["street"])
    out["city"] = nz.normalise_names(records["city"])
    out["postcode"] = nz.normalise_postcodes(records["postcode"])
    return out


# --- candidate edges ----------------------------------------------------------------------


def _star_edges(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Edges hub->member for each group of records sharing a (non-missing) value."""
    codes = pd.factorize(values, use_na_sentinel=True)[0]
    pos = np.flatnonzero(codes >= 0)
    if pos.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    c = codes[pos]
    order = np.lexsort((pos, c))
    c, pos = c[order], pos[order]
    first = np.r_[True, c[1:] != c[:-1]]
    hub = pos[first][np.cumsum(first) - 1]
    keep = ~first
    return hub[keep].astype(np.int64), pos[keep].astype(np.int64)


def deterministic_edges(norm: pd.DataFrame) -> dict[str, Edges]:
    """Candidate edges per tier from shared normalised identifiers."""
    native: list[Edges] = []
    has_device = norm["device_id"].notna().to_numpy()
    for col in NATIVE_IDS:
        a, b = _star_edges(norm[col])
        rule = np.full(a.size, col, dtype=object)
        if col == "app_account_id":
            rule[has_device[a] != has_device[b]] = "device_login"
        native.append(Edges(a, b, rule, np.full(a.size, np.nan)))
    out = {"native": Edges.concat(native)}
    for col in ("email", "phone"):
        a, b = _star_edges(norm[col])
        out[col] = Edges(a, b, np.full(a.size, col, dtype=object), np.full(a.size, np.nan))
    return out


def splink_edges(
    norm: pd.DataFrame, labels: np.ndarray, settings: ResolutionSettings
) -> tuple[Edges, pd.DataFrame]:
    """Probabilistic edges (:mod:`nextbest.customers.linkage`) between records of different
    clusters.

    Returns the edges at or above ``settings.match_weight_threshold`` (strongest first)
    and the scored pairs of the uncertain band (``review_weight`` up to the threshold)
    with their comparison levels, for human review.
    """
    model = ModelSettings(
        prior_recall=settings.prior_recall,
        u_max_pairs=settings.u_max_pairs,
        em_max_pairs=settings.em_max_pairs,
        seed=settings.seed,
        threads=settings.threads,
    )
    low = min(settings.review_weight, settings.match_weight_threshold)
    backend = (
        spark_backend(settings.threads, settings.spark_master)
        if settings.engine == "spark"
        else None
    )
    pairs = score_pairs(norm, model, low, backend)
    pairs = pairs[labels[pairs["a"].to_numpy()] != labels[pairs["b"].to_numpy()]]
    strong = pairs["match_weight"].to_numpy() >= settings.match_weight_threshold
    review = pairs[~strong].reset_index(drop=True)
    a = pairs["a"].to_numpy(np.int64)[strong]
    b = pairs["b"].to_numpy(np.int64)[strong]
    w = pairs["match_weight"].to_numpy(float)[strong]
    p = pairs["match_probability"].to_numpy(float)[strong]
    # Strongest first, ties broken by position, so the merge order is deterministic.
    order = np.lexsort((b, a, -w))
    edges = Edges(a[order], b[order], np.full(order.size, "splink", dtype=object), p[order])
    return edges, review


# --- households and ids ----------------------------------------------------------------


def _sha_ids(prefix: str, keys: np.ndarray) -> np.ndarray:
    return np.array(
        [prefix + hashlib.sha1(k.encode()).hexdigest()[:12] for k in keys], dtype=object
    )


def _households(norm: pd.DataFrame, customer: np.ndarray) -> pd.DataFrame:
    """household_id per customer: customers sharing a postcode and street.

    A customer whose records give a postcode but no street joins the household of that
    postcode when the postcode has exactly one known street; customers without an
    address form a household of their own.
    """
    df = pd.DataFrame(
        {
            "customer_id": customer,
            "postcode": norm["postcode"].to_numpy(object),
            "street": norm["street"].to_numpy(object),
        }
    )
    full = df.dropna(subset=["postcode", "street"])
    # Each customer's most frequent full address (ties: smallest) is its home.
    home = (
        full.groupby(["customer_id", "postcode", "street"], sort=True)
        .size()
        .rename("n")
        .reset_index()
        .sort_values(
            ["customer_id", "n", "postcode", "street"], ascending=[True, False, True, True]
        )
        .drop_duplicates("customer_id")
    )
    home["address"] = home["postcode"] + "|" + home["street"]
    streets_per_pc = home.groupby("postcode")["address"].nunique()
    only = home[home["postcode"].map(streets_per_pc) == 1].drop_duplicates("postcode")
    pc_only = (
        df[~df["customer_id"].isin(home["customer_id"])]
        .dropna(subset=["postcode"])
        .sort_values(["customer_id", "postcode"])
        .drop_duplicates("customer_id")
    )
    pc_only = pc_only.assign(address=pc_only["postcode"].map(only.set_index("postcode")["address"]))
    addr = pd.concat(
        [home[["customer_id", "address"]], pc_only[["customer_id", "address"]].dropna()]
    )
    customers = pd.DataFrame({"customer_id": np.unique(customer)})
    customers = customers.merge(addr, on="customer_id", how="left")
    customers["address"] = customers["address"].fillna("customer:" + customers["customer_id"])
    first = customers.groupby("address")["customer_id"].transform("min")
    customers["household_id"] = _sha_ids("H", first.to_numpy(object))
    customers["household_size"] = customers.groupby("household_id")["customer_id"].transform("size")
    return customers[["customer_id", "household_id", "household_size"]].reset_index(drop=True)


def _unlinkable(norm: pd.DataFrame) -> np.ndarray:
    """Records with no name/DOB/address and no identifier value shared with another."""
    descriptive = ["first_name", "last_name", "date_of_birth", "street", "postcode"]
    has_desc = norm[descriptive].notna().any(axis=1).to_numpy()
    shared = np.zeros(len(norm), bool)
    for col in (*NATIVE_IDS, "email", "phone"):
        v = norm[col]
        shared |= (v.notna() & v.duplicated(keep=False)).to_numpy()
    return ~has_desc & ~shared


def link_conflict(
    records: pd.DataFrame,
    side_a: list[str],
    side_b: list[str],
    splits: list[tuple[str, str]] | None = None,
    settings: ResolutionSettings | None = None,
) -> str | None:
    """What the merge guard says to one customer made of the records ``side_a`` and the
    records ``side_b`` (record ids; typically the two current customers a human link
    would join): the conflicting field (``date_of_birth``, ``crm_id``, ``first_name``,
    ``human_split``) or None.

    ``records`` are canonical records holding both sides (others are ignored);
    ``splits`` are human split pairs (record ids) still in force; ``settings`` give the
    country code and the CRM name-change evidence, as to :func:`resolve_records`. The
    guard is the one :func:`resolve_records` applies, at cluster level.
    """
    settings = settings or ResolutionSettings()
    wanted = set(side_a) | set(side_b)
    recs = validate_records(records.loc[records["record_id"].astype(str).isin(wanted)])
    norm = normalise_records(recs.reset_index(drop=True), settings.country_code)
    attrs = Attrs(norm, settings.crm_name_change_evidence)
    index = pd.Index(norm["record_id"])
    pairs = [(x, y) for x, y in splits or () if x in wanted and y in wanted]
    if pairs:
        xs, ys = zip(*pairs, strict=True)
        attrs.ban(index.get_indexer(list(xs)), index.get_indexer(list(ys)))
    pa, pb = index.get_indexer(list(side_a)), index.get_indexer(list(side_b))
    if (pa < 0).any() or (pb < 0).any():
        raise InputError("link_conflict: a record of either side is not in records")
    return link_guard(attrs, pa, pb)


# --- entry points -----------------------------------------------------------------------


def resolve_records(
    records: pd.DataFrame,
    settings: ResolutionSettings | None = None,
    progress: ProgressCallback | None = None,
    decisions: pd.DataFrame | None = None,
) -> ResolutionResult:
    """Resolve canonical records into customers, households and refused links.

    ``records`` follows the canonical schema (docs/contracts.md); only ``record_id`` and
    ``source`` are required. Output order follows ``record_id``; results do not depend on
    the input row order. ``decisions`` are human links and splits
    (:func:`nextbest.customers.corrections.load_decisions`): links are merged first, splits are
    never joined.
    """
    settings = settings or ResolutionSettings()
    if settings.engine not in ENGINES:
        raise ValueError(f"engine must be one of {list(ENGINES)}, not {settings.engine!r}")
    step = progress or (lambda _name: None)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    step("normalise")
    norm = _normalised(records, settings)
    n = len(norm)
    attrs = Attrs(norm, settings.crm_name_change_evidence)
    timings["normalise_s"] = time.perf_counter() - t0

    step("deterministic links")
    state = Merge(
        labels=np.arange(n, dtype=np.int64),
        rule=np.full(n, None, dtype=object),
        prob=np.full(n, np.nan),
    )
    human = (
        decision_pairs(decisions, norm["record_id"].to_numpy(object))
        if decisions is not None and len(decisions)
        else None
    )
    forced = force_links(state, attrs, human["link"]) if human else []
    if human:
        attrs.ban(human["split"][0], human["split"][1])
    review, edge_counts = _merge_tiers(norm, state, attrs, settings, step, timings)

    step("ids and households")
    rid = norm["record_id"].to_numpy(object)
    assignments = _assignments(state, rid)
    households = _households(norm, assignments["customer_id"].to_numpy(object))
    refused = _refused_links(state, rid)
    unlinkable = pd.Index(rid[_unlinkable(norm)], name="record_id")
    still_apart = (
        state.labels[review["a"].to_numpy(np.int64)] != state.labels[review["b"].to_numpy(np.int64)]
    )
    review_pairs = review_table(review[still_apart], norm)
    forced_links = pd.DataFrame(
        forced, columns=["record_id_a", "record_id_b", "reason", "guard_conflict"]
    )
    sizes = np.bincount(state.labels, minlength=n)
    stats: dict[str, float | int] = {
        "n_records": n,
        "n_customers": int((sizes > 0).sum()),
        "n_households": int(households["household_id"].nunique()),
        "n_refused_links": len(refused),
        "n_forced_links": len(forced_links),
        "n_review_pairs": len(review_pairs),
        "n_unlinkable_records": len(unlinkable),
        "linked_record_share": float((sizes[state.labels] > 1).mean()) if n else 0.0,
        "guarded_edges": state.python_edges,
        **{f"edges_{k}": v for k, v in edge_counts.items()},
        **{f"rule_{k}": int(v) for k, v in assignments["match_rule"].value_counts().items()},
        **timings,
        "total_s": time.perf_counter() - t0,
    }
    logger.info(
        "resolved %d records into %d customers (%d refused links) in %.1f s",
        n,
        stats["n_customers"],
        len(refused),
        stats["total_s"],
    )
    return ResolutionResult(
        assignments, households, refused, unlinkable, stats, review_pairs, forced_links
    )


def _normalised(records: pd.DataFrame, settings: ResolutionSettings) -> pd.DataFrame:
    """Validated records without the erased persons' (the tombstone), sorted by
    ``record_id`` and normalised."""
    recs = validate_records(records)
    if settings.tombstone:
        erased = tombstoned_records(recs, settings.tombstone, settings.tombstone_salt)
        if erased.any():
            logger.info("dropped %d records of erased persons (tombstone)", int(erased.sum()))
            recs = recs.loc[~erased]
    recs = recs.sort_values("record_id", kind="stable").reset_index(drop=True)
    return normalise_records(recs, settings.country_code)


def _merge_tiers(
    norm: pd.DataFrame,
    state: Merge,
    attrs: Attrs,
    settings: ResolutionSettings,
    step: ProgressCallback,
    timings: dict[str, float],
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Merge every tier's edges into ``state``, strongest first (timings added in place);
    returns Splink's uncertain band and the edge count of each tier."""
    t = time.perf_counter()
    det = deterministic_edges(norm)
    review = pd.DataFrame(columns=["a", "b", "match_weight", "match_probability"])
    edge_counts: dict[str, int] = {}
    for tier, weak in TIERS:
        if tier == "splink":
            timings["deterministic_s"] = time.perf_counter() - t
            t = time.perf_counter()
            if not settings.use_splink:
                continue
            step("probabilistic links (splink)")
            edges, review = splink_edges(norm, state.labels, settings)
            timings["splink_s"] = time.perf_counter() - t
            t = time.perf_counter()
        else:
            edges = det[tier]
        edge_counts[tier] = int(edges.a.size)
        bar = settings.dob_conflict_weight if tier == "splink" else np.inf
        merge_tier(state, edges, attrs, weak, tier, float(1.0 / (1.0 + 2.0**-bar)))
    timings["merge_splink_s"] = time.perf_counter() - t
    return review, edge_counts


def _assignments(state: Merge, rid: np.ndarray) -> pd.DataFrame:
    """One row per record: its customer, the rule that linked it and Splink's probability."""
    # labels are the smallest record position of each cluster, and records are sorted
    # by record_id, so the root's record_id is the cluster's smallest.
    customer = _sha_ids("C", rid[state.labels])
    rule = state.rule.copy()
    rule[rule == None] = SINGLETON  # noqa: E711
    return pd.DataFrame(
        {
            "record_id": rid,
            "customer_id": customer,
            "match_rule": rule.astype(str),
            "match_probability": np.where(rule == "splink", state.prob, np.nan),
        }
    )


def _refused_links(state: Merge, rid: np.ndarray) -> pd.DataFrame:
    """The edges the guard refused, by record id, rule and conflicting field."""
    columns = ["record_id_a", "record_id_b", "rule", "conflict_field"]
    if not state.refused:
        return pd.DataFrame(columns=columns)
    ref = np.asarray([(a, b) for a, b, _, _ in state.refused], dtype=np.int64)
    return pd.DataFrame(
        {
            "record_id_a": rid[ref[:, 0]],
            "record_id_b": rid[ref[:, 1]],
            "rule": [r for _, _, r, _ in state.refused],
            "conflict_field": [f for _, _, _, f in state.refused],
        }
    )

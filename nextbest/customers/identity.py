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
   (:func:`_one_customer`), (phone tier) two first names that are not spellings of one
   another, or a human split. A shared household landline or address therefore never merges two
   family members. Refused edges are reported with both record ids, the rule and the
   conflicting field, never the values.
4. **Ids.** Within one run a cluster is named ``"C" + sha1(smallest record_id)[:12]``;
   resolving into a home then makes the ids stable across runs (:func:`with_stable_ids`,
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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from nextbest.core.errors import InputError, MissingInputError
from nextbest.customers import normalise as nz
from nextbest.customers.id_map import stabilise
from nextbest.customers.sources.identity_records import CANONICAL_COLUMNS

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


@dataclass
class _Edges:
    a: np.ndarray  # record positions
    b: np.ndarray
    rule: np.ndarray  # object array of rule names
    prob: np.ndarray  # float, NaN for deterministic

    @staticmethod
    def empty() -> _Edges:
        return _Edges(
            np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, object), np.zeros(0)
        )

    @staticmethod
    def concat(parts: list[_Edges]) -> _Edges:
        if not parts:
            return _Edges.empty()
        return _Edges(
            np.concatenate([p.a for p in parts]),
            np.concatenate([p.b for p in parts]),
            np.concatenate([p.rule for p in parts]),
            np.concatenate([p.prob for p in parts]),
        )


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


def deterministic_edges(norm: pd.DataFrame) -> dict[str, _Edges]:
    """Candidate edges per tier from shared normalised identifiers."""
    native: list[_Edges] = []
    has_device = norm["device_id"].notna().to_numpy()
    for col in NATIVE_IDS:
        a, b = _star_edges(norm[col])
        rule = np.full(a.size, col, dtype=object)
        if col == "app_account_id":
            rule[has_device[a] != has_device[b]] = "device_login"
        native.append(_Edges(a, b, rule, np.full(a.size, np.nan)))
    out = {"native": _Edges.concat(native)}
    for col in ("email", "phone"):
        a, b = _star_edges(norm[col])
        out[col] = _Edges(a, b, np.full(a.size, col, dtype=object), np.full(a.size, np.nan))
    return out


def splink_edges(
    norm: pd.DataFrame, labels: np.ndarray, settings: ResolutionSettings
) -> tuple[_Edges, pd.DataFrame]:
    """Probabilistic edges (:mod:`nextbest.customers.linkage`) between records of different
    clusters.

    Returns the edges at or above ``settings.match_weight_threshold`` (strongest first)
    and the scored pairs of the uncertain band (``review_weight`` up to the threshold)
    with their comparison levels, for human review.
    """
    from nextbest.customers.linkage import ModelSettings, score_pairs, spark_backend

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
    edges = _Edges(a[order], b[order], np.full(order.size, "splink", dtype=object), p[order])
    return edges, review


# --- safe merging -------------------------------------------------------------------------


def _edits(x: str, y: str, cap: int) -> int:
    """Optimal-string-alignment distance of ``x`` and ``y``, or ``cap + 1`` once above cap."""
    if abs(len(x) - len(y)) > cap:
        return cap + 1
    prev2: list[int] = []
    prev = list(range(len(y) + 1))
    for i in range(1, len(x) + 1):
        cur = [i] + [0] * len(y)
        for j in range(1, len(y) + 1):
            cost = x[i - 1] != y[j - 1]
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and x[i - 1] == y[j - 2] and x[i - 2] == y[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > cap:
            return cap + 1
        prev2, prev = prev, cur
    return prev[-1]


def _similar(x: str, y: str) -> bool:
    """Spellings of one name: one edit apart, or two for names of five letters or more.

    Source systems add one typo per spelling, so two spellings of one name can be two
    edits apart; short names get only one so that e.g. two family members' distinct
    short names are not confused.
    """
    if x == y:
        return True
    # Spacing is not spelling: "h o" and "ho" are one name as typed twice.
    x, y = x.replace(" ", ""), y.replace(" ", "")
    if x == y:
        return True
    short, long_ = sorted((x, y), key=len)
    if len(short) < 3:
        # A two-letter name cut from a three-letter one ("ky", "kyo"); shorter names
        # are too alike to compare.
        return len(short) == 2 and len(long_) == 3 and long_.startswith(short)
    cap = 2 if min(len(x), len(y)) >= 5 else 1
    return _edits(x, y, cap) <= cap


def _names_agree(xs: set[str], ys: set[str]) -> bool:
    if not xs or not ys:
        return True
    return any(_similar(x, y) for x in xs for y in ys)


def _dob_typo(x: str, y: str) -> bool:
    """Two ISO dates of birth that one slip of the keyboard turns into one another.

    One edit apart (a digit typed wrong, two digits transposed) or day and month
    swapped, but never a year ten or more apart: a parent and a child with one name at
    one address differ in the decade digit only, and that is a different person.
    """
    if x == y:
        return True
    if abs(int(x[:4]) - int(y[:4])) >= 10:
        return False
    if x[:4] == y[:4] and x[5:7] == y[8:10] and x[8:10] == y[5:7]:
        return True
    return _edits(x, y, 1) <= 1


class _CrmRecord(NamedTuple):
    """The values of one CRM record the customer-number rule compares."""

    dob: str | None
    first: str | None
    last: str | None
    phone: str | None
    email: str | None
    places: frozenset[str]  # postcode and street


@dataclass
class _Cluster:
    dobs: set[str]
    firsts: set[str]
    lasts: set[str]
    places: set[str]  # postcodes and streets
    emails: set[str]
    # record positions in the cluster that a human split from ``bans`` (positions)
    split_members: set[int]
    bans: set[int]
    crms: dict[str, _CrmRecord]  # crm_id -> that CRM record

    def absorb(self, other: _Cluster) -> None:
        """Take over ``other``'s values (after a merge)."""
        self.dobs |= other.dobs
        self.firsts |= other.firsts
        self.lasts |= other.lasts
        self.places |= other.places
        self.emails |= other.emails
        self.split_members |= other.split_members
        self.bans |= other.bans
        self.crms.update(other.crms)


def _swapped(a: _Cluster, b: _Cluster) -> bool:
    """First and last names present on both sides and swapped between them."""
    if not (a.firsts and a.lasts and b.firsts and b.lasts):
        return False
    return _names_agree(a.firsts, b.lasts) and _names_agree(a.lasts, b.firsts)


def _names_vouch(a: _Cluster, b: _Cluster) -> bool:
    """Names vouch for two sides: every name field both carry agrees (spellings) and at
    least one does, or first and last names are swapped between them.

    A name missing on one side is no evidence either way: FEBRL-like exports drop first
    names, and counting a gap as a disagreement refused a third of the true pairs whose
    date of birth had been replaced.
    """
    both = [(x, y) for x, y in ((a.firsts, b.firsts), (a.lasts, b.lasts)) if x and y]
    straight = bool(both) and all(_names_agree(x, y) for x, y in both)
    return straight or _swapped(a, b)


def _dobs_agree(a: _Cluster, b: _Cluster, outweighed: bool = False) -> bool:
    """Equal dates of birth, or different ones that names and address vouch for.

    Different dates of birth are accepted only with vouching names
    (:func:`_names_vouch`) and address, and then only when they are typos of one
    another or, for a Splink edge, ``outweighed``: the model's weight, with the
    disagreement priced in, clears the DOB-conflict bar (see
    ``ResolutionSettings.dob_conflict_weight``).
    """
    if not a.dobs or not b.dobs or a.dobs == b.dobs:
        return True
    typo = all(_dob_typo(x, y) for x in a.dobs for y in b.dobs)
    # Two personal e-mail addresses and two dates of birth: two people (a parent and a
    # child of one name at one address), however alike the rest.
    contradicted = bool(a.emails and b.emails and not (a.emails & b.emails))
    if not (typo or (outweighed and not contradicted)):
        return False
    places = any(_similar(x, y) for x in a.places for y in b.places)
    return places and _names_vouch(a, b)


def _one_customer(x: _CrmRecord, y: _CrmRecord, name_change_evidence: int) -> bool:
    """Whether two CRM records with different customer numbers may be one person.

    A second customer number is strong evidence of a second person, outweighed only by:

    - a duplicate account: first and last names are spellings of one another and the
      dates of birth equal or a typo of one another; when one record lacks the date of
      birth, a shared phone or e-mail instead (same-named relatives at one address are
      the trap; they do not share a personal contact);
    - a name change (marriage, divorce, a maiden name): first names agree, the dates of
      birth are equal or a typo, the surname differs, and at least
      ``name_change_evidence`` of phone, e-mail and address (postcode or street) agree.
    """
    if x.first is None or y.first is None or not _similar(x.first, y.first):
        return False
    contact = (x.phone is not None and x.phone == y.phone) or (
        x.email is not None and x.email == y.email
    )
    same_last = x.last is not None and y.last is not None and _similar(x.last, y.last)
    if x.dob is None or y.dob is None:
        return contact and same_last
    if not _dob_typo(x.dob, y.dob):
        return False
    if same_last:
        return True
    agreeing = (
        int(x.phone is not None and x.phone == y.phone)
        + int(x.email is not None and x.email == y.email)
        + int(any(_similar(p, q) for p in x.places for q in y.places))
    )
    return agreeing >= name_change_evidence


def _crm_conflict(a: _Cluster, b: _Cluster, name_change_evidence: int) -> bool:
    """Some CRM record of ``a`` and some of ``b`` cannot be one person (:func:`_one_customer`)."""
    return any(
        ca != cb and not _one_customer(ra, rb, name_change_evidence)
        for ca, ra in a.crms.items()
        for cb, rb in b.crms.items()
    )


def _conflict(
    a: _Cluster,
    b: _Cluster,
    weak: bool,
    outweighed: bool = False,
    name_change_evidence: int = 2,
) -> str | None:
    if (a.split_members & b.bans) or (b.split_members & a.bans):
        return "human_split"
    if not _dobs_agree(a, b, outweighed):
        return "date_of_birth"
    if (
        a.crms
        and b.crms
        and set(a.crms) != set(b.crms)
        and _crm_conflict(a, b, name_change_evidence)
    ):
        return "crm_id"
    if weak and not (_names_agree(a.firsts, b.firsts) or _swapped(a, b)):
        return "first_name"
    return None


class _Attrs:
    """Per-record conflict attributes as integer codes and value arrays."""

    def __init__(self, norm: pd.DataFrame, name_change_evidence: int = 2) -> None:
        self.name_change_evidence = name_change_evidence
        self.dob_code = pd.factorize(norm["date_of_birth"])[0]
        self.crm_code = pd.factorize(norm["crm_id"])[0]
        self.first_code = pd.factorize(norm["first_name"])[0]
        self.dob = norm["date_of_birth"].to_numpy(object)
        self.crm = norm["crm_id"].to_numpy(object)
        self.first = norm["first_name"].to_numpy(object)
        self.last = norm["last_name"].to_numpy(object)
        self.postcode = norm["postcode"].to_numpy(object)
        self.street = norm["street"].to_numpy(object)
        self.phone = norm["phone"].to_numpy(object)
        self.email = norm["email"].to_numpy(object)
        self.record_ids = norm["record_id"].to_numpy(object)
        self.bans: dict[int, set[int]] = {}
        self.split_flag = np.zeros(len(norm), bool)

    def ban(self, a: np.ndarray, b: np.ndarray) -> None:
        """Human splits: records ``a[i]`` and ``b[i]`` never share a cluster."""
        for x, y in zip(a.tolist(), b.tolist(), strict=True):
            self.bans.setdefault(x, set()).add(y)
            self.bans.setdefault(y, set()).add(x)
        self.split_flag[a] = True
        self.split_flag[b] = True

    def cluster(self, members: np.ndarray) -> _Cluster:
        def values(arr: np.ndarray) -> set[str]:
            return {v for v in arr[members] if v is not None}

        crms = {
            self.crm[i]: _CrmRecord(
                self.dob[i],
                self.first[i],
                self.last[i],
                self.phone[i],
                self.email[i],
                frozenset(v for v in (self.postcode[i], self.street[i]) if v is not None),
            )
            for i in members
            if self.crm[i] is not None
        }
        split = {int(i) for i in members if self.split_flag[i]}
        bans = set().union(*(self.bans[i] for i in split)) if split else set()
        return _Cluster(
            values(self.dob),
            values(self.first),
            values(self.last),
            values(self.postcode) | values(self.street),
            values(self.email),
            split,
            bans,
            crms,
        )


def _multi(groups: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Boolean per group: more than one distinct non-missing code among its records."""
    ok = codes >= 0
    g, c = groups[ok], codes[ok]
    if g.size == 0:
        return np.zeros(n_groups, bool)
    pairs = np.unique(g.astype(np.int64) * (int(c.max()) + 1) + c)
    return np.bincount(pairs // (int(c.max()) + 1), minlength=n_groups) > 1


@dataclass
class _Merge:
    labels: np.ndarray
    rule: np.ndarray  # per record: rule that joined it (None until linked)
    prob: np.ndarray
    refused: list[tuple[int, int, str, str]] = field(default_factory=list)
    python_edges: int = 0


def _accept(
    state: _Merge, a: np.ndarray, b: np.ndarray, rule: np.ndarray, prob: np.ndarray
) -> None:
    """Record the rule (and probability) of the first accepted edge at each end."""
    for ends in (a, b):
        free = state.rule[ends] == None  # noqa: E711  (object array comparison)
        idx = ends[free]
        # Duplicate ends: keep the first edge (edges arrive strongest first).
        idx, first = np.unique(idx, return_index=True)
        state.rule[idx] = rule[free][first]
        state.prob[idx] = prob[free][first]


def _merge_tier(
    state: _Merge,
    edges: _Edges,
    attrs: _Attrs,
    weak: bool,
    tier: str,
    outweigh_prob: float = np.inf,
) -> None:
    """Merge one tier's edges, vectorised where no component can conflict."""
    n = state.labels.size
    la, lb = state.labels[edges.a], state.labels[edges.b]
    live = la != lb
    if not live.any():
        return
    e_a, e_b, e_rule, e_prob = edges.a[live], edges.b[live], edges.rule[live], edges.prob[live]
    la, lb = la[live], lb[live]
    graph = coo_matrix((np.ones(la.size, np.int8), (la, lb)), shape=(n, n))
    n_comp, comp = connected_components(graph, directed=False)
    rec_comp = comp[state.labels]
    risky = _multi(rec_comp, attrs.dob_code, n_comp) | _multi(rec_comp, attrs.crm_code, n_comp)
    if weak:
        risky |= _multi(rec_comp, attrs.first_code, n_comp)
    risky[rec_comp[attrs.split_flag]] = True
    edge_risky = risky[comp[la]]

    # Safe components: every cluster in them merges; the new label is the smallest
    # record position of the component so labels stay record positions.
    safe_rec = ~risky[rec_comp]
    touched = np.zeros(n_comp, bool)
    touched[comp[la[~edge_risky]]] = True
    move = safe_rec & touched[rec_comp]
    if move.any():
        root = np.full(n_comp, n, np.int64)
        np.minimum.at(root, rec_comp[move], np.flatnonzero(move))
        state.labels[move] = root[rec_comp[move]]
        safe = ~edge_risky
        _accept(state, e_a[safe], e_b[safe], e_rule[safe], e_prob[safe])

    if edge_risky.any():
        _merge_guarded(
            state,
            e_a[edge_risky],
            e_b[edge_risky],
            e_rule[edge_risky],
            e_prob[edge_risky],
            attrs,
            weak,
            outweigh_prob,
        )
    logger.info(
        "tier %s: %d edges, %d via guarded union-find, %d refused so far",
        tier,
        int(live.sum()),
        int(edge_risky.sum()),
        len(state.refused),
    )


def _merge_guarded(
    state: _Merge,
    a: np.ndarray,
    b: np.ndarray,
    rule: np.ndarray,
    prob: np.ndarray,
    attrs: _Attrs,
    weak: bool,
    outweigh_prob: float = np.inf,
) -> None:
    """Union-find over the edges of risky components, refusing conflicting merges.

    An edge with probability at or above ``outweigh_prob`` may join two different
    dates of birth (see :func:`_dobs_agree`).
    """
    labels = state.labels
    involved = np.unique(np.concatenate([labels[a], labels[b]]))
    in_set = np.isin(labels, involved)
    members = np.flatnonzero(in_set)
    order = np.argsort(labels[members], kind="stable")
    members = members[order]
    ml = labels[members]
    starts = np.flatnonzero(np.r_[True, ml[1:] != ml[:-1]])
    bounds = np.r_[starts, ml.size]
    clusters: dict[int, _Cluster] = {}
    member_lists: dict[int, list[int]] = {}
    for s, e in zip(bounds[:-1], bounds[1:], strict=True):
        root = int(ml[s])
        mem = members[s:e]
        clusters[root] = attrs.cluster(mem)
        member_lists[root] = mem.tolist()

    parent: dict[int, int] = {r: r for r in clusters}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    accepted: list[int] = []
    for k in range(a.size):
        ra, rb = find(int(labels[a[k]])), find(int(labels[b[k]]))
        if ra == rb:
            continue
        ca, cb = clusters[ra], clusters[rb]
        why = _conflict(ca, cb, weak, bool(prob[k] >= outweigh_prob), attrs.name_change_evidence)
        if why is not None:
            state.refused.append((int(a[k]), int(b[k]), str(rule[k]), why))
            continue
        if rb < ra:
            ra, rb = rb, ra
            ca, cb = cb, ca
        parent[rb] = ra
        ca.absorb(cb)
        del clusters[rb]
        accepted.append(k)
    state.python_edges += int(a.size)
    for root in list(member_lists):
        new = find(root)
        if new != root:
            labels[np.asarray(member_lists[root])] = new
    if accepted:
        acc = np.asarray(accepted)
        _accept(state, a[acc], b[acc], rule[acc], prob[acc])


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


def _force_links(
    state: _Merge, attrs: _Attrs, links: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> list[tuple[str, str, str, str]]:
    """Merge human links before any rule; returns them with what the guard would say."""
    a, b, reasons = links
    if a.size == 0:
        return []
    n = state.labels.size
    graph = coo_matrix((np.ones(a.size, np.int8), (a, b)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    root = np.full(comp.max() + 1, n, np.int64)
    np.minimum.at(root, comp, np.arange(n))
    state.labels[:] = root[comp]
    _accept(state, a, b, np.full(a.size, "human_link", dtype=object), np.full(a.size, np.nan))
    rid = attrs.record_ids
    out = []
    for x, y, why in zip(a.tolist(), b.tolist(), reasons.tolist(), strict=True):
        guard = _link_guard(attrs, np.array([x]), np.array([y]))
        out.append((rid[x], rid[y], str(why), guard or ""))
    return out


def _link_guard(attrs: _Attrs, a: np.ndarray, b: np.ndarray) -> str | None:
    """The guard's conflict (None: none) in joining records ``a`` with records ``b``
    (positions) by a human link: every check, first names included."""
    return _conflict(
        attrs.cluster(a), attrs.cluster(b), True, name_change_evidence=attrs.name_change_evidence
    )


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
    attrs = _Attrs(norm, settings.crm_name_change_evidence)
    index = pd.Index(norm["record_id"])
    pairs = [(x, y) for x, y in splits or () if x in wanted and y in wanted]
    if pairs:
        xs, ys = zip(*pairs, strict=True)
        attrs.ban(index.get_indexer(list(xs)), index.get_indexer(list(ys)))
    pa, pb = index.get_indexer(list(side_a)), index.get_indexer(list(side_b))
    if (pa < 0).any() or (pb < 0).any():
        raise InputError("link_conflict: a record of either side is not in records")
    return _link_guard(attrs, pa, pb)


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
    from nextbest.customers.corrections import decision_pairs, review_table

    settings = settings or ResolutionSettings()
    if settings.engine not in ENGINES:
        raise ValueError(f"engine must be one of {list(ENGINES)}, not {settings.engine!r}")
    step = progress or (lambda _name: None)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    step("normalise")
    recs = validate_records(records)
    if settings.tombstone:
        from nextbest.customers.tombstone import tombstoned_records

        erased = tombstoned_records(recs, settings.tombstone, settings.tombstone_salt)
        if erased.any():
            logger.info("dropped %d records of erased persons (tombstone)", int(erased.sum()))
            recs = recs.loc[~erased]
    recs = recs.sort_values("record_id", kind="stable").reset_index(drop=True)
    norm = normalise_records(recs, settings.country_code)
    n = len(norm)
    attrs = _Attrs(norm, settings.crm_name_change_evidence)
    timings["normalise_s"] = time.perf_counter() - t0

    step("deterministic links")
    t = time.perf_counter()
    det = deterministic_edges(norm)
    state = _Merge(
        labels=np.arange(n, dtype=np.int64),
        rule=np.full(n, None, dtype=object),
        prob=np.full(n, np.nan),
    )
    human = (
        decision_pairs(
            decisions if decisions is not None else pd.DataFrame(columns=["decision"]),
            norm["record_id"].to_numpy(object),
        )
        if decisions is not None and len(decisions)
        else None
    )
    forced = _force_links(state, attrs, human["link"]) if human else []
    if human:
        attrs.ban(human["split"][0], human["split"][1])
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
        _merge_tier(state, edges, attrs, weak, tier, float(1.0 / (1.0 + 2.0**-bar)))
    timings["merge_splink_s"] = time.perf_counter() - t

    step("ids and households")
    rid = norm["record_id"].to_numpy(object)
    # labels are the smallest record position of each cluster, and records are sorted
    # by record_id, so the root's record_id is the cluster's smallest.
    customer = _sha_ids("C", rid[state.labels])
    rule = state.rule.copy()
    rule[rule == None] = SINGLETON  # noqa: E711
    assignments = pd.DataFrame(
        {
            "record_id": rid,
            "customer_id": customer,
            "match_rule": rule.astype(str),
            "match_probability": np.where(rule == "splink", state.prob, np.nan),
        }
    )
    households = _households(norm, customer)
    if state.refused:
        ref = np.asarray([(a, b) for a, b, _, _ in state.refused], dtype=np.int64)
        refused = pd.DataFrame(
            {
                "record_id_a": rid[ref[:, 0]],
                "record_id_b": rid[ref[:, 1]],
                "rule": [r for _, _, r, _ in state.refused],
                "conflict_field": [f for _, _, _, f in state.refused],
            }
        )
    else:
        refused = pd.DataFrame(columns=["record_id_a", "record_id_b", "rule", "conflict_field"])
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


def resolve_generated(
    raw_dir: Path,
    out_dir: Path,
    settings: ResolutionSettings | None = None,
    progress: ProgressCallback | None = None,
    decisions: pd.DataFrame | None = None,
    home: Path | None = None,
) -> ResolutionResult:
    """Resolve the generated exports under ``raw_dir`` and write the unified identity.

    Writes ``out_dir/identity.parquet``, ``households.parquet`` and
    ``refused_links.parquet``. ``out_dir`` is the unified directory
    (``settings.unified_dir``); when it is named differently a ``unified/`` folder
    is not added, so the caller decides the layout. With ``home`` the ids are the
    home's stable ids (:func:`with_stable_ids`).
    """
    from nextbest.customers.sources.identity_records import load_canonical_records

    records = load_canonical_records(Path(raw_dir))
    result = resolve_records(records, settings, progress, decisions)
    if home is not None:
        result = with_stable_ids(result, home, Path(out_dir) / "identity.parquet", decisions)
    write_result(result, Path(out_dir))
    return result


def _human_pairs(decisions: pd.DataFrame | None, kind: str) -> list[tuple[str, str]]:
    if decisions is None or not len(decisions):
        return []
    rows = decisions.loc[decisions["decision"] == kind]
    return list(zip(rows["record_id_a"].astype(str), rows["record_id_b"].astype(str), strict=True))


def with_stable_ids(
    result: ResolutionResult,
    root: Path,
    previous: Path | None = None,
    decisions: pd.DataFrame | None = None,
) -> ResolutionResult:
    """The result with the home's stable customer ids in place of the run's own
    (:func:`nextbest.customers.id_map.stabilise`; the changes go to the home's id map).

    ``previous``: the last unified assignment, read when the home has no id registry yet
    (a home resolved before ids were stable keeps the ids it had).
    """
    a = result.assignments
    labels, _ = pd.factorize(a["customer_id"], sort=False)
    stable = stabilise(
        root,
        a["record_id"].to_numpy(object),
        labels.astype(np.int64),
        previous,
        links=_human_pairs(decisions, "link"),
        splits=_human_pairs(decisions, "split"),
    )
    rename = dict(zip(a["customer_id"], stable.customer_ids, strict=True))
    assignments = a.assign(customer_id=stable.customer_ids)
    households = result.households.assign(customer_id=result.households["customer_id"].map(rename))
    result.stats["n_id_changes"] = len(stable.changes)
    result.stats["n_ids_issued"] = len(stable.issued)
    return replace(result, assignments=assignments, households=households)


def write_result(result: ResolutionResult, out_dir: Path) -> dict[str, Path]:
    """Write identity, households, refused and forced links as parquet under ``out_dir``,
    and the uncertain pairs (masked) as ``review_pairs.csv`` for a human to fill in."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "identity": out_dir / "identity.parquet",
        "households": out_dir / "households.parquet",
        "refused_links": out_dir / "refused_links.parquet",
        "forced_links": out_dir / "forced_links.parquet",
        "review_pairs": out_dir / "review_pairs.csv",
    }
    result.assignments.to_parquet(paths["identity"], index=False)
    result.households.to_parquet(paths["households"], index=False)
    result.refused_links.to_parquet(paths["refused_links"], index=False)
    result.forced_links.to_parquet(paths["forced_links"], index=False)
    result.review_pairs.to_csv(paths["review_pairs"], index=False)
    return paths


def read_records(path: Path) -> pd.DataFrame:
    """Read a user's canonical records from CSV or parquet (all columns as strings)."""
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"records file {path} does not exist")
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=True)
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    raise InputError(f"{path}: expected a .csv or .parquet file")


def write_assignments(assignments: pd.DataFrame, path: Path) -> None:
    """Write the assignments as CSV or parquet, chosen by the file suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        assignments.to_csv(path, index=False)
    elif path.suffix.lower() in (".parquet", ".pq"):
        assignments.to_parquet(path, index=False)
    else:
        raise ValueError(f"{path}: expected a .csv or .parquet output file")


@dataclass
class ResolveRun:
    """Outcome of :func:`run_resolve`: the result and where it went."""

    result: ResolutionResult
    written: dict[str, Path]


def run_resolve(
    records_path: Path | None,
    out_path: Path | None,
    raw_dir: Path,
    unified_dir: Path,
    settings: ResolutionSettings | None = None,
    progress: ProgressCallback | None = None,
    decisions_path: Path | None = None,
    home: Path | None = None,
) -> ResolveRun:
    """The ``nextbest resolve`` step.

    With ``records_path`` a user's canonical records (CSV/parquet) are resolved and the
    assignments written to ``out_path`` (next to it: households and refused links as
    parquet). Without it the generated exports under ``raw_dir`` are resolved into
    ``unified_dir``. Human links and splits in ``decisions_path`` (if it exists) are
    honoured. ``home``: the home whose stable ids the generated exports' customers get
    (a user's ``records_path`` is resolved on its own). Quality against labelled
    evaluation data is
    :func:`nextbest.customers.quality.evaluate_resolution`.
    """
    from nextbest.customers.corrections import load_decisions

    decisions = load_decisions(decisions_path)
    if records_path is not None:
        if out_path is None:
            raise InputError("--out is required with --records")
        result = resolve_records(read_records(records_path), settings, progress, decisions)
        write_assignments(result.assignments, out_path)
        side = write_result(result, out_path.parent / f"{out_path.stem}_resolution")
        written = {"assignments": out_path, **{k: v for k, v in side.items() if k != "identity"}}
    else:
        result = resolve_generated(raw_dir, unified_dir, settings, progress, decisions, home)
        written = {
            k: unified_dir / f"{k}.parquet"
            for k in ("identity", "households", "refused_links", "forced_links")
        }
        written["review_pairs"] = unified_dir / "review_pairs.csv"
        if out_path is not None:
            write_assignments(result.assignments, out_path)
            written["assignments"] = out_path
    return ResolveRun(result, written)

"""The merge guard of identity resolution: which clusters may become one customer.

Edges are merged tier by tier (:func:`merge_tier`): a component of clusters that cannot
conflict merges at once, vectorised; the few others go through a union-find
(:func:`_merge_guarded`) that refuses an edge joining two dates of birth that are not
typos of one another vouched for by names and address, two customer numbers that are
neither a duplicate account nor a name change of one person, (weak tiers) two first
names that are not spellings of one another, or a human split. Human links are merged
before any rule (:func:`force_links`) with what the guard would have said
(:func:`link_guard`). docs/identity.md has the rules in full.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

logger = logging.getLogger("nextbest.customers.identity")


# --- edges ---------------------------------------------------------------------------------


@dataclass
class Edges:
    a: np.ndarray  # record positions
    b: np.ndarray
    rule: np.ndarray  # object array of rule names
    prob: np.ndarray  # float, NaN for deterministic

    @staticmethod
    def empty() -> Edges:
        return Edges(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, object), np.zeros(0))

    @staticmethod
    def concat(parts: list[Edges]) -> Edges:
        if not parts:
            return Edges.empty()
        return Edges(
            np.concatenate([p.a for p in parts]),
            np.concatenate([p.b for p in parts]),
            np.concatenate([p.rule for p in parts]),
            np.concatenate([p.prob for p in parts]),
        )


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


class Attrs:
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
class Merge:
    labels: np.ndarray
    rule: np.ndarray  # per record: rule that joined it (None until linked)
    prob: np.ndarray
    refused: list[tuple[int, int, str, str]] = field(default_factory=list)
    python_edges: int = 0


def _accept(state: Merge, a: np.ndarray, b: np.ndarray, rule: np.ndarray, prob: np.ndarray) -> None:
    """Record the rule (and probability) of the first accepted edge at each end."""
    for ends in (a, b):
        free = state.rule[ends] == None  # noqa: E711  (object array comparison)
        idx = ends[free]
        # Duplicate ends: keep the first edge (edges arrive strongest first).
        idx, first = np.unique(idx, return_index=True)
        state.rule[idx] = rule[free][first]
        state.prob[idx] = prob[free][first]


def merge_tier(
    state: Merge,
    edges: Edges,
    attrs: Attrs,
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
    state: Merge,
    a: np.ndarray,
    b: np.ndarray,
    rule: np.ndarray,
    prob: np.ndarray,
    attrs: Attrs,
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


# --- human links ------------------------------------------------------------------------


def force_links(
    state: Merge, attrs: Attrs, links: tuple[np.ndarray, np.ndarray, np.ndarray]
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
        guard = link_guard(attrs, np.array([x]), np.array([y]))
        out.append((rid[x], rid[y], str(why), guard or ""))
    return out


def link_guard(attrs: Attrs, a: np.ndarray, b: np.ndarray) -> str | None:
    """The guard's conflict (None: none) in joining records ``a`` with records ``b``
    (positions) by a human link: every check, first names included."""
    return _conflict(
        attrs.cluster(a), attrs.cluster(b), True, name_change_evidence=attrs.name_change_evidence
    )

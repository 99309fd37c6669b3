"""The decision engine: one vectorised function for the online service and batch scoring.

``compile_plan`` turns the catalog, the policy, the feature column order and the response
model into index arrays once at start-up. ``decide`` then runs every rule for ``n``
customers x ``C`` actions with numpy only:

1. candidates for the channel (and placement) within their dates;
2. consent gate (purpose x channel, deny by default: NaN or missing means no consent);
3. eligibility predicates;
4. suppression and caps (case pause, complaint block, holdings, stock, cooldown, caps);
5. scores from the model: uplift, value, cost, lever -> expected incremental value;
6. arbitration: rank by expected incremental value, "no action" at 0, top-k;
7. holdout by salted hash of the customer id;
8. logged exploration with its propensity;
9. a reason code for every customer x action, rendered to sentences in the records.

Every rule is compiled to a *check* (one feature column, a comparison, a reason code) or
a per-call *context check* (dates, placement, stock). All checks of one channel are
evaluated at once on an ``[n, P]`` gather of the feature matrix, and the first failing
check of each action (in rule order) is found with one ``minimum.reduceat``. Because the
online service and the batch job call this same function, their answers for the same
customer, feature snapshot and time bucket are identical by construction.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import numpy as np

from decisions.catalog import CONTROL_ACTION, Catalog, ConfigError
from decisions.policy import Policy, check_overrides
from decisions.reasons import Reason, row_sentence, sentence

logger = logging.getLogger(__name__)


@runtime_checkable
class ResponseModel(Protocol):
    """Response model protocol from docs/contracts.md (training -> serving)."""

    feature_names: list[str]
    arm_ids: list[str]
    version: str

    def predict_arms(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(p_control [n], p_treated [n, A], value_if_response [n, A]) as float64."""
        ...


# Comparison operators of compiled checks: a check *fails* when ``x OP threshold`` holds.
_EQ, _NE, _LT, _LE, _GT, _GE, _IN, _NOT_IN, _CTX = range(9)
_OPS = {"eq": _EQ, "ne": _NE, "lt": _LT, "le": _LE, "gt": _GT, "ge": _GE}
_OPS.update({"in": _IN, "not_in": _NOT_IN})
# An eligibility predicate says when an action is allowed; its check fails on the inverse.
_INVERSE = {"eq": "ne", "ne": "eq", "lt": "ge", "le": "gt", "gt": "le", "ge": "lt"}
_INVERSE.update({"in": "not_in", "not_in": "in"})
_NO_ACTION = -1


@dataclass(frozen=True)
class DecisionContext:
    """Everything about one decision call that is not a customer feature."""

    channel: str
    now: datetime
    k: int = 3
    placement: str | None = None
    #: product id -> units in stock, or an array aligned with ``Plan.stock_products``.
    stock: Mapping[str, float] | np.ndarray | None = None
    feature_snapshot_time: datetime | None = None
    request: Mapping[str, Any] = field(default_factory=dict)
    #: Seed of the exploration draw; None: the policy's time bucket of ``now``.
    decision_seed: str | None = None


@dataclass(frozen=True)
class Check:
    """One compiled rule of one action, kept for sentences and debugging."""

    action: str
    reason: Reason
    feature: str | None
    op: str
    threshold: float | tuple[float, ...] | None
    fields: dict[str, Any]


@dataclass
class ChannelPlan:
    """Index arrays for the actions deliverable on one channel."""

    channel: str
    action_idx: np.ndarray  # [Cc] catalog column of each local action
    ucols: np.ndarray  # [U] feature columns the rules read (each once)
    umissing: np.ndarray  # [U] column absent from the feature list (reads as NaN)
    groups: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]  # (op, cond, ucol, thr)
    n_feat_cond: int  # conditions [0, n_feat_cond) read a feature; then context ones
    n_cond: int  # including the final never-failing pad condition
    cond_u: np.ndarray  # [n_feat_cond] unique column of each feature condition
    slot_q: np.ndarray  # [Cc, R] condition of each action's r-th check, in rule order
    slot_check: np.ndarray  # [Cc, R] index into ``checks`` (-1 for padding)
    slot_fail: np.ndarray  # [Cc, R] reason when it fails
    slot_nan: np.ndarray  # [Cc, R] reason when its feature is NaN
    date_conds: np.ndarray  # condition idx of date rules
    date_from: np.ndarray
    date_to: np.ndarray
    place_conds: np.ndarray
    place_allowed: list[frozenset[str]]
    stock_conds: np.ndarray
    stock_pos: np.ndarray  # position in Plan.stock_products
    checks: list[Check]
    arm_idx: np.ndarray  # [Cc] model arm column
    value: np.ndarray
    cost: np.ndarray
    lever: np.ndarray
    sensitive_pos: np.ndarray  # positions of sensitive features among model columns
    sensitive_consent_col: int  # feature column of the consent unlocking them (-1: none)
    #: feature column each check reads (-1: a context check or a feature not provided)
    check_cols: list[int] = field(default_factory=list)


@dataclass
class Plan:
    """Everything ``decide`` needs, precomputed once at start-up."""

    catalog: Catalog
    policy: Policy
    model: ResponseModel
    feature_names: list[str]
    action_ids: np.ndarray  # [C] object
    action_ids_with_control: np.ndarray  # [C + 1], last is no_action
    model_cols: np.ndarray
    stock_products: list[str]
    channels: dict[str, ChannelPlan]
    holdout_salt: bytes
    missing_features: list[str]
    feature_pos: dict[str, int]
    #: Rendered exclusion sentences by everything they depend on; the same few facts
    #: (action, failed check, observed value) recur in almost every decision.
    sentence_cache: dict[tuple, str] = field(default_factory=dict, repr=False)

    @property
    def model_version(self) -> str:
        """Version of the response model."""
        return str(getattr(self.model, "version", "unknown"))


def compile_plan(
    catalog: Catalog,
    policy: Policy,
    feature_names: Sequence[str],
    model: ResponseModel,
    channels: Sequence[str] | None = None,
    strict: bool = True,
) -> Plan:
    """Precompute index arrays for every rule, channel and model arm.

    With ``strict`` (the default) every feature a rule needs must be in ``feature_names``;
    otherwise absent columns act as all-NaN (no consent; other rules report
    MISSING_FEATURES), which keeps a partial feature set usable in experiments.
    """
    names = list(feature_names)
    pos = {n: i for i, n in enumerate(names)}
    catalog.validate_features(names, source="catalog")
    check_overrides(policy, catalog.ids, source="policy")
    missing_model = [f for f in model.feature_names if f not in pos]
    if missing_model:
        raise ConfigError(f"model {model.version}: features not provided: {missing_model}")
    arm_pos = {a: i for i, a in enumerate(model.arm_ids)}
    for a in catalog.actions:
        if a.arm not in arm_pos:
            raise ConfigError(
                f"catalog: action '{a.id}': field 'response_model': model arm '{a.arm}' "
                f"not in model {model.version} arms {list(model.arm_ids)}"
            )
    stock_products = sorted({a.product for a in catalog.actions if a.needs_stock and a.product})
    wanted = channels or sorted({c for a in catalog.actions for c in a.channels})
    model_cols = np.array([pos[f] for f in model.feature_names], dtype=np.intp)
    missing: set[str] = set()
    plans = {
        ch: _compile_channel(catalog, policy, ch, pos, model, arm_pos, stock_products, missing)
        for ch in wanted
    }
    if missing and strict:
        raise ConfigError(f"features needed by the policy are not provided: {sorted(missing)}")
    if missing:
        logger.warning("features absent, rules using them treat values as NaN: %s", missing)
    ids = np.array(catalog.ids, dtype=object)
    return Plan(
        catalog=catalog,
        policy=policy,
        model=model,
        feature_names=names,
        action_ids=ids,
        action_ids_with_control=np.append(ids, np.array([CONTROL_ACTION], dtype=object)),
        model_cols=model_cols,
        stock_products=stock_products,
        channels=plans,
        holdout_salt=policy.holdout.salt.encode(),
        missing_features=sorted(missing),
        feature_pos=pos,
    )


def _compile_channel(
    catalog: Catalog,
    policy: Policy,
    channel: str,
    pos: dict[str, int],
    model: ResponseModel,
    arm_pos: dict[str, int],
    stock_products: list[str],
    missing: set[str],
) -> ChannelPlan:
    """Build the check table of one channel, in rule-precedence order per action."""
    rows: list[tuple[int, str | None, str, Any, Reason, Reason | None, str | None, dict]] = []
    # (local action, feature, op, threshold, fail reason, nan reason, ctx kind, fields)
    actions = [(i, a) for i, a in enumerate(catalog.actions) if channel in a.channels]
    starts = []
    sup = policy.suppression
    for local, (_, a) in enumerate(actions):
        starts.append(len(rows))
        base = {
            "action": a.name,
            "action_id": a.id,
            "channel": channel,
            "purpose": a.purpose,
            "kind": a.kind.replace("_", "-"),
            "product": a.product or a.category,
        }
        if a.placements is not None:
            rows.append((local, None, "ctx", None, Reason.NOT_IN_PLACEMENT, None, "place", base))
        if a.valid_from or a.valid_to:
            rows.append((local, None, "ctx", None, Reason.OUT_OF_DATES, None, "dates", base))
        c_purpose, c_channel = policy.consent_for(a.id, a.purpose, channel)
        rows.append(
            (
                local,
                f"consent_{c_purpose}_{c_channel}",
                "lt",
                0.5,
                Reason.NO_CONSENT,
                Reason.NO_CONSENT,
                None,
                {**base, "purpose": c_purpose, "channel": c_channel},
            )
        )
        for p in a.eligibility:
            thr = tuple(p.value) if isinstance(p.value, list) else p.value
            rows.append(
                (
                    local,
                    p.feature,
                    _INVERSE[p.op],
                    thr,
                    Reason.NOT_ELIGIBLE,
                    Reason.MISSING_FEATURES,
                    None,
                    {**base, "feature": p.feature, "op": p.op, "threshold": p.value},
                )
            )
        cp = policy.case_pause
        if cp.enabled and a.purpose in cp.purposes:
            rows.append(
                (
                    local,
                    cp.feature,
                    "gt",
                    0.0,
                    Reason.CASE_OPEN,
                    Reason.MISSING_FEATURES,
                    None,
                    {**base, "feature": cp.feature},
                )
            )
        cb = policy.complaint_block
        if cb.enabled and a.kind in cb.kinds:
            rows.append(
                (
                    local,
                    cb.feature,
                    "lt",
                    cb.days,
                    Reason.RECENT_COMPLAINT,
                    Reason.MISSING_FEATURES,
                    None,
                    {**base, "feature": cb.feature, "threshold": cb.days},
                )
            )
        if sup.never_offer_held and a.product:
            f = f"holds_{a.product}"
            rows.append(
                (
                    local,
                    f,
                    "gt",
                    0.5,
                    Reason.ALREADY_HOLDS,
                    Reason.MISSING_FEATURES,
                    None,
                    {**base, "feature": f},
                )
            )
        if sup.respect_stock and a.needs_stock:
            rows.append((local, None, "ctx", None, Reason.OUT_OF_STOCK, None, "stock", base))
        if sup.cooldown and a.cooldown_days > 0:
            f = f"days_since_shown_{a.id}"
            if f not in pos and a.arm != a.id:
                f = f"days_since_shown_{a.arm}"
            rows.append(
                (
                    local,
                    f,
                    "lt",
                    a.cooldown_days,
                    Reason.COOLDOWN,
                    Reason.MISSING_FEATURES,
                    None,
                    {**base, "feature": f, "threshold": a.cooldown_days},
                )
            )
        for cap in policy.caps:
            if cap.channel not in (channel, "all"):
                continue
            f = cap.feature()
            reason = Reason.TOTAL_CAP if cap.channel == "all" else Reason.CHANNEL_CAP
            rows.append(
                (
                    local,
                    f,
                    "ge",
                    float(cap.max_contacts),
                    reason,
                    Reason.MISSING_FEATURES,
                    None,
                    {**base, "feature": f, "threshold": cap.max_contacts, "days": cap.period_days},
                )
            )
    # Channel caps before the total cap, whatever their order in the file.
    order: list[int] = []
    new_starts = []
    for local in range(len(actions)):
        seg = [j for j, r in enumerate(rows) if r[0] == local]
        seg.sort(key=lambda j: (rows[j][4] == Reason.TOTAL_CAP, j))
        new_starts.append(len(order))
        order.extend(seg)
    rows = [rows[j] for j in order]
    starts = new_starts

    # Unique feature columns and unique (column, op, threshold) conditions: many checks
    # share one (consent, caps, case pause), so the hot path compares each once.
    checks: list[Check] = []
    ucols: list[int] = []
    umissing: list[bool] = []
    ukey: dict[str, int] = {}
    conds: dict[tuple, int] = {}
    cond_u: list[int] = []
    cond_op: list[int] = []
    cond_thr: list[Any] = []
    q_of_check = np.zeros(len(rows), dtype=np.intp)
    ctx_checks = [j for j, r in enumerate(rows) if r[1] is None]
    for j, (local, feat, op, thr, fr, _nr, _ctx, fields) in enumerate(rows):
        checks.append(Check(actions[local][1].id, fr, feat, op, thr, fields))
        if feat is None:
            continue
        if feat not in ukey:
            ukey[feat] = len(ucols)
            ucols.append(pos.get(feat, 0))
            umissing.append(feat not in pos)
            if feat not in pos:
                missing.add(feat)
        key = (feat, op, thr)
        if key not in conds:
            conds[key] = len(cond_u)
            cond_u.append(ukey[feat])
            cond_op.append(_OPS[op])
            cond_thr.append(thr)
        q_of_check[j] = conds[key]
    n_feat = len(cond_u)
    for i, j in enumerate(ctx_checks):
        q_of_check[j] = n_feat + i
    dummy = n_feat + len(ctx_checks)  # a condition that never fails, pads short actions
    groups: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
    ops = np.array(cond_op, dtype=np.int8)
    for op in sorted(set(cond_op)):
        qidx = np.flatnonzero(ops == op)
        if op in (_IN, _NOT_IN):
            width = max(len(cond_thr[q]) for q in qidx)
            thr = np.full((len(qidx), width), np.nan)
            for r, q in enumerate(qidx):
                thr[r, : len(cond_thr[q])] = cond_thr[q]
        else:
            thr = np.array([cond_thr[q] for q in qidx], dtype=np.float64)
        groups.append((op, qidx, np.array([cond_u[q] for q in qidx], dtype=np.intp), thr))
    width = max([sum(1 for r in rows if r[0] == a) for a in range(len(actions))], default=1)
    slot_q = np.full((len(actions), width), dummy, dtype=np.intp)
    slot_check = np.full((len(actions), width), -1, dtype=np.intp)
    slot_fail = np.zeros((len(actions), width), dtype=np.int8)
    slot_nan = np.zeros((len(actions), width), dtype=np.int8)
    for j, r in enumerate(rows):
        local, slot = r[0], j - starts[r[0]]
        slot_q[local, slot] = q_of_check[j]
        slot_check[local, slot] = j
        slot_fail[local, slot] = int(r[4])
        slot_nan[local, slot] = int(r[5]) if r[5] is not None else 0

    def ctx(kind: str) -> np.ndarray:
        return np.array([j for j, r in enumerate(rows) if r[6] == kind], dtype=np.intp)

    def cond(js: np.ndarray) -> np.ndarray:
        return q_of_check[js] if len(js) else np.zeros(0, dtype=np.intp)

    date_checks = ctx("dates")
    date_from = np.array(
        [_ts(actions[rows[j][0]][1].valid_from, -np.inf) for j in date_checks], dtype=float
    )
    date_to = np.array(
        [_ts(actions[rows[j][0]][1].valid_to, np.inf) for j in date_checks], dtype=float
    )
    place_checks = ctx("place")
    stock_checks = ctx("stock")
    acts = [a for _, a in actions]
    sens = policy.modelling
    sens_pos = np.array(
        [i for i, f in enumerate(model.feature_names) if f in sens.sensitive_features],
        dtype=np.intp,
    )
    sens_col = -1
    if len(sens_pos) and sens.model_sensitive_features_require:
        f = f"consent_{sens.model_sensitive_features_require}_{channel}"
        sens_col = pos.get(f, -1)  # absent consent feature: never unlocked
    return ChannelPlan(
        channel=channel,
        action_idx=np.array([i for i, _ in actions], dtype=np.intp),
        ucols=np.array(ucols, dtype=np.intp),
        umissing=np.array(umissing, dtype=bool),
        groups=groups,
        n_feat_cond=n_feat,
        n_cond=dummy + 1,
        cond_u=np.array(cond_u, dtype=np.intp),
        slot_q=slot_q,
        slot_check=slot_check,
        slot_fail=slot_fail,
        slot_nan=slot_nan,
        date_conds=cond(date_checks),
        date_from=date_from,
        date_to=date_to,
        place_conds=cond(place_checks),
        place_allowed=[frozenset(acts[rows[j][0]].placements or ()) for j in place_checks],
        stock_conds=cond(stock_checks),
        stock_pos=np.array(
            [stock_products.index(acts[rows[j][0]].product) for j in stock_checks],
            dtype=np.intp,
        ),
        checks=checks,
        arm_idx=np.array([arm_pos[a.arm] for a in acts], dtype=np.intp),
        value=np.array([a.value for a in acts], dtype=np.float64),
        cost=np.array([a.cost for a in acts], dtype=np.float64),
        lever=np.array([a.lever for a in acts], dtype=np.float64),
        sensitive_pos=sens_pos,
        sensitive_consent_col=sens_col if len(sens_pos) else -1,
        check_cols=[pos.get(c.feature, -1) if c.feature else -1 for c in checks],
    )


def _ts(t: datetime | None, default: float) -> float:
    return t.timestamp() if t is not None else default


# --------------------------------------------------------------------------------------
# hashing: holdout and exploration draws


def holdout_hash(salt: str | bytes, customer_ids: Sequence[str] | np.ndarray) -> np.ndarray:
    """First 8 bytes (big-endian) of sha256(salt + customer_id) as uint64, per customer.

    The same recipe can be reproduced in SQL or Spark, so any system can tell who is in
    the holdout.
    """
    s = salt.encode() if isinstance(salt, str) else salt
    sha = hashlib.sha256
    buf = b"".join(
        sha(s + (c.encode() if isinstance(c, str) else str(c).encode())).digest()[:8]
        for c in customer_ids
    )
    return np.frombuffer(buf, dtype=">u8").astype(np.uint64)


def in_holdout(
    salt: str | bytes, customer_ids: Sequence[str] | np.ndarray, share: float
) -> np.ndarray:
    """Whether each customer is in the holdout: hash / 2**64 < share."""
    h = holdout_hash(salt, customer_ids)
    return _unit(h) < share


_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)


_MASK64 = (1 << 64) - 1
#: Below this many values the finaliser runs on Python integers: numpy's per-call overhead
#: (eight uint64 ufuncs and an errstate) dominates for the online path's one row.
_MIX64_PY_MAX = 8


def _mix64_int(v: int) -> int:
    """splitmix64 finaliser of one uint64 held in a Python int (mod 2**64, as numpy)."""
    v = (v + 0x9E3779B97F4A7C15) & _MASK64
    v = ((v ^ (v >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    v = ((v ^ (v >> 27)) * 0x94D049BB133111EB) & _MASK64
    return v ^ (v >> 31)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a fast, well-mixed uint64 -> uint64 map (vectorised)."""
    if isinstance(x, np.ndarray) and x.ndim == 1 and len(x) <= _MIX64_PY_MAX:
        return np.array([_mix64_int(v) for v in x.tolist()], dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = x + _GOLD
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def _unit(x: np.ndarray) -> np.ndarray:
    """uint64 -> float in [0, 1) using the top 53 bits."""
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def exploration_seed(policy: Policy, context: DecisionContext) -> np.uint64:
    """The uint64 seed of a decision's exploration draw (same in batch and online)."""
    seed = context.decision_seed
    if seed is None:
        seed = str(int(_now_ts(context.now) // policy.exploration.bucket_seconds))
    return _seed_of(policy.exploration.salt, seed)


@functools.lru_cache(maxsize=64)
def _seed_of(salt: str, seed: str) -> np.uint64:
    # the online path asks for the same bucket's seed on every request
    d = hashlib.sha256(f"{salt}:{seed}".encode()).digest()[:8]
    return np.uint64(int.from_bytes(d, "big"))


def _now_ts(now: datetime) -> float:
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now.timestamp()


# --------------------------------------------------------------------------------------
# decide


@dataclass
class Decisions:
    """Arrays of one ``decide`` call; ``records`` and ``to_columns`` render them."""

    plan: Plan
    context: DecisionContext
    customer_ids: np.ndarray  # [n] object
    features: np.ndarray  # [n, F] (a reference, kept for reason sentences)
    codes: np.ndarray  # [n, C] int8 Reason per action (0 = eligible and ranked)
    failed_check: np.ndarray  # [n, C] index into the channel plan's checks, -1
    p_control: np.ndarray  # [n]
    p_treated: np.ndarray  # [n, C]
    value: np.ndarray  # [n, C]
    score: np.ndarray  # [n, C] expected incremental value
    ranked: np.ndarray  # [n, k] catalog column, -1 past the last ranked action
    greedy: np.ndarray  # [n] best ranked action (-1 = no action)
    chosen: np.ndarray  # [n] logged action (-1 = no action)
    propensity: np.ndarray  # [n]
    holdout: np.ndarray  # [n] bool
    explored: np.ndarray  # [n] bool
    explore_options: np.ndarray  # [n, C] bool actions the exploration could pick
    epsilon: np.ndarray  # [n] exploration probability actually applied
    row_reason: np.ndarray  # [n] Reason explaining the chosen action
    control_value: np.ndarray | None = None  # [n] value of a response without action (NaN)

    @property
    def n(self) -> int:
        """Number of customers."""
        return len(self.customer_ids)

    @property
    def chosen_action(self) -> np.ndarray:
        """Chosen action ids ([n] object, ``no_action`` for none)."""
        return self.plan.action_ids_with_control[self.chosen]

    @property
    def uplift(self) -> np.ndarray:
        """p_treated - p_control, [n, C]."""
        return self.p_treated - self.p_control[:, None]

    def action_probabilities(self) -> np.ndarray:
        """Probability of each action (columns: catalog order, then no_action) per row."""
        n_opt = self.explore_options.sum(axis=1) + 1
        probs = np.zeros((self.n, len(self.plan.action_ids) + 1))
        probs[:, :-1] = self.explore_options * (self.epsilon / n_opt)[:, None]
        probs[:, -1] = self.epsilon / n_opt
        target = np.where(self.holdout, _NO_ACTION, self.greedy)
        probs[np.arange(self.n), target] += 1.0 - self.epsilon
        return probs

    def records(
        self,
        decision_ids: Sequence[str] | None = None,
        deterministic_ids: bool = False,
        include_off_channel: bool = False,
    ) -> list[dict[str, Any]]:
        """One decision-log record per customer (see module docs for the fields)."""
        from decisions.decision_log import check_customer_id

        plan, ctx = self.plan, self.context
        cplan = plan.channels[ctx.channel]
        now = ctx.now if ctx.now.tzinfo else ctx.now.replace(tzinfo=UTC)
        decided_at = now.isoformat()
        snap = ctx.feature_snapshot_time.isoformat() if ctx.feature_snapshot_time else None
        ids = plan.action_ids.tolist()
        with_control = plan.action_ids_with_control.tolist()
        cost_a = np.zeros(len(ids))
        lever_a = np.ones(len(ids))
        cost_a[cplan.action_idx] = cplan.cost
        lever_a[cplan.action_idx] = cplan.lever
        cost, lever = cost_a.tolist(), lever_a.tolist()
        # Python floats and ints once per call: indexing numpy arrays element by element
        # costs ~100 ns a value, and a record reads ~60 of them (the same numbers: tolist
        # gives the float64 values themselves, and float arithmetic is IEEE double either way).
        score, p_treated, value = self.score.tolist(), self.p_treated.tolist(), self.value.tolist()
        p_control = self.p_control.tolist()
        control_value = None if self.control_value is None else self.control_value.tolist()
        ranked_all, codes_all = self.ranked.tolist(), self.codes.tolist()
        chosen_all, row_reason_all = self.chosen.tolist(), self.row_reason.tolist()
        holdout_all, explored_all = self.holdout.tolist(), self.explored.tolist()
        propensity_all = self.propensity.tolist()
        model_version = plan.model_version
        out = []
        for i in range(self.n):
            cid = self.customer_ids[i]
            cid = None if cid is None or cid == "" else str(cid)
            if cid is not None:
                check_customer_id(cid)
            if decision_ids is not None:
                did = str(decision_ids[i])
            elif deterministic_ids:
                did = str(uuid.uuid5(uuid.NAMESPACE_URL, f"nextbest:{cid}:{decided_at}"))
            else:
                did = str(uuid.uuid4())
            score_i, pt_i, value_i, pc = score[i], p_treated[i], value[i], p_control[i]
            cv = None if control_value is None else control_value[i]
            cv = None if cv is None or cv != cv else cv  # NaN: no control value
            ranked = []
            for r, c in enumerate(ranked_all[i]):
                if c < 0:
                    break
                ranked.append(
                    {
                        "action_id": ids[c],
                        "rank": r + 1,
                        "score": score_i[c],
                        "p_treated": pt_i[c],
                        "p_control": pc,
                        "uplift": pt_i[c] - pc,
                        "value": value_i[c],
                        "control_value": cv,
                        "cost": cost[c],
                        "lever": lever[c],
                    }
                )
            excluded = []
            feats: list[float] = []
            failed: list[int] = []
            for c, code in enumerate(codes_all[i]):
                if not code or (code == _NOT_ON_CHANNEL and not include_off_channel):
                    continue
                if not failed:
                    feats, failed = self.features[i].tolist(), self.failed_check[i].tolist()
                excluded.append(
                    {
                        "action_id": ids[c],
                        "reason": _REASON_NAME[code],
                        "sentence": self._sentence(i, c, code, failed[c], feats),
                    }
                )
            chosen = chosen_all[i]
            fields: dict[str, Any] = {}
            if chosen >= 0:
                fields = {
                    "action": plan.catalog.actions[chosen].name,
                    "score": score_i[chosen],
                }
            row_reason = row_reason_all[i]
            out.append(
                {
                    "decision_id": did,
                    "decided_at": decided_at,
                    "customer_id": cid,
                    "channel": ctx.channel,
                    "placement": ctx.placement,
                    "group": "holdout" if holdout_all[i] else "treatment",
                    "chosen_action": with_control[chosen],
                    "propensity": propensity_all[i],
                    "explored": explored_all[i],
                    "reason": _REASON_NAME[row_reason],
                    "reason_text": row_sentence(row_reason, fields),
                    "ranked": ranked,
                    "excluded": excluded,
                    "model_version": model_version,
                    "policy_version": plan.policy.version,
                    "catalog_version": plan.catalog.version,
                    "feature_snapshot_time": snap,
                    "context": dict(ctx.request),
                }
            )
        return out

    def _sentence(self, i: int, c: int, code: int, j: int, feats: list[float]) -> str:
        """Exclusion sentence of action ``c`` for row ``i``; ``j`` its failed check,
        ``feats`` the row's features as Python floats."""
        observed: float | None = None
        if j >= 0:
            col = self.plan.channels[self.context.channel].check_cols[j]
            if col >= 0:
                observed = feats[col]
        if code == Reason.NEGATIVE_VALUE:  # carries the score: too many distinct values
            return self._render_sentence(i, c, code, j, observed)
        cache = self.plan.sentence_cache
        key = (
            self.context.channel,
            self.context.placement,
            c,
            code,
            j,
            # the exact bits: NaN (!= itself) and -0.0 (== 0.0, printed "-0") keep their own keys
            None if observed is None else observed.hex(),
        )
        text = cache.get(key)
        if text is None:
            text = self._render_sentence(i, c, code, j, observed)
            if len(cache) < _SENTENCE_CACHE_LIMIT:
                cache[key] = text
        return text

    def _render_sentence(self, i: int, c: int, code: int, j: int, observed: float | None) -> str:
        action = self.plan.catalog.actions[c]
        fields: dict[str, Any] = {
            "action": action.name,
            "channel": self.context.channel,
            "placement": self.context.placement,
            "purpose": action.purpose,
            "product": action.product or action.category,
        }
        if j >= 0:
            fields.update(self.plan.channels[self.context.channel].checks[j].fields)
            if observed is not None:
                fields["observed"] = observed
        if code in (Reason.NEGATIVE_VALUE,):
            fields["score"] = float(self.score[i, c])
        return sentence(code, fields)

    def to_columns(self) -> dict[str, np.ndarray]:
        """Columnar form for batch: one entry per customer, top-k flattened into columns."""
        ids = self.plan.action_ids_with_control
        cols: dict[str, np.ndarray] = {
            "customer_id": self.customer_ids,
            "group": np.where(self.holdout, "holdout", "treatment").astype(object),
            "chosen_action": ids[self.chosen],
            "propensity": self.propensity,
            "explored": self.explored,
            "reason": _REASON_NAMES[self.row_reason],
        }
        rows = np.arange(self.n)
        for r in range(self.ranked.shape[1]):
            c = self.ranked[:, r]
            ok = c >= 0
            cols[f"rank_{r + 1}_action"] = np.where(ok, ids[c], None).astype(object)
            cols[f"rank_{r + 1}_score"] = np.where(ok, self.score[rows, c], np.nan)
        return cols

    def to_arrow(self) -> Any:
        """The columnar form as a pyarrow Table, with versions and times as metadata."""
        import pyarrow as pa

        cols = self.to_columns()
        table = pa.table({k: pa.array(v) for k, v in cols.items()})
        meta = {
            "channel": self.context.channel,
            "decided_at": self.context.now.isoformat(),
            "model_version": self.plan.model_version,
            "policy_version": self.plan.policy.version,
            "catalog_version": self.plan.catalog.version,
            "feature_snapshot_time": (
                self.context.feature_snapshot_time.isoformat()
                if self.context.feature_snapshot_time
                else ""
            ),
        }
        return table.replace_schema_metadata(meta)


_REASON_NAMES = np.array([r.name for r in Reason], dtype=object)
#: Reason code -> name, without the enum call per excluded action of every record.
_REASON_NAME = {int(r): r.name for r in Reason}
_NOT_ON_CHANNEL = int(Reason.NOT_ON_CHANNEL)
_SENTENCE_CACHE_LIMIT = 100_000
_OP_FN = {
    _EQ: np.equal,
    _NE: np.not_equal,
    _LT: np.less,
    _LE: np.less_equal,
    _GT: np.greater,
    _GE: np.greater_equal,
}


def _stock_vector(plan: Plan, stock: Mapping[str, float] | np.ndarray | None) -> np.ndarray:
    if isinstance(stock, np.ndarray):
        return stock.astype(np.float64, copy=False)
    if stock is None:
        return np.full(len(plan.stock_products), np.nan)
    return np.array([stock.get(p, np.nan) for p in plan.stock_products], dtype=np.float64)


def decide(
    features: np.ndarray,
    customer_ids: Sequence[str | None] | np.ndarray,
    plan: Plan,
    context: DecisionContext,
    model_scores: tuple[np.ndarray, ...] | None = None,
) -> Decisions:
    """Decide the next best action for ``n`` customers on ``context.channel``.

    ``features`` is ``[n, F]`` float64 in ``plan.feature_names`` order. ``model_scores``,
    when given, replaces the model call with precomputed ``predict_arms`` outputs for all
    ``n`` rows (batch jobs that score once and decide on several channels).
    """
    X = np.asarray(features, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(plan.feature_names):
        raise ValueError(
            f"features must be [n, {len(plan.feature_names)}] in plan.feature_names order, "
            f"got shape {X.shape}"
        )
    cids = np.asarray(customer_ids, dtype=object).reshape(-1)
    n = X.shape[0]
    if len(cids) != n:
        raise ValueError(f"{len(cids)} customer ids for {n} feature rows")
    cp = plan.channels.get(context.channel)
    if cp is None:
        raise ValueError(f"channel '{context.channel}' not compiled; have {sorted(plan.channels)}")
    pol = plan.policy
    n_act = len(plan.action_ids)
    n_loc = len(cp.action_idx)
    k = max(int(context.k), 1)

    # 1-4: every rule as one boolean [n, Q] matrix of conditions over unique columns.
    Xu = X[:, cp.ucols]
    if cp.umissing.any():
        Xu[:, cp.umissing] = np.nan
    failq = np.zeros((n, cp.n_cond), dtype=bool)
    for op, qidx, uidx, thr in cp.groups:
        sub = Xu[:, uidx]
        if op == _IN or op == _NOT_IN:
            hit = (sub[:, :, None] == thr[None, :, :]).any(axis=2)
            failq[:, qidx] = hit if op == _IN else ~hit
        else:
            failq[:, qidx] = _OP_FN[op](sub, thr)
    nanq = np.zeros((n, cp.n_cond), dtype=bool)
    nanq[:, : cp.n_feat_cond] = np.isnan(Xu)[:, cp.cond_u]
    failq |= nanq  # NaN fails every check (consent: no consent; others: missing data)
    if len(cp.date_conds):
        t = _now_ts(context.now)
        failq[:, cp.date_conds] = (t < cp.date_from) | (t >= cp.date_to)
    if len(cp.place_conds) and context.placement is not None:
        failq[:, cp.place_conds] = [context.placement not in a for a in cp.place_allowed]
    if len(cp.stock_conds):
        units = _stock_vector(plan, context.stock)[cp.stock_pos]
        out = units <= 0
        if pol.suppression.missing_stock_is_out:
            out |= np.isnan(units)
        failq[:, cp.stock_conds] = out
    # [n, Cc, R]: each action's checks in rule order; the first failing one is reported.
    # (Plain indexing rather than ``take_along_axis``: numpy's helper costs more than the
    # whole gather on the online path's one row.)
    F = failq[:, cp.slot_q]
    first = F.argmax(axis=2)
    has_fail = F.any(axis=2)  # argmax points at the first True, if there is one
    lcol = np.arange(n_loc)[None, :]
    rows = np.arange(n)[:, None]
    q_first = cp.slot_q[lcol, first]
    is_nan = nanq[rows, q_first]
    code = np.where(is_nan, cp.slot_nan[lcol, first], cp.slot_fail[lcol, first])
    loc_codes = np.where(has_fail, code, 0).astype(np.int8)
    loc_check = np.where(has_fail, cp.slot_check[lcol, first], -1)

    unknown = np.fromiter((c is None or c == "" for c in cids), dtype=bool, count=n)
    if unknown.any():
        loc_codes[unknown] = Reason.UNKNOWN_CUSTOMER
        loc_check[unknown] = -1
    eligible = loc_codes == 0

    # 5: scores, only for rows with something eligible.
    p_control = np.full(n, np.nan)
    control_value = np.full(n, np.nan)
    loc_pt = np.full((n, n_loc), np.nan)
    loc_val = np.full((n, n_loc), np.nan)
    model_error = np.zeros(n, dtype=bool)
    need = np.flatnonzero(eligible.any(axis=1))
    if len(need):
        scored = _score(plan, cp, X, need, model_scores)
        if scored is None:
            model_error[need] = True
        else:
            pc, pt, val, v0 = scored
            if v0 is not None:
                control_value[need] = v0
            bad = ~(np.isfinite(pc) & np.isfinite(pt).all(axis=1) & np.isfinite(val).all(axis=1))
            model_error[need[bad]] = True
            p_control[need] = pc
            loc_pt[need] = pt
            loc_val[need] = np.where(val > 0, val, cp.value)
    if model_error.any():
        hit = eligible & model_error[:, None]
        loc_codes[hit] = Reason.MODEL_ERROR
        eligible &= ~hit
    loc_score = incremental_value(p_control, loc_pt, loc_val, cp.cost, cp.lever, control_value)
    negative = eligible & ~(loc_score > 0)
    loc_codes[negative] = Reason.NEGATIVE_VALUE
    rankable = eligible & ~negative

    # Scatter the channel's local columns into catalog order.
    codes = np.full((n, n_act), int(Reason.NOT_ON_CHANNEL), dtype=np.int8)
    codes[:, cp.action_idx] = loc_codes
    if unknown.any():
        codes[unknown] = Reason.UNKNOWN_CUSTOMER
    failed_check = np.full((n, n_act), -1, dtype=np.int32)
    failed_check[:, cp.action_idx] = loc_check
    p_treated = np.full((n, n_act), np.nan)
    p_treated[:, cp.action_idx] = loc_pt
    value = np.full((n, n_act), np.nan)
    value[:, cp.action_idx] = loc_val
    score = np.full((n, n_act), np.nan)
    score[:, cp.action_idx] = loc_score

    # 6: arbitration; ties go to catalog order (stable sort) so results are reproducible.
    masked = np.where(rankable, loc_score, -np.inf)
    kk = min(k, n_loc)
    if n_loc:
        order = np.argsort(-masked, axis=1, kind="stable")[:, :kk]
        ok = rankable[rows, order]
        ranked_loc = np.where(ok, cp.action_idx[order], -1)
    else:
        ranked_loc = np.full((n, 0), -1, dtype=np.intp)
    ranked = np.full((n, k), -1, dtype=np.intp)
    ranked[:, :kk] = ranked_loc
    greedy = ranked[:, 0].copy() if k else np.full(n, -1)

    # 7: holdout by salted hash of the customer id.
    h = holdout_hash(plan.holdout_salt, cids)
    holdout = (_unit(h) < pol.holdout.share) & ~unknown

    # 8: logged exploration among rule-eligible actions (any value) and no action.
    explorable = eligible  # rule-eligible and scored, including those with value <= 0
    active = ~holdout & ~unknown & ~model_error
    eps = np.where(active, pol.exploration.epsilon, 0.0)
    x = _mix64(h ^ exploration_seed(pol, context))
    u_explore = _unit(x)
    u_choice = _unit(_mix64(x))
    options_loc = np.where(active[:, None], explorable, False)
    n_opt = options_loc.sum(axis=1) + 1
    explored = active & (u_explore < eps)
    pick = np.minimum((u_choice * n_opt).astype(np.int64), n_opt - 1)  # n_opt-1 = no action
    chosen = np.where(holdout, _NO_ACTION, greedy)
    if explored.any():
        rank_in = np.cumsum(options_loc, axis=1) - 1
        hit = options_loc & (rank_in == pick[:, None])
        has = hit.any(axis=1)
        pick_loc = np.argmax(hit, axis=1)
        pick_act = np.where(has, cp.action_idx[pick_loc] if n_loc else -1, _NO_ACTION)
        chosen = np.where(explored, pick_act, chosen)
    explore_options = np.zeros((n, n_act), dtype=bool)
    explore_options[:, cp.action_idx] = options_loc
    propensity = eps / n_opt + np.where(chosen == greedy, 1.0 - eps, 0.0)
    propensity = np.where(holdout | unknown, 1.0, propensity)

    row_reason = np.full(n, int(Reason.NO_ELIGIBLE_ACTION), dtype=np.int8)
    any_neg = negative.any(axis=1)
    any_missing = (loc_codes == Reason.MISSING_FEATURES).any(axis=1)
    row_reason[any_missing] = Reason.MISSING_FEATURES
    row_reason[any_neg] = Reason.NEGATIVE_VALUE
    row_reason[chosen >= 0] = Reason.BEST_VALUE
    row_reason[explored] = Reason.EXPLORATION
    row_reason[model_error] = Reason.MODEL_ERROR
    row_reason[holdout] = Reason.HOLDOUT
    row_reason[unknown] = Reason.UNKNOWN_CUSTOMER

    return Decisions(
        plan=plan,
        context=context,
        customer_ids=cids,
        features=X,
        codes=codes,
        failed_check=failed_check,
        p_control=p_control,
        p_treated=p_treated,
        value=value,
        score=score,
        ranked=ranked,
        greedy=greedy,
        chosen=chosen,
        propensity=propensity,
        holdout=holdout,
        explored=explored,
        explore_options=explore_options,
        epsilon=np.where(holdout | unknown, 0.0, eps),
        row_reason=row_reason,
        control_value=control_value,
    )


def incremental_value(
    p_control: np.ndarray,
    p_treated: np.ndarray,
    value: np.ndarray,
    cost: np.ndarray | float,
    lever: np.ndarray | float = 1.0,
    control_value: np.ndarray | None = None,
) -> np.ndarray:
    """Expected incremental value of each action: ``(p_t * v_t - p_c * v_c - cost) * lever``.

    ``p_control`` and ``control_value`` are ``[n]``; the rest broadcast to ``[n, C]``. Without
    ``control_value`` (or where it is NaN) a response is worth the same with and without the
    action, which is ``(uplift * value - cost) * lever``.
    """
    pc = np.asarray(p_control, dtype=np.float64)[:, None]
    gain = (np.asarray(p_treated) - pc) * value
    if control_value is not None:
        v0 = np.asarray(control_value, dtype=np.float64)[:, None]
        gain = np.where(np.isfinite(v0), np.asarray(p_treated) * value - pc * v0, gain)
    return (gain - cost) * lever


def _score(
    plan: Plan,
    cp: ChannelPlan,
    X: np.ndarray,
    rows: np.ndarray,
    model_scores: tuple[np.ndarray, ...] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None] | None:
    """(p_control [m], p_treated [m, Cc], model value [m, Cc], control value [m] or None)
    for ``rows``; None on failure. The control value (what a response without any action is
    worth) comes from the model's optional ``predict_control_value``."""
    try:
        v0 = None
        if model_scores is not None:
            pc, pt, val = (np.asarray(a, dtype=np.float64) for a in model_scores[:3])
            pc, pt, val = pc[rows], pt[rows], val[rows]
            if len(model_scores) > 3 and model_scores[3] is not None:
                v0 = np.asarray(model_scores[3], dtype=np.float64)[rows]
        else:
            Xm = X[:, plan.model_cols]
            if len(rows) != len(X):
                Xm = Xm[rows]
            if cp.sensitive_consent_col >= 0 or len(cp.sensitive_pos):
                # Sensitive features reach the model only with the purpose's consent.
                if cp.sensitive_consent_col >= 0:
                    allowed = X[rows, cp.sensitive_consent_col] > 0.5
                else:
                    allowed = np.zeros(len(rows), dtype=bool)
                if not allowed.all():
                    Xm[np.ix_(~allowed, cp.sensitive_pos)] = np.nan
            pc, pt, val = plan.model.predict_arms(Xm)
            pc = np.asarray(pc, dtype=np.float64).reshape(-1)
            pt = np.asarray(pt, dtype=np.float64)
            val = np.asarray(val, dtype=np.float64)
            control_fn = getattr(plan.model, "predict_control_value", None)
            v0 = control_fn(Xm) if control_fn is not None else None
        n_arms = len(plan.model.arm_ids)
        if pc.shape != (len(rows),) or pt.shape != (len(rows), n_arms) or val.shape != pt.shape:
            raise ValueError(
                f"predict_arms returned shapes {pc.shape}, {pt.shape}, {val.shape} "
                f"for {len(rows)} rows and {n_arms} arms"
            )
        if v0 is not None:
            v0 = np.asarray(v0, dtype=np.float64).reshape(-1)
            if v0.shape != pc.shape:
                raise ValueError(f"predict_control_value returned shape {v0.shape}")
        return pc, pt[:, cp.arm_idx], val[:, cp.arm_idx], v0
    except Exception:  # the model must never take the decision service down
        logger.exception(
            "response model %s failed; no action for %d rows", plan.model_version, len(rows)
        )
        return None

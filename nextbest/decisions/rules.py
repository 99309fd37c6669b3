"""The compiled rule plan: catalog and policy rules as index arrays, built once at start-up.

``compile_plan`` collects the rule rows of every channel's actions in precedence order
(one builder per rule family, :mod:`nextbest.decisions.rule_families`) and turns them into the
arrays ``nextbest.decisions.engine.decide`` evaluates with numpy only: unique feature columns,
unique (column, op, threshold) conditions grouped by operator, and per action the slots
of its checks in rule order.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import numpy as np

from nextbest.core.vocabulary import NO_ACTION
from nextbest.customers.feature_schema import CatalogTerms
from nextbest.decisions.catalog import VALUE_SOURCES, Action, Catalog, ConfigError
from nextbest.decisions.policy import Policy, check_catalog
from nextbest.decisions.reasons import Reason
from nextbest.decisions.rule_families import SERVICE_KIND, SERVICE_MODE, RuleRow, channel_rows

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
EQ, NE, LT, LE, GT, GE, IN, NOT_IN, CTX = range(9)
_OPS = {"eq": EQ, "ne": NE, "lt": LT, "le": LE, "gt": GT, "ge": GE}
_OPS.update({"in": IN, "not_in": NOT_IN})


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
    #: [Cc] how each action's value is computed (VALUE_RULES index of its value_source)
    value_rule: np.ndarray
    #: [Cc] multiplier of the learned figure (margin_rate where it applies, else 1)
    learned_scale: np.ndarray
    #: [Cc] VALUE_SOURCES code of the value when the learned figure is used
    learned_code: np.ndarray
    sensitive_pos: np.ndarray  # positions of sensitive features among model columns
    sensitive_consent_col: int  # feature column of the consent unlocking them (-1: none)
    #: feature column each check reads (-1: a context check or a feature not provided)
    check_cols: list[int] = field(default_factory=list)
    #: [Cc] actions ranked before every other and kept whatever their value: the service
    #: actions of a service-mode plan (none in marketing mode).
    first: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    #: Whether any action is ``first`` (the engine skips the extra sort otherwise).
    any_first: bool = False


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
    #: Channel id -> how it reads in a reason sentence (the catalog's, read-only).
    channel_phrases: Mapping[str, str] = field(default_factory=dict)
    #: The catalog's terms (``Catalog.terms()``, built once): what the ledger's consent
    #: events set (:func:`nextbest.decisions.ledger_state.derive`).
    terms: CatalogTerms | None = None
    #: ``marketing`` (campaigns) or ``service`` (a live customer-initiated contact).
    mode: str = "marketing"
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
    mode: str = "marketing",
) -> Plan:
    """Precompute index arrays for every rule, channel and model arm.

    ``mode`` ``service`` compiles the plan of a live customer-initiated contact: service
    actions first, sales only as the policy's ``service_to_sales`` rule allows
    (:func:`nextbest.decisions.rule_families.service_mode_rules`).

    With ``strict`` (the default) every feature a rule needs must be in ``feature_names``;
    otherwise absent columns act as all-NaN (no consent; other rules report
    MISSING_FEATURES), which keeps a partial feature set usable in experiments.
    """
    names = list(feature_names)
    pos = {n: i for i, n in enumerate(names)}
    catalog.validate_features(names, source="catalog")
    check_catalog(policy, catalog.terms(), source="policy")
    missing_model = [f for f in model.feature_names if f not in pos]
    if missing_model:
        raise ConfigError(f"model {model.version}: features not provided: {missing_model}")
    _check_holdings_switch(catalog, policy)
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
        ch: _compile_channel(
            catalog, policy, ch, pos, model, arm_pos, stock_products, missing, mode
        )
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
        action_ids_with_control=np.append(ids, np.array([NO_ACTION], dtype=object)),
        model_cols=model_cols,
        stock_products=stock_products,
        channels=plans,
        holdout_salt=policy.holdout.salt.encode(),
        missing_features=sorted(missing),
        feature_pos=pos,
        # Built once here, so rendering a sentence never builds the table again.
        channel_phrases=MappingProxyType(catalog.channel_phrases),
        terms=catalog.terms(),
        mode=mode,
    )


def _check_holdings_switch(catalog: Catalog, policy: Policy) -> None:
    """A catalog's ``suppress_if_holds`` under a policy that switches holdings suppression
    off would be read and then silently ignored: refuse it, naming the actions."""
    declared = [a.id for a in catalog.actions if a.suppress_if_holds]
    if declared and not policy.suppression.never_offer_held:
        raise ConfigError(
            f"catalog: actions {', '.join(declared)}: field 'suppress_if_holds' is declared "
            "but the policy's suppression.never_offer_held is off: switch it on, or remove "
            "suppress_if_holds"
        )


@dataclass
class _Conditions:
    """Unique feature columns and unique (column, op, threshold) conditions of a channel."""

    ucols: list[int]
    umissing: list[bool]
    cond_u: list[int]
    cond_op: list[int]
    cond_thr: list[Any]
    q_of_check: np.ndarray  # condition of each row; context rows follow the feature ones

    @property
    def n_feat(self) -> int:
        return len(self.cond_u)


def _conditions(rows: list[RuleRow], pos: Mapping[str, int], missing: set[str]) -> _Conditions:
    # Many checks share one condition (consent, caps, case pause), so the hot path
    # compares each once.
    ucols: list[int] = []
    umissing: list[bool] = []
    ukey: dict[str, int] = {}
    conds: dict[tuple, int] = {}
    cond_u: list[int] = []
    cond_op: list[int] = []
    cond_thr: list[Any] = []
    q_of_check = np.zeros(len(rows), dtype=np.intp)
    for j, r in enumerate(rows):
        feat = r.feature
        if feat is None:
            continue
        if feat not in ukey:
            ukey[feat] = len(ucols)
            ucols.append(pos.get(feat, 0))
            umissing.append(feat not in pos)
            if feat not in pos:
                missing.add(feat)
        key = (feat, r.op, r.threshold)
        if key not in conds:
            conds[key] = len(cond_u)
            cond_u.append(ukey[feat])
            cond_op.append(_OPS[r.op])
            cond_thr.append(r.threshold)
        q_of_check[j] = conds[key]
    ctx_checks = [j for j, r in enumerate(rows) if r.feature is None]
    for i, j in enumerate(ctx_checks):
        q_of_check[j] = len(cond_u) + i
    return _Conditions(ucols, umissing, cond_u, cond_op, cond_thr, q_of_check)


def _op_groups(c: _Conditions) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """(op, conditions, their unique columns, thresholds) per operator, for one ufunc each."""
    groups: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
    ops = np.array(c.cond_op, dtype=np.int8)
    for op in sorted(set(c.cond_op)):
        qidx = np.flatnonzero(ops == op)
        if op in (IN, NOT_IN):
            width = max(len(c.cond_thr[q]) for q in qidx)
            thr = np.full((len(qidx), width), np.nan)
            for r, q in enumerate(qidx):
                thr[r, : len(c.cond_thr[q])] = c.cond_thr[q]
        else:
            thr = np.array([c.cond_thr[q] for q in qidx], dtype=np.float64)
        groups.append((op, qidx, np.array([c.cond_u[q] for q in qidx], dtype=np.intp), thr))
    return groups


def _slots(
    rows: list[RuleRow], n_actions: int, q_of_check: np.ndarray, pad: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(condition, row, fail reason, NaN reason) of each action's r-th check; short
    actions are padded with the never-failing condition ``pad``."""
    per_action = [0] * n_actions
    for r in rows:
        per_action[r.action] += 1
    width = max(per_action, default=1)
    slot_q = np.full((n_actions, width), pad, dtype=np.intp)
    slot_check = np.full((n_actions, width), -1, dtype=np.intp)
    slot_fail = np.zeros((n_actions, width), dtype=np.int8)
    slot_nan = np.zeros((n_actions, width), dtype=np.int8)
    filled = [0] * n_actions
    for j, r in enumerate(rows):
        local = r.action
        slot = filled[local]
        filled[local] += 1
        slot_q[local, slot] = q_of_check[j]
        slot_check[local, slot] = j
        slot_fail[local, slot] = int(r.fail_reason)
        slot_nan[local, slot] = int(r.nan_reason) if r.nan_reason is not None else 0
    return slot_q, slot_check, slot_fail, slot_nan


def _context_rows(rows: list[RuleRow], kind: str) -> np.ndarray:
    return np.array([j for j, r in enumerate(rows) if r.context == kind], dtype=np.intp)


def _conds_of(q_of_check: np.ndarray, js: np.ndarray) -> np.ndarray:
    return q_of_check[js] if len(js) else np.zeros(0, dtype=np.intp)


def _sensitive(
    policy: Policy, model: ResponseModel, channel: str, pos: Mapping[str, int]
) -> tuple[np.ndarray, int]:
    """Positions of sensitive features among the model's columns, and the feature column
    of the consent that unlocks them on ``channel`` (-1: never unlocked)."""
    sens = policy.modelling
    sens_pos = np.array(
        [i for i, f in enumerate(model.feature_names) if f in sens.sensitive_features],
        dtype=np.intp,
    )
    sens_col = -1
    if len(sens_pos) and sens.model_sensitive_features_require:
        f = f"consent_{sens.model_sensitive_features_require}_{channel}"
        sens_col = pos.get(f, -1)  # absent consent feature: never unlocked
    return sens_pos, sens_col if len(sens_pos) else -1


def _compile_channel(
    catalog: Catalog,
    policy: Policy,
    channel: str,
    pos: dict[str, int],
    model: ResponseModel,
    arm_pos: dict[str, int],
    stock_products: list[str],
    missing: set[str],
    mode: str = "marketing",
) -> ChannelPlan:
    """Build the check table of one channel, in rule-precedence order per action."""
    indexed = [(i, a) for i, a in enumerate(catalog.actions) if channel in a.channels]
    acts = [a for _, a in indexed]
    rows = channel_rows(acts, policy, channel, pos, catalog.all_channel_purposes, mode)
    first = np.array([mode == SERVICE_MODE and a.kind == SERVICE_KIND for a in acts], dtype=bool)
    checks = [
        Check(acts[r.action].id, r.fail_reason, r.feature, r.op, r.threshold, r.fields)
        for r in rows
    ]
    c = _conditions(rows, pos, missing)
    n_ctx = sum(1 for r in rows if r.feature is None)
    pad = c.n_feat + n_ctx  # a condition that never fails, pads short actions
    slot_q, slot_check, slot_fail, slot_nan = _slots(rows, len(acts), c.q_of_check, pad)
    date_checks = _context_rows(rows, "dates")
    place_checks = _context_rows(rows, "place")
    stock_checks = _context_rows(rows, "stock")
    sens_pos, sens_col = _sensitive(policy, model, channel, pos)
    return ChannelPlan(
        channel=channel,
        action_idx=np.array([i for i, _ in indexed], dtype=np.intp),
        ucols=np.array(c.ucols, dtype=np.intp),
        umissing=np.array(c.umissing, dtype=bool),
        groups=_op_groups(c),
        n_feat_cond=c.n_feat,
        n_cond=pad + 1,
        cond_u=np.array(c.cond_u, dtype=np.intp),
        slot_q=slot_q,
        slot_check=slot_check,
        slot_fail=slot_fail,
        slot_nan=slot_nan,
        date_conds=_conds_of(c.q_of_check, date_checks),
        date_from=np.array(
            [_ts(acts[rows[j].action].valid_from, -np.inf) for j in date_checks], dtype=float
        ),
        date_to=np.array(
            [_ts(acts[rows[j].action].valid_to, np.inf) for j in date_checks], dtype=float
        ),
        place_conds=_conds_of(c.q_of_check, place_checks),
        place_allowed=[frozenset(acts[rows[j].action].placements or ()) for j in place_checks],
        stock_conds=_conds_of(c.q_of_check, stock_checks),
        stock_pos=np.array(
            [stock_products.index(acts[rows[j].action].product) for j in stock_checks],
            dtype=np.intp,
        ),
        checks=checks,
        arm_idx=np.array([arm_pos[a.arm] for a in acts], dtype=np.intp),
        value=np.array([a.value for a in acts], dtype=np.float64),
        cost=np.array([a.cost_on(channel) for a in acts], dtype=np.float64),
        lever=np.array([a.lever for a in acts], dtype=np.float64),
        **_value_rules(catalog, acts),
        sensitive_pos=sens_pos,
        sensitive_consent_col=sens_col,
        check_cols=[pos.get(k.feature, -1) if k.feature else -1 for k in checks],
        first=first,
        any_first=bool(first.any()),
    )


#: Index of each value_source in ``ChannelPlan.value_rule``.
VALUE_RULES: tuple[str, ...] = ("catalog", "learned", "learned_x_margin_rate", "min")


def _value_rules(catalog: Catalog, acts: Sequence[Action]) -> dict[str, np.ndarray]:
    """value_rule, learned_scale and learned_code of a channel's actions: the learned
    figure is scaled by margin_rate under learned_x_margin_rate, and under min when given."""
    rules = [catalog.value_source_of(a) for a in acts]
    scaled = [
        r == "learned_x_margin_rate" or (r == "min" and a.margin_rate is not None)
        for r, a in zip(rules, acts, strict=True)
    ]
    return {
        "value_rule": np.array([VALUE_RULES.index(r) for r in rules], dtype=np.int8),
        "learned_scale": np.array(
            [a.margin_rate if s else 1.0 for a, s in zip(acts, scaled, strict=True)],
            dtype=np.float64,
        ),
        "learned_code": np.array(
            [VALUE_SOURCES.index("learned_x_margin_rate" if s else "learned") for s in scaled],
            dtype=np.int8,
        ),
    }


def _ts(t: datetime | None, default: float) -> float:
    return t.timestamp() if t is not None else default

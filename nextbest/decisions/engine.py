"""The decision engine: one vectorised function for the online service and batch scoring.

``nextbest.decisions.rules.compile_plan`` turns the catalog, the policy, the feature column order
and the response model into index arrays once at start-up. ``decide`` then runs every
rule for ``n`` customers x ``C`` actions with numpy only, one step function each:

1. candidates for the channel (and placement) within their dates;
2. consent gate (purpose x channel, deny by default: NaN or missing means no consent);
3. eligibility predicates;
4. suppression and caps (case pause, complaint block, holdings, stock, cooldown, caps),
   then the channel's quiet hours for the rows inside them (``DecisionContext.quiet``);
5. scores from the model: uplift, value, cost, lever -> expected incremental value;
6. arbitration: rank by expected incremental value, "no action" at 0, top-k;
7. holdout by salted hash of the customer id;
8. logged exploration with its propensity;
9. a reason code for every customer x action, rendered to sentences in the records.

Steps 1-4 are compiled rules (:mod:`nextbest.decisions.rule_families`): a *check* (one feature
column, a comparison, a reason code) or a per-call *context check* (dates, placement,
stock). All checks of one channel are evaluated at once on an ``[n, P]`` gather of the
feature matrix, and the first failing check of each action (in rule order) is reported
(``_rule_codes``). Because the online service and the batch job call this same function,
their answers for the same customer, feature snapshot and time bucket are identical by
construction.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from nextbest.decisions.draws import exploration_seed, holdout_hash, mix64, timestamp, unit_interval
from nextbest.decisions.outcome import NO_ACTION, DecisionContext, Decisions
from nextbest.decisions.reasons import Reason
from nextbest.decisions.rules import EQ, GE, GT, IN, LE, LT, NE, NOT_IN, ChannelPlan, Plan

logger = logging.getLogger(__name__)

_OP_FN = {
    EQ: np.equal,
    NE: np.not_equal,
    LT: np.less,
    LE: np.less_equal,
    GT: np.greater,
    GE: np.greater_equal,
}


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
    X, cids, cp = _inputs(features, customer_ids, plan, context)
    pol = plan.policy
    unknown = _unknown_customers(cids)
    # 1-4: candidates, consent, eligibility, suppression: every rule at once.
    loc_codes, loc_check = _rule_codes(X, cp, plan, context, unknown)
    eligible = loc_codes == 0
    # 5: scores, only for rows with something eligible; no value, no action.
    p_control, v0, loc_pt, loc_val, model_error = _model_scores(plan, cp, X, eligible, model_scores)
    loc_score, negative = _value_codes(
        p_control, v0, loc_pt, loc_val, model_error, cp, eligible, loc_codes
    )
    # 6: arbitration among the rankable actions.
    ranked, greedy = _arbitrate(eligible & ~negative, loc_score, cp, max(int(context.k), 1))
    # 7: holdout by salted hash of the customer id.
    h = holdout_hash(plan.holdout_salt, cids)
    holdout = (unit_interval(h) < pol.holdout.share) & ~unknown
    # 8: logged exploration among the rule-eligible, scored actions (any value).
    active = ~holdout & ~unknown & ~model_error
    eps, options, n_opt, explored, pick = _explore(
        pol.exploration.epsilon, h, context, plan, cp, eligible, active
    )
    chosen = np.where(holdout, NO_ACTION, greedy)
    if pick is not None:
        chosen = np.where(explored, pick, chosen)
    propensity = eps / n_opt + np.where(chosen == greedy, 1.0 - eps, 0.0)
    propensity = np.where(holdout | unknown, 1.0, propensity)
    # 9: the row's reason, and every array in catalog order.
    row_reason = _row_reasons(loc_codes, negative, chosen, explored, model_error, holdout, unknown)
    n_act = len(plan.action_ids)
    codes = _to_catalog(cp, n_act, loc_codes, int(Reason.NOT_ON_CHANNEL), np.int8)
    if unknown.any():
        codes[unknown] = Reason.UNKNOWN_CUSTOMER
    return Decisions(
        plan=plan,
        context=context,
        customer_ids=cids,
        features=X,
        codes=codes,
        failed_check=_to_catalog(cp, n_act, loc_check, -1, np.int32),
        p_control=p_control,
        p_treated=_to_catalog(cp, n_act, loc_pt, np.nan, np.float64),
        value=_to_catalog(cp, n_act, loc_val, np.nan, np.float64),
        score=_to_catalog(cp, n_act, loc_score, np.nan, np.float64),
        ranked=ranked,
        greedy=greedy,
        chosen=chosen,
        propensity=propensity,
        holdout=holdout,
        explored=explored,
        explore_options=_to_catalog(cp, n_act, options, False, bool),
        epsilon=np.where(holdout | unknown, 0.0, eps),
        row_reason=row_reason,
        control_value=v0,
    )


def _inputs(
    features: np.ndarray,
    customer_ids: Sequence[str | None] | np.ndarray,
    plan: Plan,
    context: DecisionContext,
) -> tuple[np.ndarray, np.ndarray, ChannelPlan]:
    """The feature matrix, the customer ids and the channel plan, checked."""
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
    return X, cids, cp


def _rule_codes(
    X: np.ndarray,
    cp: ChannelPlan,
    plan: Plan,
    context: DecisionContext,
    unknown: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Steps 1-4 as one boolean ``[n, Q]`` matrix of conditions over unique columns:
    ([n, Cc] reason code, [n, Cc] failed check) of each action, UNKNOWN_CUSTOMER for
    rows without a customer id."""
    failq, nanq = _feature_failures(X, cp)
    _context_failures(failq, cp, plan, context)
    loc_codes, loc_check = _first_failures(failq, nanq, cp)
    if context.quiet is not None and context.quiet.any():
        # The channel is closed for these customers: what the rules allowed waits.
        quiet = np.asarray(context.quiet, dtype=bool)[:, None] & (loc_codes == 0)
        loc_codes[quiet] = Reason.QUIET_HOURS
    if unknown.any():
        loc_codes[unknown] = Reason.UNKNOWN_CUSTOMER
        loc_check[unknown] = -1
    return loc_codes, loc_check


def _feature_failures(X: np.ndarray, cp: ChannelPlan) -> tuple[np.ndarray, np.ndarray]:
    """([n, Q] failing, [n, Q] NaN) of every condition; context conditions start passing.

    Consent, eligibility and the feature-based suppressions (case pause, complaint block,
    holdings, cooldown, caps): one ufunc per operator over the unique columns.
    """
    n = X.shape[0]
    Xu = X[:, cp.ucols]
    if cp.umissing.any():
        Xu[:, cp.umissing] = np.nan
    failq = np.zeros((n, cp.n_cond), dtype=bool)
    for op, qidx, uidx, thr in cp.groups:
        sub = Xu[:, uidx]
        if op == IN or op == NOT_IN:
            hit = (sub[:, :, None] == thr[None, :, :]).any(axis=2)
            failq[:, qidx] = hit if op == IN else ~hit
        else:
            failq[:, qidx] = _OP_FN[op](sub, thr)
    nanq = np.zeros((n, cp.n_cond), dtype=bool)
    nanq[:, : cp.n_feat_cond] = np.isnan(Xu)[:, cp.cond_u]
    failq |= nanq  # NaN fails every check (consent: no consent; others: missing data)
    return failq, nanq


def _context_failures(
    failq: np.ndarray, cp: ChannelPlan, plan: Plan, context: DecisionContext
) -> None:
    """Fill the context conditions of ``failq`` in place: dates, placement, stock."""
    if len(cp.date_conds):
        t = timestamp(context.now)
        failq[:, cp.date_conds] = (t < cp.date_from) | (t >= cp.date_to)
    if len(cp.place_conds) and context.placement is not None:
        failq[:, cp.place_conds] = [context.placement not in a for a in cp.place_allowed]
    if len(cp.stock_conds):
        units = _stock_vector(plan, context.stock)[cp.stock_pos]
        out = units <= 0
        if plan.policy.suppression.missing_stock_is_out:
            out |= np.isnan(units)
        failq[:, cp.stock_conds] = out


def _stock_vector(plan: Plan, stock: Mapping[str, float] | np.ndarray | None) -> np.ndarray:
    if isinstance(stock, np.ndarray):
        return stock.astype(np.float64, copy=False)
    if stock is None:
        return np.full(len(plan.stock_products), np.nan)
    return np.array([stock.get(p, np.nan) for p in plan.stock_products], dtype=np.float64)


def _first_failures(
    failq: np.ndarray, nanq: np.ndarray, cp: ChannelPlan
) -> tuple[np.ndarray, np.ndarray]:
    """([n, Cc] reason code, [n, Cc] check index) of each action's first failing check
    in rule order (0 and -1 where none fails)."""
    n_loc = len(cp.action_idx)
    n = failq.shape[0]
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
    return loc_codes, loc_check


def _unknown_customers(cids: np.ndarray) -> np.ndarray:
    """[n] bool: rows without a customer id."""
    return np.fromiter((c is None or c == "" for c in cids), dtype=bool, count=len(cids))


def _model_scores(
    plan: Plan,
    cp: ChannelPlan,
    X: np.ndarray,
    eligible: np.ndarray,
    model_scores: tuple[np.ndarray, ...] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Model scores of the rows with at least one eligible action, in the channel's local
    action order (NaN: not scored): p_control [n], value of a response without any action
    [n], p_treated [n, Cc], value of a response [n, Cc] (the catalog's where the model has
    none), model error [n] bool. (A plain tuple: building a NamedTuple is a measurable
    share of a one-row call.)"""
    n, n_loc = eligible.shape
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
    return p_control, control_value, loc_pt, loc_val, model_error


def _value_codes(
    p_control: np.ndarray,
    v0: np.ndarray,
    p_treated: np.ndarray,
    value: np.ndarray,
    model_error: np.ndarray,
    cp: ChannelPlan,
    eligible: np.ndarray,
    loc_codes: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """([n, Cc] expected incremental value, [n, Cc] eligible but not worth it).

    Marks MODEL_ERROR and NEGATIVE_VALUE in ``loc_codes`` and drops the actions of rows
    the model failed on from ``eligible``, both in place.
    """
    if model_error.any():
        hit = eligible & model_error[:, None]
        loc_codes[hit] = Reason.MODEL_ERROR
        eligible &= ~hit
    loc_score = incremental_value(p_control, p_treated, value, cp.cost, cp.lever, v0)
    negative = eligible & ~(loc_score > 0)
    loc_codes[negative] = Reason.NEGATIVE_VALUE
    return loc_score, negative


def _arbitrate(
    rankable: np.ndarray, loc_score: np.ndarray, cp: ChannelPlan, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """([n, k] ranked catalog columns, -1 past the last; [n] greedy choice, -1 = none).

    Ties go to catalog order (stable sort) so results are reproducible.
    """
    n, n_loc = rankable.shape
    masked = np.where(rankable, loc_score, -np.inf)
    kk = min(k, n_loc)
    if n_loc:
        order = np.argsort(-masked, axis=1, kind="stable")[:, :kk]
        ok = rankable[np.arange(n)[:, None], order]
        ranked_loc = np.where(ok, cp.action_idx[order], -1)
    else:
        ranked_loc = np.full((n, 0), -1, dtype=np.intp)
    ranked = np.full((n, k), -1, dtype=np.intp)
    ranked[:, :kk] = ranked_loc
    greedy = ranked[:, 0].copy() if k else np.full(n, -1)
    return ranked, greedy


def _explore(
    epsilon: float,
    h: np.ndarray,
    context: DecisionContext,
    plan: Plan,
    cp: ChannelPlan,
    explorable: np.ndarray,
    active: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Logged exploration: with probability epsilon, a uniform pick among the explorable
    actions and no action, drawn from the customer's hash and the decision's seed.

    Returns the exploration probability [n] (0 where inactive), the options [n, Cc] bool,
    their number with no action [n], whether the row explored [n] bool, and the catalog
    column drawn [n] (-1: no action; meaningful where explored), None if no row explored.
    """
    n_loc = len(cp.action_idx)
    eps = np.where(active, epsilon, 0.0)
    x = mix64(h ^ exploration_seed(plan.policy, context))
    u_explore = unit_interval(x)
    u_choice = unit_interval(mix64(x))
    options_loc = np.where(active[:, None], explorable, False)
    n_opt = options_loc.sum(axis=1) + 1
    explored = active & (u_explore < eps)
    pick = np.minimum((u_choice * n_opt).astype(np.int64), n_opt - 1)  # n_opt-1 = no action
    pick_act = None
    if explored.any():
        rank_in = np.cumsum(options_loc, axis=1) - 1
        hit = options_loc & (rank_in == pick[:, None])
        has = hit.any(axis=1)
        pick_loc = np.argmax(hit, axis=1)
        pick_act = np.where(has, cp.action_idx[pick_loc] if n_loc else -1, NO_ACTION)
    return eps, options_loc, n_opt, explored, pick_act


def _row_reasons(
    loc_codes: np.ndarray,
    negative: np.ndarray,
    chosen: np.ndarray,
    explored: np.ndarray,
    model_error: np.ndarray,
    holdout: np.ndarray,
    unknown: np.ndarray,
) -> np.ndarray:
    """[n] reason explaining each row's chosen action; later rules take precedence."""
    n = len(chosen)
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
    return row_reason


def _to_catalog(
    cp: ChannelPlan, n_act: int, local: np.ndarray, fill: object, dtype: type
) -> np.ndarray:
    """Scatter the channel's local columns into catalog order, ``fill`` elsewhere."""
    shape = (local.shape[0], n_act)
    out = np.zeros(shape, dtype=dtype) if fill is False else np.full(shape, fill, dtype=dtype)
    out[:, cp.action_idx] = local
    return out


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

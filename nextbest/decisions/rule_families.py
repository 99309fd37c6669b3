"""Rule families: each turns one action on one channel into named rule rows.

One builder per family (placement, dates, consent, eligibility, case pause, complaint
block, holdings, stock, cooldown, contact caps) in precedence order: the first failing
check of an action is the one reported. A row is either a *check* (one feature column, a
comparison, a reason code) or a per-call *context check* (dates, placement, stock);
:mod:`nextbest.decisions.rules` compiles the rows into the arrays ``decide`` evaluates.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from nextbest.decisions.catalog import Action
from nextbest.decisions.policy import Policy
from nextbest.decisions.reasons import Reason

# An eligibility predicate says when an action is allowed; its check fails on the inverse.
_INVERSE = {"eq": "ne", "ne": "eq", "lt": "ge", "le": "gt", "gt": "le", "ge": "lt"}
_INVERSE.update({"in": "not_in", "not_in": "in"})


class RuleRow(NamedTuple):
    """One rule of one action on one channel, before compilation into index arrays."""

    action: int  # local index of the action among the channel's actions
    feature: str | None  # feature column the check reads; None for a context check
    op: str  # the check fails when ``feature OP threshold``; "ctx" for context checks
    threshold: Any
    fail_reason: Reason
    nan_reason: Reason | None  # reason when the feature is NaN (None: context check)
    context: str | None  # "place", "dates" or "stock" for context checks
    fields: dict[str, Any]  # sentence fields


@dataclass(frozen=True)
class ActionOnChannel:
    """What every rule builder needs about one action delivered on one channel."""

    local: int
    action: Action
    channel: str
    base: dict[str, Any]  # sentence fields common to all its rules
    #: The catalog's purposes consented to once for all channels.
    all_channel_purposes: tuple[str, ...] = ()
    #: ``marketing`` (campaigns, the default) or ``service`` (a live customer-initiated
    #: contact: :func:`service_mode_rules`).
    mode: str = "marketing"

    @property
    def service_to_sales(self) -> bool:
        """Whether this action is a sale the policy's service_to_sales rule allows in
        service mode (its consent and caps are the rule's)."""
        return self.mode == SERVICE_MODE and self.action.kind in self.s2s_kinds

    #: The kinds the policy's service_to_sales rule allows (empty: no rule).
    s2s_kinds: tuple[str, ...] = ()


#: The mode of a live, customer-initiated contact (``/decide`` ``mode: service``).
SERVICE_MODE = "service"
#: The kind of the actions that serve the customer (ranked first in service mode).
SERVICE_KIND = "service"


def placement_rules(t: ActionOnChannel, policy: Policy, pos: Mapping[str, int]) -> list[RuleRow]:
    """Placement: an action restricted to some placements fails elsewhere (context check)."""
    if t.action.placements is None:
        return []
    return [RuleRow(t.local, None, "ctx", None, Reason.NOT_IN_PLACEMENT, None, "place", t.base)]


def date_rules(t: ActionOnChannel, policy: Policy, pos: Mapping[str, int]) -> list[RuleRow]:
    """Validity dates (context check)."""
    if not (t.action.valid_from or t.action.valid_to):
        return []
    return [RuleRow(t.local, None, "ctx", None, Reason.OUT_OF_DATES, None, "dates", t.base)]


def consent_rules(t: ActionOnChannel, policy: Policy, pos: Mapping[str, int]) -> list[RuleRow]:
    """Consent for the action's purpose on the channel (or the policy's override). A
    purpose the catalog consents to once for all channels reads the same feature (its
    column holds the latest record on any channel) and says so in its sentence."""
    c_purpose, c_channel = policy.consent_for(t.action.id, t.action.purpose, t.channel)
    fields = {**t.base, "purpose": c_purpose, "channel": c_channel}
    if t.service_to_sales and policy.service_to_sales is not None:
        # In service mode the rule's own purpose, on the channel of the interaction.
        c_purpose, c_channel = policy.service_to_sales.consent_purpose, t.channel
        fields.update(purpose=c_purpose, channel=c_channel, rule="service_to_sales")
    elif c_purpose in t.all_channel_purposes:
        fields["rule"] = "consent_scope.all_channels"
    return [
        RuleRow(
            t.local,
            f"consent_{c_purpose}_{c_channel}",
            "lt",
            0.5,
            Reason.NO_CONSENT,
            Reason.NO_CONSENT,
            None,
            fields,
        )
    ]


def service_mode_rules(t: ActionOnChannel, policy: Policy, pos: Mapping[str, int]) -> list[RuleRow]:
    """An action the catalog keeps out of this mode (``modes``), and in service mode one
    that is neither a service action nor a sale the policy's service_to_sales rule allows,
    is not offered (a check that always fails: any value of the case feature is at least
    minus infinity)."""
    fields = {**t.base, "feature": policy.case_pause.feature}
    if t.mode not in t.action.modes:
        fields["rule"] = "modes"
    elif t.mode != SERVICE_MODE or t.action.kind == SERVICE_KIND or t.service_to_sales:
        return []
    reason = Reason.NOT_IN_SERVICE_MODE
    return [RuleRow(t.local, fields["feature"], "ge", -math.inf, reason, reason, None, fields)]


def eligibility_rules(t: ActionOnChannel, policy: Policy, pos: Mapping[str, int]) -> list[RuleRow]:
    """The catalog's eligibility predicates, each checked on its inverse."""
    rows = []
    for p in t.action.eligibility:
        thr = tuple(p.value) if isinstance(p.value, list) else p.value
        rows.append(
            RuleRow(
                t.local,
                p.feature,
                _INVERSE[p.op],
                thr,
                Reason.NOT_ELIGIBLE,
                Reason.MISSING_FEATURES,
                None,
                {**t.base, "feature": p.feature, "op": p.op, "threshold": p.value},
            )
        )
    return rows


def case_pause_rules(t: ActionOnChannel, policy: Policy, pos: Mapping[str, int]) -> list[RuleRow]:
    """Pause the policy's paused actions, and actions of its paused purposes, while a
    service case is open (one check: the condition is the same; the action's own rule
    names it)."""
    cp = policy.case_pause
    if not cp.enabled:
        return []
    if t.action.id in cp.actions:
        fields = {**t.base, "feature": cp.feature, "rule": "case_pause.actions"}
    elif t.action.purpose in cp.purposes:
        fields = {**t.base, "feature": cp.feature}
    else:
        return []
    return [
        RuleRow(
            t.local, cp.feature, "gt", 0.0, Reason.CASE_OPEN, Reason.MISSING_FEATURES, None, fields
        )
    ]


def complaint_rules(t: ActionOnChannel, policy: Policy, pos: Mapping[str, int]) -> list[RuleRow]:
    """No action the policy names within its own days of a complaint, and no actions of
    the blocked kinds within the policy's days (both apply; the action's own first)."""
    cb = policy.complaint_block
    if not cb.enabled:
        return []
    rows = []
    own = cb.actions.get(t.action.id)
    if own is not None:
        fields = {**t.base, "feature": cb.feature, "threshold": own}
        fields["rule"] = "complaint_block.actions"
        rows.append(
            RuleRow(
                t.local,
                cb.feature,
                "lt",
                own,
                Reason.RECENT_COMPLAINT,
                Reason.MISSING_FEATURES,
                None,
                fields,
            )
        )
    if t.action.kind in cb.kinds:
        rows.append(
            RuleRow(
                t.local,
                cb.feature,
                "lt",
                cb.days,
                Reason.RECENT_COMPLAINT,
                Reason.MISSING_FEATURES,
                None,
                {**t.base, "feature": cb.feature, "threshold": cb.days},
            )
        )
    return rows


def holding_rules(t: ActionOnChannel, policy: Policy, pos: Mapping[str, int]) -> list[RuleRow]:
    """Never offer an action to a holder of the products that suppress it: its own
    product by default, or the catalog's ``suppress_if_holds`` (whose sentence names it)."""
    if not policy.suppression.never_offer_held:
        return []
    declared = t.action.suppress_if_holds is not None
    rows = []
    for product in t.action.held_products:
        f = f"holds_{product}"
        fields = {**t.base, "feature": f}
        if declared:
            fields.update(held=product, rule="suppress_if_holds")
        rows.append(
            RuleRow(
                t.local, f, "gt", 0.5, Reason.ALREADY_HOLDS, Reason.MISSING_FEATURES, None, fields
            )
        )
    return rows


def stock_rules(t: ActionOnChannel, policy: Policy, pos: Mapping[str, int]) -> list[RuleRow]:
    """Stock of the action's product (context check)."""
    if not (policy.suppression.respect_stock and t.action.needs_stock):
        return []
    return [RuleRow(t.local, None, "ctx", None, Reason.OUT_OF_STOCK, None, "stock", t.base)]


def cooldown_rules(t: ActionOnChannel, policy: Policy, pos: Mapping[str, int]) -> list[RuleRow]:
    """Days since the action (or, without its own feature, its model arm) was last shown."""
    a = t.action
    if not (policy.suppression.cooldown and a.cooldown_days > 0):
        return []
    f = f"days_since_shown_{a.id}"
    if f not in pos and a.arm != a.id:
        f = f"days_since_shown_{a.arm}"
    return [
        RuleRow(
            t.local,
            f,
            "lt",
            a.cooldown_days,
            Reason.COOLDOWN,
            Reason.MISSING_FEATURES,
            None,
            {**t.base, "feature": f, "threshold": a.cooldown_days},
        )
    ]


def cap_rules(t: ActionOnChannel, policy: Policy, pos: Mapping[str, int]) -> list[RuleRow]:
    """Contact caps of the channel and of all channels together."""
    caps = policy.caps
    if t.mode == SERVICE_MODE:
        # The customer called: service actions are not contacts to cap; allowed sales
        # follow the service_to_sales rule's own caps.
        rule = policy.service_to_sales
        caps = rule.caps if t.service_to_sales and rule is not None else []
    rows = []
    for cap in caps:
        if cap.channel not in (t.channel, "all"):
            continue
        f = cap.feature()
        reason = Reason.TOTAL_CAP if cap.channel == "all" else Reason.CHANNEL_CAP
        rows.append(
            RuleRow(
                t.local,
                f,
                "ge",
                float(cap.max_contacts),
                reason,
                Reason.MISSING_FEATURES,
                None,
                {**t.base, "feature": f, "threshold": cap.max_contacts, "days": cap.period_days},
            )
        )
    return rows


RuleBuilder = Callable[[ActionOnChannel, Policy, Mapping[str, int]], list[RuleRow]]
#: Rule families in precedence order: the first failing check of an action is reported.
RULE_FAMILIES: tuple[RuleBuilder, ...] = (
    placement_rules,
    date_rules,
    service_mode_rules,
    consent_rules,
    eligibility_rules,
    case_pause_rules,
    complaint_rules,
    holding_rules,
    stock_rules,
    cooldown_rules,
    cap_rules,
)


def action_rules(t: ActionOnChannel, policy: Policy, pos: Mapping[str, int]) -> list[RuleRow]:
    """Every rule of one action on one channel, in precedence order."""
    rows = [row for build in RULE_FAMILIES for row in build(t, policy, pos)]
    # Channel caps before the total cap, whatever their order in the file (stable sort).
    rows.sort(key=lambda r: r.fail_reason == Reason.TOTAL_CAP)
    return rows


def channel_rows(
    actions: Sequence[Action],
    policy: Policy,
    channel: str,
    pos: Mapping[str, int],
    all_channel_purposes: tuple[str, ...] = (),
    mode: str = "marketing",
) -> list[RuleRow]:
    """Every rule of the channel's actions, grouped by action, in precedence order;
    ``all_channel_purposes``: the catalog's purposes consented to once for all channels;
    ``mode``: ``marketing`` or ``service`` (:func:`service_mode_rules`)."""
    rows: list[RuleRow] = []
    s2s = policy.service_to_sales
    s2s_kinds = tuple(s2s.kinds) if s2s is not None else ()
    for local, a in enumerate(actions):
        base = {
            "action": a.name,
            "action_id": a.id,
            "channel": channel,
            "purpose": a.purpose,
            "kind": a.kind.replace("_", "-"),
            "product": a.product or a.category,
        }
        t = ActionOnChannel(local, a, channel, base, all_channel_purposes, mode, s2s_kinds)
        rows.extend(action_rules(t, policy, pos))
    return rows

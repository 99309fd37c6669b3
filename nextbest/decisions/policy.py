"""The contact policy: consent, caps, event pauses, holdout and exploration, from YAML.

Rules are declared as data over the contact-history and service features named in
docs/contracts.md; the engine compiles them into index arrays once at start-up. The
channels and purposes a policy names must be the catalog's (:func:`check_catalog`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from nextbest.core.action_ids import action_id, normalise_action_id
from nextbest.customers.feature_schema import CatalogTerms
from nextbest.decisions.catalog import (
    ALL_CHANNELS,
    ActionId,
    ActionKind,
    Channel,
    ConfigError,
    Purpose,
    Version,
    describe_validation_error,
    read_yaml,
)
from nextbest.decisions.send_windows import SendWindows


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _action_keys(v: Any) -> Any:
    """A mapping keyed by action ids, its keys normalised (nextbest.core.action_ids); two keys
    that name one action are an error naming both."""
    if not isinstance(v, dict):
        return v
    out: dict[str, Any] = {}
    written: dict[str, str] = {}
    for key, value in v.items():
        norm = action_id(key)
        if norm in out:
            raise ValueError(f"'{written[norm]}' and '{key}' name the same action ('{norm}')")
        out[norm], written[norm] = value, key
    return out


class ConsentOverride(_Strict):
    """The consent one action needs instead of its own purpose on its delivery channel."""

    purpose: Purpose | None = Field(
        None, description="Purpose whose consent it needs; none: its own.", examples=["service"]
    )
    channel: Channel | None = Field(
        None,
        description="Channel whose consent it needs; none: the channel it is delivered on.",
        examples=["email"],
    )


class ConsentRules(_Strict):
    """Which consent each action needs (deny by default: no record means no consent)."""

    overrides: dict[ActionId, ConsentOverride] = Field(
        default_factory=dict,
        description="Action id -> the consent it needs instead of consent to its own "
        "purpose on the channel it is delivered on.",
        examples=[{"email_service_tips": {"purpose": "service"}}],
    )

    _keys = field_validator("overrides", mode="before")(_action_keys)


class ContactCap(_Strict):
    """At most ``max_contacts`` contacts on ``channel`` (or ``all``) per ``period_days``."""

    channel: Channel = Field(
        description=f"A catalog channel, or '{ALL_CHANNELS}' (every channel together, "
        "7 days only).",
        examples=["email"],
    )
    max_contacts: int = Field(ge=0, description="Contacts allowed within the period.", examples=[2])
    period_days: Literal[7, 30] = Field(
        7, description="Length of the period, in days (contacts_<channel>_7d or _30d)."
    )

    def feature(self) -> str:
        """The contact-history feature the cap reads."""
        if self.channel == ALL_CHANNELS:
            return f"contacts_total_{self.period_days}d"
        return f"contacts_{self.channel}_{self.period_days}d"


class CasePause(_Strict):
    """While a service case is open (``open_cases > 0``) actions of these purposes, and
    these actions, pause."""

    enabled: bool = Field(True, description="Off: no action pauses for an open case.")
    purposes: list[Purpose] = Field(
        default_factory=lambda: ["marketing"],
        description="Actions of these purposes pause while a case is open.",
        examples=[["marketing", "advice"]],
    )
    actions: list[ActionId] = Field(
        default_factory=list,
        description="These actions pause while a case is open too, whatever their "
        "purpose (beside purposes).",
        examples=[["MORTGAGE_REMORT"]],
    )
    feature: str = Field(
        "open_cases", description="The feature counting open cases.", examples=["open_cases"]
    )

    @field_validator("actions")
    @classmethod
    def _unique_actions(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("actions must not repeat (ids are compared normalised)")
        return v


class ComplaintBlock(_Strict):
    """No actions of these kinds within ``days`` of a complaint, and none of these
    actions within their own days."""

    enabled: bool = Field(True, description="Off: complaints block nothing.")
    days: float = Field(
        30.0, gt=0, description="Days after a complaint the kinds stay blocked.", examples=[60]
    )
    kinds: list[ActionKind] = Field(
        default_factory=lambda: ["upsell", "cross_sell"],
        description="Action kinds blocked within days of a complaint.",
    )
    actions: dict[ActionId, Annotated[float, Field(gt=0, allow_inf_nan=False)]] = Field(
        default_factory=dict,
        description="Action id -> days after a complaint that action stays blocked, beside "
        "(never instead of) the block of its kind.",
        examples=[{"MORTGAGE_REMORT": 90}],
    )
    feature: str = Field(
        "days_since_complaint",
        description="The feature holding the days since the last complaint.",
        examples=["days_since_complaint"],
    )

    _keys = field_validator("actions", mode="before")(_action_keys)


class Suppression(_Strict):
    """Holdings, stock and cooldown switches."""

    never_offer_held: bool = Field(
        True,
        description="Holdings suppress actions: its own product's (holds_<product>) or the "
        "products of the action's suppress_if_holds. Off: no holding suppresses anything.",
    )
    respect_stock: bool = Field(
        True, description="An action that needs stock is offered only while in stock."
    )
    missing_stock_is_out: bool = Field(
        True, description="An action that needs stock and has no stock figure is not offered."
    )
    context_stock: bool = Field(
        False,
        description="A /decide request's context.stock (product id -> units) overrides the "
        "stock of the table and the stock_changed events for that decision.",
    )
    cooldown: bool = Field(
        True, description="Actions rest for their cooldown_days after being shown."
    )


class Holdout(_Strict):
    """A fixed, salted-hash share of customers that receives no treatment."""

    share: float = Field(
        0.05, ge=0, lt=1, description="Share of customers held out.", examples=[0.05]
    )
    salt: str = Field(
        min_length=1,
        description="Salt of the hash that picks them (a new salt, new holdout).",
        examples=["bank-holdout-2026"],
    )


class Exploration(_Strict):
    """Logged randomisation: with probability ``epsilon`` pick uniformly among the options."""

    epsilon: float = Field(
        0.05, ge=0, le=1, description="Probability of a random pick.", examples=[0.05]
    )
    salt: str = Field(
        "explore", min_length=1, description="Salt of the draw.", examples=["bank-explore-2026"]
    )
    bucket_seconds: int = Field(
        86_400,
        gt=0,
        description="Decisions in the same time bucket draw the same number.",
        examples=[86400],
    )


class Modelling(_Strict):
    """Sensitive features reach the model only for customers who gave the required consent."""

    sensitive_features: list[str] = Field(
        default_factory=lambda: ["age"],
        description="Features the model sees only with consent (NaN otherwise).",
        examples=[["age"]],
    )
    model_sensitive_features_require: Purpose | None = Field(
        "profiling",
        description="Purpose whose consent on the decision's channel unlocks them (the "
        "catalog's consent_scope says whether that consent is per channel or for all); "
        "none: never unlocked.",
        examples=["profiling"],
    )


#: The largest integer a JSON number carries exactly (IEEE 754 double).
MAX_SAFE_INTEGER = 2**53


class StringKey(_Strict):
    """A text value of the request context: bounded, optionally one of ``enum``."""

    type: Literal["string"] = Field(description="Text.")
    max_length: int = Field(64, ge=1, le=1024, description="Longest value accepted.")
    enum: list[str] | None = Field(
        None, min_length=1, description="The only values accepted.", examples=[["home", "app"]]
    )
    pattern: str | None = Field(
        None,
        description="A regular expression the value must match.",
        examples=["^[A-Za-z0-9_.:/-]+$"],
    )
    description: str = Field(
        "",
        description="What the key means (shown in the API schema).",
        examples=["The page or screen the customer is on."],
    )


class NumberKey(_Strict):
    """A finite number of the request context, within ``[minimum, maximum]``."""

    type: Literal["number"] = Field(description="A finite number.")
    minimum: float = Field(-1e9, allow_inf_nan=False, description="Smallest value accepted.")
    maximum: float = Field(1e9, allow_inf_nan=False, description="Largest value accepted.")
    description: str = Field(
        "",
        description="What the key means (shown in the API schema).",
        examples=["The page or screen the customer is on."],
    )


class IntegerKey(_Strict):
    """A whole number of the request context, within ``[minimum, maximum]`` (at most 2^53)."""

    type: Literal["integer"] = Field(description="A whole number.")
    minimum: int = Field(
        -MAX_SAFE_INTEGER,
        ge=-MAX_SAFE_INTEGER,
        le=MAX_SAFE_INTEGER,
        description="Smallest value accepted.",
    )
    maximum: int = Field(
        MAX_SAFE_INTEGER,
        ge=-MAX_SAFE_INTEGER,
        le=MAX_SAFE_INTEGER,
        description="Largest value accepted.",
    )
    description: str = Field(
        "",
        description="What the key means (shown in the API schema).",
        examples=["The page or screen the customer is on."],
    )


class BooleanKey(_Strict):
    """A true/false value of the request context."""

    type: Literal["boolean"] = Field(description="true or false.")
    description: str = Field(
        "",
        description="What the key means (shown in the API schema).",
        examples=["The page or screen the customer is on."],
    )


class StockKey(_Strict):
    """Units in stock per product (catalog product id -> finite number >= 0) that override
    the stock for this decision; needs ``suppression.context_stock``."""

    type: Literal["stock"] = Field(description="Product id -> units in stock.")
    max_products: int = Field(
        64, ge=1, le=10_000, description="Most products one request may name."
    )
    description: str = Field(
        "",
        description="What the key means (shown in the API schema).",
        examples=["The page or screen the customer is on."],
    )


#: One allowed key of the request context; a new kind of value is one more class here and
#: one builder in :mod:`nextbest.decisions.context_schema`.
ContextKey = Annotated[
    StringKey | NumberKey | IntegerKey | BooleanKey | StockKey, Field(discriminator="type")
]


class Policy(_Strict):
    """The whole contact policy."""

    version: Version = Field(
        description="Version label, recorded with every decision.", examples=["2026.1"]
    )
    consent: ConsentRules = Field(
        default_factory=ConsentRules,
        description="Which consent each action needs (no record means no consent).",
    )
    caps: list[ContactCap] = Field(
        default_factory=list,
        description="Contact caps per channel and over all channels.",
        examples=[[{"channel": "email", "max_contacts": 2, "period_days": 7}]],
    )
    case_pause: CasePause = Field(
        default_factory=CasePause, description="What pauses while a service case is open."
    )
    complaint_block: ComplaintBlock = Field(
        default_factory=ComplaintBlock, description="What a recent complaint blocks."
    )
    suppression: Suppression = Field(
        default_factory=Suppression, description="Holdings, stock and cooldown switches."
    )
    holdout: Holdout = Field(description="The measurement holdout group.")
    exploration: Exploration = Field(
        default_factory=Exploration, description="Logged random exploration."
    )
    modelling: Modelling = Field(
        default_factory=Modelling, description="Which features the model sees only with consent."
    )
    send_windows: SendWindows = Field(
        default_factory=SendWindows,
        description="Quiet hours per channel, in the customer's time zone: a decision "
        "inside them excludes the channel with its reason.",
    )
    context: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")], ContextKey] = Field(
        default_factory=dict,
        description="The keys a /decide request's context may carry (anything else is "
        "refused), each with its type and limits.",
        examples=[{"placement": {"type": "string", "max_length": 64}}],
    )

    @model_validator(mode="after")
    def _stock_key_needs_the_switch(self) -> Policy:
        # A declared stock key with the override switched off would be accepted and then
        # silently ignored. (The switch on without the key: the caller's stock is refused
        # at the door as a key the policy does not allow.)
        declared = [k for k, spec in self.context.items() if isinstance(spec, StockKey)]
        if declared and not self.suppression.context_stock:
            raise ValueError(
                f"context.{declared[0]} is of type stock but suppression.context_stock is "
                "off: switch it on, or remove the key"
            )
        return self

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int | float) else v

    def consent_for(self, action: str, purpose: str, channel: str) -> tuple[str, str]:
        """(purpose, channel) of the consent an action delivered on ``channel`` needs."""
        o = self.consent.overrides.get(normalise_action_id(action))
        if o is None:
            return purpose, channel
        return o.purpose or purpose, o.channel or channel

    def consent_feature(self, action: str, purpose: str, channel: str) -> str:
        """Name of the consent feature an action delivered on ``channel`` needs."""
        p, c = self.consent_for(action, purpose, channel)
        return f"consent_{p}_{c}"


def load_policy(path: str | Path, catalog: CatalogTerms | None = None) -> Policy:
    """Read and validate the policy YAML; errors name the file, the entry and the field.

    When the ``catalog``'s terms are given, the policy is checked against them too
    (:func:`check_catalog`).
    """
    p = Path(path)
    raw = read_yaml(p)
    try:
        policy = Policy.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(describe_validation_error(e, raw, p, "caps")) from e
    seen: dict[tuple[str, int], int] = {}
    for i, cap in enumerate(policy.caps):
        key = (cap.channel, cap.period_days)
        if key in seen:
            raise ConfigError(
                f"{p}: caps[{i}]: field 'channel': duplicate cap for {cap.channel} over "
                f"{cap.period_days} days (also caps[{seen[key]}])"
            )
        seen[key] = i
        if cap.channel == ALL_CHANNELS and cap.period_days != 7:
            raise ConfigError(
                f"{p}: caps[{i}]: field 'period_days': only a 7-day total cap exists "
                "(feature contacts_total_7d)"
            )
    for key, spec in policy.context.items():
        low, high = getattr(spec, "minimum", None), getattr(spec, "maximum", None)
        if low is not None and high is not None and low > high:
            raise ConfigError(f"{p}: context.{key}: field 'minimum': above maximum ({high})")
    if catalog is not None:
        check_catalog(policy, catalog, str(p))
    return policy


def check_catalog(policy: Policy, catalog: CatalogTerms, source: str = "policy") -> None:
    """Fail if the policy names an action, a channel or a purpose the catalog does not
    declare; the message lists every such entry and field (action ids normalised)."""
    named = {
        "consent.overrides": list(policy.consent.overrides),
        "case_pause.actions": policy.case_pause.actions,
        "complaint_block.actions": list(policy.complaint_block.actions),
    }
    lines = []
    for entry, ids in named.items():
        unknown = sorted(set(ids) - set(catalog.action_ids))
        if unknown:
            lines.append(
                f"{source}: {entry}: field '{unknown[0]}': not a catalog action "
                f"(unknown: {', '.join(unknown)}; the catalog has {', '.join(catalog.action_ids)})"
            )
    if lines:
        raise ConfigError("\n".join(lines))
    problems = [
        (f"caps[{i}]", "channel", cap.channel, "channels")
        for i, cap in enumerate(policy.caps)
        if cap.channel != ALL_CHANNELS and cap.channel not in catalog.channels
    ]
    for act, o in policy.consent.overrides.items():
        if o.purpose is not None and o.purpose not in catalog.purposes:
            problems.append((f"consent.overrides.{act}", "purpose", o.purpose, "purposes"))
        if o.channel is not None and o.channel not in catalog.channels:
            problems.append((f"consent.overrides.{act}", "channel", o.channel, "channels"))
    problems += [
        ("send_windows", f"send_windows.quiet_hours.{c}", c, "channels")
        for c in policy.send_windows.quiet_hours
        if c not in catalog.channels
    ]
    problems += [
        ("case_pause", f"case_pause.purposes.{i}", p, "purposes")
        for i, p in enumerate(policy.case_pause.purposes)
        if p not in catalog.purposes
    ]
    unlock = policy.modelling.model_sensitive_features_require
    if unlock is not None and unlock not in catalog.purposes:
        problems.append(
            ("modelling", "modelling.model_sensitive_features_require", unlock, "purposes")
        )
    if problems:
        raise ConfigError(
            "\n".join(
                f"{source}: {entry}: field '{field}': '{value}' is not declared in the "
                f"catalog's {what} ({', '.join(getattr(catalog, what))})"
                for entry, field, value, what in problems
            )
        )

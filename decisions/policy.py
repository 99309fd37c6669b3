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

from customers.feature_schema import CatalogTerms
from decisions.catalog import (
    ALL_CHANNELS,
    ActionKind,
    Channel,
    ConfigError,
    Purpose,
    describe_validation_error,
    read_yaml,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConsentOverride(_Strict):
    """The consent one action needs instead of its own purpose on its delivery channel."""

    purpose: Purpose | None = None
    channel: Channel | None = Field(None, description="None: the channel it is delivered on.")


class ConsentRules(_Strict):
    """Which consent each action needs (deny by default: no record means no consent)."""

    overrides: dict[str, ConsentOverride] = Field(default_factory=dict)


class ContactCap(_Strict):
    """At most ``max_contacts`` contacts on ``channel`` (or ``all``) per ``period_days``."""

    channel: Channel = Field(description=f"A catalog channel, or '{ALL_CHANNELS}'.")
    max_contacts: int = Field(ge=0)
    period_days: Literal[7, 30] = 7

    def feature(self) -> str:
        """The contact-history feature the cap reads."""
        if self.channel == ALL_CHANNELS:
            return f"contacts_total_{self.period_days}d"
        return f"contacts_{self.channel}_{self.period_days}d"


class CasePause(_Strict):
    """While a service case is open (``open_cases > 0``) actions of these purposes pause."""

    enabled: bool = True
    purposes: list[Purpose] = Field(default_factory=lambda: ["marketing"])
    feature: str = "open_cases"


class ComplaintBlock(_Strict):
    """No actions of these kinds within ``days`` of a complaint."""

    enabled: bool = True
    days: float = Field(30.0, gt=0)
    kinds: list[ActionKind] = Field(default_factory=lambda: ["upsell", "cross_sell"])
    feature: str = "days_since_complaint"


class Suppression(_Strict):
    """Holdings, stock and cooldown switches."""

    never_offer_held: bool = True
    respect_stock: bool = True
    missing_stock_is_out: bool = Field(
        True, description="An action that needs stock and has no stock figure is not offered."
    )
    context_stock: bool = Field(
        False,
        description="A /decide request's context.stock (product id -> units) overrides the "
        "stock of the table and the stock_changed events for that decision.",
    )
    cooldown: bool = True


class Holdout(_Strict):
    """A fixed, salted-hash share of customers that receives no treatment."""

    share: float = Field(0.05, ge=0, lt=1)
    salt: str = Field(min_length=1)


class Exploration(_Strict):
    """Logged randomisation: with probability ``epsilon`` pick uniformly among the options."""

    epsilon: float = Field(0.05, ge=0, le=1)
    salt: str = Field("explore", min_length=1)
    bucket_seconds: int = Field(
        86_400, gt=0, description="Decisions in the same time bucket draw the same number."
    )


class Modelling(_Strict):
    """Sensitive features reach the model only for customers who gave the required consent."""

    sensitive_features: list[str] = Field(default_factory=lambda: ["age"])
    model_sensitive_features_require: Purpose | None = Field(
        "profiling", description="Purpose whose consent (on the decision channel) unlocks them."
    )


#: The largest integer a JSON number carries exactly (IEEE 754 double).
MAX_SAFE_INTEGER = 2**53


class StringKey(_Strict):
    """A text value of the request context: bounded, optionally one of ``enum``."""

    type: Literal["string"]
    max_length: int = Field(64, ge=1, le=1024)
    enum: list[str] | None = Field(None, min_length=1, description="The only values accepted.")
    pattern: str | None = Field(None, description="A regular expression the value must match.")
    description: str = ""


class NumberKey(_Strict):
    """A finite number of the request context, within ``[minimum, maximum]``."""

    type: Literal["number"]
    minimum: float = Field(-1e9, allow_inf_nan=False)
    maximum: float = Field(1e9, allow_inf_nan=False)
    description: str = ""


class IntegerKey(_Strict):
    """A whole number of the request context, within ``[minimum, maximum]`` (at most 2^53)."""

    type: Literal["integer"]
    minimum: int = Field(-MAX_SAFE_INTEGER, ge=-MAX_SAFE_INTEGER, le=MAX_SAFE_INTEGER)
    maximum: int = Field(MAX_SAFE_INTEGER, ge=-MAX_SAFE_INTEGER, le=MAX_SAFE_INTEGER)
    description: str = ""


class BooleanKey(_Strict):
    """A true/false value of the request context."""

    type: Literal["boolean"]
    description: str = ""


class StockKey(_Strict):
    """Units in stock per product (catalog product id -> finite number >= 0) that override
    the stock for this decision; needs ``suppression.context_stock``."""

    type: Literal["stock"]
    max_products: int = Field(64, ge=1, le=10_000)
    description: str = ""


#: One allowed key of the request context; a new kind of value is one more class here and
#: one builder in :mod:`decisions.context_schema`.
ContextKey = Annotated[
    StringKey | NumberKey | IntegerKey | BooleanKey | StockKey, Field(discriminator="type")
]


class Policy(_Strict):
    """The whole contact policy."""

    version: str = Field(min_length=1)
    consent: ConsentRules = Field(default_factory=ConsentRules)
    caps: list[ContactCap] = Field(default_factory=list)
    case_pause: CasePause = Field(default_factory=CasePause)
    complaint_block: ComplaintBlock = Field(default_factory=ComplaintBlock)
    suppression: Suppression = Field(default_factory=Suppression)
    holdout: Holdout
    exploration: Exploration = Field(default_factory=Exploration)
    modelling: Modelling = Field(default_factory=Modelling)
    context: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")], ContextKey] = Field(
        default_factory=dict,
        description="The keys a /decide request's context may carry (anything else is "
        "refused), each with its type and limits.",
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

    def consent_for(self, action_id: str, purpose: str, channel: str) -> tuple[str, str]:
        """(purpose, channel) of the consent an action delivered on ``channel`` needs."""
        o = self.consent.overrides.get(action_id)
        if o is None:
            return purpose, channel
        return o.purpose or purpose, o.channel or channel

    def consent_feature(self, action_id: str, purpose: str, channel: str) -> str:
        """Name of the consent feature an action delivered on ``channel`` needs."""
        p, c = self.consent_for(action_id, purpose, channel)
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
    declare; the message lists every such entry and field."""
    unknown = sorted(set(policy.consent.overrides) - set(catalog.action_ids))
    if unknown:
        raise ConfigError(
            f"{source}: consent.overrides: field '{unknown[0]}': not a catalog action "
            f"(unknown: {', '.join(unknown)})"
        )
    problems = [
        (f"caps[{i}]", "channel", cap.channel, "channels")
        for i, cap in enumerate(policy.caps)
        if cap.channel != ALL_CHANNELS and cap.channel not in catalog.channels
    ]
    for action_id, o in policy.consent.overrides.items():
        if o.purpose is not None and o.purpose not in catalog.purposes:
            problems.append((f"consent.overrides.{action_id}", "purpose", o.purpose, "purposes"))
        if o.channel is not None and o.channel not in catalog.channels:
            problems.append((f"consent.overrides.{action_id}", "channel", o.channel, "channels"))
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

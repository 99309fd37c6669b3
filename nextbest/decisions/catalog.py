"""The action catalog: a validated YAML file with a typed schema.

Every action the engine may choose is declared here, with its channels, purpose, value,
cost, business lever, dates, eligibility predicates (declared data, never code), cooldown
and the response-model arm whose scores it borrows. "No action" is implicit and always
available, so an action with the id ``no_action`` is an error.

The file also declares the channels (each optionally with how it reads inside a reason
sentence), the purposes (and which of them are consented to once for every channel), the
product categories and the products: an action's ``channels``, ``purpose``, ``product``,
``category`` and ``suppress_if_holds`` must be among them, and the per-channel,
per-purpose, per-product, per-category and per-action features, the contact-policy
checks, the source contract and the service's API enums are derived from them
(:meth:`Catalog.terms`).

Action ids are read as the business writes them and normalised once
(:func:`nextbest.core.action_ids.action_id`: ``MORTGAGE_REMORT`` is ``mortgage_remort``).

Every field's description and example is also the configuration reference
(``docs/reference/catalog.md``, written by ``python -m devtools.config_reference``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema as cs

from nextbest.core.action_ids import (
    ACTION_ID_MAX_LENGTH,
    WRITTEN_ACTION_ID_PATTERN,
    action_id,
    normalise_action_id,
)
from nextbest.core.durations import DURATION_PATTERN, parse_duration
from nextbest.core.vocabulary import ACTION_KINDS, EVENT_TYPES, NO_ACTION
from nextbest.customers.feature_schema import BehaviourTerm, CatalogTerms

#: A channel or purpose id: a lower-case identifier (it names feature columns); which ones
#: exist is declared by the catalog and checked against it (:func:`load_catalog`).
Channel = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=40)]
Purpose = Channel
#: How a channel reads inside a reason sentence ("in a branch"): plain text, trimmed.
Phrase = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]
#: What a contact cap names for "every channel together": no catalog channel may be called so.
ALL_CHANNELS = "all"
_NAME_PATTERN = r"^[a-z0-9][a-z0-9_]*$"
ActionKind = Literal[ACTION_KINDS]  # type: ignore[valid-type]
Op = Literal["eq", "ne", "lt", "le", "gt", "ge", "in", "not_in"]
#: An action id as the business writes it, normalised on reading (nextbest.core.action_ids).
ActionId = Annotated[
    str,
    BeforeValidator(action_id),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": WRITTEN_ACTION_ID_PATTERN,
            "maxLength": ACTION_ID_MAX_LENGTH,
        }
    ),
]
#: A product or category id: lower-case letters, digits and underscores.
ProductId = Annotated[str, StringConstraints(pattern=_NAME_PATTERN, max_length=80)]
#: A version label: text (a number written bare is read as its text).
Version = Annotated[
    str,
    StringConstraints(min_length=1),
    WithJsonSchema({"anyOf": [{"type": "string", "minLength": 1}, {"type": "number"}]}),
]
#: How consent to a purpose is recorded: per channel, or once for every channel.
ConsentScope = Literal["per_channel", "all_channels"]


class PlainIdOr:
    """JSON Schema of an entry that may also be written as its plain id (a string)."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern

    def __get_pydantic_json_schema__(
        self, core_schema: cs.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"anyOf": [{"type": "string", "pattern": self.pattern}, handler(core_schema)]}


class ConfigError(ValueError):
    """A configuration file is invalid; the message names the file, the entry and the field."""


class Predicate(BaseModel):
    """One eligibility rule over a numeric feature: ``feature op value``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    feature: str = Field(
        min_length=1,
        description="A feature column (docs/data-dictionary.md, the catalog-derived ones "
        "included).",
        examples=["tenure_days"],
    )
    op: Op = Field(
        description="How the feature compares with value: eq ne lt le gt ge, or in / not_in a list."
    )
    value: float | list[float] = Field(
        description="A finite number, or a non-empty list of them for in / not_in.",
        examples=[180],
    )

    @model_validator(mode="after")
    def _value_matches_op(self) -> Predicate:
        if self.op in ("in", "not_in"):
            if not isinstance(self.value, list) or not self.value:
                raise ValueError(f"op '{self.op}' needs a non-empty list as value")
        elif isinstance(self.value, list):
            raise ValueError(f"op '{self.op}' needs a single number as value")
        values = self.value if isinstance(self.value, list) else [self.value]
        if any(not math.isfinite(v) for v in values):
            raise ValueError("value must be finite")
        return self


class ChannelEntry(BaseModel):
    """One declared channel: its id and, optionally, how it reads inside a reason sentence.

    ``channels:`` takes a plain id (``email``) or a mapping
    (``{id: branch, phrase: "in a branch"}``); a channel without a phrase reads
    "by <channel>" (:func:`nextbest.decisions.reasons.channel_phrase`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Channel = Field(
        description="The channel id (lower-case): it names features (consent_<purpose>_"
        "<channel>, contacts_<channel>_7d) and the service's channel enum.",
        examples=["branch"],
    )
    phrase: Phrase | None = Field(
        None,
        description='How the channel reads inside a reason sentence; none: "by <id>".',
        examples=["in a branch"],
    )

    @model_validator(mode="before")
    @classmethod
    def _plain_id(cls, v: Any) -> Any:
        # The plain list form (``channels: [email, sms]``) stays valid: an id alone.
        return {"id": v} if isinstance(v, str) else v


#: A duration as the files write it: a whole number and a unit, m h d or w (``36h``).
Duration = Annotated[str, StringConstraints(pattern=DURATION_PATTERN)]


def _distinct_durations(v: list[str]) -> list[str]:
    """Durations that are all readable and name distinct lengths (``24h`` is ``1d``)."""
    seconds = [parse_duration(d) for d in v]
    if len(set(seconds)) != len(seconds):
        raise ValueError(f"must not repeat a length (24h and 1d are one): {', '.join(v)}")
    return v


class BehaviourEvent(BaseModel):
    """One behaviour event ``/events`` accepts (a page view, an eligibility check, an add
    to cart...) and the features it feeds: counts over windows, last seen, distinct
    products (docs/events.md, "Behaviour events")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, StringConstraints(pattern=_NAME_PATTERN, max_length=40)] = Field(
        description="The event type /events takes for it; it names its features "
        "(<name>_count_<window>, <name>_products_<window>, <name>_last_ts). Not one of the "
        "built-in event types.",
        examples=["eligibility_check"],
    )
    export_types: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        default_factory=list,
        description="event_type values of the behaviour export that are this event (its "
        "history before the snapshot time); none: the export's rows named like it.",
        examples=[["loan_check"]],
    )
    windows: list[Duration] = Field(
        default_factory=lambda: ["1h", "24h", "7d", "30d"],
        min_length=1,
        description="Windows it is counted over, ending at the decision time: a whole "
        "number and a unit, m h d or w.",
        examples=[["1h", "24h", "7d", "30d"]],
    )
    last_seen: bool = Field(True, description="Whether it feeds <name>_last_ts.")
    distinct_products: list[Duration] = Field(
        default_factory=list,
        description="Windows over which the distinct products its events name are counted "
        "(events carrying payload.product_id).",
        examples=[["7d"]],
    )

    _windows = field_validator("windows", "distinct_products")(_distinct_durations)

    @field_validator("name")
    @classmethod
    def _not_built_in(cls, v: str) -> str:
        if v in EVENT_TYPES:
            raise ValueError(f"'{v}' is a built-in event type ({', '.join(EVENT_TYPES)})")
        return v

    def term(self) -> BehaviourTerm:
        """The event as the feature schema and the ledger read it (windows in seconds)."""
        return BehaviourTerm(
            name=self.name,
            windows=tuple(parse_duration(w) for w in self.windows),
            last_seen=self.last_seen,
            distinct_products=tuple(parse_duration(w) for w in self.distinct_products),
            export_types=tuple(self.export_types or [self.name]),
        )


class Product(BaseModel):
    """One product the business sells (the features track holdings of each)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: ProductId = Field(
        description="The product id: it names the holdings feature holds_<id>, and holdings "
        "and stock rows name it.",
        examples=["mortgage_fixed"],
    )
    name: str = Field(min_length=1, description="The product's name.", examples=["Mortgage"])
    category: str = Field(
        min_length=1,
        description="Its category (one of the catalog's categories).",
        examples=["mortgages"],
    )


def _margin_alias(schema: dict[str, Any]) -> None:
    """JSON Schema: ``margin`` is another name of ``value``; one of the two is required."""
    props = schema["properties"]
    props["margin"] = {
        **{k: v for k, v in props["value"].items() if k not in ("title", "examples")},
        "description": "Another name for value (give one of value and margin).",
    }
    schema["required"] = [r for r in schema.get("required", []) if r != "value"]
    schema["oneOf"] = [{"required": ["value"]}, {"required": ["margin"]}]


class Action(BaseModel):
    """One catalog action."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, json_schema_extra=_margin_alias
    )

    id: ActionId = Field(
        description="The action id as the business writes it; read trimmed, lower-cased, "
        "spaces and hyphens as underscores (MORTGAGE_REMORT is mortgage_remort), which is "
        "how answers, features and models name it.",
        examples=["MORTGAGE_REMORT"],
    )
    name: str = Field(
        min_length=1,
        description="What an agent reads in reason sentences.",
        examples=["Remortgage offer"],
    )
    channels: list[Channel] = Field(
        min_length=1,
        description="Channels it can be delivered on (declared in channels, no repeats).",
        examples=[["email", "call_center"]],
    )
    purpose: Purpose = Field(
        description="Purpose it is sent under: it needs consent to this purpose on the "
        "channel (declared in purposes).",
        examples=["marketing"],
    )
    kind: ActionKind = Field(
        description="What it does commercially; the policy's complaint block works by kind."
    )
    category: ProductId | None = Field(
        None,
        description="Product category (declared in categories; its product's, when it has one).",
        examples=["mortgages"],
    )
    product: ProductId | None = Field(
        None,
        description="The product it offers (declared in products); by default holding it "
        "suppresses the action (see suppress_if_holds).",
        examples=["mortgage_fixed"],
    )
    value: float = Field(
        ge=0,
        validation_alias=AliasChoices("value", "margin"),
        description="Value of a response, in currency units (also accepted as margin); "
        "the model's value per response replaces it when it has one.",
        examples=[400.0],
    )
    cost: float = Field(
        0.0,
        ge=0,
        description="Cost of one contact on every channel without its own cost_by_channel.",
        examples=[0.05],
    )
    cost_by_channel: dict[Channel, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(
        default_factory=dict,
        description="Cost of one contact on a channel, where it differs from cost (a call "
        "costs more than an e-mail); each key one of the action's channels.",
        examples=[{"call_center": 8.0}],
    )
    lever: float = Field(
        1.0,
        gt=0,
        description="Business multiplier on the expected incremental value.",
        examples=[0.8],
    )
    valid_from: datetime | None = Field(
        None,
        description="Offered from this time on (naive times are UTC).",
        examples=["2026-01-01T00:00:00"],
    )
    valid_to: datetime | None = Field(
        None,
        description="Offered until this time (exclusive; after valid_from).",
        examples=["2026-03-31T00:00:00"],
    )
    eligibility: list[Predicate] = Field(
        default_factory=list,
        description="Rules a customer must meet, all of them (declared data, never code).",
        examples=[[{"feature": "holds_mortgage_fixed", "op": "eq", "value": 1}]],
    )
    cooldown_days: float = Field(
        0.0,
        ge=0,
        description="Days it rests after being shown to a customer (0: no rest).",
        examples=[30],
    )
    needs_stock: bool = Field(
        False, description="Offered only while its product is in stock (needs a product)."
    )
    suppress_if_holds: list[ProductId] | None = Field(
        None,
        description="Products whose holding suppresses it (declared in products); none: "
        "its own product, as always; [] : no holding suppresses it (a remortgage for "
        "mortgage holders). Needs the policy's suppression.never_offer_held.",
        examples=[["savings_plus"]],
    )
    placements: list[str] | None = Field(
        None,
        description="Placements that may show it; none: every placement.",
        examples=[["home", "checkout"]],
    )
    response_model: ActionId | None = Field(
        None,
        description="Model arm whose scores it uses (an action id); none: its own id.",
        examples=["sms_card_upgrade"],
    )

    @field_validator("valid_from", "valid_to")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        # Naive times in the file are read as UTC so date checks never depend on the host.
        if v is not None and v.tzinfo is None:
            return v.replace(tzinfo=UTC)
        return v

    @field_validator("channels")
    @classmethod
    def _unique_channels(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("channels must not repeat")
        return v

    @field_validator("suppress_if_holds")
    @classmethod
    def _unique_holdings(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            _refuse_repeats(v)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Action:
        if self.id == NO_ACTION:
            raise ValueError(f"'{NO_ACTION}' is implicit and must not be declared")
        if self.valid_from and self.valid_to and self.valid_to <= self.valid_from:
            raise ValueError("valid_to must be after valid_from")
        if self.needs_stock and not self.product:
            raise ValueError("needs_stock requires a product")
        stray = [c for c in self.cost_by_channel if c not in self.channels]
        if stray:
            raise ValueError(
                f"cost_by_channel names {', '.join(stray)}, not among the action's channels "
                f"({', '.join(self.channels)})"
            )
        return self

    @property
    def arm(self) -> str:
        """The response-model arm this action is scored with."""
        return self.response_model or self.id

    def cost_on(self, channel: str) -> float:
        """Cost of one contact on ``channel``: its ``cost_by_channel`` entry, else ``cost``."""
        return self.cost_by_channel.get(channel, self.cost)

    @property
    def held_products(self) -> list[str]:
        """Products whose holding suppresses it: ``suppress_if_holds`` when declared, else
        its own product (none without one)."""
        if self.suppress_if_holds is not None:
            return list(self.suppress_if_holds)
        return [self.product] if self.product else []


class Catalog(BaseModel):
    """The whole action catalog."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Version = Field(
        description="Version label, recorded with every decision.", examples=["2026.1"]
    )
    channels: list[Annotated[ChannelEntry, PlainIdOr(r"^[a-z][a-z0-9_]*$")]] = Field(
        min_length=1,
        description="Channels actions are delivered on, consent is asked for; each an id or "
        "{id, phrase}.",
        examples=[["email", {"id": "branch", "phrase": "in a branch"}]],
    )
    purposes: list[Purpose] = Field(
        min_length=1,
        description="Purposes consent is given for and actions are sent under.",
        examples=[["marketing", "profiling", "advice"]],
    )
    consent_scope: dict[Purpose, ConsentScope] = Field(
        default_factory=dict,
        description="How consent to a purpose is recorded: per_channel (the default: "
        "consent on the channel it is used on) or all_channels (recorded once, on the "
        "channel where it was captured, and valid on every channel: the latest record on "
        "any channel wins, so a withdrawal anywhere withdraws it everywhere). Applies to "
        "the consent features, so to the consent rules and to the modelling unlock alike.",
        examples=[{"profiling": "all_channels"}],
    )
    categories: list[str] = Field(
        default_factory=list,
        description="Product categories: features per category (spend_365d_<c>, views_30d_<c>).",
        examples=[["current_accounts", "mortgages"]],
        json_schema_extra={"items": {"type": "string", "pattern": _NAME_PATTERN}},
    )
    products: list[Product] = Field(
        default_factory=list,
        description="Products the business sells: holdings features holds_<id>.",
    )
    actions: list[Action] = Field(
        min_length=1,
        description="Every action the engine may choose, in the order of the engine's "
        "columns; no_action is implicit.",
    )
    behaviour_events: list[BehaviourEvent] = Field(
        default_factory=list,
        description="Behaviour events /events accepts (page views, eligibility checks, "
        "add to cart...) and the windowed features each feeds.",
    )

    @field_validator("behaviour_events")
    @classmethod
    def _unique_behaviour(cls, v: list[BehaviourEvent]) -> list[BehaviourEvent]:
        _refuse_repeats([b.name for b in v])
        return v

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int | float) else v

    @field_validator("categories")
    @classmethod
    def _category_names(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if not _NAME.match(c)]
        if bad:
            raise ValueError(f"not a lower-case name: {', '.join(bad)}")
        if len(set(v)) != len(v):
            raise ValueError("categories must not repeat")
        return v

    @field_validator("purposes")
    @classmethod
    def _unique_purposes(cls, v: list[str]) -> list[str]:
        _refuse_repeats(v)
        return v

    @field_validator("channels")
    @classmethod
    def _unique_channels(cls, v: list[ChannelEntry]) -> list[ChannelEntry]:
        ids = [c.id for c in v]
        _refuse_repeats(ids)
        if ALL_CHANNELS in ids:
            raise ValueError(f"'{ALL_CHANNELS}' is reserved (contact caps over every channel)")
        return v

    @field_validator("actions")
    @classmethod
    def _unique_actions(cls, v: list[Action]) -> list[Action]:
        _refuse_repeats([a.id for a in v])
        return v

    @model_validator(mode="after")
    def _scoped_purposes_declared(self) -> Catalog:
        stray = [p for p in self.consent_scope if p not in self.purposes]
        if stray:
            raise ValueError(
                f"consent_scope names {', '.join(stray)}, not declared in purposes "
                f"({', '.join(self.purposes)})"
            )
        return self

    @property
    def channel_ids(self) -> list[str]:
        """Channel ids in file order."""
        return [c.id for c in self.channels]

    @property
    def channel_phrases(self) -> dict[str, str]:
        """Channel id -> how it reads inside a reason sentence, for the channels that
        declare a phrase (a new dict per call: the engine keeps its plan's copy)."""
        return {c.id: c.phrase for c in self.channels if c.phrase is not None}

    @property
    def all_channel_purposes(self) -> tuple[str, ...]:
        """Purposes whose consent is recorded once for every channel, in purpose order."""
        return tuple(p for p in self.purposes if self.consent_scope.get(p) == "all_channels")

    def terms(self) -> CatalogTerms:
        """Products, categories, action ids, channels and purposes in file order, for the
        feature schema, the policy, the source contract and the service."""
        return CatalogTerms(
            products=tuple(p.id for p in self.products),
            categories=tuple(self.categories),
            action_ids=tuple(self.ids),
            channels=tuple(self.channel_ids),
            purposes=tuple(self.purposes),
            all_channel_purposes=self.all_channel_purposes,
            behaviour=tuple(b.term() for b in self.behaviour_events),
        )

    def product(self, product_id: str) -> Product:
        """The product with this id."""
        for p in self.products:
            if p.id == product_id:
                return p
        raise KeyError(product_id)

    @property
    def ids(self) -> list[str]:
        """Action ids in file order (the column order of the engine's arrays)."""
        return [a.id for a in self.actions]

    def action(self, action_id: str) -> Action:
        """The action with this id (as written or normalised)."""
        wanted = normalise_action_id(action_id)
        for a in self.actions:
            if a.id == wanted:
                return a
        raise KeyError(action_id)

    def for_channel(self, channel: str) -> list[Action]:
        """Actions that can be delivered on ``channel``."""
        return [a for a in self.actions if channel in a.channels]

    def validate_features(self, names: Iterable[str], source: str = "catalog") -> None:
        """Fail if a predicate refers to a feature not in ``names``, naming action and field."""
        known = set(names)
        problems = [
            f"{source}: action '{a.id}': field 'eligibility[{i}].feature': "
            f"unknown feature '{p.feature}'"
            for a in self.actions
            for i, p in enumerate(a.eligibility)
            if p.feature not in known
        ]
        if problems:
            raise ConfigError("; ".join(problems))


def _refuse_repeats(values: list[str]) -> None:
    repeated = sorted({t for t in values if values.count(t) > 1})
    if repeated:
        raise ValueError(f"must not repeat: {', '.join(repeated)}")


def describe_validation_error(
    exc: ValidationError, raw: Any, path: str | Path, list_key: str | Sequence[str]
) -> str:
    """Render pydantic errors as ``file: entry: field 'x': message`` lines.

    ``list_key`` names the top-level list(s) whose items are named by their ``id`` (or
    index; a plain string item names itself).
    """
    keys = (list_key,) if isinstance(list_key, str) else tuple(list_key)
    lines = []
    for err in exc.errors():
        loc = list(err["loc"])
        entry = "top level"
        if len(loc) >= 2 and loc[0] in keys and isinstance(loc[1], int):
            key, idx = str(loc[0]), loc[1]
            items = raw.get(key) if isinstance(raw, dict) else None
            item = items[idx] if isinstance(items, list) and idx < len(items) else None
            item_id = item.get("id", item.get("name")) if isinstance(item, dict) else item
            item_id = item_id if isinstance(item_id, str) else None
            entry = f"{key}[{idx}]" + (f" (id '{item_id}')" if item_id else "")
            loc = loc[2:]
        elif len(loc) >= 2 and isinstance(loc[0], str) and isinstance(raw, dict):
            # Mapping entries (e.g. policy overrides keyed by action id).
            entry = f"{loc[0]}"
        field = ".".join(str(p) for p in loc) or "(entry)"
        lines.append(f"{path}: {entry}: field '{field}': {err['msg']}")
    return "\n".join(lines)


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file, turning parse errors into :class:`ConfigError` naming the file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: invalid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level: expected a mapping, got {type(data).__name__}")
    return data


_NAME = re.compile(_NAME_PATTERN)


def _duplicate_ids(
    raw: dict[str, Any], path: Path, key: str, normalise: Callable[[str], str] = str
) -> None:
    """Fail on the first id of ``raw[key]`` that repeats one before it (compared after
    ``normalise``), naming both entries as written."""
    seen: dict[str, int] = {}
    items = raw.get(key)
    for i, item in enumerate(items if isinstance(items, list) else []):
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            norm = normalise(item["id"])
            if norm in seen:
                j = seen[norm]
                first = items[j]["id"]
                same = (
                    "" if first == item["id"] else f" (id '{first}'; ids are compared as {norm!r})"
                )
                raise ConfigError(
                    f"{path}: {key}[{i}] (id '{item['id']}'): field 'id': duplicate of "
                    f"{key}[{j}]{same}"
                )
            seen[norm] = i


def _written_id(raw: Any, key: str, i: int, default: str) -> str:
    """The id of ``raw[key][i]`` as the file writes it (``default`` when unreadable)."""
    items = raw.get(key) if isinstance(raw, dict) else None
    item = items[i] if isinstance(items, list) and i < len(items) else None
    written = item.get("id") if isinstance(item, dict) else None
    return written if isinstance(written, str) else default


def _check_references(catalog: Catalog, path: Path, raw: Any = None) -> None:
    """Products name declared categories; actions name declared channels, purposes,
    products and categories (and the products in ``suppress_if_holds``), and an action's
    category is its product's. Entries are named by their ids as ``raw`` writes them."""
    categories = set(catalog.categories)
    products = {p.id: p for p in catalog.products}
    channels = catalog.channel_ids
    problems = [
        f"{path}: products[{i}] (id '{p.id}'): field 'category': '{p.category}' is not "
        "declared in categories"
        for i, p in enumerate(catalog.products)
        if p.category not in categories
    ]
    for i, a in enumerate(catalog.actions):
        entry = f"{path}: actions[{i}] (id '{_written_id(raw, 'actions', i, a.id)}')"
        problems += [
            f"{entry}: field 'channels.{j}': '{c}' is not declared in channels "
            f"({', '.join(channels)})"
            for j, c in enumerate(a.channels)
            if c not in channels
        ]
        if a.purpose not in catalog.purposes:
            problems.append(
                f"{entry}: field 'purpose': '{a.purpose}' is not declared in purposes "
                f"({', '.join(catalog.purposes)})"
            )
        if a.product is not None and a.product not in products:
            problems.append(f"{entry}: field 'product': '{a.product}' is not declared in products")
        problems += [
            f"{entry}: field 'suppress_if_holds.{j}': '{h}' is not declared in products"
            for j, h in enumerate(a.suppress_if_holds or ())
            if h not in products
        ]
        if a.category is not None and a.category not in categories:
            problems.append(
                f"{entry}: field 'category': '{a.category}' is not declared in categories"
            )
        elif a.product in products and a.category not in (None, products[a.product].category):
            problems.append(
                f"{entry}: field 'category': '{a.category}' but product '{a.product}' is in "
                f"'{products[a.product].category}'"
            )
    if problems:
        raise ConfigError("\n".join(problems))


def load_catalog(path: str | Path, feature_names: Sequence[str] | None = None) -> Catalog:
    """Read and validate the catalog YAML; errors name the file, the entry and the field.

    When ``feature_names`` is given, eligibility predicates are checked against it too.
    """
    p = Path(path)
    raw = read_yaml(p)
    _duplicate_ids(raw, p, "products")
    _duplicate_ids(raw, p, "actions", normalise_action_id)
    try:
        catalog = Catalog.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(
            describe_validation_error(
                e, raw, p, ("channels", "products", "actions", "behaviour_events")
            )
        ) from e
    _check_references(catalog, p, raw)
    if feature_names is not None:
        catalog.validate_features(feature_names, source=str(p))
    return catalog

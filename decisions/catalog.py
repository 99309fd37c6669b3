"""The action catalog: a validated YAML file with a typed schema.

Every action the engine may choose is declared here, with its channels, purpose, value,
cost, business lever, dates, eligibility predicates (declared data, never code), cooldown
and the response-model arm whose scores it borrows. "No action" is implicit and always
available, so an action with the id ``no_action`` is an error.

The file also declares the channels (each optionally with how it reads inside a reason
sentence), the purposes, the product categories and the products: an action's
``channels``, ``purpose``, ``product`` and ``category`` must be among them, and the
per-channel, per-purpose, per-product, per-category and per-action features, the
contact-policy checks, the source contract and the service's API enums are derived from
them (:meth:`Catalog.terms`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from core.vocabulary import ACTION_KINDS, NO_ACTION
from customers.feature_schema import CatalogTerms

#: A channel or purpose id: a lower-case identifier (it names feature columns); which ones
#: exist is declared by the catalog and checked against it (:func:`load_catalog`).
Channel = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=40)]
Purpose = Channel
#: How a channel reads inside a reason sentence ("in a branch"): plain text, trimmed.
Phrase = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]
#: What a contact cap names for "every channel together": no catalog channel may be called so.
ALL_CHANNELS = "all"
ActionKind = Literal[ACTION_KINDS]  # type: ignore[valid-type]
Op = Literal["eq", "ne", "lt", "le", "gt", "ge", "in", "not_in"]


class ConfigError(ValueError):
    """A configuration file is invalid; the message names the file, the entry and the field."""


class Predicate(BaseModel):
    """One eligibility rule over a numeric feature: ``feature op value``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    feature: str = Field(min_length=1)
    op: Op
    value: float | list[float]

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
    "by <channel>" (:func:`decisions.reasons.channel_phrase`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Channel
    phrase: Phrase | None = None

    @model_validator(mode="before")
    @classmethod
    def _plain_id(cls, v: Any) -> Any:
        # The plain list form (``channels: [email, sms]``) stays valid: an id alone.
        return {"id": v} if isinstance(v, str) else v


class Product(BaseModel):
    """One product the business sells (the features track holdings of each)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_]*$", max_length=80)
    name: str = Field(min_length=1)
    category: str = Field(min_length=1)


class Action(BaseModel):
    """One catalog action."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=80)
    name: str = Field(min_length=1)
    channels: list[Channel] = Field(min_length=1)
    purpose: Purpose
    kind: ActionKind
    category: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9_]*$")
    product: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9_]*$")
    value: float = Field(
        ge=0, validation_alias=AliasChoices("value", "margin"), description="Per response."
    )
    cost: float = Field(0.0, ge=0, description="Per contact.")
    lever: float = Field(1.0, gt=0, description="Business multiplier on the expected value.")
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    eligibility: list[Predicate] = Field(default_factory=list)
    cooldown_days: float = Field(0.0, ge=0)
    needs_stock: bool = False
    placements: list[str] | None = Field(
        None, description="Placements that may show it; None means every placement."
    )
    response_model: str | None = Field(
        None, description="Model arm whose scores it uses; defaults to its own id."
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

    @model_validator(mode="after")
    def _consistent(self) -> Action:
        if self.id == NO_ACTION:
            raise ValueError(f"'{NO_ACTION}' is implicit and must not be declared")
        if self.valid_from and self.valid_to and self.valid_to <= self.valid_from:
            raise ValueError("valid_to must be after valid_from")
        if self.needs_stock and not self.product:
            raise ValueError("needs_stock requires a product")
        return self

    @property
    def arm(self) -> str:
        """The response-model arm this action is scored with."""
        return self.response_model or self.id


class Catalog(BaseModel):
    """The whole action catalog."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(min_length=1)
    channels: list[ChannelEntry] = Field(
        min_length=1,
        description="Channels actions are delivered on, consent is asked for; each an id or "
        "{id, phrase}.",
    )
    purposes: list[Purpose] = Field(
        min_length=1, description="Purposes consent is given for and actions are sent under."
    )
    categories: list[str] = Field(default_factory=list)
    products: list[Product] = Field(default_factory=list)
    actions: list[Action] = Field(min_length=1)

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

    @property
    def channel_ids(self) -> list[str]:
        """Channel ids in file order."""
        return [c.id for c in self.channels]

    @property
    def channel_phrases(self) -> dict[str, str]:
        """Channel id -> how it reads inside a reason sentence, for the channels that
        declare a phrase (a new dict per call: the engine keeps its plan's copy)."""
        return {c.id: c.phrase for c in self.channels if c.phrase is not None}

    def terms(self) -> CatalogTerms:
        """Products, categories, action ids, channels and purposes in file order, for the
        feature schema, the policy, the source contract and the service."""
        return CatalogTerms(
            products=tuple(p.id for p in self.products),
            categories=tuple(self.categories),
            action_ids=tuple(self.ids),
            channels=tuple(self.channel_ids),
            purposes=tuple(self.purposes),
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
        """The action with this id."""
        for a in self.actions:
            if a.id == action_id:
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
            item_id = item.get("id") if isinstance(item, dict) else item
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


_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")


def _duplicate_ids(raw: dict[str, Any], path: Path, key: str) -> None:
    seen: dict[str, int] = {}
    items = raw.get(key)
    for i, item in enumerate(items if isinstance(items, list) else []):
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            if item["id"] in seen:
                raise ConfigError(
                    f"{path}: {key}[{i}] (id '{item['id']}'): field 'id': duplicate of "
                    f"{key}[{seen[item['id']]}]"
                )
            seen[item["id"]] = i


def _check_references(catalog: Catalog, path: Path) -> None:
    """Products name declared categories; actions name declared channels, purposes,
    products and categories, and an action's category is its product's."""
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
        entry = f"{path}: actions[{i}] (id '{a.id}')"
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
    _duplicate_ids(raw, p, "actions")
    try:
        catalog = Catalog.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(
            describe_validation_error(e, raw, p, ("channels", "products", "actions"))
        ) from e
    _check_references(catalog, p)
    if feature_names is not None:
        catalog.validate_features(feature_names, source=str(p))
    return catalog

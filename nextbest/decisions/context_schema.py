"""The pydantic model of a decision request's ``context``, built from the policy's allow-list.

The policy (``context:`` in config/policy.yaml, :class:`nextbest.decisions.policy.Policy`) lists the
keys a caller may send, each with its type and limits. :func:`context_model` turns that
list into one pydantic model: unknown keys are refused naming the key, every value is
bounded, and a text value shaped like an e-mail address or a phone number is refused. The
model is built once at start-up; the service uses it as the ``context`` field of its input
model, so the OpenAPI spec shows the allowed keys and their limits.

Personal data is refused, not dropped: dropping a key silently changes the decision the
caller asked for, and the caller would never learn that it sends what it must not.
Names cannot be recognised by their value, which is why the keys are an allow-list.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from nextbest.decisions.decision_log import looks_like_email, looks_like_phone
from nextbest.decisions.policy import BooleanKey, IntegerKey, NumberKey, Policy, StockKey, StringKey

#: The message of a context key the policy does not list (pydantic's ``extra_forbidden``).
NOT_ALLOWED = "not allowed by the policy"


def refuse_personal_data(value: Any) -> Any:
    """``value`` unchanged, unless it is text that looks like an e-mail address or a phone
    number (checked before the type and pattern, so the message says why)."""
    if not isinstance(value, str):
        return value
    if looks_like_email(value):
        raise ValueError("looks like an e-mail address; personal data is refused")
    if looks_like_phone(value):
        raise ValueError("looks like a phone number; personal data is refused")
    return value


def _string(spec: StringKey) -> Any:
    if spec.enum is not None:
        return Literal[tuple(spec.enum)]  # type: ignore[valid-type]
    return Annotated[
        str,
        Field(max_length=spec.max_length, pattern=spec.pattern, strict=True),
        BeforeValidator(refuse_personal_data),
    ]


def _number(spec: NumberKey) -> Any:
    return Annotated[
        float, Field(ge=spec.minimum, le=spec.maximum, allow_inf_nan=False, strict=True)
    ]


def _integer(spec: IntegerKey) -> Any:
    return Annotated[int, Field(ge=spec.minimum, le=spec.maximum, strict=True)]


def _boolean(spec: BooleanKey) -> Any:
    return Annotated[bool, Field(strict=True)]


def _stock(spec: StockKey) -> Any:
    # Product ids are checked against the catalog when the decision is made
    # (nextbest.decisions.stock.context_stock); here the shape and the bounds.
    units = Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)]
    product = Annotated[str, Field(min_length=1, max_length=128)]
    return Annotated[dict[product, units], Field(max_length=spec.max_products)]  # type: ignore[valid-type]


#: One builder per key type of the policy (a new type: one row here, one class there).
_BUILDERS: dict[str, Callable[[Any], Any]] = {
    "string": _string,
    "number": _number,
    "integer": _integer,
    "boolean": _boolean,
    "stock": _stock,
}


def context_model(policy: Policy) -> type[BaseModel]:
    """The model of ``context``: the policy's keys, each optional, nothing else."""
    fields: dict[str, Any] = {
        key: (
            _BUILDERS[spec.type](spec) | None,
            Field(None, description=spec.description or None),
        )
        for key, spec in policy.context.items()
    }
    return create_model(  # type: ignore[call-overload,no-any-return]
        "DecideContext",
        __config__=ConfigDict(extra="forbid", hide_input_in_errors=True, frozen=True),
        __doc__="What the caller knows about the moment of the decision; only the keys "
        "the policy allows (anything else is refused with 400 naming the key).",
        **fields,
    )


def context_dict(context: BaseModel | dict[str, Any] | None) -> dict[str, Any]:
    """The keys the caller sent (validated), as a plain dict for the engine and the log."""
    if context is None:
        return {}
    if isinstance(context, BaseModel):
        return context.model_dump(exclude_unset=True)
    return dict(context)

"""The words every layer shares, defined once: action kinds, identifier types, event
types, API key scopes and the implicit "no action".

Channels and purposes are the business's: the action catalog declares them
(``channels:`` and ``purposes:`` in config/catalog.yaml, read through
``Catalog.terms()``), and every feature, rule, contract check and API enum is derived from
that. ``DEMO_CHANNELS`` and ``DEMO_PURPOSES`` are only the demo generator's own (the demo
catalog declares the same values in the same order); nothing else reads them.

Order matters where a tuple becomes an OpenAPI enum, so append, never reorder. Pydantic
fields derive their ``Literal`` from these tuples (``Literal[ID_TYPES]``), so the API
schema and the validation cannot drift apart.
"""

from __future__ import annotations

from typing import Final

#: The channels the demo generator delivers on and records consent for (its catalog's).
DEMO_CHANNELS: Final[tuple[str, ...]] = ("email", "sms", "push", "web", "app", "call_center")
#: The purposes the demo generator records consent for (its catalog's).
DEMO_PURPOSES: Final[tuple[str, ...]] = ("marketing", "profiling", "service")
#: What an action does commercially.
ACTION_KINDS: Final[tuple[str, ...]] = ("upsell", "cross_sell", "retention", "service", "info")
#: Identifier types a source record or a caller may name a customer by (docs/contracts.md).
ID_TYPES: Final[tuple[str, ...]] = (
    "customer_id",
    "email",
    "phone",
    "loyalty_id",
    "crm_id",
    "device_id",
    "app_account_id",
)
#: Event types the decision service accepts on ``/events``.
EVENT_TYPES: Final[tuple[str, ...]] = (
    "service_case_opened",
    "service_case_closed",
    "complaint",
    "purchase",
    "consent_changed",
    "contact",
    "stock_changed",
    "identify",
)
#: Scopes an API key of the decision service may hold (docs/security.md).
#: ``agent``: the agent console (decide in service mode, record outcomes and case
#: resolutions, read the customer's record masked); ``admin`` adds consent changes on the
#: customer's request and erasure.
API_SCOPES: Final[tuple[str, ...]] = ("decide", "events", "admin", "agent")
#: Event types about a product rather than a customer (sent without a ``customer``).
PRODUCT_EVENT_TYPES: Final[tuple[str, ...]] = ("stock_changed",)
#: ``event_type`` values of the app and web event exports (docs/data-dictionary.md).
APP_EVENT_TYPES: Final[tuple[str, ...]] = (
    "open",
    "view_product",
    "add_to_cart",
    "view_offer",
    "account",
)
WEB_EVENT_TYPES: Final[tuple[str, ...]] = ("page_view", "login", "loan_check", "configurator_view")
#: The implicit action "contact nobody": always available, never declared in the catalog,
#: and the control arm of every experiment.
NO_ACTION: Final = "no_action"
#: The ``group`` of a decision (the decision log, ``/decide``, batch output): ``decided``
#: gets the engine's choice (``no_action`` included), ``holdout`` is the measurement
#: holdout and gets nothing. Lift is ``decided`` against ``holdout``.
DECIDED: Final = "decided"
HOLDOUT: Final = "holdout"
DECISION_GROUPS: Final[tuple[str, ...]] = (DECIDED, HOLDOUT)
#: Group names that logs written by earlier versions hold, read as today's names
#: (``nextbest.decisions.decision_log.current_group``); nothing writes them.
RETIRED_GROUPS: Final[dict[str, str]] = {"treatment": DECIDED}
#: What the decision service needs at run time; a failure of one is answered with 503 and
#: the reason ``<dependency>_unavailable`` (docs/operations.md, "Failure modes").
DEPENDENCIES: Final[tuple[str, ...]] = ("features", "ledger", "decision_log", "model")

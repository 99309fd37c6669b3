"""The words every layer shares, defined once: channels, purposes, action kinds,
identifier types, event types, API key scopes and the implicit "no action".

Order matters where a tuple names columns (consent and contact features are built per
purpose and channel in this order) and where it becomes an OpenAPI enum, so append,
never reorder. Pydantic fields derive their ``Literal`` from these tuples
(``Literal[CHANNELS]``), so the API schema and the validation cannot drift apart.
"""

from __future__ import annotations

from typing import Final

#: Delivery channels of an action (and of consent and contact history).
CHANNELS: Final[tuple[str, ...]] = ("email", "sms", "push", "web", "app", "call_center")
#: Purposes consent is given for and an action is sent under.
PURPOSES: Final[tuple[str, ...]] = ("marketing", "profiling", "service")
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
)
#: Scopes an API key of the decision service may hold (docs/security.md).
API_SCOPES: Final[tuple[str, ...]] = ("decide", "events", "admin")
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

"""The world's fixed terms: product categories, the products on sale, the campaign actions
(arms), what is out of stock, and the time spans every step measures in (a day, the
history, the complaint, repeat-interest and outcome windows).

Channels, purposes and the control arm are ``nextbest.core.vocabulary``'s demo defaults, imported
here once so that the rest of the generator takes them from this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from nextbest.core.vocabulary import DEMO_CHANNELS as CHANNELS
from nextbest.core.vocabulary import DEMO_PURPOSES as PURPOSES

__all__ = [
    "ACTIONS",
    "CATEGORIES",
    "CHANNELS",
    "COMPLAINT_WINDOW_DAYS",
    "DAY",
    "DEFAULT_AS_OF",
    "HISTORY_DAYS",
    "OUTCOME_WINDOW_DAYS",
    "PRODUCTS",
    "PURPOSES",
    "REPEAT_WINDOW_DAYS",
    "Action",
    "Product",
]


CATEGORIES: tuple[str, ...] = ("phones", "accessories", "broadband", "insurance", "loans")
DEFAULT_AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Product:
    """A sellable product; ``price`` in GBP, ``margin`` as a share of price."""

    product_id: str
    name: str
    category: str
    price: float
    margin: float


@dataclass(frozen=True)
class Action:
    """A campaign arm (next-best action) and what it sells, if anything."""

    action_id: str
    channel: str
    purpose: str
    kind: str  # upsell | cross_sell | retention | service
    category: str | None
    product_id: str | None


PRODUCTS: tuple[Product, ...] = (
    Product("phone_basic", "Basic smartphone", "phones", 199.0, 0.12),
    Product("phone_premium", "Premium smartphone", "phones", 899.0, 0.18),
    Product("phone_refurb", "Refurbished smartphone", "phones", 299.0, 0.25),
    Product("acc_case", "Protective case", "accessories", 25.0, 0.55),
    Product("acc_earbuds", "Wireless earbuds", "accessories", 129.0, 0.40),
    Product("acc_charger", "Fast charger", "accessories", 35.0, 0.50),
    Product("bb_standard", "Broadband standard (12 months)", "broadband", 360.0, 0.30),
    Product("bb_fibre", "Fibre broadband (12 months)", "broadband", 540.0, 0.35),
    Product("ins_device", "Device insurance (12 months)", "insurance", 96.0, 0.45),
    Product("ins_home", "Home insurance (12 months)", "insurance", 240.0, 0.35),
    Product("loan_personal", "Personal loan", "loans", 1200.0, 0.08),
    Product("loan_device", "Device finance", "loans", 600.0, 0.10),
)

ACTIONS: tuple[Action, ...] = (
    Action("email_phone_upgrade", "email", "marketing", "upsell", "phones", "phone_premium"),
    Action("email_broadband_bundle", "email", "marketing", "cross_sell", "broadband", "bb_fibre"),
    Action(
        "sms_accessory_discount", "sms", "marketing", "cross_sell", "accessories", "acc_earbuds"
    ),
    Action("push_insurance_offer", "push", "marketing", "cross_sell", "insurance", "ins_device"),
    Action("web_loan_banner", "web", "marketing", "cross_sell", "loans", "loan_personal"),
    Action("app_loyalty_bonus", "app", "marketing", "retention", None, None),
    Action("call_retention_offer", "call_center", "marketing", "retention", None, None),
    Action("email_service_tips", "email", "service", "service", None, None),
)

# Products that are out of stock (serving must never offer them).
_OUT_OF_STOCK = frozenset({"phone_refurb", "acc_charger"})


DAY = 86_400
HISTORY_DAYS = 730
COMPLAINT_WINDOW_DAYS = 90
REPEAT_WINDOW_DAYS = 7
OUTCOME_WINDOW_DAYS = 30


def _product_arrays() -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    price = np.array([p.price for p in PRODUCTS])
    cat = np.array([CATEGORIES.index(p.category) for p in PRODUCTS])
    by_cat = [np.flatnonzero(cat == c) for c in range(len(CATEGORIES))]
    return price, cat, by_cat

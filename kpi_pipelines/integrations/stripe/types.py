"""Pydantic models of the Stripe objects the adapter lands and the metrics read.

Only the fields we use are declared (and validated); the rest of each object is kept as
it came in raw_records, so a metric fix can be recomputed without calling Stripe again.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kpi_pipelines.integrations.shared.connection_settings import ConnectionSettings


class StripeObject(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    object: str
    created: int | None = None


class Recurring(BaseModel):
    model_config = ConfigDict(extra="ignore")

    interval: Literal["day", "week", "month", "year"]
    interval_count: int = Field(ge=1)
    usage_type: Literal["licensed", "metered"] = "licensed"


class PriceTier(BaseModel):
    model_config = ConfigDict(extra="ignore")

    up_to: int | None
    unit_amount: int | None = None
    unit_amount_decimal: str | None = None
    flat_amount: int | None = None
    flat_amount_decimal: str | None = None


class Price(StripeObject):
    currency: str = Field(min_length=3, max_length=3)
    unit_amount: int | None = None
    unit_amount_decimal: str | None = None
    billing_scheme: Literal["per_unit", "tiered"] = "per_unit"
    tiers_mode: Literal["graduated", "volume"] | None = None
    tiers: list[PriceTier] | None = None
    recurring: Recurring | None = None
    type: Literal["one_time", "recurring"] = "recurring"


class Coupon(StripeObject):
    duration: Literal["forever", "once", "repeating"]
    percent_off: float | None = None
    amount_off: int | None = None
    currency: str | None = None


class Customer(StripeObject):
    email: str | None = None


class SubscriptionItem(StripeObject):
    price: Price
    quantity: int | None = None


class ItemList(BaseModel):
    model_config = ConfigDict(extra="ignore")

    data: list[SubscriptionItem]
    has_more: bool = False


SubscriptionStatus = Literal[
    "incomplete",
    "incomplete_expired",
    "trialing",
    "active",
    "past_due",
    "canceled",
    "unpaid",
    "paused",
]


class Subscription(StripeObject):
    customer: str
    currency: str
    status: SubscriptionStatus
    start_date: int
    trial_start: int | None = None
    trial_end: int | None = None
    canceled_at: int | None = None
    ended_at: int | None = None
    cancel_at_period_end: bool = False
    items: ItemList
    discounts: list[Any] = Field(default_factory=list)

    @field_validator("customer", mode="before")
    @classmethod
    def _customer_id(cls, value: Any) -> Any:
        return value.get("id") if isinstance(value, dict) else value


class InvoiceLine(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    amount: int
    currency: str
    quantity: int | None = None
    period: dict[str, int]
    parent: dict[str, Any] | None = None
    pricing: dict[str, Any] | None = None


class LineList(BaseModel):
    model_config = ConfigDict(extra="ignore")

    data: list[InvoiceLine]
    has_more: bool = False


class Invoice(StripeObject):
    customer: str | None = None
    currency: str
    status: str | None = None
    lines: LineList
    status_transitions: dict[str, int | None] = Field(default_factory=dict)
    discounts: list[Any] = Field(default_factory=list)


class Charge(StripeObject):
    amount: int
    amount_captured: int = 0
    amount_refunded: int = 0
    currency: str
    status: str
    customer: str | None = None


class Refund(StripeObject):
    amount: int
    currency: str
    status: str | None = None
    charge: str | None = None


class BalanceTransaction(StripeObject):
    amount: int
    fee: int
    net: int
    currency: str
    type: str
    reporting_category: str | None = None


class Event(StripeObject):
    type: str
    data: dict[str, Any]

    @property
    def changed_object(self) -> dict[str, Any]:
        return self.data.get("object") or {}


class PreviousSubscription(BaseModel):
    """An event's `previous_attributes` of a subscription: the old values of what changed
    (only those the metrics read are validated)."""

    model_config = ConfigDict(extra="ignore")

    status: SubscriptionStatus | None = None
    items: ItemList | None = None
    discounts: list[Any] | None = None


class SubscriptionEventData(BaseModel):
    model_config = ConfigDict(extra="ignore")

    object: Subscription
    previous_attributes: PreviousSubscription | None = None


class SubscriptionEvent(StripeObject):
    """A `customer.subscription.*` event: the subscription after the change, and before it.
    An event of another type (a list that ignored the `types` filter) has no `data` here: it
    is skipped, not rejected."""

    type: str
    data: SubscriptionEventData | None

    @model_validator(mode="before")
    @classmethod
    def _only_subscription_events(cls, value: Any) -> Any:
        if isinstance(value, dict) and not str(value.get("type", "")).startswith(
            "customer.subscription."
        ):
            return {**value, "data": None}
        return value


class Account(BaseModel):
    """`GET /v1/account`: the Stripe account an API key belongs to (only its id is read)."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(pattern=r"^acct_[0-9A-Za-z]{1,255}$")
    object: Literal["account"]


class StripeConnectionSettings(ConnectionSettings):
    """What a stripe connection stores besides the names of its secrets' variables."""

    # A Connect platform's connected account: its events on /stripe come to this connection
    # once a sync has proved, with the connection's own key, that the key belongs to it.
    account_id: str | None = None

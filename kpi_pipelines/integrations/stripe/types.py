"""Pydantic models of the Stripe objects the adapter lands and the metrics read.

Only the fields we use are declared (and validated); the rest of each object is kept as
it came in raw_records, so a metric fix can be recomputed without calling Stripe again.
Each declared field is typed as Stripe's API reference types it: currencies are three
lowercase letters, amounts and quantities integers of the minor unit (non-negative where
Stripe says so), `*_decimal` amounts decimal strings of at most 12 decimal places,
timestamps unix seconds. The metrics' SQL casts these fields, so a record outside them is
rejected (named in the run, the rest stored) instead of failing the metrics or counting a
wrong amount.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)

from kpi_pipelines.integrations.shared.connection_settings import ConnectionSettings

# The largest integer JSON carries exactly: bounds every amount and quantity the SQL casts.
_MAX_INTEGER = 2**53 - 1
Currency = Annotated[str, StringConstraints(pattern=r"^[a-z]{3}$")]
# 0001-01-01 .. 9999-12-31: what PostgreSQL's to_timestamp takes
Timestamp = Annotated[StrictInt, Field(ge=0, le=253_402_300_799)]
Amount = Annotated[StrictInt, Field(ge=-_MAX_INTEGER, le=_MAX_INTEGER)]  # minor units, signed
NonNegativeAmount = Annotated[StrictInt, Field(ge=0, le=_MAX_INTEGER)]
Quantity = NonNegativeAmount
# A non-negative decimal in minor units, at most 12 decimal places ("0.05", "2000")
DecimalAmount = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,20}(\.[0-9]{1,12})?$")]
Percentage = Annotated[float, Field(strict=True, ge=0, le=100)]


def _id_of(value: Any) -> Any:
    """An expanded object's id (customers, subscriptions, charges)."""
    return value.get("id") if isinstance(value, dict) else value


# An expandable field read as the id of its object
ObjectId = Annotated[str, BeforeValidator(_id_of)]


def _id_or_object(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """An expandable field: an id as it is, an expanded object validated as its model (so a
    problem is named at the object's own fields, not at each branch of a union)."""
    return value if isinstance(value, str) else handler(value)


class StripeObject(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    object: str
    created: Timestamp | None = None


class Recurring(BaseModel):
    model_config = ConfigDict(extra="ignore")

    interval: Literal["day", "week", "month", "year"]
    interval_count: Annotated[StrictInt, Field(ge=1, le=10_000)]
    usage_type: Literal["licensed", "metered"] = "licensed"


class PriceTier(BaseModel):
    model_config = ConfigDict(extra="ignore")

    up_to: Annotated[StrictInt, Field(ge=1, le=_MAX_INTEGER)] | None
    unit_amount: NonNegativeAmount | None = None
    unit_amount_decimal: DecimalAmount | None = None
    flat_amount: NonNegativeAmount | None = None
    flat_amount_decimal: DecimalAmount | None = None


class TransformQuantity(BaseModel):
    """Package pricing: the quantity divided by `divide_by`, rounded up or down."""

    model_config = ConfigDict(extra="ignore")

    divide_by: Annotated[StrictInt, Field(ge=1, le=_MAX_INTEGER)]
    round: Literal["up", "down"]


TaxBehavior = Literal["exclusive", "inclusive", "unspecified"]


class PriceCurrencyOption(BaseModel):
    """A price's amount in another currency (`currency_options`); its tiers only when
    expanded."""

    model_config = ConfigDict(extra="ignore")

    unit_amount: NonNegativeAmount | None = None
    unit_amount_decimal: DecimalAmount | None = None
    tax_behavior: TaxBehavior | None = None
    tiers: list[PriceTier] | None = None


class Price(StripeObject):
    currency: Currency
    unit_amount: NonNegativeAmount | None = None
    unit_amount_decimal: DecimalAmount | None = None
    billing_scheme: Literal["per_unit", "tiered"] = "per_unit"
    tiers_mode: Literal["graduated", "volume"] | None = None
    tiers: list[PriceTier] | None = None
    recurring: Recurring | None = None
    type: Literal["one_time", "recurring"] = "recurring"
    tax_behavior: TaxBehavior | None = None
    transform_quantity: TransformQuantity | None = None
    currency_options: dict[Currency, PriceCurrencyOption] | None = None

    def options_without_tiers(self) -> list[str]:
        """The currencies of a tiered price's options whose tiers were not sent (each must
        be expanded by name)."""
        if self.billing_scheme != "tiered" or not self.currency_options:
            return []
        return sorted(
            currency
            for currency, option in self.currency_options.items()
            if currency != self.currency and option.tiers is None
        )


class CouponAmount(BaseModel):
    model_config = ConfigDict(extra="ignore")

    amount_off: NonNegativeAmount


class AppliesTo(BaseModel):
    model_config = ConfigDict(extra="ignore")

    products: list[str] = Field(default_factory=list)


class Coupon(StripeObject):
    duration: Literal["forever", "once", "repeating"]
    duration_in_months: Annotated[StrictInt, Field(ge=1)] | None = None
    percent_off: Annotated[float, Field(strict=True, gt=0, le=100)] | None = None
    amount_off: NonNegativeAmount | None = None
    currency: Currency | None = None
    currency_options: dict[Currency, CouponAmount] | None = None
    applies_to: AppliesTo | None = None


class DiscountSource(BaseModel):
    model_config = ConfigDict(extra="ignore")

    coupon: Annotated[Coupon, WrapValidator(_id_or_object)] | None = None


class Discount(BaseModel):
    """A coupon applied to a subscription, one of its items, or an invoice."""

    model_config = ConfigDict(extra="ignore")

    id: str
    start: Timestamp
    end: Timestamp | None = None
    subscription: str | None = None
    subscription_item: str | None = None
    invoice: str | None = None  # a discount of this invoice only
    invoice_item: str | None = None
    source: DiscountSource | None = None
    coupon: Annotated[Coupon, WrapValidator(_id_or_object)] | None = None  # before 2024-06


DiscountRef = Annotated[Discount, WrapValidator(_id_or_object)]


class TaxRate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    percentage: Percentage
    inclusive: bool = False


class Customer(StripeObject):
    email: str | None = None


class SubscriptionItem(StripeObject):
    price: Price
    quantity: Quantity | None = None
    discounts: list[DiscountRef] = Field(default_factory=list)
    tax_rates: list[TaxRate] | None = None


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
    customer: ObjectId
    currency: Currency
    status: SubscriptionStatus
    start_date: Timestamp
    trial_start: Timestamp | None = None
    trial_end: Timestamp | None = None
    canceled_at: Timestamp | None = None
    ended_at: Timestamp | None = None
    cancel_at_period_end: bool = False
    items: ItemList
    discounts: list[DiscountRef] = Field(default_factory=list)
    default_tax_rates: list[TaxRate] | None = None


class Period(BaseModel):
    model_config = ConfigDict(extra="ignore")

    start: Timestamp
    end: Timestamp


class SubscriptionItemDetails(BaseModel):
    model_config = ConfigDict(extra="ignore")

    subscription: str | None = None
    subscription_item: str | None = None
    proration: bool = False


class LineParent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str | None = None
    subscription_item_details: SubscriptionItemDetails | None = None


class PriceDetails(BaseModel):
    model_config = ConfigDict(extra="ignore")

    price: str | None = None  # the price's id (the adapter does not expand it)


class Pricing(BaseModel):
    model_config = ConfigDict(extra="ignore")

    price_details: PriceDetails | None = None
    unit_amount_decimal: DecimalAmount | None = None


class LineTax(BaseModel):
    model_config = ConfigDict(extra="ignore")

    amount: Amount
    taxable_amount: Amount | None = None
    tax_behavior: Literal["exclusive", "inclusive"] | None = None


class DiscountAmount(BaseModel):
    model_config = ConfigDict(extra="ignore")

    amount: Amount  # a credit line's discount may be negative (flexible billing mode)


class InvoiceLine(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    amount: Amount
    currency: Currency
    quantity: Quantity | None = None
    quantity_decimal: DecimalAmount | None = None
    period: Period
    parent: LineParent | None = None
    pricing: Pricing | None = None
    taxes: list[LineTax] | None = None
    discount_amounts: list[DiscountAmount] | None = None
    # before 2025-03-31 (basil)
    subscription_item: str | None = None
    price: Price | None = None


class LineList(BaseModel):
    model_config = ConfigDict(extra="ignore")

    data: list[InvoiceLine]
    has_more: bool = False


class StatusTransitions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    finalized_at: Timestamp | None = None
    marked_uncollectible_at: Timestamp | None = None
    paid_at: Timestamp | None = None
    voided_at: Timestamp | None = None


class SubscriptionDetails(BaseModel):
    model_config = ConfigDict(extra="ignore")

    subscription: ObjectId | None = None


class InvoiceParent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    subscription_details: SubscriptionDetails | None = None


class Invoice(StripeObject):
    customer: ObjectId | None = None
    currency: Currency
    status: Literal["draft", "open", "paid", "uncollectible", "void"] | None = None
    lines: LineList
    status_transitions: StatusTransitions = Field(default_factory=StatusTransitions)
    discounts: list[DiscountRef] = Field(default_factory=list)
    attempt_count: Annotated[StrictInt, Field(ge=0)] = 0
    amount_due: NonNegativeAmount | None = None
    amount_paid: NonNegativeAmount | None = None
    amount_remaining: NonNegativeAmount | None = None
    subtotal: Amount | None = None
    total: Amount | None = None
    parent: InvoiceParent | None = None
    subscription: ObjectId | None = None  # before 2025-03-31 (basil)


class Charge(StripeObject):
    amount: NonNegativeAmount
    amount_captured: NonNegativeAmount = 0
    amount_refunded: NonNegativeAmount = 0
    currency: Currency
    status: Literal["succeeded", "pending", "failed"]
    customer: ObjectId | None = None


class Refund(StripeObject):
    amount: NonNegativeAmount
    currency: Currency
    status: str | None = None
    charge: ObjectId | None = None


class BalanceTransaction(StripeObject):
    amount: Amount
    fee: Amount
    net: Amount
    currency: Currency
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
    discounts: list[DiscountRef] | None = None
    default_tax_rates: list[TaxRate] | None = None


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

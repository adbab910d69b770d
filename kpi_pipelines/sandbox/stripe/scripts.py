"""The vocabulary of scripted customers: prices, coupons, items, and the events of a
subscription's life (see scenarios.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from kpi_pipelines.sandbox.stripe.catalog import (
    Tier,
)

At = float | int | datetime

_INTERVALS = ("day", "week", "month", "year")
DEFAULT_CURRENCIES = ("usd", "eur", "gbp", "jpy")

# ---------------------------------------------------------------------------------------------
# The script


Amount = int | str  # minor units; a str is a decimal amount (unit_amount_decimal), "0.5"


def _exact(value: Amount | Decimal, what: str) -> int | Decimal:
    """A minor-unit amount as the catalog keeps it: an int, or a Decimal when fractional
    (at most 12 decimal places and not negative, as Stripe accepts)."""
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{what} must be >= 0")
        return value
    try:
        exact = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{what}: {value!r} is not a decimal amount") from None
    exponent = exact.as_tuple().exponent
    if not exact.is_finite() or exact < 0 or (isinstance(exponent, int) and exponent < -12):
        raise ValueError(f"{what}: {value!r} is not an amount >= 0 with at most 12 decimals")
    return int(exact) if exact == exact.to_integral_value() else exact


def _tiers(tiers: tuple) -> tuple[Tier, ...]:
    out = tuple(
        t if isinstance(t, Tier) else Tier(t[0], _exact(t[1], "a tier's unit amount"), t[2])
        for t in tiers
    )
    if not out or out[-1].up_to is not None:
        raise ValueError("the last tier must be unbounded (up_to None)")
    return out


@dataclass(frozen=True)
class PriceSpec:
    """A recurring price; amounts in minor units of the currency of the customer using it.

    Per unit (`unit_amount`; a str is a decimal amount, Stripe's `unit_amount_decimal`, which
    each line rounds to the minor unit) or tiered (`tiers` of (up_to, unit_amount,
    flat_amount), the last one unbounded, and `tiers_mode` graduated or volume); licensed or
    metered. `transform_quantity` (divide_by, "up" | "down") bills a per-unit price by
    packages: $30 per 10 seats, rounded up, is $90 at 25 seats. `product` is the key of a
    catalog product (starter, pro, business, seats, volume, storage, api).

    Multi-currency: `currency` is the price's own currency and `currency_options` its amount
    (or tiers) in others, ((currency, amount or tiers), ...); a subscription in one of those
    currencies bills that amount. Without `currency`, each customer's currency gets a price
    of its own with these amounts.
    """

    unit_amount: Amount | None = None
    interval: str = "month"
    interval_count: int = 1
    tiers: tuple[Tier | tuple[int | None, Amount, int], ...] | None = None
    tiers_mode: str | None = None
    usage_type: str = "licensed"
    product: str = "pro"
    nickname: str | None = None
    # Stripe's price tax_behavior: "inclusive" (the amount includes the customer's tax,
    # CustomerScript.tax) or "exclusive" (the tax is added on top).
    tax_behavior: str = "exclusive"
    transform_quantity: tuple[int, str] | None = None
    currency: str | None = None
    currency_options: tuple[tuple[str, Amount | tuple], ...] = ()

    def __post_init__(self) -> None:
        if self.tax_behavior not in ("exclusive", "inclusive"):
            raise ValueError("tax_behavior must be exclusive or inclusive")
        if self.interval not in _INTERVALS:
            raise ValueError(f"interval must be one of {_INTERVALS}, not {self.interval!r}")
        if self.interval_count < 1:
            raise ValueError("interval_count must be >= 1")
        if self.usage_type not in ("licensed", "metered"):
            raise ValueError("usage_type must be licensed or metered")
        if self.tiers is not None:
            object.__setattr__(self, "tiers", _tiers(tuple(self.tiers)))
            if self.tiers_mode not in ("graduated", "volume"):
                raise ValueError("a tiered price needs tiers_mode graduated or volume")
            if self.unit_amount is not None:
                raise ValueError("a tiered price has no unit_amount")
            if self.transform_quantity is not None:
                raise ValueError("transform_quantity is incompatible with tiers (Stripe)")
        elif self.unit_amount is None:
            raise ValueError("a per-unit price needs a unit_amount >= 0")
        else:
            object.__setattr__(self, "unit_amount", _exact(self.unit_amount, "unit_amount"))
        if self.transform_quantity is not None:
            divide_by, rounding = self.transform_quantity
            if not isinstance(divide_by, int) or divide_by < 1 or rounding not in ("up", "down"):
                raise ValueError("transform_quantity is (divide_by >= 1, 'up' or 'down')")
        options = []
        for currency, value in self.currency_options:
            if isinstance(value, tuple) != (self.tiers is not None):
                raise ValueError(f"the {currency} option needs tiers exactly when the price has")
            value = _tiers(value) if isinstance(value, tuple) else _exact(value, currency)
            options.append((currency.lower(), value))
        object.__setattr__(self, "currency_options", tuple(options))
        if options and self.currency is None:
            raise ValueError("currency_options need the price's own currency")
        if self.currency is not None:
            object.__setattr__(self, "currency", self.currency.lower())

    @property
    def licensed(self) -> bool:
        return self.usage_type == "licensed"


@dataclass(frozen=True)
class CouponSpec:
    """A coupon: `percent_off` or `amount_off` (minor units of the customer's currency; with
    `currency`, of that currency, and `currency_options` ((currency, amount_off), ...) in
    others). `applies_to`: the catalog products (keys) it is limited to, Stripe's
    applies_to.products: on a subscription it discounts only their items."""

    percent_off: float | None = None
    amount_off: int | None = None
    duration: str = "forever"  # forever | once | repeating
    duration_in_months: int | None = None
    id: str | None = None
    name: str | None = None
    currency: str | None = None
    currency_options: tuple[tuple[str, int], ...] = ()
    applies_to: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.percent_off is None) == (self.amount_off is None):
            raise ValueError("a coupon has either percent_off or amount_off")
        if self.percent_off is not None and not 0 < self.percent_off <= 100:
            raise ValueError("percent_off is in (0, 100]")
        if self.amount_off is not None and self.amount_off < 1:
            raise ValueError("amount_off is a positive amount")
        if (self.currency is not None or self.currency_options) and self.amount_off is None:
            raise ValueError("currency and currency_options go with amount_off")
        if self.currency_options and self.currency is None:
            raise ValueError("currency_options need the coupon's own currency")
        if self.duration not in ("forever", "once", "repeating"):
            raise ValueError("duration must be forever, once or repeating")
        if (self.duration == "repeating") != (self.duration_in_months is not None):
            raise ValueError("duration_in_months goes with (and only with) duration repeating")


@dataclass(frozen=True)
class TaxRateSpec:
    """A manual tax rate (Stripe's TaxRate object): `percentage`, `inclusive` (included in the
    prices it applies to) or not. Given to a subscription (`default_tax_rates`) or an item
    (`tax_rates`, which then replace the subscription's on that item)."""

    percentage: float
    inclusive: bool = False
    display_name: str = "VAT"
    country: str | None = None  # default: the customer's currency's country

    def __post_init__(self) -> None:
        if not 0 <= self.percentage < 100:
            raise ValueError("a tax rate's percentage is in [0, 100)")


def _tax_rates(rates: tuple) -> tuple[TaxRateSpec, ...]:
    out = tuple(r if isinstance(r, TaxRateSpec) else TaxRateSpec(float(r)) for r in rates)
    if len(out) > 1:
        raise ValueError("one tax rate per subscription or item is simulated")
    return out


@dataclass(frozen=True)
class ItemScript:
    """A subscription item; a metered one reports `usage` units every period (billed on the
    next invoice) and has no quantity."""

    price: PriceSpec
    quantity: int | None = 1
    usage: int = 0
    coupon: CouponSpec | None = None  # a discount on this item only (its `discounts`)
    tax_rates: tuple[TaxRateSpec, ...] = ()  # the item's own manual tax rate

    def __post_init__(self) -> None:
        object.__setattr__(self, "tax_rates", _tax_rates(tuple(self.tax_rates)))


# Stripe's proration_behavior of an update: `create_prorations` (its API default: the
# proration lines become pending invoice items, billed on the next invoice), `none` (no
# proration lines at all) or `always_invoice` (an invoice with the prorations at once). The
# scripts default to always_invoice, what they always did.
PRORATION_BEHAVIORS = ("always_invoice", "create_prorations", "none")


def _check_proration(behavior: str) -> None:
    if behavior not in PRORATION_BEHAVIORS:
        raise ValueError(f"proration_behavior must be one of {PRORATION_BEHAVIORS}")


@dataclass(frozen=True)
class Change:
    at: At
    price: PriceSpec | None = None
    quantity: int | None = None
    item: int = 0  # index among the subscription's items, in the order they were added
    proration_behavior: str = "always_invoice"
    # Stripe's billing_cycle_anchor of an update: "unchanged", or "now" (a new billing period
    # starts at `at`, invoiced at once; the unused time is credited unless proration none).
    billing_cycle_anchor: str = "unchanged"

    def __post_init__(self) -> None:
        _check_proration(self.proration_behavior)
        if self.billing_cycle_anchor not in ("unchanged", "now"):
            raise ValueError("billing_cycle_anchor must be unchanged or now")


@dataclass(frozen=True)
class AddItem:
    at: At
    price: PriceSpec
    quantity: int = 1
    proration_behavior: str = "always_invoice"

    def __post_init__(self) -> None:
        _check_proration(self.proration_behavior)


@dataclass(frozen=True)
class RemoveItem:
    at: At
    item: int
    proration_behavior: str = "always_invoice"

    def __post_init__(self) -> None:
        _check_proration(self.proration_behavior)


@dataclass(frozen=True)
class AddCoupon:
    at: At
    coupon: CouponSpec
    item: int | None = None  # an item's index: a discount on that item only


@dataclass(frozen=True)
class InvoiceCoupon:
    """A coupon applied to one invoice only (Stripe's invoice `discounts`, set on the draft
    renewal): the first renewal invoice created after `at` takes it, whatever its duration;
    the subscription's discounts are unchanged."""

    at: At
    coupon: CouponSpec


@dataclass(frozen=True)
class Cancel:
    at: At
    at_period_end: bool = False


@dataclass(frozen=True)
class PaymentFails:
    at: At


@dataclass(frozen=True)
class MarkUnpaid:
    at: At


@dataclass(frozen=True)
class PaymentSucceeds:
    at: At


@dataclass(frozen=True)
class RetriesExhausted:
    """The last automatic retry of a failed renewal invoice fails at `at`; then Stripe does
    what the account's settings say (Billing > Revenue recovery): `subscription` canceled,
    unpaid or past_due (left as it is), and `invoice` open (left past due) or uncollectible."""

    at: At
    subscription: str
    invoice: str = "open"

    def __post_init__(self) -> None:
        if self.subscription not in ("canceled", "unpaid", "past_due"):
            raise ValueError("subscription must be canceled, unpaid or past_due")
        if self.invoice not in ("open", "uncollectible"):
            raise ValueError("invoice must be open or uncollectible")


@dataclass(frozen=True)
class Resume:
    """A `paused` subscription (a trial that ended without a payment method) resumes at `at`:
    the customer added a payment method; the billing cycle restarts with a new invoice."""

    at: At


@dataclass(frozen=True)
class PauseCollection:
    """Stripe's `pause_collection` set at `at`: the subscription stays `active` (it counts),
    and each renewal invoice created while collection is paused is `void` (voided at once),
    `keep_as_draft` (a draft with auto_advance false) or `mark_uncollectible` (finalized and
    marked uncollectible), never charged. `resumes_at`: Stripe clears pause_collection then;
    else a ResumeCollection does."""

    at: At
    behavior: str = "void"
    resumes_at: At | None = None

    def __post_init__(self) -> None:
        if self.behavior not in ("void", "keep_as_draft", "mark_uncollectible"):
            raise ValueError("behavior must be void, keep_as_draft or mark_uncollectible")


@dataclass(frozen=True)
class ResumeCollection:
    """pause_collection cleared at `at`: the next renewal invoices are collected again."""

    at: At


@dataclass(frozen=True)
class DraftRenewal:
    """The renewal invoice of the billing period containing `at` stays a draft: a minute
    after it is created (the integration answering invoice.created) its auto_advance is set
    to false (invoice.updated), so Stripe never finalizes it: no number, no payment. The
    subscription stays `active`."""

    at: At


@dataclass(frozen=True)
class Phase:
    """A phase of the subscription's schedule (SubscriptionScript.phases): from `at`, its first
    item has `price` and/or `quantity`, prorated as `proration_behavior` says (a schedule's
    default: create_prorations). The schedule (end_behavior release) is released when its last
    phase has run one billing period."""

    at: At
    price: PriceSpec | None = None
    quantity: int | None = None
    proration_behavior: str = "create_prorations"

    def __post_init__(self) -> None:
        _check_proration(self.proration_behavior)
        if self.price is None and self.quantity is None:
            raise ValueError("a phase changes the price and/or the quantity")


Event = (
    Change
    | AddItem
    | RemoveItem
    | AddCoupon
    | InvoiceCoupon
    | Cancel
    | PaymentFails
    | MarkUnpaid
    | PaymentSucceeds
    | RetriesExhausted
    | Resume
    | PauseCollection
    | ResumeCollection
    | DraftRenewal
)
_EVENT_TYPES = (
    Change,
    AddItem,
    RemoveItem,
    AddCoupon,
    InvoiceCoupon,
    Cancel,
    PaymentFails,
    MarkUnpaid,
    PaymentSucceeds,
    RetriesExhausted,
    Resume,
    PauseCollection,
    ResumeCollection,
    DraftRenewal,
)


def as_event(spec: Event | tuple) -> Event:
    """An event from its dataclass or its tuple spelling (see the module docstring)."""
    if isinstance(spec, _EVENT_TYPES):
        return spec
    if not isinstance(spec, tuple) or len(spec) < 2:
        raise ValueError(f"not an event: {spec!r}")
    kind, at, *rest = spec
    simple = {
        "past_due": PaymentFails,
        "payment_failed": PaymentFails,
        "unpaid": MarkUnpaid,
        "paid": PaymentSucceeds,
        "recovered": PaymentSucceeds,
        "cancel": Cancel,
        "resume": Resume,
        "resume_collection": ResumeCollection,
        "draft_renewal": DraftRenewal,
    }
    if kind in simple and not rest:
        return simple[kind](at)
    if kind == "cancel_at_period_end" and not rest:
        return Cancel(at, at_period_end=True)
    if kind in ("upgrade", "downgrade", "change", "quantity") and len(rest) == 1:
        [what] = rest
        if isinstance(what, PriceSpec):
            return Change(at, price=what)
        if isinstance(what, int):
            return Change(at, quantity=what)
        if isinstance(what, tuple) and len(what) == 2:
            return Change(at, price=what[0], quantity=what[1])
    if kind == "coupon" and len(rest) in (1, 2):
        return AddCoupon(at, *rest)
    if kind == "invoice_coupon" and len(rest) == 1:
        return InvoiceCoupon(at, rest[0])
    if kind == "add_item" and len(rest) in (1, 2):
        return AddItem(at, *rest)
    if kind == "remove_item" and len(rest) == 1:
        return RemoveItem(at, rest[0])
    if kind == "pause_collection" and len(rest) <= 2:
        return PauseCollection(at, *rest)
    if kind == "retries_exhausted" and len(rest) in (1, 2):
        return RetriesExhausted(at, *rest)
    raise ValueError(f"not an event: {spec!r}")


@dataclass(frozen=True)
class SubscriptionScript:
    """One subscription: `price` x `quantity` (shorthand for a first item) and/or `items`."""

    price: PriceSpec | None = None
    quantity: int = 1
    items: tuple[ItemScript, ...] = ()
    coupon: CouponSpec | None = None
    coupons: tuple[CouponSpec, ...] = ()  # more discounts, applied after `coupon`, in order
    trial_days: float = 0
    start: At | None = None  # default: when the customer is created
    events: tuple[Event | tuple, ...] = ()
    # The first invoice's payment fails at creation: `incomplete`, then `active` if a
    # PaymentSucceeds comes within 23 hours, else `incomplete_expired` (invoice voided).
    first_payment_fails: bool = False
    # No payment method when the trial ends: Stripe's
    # trial_settings.end_behavior.missing_payment_method, `pause` (status `paused` until a
    # Resume) or `cancel`. None: the customer has a payment method.
    missing_payment_method: str | None = None
    # Manual tax rates of the subscription (Stripe's default_tax_rates); the customer then
    # has no `tax` (automatic tax).
    default_tax_rates: tuple[TaxRateSpec, ...] = ()
    # A subscription schedule: the script's items are its first phase, these the next ones.
    phases: tuple[Phase, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "phases", tuple(self.phases))
        object.__setattr__(self, "default_tax_rates", _tax_rates(tuple(self.default_tax_rates)))
        object.__setattr__(self, "items", tuple(self.items))
        object.__setattr__(self, "coupons", tuple(self.coupons))
        object.__setattr__(self, "events", tuple(as_event(e) for e in self.events))
        if not self.item_scripts():
            raise ValueError("a subscription needs a price or items")
        if self.trial_days < 0:
            raise ValueError("trial_days must be >= 0")
        if self.first_payment_fails and self.trial_days:
            raise ValueError("first_payment_fails needs a first invoice to pay (no trial)")
        if self.missing_payment_method not in (None, "pause", "cancel"):
            raise ValueError("missing_payment_method must be pause or cancel (or None)")
        if self.missing_payment_method is not None and not self.trial_days:
            raise ValueError("missing_payment_method applies when a trial ends")

    def item_scripts(self) -> tuple[ItemScript, ...]:
        first = () if self.price is None else (ItemScript(self.price, self.quantity),)
        return first + self.items


@dataclass(frozen=True)
class CustomerScript:
    """A customer and its subscriptions (they may overlap or follow one another).

        `balance`: the customer's credit (negative) or debt (positive) balance when created.
        `tax`: a catalog tax rate key (us, de, fr, gb, jp) or a percentage (a VAT rate of its own),
        added on top of every invoice (exclusive), or included in the prices whose tax_behavior is
    inclusive.
    """

    subscriptions: tuple[SubscriptionScript, ...] = ()
    currency: str = "usd"
    created: At = 0
    tax: str | float | None = None
    name: str | None = None
    email: str | None = None
    # Stripe's customer `balance` when created (minor units): negative is a credit that the
    # next invoices use up (starting_balance/ending_balance/amount_due), positive is owed.
    balance: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "subscriptions", tuple(self.subscriptions))
        object.__setattr__(self, "currency", self.currency.lower())
        manual = any(
            sub.default_tax_rates or any(i.tax_rates for i in sub.item_scripts())
            for sub in self.subscriptions
        )
        if manual and self.tax is not None:
            raise ValueError("manual tax rates replace the customer's automatic `tax`: not both")


# ---------------------------------------------------------------------------------------------
# The simulation

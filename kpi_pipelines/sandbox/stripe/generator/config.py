"""What to simulate (`StripeSandboxConfig`) and the time units and event types it speaks in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import attrgetter

HOUR = 3_600
MINUTE = 60
# Everything that happens to an invoice, charge, refund or balance transaction (payment
# retries, dunning, refunds) happens within this long of its creation.
SETTLE = 32 * 86_400
CARD_DECLINED = ("card_declined", "Your card was declined.")
DEFAULT_START = datetime(2025, 1, 1, tzinfo=UTC)

# Streams within one customer's simulation (ties in `created` are broken by stream, then order).
# Random streams of a customer's timeline (orders same-second events: see CustomerSim.key).
STREAM_SUB = 0
STREAM_ONE_OFF = 1
STREAM_PROFILE = 2

# Every event type the simulation emits; a customer stores its events as codes into this.
EVENT_TYPES = (
    "customer.created",
    "customer.updated",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.trial_will_end",
    "invoice.created",
    "invoice.finalized",
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
    "invoice.marked_uncollectible",
    "charge.succeeded",
    "charge.failed",
    "charge.refunded",
    "refund.created",
    "product.created",
    "price.created",
    "coupon.created",
    "coupon.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "invoice.voided",
    "invoice.updated",
    "invoiceitem.created",
    "subscription_schedule.created",
    "subscription_schedule.updated",
    "subscription_schedule.completed",
    "subscription_schedule.released",
)
EVENT_CODE = {t: i for i, t in enumerate(EVENT_TYPES)}
BY_SEQ = attrgetter("seq")


@dataclass(frozen=True)
class StripeSandboxConfig:
    """What to simulate. Same config -> same objects, byte for byte."""

    seed: int = 0
    customers: int = 100
    start: datetime = DEFAULT_START
    now: datetime | None = None  # the simulated clock; default start + 365 days
    currencies: tuple[str, ...] = ("usd", "eur", "gbp", "jpy")
    account_id: str = "acct_1KpiSandbox0Demo"
    acquisition_days: float = 365.0
    # Some customers (about one in three) live a random billing-settings script instead
    # (variety.py): incomplete starts, dunning outcomes, paused trials, prorations, item and
    # multiple discounts, 100%-off coupons, tax-inclusive prices, pause_collection, drafts,
    # anchor resets, schedules. Off by default: the default business keeps its bytes.
    billing_variety: bool = False
    # The account's product records each customer's latest sign-in in the customer's
    # metadata (`last_sign_in`, a common integration): from `sign_ins_from` one of the first
    # `customers` signs in every `sign_in_seconds`, each in turn, a `customer.updated` event
    # apiece. Unset: nobody signs in again (the default business keeps its bytes). The demo
    # sets it, so `kpi-pipelines dev` shows webhooks within minutes.
    sign_ins_from: datetime | None = None
    sign_in_seconds: int = 180

    def __post_init__(self) -> None:
        if self.customers < 1:
            raise ValueError("customers must be >= 1")
        if self.start.tzinfo is None:
            raise ValueError("start must be timezone-aware (UTC)")
        object.__setattr__(self, "start", self.start.astimezone(UTC))
        now = self.now or (self.start + timedelta(days=365))
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware (UTC)")
        if now < self.start:
            raise ValueError("now must not be before start")
        object.__setattr__(self, "now", now.astimezone(UTC))
        object.__setattr__(self, "currencies", tuple(c.lower() for c in self.currencies))
        if not self.currencies:
            raise ValueError("at least one currency is needed")
        if self.sign_in_seconds < 1:
            raise ValueError("sign_in_seconds must be >= 1")
        if self.sign_ins_from is not None:
            if self.sign_ins_from.tzinfo is None:
                raise ValueError("sign_ins_from must be timezone-aware (UTC)")
            object.__setattr__(self, "sign_ins_from", self.sign_ins_from.astimezone(UTC))

    @property
    def start_ts(self) -> int:
        return int(self.start.timestamp())

    @property
    def now_ts(self) -> int:
        assert self.now is not None
        return int(self.now.timestamp())


# ---------------------------------------------------------------------------------------------

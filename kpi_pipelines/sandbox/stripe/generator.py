"""The simulated business: one independent, seeded simulation per customer.

Customer `i` arrives at `start + (i + u) * acquisition_days / customers` (u in [0, 1) from its
own generator), so customers are created in index order, `customers` of them over the first
`acquisition_days`, and the arrival continues at the same rate afterwards (advancing the clock
past the first year brings new customers). Each customer's life (subscriptions, invoices,
charges, refunds, events) is simulated by `simulate(i)` from `random.Random(f"{seed}:{i}:...")`
streams alone, so any customer can be rebuilt on demand without the others.

The simulation is causal: every random draw happens at the simulated time of the decision it
makes, and whole billing periods are drawn at their start, so simulating up to a later horizon
gives the same objects (same ids, same states) for everything that happened before the earlier
one. The sandbox simulates up to its clock (`now`) and `advance()` simply re-simulates to the new
clock. Objects are stored with their whole timeline (status changes, payment attempts, item
changes, refunds), and are rendered "as of" any instant: an event's `data.object` is the state
at the event, a list shows the state at `now`.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from random import Random

from kpi_pipelines.sandbox.stripe.catalog import (
    COUNTRY,
    DAY,
    TAX_BY_CURRENCY,
    Catalog,
    Coupon,
    Price,
    TaxRate,
    build_catalog,
    monthly_factor,
)
from kpi_pipelines.sandbox.stripe.ids import MAX_LOCAL, IdCodec

HOUR = 3_600
MINUTE = 60
# Everything that happens to an invoice, charge, refund or balance transaction (payment
# retries, dunning, refunds) happens within this long of its creation.
SETTLE = 32 * 86_400
CARD_DECLINED = ("card_declined", "Your card was declined.")
DEFAULT_START = datetime(2025, 1, 1, tzinfo=UTC)

# Streams within one customer's simulation (ties in `created` are broken by stream, then order).
_STREAM_SUB, _STREAM_ONE_OFF, _STREAM_PROFILE = 0, 1, 2

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
)
EVENT_CODE = {t: i for i, t in enumerate(EVENT_TYPES)}
_SEQ = attrgetter("seq")


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

    @property
    def start_ts(self) -> int:
        return int(self.start.timestamp())

    @property
    def now_ts(self) -> int:
        assert self.now is not None
        return int(self.now.timestamp())


# ---------------------------------------------------------------------------------------------
# Simulated objects. Plain __slots__ classes: a customer's simulation is a few hundred of them.


class Item:
    """A subscription item; `sub` is its subscription's index in the customer's `subs`."""

    __slots__ = ("created", "li", "removed_at", "states", "sub")

    def __init__(self, sub: int, li: int, created: int, price: Price, quantity: int | None):
        self.sub = sub
        self.li = li
        self.created = created
        self.removed_at: int | None = None
        self.states: list[tuple[int, Price, int | None]] = [(created, price, quantity)]

    def state_at(self, t: int) -> tuple[Price, int | None]:
        states = self.states
        i = len(states) - 1
        while i > 0 and states[i][0] > t:
            i -= 1
        return states[i][1], states[i][2]

    def alive_at(self, t: int) -> bool:
        return self.created <= t and (self.removed_at is None or t < self.removed_at)


class Discount:
    """A coupon applied to a subscription (`sub`: the subscription's index)."""

    __slots__ = ("coupon", "end", "li", "removed_at", "start", "sub", "used")

    def __init__(self, sub: int, li: int, coupon: Coupon, start: int, end: int | None) -> None:
        self.sub = sub
        self.li = li
        self.coupon = coupon
        self.start = start
        self.end = end
        self.removed_at: int | None = end
        self.used = False

    @property
    def created(self) -> int:
        return self.start

    def applies_to_invoice_at(self, t: int) -> bool:
        if self.start > t or (self.end is not None and t >= self.end):
            return False
        return not (self.coupon.duration == "once" and self.used)


class Line:
    """An invoice line (`invoice`: its invoice's index, set when the invoice is numbered)."""

    __slots__ = (
        "amount",
        "credited",
        "discounts",
        "end",
        "idx",
        "invoice",
        "item",
        "price",
        "proration",
        "quantity",
        "start",
        "tax",
    )

    def __init__(
        self,
        item: Item,
        price: Price,
        quantity: int | None,
        amount: int,
        start: int,
        end: int,
        proration: bool,
        credited: Line | None = None,
    ) -> None:
        self.item = item
        self.price = price
        self.quantity = quantity
        self.amount = amount
        self.start = start
        self.end = end
        self.proration = proration
        self.credited = credited
        self.discounts: list[tuple[Discount, int]] = _EMPTY
        self.tax = 0
        self.idx = 0
        self.invoice = -1

    def add_discount(self, disc: Discount, amount: int) -> None:
        if self.discounts is _EMPTY:
            self.discounts = []
        self.discounts.append((disc, amount))


_EMPTY: list = []  # shared empty list for attributes that are usually empty (never mutated)


class Invoice:
    """A subscription invoice (`sub`: the subscription's index)."""

    __slots__ = (
        "amount_due",
        "attempts",
        "billing_reason",
        "charges",
        "created",
        "discount_total",
        "discounts",
        "ending_balance",
        "finalized_at",
        "li",
        "lines",
        "marked_uncollectible_at",
        "number",
        "paid_at",
        "period_end",
        "period_start",
        "seq",
        "starting_balance",
        "sub",
        "subtotal",
        "tax",
        "total",
    )

    def __init__(self, sub: int, li: int, created: int, reason: str) -> None:
        self.sub = sub
        self.li = li
        self.created = created
        self.billing_reason = reason
        self.lines: list[Line] = []
        self.discounts: list[Discount] = []
        self.charges: list[Charge] = []
        # (time of a failed attempt, time of the next attempt or None)
        self.attempts: list[tuple[int, int | None]] = _EMPTY
        self.finalized_at = created
        self.paid_at: int | None = None
        self.marked_uncollectible_at: int | None = None
        self.subtotal = self.discount_total = self.tax = self.total = 0
        self.starting_balance = self.ending_balance = self.amount_due = 0
        self.period_start = self.period_end = created
        self.number = 0
        self.seq = 0


class Charge:
    """A charge (`invoice`: the invoice's index, -1 for a one-off charge)."""

    __slots__ = (
        "amount",
        "bt",
        "created",
        "description",
        "failure",
        "invoice",
        "li",
        "refunds",
        "seq",
        "status",
    )

    def __init__(self, created: int, amount: int, status: str, invoice: int, description: str):
        self.created = created
        self.amount = amount
        self.status = status
        self.invoice = invoice
        self.description = description
        self.failure: tuple[str, str] | None = None
        self.bt: BalanceTxn | None = None
        self.refunds: list[Refund] = _EMPTY
        self.li = 0
        self.seq = 0


class Refund:
    """A refund; `charge` is the refunded Charge while simulating, its index after finish()."""

    __slots__ = ("amount", "bt", "charge", "created", "li", "reason", "seq")

    def __init__(self, charge: Charge, created: int, amount: int, reason: str) -> None:
        self.charge: Charge | int = charge
        self.created = created
        self.amount = amount
        self.reason = reason
        self.bt: BalanceTxn | None = None
        self.li = 0
        self.seq = 0


class BalanceTxn:
    """A balance transaction; `source` is its Charge or Refund, their index after finish()."""

    __slots__ = ("amount", "created", "fee", "li", "seq", "source", "type")

    def __init__(self, source: Charge | Refund, created: int, amount: int, fee: int, type_: str):
        self.source: Charge | Refund | int = source
        self.created = created
        self.amount = amount
        self.fee = fee
        self.type = type_
        self.li = 0
        self.seq = 0

    @property
    def net(self) -> int:
        return self.amount - self.fee

    @property
    def available_on(self) -> int:
        return (self.created // DAY + 2) * DAY


class Sub:
    __slots__ = (
        "anchors",
        "cancel_at",
        "cancel_decided_at",
        "cancel_reason",
        "created",
        "discounts",
        "ended_at",
        "invoices",
        "items",
        "li",
        "periods",
        "status_log",
        "trial_end",
        "trial_start",
        "unpaid",
    )

    def __init__(self, li: int, created: int) -> None:
        self.li = li
        self.created = created
        self.trial_start: int | None = None
        self.trial_end: int | None = None
        self.status_log: list[tuple[int, str]] = []
        self.items: list[Item] = []
        self.periods: list[tuple[int, int]] = []
        self.anchors: list[tuple[int, int]] = []
        self.cancel_decided_at: int | None = None
        self.cancel_at: int | None = None
        self.ended_at: int | None = None
        self.cancel_reason: str | None = None
        self.discounts: list[Discount] = []
        self.invoices: list[Invoice] = []
        # (marked_uncollectible_at, paid_at or ended_at) of each unpaid spell
        self.unpaid: list[tuple[int, int | None]] = []

    def status_at(self, t: int) -> str:
        log = self.status_log
        i = len(log) - 1
        while i > 0 and log[i][0] > t:
            i -= 1
        return log[i][1]

    def period_at(self, t: int) -> tuple[int, int]:
        periods = self.periods
        i = len(periods) - 1
        while i > 0 and periods[i][0] > t:
            i -= 1
        return periods[i]

    def anchor_at(self, t: int) -> int:
        anchors = self.anchors
        i = len(anchors) - 1
        while i > 0 and anchors[i][0] > t:
            i -= 1
        return anchors[i][1]


class CustomerSim:
    """Everything one customer did, with each object's whole timeline."""

    __slots__ = (
        "_seq",
        "balance",
        "balance_log",
        "bts",
        "card",
        "charges",
        "ci",
        "country",
        "created",
        "currency",
        "delinquent_log",
        "discounts",
        "email",
        "email_log",
        "ev_code",
        "ev_obj",
        "ev_t",
        "events",
        "horizon",
        "invoice_prefix",
        "invoices",
        "items",
        "name",
        "next_number",
        "phone",
        "refunds",
        "subs",
        "tags",
        "tax",
    )

    def __init__(
        self, ci: int, created: int, currency: str, events: bool = True, horizon: int = 0
    ) -> None:
        self.ci = ci
        self.horizon = horizon  # simulated up to here (whole periods that start by then)
        self.created = created
        self.currency = currency
        self.subs: list[Sub] = []
        self.items: list[Item] = []
        self.invoices: list[Invoice] = []
        self.charges: list[Charge] = []
        self.refunds: list[Refund] = []
        self.bts: list[BalanceTxn] = []
        self.discounts: list[Discount] = []
        # (sort key, type, object) while simulating; finish() turns them into the ev_* arrays
        self.events: list[tuple[int, str, object]] | None = [] if events else None
        self.ev_t = array("q")
        self.ev_code = array("B")
        self.ev_obj: list[object] | None = []
        self.balance = 0
        self.balance_log: list[tuple[int, int]] = [(created, 0)]
        self.delinquent_log: list[tuple[int, bool]] = [(created, False)]
        self.email_log: list[tuple[int, str]] = []
        self.next_number = 1
        self.tags: set[str] = set()
        self.tax: TaxRate | None = None
        self._seq = 0
        self.name = self.email = self.phone = self.country = self.invoice_prefix = ""
        self.card: tuple[str, str, int, int, str] = ("visa", "4242", 12, 2030, "credit")

    def key(self, t: int, stream: int) -> int:
        """A unique sort key: by time, then stream, then emission order within the stream."""
        self._seq += 1
        return (t << 26) | (stream << 24) | self._seq

    def emit(self, t: int, type_: str, obj: object, stream: int = _STREAM_SUB) -> None:
        events = self.events
        if events is not None:
            self._seq += 1
            events.append(((t << 26) | (stream << 24) | self._seq, type_, obj))

    @property
    def has_events(self) -> bool:
        return self.ev_obj is not None

    @property
    def n_events(self) -> int:
        return len(self.ev_t)

    def event(self, li: int) -> tuple[int, str, object]:
        """(created, type, object) of the customer's li-th event (in time order)."""
        return self.ev_t[li], EVENT_TYPES[self.ev_code[li]], self.ev_obj[li]

    def log_at(self, log: list, t: int):
        i = len(log) - 1
        while i > 0 and log[i][0] > t:
            i -= 1
        return log[i][1]

    def finish(self) -> None:
        # Invoices are created in time order (their index is given at creation); the money
        # movements of one-off charges interleave, so those lists are sorted and numbered here.
        for lst in (self.charges, self.refunds, self.bts):
            lst.sort(key=_SEQ)
            for li, obj in enumerate(lst):
                obj.li = li
        # Back references become indices: the object graph has no cycles, so an evicted
        # simulation is freed by reference counting alone (no cyclic-GC work).
        for rf in self.refunds:
            rf.charge = rf.charge.li
        for bt in self.bts:
            bt.source = bt.source.li
        for inv in self.invoices:
            for idx, line in enumerate(inv.lines):
                line.idx = idx
                line.invoice = inv.li
        events = self.events
        if events is None:
            self.ev_obj = None  # simulated without events (see Generator.simulate)
        else:
            events.sort()
            if len(events) > MAX_LOCAL:
                raise RuntimeError("too many events for one customer")
            self.ev_t = array("q", [e[0] >> 26 for e in events])
            self.ev_code = array("B", [EVENT_CODE[e[1]] for e in events])
            self.ev_obj = [e[2] for e in events]
            self.events = None
        self.balance_log.sort(key=_first)
        self.delinquent_log.sort(key=_first)

    def visible(self, lst: list, now: int) -> int:
        """How many objects of a created-sorted list exist at `now`."""
        lo, hi = 0, len(lst)
        while lo < hi:
            mid = (lo + hi) // 2
            if lst[mid].created <= now:
                lo = mid + 1
            else:
                hi = mid
        return lo


def _first(entry: tuple) -> int:
    return entry[0]


# ---------------------------------------------------------------------------------------------
# Calendar arithmetic (Stripe keeps the anchor's day of month, clamped to the month's length).


def _civil(days: int) -> tuple[int, int, int]:
    """(year, month, day) of a day number since 1970-01-01 (Hinnant's algorithm)."""
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def _days(year: int, month: int, day: int) -> int:
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def add_months(ts: int, months: int) -> int:
    """`ts` plus calendar months, keeping the time of day and clamping the day of month."""
    days, secs = divmod(ts, DAY)
    year, month, day = _civil(days)
    m0 = month - 1 + months
    year, month = year + m0 // 12, m0 % 12 + 1
    last = _MONTH_DAYS[month - 1]
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        last = 29
    return _days(year, month, min(day, last)) * DAY + secs


def period_bound(anchor: int, interval: str, count: int, k: int) -> int:
    if interval == "month":
        return add_months(anchor, k * count)
    if interval == "year":
        return add_months(anchor, 12 * k * count)
    if interval == "week":
        return anchor + 7 * DAY * count * k
    return anchor + DAY * count * k


def fee_for(amount: int, currency: str) -> int:
    """Stripe's card processing fee in the charge currency."""
    if currency == "usd":
        return round(amount * 0.029) + 30
    if currency == "eur":
        return round(amount * 0.015) + 25
    if currency == "gbp":
        return round(amount * 0.015) + 20
    if currency == "jpy":
        return round(amount * 0.036)
    return round(amount * 0.029) + 30


_FIRST = (
    "Ada",
    "Grace",
    "Alan",
    "Linus",
    "Margaret",
    "Ken",
    "Barbara",
    "Dennis",
    "Frances",
    "Edsger",
    "Radia",
    "Tim",
    "Sophie",
    "Yukihiro",
    "Hedy",
    "Guido",
    "Katherine",
    "Niklaus",
    "Anita",
    "Bjarne",
    "Hanna",
    "Lars",
    "Mei",
    "Kenji",
    "Chloe",
    "Oliver",
    "Amelia",
)
_LAST = (
    "Lovelace",
    "Hopper",
    "Turing",
    "Torvalds",
    "Hamilton",
    "Thompson",
    "Liskov",
    "Ritchie",
    "Allen",
    "Dijkstra",
    "Perlman",
    "Berners-Lee",
    "Wilson",
    "Matsumoto",
    "Lamarr",
    "Rossum",
    "Johnson",
    "Wirth",
    "Borg",
    "Stroustrup",
    "Schmidt",
    "Nilsson",
    "Tanaka",
    "Sato",
)
_COMPANY = ("Labs", "Systems", "Analytics", "Studio", "Works", "Cloud", "Data", "Robotics")
_BRANDS = (("visa", "credit"), ("mastercard", "credit"), ("amex", "credit"), ("visa", "debit"))
_CURRENCY_WEIGHTS = {"usd": 0.55, "eur": 0.2, "gbp": 0.13, "jpy": 0.12}

# Plan mix at subscription start: (plan key, cumulative weight)
_PLANS = (
    ("starter_m", 0.20),
    ("pro_m", 0.40),
    ("business_m", 0.47),
    ("starter_y", 0.53),
    ("pro_y", 0.59),
    ("business_y", 0.62),
    ("starter_w", 0.69),
    ("pro_q", 0.75),
    ("pro_h", 0.80),
    ("seats_g", 0.90),
    ("volume_v", 1.00),
)

# Every case the mix must cover (tests assert each occurs).
MIX_CASES = (
    "interval_month",
    "interval_year",
    "interval_week",
    "interval_3_months",
    "interval_6_months",
    "quantity_above_one",
    "tiered_graduated",
    "tiered_volume",
    "metered",
    "addon_item",
    "coupon_forever_percent",
    "coupon_forever_amount",
    "coupon_once",
    "coupon_repeating",
    "coupon_added_later",
    "trial",
    "trial_converted",
    "trial_canceled",
    "payment_failed",
    "past_due_recovered",
    "unpaid",
    "unpaid_then_paid",
    "unpaid_then_canceled",
    "cancel_at_period_end",
    "cancel_immediately",
    "reactivation",
    "upgrade",
    "downgrade",
    "quantity_change",
    "item_added",
    "item_removed",
    "interval_change",
    "refund_full",
    "refund_partial",
    "one_off_charge",
    "failed_charge",
    "tax",
    "customer_credit_balance",
    "currency_usd",
    "currency_eur",
    "currency_gbp",
    "currency_jpy",
)


class Generator:
    """Simulates customers of one config up to a horizon (the sandbox clock)."""

    def __init__(self, config: StripeSandboxConfig, horizon: int | None = None) -> None:
        self.config = config
        self.codec = IdCodec(config.seed, config.account_id)
        self.start = config.start_ts
        self.horizon = config.now_ts if horizon is None else horizon
        self.catalog: Catalog = build_catalog(self.codec, config.currencies, self.start)
        self.slot = config.acquisition_days * DAY / config.customers
        weights = [_CURRENCY_WEIGHTS.get(c, 0.0) for c in config.currencies]
        if not any(weights):
            weights = [1.0] * len(config.currencies)
        total = sum(weights)
        acc, self._currency_cdf = 0.0, []
        for c, w in zip(config.currencies, weights, strict=True):
            acc += w / total
            self._currency_cdf.append((acc, c))

    # -- customers -----------------------------------------------------------------------------

    def customer_count(self, at: int) -> int:
        """How many customers exist at `at` (customers are created in index order)."""
        if at < self.start:
            return 0
        n = int((at - self.start) / self.slot)
        while n > 0 and self.customer_created(n - 1) > at:
            n -= 1
        while self.customer_created(n) <= at:
            n += 1
        return n

    def customer_created(self, ci: int) -> int:
        r = Random(f"{self.config.seed}:{ci}")
        return self.start + int((ci + r.random()) * self.slot)

    def header(self, ci: int, events: bool = False, horizon: int = 0) -> CustomerSim:
        """Customer ci without its history: identity, currency, tax, card, email changes.

        Cheap (one short random stream); what simulate() starts from, and what the API uses to
        render customers and charges from the index without simulating their histories.
        """
        r = Random(f"{self.config.seed}:{ci}")
        created = self.start + int((ci + r.random()) * self.slot)
        u = r.random()
        currency = self._currency_cdf[-1][1]
        for acc, c in self._currency_cdf:
            if u < acc:
                currency = c
                break
        cs = CustomerSim(ci, created, currency, events, horizon)
        first, last = _FIRST[r.randrange(len(_FIRST))], _LAST[r.randrange(len(_LAST))]
        company = f"{last} {_COMPANY[r.randrange(len(_COMPANY))]}"
        business = r.random() < 0.6
        cs.name = company if business else f"{first} {last}"
        handle = f"{first}.{last}".lower().replace("-", "")
        cs.email = f"{handle}{ci}@{last.lower().replace('-', '')}.example"
        cs.phone = f"+1555{r.randrange(10**7):07d}"
        taxes = TAX_BY_CURRENCY.get(currency, ())
        tax_key = taxes[r.randrange(len(taxes))] if taxes else None
        cs.country = COUNTRY.get(currency, "US")
        if tax_key in ("de", "fr"):
            cs.country = tax_key.upper()
        if tax_key and r.random() < {"usd": 0.35, "jpy": 0.6}.get(currency, 0.8):
            cs.tax = self.catalog.tax_by_key[tax_key]
            cs.tags.add("tax")
        brand, funding = _BRANDS[r.randrange(len(_BRANDS))]
        cs.card = (
            brand,
            f"{r.randrange(10000):04d}",
            1 + r.randrange(12),
            2027 + r.randrange(5),
            funding,
        )
        cs.invoice_prefix = f"{r.getrandbits(32):08X}"
        cs.emit(created, "customer.created", None, _STREAM_PROFILE)
        if r.random() < 0.15:  # the customer changes their billing email once
            t = created + int(r.uniform(20, 400) * DAY)
            new_email = f"billing{ci}@{last.lower().replace('-', '')}.example"
            cs.email_log.append((t, new_email))
            cs.emit(t, "customer.updated", None, _STREAM_PROFILE)
        cs.tags.add(f"currency_{currency}")
        return cs

    def simulate(self, ci: int, events: bool = True, horizon: int | None = None) -> CustomerSim:
        """Customer ci's life up to the horizon (or up to an earlier `horizon`).

        Without its events if `events` is False (cheaper, for serving other objects). A
        simulation up to an earlier horizon h has exactly the objects of the full one that
        were created by h, with their whole timelines (invoices, charges, refunds and balance
        transactions are decided when created), and the objects they refer to that come later
        (retries, refunds and their balance transactions, all within SETTLE) are numbered the
        same when the earlier horizon is at least SETTLE after them. So `horizon=created +
        SETTLE` renders such an object exactly as the full simulation does; subscriptions,
        customers and events need the full simulation.
        """
        seed = self.config.seed
        if horizon is None or horizon > self.horizon:
            horizon = self.horizon
        cs = self.header(ci, events, horizon)
        created = cs.created

        rs = Random(f"{seed}:{ci}:s")
        if rs.random() < 0.93:
            t = created + int(rs.uniform(60, 3 * DAY))
            n = 0
            while t <= cs.horizon:
                ended = self._subscription(cs, rs, t, n)
                n += 1
                if ended is None:
                    break
                u_react, gap = rs.random(), rs.uniform(10, 120) * DAY
                if u_react >= 0.35:
                    break
                t = ended + int(gap)
                if t <= cs.horizon:
                    cs.tags.add("reactivation")

        ro = Random(f"{seed}:{ci}:o")
        if ro.random() < 0.25:
            t = created + int(ro.expovariate(1 / (90 * DAY)))
            while t <= cs.horizon:
                self._one_off(cs, ro, t)
                t += HOUR + int(ro.expovariate(1 / (120 * DAY)))
        cs.finish()
        return cs

    # -- subscriptions -------------------------------------------------------------------------

    def _subscription(self, cs: CustomerSim, rs: Random, t0: int, n: int) -> int | None:
        """Simulate one subscription from t0; return when it ended (None: alive at horizon)."""
        cat, cur = self.catalog, cs.currency
        u_plan = rs.random()
        plan = next(key for key, acc in _PLANS if u_plan < acc)
        price = cat.price(plan, cur, t0)
        u_qty, u_addon, u_metered = rs.random(), rs.random(), rs.random()
        u_trial, u_trial_len, u_converts = rs.random(), rs.random(), rs.random()
        u_coupon, u_coupon_kind = rs.random(), rs.random()
        if price.billing_scheme == "tiered":
            qty = 1 + int(u_qty * 60)
        elif plan.startswith(("pro", "business")):
            qty = 1 + int(u_qty * u_qty * 12)
        else:
            qty = 1 + int(u_qty > 0.85)

        sub = Sub(len(cs.subs), t0)
        cs.subs.append(sub)
        _new_item(cs, sub, t0, price, qty)
        per_unit_std = price.family is not None
        if per_unit_std and u_addon < 0.2:
            addon_price = cat.price(
                "storage_m" if price.interval == "month" else "storage_y", cur, t0
            )
            _new_item(cs, sub, t0, addon_price, 1 + int(u_addon * 10))
            cs.tags.add("addon_item")
        if price.interval == "month" and price.interval_count == 1 and u_metered < 0.15:
            _new_item(cs, sub, t0, cat.price("api_m", cur, t0), None)
            cs.tags.add("metered")
        has_metered = any(not item.states[0][1].licensed for item in sub.items)
        cs.tags.add(_interval_tag(price))
        if price.billing_scheme == "tiered":
            cs.tags.add(f"tiered_{price.tiers_mode}")
        if qty > 1:
            cs.tags.add("quantity_above_one")

        if u_coupon < 0.3:
            if u_coupon_kind < 0.2:
                coupon = cat.coupon("FOREVER20", cur)
            elif u_coupon_kind < 0.3:
                spring = cat.coupon("SPRING15", cur)
                coupon = spring if spring.created <= t0 else cat.coupon("LOYALTY125", cur)
            elif u_coupon_kind < 0.5:
                coupon = cat.coupon("TENOFF", cur)
            elif u_coupon_kind < 0.75:
                coupon = cat.coupon("WELCOME50", cur)
            else:
                coupon = cat.coupon("QUARTER25", cur)
            self._add_discount(cs, sub, coupon, t0)
            kind = "amount" if coupon.amount_off else "percent"
            cs.tags.add(
                f"coupon_forever_{kind}"
                if coupon.duration == "forever"
                else f"coupon_{coupon.duration}"
            )
        cs.emit(t0, "customer.subscription.created", sub)

        interval, count = price.interval, price.interval_count
        if u_trial < 0.25 and interval != "week":
            te = t0 + (14 if u_trial_len < 0.7 else 30) * DAY
            sub.trial_start, sub.trial_end = t0, te
            sub.status_log.append((t0, "trialing"))
            sub.periods.append((t0, te))
            sub.anchors.append((t0, te))
            cs.tags.add("trial")
            lines = [
                Line(item, p, q, 0, t0, te, False)
                for item in sub.items
                for p, q in (item.state_at(t0),)
            ]
            for line in lines:
                if not line.price.licensed:
                    line.quantity = 0
            inv = self._invoice(cs, sub, t0 + 1, "subscription_create", lines, t0, t0)
            self._settle_immediately(cs, rs, inv, refundable=False)
            cs.emit(te - 3 * DAY, "customer.subscription.trial_will_end", sub)
            if te > cs.horizon:
                return None
            if u_converts >= 0.85:
                cs.tags.add("trial_canceled")
                self._end(cs, sub, te, te, "cancellation_requested")
                return te
            cs.tags.add("trial_converted")
            sub.status_log.append((te, "active"))
            anchor, reason, k = te, "subscription_cycle", 0
        else:
            sub.status_log.append((t0, "active"))
            sub.anchors.append((t0, t0))
            anchor, reason, k = t0, "subscription_create", 0

        skip_invoice = False
        prev_usage: tuple[int, int, int] | None = None  # metered usage of the last period
        pe = anchor
        while True:
            ps = anchor if k == 0 else pe
            pe = period_bound(anchor, interval, count, k + 1)
            if ps > cs.horizon:
                return None
            length = pe - ps
            # Every draw of the period, always in this order (causality; see module doc).
            u_fail = rs.random()
            u_retry = (rs.random(), rs.random(), rs.random())
            u_unpaid, u_unpaid_t = rs.random(), rs.random()
            u_change, u_change_kind, u_change_t, u_change_amt = (
                rs.random(),
                rs.random(),
                rs.random(),
                rs.random(),
            )
            u_coupon_add, u_coupon_t = rs.random(), rs.random()
            u_cancel, u_cancel_kind, u_cancel_t = rs.random(), rs.random(), rs.random()
            usage = rs.randrange(0, 4000)

            if skip_invoice:
                skip_invoice = False
                inv = sub.invoices[-1]
                resolved = inv.paid_at or ps
            else:
                created = t0 + 1 if reason == "subscription_create" else ps
                sub.periods.append((ps, pe))
                if k > 0 or sub.trial_end is not None:
                    cs.emit(ps, "customer.subscription.updated", sub)
                lines = []
                for item in sub.items:
                    if not item.alive_at(ps):
                        continue
                    p, q = item.state_at(ps)
                    if p.licensed:
                        lines.append(Line(item, p, q, p.amount(q or 0), ps, pe, False))
                    elif prev_usage is not None:
                        used, us, ue = prev_usage
                        lines.append(Line(item, p, used, p.amount(used), us, ue, False))
                    else:
                        lines.append(Line(item, p, 0, 0, ps, pe, False))
                inv_ps, inv_pe = (
                    (prev_usage[1], prev_usage[2]) if prev_usage else (created, created)
                )
                inv = self._invoice(cs, sub, created, reason, lines, inv_ps, inv_pe)
                if reason == "subscription_create" or inv.amount_due == 0:
                    resolved = self._settle_immediately(cs, rs, inv)
                else:
                    outcome, resolved = self._collect(
                        cs, rs, sub, inv, ps, length, u_fail, u_retry, u_unpaid, u_unpaid_t
                    )
                    if outcome == "canceled":
                        return resolved
            if has_metered:
                prev_usage = (usage, ps, pe)

            # Mid-period actions, in time order.
            w0, w1 = max(ps + DAY, resolved + HOUR), pe - DAY
            actions: list[tuple[int, str]] = []
            if w1 - w0 >= DAY:
                scale = length / (30 * DAY)
                span = w1 - w0
                if u_change < min(0.3, 0.09 * scale):
                    actions.append((w0 + int(u_change_t * span), "change"))
                if u_coupon_add < 0.02 and not any(
                    d.coupon.duration == "forever" for d in sub.discounts
                ):
                    actions.append((w0 + int(u_coupon_t * span) + 1, "coupon"))
                if u_cancel < min(0.35, 0.04 * scale):
                    actions.append((w0 + int(u_cancel_t * span) + 2, "cancel"))
            actions.sort()
            new_anchor = None
            for t, action in actions:
                if action == "change":
                    new_anchor = self._change(cs, sub, t, ps, pe, u_change_kind, u_change_amt)
                    if new_anchor is not None:
                        break
                elif action == "coupon":
                    forever = [c for c in ("FOREVER20", "LOYALTY125", "SPRING15")]
                    cid = forever[int(u_coupon_t * 1000) % 3]
                    coupon = cat.coupon(cid, cur)
                    if coupon.created > t:
                        coupon = cat.coupon("FOREVER20", cur)
                    self._add_discount(cs, sub, coupon, t)
                    cs.emit(t, "customer.subscription.updated", sub)
                    cs.tags.add("coupon_added_later")
                else:
                    if u_cancel_kind < 0.6:
                        sub.cancel_decided_at = t
                        sub.cancel_at = pe
                        cs.emit(t, "customer.subscription.updated", sub)
                        self._end(cs, sub, pe, t, "cancellation_requested", decided=False)
                        if pe <= cs.horizon:
                            cs.tags.add("cancel_at_period_end")
                        return pe
                    cs.tags.add("cancel_immediately")
                    self._end(cs, sub, t, t, "cancellation_requested")
                    return t
            if new_anchor is not None:
                anchor, k = new_anchor, 0
                main_price = sub.items[0].state_at(new_anchor)[0]
                interval, count = main_price.interval, main_price.interval_count
                skip_invoice = True
                reason = "subscription_cycle"
                prev_usage = None
                continue
            k += 1
            reason = "subscription_cycle"

    def _add_discount(self, cs: CustomerSim, sub: Sub, coupon: Coupon, t: int) -> Discount:
        end = add_months(t, coupon.duration_in_months) if coupon.duration == "repeating" else None
        disc = Discount(sub.li, len(cs.discounts), coupon, t, end)
        sub.discounts.append(disc)
        cs.discounts.append(disc)
        return disc

    def _end(
        self,
        cs: CustomerSim,
        sub: Sub,
        ended: int,
        canceled: int,
        reason: str,
        *,
        decided: bool = True,
    ) -> None:
        sub.ended_at = ended
        if decided:
            sub.cancel_decided_at = canceled
        sub.cancel_reason = reason
        sub.status_log.append((ended, "canceled"))
        cs.emit(ended, "customer.subscription.deleted", sub)
        if cs.log_at(cs.delinquent_log, ended):
            cs.delinquent_log.append((ended + 1, False))
            cs.emit(ended + 1, "customer.updated", None)

    def _change(
        self,
        cs: CustomerSim,
        sub: Sub,
        t: int,
        ps: int,
        pe: int,
        u_kind: float,
        u_amt: float,
    ) -> int | None:
        """A mid-period change at t with a prorating invoice; returns a new anchor if reset."""
        cat, cur = self.catalog, cs.currency
        alive = [i for i in sub.items if i.alive_at(t)]
        licensed = [i for i in alive if i.state_at(t)[0].licensed]
        main = licensed[0]
        price, qty = main.state_at(t)
        addons = [i for i in licensed[1:]]
        kinds: list[str] = []
        if price.family is not None:
            ladder = cat.ladder(price.family, cur, t)
            if price.rank < 2:
                kinds.append("upgrade")
            if price.rank > 0:
                kinds.append("downgrade")
            kinds.append("quantity")
            if price.interval_count == 1:
                kinds.append("item_removed" if addons else "item_added")
            if price.family == "month" and len(alive) == 1:
                kinds.append("interval_change")
        else:
            ladder = []
            kinds.append("quantity")
        kind = kinds[int(u_kind * len(kinds))]
        frac = (pe - t) / (pe - ps)
        lines: list[Line] = []
        new_anchor = None

        def credit(item: Item) -> None:
            p, q = item.state_at(t)
            amount = -max(1, round(p.amount(q or 0) * frac))
            lines.append(Line(item, p, q, amount, t, pe, True, credited=_last_line(sub, item, t)))

        if kind in ("upgrade", "downgrade", "quantity"):
            if kind == "quantity":
                new_price = price
                step = 1 + int(u_amt * 1000) % (10 if price.billing_scheme == "tiered" else 3)
                new_qty = (qty or 1) + step if u_amt >= 0.4 else max(1, (qty or 1) - step)
                if new_qty == qty:
                    new_qty = (qty or 1) + 1
                cs.tags.add("quantity_change")
            else:
                new_price = ladder[price.rank + (1 if kind == "upgrade" else -1)]
                new_qty = qty
                cs.tags.add(kind)
            credit(main)
            main.states.append((t, new_price, new_qty))
            lines.append(
                Line(
                    main,
                    new_price,
                    new_qty,
                    round(new_price.amount(new_qty or 0) * frac),
                    t,
                    pe,
                    True,
                )
            )
            if new_qty and new_qty > 1:
                cs.tags.add("quantity_above_one")
        elif kind == "item_added":
            addon_price = cat.price(
                "storage_m" if price.interval == "month" else "storage_y", cur, t
            )
            item = _new_item(cs, sub, t, addon_price, 1 + int(u_amt * 4))
            lines.append(
                Line(
                    item,
                    addon_price,
                    item.states[0][2],
                    round(addon_price.amount(item.states[0][2] or 0) * frac),
                    t,
                    pe,
                    True,
                )
            )
            cs.tags.add("item_added")
        elif kind == "item_removed":
            item = addons[-1]
            credit(item)
            item.removed_at = t
            cs.tags.add("item_removed")
        else:  # interval_change: monthly -> yearly, the billing cycle restarts at t
            yearly = cat.price(price.plan.replace("_m", "_y"), cur, t)
            credit(main)
            main.states.append((t, yearly, qty))
            new_end = period_bound(t, "year", 1, 1)
            lines.append(Line(main, yearly, qty, yearly.amount(qty or 0), t, new_end, False))
            sub.periods.append((t, new_end))
            sub.anchors.append((t, t))
            new_anchor = t
            cs.tags.add("interval_change")
        cs.emit(t, "customer.subscription.updated", sub)
        inv = self._invoice(cs, sub, t, "subscription_update", lines, t, t)
        self._settle_immediately(cs, None, inv)
        return new_anchor

    # -- invoices and payments -----------------------------------------------------------------

    def _invoice(
        self,
        cs: CustomerSim,
        sub: Sub,
        created: int,
        reason: str,
        lines: list[Line],
        period_start: int,
        period_end: int,
    ) -> Invoice:
        inv = Invoice(sub.li, len(cs.invoices), created, reason)
        inv.seq = cs.key(created, _STREAM_SUB)
        inv.lines = lines
        inv.period_start, inv.period_end = period_start, period_end
        subtotal = positive = 0
        for line in lines:
            subtotal += line.amount
            if line.amount > 0:
                positive += line.amount
        for disc in sub.discounts:
            if not disc.applies_to_invoice_at(created):
                continue
            coupon = disc.coupon
            if coupon.duration == "once" and positive <= 0:
                continue
            applied = False
            if coupon.percent_off is not None:
                for line in lines:
                    if line.amount > 0:
                        amt = round(line.amount * coupon.percent_off / 100)
                        if amt:
                            line.add_discount(disc, amt)
                            applied = True
            elif coupon.amount_off and reason != "subscription_update" and positive > 0:
                total_off = min(coupon.amount_off, positive)
                left = total_off
                pos_lines = [line for line in lines if line.amount > 0]
                for j, line in enumerate(pos_lines):
                    amt = left if j == len(pos_lines) - 1 else total_off * line.amount // positive
                    left -= amt
                    if amt:
                        line.add_discount(disc, amt)
                        applied = True
            if applied or coupon.duration != "once":
                inv.discounts.append(disc)
            if coupon.duration == "once" and applied:
                disc.used = True
                disc.removed_at = created + 2
                cs.emit(created + 2, "customer.subscription.updated", sub)
        discount_total = 0
        tax_total = 0
        for line in lines:
            line_disc = sum(a for _, a in line.discounts)
            discount_total += line_disc
            if cs.tax is not None:
                line.tax = round((line.amount - line_disc) * cs.tax.percentage / 100)
                tax_total += line.tax
        inv.subtotal = subtotal
        inv.discount_total = discount_total
        inv.tax = tax_total
        inv.total = subtotal - discount_total + tax_total
        inv.starting_balance = cs.balance
        if inv.total > 0:
            applied = min(inv.total, -cs.balance)
            inv.amount_due = inv.total - applied
            inv.ending_balance = cs.balance + applied
        else:
            inv.amount_due = 0
            inv.ending_balance = cs.balance + inv.total
        inv.finalized_at = created + (HOUR if reason == "subscription_cycle" else 1)
        inv.number = cs.next_number
        cs.next_number += 1
        if inv.ending_balance != cs.balance:
            cs.balance = inv.ending_balance
            cs.balance_log.append((inv.finalized_at, cs.balance))
            cs.emit(inv.finalized_at, "customer.updated", None)
            if cs.balance < 0:
                cs.tags.add("customer_credit_balance")
        sub.invoices.append(inv)
        cs.invoices.append(inv)
        cs.emit(created, "invoice.created", inv)
        cs.emit(inv.finalized_at, "invoice.finalized", inv)
        return inv

    def _settle_immediately(
        self, cs: CustomerSim, rs: Random | None, inv: Invoice, *, refundable: bool = True
    ) -> int:
        """Pay an invoice right after finalization (first invoices, prorations, zero totals)."""
        t = inv.finalized_at + 1
        if inv.amount_due > 0:
            self._charge(cs, rs, t, inv.amount_due, inv, "succeeded", refundable=refundable)
            t += 1
        self._paid(cs, inv, t)
        return t

    def _paid(self, cs: CustomerSim, inv: Invoice, t: int) -> None:
        inv.paid_at = t
        cs.emit(t, "invoice.paid", inv)
        cs.emit(t, "invoice.payment_succeeded", inv)

    def _collect(
        self,
        cs: CustomerSim,
        rs: Random,
        sub: Sub,
        inv: Invoice,
        ps: int,
        length: int,
        u_fail: float,
        u_retry: tuple[float, float, float],
        u_unpaid: float,
        u_unpaid_t: float,
    ) -> tuple[str, int]:
        """Charge a renewal invoice, with dunning; returns ("paid"|"canceled", when)."""
        t = inv.finalized_at + MINUTE
        if u_fail >= 0.08:
            self._charge(cs, rs, t, inv.amount_due, inv, "succeeded")
            self._paid(cs, inv, t + 1)
            return "paid", t + 1
        scale = min(length, 30 * DAY)
        retries = [inv.finalized_at + int(scale * f) for f in (0.1, 0.2, 0.3)]
        cs.tags.add("payment_failed")
        self._charge(cs, rs, t, inv.amount_due, inv, "failed")
        inv.attempts = [(t, retries[0])]
        cs.emit(t + 1, "invoice.payment_failed", inv)
        sub.status_log.append((t + 2, "past_due"))
        cs.emit(t + 2, "customer.subscription.updated", sub)
        cs.delinquent_log.append((t + 3, True))
        cs.emit(t + 3, "customer.updated", None)
        for j, when in enumerate(retries):
            if u_retry[j] < 0.4:
                self._charge(cs, rs, when, inv.amount_due, inv, "succeeded")
                self._paid(cs, inv, when + 1)
                sub.status_log.append((when + 2, "active"))
                cs.emit(when + 2, "customer.subscription.updated", sub)
                cs.delinquent_log.append((when + 3, False))
                cs.emit(when + 3, "customer.updated", None)
                cs.tags.add("past_due_recovered")
                return "paid", when + 3
            self._charge(cs, rs, when, inv.amount_due, inv, "failed")
            inv.attempts.append((when, retries[j + 1] if j + 1 < len(retries) else None))
            cs.emit(when + 1, "invoice.payment_failed", inv)
        t_u = inv.finalized_at + int(scale * 0.4)
        inv.marked_uncollectible_at = t_u
        cs.emit(t_u, "invoice.marked_uncollectible", inv)
        sub.status_log.append((t_u, "unpaid"))
        cs.emit(t_u, "customer.subscription.updated", sub)
        if t_u <= cs.horizon:
            cs.tags.add("unpaid")
        later = t_u + int(scale * (0.05 + 0.4 * u_unpaid_t))
        if u_unpaid < 0.3:
            self._charge(cs, rs, later - 1, inv.amount_due, inv, "succeeded")
            self._paid(cs, inv, later)
            sub.unpaid.append((t_u, later))
            sub.status_log.append((later, "active"))
            cs.emit(later, "customer.subscription.updated", sub)
            cs.delinquent_log.append((later + 1, False))
            cs.emit(later + 1, "customer.updated", None)
            if later <= cs.horizon:
                cs.tags.add("unpaid_then_paid")
            return "paid", later + 1
        sub.unpaid.append((t_u, later))
        self._end(cs, sub, later, later, "payment_failed")
        if later <= cs.horizon:
            cs.tags.add("unpaid_then_canceled")
        return "canceled", later

    def _charge(
        self,
        cs: CustomerSim,
        rs: Random | None,
        t: int,
        amount: int,
        inv: Invoice | None,
        status: str,
        *,
        refundable: bool = True,
        description: str | None = None,
    ) -> Charge:
        if description is None:
            description = _CHARGE_DESCRIPTION.get(
                inv.billing_reason if inv else "", "Subscription renewal"
            )
        ch = Charge(t, amount, status, -1 if inv is None else inv.li, description)
        ch.seq = cs.key(t, _STREAM_SUB if inv is not None else _STREAM_ONE_OFF)
        cs.charges.append(ch)
        if inv is not None:
            inv.charges.append(ch)
        if status == "failed":
            ch.failure = CARD_DECLINED
            cs.emit(t, "charge.failed", ch, _STREAM_SUB if inv else _STREAM_ONE_OFF)
            cs.tags.add("failed_charge")
            return ch
        bt = BalanceTxn(ch, t, amount, fee_for(amount, cs.currency), "charge")
        bt.seq = ch.seq
        ch.bt = bt
        cs.bts.append(bt)
        cs.emit(t, "charge.succeeded", ch, _STREAM_SUB if inv else _STREAM_ONE_OFF)
        rng = rs
        if rng is None:  # prorations draw their refund from the invoice (still deterministic)
            rng = Random(f"{self.config.seed}:{cs.ci}:r:{t}")
        u_ref, u_t, u_full, u_part = rng.random(), rng.random(), rng.random(), rng.random()
        if refundable and u_ref < 0.05:
            t_r = t + int((1 + 29 * u_t) * DAY)
            full = u_full < 0.5
            r_amount = amount if full else max(1, int(amount * (0.1 + 0.8 * u_part)))
            refund = Refund(ch, t_r, r_amount, "requested_by_customer")
            refund.seq = cs.key(t_r, _STREAM_SUB if inv else _STREAM_ONE_OFF)
            ch.refunds = [refund]
            cs.refunds.append(refund)
            rbt = BalanceTxn(refund, t_r, -r_amount, 0, "refund")
            rbt.seq = refund.seq
            refund.bt = rbt
            cs.bts.append(rbt)
            stream = _STREAM_SUB if inv else _STREAM_ONE_OFF
            cs.emit(t_r, "refund.created", refund, stream)
            cs.emit(t_r, "charge.refunded", ch, stream)
            if t_r <= cs.horizon:
                cs.tags.add("refund_full" if full else "refund_partial")
        return ch

    def _one_off(self, cs: CustomerSim, ro: Random, t: int) -> None:
        amount = 500 + ro.randrange(20_000)
        if cs.currency == "jpy":
            amount = amount * 3 // 2
        failed = ro.random() < 0.08
        desc = ("One-time setup fee", "Consulting hours", "Priority support pack")[ro.randrange(3)]
        self._charge(cs, ro, t, amount, None, "failed" if failed else "succeeded", description=desc)
        if t <= cs.horizon:
            cs.tags.add("one_off_charge")


_CHARGE_DESCRIPTION = {
    "subscription_create": "Subscription creation",
    "subscription_update": "Subscription update",
}


def _new_item(cs: CustomerSim, sub: Sub, t: int, price: Price, quantity: int | None) -> Item:
    item = Item(sub.li, len(cs.items), t, price, quantity)
    sub.items.append(item)
    cs.items.append(item)
    return item


def _last_line(sub: Sub, item: Item, t: int) -> Line | None:
    for inv in reversed(sub.invoices):
        for line in inv.lines:
            if line.item is item and line.amount >= 0 and line.start <= t < line.end:
                return line
    return None


def _interval_tag(price: Price) -> str:
    if price.interval_count == 1:
        return f"interval_{price.interval}"
    return f"interval_{price.interval_count}_{price.interval}s"


# ---------------------------------------------------------------------------------------------
# MRR from the internal timeline (the truth; never from served JSON).


def item_mrr(price: Price, quantity: int | None) -> float:
    """Monthly recurring revenue of one licensed item in minor units (0 for metered)."""
    if not price.licensed:
        return 0.0
    return price.amount(quantity or 0) * monthly_factor(price.interval, price.interval_count)


def sub_mrr_at(sub: Sub, t: int) -> float:
    if t < sub.created:
        return 0.0
    if (
        sub.trial_start is not None
        and sub.trial_end is not None
        and sub.trial_start <= t < sub.trial_end
    ):
        return 0.0
    if sub.ended_at is not None and t >= sub.ended_at:
        return 0.0
    for t_u, t_end in sub.unpaid:
        if t_u <= t and (t_end is None or t < t_end):
            return 0.0
    total = 0.0
    interval: tuple[str, int] | None = None
    for item in sub.items:
        if not item.alive_at(t):
            continue
        price, qty = item.state_at(t)
        if price.licensed:
            total += item_mrr(price, qty)
            if interval is None:
                interval = (price.interval, price.interval_count)
    for disc in sub.discounts:
        coupon = disc.coupon
        if coupon.duration != "forever" or disc.start > t:
            continue
        if disc.end is not None and t >= disc.end:
            continue
        if coupon.percent_off is not None:
            total *= 1 - coupon.percent_off / 100
        elif coupon.amount_off is not None and interval is not None:
            total = max(0.0, total - coupon.amount_off * monthly_factor(*interval))
    return total


def customer_mrr_at(cs: CustomerSim, t: int) -> float:
    return sum(sub_mrr_at(sub, t) for sub in cs.subs)


def customer_change_points(cs: CustomerSim) -> list[int]:
    """Every instant at which the customer's MRR may change (sorted, unique)."""
    points: set[int] = set()
    for sub in cs.subs:
        points.add(sub.created)
        for t in (sub.trial_start, sub.trial_end, sub.ended_at):
            if t is not None:
                points.add(t)
        for t_u, t_end in sub.unpaid:
            points.add(t_u)
            if t_end is not None:
                points.add(t_end)
        for item in sub.items:
            for t, _, _ in item.states:
                points.add(t)
            if item.removed_at is not None:
                points.add(item.removed_at)
        for disc in sub.discounts:
            points.add(disc.start)
            if disc.end is not None:
                points.add(disc.end)
    return sorted(points)


def customer_mrr_steps(cs: CustomerSim, until: int) -> list[tuple[int, float]]:
    """The customer's MRR as a step function: [(from instant, value)], up to `until`."""
    steps: list[tuple[int, float]] = []
    last = None
    for t in customer_change_points(cs):
        if t > until:
            break
        value = customer_mrr_at(cs, t)
        if value != last:
            steps.append((t, value))
            last = value
    return steps


def step_value(steps: list[tuple[int, float]], t: int) -> float:
    i = bisect_right(steps, (t, float("inf")))
    return steps[i - 1][1] if i else 0.0


__all__ = [
    "MIX_CASES",
    "BalanceTxn",
    "Charge",
    "CustomerSim",
    "Discount",
    "Generator",
    "Invoice",
    "Item",
    "Line",
    "Refund",
    "StripeSandboxConfig",
    "Sub",
    "customer_mrr_at",
    "customer_mrr_steps",
    "item_mrr",
    "step_value",
    "sub_mrr_at",
]

"""The simulated objects with their whole timelines (status changes, payment attempts, item
changes, refunds). Plain __slots__ classes: a customer's simulation is a few hundred of them."""

from __future__ import annotations

from array import array

from kpi_pipelines.sandbox.stripe.catalog import (
    DAY,
    Coupon,
    Price,
    TaxRate,
)
from kpi_pipelines.sandbox.stripe.generator.calendar import first_of
from kpi_pipelines.sandbox.stripe.generator.config import (
    BY_SEQ,
    EVENT_CODE,
    EVENT_TYPES,
    STREAM_SUB,
)
from kpi_pipelines.sandbox.stripe.ids import MAX_LOCAL

# Simulated objects. Plain __slots__ classes: a customer's simulation is a few hundred of them.


class Item:
    """A subscription item; `sub` is its subscription's index in the customer's `subs`."""

    __slots__ = ("created", "li", "removed_at", "states", "sub", "tax_rates")

    def __init__(self, sub: int, li: int, created: int, price: Price, quantity: int | None):
        self.sub = sub
        self.li = li
        self.created = created
        self.removed_at: int | None = None
        self.tax_rates: tuple[TaxRate, ...] = ()  # the item's manual tax rates
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
    """A coupon applied to a subscription (`sub`: the subscription's index), to one of its
    items (`item`: a subscription item's discount, Stripe's subscription item `discounts`),
    or to one of its invoices only (`one_invoice`)."""

    __slots__ = (
        "coupon",
        "end",
        "invoice",
        "item",
        "li",
        "one_invoice",
        "removed_at",
        "start",
        "sub",
        "used",
    )

    def __init__(
        self,
        sub: int,
        li: int,
        coupon: Coupon,
        start: int,
        end: int | None,
        item: Item | None = None,
    ) -> None:
        self.sub = sub
        self.item = item
        self.li = li
        self.coupon = coupon
        self.start = start
        self.end = end
        self.removed_at: int | None = end
        self.used = False
        # A discount of one invoice only (the invoice's own `discounts`): `invoice` is the
        # index of the invoice that took it.
        self.one_invoice = False
        self.invoice = -1

    @property
    def created(self) -> int:
        return self.start

    def applies_to_invoice_at(self, t: int) -> bool:
        if self.start > t or (self.end is not None and t >= self.end):
            return False
        return not (self.used and (self.one_invoice or self.coupon.duration == "once"))


class Line:
    """An invoice line (`invoice`: its invoice's index, set when the invoice is numbered)."""

    __slots__ = (
        "amount",
        "credited",
        "discounts",
        "end",
        "idx",
        "ii",
        "ii_created",
        "invoice",
        "item",
        "price",
        "proration",
        "quantity",
        "start",
        "tax",
        "tax_inclusive",
        "tax_rate",
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
        self.tax_rate: TaxRate | None = None  # the rate of `tax`, set when invoiced
        self.tax_inclusive = False  # `tax` is included in `amount`
        self.idx = 0
        self.invoice = -1
        # A line billed from a pending invoice item (proration_behavior create_prorations):
        # the item's index in the customer's `invoice_items` and when it was created.
        self.ii = -1
        self.ii_created: int | None = None

    @property
    def created(self) -> int:
        """When the line became a pending invoice item (the invoice items lists sort by it)."""
        assert self.ii_created is not None, "only a pending invoice item has its own created"
        return self.ii_created

    def add_discount(self, disc: Discount, amount: int) -> None:
        if self.discounts is _EMPTY:
            self.discounts = []
        self.discounts.append((disc, amount))


_EMPTY: list = []  # shared empty list for attributes that are usually empty (never mutated)
NEVER = 1 << 62  # the finalized_at of a draft that is never finalized


class Invoice:
    """A subscription invoice (`sub`: the subscription's index)."""

    __slots__ = (
        "amount_due",
        "attempts",
        "auto_advance_off",
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
        "tax_included",
        "total",
        "voided_at",
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
        self.voided_at: int | None = None
        self.subtotal = self.discount_total = self.tax = self.total = 0
        self.tax_included = 0  # the part of `tax` included in the lines' amounts
        # when auto_advance was turned off (a draft Stripe never finalizes); None: it is on
        self.auto_advance_off: int | None = None
        self.starting_balance = self.ending_balance = self.amount_due = 0
        self.period_start = self.period_end = created
        self.number = 0
        self.seq = 0

    def status_at(self, t: int) -> str:
        """draft, open, paid, uncollectible or void, as of t."""
        if self.finalized_at > t:
            return "draft"
        if self.paid_at is not None and self.paid_at <= t:
            return "paid"
        if self.voided_at is not None and self.voided_at <= t:
            return "void"
        if self.marked_uncollectible_at is not None and self.marked_uncollectible_at <= t:
            return "uncollectible"
        return "open"


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
        "missing_payment_method",
        "pause_log",
        "payment_method_from",
        "pending",
        "periods",
        "schedule",
        "status_log",
        "tax_rates",
        "trial_end",
        "trial_start",
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
        # trial_settings.end_behavior.missing_payment_method, and since when the subscription
        # has a default payment method (None: from its creation)
        self.missing_payment_method = "create_invoice"
        self.payment_method_from: int | None = None
        # proration lines waiting as pending invoice items for the subscription's next invoice
        self.pending: list[Line] = []
        self.tax_rates: tuple[TaxRate, ...] = ()  # default_tax_rates (manual)
        self.schedule = None  # its Schedule (generator/schedules.py), if any
        # pause_collection over time: (from, (behavior, resumes_at) or None when cleared)
        self.pause_log: list[tuple[int, tuple[str, int | None] | None]] = _EMPTY

    def pause_at(self, t: int) -> tuple[str, int | None] | None:
        """pause_collection (behavior, resumes_at) as of t, or None."""
        value = None
        for when, v in self.pause_log:
            if when > t:
                break
            value = v
        return value

    def set_status(self, t: int, status: str) -> None:
        """Record a status change at t (the log stays in time order: the truth reads it)."""
        log = self.status_log
        if log and log[-1][0] > t:
            raise AssertionError(f"status {status} at {t} before the last change")
        log.append((t, status))

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
        "invoice_items",
        "invoice_prefix",
        "invoices",
        "items",
        "name",
        "next_number",
        "phone",
        "refunds",
        "schedules",
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
        self.invoice_items: list[Line] = []  # pending invoice items, in creation order
        self.schedules: list = []  # subscription schedules (Schedule), in creation order
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

    def emit(self, t: int, type_: str, obj: object, stream: int = STREAM_SUB) -> None:
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
            lst.sort(key=BY_SEQ)
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
        self.balance_log.sort(key=first_of)
        self.delinquent_log.sort(key=first_of)

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


CHARGE_DESCRIPTION = {
    "subscription_create": "Subscription creation",
    "subscription_update": "Subscription update",
}


def new_item(cs: CustomerSim, sub: Sub, t: int, price: Price, quantity: int | None) -> Item:
    item = Item(sub.li, len(cs.items), t, price, quantity)
    sub.items.append(item)
    cs.items.append(item)
    return item


def tax_of(cs: CustomerSim, sub: Sub, item: Item, price: Price) -> tuple[TaxRate | None, bool]:
    """The tax rate on an item's lines and whether it is included in their amounts: the
    item's manual rate, else its subscription's default rate (inclusive as the TaxRate says),
    else the customer's automatic tax (inclusive as the price's tax_behavior says)."""
    if item.tax_rates:
        return item.tax_rates[0], item.tax_rates[0].inclusive
    if sub.tax_rates:
        return sub.tax_rates[0], sub.tax_rates[0].inclusive
    if cs.tax is not None:
        return cs.tax, price.tax_behavior == "inclusive"
    return None, False


def last_line(sub: Sub, item: Item, t: int) -> Line | None:
    for inv in reversed(sub.invoices):
        for line in inv.lines:
            if line.item is item and line.amount >= 0 and line.start <= t < line.end:
                return line
    return None


def interval_tag(price: Price) -> str:
    if price.interval_count == 1:
        return f"interval_{price.interval}"
    return f"interval_{price.interval_count}_{price.interval}s"

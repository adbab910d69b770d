"""The generator of a scripted sandbox: customers live exactly the scripts they are given,
billed by the same rules as generated customers."""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections import deque
from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal

from kpi_pipelines.sandbox.stripe.catalog import (
    COUNTRY,
    DAY,
    Coupon,
    Price,
    TaxRate,
)
from kpi_pipelines.sandbox.stripe.generator.calendar import period_bound
from kpi_pipelines.sandbox.stripe.generator.config import (
    HOUR,
    MINUTE,
    STREAM_PROFILE,
    StripeSandboxConfig,
)
from kpi_pipelines.sandbox.stripe.generator.core import Generator
from kpi_pipelines.sandbox.stripe.generator.objects import (
    CustomerSim,
    Invoice,
    Item,
    Line,
    Sub,
    interval_tag,
    new_item,
)
from kpi_pipelines.sandbox.stripe.generator.subscriptions import open_period
from kpi_pipelines.sandbox.stripe.ids import stable_hex
from kpi_pipelines.sandbox.stripe.scripted_billing import (
    Automatic,
    Dunning,
    PhaseStart,
    ScheduleEnds,
    ScriptedBilling,
    interval_of,
)
from kpi_pipelines.sandbox.stripe.scripted_catalog import ScriptedCatalog
from kpi_pipelines.sandbox.stripe.scripts import (
    AddCoupon,
    AddItem,
    At,
    Cancel,
    Change,
    CouponSpec,
    CustomerScript,
    DraftRenewal,
    InvoiceCoupon,
    PauseCollection,
    PaymentFails,
    PaymentSucceeds,
    PriceSpec,
    RemoveItem,
    Resume,
    ResumeCollection,
    SubscriptionScript,
)

INCOMPLETE_FOR = 23 * HOUR  # a first invoice unpaid this long: incomplete_expired
NO_PAYMENT_METHOD = 1 << 62  # Sub.payment_method_from of a subscription without one


class ScriptedGenerator(ScriptedCatalog, ScriptedBilling, Generator):
    """A Generator whose customers are `scripts`, simulated with the Generator's own parts."""

    def __init__(
        self,
        config: StripeSandboxConfig,
        scripts: Sequence[CustomerScript],
        horizon: int | None = None,
    ) -> None:
        super().__init__(config, horizon)
        self.scripts = tuple(scripts)
        self._created = [self.ts(s.created) for s in self.scripts]
        for ci, (script, created) in enumerate(zip(self.scripts, self._created, strict=True)):
            if created < self.start:
                raise ValueError(f"customer {ci} is created before the sandbox start")
            if ci and created < self._created[ci - 1]:
                raise ValueError("customers must be listed in the order they are created")
            if script.currency not in config.currencies:
                raise ValueError(f"customer {ci}: currency {script.currency} is not simulated")
        self._prices: dict[tuple[PriceSpec, str], Price] = {}
        self._coupons: dict[tuple[CouponSpec, str | None], Coupon] = {}
        self._taxes: dict[tuple, TaxRate] = {}
        # The whole catalog is known up front (it does not depend on the clock).
        for script in self.scripts:
            cur = script.currency
            self._tax(script)
            for sub in script.subscriptions:
                for rate in sub.default_tax_rates:
                    self.tax_rate(rate, cur)
                for item in sub.item_scripts():
                    self.price(item.price, cur)
                    for rate in item.tax_rates:
                        self.tax_rate(rate, cur)
                    if item.coupon is not None:
                        self.coupon(item.coupon, cur)
                for coupon in (sub.coupon, *sub.coupons):
                    if coupon is not None:
                        self.coupon(coupon, cur)
                for ev in sub.events:
                    if isinstance(ev, Change | AddItem) and ev.price is not None:
                        self.price(ev.price, cur)
                    elif isinstance(ev, AddCoupon | InvoiceCoupon):
                        self.coupon(ev.coupon, cur)

    # -- catalog ------------------------------------------------------------------------------

    def ts(self, at: At) -> int:
        """Unix seconds of a script time (days after the start, or an aware datetime)."""
        if isinstance(at, datetime):
            if at.tzinfo is None:
                raise ValueError("use timezone-aware datetimes")
            return int(at.timestamp())
        return self.start + round(at * DAY)

    # -- customers ----------------------------------------------------------------------------

    def customer_count(self, at: int) -> int:
        return bisect_right(self._created, at)

    def customer_created(self, ci: int) -> int:
        return self._created[ci]

    def header(self, ci: int, events: bool = False, horizon: int = 0) -> CustomerSim:
        script = self.scripts[ci]
        created = self._created[ci]
        cs = CustomerSim(ci, created, script.currency, events, horizon)
        cs.name = script.name or f"Scripted Customer {ci}"
        cs.email = script.email or f"customer{ci}@scripted.example"
        cs.phone = f"+1555{ci % 10**7:07d}"
        cs.tax = self._tax(script)
        cs.country = cs.tax.country if cs.tax is not None else COUNTRY.get(script.currency, "US")
        cs.invoice_prefix = stable_hex(f"{self.config.seed}:{ci}:scripted", 8)
        if script.balance:
            cs.balance = script.balance
            cs.balance_log = [(created, script.balance)]
            cs.tags.add("customer_credit_balance" if script.balance < 0 else "customer_debt")
        cs.emit(created, "customer.created", None, STREAM_PROFILE)
        cs.tags.add(f"currency_{script.currency}")
        if cs.tax is not None:
            cs.tags.add("tax")
        return cs

    def simulate(self, ci: int, events: bool = True, horizon: int | None = None) -> CustomerSim:
        """Customer ci's script up to the horizon (whole periods that start by then).

        Each subscription runs as a coroutine that yields the instant of its next step; the
        steps of a customer's subscriptions are taken in time order, so invoices are created
        (and numbered, and the credit balance used) in time order, as Generator.simulate does.
        """
        if horizon is None or horizon > self.horizon:
            horizon = self.horizon
        cs = self.header(ci, events, horizon)
        runs: list[Iterator[int]] = []
        heap: list[tuple[int, int]] = []
        for n, script in enumerate(self.scripts[ci].subscriptions):
            t0 = cs.created if script.start is None else self.ts(script.start)
            if t0 < cs.created:
                raise ValueError(f"customer {ci}: a subscription starts before the customer")
            runs.append(self._run(cs, script, t0))
            first = next(runs[n], None)
            if first is not None:
                heapq.heappush(heap, (first, n))
        while heap:
            t, n = heapq.heappop(heap)
            nxt = next(runs[n], None)
            if nxt is not None:
                assert nxt >= t, "a subscription's steps go forward in time"
                heapq.heappush(heap, (nxt, n))
        cs.finish()
        return cs

    # -- subscriptions ------------------------------------------------------------------------

    def _run(self, cs: CustomerSim, script: SubscriptionScript, t0: int) -> Iterator[int]:
        """One scripted subscription; yields the instant of each step before taking it."""
        if t0 > cs.horizon:
            return
        events = sorted(((self.ts(e.at), e) for e in script.events), key=lambda p: p[0])
        if events and events[0][0] < t0:
            raise ValueError(f"{events[0][1]} is before its subscription starts")
        pending = deque(events)
        yield t0
        cur = cs.currency
        sub = Sub(len(cs.subs), t0)
        cs.subs.append(sub)
        usage: dict[int, int] = {}
        sub.tax_rates = tuple(self.tax_rate(r, cur) for r in script.default_tax_rates)
        for spec in script.item_scripts():
            price = self.price(spec.price, cur)
            item = new_item(cs, sub, t0, price, spec.quantity if price.licensed else None)
            item.tax_rates = tuple(self.tax_rate(r, cur) for r in spec.tax_rates)
            if price.tax_behavior == "inclusive" or any(
                r.inclusive for r in (*item.tax_rates, *sub.tax_rates)
            ):
                cs.tags.add("tax_inclusive")
            usage[item.li] = spec.usage
            cs.tags.add("metered" if not price.licensed else interval_tag(price))
            if price.billing_scheme == "tiered":
                cs.tags.add(f"tiered_{price.tiers_mode}")
            cs.tags.update(_billing_tags(price))
        intervals = {(i.states[0][1].interval, i.states[0][1].interval_count) for i in sub.items}
        if len(intervals) > 1:
            raise ValueError("all items of a subscription must have the same interval")
        [(interval, count)] = intervals
        for spec, item in zip(script.item_scripts(), sub.items, strict=True):
            if spec.coupon is not None:
                self._scripted_coupon(cs, sub, self.coupon(spec.coupon, cur), t0, item)
        for coupon in (script.coupon, *script.coupons):
            if coupon is not None:
                self._scripted_coupon(cs, sub, self.coupon(coupon, cur), t0)
        if script.missing_payment_method is not None:
            sub.missing_payment_method = script.missing_payment_method
            sub.payment_method_from = NO_PAYMENT_METHOD
        cs.emit(t0, "customer.subscription.created", sub)
        if script.phases:
            self._schedule(cs, sub, script, t0, pending)

        if script.trial_days:
            te = t0 + round(script.trial_days * DAY)
            sub.trial_start, sub.trial_end = t0, te
            sub.set_status(t0, "trialing")
            sub.periods.append((t0, te))
            sub.anchors.append((t0, te))
            cs.tags.add("trial")
            lines = []
            for item in sub.items:
                p, q = item.state_at(t0)
                lines.append(Line(item, p, q if p.licensed else 0, 0, t0, te, False))
            inv = self._invoice(cs, sub, t0 + 1, "subscription_create", lines, t0, t0)
            self._settle_immediately(cs, None, inv, refundable=False)
            cs.emit(max(t0 + 1, te - 3 * DAY), "customer.subscription.trial_will_end", sub)
            while pending and pending[0][0] < te:
                t, ev = pending.popleft()
                yield t
                if isinstance(ev, AddCoupon):
                    self._scripted_coupon(
                        cs, sub, self.coupon(ev.coupon, cur), t, self._coupon_item(sub, ev, t)
                    )
                    cs.emit(t, "customer.subscription.updated", sub)
                elif isinstance(ev, Cancel):
                    self._cancel(cs, sub, t, te, ev.at_period_end, None, pending)
                    cs.tags.add("trial_canceled")
                    return
                else:
                    raise ValueError(f"{ev} during the trial: only AddCoupon and Cancel")
            if te > cs.horizon:
                return
            if script.missing_payment_method is None:
                cs.tags.add("trial_converted")
                sub.set_status(te, "active")
                anchor, reason = te, "subscription_cycle"
            else:
                resumed = yield from self._trial_ends_without_payment_method(cs, sub, te, pending)
                if resumed is None:
                    return
                anchor, reason = resumed, "subscription_cycle"
        else:
            sub.set_status(t0, "incomplete" if script.first_payment_fails else "active")
            sub.anchors.append((t0, t0))
            anchor, reason = t0, "subscription_create"

        k = 0
        pe = anchor
        skip_invoice = False
        last_period: tuple[int, int] | None = None  # metered usage is billed a period late

        def metered_usage(item: Item) -> tuple[int, int, int] | None:
            # The scripted usage of the period before, billed at the start of this one.
            return None if last_period is None else (usage[item.li], *last_period)

        while True:
            ps = anchor if k == 0 else pe
            pe = period_bound(anchor, interval, count, k + 1)
            if ps > cs.horizon:
                return
            dunning: Dunning | None = None
            if skip_invoice:  # the change that restarted the cycle billed this period
                skip_invoice = False
            else:
                if reason != "subscription_create":
                    yield ps
                created = t0 + 1 if reason == "subscription_create" else ps
                lines = self._take_pending(sub) + open_period(cs, sub, k, ps, pe, metered_usage)
                inv_ps, inv_pe = last_period or (created, created)
                uncollected = self._uncollected_renewal(sub, ps, pe, reason, pending)
                inv = self._invoice(cs, sub, created, reason, lines, inv_ps, inv_pe, uncollected)
                fails = any(isinstance(e, PaymentFails) for t, e in pending if t < pe)
                if uncollected is not None:
                    if fails:
                        raise ValueError("PaymentFails: this period's invoice is not collected")
                elif reason == "subscription_create" and script.first_payment_fails:
                    if inv.amount_due == 0:
                        raise ValueError("first_payment_fails needs a first invoice with an amount")
                    expired = yield from self._incomplete(cs, sub, inv, t0, pending)
                    if expired:
                        return
                elif reason == "subscription_create" or inv.amount_due == 0:
                    if fails:
                        raise ValueError(
                            "PaymentFails needs a renewal invoice with an amount due in its period"
                        )
                    self._settle_immediately(cs, None, inv, refundable=False)
                elif fails:
                    dunning = Dunning(inv)
                else:
                    t = inv.finalized_at + MINUTE
                    self._charge(cs, None, t, inv.amount_due, inv, "succeeded", refundable=False)
                    self._paid(cs, inv, t + 1)
            if any(not i.states[0][1].licensed for i in sub.items):
                last_period = (ps, pe)

            new_anchor = None
            while pending and pending[0][0] < pe:
                t, ev = pending.popleft()
                yield t
                if isinstance(ev, PhaseStart):
                    ev = self._phase_starts(cs, sub, t, ev)
                elif isinstance(ev, ScheduleEnds):
                    self._schedule_ends(cs, sub, t)
                    continue
                if isinstance(ev, Change | AddItem | RemoveItem):
                    if t <= ps:
                        raise ValueError(f"{ev} at a period start: script it a moment later")
                    new_anchor = self._scripted_change(cs, sub, t, ps, pe, ev)
                    if new_anchor is not None:
                        if dunning is not None:
                            raise ValueError(f"{ev} restarts the billing cycle during dunning")
                        break
                elif isinstance(ev, AddCoupon):
                    self._scripted_coupon(
                        cs, sub, self.coupon(ev.coupon, cur), t, self._coupon_item(sub, ev, t)
                    )
                    cs.emit(t, "customer.subscription.updated", sub)
                    cs.tags.add("coupon_added_later")
                elif isinstance(ev, InvoiceCoupon):
                    self._invoice_coupon(cs, sub, self.coupon(ev.coupon, cur), t)
                elif isinstance(ev, Cancel):
                    self._cancel(cs, sub, t, pe, ev.at_period_end, dunning, pending)
                    return
                elif isinstance(ev, PauseCollection | ResumeCollection | DraftRenewal):
                    self._collection_step(cs, sub, t, ev, pending)
                elif isinstance(ev, Resume):
                    raise ValueError(f"{ev}: only a paused subscription resumes")
                else:
                    dunning = self._dunning_step(cs, sub, t, ev, dunning)
                    if dunning is not None and dunning.canceled:
                        if pending:
                            raise ValueError(f"{pending[0][1]} after the subscription is canceled")
                        return
            if new_anchor is not None:
                anchor, k = new_anchor, 0
                interval, count = interval_of(sub, new_anchor)
                skip_invoice = True
                reason = "subscription_cycle"
                last_period = None
                continue
            if dunning is not None:
                if pending:
                    raise ValueError(
                        "a failed payment must be resolved within its billing period when the"
                        f" script goes on (next: {pending[0][1]})"
                    )
                return  # the subscription stays past_due or unpaid
            k += 1
            reason = "subscription_cycle"

    def _incomplete(
        self, cs: CustomerSim, sub: Sub, inv: Invoice, t0: int, pending: deque
    ) -> Iterator[int]:
        """The first invoice's payment fails: `incomplete` until a PaymentSucceeds within 23
        hours makes it `active`, else `incomplete_expired` (the invoice is voided). Returns
        whether it expired."""
        tf = inv.finalized_at + 1
        self._charge(cs, None, tf, inv.amount_due, inv, "failed")
        inv.attempts = [(tf, None)]  # no automatic retries for a first invoice
        cs.emit(tf + 1, "invoice.payment_failed", inv)
        cs.tags.add("incomplete")
        deadline = t0 + INCOMPLETE_FOR
        if pending and pending[0][0] < deadline:
            t, ev = pending.popleft()
            yield t
            if not isinstance(ev, PaymentSucceeds) or t <= tf + 1:
                raise ValueError(f"{ev} while incomplete: only a later PaymentSucceeds")
            self._charge(cs, None, t, inv.amount_due, inv, "succeeded", refundable=False)
            self._paid(cs, inv, t + 1)
            sub.set_status(t + 1, "active")
            cs.emit(t + 1, "customer.subscription.updated", sub)
            cs.tags.add("incomplete_then_active")
            return False
        yield deadline
        inv.voided_at = deadline
        cs.emit(deadline, "invoice.voided", inv)
        sub.set_status(deadline, "incomplete_expired")
        cs.emit(deadline, "customer.subscription.updated", sub)
        if pending:
            raise ValueError(f"{pending[0][1]} after the subscription expired (incomplete)")
        cs.tags.add("incomplete_expired")
        return True

    def _trial_ends_without_payment_method(
        self, cs: CustomerSim, sub: Sub, te: int, pending: deque
    ) -> Iterator[int]:
        """trial_settings.end_behavior.missing_payment_method at the trial's end: `cancel`
        ends it; `pause` makes it `paused` (no invoice) until a Resume (returns its instant:
        the new billing cycle anchor) or a Cancel. None: the subscription is over."""
        if sub.missing_payment_method == "cancel":
            if pending:
                raise ValueError(f"{pending[0][1]} after the trial ended without payment method")
            self._end(cs, sub, te, te, "cancellation_requested")
            cs.tags.add("trial_canceled")
            return None
        sub.set_status(te, "paused")
        cs.emit(te, "customer.subscription.updated", sub)
        cs.emit(te, "customer.subscription.paused", sub)
        cs.tags.add("trial_paused")
        if not pending:
            return None
        t, ev = pending.popleft()
        yield t
        if isinstance(ev, Cancel) and not ev.at_period_end:
            self._cancel(cs, sub, t, t, False, None, pending)
            return None
        if not isinstance(ev, Resume):
            raise ValueError(f"{ev} while paused: only Resume or Cancel")
        sub.payment_method_from = t
        sub.set_status(t, "active")
        sub.anchors.append((t, t))
        cs.emit(t, "customer.subscription.resumed", sub)
        cs.tags.add("resumed")
        return t

    def _cancel(
        self,
        cs: CustomerSim,
        sub: Sub,
        t: int,
        period_end: int,
        at_period_end: bool,
        dunning: Dunning | None,
        pending: deque,
    ) -> None:
        for _, ev in pending:
            if not isinstance(ev, Automatic):  # Stripe's own steps no longer matter
                raise ValueError(f"{ev} after the subscription is canceled")
        if sub.schedule is not None and sub.schedule.status_at(t) == "active":
            sub.schedule.canceled_at = period_end if at_period_end else t
        reason = "payment_failed" if dunning is not None else "cancellation_requested"
        if at_period_end:
            sub.cancel_decided_at = t
            sub.cancel_at = period_end
            cs.emit(t, "customer.subscription.updated", sub)
            self._end(cs, sub, period_end, t, reason, decided=False)
            cs.tags.add("cancel_at_period_end")
        else:
            self._end(cs, sub, t, t, reason)
            cs.tags.add("cancel_immediately")


def _billing_tags(price: Price) -> set[str]:
    """Tags of what a price bills beside its amount: packages, fractions of the minor unit,
    a currency option."""
    tags = set()
    if price.transform is not None:
        tags.add("package_pricing")
    if price.unit_decimal is not None or any(
        isinstance(t.unit_amount, Decimal) for t in price.tiers or ()
    ):
        tags.add("decimal_amount")
    if price.base is not None:
        tags.add("currency_option")
    return tags


# ---------------------------------------------------------------------------------------------
# The sandbox

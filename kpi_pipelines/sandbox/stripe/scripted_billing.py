"""Billing steps of a scripted subscription: failed payments and what Stripe does after the
last retry, and prorated changes under each `proration_behavior`."""

from __future__ import annotations

from bisect import bisect_right
from collections import deque

from kpi_pipelines.sandbox.stripe.catalog import Coupon
from kpi_pipelines.sandbox.stripe.generator.calendar import period_bound
from kpi_pipelines.sandbox.stripe.generator.config import MINUTE
from kpi_pipelines.sandbox.stripe.generator.objects import (
    CustomerSim,
    Invoice,
    Item,
    Line,
    Sub,
    last_line,
    new_item,
)
from kpi_pipelines.sandbox.stripe.generator.schedules import Schedule, SchedulePhase
from kpi_pipelines.sandbox.stripe.scripts import (
    AddCoupon,
    AddItem,
    Change,
    DraftRenewal,
    Event,
    MarkUnpaid,
    PauseCollection,
    PaymentFails,
    PaymentSucceeds,
    RemoveItem,
    ResumeCollection,
    RetriesExhausted,
    SubscriptionScript,
)


class Automatic:
    """A step Stripe takes by itself (scheduled by a script event, not written in it)."""


class AutoResume(ResumeCollection, Automatic):
    """Stripe clearing pause_collection at its resumes_at (scheduled by PauseCollection)."""


class PhaseStart(Automatic):
    """A subscription schedule's phase starting: its change of the first item."""

    def __init__(self, index: int, change: Change) -> None:
        self.index = index
        self.change = change

    def __repr__(self) -> str:
        return f"phase {self.index} ({self.change})"


class ScheduleEnds(Automatic):
    """The last phase is over: the schedule is released (end_behavior release)."""

    def __repr__(self) -> str:
        return "the schedule's release"


class Dunning:
    """A renewal invoice the script makes fail, and what has happened to it so far."""

    __slots__ = ("canceled", "exhausted", "failed_at", "inv", "unpaid_at")

    def __init__(self, inv: Invoice) -> None:
        self.inv = inv
        self.failed_at: int | None = None
        self.unpaid_at: int | None = None
        self.exhausted = False
        self.canceled = False  # the retries ran out and the settings cancel the subscription


class ScriptedBilling:
    """Payment and change steps of `ScriptedGenerator`; mixed in beside `Generator`."""

    def _dunning_step(
        self, cs: CustomerSim, sub: Sub, t: int, ev: Event, dunning: Dunning | None
    ) -> Dunning | None:
        """PaymentFails, RetriesExhausted, MarkUnpaid or PaymentSucceeds on the period's
        failing invoice; None once it is paid."""
        if dunning is None:
            raise ValueError(f"{ev}: no failed renewal invoice in this billing period")
        inv = dunning.inv
        if isinstance(ev, PaymentFails):
            if dunning.failed_at is not None:
                raise ValueError(f"{ev}: the payment has already failed")
            tf = max(t, inv.finalized_at + MINUTE)
            self._charge(cs, None, tf, inv.amount_due, inv, "failed")
            inv.attempts = [(tf, None)]
            cs.emit(tf + 1, "invoice.payment_failed", inv)
            sub.set_status(tf + 2, "past_due")
            cs.emit(tf + 2, "customer.subscription.updated", sub)
            cs.delinquent_log.append((tf + 3, True))
            cs.emit(tf + 3, "customer.updated", None)
            dunning.failed_at = tf
            cs.tags.add("payment_failed")
            return dunning
        if dunning.failed_at is None or t <= dunning.failed_at + 3:
            raise ValueError(f"{ev} must come after the PaymentFails of its invoice")
        if isinstance(ev, RetriesExhausted):
            if dunning.exhausted or dunning.unpaid_at is not None:
                raise ValueError(f"{ev}: the retries of this invoice are already over")
            # The last retry fails at t (the first failure announced it as the next attempt).
            self._charge(cs, None, t, inv.amount_due, inv, "failed")
            inv.attempts = [(inv.attempts[0][0], t), (t, None)]
            cs.emit(t + 1, "invoice.payment_failed", inv)
            dunning.exhausted = True
            if ev.invoice == "uncollectible":
                inv.marked_uncollectible_at = t + 2
                cs.emit(t + 2, "invoice.marked_uncollectible", inv)
            if ev.subscription == "unpaid":
                sub.set_status(t + 2, "unpaid")
                cs.emit(t + 2, "customer.subscription.updated", sub)
                dunning.unpaid_at = t + 2
                cs.tags.add("unpaid" if ev.invoice == "uncollectible" else "unpaid_invoice_open")
            elif ev.subscription == "canceled":
                self._end(cs, sub, t + 2, t + 2, "payment_failed")
                dunning.canceled = True
                cs.tags.add("retries_exhausted_canceled")
            else:
                cs.tags.add("retries_exhausted_past_due")
            return dunning
        if isinstance(ev, MarkUnpaid):
            if dunning.unpaid_at is not None:
                raise ValueError(f"{ev}: the subscription is already unpaid")
            inv.marked_uncollectible_at = t
            cs.emit(t, "invoice.marked_uncollectible", inv)
            sub.set_status(t, "unpaid")
            cs.emit(t, "customer.subscription.updated", sub)
            dunning.unpaid_at = t
            cs.tags.add("unpaid")
            return dunning
        assert isinstance(ev, PaymentSucceeds)
        self._charge(cs, None, t, inv.amount_due, inv, "succeeded", refundable=False)
        self._paid(cs, inv, t + 1)
        if dunning.unpaid_at is not None:
            cs.tags.add("unpaid_then_paid")
        else:
            cs.tags.add("past_due_recovered")
        sub.set_status(t + 1, "active")
        cs.emit(t + 1, "customer.subscription.updated", sub)
        cs.delinquent_log.append((t + 2, False))
        cs.emit(t + 2, "customer.updated", None)
        return None

    def _scripted_change(
        self, cs: CustomerSim, sub: Sub, t: int, ps: int, pe: int, ev: Change | AddItem | RemoveItem
    ) -> int | None:
        """Change, AddItem or RemoveItem at t, prorated as its `proration_behavior` says;
        returns the new billing cycle anchor when the change restarts the cycle.

        The items change at t whatever the behavior. `always_invoice`: the proration lines
        (a credit for the unused time, a charge for the remaining time) on an invoice at once,
        with any pending invoice items; `create_prorations`: they become pending invoice items
        of the subscription, billed on its next invoice; `none`: no proration lines. A change
        of billing interval restarts the cycle and is invoiced at once in every case."""
        cur = cs.currency
        frac = (pe - t) / (pe - ps)
        lines: list[Line] = []
        new_anchor = None
        behavior = ev.proration_behavior

        def live(index: int) -> Item:
            if not 0 <= index < len(sub.items) or not sub.items[index].alive_at(t):
                raise ValueError(f"{ev}: the subscription has no item {index} at that time")
            return sub.items[index]

        def credit(item: Item) -> None:
            p, q = item.state_at(t)
            amount = -max(1, round(p.amount(q or 0) * frac))
            lines.append(Line(item, p, q, amount, t, pe, True, credited=last_line(sub, item, t)))

        if isinstance(ev, Change):
            item = live(ev.item)
            price, qty = item.state_at(t)
            if not price.licensed:
                raise ValueError(f"{ev}: a metered item has no price or quantity to change")
            new_price = price if ev.price is None else self.price(ev.price, cur)
            new_qty = qty if ev.quantity is None else ev.quantity
            if not new_price.licensed:
                raise ValueError(f"{ev}: a licensed item cannot become metered")
            reset = ev.billing_cycle_anchor == "now"
            if (new_price, new_qty) == (price, qty) and not reset:
                raise ValueError(f"{ev} changes nothing")
            before = price.amount(qty or 0) * price.monthly_factor()
            after = new_price.amount(new_qty or 0) * new_price.monthly_factor()
            same_cycle = (new_price.interval, new_price.interval_count) == (
                price.interval,
                price.interval_count,
            )
            others = [i for i in sub.items if i is not item and i.alive_at(t)]
            credit(item)
            if (new_price, new_qty) != (price, qty):
                item.states.append((t, new_price, new_qty))
            if same_cycle and not reset:
                amount = round(new_price.amount(new_qty or 0) * frac)
                lines.append(Line(item, new_price, new_qty, amount, t, pe, True))
            else:
                # A new billing period from t (a new interval, or billing_cycle_anchor=now):
                # the unused time credited (unless proration none), the new period charged
                # in full for every item, on an invoice at once.
                if others and not same_cycle:
                    raise ValueError(f"{ev}: a new interval needs a single-item subscription")
                if any(not i.state_at(t)[0].licensed for i in others):
                    raise ValueError(f"{ev}: a billing cycle reset with a metered item")
                new_end = period_bound(t, new_price.interval, new_price.interval_count, 1)
                for other in others:
                    credit(other)
                if behavior == "none":
                    lines.clear()  # no credit for the unused time
                amount = new_price.amount(new_qty or 0)
                lines.append(Line(item, new_price, new_qty, amount, t, new_end, False))
                for other in others:
                    p, q = other.state_at(t)
                    lines.append(Line(other, p, q, p.amount(q or 0), t, new_end, False))
                sub.periods.append((t, new_end))
                sub.anchors.append((t, t))
                new_anchor = t
                cs.tags.add("anchor_reset" if same_cycle else "interval_change")
            if new_price is not price:
                cs.tags.add("upgrade" if after > before else "downgrade")
            if new_qty != qty:
                cs.tags.add("quantity_change")
        elif isinstance(ev, AddItem):
            price = self.price(ev.price, cur)
            current = interval_of(sub, t)
            if not price.licensed or (price.interval, price.interval_count) != current:
                raise ValueError(f"{ev}: an added item is licensed, at the subscription's interval")
            item = new_item(cs, sub, t, price, ev.quantity)
            amount = round(price.amount(ev.quantity) * frac)
            lines.append(Line(item, price, ev.quantity, amount, t, pe, True))
            cs.tags.add("item_added")
        else:
            assert isinstance(ev, RemoveItem)
            item = live(ev.item)
            others = [i for i in sub.items if i is not item and i.alive_at(t)]
            if not any(i.state_at(t)[0].licensed for i in others):
                raise ValueError(f"{ev}: the last licensed item cannot be removed (Cancel)")
            credit(item)
            item.removed_at = t
            cs.tags.add("item_removed")
        cs.emit(t, "customer.subscription.updated", sub)
        if new_anchor is not None or behavior == "always_invoice":
            lines = self._take_pending(sub) + lines
            pause = sub.pause_at(t)
            paused = None if pause is None else pause[0]
            inv = self._invoice(cs, sub, t, "subscription_update", lines, t, t, paused)
            if paused is None:
                self._settle_immediately(cs, None, inv, refundable=False)
        elif behavior == "create_prorations":
            for line in lines:
                line.ii = len(cs.invoice_items)
                line.ii_created = t
                cs.invoice_items.append(line)
                sub.pending.append(line)
                cs.emit(t, "invoiceitem.created", line)
            cs.tags.add("pending_prorations")
        else:
            cs.tags.add("proration_none")
        return new_anchor

    def _invoice_coupon(self, cs: CustomerSim, sub: Sub, coupon: Coupon, t: int) -> None:
        """A coupon for the next renewal invoice only (InvoiceCoupon)."""
        disc = self._add_discount(cs, sub, coupon, t)
        disc.one_invoice = True
        disc.end = disc.removed_at = None
        cs.tags.add("invoice_discount")

    def _coupon_item(self, sub: Sub, ev: AddCoupon, t: int) -> Item | None:
        if ev.item is None:
            return None
        if not 0 <= ev.item < len(sub.items) or not sub.items[ev.item].alive_at(t):
            raise ValueError(f"{ev}: the subscription has no item {ev.item} at that time")
        return sub.items[ev.item]

    def _scripted_coupon(
        self, cs: CustomerSim, sub: Sub, coupon: Coupon, t: int, item: Item | None = None
    ) -> None:
        self._add_discount(cs, sub, coupon, t, item)
        if item is not None:
            cs.tags.add("item_discount")
        if len([d for d in sub.discounts if d.start <= t]) > 1:
            cs.tags.add("several_discounts")
        if coupon.applies_to is not None:
            cs.tags.add("coupon_applies_to")
        if coupon.currency not in (None, cs.currency):
            cs.tags.add("coupon_currency_option")
        kind = "amount" if coupon.amount_off else "percent"
        forever = coupon.duration == "forever"
        cs.tags.add(f"coupon_forever_{kind}" if forever else f"coupon_{coupon.duration}")

    # -- schedules ----------------------------------------------------------------------------

    def _schedule(
        self, cs: CustomerSim, sub: Sub, script: SubscriptionScript, t0: int, pending: deque
    ) -> None:
        """The subscription's schedule: the script's items are phase 0, each Phase the next
        one (its first item's price and/or quantity); the last runs one billing period."""
        cur = cs.currency
        items = [item.state_at(t0) for item in sub.items]
        phases: list[SchedulePhase] = []
        steps: list[tuple[int, Automatic]] = []
        start, behavior = t0, "create_prorations"
        for n, ph in enumerate(script.phases, 1):
            at = self.ts(ph.at)
            if at <= start:
                raise ValueError(f"{ph}: phases follow one another after the start")
            phases.append(SchedulePhase(start, at, list(items), behavior))
            price = items[0][0] if ph.price is None else self.price(ph.price, cur)
            qty = items[0][1] if ph.quantity is None else ph.quantity
            items[0] = (price, qty)
            change = Change(ph.at, ph.price, ph.quantity, proration_behavior=ph.proration_behavior)
            steps.append((at, PhaseStart(n, change)))
            start, behavior = at, ph.proration_behavior
        last = items[0][0]
        end = period_bound(start, last.interval, last.interval_count, 1)
        phases.append(SchedulePhase(start, end, list(items), behavior))
        steps.append((end, ScheduleEnds()))
        sched = Schedule(len(cs.schedules), sub.li, t0, phases)
        cs.schedules.append(sched)
        sub.schedule = sched
        cs.emit(t0, "subscription_schedule.created", sched)
        for at, step in steps:
            keys = [when for when, _ in pending]
            pending.insert(bisect_right(keys, at), (at, step))
        cs.tags.add("subscription_schedule")

    def _phase_starts(self, cs: CustomerSim, sub: Sub, t: int, step: PhaseStart) -> Change:
        """A new phase: subscription_schedule.updated (current_phase); its change follows."""
        cs.emit(t, "subscription_schedule.updated", sub.schedule)
        return step.change

    def _schedule_ends(self, cs: CustomerSim, sub: Sub, t: int) -> None:
        sched = sub.schedule
        sched.released_at = t
        cs.emit(t, "subscription_schedule.released", sched)
        cs.emit(t, "customer.subscription.updated", sub)
        cs.tags.add("subscription_schedule_released")

    # -- collection ---------------------------------------------------------------------------

    def _uncollected_renewal(
        self, sub: Sub, ps: int, pe: int, reason: str, pending: deque
    ) -> str | None:
        """How the invoice opening the period [ps, pe) escapes collection: pause_collection's
        behavior as of ps, "draft_renewal" when a DraftRenewal falls in the period, or None."""
        draft = any(isinstance(e, DraftRenewal) for t, e in pending if t < pe)
        if draft and reason != "subscription_cycle":
            raise ValueError("DraftRenewal: only a renewal invoice (not the first) stays a draft")
        pause = sub.pause_at(ps)
        if pause is not None and reason == "subscription_cycle":
            if draft:
                raise ValueError("DraftRenewal while collection is paused")
            return pause[0]
        return "draft_renewal" if draft else None

    def _collection_step(
        self,
        cs: CustomerSim,
        sub: Sub,
        t: int,
        ev: PauseCollection | ResumeCollection | DraftRenewal,
        pending: deque,
    ) -> None:
        """pause_collection set or cleared (customer.subscription.updated); a DraftRenewal was
        applied when its period's invoice was created."""
        if isinstance(ev, DraftRenewal):
            return
        if isinstance(ev, PauseCollection):
            if sub.pause_at(t) is not None:
                raise ValueError(f"{ev}: collection is already paused")
            resumes = None if ev.resumes_at is None else self.ts(ev.resumes_at)
            if resumes is not None:
                if resumes <= t:
                    raise ValueError(f"{ev}: resumes_at must come after `at`")
                # Stripe clears pause_collection at resumes_at.
                keys = [when for when, _ in pending]
                pending.insert(bisect_right(keys, resumes), (resumes, AutoResume(resumes)))
            self._log_pause(sub, t, (ev.behavior, resumes))
            cs.emit(t, "customer.subscription.updated", sub)
            cs.tags.add("pause_collection")
            return
        if sub.pause_at(t) is None:
            if isinstance(ev, AutoResume):
                return  # resumed by hand before resumes_at
            raise ValueError(f"{ev}: collection is not paused")
        if not isinstance(ev, AutoResume):
            # resumed by hand: a later automatic resumption no longer applies
            for j, (_, e) in enumerate(pending):
                if isinstance(e, AutoResume):
                    del pending[j]
                    break
        self._log_pause(sub, t, None)
        cs.emit(t, "customer.subscription.updated", sub)
        cs.tags.add("collection_resumed")

    def _log_pause(self, sub: Sub, t: int, value: tuple[str, int | None] | None) -> None:
        if not sub.pause_log:
            sub.pause_log = []
        sub.pause_log.append((t, value))

    def _take_pending(self, sub: Sub) -> list[Line]:
        """The subscription's pending invoice items, for the invoice being created."""
        pending, sub.pending = sub.pending, []
        return pending


def interval_of(sub: Sub, t: int) -> tuple[str, int]:
    """The billing interval of a subscription at t (its first live licensed item's)."""
    for item in sub.items:
        if item.alive_at(t):
            price = item.state_at(t)[0]
            if price.licensed:
                return price.interval, price.interval_count
    raise AssertionError("a subscription keeps a licensed item")

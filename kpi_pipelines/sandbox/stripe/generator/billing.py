"""Invoices, payment attempts, dunning, charges and one-off payments."""

from __future__ import annotations

from random import Random

from kpi_pipelines.sandbox.stripe.catalog import (
    DAY,
)
from kpi_pipelines.sandbox.stripe.generator.calendar import fee_for
from kpi_pipelines.sandbox.stripe.generator.config import (
    CARD_DECLINED,
    HOUR,
    MINUTE,
    STREAM_ONE_OFF,
    STREAM_SUB,
)
from kpi_pipelines.sandbox.stripe.generator.objects import (
    CHARGE_DESCRIPTION,
    NEVER,
    BalanceTxn,
    Charge,
    CustomerSim,
    Invoice,
    Line,
    Refund,
    Sub,
    tax_of,
)


class Billing:
    """Billing decisions of the customer simulation; mixed into `Generator`."""

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
        paused: str | None = None,
    ) -> Invoice:
        """A subscription invoice, finalized (and numbered) an hour after a renewal's
        creation, at once otherwise. `paused`: a renewal created while collection is paused
        (pause_collection's behavior: void, keep_as_draft, mark_uncollectible) or left a draft
        by the integration (draft_renewal); see `_uncollected`."""
        inv = Invoice(sub.li, len(cs.invoices), created, reason)
        inv.seq = cs.key(created, STREAM_SUB)
        inv.lines = lines
        inv.period_start, inv.period_end = period_start, period_end
        subtotal = positive = 0
        for line in lines:
            subtotal += line.amount
            if line.amount > 0:
                positive += line.amount
        # Discounts apply one after the other, each to what the ones before left of a line:
        # the items' own discounts first, then the subscription's, in the order they were added.
        left_of = {id(line): line.amount for line in lines}
        ordered = [d for d in sub.discounts if d.item is not None]
        ordered += [d for d in sub.discounts if d.item is None]
        for disc in ordered:
            if not disc.applies_to_invoice_at(created):
                continue
            coupon = disc.coupon
            once = coupon.duration == "once" or disc.one_invoice
            if once and positive <= 0:
                continue
            if disc.one_invoice and reason != "subscription_cycle":
                continue  # set on a draft renewal: not on an update's prorations
            # an item's own discount, else the lines of the products the coupon applies to
            scope = [
                line
                for line in lines
                if left_of[id(line)] > 0
                and (
                    line.item is disc.item
                    if disc.item is not None
                    else coupon.applies(line.price.product.id)
                )
            ]
            applied = False
            amount_off = coupon.amount_off_in(cs.currency)
            if coupon.percent_off is not None:
                for line in scope:
                    amt = round(left_of[id(line)] * coupon.percent_off / 100)
                    if amt:
                        line.add_discount(disc, amt)
                        left_of[id(line)] -= amt
                        applied = True
            elif amount_off and reason != "subscription_update" and scope:
                base = sum(left_of[id(line)] for line in scope)
                total_off = min(amount_off, base)
                left = total_off
                for j, line in enumerate(scope):
                    share = left_of[id(line)]
                    amt = left if j == len(scope) - 1 else total_off * share // base
                    left -= amt
                    if amt:
                        line.add_discount(disc, amt)
                        left_of[id(line)] -= amt
                        applied = True
            if applied or not once:
                inv.discounts.append(disc)
            if once and applied:
                disc.used = True
                if disc.one_invoice:
                    disc.invoice = inv.li
                else:
                    disc.removed_at = created + 2
                    cs.emit(created + 2, "customer.subscription.updated", sub)
        discount_total = 0
        tax_total = included = 0
        for line in lines:
            line_disc = sum(a for _, a in line.discounts)
            discount_total += line_disc
            rate, inclusive = tax_of(cs, sub, line.item, line.price)
            if rate is not None:
                net = line.amount - line_disc
                line.tax_rate = rate
                if inclusive:  # the tax inside the amount: net x p / (100 + p)
                    line.tax_inclusive = True
                    line.tax = round(net * rate.percentage / (100 + rate.percentage))
                    included += line.tax
                else:
                    line.tax = round(net * rate.percentage / 100)
                tax_total += line.tax
        inv.subtotal = subtotal
        inv.discount_total = discount_total
        inv.tax = tax_total
        inv.tax_included = included
        inv.total = subtotal - discount_total + tax_total - included
        inv.starting_balance = cs.balance
        if paused is not None:
            return self._uncollected(cs, sub, inv, paused)
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

    def _uncollected(self, cs: CustomerSim, sub: Sub, inv: Invoice, how: str) -> Invoice:
        """An invoice Stripe does not collect; the customer's credit balance is not used.
        keep_as_draft: a draft with auto_advance false from its creation; draft_renewal: a
        draft whose auto_advance the integration turns off a minute after invoice.created
        (invoice.updated); neither is ever finalized nor numbered. void: finalized and voided
        at once; mark_uncollectible: finalized and marked uncollectible at once."""
        created = inv.created
        inv.amount_due = max(inv.total, 0)
        inv.ending_balance = cs.balance
        sub.invoices.append(inv)
        cs.invoices.append(inv)
        cs.emit(created, "invoice.created", inv)
        if how in ("keep_as_draft", "draft_renewal"):
            inv.finalized_at = NEVER
            if how == "keep_as_draft":
                inv.auto_advance_off = created
            else:
                inv.auto_advance_off = created + MINUTE
                cs.emit(created + MINUTE, "invoice.updated", inv)
            cs.tags.add(f"invoice_{how}")
            return inv
        inv.finalized_at = created + 1
        inv.number = cs.next_number
        cs.next_number += 1
        cs.emit(created + 1, "invoice.finalized", inv)
        if how == "void":
            inv.voided_at = created + 1
            cs.emit(created + 1, "invoice.voided", inv)
        else:
            assert how == "mark_uncollectible", how
            inv.marked_uncollectible_at = created + 1
            cs.emit(created + 1, "invoice.marked_uncollectible", inv)
        cs.tags.add(f"pause_collection_{how}")
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
        sub.set_status(t + 2, "past_due")
        cs.emit(t + 2, "customer.subscription.updated", sub)
        cs.delinquent_log.append((t + 3, True))
        cs.emit(t + 3, "customer.updated", None)
        for j, when in enumerate(retries):
            if u_retry[j] < 0.4:
                self._charge(cs, rs, when, inv.amount_due, inv, "succeeded")
                self._paid(cs, inv, when + 1)
                sub.set_status(when + 2, "active")
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
        sub.set_status(t_u, "unpaid")
        cs.emit(t_u, "customer.subscription.updated", sub)
        if t_u <= cs.horizon:
            cs.tags.add("unpaid")
        later = t_u + int(scale * (0.05 + 0.4 * u_unpaid_t))
        if u_unpaid < 0.3:
            self._charge(cs, rs, later - 1, inv.amount_due, inv, "succeeded")
            self._paid(cs, inv, later)
            sub.set_status(later, "active")
            cs.emit(later, "customer.subscription.updated", sub)
            cs.delinquent_log.append((later + 1, False))
            cs.emit(later + 1, "customer.updated", None)
            if later <= cs.horizon:
                cs.tags.add("unpaid_then_paid")
            return "paid", later + 1
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
            description = CHARGE_DESCRIPTION.get(
                inv.billing_reason if inv else "", "Subscription renewal"
            )
        ch = Charge(t, amount, status, -1 if inv is None else inv.li, description)
        ch.seq = cs.key(t, STREAM_SUB if inv is not None else STREAM_ONE_OFF)
        cs.charges.append(ch)
        if inv is not None:
            inv.charges.append(ch)
        if status == "failed":
            ch.failure = CARD_DECLINED
            cs.emit(t, "charge.failed", ch, STREAM_SUB if inv else STREAM_ONE_OFF)
            cs.tags.add("failed_charge")
            return ch
        bt = BalanceTxn(ch, t, amount, fee_for(amount, cs.currency), "charge")
        bt.seq = ch.seq
        ch.bt = bt
        cs.bts.append(bt)
        cs.emit(t, "charge.succeeded", ch, STREAM_SUB if inv else STREAM_ONE_OFF)
        rng = rs
        if rng is None:  # prorations draw their refund from the invoice (still deterministic)
            rng = Random(f"{self.config.seed}:{cs.ci}:r:{t}")
        u_ref, u_t, u_full, u_part = rng.random(), rng.random(), rng.random(), rng.random()
        if refundable and u_ref < 0.05:
            t_r = t + int((1 + 29 * u_t) * DAY)
            full = u_full < 0.5
            r_amount = amount if full else max(1, int(amount * (0.1 + 0.8 * u_part)))
            refund = Refund(ch, t_r, r_amount, "requested_by_customer")
            refund.seq = cs.key(t_r, STREAM_SUB if inv else STREAM_ONE_OFF)
            ch.refunds = [refund]
            cs.refunds.append(refund)
            rbt = BalanceTxn(refund, t_r, -r_amount, 0, "refund")
            rbt.seq = refund.seq
            refund.bt = rbt
            cs.bts.append(rbt)
            stream = STREAM_SUB if inv else STREAM_ONE_OFF
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

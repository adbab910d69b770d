"""Subscriptions, their items, invoices and invoice lines as Stripe JSON, as of an instant."""

from __future__ import annotations

from typing import Any

from kpi_pipelines.sandbox.stripe.catalog import decimal_text
from kpi_pipelines.sandbox.stripe.generator import (
    CustomerSim,
    Invoice,
    Item,
    Line,
    Sub,
)
from kpi_pipelines.sandbox.stripe.generator.objects import NEVER
from kpi_pipelines.sandbox.stripe.render.common import (
    ACCOUNT_NAME,
    Obj,
    address,
    is_basil,
    iso_date,
    money_text,
)


class BillingRendering:
    """Subscription and invoice objects; mixed into `Renderer`."""

    # -- subscriptions ------------------------------------------------------------------------

    def subscription(
        self, cs: CustomerSim, sub: Sub, t: int, version: str, ex: dict | None = None
    ) -> Obj:
        basil = is_basil(version)
        sid = self.sub_id(cs, sub)
        ps, pe = sub.period_at(t)
        items_ex = ex.get("items", {}).get("data") if ex and ex.get("items") else None
        items = [
            self.subscription_item(cs, item, t, version, items_ex, period=(ps, pe), sid=sid)
            for item in sub.items
            if item.alive_at(t)
        ]
        latest = None
        for inv in sub.invoices:
            if inv.created <= t:
                latest = inv
            else:
                break
        disc_ex = ex.get("discounts") if ex and "discounts" in ex else None
        discounts: list[Any] = []
        for disc in sub.discounts:
            if disc.item is not None or disc.one_invoice:
                continue  # on its subscription item, or on one invoice
            if disc.start <= t and (disc.removed_at is None or t < disc.removed_at):
                discounts.append(
                    self.discount(cs, disc, disc_ex)
                    if disc_ex is not None
                    else self.di_id(cs, disc)
                )
        decided = sub.cancel_decided_at is not None and sub.cancel_decided_at <= t
        ended = sub.ended_at is not None and sub.ended_at <= t
        latest_value: Any = None
        if latest is not None:
            latest_value = self.in_id(cs, latest)
            if ex and "latest_invoice" in ex:
                latest_value = self.invoice(cs, latest, t, version, ex["latest_invoice"])
        customer: Any = self.cus_id(cs)
        if ex and "customer" in ex:
            customer = self.customer(cs, t, ex["customer"])
        out = {
            "id": sid,
            "object": "subscription",
            "application": None,
            "application_fee_percent": None,
            "automatic_tax": {
                "disabled_reason": None,
                "enabled": cs.tax is not None,
                "liability": {"type": "self"} if cs.tax is not None else None,
            },
            "billing_cycle_anchor": sub.anchor_at(t),
            "billing_cycle_anchor_config": None,
            "billing_mode": {"flexible": None, "type": "classic"},
            "billing_schedules": [],
            "billing_thresholds": None,
            "cancel_at": sub.cancel_at if decided else None,
            "cancel_at_period_end": bool(decided and sub.cancel_at is not None),
            "canceled_at": sub.cancel_decided_at if decided else None,
            "cancellation_details": {
                "comment": None,
                "feedback": None,
                "reason": sub.cancel_reason if decided else None,
            },
            "collection_method": "charge_automatically",
            "created": sub.created,
            "currency": cs.currency,
            "customer": customer,
            "customer_account": None,
            "days_until_due": None,
            "default_payment_method": (
                self.pm_id(cs)
                if sub.payment_method_from is None or sub.payment_method_from <= t
                else None
            ),
            "default_source": None,
            "default_tax_rates": [self.tax_rate(r) for r in sub.tax_rates],
            "description": None,
            "discounts": discounts,
            "ended_at": sub.ended_at if ended else None,
            "invoice_settings": {
                "account_tax_ids": None,
                "custom_fields": None,
                "description": None,
                "footer": None,
                "issuer": {"type": "self"},
            },
            "items": {
                "object": "list",
                "data": items,
                "has_more": False,
                "url": f"/v1/subscription_items?subscription={sid}",
            },
            "latest_invoice": latest_value,
            "livemode": False,
            "managed_payments": {"enabled": False},
            "metadata": {},
            "next_pending_invoice_item_invoice": None,
            "on_behalf_of": None,
            "pause_collection": _pause_collection(sub.pause_at(t)),
            "payment_settings": {
                "payment_method_options": None,
                "payment_method_types": None,
                "save_default_payment_method": "off",
            },
            "pending_invoice_item_interval": None,
            "pending_setup_intent": None,
            "pending_update": None,
            "schedule": self.sched_id(cs, sub.schedule)
            if sub.schedule is not None and sub.schedule.status_at(t) == "active"
            else None,
            "start_date": sub.created,
            "status": sub.status_at(t),
            "test_clock": None,
            "transfer_data": None,
            "trial_end": sub.trial_end,
            "trial_settings": {
                "end_behavior": {"missing_payment_method": sub.missing_payment_method}
            },
            "trial_start": sub.trial_start,
        }
        if not basil:
            out["current_period_start"] = ps
            out["current_period_end"] = pe
        return out

    def subscription_item(
        self,
        cs: CustomerSim,
        item: Item,
        t: int,
        version: str,
        ex: dict | None = None,
        *,
        period: tuple[int, int] | None = None,
        sid: str | None = None,
    ) -> Obj:
        price, qty = item.state_at(t)
        if period is None:
            period = cs.subs[item.sub].period_at(t)
        disc_ex = ex.get("discounts") if ex and "discounts" in ex else None
        discounts = [
            self.discount(cs, disc, disc_ex) if disc_ex is not None else self.di_id(cs, disc)
            for disc in cs.subs[item.sub].discounts
            if disc.item is item
            and disc.start <= t
            and (disc.removed_at is None or t < disc.removed_at)
        ]
        out = {
            "id": self.si_id(cs, item),
            "object": "subscription_item",
            "billing_thresholds": None,
            "created": item.created,
            "discounts": discounts,
            "metadata": {},
            "plan": self.plan(price),
            "price": self.price(price, ex.get("price") if ex else None),
            "quantity": qty,
            "subscription": sid or self.sub_id(cs, item.sub),
            "tax_rates": [self.tax_rate(r) for r in item.tax_rates],
        }
        if is_basil(version):
            out["current_period_end"] = period[1]
            out["current_period_start"] = period[0]
        return out

    # -- invoices -----------------------------------------------------------------------------

    def invoice(
        self, cs: CustomerSim, inv: Invoice, t: int, version: str, ex: dict | None = None
    ) -> Obj:
        iid = self.in_id(cs, inv)
        sid = self.sub_id(cs, inv.sub)
        finalized = inv.finalized_at <= t
        paid = inv.paid_at is not None and inv.paid_at <= t
        status = inv.status_at(t)
        advance_off = inv.auto_advance_off is not None and inv.auto_advance_off <= t
        uncollectible = inv.marked_uncollectible_at is not None and inv.marked_uncollectible_at <= t
        voided = status == "void"
        failed = 0
        next_attempt = None
        for when, nxt in inv.attempts:
            if when <= t:
                failed += 1
                next_attempt = nxt
        charged = sum(1 for ch in inv.charges if ch.created <= t)
        if paid or uncollectible or voided or (finalized and failed == 0):
            next_attempt = None
        attempt_count = charged
        cur = cs.currency
        lines_ex = ex.get("lines", {}).get("data") if ex and ex.get("lines") else None
        lines = [self.line(cs, inv, line, t, lines_ex, iid=iid, sid=sid) for line in inv.lines]
        disc_ex = ex.get("discounts") if ex and "discounts" in ex else None
        totals: dict[int, int] = {}
        for line in inv.lines:
            for disc, amt in line.discounts:
                totals[disc.li] = totals.get(disc.li, 0) + amt
        tda_ex = (ex.get("total_discount_amounts") or {}).get("discount") if ex else None
        total_discount_amounts = []
        pretax = []
        for disc in inv.discounts:
            amt = totals.get(disc.li, 0)
            did = self.di_id(cs, disc)
            total_discount_amounts.append(
                {
                    "amount": amt,
                    "discount": self.discount(cs, disc, tda_ex) if tda_ex is not None else did,
                }
            )
            pretax.append(
                {
                    "amount": amt,
                    "credit_balance_transaction": None,
                    "discount": did,
                    "type": "discount",
                }
            )
        # One entry per tax rate and behavior, summed over the lines (in their order).
        by_rate: dict[tuple[str, bool], list[int]] = {}
        excluding_tax = 0  # the lines' amounts without their included tax, before discounts
        for line in inv.lines:
            excluding_tax += line.amount - _included_in_amount(line)
            if line.tax_rate is None:
                continue
            sums = by_rate.setdefault((line.tax_rate.id, line.tax_inclusive), [0, 0])
            sums[0] += line.tax
            sums[1] += _taxable(line)
        total_taxes = [
            _tax_entry(amount, rate_id, inclusive, taxable)
            for (rate_id, inclusive), (amount, taxable) in by_rate.items()
        ]
        customer: Any = self.cus_id(cs)
        if ex and "customer" in ex:
            customer = self.customer(cs, t, ex["customer"])
        email = cs.email
        for when, value in cs.email_log:
            if when <= inv.created:
                email = value
        parent_sub: Any = sid
        if ex and "parent" in ex:
            sub_ex = ex["parent"].get("subscription_details", {}).get("subscription")
            if sub_ex is not None:
                parent_sub = self.subscription(cs, cs.subs[inv.sub], t, version, sub_ex)
        hosted = (
            f"https://invoice.stripe.com/i/{self.gen.config.account_id}/{iid}"
            if finalized
            else None
        )
        return {
            "id": iid,
            "object": "invoice",
            "account_country": "US",
            "account_name": ACCOUNT_NAME,
            "account_tax_ids": None,
            "amount_due": inv.amount_due,
            "amount_overpaid": 0,
            "amount_paid": inv.amount_due if paid else 0,
            "amount_remaining": 0 if paid else inv.amount_due,
            "amount_shipping": 0,
            "application": None,
            "attempt_count": attempt_count,
            "attempted": attempt_count > 0 or paid,
            "auto_advance": status in ("draft", "open") and not advance_off,
            "automatic_tax": {
                "disabled_reason": None,
                "enabled": cs.tax is not None,
                "liability": {"type": "self"} if cs.tax is not None else None,
                "provider": "stripe" if cs.tax is not None else None,
                "status": "complete" if cs.tax is not None else None,
            },
            "automatically_finalizes_at": None
            if finalized or advance_off
            else (inv.created + 3600 if inv.finalized_at == NEVER else inv.finalized_at),
            "billing_reason": inv.billing_reason,
            "collection_method": "charge_automatically",
            "created": inv.created,
            "currency": cur,
            "custom_fields": None,
            "customer": customer,
            "customer_account": None,
            "customer_address": address(cs.country, cs.ci),
            "customer_email": email,
            "customer_name": cs.name,
            "customer_phone": cs.phone,
            "customer_shipping": None,
            "customer_tax_exempt": "none",
            "customer_tax_ids": [],
            "default_payment_method": None,
            "default_source": None,
            "default_tax_rates": [],
            "description": None,
            "discounts": [
                self.discount(cs, d, disc_ex) if disc_ex is not None else self.di_id(cs, d)
                for d in inv.discounts
                if d.item is None  # an item's discount is on its lines
            ],
            "due_date": None,
            "effective_at": inv.finalized_at if finalized else None,
            "ending_balance": inv.ending_balance if finalized else None,
            "footer": None,
            "from_invoice": None,
            "hosted_invoice_url": hosted,
            "invoice_pdf": f"{hosted}/pdf" if hosted else None,
            "issuer": {"type": "self"},
            "last_finalization_error": None,
            "latest_revision": None,
            "lines": {
                "object": "list",
                "data": lines[:10],
                "has_more": len(lines) > 10,
                "url": f"/v1/invoices/{iid}/lines",
            },
            "livemode": False,
            "metadata": {},
            "next_payment_attempt": next_attempt,
            "number": f"{cs.invoice_prefix}-{inv.number:04d}" if finalized else None,
            "on_behalf_of": None,
            "parent": {
                "quote_details": None,
                "subscription_details": {"metadata": {}, "subscription": parent_sub},
                "type": "subscription_details",
            },
            "payment_settings": {
                "default_mandate": None,
                "payment_method_options": None,
                "payment_method_types": None,
            },
            "period_end": inv.period_end,
            "period_start": inv.period_start,
            "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0,
            "receipt_number": None,
            "rendering": None,
            "shipping_cost": None,
            "shipping_details": None,
            "starting_balance": inv.starting_balance,
            "statement_descriptor": None,
            "status": status,
            "status_transitions": {
                "finalized_at": inv.finalized_at if finalized else None,
                "marked_uncollectible_at": inv.marked_uncollectible_at if uncollectible else None,
                "paid_at": inv.paid_at if paid else None,
                "voided_at": inv.voided_at if voided else None,
            },
            "subscription": None if is_basil(version) else sid,
            "subtotal": inv.subtotal,
            "subtotal_excluding_tax": excluding_tax,
            "test_clock": None,
            "total": inv.total,
            "total_discount_amounts": total_discount_amounts,
            "total_excluding_tax": inv.subtotal - inv.discount_total - inv.tax_included,
            "total_pretax_credit_amounts": pretax,
            "total_taxes": total_taxes,
            "webhooks_delivered_at": inv.created,
        }

    def line(
        self,
        cs: CustomerSim,
        inv: Invoice,
        line: Line,
        t: int,
        ex: dict | None = None,
        *,
        iid: str | None = None,
        sid: str | None = None,
    ) -> Obj:
        iid = iid or self.in_id(cs, inv)
        sid = sid or self.sub_id(cs, inv.sub)
        price = line.price
        cur = cs.currency
        qty = line.quantity
        name = price.product.name
        if line.proration:
            desc = _proration_description(line)
        elif (
            inv.billing_reason == "subscription_create"
            and inv.total == 0
            and cs.subs[inv.sub].trial_end
        ):
            desc = f"Trial period for {name}"
        elif price.unit_amount is not None:
            per = (
                price.interval
                if price.interval_count == 1
                else f"{price.interval_count} {price.interval}s"
            )
            package = "" if price.transform is None else f" per {price.transform[0]}"
            at = money_text(price.unit_amount, cur)
            desc = f"{qty} \u00d7 {name} (at {at}{package} / {per})"
        elif price.unit_decimal is not None:
            desc = f"{qty} \u00d7 {name} (at {decimal_text(price.unit_decimal)} {cur} minor units)"
        else:
            desc = f"{qty} \u00d7 {name} (tiered)"
        credited = None
        if line.credited is not None and line.credited.invoice >= 0:
            old = line.credited
            credited = {
                "invoice": self._enc("in", cs.ci, old.invoice),
                "invoice_line_items": [self._enc("il", cs.ci, old.invoice, old.idx)],
            }
        dam_ex = (ex.get("discount_amounts") or {}).get("discount") if ex else None
        discount_amounts = [
            {
                "amount": amt,
                "discount": self.discount(cs, d, dam_ex)
                if dam_ex is not None
                else self.di_id(cs, d),
            }
            for d, amt in line.discounts
        ]
        price_value: Any = price.id
        if ex and "pricing" in ex:
            pex = (ex["pricing"].get("price_details") or {}).get("price")
            if pex is not None:
                price_value = self.price(price, pex)
        taxes = []
        if line.tax_rate is not None:
            taxes.append(_tax_entry(line.tax, line.tax_rate.id, line.tax_inclusive, _taxable(line)))
        return {
            "id": self.il_id(cs, inv, line),
            "object": "line_item",
            "amount": line.amount,
            "currency": cur,
            "description": desc,
            "discount_amounts": discount_amounts,
            "discountable": True,
            "discounts": [self.di_id(cs, d) for d, _ in line.discounts if d.item is not None],
            "invoice": iid,
            "livemode": False,
            "metadata": {},
            "parent": {
                "invoice_item_details": None,
                "subscription_item_details": {
                    "invoice_item": self.ii_id(cs, line) if line.ii >= 0 else None,
                    "proration": line.proration,
                    "proration_details": {"credited_items": credited},
                    "subscription": sid,
                    "subscription_item": self.si_id(cs, line.item),
                },
                "type": "subscription_item_details",
            },
            "period": {"end": line.end, "start": line.start},
            "pretax_credit_amounts": [
                {
                    "amount": amt,
                    "credit_balance_transaction": None,
                    "discount": self.di_id(cs, d),
                    "type": "discount",
                }
                for d, amt in line.discounts
            ],
            "pricing": {
                "price_details": {"price": price_value, "product": price.product.id},
                "type": "price_details",
                "unit_amount_decimal": None if price.unit is None else decimal_text(price.unit),
            },
            "quantity": qty,
            "quantity_decimal": None if qty is None else str(qty),
            "subscription": sid,
            "subtotal": line.amount,
            "taxes": taxes,
        }

    # -- pending invoice items ----------------------------------------------------------------

    def invoice_item(self, cs: CustomerSim, line: Line, t: int) -> Obj:
        """A proration line made a pending invoice item (create_prorations), as of t: its
        `invoice` is null until the subscription's next invoice takes it."""
        sub = cs.subs[line.item.sub]
        invoice = None
        for inv in sub.invoices:
            if inv.created <= t and line in inv.lines:
                invoice = self.in_id(cs, inv)
                break
        price = line.price
        return {
            "id": self.ii_id(cs, line),
            "object": "invoiceitem",
            "amount": line.amount,
            "currency": cs.currency,
            "customer": self.cus_id(cs),
            "customer_account": None,
            "date": line.ii_created,
            "description": _proration_description(line),
            "discountable": False,
            "discounts": [],
            "invoice": invoice,
            "livemode": False,
            "metadata": {},
            "net_amount": line.amount,
            "parent": {
                "subscription_details": {
                    "subscription": self.sub_id(cs, sub),
                    "subscription_item": self.si_id(cs, line.item),
                },
                "type": "subscription_details",
            },
            "period": {"end": line.end, "start": line.start},
            "pricing": {
                "price_details": {"price": price.id, "product": price.product.id},
                "type": "price_details",
                "unit_amount_decimal": None if price.unit is None else decimal_text(price.unit),
            },
            "proration": line.proration,
            "quantity": line.quantity if line.quantity is not None else 1,
            "quantity_decimal": str(line.quantity if line.quantity is not None else 1),
            "tax_rates": [self.tax_rate(r) for r in (line.item.tax_rates or sub.tax_rates)],
            "test_clock": None,
        }


def _proration_description(line: Line) -> str:
    name = line.price.product.name
    when = "Unused" if line.amount < 0 else "Remaining"
    return f"{when} time on {line.quantity} \u00d7 {name} after {iso_date(line.start)}"


def _pause_collection(value: tuple[str, int | None] | None) -> Obj | None:
    if value is None:
        return None
    behavior, resumes_at = value
    return {"behavior": behavior, "resumes_at": resumes_at}


def _taxable(line: Line) -> int:
    """What a line's tax is computed on: its amount after discounts, less the tax in it."""
    net = line.amount - sum(a for _, a in line.discounts)
    return net - line.tax if line.tax_inclusive else net


def _included_in_amount(line: Line) -> int:
    """The tax included in a line's amount before discounts (0 for exclusive tax)."""
    if not line.tax_inclusive or line.tax_rate is None:
        return 0
    pct = line.tax_rate.percentage
    return round(line.amount * pct / (100 + pct))


def _tax_entry(amount: int, rate_id: str, inclusive: bool, taxable: int) -> Obj:
    return {
        "amount": amount,
        "tax_behavior": "inclusive" if inclusive else "exclusive",
        "tax_rate_details": {"tax_rate": rate_id},
        "taxability_reason": "standard_rated",
        "taxable_amount": taxable,
        "type": "tax_rate_details",
    }

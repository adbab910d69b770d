"""Render simulated objects as Stripe JSON, as of an instant and for an API version.

Every rendered object has exactly the keys of Stripe's own example object for its resource
(`stripe-fixtures3.json`), nested objects too where practical. Expandable fields are ids unless
the request expands them (`Expander`); `price.tiers` is includable only by expansion, as at
Stripe. Versions 2025-03-31.basil and later carry `current_period_start/end` on subscription
items, older versions on the subscription.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kpi_pipelines.sandbox.stripe.catalog import Coupon, Price, Product, TaxRate
from kpi_pipelines.sandbox.stripe.generator import (
    BalanceTxn,
    Charge,
    CustomerSim,
    Discount,
    Generator,
    Invoice,
    Item,
    Line,
    Refund,
    Sub,
)
from kpi_pipelines.sandbox.stripe.ids import CATALOG_OWNER

DEFAULT_API_VERSION = "2025-09-30.clover"  # the simulated account's default version
BASIL = "2025-03-31"
ACCOUNT_NAME = "KPI Sandbox Inc."
REFUND_DESCRIPTION = "REFUND FOR CHARGE"

Obj = dict[str, Any]


def is_basil(version: str) -> bool:
    """Whether `version` has the 2025-03-31.basil shapes (current periods on items)."""
    return version[:10] >= BASIL


def _addr(country: str, ci: int) -> Obj:
    city, postal, state = {
        "US": ("New York", "10001", "NY"),
        "DE": ("Berlin", "10115", None),
        "FR": ("Paris", "75001", None),
        "GB": ("London", "EC1A 1BB", None),
        "JP": ("Tokyo", "100-0001", None),
    }.get(country, ("Springfield", "00000", None))
    return {
        "city": city,
        "country": country,
        "line1": f"{100 + ci % 900} Market Street",
        "line2": None,
        "postal_code": postal,
        "state": state,
    }


def customer_facts(cs: CustomerSim, t: int) -> tuple[int, bool, int, bool]:
    """(balance, delinquent, finalized invoices, billed yet) of a simulated customer at t."""
    finalized = sum(1 for inv in cs.invoices if inv.finalized_at <= t)
    billed = bool(
        (cs.invoices and cs.invoices[0].created <= t) or (cs.charges and cs.charges[0].created <= t)
    )
    return cs.log_at(cs.balance_log, t), cs.log_at(cs.delinquent_log, t), finalized, billed


def _money(amount: int, currency: str) -> str:
    if currency in ("jpy",):
        return f"¥{amount:,}"
    symbol = {"usd": "$", "eur": "€", "gbp": "£"}.get(currency, currency.upper() + " ")
    return f"{symbol}{amount / 100:,.2f}"


def _date(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%-d %b %Y")


class Renderer:
    """Builds Stripe JSON from a Generator's objects. Catalog objects are cached."""

    def __init__(self, gen: Generator) -> None:
        self.gen = gen
        self.codec = gen.codec
        self.catalog = gen.catalog
        self._price_cache: dict[tuple[str, bool], Obj] = {}
        self._plan_cache: dict[str, Obj] = {}
        self._product_cache: dict[str, Obj] = {}
        self.coupon_redemptions: dict[str, int] = {}
        enc = self.codec.encode
        self._enc = enc

    # -- ids ----------------------------------------------------------------------------------

    def cus_id(self, cs: CustomerSim) -> str:
        return self._enc("cus", cs.ci, 0)

    def sub_id(self, cs: CustomerSim, sub: Sub | int) -> str:
        return self._enc("sub", cs.ci, sub if isinstance(sub, int) else sub.li)

    def si_id(self, cs: CustomerSim, item: Item) -> str:
        return self._enc("si", cs.ci, item.li)

    def in_id(self, cs: CustomerSim, inv: Invoice) -> str:
        return self._enc("in", cs.ci, inv.li)

    def il_id(self, cs: CustomerSim, inv: Invoice, line: Line) -> str:
        return self._enc("il", cs.ci, inv.li, line.idx)

    def ch_id(self, cs: CustomerSim, ch: Charge) -> str:
        return self._enc("ch", cs.ci, ch.li)

    def re_id(self, cs: CustomerSim, rf: Refund) -> str:
        return self._enc("re", cs.ci, rf.li)

    def txn_id(self, cs: CustomerSim, bt: BalanceTxn) -> str:
        return self._enc("txn", cs.ci, bt.li)

    def di_id(self, cs: CustomerSim, disc: Discount) -> str:
        return self._enc("di", cs.ci, disc.li)

    def evt_id(self, cs: CustomerSim | None, li: int) -> str:
        return self._enc("evt", CATALOG_OWNER if cs is None else cs.ci, li)

    def pi_id(self, cs: CustomerSim, ch: Charge) -> str:
        return self._enc("pi", cs.ci, ch.li)

    def pm_id(self, cs: CustomerSim) -> str:
        return self._enc("pm", cs.ci, 0)

    # -- catalog ------------------------------------------------------------------------------

    def product(self, product: Product, ex: dict | None = None) -> Obj:
        cached = self._product_cache.get(product.id)
        if cached is None:
            cached = self._product_cache[product.id] = {
                "id": product.id,
                "object": "product",
                "active": True,
                "created": product.created,
                "default_price": product.default_price,
                "description": product.description,
                "images": [],
                "livemode": False,
                "marketing_features": [],
                "metadata": {},
                "name": product.name,
                "package_dimensions": None,
                "shippable": None,
                "statement_descriptor": None,
                "tax_code": "txcd_10103001",
                "type": "service",
                "unit_label": "seat"
                if product.key in ("pro", "business", "seats", "volume")
                else None,
                "updated": product.created,
                "url": None,
            }
        if ex and "default_price" in ex and product.default_price:
            out = dict(cached)
            price = self.catalog.price_by_id[product.default_price]
            out["default_price"] = self.price(price, ex["default_price"])
            return out
        return cached

    def price(self, price: Price, ex: dict | None = None) -> Obj:
        tiers = bool(ex and "tiers" in ex)
        key = (price.id, tiers)
        cached = self._price_cache.get(key)
        if cached is None:
            cached = {
                "id": price.id,
                "object": "price",
                "active": price.active,
                "billing_scheme": price.billing_scheme,
                "created": price.created,
                "currency": price.currency,
                "custom_unit_amount": None,
                "livemode": False,
                "lookup_key": f"{price.key}_{price.currency}",
                "metadata": {},
                "nickname": price.nickname,
                "product": price.product.id,
                "recurring": {
                    "interval": price.interval,
                    "interval_count": price.interval_count,
                    "meter": price.meter,
                    "trial_period_days": None,
                    "usage_type": price.usage_type,
                },
                "tax_behavior": "exclusive",
                "tiers_mode": price.tiers_mode,
                "transform_quantity": None,
                "type": "recurring",
                "unit_amount": price.unit_amount,
                "unit_amount_decimal": None
                if price.unit_amount is None
                else str(price.unit_amount),
            }
            if tiers:
                cached["tiers"] = (
                    [
                        {
                            "flat_amount": t.flat_amount,
                            "flat_amount_decimal": str(t.flat_amount),
                            "unit_amount": t.unit_amount,
                            "unit_amount_decimal": str(t.unit_amount),
                            "up_to": t.up_to,
                        }
                        for t in price.tiers
                    ]
                    if price.tiers
                    else None
                )
            self._price_cache[key] = cached
        if ex and "product" in ex:
            out = dict(cached)
            out["product"] = self.product(price.product, ex["product"])
            return out
        return cached

    def plan(self, price: Price) -> Obj:
        cached = self._plan_cache.get(price.id)
        if cached is None:
            cached = self._plan_cache[price.id] = {
                "id": price.id,
                "object": "plan",
                "active": price.active,
                "amount": price.unit_amount,
                "amount_decimal": None if price.unit_amount is None else str(price.unit_amount),
                "billing_scheme": price.billing_scheme,
                "created": price.created,
                "currency": price.currency,
                "interval": price.interval,
                "interval_count": price.interval_count,
                "livemode": False,
                "metadata": {},
                "meter": price.meter,
                "nickname": price.nickname,
                "product": price.product.id,
                "tiers_mode": price.tiers_mode,
                "transform_usage": None,
                "trial_period_days": None,
                "usage_type": price.usage_type,
            }
        return cached

    def coupon(self, coupon: Coupon, at: int | None = None) -> Obj:
        redeemed = self.coupon_redemptions.get(coupon.id, 0) if at is None else 0
        return {
            "id": coupon.id,
            "object": "coupon",
            "amount_off": coupon.amount_off,
            "created": coupon.created,
            "currency": coupon.currency,
            "duration": coupon.duration,
            "duration_in_months": coupon.duration_in_months,
            "livemode": False,
            "max_redemptions": None,
            "metadata": {},
            "name": coupon.name,
            "percent_off": coupon.percent_off,
            "redeem_by": None,
            "times_redeemed": redeemed,
            "valid": True,
        }

    def tax_rate(self, rate: TaxRate) -> Obj:
        return {
            "id": rate.id,
            "object": "tax_rate",
            "active": True,
            "country": rate.country,
            "created": rate.created,
            "description": f"{rate.display_name} {rate.country}",
            "display_name": rate.display_name,
            "effective_percentage": rate.percentage,
            "flat_amount": None,
            "inclusive": False,
            "jurisdiction": rate.jurisdiction,
            "jurisdiction_level": "state" if rate.country == "US" else "country",
            "livemode": False,
            "metadata": {},
            "percentage": rate.percentage,
            "rate_type": "percentage",
            "state": rate.jurisdiction if rate.country == "US" else None,
            "tax_type": "sales_tax" if rate.country == "US" else "vat",
        }

    # -- customers ----------------------------------------------------------------------------

    def customer(self, cs: CustomerSim, t: int, ex: dict | None = None) -> Obj:
        facts = customer_facts(cs, t)
        return self.customer_dict(cs, t, *facts)

    def customer_dict(
        self,
        cs: CustomerSim,
        t: int,
        balance: int,
        delinquent: bool,
        finalized: int,
        billed: bool,
    ) -> Obj:
        """A customer from its header (Generator.header) and four facts about its history."""
        email = cs.email
        for when, value in cs.email_log:
            if when <= t:
                email = value
        return {
            "id": self.cus_id(cs),
            "object": "customer",
            "address": _addr(cs.country, cs.ci),
            "balance": balance,
            "created": cs.created,
            "currency": cs.currency if billed else None,
            "default_source": None,
            "delinquent": delinquent,
            "description": None,
            "discount": None,
            "email": email,
            "invoice_prefix": cs.invoice_prefix,
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": self.pm_id(cs),
                "footer": None,
                "rendering_options": None,
            },
            "livemode": False,
            "metadata": {"sandbox_index": str(cs.ci)},
            "name": cs.name,
            "next_invoice_sequence": finalized + 1,
            "phone": cs.phone,
            "preferred_locales": [],
            "shipping": None,
            "tax_exempt": "none",
            "test_clock": None,
        }

    # -- discounts ----------------------------------------------------------------------------

    def discount(self, cs: CustomerSim, disc: Discount, ex: dict | None = None) -> Obj:
        coupon: Any = disc.coupon.id
        source_ex = ex.get("source") if ex else None
        if source_ex and "coupon" in source_ex:
            coupon = self.coupon(disc.coupon)
        customer: Any = self.cus_id(cs)
        if ex and "customer" in ex:
            customer = self.customer(cs, self.gen.horizon, ex["customer"])
        return {
            "id": self.di_id(cs, disc),
            "object": "discount",
            "checkout_session": None,
            "customer": customer,
            "customer_account": None,
            "end": disc.end,
            "invoice": None,
            "invoice_item": None,
            "promotion_code": None,
            "source": {"coupon": coupon, "type": "coupon"},
            "start": disc.start,
            "subscription": self.sub_id(cs, disc.sub),
            "subscription_item": None,
        }

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
            "default_payment_method": self.pm_id(cs),
            "default_source": None,
            "default_tax_rates": [],
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
            "pause_collection": None,
            "payment_settings": {
                "payment_method_options": None,
                "payment_method_types": None,
                "save_default_payment_method": "off",
            },
            "pending_invoice_item_interval": None,
            "pending_setup_intent": None,
            "pending_update": None,
            "schedule": None,
            "start_date": sub.created,
            "status": sub.status_at(t),
            "test_clock": None,
            "transfer_data": None,
            "trial_end": sub.trial_end,
            "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
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
        out = {
            "id": self.si_id(cs, item),
            "object": "subscription_item",
            "billing_thresholds": None,
            "created": item.created,
            "discounts": [],
            "metadata": {},
            "plan": self.plan(price),
            "price": self.price(price, ex.get("price") if ex else None),
            "quantity": qty,
            "subscription": sid or self.sub_id(cs, item.sub),
            "tax_rates": [],
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
        uncollectible = inv.marked_uncollectible_at is not None and inv.marked_uncollectible_at <= t
        if not finalized:
            status = "draft"
        elif paid:
            status = "paid"
        elif uncollectible:
            status = "uncollectible"
        else:
            status = "open"
        failed = 0
        next_attempt = None
        for when, nxt in inv.attempts:
            if when <= t:
                failed += 1
                next_attempt = nxt
        charged = sum(1 for ch in inv.charges if ch.created <= t)
        if paid or uncollectible or (finalized and failed == 0):
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
        total_taxes = []
        if cs.tax is not None:
            total_taxes.append(
                {
                    "amount": inv.tax,
                    "tax_behavior": "exclusive",
                    "tax_rate_details": {"tax_rate": cs.tax.id},
                    "taxability_reason": "standard_rated",
                    "taxable_amount": inv.subtotal - inv.discount_total,
                    "type": "tax_rate_details",
                }
            )
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
            "auto_advance": status in ("draft", "open"),
            "automatic_tax": {
                "disabled_reason": None,
                "enabled": cs.tax is not None,
                "liability": {"type": "self"} if cs.tax is not None else None,
                "provider": "stripe" if cs.tax is not None else None,
                "status": "complete" if cs.tax is not None else None,
            },
            "automatically_finalizes_at": None if finalized else inv.finalized_at,
            "billing_reason": inv.billing_reason,
            "collection_method": "charge_automatically",
            "created": inv.created,
            "currency": cur,
            "custom_fields": None,
            "customer": customer,
            "customer_account": None,
            "customer_address": _addr(cs.country, cs.ci),
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
                "voided_at": None,
            },
            "subscription": None if is_basil(version) else sid,
            "subtotal": inv.subtotal,
            "subtotal_excluding_tax": inv.subtotal,
            "test_clock": None,
            "total": inv.total,
            "total_discount_amounts": total_discount_amounts,
            "total_excluding_tax": inv.subtotal - inv.discount_total,
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
        if line.amount < 0:
            desc = f"Unused time on {qty} \u00d7 {name} after {_date(line.start)}"
        elif line.proration:
            desc = f"Remaining time on {qty} \u00d7 {name} after {_date(line.start)}"
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
            desc = f"{qty} \u00d7 {name} (at {_money(price.unit_amount, cur)} / {per})"
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
        if cs.tax is not None:
            line_disc = sum(a for _, a in line.discounts)
            taxes.append(
                {
                    "amount": line.tax,
                    "tax_behavior": "exclusive",
                    "tax_rate_details": {"tax_rate": cs.tax.id},
                    "taxability_reason": "standard_rated",
                    "taxable_amount": line.amount - line_disc,
                    "type": "tax_rate_details",
                }
            )
        return {
            "id": self.il_id(cs, inv, line),
            "object": "line_item",
            "amount": line.amount,
            "currency": cur,
            "description": desc,
            "discount_amounts": discount_amounts,
            "discountable": True,
            "discounts": [],
            "invoice": iid,
            "livemode": False,
            "metadata": {},
            "parent": {
                "invoice_item_details": None,
                "subscription_item_details": {
                    "invoice_item": None,
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
                "unit_amount_decimal": None
                if price.unit_amount is None
                else str(price.unit_amount),
            },
            "quantity": qty,
            "quantity_decimal": None if qty is None else str(qty),
            "subscription": sid,
            "subtotal": line.amount,
            "taxes": taxes,
        }

    # -- money movement -----------------------------------------------------------------------

    def charge(self, cs: CustomerSim, ch: Charge, t: int, ex: dict | None = None) -> Obj:
        cid = self.ch_id(cs, ch)
        succeeded = ch.status == "succeeded"
        refunds = [rf for rf in ch.refunds if rf.created <= t]
        refunded = sum(rf.amount for rf in refunds)
        brand, last4, exp_month, exp_year, funding = cs.card
        bt_value: Any = None
        if ch.bt is not None:
            bt_value = self.txn_id(cs, ch.bt)
            if ex and "balance_transaction" in ex:
                bt_value = self.balance_transaction(cs, ch.bt, t, ex["balance_transaction"])
        customer: Any = self.cus_id(cs)
        if ex and "customer" in ex:
            customer = self.customer(cs, t, ex["customer"])
        email = cs.email
        return {
            "id": cid,
            "object": "charge",
            "amount": ch.amount,
            "amount_captured": ch.amount if succeeded else 0,
            "amount_refunded": refunded,
            "application": None,
            "application_fee": None,
            "application_fee_amount": None,
            "balance_transaction": bt_value,
            "billing_details": {
                "address": _addr(cs.country, cs.ci),
                "email": email,
                "name": cs.name,
                "phone": None,
                "tax_id": None,
            },
            "calculated_statement_descriptor": "KPI SANDBOX",
            "captured": succeeded,
            "created": ch.created,
            "currency": cs.currency,
            "customer": customer,
            "description": ch.description,
            "disputed": False,
            "failure_balance_transaction": None,
            "failure_code": ch.failure[0] if ch.failure else None,
            "failure_message": ch.failure[1] if ch.failure else None,
            "fraud_details": {},
            "livemode": False,
            "metadata": {},
            "on_behalf_of": None,
            "outcome": {
                "advice_code": None if succeeded else "try_again_later",
                "network_advice_code": None,
                "network_decline_code": None,
                "network_status": "approved_by_network" if succeeded else "declined_by_network",
                "reason": None if succeeded else "generic_decline",
                "seller_message": "Payment complete."
                if succeeded
                else "The bank did not return any further details with this decline.",
                "type": "authorized" if succeeded else "issuer_declined",
            },
            "paid": succeeded,
            "payment_intent": self.pi_id(cs, ch),
            "payment_method": self.pm_id(cs),
            "payment_method_details": {
                "card": {
                    "amount_authorized": ch.amount if succeeded else None,
                    "authorization_code": f"{(ch.li * 7919 + cs.ci) % 1000000:06d}"
                    if succeeded
                    else None,
                    "brand": brand,
                    "checks": {
                        "address_line1_check": "pass",
                        "address_postal_code_check": "pass",
                        "cvc_check": "pass",
                    },
                    "country": cs.country,
                    "exp_month": exp_month,
                    "exp_year": exp_year,
                    "extended_authorization": {"status": "disabled"},
                    "fingerprint": f"fp{cs.ci:014d}"[-16:],
                    "funding": funding,
                    "incremental_authorization": {"status": "unavailable"},
                    "installments": None,
                    "last4": last4,
                    "mandate": None,
                    "multicapture": {"status": "unavailable"},
                    "network": brand,
                    "network_token": {"used": False},
                    "network_transaction_id": f"{cs.ci:08d}{ch.li:07d}",
                    "overcapture": {
                        "maximum_amount_capturable": ch.amount,
                        "status": "unavailable",
                    },
                    "regulated_status": "unregulated",
                    "three_d_secure": None,
                    "transaction_link_id": None,
                    "wallet": None,
                },
                "type": "card",
            },
            "receipt_email": email if succeeded else None,
            "receipt_number": None,
            "receipt_url": f"https://pay.stripe.com/receipts/payment/{cid}" if succeeded else None,
            "refunded": succeeded and refunded >= ch.amount,
            "refunds": {
                "object": "list",
                "data": [self.refund(cs, rf, t) for rf in refunds],
                "has_more": False,
                "url": f"/v1/charges/{cid}/refunds",
            },
            "review": None,
            "shipping": None,
            "source": None,
            "source_transfer": None,
            "statement_descriptor": None,
            "statement_descriptor_suffix": None,
            "status": ch.status,
            "transfer_data": None,
            "transfer_group": None,
        }

    def refund(self, cs: CustomerSim, rf: Refund, t: int, ex: dict | None = None) -> Obj:
        refunded = cs.charges[rf.charge]
        charge: Any = self.ch_id(cs, refunded)
        if ex and "charge" in ex:
            charge = self.charge(cs, refunded, t, ex["charge"])
        bt_value: Any = self.txn_id(cs, rf.bt) if rf.bt is not None else None
        if ex and "balance_transaction" in ex and rf.bt is not None:
            bt_value = self.balance_transaction(cs, rf.bt, t, ex["balance_transaction"])
        return {
            "id": self.re_id(cs, rf),
            "object": "refund",
            "amount": rf.amount,
            "balance_transaction": bt_value,
            "charge": charge,
            "created": rf.created,
            "currency": cs.currency,
            "customer": self.cus_id(cs),
            "customer_account": None,
            "destination_details": {
                "card": {
                    "reference": f"{cs.ci:06d}{rf.li:06d}",
                    "reference_status": "available",
                    "reference_type": "acquirer_reference_number",
                    "type": "refund",
                },
                "type": "card",
            },
            "metadata": {},
            "payment_intent": self.pi_id(cs, refunded),
            "payment_method": self.pm_id(cs),
            "reason": rf.reason,
            "receipt_number": None,
            "source_transfer_reversal": None,
            "status": "succeeded",
            "transfer_reversal": None,
        }

    def balance_transaction(
        self, cs: CustomerSim, bt: BalanceTxn, t: int, ex: dict | None = None
    ) -> Obj:
        src = cs.charges[bt.source] if bt.type == "charge" else cs.refunds[bt.source]
        source: Any
        if isinstance(src, Charge):
            source = self.ch_id(cs, src)
            if ex and "source" in ex:
                source = self.charge(cs, src, t, ex["source"])
        else:
            source = self.re_id(cs, src)
            if ex and "source" in ex:
                source = self.refund(cs, src, t, ex["source"])
        description = src.description if isinstance(src, Charge) else REFUND_DESCRIPTION
        return self.bt_dict(
            cs.ci,
            bt.li,
            bt.created,
            bt.amount,
            bt.fee,
            bt.type,
            source,
            description,
            cs.currency,
            t,
        )

    def bt_dict(
        self,
        ci: int,
        li: int,
        created: int,
        amount: int,
        fee: int,
        type_: str,
        source: Any,
        description: str,
        currency: str,
        t: int,
    ) -> Obj:
        """A balance transaction from its few facts (the index holds them, see sandbox.py)."""
        fee_details = (
            [
                {
                    "amount": fee,
                    "application": None,
                    "currency": currency,
                    "description": "Stripe processing fees",
                    "type": "stripe_fee",
                }
            ]
            if fee
            else []
        )
        available_on = (created // 86_400 + 2) * 86_400
        return {
            "id": self._enc("txn", ci, li),
            "object": "balance_transaction",
            "amount": amount,
            "available_on": available_on,
            "balance_type": "payments",
            "created": created,
            "currency": currency,
            "description": description,
            "exchange_rate": None,
            "fee": fee,
            "fee_details": fee_details,
            "net": amount - fee,
            "reporting_category": type_,
            "source": source,
            "status": "available" if available_on <= t else "pending",
            "type": type_,
        }

    # -- events -------------------------------------------------------------------------------

    def object_at(self, cs: CustomerSim | None, obj: object, t: int, version: str) -> Obj:
        if isinstance(obj, Sub):
            return self.subscription(cs, obj, t, version)
        if isinstance(obj, Invoice):
            return self.invoice(cs, obj, t, version)
        if isinstance(obj, Charge):
            return self.charge(cs, obj, t)
        if isinstance(obj, Refund):
            return self.refund(cs, obj, t)
        if obj is None:  # customer events carry no object: the customer is `cs`
            return self.customer(cs, t)
        if isinstance(obj, Price):
            return self.price(obj)
        if isinstance(obj, Coupon):
            return self.coupon(obj, at=t)
        if isinstance(obj, Product):
            return self.product(obj)
        raise TypeError(type(obj))

    def event(self, cs: CustomerSim | None, li: int, t: int, type_: str, obj: object) -> Obj:
        version = DEFAULT_API_VERSION
        current = self.object_at(cs, obj, t, version)
        data: Obj = {"object": current}
        if type_.endswith(".updated"):
            before = self.object_at(cs, obj, t - 1, version)
            data["previous_attributes"] = _diff(before, current)
        api_request = type_ in ("customer.created", "customer.subscription.created") or (
            type_ == "customer.subscription.updated"
            and isinstance(obj, Sub)
            and obj.cancel_decided_at == t
        )
        return {
            "id": self.evt_id(cs, li),
            "object": "event",
            "api_version": version,
            "created": t,
            "data": data,
            "livemode": False,
            "pending_webhooks": 0,
            "request": {
                "id": f"req_{self.evt_id(cs, li)[-14:]}" if api_request else None,
                "idempotency_key": None,
            },
            "type": type_,
        }


def _diff(before: Obj, after: Obj) -> Obj:
    """Stripe's previous_attributes: the old values of what changed (nested dicts partially)."""
    out: Obj = {}
    for key, old in before.items():
        new = after.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict) and old.get("object") != "list":
            out[key] = _diff(old, new)
        else:
            out[key] = old
    return out

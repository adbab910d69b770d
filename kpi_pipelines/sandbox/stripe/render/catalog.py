"""Products, prices, plans, coupons, tax rates, customers and discounts as Stripe JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kpi_pipelines.sandbox.stripe.catalog import (
    Coupon,
    Price,
    Product,
    TaxRate,
    decimal_text,
    whole,
)
from kpi_pipelines.sandbox.stripe.generator import (
    CustomerSim,
    Discount,
)
from kpi_pipelines.sandbox.stripe.render.common import Obj, address, customer_facts


class CatalogRendering:
    """Catalog and customer objects; mixed into `Renderer`."""

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
        price = price.served  # a currency option is served as its price
        tiers = bool(ex and "tiers" in ex)
        # currency_options and each option's tiers are only served when expanded (includable)
        options_ex = ex.get("currency_options") if ex and "currency_options" in ex else None
        key = (
            price.id,
            tiers,
            None if options_ex is None else tuple(sorted(options_ex)),
        )
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
                "tax_behavior": price.tax_behavior,
                "tiers_mode": price.tiers_mode,
                "transform_quantity": _transform(price),
                "type": "recurring",
                "unit_amount": price.unit_amount,
                "unit_amount_decimal": _unit_decimal(price),
            }
            if tiers:
                cached["tiers"] = _tiers(price)
            if options_ex is not None:
                cached["currency_options"] = {
                    option.currency: _currency_option(option, option.currency in options_ex)
                    for option in (price, *(price.options or {}).values())
                }
            self._price_cache[key] = cached
        if ex and "product" in ex:
            out = dict(cached)
            out["product"] = self.product(price.product, ex["product"])
            return out
        return cached

    def plan(self, price: Price) -> Obj:
        price = price.served
        cached = self._plan_cache.get(price.id)
        if cached is None:
            cached = self._plan_cache[price.id] = {
                "id": price.id,
                "object": "plan",
                "active": price.active,
                "amount": price.unit_amount,
                "amount_decimal": _unit_decimal(price),
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
                "transform_usage": _transform(price),
                "trial_period_days": None,
                "usage_type": price.usage_type,
            }
        return cached

    def coupon(self, coupon: Coupon, at: int | None = None, ex: dict | None = None) -> Obj:
        redeemed = self.coupon_redemptions.get(coupon.id, 0) if at is None else 0
        out = {
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
        # includable: served only when expanded
        if ex and "applies_to" in ex:
            out["applies_to"] = (
                None if coupon.applies_to is None else {"products": list(coupon.applies_to)}
            )
        if ex and "currency_options" in ex:
            out["currency_options"] = (
                None
                if coupon.amount_off is None
                else {
                    coupon.currency: {"amount_off": coupon.amount_off},
                    **{
                        cur: {"amount_off": off}
                        for cur, off in (coupon.currency_options or {}).items()
                    },
                }
            )
        return out

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
            "inclusive": rate.inclusive,
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
            "address": address(cs.country, cs.ci),
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
            "metadata": self._customer_metadata(cs, t),
            "name": cs.name,
            "next_invoice_sequence": finalized + 1,
            "phone": cs.phone,
            "preferred_locales": [],
            "shipping": None,
            "tax_exempt": "none",
            "test_clock": None,
        }

    def _customer_metadata(self, cs: CustomerSim, t: int) -> dict[str, str]:
        metadata = {"sandbox_index": str(cs.ci)}
        signed_in = self.gen.last_sign_in(cs.ci, cs.created, t)
        if signed_in is not None:
            metadata["last_sign_in"] = datetime.fromtimestamp(signed_in, UTC).isoformat()
        return metadata

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
            "invoice": self.in_id(cs, cs.invoices[disc.invoice]) if disc.invoice >= 0 else None,
            "invoice_item": None,
            "promotion_code": None,
            "source": {"coupon": coupon, "type": "coupon"},
            "start": disc.start,
            "subscription": None if disc.one_invoice else self.sub_id(cs, disc.sub),
            "subscription_item": None if disc.item is None else self.si_id(cs, disc.item),
        }


def _unit_decimal(price: Price) -> str | None:
    unit = price.unit
    return None if unit is None else decimal_text(unit)


def _transform(price: Price) -> Obj | None:
    if price.transform is None:
        return None
    divide_by, rounding = price.transform
    return {"divide_by": divide_by, "round": rounding}


def _tiers(price: Price) -> list[Obj] | None:
    if not price.tiers:
        return None
    return [
        {
            "flat_amount": t.flat_amount,
            "flat_amount_decimal": str(t.flat_amount),
            "unit_amount": whole(t.unit_amount),
            "unit_amount_decimal": decimal_text(t.unit_amount),
            "up_to": t.up_to,
        }
        for t in price.tiers
    ]


def _currency_option(price: Price, tiers: bool) -> Obj:
    """A price in one currency, as its `currency_options` entry."""
    out: Obj = {
        "custom_unit_amount": None,
        "tax_behavior": price.tax_behavior,
        "unit_amount": price.unit_amount,
        "unit_amount_decimal": _unit_decimal(price),
    }
    if tiers:
        out["tiers"] = _tiers(price)
    return out

"""The catalog of a scripted sandbox: the prices, coupons and tax rates its scripts name,
made once per currency (a price's currency options, an amount-off coupon's own currency)
and added to the sandbox's catalog the first time a script needs them."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from kpi_pipelines.sandbox.stripe.catalog import (
    COUNTRY,
    DAY,
    Catalog,
    Coupon,
    Price,
    TaxRate,
    Tier,
    interval_label,
    whole,
)
from kpi_pipelines.sandbox.stripe.ids import CATALOG_OWNER, IdCodec
from kpi_pipelines.sandbox.stripe.scripts import CouponSpec, CustomerScript, PriceSpec, TaxRateSpec


class ScriptedCatalog:
    """The catalog part of ScriptedGenerator (which sets `_prices`, `_coupons`, `_taxes`)."""

    catalog: Catalog
    codec: IdCodec
    start: int
    _prices: dict[tuple[PriceSpec, str], Price]
    _coupons: dict[tuple[CouponSpec, str | None], Coupon]
    _taxes: dict[tuple, TaxRate]

    def price(self, spec: PriceSpec, currency: str) -> Price:
        """The catalog's price of `spec` as a subscription in `currency` bills it: the price
        made for that currency, or the currency option of a multi-currency price."""
        if spec.currency is not None and currency != spec.currency:
            return self.price(spec, spec.currency).in_currency(currency)
        price = self._prices.get((spec, currency))
        if price is not None:
            return price
        cat = self.catalog
        product = next((p for p in cat.products if p.key == spec.product), None)
        if product is None:
            keys = [p.key for p in cat.products]
            raise ValueError(f"unknown product {spec.product!r} (one of {keys})")
        idx = len(cat.prices)
        label = interval_label(spec.interval, spec.interval_count)
        price = Price(
            idx=idx,
            key=f"scripted_{len(self._prices)}",
            id=self.codec.encode("price", CATALOG_OWNER, idx),
            product=product,
            currency=currency,
            interval=spec.interval,
            interval_count=spec.interval_count,
            usage_type=spec.usage_type,
            billing_scheme="tiered" if spec.tiers else "per_unit",
            tiers_mode=spec.tiers_mode if spec.tiers else None,
            created=self.start - 30 * DAY + len(self._prices) * 7,
            nickname=spec.nickname or f"{product.name} ({label}, {currency.upper()})",
            family=None,
            rank=0,
            meter=None if spec.licensed else self.codec.encode("mtr", CATALOG_OWNER, 0),
            tax_behavior=spec.tax_behavior,
            transform=spec.transform_quantity,
            **_amounts(spec.tiers if spec.tiers else spec.unit_amount),
        )
        if spec.currency_options:
            price.options = {
                option: replace(price, currency=option, options=None, base=price, **_amounts(value))
                for option, value in spec.currency_options
            }
        self._prices[(spec, currency)] = price
        cat.prices.append(price)
        cat.price_by_id[price.id] = price
        cat.price_by_key.setdefault((price.plan, currency), []).append(price)
        return price

    def coupon(self, spec: CouponSpec, currency: str) -> Coupon:
        """The catalog's coupon of `spec` for a subscription in `currency`: one per currency
        for an amount off, unless the coupon has its own currency (and currency options)."""
        if spec.amount_off is None:
            own = None
        elif spec.currency is not None:
            own = spec.currency
            if currency != own and currency not in dict(spec.currency_options):
                raise ValueError(f"coupon {spec} has no {currency} amount (currency_options)")
        else:
            own = currency
        key = (spec, own)
        coupon = self._coupons.get(key)
        if coupon is not None:
            return coupon
        cat = self.catalog
        cid = spec.id or f"SCRIPTED{len(self._coupons) + 1}"
        if cid in cat.coupon_by_id and own is not None and spec.currency is None:
            cid = f"{cid}_{own.upper()}"  # an amount_off coupon in another currency
        if cid in cat.coupon_by_id:
            raise ValueError(f"coupon id {cid} is already taken")
        if spec.percent_off is not None:
            off = f"{spec.percent_off:g}% off"
        else:
            off = f"{spec.amount_off} {(own or currency).upper()} off"
        duration = (
            f"for {spec.duration_in_months} months"
            if spec.duration == "repeating"
            else spec.duration
        )
        products = {p.key: p.id for p in cat.products}
        unknown = [key for key in spec.applies_to if key not in products]
        if unknown:
            raise ValueError(f"unknown products {unknown} (one of {sorted(products)})")
        coupon = Coupon(
            idx=len(cat.coupons),
            id=cid,
            name=spec.name or f"{off} {duration}",
            duration=spec.duration,
            duration_in_months=spec.duration_in_months,
            percent_off=spec.percent_off,
            amount_off=spec.amount_off,
            currency=own,
            created=self.start - 30 * DAY + len(self._coupons) * 11,
            currency_options=dict(spec.currency_options) if spec.currency_options else None,
            applies_to=tuple(products[key] for key in spec.applies_to) or None,
        )
        self._coupons[key] = coupon
        cat.coupons.append(coupon)
        cat.coupon_by_id[cid] = coupon
        return coupon

    def tax_rate(self, spec: TaxRateSpec, currency: str) -> TaxRate:
        """A manual tax rate (a subscription's default_tax_rates, an item's tax_rates)."""
        country = spec.country or COUNTRY.get(currency, "US")
        return self._catalog_tax_rate(
            ("manual", spec, country),
            spec.display_name,
            float(spec.percentage),
            country,
            inclusive=spec.inclusive,
        )

    def _catalog_tax_rate(
        self, key: tuple, display_name: str, percentage: float, country: str, *, inclusive: bool
    ) -> TaxRate:
        """The catalog's tax rate for `key`, added to the catalog the first time."""
        rate = self._taxes.get(key)
        if rate is None:
            cat = self.catalog
            idx = len(cat.tax_rates)
            rate = TaxRate(
                idx=idx,
                id=self.codec.encode("txr", CATALOG_OWNER, idx),
                display_name=display_name,
                percentage=percentage,
                country=country,
                jurisdiction=country,
                created=self.start - 90 * DAY + idx,
                inclusive=inclusive,
            )
            self._taxes[key] = rate
            cat.tax_rates.append(rate)
            cat.tax_by_id[rate.id] = rate
        return rate

    def _tax(self, script: CustomerScript) -> TaxRate | None:
        if script.tax is None:
            return None
        if isinstance(script.tax, str):
            rate = self.catalog.tax_by_key.get(script.tax)
            if rate is None:
                raise ValueError(f"unknown tax rate {script.tax!r}")
            return rate
        country = COUNTRY.get(script.currency, "US")
        percentage = float(script.tax)
        return self._catalog_tax_rate(
            (percentage, country), "VAT", percentage, country, inclusive=False
        )


def _amounts(value: int | Decimal | tuple[Tier, ...]) -> dict:
    """A price's amount fields for a unit amount (exact) or tiers."""
    if isinstance(value, tuple):
        return {"tiers": value, "unit_amount": None, "unit_decimal": None}
    return {
        "tiers": None,
        "unit_amount": whole(value),
        "unit_decimal": None if whole(value) is not None else value,
    }

"""The shared, small catalog of the simulated business: products, prices, coupons, tax rates.

Every currency gets the same plans (amounts scaled per currency; JPY is zero-decimal, so its
amounts are whole yen). A few objects are created late in the simulated year (a price
increase, a spring coupon) so that `price.created` and `coupon.created` events fall in the
30-day event window of the default clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from kpi_pipelines.sandbox.stripe.ids import CATALOG_OWNER, IdCodec

DAY = 86_400

ZERO_DECIMAL = frozenset({"jpy", "krw", "vnd", "clp", "isk", "huf", "twd", "ugx", "xaf", "xof"})

COUNTRY = {"usd": "US", "eur": "DE", "gbp": "GB", "jpy": "JP", "cad": "CA", "aud": "AU"}


def convert(usd_cents: int, currency: str) -> int:
    """A plan amount in `currency` minor units from its USD cents (nice round numbers)."""
    if usd_cents == 0:
        return 0
    if currency == "usd":
        return usd_cents
    if currency == "eur":
        return usd_cents
    if currency == "gbp":
        return max(1, round(usd_cents * 0.8 / 100) * 100) if usd_cents >= 100 else usd_cents
    if currency == "jpy":
        return max(1, round(usd_cents * 1.5 / 10) * 10) if usd_cents >= 10 else usd_cents * 2
    if currency in ZERO_DECIMAL:
        return max(1, round(usd_cents * 1.5 / 10) * 10)
    return usd_cents


@dataclass(frozen=True, slots=True)
class Tier:
    up_to: int | None
    unit_amount: int | Decimal  # a Decimal: a fraction of the minor unit (unit_amount_decimal)
    flat_amount: int


def decimal_text(value: int | Decimal) -> str:
    """An amount as Stripe writes a `*_decimal` field: a plain decimal string."""
    if isinstance(value, int):
        return str(value)
    return format(value.normalize(), "f")


def whole(value: int | Decimal) -> int | None:
    """The integer field beside a `*_decimal` one: the amount when it is whole, else null."""
    if isinstance(value, int):
        return value
    return int(value) if value == value.to_integral_value() else None


def billed(value: int | Decimal) -> int:
    """What a line bills for an exact amount: rounded to the minor unit, halves up (Stripe
    rounds each line of decimal prices, so 0.05 x 30 = 1.5 bills 2)."""
    if isinstance(value, int):
        return value
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(slots=True)
class Product:
    idx: int
    key: str
    id: str
    name: str
    description: str
    created: int
    default_price: str | None = None


@dataclass(slots=True)
class Price:
    idx: int
    key: str
    id: str
    product: Product
    currency: str
    interval: str
    interval_count: int
    usage_type: str  # licensed | metered
    billing_scheme: str  # per_unit | tiered
    tiers_mode: str | None  # graduated | volume
    tiers: tuple[Tier, ...] | None
    unit_amount: int | None
    created: int
    nickname: str
    family: str | None  # upgrade ladder name (same interval), e.g. "month"
    rank: int  # position on the ladder
    meter: str | None = None
    active: bool = True
    tax_behavior: str = "exclusive"  # inclusive: the amount includes the tax (Stripe Tax)
    # unit_amount_decimal when it is a fraction of the minor unit (unit_amount is then None)
    unit_decimal: Decimal | None = None
    # transform_quantity: (divide_by, "up" | "down"), the quantity billed in packages
    transform: tuple[int, str] | None = None
    # A price with currency options (currency_options): the price in each other currency, a
    # Price of its own with the same id (`base` is the price as served, in its own currency).
    options: dict[str, Price] | None = None
    base: Price | None = None

    @property
    def served(self) -> Price:
        """The price object Stripe serves (a currency option is served as its price)."""
        return self.base or self

    @property
    def unit(self) -> int | Decimal | None:
        """The exact per-unit amount (unit_amount_decimal), None for a tiered price."""
        return self.unit_decimal if self.unit_decimal is not None else self.unit_amount

    def in_currency(self, currency: str) -> Price:
        """The price as a subscription in `currency` bills it (its currency option)."""
        if currency == self.currency:
            return self
        option = (self.options or {}).get(currency)
        if option is None:
            raise ValueError(f"price {self.id} has no {currency} amount (currency_options)")
        return option

    @property
    def plan(self) -> str:
        """The plan key, merging later versions of a price ("pro_m_v2" -> "pro_m")."""
        return "pro_m" if self.key == "pro_m_v2" else self.key

    @property
    def licensed(self) -> bool:
        return self.usage_type == "licensed"

    def amount(self, quantity: int) -> int:
        """What `quantity` costs for one billing interval, in minor units: packages of
        `transform` (divided, rounded up or down), then the unit amount or the tiers, the
        line rounded to the minor unit."""
        if self.billing_scheme == "per_unit":
            if self.transform is not None:
                divide_by, rounding = self.transform
                quantity = -(-quantity // divide_by) if rounding == "up" else quantity // divide_by
            return billed((self.unit or 0) * quantity)
        assert self.tiers is not None
        if self.tiers_mode == "volume":
            for tier in self.tiers:
                if tier.up_to is None or quantity <= tier.up_to:
                    return billed(tier.unit_amount * quantity + tier.flat_amount)
            raise AssertionError("last tier must be unbounded")
        total: int | Decimal = 0
        below = 0
        for tier in self.tiers:
            top = quantity if tier.up_to is None else min(quantity, tier.up_to)
            units = top - below
            if units <= 0:
                break
            total += units * tier.unit_amount + tier.flat_amount
            below = top
        return billed(total)

    def monthly_factor(self) -> float:
        return monthly_factor(self.interval, self.interval_count)


def monthly_factor(interval: str, interval_count: int) -> float:
    """Multiply an amount per billing interval by this to get an amount per month."""
    if interval == "month":
        return 1.0 / interval_count
    if interval == "year":
        return 1.0 / (12 * interval_count)
    if interval == "week":
        return 52.0 / 12.0 / interval_count
    if interval == "day":
        return 365.0 / 12.0 / interval_count
    raise ValueError(f"unknown interval {interval!r}")


@dataclass(slots=True)
class Coupon:
    idx: int
    id: str
    name: str
    duration: str  # forever | once | repeating
    duration_in_months: int | None
    percent_off: float | None
    amount_off: int | None
    currency: str | None
    created: int
    # amount_off in other currencies (currency_options), and the products it is limited to
    # (applies_to.products: product ids; None, every item)
    currency_options: dict[str, int] | None = None
    applies_to: tuple[str, ...] | None = None

    def amount_off_in(self, currency: str) -> int | None:
        """The amount taken off in a subscription's currency (None: a percent-off coupon)."""
        if self.amount_off is None or self.currency in (None, currency):
            return self.amount_off
        off = (self.currency_options or {}).get(currency)
        if off is None:
            raise ValueError(f"coupon {self.id} has no {currency} amount (currency_options)")
        return off

    def applies(self, product_id: str) -> bool:
        return self.applies_to is None or product_id in self.applies_to


@dataclass(slots=True)
class TaxRate:
    idx: int
    id: str
    display_name: str
    percentage: float
    country: str
    jurisdiction: str
    created: int
    inclusive: bool = False  # a manual tax rate included in the price it applies to


# (key, product, interval, interval_count, usd unit amount | tiers, family, rank, created day)
_PRODUCTS = (
    ("starter", "Starter", "For small teams getting started"),
    ("pro", "Pro", "Per-seat plan for growing teams"),
    ("business", "Business", "Advanced features and support"),
    ("seats", "Team seats (graduated)", "Seats priced by graduated tiers"),
    ("volume", "Enterprise seats (volume)", "Seats priced by volume tiers"),
    ("storage", "Extra storage", "Add-on: 100 GB of extra storage"),
    ("api", "API calls", "Metered API usage"),
)

_GRADUATED = (Tier(5, 1500, 2000), Tier(20, 1200, 0), Tier(None, 900, 0))
_VOLUME = (Tier(10, 2000, 0), Tier(50, 1700, 5000), Tier(None, 1500, 10000))

# key, product, interval, count, unit (usd cents) or tiers, tiers_mode, usage, family, rank, day
_PRICES: tuple[tuple, ...] = (
    ("starter_m", "starter", "month", 1, 2900, None, "licensed", "month", 0, -60),
    ("pro_m", "pro", "month", 1, 9900, None, "licensed", "month", 1, -60),
    ("business_m", "business", "month", 1, 29900, None, "licensed", "month", 2, -60),
    ("starter_y", "starter", "year", 1, 29000, None, "licensed", "year", 0, -60),
    ("pro_y", "pro", "year", 1, 99000, None, "licensed", "year", 1, -60),
    ("business_y", "business", "year", 1, 299000, None, "licensed", "year", 2, -60),
    ("starter_w", "starter", "week", 1, 900, None, "licensed", None, 0, -60),
    ("pro_q", "pro", "month", 3, 27000, None, "licensed", None, 0, -60),
    ("pro_h", "pro", "month", 6, 52000, None, "licensed", None, 0, -60),
    ("seats_g", "seats", "month", 1, _GRADUATED, "graduated", "licensed", None, 0, -60),
    ("volume_v", "volume", "month", 1, _VOLUME, "volume", "licensed", None, 0, -60),
    ("storage_m", "storage", "month", 1, 1000, None, "licensed", None, 0, -60),
    ("storage_y", "storage", "year", 1, 10000, None, "licensed", None, 0, -60),
    ("api_m", "api", "month", 1, 5, None, "metered", None, 0, -60),
    # A price increase late in the year: new Pro subscriptions and upgrades use it.
    ("pro_m_v2", "pro", "month", 1, 10900, None, "licensed", "month", 1, 340),
)

# id, name, duration, months, percent, amount_off usd cents (per currency), created day
_COUPONS: tuple[tuple, ...] = (
    ("FOREVER20", "20% off forever", "forever", None, 20.0, None, -60),
    ("LOYALTY125", "12.5% loyalty discount", "forever", None, 12.5, None, -60),
    ("TENOFF", "10 off every invoice", "forever", None, None, 1000, -60),
    ("WELCOME50", "50% off the first invoice", "once", None, 50.0, None, -60),
    ("QUARTER25", "25% off for 3 months", "repeating", 3, 25.0, None, -60),
    ("SPRING15", "Spring: 15% off forever", "forever", None, 15.0, None, 345),
)

_TAX_RATES: tuple[tuple, ...] = (
    ("us", "Sales Tax", 8.25, "US", "NY"),
    ("de", "MwSt.", 19.0, "DE", "DE"),
    ("fr", "TVA", 20.0, "FR", "FR"),
    ("gb", "VAT", 20.0, "GB", "GB"),
    ("jp", "JCT", 10.0, "JP", "JP"),
)

TAX_BY_CURRENCY = {"usd": ("us",), "eur": ("de", "fr"), "gbp": ("gb",), "jpy": ("jp",)}


@dataclass(slots=True)
class Catalog:
    products: list[Product] = field(default_factory=list)
    prices: list[Price] = field(default_factory=list)
    coupons: list[Coupon] = field(default_factory=list)
    tax_rates: list[TaxRate] = field(default_factory=list)
    price_by_key: dict[tuple[str, str], list[Price]] = field(default_factory=dict)
    price_by_id: dict[str, Price] = field(default_factory=dict)
    product_by_id: dict[str, Product] = field(default_factory=dict)
    coupon_by_id: dict[str, Coupon] = field(default_factory=dict)
    tax_by_key: dict[str, TaxRate] = field(default_factory=dict)
    tax_by_id: dict[str, TaxRate] = field(default_factory=dict)

    def price(self, product_interval_key: str, currency: str, at: int) -> Price:
        """The newest active price for a plan key (e.g. "pro_m") created by `at`."""
        best = None
        for price in self.price_by_key[(product_interval_key, currency)]:
            if price.created <= at:
                best = price
        assert best is not None, product_interval_key
        return best

    def coupon(self, coupon_id: str, currency: str) -> Coupon:
        if coupon_id == "TENOFF":
            return self.coupon_by_id[f"TENOFF_{currency.upper()}"]
        return self.coupon_by_id[coupon_id]

    def ladder(self, family: str, currency: str, at: int) -> list[Price]:
        """The upgrade ladder of a family, lowest first, as of `at`."""
        keys = {
            "month": ("starter_m", "pro_m", "business_m"),
            "year": ("starter_y", "pro_y", "business_y"),
        }[family]
        return [self.price(k, currency, at) for k in keys]


def build_catalog(codec: IdCodec, currencies: tuple[str, ...], start: int) -> Catalog:
    cat = Catalog()
    for idx, (key, name, desc) in enumerate(_PRODUCTS):
        product = Product(
            idx=idx,
            key=key,
            id=codec.encode("prod", CATALOG_OWNER, idx),
            name=name,
            description=desc,
            created=start - 60 * DAY + idx * 60,
        )
        cat.products.append(product)
        cat.product_by_id[product.id] = product
    products = {p.key: p for p in cat.products}
    idx = 0
    for currency in currencies:
        for key, prod, interval, count, amount, mode, usage, family, rank, day in _PRICES:
            tiers = None
            unit = None
            if isinstance(amount, tuple):
                tiers = tuple(
                    Tier(
                        t.up_to, convert(t.unit_amount, currency), convert(t.flat_amount, currency)
                    )
                    for t in amount
                )
            else:
                unit = convert(amount, currency)
            price = Price(
                idx=idx,
                key=key,
                id=codec.encode("price", CATALOG_OWNER, idx),
                product=products[prod],
                currency=currency,
                interval=interval,
                interval_count=count,
                usage_type=usage,
                billing_scheme="tiered" if tiers else "per_unit",
                tiers_mode=mode,
                tiers=tiers,
                unit_amount=unit,
                created=start + day * DAY + idx * 7,
                nickname=f"{products[prod].name} ({interval_label(interval, count)}, {currency.upper()})",
                family=family,
                rank=rank,
                meter=codec.encode("mtr", CATALOG_OWNER, 0) if usage == "metered" else None,
            )
            idx += 1
            cat.prices.append(price)
            cat.price_by_id[price.id] = price
            cat.price_by_key.setdefault((price.plan, currency), []).append(price)
    for product in cat.products:
        first = next(p for p in cat.prices if p.product is product and p.currency == currencies[0])
        product.default_price = first.id
    cidx = 0
    for coupon_id, name, duration, months, pct, amount_off, day in _COUPONS:
        variants = [(coupon_id, None, None)]
        if amount_off is not None:
            variants = [(f"{coupon_id}_{c.upper()}", c, convert(amount_off, c)) for c in currencies]
        for cid, currency, off in variants:
            label = name if currency is None else f"{name} ({currency.upper()})"
            coupon = Coupon(
                idx=cidx,
                id=cid,
                name=label,
                duration=duration,
                duration_in_months=months,
                percent_off=pct,
                amount_off=off,
                currency=currency,
                created=start + day * DAY + cidx * 11,
            )
            cidx += 1
            cat.coupons.append(coupon)
            cat.coupon_by_id[coupon.id] = coupon
    for tidx, (key, display, pct, country, jurisdiction) in enumerate(_TAX_RATES):
        rate = TaxRate(
            idx=tidx,
            id=codec.encode("txr", CATALOG_OWNER, tidx),
            display_name=display,
            percentage=pct,
            country=country,
            jurisdiction=jurisdiction,
            created=start - 90 * DAY + tidx,
        )
        cat.tax_rates.append(rate)
        cat.tax_by_key[key] = rate
        cat.tax_by_id[rate.id] = rate
    return cat


def interval_label(interval: str, count: int) -> str:
    if count == 1:
        return {"month": "monthly", "year": "yearly", "week": "weekly", "day": "daily"}[interval]
    return f"every {count} {interval}s"

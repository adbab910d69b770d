"""Billing variety for the random business (StripeSandboxConfig.billing_variety): about one
customer in three lives a random script of the billing-settings vocabulary (scripts.py)
instead of the generator's usual life, simulated by the scripted machinery, so its objects,
events and truth are those the scripted tests check. The scripts are built around each
behaviour of KINDS in turn (what Stripe bills: packages, decimal amounts, currency options,
coupons limited to products or in several currencies, included tax; and what happens to a
subscription: dunning, trials, prorations, discounts, pauses, drafts, anchors, schedules).

The variety catalog (a few prices and coupons per currency) is created up front, so the
served catalog does not depend on which customers were simulated. Which customers get a
script, and which script, comes from a random stream of their own: the other customers are
exactly those of the default business with the same seed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from random import Random

from kpi_pipelines.sandbox.stripe.catalog import DAY, convert
from kpi_pipelines.sandbox.stripe.generator.calendar import period_bound
from kpi_pipelines.sandbox.stripe.generator.config import HOUR, StripeSandboxConfig
from kpi_pipelines.sandbox.stripe.generator.core import Generator
from kpi_pipelines.sandbox.stripe.generator.objects import CustomerSim
from kpi_pipelines.sandbox.stripe.scripted import ScriptedGenerator
from kpi_pipelines.sandbox.stripe.scripts import (
    AddCoupon,
    Cancel,
    Change,
    CouponSpec,
    DraftRenewal,
    Event,
    InvoiceCoupon,
    ItemScript,
    MarkUnpaid,
    PauseCollection,
    PaymentFails,
    PaymentSucceeds,
    Phase,
    PriceSpec,
    Resume,
    ResumeCollection,
    RetriesExhausted,
    SubscriptionScript,
    TaxRateSpec,
)

VARIETY_SHARE = 0.33

PLAN = PriceSpec(4900, product="pro", nickname="Pro (variety)")
BIG = PriceSpec(9900, product="business", nickname="Business (variety)")
SMALL = PriceSpec(1900, product="starter", nickname="Starter (variety)")
INCLUSIVE = PriceSpec(6000, product="pro", tax_behavior="inclusive", nickname="Pro incl. tax")
SEATS = PriceSpec(1000, product="seats", nickname="Seat (variety)")
# What a price bills: packages of seats (transform_quantity), fractions of a cent
# (unit_amount_decimal, per unit and in tiers)
PACKAGES_UP = PriceSpec(3000, transform_quantity=(10, "up"), product="seats", nickname="10 seats")
PACKAGES_DOWN = PriceSpec(
    2500, transform_quantity=(5, "down"), product="seats", nickname="5 seats (whole packs)"
)
DECIMAL = PriceSpec("249.5", product="seats", nickname="Seat (decimal)")
DECIMAL_TIERS = PriceSpec(
    tiers=((1000, "0.25", 0), (None, "0.125", 100)),
    tiers_mode="graduated",
    product="api",
    nickname="Calls (decimal tiers)",
)
FREE = CouponSpec(percent_off=100, duration="forever", id="VARIETY_FREE")
TWENTY = CouponSpec(percent_off=20, duration="forever", id="VARIETY_20")
FIVE_OFF = CouponSpec(amount_off=500, duration="forever", id="VARIETY_5OFF")
HALF_ONCE = CouponSpec(percent_off=50, duration="once", id="VARIETY_HALF_ONCE")
# Coupons limited to products (applies_to): half the seats, 15 off the plan
SEATS_HALF = CouponSpec(percent_off=50, applies_to=("seats",), id="VARIETY_SEATS_HALF")
PLAN_OFF = CouponSpec(amount_off=1500, applies_to=("pro",), id="VARIETY_PLAN_15OFF")
INCLUDED_20 = TaxRateSpec(20, inclusive=True)  # a manual rate included in the price
PRICES = (PLAN, BIG, SMALL, INCLUSIVE, SEATS, PACKAGES_UP, PACKAGES_DOWN, DECIMAL, DECIMAL_TIERS)
COUPONS = (FREE, TWENTY, FIVE_OFF, HALF_ONCE, SEATS_HALF, PLAN_OFF)


@dataclass(frozen=True)
class MultiCurrency:
    """A price, a tiered price and an amount-off coupon in one currency of the sandbox, with
    currency options for every other one (amounts a tenth below the first's, converted):
    a customer in another currency bills the option's amount. Their own currency is the
    sandbox's last, so that most customers are billed an option."""

    plan: PriceSpec
    seats: PriceSpec
    off: CouponSpec

    @classmethod
    def of(cls, currencies: tuple[str, ...]) -> MultiCurrency:
        own, others = currencies[-1], currencies[:-1]

        def option(cents: int, currency: str) -> int:
            return convert(cents * 9 // 10, currency)

        tiers = ((5, 1500, 0), (None, 1200, 0))
        return cls(
            plan=PriceSpec(
                4900,
                currency=own,
                currency_options=tuple((c, option(4900, c)) for c in others),
                nickname="Pro (multi-currency)",
            ),
            seats=PriceSpec(
                tiers=tiers,
                tiers_mode="graduated",
                product="seats",
                currency=own,
                currency_options=tuple(
                    (c, tuple((up, option(unit, c), flat) for up, unit, flat in tiers))
                    for c in others
                ),
                nickname="Seats (multi-currency tiers)",
            ),
            off=CouponSpec(
                amount_off=500,
                currency=own,
                currency_options=tuple((c, option(500, c)) for c in others),
                id="VARIETY_MULTI_5OFF",
            ),
        )


# The behaviours a variety customer's script is built around (one each; see _script);
# dunning, which has the most outcomes, twice as often.
KINDS = (
    "incomplete",
    "dunning",
    "dunning",
    "trial_pause",
    "prorations",
    "item_discount",
    "multi_discount",
    "free",
    "inclusive",
    "pause_collection",
    "draft_renewal",
    "anchor_reset",
    "schedule",
    "packages",
    "decimal",
    "multi_currency",
    "product_coupon",
    "inclusive_amount_off",
    "invoice_coupon",
)


class VarietyGenerator(ScriptedGenerator):
    """The random business, with some customers living random billing-settings scripts."""

    def __init__(self, config: StripeSandboxConfig, horizon: int | None = None) -> None:
        super().__init__(config, (), horizon)
        # How many of the customers before each one live a script (extended on demand): the
        # n-th of them lives KINDS[n % len(KINDS)], so a small business has every kind.
        self._scripted_before: list[int] = [0]
        self._lock = threading.Lock()
        self.multi = MultiCurrency.of(config.currencies)
        for currency in config.currencies:
            for spec in (*PRICES, self.multi.plan, self.multi.seats):
                self.price(spec, currency)
            for coupon in (*COUPONS, self.multi.off):
                self.coupon(coupon, currency)
            self.tax_rate(INCLUDED_20, currency)

    # The customers are the random business's (identity, currency, tax, creation time).
    customer_count = Generator.customer_count
    customer_created = Generator.customer_created
    header = Generator.header

    def _scripted(self, ci: int) -> tuple[Random, bool]:
        """Customer ci's own random stream, and whether it lives a script."""
        rv = Random(f"{self.config.seed}:{ci}:variety")
        return rv, rv.random() < VARIETY_SHARE

    def _rank(self, ci: int) -> int:
        """How many customers before ci live a script."""
        with self._lock:
            before = self._scripted_before
            while len(before) <= ci:
                before.append(before[-1] + self._scripted(len(before) - 1)[1])
            return before[ci]

    def simulate(self, ci: int, events: bool = True, horizon: int | None = None) -> CustomerSim:
        rv, scripted = self._scripted(ci)
        if not scripted:
            return Generator.simulate(self, ci, events, horizon)
        if horizon is None or horizon > self.horizon:
            horizon = self.horizon
        cs = self.header(ci, events, horizon)
        t0 = cs.created + int(rv.uniform(60, 3 * DAY))
        turn, at = divmod(self._rank(ci), len(KINDS))
        kind = KINDS[at]
        script = _script(kind, rv, t0, self.multi, turn)
        cs.tags.add(f"variety_{kind}")
        run: Iterator[int] = self._run(cs, script, t0)
        for _ in run:
            pass
        cs.finish()
        return cs


def _at(t: int) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _script(kind: str, rv: Random, t0: int, multi: MultiCurrency, turn: int) -> SubscriptionScript:
    """A monthly subscription from t0 built around `kind`; events fall inside periods. The
    fields of what a price bills take their forms in turn (the kind's `turn`-th customer)."""

    def bound(k: int, anchor: int = t0) -> int:
        return period_bound(anchor, "month", 1, k)

    def inside(k: int, lo: float = 0.2, hi: float = 0.8, anchor: int = t0) -> int:
        ps, pe = bound(k, anchor), bound(k + 1, anchor)
        return ps + int((pe - ps) * rv.uniform(lo, hi))

    k = 1 + rv.randrange(4)  # the period where the behaviour happens
    u = rv.random()
    evs: list[Event] = []
    opts: dict = {}
    price, quantity = PLAN, 1 + rv.randrange(3)
    if kind == "incomplete":
        opts["first_payment_fails"] = True
        if u < 0.5:
            evs.append(PaymentSucceeds(_at(t0 + 2 * HOUR)))
    elif kind == "dunning":
        ps = bound(k)
        evs.append(PaymentFails(_at(ps + HOUR + 120)))
        later = _at(ps + int(rv.uniform(5, 20) * DAY))
        if u < 0.6:
            outcome = ("canceled", "unpaid", "past_due")[rv.randrange(3)]
            invoice = "open" if rv.random() < 0.5 else "uncollectible"
            evs.append(RetriesExhausted(later, outcome, invoice))
        elif u < 0.8:
            evs.append(MarkUnpaid(later))
        else:
            evs.append(PaymentSucceeds(later))
    elif kind == "trial_pause":
        opts["trial_days"] = 14
        opts["missing_payment_method"] = "pause" if u < 0.8 else "cancel"
        if u < 0.5:
            evs.append(Resume(_at(t0 + int(rv.uniform(16, 60) * DAY))))
    elif kind == "prorations":
        behavior = ("create_prorations", "none", "always_invoice")[rv.randrange(3)]
        evs.append(
            Change(
                _at(inside(k)), quantity=quantity + 1 + rv.randrange(3), proration_behavior=behavior
            )
        )
        if rv.random() < 0.5:
            evs.append(Change(_at(inside(k + 1)), price=BIG, proration_behavior=behavior))
    elif kind == "item_discount":
        coupon = TWENTY if u < 0.5 else FIVE_OFF
        opts["items"] = (ItemScript(SEATS, 1 + rv.randrange(5), coupon=coupon),)
    elif kind == "multi_discount":
        opts["coupon"] = TWENTY
        opts["coupons"] = (FIVE_OFF, HALF_ONCE) if u < 0.5 else (FIVE_OFF,)
    elif kind == "free":
        opts["coupon"] = FREE
    elif kind == "inclusive":
        price = INCLUSIVE
    elif kind == "pause_collection":
        behavior = ("void", "keep_as_draft", "mark_uncollectible")[turn % 3]
        at = inside(k)
        if u < 0.4:
            resumes = bound(k + 1 + rv.randrange(3)) + DAY // 2
            evs.append(PauseCollection(_at(at), behavior, _at(resumes)))
        else:
            evs.append(PauseCollection(_at(at), behavior))
            if u < 0.8:
                evs.append(ResumeCollection(_at(inside(k + 1 + rv.randrange(3)))))
    elif kind == "draft_renewal":
        evs.append(DraftRenewal(_at(inside(k))))
    elif kind == "packages":
        # seats by packages, the seats changing later (across a package or within one)
        price = (PACKAGES_UP, PACKAGES_DOWN)[turn % 2]
        quantity = current = 5 + rv.randrange(40)
        for period in (k, k + 1 + rv.randrange(2)):
            behavior = ("create_prorations", "none", "always_invoice")[rv.randrange(3)]
            then = 5 + rv.randrange(40)
            current = then if then != current else then + 1
            evs.append(Change(_at(inside(period)), quantity=current, proration_behavior=behavior))
    elif kind == "decimal":
        if turn % 2 == 0:
            price, quantity = DECIMAL, 1 + rv.randrange(9)
        else:
            price, quantity = DECIMAL_TIERS, 500 + rv.randrange(3000)
        evs.append(Change(_at(inside(k)), quantity=quantity + 1 + rv.randrange(7)))
    elif kind == "multi_currency":
        # the price billed in the customer's currency, and a coupon in several currencies
        # from the start or added later
        if turn % 2 == 0:
            price = multi.plan
        else:
            price, quantity = multi.seats, 1 + rv.randrange(12)
        if rv.random() < 0.5:
            opts["coupon"] = multi.off
        else:
            evs.append(AddCoupon(_at(inside(k)), multi.off))
    elif kind == "product_coupon":
        opts["items"] = (ItemScript(SEATS, 1 + rv.randrange(6)),)
        coupon = (SEATS_HALF, PLAN_OFF)[turn % 2]
        if rv.random() < 0.5:
            opts["coupon"] = coupon
            if rv.random() < 0.5:
                opts["coupons"] = (TWENTY,)  # then 20% of everything
        else:
            evs.append(AddCoupon(_at(inside(k)), coupon))
    elif kind == "inclusive_amount_off":
        price = INCLUSIVE
        opts["coupon"] = FIVE_OFF
        if turn % 2:
            opts["default_tax_rates"] = (INCLUDED_20,)
            price = PLAN
    elif kind == "invoice_coupon":
        # a forever coupon on one renewal invoice only: not the subscription's
        evs.append(InvoiceCoupon(_at(inside(k)), (TWENTY, FIVE_OFF)[turn % 2]))
    elif kind == "anchor_reset":
        at = inside(k)
        evs.append(Change(_at(at), billing_cycle_anchor="now"))
        if rv.random() < 0.5:  # a later change in the new cycle
            evs.append(Change(_at(inside(1, anchor=at)), quantity=quantity + 1))
    else:
        assert kind == "schedule", kind
        first = inside(k)
        phases = [Phase(_at(first), price=BIG)]
        if u < 0.5:
            phases.append(Phase(_at(inside(k + 1)), price=SMALL, quantity=1))
        opts["phases"] = tuple(phases)
    if rv.random() < 0.15 and kind not in ("incomplete", "trial_pause", "dunning"):
        # a cancellation after everything else
        last = max([t0] + [int(e.at.timestamp()) for e in evs])
        period = max(k + 3, 1 + _period_index(last, t0))
        evs.append(Cancel(_at(inside(period)), at_period_end=rv.random() < 0.5))
    return SubscriptionScript(price=price, quantity=quantity, events=tuple(evs), **opts)


def _period_index(t: int, t0: int) -> int:
    k = 0
    while period_bound(t0, "month", 1, k + 1) <= t:
        k += 1
    return k

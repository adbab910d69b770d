"""Billing variety for the random business (StripeSandboxConfig.billing_variety): about one
customer in three lives a random script of the billing-settings vocabulary (scripts.py)
instead of the generator's usual life, simulated by the scripted machinery, so its objects,
events and truth are those the scripted tests check.

The variety catalog (a few prices and coupons per currency) is created up front, so the
served catalog does not depend on which customers were simulated. Which customers get a
script, and which script, comes from a random stream of their own: the other customers are
exactly those of the default business with the same seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from random import Random

from kpi_pipelines.sandbox.stripe.catalog import DAY
from kpi_pipelines.sandbox.stripe.generator.calendar import period_bound
from kpi_pipelines.sandbox.stripe.generator.config import HOUR, StripeSandboxConfig
from kpi_pipelines.sandbox.stripe.generator.core import Generator
from kpi_pipelines.sandbox.stripe.generator.objects import CustomerSim
from kpi_pipelines.sandbox.stripe.scripted import ScriptedGenerator
from kpi_pipelines.sandbox.stripe.scripts import (
    Cancel,
    Change,
    CouponSpec,
    DraftRenewal,
    Event,
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
)

VARIETY_SHARE = 0.33

PLAN = PriceSpec(4900, product="pro", nickname="Pro (variety)")
BIG = PriceSpec(9900, product="business", nickname="Business (variety)")
SMALL = PriceSpec(1900, product="starter", nickname="Starter (variety)")
INCLUSIVE = PriceSpec(6000, product="pro", tax_behavior="inclusive", nickname="Pro incl. tax")
SEATS = PriceSpec(1000, product="seats", nickname="Seat (variety)")
FREE = CouponSpec(percent_off=100, duration="forever", id="VARIETY_FREE")
TWENTY = CouponSpec(percent_off=20, duration="forever", id="VARIETY_20")
FIVE_OFF = CouponSpec(amount_off=500, duration="forever", id="VARIETY_5OFF")
HALF_ONCE = CouponSpec(percent_off=50, duration="once", id="VARIETY_HALF_ONCE")
PRICES = (PLAN, BIG, SMALL, INCLUSIVE, SEATS)
COUPONS = (FREE, TWENTY, FIVE_OFF, HALF_ONCE)

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
)


class VarietyGenerator(ScriptedGenerator):
    """The random business, with some customers living random billing-settings scripts."""

    def __init__(self, config: StripeSandboxConfig, horizon: int | None = None) -> None:
        super().__init__(config, (), horizon)
        for currency in config.currencies:
            for spec in PRICES:
                self.price(spec, currency)
            for coupon in COUPONS:
                self.coupon(coupon, currency)

    # The customers are the random business's (identity, currency, tax, creation time).
    customer_count = Generator.customer_count
    customer_created = Generator.customer_created
    header = Generator.header

    def simulate(self, ci: int, events: bool = True, horizon: int | None = None) -> CustomerSim:
        rv = Random(f"{self.config.seed}:{ci}:variety")
        if rv.random() >= VARIETY_SHARE:
            return Generator.simulate(self, ci, events, horizon)
        if horizon is None or horizon > self.horizon:
            horizon = self.horizon
        cs = self.header(ci, events, horizon)
        t0 = cs.created + int(rv.uniform(60, 3 * DAY))
        kind = KINDS[rv.randrange(len(KINDS))]
        script = _script(kind, rv, t0)
        cs.tags.add(f"variety_{kind}")
        run: Iterator[int] = self._run(cs, script, t0)
        for _ in run:
            pass
        cs.finish()
        return cs


def _at(t: int) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _script(kind: str, rv: Random, t0: int) -> SubscriptionScript:
    """A monthly subscription from t0 built around `kind`; events fall inside periods."""

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
        behavior = ("void", "keep_as_draft", "mark_uncollectible")[rv.randrange(3)]
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

"""MRR from the internal timeline (the truth; never from served JSON)."""

from __future__ import annotations

from bisect import bisect_right

from kpi_pipelines.sandbox.stripe.catalog import (
    Price,
    TaxRate,
    monthly_factor,
)
from kpi_pipelines.sandbox.stripe.generator.objects import CustomerSim, Sub


def item_mrr(price: Price, quantity: int | None) -> float:
    """Monthly recurring revenue of one licensed item in minor units (0 for metered)."""
    if not price.licensed:
        return 0.0
    return price.amount(quantity or 0) * monthly_factor(price.interval, price.interval_count)


# The statuses whose subscriptions count (kpi-definitions.md): status is the whole rule, so a
# subscription with pause_collection (still `active`) counts and a `paused` one does not.
COUNTED_STATUSES = frozenset(("active", "past_due"))


def sub_mrr_at(sub: Sub, t: int, auto_tax: TaxRate | None = None, currency: str = "") -> float:
    """A subscription's MRR at t in minor units; `auto_tax`: its customer's automatic tax
    (included in prices whose tax_behavior is inclusive). Tax is excluded: an item whose
    price includes its tax counts net of it (120 including 20% VAT counts 100)."""
    if t < sub.created or not sub.status_log or sub.status_at(t) not in COUNTED_STATUSES:
        return 0.0
    # Forever discounts apply one after the other, as on the invoices: each item's own on its
    # item, then the subscription's on the items of the products each applies to (all of
    # them without applies_to), an amount off normalized like the price and shared among
    # them in proportion; each takes from what the ones before left.
    forever = [
        d
        for d in sub.discounts
        if d.coupon.duration == "forever"
        and not d.one_invoice
        and d.start <= t
        and (d.end is None or t < d.end)
    ]
    values: list[list] = []  # [item, its MRR so far (tax included), the share that is not tax]
    interval: tuple[str, int] | None = None
    for item in sub.items:
        if not item.alive_at(t):
            continue
        price, qty = item.state_at(t)
        if price.licensed:
            values.append([item, item_mrr(price, qty), _net_share(sub, item, price, auto_tax)])
            if interval is None:
                interval = (price.interval, price.interval_count)
    if interval is None:
        return 0.0
    for disc in [d for d in forever if d.item is not None] + [d for d in forever if d.item is None]:
        if disc.item is not None:
            hit = [v for v in values if v[0] is disc.item]
        else:
            hit = [v for v in values if disc.coupon.applies(v[0].state_at(t)[0].product.id)]
        kept = _kept(disc, sum(v[1] for v in hit), interval, currency)
        for v in hit:
            v[1] *= kept
    return sum(value * share for _, value, share in values)


def _kept(disc, value: float, interval: tuple[str, int], currency: str) -> float:
    """The share of `value` a discount leaves (an amount off is normalized like the price)."""
    coupon = disc.coupon
    if coupon.percent_off is not None:
        return 1 - coupon.percent_off / 100
    off = coupon.amount_off_in(currency)
    if off is None or value <= 0:
        return 1.0
    return 1 - min(value, off * monthly_factor(*interval)) / value


def _net_share(sub: Sub, item, price: Price, auto_tax: TaxRate | None) -> float:
    """The share of an item's amount that is not tax (1 unless its tax is included)."""
    rate = (item.tax_rates or sub.tax_rates or (None,))[0]
    inclusive = rate.inclusive if rate is not None else price.tax_behavior == "inclusive"
    if rate is None:
        rate = auto_tax
    if rate is None or not inclusive:
        return 1.0
    return 100 / (100 + rate.percentage)


def customer_mrr_at(cs: CustomerSim, t: int) -> float:
    return sum(sub_mrr_at(sub, t, cs.tax, cs.currency) for sub in cs.subs)


def customer_change_points(cs: CustomerSim) -> list[int]:
    """Every instant at which the customer's MRR may change (sorted, unique)."""
    points: set[int] = set()
    for sub in cs.subs:
        points.add(sub.created)
        for t, _ in sub.status_log:
            points.add(t)
        for item in sub.items:
            for t, _, _ in item.states:
                points.add(t)
            if item.removed_at is not None:
                points.add(item.removed_at)
        for disc in sub.discounts:
            points.add(disc.start)
            if disc.end is not None:
                points.add(disc.end)
    return sorted(points)


def customer_mrr_steps(cs: CustomerSim, until: int) -> list[tuple[int, float]]:
    """The customer's MRR as a step function: [(from instant, value)], up to `until`."""
    steps: list[tuple[int, float]] = []
    last = None
    for t in customer_change_points(cs):
        if t > until:
            break
        value = customer_mrr_at(cs, t)
        if value != last:
            steps.append((t, value))
            last = value
    return steps


def step_value(steps: list[tuple[int, float]], t: int) -> float:
    i = bisect_right(steps, (t, float("inf")))
    return steps[i - 1][1] if i else 0.0

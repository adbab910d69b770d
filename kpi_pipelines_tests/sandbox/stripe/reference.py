"""A reference reconstruction of MRR history from served Stripe JSON (section 2 of the contract).

Pure Python over what the API returns; shares no code with the generator or its truth record.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

Obj = dict[str, Any]


def monthly(amount: float, interval: str, count: int) -> float:
    if interval == "month":
        return amount / count
    if interval == "year":
        return amount / (12 * count)
    if interval == "week":
        return amount * 52 / 12 / count
    if interval == "day":
        return amount * 365 / 12 / count
    raise ValueError(interval)


def price_amount(price: Obj, quantity: int) -> float:
    if price["billing_scheme"] == "per_unit":
        return price["unit_amount"] * quantity
    tiers = price["tiers"]
    if price["tiers_mode"] == "volume":
        for tier in tiers:
            if tier["up_to"] is None or quantity <= tier["up_to"]:
                return tier["unit_amount"] * quantity + (tier["flat_amount"] or 0)
        raise AssertionError("unbounded last tier expected")
    total, below = 0, 0
    for tier in tiers:
        top = quantity if tier["up_to"] is None else min(quantity, tier["up_to"])
        units = top - below
        if units <= 0:
            break
        total += units * tier["unit_amount"] + (tier["flat_amount"] or 0)
        below = top
    return total


def paginate(get: Callable[[str, dict], Obj], path: str, params: dict) -> Iterator[Obj]:
    params = dict(params, limit=100)
    while True:
        page = get(path, params)
        yield from page["data"]
        if not page["has_more"]:
            return
        params["starting_after"] = page["data"][-1]["id"]


class SubscriptionHistory:
    """One subscription's MRR at any instant, from its object, invoices and lines."""

    def __init__(
        self, sub: Obj, invoices: list[Obj], prices: dict[str, Obj], coupons: dict[str, Obj]
    ):
        self.sub = sub
        self.prices = prices
        self.lines: dict[str, list[tuple[int, int, Obj]]] = defaultdict(list)
        self.unpaid: list[tuple[int, int | None]] = []
        for inv in invoices:
            for line in inv["lines"]["data"]:
                parent = line["parent"]
                assert parent["type"] == "subscription_item_details"
                details = parent["subscription_item_details"]
                assert details["subscription"] == sub["id"]
                self.lines[details["subscription_item"]].append(
                    (inv["created"], line["period"]["start"], line)
                )
            marked = inv["status_transitions"]["marked_uncollectible_at"]
            if marked is not None:
                paid = inv["status_transitions"]["paid_at"]
                self.unpaid.append((marked, paid if paid is not None else sub["ended_at"]))
        self.forever = []
        for disc in sub["discounts"]:
            coupon = disc["source"]["coupon"]
            if isinstance(coupon, str):
                coupon = coupons[coupon]
            if coupon["duration"] == "forever":
                self.forever.append((disc["start"], disc["end"], coupon))

    def item_state(self, item_id: str, t: int) -> Obj | None:
        covering = [
            (start, created, line)
            for created, start, line in self.lines[item_id]
            if line["period"]["start"] <= t < line["period"]["end"]
        ]
        if not covering:
            return None
        top = max(start for start, _, _ in covering)
        candidates = [
            (created, line)
            for start, created, line in covering
            if start == top and line["amount"] >= 0
        ]
        if not candidates:
            return None  # only a credit from `top` on: the item was removed
        return max(candidates, key=lambda c: c[0])[1]

    def mrr_at(self, t: int) -> float:
        sub = self.sub
        if t < sub["created"]:
            return 0.0
        if sub["trial_start"] is not None and sub["trial_start"] <= t < sub["trial_end"]:
            return 0.0
        if sub["ended_at"] is not None and t >= sub["ended_at"]:
            return 0.0
        for start, end in self.unpaid:
            if start <= t and (end is None or t < end):
                return 0.0
        total = 0.0
        interval = None
        for item_id in self.lines:
            line = self.item_state(item_id, t)
            if line is None:
                continue
            price = self.prices[line["pricing"]["price_details"]["price"]]
            recurring = price["recurring"]
            if recurring["usage_type"] != "licensed":
                continue
            total += monthly(
                price_amount(price, line["quantity"]),
                recurring["interval"],
                recurring["interval_count"],
            )
            interval = (recurring["interval"], recurring["interval_count"])
        for start, end, coupon in self.forever:
            if start <= t and (end is None or t < end):
                if coupon["percent_off"] is not None:
                    total *= 1 - coupon["percent_off"] / 100
                elif coupon["amount_off"] is not None and interval is not None:
                    total = max(0.0, total - monthly(coupon["amount_off"], *interval))
        return total


def reconstruct(
    get: Callable[[str, dict], Obj],
) -> tuple[dict[str, tuple[str, float]], Callable[[int], dict[str, tuple[str, float]]]]:
    """Fetch everything once; return ({customer: (currency, 0)}, mrr_at(t) -> per customer)."""
    prices = {p["id"]: p for p in paginate(get, "/v1/prices", {"expand[]": "data.tiers"})}
    coupons = {c["id"]: c for c in paginate(get, "/v1/coupons", {})}
    customers = {c["id"]: c for c in paginate(get, "/v1/customers", {})}
    histories: dict[str, list[SubscriptionHistory]] = defaultdict(list)
    currency: dict[str, str] = {}
    subs = list(paginate(get, "/v1/subscriptions", {"status": "all", "expand[]": "data.discounts"}))
    for sub in subs:
        invoices = list(paginate(get, "/v1/invoices", {"subscription": sub["id"]}))
        for inv in invoices:
            if inv["lines"]["has_more"]:
                inv["lines"]["data"] = list(paginate(get, f"/v1/invoices/{inv['id']}/lines", {}))
        histories[sub["customer"]].append(SubscriptionHistory(sub, invoices, prices, coupons))
        currency[sub["customer"]] = sub["currency"]

    def mrr_at(t: int) -> dict[str, tuple[str, float]]:
        out = {}
        for cid, cus in customers.items():
            if cus["created"] > t:
                continue
            value = sum(h.mrr_at(t) for h in histories.get(cid, []))
            out[cid] = (currency.get(cid, cus["currency"]), value)
        return out

    return customers, mrr_at

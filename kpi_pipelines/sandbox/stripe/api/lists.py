"""List arguments as Stripe reads them (`limit`, `starting_after`/`ending_before`, `created`)
and the list envelope; paging itself is the kit's."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from kpi_pipelines.sandbox.kit import PageSize, key_range, newest_first
from kpi_pipelines.sandbox.stripe.api.params import Obj, Params, parse_expand, parse_int
from kpi_pipelines.sandbox.stripe.errors import ApiError, missing

PAGE_SIZE = PageSize(default=10, maximum=100)  # Stripe refuses anything outside 1..100

SUB_STATUSES = (
    "active",
    "past_due",
    "unpaid",
    "canceled",
    "incomplete",
    "incomplete_expired",
    "trialing",
    "paused",
    "all",
    "ended",
)
INVOICE_STATUSES = ("draft", "open", "paid", "uncollectible", "void")


# ---------------------------------------------------------------------------------------------
# Paging


def page_sorted(
    objects: Sequence[Any],
    now: int,
    args: ListArgs,
    noun: str,
    id_of: Callable[[Any], str],
    accept: Callable[[Any], bool] | None = None,
) -> tuple[list[Any], bool]:
    """One page over in-memory objects sorted by created (oldest first), as of `now`: the
    objects chosen and has_more. A cursor that names none of them is a 404 like Stripe's."""
    objects = [o for o in objects if o.created <= now]
    created = [o.created for o in objects]
    lo, hi = args.bounds(created)
    after = before = None
    cursor = args.after or args.before
    if cursor:
        param = "starting_after" if args.after else "ending_before"
        pos = next((i for i, o in enumerate(objects) if id_of(o) == cursor), None)
        if pos is None:
            raise missing(noun, cursor, param)
        after, before = (pos, None) if args.after else (None, pos)
    test = None if accept is None else (lambda i: accept(objects[i]))
    positions, has_more = newest_first(lo, hi, args.limit, after=after, before=before, accept=test)
    return [objects[i] for i in positions], has_more


class ListArgs:
    __slots__ = ("after", "before", "expand", "gt", "gte", "limit", "lt", "lte")

    def __init__(self, p: Params, kind: str) -> None:
        raw = p.get("limit")
        limit = PAGE_SIZE.resolve(None if raw is None else parse_int(raw, "limit"))
        if limit is None:
            raise ApiError(
                400,
                "Invalid limit: must be between 1 and 100",
                code="parameter_invalid_integer",
                param="limit",
            )
        self.limit = limit
        self.after = p.get("starting_after") or None
        self.before = p.get("ending_before") or None
        if self.after and self.before:
            raise ApiError(
                400,
                "You may only specify one of these parameters: ending_before, starting_after.",
                param="ending_before",
            )
        self.gte = self.lte = None
        self.gt = self.lt = None
        created_scalar = p.scalars.get("created")
        p.used.add("created")
        if created_scalar is not None:
            value = parse_int(created_scalar, "created")
            self.gte = self.lte = value
        for op, value in p.hash("created").items():
            if op not in ("gt", "gte", "lt", "lte"):
                raise ApiError(
                    400,
                    f"Received unknown parameter: created[{op}]",
                    code="parameter_unknown",
                    param=f"created[{op}]",
                )
            setattr(self, op, parse_int(value, f"created[{op}]"))
        self.expand = parse_expand(p.array("expand"), kind, is_list=True)

    def bounds(self, created: Sequence[int]) -> tuple[int, int]:
        return key_range(created, gte=self.gte, gt=self.gt, lte=self.lte, lt=self.lt)


def list_body(url: str, data: list[Obj], has_more: bool) -> Obj:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


# ---------------------------------------------------------------------------------------------
# Resources

NOUNS = {
    "customers": ("cus", "customer"),
    "subscriptions": ("sub", "subscription"),
    "subscription_items": ("si", "subscription_item"),
    "invoices": ("in", "invoice"),
    "invoiceitems": ("ii", "invoiceitem"),
    "subscription_schedules": ("sub_sched", "subscription_schedule"),
    "charges": ("ch", "charge"),
    "refunds": ("re", "refund"),
    "balance_transactions": ("txn", "balance_transaction"),
    "events": ("evt", "event"),
    "products": ("prod", "product"),
    "prices": ("price", "price"),
    "coupons": (None, "coupon"),
    "tax_rates": ("txr", "tax_rate"),
}


# Objects whose state as of the clock needs the customer's whole simulation; the others are
# settled within the period that creates them (see Generator.simulate).
NEED_FULL_SIM = frozenset(
    {
        "customers",
        "subscriptions",
        "subscription_items",
        "invoiceitems",
        "subscription_schedules",
        "events",
    }
)

"""Query parameters decoded and checked as Stripe does: arrays, hashes, unknown names, and the
`expand[]` paths each resource allows (at most four levels)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from kpi_pipelines.sandbox.stripe.errors import ApiError

Obj = dict[str, Any]


# ---------------------------------------------------------------------------------------------
# Parameters


class Params:
    """Query parameters decoded like Stripe (`a[]=`, `a[0]=` arrays; `a[b]=` hashes)."""

    _KEY = re.compile(r"^([A-Za-z0-9_]+)\[([^\]]*)\]$")

    def __init__(self, items: Sequence[tuple[str, str]]) -> None:
        self.scalars: dict[str, str] = {}
        self.arrays: dict[str, list[str]] = {}
        self.hashes: dict[str, dict[str, str]] = {}
        indexed: dict[str, list[tuple[int, int, str]]] = {}
        for n, (key, value) in enumerate(items):
            m = self._KEY.match(key)
            if m is None:
                self.scalars[key] = value
                continue
            name, sub = m.groups()
            if sub == "" or sub.isdigit():
                indexed.setdefault(name, []).append((int(sub) if sub else n, n, value))
            else:
                self.hashes.setdefault(name, {})[sub] = value
        for name, values in indexed.items():
            self.arrays[name] = [v for _, _, v in sorted(values)]
        self.used: set[str] = set()

    def names(self) -> set[str]:
        return set(self.scalars) | set(self.arrays) | set(self.hashes)

    def get(self, name: str) -> str | None:
        self.used.add(name)
        if name in self.arrays or name in self.hashes:
            raise ApiError(400, f"Invalid {name}: must be a string", param=name)
        return self.scalars.get(name)

    def array(self, name: str) -> list[str]:
        self.used.add(name)
        if name in self.scalars:
            raise ApiError(400, f"Invalid array for {name}", param=name)
        return self.arrays.get(name, [])

    def hash(self, name: str) -> dict[str, str]:
        self.used.add(name)
        return self.hashes.get(name, {})

    def check_unknown(self) -> None:
        for name in sorted(self.names() - self.used):
            raise ApiError(
                400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name
            )


def parse_int(value: str, param: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ApiError(
            400, f"Invalid integer: {value}", code="parameter_invalid_integer", param=param
        ) from None


# ---------------------------------------------------------------------------------------------
# Expansion

_NO_OP = None  # an expandable field that is always null here
# A price's currency_options, whose entries' tiers expand as `currency_options.<currency>.tiers`.
_CURRENCY_OPTIONS = "price_currency_options"
_CURRENCY = re.compile(r"^[a-z]{3}$")

EXPANDABLE: dict[str, dict[str, str | None]] = {
    "customer": {"default_source": _NO_OP, "test_clock": _NO_OP},
    "product": {"default_price": "price"},
    # includable fields (served only when expanded) are expanded like the rest
    "price": {"tiers": _NO_OP, "product": "product", "currency_options": _CURRENCY_OPTIONS},
    "coupon": {"applies_to": _NO_OP, "currency_options": _NO_OP},
    "tax_rate": {},
    "discount": {"source.coupon": "coupon", "customer": "customer", "promotion_code": _NO_OP},
    "subscription": {
        "items": "subscription_item_list",
        "discounts": "discount",
        "latest_invoice": "invoice",
        "customer": "customer",
        "default_source": _NO_OP,
        "schedule": _NO_OP,
        "pending_setup_intent": _NO_OP,
        "test_clock": _NO_OP,
        "on_behalf_of": _NO_OP,
        "application": _NO_OP,
    },
    "subscription_item_list": {"data": "subscription_item"},
    "subscription_item": {"price": "price", "discounts": "discount"},
    "invoice": {
        "discounts": "discount",
        "customer": "customer",
        "lines": "line_list",
        "total_discount_amounts.discount": "discount",
        "parent.subscription_details.subscription": "subscription",
        "default_source": _NO_OP,
        "test_clock": _NO_OP,
        "on_behalf_of": _NO_OP,
        "latest_revision": _NO_OP,
        "application": _NO_OP,
    },
    "line_list": {"data": "line"},
    "line": {
        "discounts": "discount",
        "pricing.price_details.price": "price",
        "discount_amounts.discount": "discount",
    },
    "charge": {
        "balance_transaction": "balance_transaction",
        "customer": "customer",
        "refunds": _NO_OP,
        "application": _NO_OP,
        "application_fee": _NO_OP,
        "review": _NO_OP,
        "on_behalf_of": _NO_OP,
        "source_transfer": _NO_OP,
        "failure_balance_transaction": _NO_OP,
    },
    "refund": {
        "charge": "charge",
        "balance_transaction": "balance_transaction",
        "source_transfer_reversal": _NO_OP,
        "transfer_reversal": _NO_OP,
    },
    "balance_transaction": {"source": "charge"},  # charges and refunds share the renderer path
    "event": {},
}


def parse_expand(paths: list[str], kind: str, *, is_list: bool) -> dict | None:
    """Validate expand paths for a resource and return them as a tree (or None)."""
    if not paths:
        return None
    tree: dict = {}
    for path in paths:
        segments = path.split(".")
        if len(segments) > 4:
            raise ApiError(
                400, "You cannot expand more than 4 levels of a property.", param="expand"
            )
        rest = segments
        if is_list:
            if segments[0] != "data":
                raise ApiError(
                    400,
                    f"This property cannot be expanded ({path}). You may want to try expanding "
                    f"'data.{path}' instead.",
                    param="expand",
                )
            rest = segments[1:]
        if not rest:
            raise ApiError(400, f"This property cannot be expanded ({path}).", param="expand")
        _check_path(rest, kind, path)
        node = tree
        for segment in rest:
            node = node.setdefault(segment, {})
    return tree


def _check_path(segments: list[str], kind: str | None, full: str) -> None:
    while segments:
        if kind == _CURRENCY_OPTIONS:
            if len(segments) == 2 and _CURRENCY.match(segments[0]) and segments[1] == "tiers":
                return
            raise ApiError(400, f"This property cannot be expanded ({full}).", param="expand")
        allowed = EXPANDABLE.get(kind or "", {})
        for n in range(len(segments), 0, -1):
            candidate = ".".join(segments[:n])
            if candidate in allowed:
                kind = allowed[candidate]
                segments = segments[n:]
                if kind is None and segments:
                    raise ApiError(
                        400, f"This property cannot be expanded ({full}).", param="expand"
                    )
                break
        else:
            raise ApiError(
                400,
                f"This property cannot be expanded ({'.'.join(segments)}).",
                param="expand",
            )

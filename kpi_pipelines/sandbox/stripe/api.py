"""Stripe's `/v1` read API over a StripeSandbox: parameters, lists, retrieval, expansion, errors.

Independent of the web framework: `Api.handle(method, path, query_items, version)` returns
(status, JSON-able body). Lists are newest first with Stripe's cursor semantics (`limit` 1..100,
`starting_after` / `ending_before` by object id, `has_more`, `created[gte|gt|lte|lt]` or
`created=`), unknown parameters are refused like Stripe refuses them, and `expand[]` paths are
checked against what each resource can expand (at most four levels).
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from typing import Any

from kpi_pipelines.sandbox.kit import PageSize, key_range, newest_first
from kpi_pipelines.sandbox.stripe.errors import ApiError, missing
from kpi_pipelines.sandbox.stripe.generator import (
    CARD_DECLINED,
    SETTLE,
    BalanceTxn,
    Charge,
    CustomerSim,
    Invoice,
    Sub,
)
from kpi_pipelines.sandbox.stripe.ids import CATALOG_OWNER
from kpi_pipelines.sandbox.stripe.render import DEFAULT_API_VERSION, Renderer
from kpi_pipelines.sandbox.stripe.sandbox import (
    EVENT_CODE,
    EVENT_TYPES,
    Index,
    State,
    StripeSandbox,
)

Obj = dict[str, Any]
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


def _int(value: str, param: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ApiError(
            400, f"Invalid integer: {value}", code="parameter_invalid_integer", param=param
        ) from None


# ---------------------------------------------------------------------------------------------
# Expansion

_NO_OP = None  # an expandable field that is always null here

EXPANDABLE: dict[str, dict[str, str | None]] = {
    "customer": {"default_source": _NO_OP, "test_clock": _NO_OP},
    "product": {"default_price": "price"},
    "price": {"tiers": _NO_OP, "product": "product"},
    "coupon": {},
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


# ---------------------------------------------------------------------------------------------
# Paging


def _page_sorted(
    objects: Sequence[Any],
    now: int,
    args: _ListArgs,
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


class _ListArgs:
    __slots__ = ("after", "before", "expand", "gt", "gte", "limit", "lt", "lte")

    def __init__(self, p: Params, kind: str) -> None:
        raw = p.get("limit")
        limit = PAGE_SIZE.resolve(None if raw is None else _int(raw, "limit"))
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
            value = _int(created_scalar, "created")
            self.gte = self.lte = value
        for op, value in p.hash("created").items():
            if op not in ("gt", "gte", "lt", "lte"):
                raise ApiError(
                    400,
                    f"Received unknown parameter: created[{op}]",
                    code="parameter_unknown",
                    param=f"created[{op}]",
                )
            setattr(self, op, _int(value, f"created[{op}]"))
        self.expand = parse_expand(p.array("expand"), kind, is_list=True)

    def bounds(self, created: Sequence[int]) -> tuple[int, int]:
        return key_range(created, gte=self.gte, gt=self.gt, lte=self.lte, lt=self.lt)


def _list_body(url: str, data: list[Obj], has_more: bool) -> Obj:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


# ---------------------------------------------------------------------------------------------
# Resources

_NOUNS = {
    "customers": ("cus", "customer"),
    "subscriptions": ("sub", "subscription"),
    "subscription_items": ("si", "subscription_item"),
    "invoices": ("in", "invoice"),
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
_NEED_FULL_SIM = frozenset({"customers", "subscriptions", "subscription_items", "events"})


class Api:
    """The read API of one sandbox."""

    def __init__(self, sandbox: StripeSandbox) -> None:
        self.sandbox = sandbox

    def handle(
        self, method: str, path: str, query: Sequence[tuple[str, str]], version: str | None
    ) -> tuple[int, Obj]:
        try:
            return 200, self._dispatch(method, path, Params(query), version or DEFAULT_API_VERSION)
        except ApiError as err:
            return err.status, err.body()

    # -- routing ------------------------------------------------------------------------------

    def _dispatch(self, method: str, path: str, p: Params, version: str) -> Obj:
        parts = path.strip("/").split("/")
        if method != "GET" or len(parts) < 2 or parts[0] != "v1":
            raise ApiError(
                404,
                f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs "
                "or we can help at https://support.stripe.com/.",
            )
        state = self.sandbox.state
        resource = parts[1]
        if resource == "balance" and len(parts) == 2:
            p.array("expand")
            p.check_unknown()
            return self._balance(state)
        if resource not in _NOUNS:
            raise ApiError(404, f"Unrecognized request URL (GET: {path}).")
        if len(parts) == 2:
            return self._list(state, resource, p, version)
        if len(parts) == 3:
            return self._retrieve(state, resource, parts[2], p, version)
        if len(parts) == 4 and resource == "invoices" and parts[3] == "lines":
            return self._invoice_lines(state, parts[2], p, version)
        if len(parts) == 4 and resource == "charges" and parts[3] == "refunds":
            return self._charge_refunds(state, parts[2], p, version)
        raise ApiError(404, f"Unrecognized request URL (GET: {path}).")

    # -- object lookup ------------------------------------------------------------------------

    def _sim_for(self, state: State, prefix: str, obj_id: str, noun: str, param: str = "id"):
        decoded = state.gen.codec.decode(prefix, obj_id)
        if decoded is None:
            raise missing(noun, obj_id, param)
        ci, li, sub = decoded
        if ci >= state.customers:
            raise missing(noun, obj_id, param)
        return self.sandbox.sim(ci, state), li, sub

    def _find(self, state: State, resource: str, obj_id: str, param: str = "id"):
        """(customer sim, object) for a visible object id, else a 404 ApiError."""
        prefix, noun = _NOUNS[resource]
        now = state.now
        if resource == "events":
            decoded = state.gen.codec.decode("evt", obj_id)
            if decoded is None:
                raise missing(noun, obj_id, param)
            ci, li, _ = decoded
            if ci == CATALOG_OWNER:
                if li >= len(state.catalog_events):
                    raise missing(noun, obj_id, param)
                t, type_, obj = state.catalog_events[li]
                if not now - 30 * 86400 <= t <= now or not self._event_visible(
                    state, -1, li, t, type_
                ):
                    raise missing(noun, obj_id, param)
                return None, (li, t, type_, obj)
            if ci >= state.customers:
                raise missing(noun, obj_id, param)
            cs = self.sandbox.sim(ci, state, events=True)
            if li >= cs.n_events:
                raise missing(noun, obj_id, param)
            t, type_, obj = cs.event(li)
            if not now - 30 * 86400 <= t <= now or not self._event_visible(state, ci, li, t, type_):
                raise missing(noun, obj_id, param)
            return cs, (li, t, type_, obj)
        cs, li, _ = self._sim_for(state, prefix, obj_id, noun, param)
        if resource == "customers":
            if li != 0:
                raise missing(noun, obj_id, param)
            return cs, cs
        lst = {
            "subscriptions": cs.subs,
            "subscription_items": cs.items,
            "invoices": cs.invoices,
            "charges": cs.charges,
            "refunds": cs.refunds,
            "balance_transactions": cs.bts,
        }[resource]
        if li >= len(lst):
            raise missing(noun, obj_id, param)
        obj = lst[li]
        if obj.created > now:
            raise missing(noun, obj_id, param)
        if resource == "subscription_items" and not obj.alive_at(now):
            raise missing(noun, obj_id, param)
        return cs, obj

    # -- rendering ----------------------------------------------------------------------------

    def _render(
        self, state: State, resource: str, cs: CustomerSim | None, obj: Any, version: str, ex
    ) -> Obj:
        r: Renderer = state.renderer
        now = state.now
        if resource == "customers":
            return r.customer(cs, now, ex)
        if resource == "subscriptions":
            return r.subscription(cs, obj, now, version, ex)
        if resource == "subscription_items":
            return r.subscription_item(cs, obj, now, version, ex)
        if resource == "invoices":
            return r.invoice(cs, obj, now, version, ex)
        if resource == "charges":
            return r.charge(cs, obj, now, ex)
        if resource == "refunds":
            return r.refund(cs, obj, now, ex)
        if resource == "balance_transactions":
            return r.balance_transaction(cs, obj, now, ex)
        if resource == "events":
            li, t, type_, target = obj
            return r.event(cs, li, t, type_, target)
        if resource == "products":
            return r.product(obj, ex)
        if resource == "prices":
            return r.price(obj, ex)
        if resource == "coupons":
            return r.coupon(obj)
        if resource == "tax_rates":
            return r.tax_rate(obj)
        raise AssertionError(resource)

    # -- retrieve -----------------------------------------------------------------------------

    def _retrieve(self, state: State, resource: str, obj_id: str, p: Params, version: str) -> Obj:
        kind = _NOUNS[resource][1]
        ex = parse_expand(p.array("expand"), kind, is_list=False)
        p.check_unknown()
        cat = state.gen.catalog
        now = state.now
        if resource in ("products", "prices", "coupons", "tax_rates"):
            table: dict = {
                "products": cat.product_by_id,
                "prices": cat.price_by_id,
                "coupons": cat.coupon_by_id,
                "tax_rates": cat.tax_by_id,
            }[resource]
            obj = table.get(obj_id)
            if (
                obj is None
                or obj.created > now
                or (resource == "coupons" and self.sandbox.coupon_deleted(obj_id, now))
            ):
                raise missing(kind, obj_id)
            return self._render(state, resource, None, obj, version, ex)
        cs, obj = self._find(state, resource, obj_id)
        return self._render(state, resource, cs, obj, version, ex)

    # -- lists --------------------------------------------------------------------------------

    def _list(self, state: State, resource: str, p: Params, version: str) -> Obj:
        kind = _NOUNS[resource][1]
        args = _ListArgs(p, kind)
        url = f"/v1/{resource}"
        handler = getattr(self, f"_list_{resource}")
        return handler(state, p, args, version, url)

    def _page_index(
        self,
        state: State,
        resource: str,
        args: _ListArgs,
        accept: Callable[[Index, int], bool] | None,
        version: str,
        url: str,
    ) -> Obj:
        index = state.index[resource]
        lo, hi = args.bounds(index.created)
        if resource == "events" and self.sandbox.event_visibility.active:
            hi, accept = self._visible_events(state, index, lo, hi, accept)
        after = before = None
        if args.after or args.before:
            cursor = args.after or args.before
            param = "starting_after" if args.after else "ending_before"
            cs, obj = self._find(state, resource, cursor, param)
            if resource == "events":
                created, ci, li = obj[1], (-1 if cs is None else cs.ci), obj[0]
            elif resource == "customers":
                created, ci, li = cs.created, cs.ci, 0
            else:
                created, ci, li = obj.created, cs.ci, obj.li
            pos = index.position(created, ci, li)
            if pos is None:
                raise missing(_NOUNS[resource][1], cursor, param)
            if args.after:
                after = pos
            else:
                before = pos
        test = None if accept is None else (lambda i: accept(index, i))
        positions, has_more = newest_first(
            lo, hi, args.limit, after=after, before=before, accept=test
        )
        data = []
        ex = args.expand
        if resource == "balance_transactions" and not ex:
            data = [self._bt_from_index(state, index, i) for i in positions]
            return _list_body(url, data, has_more)
        for i in positions:
            if not ex and resource in ("customers", "charges"):
                obj = self._from_index(state, resource, index, i)
                if obj is not None:
                    data.append(obj)
                    continue
            ci, li = index.ci[i], index.li[i]
            if resource == "events":
                if ci == -1:
                    t, type_, target = state.catalog_events[li]
                    data.append(state.renderer.event(None, li, t, type_, target))
                    continue
                cs = self.sandbox.sim(ci, state, events=True)
                t, type_, target = cs.event(li)
                data.append(state.renderer.event(cs, li, t, type_, target))
                continue
            until = None if resource in _NEED_FULL_SIM else index.created[i] + SETTLE
            cs = self.sandbox.sim(ci, state, until=until)
            obj = {
                "customers": cs,
                "subscriptions": None,
                "invoices": None,
                "charges": None,
                "refunds": None,
                "balance_transactions": None,
            }[resource]
            if obj is None:
                obj = {
                    "subscriptions": cs.subs,
                    "invoices": cs.invoices,
                    "charges": cs.charges,
                    "refunds": cs.refunds,
                    "balance_transactions": cs.bts,
                }[resource][li]
            data.append(self._render(state, resource, cs, obj, version, ex))
        return _list_body(url, data, has_more)

    def _visible_events(
        self,
        state: State,
        index: Index,
        lo: int,
        hi: int,
        accept: Callable[[Index, int], bool] | None,
    ) -> tuple[int, Callable[[Index, int], bool] | None]:
        """The list's range and filter narrowed to the events visible now (visibility.py)."""
        visibility = self.sandbox.event_visibility
        now = state.now
        first = bisect_left(index.created, now)
        happened = visibility.happened_in_second(bisect_right(index.created, now) - first)
        hi = max(lo, min(hi, first + happened))
        if not visibility.delays:
            return hi, accept

        def visible(ix: Index, i: int) -> bool:
            if visibility.delayed(now, ix.created[i], ix.ci[i], ix.li[i], ix.flag[i]):
                return False
            return accept is None or accept(ix, i)

        return hi, visible

    def _event_visible(self, state: State, ci: int, li: int, created: int, type_: str) -> bool:
        visibility = self.sandbox.event_visibility
        if not visibility.active:
            return True
        if visibility.delayed(state.now, created, ci, li, EVENT_CODE[type_]):
            return False
        if created < state.now or visibility.into_second is None:
            return True
        index = state.index["events"]
        first = bisect_left(index.created, created)
        count = bisect_right(index.created, created) - first
        position = index.position(created, ci, li)
        return position is not None and position - first < visibility.happened_in_second(count)

    def _from_index(self, state: State, resource: str, index: Index, i: int) -> Obj | None:
        """A customer, or a charge not refunded by now, from the index and the customer's header
        (no simulation of its history); None when the object needs its simulation."""
        r = state.renderer
        if resource == "customers":
            balance, finalized, flags = index.extra
            f = flags[i]
            cs = state.gen.header(index.ci[i])
            return r.customer_dict(
                cs, state.now, balance[i], bool(f & 1), finalized[i], bool(f & 2)
            )
        amount, bt, desc, flags = index.extra
        f = flags[i]
        if f & 2:
            return None
        cs = state.gen.header(index.ci[i])
        failed = bool(f & 1)
        ch = Charge(
            index.created[i],
            amount[i],
            "failed" if failed else "succeeded",
            -1,
            state.descriptions[desc[i]],
        )
        ch.li = index.li[i]
        if failed:
            ch.failure = CARD_DECLINED
        if bt[i] >= 0:
            ch.bt = BalanceTxn(ch, ch.created, ch.amount, 0, "charge")
            ch.bt.li = bt[i]
        return r.charge(cs, ch, state.now)

    def _bt_from_index(self, state: State, index: Index, i: int) -> Obj:
        ci = index.ci[i]
        amount, fee, source, desc = index.extra
        charge = index.flag[i] == 0
        r = state.renderer
        return r.bt_dict(
            ci,
            index.li[i],
            index.created[i],
            amount[i],
            fee[i],
            "charge" if charge else "refund",
            r.codec.encode("ch" if charge else "re", ci, source[i]),
            state.descriptions[desc[i]],
            state.gen.config.currencies[state.currency_of[ci]],
            state.now,
        )

    def _page_objects(
        self,
        state: State,
        resource: str,
        cs: CustomerSim | None,
        objects: list,
        args: _ListArgs,
        accept: Callable[[Any], bool] | None,
        version: str,
        url: str,
        id_of: Callable[[Any], str],
    ) -> Obj:
        """A page over an in-memory list of objects sorted by created (oldest first)."""
        chosen, has_more = _page_sorted(
            objects, state.now, args, _NOUNS[resource][1], id_of, accept
        )
        data = [self._render(state, resource, cs, obj, version, args.expand) for obj in chosen]
        return _list_body(url, data, has_more)

    def _customer_param(self, state: State, p: Params) -> CustomerSim | None:
        value = p.get("customer")
        if value is None:
            return None
        cs, li, _ = self._sim_for(state, "cus", value, "customer", "customer")
        if li != 0 or cs.created > state.now:
            raise missing("customer", value, "customer")
        return cs

    def _list_customers(self, state, p, args, version, url):
        email = p.get("email")
        p.check_unknown()
        if email is not None:
            matches = [
                cs
                for cs in self.sandbox.customers()
                if state.renderer.customer(cs, state.now)["email"] == email
            ]
            return self._page_customers(state, matches, args, version, url)
        return self._page_index(state, "customers", args, None, version, url)

    def _page_customers(self, state, matches, args, version, url):
        now = state.now
        chosen, has_more = _page_sorted(matches, now, args, "customer", state.renderer.cus_id)
        data = [state.renderer.customer(cs, now, args.expand) for cs in chosen]
        return _list_body(url, data, has_more)

    def _sub_status_accept(self, state: State, status: str | None):
        now = state.now
        if status is None:
            return lambda sub: sub.ended_at is None or sub.ended_at > now
        if status == "all":
            return None
        if status in ("canceled", "ended"):
            return lambda sub: sub.ended_at is not None and sub.ended_at <= now
        return lambda sub: sub.status_at(now) == status

    def _list_subscriptions(self, state, p, args, version, url):
        status = p.get("status")
        if status is not None and status not in SUB_STATUSES:
            raise ApiError(
                400,
                "Invalid status: must be one of " + ", ".join(SUB_STATUSES[:-1]) + ", or ended",
                param="status",
            )
        cs = self._customer_param(state, p)
        price_id = p.get("price")
        p.check_unknown()
        accept_sub = self._sub_status_accept(state, status)
        now = state.now
        if price_id is not None:
            base = accept_sub

            def accept_sub(sub: Sub, base=base) -> bool:
                if base is not None and not base(sub):
                    return False
                return any(
                    item.alive_at(now) and item.state_at(now)[0].id == price_id
                    for item in sub.items
                )

        if cs is not None:
            r = state.renderer
            return self._page_objects(
                state,
                "subscriptions",
                cs,
                cs.subs,
                args,
                accept_sub,
                version,
                url,
                lambda sub: r.sub_id(cs, sub),
            )
        if accept_sub is None:
            accept = None
        elif status is None and price_id is None:

            def accept(index: Index, i: int) -> bool:
                return index.flag[i] == 0

        elif status in ("canceled", "ended") and price_id is None:

            def accept(index: Index, i: int) -> bool:
                return index.flag[i] == 1

        else:

            def accept(index: Index, i: int) -> bool:
                sim = self.sandbox.sim(index.ci[i], state)
                return accept_sub(sim.subs[index.li[i]])

        return self._page_index(state, "subscriptions", args, accept, version, url)

    def _list_subscription_items(self, state, p, args, version, url):
        sub_id = p.get("subscription")
        p.check_unknown()
        if sub_id is None:
            raise ApiError(
                400,
                "Missing required param: subscription.",
                code="parameter_missing",
                param="subscription",
            )
        cs, sub = self._find(state, "subscriptions", sub_id, "subscription")
        now = state.now
        items = [item for item in sub.items if item.alive_at(now)]
        r = state.renderer
        return self._page_objects(
            state,
            "subscription_items",
            cs,
            items,
            args,
            None,
            version,
            url,
            lambda item: r.si_id(cs, item),
        )

    def _list_invoices(self, state, p, args, version, url):
        cs = self._customer_param(state, p)
        sub_id = p.get("subscription")
        status = p.get("status")
        p.check_unknown()
        if status is not None and status not in INVOICE_STATUSES:
            raise ApiError(
                400,
                "Invalid status: must be one of draft, open, paid, uncollectible, or void",
                param="status",
            )
        now = state.now
        r = state.renderer

        def inv_status(inv: Invoice) -> str:
            if inv.finalized_at > now:
                return "draft"
            if inv.paid_at is not None and inv.paid_at <= now:
                return "paid"
            if inv.marked_uncollectible_at is not None and inv.marked_uncollectible_at <= now:
                return "uncollectible"
            return "open"

        accept_inv = None if status is None else (lambda inv: inv_status(inv) == status)
        if sub_id is not None:
            sub_cs, sub = self._find(state, "subscriptions", sub_id, "subscription")
            if cs is not None and cs is not sub_cs and cs.ci != sub_cs.ci:
                return _list_body(url, [], False)
            return self._page_objects(
                state,
                "invoices",
                sub_cs,
                sub.invoices,
                args,
                accept_inv,
                version,
                url,
                lambda inv: r.in_id(sub_cs, inv),
            )
        if cs is not None:
            return self._page_objects(
                state,
                "invoices",
                cs,
                cs.invoices,
                args,
                accept_inv,
                version,
                url,
                lambda inv: r.in_id(cs, inv),
            )
        accept = None
        if accept_inv is not None:

            def accept(index: Index, i: int) -> bool:
                sim = self.sandbox.sim(index.ci[i], state)
                return accept_inv(sim.invoices[index.li[i]])

        return self._page_index(state, "invoices", args, accept, version, url)

    def _list_charges(self, state, p, args, version, url):
        cs = self._customer_param(state, p)
        p.check_unknown()
        if cs is not None:
            r = state.renderer
            return self._page_objects(
                state,
                "charges",
                cs,
                cs.charges,
                args,
                None,
                version,
                url,
                lambda ch: r.ch_id(cs, ch),
            )
        return self._page_index(state, "charges", args, None, version, url)

    def _list_refunds(self, state, p, args, version, url):
        charge_id = p.get("charge")
        p.check_unknown()
        if charge_id is not None:
            cs, ch = self._find(state, "charges", charge_id, "charge")
            return self._page_refunds_of(state, cs, ch, args, version, url)
        return self._page_index(state, "refunds", args, None, version, url)

    def _charge_refunds(self, state: State, charge_id: str, p: Params, version: str) -> Obj:
        args = _ListArgs(p, "refund")
        p.check_unknown()
        cs, ch = self._find(state, "charges", charge_id)
        return self._page_refunds_of(
            state, cs, ch, args, version, f"/v1/charges/{charge_id}/refunds"
        )

    def _page_refunds_of(self, state, cs, ch, args, version, url):
        """One page of a charge's refunds (`?charge=` on the list, or the charge's own list)."""
        r = state.renderer
        return self._page_objects(
            state, "refunds", cs, ch.refunds, args, None, version, url, lambda rf: r.re_id(cs, rf)
        )

    def _list_balance_transactions(self, state, p, args, version, url):
        type_ = p.get("type")
        source = p.get("source")
        p.check_unknown()
        if source is not None:
            resource = "refunds" if source.startswith("re_") else "charges"
            cs, obj = self._find(state, resource, source, "source")
            bts = [obj.bt] if obj.bt is not None else []
            r = state.renderer
            return self._page_objects(
                state,
                "balance_transactions",
                cs,
                bts,
                args,
                None if type_ is None else (lambda bt: bt.type == type_),
                version,
                url,
                lambda bt: r.txn_id(cs, bt),
            )
        accept = None
        if type_ is not None:
            code = {"charge": 0, "refund": 1}.get(type_)

            def accept(index: Index, i: int) -> bool:
                return index.flag[i] == code

        return self._page_index(state, "balance_transactions", args, accept, version, url)

    def _list_events(self, state, p, args, version, url):
        types = p.array("types")
        single = p.get("type")
        p.get("delivery_success")
        p.check_unknown()
        if types and single:
            raise ApiError(
                400, "You may only specify one of these parameters: type, types.", param="types"
            )
        if len(types) > 20:
            raise ApiError(400, "You may pass at most 20 types.", param="types")
        wanted = types or ([single] if single else [])
        accept = None
        if wanted:
            codes = set()
            for pattern in wanted:
                if "*" in pattern:
                    rx = re.compile("^" + re.escape(pattern).replace(r"\*", ".*") + "$")
                    codes |= {EVENT_CODE[t] for t in EVENT_TYPES if rx.match(t)}
                elif pattern in EVENT_CODE:
                    codes.add(EVENT_CODE[pattern])
            frozen = frozenset(codes)

            def accept(index: Index, i: int) -> bool:
                return index.flag[i] in frozen

        return self._page_index(state, "events", args, accept, version, url)

    def _catalog_list(self, state, objects, resource, args, accept, version, url, id_of):
        return self._page_objects(state, resource, None, objects, args, accept, version, url, id_of)

    def _list_products(self, state, p, args, version, url):
        active = p.get("active")
        p.check_unknown()
        accept = None if active is None else (lambda prod: active == "true")
        return self._catalog_list(
            state,
            state.gen.catalog.products,
            "products",
            args,
            accept,
            version,
            url,
            lambda prod: prod.id,
        )

    def _list_prices(self, state, p, args, version, url):
        product = p.get("product")
        currency = p.get("currency")
        active = p.get("active")
        type_ = p.get("type")
        lookup_keys = p.array("lookup_keys")
        p.hash("recurring")
        p.check_unknown()

        def accept(price) -> bool:
            if product is not None and price.product.id != product:
                return False
            if currency is not None and price.currency != currency:
                return False
            if active is not None and (active == "true") != price.active:
                return False
            if type_ is not None and type_ != "recurring":
                return False
            return not (lookup_keys and f"{price.key}_{price.currency}" not in lookup_keys)

        return self._catalog_list(
            state,
            state.gen.catalog.prices,
            "prices",
            args,
            accept,
            version,
            url,
            lambda price: price.id,
        )

    def _list_coupons(self, state, p, args, version, url):
        p.check_unknown()
        return self._catalog_list(
            state,
            state.gen.catalog.coupons,
            "coupons",
            args,
            lambda c: not self.sandbox.coupon_deleted(c.id, state.now),
            version,
            url,
            lambda c: c.id,
        )

    def _list_tax_rates(self, state, p, args, version, url):
        p.get("active")
        p.get("inclusive")
        p.check_unknown()
        return self._catalog_list(
            state,
            state.gen.catalog.tax_rates,
            "tax_rates",
            args,
            None,
            version,
            url,
            lambda t: t.id,
        )

    # -- invoice lines ------------------------------------------------------------------------

    def _invoice_lines(self, state: State, invoice_id: str, p: Params, version: str) -> Obj:
        raw = p.get("limit")
        limit = 10 if raw is None else _int(raw, "limit")
        if not 1 <= limit <= 100:
            raise ApiError(
                400,
                "Invalid limit: must be between 1 and 100",
                code="parameter_invalid_integer",
                param="limit",
            )
        after, before = p.get("starting_after"), p.get("ending_before")
        if after and before:
            raise ApiError(
                400,
                "You may only specify one of these parameters: ending_before, starting_after.",
                param="ending_before",
            )
        ex = parse_expand(p.array("expand"), "line", is_list=True)
        p.check_unknown()
        cs, inv = self._find(state, "invoices", invoice_id)
        r = state.renderer
        ids = [r.il_id(cs, inv, line) for line in inv.lines]
        # Lines keep their invoice order (not newest first).
        start, end = 0, len(ids)
        if after:
            if after not in ids:
                raise missing("line_item", after, "starting_after")
            start = ids.index(after) + 1
            chosen = list(range(start, min(end, start + limit)))
            has_more = start + limit < end
        elif before:
            if before not in ids:
                raise missing("line_item", before, "ending_before")
            stop = ids.index(before)
            chosen = list(range(max(0, stop - limit), stop))
            has_more = stop - limit > 0
        else:
            chosen = list(range(0, min(end, limit)))
            has_more = limit < end
        iid = r.in_id(cs, inv)
        sid = r.sub_id(cs, inv.sub)
        data = [r.line(cs, inv, inv.lines[i], state.now, ex, iid=iid, sid=sid) for i in chosen]
        return _list_body(f"/v1/invoices/{invoice_id}/lines", data, has_more)

    # -- balance ------------------------------------------------------------------------------

    def _balance(self, state: State) -> Obj:
        available = [
            {"amount": a, "currency": c, "source_types": {"card": a}}
            for c, (a, _) in sorted(state.balance.items())
        ]
        pending = [
            {"amount": pnd, "currency": c, "source_types": {"card": pnd}}
            for c, (_, pnd) in sorted(state.balance.items())
        ]
        return {
            "object": "balance",
            "available": available,
            "connect_reserved": [{"amount": 0, "currency": c} for c in sorted(state.balance)],
            "livemode": False,
            "pending": pending,
        }

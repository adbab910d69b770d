"""Stripe's `/v1` read API over a StripeSandbox: routing, lookup, retrieval, expansion, the
lists' engine over the sandbox's index, invoice lines and the balance."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from typing import Any

from kpi_pipelines.sandbox.kit import newest_first
from kpi_pipelines.sandbox.stripe.api.listing import ListEndpoints
from kpi_pipelines.sandbox.stripe.api.lists import (
    NEED_FULL_SIM,
    NOUNS,
    ListArgs,
    list_body,
    page_sorted,
)
from kpi_pipelines.sandbox.stripe.api.params import Obj, Params, parse_expand, parse_int
from kpi_pipelines.sandbox.stripe.errors import ApiError, missing
from kpi_pipelines.sandbox.stripe.generator import (
    CARD_DECLINED,
    SETTLE,
    BalanceTxn,
    Charge,
    CustomerSim,
)
from kpi_pipelines.sandbox.stripe.ids import CATALOG_OWNER
from kpi_pipelines.sandbox.stripe.render import DEFAULT_API_VERSION, Renderer
from kpi_pipelines.sandbox.stripe.render.account import account
from kpi_pipelines.sandbox.stripe.sandbox import (
    EVENT_CODE,
    Index,
    State,
    StripeSandbox,
)


class Api(ListEndpoints):
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
        if resource == "account" and len(parts) == 2:  # the key's own account
            p.array("expand")
            p.check_unknown()
            return account(self.sandbox.config)
        if resource not in NOUNS:
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
        prefix, noun = NOUNS[resource]
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
            "invoiceitems": cs.invoice_items,
            "subscription_schedules": cs.schedules,
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
        if resource == "invoiceitems":
            return r.invoice_item(cs, obj, now)
        if resource == "subscription_schedules":
            return r.subscription_schedule(cs, obj, now)
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
            return r.coupon(obj, None, ex)
        if resource == "tax_rates":
            return r.tax_rate(obj)
        raise AssertionError(resource)

    # -- retrieve -----------------------------------------------------------------------------

    def _retrieve(self, state: State, resource: str, obj_id: str, p: Params, version: str) -> Obj:
        kind = NOUNS[resource][1]
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
        kind = NOUNS[resource][1]
        args = ListArgs(p, kind)
        url = f"/v1/{resource}"
        handler = getattr(self, f"_list_{resource}")
        return handler(state, p, args, version, url)

    def _page_index(
        self,
        state: State,
        resource: str,
        args: ListArgs,
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
                raise missing(NOUNS[resource][1], cursor, param)
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
            return list_body(url, data, has_more)
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
            until = None if resource in NEED_FULL_SIM else index.created[i] + SETTLE
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
        return list_body(url, data, has_more)

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
        args: ListArgs,
        accept: Callable[[Any], bool] | None,
        version: str,
        url: str,
        id_of: Callable[[Any], str],
    ) -> Obj:
        """A page over an in-memory list of objects sorted by created (oldest first)."""
        chosen, has_more = page_sorted(objects, state.now, args, NOUNS[resource][1], id_of, accept)
        data = [self._render(state, resource, cs, obj, version, args.expand) for obj in chosen]
        return list_body(url, data, has_more)

    # -- invoice lines ------------------------------------------------------------------------

    def _invoice_lines(self, state: State, invoice_id: str, p: Params, version: str) -> Obj:
        raw = p.get("limit")
        limit = 10 if raw is None else parse_int(raw, "limit")
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
        return list_body(f"/v1/invoices/{invoice_id}/lines", data, has_more)

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

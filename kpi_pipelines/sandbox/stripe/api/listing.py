"""The list endpoints of each resource, with the filters Stripe documents for it."""

from __future__ import annotations

import re

from kpi_pipelines.sandbox.stripe.api.lists import (
    INVOICE_STATUSES,
    SUB_STATUSES,
    ListArgs,
    list_body,
    page_sorted,
)
from kpi_pipelines.sandbox.stripe.api.params import Obj, Params
from kpi_pipelines.sandbox.stripe.errors import ApiError, missing
from kpi_pipelines.sandbox.stripe.generator import (
    CustomerSim,
    Invoice,
    Sub,
)
from kpi_pipelines.sandbox.stripe.sandbox import (
    EVENT_CODE,
    EVENT_TYPES,
    Index,
    State,
)


class ListEndpoints:
    """`GET /v1/<resource>` of every listed resource; mixed into `Api`."""

    def _customer_param(self, state: State, p: Params) -> CustomerSim | None:
        value = p.get("customer")
        if value is None:
            return None
        cs, li, _ = self._sim_for(state, "cus", value, "customer", "customer")
        if li != 0 or cs.created > state.now:
            raise missing("customer", value, "customer")
        return cs

    def _sims(self, state: State, cs: CustomerSim | None) -> list[CustomerSim]:
        """The one customer asked for, else every customer (each one simulated: meant for
        scripted sandboxes)."""
        return (
            [cs]
            if cs is not None
            else [self.sandbox.sim(ci, state) for ci in range(state.customers)]
        )

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
        chosen, has_more = page_sorted(matches, now, args, "customer", state.renderer.cus_id)
        data = [state.renderer.customer(cs, now, args.expand) for cs in chosen]
        return list_body(url, data, has_more)

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
            return inv.status_at(now)

        accept_inv = None if status is None else (lambda inv: inv_status(inv) == status)
        if sub_id is not None:
            sub_cs, sub = self._find(state, "subscriptions", sub_id, "subscription")
            if cs is not None and cs is not sub_cs and cs.ci != sub_cs.ci:
                return list_body(url, [], False)
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

    def _list_invoiceitems(self, state, p, args, version, url):
        """Pending invoice items (proration lines of create_prorations changes); `pending`
        true: those no invoice has taken yet. Without `customer`, every customer's (each one
        simulated: meant for scripted sandboxes, whose customers are few)."""
        cs = self._customer_param(state, p)
        pending = p.get("pending")
        p.check_unknown()
        if pending not in (None, "true", "false"):
            raise ApiError(400, "Invalid boolean: pending", param="pending")
        now = state.now
        r = state.renderer
        sims = self._sims(state, cs)
        owner = {}
        items = []
        for sim in sims:
            for line in sim.invoice_items:
                owner[id(line)] = sim
                items.append(line)
        items.sort(key=lambda line: (line.created, owner[id(line)].ci, line.ii))

        def taken(line) -> bool:
            return r.invoice_item(owner[id(line)], line, now)["invoice"] is not None

        accept = None
        if pending is not None:
            want = pending == "false"

            def accept(line) -> bool:
                return taken(line) == want

        chosen, has_more = page_sorted(
            items, now, args, "invoiceitem", lambda li: r.ii_id(owner[id(li)], li), accept
        )
        data = [r.invoice_item(owner[id(line)], line, now) for line in chosen]
        return list_body(url, data, has_more)

    def _list_subscription_schedules(self, state, p, args, version, url):
        """Subscription schedules (scripted phases), newest first; `customer` filters.
        Without it, every customer's (each one simulated: meant for scripted sandboxes)."""
        cs = self._customer_param(state, p)
        p.check_unknown()
        now = state.now
        r = state.renderer
        sims = self._sims(state, cs)
        owned = sorted(
            ((sched, sim) for sim in sims for sched in sim.schedules),
            key=lambda pair: (pair[0].created, pair[1].ci, pair[0].li),
        )
        owner = {id(sched): sim for sched, sim in owned}
        chosen, has_more = page_sorted(
            [sched for sched, _ in owned],
            now,
            args,
            "subscription_schedule",
            lambda sc: r.sched_id(owner[id(sc)], sc),
        )
        data = [r.subscription_schedule(owner[id(sc)], sc, now) for sc in chosen]
        return list_body(url, data, has_more)

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
        args = ListArgs(p, "refund")
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

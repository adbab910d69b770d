"""A subscription's life: trials, item changes, coupons, pauses, cancellations and endings."""

from __future__ import annotations

from collections.abc import Callable
from random import Random

from kpi_pipelines.sandbox.stripe.catalog import (
    DAY,
    Coupon,
)
from kpi_pipelines.sandbox.stripe.generator.calendar import add_months, period_bound
from kpi_pipelines.sandbox.stripe.generator.config import HOUR
from kpi_pipelines.sandbox.stripe.generator.objects import (
    CustomerSim,
    Discount,
    Item,
    Line,
    Sub,
    interval_tag,
    last_line,
    new_item,
)
from kpi_pipelines.sandbox.stripe.generator.personas import PLANS


class SubscriptionLife:
    """Subscription decisions of the customer simulation; mixed into `Generator`."""

    # -- subscriptions -------------------------------------------------------------------------

    def _subscription(self, cs: CustomerSim, rs: Random, t0: int, n: int) -> int | None:
        """Simulate one subscription from t0; return when it ended (None: alive at horizon)."""
        cat, cur = self.catalog, cs.currency
        u_plan = rs.random()
        plan = next(key for key, acc in PLANS if u_plan < acc)
        price = cat.price(plan, cur, t0)
        u_qty, u_addon, u_metered = rs.random(), rs.random(), rs.random()
        u_trial, u_trial_len, u_converts = rs.random(), rs.random(), rs.random()
        u_coupon, u_coupon_kind = rs.random(), rs.random()
        if price.billing_scheme == "tiered":
            qty = 1 + int(u_qty * 60)
        elif plan.startswith(("pro", "business")):
            qty = 1 + int(u_qty * u_qty * 12)
        else:
            qty = 1 + int(u_qty > 0.85)

        sub = Sub(len(cs.subs), t0)
        cs.subs.append(sub)
        new_item(cs, sub, t0, price, qty)
        per_unit_std = price.family is not None
        if per_unit_std and u_addon < 0.2:
            addon_price = cat.price(
                "storage_m" if price.interval == "month" else "storage_y", cur, t0
            )
            new_item(cs, sub, t0, addon_price, 1 + int(u_addon * 10))
            cs.tags.add("addon_item")
        if price.interval == "month" and price.interval_count == 1 and u_metered < 0.15:
            new_item(cs, sub, t0, cat.price("api_m", cur, t0), None)
            cs.tags.add("metered")
        has_metered = any(not item.states[0][1].licensed for item in sub.items)
        cs.tags.add(interval_tag(price))
        if price.billing_scheme == "tiered":
            cs.tags.add(f"tiered_{price.tiers_mode}")
        if qty > 1:
            cs.tags.add("quantity_above_one")

        if u_coupon < 0.3:
            if u_coupon_kind < 0.2:
                coupon = cat.coupon("FOREVER20", cur)
            elif u_coupon_kind < 0.3:
                spring = cat.coupon("SPRING15", cur)
                coupon = spring if spring.created <= t0 else cat.coupon("LOYALTY125", cur)
            elif u_coupon_kind < 0.5:
                coupon = cat.coupon("TENOFF", cur)
            elif u_coupon_kind < 0.75:
                coupon = cat.coupon("WELCOME50", cur)
            else:
                coupon = cat.coupon("QUARTER25", cur)
            self._add_discount(cs, sub, coupon, t0)
            kind = "amount" if coupon.amount_off else "percent"
            cs.tags.add(
                f"coupon_forever_{kind}"
                if coupon.duration == "forever"
                else f"coupon_{coupon.duration}"
            )
        cs.emit(t0, "customer.subscription.created", sub)

        interval, count = price.interval, price.interval_count
        if u_trial < 0.25 and interval != "week":
            te = t0 + (14 if u_trial_len < 0.7 else 30) * DAY
            sub.trial_start, sub.trial_end = t0, te
            sub.set_status(t0, "trialing")
            sub.periods.append((t0, te))
            sub.anchors.append((t0, te))
            cs.tags.add("trial")
            lines = [
                Line(item, p, q, 0, t0, te, False)
                for item in sub.items
                for p, q in (item.state_at(t0),)
            ]
            for line in lines:
                if not line.price.licensed:
                    line.quantity = 0
            inv = self._invoice(cs, sub, t0 + 1, "subscription_create", lines, t0, t0)
            self._settle_immediately(cs, rs, inv, refundable=False)
            cs.emit(te - 3 * DAY, "customer.subscription.trial_will_end", sub)
            if te > cs.horizon:
                return None
            if u_converts >= 0.85:
                cs.tags.add("trial_canceled")
                self._end(cs, sub, te, te, "cancellation_requested")
                return te
            cs.tags.add("trial_converted")
            sub.set_status(te, "active")
            anchor, reason, k = te, "subscription_cycle", 0
        else:
            sub.set_status(t0, "active")
            sub.anchors.append((t0, t0))
            anchor, reason, k = t0, "subscription_create", 0

        skip_invoice = False
        prev_usage: tuple[int, int, int] | None = None  # metered usage of the last period
        pe = anchor
        while True:
            ps = anchor if k == 0 else pe
            pe = period_bound(anchor, interval, count, k + 1)
            if ps > cs.horizon:
                return None
            length = pe - ps
            # Every draw of the period, always in this order (causality; see module doc).
            u_fail = rs.random()
            u_retry = (rs.random(), rs.random(), rs.random())
            u_unpaid, u_unpaid_t = rs.random(), rs.random()
            u_change, u_change_kind, u_change_t, u_change_amt = (
                rs.random(),
                rs.random(),
                rs.random(),
                rs.random(),
            )
            u_coupon_add, u_coupon_t = rs.random(), rs.random()
            u_cancel, u_cancel_kind, u_cancel_t = rs.random(), rs.random(), rs.random()
            usage = rs.randrange(0, 4000)

            if skip_invoice:
                skip_invoice = False
                inv = sub.invoices[-1]
                resolved = inv.paid_at or ps
            else:
                created = t0 + 1 if reason == "subscription_create" else ps
                lines = open_period(cs, sub, k, ps, pe, lambda _item, last=prev_usage: last)
                inv_ps, inv_pe = (
                    (prev_usage[1], prev_usage[2]) if prev_usage else (created, created)
                )
                inv = self._invoice(cs, sub, created, reason, lines, inv_ps, inv_pe)
                if reason == "subscription_create" or inv.amount_due == 0:
                    resolved = self._settle_immediately(cs, rs, inv)
                else:
                    outcome, resolved = self._collect(
                        cs, rs, sub, inv, ps, length, u_fail, u_retry, u_unpaid, u_unpaid_t
                    )
                    if outcome == "canceled":
                        return resolved
            if has_metered:
                prev_usage = (usage, ps, pe)

            # Mid-period actions, in time order.
            w0, w1 = max(ps + DAY, resolved + HOUR), pe - DAY
            actions: list[tuple[int, str]] = []
            if w1 - w0 >= DAY:
                scale = length / (30 * DAY)
                span = w1 - w0
                if u_change < min(0.3, 0.09 * scale):
                    actions.append((w0 + int(u_change_t * span), "change"))
                if u_coupon_add < 0.02 and not any(
                    d.coupon.duration == "forever" for d in sub.discounts
                ):
                    actions.append((w0 + int(u_coupon_t * span) + 1, "coupon"))
                if u_cancel < min(0.35, 0.04 * scale):
                    actions.append((w0 + int(u_cancel_t * span) + 2, "cancel"))
            actions.sort()
            new_anchor = None
            for t, action in actions:
                if action == "change":
                    new_anchor = self._change(cs, sub, t, ps, pe, u_change_kind, u_change_amt)
                    if new_anchor is not None:
                        break
                elif action == "coupon":
                    forever = [c for c in ("FOREVER20", "LOYALTY125", "SPRING15")]
                    cid = forever[int(u_coupon_t * 1000) % 3]
                    coupon = cat.coupon(cid, cur)
                    if coupon.created > t:
                        coupon = cat.coupon("FOREVER20", cur)
                    self._add_discount(cs, sub, coupon, t)
                    cs.emit(t, "customer.subscription.updated", sub)
                    cs.tags.add("coupon_added_later")
                else:
                    if u_cancel_kind < 0.6:
                        sub.cancel_decided_at = t
                        sub.cancel_at = pe
                        cs.emit(t, "customer.subscription.updated", sub)
                        self._end(cs, sub, pe, t, "cancellation_requested", decided=False)
                        if pe <= cs.horizon:
                            cs.tags.add("cancel_at_period_end")
                        return pe
                    cs.tags.add("cancel_immediately")
                    self._end(cs, sub, t, t, "cancellation_requested")
                    return t
            if new_anchor is not None:
                anchor, k = new_anchor, 0
                main_price = sub.items[0].state_at(new_anchor)[0]
                interval, count = main_price.interval, main_price.interval_count
                skip_invoice = True
                reason = "subscription_cycle"
                prev_usage = None
                continue
            k += 1
            reason = "subscription_cycle"

    def _add_discount(
        self, cs: CustomerSim, sub: Sub, coupon: Coupon, t: int, item: Item | None = None
    ) -> Discount:
        end = add_months(t, coupon.duration_in_months) if coupon.duration == "repeating" else None
        disc = Discount(sub.li, len(cs.discounts), coupon, t, end, item)
        sub.discounts.append(disc)
        cs.discounts.append(disc)
        return disc

    def _end(
        self,
        cs: CustomerSim,
        sub: Sub,
        ended: int,
        canceled: int,
        reason: str,
        *,
        decided: bool = True,
    ) -> None:
        sub.ended_at = ended
        if decided:
            sub.cancel_decided_at = canceled
        sub.cancel_reason = reason
        sub.set_status(ended, "canceled")
        cs.emit(ended, "customer.subscription.deleted", sub)
        if cs.log_at(cs.delinquent_log, ended):
            cs.delinquent_log.append((ended + 1, False))
            cs.emit(ended + 1, "customer.updated", None)

    def _change(
        self,
        cs: CustomerSim,
        sub: Sub,
        t: int,
        ps: int,
        pe: int,
        u_kind: float,
        u_amt: float,
    ) -> int | None:
        """A mid-period change at t with a prorating invoice; returns a new anchor if reset."""
        cat, cur = self.catalog, cs.currency
        alive = [i for i in sub.items if i.alive_at(t)]
        licensed = [i for i in alive if i.state_at(t)[0].licensed]
        main = licensed[0]
        price, qty = main.state_at(t)
        addons = [i for i in licensed[1:]]
        kinds: list[str] = []
        if price.family is not None:
            ladder = cat.ladder(price.family, cur, t)
            if price.rank < 2:
                kinds.append("upgrade")
            if price.rank > 0:
                kinds.append("downgrade")
            kinds.append("quantity")
            if price.interval_count == 1:
                kinds.append("item_removed" if addons else "item_added")
            if price.family == "month" and len(alive) == 1:
                kinds.append("interval_change")
        else:
            ladder = []
            kinds.append("quantity")
        kind = kinds[int(u_kind * len(kinds))]
        frac = (pe - t) / (pe - ps)
        lines: list[Line] = []
        new_anchor = None

        def credit(item: Item) -> None:
            p, q = item.state_at(t)
            amount = -max(1, round(p.amount(q or 0) * frac))
            lines.append(Line(item, p, q, amount, t, pe, True, credited=last_line(sub, item, t)))

        if kind in ("upgrade", "downgrade", "quantity"):
            if kind == "quantity":
                new_price = price
                step = 1 + int(u_amt * 1000) % (10 if price.billing_scheme == "tiered" else 3)
                new_qty = (qty or 1) + step if u_amt >= 0.4 else max(1, (qty or 1) - step)
                if new_qty == qty:
                    new_qty = (qty or 1) + 1
                cs.tags.add("quantity_change")
            else:
                new_price = ladder[price.rank + (1 if kind == "upgrade" else -1)]
                new_qty = qty
                cs.tags.add(kind)
            credit(main)
            main.states.append((t, new_price, new_qty))
            lines.append(
                Line(
                    main,
                    new_price,
                    new_qty,
                    round(new_price.amount(new_qty or 0) * frac),
                    t,
                    pe,
                    True,
                )
            )
            if new_qty and new_qty > 1:
                cs.tags.add("quantity_above_one")
        elif kind == "item_added":
            addon_price = cat.price(
                "storage_m" if price.interval == "month" else "storage_y", cur, t
            )
            item = new_item(cs, sub, t, addon_price, 1 + int(u_amt * 4))
            lines.append(
                Line(
                    item,
                    addon_price,
                    item.states[0][2],
                    round(addon_price.amount(item.states[0][2] or 0) * frac),
                    t,
                    pe,
                    True,
                )
            )
            cs.tags.add("item_added")
        elif kind == "item_removed":
            item = addons[-1]
            credit(item)
            item.removed_at = t
            cs.tags.add("item_removed")
        else:  # interval_change: monthly -> yearly, the billing cycle restarts at t
            yearly = cat.price(price.plan.replace("_m", "_y"), cur, t)
            credit(main)
            main.states.append((t, yearly, qty))
            new_end = period_bound(t, "year", 1, 1)
            lines.append(Line(main, yearly, qty, yearly.amount(qty or 0), t, new_end, False))
            sub.periods.append((t, new_end))
            sub.anchors.append((t, t))
            new_anchor = t
            cs.tags.add("interval_change")
        cs.emit(t, "customer.subscription.updated", sub)
        inv = self._invoice(cs, sub, t, "subscription_update", lines, t, t)
        self._settle_immediately(cs, None, inv)
        return new_anchor


def open_period(
    cs: CustomerSim,
    sub: Sub,
    k: int,
    ps: int,
    pe: int,
    metered: Callable[[Item], tuple[int, int, int] | None],
) -> list[Line]:
    """Start billing period k [ps, pe) of `sub`: record it, announce it (not the first period
    of a subscription without trial), and return the lines its invoice bills: licensed items
    in advance, metered ones for the usage `metered` reports of the period before (or 0)."""
    sub.periods.append((ps, pe))
    if k > 0 or sub.trial_end is not None:
        cs.emit(ps, "customer.subscription.updated", sub)
    lines = []
    for item in sub.items:
        if not item.alive_at(ps):
            continue
        p, q = item.state_at(ps)
        if p.licensed:
            lines.append(Line(item, p, q, p.amount(q or 0), ps, pe, False))
        elif (usage := metered(item)) is not None:
            used, us, ue = usage
            lines.append(Line(item, p, used, p.amount(used), us, ue, False))
        else:
            lines.append(Line(item, p, 0, 0, ps, pe, False))
    return lines

"""The renderer: ids, events (the object as of the event, `previous_attributes`), and the
object families mixed in from the modules beside it."""

from __future__ import annotations

from kpi_pipelines.sandbox.stripe.catalog import Coupon, Price, Product
from kpi_pipelines.sandbox.stripe.generator import (
    BalanceTxn,
    Charge,
    CustomerSim,
    Discount,
    Generator,
    Invoice,
    Item,
    Line,
    Refund,
    Sub,
)
from kpi_pipelines.sandbox.stripe.generator.schedules import Schedule
from kpi_pipelines.sandbox.stripe.ids import CATALOG_OWNER
from kpi_pipelines.sandbox.stripe.render.billing import BillingRendering
from kpi_pipelines.sandbox.stripe.render.catalog import CatalogRendering
from kpi_pipelines.sandbox.stripe.render.common import DEFAULT_API_VERSION, Obj
from kpi_pipelines.sandbox.stripe.render.money import MoneyRendering
from kpi_pipelines.sandbox.stripe.render.schedules import ScheduleRendering


class Renderer(CatalogRendering, BillingRendering, MoneyRendering, ScheduleRendering):
    """Builds Stripe JSON from a Generator's objects. Catalog objects are cached."""

    def __init__(self, gen: Generator) -> None:
        self.gen = gen
        self.codec = gen.codec
        self.catalog = gen.catalog
        self._price_cache: dict[tuple, Obj] = {}
        self._plan_cache: dict[str, Obj] = {}
        self._product_cache: dict[str, Obj] = {}
        self.coupon_redemptions: dict[str, int] = {}
        enc = self.codec.encode
        self._enc = enc

    # -- ids ----------------------------------------------------------------------------------

    def cus_id(self, cs: CustomerSim) -> str:
        return self._enc("cus", cs.ci, 0)

    def sub_id(self, cs: CustomerSim, sub: Sub | int) -> str:
        return self._enc("sub", cs.ci, sub if isinstance(sub, int) else sub.li)

    def si_id(self, cs: CustomerSim, item: Item) -> str:
        return self._enc("si", cs.ci, item.li)

    def in_id(self, cs: CustomerSim, inv: Invoice) -> str:
        return self._enc("in", cs.ci, inv.li)

    def il_id(self, cs: CustomerSim, inv: Invoice, line: Line) -> str:
        return self._enc("il", cs.ci, inv.li, line.idx)

    def ch_id(self, cs: CustomerSim, ch: Charge) -> str:
        return self._enc("ch", cs.ci, ch.li)

    def re_id(self, cs: CustomerSim, rf: Refund) -> str:
        return self._enc("re", cs.ci, rf.li)

    def txn_id(self, cs: CustomerSim, bt: BalanceTxn) -> str:
        return self._enc("txn", cs.ci, bt.li)

    def ii_id(self, cs: CustomerSim, line: Line) -> str:
        return self._enc("ii", cs.ci, line.ii)

    def di_id(self, cs: CustomerSim, disc: Discount) -> str:
        return self._enc("di", cs.ci, disc.li)

    def evt_id(self, cs: CustomerSim | None, li: int) -> str:
        return self._enc("evt", CATALOG_OWNER if cs is None else cs.ci, li)

    def pi_id(self, cs: CustomerSim, ch: Charge) -> str:
        return self._enc("pi", cs.ci, ch.li)

    def pm_id(self, cs: CustomerSim) -> str:
        return self._enc("pm", cs.ci, 0)

    # -- events -------------------------------------------------------------------------------

    def object_at(self, cs: CustomerSim | None, obj: object, t: int, version: str) -> Obj:
        if isinstance(obj, Sub):
            return self.subscription(cs, obj, t, version)
        if isinstance(obj, Invoice):
            return self.invoice(cs, obj, t, version)
        if isinstance(obj, Charge):
            return self.charge(cs, obj, t)
        if isinstance(obj, Line):
            return self.invoice_item(cs, obj, t)
        if isinstance(obj, Refund):
            return self.refund(cs, obj, t)
        if isinstance(obj, Schedule):
            return self.subscription_schedule(cs, obj, t)
        if obj is None:  # customer events carry no object: the customer is `cs`
            return self.customer(cs, t)
        if isinstance(obj, Price):
            return self.price(obj)
        if isinstance(obj, Coupon):
            return self.coupon(obj, at=t)
        if isinstance(obj, Product):
            return self.product(obj)
        raise TypeError(type(obj))

    def event(self, cs: CustomerSim | None, li: int, t: int, type_: str, obj: object) -> Obj:
        version = DEFAULT_API_VERSION
        current = self.object_at(cs, obj, t, version)
        data: Obj = {"object": current}
        if type_.endswith(".updated"):
            before = self.object_at(cs, obj, t - 1, version)
            data["previous_attributes"] = _diff(before, current)
        api_request = type_ in ("customer.created", "customer.subscription.created") or (
            type_ == "customer.subscription.updated"
            and isinstance(obj, Sub)
            and obj.cancel_decided_at == t
        )
        return {
            "id": self.evt_id(cs, li),
            "object": "event",
            "api_version": version,
            "created": t,
            "data": data,
            "livemode": False,
            "pending_webhooks": 0,
            "request": {
                "id": f"req_{self.evt_id(cs, li)[-14:]}" if api_request else None,
                "idempotency_key": None,
            },
            "type": type_,
        }


def _diff(before: Obj, after: Obj) -> Obj:
    """Stripe's previous_attributes: the old values of what changed (nested dicts partially)."""
    out: Obj = {}
    for key, old in before.items():
        new = after.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict) and old.get("object") != "list":
            out[key] = _diff(old, new)
        else:
            out[key] = old
    return out

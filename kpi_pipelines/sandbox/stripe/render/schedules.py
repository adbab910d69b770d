"""Subscription schedules as Stripe JSON, as of an instant."""

from __future__ import annotations

from kpi_pipelines.sandbox.stripe.generator import CustomerSim
from kpi_pipelines.sandbox.stripe.generator.schedules import Schedule, SchedulePhase
from kpi_pipelines.sandbox.stripe.render.common import Obj


class ScheduleRendering:
    """Subscription schedule objects; mixed into `Renderer`."""

    def sched_id(self, cs: CustomerSim, sched: Schedule) -> str:
        return self._enc("sub_sched", cs.ci, sched.li)

    def subscription_schedule(self, cs: CustomerSim, sched: Schedule, t: int) -> Obj:
        status = sched.status_at(t)
        current = sched.phase_at(t)
        sub_id = self.sub_id(cs, sched.sub)
        released = status == "released"
        return {
            "id": self.sched_id(cs, sched),
            "object": "subscription_schedule",
            "application": None,
            "billing_mode": {"flexible": None, "type": "classic"},
            "canceled_at": sched.canceled_at if status == "canceled" else None,
            "completed_at": None,
            "created": sched.created,
            "current_phase": None
            if current is None
            else {"end_date": current.end, "start_date": current.start},
            "customer": self.cus_id(cs),
            "customer_account": None,
            "default_settings": {
                "application_fee_percent": None,
                "automatic_tax": {
                    "disabled_reason": None,
                    "enabled": cs.tax is not None,
                    "liability": {"type": "self"} if cs.tax is not None else None,
                },
                "billing_cycle_anchor": "automatic",
                "billing_thresholds": None,
                "collection_method": "charge_automatically",
                "default_payment_method": None,
                "description": None,
                "invoice_settings": {
                    "account_tax_ids": None,
                    "days_until_due": None,
                    "issuer": {"type": "self"},
                },
                "on_behalf_of": None,
                "transfer_data": None,
            },
            "end_behavior": "release",
            "livemode": False,
            "metadata": {},
            "phases": [self._schedule_phase(cs, phase) for phase in sched.phases],
            "released_at": sched.released_at if released else None,
            "released_subscription": sub_id if released else None,
            "status": status,
            "subscription": None if released else sub_id,
            "test_clock": None,
        }

    def _schedule_phase(self, cs: CustomerSim, phase: SchedulePhase) -> Obj:
        return {
            "add_invoice_items": [],
            "application_fee_percent": None,
            "billing_cycle_anchor": None,
            "billing_thresholds": None,
            "collection_method": None,
            "currency": cs.currency,
            "default_payment_method": None,
            "default_tax_rates": [],
            "description": None,
            "discounts": [],
            "end_date": phase.end,
            "invoice_settings": None,
            "items": [
                {
                    "billing_thresholds": None,
                    "discounts": [],
                    "metadata": {},
                    "plan": price.id,
                    "price": price.id,
                    "quantity": qty,
                    "tax_rates": [],
                }
                for price, qty in phase.items
            ],
            "metadata": {},
            "on_behalf_of": None,
            "proration_behavior": phase.proration_behavior,
            "start_date": phase.start,
            "transfer_data": None,
            "trial_end": None,
        }

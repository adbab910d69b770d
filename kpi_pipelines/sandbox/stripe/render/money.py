"""Charges, refunds and balance transactions as Stripe JSON, as of an instant."""

from __future__ import annotations

from typing import Any

from kpi_pipelines.sandbox.stripe.generator import (
    BalanceTxn,
    Charge,
    CustomerSim,
    Refund,
)
from kpi_pipelines.sandbox.stripe.render.common import REFUND_DESCRIPTION, Obj, address


class MoneyRendering:
    """Money movement objects; mixed into `Renderer`."""

    # -- money movement -----------------------------------------------------------------------

    def charge(self, cs: CustomerSim, ch: Charge, t: int, ex: dict | None = None) -> Obj:
        cid = self.ch_id(cs, ch)
        succeeded = ch.status == "succeeded"
        refunds = [rf for rf in ch.refunds if rf.created <= t]
        refunded = sum(rf.amount for rf in refunds)
        brand, last4, exp_month, exp_year, funding = cs.card
        bt_value: Any = None
        if ch.bt is not None:
            bt_value = self.txn_id(cs, ch.bt)
            if ex and "balance_transaction" in ex:
                bt_value = self.balance_transaction(cs, ch.bt, t, ex["balance_transaction"])
        customer: Any = self.cus_id(cs)
        if ex and "customer" in ex:
            customer = self.customer(cs, t, ex["customer"])
        email = cs.email
        return {
            "id": cid,
            "object": "charge",
            "amount": ch.amount,
            "amount_captured": ch.amount if succeeded else 0,
            "amount_refunded": refunded,
            "application": None,
            "application_fee": None,
            "application_fee_amount": None,
            "balance_transaction": bt_value,
            "billing_details": {
                "address": address(cs.country, cs.ci),
                "email": email,
                "name": cs.name,
                "phone": None,
                "tax_id": None,
            },
            "calculated_statement_descriptor": "KPI SANDBOX",
            "captured": succeeded,
            "created": ch.created,
            "currency": cs.currency,
            "customer": customer,
            "description": ch.description,
            "disputed": False,
            "failure_balance_transaction": None,
            "failure_code": ch.failure[0] if ch.failure else None,
            "failure_message": ch.failure[1] if ch.failure else None,
            "fraud_details": {},
            "livemode": False,
            "metadata": {},
            "on_behalf_of": None,
            "outcome": {
                "advice_code": None if succeeded else "try_again_later",
                "network_advice_code": None,
                "network_decline_code": None,
                "network_status": "approved_by_network" if succeeded else "declined_by_network",
                "reason": None if succeeded else "generic_decline",
                "seller_message": "Payment complete."
                if succeeded
                else "The bank did not return any further details with this decline.",
                "type": "authorized" if succeeded else "issuer_declined",
            },
            "paid": succeeded,
            "payment_intent": self.pi_id(cs, ch),
            "payment_method": self.pm_id(cs),
            "payment_method_details": {
                "card": {
                    "amount_authorized": ch.amount if succeeded else None,
                    "authorization_code": f"{(ch.li * 7919 + cs.ci) % 1000000:06d}"
                    if succeeded
                    else None,
                    "brand": brand,
                    "checks": {
                        "address_line1_check": "pass",
                        "address_postal_code_check": "pass",
                        "cvc_check": "pass",
                    },
                    "country": cs.country,
                    "exp_month": exp_month,
                    "exp_year": exp_year,
                    "extended_authorization": {"status": "disabled"},
                    "fingerprint": f"fp{cs.ci:014d}"[-16:],
                    "funding": funding,
                    "incremental_authorization": {"status": "unavailable"},
                    "installments": None,
                    "last4": last4,
                    "mandate": None,
                    "multicapture": {"status": "unavailable"},
                    "network": brand,
                    "network_token": {"used": False},
                    "network_transaction_id": f"{cs.ci:08d}{ch.li:07d}",
                    "overcapture": {
                        "maximum_amount_capturable": ch.amount,
                        "status": "unavailable",
                    },
                    "regulated_status": "unregulated",
                    "three_d_secure": None,
                    "transaction_link_id": None,
                    "wallet": None,
                },
                "type": "card",
            },
            "receipt_email": email if succeeded else None,
            "receipt_number": None,
            "receipt_url": f"https://pay.stripe.com/receipts/payment/{cid}" if succeeded else None,
            "refunded": succeeded and refunded >= ch.amount,
            "refunds": {
                "object": "list",
                "data": [self.refund(cs, rf, t) for rf in refunds],
                "has_more": False,
                "url": f"/v1/charges/{cid}/refunds",
            },
            "review": None,
            "shipping": None,
            "source": None,
            "source_transfer": None,
            "statement_descriptor": None,
            "statement_descriptor_suffix": None,
            "status": ch.status,
            "transfer_data": None,
            "transfer_group": None,
        }

    def refund(self, cs: CustomerSim, rf: Refund, t: int, ex: dict | None = None) -> Obj:
        refunded = cs.charges[rf.charge]
        charge: Any = self.ch_id(cs, refunded)
        if ex and "charge" in ex:
            charge = self.charge(cs, refunded, t, ex["charge"])
        bt_value: Any = self.txn_id(cs, rf.bt) if rf.bt is not None else None
        if ex and "balance_transaction" in ex and rf.bt is not None:
            bt_value = self.balance_transaction(cs, rf.bt, t, ex["balance_transaction"])
        return {
            "id": self.re_id(cs, rf),
            "object": "refund",
            "amount": rf.amount,
            "balance_transaction": bt_value,
            "charge": charge,
            "created": rf.created,
            "currency": cs.currency,
            "customer": self.cus_id(cs),
            "customer_account": None,
            "destination_details": {
                "card": {
                    "reference": f"{cs.ci:06d}{rf.li:06d}",
                    "reference_status": "available",
                    "reference_type": "acquirer_reference_number",
                    "type": "refund",
                },
                "type": "card",
            },
            "metadata": {},
            "payment_intent": self.pi_id(cs, refunded),
            "payment_method": self.pm_id(cs),
            "reason": rf.reason,
            "receipt_number": None,
            "source_transfer_reversal": None,
            "status": "succeeded",
            "transfer_reversal": None,
        }

    def balance_transaction(
        self, cs: CustomerSim, bt: BalanceTxn, t: int, ex: dict | None = None
    ) -> Obj:
        src = cs.charges[bt.source] if bt.type == "charge" else cs.refunds[bt.source]
        source: Any
        if isinstance(src, Charge):
            source = self.ch_id(cs, src)
            if ex and "source" in ex:
                source = self.charge(cs, src, t, ex["source"])
        else:
            source = self.re_id(cs, src)
            if ex and "source" in ex:
                source = self.refund(cs, src, t, ex["source"])
        description = src.description if isinstance(src, Charge) else REFUND_DESCRIPTION
        return self.bt_dict(
            cs.ci,
            bt.li,
            bt.created,
            bt.amount,
            bt.fee,
            bt.type,
            source,
            description,
            cs.currency,
            t,
        )

    def bt_dict(
        self,
        ci: int,
        li: int,
        created: int,
        amount: int,
        fee: int,
        type_: str,
        source: Any,
        description: str,
        currency: str,
        t: int,
    ) -> Obj:
        """A balance transaction from its few facts (the index holds them, see sandbox.py)."""
        fee_details = (
            [
                {
                    "amount": fee,
                    "application": None,
                    "currency": currency,
                    "description": "Stripe processing fees",
                    "type": "stripe_fee",
                }
            ]
            if fee
            else []
        )
        available_on = (created // 86_400 + 2) * 86_400
        return {
            "id": self._enc("txn", ci, li),
            "object": "balance_transaction",
            "amount": amount,
            "available_on": available_on,
            "balance_type": "payments",
            "created": created,
            "currency": currency,
            "description": description,
            "exchange_rate": None,
            "fee": fee,
            "fee_details": fee_details,
            "net": amount - fee,
            "reporting_category": type_,
            "source": source,
            "status": "available" if available_on <= t else "pending",
            "type": type_,
        }

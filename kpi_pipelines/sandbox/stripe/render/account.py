"""The simulated account itself, as `GET /v1/account` answers it to the account's own key: a
standard account (no platform controls it) of a US company, onboarded, nothing due."""

from __future__ import annotations

from kpi_pipelines.sandbox.stripe.generator import StripeSandboxConfig
from kpi_pipelines.sandbox.stripe.render.common import ACCOUNT_NAME, Obj

# software: what a subscription business sells (Stripe's merchant category codes)
MCC_SOFTWARE = "5734"


def _requirements() -> Obj:
    """An onboarded account's `requirements` (and `future_requirements`): nothing due."""
    return {
        "alternatives": [],
        "current_deadline": None,
        "currently_due": [],
        "disabled_reason": None,
        "errors": [],
        "eventually_due": [],
        "past_due": [],
        "pending_verification": [],
    }


def account(config: StripeSandboxConfig) -> Obj:
    """The Account object of the sandbox's account, field by field as Stripe documents it."""
    account_id = config.account_id
    return {
        "id": account_id,
        "object": "account",
        "business_profile": {
            "annual_revenue": None,
            "estimated_worker_count": None,
            "mcc": MCC_SOFTWARE,
            "minority_owned_business_designation": None,
            "name": ACCOUNT_NAME,
            "product_description": None,
            "support_address": None,
            "support_email": None,
            "support_phone": None,
            "support_url": None,
            "url": None,
        },
        "business_type": "company",
        "capabilities": {"card_payments": "active", "transfers": "active"},
        "charges_enabled": True,
        "controller": {"type": "account"},
        "country": "US",
        "created": int(config.start.timestamp()),
        "default_currency": config.currencies[0],
        "details_submitted": True,
        "email": "billing@kpi-sandbox.example",
        "external_accounts": {
            "object": "list",
            "data": [],
            "has_more": False,
            "url": f"/v1/accounts/{account_id}/external_accounts",
        },
        "future_requirements": _requirements(),
        "metadata": {},
        "payouts_enabled": True,
        "requirements": _requirements(),
        "settings": {
            "bacs_debit_payments": {"display_name": None, "service_user_number": None},
            "branding": {
                "icon": None,
                "logo": None,
                "primary_color": None,
                "secondary_color": None,
            },
            "card_issuing": {"tos_acceptance": {"date": None, "ip": None}},
            "card_payments": {
                "decline_on": {"avs_failure": False, "cvc_failure": False},
                "statement_descriptor_prefix": None,
                "statement_descriptor_prefix_kana": None,
                "statement_descriptor_prefix_kanji": None,
            },
            "dashboard": {"display_name": ACCOUNT_NAME, "timezone": "Etc/UTC"},
            "invoices": {"default_account_tax_ids": None, "hosted_payment_method_save": "always"},
            "payments": {
                "statement_descriptor": "KPI SANDBOX",
                "statement_descriptor_kana": None,
                "statement_descriptor_kanji": None,
                "statement_descriptor_prefix_kana": None,
                "statement_descriptor_prefix_kanji": None,
            },
            "payouts": {
                "debit_negative_balances": True,
                "schedule": {"delay_days": 2, "interval": "daily"},
                "statement_descriptor": None,
            },
            "sepa_debit_payments": {},
        },
        "tos_acceptance": {"date": None, "ip": None, "user_agent": None},
        "type": "standard",
    }

"""What every part of the renderer shares: the account's versions and names, and small formats."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kpi_pipelines.sandbox.stripe.generator import (
    CustomerSim,
)

DEFAULT_API_VERSION = "2025-09-30.clover"  # the simulated account's default version
BASIL = "2025-03-31"
ACCOUNT_NAME = "KPI Sandbox Inc."
REFUND_DESCRIPTION = "REFUND FOR CHARGE"

Obj = dict[str, Any]


def is_basil(version: str) -> bool:
    """Whether `version` has the 2025-03-31.basil shapes (current periods on items)."""
    return version[:10] >= BASIL


def address(country: str, ci: int) -> Obj:
    city, postal, state = {
        "US": ("New York", "10001", "NY"),
        "DE": ("Berlin", "10115", None),
        "FR": ("Paris", "75001", None),
        "GB": ("London", "EC1A 1BB", None),
        "JP": ("Tokyo", "100-0001", None),
    }.get(country, ("Springfield", "00000", None))
    return {
        "city": city,
        "country": country,
        "line1": f"{100 + ci % 900} Market Street",
        "line2": None,
        "postal_code": postal,
        "state": state,
    }


def customer_facts(cs: CustomerSim, t: int) -> tuple[int, bool, int, bool]:
    """(balance, delinquent, finalized invoices, billed yet) of a simulated customer at t."""
    finalized = sum(1 for inv in cs.invoices if inv.finalized_at <= t)
    billed = bool(
        (cs.invoices and cs.invoices[0].created <= t) or (cs.charges and cs.charges[0].created <= t)
    )
    return cs.log_at(cs.balance_log, t), cs.log_at(cs.delinquent_log, t), finalized, billed


def money_text(amount: int, currency: str) -> str:
    if currency in ("jpy",):
        return f"¥{amount:,}"
    symbol = {"usd": "$", "eur": "€", "gbp": "£"}.get(currency, currency.upper() + " ")
    return f"{symbol}{amount / 100:,.2f}"


def iso_date(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%-d %b %Y")

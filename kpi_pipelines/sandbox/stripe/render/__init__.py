"""Render simulated objects as Stripe JSON, as of an instant and for an API version.

Every rendered object has exactly the keys of Stripe's own example object for its resource
(`stripe-fixtures3.json`), nested objects too where practical. Expandable fields are ids unless
the request expands them (`Expander`); `price.tiers` is includable only by expansion, as at
Stripe. Versions 2025-03-31.basil and later carry `current_period_start/end` on subscription
items, older versions on the subscription.

Layout: shared constants and formats (common.py), the renderer with ids and events (core.py),
its object families: catalog.py, billing.py, money.py, and the account itself (account.py).
"""

from kpi_pipelines.sandbox.stripe.render.common import (
    ACCOUNT_NAME,
    BASIL,
    DEFAULT_API_VERSION,
    REFUND_DESCRIPTION,
    customer_facts,
    is_basil,
)
from kpi_pipelines.sandbox.stripe.render.core import Renderer

__all__ = [
    "ACCOUNT_NAME",
    "BASIL",
    "DEFAULT_API_VERSION",
    "REFUND_DESCRIPTION",
    "Renderer",
    "customer_facts",
    "is_basil",
]

"""The simulated business: one independent, seeded simulation per customer.

Customer `i` arrives at `start + (i + u) * acquisition_days / customers` (u in [0, 1) from its
own generator), so customers are created in index order, `customers` of them over the first
`acquisition_days`, and the arrival continues at the same rate afterwards (advancing the clock
past the first year brings new customers). Each customer's life (subscriptions, invoices,
charges, refunds, events) is simulated by `simulate(i)` from `random.Random(f"{seed}:{i}:...")`
streams alone, so any customer can be rebuilt on demand without the others.

The simulation is causal: every random draw happens at the simulated time of the decision it
makes, and whole billing periods are drawn at their start, so simulating up to a later horizon
gives the same objects (same ids, same states) for everything that happened before the earlier
one. The sandbox simulates up to its clock (`now`) and `advance()` simply re-simulates to the new
clock. Objects are stored with their whole timeline (status changes, payment attempts, item
changes, refunds), and are rendered "as of" any instant: an event's `data.object` is the state
at the event, a list shows the state at `now`.

Layout: config.py (what to simulate), objects.py (the simulated objects), core.py (the
generator), subscriptions.py and billing.py (its decisions), calendar.py, personas.py, and
mrr.py (MRR read from the timeline).
"""

from kpi_pipelines.sandbox.stripe.generator.calendar import period_bound
from kpi_pipelines.sandbox.stripe.generator.config import (
    CARD_DECLINED,
    DEFAULT_START,
    EVENT_CODE,
    EVENT_TYPES,
    MINUTE,
    SETTLE,
    StripeSandboxConfig,
)
from kpi_pipelines.sandbox.stripe.generator.core import Generator
from kpi_pipelines.sandbox.stripe.generator.mrr import (
    customer_mrr_at,
    customer_mrr_steps,
    item_mrr,
    step_value,
    sub_mrr_at,
)
from kpi_pipelines.sandbox.stripe.generator.objects import (
    BalanceTxn,
    Charge,
    CustomerSim,
    Discount,
    Invoice,
    Item,
    Line,
    Refund,
    Sub,
)
from kpi_pipelines.sandbox.stripe.generator.personas import MIX_CASES

__all__ = [
    "CARD_DECLINED",
    "DEFAULT_START",
    "EVENT_CODE",
    "EVENT_TYPES",
    "MINUTE",
    "MIX_CASES",
    "SETTLE",
    "BalanceTxn",
    "Charge",
    "CustomerSim",
    "Discount",
    "Generator",
    "Invoice",
    "Item",
    "Line",
    "Refund",
    "StripeSandboxConfig",
    "Sub",
    "customer_mrr_at",
    "customer_mrr_steps",
    "item_mrr",
    "period_bound",
    "step_value",
    "sub_mrr_at",
]

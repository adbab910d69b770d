"""A faithful, deterministic, seeded simulator of the Stripe API (demo, tests, benchmarks).

    sandbox = StripeSandbox(seed=7, customers=500)       # or StripeSandbox(StripeSandboxConfig(...))
    app = create_app(sandbox)                            # serve with LoopbackServer(app)
    sandbox.truth.mrr_at(sandbox.now)                    # the generator's own record of the truth
    sandbox.advance(timedelta(days=3))                   # new objects and events appear
    sandbox.faults.storm(3)                              # the next 3 requests get 429

`python -m kpi_pipelines.sandbox.stripe serve --port 0 --seed 7 --customers 500` serves it in
its own process and prints the base URL.
"""

from kpi_pipelines.sandbox.stripe.app import create_app
from kpi_pipelines.sandbox.stripe.faults import Faults
from kpi_pipelines.sandbox.stripe.generator import MIX_CASES, StripeSandboxConfig
from kpi_pipelines.sandbox.stripe.render import DEFAULT_API_VERSION
from kpi_pipelines.sandbox.stripe.sandbox import DEFAULT_API_KEY, EVENT_TYPES, StripeSandbox
from kpi_pipelines.sandbox.stripe.truth import (
    DayTruth,
    Movement,
    RevenueDay,
    StripeTruth,
    end_of_day,
    fx_rates,
)
from kpi_pipelines.sandbox.stripe.webhooks import deliver, sign

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_API_VERSION",
    "EVENT_TYPES",
    "MIX_CASES",
    "DayTruth",
    "Faults",
    "Movement",
    "RevenueDay",
    "StripeSandbox",
    "StripeSandboxConfig",
    "StripeTruth",
    "create_app",
    "deliver",
    "end_of_day",
    "fx_rates",
    "sign",
]

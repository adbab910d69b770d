"""A loopback simulator of LinkedIn's Marketing API for ads reporting: the OAuth token
endpoint, ad accounts, campaigns and adAnalytics, on the kit's simulated ad accounts.

Deterministic (seeded), never used in production. See sandbox.py for the state and
controls, app.py for the routes and the gateway's checks, analytics.py for the finder and
truth.py for what LinkedIn reports (UTC days, conversion metrics).
"""

from kpi_pipelines.sandbox.linkedin.app import create_linkedin_app
from kpi_pipelines.sandbox.linkedin.sandbox import LINKEDIN_START, LinkedInSandbox
from kpi_pipelines.sandbox.linkedin.truth import DEFAULT_CONVERSIONS, DEFAULT_VALUE

__all__ = [
    "DEFAULT_CONVERSIONS",
    "DEFAULT_VALUE",
    "LINKEDIN_START",
    "LinkedInSandbox",
    "create_linkedin_app",
]

"""A loopback simulator of the X Ads API (v12): OAuth 1.0a verified, campaigns, synchronous
stats and async stats jobs, on the kit's simulated ad accounts. Never used in production.

    sandbox = XSandbox(seed=7)
    with LoopbackServer(create_x_app(sandbox)) as server: ...   # KPI_X_ADS_BASE_URL
"""

from kpi_pipelines.sandbox.x.app import create_x_app
from kpi_pipelines.sandbox.x.auth import Grant
from kpi_pipelines.sandbox.x.sandbox import XSandbox

__all__ = ["Grant", "XSandbox", "create_x_app"]

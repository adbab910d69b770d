"""The Meta Marketing API (Graph API insights) simulator, on the kit's ad accounts.

`MetaSandbox` (sandbox.py) holds the state and the controls tests use; `create_meta_app`
(app.py) serves it on loopback with Meta's wire format (insights.py: the rows; graph.py:
errors, throttles and usage headers); demo.py connects the demo workspaces to it. The
truth a test compares with is the account's (`account.truth_by_campaign_day(...)`), never
a rendered response.
"""

from kpi_pipelines.sandbox.meta.app import create_meta_app
from kpi_pipelines.sandbox.meta.graph import THROTTLES, MetaThrottle
from kpi_pipelines.sandbox.meta.insights import ACTION_TYPES
from kpi_pipelines.sandbox.meta.sandbox import MetaSandbox

__all__ = ["ACTION_TYPES", "THROTTLES", "MetaSandbox", "MetaThrottle", "create_meta_app"]

"""Loopback simulators of Google's APIs: OAuth token endpoint, GA4 Data API, Sheets v4.

Deterministic (seeded) and never used in production. See app.py for the entry points.
"""

from kpi_pipelines.sandbox.google._common import Fault
from kpi_pipelines.sandbox.google.app import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_PROPERTY_ID,
    DEMO_REFRESH_TOKEN,
    DEMO_SPREADSHEET_ID,
    GoogleSandbox,
    create_google_app,
)
from kpi_pipelines.sandbox.google.ga4 import GA4Property, GA4Quota, Session, WebMetrics
from kpi_pipelines.sandbox.google.sheets import (
    Bool,
    DateTime,
    ErrorValue,
    Formula,
    Number,
    Sheet,
    Spreadsheet,
    Text,
    currency,
    percent,
)

__all__ = [
    "DEMO_CLIENT_ID",
    "DEMO_CLIENT_SECRET",
    "DEMO_PROPERTY_ID",
    "DEMO_REFRESH_TOKEN",
    "DEMO_SPREADSHEET_ID",
    "Bool",
    "DateTime",
    "ErrorValue",
    "Fault",
    "Formula",
    "GA4Property",
    "GA4Quota",
    "GoogleSandbox",
    "Number",
    "Session",
    "Sheet",
    "Spreadsheet",
    "Text",
    "WebMetrics",
    "create_google_app",
    "currency",
    "percent",
]

"""A loopback simulator of Notion's API (2022-06-28 and 2025-09-03) with an objectives board
that lives on the simulated clock and keeps its own truth. See app.py for the entry points,
okrs.py for the board and its truth, model.py for the workspace it lives in."""

from kpi_pipelines.sandbox.notion.app import (
    DEFAULT_START,
    Integration,
    NotionSandbox,
    RateLimit,
    create_notion_app,
)
from kpi_pipelines.sandbox.notion.model import NotionWorkspace, Page, Property
from kpi_pipelines.sandbox.notion.okrs import BoardTruth, ObjectivesBoard, ObjectiveTruth
from kpi_pipelines.sandbox.notion.render import V2022, V2025, VERSIONS

__all__ = [
    "DEFAULT_START",
    "V2022",
    "V2025",
    "VERSIONS",
    "BoardTruth",
    "Integration",
    "NotionSandbox",
    "NotionWorkspace",
    "ObjectiveTruth",
    "ObjectivesBoard",
    "Page",
    "Property",
    "RateLimit",
    "create_notion_app",
]

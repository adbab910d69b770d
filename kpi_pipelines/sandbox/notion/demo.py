"""Demo objectives for Notion: a simulated Notion workspace per demo workspace, each with an
objectives board (okrs.py) that lives on the real clock, served on loopback.

Each demo workspace's connection names its integration's token in its own namespace
(`WS_<ID>__NOTION_TOKEN`); `KPI_NOTION_BASE_URL` points at the simulator. Production never
runs this.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kpi_pipelines.sandbox.kit.demo import DemoSlot, LoopbackDemo
from kpi_pipelines.sandbox.notion.app import NotionSandbox, create_notion_app
from kpi_pipelines.sandbox.notion.okrs import ObjectivesBoard
from kpi_pipelines.warehouse.control import (
    Connection,
    Workspace,
    add_connection,
    secret_namespace,
)
from kpi_pipelines.warehouse.database import Warehouse

# The demo integrations' secrets are stable, so the demo's processes can be scanned for them.
DEMO_TOKEN_PREFIX = "ntn_demo_"


def demo_token(workspace_id: str) -> str:
    return (
        DEMO_TOKEN_PREFIX + hashlib.sha256(f"notion-demo:{workspace_id}".encode()).hexdigest()[:40]
    )


def token_variable(workspace_id: str) -> str:
    return f"{secret_namespace(workspace_id)}NOTION_TOKEN"


class NotionDemo(LoopbackDemo):
    """The demo workspaces' objectives boards on one loopback Notion."""

    def __init__(self, workspaces: Sequence[Workspace]) -> None:
        self.sandbox = NotionSandbox(seed=11, start=datetime.now(UTC), realtime=True)
        self.boards: dict[str, ObjectivesBoard] = {}
        for index, workspace in enumerate(workspaces):
            notion = self.sandbox.add_workspace(workspace.name)
            board = ObjectivesBoard.create(notion, seed=11 + index, objectives=8)
            self.sandbox.tickers.append(board.catch_up)
            self.sandbox.add_integration(
                notion, share=[board.objectives_db, board.notes_db], token=demo_token(workspace.id)
            )
            self.boards[workspace.id] = board
        super().__init__(create_notion_app(self.sandbox), dated_by=self.sandbox.clock)

    def env(self) -> dict[str, str]:
        return {
            "KPI_NOTION_BASE_URL": self.server.base_url,
            **{token_variable(w): demo_token(w) for w in self.boards},
        }


_demo: DemoSlot[NotionDemo] = DemoSlot("Notion")


def start_simulator(workspaces: Sequence[Workspace], folder: Path) -> NotionDemo:
    return _demo.start(lambda: NotionDemo(workspaces))


def prepare(warehouse: Warehouse, workspace: Workspace, folder: Path) -> dict[str, Any]:
    """Connect the workspace to its objectives database (the mapping found from its schema)."""
    board = _demo.get().boards[workspace.id]
    add_connection(
        warehouse,
        Connection(
            workspace_id=workspace.id,
            provider="notion",
            settings={"database_id": board.objectives_db.id},
            secret_env={"token": token_variable(workspace.id)},
        ),
    )
    return {}

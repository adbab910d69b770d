"""Demo objectives for Notion: a simulated Notion workspace per demo workspace, each with an
objectives board (okrs.py) that lives on the real clock, served on loopback.

The first demo workspace reads its board through an internal integration: its connection
names the token in its own namespace (`WS_<ID>__NOTION_TOKEN`). The others are connected
through the operator's public integration: `prepare` runs `kpi-pipelines connect`'s flow in
process, approving the consent page as a browser would, and the grant is stored sealed
with the demo's key (`KPI_GRANT_KEYS`, derived from the demo's folder, so `dev` opens what
the demo stored). `KPI_NOTION_BASE_URL` and the OAuth endpoints point at the simulator.
Production never runs this.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from kpi_pipelines.integrations.shared.grants import GRANT_KEYS_VARIABLE
from kpi_pipelines.integrations.shared.oauth_connect import connect_workspace
from kpi_pipelines.integrations.shared.spec import spec_for
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
DEMO_CLIENT_ID = "kpi-pipelines-demo"


def demo_token(workspace_id: str) -> str:
    return (
        DEMO_TOKEN_PREFIX + hashlib.sha256(f"notion-demo:{workspace_id}".encode()).hexdigest()[:40]
    )


def token_variable(workspace_id: str) -> str:
    return f"{secret_namespace(workspace_id)}NOTION_TOKEN"


class NotionDemo(LoopbackDemo):
    """The demo workspaces' objectives boards on one loopback Notion."""

    def __init__(self, workspaces: Sequence[Workspace], folder: Path) -> None:
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
        self.granted = {w.id for w in workspaces[1:]}  # connected through the consent page
        self.sandbox.oauth.register_client(DEMO_CLIENT_ID, _demo_secret("client", folder))
        self.grant_key = base64.urlsafe_b64encode(
            hashlib.sha256(_demo_secret("grants", folder).encode()).digest()
        ).decode()
        super().__init__(create_notion_app(self.sandbox), dated_by=self.sandbox.clock)

    def env(self) -> dict[str, str]:
        return {
            "KPI_NOTION_BASE_URL": self.server.base_url,
            "KPI_NOTION_AUTHORIZE_URL": self.server.url("/v1/oauth/authorize"),
            "KPI_NOTION_TOKEN_URL": self.server.url("/v1/oauth/token"),
            "KPI_NOTION_CLIENT_ID": DEMO_CLIENT_ID,
            "KPI_NOTION_CLIENT_SECRET": self.sandbox.oauth.clients[DEMO_CLIENT_ID].client_secret,
            GRANT_KEYS_VARIABLE: self.grant_key,
            **{token_variable(w): demo_token(w) for w in self.boards if w not in self.granted},
        }


_demo: DemoSlot[NotionDemo] = DemoSlot("Notion")


def _demo_secret(purpose: str, folder: Path) -> str:
    """A demo secret, stable for the demo's folder (the demo and `dev` agree on it)."""
    digest = hashlib.sha256(f"notion-demo:{purpose}:{folder.resolve()}".encode()).hexdigest()
    return f"secret_demo_{digest[:40]}"


def start_simulator(workspaces: Sequence[Workspace], folder: Path) -> NotionDemo:
    return _demo.start(lambda: NotionDemo(workspaces, folder))


def prepare(warehouse: Warehouse, workspace: Workspace, folder: Path) -> dict[str, Any]:
    """Connect the workspace to its objectives database (the mapping found from its
    schema): with the internal integration's token, or through the consent page."""
    demo = _demo.get()
    board = demo.boards[workspace.id]
    granted = workspace.id in demo.granted
    add_connection(
        warehouse,
        Connection(
            workspace_id=workspace.id,
            provider="notion",
            settings={"database_id": board.objectives_db.id},
            secret_env={} if granted else {"token": token_variable(workspace.id)},
        ),
    )
    if granted:
        demo.sandbox.oauth.consent_workspace = board.workspace
        connect_workspace(
            warehouse,
            spec_for("notion"),
            workspace.id,
            actor="user:demo",
            say=lambda text: None,
            show_url=_approve,
            open_browser=False,
        )
    return {}


def _approve(url: str) -> None:
    """What the user's browser does with the consent page: approve, and follow the
    redirect to connect's callback (in a thread: connect is waiting for it)."""
    threading.Thread(
        target=httpx.get, args=(url,), kwargs={"follow_redirects": True, "timeout": 30}
    ).start()

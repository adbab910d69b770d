"""The Notion sandbox served on loopback, and the world the Notion tests run in: objectives
boards in simulated Notion workspaces, tenant workspaces connected to them, syncs through
the real assets (the sync and the notes downstream of it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from kpi_pipelines.automation.partitions import register_partition
from kpi_pipelines.demo import materialize_provider
from kpi_pipelines.integrations.notion.adapter import NotionAdapter
from kpi_pipelines.integrations.shared.oauth_connect import Connected
from kpi_pipelines.integrations.shared.redaction import register_secret
from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.sandbox.notion import (
    NotionSandbox,
    NotionWorkspace,
    ObjectivesBoard,
    RateLimit,
    create_notion_app,
)
from kpi_pipelines.warehouse.control import (
    Connection,
    Workspace,
    add_connection,
    add_workspace,
    secret_namespace,
)
from kpi_pipelines.warehouse.database import Warehouse
from kpi_pipelines.warehouse.tenant_data import read_points
from kpi_pipelines_tests.integrations.google_sandbox import (
    connect_with_consent,
    grant_keys,
    new_grant_key,
)

# The operator's public integration (Notion's OAuth client) in the sandbox.
OAUTH_CLIENT_ID = "notion-public-integration"
OAUTH_CLIENT_SECRET = "secret_sandbox_public_integration_0001"


@dataclass
class Board:
    """A board in its own Notion workspace, and the token of an integration that reads it."""

    notion: NotionWorkspace
    board: ObjectivesBoard
    token: str = field(repr=False)


@dataclass
class NotionWorld:
    sandbox: NotionSandbox
    server: LoopbackServer
    warehouse: Warehouse
    instance: dg.DagsterInstance
    monkeypatch: pytest.MonkeyPatch
    boards: dict[str, Board] = field(default_factory=dict)

    def board(self, name: str = "Acme", **options: Any) -> Board:
        """A new Notion workspace `name` with an objectives board (okrs.py options)."""
        notion = self.sandbox.add_workspace(name)
        options.setdefault("seed", 3)
        options.setdefault("evolve", False)
        board = ObjectivesBoard.create(notion, **options)
        self.sandbox.tickers.append(board.catch_up)
        token = self.sandbox.add_integration(notion, share=[board.objectives_db, board.notes_db])
        made = Board(notion, board, token)
        self.boards[name] = made
        return made

    def connect(
        self,
        workspace_id: str,
        board: Board,
        *,
        timezone: str = "UTC",
        **settings: Any,
    ) -> Workspace:
        """A tenant workspace whose notion connection reads `board` (settings: its own)."""
        workspace = add_workspace(
            self.warehouse, Workspace(id=workspace_id, name=workspace_id, timezone=timezone)
        )
        variable = f"{secret_namespace(workspace_id)}NOTION_TOKEN"
        self.monkeypatch.setenv(variable, board.token)
        add_connection(
            self.warehouse,
            Connection(
                workspace_id=workspace_id,
                provider="notion",
                settings={"database_id": board.board.objectives_db.id, **settings},
                secret_env={"token": variable},
            ),
        )
        register_partition(self.instance, workspace_id, "notion")
        return workspace

    def connect_with_grant(
        self,
        workspace_id: str,
        board: Board,
        browser: Callable[[str], object] | None = None,
        **settings: Any,
    ) -> Connected:
        """A tenant workspace whose notion connection names no token, granted access to
        `board`'s Notion workspace through the consent page (`kpi-pipelines connect` in
        process, the test as the browser)."""
        add_workspace(self.warehouse, Workspace(id=workspace_id, name=workspace_id))
        add_connection(
            self.warehouse,
            Connection(
                workspace_id=workspace_id,
                provider="notion",
                settings={"database_id": board.board.objectives_db.id, **settings},
            ),
        )
        register_partition(self.instance, workspace_id, "notion")
        self.sandbox.oauth.consent_workspace = board.notion
        options = {} if browser is None else {"browser": browser}
        return connect_with_consent(self.warehouse, "notion", workspace_id, **options)

    def sync(
        self, workspace_id: str, run_config: Mapping[str, Any] | None = None, **adapter: Any
    ) -> dg.ExecuteInProcessResult:
        """One run of the Notion job (the sync and the notes) for the workspace."""
        adapter.setdefault("backoff_base_seconds", 0.01)
        return materialize_provider(
            self.warehouse,
            self.instance,
            "notion",
            workspace_id,
            run_config,
            adapter=NotionAdapter(**adapter),
        )

    def points(self, workspace_id: str) -> dict[tuple[str, date, str | None], Any]:
        """metric, day, objective (None: the total) -> (value, metadata)."""
        return {
            (p.metric, p.timestamp.astimezone(UTC).date(), p.dimensions.get("objective")): (
                p.value,
                p.metadata,
            )
            for p in read_points(self.warehouse, workspace_id, source="notion")
        }

    def notes(self, workspace_id: str) -> dict[tuple[str, str], dict[str, Any]]:
        """(page, objective) -> the stored note."""
        with self.warehouse.tenant(workspace_id, actor="test") as db:
            rows = db.execute(sa.text("SELECT * FROM notes ORDER BY page_id, objective_id"))
            return {(r.page_id, r.objective_id): dict(r._mapping) for r in rows}

    def landed(self, workspace_id: str, stream: str = "objectives") -> dict[str, dict[str, Any]]:
        with self.warehouse.tenant(workspace_id, actor="test") as db:
            rows = db.execute(
                sa.text(
                    "SELECT record_id, payload FROM raw_records WHERE source = 'notion'"
                    " AND stream = :stream"
                ),
                {"stream": stream},
            )
            return {r.record_id: r.payload for r in rows}


@pytest.fixture
def notion(warehouse, dagster_instance, monkeypatch) -> Iterator[NotionWorld]:
    """A Notion sandbox without its rate limit (the rate-limit tests set their own)."""
    yield from served_world(warehouse, dagster_instance, monkeypatch, rate_limit=None)


def served_world(
    warehouse: Warehouse,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    *,
    rate_limit: RateLimit | None,
    start: datetime | None = None,
) -> Iterator[NotionWorld]:
    options = {"start": start} if start else {}
    sandbox = NotionSandbox(seed=3, rate_limit=rate_limit, **options)
    sandbox.oauth.register_client(OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET)
    register_secret(OAUTH_CLIENT_SECRET)
    with LoopbackServer(create_notion_app(sandbox), dated_by=sandbox.clock) as server:
        monkeypatch.setenv("KPI_NOTION_BASE_URL", server.base_url)
        # the operator's public integration, and a key for the grants connect stores
        monkeypatch.setenv("KPI_NOTION_AUTHORIZE_URL", server.url("/v1/oauth/authorize"))
        monkeypatch.setenv("KPI_NOTION_TOKEN_URL", server.url("/v1/oauth/token"))
        monkeypatch.setenv("KPI_NOTION_CLIENT_ID", OAUTH_CLIENT_ID)
        monkeypatch.setenv("KPI_NOTION_CLIENT_SECRET", OAUTH_CLIENT_SECRET)
        grant_keys(monkeypatch, new_grant_key())
        yield NotionWorld(sandbox, server, warehouse, instance, monkeypatch)

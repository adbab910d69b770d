"""The Google sandbox served on loopback, with the demo OAuth client, for provider tests,
and the world both Google providers' tests run in (workspaces connected to it, syncs
through the real asset)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import dagster as dg
import pytest

from kpi_pipelines.demo import materialize_provider
from kpi_pipelines.integrations.shared.base_adapter import IntegrationAdapter
from kpi_pipelines.integrations.shared.oauth import GOOGLE_CLIENT_VARIABLES
from kpi_pipelines.sandbox.google import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_REFRESH_TOKEN,
    GoogleSandbox,
    create_google_app,
)
from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.warehouse.control import (
    Connection,
    Workspace,
    add_connection,
    add_workspace,
    secret_namespace,
)
from kpi_pipelines.warehouse.database import Warehouse


def google_secret_env(workspace_id: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """What a test workspace's Google connection names: its refresh token, in its namespace
    (set to the sandbox's demo token); the OAuth client is the operator's."""
    variable = f"{secret_namespace(workspace_id)}GOOGLE_REFRESH_TOKEN"
    monkeypatch.setenv(variable, DEMO_REFRESH_TOKEN)
    return {"refresh_token": variable}


@contextmanager
def served_google_sandbox(
    monkeypatch: pytest.MonkeyPatch, *, seed: int, base_url_variable: str
) -> Iterator[tuple[GoogleSandbox, LoopbackServer]]:
    """A sandbox that knows the demo client, with its token endpoint, API host and the
    operator's OAuth client in the environment."""
    sandbox = GoogleSandbox(seed=seed)
    sandbox.register_client(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
    sandbox.add_refresh_token(DEMO_REFRESH_TOKEN, DEMO_CLIENT_ID)
    with LoopbackServer(create_google_app(sandbox)) as server:
        monkeypatch.setenv("KPI_GOOGLE_TOKEN_URL", server.url("/token"))
        monkeypatch.setenv(base_url_variable, server.base_url)
        monkeypatch.setenv(GOOGLE_CLIENT_VARIABLES["client_id"], DEMO_CLIENT_ID)
        monkeypatch.setenv(GOOGLE_CLIENT_VARIABLES["client_secret"], DEMO_CLIENT_SECRET)
        yield sandbox, server


@dataclass
class GoogleWorld:
    """A served sandbox, the warehouse and a Dagster instance; a subclass names its provider."""

    provider: ClassVar[str]
    sandbox: GoogleSandbox
    server: LoopbackServer
    warehouse: Warehouse
    instance: dg.DagsterInstance
    monkeypatch: pytest.MonkeyPatch

    @classmethod
    @contextmanager
    def served(
        cls,
        warehouse: Warehouse,
        instance: dg.DagsterInstance,
        monkeypatch: pytest.MonkeyPatch,
        *,
        seed: int,
    ) -> Iterator[Self]:
        """The world around a sandbox served for the provider (its KPI_<PROVIDER>_BASE_URL)."""
        variable = f"KPI_{cls.provider.upper()}_BASE_URL"
        with served_google_sandbox(monkeypatch, seed=seed, base_url_variable=variable) as served:
            yield cls(*served, warehouse, instance, monkeypatch)

    def connect(self, workspace_id: str, settings: Mapping[str, Any]) -> Workspace:
        """A workspace with a connection of this provider to the sandbox, and its partition."""
        workspace = add_workspace(self.warehouse, Workspace(id=workspace_id, name=workspace_id))
        add_connection(
            self.warehouse,
            Connection(
                workspace_id=workspace_id,
                provider=self.provider,
                settings=dict(settings),
                secret_env=google_secret_env(workspace_id, self.monkeypatch),
            ),
        )
        self.instance.add_dynamic_partitions("workspace", [workspace_id])
        return workspace

    def run(
        self,
        workspace_id: str,
        run_config: Mapping[str, Any] | None = None,
        adapter: IntegrationAdapter | None = None,
    ) -> dg.ExecuteInProcessResult:
        """One run of the provider's real asset for the workspace."""
        return materialize_provider(
            self.warehouse, self.instance, self.provider, workspace_id, run_config, adapter=adapter
        )

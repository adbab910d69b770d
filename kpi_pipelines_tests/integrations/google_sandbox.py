"""The Google sandbox served on loopback, with the demo OAuth client, for provider tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from kpi_pipelines.integrations.shared.oauth import GOOGLE_CLIENT_VARIABLES
from kpi_pipelines.sandbox.google import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_REFRESH_TOKEN,
    GoogleSandbox,
    create_google_app,
)
from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.warehouse.control import secret_namespace


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

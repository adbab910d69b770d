"""The Google sandbox served on loopback, with the demo OAuth client, for provider tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from kpi_pipelines.sandbox.google import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_REFRESH_TOKEN,
    GoogleSandbox,
    create_google_app,
)
from kpi_pipelines.sandbox.server import LoopbackServer

# The variables a test connection names for its OAuth secrets.
SECRET_ENV = {
    "client_id": "TEST_GOOGLE_CLIENT_ID",
    "client_secret": "TEST_GOOGLE_CLIENT_SECRET",
    "refresh_token": "TEST_GOOGLE_REFRESH_TOKEN",
}


@contextmanager
def served_google_sandbox(
    monkeypatch: pytest.MonkeyPatch, *, seed: int, base_url_variable: str
) -> Iterator[tuple[GoogleSandbox, LoopbackServer]]:
    """A sandbox that knows the demo client, its token endpoint and API host in the
    environment, and the secrets in the variables SECRET_ENV names."""
    sandbox = GoogleSandbox(seed=seed)
    sandbox.register_client(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
    sandbox.add_refresh_token(DEMO_REFRESH_TOKEN, DEMO_CLIENT_ID)
    with LoopbackServer(create_google_app(sandbox)) as server:
        monkeypatch.setenv("KPI_GOOGLE_TOKEN_URL", server.url("/token"))
        monkeypatch.setenv(base_url_variable, server.base_url)
        monkeypatch.setenv(SECRET_ENV["client_id"], DEMO_CLIENT_ID)
        monkeypatch.setenv(SECRET_ENV["client_secret"], DEMO_CLIENT_SECRET)
        monkeypatch.setenv(SECRET_ENV["refresh_token"], DEMO_REFRESH_TOKEN)
        yield sandbox, server

"""Fixtures: a sandbox per test, served on loopback, and the official Google clients."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build

from kpi_pipelines.sandbox.google import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_REFRESH_TOKEN,
    GoogleSandbox,
    create_google_app,
)
from kpi_pipelines.sandbox.kit.server import LoopbackServer


def credentials(
    server: LoopbackServer,
    refresh_token: str = DEMO_REFRESH_TOKEN,
    *,
    client_id: str = DEMO_CLIENT_ID,
    client_secret: str = DEMO_CLIENT_SECRET,
    token: str | None = None,
) -> Credentials:
    """OAuth credentials that refresh through the sandbox's token endpoint."""
    return Credentials(
        token=token,
        refresh_token=refresh_token,
        token_uri=server.url("/token"),
        client_id=client_id,
        client_secret=client_secret,
    )


def ga4_client(server: LoopbackServer, creds: Credentials | None = None) -> Any:
    return build(
        "analyticsdata",
        "v1beta",
        credentials=creds or credentials(server),
        client_options={"api_endpoint": server.base_url},
        static_discovery=True,
        cache_discovery=False,
    )


def sheets_client(server: LoopbackServer, creds: Credentials | None = None) -> Any:
    return build(
        "sheets",
        "v4",
        credentials=creds or credentials(server),
        client_options={"api_endpoint": server.base_url},
        static_discovery=True,
        cache_discovery=False,
    )


def serve(sandbox: GoogleSandbox) -> LoopbackServer:
    return LoopbackServer(create_google_app(sandbox))


def small_demo(**options: Any) -> GoogleSandbox:
    """The demo sandbox with a month of GA4 history (cheap to simulate)."""
    return GoogleSandbox.demo(property_options={"history_days": 30}, **options)


@pytest.fixture
def sandbox() -> GoogleSandbox:
    return small_demo()


@pytest.fixture
def server(sandbox: GoogleSandbox) -> Iterator[LoopbackServer]:
    with serve(sandbox) as running:
        yield running

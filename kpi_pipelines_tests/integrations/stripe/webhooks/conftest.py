"""Fixtures for the webhook receiver: connections with real secrets, the app in a TestClient,
and the real `webhooks serve` command listening on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from kpi_pipelines.integrations.stripe.webhooks.app import create_app
from kpi_pipelines_tests.integrations.stripe.webhooks.support import (
    HEADER_TIMEOUT,
    READ_TIMEOUT,
    SECRETS,
    Receiver,
    start_receiver,
    stripe_connection,
)


@pytest.fixture
def connections(warehouse, workspace_a, workspace_b, monkeypatch) -> None:
    """ws-a (account acct_a) and ws-b (acct_b), each signing with its own secret, their
    accounts proved (as their syncs do, see test_connect_proof.py)."""
    for variable, secret in SECRETS.items():
        monkeypatch.setenv(variable, secret)
    stripe_connection(warehouse, "ws-a", "WS_WS_A__STRIPE_WHSEC", "acct_a", proved=True)
    stripe_connection(warehouse, "ws-b", "WS_WS_B__STRIPE_WHSEC", "acct_b", proved=True)


@pytest.fixture
def client(warehouse, connections) -> TestClient:
    return TestClient(create_app(warehouse))


@pytest.fixture(scope="module")
def live_receiver(warehouse, tmp_path_factory) -> Iterator[Receiver]:
    """The receiver with small time bounds and the default 1 MiB body cap, knowing
    SECRETS (tests add the connections that name them: `connections`)."""
    env = {
        **os.environ,
        **SECRETS,
        "KPI_WEBHOOK_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
        "KPI_WEBHOOK_READ_TIMEOUT_SECONDS": str(READ_TIMEOUT),
    }
    env.pop("KPI_WEBHOOK_MAX_BYTES", None)
    with start_receiver(env, tmp_path_factory.mktemp("receiver") / "receiver.log") as receiver:
        yield receiver

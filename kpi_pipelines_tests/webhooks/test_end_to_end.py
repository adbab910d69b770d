"""`kpi-pipelines webhooks serve` as its own process; the sandbox delivers signed events to it
over HTTP; the inbox sensor launches the workspace's Stripe run; the KPIs follow the truth."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa

from kpi_pipelines.definitions import RESOURCES, defs
from kpi_pipelines.sandbox.stripe import deliver
from kpi_pipelines.warehouse.control import Connection, add_connection
from kpi_pipelines.warehouse.tenant_data import read_points
from kpi_pipelines.webhooks.sensor import stripe_webhook_sensor
from kpi_pipelines_tests.integrations.stripe.world import rate_lookup, stripe_key_variable

WEBHOOK_SECRET_A = "whsec_end_to_end_a"
WEBHOOK_SECRET_B = "whsec_end_to_end_b"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def receiver(stripe_world, monkeypatch):
    monkeypatch.setenv("WS_A__STRIPE_WHSEC", WEBHOOK_SECRET_A)
    monkeypatch.setenv("WS_B__STRIPE_WHSEC", WEBHOOK_SECRET_B)
    port = free_port()
    cli = Path(sys.executable).parent / "kpi-pipelines"
    process = subprocess.Popen(
        [str(cli), "webhooks", "serve", "--port", str(port)],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL),
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail(
            "webhook receiver did not start: " + (process.stdout.read() if process.stdout else "")
        )
    yield base
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


def connect(world, workspace_id: str, secret_var: str) -> None:
    world.workspace(workspace_id)
    add_connection(
        world.warehouse,
        Connection(
            workspace_id=workspace_id,
            provider="stripe",
            secret_env={"api_key": stripe_key_variable(workspace_id), "webhook_secret": secret_var},
        ),
    )


def test_signed_events_over_http_drive_a_sync_of_their_workspace_only(
    stripe_world, receiver
) -> None:
    world = stripe_world
    connect(world, "a", "WS_A__STRIPE_WHSEC")
    connect(world, "b", "WS_B__STRIPE_WHSEC")
    world.import_rates("USD")
    assert world.sync("a").success
    assert world.sync("b").success
    before_b = {(p.metric, p.timestamp, p.value) for p in read_points(world.warehouse, "b")}

    since = world.sandbox.now
    world.sandbox.advance(timedelta(days=4))
    events = world.sandbox.events_since(since)
    assert events
    statuses = deliver(
        events, f"{receiver}/stripe/a", WEBHOOK_SECRET_A, shuffle=True, duplicate=True
    )
    assert set(statuses) == {200}
    # A's secret cannot post into B's endpoint.
    assert set(deliver(events[:2], f"{receiver}/stripe/b", WEBHOOK_SECRET_A)) == {400}

    with world.warehouse.control() as db:
        inbox = dict(
            db.execute(sa.text("SELECT workspace_id, count(*) FROM webhook_inbox GROUP BY 1")).all()
        )
    assert inbox == {"a": len({e["id"] for e in events})}

    with dg.build_sensor_context(instance=world.instance, resources=RESOURCES) as context:
        result = stripe_webhook_sensor(context)
    [request] = result.run_requests
    assert request.partition_key == "a"
    run = defs.resolve_job_def("stripe_job").execute_in_process(
        instance=world.instance, partition_key=request.partition_key, tags=request.tags
    )
    assert run.success

    convert = rate_lookup(world.sandbox, "USD")
    stored = {p.timestamp.date(): p.value for p in read_points(world.warehouse, "a", metric="mrr")}
    for truth in world.sandbox.truth.daily(
        since.date(), world.sandbox.now.date() - timedelta(days=1)
    ):
        expected = sum(convert(v, cur, truth.day) for cur, v in truth.totals().items())
        assert stored[truth.day] == pytest.approx(expected, abs=1e-4), truth.day
    assert {(p.metric, p.timestamp, p.value) for p in read_points(world.warehouse, "b")} == before_b

"""`kpi-pipelines webhooks serve` as its own process; the sandbox delivers signed events to it
over HTTP; the inbox sensor launches the workspace's Stripe run; the KPIs follow the truth."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta

import dagster as dg
import pytest
import sqlalchemy as sa

from kpi_pipelines.definitions import PROVIDERS, RESOURCES, defs
from kpi_pipelines.sandbox.stripe import deliver
from kpi_pipelines.warehouse.control import Connection, add_connection
from kpi_pipelines.warehouse.tenant_data import read_points
from kpi_pipelines_tests.integrations.stripe.webhooks.support import start_receiver
from kpi_pipelines_tests.integrations.stripe.world import rate_lookup, stripe_key_variable

[stripe_webhook_sensor] = PROVIDERS["stripe"].sensors

WEBHOOK_SECRET_A = "whsec_end_to_end_a"
WEBHOOK_SECRET_B = "whsec_end_to_end_b"


@pytest.fixture
def receiver(stripe_world, tmp_path) -> Iterator[str]:
    env = {
        **os.environ,
        "WS_A__STRIPE_WHSEC": WEBHOOK_SECRET_A,
        "WS_B__STRIPE_WHSEC": WEBHOOK_SECRET_B,
    }
    with start_receiver(env, tmp_path / "receiver.log") as running:
        yield running.base_url


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

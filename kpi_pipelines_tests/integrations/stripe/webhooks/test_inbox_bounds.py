"""The webhook inbox is bounded: a workspace holds at most KPI_WEBHOOK_INBOX_QUOTA unprocessed
events (past it, verified deliveries get 503 and Stripe delivers them again later), and the
sensor deletes processed events older than KPI_WEBHOOK_INBOX_RETENTION_DAYS, a bounded batch
per tick."""

from __future__ import annotations

import logging

import dagster as dg
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from kpi_pipelines.definitions import PROVIDERS, RESOURCES
from kpi_pipelines.integrations.stripe.webhooks.app import create_app
from kpi_pipelines.integrations.stripe.webhooks.sensor import DELETED_PER_TICK
from kpi_pipelines_tests.canary import scanned_instance
from kpi_pipelines_tests.integrations.stripe.webhooks.support import (
    SECRET_A,
    SECRET_B,
    event,
    inbox,
    signed,
)
from kpi_pipelines_tests.run_results import apply_partition_requests, ticked_workspaces

[stripe_webhook_sensor] = PROVIDERS["stripe"].sensors
QUOTA = 3


def post(client: TestClient, path: str, event_id: str, secret: str, **extra):
    body, headers = signed(event(event_id, **extra), secret)
    return client.post(path, content=body, headers=headers)


def tick(instance: dg.DagsterInstance):
    with dg.build_sensor_context(instance=instance, resources=RESOURCES) as context:
        return stripe_webhook_sensor(context)


def test_a_full_inbox_defers_its_workspaces_events_until_the_sensor_drains_it(
    warehouse, connections, monkeypatch, caplog
) -> None:
    monkeypatch.setenv("KPI_WEBHOOK_INBOX_QUOTA", str(QUOTA))
    client = TestClient(create_app(warehouse))
    for n in range(QUOTA):
        assert post(client, "/stripe/ws-a", f"evt_{n}", SECRET_A).json()["status"] == "stored"

    with caplog.at_level(logging.WARNING, logger="kpi_pipelines.webhooks"):
        for n in range(QUOTA, QUOTA + 10):  # past the quota, on both endpoints
            deferred = post(client, "/stripe/ws-a", f"evt_{n}", SECRET_A)
            assert deferred.status_code == 503
            assert deferred.content == b'{"error":"try again later"}'
            assert (
                post(client, "/stripe", f"evt_c{n}", SECRET_A, account="acct_a").status_code == 503
            )
    # Once for the operator per interval, whatever the number of deliveries.
    [full] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert f"workspace 'ws-a' holds its quota of {QUOTA} unprocessed events" in full
    assert "is the Dagster daemon running?" in full
    assert caplog.text.count("webhook deferred on") == 20

    # A duplicate of a stored event is still acknowledged, and other workspaces are not held up.
    assert post(client, "/stripe/ws-a", "evt_0", SECRET_A).json()["status"] == "duplicate"
    assert post(client, "/stripe/ws-b", "evt_b", SECRET_B).json()["status"] == "stored"
    assert [e for e, ws, _ in inbox(warehouse) if ws == "ws-a"] == ["evt_0", "evt_1", "evt_2"]

    # The sensor claims the events; Stripe's next delivery of a deferred one is stored.
    with scanned_instance() as instance:
        result = tick(instance)
        apply_partition_requests(instance, result)
        assert ticked_workspaces(instance, "stripe", result.run_requests) == ["ws-a", "ws-b"]
    assert post(client, "/stripe/ws-a", f"evt_{QUOTA}", SECRET_A).json()["status"] == "stored"


def test_processed_events_past_retention_are_deleted_a_batch_per_tick(
    warehouse, connections, client, monkeypatch
) -> None:
    monkeypatch.setenv("KPI_WEBHOOK_INBOX_RETENTION_DAYS", "2")
    old = DELETED_PER_TICK + 200
    with warehouse.control() as db:
        db.execute(
            sa.text(
                "INSERT INTO webhook_inbox"
                " (provider, event_id, workspace_id, event_type, payload, processed_at)"
                " SELECT 'stripe', 'evt_old_' || n, 'ws-a', 't', '{}',"
                " now() - interval '3 days' - n * interval '1 second'"
                " FROM generate_series(1, :old) AS n"
            ),
            {"old": old},
        )
        # Processed a day ago: within the retention, kept (it deduplicates Stripe's retries).
        db.execute(
            sa.text(
                "INSERT INTO webhook_inbox"
                " (provider, event_id, workspace_id, event_type, payload, processed_at)"
                " VALUES ('stripe', 'evt_recent', 'ws-b', 't', '{}', now() - interval '1 day')"
            )
        )
    assert post(client, "/stripe/ws-a", "evt_new", SECRET_A).status_code == 200

    def stored() -> set[str]:
        return {event_id for event_id, *_ in inbox(warehouse)}

    with scanned_instance() as instance:
        tick(instance)  # claims evt_new; deletes the oldest DELETED_PER_TICK
        left = stored()
        assert len(left) == old - DELETED_PER_TICK + 2
        # the oldest went first
        assert f"evt_old_{old}" not in left and "evt_old_1" in left
        assert isinstance(tick(instance), dg.SkipReason)
        assert stored() == {"evt_recent", "evt_new"}
    # A delivered-again event within the retention is still a duplicate.
    assert post(client, "/stripe/ws-a", "evt_new", SECRET_A).json()["status"] == "duplicate"


@pytest.mark.parametrize(
    ("variable", "value"),
    [("KPI_WEBHOOK_INBOX_QUOTA", "0"), ("KPI_WEBHOOK_INBOX_RETENTION_DAYS", "-1")],
)
def test_a_nonsense_inbox_bound_is_refused_by_name(monkeypatch, variable, value) -> None:
    from kpi_pipelines import settings

    monkeypatch.setenv(variable, value)
    read = {
        "KPI_WEBHOOK_INBOX_QUOTA": settings.webhook_inbox_quota,
        "KPI_WEBHOOK_INBOX_RETENTION_DAYS": settings.webhook_inbox_retention_days,
    }[variable]
    with pytest.raises(ValueError, match=variable):
        read()

"""The webhook receiver (real ASGI app, real PostgreSQL) and the sensor that drains its inbox."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import dagster as dg
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from kpi_pipelines.definitions import RESOURCES
from kpi_pipelines.warehouse.control import Connection, add_connection
from kpi_pipelines.webhooks.app import create_app
from kpi_pipelines.webhooks.sensor import stripe_webhook_sensor
from kpi_pipelines_tests.canary import scanned_instance

SECRET_A = "whsec_test_secret_for_workspace_a"
SECRET_B = "whsec_test_secret_for_workspace_b"


def signed(
    event: dict, secret: str, *, timestamp: int | None = None, body: bytes | None = None
) -> tuple[bytes, dict]:
    payload = body if body is not None else json.dumps(event).encode()
    t = int(time.time()) if timestamp is None else timestamp
    signature = hmac.new(
        secret.encode(), f"{t}.".encode() + json.dumps(event).encode(), hashlib.sha256
    ).hexdigest()
    return payload, {
        "Stripe-Signature": f"t={t},v1={signature}",
        "Content-Type": "application/json",
    }


def event(event_id: str, account: str | None = None) -> dict:
    body = {
        "id": event_id,
        "object": "event",
        "type": "customer.subscription.updated",
        "created": int(time.time()),
        "data": {"object": {"id": "sub_1", "object": "subscription"}},
    }
    if account:
        body["account"] = account
    return body


@pytest.fixture
def client(warehouse, workspace_a, workspace_b, monkeypatch) -> TestClient:
    monkeypatch.setenv("WS_WS_A__STRIPE_WHSEC", SECRET_A)
    monkeypatch.setenv("WS_WS_B__STRIPE_WHSEC", SECRET_B)
    for ws, var, account in (
        ("ws-a", "WS_WS_A__STRIPE_WHSEC", "acct_a"),
        ("ws-b", "WS_WS_B__STRIPE_WHSEC", "acct_b"),
    ):
        add_connection(
            warehouse,
            Connection(
                workspace_id=ws,
                provider="stripe",
                settings={"account_id": account},
                secret_env={"webhook_secret": var},
            ),
        )
    return TestClient(create_app(warehouse))


def inbox(warehouse) -> list[tuple]:
    with warehouse.control() as db:
        return [
            tuple(r)
            for r in db.execute(
                sa.text(
                    "SELECT event_id, workspace_id, processed_at IS NOT NULL FROM webhook_inbox ORDER BY id"
                )
            )
        ]


def test_valid_signature_is_stored_once(client, warehouse) -> None:
    body, headers = signed(event("evt_1"), SECRET_A)
    first = client.post("/stripe/ws-a", content=body, headers=headers)
    second = client.post("/stripe/ws-a", content=body, headers=headers)
    assert first.status_code == 200 and first.json()["status"] == "stored"
    assert second.status_code == 200 and second.json()["status"] == "duplicate"
    assert inbox(warehouse) == [("evt_1", "ws-a", False)]


@pytest.mark.parametrize(
    "case",
    [
        "wrong secret",
        "stale",
        "tampered body",
        "missing header",
        "other workspace's secret",
        "future",
    ],
)
def test_bad_signatures_get_400_and_store_nothing(client, warehouse, case) -> None:
    good = event("evt_bad")
    if case == "wrong secret":
        body, headers = signed(good, "whsec_not_it")
    elif case == "stale":
        body, headers = signed(good, SECRET_A, timestamp=int(time.time()) - 301)
    elif case == "future":
        body, headers = signed(good, SECRET_A, timestamp=int(time.time()) + 400)
    elif case == "tampered body":
        tampered = {**good, "type": "invoice.paid"}
        body, headers = signed(good, SECRET_A, body=json.dumps(tampered).encode())
    elif case == "missing header":
        body, headers = json.dumps(good).encode(), {"Content-Type": "application/json"}
    else:
        body, headers = signed(good, SECRET_B)
    response = client.post("/stripe/ws-a", content=body, headers=headers)
    assert response.status_code == 400
    assert inbox(warehouse) == []


def test_connect_events_map_to_their_workspace_by_account(client, warehouse) -> None:
    body, headers = signed(event("evt_acct", account="acct_b"), SECRET_B)
    assert client.post("/stripe", content=body, headers=headers).status_code == 200
    unknown_body, unknown_headers = signed(event("evt_x", account="acct_zzz"), SECRET_A)
    assert client.post("/stripe", content=unknown_body, headers=unknown_headers).status_code == 400
    assert inbox(warehouse) == [("evt_acct", "ws-b", False)]


def tick(instance):
    with dg.build_sensor_context(instance=instance, resources=RESOURCES) as context:
        return stripe_webhook_sensor(context)


def test_sensor_requests_one_run_per_workspace_and_never_replays(client, warehouse) -> None:
    for event_id, ws, secret in (
        ("evt_2", "ws-a", SECRET_A),
        ("evt_1", "ws-a", SECRET_A),
        ("evt_3", "ws-b", SECRET_B),
    ):
        body, headers = signed(event(event_id), secret)  # delivered out of order
        assert client.post(f"/stripe/{ws}", content=body, headers=headers).status_code == 200
    with scanned_instance() as instance:
        result = tick(instance)
        by_ws = {r.partition_key: r for r in result.run_requests}
        assert sorted(by_ws) == ["ws-a", "ws-b"]
        assert by_ws["ws-a"].tags["kpi/events"] == "2"
        # the partitions the runs need are added in the same tick
        assert [r.partition_keys for r in result.dynamic_partitions_requests] == [["ws-a", "ws-b"]]
        assert all(processed for *_, processed in inbox(warehouse))
        assert isinstance(tick(instance), dg.SkipReason)

        # An event committed late (its id lower than processed ones would not matter) is picked up.
        body, headers = signed(event("evt_late"), SECRET_A)
        client.post("/stripe/ws-a", content=body, headers=headers)
        later = tick(instance)
        assert [r.partition_key for r in later.run_requests] == ["ws-a"]
        assert later.run_requests[0].run_key != by_ws["ws-a"].run_key


def test_late_commit_with_a_lower_id_is_not_skipped(warehouse, client) -> None:
    """A transaction that took an inbox id first but commits after a tick is still drained."""
    engine = warehouse.engine("kpi_control")
    slow = engine.connect()
    tx = slow.begin()
    slow.execute(
        sa.text(
            "INSERT INTO webhook_inbox (provider, event_id, workspace_id, event_type, payload) VALUES ('stripe', 'evt_slow', 'ws-a', 't', '{}')"
        )
    )
    body, headers = signed(event("evt_fast"), SECRET_B)
    client.post("/stripe/ws-b", content=body, headers=headers)
    with scanned_instance() as instance:
        first = tick(instance)
        assert [r.partition_key for r in first.run_requests] == ["ws-b"]
        tx.commit()
        slow.close()
        second = tick(instance)
        assert [r.partition_key for r in second.run_requests] == ["ws-a"]

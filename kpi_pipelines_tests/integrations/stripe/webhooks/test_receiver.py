"""The webhook receiver (real ASGI app, real PostgreSQL) and the sensor that drains its inbox."""

from __future__ import annotations

import json
import logging
import time
from decimal import Decimal

import dagster as dg
import pytest
import sqlalchemy as sa

from kpi_pipelines.definitions import PROVIDERS, RESOURCES
from kpi_pipelines.warehouse.control import Workspace, add_workspace
from kpi_pipelines_tests.canary import scanned_instance
from kpi_pipelines_tests.integrations.stripe.webhooks.support import (
    SECRET_A,
    SECRET_B,
    event,
    inbox,
    signed,
    stripe_connection,
)
from kpi_pipelines_tests.run_results import apply_partition_requests, tick_workspaces

[stripe_webhook_sensor] = PROVIDERS["stripe"].sensors


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
        _, headers = signed(good, SECRET_A)
        body = json.dumps({**good, "type": "invoice.paid"}).encode()
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


def test_sensor_requests_runs_over_the_workspaces_and_never_replays(client, warehouse) -> None:
    for event_id, ws, secret in (
        ("evt_2", "ws-a", SECRET_A),
        ("evt_1", "ws-a", SECRET_A),
        ("evt_3", "ws-b", SECRET_B),
    ):
        body, headers = signed(event(event_id), secret)  # delivered out of order
        assert client.post(f"/stripe/{ws}", content=body, headers=headers).status_code == 200
    with scanned_instance() as instance:
        result = tick(instance)
        # the partitions the runs need are added in the same tick, before the runs' ranges
        assert [
            (r.partitions_def_name, r.partition_keys) for r in result.dynamic_partitions_requests
        ] == [("stripe_workspaces", ["ws-a", "ws-b"])]
        apply_partition_requests(instance, result)
        # both workspaces in one run (their syncs each wait for their connection's lock)
        [grouped] = result.run_requests
        assert tick_workspaces(instance, "stripe", [grouped]) == [["ws-a", "ws-b"]]
        assert grouped.tags["kpi/events"] == "3" and grouped.tags["kpi/workspaces"] == "2"
        assert "kpi/connection" not in grouped.tags
        assert all(processed for *_, processed in inbox(warehouse))
        with warehouse.control() as db:  # the inbox names the run that took each event
            keys = db.execute(sa.text("SELECT DISTINCT run_key FROM webhook_inbox")).scalars()
            assert list(keys) == [grouped.run_key]
        assert isinstance(tick(instance), dg.SkipReason)

        # An event committed late (its id lower than processed ones would not matter) is
        # picked up: one workspace, a run of its own, held back by the queue like any sync
        # of its connection.
        body, headers = signed(event("evt_late"), SECRET_A)
        client.post("/stripe/ws-a", content=body, headers=headers)
        [later] = tick(instance).run_requests
        assert later.partition_key == "ws-a" and later.tags["kpi/connection"] == "ws-a/stripe"
        assert later.tags["kpi/events"] == "1"
        assert later.run_key != grouped.run_key


def test_the_sensor_groups_up_to_the_specs_size(client, warehouse, monkeypatch) -> None:
    monkeypatch.setenv("KPI_WORKSPACES_PER_RUN", "1")
    for ws, secret in (("ws-a", SECRET_A), ("ws-b", SECRET_B)):
        body, headers = signed(event(f"evt_{ws}"), secret)
        assert client.post(f"/stripe/{ws}", content=body, headers=headers).status_code == 200
    with scanned_instance() as instance:
        result = tick(instance)
        assert sorted(r.partition_key for r in result.run_requests) == ["ws-a", "ws-b"]
        assert len({r.run_key for r in result.run_requests}) == 2


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


def stored_payloads(warehouse) -> dict[tuple[str, str], str]:
    with warehouse.control() as db:
        rows = db.execute(
            sa.text("SELECT workspace_id, event_id, payload::text FROM webhook_inbox")
        )
        return {(ws, event_id): payload for ws, event_id, payload in rows}


def test_one_event_id_in_two_workspaces_is_stored_for_each(client, warehouse) -> None:
    for path, secret in (("/stripe/ws-a", SECRET_A), ("/stripe/ws-b", SECRET_B)):
        body, headers = signed(event("evt_same"), secret)
        response = client.post(path, content=body, headers=headers)
        assert response.json()["status"] == "stored"
    # ... and through the Connect endpoint, for two accounts.
    for account, secret in (("acct_a", SECRET_A), ("acct_b", SECRET_B)):
        body, headers = signed(event("evt_connect", account=account), secret)
        assert client.post("/stripe", content=body, headers=headers).json()["status"] == "stored"
    body, headers = signed(event("evt_same"), SECRET_A)
    again = client.post("/stripe/ws-a", content=body, headers=headers)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert sorted((ws, e) for e, ws, _ in inbox(warehouse)) == [
        ("ws-a", "evt_connect"),
        ("ws-a", "evt_same"),
        ("ws-b", "evt_connect"),
        ("ws-b", "evt_same"),
    ]


def test_a_verified_event_is_stored_exactly_as_received(client, warehouse) -> None:
    # What a re-serialization would change: precision, big integers, escapes, key order.
    body = (
        b'{\n  "id": "evt_exact", "object": "event", "type": "invoice.paid", "created": 1,\n'
        b'  "data": {"object": {"amount": 12345678901234567890123, "rate": 0.1000000000000000055511,'
        b' "name": "Caf\\u00e9 \\ud83d\\ude00 \xe2\x82\xac", "z": 1, "a": [1.0, -0, 1E+2]}}\n}'
    )
    _, headers = signed(body, SECRET_A)
    assert client.post("/stripe/ws-a", content=body, headers=headers).status_code == 200
    [payload] = stored_payloads(warehouse).values()
    as_decimal = {"parse_float": Decimal}
    assert json.loads(payload, **as_decimal) == json.loads(body, **as_decimal)
    with warehouse.control() as db:
        same = db.execute(
            sa.text("SELECT payload = CAST(:sent AS jsonb) FROM webhook_inbox"),
            {"sent": body.decode()},
        ).scalar()
    assert same


def test_connect_events_go_to_the_verified_connection_of_their_account(
    client, warehouse, monkeypatch
) -> None:
    # ws-c has proved acct_b too (it holds a key of it), with its own secret: the signature
    # picks the connection.
    monkeypatch.setenv("WS_WS_C__STRIPE_WHSEC", "whsec_test_secret_for_workspace_c")
    add_workspace(warehouse, Workspace(id="ws-c", name="C"))
    stripe_connection(warehouse, "ws-c", "WS_WS_C__STRIPE_WHSEC", "acct_b", proved=True)
    # ws-a's second connection has no account_id: the Connect endpoint does not consider it.
    monkeypatch.setenv("WS_WS_A__STRIPE_DIRECT", "whsec_test_secret_direct")
    stripe_connection(warehouse, "ws-a", "WS_WS_A__STRIPE_DIRECT", None, name="direct")

    for event_id, secret, status in (
        ("evt_c", "whsec_test_secret_for_workspace_c", 200),
        ("evt_b", SECRET_B, 200),
        ("evt_direct", "whsec_test_secret_direct", 400),
    ):
        body, headers = signed(event(event_id, account="acct_b"), secret)
        assert client.post("/stripe", content=body, headers=headers).status_code == status
    # The per-workspace endpoint knows every connection of its workspace.
    body, headers = signed(event("evt_direct"), "whsec_test_secret_direct")
    assert client.post("/stripe/ws-a", content=body, headers=headers).status_code == 200
    assert sorted((ws, e) for e, ws, _ in inbox(warehouse)) == [
        ("ws-a", "evt_direct"),
        ("ws-b", "evt_b"),
        ("ws-c", "evt_c"),
    ]


def test_an_account_claimed_by_two_verified_connections_is_refused_and_logged(
    client, warehouse, monkeypatch, caplog
) -> None:
    # ws-c was given the same signing secret as ws-b and proved the same account (its key
    # belongs to it too): only the operator can say which workspace should have the events.
    monkeypatch.setenv("WS_WS_C__STRIPE_WHSEC", SECRET_B)
    add_workspace(warehouse, Workspace(id="ws-c", name="C"))
    stripe_connection(warehouse, "ws-c", "WS_WS_C__STRIPE_WHSEC", "acct_b", proved=True)
    body, headers = signed(event("evt_which", account="acct_b"), SECRET_B)
    with caplog.at_level(logging.WARNING, logger="kpi_pipelines.webhooks"):
        response = client.post("/stripe", content=body, headers=headers)
    assert response.status_code == 400
    assert inbox(warehouse) == []
    [ambiguity] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "acct_b" in ambiguity.getMessage()
    assert "ws-b/default, ws-c/default" in ambiguity.getMessage()
    assert SECRET_B not in caplog.text

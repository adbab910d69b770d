"""A Connect `account_id` routes that account's events on `/stripe` only once the connection's
own API key has been shown, by Stripe, to belong to it (`GET /v1/account` at each sync). A
tenant naming another workspace's account can then neither receive its events nor block
them from their owner."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
import psycopg
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from kpi_pipelines.automation.partitions import register_partition
from kpi_pipelines.demo import materialize_provider
from kpi_pipelines.integrations.stripe.webhooks.app import SECRETS_TTL_SECONDS, create_app
from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.sandbox.stripe import StripeSandbox
from kpi_pipelines.sandbox.stripe import create_app as sandbox_app
from kpi_pipelines.warehouse.control import (
    Connection,
    Workspace,
    add_connection,
    add_workspace,
    list_connections,
)
from kpi_pipelines.warehouse.database import Warehouse
from kpi_pipelines_tests.canary import scanned_instance
from kpi_pipelines_tests.integrations.stripe.webhooks.support import (
    SECRET_B,
    Clock,
    event,
    inbox,
    signed,
    stripe_connection,
)
from kpi_pipelines_tests.run_results import failure_message

PLATFORM_SECRET = "whsec_test_connect_platform_endpoint"
VICTIM, MALLORY = "acct_1VictimConnected", "acct_1MalloryOwnAcct"


def proofs(warehouse: Warehouse) -> dict[str, str | None]:
    with warehouse.control() as db:
        return {c.workspace_id: c.proved_account for c in list_connections(db, provider="stripe")}


@dataclass
class Platform:
    """Two connected Stripe accounts served on one host, each with its own key, and the
    platform's Connect endpoint secret that signs both accounts' events."""

    warehouse: Warehouse
    instance: dg.DagsterInstance

    def connect(self, workspace_id: str, account_id: str) -> None:
        add_workspace(self.warehouse, Workspace(id=workspace_id, name=workspace_id))
        variables = {
            "api_key": f"WS_{workspace_id.upper()}__STRIPE_KEY",
            "webhook_secret": f"WS_{workspace_id.upper()}__STRIPE_WHSEC",
        }
        add_connection(
            self.warehouse,
            Connection(
                workspace_id=workspace_id,
                provider="stripe",
                settings={"account_id": account_id},
                secret_env=variables,
            ),
        )
        register_partition(self.instance, workspace_id, "stripe")

    def sync(self, workspace_id: str) -> dg.ExecuteInProcessResult:
        return materialize_provider(self.warehouse, self.instance, "stripe", workspace_id)


@pytest.fixture
def platform(warehouse, monkeypatch) -> Iterator[Platform]:
    def account(account_id: str, key: str) -> StripeSandbox:
        # One currency: the workspaces report in it, so the syncs need no exchange rates.
        return StripeSandbox(
            seed=3, customers=2, currencies=("usd",), account_id=account_id, api_key=key
        )

    victim = account(VICTIM, "sk_test_victimKey0000000000000000")
    mallory = account(MALLORY, "sk_test_malloryKey000000000000000")
    with LoopbackServer(sandbox_app([victim, mallory])) as server, scanned_instance() as instance:
        monkeypatch.setenv("KPI_STRIPE_BASE_URL", server.base_url)
        for workspace_id, key in (("victim", victim.api_key), ("mallory", mallory.api_key)):
            monkeypatch.setenv(f"WS_{workspace_id.upper()}__STRIPE_KEY", key)
            # Both workspaces belong to one Connect platform: its endpoint secret is theirs.
            monkeypatch.setenv(f"WS_{workspace_id.upper()}__STRIPE_WHSEC", PLATFORM_SECRET)
        yield Platform(warehouse, instance)


def deliver(client: TestClient, event_id: str, account: str) -> int:
    body, headers = signed(event(event_id, account=account), PLATFORM_SECRET)
    return client.post("/stripe", content=body, headers=headers).status_code


def test_a_tenant_naming_another_workspaces_account_gets_none_of_its_events(
    platform, warehouse, caplog
) -> None:
    platform.connect("victim", VICTIM)
    platform.connect("mallory", VICTIM)  # names the victim's account, holds its own key
    clock = Clock()
    client = TestClient(create_app(warehouse, clock=clock))

    # Nobody has proved the account yet: refused (Stripe retries for three days), and
    # the operator is told who claims it.
    with caplog.at_level(logging.WARNING, logger="kpi_pipelines.webhooks"):
        assert deliver(client, "evt_early", VICTIM) == 400
    assert "claimed without proof by mallory/default, victim/default" in caplog.text

    # Mallory's sync asks Stripe which account its key belongs to: not the one it names.
    attack = platform.sync("mallory")
    assert not attack.success
    message = failure_message(attack)
    assert f"has account_id {VICTIM!r}, but its api_key belongs to the Stripe account" in message
    assert f"set account_id to {MALLORY!r}" in message
    assert proofs(warehouse) == {"mallory": None, "victim": None}

    # The victim's own key proves its claim; its events now reach it, Mallory's claim
    # notwithstanding (it neither receives them nor makes them ambiguous).
    synced = platform.sync("victim")
    assert synced.success, failure_message(synced)
    assert proofs(warehouse) == {"mallory": None, "victim": VICTIM}
    clock.advance(SECRETS_TTL_SECONDS)  # the receiver reads the connections again
    assert deliver(client, "evt_late", VICTIM) == 200
    assert inbox(warehouse) == [("evt_late", "victim", False)]


def test_an_account_only_an_unproved_connection_claims_is_refused_and_logged(
    client, warehouse, workspace_a, monkeypatch, caplog
) -> None:
    # ws-c signs like ws-b (one platform) and claims an account nobody has proved.
    monkeypatch.setenv("WS_WS_C__STRIPE_WHSEC", SECRET_B)
    add_workspace(warehouse, Workspace(id="ws-c", name="C"))
    stripe_connection(warehouse, "ws-c", "WS_WS_C__STRIPE_WHSEC", "acct_c")
    body, headers = signed(event("evt_c", account="acct_c"), SECRET_B)
    with caplog.at_level(logging.WARNING, logger="kpi_pipelines.webhooks"):
        response = client.post("/stripe", content=body, headers=headers)
    assert response.status_code == 400
    assert inbox(warehouse) == []
    assert "'acct_c' is the account_id of ws-c/default without proof" in caplog.text
    assert "claimed without proof by ws-c/default" in caplog.text


def test_an_unproved_claim_does_not_block_the_account_owner(client, warehouse, monkeypatch) -> None:
    # ws-c signs like ws-b (one platform) and names ws-b's account, which ws-b proved.
    monkeypatch.setenv("WS_WS_C__STRIPE_WHSEC", SECRET_B)
    add_workspace(warehouse, Workspace(id="ws-c", name="C"))
    stripe_connection(warehouse, "ws-c", "WS_WS_C__STRIPE_WHSEC", "acct_b")
    body, headers = signed(event("evt_b", account="acct_b"), SECRET_B)
    response = client.post("/stripe", content=body, headers=headers)
    assert response.status_code == 200 and response.json()["status"] == "stored"
    assert inbox(warehouse) == [("evt_b", "ws-b", False)]


def test_changing_a_connection_drops_its_proof(warehouse, connections) -> None:
    def resave(settings: dict, secret_env: dict) -> None:
        add_connection(
            warehouse,
            Connection(
                workspace_id="ws-a", provider="stripe", settings=settings, secret_env=secret_env
            ),
        )

    same = ({"account_id": "acct_a"}, {"webhook_secret": "WS_WS_A__STRIPE_WHSEC"})
    resave(*same)
    assert proofs(warehouse)["ws-a"] == "acct_a"  # saved again as it was: still proved
    resave({"account_id": "acct_b"}, same[1])
    assert proofs(warehouse)["ws-a"] is None
    stripe_connection(warehouse, "ws-a", "WS_WS_A__STRIPE_WHSEC", "acct_a", proved=True)
    resave(same[0], {"webhook_secret": "WS_WS_A__STRIPE_WHSEC", "api_key": "WS_WS_A__KEY"})
    assert proofs(warehouse)["ws-a"] is None
    assert proofs(warehouse)["ws-b"] == "acct_b"


@pytest.mark.parametrize("assignment", ["proved_account = 'acct_b'", "account_proved_at = now()"])
def test_a_tenant_session_cannot_prove_an_account(warehouse, connections, assignment: str) -> None:
    with (
        pytest.raises(sa.exc.ProgrammingError) as raised,
        warehouse.tenant("ws-a", actor="test") as db,
    ):
        db.execute(sa.text(f"UPDATE connections SET {assignment}"))
    assert isinstance(raised.value.orig, psycopg.errors.InsufficientPrivilege)
    assert proofs(warehouse) == {"ws-a": "acct_a", "ws-b": "acct_b"}

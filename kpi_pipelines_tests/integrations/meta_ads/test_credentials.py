"""Tokens through the real pipeline: an expired or invalidated token (Meta's code 190, sent
as HTTP 400) fails the sync with the reconnect message every provider gives, keeping what
was stored; a token that cannot see the account says so; workspaces stay apart."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kpi_pipelines.warehouse.control import Connection, add_connection
from kpi_pipelines.warehouse.tenant_data import read_points
from kpi_pipelines_tests.integrations.meta_ads.conftest import MetaWorld, expected
from kpi_pipelines_tests.run_results import failure_message

RECENT = {"history_days": 40}
RECONNECT = "Reconnect this workspace to meta_ads"


def test_a_token_expiring_mid_sync_asks_to_reconnect_and_keeps_what_was_stored(
    meta: MetaWorld,
) -> None:
    meta.workspace("acme", "1001")
    meta.sandbox.expire_tokens_after(12)  # after the first window
    result = meta.sync("acme", RECENT)
    assert not result.success
    message = failure_message(result)
    assert (
        "meta_ads rejected the credentials (HTTP 400): (190/463) Error validating access token"
        in message
    )
    assert RECONNECT in message
    assert meta.stored("acme")  # the first window's points stay


def test_an_invalidated_token_asks_to_reconnect_at_once(meta: MetaWorld) -> None:
    meta.workspace("acme", "1001")
    meta.sandbox.faults.revoke()
    result = meta.sync("acme", RECENT)
    assert not result.success
    assert "(190/460)" in failure_message(result) and RECONNECT in failure_message(result)
    assert meta.stored("acme") == {}


def test_a_token_that_cannot_see_the_account_says_so(meta: MetaWorld) -> None:
    meta.workspace("acme", "1001")
    meta.sandbox.add_account("1002")
    add_connection(  # the same connection, now naming an account its token cannot read
        meta.warehouse,
        Connection(
            workspace_id="acme",
            provider="meta_ads",
            settings={"account_id": "1002"},
            secret_env={"access_token": "WS_ACME__META_TOKEN"},
        ),
    )
    result = meta.sync("acme", RECENT)
    assert not result.success
    assert (
        "Object with ID 'act_1002' does not exist, cannot be loaded due to missing permissions"
        in failure_message(result)
    )


def test_workspaces_read_only_their_own_accounts(meta: MetaWorld) -> None:
    acme = meta.workspace("acme", "1001")
    globex = meta.workspace("globex", "1002", account={"time_zone": "Europe/Berlin"})
    for workspace in ("acme", "globex"):
        assert meta.sync(workspace, RECENT).success
    for workspace, account in (("acme", acme), ("globex", globex)):
        today = account.local_day()
        assert meta.stored(workspace) == pytest.approx(
            expected(account, today - timedelta(days=39), today)
        )
        assert {p.metadata["account_id"] for p in read_points(meta.warehouse, workspace)} == {
            account.account_id
        }
    # A connection may name only its own workspace's variables, never another's token.
    with pytest.raises(ValueError, match="WS_ACME__META_TOKEN"):
        add_connection(
            meta.warehouse,
            Connection(
                workspace_id="globex",
                provider="meta_ads",
                name="stolen",
                settings={"account_id": "1001"},
                secret_env={"access_token": "WS_ACME__META_TOKEN"},
            ),
        )

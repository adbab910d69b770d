"""Stored OAuth grants on the real warehouse, with GA4 against the Google sandbox: sealed at
rest, out of every tenant session's reach but through the owner's functions, scoped to
their workspace, refreshed by two runs at once without losing a rotated token, re-keyed,
and gone with their connection."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken
from typer.testing import CliRunner

from kpi_pipelines.cli import app
from kpi_pipelines.integrations.google_analytics.adapter import GoogleAnalyticsAdapter
from kpi_pipelines.integrations.google_analytics.spec import SPEC
from kpi_pipelines.integrations.shared.connection_settings import save_connection
from kpi_pipelines.integrations.shared.grants import GRANT_KEYS_VARIABLE, GrantKeyError
from kpi_pipelines.integrations.shared.oauth import oauth_secrets
from kpi_pipelines.models import SyncResult
from kpi_pipelines.warehouse.control import (
    Connection,
    add_connection,
    get_connection,
    remove_workspace,
)
from kpi_pipelines.warehouse.database import Warehouse
from kpi_pipelines_tests.integrations.google_analytics.conftest import GA4World
from kpi_pipelines_tests.integrations.google_analytics.test_connect import opened, stored_grants
from kpi_pipelines_tests.integrations.google_sandbox import (
    connect_with_consent,
    grant_keys,
    new_grant_key,
    sync_in_thread,
)
from kpi_pipelines_tests.run_results import failure_message

GRANT_FUNCTIONS = (
    "kpi.store_oauth_grant(bigint, bytea)",
    "kpi.oauth_grant_for_update(bigint)",
    "kpi.replace_oauth_grant(bigint, bytea, bigint)",
    "kpi.oauth_grants_for_update()",
)


@pytest.fixture
def ga4(warehouse, dagster_instance, monkeypatch) -> Iterator[GA4World]:
    with GA4World.served(warehouse, dagster_instance, monkeypatch, seed=7) as world:
        yield world


def _connected(world: GA4World, workspace_id: str, property_id: str) -> None:
    world.property(property_id, history_days=8)
    world.connect_with_consent(workspace_id, {"property_id": property_id, "lookback_days": 2})


def _connection_id(warehouse: Warehouse, workspace_id: str) -> int:
    with warehouse.control() as db:
        connection_id = get_connection(db, workspace_id, "google_analytics").id
    assert connection_id is not None
    return connection_id


def _refused(db: sa.Connection, statement: str, **params: object) -> Exception:
    with pytest.raises(sa.exc.DBAPIError) as raised, db.begin_nested():
        db.execute(sa.text(statement), params)
    return raised.value.orig  # type: ignore[return-value]


def test_a_stored_grant_is_sealed_and_no_tenant_session_touches_the_table(ga4) -> None:
    _connected(ga4, "ws-a", "4001")
    [row] = stored_grants(ga4)
    grant = opened(row)
    issued = ga4.sandbox.oauth.consent.codes[-1]
    assert grant.refresh_token == issued.grant and grant.access_token
    # the row holds no token, in any form PostgreSQL shows it (the secret canary then scans
    # every table for every token this test was issued)
    with ga4.warehouse.engine(None).connect() as db:
        shown = db.execute(sa.text("SELECT g::text FROM kpi.oauth_grants g")).scalar_one()
    for token in (grant.refresh_token, grant.access_token, issued.code):
        assert token.encode() not in bytes(row.sealed) and token not in shown
    with ga4.warehouse.tenant("ws-a", actor="run:attacker") as db:
        for statement in (
            "SELECT * FROM kpi.oauth_grants",
            "SELECT 1 FROM kpi.oauth_grants FOR UPDATE",
            "INSERT INTO kpi.oauth_grants (connection_id, workspace_id, provider, sealed,"
            " granted_by) SELECT connection_id, workspace_id, provider, sealed, 'x'"
            " FROM kpi.oauth_grants",
            "UPDATE kpi.oauth_grants SET sealed = 'x'",
            "DELETE FROM kpi.oauth_grants",
            "LOCK TABLE kpi.oauth_grants IN ACCESS EXCLUSIVE MODE",
        ):
            assert isinstance(_refused(db, statement), psycopg.errors.InsufficientPrivilege)
    with ga4.warehouse.engine(None).connect() as db:
        for function in GRANT_FUNCTIONS:
            definer, config, tenant, control = db.execute(
                sa.text(
                    "SELECT p.prosecdef, p.proconfig,"
                    " has_function_privilege('kpi_tenant', p.oid, 'EXECUTE'),"
                    " has_function_privilege('kpi_control', p.oid, 'EXECUTE')"
                    " FROM pg_proc p WHERE p.oid = CAST(:f AS regprocedure)"
                ),
                {"f": function},
            ).one()
            assert definer and config == ["search_path=pg_catalog, pg_temp"], function
            assert tenant and not control, function
        forced = db.execute(
            sa.text(
                "SELECT relrowsecurity AND relforcerowsecurity FROM pg_class"
                " WHERE oid = 'kpi.oauth_grants'::regclass"
            )
        ).scalar_one()
    assert forced


def test_a_workspace_cannot_read_store_or_replace_another_workspaces_grant(ga4) -> None:
    _connected(ga4, "ws-a", "4002")
    _connected(ga4, "ws-b", "4003")
    a, b = _connection_id(ga4.warehouse, "ws-a"), _connection_id(ga4.warehouse, "ws-b")
    before = stored_grants(ga4)
    with ga4.warehouse.tenant("ws-a", actor="run:attacker") as db:
        assert db.execute(
            sa.text("SELECT sealed, version FROM kpi.oauth_grant_for_update(:id)"), {"id": b}
        ).one() == (None, None)
        mine = db.execute(sa.text("SELECT connection_id FROM kpi.oauth_grants_for_update()"))
        assert mine.scalars().all() == [a]
        refusal = _refused(db, "SELECT kpi.store_oauth_grant(:id, 'x')", id=b)
        assert isinstance(refusal, psycopg.errors.InsufficientPrivilege)
        assert "not a connection of the transaction's workspace" in str(refusal)
        refusal = _refused(db, "SELECT kpi.replace_oauth_grant(:id, 'x', 1)", id=b)
        assert isinstance(refusal, psycopg.errors.SerializationFailure)
    # a session that names its scope itself has none (0004's proof), so no grant at all
    with ga4.warehouse.unscoped_tenant() as db:
        db.execute(sa.text("SELECT set_config('kpi.workspace_id', 'ws-b', true)"))
        db.execute(sa.text("SELECT set_config('kpi.actor', 'run:attacker', true)"))
        refusal = _refused(db, "SELECT * FROM kpi.oauth_grant_for_update(:id)", id=b)
        assert "scoped by the write path" in str(refusal)
    assert stored_grants(ga4) == before
    # the one lock a tenant session can take is its own grant's row: ws-b refreshes past it
    ga4.sandbox.expire_access_tokens()
    with ga4.warehouse.tenant("ws-a", actor="run:attacker") as db:
        db.execute(sa.text("SELECT * FROM kpi.oauth_grant_for_update(:id)"), {"id": a})
        assert ga4.sync("ws-b").success
    assert [row.version for row in stored_grants(ga4)] == [1, 2]


def test_two_runs_refreshing_a_rotating_grant_at_once_both_sync_on_the_last_token(ga4) -> None:
    ga4.sandbox.oauth.rotate_refresh_tokens = True  # each refresh retires the token it used
    _connected(ga4, "ws-a", "4004")
    first_refresh = ga4.sandbox.oauth.consent.codes[-1].grant
    # Google stops taking the stored access token, and answers the first refresh a second
    # late: both runs are refreshing at once, with the same grant in hand.
    ga4.sandbox.expire_access_tokens()
    ga4.sandbox.faults.slow_next(1, 1.0, api="oauth")
    outcomes: dict[str, SyncResult | Exception] = {}
    threads = [
        sync_in_thread(
            ga4.warehouse,
            GoogleAnalyticsAdapter(backoff_base_seconds=0.01),
            "ws-a",
            "google_analytics",
            f"race-{n}",
            outcomes,
        )
        for n in (1, 2)
    ]
    for thread in threads:
        thread.join(timeout=120)
    assert all(isinstance(o, SyncResult) and o.success for o in outcomes.values()), outcomes
    # one refresh, never the retired token twice; the stored grant is the last one issued
    assert [(r.grant_type, r.status) for r in ga4.sandbox.oauth.requests] == [
        ("authorization_code", 200),
        ("refresh_token", 200),
    ]
    rotated = ga4.sandbox.oauth.refresh_tokens[first_refresh].replaced_by
    assert rotated is not None and ga4.sandbox.oauth.refresh_tokens[rotated].replaced_by is None
    [row] = stored_grants(ga4)
    assert opened(row).refresh_token == rotated and row.version == 2


def test_an_old_key_still_opens_grants_and_rotate_key_reseals_them_under_the_new(
    ga4, monkeypatch
) -> None:
    old = os.environ[GRANT_KEYS_VARIABLE]  # the world's one key
    _connected(ga4, "ws-a", "4005")
    _connected(ga4, "ws-b", "4006")
    new = new_grant_key()
    grant_keys(monkeypatch, new, old)  # the new key first: it seals, both open
    assert ga4.sync("ws-a").success
    rotated = CliRunner().invoke(app, ["grants", "rotate-key"], catch_exceptions=False)
    print(rotated.output)
    assert rotated.exit_code == 0, rotated.output
    assert "2 grant(s) of 2 workspace(s) sealed with the newest key" in rotated.output
    for row in stored_grants(ga4):
        Fernet(new).decrypt(bytes(row.sealed))
        with pytest.raises(InvalidToken):
            Fernet(old).decrypt(bytes(row.sealed))
        assert row.version == 2 and row.updated_by.startswith("user:")
    grant_keys(monkeypatch, new)  # the old key removed
    assert ga4.sync("ws-b").success
    grant_keys(monkeypatch, old)  # the wrong key only: said, not guessed
    result = ga4.sync("ws-a")
    assert not result.success
    assert (
        "no key in KPI_GRANT_KEYS opens the stored grant of workspace 'ws-a''s"
        " google_analytics connection 'default'"
    ) in failure_message(result)
    refused = CliRunner().invoke(app, ["grants", "rotate-key"], catch_exceptions=False)
    print(refused.output)
    assert refused.exit_code == 1
    assert "2 grant(s) no key in KPI_GRANT_KEYS opens" in refused.output
    assert "workspace 'ws-b''s google_analytics connection 'default'" in refused.output


def test_without_a_usable_key_connect_stops_before_the_consent_page(ga4, monkeypatch) -> None:
    monkeypatch.delenv(GRANT_KEYS_VARIABLE)
    shown: list[str] = []
    with pytest.raises(GrantKeyError, match="KPI_GRANT_KEYS is not set"):
        ga4.connect_with_consent("ws-a", {"property_id": "4007"}, browser=shown.append)
    assert shown == []
    bad = "not-a-fernet-key-but-a-long-secret-value"
    grant_keys(monkeypatch, new_grant_key(), bad)
    with pytest.raises(GrantKeyError, match="key 2 of 2 is not a Fernet key") as raised:
        ga4.connect_with_consent("ws-b", {"property_id": "4007"}, browser=shown.append)
    assert bad not in str(raised.value) and shown == []


def test_a_connection_with_no_variable_and_no_grant_says_how_to_connect(ga4) -> None:
    ga4.property("4008", history_days=3)
    ga4.unconnected("ws-a", {"property_id": "4008"})
    result = ga4.sync("ws-a")
    assert not result.success
    assert (
        "workspace 'ws-a''s google_analytics connection 'default' has no stored grant and"
        " names no refresh-token variable: grant access with"
        " `kpi-pipelines connect ws-a google_analytics`"
    ) in failure_message(result)


def test_connect_replaces_a_refresh_token_variable_and_the_grant_goes_with_its_workspace(
    ga4,
) -> None:
    ga4.property("4009", history_days=3)
    ga4.workspace("ws-a", "4009")  # a connection naming a refresh-token variable
    connected = connect_with_consent(ga4.warehouse, "google_analytics", "ws-a")
    assert connected.dropped_variable == "WS_WS_A__GOOGLE_REFRESH_TOKEN"
    assert "refresh_token" not in connected.connection.secret_env
    assert ga4.sync("ws-a").success
    # replacing the connection (same name) keeps its grant; removing the workspace drops it
    add_connection(
        ga4.warehouse,
        Connection(
            workspace_id="ws-a", provider="google_analytics", settings={"property_id": "4009"}
        ),
    )
    assert len(stored_grants(ga4)) == 1 and ga4.sync("ws-a").success
    remove_workspace(ga4.warehouse, "ws-a")
    assert stored_grants(ga4) == []


def test_a_provider_that_rotates_refresh_tokens_takes_no_variable_for_one(
    warehouse, workspace_a
) -> None:
    assert SPEC.oauth is not None
    flow = dataclasses.replace(SPEC.oauth, rotates_refresh_tokens=True)
    rotating = dataclasses.replace(SPEC, oauth=flow, secrets=oauth_secrets(flow, "read"))
    assert [s.purpose for s in rotating.secrets] == ["client_id", "client_secret"]
    connection = Connection(
        workspace_id="ws-a",
        provider="google_analytics",
        settings={"property_id": "1"},
        secret_env={"refresh_token": "WS_WS_A__REFRESH_TOKEN"},
    )
    with pytest.raises(ValueError, match="kpi-pipelines connect ws-a google_analytics"):
        save_connection(warehouse, connection, rotating)
    saved = save_connection(warehouse, connection.model_copy(update={"secret_env": {}}), rotating)
    assert saved.id is not None

"""The fault catalogue both Google providers are held to, and the comparisons it is judged by.

The rule: every failure path loses nothing. A fault the adapter can ride out ends with the
workspace's tables identical to those of a calm run of the same sandbox state; a fault that
must fail the run fails it with a clear, secret-free message, leaves only whole committed units
behind, and the next calm run brings the tables to that identical calm state.

Each case is scripted on the sandbox to strike after `after` API calls (mid-sync) and is
shared by the GA4 and the Sheets catalogues (`test_fault_catalogue.py` of each).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from kpi_pipelines.sandbox.google import DEMO_CLIENT_ID, DEMO_REFRESH_TOKEN, Fault, GoogleSandbox
from kpi_pipelines.sandbox.google._common import Api, FaultKind
from kpi_pipelines.warehouse.control import Connection, list_connections
from kpi_pipelines.warehouse.database import Warehouse
from kpi_pipelines_tests.canary import leaks
from kpi_pipelines_tests.integrations.google_sandbox import GoogleWorld
from kpi_pipelines_tests.run_results import failure_message

# Attempts per request in catalogue runs (the adapters' max_attempts): storms one shorter
# than this are ridden out, outages longer than it fail the run.
RETRY_BUDGET = 4
# The adapters' timeout in the slow cases, and how long a slow response takes (past it).
TIMEOUT = 1.0
SLOW = 2.5
DOWN = RETRY_BUDGET + 2  # an outage outlasting the retry budget

Script = Callable[[GoogleSandbox, Api, int], None]


@dataclass(frozen=True)
class FaultCase:
    """One entry of the catalogue: how to script it, and what the run must end with."""

    name: str
    script: Script  # (sandbox, api, after): arm the fault to strike after `after` API calls
    fails_with: str | None = None  # None: the run recovers; else what its failure must say
    adapter: Mapping[str, Any] = field(default_factory=dict)  # adapter settings it needs
    refreshes: int = 0  # access-token refreshes it causes beyond the first token
    needs_reconnect: bool = False  # the user must grant access again before the next run

    def __str__(self) -> str:
        return self.name


def _fault(kind: FaultKind, **options: Any) -> Script:
    def script(sandbox: GoogleSandbox, api: Api, after: int) -> None:
        sandbox.add_fault(Fault(kind, api=api, after=after, **options))

    return script


def _expire_access_tokens(sandbox: GoogleSandbox, api: Api, after: int) -> None:
    sandbox.expire_access_tokens_after(after)


def _revoke_grant(sandbox: GoogleSandbox, api: Api, after: int) -> None:
    sandbox.revoke_after(DEMO_REFRESH_TOKEN, after)


UNAVAILABLE = f"is unavailable after {RETRY_BUDGET} attempts"
SLOW_ADAPTER = {"timeout_seconds": TIMEOUT}

RECOVERABLE = (
    FaultCase("429-storm", _fault("quota", times=RETRY_BUDGET - 1)),
    FaultCase("500-burst", _fault("status", status=500, times=RETRY_BUDGET - 1)),
    FaultCase("503-burst", _fault("status", status=503, times=RETRY_BUDGET - 1)),
    FaultCase("html-502-burst", _fault("malformed", times=RETRY_BUDGET - 1)),
    # Two, not three: on a busy machine an ordinary response may also miss the timeout.
    FaultCase("slow", _fault("delay", delay=SLOW, times=2), adapter=SLOW_ADAPTER),
    FaultCase("body-cut-short", _fault("cut", times=RETRY_BUDGET - 1)),
    # A 200 whose body is cut short in transit is asked for again, like a 5xx.
    FaultCase("200-not-json", _fault("truncate", times=RETRY_BUDGET - 1)),
    FaultCase("access-token-expires", _expire_access_tokens, refreshes=1),
)
FATAL = (
    FaultCase(
        "200-not-json-past-budget",
        _fault("truncate", times=DOWN),
        fails_with=f"{UNAVAILABLE} over",  # "... : last error HTTP 200 with a body that is not JSON"
    ),
    FaultCase("down-503", _fault("status", status=503, times=DOWN), fails_with=UNAVAILABLE),
    FaultCase("down-html-502", _fault("malformed", times=DOWN), fails_with=UNAVAILABLE),
    FaultCase(
        "down-timeouts",
        _fault("delay", delay=SLOW, times=DOWN),
        fails_with=UNAVAILABLE,
        adapter=SLOW_ADAPTER,
    ),
    FaultCase("429-past-budget", _fault("quota", times=DOWN), fails_with=UNAVAILABLE),
    FaultCase(
        "refresh-token-revoked",
        _revoke_grant,
        fails_with="Reconnect this workspace",
        needs_reconnect=True,
    ),
)


def catalogue(cases: tuple[FaultCase, ...]) -> Any:
    """`cases` as pytest parameters named after the fault."""
    return pytest.mark.parametrize("case", cases, ids=str)


# -- comparing tables ----------------------------------------------------------------------------

# What a row says, per tenant table. Left out: the workspace (a twin has its own), when a row was
# written (source_ts falls back to the fetch time, changed_at, fetched_at, last_sync_at, at),
# which run wrote it (changed_by, run_id, actor) and sequence ids.
CONTENT: dict[str, tuple[str, ...]] = {
    "kpi_data": (
        "source",
        "metric",
        '"timestamp"',
        "dimensions_key",
        "dimensions",
        "value",
        "metadata",
        "origin",
    ),
    "raw_records": ("source", "stream", "record_id", "payload", "source_updated_at"),
    "sync_state": ("source", "stream", "cursor"),
    "audit_log": (
        "source",
        "metric",
        '"timestamp"',
        "dimensions_key",
        "action",
        "old_value",
        "new_value",
    ),
    "manual_overrides": (
        "source",
        "metric",
        '"timestamp"',
        "dimensions_key",
        "value",
        "reason",
        "superseded_at",
    ),
}

Rows = dict[str, list[dict[str, Any]]]


def tenant_rows(warehouse: Warehouse, workspace_id: str) -> Rows:
    """Every row of a workspace's tenant tables, as the owner sees it (full rows, sorted)."""
    out: Rows = {}
    with warehouse.engine(None).connect() as db:
        for table, columns in CONTENT.items():
            rows = db.execute(
                sa.text(f"SELECT {', '.join(columns)} FROM kpi.{table} WHERE workspace_id = :ws"),
                {"ws": workspace_id},
            ).mappings()
            out[table] = sorted((dict(row) for row in rows), key=repr)
    return out


def assert_identical(faulted: Rows, calm: Rows) -> None:
    """Table by table, so that a failure names the table that differs."""
    assert faulted.keys() == calm.keys()
    for table in calm:
        assert faulted[table] == calm[table], table


def assert_rode_out(
    world: GoogleWorld,
    case: FaultCase,
    result: dg.ExecuteInProcessResult,
    *,
    calm: Rows,
    issued: int,
) -> None:
    """The run rode the fault out: it succeeded, the fault did strike, one access token
    (plus those the case forces) was issued, and the faulted workspace's tables are the calm
    twin's, full rows (points, cursors, one audit row per change: none written twice)."""
    assert result.success, failure_message(result)
    assert world.sandbox.faults.pending == []
    assert world.sandbox.oauth.issued_count() - issued == 1 + case.refreshes
    assert_identical(tenant_rows(world.warehouse, "faulted"), calm)
    assert tenant_rows(world.warehouse, "calm") == calm
    assert connection_of(world, "faulted").consecutive_failures == 0


# -- judging a failed run ------------------------------------------------------------------------


def assert_clear_failure(result: dg.ExecuteInProcessResult, says: str) -> str:
    """The run failed with a one-line-per-reason message that says `says` and no secret."""
    assert not result.success
    message = failure_message(result)
    assert says in message, message
    assert "Traceback" not in message
    assert leaks([("failure description", message)]) == []
    return message


def connection_of(world: GoogleWorld, workspace_id: str) -> Connection:
    with world.warehouse.control() as db:
        [connection] = list_connections(db, workspace_id=workspace_id)
    return connection


def reconnect(world: GoogleWorld, workspace_id: str) -> None:
    """What the user does after invalid_grant: grant access again, which issues a new
    refresh token into the variable the workspace's connection names."""
    token = f"1//reconnected-{secrets.token_urlsafe(16)}"
    world.sandbox.add_refresh_token(token, DEMO_CLIENT_ID)
    variable = connection_of(world, workspace_id).secret_env["refresh_token"]
    world.monkeypatch.setenv(variable, token)


def recover(world: GoogleWorld, case: FaultCase, workspace_id: str) -> None:
    """The world after the fault: the provider is back, or the user has reconnected."""
    world.sandbox.faults.clear()
    if case.needs_reconnect:
        reconnect(world, workspace_id)

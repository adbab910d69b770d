"""One workspace's sync inside a run: bound, synced, measured, judged, its health recorded.

A run may sync several workspaces (a range of workspace partitions); each goes through
`sync_workspace` on its own: its own connection and transactions (the engines write in
transactions scoped to the workspace), its own health record, metadata and failure. What
fails in one workspace is caught here and returned as that workspace's outcome, so the
next workspace still syncs and nothing of the ones before is rolled back.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import psycopg
import sqlalchemy as sa

from kpi_pipelines.assets.memory import PeakMemory
from kpi_pipelines.automation.partitions import no_workspace
from kpi_pipelines.integrations.shared.base_adapter import IntegrationAdapter, SyncContext
from kpi_pipelines.integrations.shared.errors import ProviderError
from kpi_pipelines.integrations.shared.redaction import (
    RedactingLogger,
    redact,
    redacted_traceback,
)
from kpi_pipelines.integrations.shared.spec import ProviderSpec
from kpi_pipelines.models import SyncResult
from kpi_pipelines.warehouse.control import (
    UnknownWorkspace,
    get_connection,
    get_workspace,
    record_sync_outcome,
)
from kpi_pipelines.warehouse.database import CONTROL_ROLE, Warehouse, connection_lost

# Errors whose message is meant for the person running the sync (what to fix, or wait for).
USER_FACING_ERRORS = (ValueError, LookupError, PermissionError, FileNotFoundError, ProviderError)
# Rejected records named in a run's log line (the rest are counted).
MAX_LOGGED_ERRORS = 20


@dataclass
class WorkspaceOutcome:
    """How one workspace's sync ended: synced (`result`, `metadata`), failed (`failure`),
    or passed over (`skipped`: a run over several workspaces, and this one has no
    connection to the provider)."""

    workspace_id: str
    result: SyncResult | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None
    failure_metadata: dict[str, Any] = field(default_factory=dict)
    retryable: bool = False
    skipped: str | None = None


def sync_workspace(
    spec: ProviderSpec,
    adapter: IntegrationAdapter,
    warehouse: Warehouse,
    workspace_id: str,
    options: Mapping[str, Any],
    *,
    run_id: str,
    log: Any,
    several: bool,
) -> WorkspaceOutcome:
    """connect -> sync -> disconnect for one workspace, never raising what the sync raised:
    it is the outcome's `failure` (redacted), and the connection's health records it."""
    try:
        with warehouse.control() as db:
            workspace = get_workspace(db, workspace_id)
            connection = get_connection(db, workspace_id, spec.key, options.get("connection"))
    except LookupError as exc:
        if several:  # a range of workspaces holds some that do not use this provider
            return WorkspaceOutcome(workspace_id, skipped=redact(str(exc)))
        if isinstance(exc, UnknownWorkspace):
            return WorkspaceOutcome(workspace_id, failure=redact(no_workspace(workspace_id)))
        return WorkspaceOutcome(workspace_id, failure=redact(str(exc)))
    except Exception as exc:
        return _failed(spec, warehouse, workspace_id, None, exc)
    context = SyncContext(
        warehouse=warehouse,
        workspace=workspace,
        connection=connection,
        run_id=run_id,
        options=dict(options),
        log=RedactingLogger(log, prefix=f"{workspace_id}: " if several else ""),
    )
    started = time.perf_counter()
    try:
        with (
            connection_sync_lock(warehouse, workspace_id, spec.key, context.log),
            PeakMemory() as memory,
        ):
            adapter.connect(context)
            try:
                result = adapter.sync()
                requests = adapter.request_stats()
            finally:
                adapter.disconnect()
        elapsed = time.perf_counter() - started
        # Records the provider sent that failed validation are named in the run and its
        # checks, but do not back the connection off: only a provider that failed or
        # stopped the sync (a spent quota) does.
        _record_health(
            warehouse,
            workspace_id,
            connection.id,
            spec,
            ok=result.stopped_by is None,
            error=redact(result.stopped_by) if result.stopped_by else None,
        )
    except Exception as exc:
        return _failed(spec, warehouse, workspace_id, connection.id, exc)
    result = result.model_copy(update={"errors": [redact(e) for e in result.errors]})
    if result.errors:
        context.log.warning(
            f"the sync reported {len(result.errors)} error(s): {result.errors[:MAX_LOGGED_ERRORS]}"
        )
    return WorkspaceOutcome(
        workspace_id,
        result=result,
        metadata=_sync_metadata(result, elapsed, memory, requests),
    )


# How often a sync waiting for another sync of its connection looks again, and how long it
# waits at most before it fails (retryable) rather than hold its run forever.
LOCK_POLL_SECONDS = 0.5
LOCK_PATIENCE_SECONDS = 30 * 60


# The two keys of a connection's sync lock (the functions kpi_control may call take two).
_SYNC_LOCK_KEY = "hashtext('kpi.sync'), hashtext(:ws || '/' || :provider)"


class ConnectionBusy(ProviderError):
    """Another sync of the same connection held it for longer than a sync waits."""


@contextlib.contextmanager
def connection_sync_lock(
    warehouse: Warehouse, workspace_id: str, provider: str, log: Any
) -> Iterator[None]:
    """Hold the lock of `workspace_id`'s `provider` connection(s) for one sync: a session
    advisory lock on a control connection outside any transaction (so no idle or statement
    timeout ends it), released at the end, or by the server if this process dies. Every
    sync takes it, so two never overlap, whichever runs they are in (a grouped run's tag
    cannot name each connection for the run queue)."""
    key = {"ws": workspace_id, "provider": provider}
    lock = f"SELECT pg_try_advisory_lock({_SYNC_LOCK_KEY})"
    with warehouse.engine(CONTROL_ROLE).connect() as db:
        db = db.execution_options(isolation_level="AUTOCOMMIT")
        try:
            free = db.execute(sa.text(lock), key).scalar_one()
        except sa.exc.ProgrammingError as exc:
            if not isinstance(exc.orig, psycopg.errors.InsufficientPrivilege):
                raise
            raise PermissionError(
                "kpi_control may not take a connection's sync lock (pg_try_advisory_lock):"
                " run `kpi-pipelines db upgrade` as a superuser, or run the GRANT statements"
                " it prints"
            ) from None
        if not free:
            log.info(f"waiting for another sync of {workspace_id}/{provider} to finish")
            deadline = time.monotonic() + LOCK_PATIENCE_SECONDS
            while not db.execute(sa.text(lock), key).scalar_one():
                if time.monotonic() > deadline:
                    raise ConnectionBusy(
                        provider,
                        f"another sync of {workspace_id}/{provider} has run for over"
                        f" {LOCK_PATIENCE_SECONDS // 60} minutes; this one gave up waiting"
                        " and is retried on the next tick",
                    )
                time.sleep(LOCK_POLL_SECONDS)
        try:
            yield
        finally:
            db.execute(sa.text(f"SELECT pg_advisory_unlock({_SYNC_LOCK_KEY})"), key)


def _failed(
    spec: ProviderSpec,
    warehouse: Warehouse,
    workspace_id: str,
    connection_id: int | None,
    exc: Exception,
) -> WorkspaceOutcome:
    """The failure of one workspace, remembered on its connection; its message and
    traceback are redacted (no unredacted cause chain leaves the run)."""
    extra: dict[str, Any] = {}
    if isinstance(exc, USER_FACING_ERRORS):
        # Bad input, a broken connection or a provider that stays down: said plainly.
        message = redact(str(exc))
    elif connection_lost(exc):  # a restart, a failover, the network
        reason = redact(str(exc)).strip().splitlines()[0][:300]
        message = (
            f"lost the warehouse database mid-sync ({reason}); every batch committed"
            " before is kept, and the run can be retried"
        )
    else:
        # A bug or an unmapped provider failure: its message and traceback may carry a
        # secret, so only their redacted text leaves the run.
        message = f"{spec.key} failed unexpectedly: {redact(f'{type(exc).__name__}: {exc}')}"
        extra["traceback"] = dg.MetadataValue.text(redacted_traceback(exc))
    if connection_id is not None:
        with contextlib.suppress(sa.exc.OperationalError, psycopg.OperationalError):
            _record_health(warehouse, workspace_id, connection_id, spec, ok=False, error=message)
    return WorkspaceOutcome(
        workspace_id,
        failure=message,
        failure_metadata={"error_type": type(exc).__name__, "provider": spec.key, **extra},
        retryable=isinstance(exc, ProviderError) or connection_lost(exc),
    )


def _record_health(
    warehouse: Warehouse,
    workspace_id: str,
    connection_id: int | None,
    spec: ProviderSpec,
    *,
    ok: bool,
    error: str | None,
) -> None:
    assert connection_id is not None
    cadence = spec.cadence.interval if spec.cadence else None
    with warehouse.tenant(workspace_id, actor="health") as db:
        record_sync_outcome(db, connection_id, success=ok, error=error, cadence=cadence)


def _sync_metadata(
    result: SyncResult, elapsed: float, memory: PeakMemory, requests: Mapping[str, int | float]
) -> dict[str, Any]:
    return {
        "success": result.success,
        "records_processed": result.records_processed,
        "records_rejected": result.records_rejected,
        "points_written": result.points_written,
        "points_unchanged": result.points_unchanged,
        "errors": dg.MetadataValue.json(result.errors[:100]),
        "last_sync_at": dg.MetadataValue.timestamp(result.last_sync_at),
        "seconds": round(elapsed, 3),
        "records_per_second": round(result.records_processed / max(elapsed, 1e-9), 1),
        # this sync's peak, and how far it rose above where the sync started
        "peak_memory_mb": round(memory.peak_mb, 1),
        "memory_growth_mb": round(memory.growth_mb, 1),
        **requests,
        **{f"{phase}_seconds": round(seconds, 3) for phase, seconds in result.timings.items()},
        **{
            name: dg.MetadataValue.json(value) if isinstance(value, dict | list) else value
            for name, value in result.details.items()
        },
    }

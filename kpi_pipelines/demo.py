"""The demo layer: two workspaces, sample data for every provider, one Dagster run each.

A provider's spec names its demo (`demo="module:prepare"`, a
`prepare(warehouse, workspace, folder) -> run_config` function, usually beside its
simulator in `sandbox/`); only this layer resolves it, so production code never imports a
simulator, and adding a provider's demo touches no other provider.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from kpi_pipelines.automation.partitions import workspace_partitions
from kpi_pipelines.integrations.shared.spec import discover, resolve, spec_for
from kpi_pipelines.warehouse.control import (
    Workspace,
    add_workspace,
    get_workspace,
    list_workspaces,
)
from kpi_pipelines.warehouse.database import Warehouse

DEMO_WORKSPACES = (
    Workspace(
        id="acme", name="Acme Analytics", reporting_currency="USD", timezone="America/New_York"
    ),
    Workspace(id="globex", name="Globex GmbH", reporting_currency="EUR", timezone="Europe/Berlin"),
)

Prepare = Callable[[Warehouse, Workspace, Path], dict[str, Any]]


@dataclass(frozen=True)
class DemoProvider:
    provider: str
    prepare: Prepare


def demo_providers() -> Iterator[DemoProvider]:
    """Every provider whose spec names a demo (resolved here: this is the demo layer)."""
    for spec in discover():
        if spec.demo:
            yield DemoProvider(provider=spec.key, prepare=resolve(spec.demo))


def ensure_workspaces(warehouse: Warehouse) -> list[Workspace]:
    existing = {w.id for w in list_workspaces(warehouse)}
    for workspace in DEMO_WORKSPACES:
        if workspace.id not in existing:
            add_workspace(warehouse, workspace)
    return list(DEMO_WORKSPACES)


def materialize_provider(
    warehouse: Warehouse,
    instance: dg.DagsterInstance,
    provider: str,
    workspace_id: str,
    run_config: dict[str, Any],
    *,
    log_level: str = "WARNING",
) -> dg.ExecuteInProcessResult:
    """One run of a provider's asset for one workspace, recorded in the Dagster instance.

    Raises UnknownWorkspace (and registers no partition) when the workspace does not exist.
    """
    from kpi_pipelines.definitions import provider_definitions, resources

    spec = spec_for(provider)  # the providers found now (KPI_PROVIDER_PACKAGES included)
    with warehouse.control() as db:
        get_workspace(db, workspace_id)
    if not instance.has_dynamic_partition(workspace_partitions.name, workspace_id):
        instance.add_dynamic_partitions(workspace_partitions.name, [workspace_id])
    asset = provider_definitions(spec).asset
    return dg.materialize(
        [asset],
        instance=instance,
        partition_key=workspace_id,
        resources=resources([spec]),
        run_config={
            "ops": {asset.op.name: {"config": run_config}},
            "loggers": {"console": {"config": {"log_level": log_level}}},
        },
        raise_on_error=False,
    )

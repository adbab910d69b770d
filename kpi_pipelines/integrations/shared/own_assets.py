"""A provider's own assets downstream of its sync asset (Notion's notes).

Such an asset is on the sync asset's partitions and in its job, so its schedule, backfills
and the CLI run it after the sync. Dagster runs its step only when the sync's step gave its
output, which a run over several workspaces gives only when every one of them synced (an
output of a range would materialize the failed workspace too). So when one workspace of a
grouped run fails, the sync's step materializes the own assets of the workspaces that
synced itself, with the same per-workspace function the asset's step runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dagster as dg

from kpi_pipelines.integrations.shared.redaction import redact

if TYPE_CHECKING:
    from kpi_pipelines.integrations.shared.spec import ProviderSpec
    from kpi_pipelines.warehouse.database import Warehouse

# One workspace's work: (spec, the provider's resource, warehouse, workspace id, the step's
# context, whether the run covers several workspaces) -> its materialization's metadata, or
# None when there is nothing to materialize (a workspace without the provider in a range).
MaterializeOne = Callable[
    ["ProviderSpec", Any, "Warehouse", str, dg.AssetExecutionContext, bool],
    Mapping[str, Any] | None,
]


@dataclass(frozen=True)
class OwnAsset:
    """`build` makes the asset (its step calls `materialize_each`); `materialize` does one
    workspace."""

    key: str
    build: Callable[[ProviderSpec], dg.AssetsDefinition]
    materialize: MaterializeOne


def materialize_each(
    own: OwnAsset,
    spec: ProviderSpec,
    adapter: Any,
    warehouse: Warehouse,
    workspace_ids: Sequence[str],
    context: dg.AssetExecutionContext,
    *,
    several: bool,
) -> Iterator[dg.AssetMaterialization]:
    """`own`'s materialization of each of `workspace_ids`, one workspace's failure not
    stopping the others; then a Failure naming each that failed."""
    failures: list[str] = []
    for workspace_id in workspace_ids:
        try:
            metadata = own.materialize(spec, adapter, warehouse, workspace_id, context, several)
        except Exception as exc:
            failures.append(f"{workspace_id}: {redact(f'{type(exc).__name__}: {exc}')}")
            continue
        if metadata is not None:
            yield dg.AssetMaterialization(
                asset_key=own.key, partition=workspace_id, metadata=dict(metadata)
            )
    if failures:
        raise dg.Failure(description=f"{own.key} failed for " + "; ".join(failures))

"""The one Definitions object, assembled from the discovered providers (no central list).

Each provider's spec (`integrations/<provider>/spec.py`) gets: its workspace-partitioned
asset (with a freshness check when it has a cadence) and its own assets downstream of it
(Notion's notes), a job of them, the schedule of its cadence,
its own sensors and its adapter as a resource; the workspace partition sensor, the pools
sensor, the freshness checks' job and the warehouse are shared.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from kpi_pipelines.assets.kpi_mart import build_kpi_mart, build_mart_schedule
from kpi_pipelines.assets.provider_asset import build_provider_asset
from kpi_pipelines.automation.cadence import build_freshness_schedule, build_provider_schedule
from kpi_pipelines.automation.partitions import build_partitions_sensor
from kpi_pipelines.automation.pools import build_pools_sensor
from kpi_pipelines.integrations.shared.spec import ProviderSpec, discover
from kpi_pipelines.resources import WarehouseResource


@dataclass(frozen=True)
class ProviderDefinitions:
    """What one provider contributes to Definitions."""

    spec: ProviderSpec
    asset: dg.AssetsDefinition
    # its own assets downstream of `asset` (Notion's notes), in the same job
    downstream: tuple[dg.AssetsDefinition, ...]
    job: dg.UnresolvedAssetJobDefinition
    schedule: dg.ScheduleDefinition | None
    sensors: tuple[dg.SensorDefinition, ...]


def provider_definitions(spec: ProviderSpec) -> ProviderDefinitions:
    asset = build_provider_asset(spec)
    downstream = tuple(own.build(spec) for own in spec.assets)
    job = dg.define_asset_job(
        spec.job_name,
        selection=dg.AssetSelection.assets(asset, *downstream),
        description=f"Sync {spec.display_name} for one workspace.",
    )
    return ProviderDefinitions(
        spec=spec,
        asset=asset,
        downstream=downstream,
        job=job,
        schedule=build_provider_schedule(spec, spec.cadence, job) if spec.cadence else None,
        sensors=tuple(factory(spec, job) for factory in spec.sensors),
    )


def build_definitions(
    specs: list[ProviderSpec],
) -> tuple[dict[str, ProviderDefinitions], dg.Definitions]:
    providers = {spec.key: provider_definitions(spec) for spec in specs}
    freshness_job, freshness_schedule = build_freshness_schedule(specs)
    mart = build_kpi_mart(specs)
    mart_job, mart_schedule = build_mart_schedule(mart)
    definitions = dg.Definitions(
        assets=[*(a for p in providers.values() for a in (p.asset, *p.downstream)), mart],
        jobs=[*(p.job for p in providers.values()), freshness_job, mart_job],
        schedules=[
            *(p.schedule for p in providers.values() if p.schedule),
            freshness_schedule,
            mart_schedule,
        ],
        sensors=[
            build_partitions_sensor([spec.key for spec in specs]),
            build_pools_sensor(specs),
            *(s for p in providers.values() for s in p.sensors),
        ],
        resources=resources(specs),
        # A run is one workspace range of one provider (or the freshness checks): its steps
        # run in the run's own process, not a process each (which cost 10 s a run)
        executor=dg.in_process_executor,
    )
    return providers, definitions


def resources(specs: list[ProviderSpec]) -> dict[str, dg.ConfigurableResource]:
    """The warehouse and every provider's adapter, under the provider's key."""
    return {"warehouse": WarehouseResource(), **{s.key: s.adapter() for s in specs}}


SPECS = discover()
PROVIDERS, defs = build_definitions(SPECS)
RESOURCES = resources(SPECS)

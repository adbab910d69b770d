"""Dagster's concurrency controls for the providers' runs.

One sync per connection at a time: the runs that the provider schedules and sensors and the
CLI start for one workspace carry the run tag `kpi/connection` (`<workspace>/<provider>`;
their re-executions in the UI keep it), and dagster.yaml's tag concurrency limit (one run
per unique value) makes Dagster's run queue start such a run only when no other run with the
same value is in progress. A workspace's connections to one provider share the value: a run
that names no connection (a webhook run, `kpi-pipelines sync` without `--connection`) syncs
its only one, so the value cannot depend on the name.
A run over a group of workspaces (a scheduled tick's) cannot carry one value per connection:
each of its syncs instead takes its connection's lock in the warehouse first
(assets/workspace_sync.py), which any other sync of that connection also takes, so the rule
holds whichever run starts first.

Pools: one per provider, its app-wide quota (the spec's `pool_limit`). dagster.yaml cannot
hold per-pool limits, so they are written into the instance, as
`dagster instance concurrency set <pool> <limit>` would: the pools sensor creates every
provider's pool that does not exist yet (within a minute of the daemon starting, and
`kpi-pipelines ui` before it starts Dagster), never changing a limit already set;
`kpi-pipelines pools set` writes them all, with overrides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import dagster as dg

from kpi_pipelines.automation.partitions import range_tags
from kpi_pipelines.integrations.shared.spec import ProviderSpec

CONNECTION_TAG = "kpi/connection"
# A grouped run's workspace count (its range tags say which): the tick's runs at a glance.
WORKSPACES_TAG = "kpi/workspaces"


def connection_tags(workspace_id: str, provider: str) -> dict[str, str]:
    """The run tag of a sync of `workspace_id`'s `provider` connection."""
    return {CONNECTION_TAG: f"{workspace_id}/{provider}"}


class RunTarget(NamedTuple):
    partition_key: str | None
    tags: dict[str, str]


def run_target(provider: str, workspaces: Sequence[str]) -> RunTarget:
    """The partition and tags of a run that syncs `workspaces` (side by side among the
    provider's partitions): one workspace's partition, with the tag the run queue holds it
    back by while another sync of its connection runs; or their range, whose syncs each take
    their connection's lock instead (no run tag can name every connection)."""
    if len(workspaces) == 1:
        return RunTarget(workspaces[0], connection_tags(workspaces[0], provider))
    return RunTarget(None, {**range_tags(workspaces), WORKSPACES_TAG: str(len(workspaces))})


def provider_pool_limits(specs: Iterable[ProviderSpec]) -> dict[str, int]:
    """Pool name -> limit, for every provider that declares one."""
    return {spec.pool: spec.pool_limit for spec in specs if spec.pool and spec.pool_limit}


def set_pool_limits(instance: dg.DagsterInstance, limits: Mapping[str, int]) -> dict[str, int]:
    for pool, limit in limits.items():
        instance.event_log_storage.set_concurrency_slots(pool, limit)
    return dict(limits)


def create_missing_pools(instance: dg.DagsterInstance, limits: Mapping[str, int]) -> dict[str, int]:
    """Create the pools of `limits` the instance does not have yet (an operator's limit is
    kept); returns those created."""
    existing = set(instance.event_log_storage.get_concurrency_keys())
    return set_pool_limits(instance, {p: n for p, n in limits.items() if p not in existing})


def build_pools_sensor(specs: Iterable[ProviderSpec]) -> dg.SensorDefinition:
    limits = provider_pool_limits(specs)

    @dg.sensor(
        name="provider_pools_sensor",
        description=(
            "Creates each provider's concurrency pool with its limit when the instance does"
            " not have it yet (never changes one already set)."
        ),
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def provider_pools_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        created = create_missing_pools(context.instance, limits)
        if created:
            context.log.info(f"created pools: {created}")
        return dg.SkipReason(
            f"created pools {created}" if created else f"all {len(limits)} pools exist"
        )

    return provider_pools_sensor

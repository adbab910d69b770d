"""Dagster concurrency pools: one per provider with an app-wide quota.

dagster.yaml cannot hold per-pool limits, so `kpi-pipelines pools set` writes each
provider's limit (its spec's `pool_limit`) into the instance, as
`dagster instance concurrency set <pool> <limit>` would.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import dagster as dg

from kpi_pipelines.integrations.shared.spec import ProviderSpec


def provider_pool_limits(specs: Iterable[ProviderSpec]) -> dict[str, int]:
    """Pool name -> limit, for every provider that declares one."""
    return {spec.pool: spec.pool_limit for spec in specs if spec.pool and spec.pool_limit}


def set_pool_limits(instance: dg.DagsterInstance, limits: Mapping[str, int]) -> dict[str, int]:
    for pool, limit in limits.items():
        instance.event_log_storage.set_concurrency_slots(pool, limit)
    return dict(limits)

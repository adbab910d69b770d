"""Dagster concurrency pools: one per provider with an app-wide quota.

dagster.yaml cannot hold per-pool limits, so `kpi-pipelines pools set` writes each
provider's limit (its adapter's `pool_limit`) into the instance, as
`dagster instance concurrency set <pool> <limit>` would.
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from kpi_pipelines.integrations.shared.base_adapter import IntegrationAdapter


def provider_pool_limits(resources: Mapping[str, object]) -> dict[str, int]:
    """Pool name (the provider key) -> limit, for every adapter that declares one."""
    return {
        adapter.provider: limit
        for adapter in resources.values()
        if isinstance(adapter, IntegrationAdapter) and (limit := type(adapter).pool_limit)
    }


def set_pool_limits(instance: dg.DagsterInstance, limits: Mapping[str, int]) -> dict[str, int]:
    for pool, limit in limits.items():
        instance.event_log_storage.set_concurrency_slots(pool, limit)
    return dict(limits)

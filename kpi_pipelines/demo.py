"""The demo layer: two workspaces, sample data for every provider, one Dagster run each, and
the simulators that keep serving them under `kpi-pipelines dev`.

A provider's spec names its demo (`demo="module:prepare"`, a
`prepare(warehouse, workspace, folder) -> run_config` function, usually beside its
simulator in `sandbox/`); only this layer resolves it, so production code never imports a
simulator, and adding a provider's demo touches no other provider. A demo module that has a
simulator also defines `start_simulator(workspaces, folder) -> DemoSimulator` (one per
module, whichever providers share it): the demo and `dev` start every one of them, and the
variables they give (hosts, the demo workspaces' secrets) are what the runs read.
"""

from __future__ import annotations

import importlib
import os
import shlex
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import dagster as dg

from kpi_pipelines.automation.partitions import (
    lacking,
    provider_partitions,
    register_partition,
    workspace_partitions,
    workspace_range_tags,
)
from kpi_pipelines.integrations.shared.base_adapter import IntegrationAdapter
from kpi_pipelines.integrations.shared.spec import ProviderSpec, discover, resolve, spec_for
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


class DemoSimulator(Protocol):
    """A provider's simulator serving the demo workspaces on loopback, on the real clock."""

    def env(self) -> dict[str, str]:
        """The variables runs need: the operator's settings that point at the simulator, and
        each demo workspace's secrets (in its `WS_<ID>__` namespace)."""
        ...

    def follow_clock(self, webhook_base_url: str | None) -> int:
        """Catch up with real time; with a receiver (`http://host:port`), deliver the webhooks
        of what happened since the last delivery. Returns how many were delivered."""
        ...

    def stop(self) -> None: ...


StartSimulator = Callable[[Sequence[Workspace], Path], DemoSimulator]


@dataclass
class DemoStack:
    """Every demo simulator, started."""

    simulators: list[DemoSimulator]

    def env(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for simulator in self.simulators:
            merged.update(simulator.env())
        return merged

    def follow_clock(self, webhook_base_url: str | None = None) -> int:
        return sum(s.follow_clock(webhook_base_url) for s in self.simulators)

    def stop(self) -> None:
        for simulator in self.simulators:
            simulator.stop()


def start_demo_stack(folder: Path) -> DemoStack:
    """Start the simulator of every demo module that has one (state kept under `folder`) and
    set their variables in this process's environment, for the runs it launches."""
    stack = start_demo_simulators(folder)
    os.environ.update(stack.env())
    return stack


def start_demo_simulators(folder: Path) -> DemoStack:
    """Start the simulator of every demo module that has one (state kept under `folder`),
    leaving this process's environment as it is."""
    started: dict[str, DemoSimulator] = {}
    try:
        for spec in discover():
            if not spec.demo:
                continue
            module = importlib.import_module(spec.demo.partition(":")[0])
            start: StartSimulator | None = getattr(module, "start_simulator", None)
            if start is not None and module.__name__ not in started:
                started[module.__name__] = start(DEMO_WORKSPACES, folder / spec.key)
    except BaseException:
        DemoStack(list(started.values())).stop()  # none left serving when one fails to start
        raise
    return DemoStack(list(started.values()))


def write_env_file(path: Path, env: Mapping[str, str]) -> Path:
    """`NAME=value` lines (shell-quoted) readable by the owner only: they hold secrets."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    lines = [f"{name}={shlex.quote(value)}" for name, value in sorted(env.items())]
    path.write_text(
        "# written by kpi-pipelines dev: the demo simulators' settings and"
        " secrets\n" + "\n".join(lines) + "\n",
        encoding="utf-8",
    )
    return path


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            words = shlex.split(value)
            env[name.strip()] = words[0] if words else ""
    return env


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
    run_config: Mapping[str, Any] | None = None,
    *,
    adapter: IntegrationAdapter | None = None,
    log_level: str = "WARNING",
) -> dg.ExecuteInProcessResult:
    """One run of a provider's asset for one workspace, recorded in the Dagster instance.

    Raises UnknownWorkspace (and registers no partition) when the workspace does not exist.
    """
    [result] = materialize_workspaces(
        warehouse,
        instance,
        provider,
        [workspace_id],
        run_config,
        adapter=adapter,
        log_level=log_level,
    )
    return result


def materialize_workspaces(
    warehouse: Warehouse,
    instance: dg.DagsterInstance,
    provider: str | ProviderSpec,
    workspace_ids: Sequence[str],
    run_config: Mapping[str, Any] | None = None,
    *,
    adapter: IntegrationAdapter | None = None,
    log_level: str = "WARNING",
) -> list[dg.ExecuteInProcessResult]:
    """Runs of a provider's asset that sync `workspace_ids`, several workspaces per run (one
    run per stretch of them that lies side by side among the provider's partitions), each
    with `run_config`; `adapter` is the provider's resource as configured (default: the
    spec's adapter with its defaults). Raises UnknownWorkspace before any run when one does
    not exist."""
    from kpi_pipelines.definitions import provider_definitions, resources

    # A key is resolved among the providers found now (KPI_PROVIDER_PACKAGES included).
    spec = provider if isinstance(provider, ProviderSpec) else spec_for(provider)
    with warehouse.control() as db:
        for workspace_id in workspace_ids:
            get_workspace(db, workspace_id)
    partitions = provider_partitions(spec.key)
    for registered in (workspace_partitions, partitions):
        if new := lacking(instance, registered, workspace_ids):
            instance.add_dynamic_partitions(registered.name, new)
    definitions = provider_definitions(spec)
    asset = definitions.asset
    config = {
        "ops": {asset.op.name: {"config": dict(run_config or {})}},
        "loggers": {"console": {"config": {"log_level": log_level}}},
    }
    if len(workspace_ids) == 1:
        targets: list[dict[str, Any]] = [{"partition_key": workspace_ids[0]}]
    else:
        targets = [
            {"tags": tags} for tags in workspace_range_tags(instance, workspace_ids, partitions)
        ]
    return [
        dg.materialize(
            [asset, *definitions.downstream],
            instance=instance,
            resources={**resources([spec]), **({spec.key: adapter} if adapter is not None else {})},
            run_config=config,
            raise_on_error=False,
            **target,
        )
        for target in targets
    ]


def materialize_mart(
    instance: dg.DagsterInstance,
    workspace_id: str,
    config: Mapping[str, Any] | None = None,
    *,
    log_level: str = "WARNING",
) -> dg.ExecuteInProcessResult:
    """A run of the KPI mart for one workspace (`config`: its MartConfig), the workspace's
    partition registered if missing."""
    from kpi_pipelines.assets.kpi_mart import build_kpi_mart
    from kpi_pipelines.definitions import SPECS, resources

    register_partition(instance, workspace_id)
    return dg.materialize(
        [build_kpi_mart(SPECS)],
        instance=instance,
        resources=resources(SPECS),
        partition_key=workspace_id,
        run_config={
            "ops": {"kpi_mart": {"config": dict(config or {})}},
            "loggers": {"console": {"config": {"log_level": log_level}}},
        },
        raise_on_error=False,
    )

"""A provider, declared once.

Each provider's folder has a `spec.py` whose `SPEC` is a `ProviderSpec`: its key and names,
its engine (report, object or table: `engines/`) with that engine's reports or streams,
its adapter (the Dagster resource whose hooks the engine calls: the provider's quirks), the
settings its connections hold, the secrets they name, its cadence, pool, metrics and how it
looks in the UI. Everything that
needs one of these facts reads it from the spec: Definitions (asset, job, schedule,
sensors, freshness check, pool), the CLI, the demo and the README's provider table.
`discover()` finds the specs; adding a provider adds its folder and touches no central list.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from types import ModuleType
from typing import TYPE_CHECKING, Any

import dagster as dg

from kpi_pipelines.integrations.shared.bounds import ProviderLimits
from kpi_pipelines.integrations.shared.connection_settings import ConnectionSettings
from kpi_pipelines.integrations.shared.oauth_flow import OAuthFlow
from kpi_pipelines.integrations.shared.own_assets import OwnAsset

if TYPE_CHECKING:
    from kpi_pipelines.integrations.shared.base_adapter import IntegrationAdapter
    from kpi_pipelines.integrations.shared.engines import Engine

# Where providers are found: this package's subfolders, plus the packages an operator names
# (KPI_PROVIDER_PACKAGES, comma-separated) for providers kept outside this repository.
PROVIDERS_PACKAGE = "kpi_pipelines.integrations"
EXTRA_PACKAGES_VARIABLE = "KPI_PROVIDER_PACKAGES"


class AuthKind(StrEnum):
    NONE = "none"
    API_KEY = "api key"
    ACCESS_TOKEN = "access token (long-lived, no refresh)"
    OAUTH2_REFRESH = "OAuth 2.0 with a refresh token"
    OAUTH1 = "OAuth 1.0a"
    # Notion: an internal integration's token, or a public integration's grant (`connect`).
    TOKEN_OR_OAUTH2 = "integration token, or OAuth 2.0 (kpi-pipelines connect)"


@dataclass(frozen=True)
class SecretSpec:
    """A secret a connection names (`--secret purpose=WS_<ID>__NAME`)."""

    purpose: str
    description: str
    # The deployment-wide variable read when a connection names none (an operator's OAuth
    # client, say); None: every connection must name its own.
    operator_variable: str | None = None


@dataclass(frozen=True)
class Cadence:
    """When a provider syncs on its own: one schedule, and what freshness expects."""

    cron: str
    interval: timedelta
    description: str
    # Run-config fields the schedule's runs get (Stripe's daily run reconciles).
    run_options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def every_hours(
        cls, hours: int, *, minute: int = 0, why: str = "", **run_options: Any
    ) -> Cadence:
        """Every `hours` hours (a divisor of 24) at `minute` past, UTC."""
        if hours < 1 or 24 % hours:
            raise ValueError(f"a cadence of {hours} hours does not divide a day")
        hour_field = "*" if hours == 1 else f"*/{hours}"
        every = "hourly" if hours == 1 else f"every {hours} hours"
        return cls(
            cron=f"{minute} {hour_field} * * *",
            interval=timedelta(hours=hours),
            description=f"{every} at :{minute:02d} UTC" + (f"; {why}" if why else ""),
            run_options=run_options,
        )

    @classmethod
    def daily(cls, *, hour: int = 0, minute: int = 0, why: str = "", **run_options: Any) -> Cadence:
        return cls(
            cron=f"{minute} {hour} * * *",
            interval=timedelta(days=1),
            description=f"daily at {hour:02d}:{minute:02d} UTC" + (f"; {why}" if why else ""),
            run_options=run_options,
        )


class ProviderRunConfig(dg.Config):
    """Run configuration every provider accepts (launchpad, backfills, the CLI)."""

    connection: str | None = None  # the connection's name, when a workspace has several
    # Re-list every object and land what differs from the landed copy, instead of reading
    # changes since the cursor (providers that support it; the daily Stripe schedule sets it).
    reconcile: bool = False


# A provider's own sensor (a webhook inbox, a drop folder), built for its job.
SensorFactory = Callable[["ProviderSpec", "dg.UnresolvedAssetJobDefinition"], dg.SensorDefinition]
# How often such a sensor looks: a saved file or a received event starts its run within
# seconds, and an idle tick is one cheap query.
SENSOR_INTERVAL_SECONDS = 15


def provider_sensor(
    *,
    name: str,
    description: str,
    job: dg.UnresolvedAssetJobDefinition,
    every: int = SENSOR_INTERVAL_SECONDS,
) -> Callable[[Callable[..., Any]], dg.SensorDefinition]:
    """The decorator of a provider's own sensor: running from the start, every `every`
    seconds (15; Dagster's sensor daemon looks at most every 5)."""
    return dg.sensor(
        name=name,
        description=description,
        job=job,
        minimum_interval_seconds=every,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )


@dataclass(frozen=True)
class ProviderSpec:
    """Everything about a provider that is not its code."""

    key: str  # the source of its kpi_data points
    display_name: str
    description: str
    adapter: type[IntegrationAdapter]
    auth: AuthKind
    group: str
    kinds: frozenset[str]
    metrics: tuple[str, ...]  # catalog keys (kpi-definitions.md), or ("user-defined",)
    # Its metrics that are a level at each day's end (MRR, customers), where a fall by half
    # from one day to the next means lost data or lost business: the KPI mart's
    # no_sharp_drops check watches them. Daily flows (revenue, new MRR, sessions) swing by
    # half on ordinary days and are not watched unless a run's config names them.
    levels: tuple[str, ...] = ()
    # How it syncs, with what it reads (its reports or streams); None only for an adapter
    # that implements sync() itself.
    engine: Engine | None = None
    # What a connection's settings hold: a ConnectionSettings (no hosts, no unknown keys);
    # None: no settings at all.
    settings: type[ConnectionSettings] | None = None
    secrets: tuple[SecretSpec, ...] = ()
    # How a workspace grants access through the provider's consent page (`kpi-pipelines
    # connect`), for an OAuth provider; None: its secrets are named variables only.
    oauth: OAuthFlow | None = None
    cadence: Cadence | None = None  # None: manual (the UI, the CLI, a sensor)
    pool_limit: int | None = None  # runs at once across the deployment (its app-wide quota)
    owners: tuple[str, ...] = ("team:data-engineering",)
    tags: Mapping[str, str] = field(default_factory=dict)
    run_config: type[ProviderRunConfig] = ProviderRunConfig
    sensors: tuple[SensorFactory, ...] = ()
    # its own assets downstream of the sync asset (Notion's notes): own_assets.py
    assets: tuple[OwnAsset, ...] = ()
    # "module:function" preparing a demo workspace (resolved by the demo layer only, so
    # production code never imports a simulator).
    demo: str | None = None
    # "module:function" returning the routes of its webhook receiver, given the warehouse.
    webhooks: str | None = None
    # All-or-nothing user submissions (a file, a sheet): `kpi-pipelines import` runs them.
    imports: bool = False
    # The run-config field that takes the file `kpi-pipelines import ... FILE` names.
    file_option: str | None = None
    # Workspaces one run syncs at most when the UI or a backfill launches many at once
    # (each in its own transactions, with its own metadata and failure): a run costs about
    # 12 CPU-seconds before any work, so one run per workspace does not reach thousands.
    workspaces_per_run: int = 25
    # What one response or record may cost (bounds.py); unset fields: the deployment's KPI_*.
    limits: ProviderLimits = field(default_factory=ProviderLimits)

    def __post_init__(self) -> None:
        if self.engine is not None and not issubclass(self.adapter, self.engine.hooks):
            raise TypeError(
                f"{self.key}: {self.adapter.__name__} does not implement the hooks of the"
                f" {self.engine.kind} engine ({self.engine.hooks.__name__})"
            )
        if self.engine is not None:
            self.engine.check(self.adapter)
        if self.settings is not None and not issubclass(self.settings, ConnectionSettings):
            raise TypeError(
                f"{self.key}: its settings model {self.settings.__name__} must be a"
                " ConnectionSettings (integrations/shared/connection_settings.py)"
            )
        if self.workspaces_per_run < 1:
            raise ValueError(f"{self.key}: workspaces_per_run must be at least 1")
        if not set(self.levels) <= set(self.metrics):
            unknown = sorted(set(self.levels) - set(self.metrics))
            raise ValueError(f"{self.key}: levels {unknown} are not among its metrics")

    @property
    def name(self) -> str:
        """The asset's, the op's and the resource's name: distinct in the asset graph."""
        return f"{self.key}_kpis"

    @property
    def asset_key(self) -> dg.AssetKey:
        return dg.AssetKey(self.name)

    @property
    def job_name(self) -> str:
        return f"{self.key}_job"

    @property
    def pool(self) -> str | None:
        """The Dagster concurrency pool named after the provider, when it has a limit."""
        return self.key if self.pool_limit else None


def discover(packages: list[str] | None = None) -> list[ProviderSpec]:
    """Every provider's spec: the `SPEC` of each `<package>/<provider>/spec.py`, by key."""
    names = packages if packages is not None else provider_packages()
    specs: dict[str, ProviderSpec] = {}
    for package in names:
        for spec in _specs_in(importlib.import_module(package)):
            if spec.key in specs:
                raise ValueError(f"two providers are declared with the key {spec.key!r}")
            specs[spec.key] = spec
    return [specs[key] for key in sorted(specs)]


def provider_packages() -> list[str]:
    extra = [p.strip() for p in os.environ.get(EXTRA_PACKAGES_VARIABLE, "").split(",")]
    return [PROVIDERS_PACKAGE, *(p for p in extra if p)]


def spec_for(key: str, specs: list[ProviderSpec] | None = None) -> ProviderSpec:
    """The spec of provider `key`, with a clear error naming the known ones."""
    known = specs if specs is not None else discover()
    for spec in known:
        if spec.key == key:
            return spec
    raise LookupError(
        f"unknown provider {key!r}; one of: {', '.join(s.key for s in known) or 'none'}"
    )


def provider_table(specs: list[ProviderSpec]) -> str:
    """The providers as a Markdown table (the README's, and `kpi-pipelines providers`)."""
    rows = [
        "| provider | key | auth | cadence | pool | metrics |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for spec in specs:
        cadence = spec.cadence.description if spec.cadence else "manual"
        if spec.sensors:
            cadence += f"; sensors: {', '.join(f.__name__.replace('_', ' ') for f in spec.sensors)}"
        pool = f"{spec.pool} ({spec.pool_limit} at once)" if spec.pool else "-"
        rows.append(
            f"| {spec.display_name} | `{spec.key}` | {spec.auth.value} | {cadence} | {pool} |"
            f" {', '.join(spec.metrics)} |"
        )
    return "\n".join(rows)


def resolve(reference: str) -> Any:
    """The object a "module:attribute" reference names."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _specs_in(package: ModuleType) -> Iterator[ProviderSpec]:
    for module in pkgutil.iter_modules(package.__path__):
        if not module.ispkg or module.name == "shared":
            continue
        name = f"{package.__name__}.{module.name}.spec"
        try:
            spec_module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # a folder that is not a provider
            raise
        spec = spec_module.SPEC
        if not isinstance(spec, ProviderSpec):
            raise TypeError(f"{name}.SPEC is not a ProviderSpec")
        yield spec

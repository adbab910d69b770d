"""`kpi-pipelines`: workspaces, connections, imports, overrides, KPIs and the demo."""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from kpi_pipelines import settings
from kpi_pipelines.terminal import TerminalConsole

app = typer.Typer(help=__doc__, no_args_is_help=True, pretty_exceptions_enable=False)
workspace_app = typer.Typer(help="Tenant workspaces.", no_args_is_help=True)
connection_app = typer.Typer(help="A workspace's connections to providers.", no_args_is_help=True)
fx_app = typer.Typer(help="Exchange rates.", no_args_is_help=True)
override_app = typer.Typer(help="Manual overrides of KPI values.", no_args_is_help=True)
kpi_app = typer.Typer(help="Read KPIs.", no_args_is_help=True)
db_app = typer.Typer(help="The warehouse database.", no_args_is_help=True)
webhooks_app = typer.Typer(help="The webhook receiver (Stripe).", no_args_is_help=True)
pools_app = typer.Typer(
    help="Dagster concurrency pools (app-wide API quotas).", no_args_is_help=True
)
grants_app = typer.Typer(
    help="OAuth grants stored by `connect` (encrypted with KPI_GRANT_KEYS).", no_args_is_help=True
)
for sub, name in (
    (workspace_app, "workspace"),
    (connection_app, "connection"),
    (fx_app, "fx"),
    (override_app, "override"),
    (kpi_app, "kpi"),
    (db_app, "db"),
    (pools_app, "pools"),
    (webhooks_app, "webhooks"),
    (grants_app, "grants"),
):
    app.add_typer(sub, name=name)

# Everything goes through these two: what tenants and providers wrote is printed as it is,
# never as markup or control sequences (terminal.py), so styles are given with `style=`.
# Piped output (files, CI logs, tests) gets wide tables instead of 80 wrapped columns.
console = TerminalConsole(width=None if sys.stdout.isatty() else 160)
err = TerminalConsole(stderr=True, width=None if sys.stderr.isatty() else 160)


def _warehouse():  # type: ignore[no-untyped-def]
    from kpi_pipelines.warehouse.database import Warehouse

    with console.status(Text("Starting the warehouse…"), spinner="dots"):
        return Warehouse.connect().ensure_ready()


def _fail(message: str) -> typer.Exit:
    _print_error(message)
    return typer.Exit(code=1)


def _print_error(message: str, heading: str = "error:") -> None:
    err.print(heading, style="bold red", end=" ")
    err.print(message, soft_wrap=True)


def _require_workspace(warehouse: Any, workspace_id: str) -> None:
    from kpi_pipelines.warehouse.control import UnknownWorkspace, get_workspace

    try:
        with warehouse.control() as db:
            get_workspace(db, workspace_id)
    except UnknownWorkspace as exc:
        raise _fail(str(exc)) from None


def _spec(provider: str) -> Any:
    """The provider's spec, or a one-line error naming the known ones."""
    from kpi_pipelines.integrations.shared.spec import spec_for

    try:
        return spec_for(provider)
    except LookupError as exc:
        raise _fail(str(exc)) from None


def _validation_problems(exc: Any) -> str:
    """A pydantic error as one line: each problem's field and reason (no input echoed)."""
    return "; ".join(
        f"{'.'.join(str(part) for part in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
        for e in exc.errors()
    )


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    result = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _fail(f"{what} {item!r} must look like key=value")
        result[key.strip()] = value.strip()
    return result


# --- db ---------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create the roles and schema if needed and apply every migration."""
    warehouse = _warehouse()
    console.print(f"warehouse schema at revision {warehouse.upgrade()}")
    if warehouse.tenant_session_powers():
        console.print("warning:", style="yellow", end=" ")
        console.print(
            "kpi_tenant sessions can still signal, watch or advisory-lock other sessions: only"
            " a superuser can revoke that. Run as one, in this database:"
        )
        console.print("\n".join(warehouse.session_power_statements()))


@pools_app.command("set")
def pools_set(
    limit: Annotated[
        list[str] | None, typer.Option(help="pool=N to override a provider's default (repeatable).")
    ] = None,
) -> None:
    """Write every provider's pool limit into the Dagster instance."""
    from kpi_pipelines.automation.pools import provider_pool_limits, set_pool_limits
    from kpi_pipelines.dagster_instance import open_instance
    from kpi_pipelines.integrations.shared.spec import discover

    limits = provider_pool_limits(discover())
    for pool, value in _pairs(limit, "limit").items():
        if not value.isdigit() or int(value) < 1:
            raise _fail(f"limit for pool {pool!r} must be a positive integer, got {value!r}")
        limits[pool] = int(value)
    instance = open_instance()
    for pool, value in set_pool_limits(instance, limits).items():
        console.print(f"pool {pool}: {value} run(s) at once")
    if not limits:
        console.print("no provider declares a pool yet")


@webhooks_app.command("serve")
def webhooks_serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8787,
) -> None:
    """Receive providers' webhooks (Stripe: POST /stripe/<workspace>, or /stripe for Connect)."""
    from kpi_pipelines.integrations.shared.webhook_server import serve
    from kpi_pipelines.services import Stopped

    warehouse = _warehouse()
    console.print(f"receiving Stripe webhooks on http://{host}:{port}/stripe/<workspace>")
    # uvicorn shuts down gracefully on SIGINT and SIGTERM, then raises the signal again
    with contextlib.suppress(KeyboardInterrupt, Stopped):  # stopped as asked: exit 0
        serve(warehouse, host, port)


@app.command("providers")
def providers() -> None:
    """The providers this deployment knows (their specs), as a Markdown table."""
    from kpi_pipelines.integrations.shared.spec import discover, provider_table

    console.print(provider_table(discover()), soft_wrap=True)


# --- workspaces -------------------------------------------------------------------------


@workspace_app.command("add")
def workspace_add(
    workspace_id: Annotated[
        str, typer.Argument(help="Short id: lowercase letters, digits, - or _.")
    ],
    name: Annotated[str | None, typer.Option(help="Display name (default: the id).")] = None,
    currency: Annotated[str, typer.Option(help="Reporting currency (ISO 4217).")] = "USD",
    timezone: Annotated[str, typer.Option(help="IANA time zone of the reporting day.")] = "UTC",
) -> None:
    """Add a tenant workspace."""
    from pydantic import ValidationError

    from kpi_pipelines.warehouse.control import Workspace, add_workspace

    try:
        workspace = Workspace(
            id=workspace_id,
            name=name or workspace_id,
            reporting_currency=currency,
            timezone=timezone,
        )
    except ValidationError as exc:
        raise _fail(_validation_problems(exc)) from None
    from kpi_pipelines.automation.partitions import register_partition
    from kpi_pipelines.dagster_instance import open_instance

    warehouse = _warehouse()
    try:
        add_workspace(warehouse, workspace)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    register_partition(open_instance(), workspace.id)
    console.print(
        f"added workspace {workspace.id} ({workspace.reporting_currency},"
        f" {workspace.timezone}) and its Dagster partition"
    )


@workspace_app.command("list")
def workspace_list() -> None:
    """List workspaces."""
    from kpi_pipelines.warehouse.control import list_workspaces

    table = Table("id", "name", "currency", "time zone")
    for w in list_workspaces(_warehouse()):
        table.add_row(w.id, w.name, w.reporting_currency, w.timezone)
    console.print(table)


@workspace_app.command("remove")
def workspace_remove(
    workspace_id: str,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove a workspace and every row it owns."""
    from kpi_pipelines.warehouse.control import UnknownWorkspace, remove_workspace

    if not yes:
        typer.confirm(f"Delete workspace {workspace_id!r} and all its data?", abort=True)
    from kpi_pipelines.automation.partitions import unregister_partition
    from kpi_pipelines.dagster_instance import open_instance
    from kpi_pipelines.integrations.shared.spec import discover

    warehouse = _warehouse()
    try:
        remove_workspace(warehouse, workspace_id)
    except UnknownWorkspace as exc:
        raise _fail(str(exc)) from None
    unregister_partition(open_instance(), workspace_id, [spec.key for spec in discover()])
    console.print(f"removed workspace {workspace_id} and its Dagster partitions")


# --- connections ------------------------------------------------------------------------


@connection_app.command("add")
def connection_add(
    workspace_id: str,
    provider: str,
    name: Annotated[
        str, typer.Option(help="Connection name, when a workspace has several.")
    ] = "default",
    setting: Annotated[
        list[str] | None, typer.Option(help="key=value setting (repeatable).")
    ] = None,
    settings_json: Annotated[
        str | None, typer.Option(help="All settings as a JSON object.")
    ] = None,
    settings_file: Annotated[
        Path | None, typer.Option(help="All settings from a JSON file.")
    ] = None,
    secret: Annotated[
        list[str] | None,
        typer.Option(
            help="purpose=ENV_VAR: the environment variable holding a secret (repeatable)."
        ),
    ] = None,
) -> None:
    """Add (or replace) a workspace's connection to a provider."""
    from pydantic import ValidationError

    from kpi_pipelines.integrations.shared.connection_settings import save_connection
    from kpi_pipelines.warehouse.control import Connection, UnknownWorkspace

    values: dict[str, Any] = {}
    try:
        if settings_file:
            values.update(json.loads(settings_file.read_text(encoding="utf-8")))
        if settings_json:
            values.update(json.loads(settings_json))
    except (OSError, json.JSONDecodeError) as exc:
        raise _fail(f"settings are not valid JSON: {exc}") from None
    values.update(_pairs(setting, "setting"))
    spec = _spec(provider)
    try:
        connection = Connection(
            workspace_id=workspace_id,
            provider=provider,
            name=name,
            settings=values,
            secret_env=_pairs(secret, "secret"),
        )
        # Checked against the provider's spec now, rather than failing its first run.
        saved = save_connection(_warehouse(), connection, spec)
    except ValidationError as exc:
        raise _fail(_validation_problems(exc)) from None
    except (UnknownWorkspace, ValueError) as exc:
        raise _fail(str(exc)) from None
    from kpi_pipelines.automation.partitions import register_partition
    from kpi_pipelines.dagster_instance import open_instance

    # after the connection is saved: the partition sensor never sees a partition first
    register_partition(open_instance(), workspace_id, provider)
    console.print(
        f"saved {provider} connection {saved.name} for workspace {workspace_id}"
        f" (its partition of {spec.asset_key.to_user_string()})"
    )


@connection_app.command("list")
def connection_list(workspace_id: Annotated[str | None, typer.Argument()] = None) -> None:
    """List connections (secrets are shown by variable name only)."""
    from kpi_pipelines.warehouse.control import list_connections

    table = Table(
        "workspace",
        "provider",
        "name",
        "secrets (env vars)",
        "last success",
        "failures",
        "last error",
    )
    with _warehouse().control() as db:
        for c in list_connections(db, workspace_id=workspace_id):
            table.add_row(
                c.workspace_id,
                c.provider,
                c.name,
                ", ".join(f"{k}={v}" for k, v in c.secret_env.items()),
                c.last_success_at.isoformat(timespec="seconds") if c.last_success_at else "-",
                str(c.consecutive_failures),
                (c.last_error or "")[:60],
            )
    console.print(table)


@app.command("connect")
def connect(
    workspace_id: str,
    provider: str,
    connection: Annotated[str | None, typer.Option(help="Connection name, if several.")] = None,
    no_browser: Annotated[
        bool,
        typer.Option(
            "--no-browser",
            help="Only print the consent page's address (a machine without a browser).",
        ),
    ] = False,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the consent page's answer.")
    ] = 300.0,
) -> None:
    """Grant a connection access on its provider's consent page (OAuth with PKCE) and keep
    the grant encrypted in the warehouse."""
    from kpi_pipelines.integrations.shared.errors import ProviderError
    from kpi_pipelines.integrations.shared.grants import GrantKeyError
    from kpi_pipelines.integrations.shared.oauth_connect import (
        ConsentRefused,
        ConsentTimeout,
        connect_workspace,
    )
    from kpi_pipelines.integrations.shared.redaction import redact
    from kpi_pipelines.integrations.shared.secrets import MissingSecret
    from kpi_pipelines.warehouse.control import UnknownConnection

    spec = _spec(provider)
    warehouse = _warehouse()
    _require_workspace(warehouse, workspace_id)
    try:
        connected = connect_workspace(
            warehouse,
            spec,
            workspace_id,
            actor=f"user:{_os_user()}",
            connection_name=connection,
            say=lambda text: console.print(text, soft_wrap=True),
            # one line whatever the terminal's width, so it can be copied whole
            show_url=lambda url: console.print(url, soft_wrap=True, overflow="ignore"),
            open_browser=not no_browser,
            timeout=timeout,
        )
    except (
        ConsentRefused,
        ConsentTimeout,
        GrantKeyError,
        MissingSecret,
        ProviderError,
        UnknownConnection,
        ValueError,
    ) as exc:
        raise _fail(redact(str(exc))) from None
    granted = f" ({connected.scope})" if connected.scope else ""
    console.print("✓", style="green", end=" ")
    console.print(
        f"{provider} access granted for workspace {workspace_id}'s connection"
        f" {connected.connection.name}{granted}; the grant is stored encrypted in the warehouse",
        soft_wrap=True,
    )
    if connected.dropped_variable:
        console.print(
            f"the connection no longer reads {connected.dropped_variable}: the stored grant"
            " replaces it",
            soft_wrap=True,
        )


@grants_app.command("rotate-key")
def grants_rotate_key() -> None:
    """Seal every stored grant again with the newest key of KPI_GRANT_KEYS (the first);
    the older keys may then be removed from the list."""
    from kpi_pipelines.integrations.shared.grants import GrantKeyError, rotate_grant_keys

    try:
        rotation = rotate_grant_keys(_warehouse(), actor=f"user:{_os_user()}")
    except GrantKeyError as exc:
        raise _fail(str(exc)) from None
    console.print(
        f"{rotation.resealed} grant(s) of {rotation.workspaces} workspace(s) sealed with the"
        " newest key of KPI_GRANT_KEYS",
        soft_wrap=True,
    )
    if rotation.unreadable:
        _print_error(
            f"{len(rotation.unreadable)} grant(s) no key in KPI_GRANT_KEYS opens (left as they"
            f" are; keep their key in the list, or connect them again):"
            f" {'; '.join(rotation.unreadable)}"
        )
        raise typer.Exit(code=1)
    console.print("the other keys may now be removed from KPI_GRANT_KEYS", soft_wrap=True)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return "unknown"


# --- imports ----------------------------------------------------------------------------


def _run_provider(provider: str, workspace_id: str, run_config: dict[str, Any]) -> bool:
    from kpi_pipelines.dagster_instance import open_instance
    from kpi_pipelines.runs import run_provider

    warehouse = _warehouse()
    instance = open_instance()
    try:
        with console.status(
            Text(f"Running {provider} for {workspace_id} through Dagster…"), spinner="dots"
        ) as status:
            outcome = run_provider(
                warehouse,
                instance,
                provider,
                workspace_id,
                run_config,
                report=lambda what: status.update(Text(f"{provider} → {workspace_id}: {what}")),
            )
    except LookupError as exc:
        raise _fail(str(exc)) from None
    if outcome.success:
        console.print("✓", style="green", end=" ")
        console.print(
            f"{provider} → {workspace_id}: {outcome.metadata.get('records_processed', 0)} records,"
            f" {outcome.metadata.get('points_written', 0)} points written, run {outcome.run_id}"
        )
        return True
    _print_error(
        outcome.failure or f"run {outcome.run_id} failed",
        heading=f"✗ {provider} → {workspace_id} failed:",
    )
    return False


@app.command("sync")
def sync(
    workspace_id: str,
    provider: str,
    start: Annotated[
        str | None,
        typer.Option("--from", help="Re-sync from this day (YYYY-MM-DD), where supported."),
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="Last day to re-sync (YYYY-MM-DD).")
    ] = None,
    connection: Annotated[str | None, typer.Option(help="Connection name, if several.")] = None,
    reconcile: Annotated[
        bool, typer.Option(help="Compare every object with its landed copy (Stripe).")
    ] = False,
) -> None:
    """Sync one provider for one workspace, as a Dagster run recorded in the instance."""
    spec = _spec(provider)
    options = {"connection": connection, "start_date": start, "end_date": end}
    if reconcile:
        options["reconcile"] = True
    config = {k: v for k, v in options.items() if v is not None}
    unknown = set(config) - set(spec.run_config.model_fields)
    if unknown:
        raise _fail(f"{provider} does not take {', '.join(sorted(unknown))}")
    if not _run_provider(provider, workspace_id, config):
        raise typer.Exit(code=1)


@app.command("import")
def import_(
    workspace_id: str,
    provider: str,
    file: Annotated[Path | None, typer.Argument(help="The file, for file providers (CSV).")] = None,
    connection: Annotated[str | None, typer.Option(help="Connection name, if several.")] = None,
    range_: Annotated[
        str | None,
        typer.Option("--range", help="Another range than the connection's (Google Sheets)."),
    ] = None,
) -> None:
    """Import a workspace's own table (a CSV file, a Google Sheet), all-or-nothing, as a
    Dagster run."""
    spec = _spec(provider)
    if not spec.imports:
        raise _fail(
            f"{provider} is synced, not imported: `kpi-pipelines sync {workspace_id} {provider}`"
        )
    config: dict[str, Any] = {}
    if spec.file_option:
        if file is None:
            raise _fail(
                f"{provider} imports a file: `kpi-pipelines import {workspace_id} {provider} FILE`"
            )
        config[spec.file_option] = str(file.resolve())
    elif file is not None:
        raise _fail(f"{provider} takes no file")
    if connection:
        config["connection"] = connection
    if range_:
        if "range" not in spec.run_config.model_fields:
            raise _fail(f"{provider} takes no --range")
        config["range"] = range_
    if not _run_provider(provider, workspace_id, config):
        raise typer.Exit(code=1)


@fx_app.command("import")
def fx_import(
    path: Annotated[Path, typer.Argument(help="CSV with columns day,base,quote,rate.")],
) -> None:
    """Import exchange rates (1 base = rate quote, per day)."""
    from kpi_pipelines.warehouse.control import import_fx_rates, read_fx_csv

    try:
        rates = read_fx_csv(path)
    except (OSError, ValueError) as exc:
        raise _fail(str(exc)) from None
    count = import_fx_rates(_warehouse(), rates)
    console.print(f"imported {count} exchange rate(s)")


# --- overrides --------------------------------------------------------------------------


@override_app.command("set")
def override_set(
    workspace_id: str,
    source: str,
    metric: str,
    day: Annotated[str, typer.Argument(help="Reporting day, YYYY-MM-DD.")],
    value: float,
    dimension: Annotated[
        list[str] | None, typer.Option(help="key=value breakdown (repeatable).")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why the value is overridden.")] = None,
    user: Annotated[str | None, typer.Option(help="Who sets it (default: the OS user).")] = None,
) -> None:
    """Override one KPI value until the source's next sync writes it."""
    from pydantic import ValidationError

    from kpi_pipelines.models import KPIData, day_timestamp
    from kpi_pipelines.warehouse.tenant_data import set_override

    try:
        point = KPIData(
            value=value,
            timestamp=day_timestamp(date.fromisoformat(day)),
            metadata={"granularity": "day"},
            source=source,
            workspace_id=workspace_id,
            metric=metric,
            dimensions=_pairs(dimension, "dimension"),
        )
    except (ValidationError, ValueError) as exc:
        raise _fail(str(exc)) from None
    try:
        set_override(_warehouse(), point, user=user or getpass.getuser(), reason=reason)
    except LookupError as exc:
        raise _fail(str(exc)) from None
    console.print(f"override set: {workspace_id} {source}/{metric} {day} = {value:g}")


@override_app.command("list")
def override_list(workspace_id: str) -> None:
    """List a workspace's overrides, open and superseded."""
    from kpi_pipelines.warehouse.tenant_data import list_overrides

    warehouse = _warehouse()
    _require_workspace(warehouse, workspace_id)
    table = Table(
        "source", "metric", "day", "breakdown", "value", "set by", "set at", "superseded", "reason"
    )
    for o in list_overrides(warehouse, workspace_id):
        table.add_row(
            o.source,
            o.metric,
            o.timestamp.date().isoformat(),
            o.dimensions_key,
            f"{o.value:g}",
            o.set_by,
            o.set_at.isoformat(timespec="seconds"),
            f"{o.superseded_at.isoformat(timespec='seconds')} by {o.superseded_by}"
            if o.superseded_at
            else "open",
            o.reason or "",
        )
    console.print(table)


# --- KPIs -------------------------------------------------------------------------------


@kpi_app.command("show")
def kpi_show(
    workspace_id: str,
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    metric: Annotated[
        str | None, typer.Option(help="Only this metric (all days and breakdowns).")
    ] = None,
    days: Annotated[int, typer.Option(help="With --metric: how many days back.")] = 30,
) -> None:
    """Show a workspace's KPIs: the latest total of each metric, or one metric's history."""
    from kpi_pipelines.warehouse.tenant_data import latest_points, read_points

    warehouse = _warehouse()
    _require_workspace(warehouse, workspace_id)
    if metric:
        since = datetime.now(UTC) - timedelta(days=days)
        points = read_points(warehouse, workspace_id, source=source, metric=metric, since=since)
    else:
        points = [
            p for p in latest_points(warehouse, workspace_id) if not source or p.source == source
        ]
    console.print(_kpi_table(workspace_id, points))


def _kpi_table(workspace_id: str, points: list[Any]) -> Table:
    table = Table(
        "source", "metric", "day", "breakdown", "value", "origin", title=f"KPIs of {workspace_id}"
    )
    for p in points:
        table.add_row(
            p.source,
            p.metric,
            p.timestamp.date().isoformat(),
            ", ".join(f"{k}={v}" for k, v in p.dimensions.items()),
            f"{p.value:,.2f}",
            p.origin,
        )
    return table


# --- demo and UI ------------------------------------------------------------------------


@app.command()
def demo() -> None:
    """Two demo workspaces, sample data for every provider, materialized through Dagster."""
    from kpi_pipelines.dagster_instance import open_instance
    from kpi_pipelines.demo import demo_providers, ensure_workspaces, start_demo_stack
    from kpi_pipelines.runs import queue_served, run_mart, run_provider
    from kpi_pipelines.warehouse.tenant_data import latest_points

    warehouse = _warehouse()
    instance = open_instance()
    if queue_served(instance):
        # Its runs would go through the queue and run in that daemon's code server, which
        # has none of the simulators (and their settings) the demo starts.
        raise _fail(
            "a Dagster daemon serves this instance's run queue (`kpi-pipelines ui` or `dev`"
            " is running, or stopped less than a minute ago): stop it, run the demo, then"
            " `kpi-pipelines dev`"
        )
    workspaces = ensure_workspaces(warehouse)
    providers = list(demo_providers())
    failures = []
    stack = start_demo_stack(settings.kpi_home() / "demo" / "simulators")
    with (
        stack_stopped(stack),
        Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", markup=False),
            TimeElapsedColumn(),
            console=console,
        ) as progress,
    ):
        task = progress.add_task("demo", total=len(workspaces) * len(providers))
        for workspace in workspaces:
            folder = settings.kpi_home() / "demo" / workspace.id
            for provider in providers:
                progress.update(task, description=f"{workspace.id}: {provider.provider}")
                run_config = provider.prepare(warehouse, workspace, folder)
                result = run_provider(
                    warehouse,
                    instance,
                    provider.provider,
                    workspace.id,
                    run_config,
                    report=lambda what: progress.update(task, description=what),
                )
                if not result.success:
                    failures.append(f"{workspace.id}/{provider.provider} (run {result.run_id})")
                progress.advance(task)
            progress.update(task, description=f"{workspace.id}: kpi_mart")
            mart = run_mart(
                instance,
                workspace.id,
                report=lambda what: progress.update(task, description=what),
            )
            if not mart.success:
                failures.append(f"{workspace.id}/kpi_mart (run {mart.run_id})")
    for workspace in workspaces:
        console.print(_kpi_table(workspace.id, latest_points(warehouse, workspace.id)))
    if failures:
        raise _fail("demo runs failed: " + ", ".join(failures))
    console.print("demo done:", style="green", end=" ")
    console.print(
        f"{len(workspaces)} workspaces x {len(providers)} provider(s),"
        " and each workspace's KPI mart. `kpi-pipelines dev` serves their simulators again and"
        " keeps them syncing (schedules, sensors, Stripe webhooks) in the Dagster UI; while it"
        ' runs, `eval "$(kpi-pipelines env --demo)"` in another shell lets Dagster\'s own'
        " tools (dagster, dg) run them too. `kpi-pipelines ui` only browses the runs"
    )


@contextlib.contextmanager
def stack_stopped(stack: Any) -> Iterator[None]:
    try:
        yield
    finally:
        stack.stop()


@app.command("env")
def env_command(
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="Also load the demo simulators' settings and the demo workspaces' secrets"
            " (while `kpi-pipelines dev` serves them) from their owner-only file: the output"
            " names the file, never a value.",
        ),
    ] = False,
) -> None:
    """Print the variables that point Dagster's own tools (dagster, dg, dagster-webserver,
    dagster-daemon) at this project's instance from any folder, for a shell to load:
    eval "$(kpi-pipelines env)" (the repository root needs none of them). A variable that
    holds a secret is named in a comment, never printed: the shell that runs this already
    has it (the command read it from there)."""
    import shlex

    from kpi_pipelines.dagster_instance import DEPLOYMENT_STORAGE_VARIABLES, prepare_dagster_home

    demo_env = settings.kpi_home() / "demo" / "dev.env"
    if demo and not demo_env.is_file():
        raise _fail(
            "the demo's simulators are not serving: start `kpi-pipelines dev` first, in"
            f" another shell (it writes their settings and secrets to {demo_env})"
        )
    _warehouse()  # set up (migrated) before the tools use it
    prepare_dagster_home()
    os.environ.setdefault("KPI_HOME", str(settings.kpi_home()))
    names = ["DAGSTER_HOME", "KPI_HOME", "KPI_DATABASE_URL", *DEPLOYMENT_STORAGE_VARIABLES]
    for name in names:
        value = os.environ.get(name)
        if not value:
            continue
        if _holds_secret(name, value):
            print(
                f"# {name} is set and holds a secret, so it is not printed: the tools read it"
                " from the environment of this shell (elsewhere, export it from where you keep it)"
            )
        else:
            print(f"export {name}={shlex.quote(value)}")
    if demo:
        print(
            "# the demo simulators' settings and the demo workspaces' secrets, read by the"
            " shell from the file `kpi-pipelines dev` keeps for them (owner-only)"
        )
        print(f"set -a; . {shlex.quote(str(demo_env))}; set +a")


def _holds_secret(name: str, value: str) -> bool:
    """A password (DAGSTER_PG_PASSWORD), or a database URL that carries one."""
    if name == "DAGSTER_PG_PASSWORD":
        return True
    if name != "KPI_DATABASE_URL":
        return False
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(value)
    except (ArgumentError, ValueError):
        return True  # unreadable: not printed rather than guessed
    return bool(url.password) or any("password" in key.lower() for key in url.query)


CODE_SERVER_WORKSPACE = """load_from:
  - grpc_server: {{host: 127.0.0.1, port: {port}, location_name: kpi_pipelines}}
"""


def _dagster_services(port: int) -> tuple[dict[str, list[str]], dict[str, Callable[[], bool]]]:
    """The services of a deployment on this machine (README "Deploying"): one code server
    for the definitions, which the webserver and the daemon share once it serves (without
    it each loads the definitions itself, and the daemon again every minute), and which
    starts the runs. Creates the providers' pools first."""
    import socket
    import subprocess

    from kpi_pipelines.automation.pools import create_missing_pools, provider_pool_limits
    from kpi_pipelines.dagster_instance import CODE_LOCATION, open_instance
    from kpi_pipelines.integrations.shared.spec import discover

    create_missing_pools(open_instance(), provider_pool_limits(discover()))
    code_port = _free_port()
    workspace = Path(os.environ["DAGSTER_HOME"]) / "workspace.yaml"
    workspace.write_text(CODE_SERVER_WORKSPACE.format(port=code_port), encoding="utf-8")
    bin_dir = Path(sys.executable).parent
    dagster = str(bin_dir / "dagster")
    health = [dagster, "api", "grpc-health-check", "-h", "127.0.0.1", "-p", str(code_port)]

    def serving() -> bool:
        return subprocess.run(health, capture_output=True, timeout=60).returncode == 0

    def answering() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    services = {
        "code server": [
            *(dagster, "code-server", "start", "-m", "kpi_pipelines.definitions"),
            *("--location-name", CODE_LOCATION, "-h", "127.0.0.1", "-p", str(code_port)),
        ],
        "dagster-webserver": [
            str(bin_dir / "dagster-webserver"),
            *("-w", str(workspace), "-h", "127.0.0.1", "-p", str(port)),
        ],
        "dagster-daemon": [str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace)],
    }
    return services, {"code server": serving, "dagster-webserver": answering}


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@app.command()
def ui(
    port: Annotated[int, typer.Option(help="Port of the Dagster UI.")] = 3000,
) -> None:
    """Start Dagster's webserver and daemon, sharing one code server, on this project's
    instance; Ctrl-C stops them (and the embedded PostgreSQL, when nothing else uses it)."""
    from kpi_pipelines.services import run_services

    _warehouse()  # migrated before Dagster starts
    services, ready = _dagster_services(port)
    with _quiet_services("ui", port) as output:
        code = run_services(
            services,
            ready=ready,
            output=output,
            on_started=(
                f"Dagster UI on http://127.0.0.1:{port} and its daemon"
                f" (DAGSTER_HOME={os.environ['DAGSTER_HOME']}); Ctrl-C stops them"
            ),
        )
    raise typer.Exit(code)


def _say(text: str, level: int = logging.INFO) -> None:
    """A line for the person running `ui` or `dev`, with the time (warnings in yellow and
    errors in red on a terminal)."""
    style = "red" if level >= logging.ERROR else "yellow" if level >= logging.WARNING else None
    console.print(f"{datetime.now():%H:%M:%S} {text}", style=style, soft_wrap=True)


@contextlib.contextmanager
def _quiet_services(command: str, port: int) -> Iterator[Any]:
    """What `ui` and `dev` show: the services up, each run's start and outcome, and the
    warnings and errors of the services and of this process; everything else the services
    print (sensor ticks, every event of every run, access logs) and this process logs goes
    to `$KPI_HOME/logs/<command>.log`, whose path is said first. Yields the ServiceLog."""
    from kpi_pipelines.dagster_instance import open_instance
    from kpi_pipelines.run_reports import RunReporter
    from kpi_pipelines.services import ServiceLog

    output = ServiceLog(settings.kpi_home() / "logs" / f"{command}.log", _say)
    console.print(f"the services' full output: {output.path}", soft_wrap=True)
    own = logging.getLogger("kpi_pipelines")
    handler, level = output.handler(), own.level
    own.addHandler(handler)
    own.setLevel(logging.INFO)
    reporter = RunReporter(open_instance(), _say, f"http://127.0.0.1:{port}").start()
    try:
        yield output
    finally:
        reporter.stop()
        own.removeHandler(handler)
        own.setLevel(level)
        output.close()


@app.command()
def dev(
    port: Annotated[int, typer.Option(help="Port of the Dagster UI.")] = 3000,
    webhooks_port: Annotated[int, typer.Option(help="Port of the webhook receiver.")] = 8787,
    tick_seconds: Annotated[
        float, typer.Option(help="How often the simulators catch up with the clock.")
    ] = 30.0,
) -> None:
    """The whole local stack on the embedded PostgreSQL: the demo workspaces' provider
    simulators, the Stripe webhook receiver fed by the simulated accounts' events, and
    Dagster's code server, webserver and daemon, whose schedules and sensors keep the demo
    workspaces syncing. Ctrl-C stops everything it started, PostgreSQL included."""
    import threading

    from kpi_pipelines.automation.partitions import register_partition
    from kpi_pipelines.dagster_instance import open_instance
    from kpi_pipelines.demo import (
        demo_providers,
        ensure_workspaces,
        read_env_file,
        start_demo_stack,
        write_env_file,
    )
    from kpi_pipelines.services import run_services
    from kpi_pipelines.warehouse.tenant_data import latest_points

    warehouse = _warehouse()
    folder = settings.kpi_home() / "demo"
    stack = start_demo_stack(folder / "simulators")
    stopped = threading.Event()
    env_file = folder / "dev.env"
    with stack_stopped(stack):
        instance = open_instance()
        empty = []
        for workspace in ensure_workspaces(warehouse):
            providers = list(demo_providers())
            for provider in providers:
                provider.prepare(warehouse, workspace, folder / workspace.id)
            register_partition(instance, workspace.id, *(p.provider for p in providers))
            if not latest_points(warehouse, workspace.id):
                empty.append(workspace.id)
        receiver = f"http://127.0.0.1:{webhooks_port}"
        dagster_services, ready = _dagster_services(port)
        services = {
            "webhook receiver": [
                cli_command(),
                *("webhooks", "serve", "--host", "127.0.0.1", "--port", str(webhooks_port)),
            ],
            **dagster_services,
        }
        feeder = threading.Thread(
            target=_follow_clock, args=(stack, receiver, tick_seconds, stopped), daemon=True
        )
        try:
            # The secrets live in this file (owner-only), never in the database: the
            # services load it and their runs inherit it; so does a shell, with
            # `eval "$(kpi-pipelines env --demo)"`, while the simulators serve.
            write_env_file(env_file, stack.env())
            with _quiet_services("dev", port) as output:
                feeder.start()
                try:
                    code = run_services(
                        services,
                        env=read_env_file(env_file),
                        ready=ready,
                        output=output,
                        on_started=(
                            f"Dagster UI on http://127.0.0.1:{port}, its daemon, the webhook"
                            f" receiver on {receiver} fed by the Stripe simulator, and the demo"
                            f" simulators (their settings and secrets in {env_file}: in"
                            ' another shell, `eval "$(kpi-pipelines env --demo)"` gives'
                            " them to dagster and dg); Ctrl-C stops everything"
                            + (
                                f". {', '.join(empty)} ha{'s' if len(empty) == 1 else 've'} no"
                                " data yet: run `kpi-pipelines demo`, or materialize in the UI"
                                if empty
                                else ""
                            )
                        ),
                    )
                finally:
                    stopped.set()
                    feeder.join(timeout=30)
        finally:
            env_file.unlink(missing_ok=True)  # the simulators it points at are gone
    raise typer.Exit(code)


def cli_command() -> str:
    """This `kpi-pipelines` executable (beside this Python)."""
    return str(Path(sys.executable).parent / "kpi-pipelines")


def _follow_clock(stack: Any, receiver: str, every: float, stopped: Any) -> None:
    """Bring the simulators to the real clock and deliver their webhooks, until stopped; a
    receiver not yet up (or refusing) is tried again on the next round."""
    import httpx

    log = logging.getLogger("kpi_pipelines.dev")
    wait = 1.0  # first rounds: as soon as the receiver answers
    while not stopped.wait(wait):
        try:
            delivered = stack.follow_clock(receiver)
        except httpx.HTTPError as exc:
            log.info("webhook receiver not reachable yet (%s)", type(exc).__name__)
            continue
        if delivered:
            log.info("delivered %d Stripe event(s) to the webhook receiver", delivered)
        wait = every


def main() -> None:
    """The `kpi-pipelines` command: every error ends in one clear line and a non-zero exit
    (KPI_DEBUG=1 shows the traceback of an unexpected one)."""
    from kpi_pipelines.services import Stopped, stop_on_signals

    # SIGTERM and SIGHUP stop a command as Ctrl-C does, its cleanup included: a long-running
    # one (`ui`, `dev`, `webhooks serve`) stops the embedded PostgreSQL when it is its last
    # user, where the signals' default action would end the process before that.
    stop_on_signals()
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        raise SystemExit(130) from None
    except Stopped as stopped:
        err.print("stopped")
        raise SystemExit(128 + stopped.args[0]) from None
    except Exception as exc:
        if os.environ.get("KPI_DEBUG"):
            raise
        from sqlalchemy.exc import OperationalError

        from kpi_pipelines.integrations.shared.redaction import redact

        message = redact(str(exc)).strip() or type(exc).__name__
        if isinstance(exc, OperationalError):
            reason = redact(str(exc.orig)).strip().splitlines()[0][:300]
            message = f"cannot use the warehouse database (KPI_DATABASE_URL): {reason}"
        elif not isinstance(exc, ValueError | LookupError | PermissionError | OSError):
            message = (
                f"unexpected {type(exc).__name__}: {message.splitlines()[0][:300]}"
                " (run again with KPI_DEBUG=1 for the traceback)"
            )
        _print_error(message)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()

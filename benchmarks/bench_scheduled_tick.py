"""One scheduled tick of a provider through Dagster's daemon: runs grouped by the spec's
`workspaces_per_run` against one run per workspace (KPI_WORKSPACES_PER_RUN=1, how every
tick ran before).

In a fresh temporary KPI_HOME (the embedded PostgreSQL), N workspaces each get a connection
to a simulator on the real clock: `google_analytics` (the default) to the GA4 sandbox's one
property (in a process of its own), or `stripe` to an account of its own (12 customers, 60
days; the Stripe sandbox served by this process, whose CPU is not counted). Then
`kpi-pipelines ui` serves Dagster (code server, webserver, daemon with the project's
dagster.yaml: a queue of at most 8 runs at once). A tick is what the UI's "Test schedule"
makes of the provider's schedule (the code server evaluates it at the current time against
the warehouse's connections) and "Launch all runs" launches: the runs go through the
daemon's queue and start in processes of their own, as a cron tick's do (the daemon ticks
only at cron times, and Dagster offers no way to make it tick now).

With `--share F` only that share of the workspaces (picked at random, seeded) gets the
connection; the others exist without one, in between, as the workspaces of other providers
do, and every figure is per connected workspace.

Ticks measured, in this order, each after the one before has finished:
1. first load, grouped: every workspace's first sync (the property's or account's whole
   history);
2. the steady state, grouped: GA4's hourly tick (each report restates its lookback days),
   or Stripe's daily tick with its reconcile (the events since the last sync, then every
   object listed again and compared);
3. the steady state, one run per workspace (`--baseline`; `kpi-pipelines ui` restarted
   with KPI_WORKSPACES_PER_RUN=1).

For each: wall time from the launch to the last run's end; CPU-seconds of the daemon, the
code server with the run processes it starts, the webserver and PostgreSQL (every process
of the embedded server), in all and per workspace; the peak RSS of the daemon and of any
run process (sampled every 0.2 s); the run queue wait (creation to start) p50/max; the time
from the launch to each workspace's materialization p50/p95/max; and every partition's
status (the script exits 1 unless each workspace was materialized by the tick and none
failed). Then the extrapolation: workspaces one machine like this one syncs per hour at
the steady state's CPU per workspace, and what N machines with a run launcher take.

Nothing is asserted on time; the last line printed is one JSON object with every figure.

    python benchmarks/bench_scheduled_tick.py --workspaces 100 --baseline   # ~10 minutes
    python benchmarks/bench_scheduled_tick.py --workspaces 1000             # ~30 minutes
    python benchmarks/bench_scheduled_tick.py --provider stripe --workspaces 100
    python benchmarks/bench_scheduled_tick.py --workspaces 200 --share 0.5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's test helpers

from kpi_pipelines_tests.processes import (
    evaluate_schedule,
    free_port,
    launch_run_requests,
    wait_for_locations,
)

# The providers a tick can be measured for, and the name of their steady-state tick.
STEADY_TICK = {"google_analytics": "hourly", "stripe": "daily, with its reconcile"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspaces", type=int, default=100)
    parser.add_argument("--provider", choices=sorted(STEADY_TICK), default="google_analytics")
    parser.add_argument(
        "--share",
        type=float,
        default=1.0,
        help="the share of the workspaces connected to the provider, picked at random (the"
        " others have no connection to it, in between, as workspaces of other providers)",
    )
    parser.add_argument(
        "--baseline", action="store_true", help="also a tick with one run per workspace"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary KPI_HOME")
    args = parser.parse_args()
    with temporary_home("kpi-bench-tick-", keep=args.keep) as home:
        return measure(home, args.provider, args.workspaces, args.share, args.baseline)


@contextlib.contextmanager
def temporary_home(prefix: str, *, keep: bool = False):  # type: ignore[no-untyped-def]
    """A fresh KPI_HOME for this process and what it starts (the embedded PostgreSQL, the
    CLI's Dagster home), removed afterwards unless `keep`."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["KPI_HOME"] = str(home)
    os.environ.pop("DAGSTER_HOME", None)
    os.environ.pop("KPI_DATABASE_URL", None)
    try:
        yield home
    finally:
        if not keep:
            shutil.rmtree(home, ignore_errors=True)


def measure(home: Path, provider: str, count: int, share: float, baseline: bool) -> int:
    from kpi_pipelines.automation.partitions import provider_partitions, workspace_partitions
    from kpi_pipelines.dagster_instance import open_instance
    from kpi_pipelines.warehouse.control import Workspace, add_workspace
    from kpi_pipelines.warehouse.database import Warehouse

    steady = STEADY_TICK[provider]
    warehouse = Warehouse.connect().ensure_ready()
    every = [f"bench-{n:05d}" for n in range(count)]
    picked = set(random.Random(11).sample(every, max(1, round(share * count))))
    workspaces = [w for w in every if w in picked]  # in partition order
    for workspace_id in every:
        if workspace_id not in picked:
            add_workspace(warehouse, Workspace(id=workspace_id, name=workspace_id))
    try:
        with provider_sandbox(provider, warehouse, workspaces) as env:
            with open_instance() as instance:
                # as `workspace add` and `connection add` register them
                instance.add_dynamic_partitions(workspace_partitions.name, every)
                instance.add_dynamic_partitions(provider_partitions(provider).name, workspaces)
            print(
                f"{count:,} workspaces, {len(workspaces):,} with a {provider} connection;"
                f" KPI_HOME={home}",
                flush=True,
            )
            ticks = []
            with serving(home, env) as ui:
                ticks.append(tick("first load, grouped", provider, ui, workspaces))
                ticks.append(tick(f"{steady}, grouped", provider, ui, workspaces))
            if baseline:
                with serving(home, {**env, "KPI_WORKSPACES_PER_RUN": "1"}) as ui:
                    ticks.append(tick(f"{steady}, one run per workspace", provider, ui, workspaces))
    finally:
        stop_embedded(home)
    report(count, ticks)
    return 0 if all(t.complete for t in ticks) else 1


@contextlib.contextmanager
def provider_sandbox(provider: str, warehouse: Any, workspaces: list[str]):  # type: ignore[no-untyped-def]
    """The provider's simulator serving every workspace's connection, on the real clock:
    yields the environment `kpi-pipelines ui` needs to reach it (its URLs, the secrets'
    variables)."""
    if provider == "google_analytics":
        sandbox, sandbox_env = start_google_sandbox()
        env = {**os.environ, **sandbox_env}
        try:
            add_workspaces(warehouse, workspaces, env)
            yield env
        finally:
            sandbox.send_signal(signal.SIGTERM)
            sandbox.wait(timeout=30)
        return
    with stripe_sandbox(warehouse, workspaces) as (env, _accounts):
        yield env


@contextlib.contextmanager
def stripe_sandbox(warehouse: Any, workspaces: list[str]):  # type: ignore[no-untyped-def]
    """A small Stripe account for each workspace, served by this process (a thread, like a
    remote API: its CPU is not the tick's), and each workspace's stripe connection to it:
    yields the environment `kpi-pipelines ui` needs and the accounts by workspace."""
    from kpi_pipelines.integrations.shared.redaction import register_secret
    from kpi_pipelines.sandbox.kit.server import LoopbackServer
    from kpi_pipelines.sandbox.stripe import create_app

    accounts = stripe_accounts(workspaces)
    for account in accounts.values():
        register_secret(account.api_key, account.webhook_secret)
    with LoopbackServer(create_app(accounts.values())) as stripe:
        env = {**os.environ, "KPI_STRIPE_BASE_URL": stripe.base_url}
        connect_stripe_accounts(warehouse, accounts, env)
        yield env, accounts


def stripe_accounts(
    workspaces: list[str], *, customers: int = 12, days: int = 60
) -> dict[str, Any]:
    """A small Stripe account for each workspace (the sandbox's simulation ending now)."""
    from datetime import timedelta

    from kpi_pipelines.sandbox.stripe import StripeSandbox, StripeSandboxConfig

    now = datetime.now(UTC).replace(microsecond=0)
    return {
        workspace_id: StripeSandbox(
            StripeSandboxConfig(
                seed=n + 11,
                customers=customers,
                start=now - timedelta(days=days),
                now=now,
                currencies=("usd",),
                acquisition_days=days,
            ),
            api_key=f"sk_test_bench{n:05d}",
        )
        for n, workspace_id in enumerate(workspaces)
    }


def connect_stripe_accounts(warehouse: Any, accounts: dict[str, Any], env: dict[str, str]) -> None:
    """Each workspace and its stripe connection to its account, the key and webhook secret
    in variables of the workspace's namespace (set in `env`)."""
    from kpi_pipelines.warehouse.control import (
        Connection,
        Workspace,
        add_connection,
        add_workspace,
        secret_namespace,
    )

    for workspace_id, account in accounts.items():
        add_workspace(warehouse, Workspace(id=workspace_id, name=workspace_id))
        namespace = secret_namespace(workspace_id)
        env[f"{namespace}STRIPE_KEY"] = account.api_key
        env[f"{namespace}STRIPE_WHSEC"] = account.webhook_secret
        add_connection(
            warehouse,
            Connection(
                workspace_id=workspace_id,
                provider="stripe",
                secret_env={
                    "api_key": f"{namespace}STRIPE_KEY",
                    "webhook_secret": f"{namespace}STRIPE_WHSEC",
                },
            ),
        )


def start_google_sandbox() -> tuple[subprocess.Popen, dict[str, str]]:
    from kpi_pipelines.integrations.shared.oauth import GOOGLE_CLIENT_VARIABLES
    from kpi_pipelines.sandbox.google import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

    now = datetime.now(UTC).replace(microsecond=0).isoformat()
    command = [sys.executable, "-m", "kpi_pipelines.sandbox.google", "serve", "--port", "0"]
    process = subprocess.Popen(
        [*command, "--start", now, "--realtime"], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    url = process.stdout.readline().split()[-1]
    return process, {
        "KPI_GOOGLE_TOKEN_URL": f"{url}/token",
        "KPI_GOOGLE_ANALYTICS_BASE_URL": url,
        GOOGLE_CLIENT_VARIABLES["client_id"]: DEMO_CLIENT_ID,
        GOOGLE_CLIENT_VARIABLES["client_secret"]: DEMO_CLIENT_SECRET,
    }


def add_workspaces(warehouse: Any, workspaces: list[str], env: dict[str, str]) -> None:
    """The workspaces, each connected to the GA4 sandbox's one property by its own refresh
    token variable (set in `env`, for `kpi-pipelines ui`)."""
    from kpi_pipelines.sandbox.google import DEMO_PROPERTY_ID, DEMO_REFRESH_TOKEN
    from kpi_pipelines.warehouse.control import (
        Connection,
        Workspace,
        add_connection,
        add_workspace,
        secret_namespace,
    )

    for workspace_id in workspaces:
        add_workspace(warehouse, Workspace(id=workspace_id, name=workspace_id))
        variable = f"{secret_namespace(workspace_id)}GOOGLE_REFRESH_TOKEN"
        env[variable] = DEMO_REFRESH_TOKEN
        add_connection(
            warehouse,
            Connection(
                workspace_id=workspace_id,
                provider="google_analytics",
                settings={"property_id": DEMO_PROPERTY_ID},
                secret_env={"refresh_token": variable},
            ),
        )


@dataclass
class Serving:
    port: int
    process: psutil.Process


@contextlib.contextmanager
def serving(home: Path, env: dict[str, str]):  # type: ignore[no-untyped-def]
    """`kpi-pipelines ui` until the block ends, its code location loaded."""
    port = free_port()
    cli = Path(sys.executable).parent / "kpi-pipelines"
    with (home / "ui.log").open("ab") as log:
        process = subprocess.Popen(
            [str(cli), "ui", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_locations(port, process)
        yield Serving(port, psutil.Process(process.pid))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=120)


@dataclass
class Tick:
    name: str
    workspaces: int
    runs: int
    wall_s: float
    cpu_s: dict[str, float]
    peak_rss_mb: dict[str, float]
    queue_wait_s: list[float]
    synced_after_s: list[float]
    materialized: int
    failed: int
    complete: bool = field(default=False)

    def cpu_per_workspace(self) -> float:
        return sum(self.cpu_s.values()) / self.workspaces


def tick(name: str, provider: str, ui: Serving, workspaces: list[str]) -> Tick:
    from kpi_pipelines.dagster_instance import open_instance

    print(f"tick: {name} ...", flush=True)
    postgres = postmaster()
    before = cpu_by_component(ui.process, postgres)
    sampler = PeakSampler(ui.process)
    sampler.start()
    started = time.time()
    requests = evaluate_schedule(ui.port, f"{provider}_schedule", started)
    # launched 10 at a time, as a user would click through them (one mutation launching
    # a hundred runs outlasts the webserver's answer)
    run_ids = [
        run_id
        for first in range(0, len(requests), 10)
        for run_id in launch_run_requests(ui.port, requests[first : first + 10], f"{provider}_job")
    ]
    with open_instance() as instance:
        records = wait_for_runs(instance, run_ids)
        wall = max(r.end_time or 0 for r in records) - started
        after = cpu_by_component(ui.process, postgres)
        sampler.stop()
        synced = materializations_since(instance, provider, started)
    cpu = {component: after[component] - before[component] for component in after}
    statuses = {r.dagster_run.status.value for r in records}
    result = Tick(
        name=name,
        workspaces=len(workspaces),
        runs=len(records),
        wall_s=wall,
        cpu_s=cpu,
        peak_rss_mb=sampler.peaks,
        queue_wait_s=sorted((r.start_time or 0) - r.create_timestamp.timestamp() for r in records),
        synced_after_s=sorted(t - started for t in synced.values()),
        materialized=len(synced),
        failed=sum(r.dagster_run.status.value == "FAILURE" for r in records),
    )
    result.complete = statuses == {"SUCCESS"} and set(synced) == set(workspaces)
    print(
        f"  {len(records)} runs, {wall:.1f} s, {result.cpu_per_workspace():.2f} CPU-s per"
        f" workspace, {len(synced)} materialized, run statuses {sorted(statuses)}",
        flush=True,
    )
    return result


def wait_for_runs(instance: Any, run_ids: list[str], timeout: float = 3600) -> list[Any]:
    from dagster._core.storage.dagster_run import FINISHED_STATUSES, RunsFilter

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = instance.get_run_records(RunsFilter(run_ids=run_ids))
        if len(records) == len(run_ids) and all(
            r.dagster_run.status in FINISHED_STATUSES for r in records
        ):
            return records
        time.sleep(1)
    raise SystemExit(f"the tick's {len(run_ids)} runs did not finish in {timeout:.0f} s")


def materializations_since(instance: Any, provider: str, started: float) -> dict[str, float]:
    """Each workspace partition's materialization since `started`: its time."""
    import dagster as dg

    found: dict[str, float] = {}
    cursor = None
    while True:
        page = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey(f"{provider}_kpis"), after_timestamp=started
            ),
            limit=1000,
            cursor=cursor,
        )
        for record in page.records:
            partition = record.event_log_entry.dagster_event.partition
            found.setdefault(partition, record.timestamp)
        if not page.has_more:
            return found
        cursor = page.cursor


def postmaster() -> psutil.Process:
    """The embedded PostgreSQL's server process (its backends are its children)."""
    home = Path(os.environ["KPI_HOME"])
    for pid_file in home.rglob("postmaster.pid"):
        return psutil.Process(int(pid_file.read_text().split()[0]))
    raise SystemExit(f"no embedded PostgreSQL under {home}")


def stop_embedded(home: Path) -> None:
    with contextlib.suppress(SystemExit, psutil.Error):
        postmaster().send_signal(signal.SIGINT)  # a fast shutdown


def _cpu(process: psutil.Process, with_children_reaped: bool = True) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    total = times.user + times.system
    if with_children_reaped:
        total += times.children_user + times.children_system
    return total


ROLES = {
    "dagster-daemon": "daemon",
    "code-server": "code server and runs",
    "api grpc": "code server and runs",  # the code server's own server process
    # a run process: the code server's gRPC server spawns it (multiprocessing, "spawn")
    "spawn_main": "code server and runs",
    "dagster-webserver": "webserver",
}


def role_of(process: psutil.Process) -> str:
    try:
        command = " ".join(process.cmdline())
    except psutil.Error:
        return "other"
    return next((role for marker, role in ROLES.items() if marker in command), "other")


def cpu_by_component(ui: psutil.Process, postgres: psutil.Process) -> dict[str, float]:
    """CPU-seconds so far of each role's processes, with those they reaped (a run process
    that ended counts in its code server's), and of the embedded PostgreSQL's processes."""
    cpu = {"daemon": 0.0, "code server and runs": 0.0, "webserver": 0.0, "other": 0.0}
    for process in [ui, *ui.children(recursive=True)]:
        cpu[role_of(process)] += _cpu(process)
    cpu["postgresql"] = _cpu(postgres) + sum(_cpu(c, False) for c in postgres.children())
    return cpu


class PeakSampler(threading.Thread):
    """The peak RSS of the daemon and of any run process, sampled every 0.2 s."""

    def __init__(self, ui: psutil.Process) -> None:
        super().__init__(daemon=True)
        self.ui = ui
        self.peaks = {"daemon": 0.0, "run process": 0.0}
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            for child in self.ui.children(recursive=True):
                try:
                    command = " ".join(child.cmdline())
                    rss = child.memory_info().rss / 2**20
                except psutil.Error:
                    continue
                role = (
                    "run process"
                    if "spawn_main" in command
                    else "daemon"
                    if "dagster-daemon" in command
                    else None
                )
                if role:
                    self.peaks[role] = max(self.peaks[role], rss)
            time.sleep(0.2)

    def stop(self) -> None:
        self._done.set()
        self.join()


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(share * len(values)))]


def report(count: int, ticks: list[Tick]) -> None:
    print()
    print(
        "| tick | runs | wall s | CPU-s per workspace | daemon | code server + runs | webserver"
        " | PostgreSQL | peak daemon MB | peak run MB | queue wait p50/max s"
        " | synced after p50/p95/max s | materialized | failed |"
    )
    print(
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    for t in ticks:
        per = {k: v / t.workspaces for k, v in t.cpu_s.items()}
        print(
            f"| {t.name} | {t.runs} | {t.wall_s:.1f} | {t.cpu_per_workspace():.2f}"
            f" | {per['daemon']:.2f} | {per['code server and runs']:.2f}"
            f" | {per['webserver']:.2f} | {per['postgresql']:.2f}"
            f" | {t.peak_rss_mb['daemon']:.0f} | {t.peak_rss_mb['run process']:.0f}"
            f" | {statistics.median(t.queue_wait_s):.1f}/{max(t.queue_wait_s):.1f}"
            f" | {percentile(t.synced_after_s, 0.5):.1f}/{percentile(t.synced_after_s, 0.95):.1f}"
            f"/{max(t.synced_after_s or [float('nan')]):.1f}"
            f" | {t.materialized} | {t.failed} |"
        )
    # the steady state, grouped: the second tick
    steady = ticks[1] if len(ticks) > 1 else None
    figures: dict[str, Any] = {
        "workspaces": count,
        "connected": ticks[0].workspaces if ticks else 0,
        "ticks": [
            {
                **{k: v for k, v in t.__dict__.items() if not isinstance(v, list)},
                "cpu_s_per_workspace": round(t.cpu_per_workspace(), 3),
                "queue_wait_s": {
                    "p50": statistics.median(t.queue_wait_s),
                    "max": max(t.queue_wait_s),
                },
                "synced_after_s": {
                    f"p{round(share * 100)}": percentile(t.synced_after_s, share)
                    for share in (0.5, 0.95, 1.0)
                },
            }
            for t in ticks
        ],
    }
    if steady is not None:
        cores = psutil.cpu_count() or 1
        per_hour = 3600 * cores / steady.cpu_per_workspace()
        figures["workspaces_per_hour_per_machine"] = round(per_hour)
        print(
            f"\nextrapolation: at {steady.cpu_per_workspace():.2f} CPU-s per workspace, one"
            f" machine of {cores} cores syncs about {per_hour:,.0f} workspaces an hour"
            f" ({10_000 / per_hour:.1f} such machines' worth of run workers for 10,000 an hour,"
            " with one daemon and the database shared)"
        )
        baseline = next((t for t in ticks if "one run per workspace" in t.name), None)
        if baseline is not None:
            ratio = steady.cpu_per_workspace() / baseline.cpu_per_workspace()
            figures["cpu_ratio_grouped_to_per_workspace"] = round(ratio, 3)
            print(
                f"grouped / one run per workspace: {ratio:.2f}x the CPU per workspace,"
                f" {steady.wall_s / baseline.wall_s:.2f}x the wall time"
            )
    print(json.dumps(figures, default=str))


if __name__ == "__main__":
    sys.exit(main())

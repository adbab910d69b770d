"""Webhook to updated KPI: how long a Stripe event takes from its delivery to the receiver
until its workspace's KPIs are written, under a steady stream of signed events.

In a fresh temporary KPI_HOME (the embedded PostgreSQL), N workspaces each get a small
Stripe account (the Stripe sandbox, served on loopback by this process, on the real clock)
and a stripe connection with its webhook secret; each workspace is synced once. Then
`kpi-pipelines ui` (code server, webserver, the daemon with its webhook sensor) and
`kpi-pipelines webhooks serve` (the receiver) run as in a deployment, and this process
delivers each account's real events of its last 30 days, signed with the account's secret,
round-robin over the workspaces at a steady rate, for a while.

An event's latency is from its delivery (the receiver's 200) to its workspace's
materialization in the run that took it (the inbox names that run: its run key), the moment
its KPIs were written. Reported: p50, p95, p99 and max, the runs launched and the
workspaces per run, every event accounted for (the script exits 1 when one was not taken or
its run did not materialize its workspace). Nothing is asserted on time; the last line
printed is one JSON object with every figure.

    python benchmarks/bench_webhook_latency.py                        # 10 workspaces, 0.5 events/s, 3 minutes
    python benchmarks/bench_webhook_latency.py --rate 2 --seconds 120
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench_scheduled_tick import (
    free_port,
    percentile,
    serving,
    stop_embedded,
    stripe_sandbox,
    temporary_home,
)

# Where an event's wait goes, in order (each figure is over the events, not the runs).
PHASES = {
    "sensor": "delivery to its run's creation: the sensor's next tick",
    "queue": "the run's creation to its launch: the queue's next look, a free slot",
    "run start": "its launch to its step's start: a process, the Definitions, the instance",
    "syncs": "the step's start to the workspace's materialization: its sync and those before",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspaces", type=int, default=10)
    parser.add_argument("--rate", type=float, default=0.5, help="events per second")
    parser.add_argument("--seconds", type=float, default=180)
    args = parser.parse_args()
    with temporary_home("kpi-bench-webhooks-") as home:
        return measure(home, args.workspaces, args.rate, args.seconds)


def measure(home: Path, count: int, rate: float, seconds: float) -> int:
    from kpi_pipelines.dagster_instance import open_instance
    from kpi_pipelines.demo import materialize_workspaces
    from kpi_pipelines.warehouse.database import Warehouse

    ids = [f"bench-{n:03d}" for n in range(count)]
    warehouse = Warehouse.connect().ensure_ready()
    with stripe_sandbox(warehouse, ids) as (env, accounts):
        os.environ.update(env)
        with open_instance() as instance:
            results = materialize_workspaces(warehouse, instance, "stripe", ids)
        if not all(r.success for r in results):
            raise SystemExit("the first syncs failed")
        print(f"{count} workspaces synced once; streaming events ...", flush=True)
        receiver_port = free_port()
        try:
            with serving(home, env) as _ui:
                receiver = subprocess.Popen(
                    [
                        str(Path(sys.executable).parent / "kpi-pipelines"),
                        *("webhooks", "serve", "--port", str(receiver_port)),
                    ],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                try:
                    url = f"http://127.0.0.1:{receiver_port}/stripe"
                    wait_for_receiver(url)
                    delivered = stream(accounts, url, rate, seconds)
                    wait_until_taken(warehouse, [e for e, _, _ in delivered])
                    with open_instance() as instance:
                        outcome = latencies(warehouse, instance, delivered)
                finally:
                    receiver.terminate()
                    receiver.wait(timeout=60)
        finally:
            stop_embedded(home)
    return report(count, rate, seconds, outcome)


def wait_for_receiver(url: str, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url.rsplit("/", 1)[0] + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("the webhook receiver did not start")


def stream(
    accounts: dict[str, Any], url: str, rate: float, seconds: float
) -> list[tuple[str, str, float]]:
    """Each account's events of its last 30 days, one at a time, round-robin, at `rate` a
    second: (event id, workspace, delivery time) of each the receiver took."""
    from kpi_pipelines.sandbox.stripe.webhooks import deliver

    pools = {
        workspace_id: account.events_since(account.now_ts - 30 * 86400)
        for workspace_id, account in accounts.items()
    }
    delivered: list[tuple[str, str, float]] = []
    started = time.monotonic()
    total = int(rate * seconds)
    for n in range(total):
        workspace_id = list(pools)[n % len(pools)]
        pool = pools[workspace_id]
        if not pool:
            continue
        event = pool.pop(0)
        time.sleep(max(0.0, started + n / rate - time.monotonic()))
        [status] = deliver([event], f"{url}/{workspace_id}", accounts[workspace_id].webhook_secret)
        if status == 200:
            delivered.append((event["id"], workspace_id, time.time()))
    print(f"delivered {len(delivered)} events in {time.monotonic() - started:.0f} s", flush=True)
    return delivered


def wait_until_taken(warehouse: Any, event_ids: list[str], timeout: float = 900) -> None:
    """Until every delivered event is claimed by the sensor and the run its inbox row
    names exists and has finished."""
    import sqlalchemy as sa
    from dagster._core.storage.dagster_run import FINISHED_STATUSES, RunsFilter

    from kpi_pipelines.dagster_instance import open_instance

    deadline = time.monotonic() + timeout
    with open_instance() as instance:
        while time.monotonic() < deadline:
            with warehouse.control() as db:
                keys = db.execute(
                    sa.text(
                        "SELECT DISTINCT coalesce(run_key, '') FROM webhook_inbox"
                        " WHERE event_id = ANY(:ids)"
                    ),
                    {"ids": event_ids},
                ).scalars()
                keys = list(keys)
            done = "" not in keys and all(
                (runs := instance.get_runs(RunsFilter(tags={"dagster/run_key": key})))
                and runs[0].status in FINISHED_STATUSES
                for key in keys
            )
            if done:
                return
            time.sleep(1)
    raise SystemExit("the delivered events were not all taken and synced in time")


def latencies(
    warehouse: Any, instance: Any, delivered: list[tuple[str, str, float]]
) -> dict[str, Any]:
    import dagster as dg
    import sqlalchemy as sa
    from dagster._core.storage.dagster_run import RunsFilter

    with warehouse.control() as db:
        keys = dict(
            db.execute(
                sa.text(
                    "SELECT event_id || '/' || workspace_id, run_key FROM webhook_inbox"
                    " WHERE provider = 'stripe'"
                )
            ).all()
        )
    materialized: dict[str, dict[str, float]] = {}  # run key -> workspace -> time
    runs: dict[str, Any] = {}
    # run key -> (created, launched off the queue, its step started): where an event's wait went
    milestones: dict[str, tuple[float, float, float]] = {}
    for run_key in set(keys.values()):
        [record] = instance.get_run_records(RunsFilter(tags={"dagster/run_key": run_key}))
        run = runs[run_key] = record.dagster_run
        events = instance.all_logs(run.run_id)
        materialized[run_key] = {
            entry.dagster_event.partition: entry.timestamp
            for entry in events
            if entry.dagster_event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
        }
        first = {}
        for entry in events:
            first.setdefault(entry.dagster_event_type, entry.timestamp)
        dequeued = first.get(dg.DagsterEventType.RUN_STARTING)
        step = first.get(dg.DagsterEventType.STEP_START)
        if dequeued and step:
            milestones[run_key] = (record.create_timestamp.timestamp(), dequeued, step)
    waits, missing = [], []
    phases: dict[str, list[float]] = {phase: [] for phase in PHASES}
    for event_id, workspace_id, at in delivered:
        key = keys.get(f"{event_id}/{workspace_id}")
        written = materialized.get(key or "", {}).get(workspace_id)
        if written is None:
            missing.append(event_id)
            continue
        waits.append(written - at)
        if key in milestones:
            created, dequeued, step = milestones[key]
            for phase, seconds in zip(
                PHASES,
                (created - at, dequeued - created, step - dequeued, written - step),
                strict=True,
            ):
                phases[phase].append(seconds)
    sizes = [int(r.tags.get("kpi/workspaces", "1")) for r in runs.values()]
    from kpi_pipelines.run_reports import failure_reason

    for run in runs.values():
        if run.status.value != "SUCCESS":
            events = [e.dagster_event for e in instance.all_logs(run.run_id) if e.dagster_event]
            print(f"run {run.run_id} {run.status.value}: {failure_reason(events)}", flush=True)
    return {
        "events": len(delivered),
        "latencies": sorted(waits),
        "phases": phases,
        "missing": missing,
        "runs": len(runs),
        "workspaces_per_run": statistics.mean(sizes) if sizes else 0,
        "failed_runs": sum(r.status.value != "SUCCESS" for r in runs.values()),
    }


def report(count: int, rate: float, seconds: float, outcome: dict[str, Any]) -> int:
    waits = outcome["latencies"]
    figures = {
        "workspaces": count,
        "rate_per_s": rate,
        "seconds": seconds,
        "events": outcome["events"],
        "runs": outcome["runs"],
        "workspaces_per_run": round(outcome["workspaces_per_run"], 2),
        "failed_runs": outcome["failed_runs"],
        "missing": len(outcome["missing"]),
        **{
            f"p{round(share * 100)}_s": round(percentile(waits, share), 2)
            for share in (0.5, 0.95, 0.99)
        },
        "max_s": round(max(waits), 2) if waits else None,
        "phases": {
            phase: {
                f"p{round(share * 100)}_s": round(percentile(sorted(values), share), 2)
                for share in (0.5, 0.95)
            }
            for phase, values in outcome["phases"].items()
            if values
        },
    }
    print(
        f"\n{outcome['events']} events into {count} workspaces at {rate}/s: webhook to KPI"
        f" p50 {figures['p50_s']} s, p95 {figures['p95_s']} s, p99 {figures['p99_s']} s,"
        f" max {figures['max_s']} s; {outcome['runs']} runs"
        f" ({figures['workspaces_per_run']} workspaces per run), {outcome['failed_runs']} failed,"
        f" {len(outcome['missing'])} event(s) without their materialization"
    )
    for phase, figure in figures["phases"].items():
        print(
            f"  {phase:<12} p50 {figure['p50_s']:>6} s  p95 {figure['p95_s']:>6} s  ({PHASES[phase]})"
        )
    print(json.dumps(figures))
    return 0 if not outcome["missing"] and not outcome["failed_runs"] else 1


if __name__ == "__main__":
    sys.exit(main())

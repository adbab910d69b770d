"""`kpi-pipelines dev` after the quick start's demo: the demo workspaces keep syncing with
green runs launched by Dagster's daemon (the Stripe webhook sensor fed by the simulator's
events) and from the UI, and Ctrl-C stops everything, PostgreSQL included."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil

from kpi_pipelines_tests.processes import (
    cli_path,
    free_port,
    graphql,
    run_cli,
    wait_for_locations,
    wait_stopped,
)

RUNS = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    ... on Runs { results { runId jobName status tags { key value } } }
  }
}
"""

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""


def runs(port: int, **tags: str) -> list[dict[str, Any]]:
    selected = [{"key": key.replace("__", "/"), "value": value} for key, value in tags.items()]
    found = graphql(port, RUNS, {"filter": {"tags": selected}})["runsOrError"]["results"]
    for run in found:
        run["tags"] = {tag["key"]: tag["value"] for tag in run["tags"]}
    return found


def wait_for(what: str, check: Any, process: subprocess.Popen, timeout: float = 240) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        found = check()
        if found:
            return found
        time.sleep(2)
    raise AssertionError(f"gave up waiting for {what}")


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_dev_keeps_the_demo_workspaces_syncing_and_stops_everything(private_home) -> None:
    env = private_home
    demo = run_cli(env, "demo")
    assert "kpi-pipelines dev" in demo.stdout
    # Two days pass before `dev` starts: the Stripe simulator owes the receiver the events
    # of those days (Stripe retries undelivered webhooks for three).
    state_file = Path(env["KPI_HOME"]) / "demo" / "simulators" / "stripe" / "state.json"
    state = json.loads(state_file.read_text())
    state["delivered_through"] = {w: t - 2 * 86400 for w, t in state["delivered_through"].items()}
    state_file.write_text(json.dumps(state))

    port, webhooks_port = free_port(), free_port()
    dev = subprocess.Popen(
        [cli_path(), "dev", "--port", str(port), "--webhooks-port", str(webhooks_port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert wait_for_locations(port, dev) == [{"name": "kpi_pipelines", "loadStatus": "LOADED"}]
        env_file = Path(env["KPI_HOME"]) / "demo" / "dev.env"
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        assert "WS_ACME__STRIPE_WHSEC=" in env_file.read_text()

        # The daemon's webhook sensor runs Stripe for each workspace that got events.
        def synced_by_webhooks() -> list[dict[str, Any]]:
            done = [
                r
                for r in runs(port, dagster__sensor_name="stripe_webhook_sensor")
                if r["status"] in ("SUCCESS", "FAILURE", "CANCELED")
            ]
            partitions = {r["tags"].get("dagster/partition") for r in done}
            return done if {"acme", "globex"} <= partitions else []

        webhook_runs = wait_for("the webhook sensor's Stripe runs", synced_by_webhooks, dev)
        assert {r["status"] for r in webhook_runs} == {"SUCCESS"}, webhook_runs

        # A run launched from the UI reads the simulators' settings and secrets too.
        launched = graphql(
            port,
            LAUNCH,
            {
                "params": {
                    "selector": {
                        "repositoryLocationName": "kpi_pipelines",
                        "repositoryName": "__repository__",
                        "jobName": "google_analytics_job",
                    },
                    "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "acme"}]},
                }
            },
        )["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]

        def finished() -> str | None:
            [run] = [r for r in runs(port, dagster__partition="acme") if r["runId"] == run_id]
            return run["status"] if run["status"] in ("SUCCESS", "FAILURE", "CANCELED") else None

        assert wait_for("the GA4 run", finished, dev) == "SUCCESS"
        children = psutil.Process(dev.pid).children(recursive=True)
    finally:
        os.killpg(dev.pid, signal.SIGINT)
        output = dev.communicate(timeout=120)[0]
    assert dev.returncode == 0, output
    assert "delivered" in output and "Ctrl-C stops everything" in output
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not port_open(webhooks_port) and not port_open(port)
    assert wait_stopped(env), "the embedded PostgreSQL outlived `kpi-pipelines dev`"

"""`kpi-pipelines dev` after the quick start's demo: the demo workspaces keep syncing with
green runs launched by Dagster's daemon (the Stripe webhook sensor fed by the simulator's
events, owed and live) and from the UI; the terminal says what a person needs (services up,
runs started and finished, warnings and errors) and the log file whose path it gives has the
rest; SIGTERM stops everything, PostgreSQL included."""

from __future__ import annotations

import json
import re
import signal
import socket
import stat
from pathlib import Path
from typing import Any

from kpi_pipelines.automation.partitions import RANGE_END_TAG, RANGE_START_TAG
from kpi_pipelines_tests.processes import (
    FINISHED_RUN,
    assert_runs_succeeded,
    cli_serving,
    free_port,
    graphql,
    run_cli,
    wait_for,
    wait_for_runs,
)

SENSOR_RUNS = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) { ... on Runs { results { runId status tags { key value } } } }
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


def sensor_runs(port: int, sensor: str) -> list[dict[str, Any]]:
    selected = [{"key": "dagster/sensor_name", "value": sensor}]
    found = graphql(port, SENSOR_RUNS, {"filter": {"tags": selected}})["runsOrError"]["results"]
    for run in found:
        run["tags"] = {tag["key"]: tag["value"] for tag in run["tags"]}
    return found


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_dev_keeps_the_demo_workspaces_syncing_and_stops_everything(private_home) -> None:
    env = private_home
    demo = run_cli(env, "demo")
    assert "kpi-pipelines dev" in demo.stdout
    # Two days pass for globex before `dev` starts: the Stripe simulator owes the receiver
    # the events of those days (Stripe retries undelivered webhooks for three). acme owes
    # nothing: its webhooks are what happens while `dev` runs (a customer signs in every
    # few minutes).
    state_file = Path(env["KPI_HOME"]) / "demo" / "simulators" / "stripe" / "state.json"
    state = json.loads(state_file.read_text())
    state["delivered_through"]["globex"] -= 2 * 86400
    state_file.write_text(json.dumps(state))

    webhooks_port = free_port()
    log = Path(env["KPI_HOME"]).parent / "dev.log"
    serving = cli_serving(
        env, log, "dev", "--webhooks-port", str(webhooks_port), stop=signal.SIGTERM
    )
    with serving as dev:
        env_file = Path(env["KPI_HOME"]) / "demo" / "dev.env"
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        assert "WS_ACME__STRIPE_WHSEC=" in env_file.read_text()

        # The daemon's webhook sensor runs Stripe for each workspace that got events: a run
        # of its own, or one over both (their partitions lie side by side: a range's ends).
        def synced_by_webhooks() -> list[dict[str, Any]]:
            done = [
                r
                for r in sensor_runs(dev.port, "stripe_webhook_sensor")
                if r["status"] in FINISHED_RUN
            ]
            partitions = {
                r["tags"].get(key)
                for r in done
                for key in ("dagster/partition", RANGE_START_TAG, RANGE_END_TAG)
            }
            return done if {"acme", "globex"} <= partitions else []

        webhook_runs = wait_for(
            "the webhook sensor's Stripe runs", synced_by_webhooks, dev, timeout=480
        )
        assert_runs_succeeded(dev.port, {r["runId"]: r["status"] for r in webhook_runs})

        # Runs launched from the UI read the simulators' settings and secrets too (Notion's
        # job: its sync, then its notes; the ad platforms' jobs, each on its own simulator).
        launches = (
            ("google_analytics_job", "acme"),
            ("notion_job", "globex"),
            ("meta_ads_job", "acme"),
            ("linkedin_ads_job", "globex"),
            ("x_ads_job", "acme"),
        )
        launched_runs: dict[str, tuple[str, str]] = {}
        for job, workspace in launches:
            launched = graphql(
                dev.port,
                LAUNCH,
                {
                    "params": {
                        "selector": {
                            "repositoryLocationName": "kpi_pipelines",
                            "repositoryName": "__repository__",
                            "jobName": job,
                        },
                        "executionMetadata": {
                            "tags": [{"key": "dagster/partition", "value": workspace}]
                        },
                    }
                },
            )["launchRun"]
            assert launched["__typename"] == "LaunchRunSuccess", launched
            launched_runs[launched["run"]["runId"]] = (job, workspace)
        assert_runs_succeeded(dev.port, wait_for_runs(dev.port, list(launched_runs)))
        for run_id, (job, workspace) in launched_runs.items():
            wait_for(
                "the UI's run reported as finished",
                lambda run_id=run_id, job=job, workspace=workspace: (
                    f"run {run_id[:8]} {job} for {workspace} succeeded" in dev.output()
                ),
                dev,
            )
    assert not env_file.exists()  # its simulators are gone
    assert not port_open(webhooks_port) and not port_open(dev.port)

    # The terminal: where the rest goes, the services up, each run's start and outcome.
    output = dev.output()
    services_log = Path(env["KPI_HOME"]) / "logs" / "dev.log"
    assert output.startswith(f"the services' full output: {services_log}\n")
    assert "Ctrl-C stops everything" in output
    assert "no data yet" not in output  # the demo synced every workspace
    for run in webhook_runs:
        tags = run["tags"]
        workspaces = (
            tags.get("dagster/partition") or f"{tags[RANGE_START_TAG]}…{tags[RANGE_END_TAG]}"
        )
        name = f"run {run['runId'][:8]} stripe_job for {workspaces}"
        assert f"{name} started (sensor stripe_webhook_sensor)" in output
        assert re.search(re.escape(name) + r" succeeded in \d+ s", output)
    # ... and none of the sensor ticks, run events, access logs or colour codes
    assert "\x1b" not in output
    for noise in ("Checking for new runs", " - DEBUG - ", "STEP_START", "POST /stripe", "%d"):
        assert noise not in output, noise
    # The log file has them, in plain text.
    details = services_log.read_text()
    for detail in (
        "Checking for new runs for sensor: stripe_webhook_sensor",
        " - DEBUG - stripe_job - ",
        "STEP_SUCCESS",
        '"POST /stripe/acme HTTP/1.1" 200',
        "delivered",
    ):
        assert detail in details, detail
    assert "\x1b" not in details

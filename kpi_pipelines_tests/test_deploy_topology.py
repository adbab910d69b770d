"""The production topology on one machine, as the README's deploy section runs it: the
warehouse and Dagster's storage in PostgreSQL (the embedded server, held up by a holder
process), a gRPC code server (`dagster api grpc`), `dagster-webserver` and `dagster-daemon`
pointed at it by a workspace file, each a process of its own; a partition backfill and a
schedule's tick driven through the webserver's GraphQL only, as the UI does, and the GA4
data they sync served by the Google sandbox from this process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from kpi_pipelines.automation.partitions import RANGE_END_TAG, RANGE_START_TAG
from kpi_pipelines.integrations.shared.oauth import GOOGLE_CLIENT_VARIABLES
from kpi_pipelines.integrations.shared.redaction import register_secret
from kpi_pipelines.sandbox.google import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_REFRESH_TOKEN,
    GoogleSandbox,
    create_google_app,
)
from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.warehouse.control import secret_namespace
from kpi_pipelines_tests.processes import (
    LOCATION,
    Service,
    assert_runs_succeeded,
    cli_env,
    deployment_storage,
    evaluate_schedule,
    free_port,
    graphql,
    launch_run_requests,
    release,
    run_cli,
    script_path,
    services_output,
    start_holder,
    start_service,
    stop_services,
    wait_for_backfill,
    wait_for_grpc_server,
    wait_for_locations,
    wait_for_runs,
    wait_stopped,
)

ASSET = "google_analytics_kpis"
JOB = "google_analytics_job"
SCHEDULE = "google_analytics_schedule"
PROPERTIES = {"north": "320000001", "south": "320000002"}  # workspace -> its GA4 property

WORKSPACE_FILE = """load_from:
  - grpc_server: {{host: 127.0.0.1, port: {port}, location_name: kpi_pipelines}}
"""

LAUNCH_BACKFILL = """mutation ($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) { __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message } } }"""

MATERIALIZATIONS = """query ($path: [String!]!, $partitions: [String!]) {
  assetOrError(assetKey: {path: $path}) { __typename
    ... on Asset { assetMaterializations(partitions: $partitions) { partition runId } } } }"""

DAEMONS = """{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }"""


@contextmanager
def served_google() -> Iterator[tuple[GoogleSandbox, dict[str, str]]]:
    """A Google sandbox on loopback with a GA4 property per workspace; yields it and the
    variables the code server (and so its run workers) needs: the operator's Google
    settings and each workspace's refresh token in its namespace."""
    # On real time, so the days a sync asks for are the days the property has.
    sandbox = GoogleSandbox(seed=11, start=datetime.now(UTC), realtime=True)
    sandbox.register_client(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
    sandbox.add_refresh_token(DEMO_REFRESH_TOKEN, DEMO_CLIENT_ID)
    for property_id in PROPERTIES.values():
        sandbox.add_property(property_id, time_zone="UTC", history_days=100, daily_sessions=40)
    with LoopbackServer(create_google_app(sandbox)) as server:
        yield (
            sandbox,
            {
                "KPI_GOOGLE_TOKEN_URL": server.url("/token"),
                "KPI_GOOGLE_ANALYTICS_BASE_URL": server.base_url,
                GOOGLE_CLIENT_VARIABLES["client_id"]: DEMO_CLIENT_ID,
                GOOGLE_CLIENT_VARIABLES["client_secret"]: DEMO_CLIENT_SECRET,
                **{
                    f"{secret_namespace(ws)}GOOGLE_REFRESH_TOKEN": DEMO_REFRESH_TOKEN
                    for ws in PROPERTIES
                },
            },
        )


def connect_workspaces(env: dict[str, str]) -> None:
    for workspace, property_id in PROPERTIES.items():
        run_cli(env, "workspace", "add", workspace, "--currency", "USD", "--timezone", "UTC")
        secret = f"refresh_token={secret_namespace(workspace)}GOOGLE_REFRESH_TOKEN"
        setting = f"property_id={property_id}"
        run_cli(
            env,
            "connection",
            "add",
            workspace,
            "google_analytics",
            "--setting",
            setting,
            "--secret",
            secret,
        )


def start_code_server(
    services: list[Service],
    user_env: dict[str, str],
    instance: dict[str, str],
    google: dict[str, str],
    folder: Path,
) -> int:
    """`dagster api grpc` on a free port (appended to `services`); returns the port."""
    port = free_port()
    command = [script_path("dagster"), "api", "grpc", "-m", "kpi_pipelines.definitions"]
    command += ["-h", "127.0.0.1", "-p", str(port), "--location-name", LOCATION]
    # What syncs needs (the warehouse, the secrets) goes to the code server only: the
    # default run launcher has the code server start each run's worker, its child.
    services.append(
        start_service("code-server", command, {**user_env, **instance, **google}, folder)
    )
    return port


def start_webserver_and_daemon(
    services: list[Service],
    user_env: dict[str, str],
    instance: dict[str, str],
    code_port: int,
    folder: Path,
) -> int:
    """Once the code server serves: the webserver and the daemon, on a workspace file that
    points at it (appended to `services`); returns the webserver's port."""
    wait_for_grpc_server(code_port, services[0])
    workspace = folder / "workspace.yaml"
    workspace.write_text(WORKSPACE_FILE.format(port=code_port), encoding="utf-8")
    # Dagster's storage only, as a deployment sets it: no warehouse setting, no secret (the
    # code server evaluates schedules and sensors, and starts the runs), which is what the
    # README's deploy section says.
    tools_env = {k: v for k, v in user_env.items() if not k.startswith("KPI_")}
    tools_env.update(DAGSTER_HOME=instance["DAGSTER_HOME"], **deployment_storage(user_env))
    port = free_port()
    webserver = [script_path("dagster-webserver"), "-w", str(workspace)]
    webserver += ["-h", "127.0.0.1", "-p", str(port)]
    services.append(start_service("webserver", webserver, tools_env, folder))
    daemon = [script_path("dagster-daemon"), "run", "-w", str(workspace)]
    services.append(start_service("daemon", daemon, tools_env, folder))
    locations = wait_for_locations(port, services[1].process)
    assert locations == [{"name": LOCATION, "loadStatus": "LOADED"}], locations
    return port


def launch_backfill(port: int, partitions: list[str]) -> str:
    """What the UI's "Materialize selected partitions" sends for an asset's partitions."""
    params = {
        "assetSelection": [{"path": [ASSET]}],
        "partitionNames": partitions,
        "fromFailure": False,
        "tags": [],
        "title": "topology test",
    }
    launched = graphql(port, LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return launched["backfillId"]


def stored_sessions(env: dict[str, str], workspace: str) -> dict[date, float]:
    """A workspace's daily sessions (the total, not per channel) stored for the days GA4 no
    longer restates, as `kpi-pipelines kpi show --metric sessions` prints them."""
    shown = run_cli({**env, "COLUMNS": "250"}, "kpi", "show", workspace, "--metric", "sessions")
    settled = datetime.now(UTC).date() - timedelta(days=3)
    stored = {}
    for line in shown.stdout.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        # source, metric, day, breakdown (empty: the total), value, origin
        if len(cells) == 6 and cells[1] == "sessions" and not cells[3]:
            day = date.fromisoformat(cells[2])
            if day <= settled:
                stored[day] = float(cells[4].replace(",", ""))
    return stored


def materialization_runs(port: int) -> dict[str, set[str]]:
    """The runs that materialized the asset, per workspace partition (Dagster's record)."""
    found = graphql(port, MATERIALIZATIONS, {"path": [ASSET], "partitions": list(PROPERTIES)})
    by_partition: dict[str, set[str]] = {workspace: set() for workspace in PROPERTIES}
    for event in found["assetOrError"]["assetMaterializations"]:
        by_partition[event["partition"]].add(event["runId"])
    return by_partition


def test_code_server_webserver_and_daemon_run_a_backfill_and_a_schedule_tick(
    private_home: dict[str, str],
) -> None:
    env = private_home
    folder = Path(env["KPI_HOME"]).parent  # removed with the private home
    holder = start_holder(env)
    services: list[Service] = []
    left: list[str] = []
    try:
        with served_google() as (sandbox, google):
            instance = cli_env(env)  # `eval "$(kpi-pipelines env)"`, as the README says
            try:
                code_port = start_code_server(services, env, instance, google, folder)
                # while the code server loads the definitions: a workspace is added to a
                # running deployment (its partition, its connection) like this
                connect_workspaces({**env, **google})
                port = start_webserver_and_daemon(services, env, instance, code_port, folder)

                # (1) A tick of GA4's hourly schedule, as the UI's "Test schedule" makes
                # one: the code server evaluates the schedule at a tick time against the
                # warehouse's connections (run requests over ranges of workspaces), and its runs
                # go through the daemon's queue like a tick's. The daemon itself ticks only
                # at cron times (:15) after it first saw the schedule, and Dagster offers
                # no way to make it tick now, so these runs are not in the schedule's tick
                # history. First, so the backfill starts nearer the backfill daemon's next
                # pass (every 30 s, fixed in Dagster).
                requests = evaluate_schedule(port, SCHEDULE, time.time())
                # (both workspaces in one run over their two partitions)
                assert [
                    {t["key"]: t["value"] for t in r["tags"] if "partition" in t["key"]}
                    for r in requests
                ] == [{RANGE_START_TAG: min(PROPERTIES), RANGE_END_TAG: max(PROPERTIES)}], requests
                tick_runs = wait_for_runs(port, launch_run_requests(port, requests, JOB))
                assert_runs_succeeded(port, tick_runs)

                # (2) A backfill of both workspaces: the daemon's backfill loop plans it
                # (one run: both fit in the spec's workspaces_per_run), its run queue
                # dequeues the run and the code server starts its worker.
                backfill_id = launch_backfill(port, sorted(PROPERTIES))
                # Meanwhile: the tick's data is in the warehouse, as the sandbox has it.
                for workspace, property_id in PROPERTIES.items():
                    stored = stored_sessions(env, workspace)
                    assert len(stored) >= 5, stored
                    truth = sandbox.truth_by_date(property_id, min(stored), max(stored))
                    assert stored == {day: truth[day].sessions for day in stored}, workspace
                backfill = wait_for_backfill(port, backfill_id)
                backfill_runs = {run["runId"]: run["status"] for run in backfill["runs"]}
                assert_runs_succeeded(port, backfill_runs)
                assert len(backfill_runs) == 1, backfill
                assert backfill["status"] == "COMPLETED_SUCCESS", backfill
                assert sorted(backfill["partitionNames"]) == sorted(PROPERTIES)

                # Dagster recorded each workspace's materialization by both.
                recorded = materialization_runs(port)
                for workspace in PROPERTIES:
                    assert set(tick_runs) & recorded[workspace], (workspace, recorded)
                    assert set(backfill_runs) & recorded[workspace], (workspace, recorded)
                daemons = graphql(port, DAEMONS)["instance"]["daemonHealth"]["allDaemonStatuses"]
                unhealthy = [d for d in daemons if d["required"] and not d["healthy"]]
                assert not unhealthy, daemons
            except Exception as failure:
                # The services' output says why (a run worker's traceback is the code
                # server's output)
                raise AssertionError(f"{failure}\n\n{services_output(services)}") from failure
            finally:
                left = stop_services(services)
                # The access tokens the sandbox issued to the runs are canaries too, for
                # private_home's scan of what the services left.
                register_secret(*sandbox.oauth.access_tokens)
    finally:
        release(holder)
    assert not left, f"processes outlived SIGTERM: {left}\n\n{services_output(services)}"
    assert wait_stopped(env), "the embedded server outlived the services and the holder"

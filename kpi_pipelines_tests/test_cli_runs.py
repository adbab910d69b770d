"""The runs `kpi-pipelines sync` and `import` start, as a user meets them: separate processes
on one embedded server, then the Dagster UI (`kpi-pipelines ui`: code server, webserver,
daemon) over the webserver's GraphQL API, as the UI's own pages call it.

- A CLI run is its provider job's run: the UI lists it under the job's name and re-executes
  it; with Dagster's daemon serving the queue, a CLI run goes through the queue.
- One sync per connection at a time: two syncs of one workspace's Stripe connection started
  together never overlap: two CLI commands (the queue's tag limit, as their start and end
  times in the instance show, while another workspace's sync runs at the same time), and a
  webhook-triggered run and a scheduled tick's run over both workspaces through the daemon
  (the connection's lock: the tick's sync of that workspace waits, and the Stripe simulator
  never sees two of its requests at once).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from kpi_pipelines.automation.partitions import RANGE_END_TAG, RANGE_START_TAG
from kpi_pipelines.integrations.shared.redaction import register_secret
from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.sandbox.stripe import StripeSandbox, StripeSandboxConfig, create_app
from kpi_pipelines.sandbox.stripe.webhooks import deliver
from kpi_pipelines.warehouse.control import secret_namespace
from kpi_pipelines_tests.processes import (
    LOCATION,
    REPOSITORY,
    RUN_ERRORS,
    Serving,
    assert_runs_succeeded,
    cli_path,
    cli_serving,
    evaluate_schedule,
    free_port,
    graphql,
    launch_run_requests,
    run_cli,
    run_process,
    start_service,
    stop_services,
    wait_for_runs,
)

RUN = """query ($runId: ID!) { runOrError(runId: $runId) { __typename
  ... on Run { runId status pipelineName startTime endTime
    repositoryOrigin { repositoryLocationName repositoryName }
    tags { key value } }
  ... on Error { message } } }"""

# What the run page's "Re-execute all" sends.
REEXECUTE = """mutation ($params: ReexecutionParams!) {
  launchPipelineReexecution(reexecutionParams: $params) { __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on Error { message } } }"""

RUN_EVENTS = """query ($runId: ID!) { logsForRun(runId: $runId) {
  ... on EventConnection { events { __typename } } } }"""


def run_of(port: int, run_id: str) -> dict[str, Any]:
    found = graphql(port, RUN, {"runId": run_id})["runOrError"]
    assert found["__typename"] == "Run", found
    found["tags"] = {tag["key"]: tag["value"] for tag in found["tags"]}
    return found


def printed_run_id(output: str) -> str:
    """The run a `sync` or `import` printed (`..., run <id>`)."""
    found = re.search(r"\brun ([0-9a-f-]{36})\b", output)
    assert found, output
    return found.group(1)


def test_cli_runs_show_as_their_job_and_the_ui_re_executes_them(private_home, tmp_path) -> None:
    env = private_home
    run_cli(env, "workspace", "add", "shop")
    mapping = {"mapping": {"date_column": "day", "metric": "orders", "value_column": "n"}}
    settings = json.dumps(mapping)
    run_cli(env, "connection", "add", "shop", "csv_upload", "--settings-json", settings)
    orders = tmp_path / "orders.csv"
    orders.write_text("day,n\n2026-02-01,3\n2026-02-02,5\n", encoding="utf-8")
    # no daemon: the run executes in the command's process
    imported = run_cli(env, "import", "shop", "csv_upload", str(orders))
    assert "2 records, 2 points written" in imported.stdout
    parent_id = printed_run_id(imported.stdout)

    log = Path(env["KPI_HOME"]).parent / "ui.log"
    with cli_serving(env, log, "ui") as ui:
        parent = run_of(ui.port, parent_id)
        assert parent["status"] == "SUCCESS"
        assert parent["pipelineName"] == "csv_upload_job"
        assert parent["repositoryOrigin"] == {
            "repositoryLocationName": LOCATION,
            "repositoryName": REPOSITORY,
        }
        assert parent["tags"]["kpi/connection"] == "shop/csv_upload"

        # "Re-execute all" on the run's page: the daemon starts it from the queue
        orders.write_text("day,n\n2026-02-01,3\n2026-02-02,8\n", encoding="utf-8")
        launched = graphql(
            ui.port,
            REEXECUTE,
            {"params": {"parentRunId": parent_id, "strategy": "ALL_STEPS"}},
        )["launchPipelineReexecution"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        child_id = launched["run"]["runId"]
        assert_runs_succeeded(ui.port, wait_for_runs(ui.port, [child_id]))
        child = run_of(ui.port, child_id)
        assert child["pipelineName"] == "csv_upload_job"
        assert child["tags"]["dagster/parent_run_id"] == parent_id
        assert child["tags"]["kpi/connection"] == "shop/csv_upload"
        assert "8.00" in run_cli(env, "kpi", "show", "shop").stdout

        # With the daemon serving the queue, the command's run goes through the queue.
        orders.write_text("day,n\n2026-02-01,3\n2026-02-02,9\n", encoding="utf-8")
        queued = run_cli(env, "import", "shop", "csv_upload", str(orders))
        queued_id = printed_run_id(queued.stdout)
        events = graphql(ui.port, RUN_EVENTS, {"runId": queued_id})["logsForRun"]["events"]
        assert "RunEnqueuedEvent" in {event["__typename"] for event in events}
        assert run_of(ui.port, queued_id)["pipelineName"] == "csv_upload_job"
        assert "9.00" in run_cli(env, "kpi", "show", "shop").stdout


# --- one sync per connection at a time --------------------------------------------------

WORKSPACES = ("north", "south")
# Longest a request waits at the gate (below the Stripe adapter's 60 s request timeout): a
# bound against a hang, never reached when the test goes as it should.
GATE_SECONDS = 55.0


class Gate:
    """ASGI middleware before the Stripe simulator: while closed, every request of the
    accounts it knows (by API key) waits until it opens, and it says which workspaces have
    a request waiting. So a test holds syncs in flight, and so overlapping, for as long as
    it needs to see what else starts meanwhile."""

    def __init__(self, app: ASGIApp, workspaces_by_key: dict[str, str]) -> None:
        self.app = app
        self.workspaces_by_key = workspaces_by_key
        self._opened = threading.Event()
        self._lock = threading.Lock()
        self._waiting: set[str] = set()
        self._held: Counter[str] = Counter()  # requests of each workspace held now
        self._most: Counter[str] = Counter()  # ... and the most at once since closed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._opened.is_set():
            headers = dict(scope["headers"])
            key = headers.get(b"authorization", b"").decode().removeprefix("Bearer ").strip()
            workspace = self.workspaces_by_key.get(key)
            if workspace is not None:
                with self._lock:
                    self._waiting.add(workspace)
                    self._held[workspace] += 1
                    self._most[workspace] = max(self._most[workspace], self._held[workspace])
                loop = asyncio.get_running_loop()
                try:
                    await loop.run_in_executor(None, self._opened.wait, GATE_SECONDS)
                finally:
                    with self._lock:
                        self._held[workspace] -= 1
        await self.app(scope, receive, send)

    def close(self) -> None:
        with self._lock:
            self._waiting.clear()
            self._most.clear()
        self._opened.clear()

    def open(self) -> None:
        self._opened.set()

    def most_at_once(self, workspace: str) -> int:
        """The most requests of `workspace` held at one time since the gate closed: two
        syncs of one connection overlapping would send two."""
        with self._lock:
            return self._most[workspace]

    def holding(self) -> set[str]:
        """The workspaces with a request held (since the gate closed)."""
        with self._lock:
            return set(self._waiting)


@contextmanager
def stripe_accounts() -> Iterator[tuple[Gate, dict[str, str], dict[str, StripeSandbox]]]:
    """A small Stripe account per workspace, on the real clock, served behind a closed gate;
    yields the gate, the variables the syncs need (the host, each workspace's key and
    webhook secret in its namespace) and the accounts."""
    now = datetime.now(UTC).replace(microsecond=0)
    accounts = {
        workspace: StripeSandbox(
            StripeSandboxConfig(
                seed=index + 41,
                customers=12,
                start=now - timedelta(days=60),
                now=now,
                currencies=("usd",),
                acquisition_days=60,
            ),
            api_key=f"sk_test_gate{workspace}{index}",
        )
        for index, workspace in enumerate(WORKSPACES)
    }
    for account in accounts.values():
        register_secret(account.api_key, account.webhook_secret)  # canaries too
    gate = Gate(create_app(accounts.values()), {a.api_key: w for w, a in accounts.items()})
    gate.close()
    with LoopbackServer(gate) as server:
        env = {"KPI_STRIPE_BASE_URL": server.base_url}
        for workspace, account in accounts.items():
            namespace = secret_namespace(workspace)
            env[f"{namespace}STRIPE_KEY"] = account.api_key
            env[f"{namespace}STRIPE_WHSEC"] = account.webhook_secret
        try:
            yield gate, env, accounts
        finally:
            gate.open()  # no request left waiting while the server stops


def connect(env: dict[str, str]) -> None:
    for workspace in WORKSPACES:
        run_cli(env, "workspace", "add", workspace, "--currency", "USD", "--timezone", "UTC")
        namespace = secret_namespace(workspace)
        run_cli(
            env,
            *("connection", "add", workspace, "stripe"),
            *("--secret", f"api_key={namespace}STRIPE_KEY"),
            *("--secret", f"webhook_secret={namespace}STRIPE_WHSEC"),
        )


def wait_until(what: str, check: Callable[[], Any], timeout: float = 240) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"gave up waiting for {what}")


STRIPE_RUNS = """
import json
from kpi_pipelines.dagster_instance import open_instance
records = open_instance().get_run_records()
print(json.dumps([
    {"runId": r.dagster_run.run_id, "status": r.dagster_run.status.value,
     "connection": r.dagster_run.tags.get("kpi/connection"),
     "startTime": r.start_time, "endTime": r.end_time}
    for r in records if (r.dagster_run.tags.get("kpi/connection") or "").endswith("/stripe")
]))
"""


def stripe_runs(env: dict[str, str]) -> list[dict[str, Any]]:
    """Every Stripe sync's run in the instance: its connection, status, start and end."""
    return json.loads(run_process([sys.executable, "-c", STRIPE_RUNS], env).stdout)


def overlap(first: dict[str, Any], second: dict[str, Any]) -> bool:
    """Whether two finished runs ran at the same time at some instant."""
    return first["startTime"] < second["endTime"] and second["startTime"] < first["endTime"]


class Command(threading.Thread):
    """A `kpi-pipelines` command run to completion in the background."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        super().__init__(daemon=True)
        self.env, self.args = env, args
        self.completed: subprocess.CompletedProcess | None = None

    def run(self) -> None:
        self.completed = run_cli(self.env, *self.args, check=False)

    def succeeded(self) -> str:
        """Its run's id, once the command exited 0."""
        self.join(300)
        assert self.completed is not None, f"`{' '.join(self.args)}` did not finish"
        output = self.completed.stdout + self.completed.stderr
        assert self.completed.returncode == 0, output
        return printed_run_id(output)


def test_one_sync_per_connection_at_a_time(private_home) -> None:
    env = private_home
    folder = Path(env["KPI_HOME"]).parent
    with stripe_accounts() as (gate, stripe_env, accounts):
        env = {**env, **stripe_env}
        connect(env)

        # (1) No daemon: each command runs its sync in its own process. North's first sync
        # is held in flight; meanwhile a second sync of north and one of south start.
        first = Command(env, "sync", "north", "stripe")
        first.start()
        wait_until("north's first sync in flight", lambda: gate.holding() == {"north"})
        second = Command(env, "sync", "north", "stripe")
        south = Command(env, "sync", "south", "stripe")
        second.start()
        south.start()
        wait_until("south's sync in flight", lambda: "south" in gate.holding())
        wait_until(
            "north's second sync to exist",
            lambda: sum(r["connection"] == "north/stripe" for r in stripe_runs(env)) == 2,
        )
        gate.open()
        runs = {first.succeeded(), second.succeeded(), south.succeeded()}
        times = [r for r in stripe_runs(env) if r["runId"] in runs]
        north_runs = [r for r in times if r["connection"] == "north/stripe"]
        [south_run] = [r for r in times if r["connection"] == "south/stripe"]
        assert len(north_runs) == 2, times
        assert not overlap(*north_runs), north_runs
        assert any(overlap(south_run, r) for r in north_runs), times

        # (2) Dagster's daemon: a webhook-triggered sync of north (the daemon's webhook
        # sensor) is held in flight; then a tick of the daily schedule launches north's and
        # south's syncs together.
        gate.close()
        north = accounts["north"]
        events = north.events_since(north.now_ts - 30 * 86400)[-3:]
        assert events, "north's account has no event in its last 30 days"
        with cli_serving(env, folder / "ui.log", "ui") as ui:
            receiver_port = free_port()
            receiver = start_service(
                "webhook-receiver",
                [cli_path(), "webhooks", "serve", "--port", str(receiver_port)],
                env,
                folder,
            )
            try:
                url = f"http://127.0.0.1:{receiver_port}/stripe/north"
                delivered = wait_until(
                    "the webhook receiver to take the events",
                    lambda: deliveries(events, url, north.webhook_secret),
                )
                assert delivered == [200] * len(events), delivered
            finally:
                # before `ui` stops: the embedded server stops with its last user
                left = stop_services([receiver])
            assert not left, f"processes outlived SIGTERM: {left}\n{receiver.output()}"
            webhook_run = wait_until(
                "the webhook sensor's sync of north in flight", lambda: webhook_sync(ui, gate)
            )
            # The tick groups both workspaces into one run: no run tag can name both
            # connections for the queue, so its sync of north waits for the webhook's
            # sync of north itself (the connection's lock), before south's.
            [grouped] = evaluate_schedule(ui.port, "stripe_schedule", time.time())
            assert (tag(grouped, RANGE_START_TAG), tag(grouped, RANGE_END_TAG)) == (
                "north",
                "south",
            ), grouped
            assert tag(grouped, "kpi/workspaces") == "2" and not tag(grouped, "kpi/connection")
            [tick_run] = launch_run_requests(ui.port, [grouped], "stripe_job")
            wait_until(
                "the tick's sync of north to wait for the webhook's",
                lambda: (
                    "north: waiting for another sync of north/stripe to finish"
                    in run_messages(ui.port, tick_run)
                ),
            )
            assert gate.holding() == {"north"} and gate.most_at_once("north") == 1
            gate.open()
            statuses = wait_for_runs(ui.port, [webhook_run, tick_run])
            assert_runs_succeeded(ui.port, statuses)
            webhook = run_of(ui.port, webhook_run)
    # never two requests of north's at once: the syncs of north did not overlap
    assert gate.most_at_once("north") == 1
    assert webhook["tags"]["kpi/trigger"] == "stripe-webhook"
    assert webhook["tags"]["kpi/connection"] == "north/stripe"


def run_messages(port: int, run_id: str) -> str:
    """Every message a run has logged so far."""
    events = graphql(port, RUN_ERRORS, {"runId": run_id})["logsForRun"].get("events", [])
    return "\n".join(e.get("message") or "" for e in events)


def deliveries(events: list[dict], url: str, secret: str) -> list[int] | None:
    """The receiver's answers to the signed events, once it is up."""
    try:
        return deliver(events, url, secret)
    except httpx.HTTPError:
        return None


def tag(request: dict[str, Any], key: str) -> str | None:
    return next((t["value"] for t in request["tags"] if t["key"] == key), None)


WEBHOOK_RUNS = """query ($filter: RunsFilter) { runsOrError(filter: $filter) {
  ... on Runs { results { runId status } } } }"""


def webhook_sync(ui: Serving, gate: Gate) -> str | None:
    """The webhook sensor's run of north, once it is in flight (held at the gate)."""
    assert ui.process.poll() is None, ui.output()[-4000:]
    selected = [{"key": "kpi/trigger", "value": "stripe-webhook"}]
    found = graphql(ui.port, WEBHOOK_RUNS, {"filter": {"tags": selected}})["runsOrError"]
    runs = found["results"]
    if len(runs) == 1 and gate.holding() == {"north"}:
        return runs[0]["runId"]
    assert len(runs) <= 1, runs
    return None

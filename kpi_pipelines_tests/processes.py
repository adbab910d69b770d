"""The `kpi-pipelines` command and Dagster's services as a user runs them: separate processes
on one embedded server under a KPI_HOME of their own, and the webserver's GraphQL API; and
the secret canary's scan of everything they left (`ProcessTrail`)."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from kpi_pipelines.warehouse.embedded import EmbeddedServer
from kpi_pipelines_tests.canary import (
    SecretLeak,
    canaries,
    database_leaks,
    demo_secrets,
    file_leaks,
    leaks,
)

HOLDER = """
import sys
from kpi_pipelines.warehouse.embedded import embedded_server
server = embedded_server()
print(server.socket_dir, flush=True)
sys.stdin.read()
"""


def cli_path() -> str:
    found = shutil.which("kpi-pipelines", path=str(Path(sys.executable).parent))
    assert found, "kpi-pipelines is not installed in this environment (pip install -e .)"
    return found


def clean_env() -> dict[str, str]:
    """This process's environment without the project's, Dagster's or libpq's settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("KPI_", "DAGSTER_", "PG"))}


@dataclass
class ProcessTrail:
    """What the processes of a test left: everything under the test's folder (each KPI_HOME
    in it with its warehouse, Dagster's tables and compute logs; the services' log files)
    and the output of the commands it ran to completion (`run_process`)."""

    folder: Path
    outputs: list[tuple[str, str]] = field(default_factory=list)

    def record(self, command: list[str], completed: subprocess.CompletedProcess) -> None:
        shown = shlex.join([Path(command[0]).name, *command[1:]])
        shown = shown if len(shown) <= 120 else shown[:117] + "..."
        self.outputs += [
            (f"stdout of `{shown}`", completed.stdout or ""),
            (f"stderr of `{shown}`", completed.stderr or ""),
        ]

    def leaks(self) -> list[str]:
        """Where a canary is (the demo's and `dev`'s secrets included): the commands' output,
        every file but the servers' data folders (read through SQL instead) and `dev`'s
        env file (the secrets' one place), and every table of each KPI_HOME's warehouse."""
        homes, files = self.contents()
        secrets = canaries(s for home in homes for s in demo_secrets(home))
        found = leaks(self.outputs, secrets)
        found += file_leaks(self.folder, files, secrets)
        for home in homes:
            if has_server(home):
                found += [
                    f"{home.relative_to(self.folder)}'s {place}"
                    for place in embedded_database_leaks(home, secrets)
                ]
        return found

    def contents(self) -> tuple[list[Path], list[Path]]:
        """The KPI_HOMEs under the folder (with an embedded server or a demo), and the
        files."""
        homes, files = [], []
        for top, folders, names in os.walk(self.folder):
            if has_server(Path(top)) or "demo" in folders:
                homes.append(Path(top))
            if has_server(Path(top)):
                folders.remove("postgres")
            files += [Path(top, name) for name in names]
        secrets_file = {home / "demo" / "dev.env" for home in homes}
        return homes, [f for f in files if f.is_file() and f not in secrets_file]


def has_server(home: Path) -> bool:
    """Whether `home` (a KPI_HOME) holds an embedded server's data."""
    return (home / "postgres" / "data" / "PG_VERSION").is_file()


def embedded_database_leaks(home: Path, secrets: list[str]) -> list[str]:
    """Canaries in the warehouse of the embedded server under `home`, started for the scan
    (by a holder, so it stops again when the scan is done)."""
    env = {**clean_env(), "KPI_HOME": str(home)}
    holder = start_holder(env)
    try:
        socket_dir = server_address(env)[1]
        url = EmbeddedServer(data_dir=home / "postgres" / "data", socket_dir=socket_dir).admin_url
        engine = sa.create_engine(url, poolclass=NullPool)
        try:
            return database_leaks(engine, secrets)
        finally:
            engine.dispose()
    finally:
        release(holder)
        assert wait_stopped(env), f"the embedded server under {home} outlived the canary's scan"


_trail: ProcessTrail | None = None


@contextmanager
def traced_home() -> Iterator[tuple[dict[str, str], ProcessTrail]]:
    """An environment with a KPI_HOME of its own in a new folder, and the trail of what the
    processes run in the block leave there; the folder is removed at the end.

    Not under pytest's tmp_path: every pytest session that starts on the machine makes
    /tmp/pytest-of-<user> private again, which locks the server's own user out of its data.
    """
    global _trail
    home = Path(tempfile.mkdtemp(prefix="kpi-cli-")) / "home"
    env = clean_env()
    env["KPI_HOME"] = str(home)
    _trail = trail = ProcessTrail(home.parent)
    try:
        yield env, trail
    finally:
        _trail = None
        shutil.rmtree(home.parent, ignore_errors=True)


@pytest.fixture
def private_home() -> Iterator[dict[str, str]]:
    """A KPI_HOME of its own, so this test owns its server's whole life; when the test is
    done, the secret canary scans everything its processes left there (ProcessTrail)."""
    with traced_home() as (env, trail):
        yield env
        found = trail.leaks()
    if found:
        raise SecretLeak("a secret leaked where the test's processes left it: " + "; ".join(found))


def run_process(
    command: list[str], env: dict[str, str], *, check: bool = True, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """`command` run to completion, its output captured (and kept for the secret canary's
    scan at the end of a test that uses `private_home`)."""
    completed = subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )
    if _trail is not None:
        _trail.record(command, completed)
    if check:
        assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed


def run_cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run_process([cli_path(), *args], env, check=check)


def deployment_storage(env: dict[str, str]) -> dict[str, str]:
    """The DAGSTER_PG_* variables a deployment gives Dagster's services, here naming the
    embedded server (its port and socket folder read from its postmaster.pid)."""
    port, socket_dir = server_address(env)
    return {
        "DAGSTER_PG_USERNAME": "postgres",
        "DAGSTER_PG_HOST": "",  # libpq's PGHOST: the socket folder
        "DAGSTER_PG_PORT": port,
        "DAGSTER_PG_DB": "kpi",
        "PGHOST": str(socket_dir),
    }


def start_holder(env: dict[str, str]) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL),
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip(), "holder did not start the server"
    return holder


def release(holder: subprocess.Popen) -> None:
    assert holder.stdin is not None
    holder.stdin.close()
    assert holder.wait(timeout=60) == 0


def postmaster_pid_file(env: dict[str, str]) -> Path:
    home = Path(env["KPI_HOME"]) if "KPI_HOME" in env else Path(env["HOME"]) / ".kpi_pipelines"
    return home / "postgres" / "data" / "postmaster.pid"


def postmaster(env: dict[str, str]) -> psutil.Process | None:
    pid_file = postmaster_pid_file(env)
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text().splitlines()[0])
    return psutil.Process(pid) if psutil.pid_exists(pid) else None


def server_address(env: dict[str, str]) -> tuple[str, Path]:
    """The running embedded server's port and socket folder (from its postmaster.pid)."""
    port, socket_dir = postmaster_pid_file(env).read_text().splitlines()[3:5]
    return port.strip(), Path(socket_dir.strip())


def wait_stopped(env: dict[str, str], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if postmaster(env) is None:
            return True
        time.sleep(0.2)
    return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def graphql(port: int, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST a query to the webserver's GraphQL API; its `data` (errors fail the test)."""
    answer = httpx.post(
        f"http://127.0.0.1:{port}/graphql",
        json={"query": query, "variables": variables or {}},
        timeout=30,
    ).json()
    assert not answer.get("errors"), answer["errors"]
    return answer["data"]


LOCATIONS = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"


def wait_for_locations(
    port: int,
    process: subprocess.Popen | None = None,
    timeout: float = 180,
    output: Callable[[], str] | None = None,
) -> list[dict[str, str]]:
    """The webserver's code locations once it answers and none is loading; fails when
    `process` (what serves it) exits first, with its output (piped, or `output()`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(output() if output else process.communicate()[0])
        try:
            listed = graphql(port, LOCATIONS)["workspaceOrError"]["locationEntries"]
        except (httpx.HTTPError, ValueError):
            listed = []
        if listed and all(entry["loadStatus"] != "LOADING" for entry in listed):
            return listed
        time.sleep(1)
    raise AssertionError(f"the webserver on port {port} did not load its code locations")


# --- Dagster's services as separate processes, and their runs and backfills over GraphQL ---


def script_path(name: str) -> str:
    """A console script of this environment (dagster, dagster-webserver, dagster-daemon)."""
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    assert found, f"{name} is not installed in this environment"
    return found


def cli_env(env: dict[str, str]) -> dict[str, str]:
    """The variables `kpi-pipelines env` exports, parsed as the shell's eval would."""
    exported = {}
    for line in run_cli(env, "env").stdout.splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export":
            name, _, value = words[1].partition("=")
            exported[name] = value
    return exported


@dataclass
class Service:
    """A long-running process in a session of its own, its output in a file."""

    name: str
    process: subprocess.Popen
    log: Path

    def output(self, limit: int = 6000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text if len(text) <= limit else "[...]\n" + text[-limit:]


def start_service(name: str, command: list[str], env: dict[str, str], folder: Path) -> Service:
    # A file, not a pipe: nobody reads a pipe while the test waits, and a full pipe blocks.
    log = folder / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Service(name, process, log)


def services_output(services: list[Service]) -> str:
    """Every service's output (its tail), for a failure message."""
    return "\n".join(f"--- {s.name} (pid {s.process.pid}) ---\n{s.output()}" for s in services)


def session_members(session_ids: set[int]) -> list[psutil.Process]:
    """Live processes in any of these sessions: a service and whatever it started (run
    workers are the code server's children, in its session)."""
    members = []
    for process in psutil.process_iter(["status"]):
        try:
            if os.getsid(process.pid) in session_ids and process.status() != "zombie":
                members.append(process)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def stop_services(services: list[Service], grace: float = 20) -> list[str]:
    """SIGTERM each service's process group, SIGKILL what is left after `grace` seconds;
    returns the processes of their sessions that had to be killed or survived."""
    sessions = {s.process.pid for s in services}
    for service in services:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(service.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while session_members(sessions) and time.monotonic() < deadline:
        time.sleep(0.2)
    stubborn = [f"{p.pid} {' '.join(p.cmdline())[:200]}" for p in session_members(sessions)]
    for process in session_members(sessions):
        with contextlib.suppress(psutil.Error):
            process.kill()
    for service in services:
        with contextlib.suppress(subprocess.TimeoutExpired):
            service.process.wait(timeout=10)
    survivors = [f"{p.pid} (after SIGKILL)" for p in session_members(sessions)]
    return stubborn + survivors


def wait_for_grpc_server(port: int, service: Service, timeout: float = 180) -> None:
    """Until `dagster api grpc-health-check` answers SERVING (what a process manager's
    readiness probe would run); fails when the server exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert service.process.poll() is None, f"the code server exited:\n{service.output()}"
        check = [script_path("dagster"), "api", "grpc-health-check", "-p", str(port)]
        probe = subprocess.run([*check, "-h", "127.0.0.1"], capture_output=True, timeout=60)
        if probe.returncode == 0:
            return
        time.sleep(1)
    raise AssertionError(f"the code server on port {port} never served:\n{service.output()}")


RUN = """query ($runId: ID!) { runOrError(runId: $runId) { __typename
  ... on Run { runId status tags { key value } }
  ... on Error { message } } }"""

RUN_ERRORS = """query ($runId: ID!) { logsForRun(runId: $runId) {
  ... on EventConnection { events { __typename ... on MessageEvent { message level }
    ... on ExecutionStepFailureEvent { error { message } } } } } }"""

FINISHED_RUN = ("SUCCESS", "FAILURE", "CANCELED")


def run_errors(port: int, run_id: str) -> str:
    """A run's ERROR-level messages, with a failed step's error, for a failure message."""
    events = graphql(port, RUN_ERRORS, {"runId": run_id})["logsForRun"].get("events", [])
    return "\n".join(
        e["message"] + (f" {e['error']['message']}" if e.get("error") else "")
        for e in events
        if e.get("level") == "ERROR"
    )


def wait_for_runs(port: int, run_ids: list[str], timeout: float = 300) -> dict[str, str]:
    """Each run's final status once none is queued or running; fails past the deadline
    naming the unfinished."""
    statuses: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run_id in run_ids:
            if statuses.get(run_id) not in FINISHED_RUN:
                found = graphql(port, RUN, {"runId": run_id})["runOrError"]
                assert found["__typename"] == "Run", found
                statuses[run_id] = found["status"]
        if all(statuses[r] in FINISHED_RUN for r in run_ids):
            return statuses
        time.sleep(1)
    raise AssertionError(f"runs still unfinished after {timeout:.0f} s: {statuses}")


def wait_for(what: str, check: Callable[[], Any], serving: Serving, timeout: float = 240) -> Any:
    """What `check()` returns once it is truthy; fails when `serving` exits first or past
    the deadline, with its output."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert serving.process.poll() is None, serving.output()[-4000:]
        found = check()
        if found:
            return found
        time.sleep(2)
    raise AssertionError(f"gave up waiting for {what}:\n{serving.output()[-4000:]}")


def assert_runs_succeeded(port: int, statuses: dict[str, str]) -> None:
    failed = {run_id: status for run_id, status in statuses.items() if status != "SUCCESS"}
    assert not failed, "runs did not succeed: " + "; ".join(
        f"{run_id} {status}: {run_errors(port, run_id)}" for run_id, status in failed.items()
    )


# The one code location (its name in every workspace file) and Definitions' one repository.
LOCATION = "kpi_pipelines"
REPOSITORY = "__repository__"

SCHEDULE_DRY_RUN = """mutation ($selector: ScheduleSelector!, $timestamp: Float) {
  scheduleDryRun(selectorData: $selector, timestamp: $timestamp) { __typename
    ... on DryRunInstigationTick { timestamp evaluationResult {
      runRequests { runKey runConfigYaml jobName tags { key value } assetSelection { path } }
      skipReason error { message stack } } }
    ... on Error { message } } }"""

LAUNCH_RUNS = """mutation ($params: [ExecutionParams!]!) {
  launchMultipleRuns(executionParamsList: $params) { __typename
    ... on LaunchMultipleRunsResult { launchMultipleRunsResult { __typename
      ... on LaunchRunSuccess { run { runId } }
      ... on Error { message } } }
    ... on Error { message } } }"""


def evaluate_schedule(port: int, schedule: str, timestamp: float) -> list[dict[str, Any]]:
    """The schedule's tick at `timestamp`, evaluated by the code server (the UI's "Test
    schedule"): its run requests."""
    selector = {
        "repositoryLocationName": LOCATION,
        "repositoryName": REPOSITORY,
        "scheduleName": schedule,
    }
    tick = graphql(port, SCHEDULE_DRY_RUN, {"selector": selector, "timestamp": timestamp})
    tick = tick["scheduleDryRun"]
    assert tick["__typename"] == "DryRunInstigationTick", tick
    evaluation = tick["evaluationResult"]
    assert not evaluation["error"] and not evaluation["skipReason"], evaluation
    return evaluation["runRequests"]


def launch_run_requests(port: int, requests: list[dict[str, Any]], job: str) -> list[str]:
    """A tick's run requests launched together, as the UI's "Launch all runs" does (its
    buildExecutionParamsListSchedule): each request's config, job (else the schedule's
    `job`) and tags."""
    params = [
        {
            "runConfigData": request["runConfigYaml"],
            "selector": {
                "repositoryLocationName": LOCATION,
                "repositoryName": REPOSITORY,
                "jobName": request["jobName"] or job,
                "assetSelection": request["assetSelection"] or [],
                "assetCheckSelection": [],
            },
            "mode": "default",
            "executionMetadata": {
                "tags": [{"key": t["key"], "value": t["value"]} for t in request["tags"]]
            },
        }
        for request in requests
    ]
    launched = graphql(port, LAUNCH_RUNS, {"params": params})["launchMultipleRuns"]
    assert launched["__typename"] == "LaunchMultipleRunsResult", launched
    results = launched["launchMultipleRunsResult"]
    assert all(r["__typename"] == "LaunchRunSuccess" for r in results), results
    return [r["run"]["runId"] for r in results]


BACKFILL = """query ($backfillId: String!) { partitionBackfillOrError(backfillId: $backfillId) {
  __typename
  ... on PartitionBackfill { id status partitionNames runs { runId status } error { message } }
  ... on Error { message } } }"""

FINISHED_BACKFILL = ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED")


def wait_for_backfill(port: int, backfill_id: str, timeout: float = 300) -> dict[str, Any]:
    """The backfill (status, partitions, runs) once the daemon has finished it."""
    deadline = time.monotonic() + timeout
    backfill: dict[str, Any] = {}
    while time.monotonic() < deadline:
        backfill = graphql(port, BACKFILL, {"backfillId": backfill_id})["partitionBackfillOrError"]
        assert backfill["__typename"] == "PartitionBackfill", backfill
        if backfill["status"] in FINISHED_BACKFILL:
            return backfill
        time.sleep(1)
    raise AssertionError(f"backfill {backfill_id} unfinished after {timeout:.0f} s: {backfill}")


# --- `kpi-pipelines ui` / `dev`: long-running commands a user stops with Ctrl-C ---------


@dataclass
class Serving:
    """A running `kpi-pipelines ui|dev`: the UI's port, the command, what it started."""

    port: int
    process: subprocess.Popen
    log: Path
    children: list[psutil.Process]

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def cli_serving(
    env: dict[str, str], log: Path, *command: str, stop: int = signal.SIGINT
) -> Iterator[Serving]:
    """`kpi-pipelines <command> --port <free port>` until the block ends, its code location
    loaded; then Ctrl-C as a terminal sends it (SIGINT to its process group), or `stop`
    (SIGTERM: a process manager), checking that it exits 0 and leaves nothing running, the
    embedded PostgreSQL included."""
    port = free_port()
    # A file, not a pipe: nobody reads a pipe while the test works, and the daemon's
    # logging would block once it is full.
    with log.open("w") as out:
        process = subprocess.Popen(
            [cli_path(), *command, "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    serving = Serving(port, process, log, [])
    try:
        entries = wait_for_locations(port, process, output=lambda: serving.output()[-4000:])
        assert entries == [{"name": "kpi_pipelines", "loadStatus": "LOADED"}], entries
        # The daemon starts once the webserver answers, which can be just after the location
        # loaded: every service is up when the command says Ctrl-C stops them.
        deadline = time.monotonic() + 60
        while "Ctrl-C stops" not in serving.output():
            assert process.poll() is None, serving.output()[-4000:]
            assert time.monotonic() < deadline, serving.output()[-4000:]
            time.sleep(0.2)
        serving.children = psutil.Process(process.pid).children(recursive=True)
        yield serving
    finally:
        # the group is gone only if everything in it already exited (then wait() says how)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, stop)
        process.wait(timeout=120)
    assert process.returncode == 0, serving.output()[-4000:]
    left = [c for c in serving.children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not left, f"still running after Ctrl-C: {left}"
    assert wait_stopped(env), f"the embedded PostgreSQL outlived `kpi-pipelines {command[0]}`"

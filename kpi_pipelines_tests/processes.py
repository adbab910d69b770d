"""The `kpi-pipelines` command and Dagster's services as a user runs them: separate processes
on one embedded server under a KPI_HOME of their own, and the webserver's GraphQL API."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

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


@pytest.fixture
def private_home() -> Iterator[dict[str, str]]:
    """A KPI_HOME of its own, so this test owns its server's whole life.

    Not under pytest's tmp_path: every pytest session that starts on the machine makes
    /tmp/pytest-of-<user> private again, which locks the server's own user out of its data.
    """
    home = Path(tempfile.mkdtemp(prefix="kpi-cli-")) / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KPI_", "DAGSTER_", "PG"))}
    env["KPI_HOME"] = str(home)
    yield env
    shutil.rmtree(home.parent, ignore_errors=True)


def run_cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    completed = subprocess.run(
        [cli_path(), *args], env=env, capture_output=True, text=True, timeout=300
    )
    if check:
        assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed


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


def postmaster(env: dict[str, str]) -> psutil.Process | None:
    pid_file = Path(env["KPI_HOME"]) / "postgres" / "data" / "postmaster.pid"
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text().splitlines()[0])
    return psutil.Process(pid) if psutil.pid_exists(pid) else None


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
    port: int, process: subprocess.Popen | None = None, timeout: float = 180
) -> list[dict[str, str]]:
    """The webserver's code locations once it answers and none is loading; fails when
    `process` (what serves it) exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None:
            assert process.poll() is None, process.communicate()[0]
        try:
            listed = graphql(port, LOCATIONS)["workspaceOrError"]["locationEntries"]
        except (httpx.HTTPError, ValueError):
            listed = []
        if listed and all(entry["loadStatus"] != "LOADING" for entry in listed):
            return listed
        time.sleep(1)
    raise AssertionError(f"the webserver on port {port} did not load its code locations")

"""The `kpi-pipelines` command as a user runs it: separate processes on one embedded server."""

from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from kpi_pipelines_tests.processes import (
    cli_env,
    cli_path,
    cli_serving,
    deployment_storage,
    free_port,
    postmaster,
    release,
    run_cli,
    run_process,
    script_path,
    start_holder,
    start_service,
    wait_stopped,
)


def test_cli_and_dagster_run_processes_share_the_embedded_server(private_home, tmp_path) -> None:
    env = private_home
    first = start_holder(env)
    second = start_holder(env)
    crashed = start_holder(env)
    server = postmaster(env)
    assert server is not None
    # A user that dies without cleaning up (SIGKILL, OOM) must not keep the server up forever.
    os.killpg(crashed.pid, signal.SIGKILL)
    crashed.wait(timeout=30)

    run_cli(env, "workspace", "add", "shop", "--currency", "EUR", "--timezone", "Europe/Paris")
    mapping = {"mapping": {"date_column": "day", "metric": "orders", "value_column": "n"}}
    run_cli(env, "connection", "add", "shop", "csv_upload", "--settings-json", json.dumps(mapping))
    csv_file = tmp_path / "orders.csv"
    csv_file.write_text("day,n\n2026-02-01,3\n2026-02-02,5\n", encoding="utf-8")
    imported = run_cli(env, "import", "shop", "csv_upload", str(csv_file))
    assert "2 records" in imported.stdout

    # A Dagster run in its own process, launched by Dagster's own CLI from a plain shell
    # after the documented one-liner, on the same instance and warehouse.
    config = {"ops": {"csv_upload_kpis": {"config": {"path": str(csv_file)}}}}
    materialize = shlex.join(
        [
            *(sys.executable, "-m", "dagster", "asset", "materialize"),
            *("-m", "kpi_pipelines.definitions", "--select", "csv_upload_kpis"),
            *("--partition", "shop", "--config-json", json.dumps(config)),
        ]
    )
    materialized = run_process(
        ["bash", "-c", f'eval "$({shlex.quote(cli_path())} env)" && {materialize}'], env
    )
    assert "RUN_SUCCESS" in materialized.stdout + materialized.stderr

    shown = run_cli(env, "kpi", "show", "shop")
    assert "orders" in shown.stdout and "5.00" in shown.stdout

    # The CLI and the run process have exited; the server stays for the holders...
    assert postmaster(env) is not None and postmaster(env).pid == server.pid
    release(first)
    assert postmaster(env) is not None
    # ...and stops once the last of them exits.
    release(second)
    assert wait_stopped(env), "the embedded server outlived its last user"


REPOSITORY = Path(__file__).resolve().parents[1]


def test_dagster_tools_work_from_the_repository_root_with_nothing_set(
    private_home, tmp_path
) -> None:
    """Dagster's own CLIs (dagster, dg) run from the checkout, with no DAGSTER_* or KPI_*
    variable and no server up, use the project's instance and warehouse (the root
    dagster.yaml), starting the embedded server for as long as they run."""
    env = {k: v for k, v in private_home.items() if k != "KPI_HOME"}
    env["HOME"] = str(Path(private_home["KPI_HOME"]).parent)  # the default KPI_HOME is ~/
    home = Path(env["HOME"]) / ".kpi_pipelines"
    run_cli(env, "workspace", "add", "shop")
    mapping = {"mapping": {"date_column": "day", "metric": "orders", "value_column": "n"}}
    run_cli(env, "connection", "add", "shop", "csv_upload", "--settings-json", json.dumps(mapping))
    assert wait_stopped({"KPI_HOME": str(home)})
    csv_file = tmp_path / "orders.csv"
    csv_file.write_text("day,n\n2026-02-01,3\n2026-02-02,7\n", encoding="utf-8")
    config = {"ops": {"csv_upload_kpis": {"config": {"path": str(csv_file)}}}}

    def from_checkout(*command: str) -> subprocess.CompletedProcess:
        return run_process(list(command), env, cwd=REPOSITORY)

    from_checkout(script_path("dagster"), "definitions", "validate")
    materialized = from_checkout(
        *(script_path("dagster"), "asset", "materialize", "-m", "kpi_pipelines.definitions"),
        *("--select", "csv_upload_kpis", "--partition", "shop"),
        *("--config-json", json.dumps(config)),
    )
    assert "RUN_SUCCESS" in materialized.stderr
    assert wait_stopped({"KPI_HOME": str(home)}), "the run left the embedded server up"
    assert "7.00" in run_cli(env, "kpi", "show", "shop").stdout
    # and `dg`, which reads the project from pyproject.toml
    csv_file.write_text("day,n\n2026-02-01,3\n2026-02-02,9\n", encoding="utf-8")
    from_checkout(
        *(script_path("dg"), "launch", "--assets", "csv_upload_kpis", "--partition", "shop"),
        *("--config-json", json.dumps(config)),
    )
    # the project's instance has both runs and the warehouse their points
    runs = run_process([sys.executable, "-c", RUNS], env)
    assert json.loads(runs.stdout) == [["shop", "SUCCESS"], ["shop", "SUCCESS"]]
    assert "9.00" in run_cli(env, "kpi", "show", "shop").stdout


RUNS = """
import json
from kpi_pipelines.dagster_instance import open_instance
print(json.dumps([[r.tags.get("dagster/partition"), r.status.value]
                  for r in open_instance().get_runs()]))
"""


def test_env_prints_no_secret_value_and_the_tools_still_get_them(private_home) -> None:
    """`kpi-pipelines env` names DAGSTER_PG_PASSWORD, and a KPI_DATABASE_URL carrying a
    password, in a comment: after `eval "$(kpi-pipelines env)"` the shell still has them
    (the command read them from it), and Dagster's tools open the instance."""
    holder = start_holder(private_home)
    try:
        password, url_password = (f"canary-{secrets.token_hex(8)}" for _ in range(2))
        storage = deployment_storage(private_home)
        url = (
            f"postgresql://postgres:{url_password}@/kpi?host={storage['PGHOST']}"
            f"&port={storage['DAGSTER_PG_PORT']}"
        )
        env = {**private_home, **storage, "DAGSTER_PG_PASSWORD": password, "KPI_DATABASE_URL": url}
        printed = run_cli(env, "env")
        assert password not in printed.stdout + printed.stderr
        assert url_password not in printed.stdout + printed.stderr
        for name in ("DAGSTER_PG_PASSWORD", "KPI_DATABASE_URL"):
            assert f"# {name} is set and holds a secret, so it is not printed" in printed.stdout
        exported = cli_env(env)
        assert exported["DAGSTER_PG_DB"] == "kpi" and "DAGSTER_PG_PASSWORD" not in exported
        check = (
            "import os, sys; from kpi_pipelines.dagster_instance import open_instance;"
            " open_instance().get_runs();"
            " sys.exit(os.environ['DAGSTER_PG_PASSWORD'] != sys.argv[1])"
        )
        used = subprocess.run(
            [
                *("bash", "-c", f'eval "$({shlex.quote(cli_path())} env)" && "$0" -c "$1" "$2"'),
                *(sys.executable, check, password),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert used.returncode == 0, used.stdout + used.stderr
        # Without the password variable, `env` prints the rest as before.
        plain = {
            k: v for k, v in env.items() if k not in ("DAGSTER_PG_PASSWORD", "KPI_DATABASE_URL")
        }
        assert "holds a secret" not in run_cli(plain, "env").stdout
    finally:
        release(holder)


def test_cli_errors_are_clear_and_exit_non_zero(private_home, tmp_path) -> None:
    env = private_home
    bad_zone = run_cli(env, "workspace", "add", "x", "--timezone", "Mars/Base", check=False)
    assert bad_zone.returncode == 1
    assert "Mars/Base" in bad_zone.stderr and "IANA" in bad_zone.stderr
    secret_value = run_cli(
        env, "connection", "add", "nope", "stripe", "--secret", "api_key=sk_test_123", check=False
    )
    assert secret_value.returncode == 1
    assert "environment variable" in secret_value.stderr
    assert "sk_test_123" not in secret_value.stderr + secret_value.stdout
    run_cli(env, "workspace", "add", "shop")
    run_cli(
        env,
        "connection",
        "add",
        "shop",
        "csv_upload",
        "--settings-json",
        '{"mapping": {"date_column": "d", "metric": "m", "value_column": "v"}}',
    )
    bad = tmp_path / "bad.csv"
    bad.write_text("d,v\n2026-01-01,abc\n2026-01-02,\n", encoding="utf-8")
    rejected = run_cli(env, "import", "shop", "csv_upload", str(bad), check=False)
    assert rejected.returncode == 1
    assert rejected.stderr.startswith("✗ csv_upload → shop failed: bad.csv was rejected")
    assert "line 2" in rejected.stderr and "line 3" in rejected.stderr
    assert "csv_upload" not in run_cli(env, "kpi", "show", "shop").stdout
    for failed in (rejected, bad_zone, secret_value):
        assert "Traceback" not in failed.stdout + failed.stderr


def test_every_cli_error_is_one_line_and_registers_nothing(private_home, tmp_path) -> None:
    env = private_home
    run_cli(env, "workspace", "add", "shop")
    data = tmp_path / "ok.csv"
    data.write_text("d,v\n2026-01-01,1\n", encoding="utf-8")
    failures = {
        "unknown workspace, import": ("import", "nope", "csv_upload", str(data)),
        "unknown workspace, override": (
            "override",
            "set",
            "nope",
            "csv_upload",
            "signups",
            "2026-01-05",
            "1",
        ),
        "unknown workspace, kpi show": ("kpi", "show", "nope"),
        "unknown provider": ("connection", "add", "shop", "strip"),
    }
    for case, args in failures.items():
        failed = run_cli(env, *args, check=False)
        assert failed.returncode == 1, case
        assert failed.stderr.count("\n") == 1 and failed.stderr.startswith("error: "), case
        assert "Traceback" not in failed.stdout + failed.stderr, case
    partitions = run_process([sys.executable, "-c", PARTITIONS], env)
    # `workspace add` registered "shop" at once; "nope" was never registered with Dagster
    assert json.loads(partitions.stdout) == ["shop"]
    unreachable = dict(env, KPI_DATABASE_URL="postgresql://nobody:pw@127.0.0.1:1/nothing")
    down = run_cli(unreachable, "workspace", "list", check=False)
    assert down.returncode == 1 and down.stderr.count("\n") == 1
    assert down.stderr.startswith("error: cannot use the warehouse database (KPI_DATABASE_URL)")
    assert "Connection refused" in down.stderr and ":pw@" not in down.stderr


PARTITIONS = """
import json
from kpi_pipelines.dagster_instance import open_instance
print(json.dumps(open_instance().get_dynamic_partitions("workspace")))
"""


def test_ui_runs_dagsters_webserver_and_daemon_and_stops_everything(private_home) -> None:
    """`kpi-pipelines ui`: the webserver serves the one code location from the code server it
    shares with the daemon, no superseded command or warning is printed, and Ctrl-C (SIGINT) leaves nothing running,
    the embedded PostgreSQL included."""
    env = private_home
    log = Path(env["KPI_HOME"]).parent / "ui.log"
    with cli_serving(env, log, "ui") as ui:
        commands = " ".join(" ".join(c.cmdline()) for c in ui.children)
        assert "dagster-webserver" in commands and "dagster-daemon run" in commands
        # one code server the webserver and daemon share
        assert commands.count("code-server start") == 1
        assert postmaster(env) is not None
    output = ui.output()
    assert "superseded" not in output.lower() and "Ctrl-C stops them" in output
    # the services' own lines (their start, sensor ticks) went to the log file it names
    services_log = Path(env["KPI_HOME"]) / "logs" / "ui.log"
    assert output.startswith(f"the services' full output: {services_log}\n")
    assert " - INFO - " not in output and " - INFO - " in services_log.read_text()


def test_webhooks_serve_stopped_with_sigterm_stops_the_embedded_postgresql(private_home) -> None:
    """A process manager stops the receiver with SIGTERM: uvicorn shuts down gracefully,
    the command exits 0, and the embedded PostgreSQL it started stops with it (SIGTERM's
    default action used to end the process before its last user could stop the server)."""
    env = private_home
    port = free_port()
    log = Path(env["KPI_HOME"]).parent / "webhooks.log"
    receiver = start_service(
        "webhooks", [cli_path(), "webhooks", "serve", "--port", str(port)], env, log.parent
    )
    try:
        deadline = time.monotonic() + 120
        while not _answers(port):
            assert receiver.process.poll() is None, receiver.output()
            assert time.monotonic() < deadline, receiver.output()
            time.sleep(0.5)
        assert postmaster(env) is not None
    finally:
        receiver.process.send_signal(signal.SIGTERM)
        code = receiver.process.wait(timeout=60)
    assert code == 0, receiver.output()
    assert "Shutting down" in receiver.output()
    assert wait_stopped(env), "the embedded PostgreSQL outlived `kpi-pipelines webhooks serve`"


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False

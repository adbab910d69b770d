"""What `ui` and `dev` show of their services and runs: the services' warnings and errors
on the terminal, everything they print in the log file; one line per run's start and one
per its outcome."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import dagster as dg

from kpi_pipelines.run_reports import RunReporter
from kpi_pipelines.services import ServiceLog, run_services

# What a Dagster service and a uvicorn one print into a pipe: coloured, a sensor tick, a
# run's debug event, a warning (twice, as a sensor repeats it), an error, a traceback.
SERVICE = r"""
import sys
lines = [
    "\x1b[32m2026-12-06 17:03:24 +0000\x1b[0m - dagster.daemon.SensorDaemon - \x1b[34mINFO\x1b[0m"
    " - Checking for new runs for sensor: stripe_webhook_sensor",
    "2026-12-06 17:03:31 +0000 - dagster - DEBUG - stripe_job - "
    "dc7bf607-d8e0-46b9-b231-aada78587ab7 - 16014 - stripe_kpis - STEP_START - Started.",
    "2026-12-06 17:03:32 +0000 - dagster - ERROR - stripe_job - "
    "dc7bf607-d8e0-46b9-b231-aada78587ab7 - 16014 - stripe_kpis - STEP_FAILURE - failed.",
    "2026-12-06 17:04:00 +0000 - dagster - WARNING - workspace_partitions_sensor - no"
    " workspace for partition(s) ghost",
    "2026-12-06 17:04:30 +0000 - dagster - WARNING - workspace_partitions_sensor - no"
    " workspace for partition(s) ghost",
    "\x1b[31mERROR\x1b[0m:    receiver: secret variable WS_ACME__STRIPE_WHSEC is not set",
    "Traceback (most recent call last):",
    '  File "x.py", line 1, in <module>',
    "INFO:     127.0.0.1:51832 - \"POST /stripe/acme HTTP/1.1\" 200 OK",
    "a title \x1b]0;pwned\x07 in a message",
]
print("\n".join(lines), flush=True)
sys.exit(3)
"""


def test_services_print_warnings_and_errors_to_the_terminal_and_all_to_the_log(
    tmp_path: Path,
) -> None:
    said: list[tuple[str, int]] = []
    output = ServiceLog(
        tmp_path / "logs" / "dev.log", lambda text, level: said.append((text, level))
    )
    code = run_services({"svc": [sys.executable, "-c", SERVICE]}, output=output)
    output.close()
    assert code == 3
    # (the services' lines are read in threads of their own: in any order with the exit's)
    assert sorted(said) == sorted(
        [
            ("svc: dagster: workspace_partitions_sensor - no workspace for partition(s) ghost", 30),
            ("svc: receiver: secret variable WS_ACME__STRIPE_WHSEC is not set", 40),
            (f"svc exited with code 3 (its output: {output.path}); stopping the others", 40),
        ]
    )
    logged = output.path.read_text()
    for line in (
        "svc | 2026-12-06 17:03:24 +0000 - dagster.daemon.SensorDaemon - INFO - Checking",
        "STEP_START - Started.",
        "STEP_FAILURE - failed.",
        "svc | Traceback (most recent call last):",
        '"POST /stripe/acme HTTP/1.1" 200 OK',
        "a title \\x1b]0;pwned\\x07 in a message",  # shown, never obeyed
    ):
        assert line in logged, line
    assert logged.count("no workspace for partition(s) ghost") == 2
    assert "\x1b" not in logged
    # the next session starts a new file and keeps this one
    ServiceLog(output.path, lambda text, level: None).close()
    assert Path(f"{output.path}.1").read_text() == logged


def test_runs_are_reported_when_they_start_and_end_with_a_failures_reason(tmp_path: Path) -> None:
    @dg.asset
    def fine() -> None:
        pass

    @dg.asset
    def broken() -> None:
        raise dg.Failure(description="workspace 'ghost' does not exist: `kpi-pipelines ...`")

    said: list[tuple[str, int]] = []
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        dg.materialize([fine], instance=instance)  # before the reporter: not reported
        reporter = RunReporter(instance, lambda t, level: said.append((t, level)), "http://ui")
        ok = dg.materialize([fine], instance=instance, tags={"dagster/sensor_name": "s"})
        failed = dg.materialize([broken], instance=instance, raise_on_error=False)
        reporter.poll()
        reporter.poll()  # nothing new: nothing said again
    short = ok.run_id[:8], failed.run_id[:8]
    assert [level for _, level in said] == [logging.INFO] * 3 + [logging.ERROR]
    texts = [text for text, _ in said]
    assert texts[0] == f"run {short[0]} __ephemeral_asset_job__ started (sensor s)"
    assert texts[1].startswith(f"run {short[0]} __ephemeral_asset_job__ succeeded in ")
    assert texts[2] == f"run {short[1]} __ephemeral_asset_job__ started"
    assert texts[3].startswith(f"run {short[1]} __ephemeral_asset_job__ failed in ")
    assert texts[3].endswith(
        f": workspace 'ghost' does not exist: `kpi-pipelines ...` (http://ui/runs/{failed.run_id})"
    )

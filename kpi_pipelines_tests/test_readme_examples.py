"""The README's quick start and its section "Dagster's own tools" run as they are written,
from a plain shell: every bash block, in order, read from the README (so this test breaks
when the README changes), each in `bash -e` at the repository root, in a home of its own (a
new `~/.kpi_pipelines`, nothing set but PATH).

Two liberties, both outside the commands themselves: the quick start's setup (`python3 -m
venv .venv && . .venv/bin/activate && pip install -e ".[dev]" && `) is this test's own
virtualenv, first on PATH, and a long-running command (`kpi-pipelines dev`) is run in the
background, with free ports added, until every block after it has run, then stopped with
Ctrl-C as a person does. The test command's block (the whole suite, this test included) is
`.ci/run`'s.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import sys
from pathlib import Path

from kpi_pipelines.demo import read_env_file
from kpi_pipelines_tests.processes import (
    cli_path,
    cli_serving,
    free_port,
    run_process,
    wait_for,
)

REPOSITORY = Path(__file__).resolve().parents[1]
SETUP = 'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]" && '
LONG_RUNNING = {"kpi-pipelines dev"}


def section(markdown: str, heading: str) -> str:
    """The text under `heading` (a line such as `## Quick start`) up to the next heading
    of the same level or above."""
    level = len(heading) - len(heading.lstrip("#"))
    start = markdown.index(f"\n{heading}\n")
    following = re.compile(rf"^#{{1,{level}}} ", re.MULTILINE)
    after = following.search(markdown, start + len(heading) + 2)
    return markdown[start : after.start() if after else len(markdown)]


def bash_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", markdown, re.MULTILINE | re.DOTALL)


def examples() -> list[str]:
    readme = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    test_command = bash_blocks(readme.split("<!-- test-command -->")[1])[0]
    quick_start = [b for b in bash_blocks(section(readme, "## Quick start")) if b != test_command]
    tools = bash_blocks(section(readme, "### Dagster's own tools"))
    assert quick_start[0].startswith(SETUP), "the quick start no longer starts with its setup"
    assert tools, 'the README has no section "Dagster\'s own tools" with a bash block'
    return [quick_start[0].removeprefix(SETUP), *quick_start[1:], *tools]


def test_the_quick_start_and_dagsters_own_tools_run_as_written(private_home) -> None:
    blocks = examples()
    home = Path(private_home["KPI_HOME"]).parent
    env = {k: v for k, v in private_home.items() if k != "KPI_HOME"}
    env["HOME"] = str(home)  # ~/.kpi_pipelines is new
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    runs: list[str] = []
    with contextlib.ExitStack() as running:
        for block in blocks:
            if block.strip() in LONG_RUNNING:
                command = shlex.split(block)[1:]
                ports = ("--webhooks-port", str(free_port())) if command == ["dev"] else ()
                log = home / f"{command[0]}.out"
                serving = running.enter_context(cli_serving(env, log, *command, *ports))
                continue
            done = run_process(["bash", "-e", "-c", block], env, cwd=REPOSITORY)
            output = done.stdout + done.stderr
            if block.startswith("kpi-pipelines demo"):
                assert "demo done" in done.stdout, output
            launched = len(re.findall(r"^(?:dagster asset materialize|dg launch) ", block, re.M))
            succeeded = re.findall(r" - ([0-9a-f-]{36}) - \d+ - RUN_SUCCESS - ", output)
            assert len(succeeded) == launched, output
            runs += succeeded
        assert len(runs) >= 3, "the Dagster section launches fewer runs than it did"
        # `dev` reports them as it reports its own: they are the instance's runs
        for run_id in runs:
            wait_for(
                f"dev to report run {run_id}",
                lambda run_id=run_id: re.search(
                    rf"run {run_id[:8]} .* succeeded", serving.output()
                ),
                serving,
            )
        # What `env --demo` gave the shell: the file to read, never a value from it.
        env_file = home / ".kpi_pipelines" / "demo" / "dev.env"
        printed = run_process([cli_path(), "env", "--demo"], env).stdout
        assert f"set -a; . {shlex.quote(str(env_file))}; set +a" in printed
        assert not [v for v in read_env_file(env_file).values() if v and v in printed]
    stopped = run_process([cli_path(), "env", "--demo"], env, check=False)
    assert stopped.returncode == 1 and "start `kpi-pipelines dev` first" in stopped.stderr

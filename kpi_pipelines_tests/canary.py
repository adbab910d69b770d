"""The secret canary: nothing the suite's runs leave behind holds a secret they used.

Every secret the code reads (a connection's key, an OAuth client, the keys that seal stored
grants) or is issued (an access token; a stored grant's tokens, as `connect` records them and
every time a run opens or refreshes one) is registered with the redactor as it arrives. This
plugin takes those values, plus the sandboxes' own well-known secrets, as the canaries, and
after every test scans:

- the test's captured output and log records, and its failure report;
- every warehouse table, the KPI schema and Dagster's storage in the same database, when
  the test used the warehouse;
- every Dagster instance the test ran in (`scanned_instance`; `runs_scanned` for the runs
  a test adds to a shared one): the event log, with each run's metadata and errors, and
  the compute logs;
- what the processes of a test that runs the CLI, `dev`, the UI or Dagster's services left
  (`processes.ProcessTrail`, at the end of every test that uses `private_home`): the
  warehouse of each KPI_HOME they used (the kpi schema and Dagster's tables: its event log
  and runs), every file under the test's folder (Dagster's compute logs, the services' log
  files) and the output of every command run to completion. There the canaries include the
  demo's and `dev`'s own secrets (`demo_secrets`).

A hit fails the test that left it, naming the place and a prefix of the value only.
`kpi_pipelines_tests/test_canary.py` proves each scan finds a planted secret.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import pytest
import sqlalchemy as sa

from kpi_pipelines.demo import read_env_file, start_demo_simulators
from kpi_pipelines.integrations.shared.redaction import default_redactor
from kpi_pipelines.sandbox.google import DEMO_CLIENT_SECRET, DEMO_REFRESH_TOKEN
from kpi_pipelines.sandbox.stripe import DEFAULT_API_KEY
from kpi_pipelines.warehouse.database import Warehouse

# Shorter registered values (a 4-character client id) would match ordinary text.
MIN_CANARY_LENGTH = 10
SANDBOX_SECRETS = frozenset({DEFAULT_API_KEY, DEMO_CLIENT_SECRET, DEMO_REFRESH_TOKEN})


class SecretLeak(AssertionError):
    """A secret used by the suite was found where it must never be."""


def canaries(extra: Iterable[str] = ()) -> list[str]:
    values = default_redactor.registered() | SANDBOX_SECRETS | set(extra)
    return sorted(v for v in values if len(v) >= MIN_CANARY_LENGTH)


def demo_secrets(kpi_home: Path) -> set[str]:
    """The secrets `kpi-pipelines demo` and `dev` gave their runs under `kpi_home` (the
    simulated accounts' keys, webhook signing secrets, the OAuth client and refresh
    tokens): the values in the env file `dev` wrote, and those the demo simulators give
    when started again on the same folder (the same accounts). Their hosts aside: the
    simulators' URLs are settings, which runs may log."""
    folder = kpi_home / "demo"
    values: set[str] = set()
    if (folder / "dev.env").is_file():
        values.update(read_env_file(folder / "dev.env").values())
    if (folder / "simulators").is_dir():
        stack = start_demo_simulators(folder / "simulators")
        try:
            values.update(stack.env().values())
        finally:
            stack.stop()
    return {v for v in values if urlsplit(v).scheme not in ("http", "https")}


# Hundreds of canaries pile up over a session (each sync's issued tokens), most sharing a
# few shapes: search for their distinct prefixes, then confirm whole values where one is.
PREFIX = 6


def _by_prefix(secrets: list[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for secret in secrets:
        groups.setdefault(secret[:PREFIX], []).append(secret)
    return groups


def _found_in(text: str, groups: dict[str, list[str]]) -> set[str]:
    hits: set[str] = set()
    for prefix, group in groups.items():
        at = text.find(prefix)
        while at != -1:
            hits.update(secret for secret in group if text.startswith(secret, at))
            at = text.find(prefix, at + 1)
    return hits


def leaks(texts: Iterable[tuple[str, str]], secrets: list[str] | None = None) -> list[str]:
    """Where any canary occurs among (place, text) pairs, as "place: prefix..."."""
    secrets = canaries() if secrets is None else secrets
    groups = _by_prefix(secrets)
    return [
        # a place may be named by what holds a secret (a command's arguments)
        f"{_blank(place, secrets)}: {secret[:PREFIX]}..."
        for place, text in texts
        for secret in sorted(_found_in(text, groups))
    ]


def warehouse_leaks(warehouse: Warehouse) -> list[str]:
    """Canaries in any row of any table of the kpi schema or Dagster's (public) storage."""
    return database_leaks(warehouse.engine(None))


def database_leaks(engine: sa.Engine, secrets: list[str] | None = None) -> list[str]:
    """Canaries in any row of any table of the kpi and public schemas of the database
    `engine` logs into (as a superuser: row-level security hides nothing from it)."""
    groups = _by_prefix(canaries() if secrets is None else secrets)
    patterns = ["%" + re.sub(r"([\\%_])", r"\\\1", prefix) + "%" for prefix in groups]
    found = []
    with engine.connect() as db:
        tables = db.execute(
            sa.text(
                "SELECT table_schema, table_name FROM information_schema.tables"
                " WHERE table_schema IN ('kpi', 'public') AND table_type = 'BASE TABLE'"
            )
        ).all()
        for schema, table in tables:
            # One pass over the table for the few prefixes; whole values confirmed here.
            rows = db.execute(
                sa.text(
                    f'SELECT t::text FROM "{schema}"."{table}" t'
                    " WHERE t::text LIKE ANY (CAST(:patterns AS text[]))"
                ),
                {"patterns": patterns},
            ).scalars()
            hits = set().union(*(_found_in(row, groups) for row in rows))
            found += [f"table {schema}.{table}: {secret[:PREFIX]}..." for secret in sorted(hits)]
    return found


def instance_leaks(instance: dg.DagsterInstance, skip: Iterable[str] = ()) -> list[str]:
    """Canaries in a Dagster instance's event log (messages, errors, metadata) or compute
    logs, for every run but those in `skip` (run ids)."""
    texts = []
    skipped = set(skip)
    runs = [run for run in instance.get_runs() if run.run_id not in skipped]
    for run in runs:
        texts += [(f"run {run.run_id} event log", repr(r)) for r in instance.all_logs(run.run_id)]
        texts.append((f"run {run.run_id} config and tags", repr((run.run_config, run.tags))))
    root = Path(instance.root_directory) if instance.root_directory else None
    if root is not None:
        for run in runs:
            for path in root.glob(f"storage/{run.run_id}/compute_logs/*"):
                if path.is_file():
                    texts.append((f"compute log {path.name}", path.read_text(errors="replace")))
    return leaks(texts)


def file_leaks(root: Path, files: Iterable[Path], secrets: list[str] | None = None) -> list[str]:
    """Canaries in any of `files`, each named by its path under `root`."""
    return leaks(
        ((f"file {path.relative_to(root)}", path.read_text(errors="replace")) for path in files),
        secrets,
    )


@contextmanager
def runs_scanned(instance: dg.DagsterInstance) -> Iterator[dg.DagsterInstance]:
    """The runs `instance` gets in the block, their event log and compute logs scanned on
    exit."""
    before = {run.run_id for run in instance.get_runs()}
    yield instance
    found = instance_leaks(instance, skip=before)
    if found:
        raise SecretLeak("a secret leaked into the Dagster instance: " + "; ".join(found))


@contextmanager
def scanned_instance() -> Iterator[dg.DagsterInstance]:
    """`dg.instance_for_test()` whose event log and compute logs are scanned on exit."""
    with dg.instance_for_test() as instance, runs_scanned(instance):
        yield instance


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    secrets = canaries()
    # A phase's report repeats the sections of the phases before it: scan its own.
    own = [(name, text) for name, text in report.sections if name.endswith(report.when)]
    found = leaks(own, secrets)
    if report.longrepr is not None:  # a SecretLeak's own report names prefixes only
        found += leaks([("failure report", report.longreprtext)], secrets)
    if found:
        original = _blank(report.longreprtext, secrets) if report.longrepr is not None else ""
        report.outcome = "failed"
        report.longrepr = "secret canary: a secret appears in " + "; ".join(found)
        if original:
            report.longrepr += "\n\nThe test's own report, secrets blanked:\n" + original
        # Nor may the terminal show it.
        report.sections = [(name, _blank(text, secrets)) for name, text in report.sections]


def _blank(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "[CANARY]")
    return text

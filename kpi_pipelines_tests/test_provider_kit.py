"""A provider is its folder: a toy provider (a spec, an adapter on the kit, a tiny simulator
and its demo), written to a temporary package that the project has never seen, gets its
asset, job, schedule, pool, freshness check, CLI sync and demo entry with no edit anywhere
else (KPI_PROVIDER_PACKAGES names the package, as an operator would for a plugin)."""

from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path

import dagster as dg
import pytest
from typer.testing import CliRunner

from kpi_pipelines.automation.pools import provider_pool_limits
from kpi_pipelines.cli import app
from kpi_pipelines.definitions import build_definitions
from kpi_pipelines.demo import demo_providers, materialize_provider
from kpi_pipelines.integrations.shared.spec import discover
from kpi_pipelines.warehouse.control import Workspace, add_workspace
from kpi_pipelines.warehouse.tenant_data import read_points

pytestmark = pytest.mark.usefixtures("restored_environment")

SPEC = '''
"""Toy visits, declared."""
from kpi_pipelines.integrations.shared.spec import AuthKind, Cadence, ProviderSpec, SecretSpec
from {package}.toy.adapter import PROVIDER, ToyAdapter

SPEC = ProviderSpec(
    key=PROVIDER,
    display_name="Toy visits",
    description="Daily visits of a toy site, from its toy API.",
    adapter=ToyAdapter,
    auth=AuthKind.API_KEY,
    secrets=(SecretSpec("api_key", "the toy API's key"),),
    cadence=Cadence.every_hours(6),
    pool_limit=1,
    group="toys",
    kinds=frozenset({"python"}),
    metrics=("visits",),
    demo="{package}.toy.demo:prepare",
)
'''

ADAPTER = '''
"""The toy API: GET /v1/visits?page=N -> {"data": [{"day", "visits"}], "next_page": N | null}."""
from datetime import UTC, date, datetime
from typing import Any, ClassVar

from kpi_pipelines import settings
from kpi_pipelines.integrations.shared.base_adapter import IntegrationAdapter
from kpi_pipelines.integrations.shared.http import ProviderHttpClient
from kpi_pipelines.integrations.shared.secrets import read_secret
from kpi_pipelines.models import KPIData, SyncResult, day_timestamp

PROVIDER = "toy"


class ToyAdapter(IntegrationAdapter):
    provider: ClassVar[str] = PROVIDER

    def check_connection(self) -> None:
        self._client().get_json("/v1/visits", params={"page": 0})

    def sync(self) -> SyncResult:
        client, page, rows = self._client(), 0, 0
        writer = self.point_writer()
        with writer.open():
            while page is not None:
                body = client.get_json("/v1/visits", params={"page": page})
                for row in body["data"]:
                    writer.add_all(self.transform(row))
                    rows += 1
                page = body["next_page"]
        return SyncResult(
            success=True,
            records_processed=rows,
            points_written=writer.stats.written,
            last_sync_at=datetime.now(UTC),
        )

    def transform(self, raw: Any) -> list[KPIData]:
        return [
            KPIData(
                value=raw["visits"],
                timestamp=day_timestamp(date.fromisoformat(raw["day"])),
                source=PROVIDER,
                workspace_id=self.context.workspace.id,
                metric="visits",
            )
        ]

    def _client(self) -> ProviderHttpClient:
        key = read_secret(self.context.connection, "api_key")
        base = settings.provider_base_url(PROVIDER, "https://api.toy.example")
        return ProviderHttpClient(PROVIDER, base, headers={"Authorization": f"Bearer {key}"})
'''

SIMULATOR = '''
"""A tiny toy API on loopback, with its own truth: visits per day, two per page."""
from datetime import date, timedelta

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

KEY = "toy-key-" + "9d2f7c41b8e6"
DAYS = [(date(2026, 1, 1) + timedelta(days=n)).isoformat() for n in range(5)]
TRUTH = {day: 10 * (n + 1) for n, day in enumerate(DAYS)}


async def visits(request: Request) -> JSONResponse:
    if request.headers.get("authorization") != f"Bearer {KEY}":
        return JSONResponse({"error": "unauthorized"}, status_code=401)
    page = int(request.query_params.get("page", 0))
    days = DAYS[2 * page : 2 * page + 2]
    more = 2 * page + 2 < len(DAYS)
    return JSONResponse(
        {"data": [{"day": d, "visits": TRUTH[d]} for d in days], "next_page": page + 1 if more else None}
    )


app = Starlette(routes=[Route("/v1/visits", visits)])
'''

DEMO = '''
"""The toy demo: the simulator served on loopback, a connection to it."""
import os

from kpi_pipelines.sandbox.server import LoopbackServer
from kpi_pipelines.warehouse.control import Connection, add_connection, secret_namespace
from {package}.toy import simulator

SERVER = None


def prepare(warehouse, workspace, folder):
    global SERVER
    if SERVER is None:
        SERVER = LoopbackServer(simulator.app).start()
    os.environ["KPI_TOY_BASE_URL"] = SERVER.base_url
    variable = f"{secret_namespace(workspace.id)}TOY_KEY"
    os.environ[variable] = simulator.KEY
    add_connection(
        warehouse,
        Connection(workspace_id=workspace.id, provider="toy", secret_env={"api_key": variable}),
    )
    return {}
'''


@pytest.fixture
def toy_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A provider package the project has never seen, named by KPI_PROVIDER_PACKAGES."""
    package = f"toy_providers_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / package / "toy"
    folder.mkdir(parents=True)
    (tmp_path / package / "__init__.py").write_text("")
    (folder / "__init__.py").write_text("")
    for name, text in (
        ("spec", SPEC),
        ("adapter", ADAPTER),
        ("simulator", SIMULATOR),
        ("demo", DEMO),
    ):
        (folder / f"{name}.py").write_text(textwrap.dedent(text.replace("{package}", package)))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("KPI_PROVIDER_PACKAGES", package)
    yield package
    demo = sys.modules.get(f"{package}.toy.demo")
    if demo is not None and demo.SERVER is not None:
        demo.SERVER.stop()
    for module in [m for m in sys.modules if m.startswith(package)]:
        del sys.modules[module]


def test_a_toy_provider_gets_everything_from_its_folder(warehouse, toy_package) -> None:
    specs = discover()
    assert [s.key for s in specs] == [
        "csv_upload",
        "google_analytics",
        "google_sheets",
        "stripe",
        "toy",
    ]
    providers, definitions = build_definitions(specs)
    toy = providers["toy"]
    repository = definitions.get_repository_def()
    assert repository.asset_graph.get(dg.AssetKey("toy_kpis")).group_name == "toys"
    assert repository.get_job("toy_job")
    schedule = repository.get_schedule_def("toy_schedule")
    assert schedule.cron_schedule == "0 */6 * * *" and schedule.job_name == "toy_job"
    assert toy.freshness.check_keys == {
        dg.AssetCheckKey(dg.AssetKey("toy_kpis"), "fresh_for_every_workspace")
    }
    assert provider_pool_limits(specs)["toy"] == 1
    assert "toy" in definitions.resources

    # The demo entry, as `kpi-pipelines demo` finds it.
    [demo] = [d for d in demo_providers() if d.provider == "toy"]
    workspace = add_workspace(warehouse, Workspace(id="toyland", name="Toyland"))
    run_config = demo.prepare(warehouse, workspace, Path("."))
    with dg.instance_for_test() as instance:
        assert materialize_provider(warehouse, instance, "toy", "toyland", run_config).success
    simulator = sys.modules[f"{toy_package}.toy.simulator"]
    stored = {p.timestamp.date().isoformat(): p.value for p in read_points(warehouse, "toyland")}
    assert stored == simulator.TRUTH

    # The CLI's generic sync, for a second workspace on the same toy API.
    runner = CliRunner()
    assert runner.invoke(app, ["workspace", "add", "toytown"]).exit_code == 0
    connected = runner.invoke(
        app, ["connection", "add", "toytown", "toy", "--secret", "api_key=WS_TOYTOWN__TOY_KEY"]
    )
    assert connected.exit_code == 0, connected.output
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WS_TOYTOWN__TOY_KEY", simulator.KEY)
        synced = runner.invoke(app, ["sync", "toytown", "toy"])
    assert synced.exit_code == 0, synced.output
    stored = {p.timestamp.date().isoformat(): p.value for p in read_points(warehouse, "toytown")}
    assert stored == simulator.TRUTH


def test_the_readme_lists_every_provider_as_its_spec_says() -> None:
    from kpi_pipelines.integrations.shared.spec import provider_table

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- providers -->\n", 1)[1].split("\n<!-- /providers -->", 1)[0]
    assert block == provider_table(discover()), "run `kpi-pipelines providers` and paste it"

"""A provider is its folder: a toy provider (a spec, an adapter on the kit, a tiny simulator
and its demo), written to a temporary package that the project has never seen, gets its
asset, job, schedule, pool, freshness check, CLI sync and demo entry with no edit anywhere
else (KPI_PROVIDER_PACKAGES names the package, as an operator would for a plugin)."""

from __future__ import annotations

import importlib
import sys
import textwrap
import uuid
from pathlib import Path

import dagster as dg
import pytest
from typer.testing import CliRunner

import kpi_pipelines.definitions as kpi_definitions
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
from kpi_pipelines.integrations.shared.engines.report import ReportEngine, ReportRunConfig
from kpi_pipelines.integrations.shared.spec import AuthKind, Cadence, ProviderSpec, SecretSpec
from {package}.toy.adapter import PROVIDER, VISITS, ToyAdapter

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
    engine=ReportEngine(reports=(VISITS,)),
    run_config=ReportRunConfig,
    demo="{package}.toy.demo:prepare",
)
'''

ADAPTER = '''
"""The toy API's hooks for the report engine: the engine plans the windows, pages, writes
and keeps the cursor; this file only says how to ask and what a row is.

GET /v1/account -> {"id", "time_zone", "today"}
GET /v1/report?from=DAY&to=DAY[&page_token=T] -> {"rows": [{"day", "visits"}], "next_page_token"}
"""
from datetime import date
from typing import Any, ClassVar

from pydantic import BaseModel, PrivateAttr

from kpi_pipelines import settings
from kpi_pipelines.integrations.shared.engines.report import (
    Query,
    Report,
    ReportAdapter,
    ReportScope,
)
from kpi_pipelines.integrations.shared.http import ProviderHttpClient
from kpi_pipelines.integrations.shared.paging import Page, PageRequest, PageToken
from kpi_pipelines.integrations.shared.secrets import read_secret
from kpi_pipelines.models import KPIData, day_timestamp

PROVIDER = "toy"
VISITS = Report("visits", ("day",), ("visits",))


class VisitsRow(BaseModel):
    day: date
    visits: int


class ToyAdapter(ReportAdapter):
    provider: ClassVar[str] = PROVIDER
    _http: ProviderHttpClient | None = PrivateAttr(default=None)

    def check_connection(self) -> None:
        self.probe()

    def probe(self) -> ReportScope:
        account = self._client().get_json("/v1/account")
        return ReportScope(
            identity={"account": account["id"]},
            time_zone=account["time_zone"],
            today=date.fromisoformat(account["today"]),
            label=f"toy account {account['id']}",
        )

    def paginator(self, report: Report) -> PageToken:
        return PageToken("page_token")

    def fetch_page(
        self, report: Report, scope: ReportScope, query: Query, request: PageRequest
    ) -> Page[Any]:
        window_query = {"from": query.first.isoformat(), "to": query.last.isoformat()}
        body = self._client().get_json("/v1/report", params={**window_query, **request.query})
        return Page(items=body["rows"], next_token=body["next_page_token"])

    def validate(self, report: Report, raw: Any) -> VisitsRow:
        return VisitsRow.model_validate(raw)

    def transform(self, raw: VisitsRow) -> list[KPIData]:
        return [
            KPIData(
                value=raw.visits,
                timestamp=day_timestamp(raw.day),
                source=PROVIDER,
                workspace_id=self.context.workspace.id,
                metric="visits",
            )
        ]

    def request_stats(self) -> dict[str, int | float]:
        return self._http.stats.as_metadata() if self._http is not None else {}

    def disconnect(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        super().disconnect()

    def _client(self) -> ProviderHttpClient:
        if self._http is None:
            key = read_secret(self.context.connection, "api_key")
            base = settings.provider_base_url(PROVIDER, "https://api.toy.example")
            self._http = ProviderHttpClient(
                PROVIDER, base, headers={"Authorization": f"Bearer {key}"}
            )
        return self._http
'''

SIMULATOR = '''
"""A tiny toy API on loopback with its own truth: visits on the last five days, two
rows a page."""
from datetime import UTC, datetime, timedelta

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

KEY = "toy-key-" + "9d2f7c41b8e6"
TODAY = datetime.now(UTC).date()
DAYS = [(TODAY - timedelta(days=n)).isoformat() for n in range(4, -1, -1)]
TRUTH = {day: 10 * (n + 1) for n, day in enumerate(DAYS)}
PER_PAGE = 2


def _refused(request: Request) -> JSONResponse | None:
    if request.headers.get("authorization") != f"Bearer {KEY}":
        return JSONResponse({"error": "unauthorized"}, status_code=401)
    return None


async def account(request: Request) -> JSONResponse:
    return _refused(request) or JSONResponse(
        {"id": "toy-1", "time_zone": "UTC", "today": TODAY.isoformat()}
    )


async def report(request: Request) -> JSONResponse:
    if refused := _refused(request):
        return refused
    first, last = request.query_params["from"], request.query_params["to"]
    days = [day for day in DAYS if first <= day <= last]
    start = int(request.query_params.get("page_token", 0))
    page = days[start : start + PER_PAGE]
    more = start + PER_PAGE < len(days)
    return JSONResponse(
        {
            "rows": [{"day": day, "visits": TRUTH[day]} for day in page],
            "next_page_token": str(start + PER_PAGE) if more else None,
        }
    )


app = Starlette(routes=[Route("/v1/account", account), Route("/v1/report", report)])
'''

DEMO = '''
"""The toy demo: the simulator served on loopback, a connection to it."""
import os

from kpi_pipelines.sandbox.kit.server import LoopbackServer
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
    # The definitions a process started with this setting loads (the CLI's runs load the
    # job from the module, as the code server does).
    importlib.reload(kpi_definitions)
    yield package
    demo = sys.modules.get(f"{package}.toy.demo")
    if demo is not None and demo.SERVER is not None:
        demo.SERVER.stop()
    monkeypatch.delenv("KPI_PROVIDER_PACKAGES")
    importlib.reload(kpi_definitions)
    for module in [m for m in sys.modules if m.startswith(package)]:
        del sys.modules[module]


def test_a_toy_provider_gets_everything_from_its_folder(
    warehouse, dagster_instance, toy_package
) -> None:
    specs = discover()
    assert [s.key for s in specs] == [
        "csv_upload",
        "google_analytics",
        "google_sheets",
        "linkedin_ads",
        "meta_ads",
        "notion",
        "stripe",
        "toy",
        "x_ads",
    ]
    providers, definitions = build_definitions(specs)
    toy = providers["toy"]
    repository = definitions.get_repository_def()
    assert repository.asset_graph.get(dg.AssetKey("toy_kpis")).group_name == "toys"
    assert repository.get_job("toy_job")
    schedule = repository.get_schedule_def("toy_schedule")
    assert schedule.cron_schedule == "0 */6 * * *" and schedule.job_name == "toy_job"
    assert dg.AssetCheckKey(dg.AssetKey("toy_kpis"), "fresh_for_every_workspace") in (
        toy.asset.check_keys
    )
    assert provider_pool_limits(specs)["toy"] == 1
    assert "toy" in definitions.resources

    # The demo entry, as `kpi-pipelines demo` finds it.
    [demo] = [d for d in demo_providers() if d.provider == "toy"]
    workspace = add_workspace(warehouse, Workspace(id="toyland", name="Toyland"))
    run_config = demo.prepare(warehouse, workspace, Path("."))
    result = materialize_provider(warehouse, dagster_instance, "toy", "toyland", run_config)
    assert result.success
    simulator = sys.modules[f"{toy_package}.toy.simulator"]
    stored = {p.timestamp.date().isoformat(): p.value for p in read_points(warehouse, "toyland")}
    assert stored == simulator.TRUTH
    # The report engine did the work: 90 days of history in 31-day windows (two of them
    # empty, one page each; the last three pages of two rows), after the account probe; the
    # probe the sync repeats after connect is the in-sync cache's hit.
    [materialization] = result.get_asset_materialization_events()
    metadata = {k: v.value for k, v in materialization.materialization.metadata.items()}
    assert metadata["records_processed"] == 5
    assert (metadata["http_requests_sent"], metadata["http_cache_hits"]) == (1 + 2 + 3, 1)
    assert repository.asset_graph.get(dg.AssetKey("toy_kpis")).metadata["engine"] == (
        "report (visits)"
    )

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

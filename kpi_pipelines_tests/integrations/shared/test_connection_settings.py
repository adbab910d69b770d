"""A host under any settings key is refused on save, for every provider: by the kit's
ConnectionSettings (every provider's settings model), through `kpi-pipelines connection add`
and the Python API it uses, and by the warehouse whatever the provider."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict
from typer.testing import CliRunner

from kpi_pipelines.cli import app
from kpi_pipelines.integrations.csv_upload.adapter import CsvUploadAdapter
from kpi_pipelines.integrations.shared.connection_settings import (
    ConnectionSettings,
    save_connection,
)
from kpi_pipelines.integrations.shared.spec import AuthKind, ProviderSpec, discover
from kpi_pipelines.warehouse.control import Connection, add_connection, list_connections

pytestmark = pytest.mark.usefixtures("restored_environment")

MAPPING = {"date_column": "Date", "metric_column": "Metric", "value_column": "Value"}
# Valid settings of each provider (a provider added without one fails the test below).
VALID: dict[str, dict[str, Any]] = {
    "csv_upload": {"mapping": {**MAPPING, "dimension_columns": ["Team"]}, "delimiter": ";"},
    "google_analytics": {"property_id": "123456789", "lookback_days": 3},
    "google_sheets": {"spreadsheet_id": "1AbCdEfGhIjK", "range": "KPIs!A1:D", "mapping": MAPPING},
    "linkedin_ads": {"account_id": "512345678", "conversions": ["externalWebsiteConversions"]},
    "meta_ads": {
        "account_id": "1234567890",
        "conversions": ["offsite_conversion.fb_pixel_purchase", "purchase"],
        "conversion_values": ["omni_purchase"],
    },
    "stripe": {"account_id": "acct_123"},
    "x_ads": {"account_id": "18ce54d4x5t", "conversion_events": ["purchases"]},
    "notion": {
        "database_id": "1f2e3d4c-5b6a-4798-8776-655443322110",
        "properties": {"status": "Stage", "done": ["Shipped"], "progress": "Completion"},
    },
}
URL = "https://evil.example/v1"
# Hosts under keys no provider declares, named like hosts or not, at any depth.
UNDECLARED = {
    "baseUrl": ({"baseUrl": URL}, "baseUrl is named like a host setting"),
    "apiBase": ({"apiBase": "evil.example"}, "apiBase is named like a host setting"),
    "server": ({"server": "10.0.0.7:8443"}, "server is named like a host setting"),
    "options.base_url": (
        {"options": {"base_url": URL}},
        "options.base_url is named like a host setting",
    ),
    "a URL in a list": ({"mirrors": ["a", URL]}, "mirrors.1 holds a URL or host name"),
    "a host deep down": (
        {"extra": [{"to": {"where": "user@évil.example:443"}}]},
        "extra.0.to.where holds a URL or host name",
    ),
}


def string_leaves(value: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(value, dict):
        return [leaf for key, item in value.items() for leaf in string_leaves(item, (*path, key))]
    if isinstance(value, list):
        return [
            leaf for i, item in enumerate(value) for leaf in string_leaves(item, (*path, str(i)))
        ]
    return [path] if isinstance(value, str) else []


def replaced(settings: dict[str, Any], path: tuple[str, ...], new: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(settings))
    holder = copy
    for part in path[:-1]:
        holder = holder[int(part)] if isinstance(holder, list) else holder[part]
    holder[int(path[-1]) if isinstance(holder, list) else path[-1]] = new
    return copy


def hostile_settings() -> list[tuple[str, dict[str, Any], str]]:
    """(provider, settings, the key path the refusal must name) for every provider: each
    undeclared case, and a URL in place of each string its valid settings hold."""
    cases = []
    for spec in discover():
        valid = VALID.get(spec.key, {} if spec.settings is None else None)
        assert valid is not None, f"add valid settings of {spec.key} to VALID"
        for settings, named in UNDECLARED.values():
            cases.append((spec.key, {**valid, **settings}, named))
        for path in string_leaves(valid):
            cases.append((spec.key, replaced(valid, path, URL), ".".join(path)))
    return cases


CASES = hostile_settings()
IDS = [f"{provider}:{named.split(' ')[0]}" for provider, _, named in CASES]


@pytest.mark.parametrize(("provider", "settings", "named"), CASES, ids=IDS)
def test_every_providers_settings_refuse_a_host_under_any_key(
    warehouse, workspace_a, provider: str, settings: dict[str, Any], named: str
) -> None:
    [spec] = [s for s in discover() if s.key == provider]
    connection = Connection(workspace_id="ws-a", provider=provider, settings=settings)
    # The Python API the CLI uses ...
    with pytest.raises(ValueError) as refused:
        save_connection(warehouse, connection, spec)
    message = str(refused.value)
    assert message.startswith(f"{provider} settings: {named}"), message
    # A field that takes a pasted address says itself what it takes; the others say why.
    pasted = spec.settings is not None and named in spec.settings.pasted_urls
    if not pasted:
        assert "operator settings" in message and "evil" not in message  # no value echoed
    # ... the command ...
    result = CliRunner().invoke(
        app, ["connection", "add", "ws-a", provider, "--settings-json", json.dumps(settings)]
    )
    assert result.exit_code == 1, result.output
    assert result.output.replace("\n", " ").strip() == f"error: {message}"
    # ... and the warehouse itself, for a caller that skips the spec.
    with pytest.raises(ValueError, match=f"KPI_{provider.upper()}_BASE_URL in"):
        add_connection(warehouse, connection)
    with warehouse.control() as db:
        assert list_connections(db, workspace_id="ws-a") == []


@pytest.mark.parametrize("provider", sorted(VALID))
def test_valid_settings_are_saved_as_validated(warehouse, workspace_a, provider: str) -> None:
    [spec] = [s for s in discover() if s.key == provider]
    connection = Connection(workspace_id="ws-a", provider=provider, settings=VALID[provider])
    saved = save_connection(warehouse, connection, spec)
    with warehouse.control() as db:
        [stored] = list_connections(db, workspace_id="ws-a")
    assert stored.settings == saved.settings == VALID[provider]


def test_a_pasted_sheet_address_is_kept_as_its_id(warehouse, workspace_a) -> None:
    [spec] = [s for s in discover() if s.key == "google_sheets"]
    pasted = "https://docs.google.com/spreadsheets/d/1AbCdEfGhIjK/edit#gid=0"
    settings = {**VALID["google_sheets"], "spreadsheet_id": pasted}
    connection = Connection(workspace_id="ws-a", provider="google_sheets", settings=settings)
    assert save_connection(warehouse, connection, spec).settings["spreadsheet_id"] == (
        "1AbCdEfGhIjK"
    )
    # Only the address of a sheet: any other is not an id, and says so.
    evil = {**settings, "spreadsheet_id": "https://evil.example/x"}
    with pytest.raises(ValueError, match="is not a spreadsheet id"):
        save_connection(warehouse, connection.model_copy(update={"settings": evil}), spec)


def test_settings_models_forbid_unknown_keys_at_every_level() -> None:
    class Loose(BaseModel):
        model_config = ConfigDict(extra="allow")

        name: str

    with pytest.raises(TypeError, match="Loose must forbid unknown keys"):

        class Settings(ConnectionSettings):
            options: list[Loose | None] = []

    class Plain(BaseModel):
        mapping: str

    with pytest.raises(TypeError, match="Plain must be a ConnectionSettings"):
        ProviderSpec(
            key="plain",
            display_name="Plain",
            description="",
            adapter=CsvUploadAdapter,
            auth=AuthKind.NONE,
            group="g",
            kinds=frozenset(),
            metrics=(),
            settings=Plain,
        )
    for spec in discover():
        assert spec.settings is None or issubclass(spec.settings, ConnectionSettings)


@pytest.mark.parametrize("provider", ["csv_upload", "google_sheets"])
def test_the_headers_of_a_tenants_own_columns_may_be_dotted_names(
    warehouse, workspace_a, provider: str
) -> None:
    """A column called "Sales.Total" is a name, never an address: the mapping's column
    fields take dotted names, and still refuse a URL, an IP address or a host with a port,
    a user or a path."""
    [spec] = [s for s in discover() if s.key == provider]
    dotted = {
        "date_column": "Day.ISO",
        "metric_column": "KPI.Name",
        "value_column": "Sales.Total",
        "dimension_columns": ["Team.Region"],
    }
    settings = {**VALID[provider], "mapping": dotted}
    result = CliRunner().invoke(
        app, ["connection", "add", "ws-a", provider, "--settings-json", json.dumps(settings)]
    )
    assert result.exit_code == 0, result.output
    with warehouse.control() as db:
        [stored] = list_connections(db, workspace_id="ws-a")
    assert stored.settings["mapping"] == dotted
    for host in ("sales.example:443", "user@sales.example", "sales.example/x", "10.0.0.7"):
        hostile = {**settings, "mapping": {**dotted, "value_column": host}}
        with pytest.raises(ValueError, match=r"mapping\.value_column holds a URL or host name"):
            save_connection(
                warehouse,
                Connection(workspace_id="ws-a", provider=provider, settings=hostile),
                spec,
            )

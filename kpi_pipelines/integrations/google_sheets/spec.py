"""Google Sheets, declared: a workspace's own metrics kept in a sheet, imported on demand."""

from kpi_pipelines.integrations.google_sheets.adapter import PROVIDER, GoogleSheetsAdapter
from kpi_pipelines.integrations.google_sheets.types import SheetsConnectionSettings
from kpi_pipelines.integrations.shared.engines.table import TableEngine
from kpi_pipelines.integrations.shared.oauth import google_oauth, google_secrets
from kpi_pipelines.integrations.shared.spec import (
    AuthKind,
    ProviderRunConfig,
    ProviderSpec,
)


class SheetsImportConfig(ProviderRunConfig):
    # Another range than the connection's for this import (same mapping), e.g. "'Q3'!A1:D".
    range: str | None = None


SPEC = ProviderSpec(
    key=PROVIDER,
    display_name="Google Sheets",
    description=(
        "Custom metrics a workspace keeps in a Google Sheet, imported all-or-nothing through"
        " the mapping saved on its google_sheets connection (the same rules as CSV uploads;"
        " a bad row rejects the sheet, listing every bad row by its sheet row number)."
        " Materialize it from here or with `kpi-pipelines import WORKSPACE google_sheets`."
    ),
    adapter=GoogleSheetsAdapter,
    auth=AuthKind.OAUTH2_REFRESH,
    settings=SheetsConnectionSettings,
    secrets=google_secrets("scope spreadsheets.readonly"),
    oauth=google_oauth("https://www.googleapis.com/auth/spreadsheets.readonly"),
    pool_limit=4,  # Sheets allows 300 read requests a minute per project (60 per user)
    group="manual_sources",
    kinds=frozenset({"googlesheets"}),
    tags={"kpi/domain": "custom"},
    metrics=("user-defined",),
    engine=TableEngine(),
    run_config=SheetsImportConfig,
    imports=True,
    demo="kpi_pipelines.sandbox.google.demo:prepare_sheets",
)

"""The google_sheets asset and its job: one workspace partition per run (manual cadence)."""

import dagster as dg

from kpi_pipelines.assets.provider_asset import ProviderRunConfig, build_provider_asset


class SheetsImportConfig(ProviderRunConfig):
    # Another range than the connection's for this import (same mapping), e.g. "'Q3'!A1:D".
    range: str | None = None


google_sheets_kpis = build_provider_asset(
    provider="google_sheets",
    resource_key="google_sheets",
    description=(
        "Custom metrics a workspace keeps in a Google Sheet, imported all-or-nothing through"
        " the mapping saved on its google_sheets connection (the same rules as CSV uploads;"
        " a bad row rejects the sheet, listing every bad row by its sheet row number)."
        " Materialize it from here or with `kpi-pipelines sheets import WORKSPACE`."
    ),
    group_name="manual_sources",
    kinds={"googlesheets"},
    config_class=SheetsImportConfig,
    pool="google_sheets",
)

google_sheets_job = dg.define_asset_job(
    "google_sheets_job",
    selection=dg.AssetSelection.assets(google_sheets_kpis),
    description="Import one workspace's Google Sheet (manual cadence).",
)

"""The csv_upload asset: one workspace partition per run, one file per run."""

import dagster as dg

from kpi_pipelines.assets.provider_asset import ProviderRunConfig, build_provider_asset


class CsvImportConfig(ProviderRunConfig):
    path: str  # the CSV file to import
    archive: bool = False  # move the file to imported/ or rejected/ afterwards (drop folders)


csv_upload_kpis = build_provider_asset(
    provider="csv_upload",
    resource_key="csv_upload",
    description=(
        "Custom metrics a workspace uploads as CSV, imported all-or-nothing through the"
        " mapping saved on its csv_upload connection. Launch it with the file's `path` in the"
        " run config, from the CLI (`kpi-pipelines csv import`) or by dropping the file in"
        " the workspace's drop folder."
    ),
    group_name="manual_sources",
    kinds={"csv"},
    config_class=CsvImportConfig,
)

csv_upload_job = dg.define_asset_job(
    "csv_upload_job",
    selection=dg.AssetSelection.assets(csv_upload_kpis),
    description="Import one CSV file into one workspace (manual cadence).",
)

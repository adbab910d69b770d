"""The one Definitions object: every provider's assets, resources, schedules and sensors."""

import dagster as dg

from kpi_pipelines.automation.partitions import workspace_partitions_sensor
from kpi_pipelines.integrations.csv_upload.adapter import CsvUploadAdapter
from kpi_pipelines.integrations.csv_upload.assets import csv_upload_kpis
from kpi_pipelines.resources import WarehouseResource

csv_upload_job = dg.define_asset_job(
    "csv_upload_job",
    selection=dg.AssetSelection.assets(csv_upload_kpis),
    description="Import one CSV file into one workspace (manual cadence).",
)

ASSETS = [csv_upload_kpis]

RESOURCES = {
    "warehouse": WarehouseResource(),
    "csv_upload": CsvUploadAdapter(),
}

defs = dg.Definitions(
    assets=ASSETS,
    jobs=[csv_upload_job],
    sensors=[workspace_partitions_sensor],
    resources=RESOURCES,
)

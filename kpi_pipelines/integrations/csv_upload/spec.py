"""CSV uploads, declared: a workspace's own metrics from a file, imported all-or-nothing."""

from kpi_pipelines.integrations.csv_upload.adapter import PROVIDER, CsvUploadAdapter
from kpi_pipelines.integrations.csv_upload.drop_folder import drop_folder_sensor
from kpi_pipelines.integrations.csv_upload.types import CsvConnectionSettings
from kpi_pipelines.integrations.shared.engines.table import TableEngine
from kpi_pipelines.integrations.shared.spec import AuthKind, ProviderRunConfig, ProviderSpec


class CsvImportConfig(ProviderRunConfig):
    path: str  # the CSV file to import
    archive: bool = False  # move the file to imported/ or rejected/ afterwards (drop folders)


SPEC = ProviderSpec(
    key=PROVIDER,
    display_name="CSV uploads",
    description=(
        "Custom metrics a workspace uploads as CSV, imported all-or-nothing through the"
        " mapping saved on its csv_upload connection. Launch it with the file's `path` in the"
        " run config, from the CLI (`kpi-pipelines import WORKSPACE csv_upload FILE`) or by"
        " dropping the file in the workspace's drop folder."
    ),
    adapter=CsvUploadAdapter,
    auth=AuthKind.NONE,
    settings=CsvConnectionSettings,
    # An import only writes to the warehouse: a few at once keep bulk drops from crowding
    # out the API providers' runs.
    pool_limit=4,
    group="manual_sources",
    kinds=frozenset({"csv"}),
    tags={"kpi/domain": "custom"},
    metrics=("user-defined",),
    engine=TableEngine(),
    run_config=CsvImportConfig,
    sensors=(drop_folder_sensor,),
    imports=True,
    file_option="path",
    demo="kpi_pipelines.integrations.csv_upload.demo:prepare",
)

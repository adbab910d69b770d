"""Per-workspace drop folders: a CSV saved in `KPI_CSV_DROP_DIR/<workspace>/` is imported.

The sensor requests one run per new or changed file (its run key is the file's name, size
and modification time, so an unchanged file is never imported twice). The run moves the
file to `imported/` when it succeeds, or to `rejected/` beside a `.errors.txt` that says
why, so the folder shows at a glance what is left to do. A subfolder named after a
connection routes files to that connection when a workspace has several.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from kpi_pipelines import settings
from kpi_pipelines.integrations.csv_upload.assets import csv_upload_job
from kpi_pipelines.resources import WarehouseResource
from kpi_pipelines.warehouse.control import workspace_ids

IMPORTED = "imported"
REJECTED = "rejected"
# A file still being written changes size or mtime: wait until it has been quiet this long.
SETTLE_SECONDS = 2.0


@dataclass(frozen=True)
class DroppedFile:
    workspace_id: str
    connection: str | None
    path: Path

    @property
    def run_key(self) -> str:
        info = self.path.stat()
        return f"{self.workspace_id}:{self.path.name}:{info.st_size}:{info.st_mtime_ns}"


def find_dropped_files(
    root: Path, workspaces: list[str], *, now: float | None = None
) -> list[DroppedFile]:
    now = time.time() if now is None else now
    found = []
    for workspace_id in workspaces:
        folder = root / workspace_id
        folder.mkdir(parents=True, exist_ok=True)
        candidates = [(None, p) for p in folder.glob("*.csv")]
        for sub in folder.iterdir():
            if sub.is_dir() and sub.name not in (IMPORTED, REJECTED):
                candidates += [(sub.name, p) for p in sub.glob("*.csv")]
        for connection, path in sorted(candidates, key=lambda c: str(c[1])):
            if path.is_file() and now - path.stat().st_mtime >= SETTLE_SECONDS:
                found.append(DroppedFile(workspace_id, connection, path))
    return found


def archive(path: Path, outcome: str, errors: str | None = None) -> Path:
    """Move an imported or rejected file out of the drop folder (with its errors, if any)."""
    workspace_folder = path.parent
    target_dir = workspace_folder / outcome
    target_dir.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = target_dir / f"{stamp}-{path.name}"
    shutil.move(str(path), target)
    if errors is not None:
        target.with_name(target.name + ".errors.txt").write_text(errors + "\n", encoding="utf-8")
    return target


@dg.sensor(
    name="csv_drop_folder_sensor",
    description=(
        "Imports every CSV file saved in a workspace's drop folder"
        " (KPI_CSV_DROP_DIR/<workspace>/, or a subfolder named after a csv_upload connection)."
    ),
    job=csv_upload_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def csv_drop_folder_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.SensorResult | dg.SkipReason:
    root = settings.csv_drop_dir()
    files = find_dropped_files(root, workspace_ids(warehouse.get()))
    if not files:
        return dg.SkipReason(f"no CSV files waiting under {root}")
    requests = []
    for dropped in files:
        config: dict[str, object] = {"path": str(dropped.path), "archive": True}
        if dropped.connection:
            config["connection"] = dropped.connection
        requests.append(
            dg.RunRequest(
                run_key=dropped.run_key,
                partition_key=dropped.workspace_id,
                run_config={"ops": {"csv_upload__kpi_data": {"config": config}}},
                tags={"kpi/csv_file": dropped.path.name},
            )
        )
    return dg.SensorResult(run_requests=requests)

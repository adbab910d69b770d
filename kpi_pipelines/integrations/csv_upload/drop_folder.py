"""Per-workspace drop folders: a CSV saved in `KPI_CSV_DROP_DIR/<workspace>/` is imported.

The sensor requests one run per new or changed file (its run key is the file's folder,
name, size and modification time, so an unchanged file is never imported twice). The run
moves the file to `imported/` when it succeeds, or to `rejected/` beside a `.errors.txt`
that says why, so the folder shows at a glance what is left to do. A subfolder named after
a connection routes files to that connection when a workspace has several.

Only regular files saved in the workspace's own folder are imported. The folder's owner
(a tenant) controls what is in it, so nothing in it is trusted: entries are listed with
`lstat` semantics; a symbolic link (to a file or a folder), a FIFO, a socket, a device or
a file with other hard links is never a candidate and never read, but moved as it is (the
link itself, never its target) to `rejected/` with a note saying why. Folders are opened
one level at a time without following links (`files.open_folder`), so neither the
listing nor the moves can be led into another workspace's folder or anywhere else.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from kpi_pipelines import settings
from kpi_pipelines.automation.partitions import missing_partitions, provider_partitions
from kpi_pipelines.automation.pools import connection_tags
from kpi_pipelines.integrations.csv_upload.files import FolderRefused, entry_kind, open_folder
from kpi_pipelines.integrations.shared.rejection_reports import prune_reports
from kpi_pipelines.integrations.shared.spec import ProviderSpec, provider_sensor
from kpi_pipelines.resources import WarehouseResource
from kpi_pipelines.warehouse.control import workspace_ids

IMPORTED = "imported"
REJECTED = "rejected"
OUTCOMES = (IMPORTED, REJECTED)
# A file still being written changes size or mtime: wait until it has been quiet this long.
SETTLE_SECONDS = 2.0
ONLY_REGULAR_FILES = "only regular files saved in the folder are imported"


class DropFolderError(ValueError):
    """A drop-folder run names a file that is not waiting in the workspace's own folder."""


@dataclass(frozen=True)
class DroppedFile:
    """A regular file waiting in `root/<workspace>/` or `root/<workspace>/<connection>/`."""

    root: Path
    workspace_id: str
    connection: str | None
    name: str
    size: int = 0  # as listed (lstat), for the run key
    mtime_ns: int = 0

    @property
    def folders(self) -> tuple[str, ...]:
        """The folders under `root` that hold the file."""
        if self.connection is None:
            return (self.workspace_id,)
        return (self.workspace_id, self.connection)

    @property
    def path(self) -> Path:
        return self.root.joinpath(*self.folders, self.name)

    @property
    def run_key(self) -> str:
        where = f"{self.connection}/{self.name}" if self.connection else self.name
        return f"{self.workspace_id}:{where}:{self.size}:{self.mtime_ns}"


@dataclass
class DropScan:
    """What one look at the drop folders found: files to import, and entries refused."""

    files: list[DroppedFile] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # one sentence per refused entry


def find_dropped_files(root: Path, workspaces: list[str], *, now: float | None = None) -> DropScan:
    """The settled CSV files of every workspace's folder; refused entries are moved aside."""
    now = time.time() if now is None else now
    scan = DropScan()
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()  # the operator's setting may go through links; tenants' folders may not
    for workspace_id in workspaces:
        folder = root / workspace_id
        if not os.path.lexists(folder):
            folder.mkdir()
        if os.path.realpath(folder) != str(folder):
            # Its owner pointed it elsewhere: nothing under it is read or moved.
            kind = entry_kind(os.lstat(folder).st_mode)
            scan.refused.append(
                f"{folder} is {kind}, not a folder: the drop folder of workspace"
                f" {workspace_id!r} must be a real folder; nothing in it is imported"
            )
            continue
        try:
            _scan_folder(root, (workspace_id,), now, scan)
        except (FolderRefused, FileNotFoundError) as exc:  # swapped while we looked
            scan.refused.append(f"{exc}; nothing in it was imported")
    return scan


def _scan_folder(root: Path, folders: tuple[str, ...], now: float, scan: DropScan) -> None:
    workspace_id, connection = folders[0], (folders[1] if len(folders) > 1 else None)
    path = root.joinpath(*folders)
    subfolders = []
    with open_folder(root, folders) as fd:
        for entry in sorted(os.scandir(fd), key=lambda e: e.name):
            info = entry.stat(follow_symlinks=False)
            name, mode = entry.name, info.st_mode
            if name in OUTCOMES:
                if not stat.S_ISDIR(mode):
                    with _OutcomeFolder(fd, path, name):  # moves the impostor to rejected/
                        pass
                    scan.refused.append(
                        f"{path / name} was {entry_kind(mode)}, not a folder; moved to"
                        f" {path / REJECTED}"
                    )
                continue
            if stat.S_ISLNK(mode):
                reason = f"is {entry_kind(mode)}; {ONLY_REGULAR_FILES}"
            elif stat.S_ISDIR(mode):
                if connection is None:  # one level of connection subfolders, no deeper
                    subfolders.append(name)
                continue
            elif not name.endswith(".csv"):
                continue  # notes, hidden files: left alone
            elif not stat.S_ISREG(mode):
                reason = f"is {entry_kind(mode)}; {ONLY_REGULAR_FILES}"
            elif info.st_nlink > 1:
                reason = (
                    f"has {info.st_nlink} hard links (other names for the same file elsewhere);"
                    f" {ONLY_REGULAR_FILES}: save a copy instead"
                )
            else:
                if now - info.st_mtime >= SETTLE_SECONDS:
                    scan.files.append(
                        DroppedFile(
                            root, workspace_id, connection, name, info.st_size, info.st_mtime_ns
                        )
                    )
                continue
            _move(fd, path, name, REJECTED, errors=f"{name} {reason}")
            scan.refused.append(f"{path / name} {reason}; moved to {path / REJECTED}")
    for name in subfolders:
        _scan_folder(root, (*folders, name), now, scan)


def dropped_file(path: Path, workspace_id: str) -> DroppedFile:
    """The drop-folder file a run for `workspace_id` was asked to import.

    Refuses (`DropFolderError`) a path that is not a file directly inside the workspace's
    own folder or one of its connection subfolders, or that is reached through a link.
    """
    root = settings.csv_drop_dir()
    own = root / workspace_id
    if not path.is_absolute() or os.path.realpath(path) != str(path):
        raise DropFolderError(
            f"{path.name} is not a file saved in the drop folder of workspace {workspace_id!r}"
            f" ({own}): the path {path} is a symbolic link, goes through one, or is not"
            f" absolute and normalized; {ONLY_REGULAR_FILES}"
        )
    try:
        parts = path.relative_to(own).parts
    except ValueError:
        raise DropFolderError(
            f"{path.name} is not in the drop folder of workspace {workspace_id!r} ({own}):"
            f" a drop-folder run imports only files saved in its own workspace's folder"
            f" (the run names {path})"
        ) from None
    if len(parts) == 1:
        return DroppedFile(root, workspace_id, None, parts[0])
    if len(parts) == 2 and parts[0] not in OUTCOMES:
        return DroppedFile(root, workspace_id, parts[0], parts[1])
    raise DropFolderError(
        f"{path.name} is not waiting in the drop folder of workspace {workspace_id!r} ({own}):"
        " only files saved in the folder or in a connection subfolder are imported"
    )


def confined_elsewhere(path: Path, workspace_id: str) -> bool:
    """Whether `path` (wherever its links lead) is in another workspace's drop folder."""
    root = settings.csv_drop_dir()
    real = Path(os.path.realpath(path))
    return real.is_relative_to(root) and not real.is_relative_to(root / workspace_id)


def archive(
    dropped: DroppedFile, outcome: str, errors: str | None = None, report: Path | None = None
) -> Path:
    """Move an imported or rejected file out of the drop folder (with its errors, if any).

    `errors` is written to `<archived name>.errors.txt`, followed by the content of
    `report` (a rejected table's bounded report); notes older than the retention are
    removed from that folder then. Returns where the file went.
    """
    folder = dropped.root.joinpath(*dropped.folders)
    with open_folder(dropped.root, dropped.folders) as fd:
        return _move(fd, folder, dropped.name, outcome, errors=errors, report=report)


def errors_file(archived: Path) -> Path:
    """The note written beside an archived file."""
    return archived.with_name(archived.name + ".errors.txt")


def _move(
    folder_fd: int,
    folder: Path,
    name: str,
    outcome: str,
    *,
    errors: str | None = None,
    report: Path | None = None,
) -> Path:
    """Rename `name` (the entry itself: a link is not followed) into `folder/outcome/`."""
    with _OutcomeFolder(folder_fd, folder, outcome) as target_fd:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = _free_name(target_fd, f"{stamp}-{name}")
        os.rename(name, target, src_dir_fd=folder_fd, dst_dir_fd=target_fd)
        archived = folder / outcome / target
        if errors is not None:
            note = os.open(
                errors_file(archived).name,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o666,
                dir_fd=target_fd,
            )
            with os.fdopen(note, "w", encoding="utf-8") as handle:
                handle.write(errors + "\n")
                if report is not None:
                    handle.write("\n")
                    with report.open(encoding="utf-8") as listed:
                        shutil.copyfileobj(listed, handle)
            prune_reports(target_fd)  # the retention, for the notes we write here
        return archived


class _OutcomeFolder:
    """`folder/outcome/` as a real folder: an impostor (a link, a file) is moved aside first."""

    def __init__(self, folder_fd: int, folder: Path, outcome: str) -> None:
        self.folder_fd, self.folder, self.outcome = folder_fd, folder, outcome

    def __enter__(self) -> int:
        for _ in range(3):  # a tenant racing us gets a few tries, then an error
            with contextlib.suppress(FileExistsError):
                os.mkdir(self.outcome, 0o777, dir_fd=self.folder_fd)
            try:
                self.fd = os.open(
                    self.outcome,
                    os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                    dir_fd=self.folder_fd,
                )
                return self.fd
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
            self._move_impostor()
        raise FolderRefused(self.folder / self.outcome, "not a folder")

    def _move_impostor(self) -> None:
        kind = entry_kind(os.lstat(self.outcome, dir_fd=self.folder_fd).st_mode)
        aside = _free_name(self.folder_fd, f".{self.outcome}-refused-{time.time_ns()}")
        os.rename(self.outcome, aside, src_dir_fd=self.folder_fd, dst_dir_fd=self.folder_fd)
        _move(
            self.folder_fd,
            self.folder,
            aside,
            REJECTED,
            errors=f"{self.outcome} is {kind}; {self.outcome}/ must be a real folder and was"
            " moved here (renamed) so that it is one again",
        )

    def __exit__(self, *exc_info: object) -> None:
        os.close(self.fd)


def _free_name(folder_fd: int, name: str) -> str:
    """`name`, or `name` with a counter, such that neither it nor its note exists yet."""
    stem, dot, suffix = name.partition(".")
    candidate, counter = name, 1
    while _exists(folder_fd, candidate) or _exists(folder_fd, candidate + ".errors.txt"):
        counter += 1
        candidate = f"{stem}-{counter}{dot}{suffix}"
    return candidate


def _exists(folder_fd: int, name: str) -> bool:
    try:
        os.lstat(name, dir_fd=folder_fd)
    except FileNotFoundError:
        return False
    return True


def drop_folder_sensor(
    spec: ProviderSpec, job: dg.UnresolvedAssetJobDefinition
) -> dg.SensorDefinition:
    """The sensor that imports every CSV file saved in a workspace's drop folder."""

    @provider_sensor(
        name="csv_drop_folder_sensor",
        description=(
            "Imports every CSV file saved in a workspace's drop folder"
            " (KPI_CSV_DROP_DIR/<workspace>/, or a subfolder named after a csv_upload"
            " connection). Links, FIFOs and other entries that are not regular files are moved"
            " to rejected/."
        ),
        job=job,
    )
    def csv_drop_folder_sensor(
        context: dg.SensorEvaluationContext, warehouse: WarehouseResource
    ) -> dg.SensorResult | dg.SkipReason:
        root = settings.csv_drop_dir()
        scan = find_dropped_files(root, workspace_ids(warehouse.get()))
        for refusal in scan.refused:
            context.log.warning(refusal)
        if not scan.files:
            return dg.SkipReason(f"no CSV files waiting under {root}")
        requests = []
        for dropped in scan.files:
            config: dict[str, object] = {"path": str(dropped.path), "archive": True}
            if dropped.connection:
                config["connection"] = dropped.connection
            requests.append(
                dg.RunRequest(
                    run_key=dropped.run_key,
                    partition_key=dropped.workspace_id,
                    run_config={"ops": {spec.name: {"config": config}}},
                    tags={
                        "kpi/csv_file": dropped.name,
                        **connection_tags(dropped.workspace_id, spec.key),
                    },
                )
            )
        # a workspace whose connection the partition sensor has not seen yet: its partition
        # comes in the same result (its run fails, naming the command, when it has none)
        return dg.SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=missing_partitions(
                context.instance,
                provider_partitions(spec.key),
                [dropped.workspace_id for dropped in scan.files],
            ),
        )

    return csv_drop_folder_sensor

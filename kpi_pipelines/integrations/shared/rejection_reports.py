"""Rejection reports: what a data engineer reads to fix a rejected table, bounded.

A table's errors are tenant input multiplied: a 5 MB file of one-character lines has
millions of bad rows. So a report lists the first `MAX_REPORTED_ROWS` invalid rows in full
(line numbers and every reason), then counts the other rows' errors by reason (at most
`MAX_REASONS` reasons, the rest as one), each line cut at `MAX_LINE_BYTES`: a report never
exceeds `MAX_REPORT_BYTES` (1 MiB) whatever the table, and says how many rows it leaves
out. It is written as errors are found (constant memory).

Reports are kept `KPI_REJECTION_RETENTION_DAYS` days and at most `KPI_REJECTION_MAX_REPORTS`
per folder (a workspace's folder under KPI_HOME/rejections/, or a drop folder's rejected/):
`prune_reports` removes the older ones whenever a new report is written.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol, TextIO

from kpi_pipelines import settings

REPORT_SUFFIX = ".errors.txt"
MAX_REPORTED_ROWS = 1000  # invalid rows listed in full, with every one of their errors
MAX_REASONS = 100  # distinct reasons counted; any further ones are counted together
MAX_LINE_BYTES = 300  # one line of a report (an error, a reason), newline included
MAX_REPORT_BYTES = 1024 * 1024
# What the title and the closing summary may take; the listed rows get the rest.
_FRAME_BYTES = 4 * MAX_LINE_BYTES
_LISTED_BYTES = MAX_REPORT_BYTES - _FRAME_BYTES - (MAX_REASONS + 1) * MAX_LINE_BYTES
OTHER_REASONS = "other reasons"


class ReportedError(Protocol):
    """One error of a row: its line, its full text, and its reason without the tenant's
    text (what errors are counted by)."""

    line: int

    @property
    def category(self) -> str: ...


def bounded_line(text: str, limit: int = MAX_LINE_BYTES) -> str:
    """`text` as one report line of at most `limit` bytes (newline included)."""
    text = text.replace("\n", " ")
    encoded = text.encode("utf-8")
    if len(encoded) < limit:
        return text + "\n"
    cut = encoded[: limit - 5].decode("utf-8", errors="ignore")
    return cut + " ...\n"


class ErrorReport:
    """The errors of one table as they are found: the first `shown` in memory (for the
    message), the first rows in full and counts by reason in a file.

    The file is started only when there are more errors than the message shows; it is
    written under a temporary name in the report's folder (or the system's temporary folder
    when `path` is None) and renamed to `path` by `finish`, or removed by `discard`.
    """

    def __init__(self, source: str, path: Path | None, *, shown: int) -> None:
        self.source = source
        self.path = path
        self.shown = shown
        self.first: list[ReportedError] = []
        self.bad_rows = 0
        self.count = 0
        self.listed_rows = 0
        self._listed_bytes = 0
        self._left_out_rows = 0
        self._left_out_errors = 0
        self._reasons: dict[str, int] = {}
        # The rows before the file starts (at most `shown`): the first ones it lists.
        self._rows_in_memory: list[list[ReportedError]] = []
        self._temp: Path | None = None
        self._file: TextIO | None = None

    def add(self, errors: list[ReportedError]) -> None:
        """The errors of one bad row."""
        self.bad_rows += 1
        self.count += len(errors)
        if self._file is None:
            self.first.extend(errors[: self.shown - len(self.first)])
            self._rows_in_memory.append(errors)
            if self.count <= self.shown:
                return
            self._start()  # lists the rows so far, this one included
            return
        self._write_row(errors)

    def _write_row(self, errors: list[ReportedError]) -> None:
        assert self._file is not None
        lines = [bounded_line(str(error)) for error in errors]
        size = sum(len(line.encode("utf-8")) for line in lines)
        if self.listed_rows < MAX_REPORTED_ROWS and self._listed_bytes + size <= _LISTED_BYTES:
            self._file.writelines(lines)
            self.listed_rows += 1
            self._listed_bytes += size
            return
        self._left_out_rows += 1
        self._left_out_errors += len(errors)
        for error in errors:
            reason = error.category
            if reason not in self._reasons and len(self._reasons) >= MAX_REASONS:
                reason = OTHER_REASONS
            self._reasons[reason] = self._reasons.get(reason, 0) + 1

    def _start(self) -> None:
        if self.path is None:  # a file of its own in the system's temporary folder
            fd, temp = _temp_file(None, f"kpi-rejected-{safe_name(self.source)}-")
            self.path = Path(temp)
        else:
            private_folder(self.path.parent)
            fd, temp = _temp_file(self.path.parent, f".{self.path.name}.")
        self._temp = Path(temp)
        self._file = os.fdopen(fd, "w", encoding="utf-8", newline="\n")
        self._file.write(
            bounded_line(
                f"Errors in {self.source}, line numbers as in the table: up to"
                f" {MAX_REPORTED_ROWS} invalid rows with every error, then a summary that"
                " counts the rows left out by reason"
            )
        )
        for errors in self._rows_in_memory:
            self._write_row(errors)
        self._rows_in_memory = []

    def finish(self) -> Path | None:
        """Close the report with its summary and put it in place; its path, or None when
        there were too few errors to need one."""
        if self._file is None:
            return None
        assert self._temp is not None and self.path is not None
        self._file.write(bounded_line(self._summary()))
        other = self._reasons.pop(OTHER_REASONS, 0)
        counted = sorted(self._reasons.items(), key=lambda item: -item[1])
        for reason, count in [*counted, *([(OTHER_REASONS, other)] if other else [])]:
            self._file.write(bounded_line(f"{count:>10}  {reason}"))
        self._file.close()
        self._file = None
        if self._temp != self.path:
            os.replace(self._temp, self.path)
        self._temp = None
        return self.path

    def _summary(self) -> str:
        total = f"{self.bad_rows} invalid row(s) ({self.count} errors) in all"
        if not self._left_out_rows:
            return f"{self.source}: {total}, every one listed above."
        return (
            f"{self.source}: {total}; {self._left_out_rows} row(s) ({self._left_out_errors}"
            f" errors) after the first {self.listed_rows} are left out. Their errors by reason:"
        )

    def discard(self) -> None:
        """Remove what a pass that did not finish wrote."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._temp is not None:
            self._temp.unlink(missing_ok=True)
            self._temp = None


def _temp_file(folder: Path | None, prefix: str) -> tuple[int, str]:
    return tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".tmp" if folder else REPORT_SUFFIX)


def safe_name(text: str) -> str:
    """`text` as one harmless file name part (the names come from tenants)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", text).lstrip("._-")[:80]
    return safe or "table"


def private_folder(folder: Path) -> None:
    """Create `folder` and its missing parents readable by this user only (0700)."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir(mode=0o700, exist_ok=True)


def rejections_root() -> Path:
    return settings.kpi_home() / "rejections"


def rejection_report_path(workspace_id: str, run_id: str, name: str) -> Path:
    """Where a rejected table's report goes when it has no better place:
    `KPI_HOME/rejections/<workspace>/<run id>-<name>.errors.txt` (names made safe)."""
    return (
        rejections_root()
        / safe_name(workspace_id)
        / f"{safe_name(run_id)}-{safe_name(name)}{REPORT_SUFFIX}"
    )


def prune_rejection_reports() -> int:
    """Apply the retention to every workspace's folder under KPI_HOME/rejections/ (called
    when a report is written there); how many reports were removed."""
    root = rejections_root()
    try:
        folders = [entry.name for entry in os.scandir(root) if entry.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return 0
    return sum(prune_reports(root / name) for name in folders)


def prune_reports(folder: Path | int, *, now: float | None = None) -> int:
    """Remove the reports (`*.errors.txt`, regular files) in `folder` (a path, or an open
    folder's descriptor) older than KPI_REJECTION_RETENTION_DAYS, and the oldest beyond
    KPI_REJECTION_MAX_REPORTS; how many were removed. The folder may be a tenant's (a drop
    folder's rejected/): entries are removed by name in it, never through a link."""
    if isinstance(folder, int):
        return _prune(folder, now)
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    try:
        return _prune(fd, now)
    finally:
        os.close(fd)


def _prune(folder_fd: int, now: float | None) -> int:
    retention = settings.rejection_retention_days() * 86400
    oldest = (now if now is not None else time.time()) - retention
    keep = settings.rejection_max_reports()
    newest_first = sorted(_reports_in(folder_fd), reverse=True)
    doomed = [
        name for index, (mtime, name) in enumerate(newest_first) if index >= keep or mtime < oldest
    ]
    for name in doomed:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=folder_fd)
    return len(doomed)


def _reports_in(folder_fd: int) -> Iterable[tuple[float, str]]:
    with os.scandir(folder_fd) as entries:
        for entry in entries:
            if not entry.name.endswith(REPORT_SUFFIX):
                continue
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(info.st_mode):
                yield info.st_mtime, entry.name

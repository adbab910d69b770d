"""Opening a user's file: only a regular file, never through a link, the same file every time.

Every read of an uploaded CSV goes through `UserFile.open()`. It looks at the entry with
`lstat` first (so a FIFO, socket or device is never even opened), then opens it with
`O_NOFOLLOW | O_NONBLOCK` (a link swapped in after the look is refused, and a FIFO cannot
block the run), `fstat`s the descriptor and refuses anything but a regular file with one
link. Later opens must find the same file (device and inode) with the same size and
modification time: a file replaced or edited between passes is refused.

With an `anchor` (the drop folders' root), every folder between the anchor and the file is
opened with `O_NOFOLLOW | O_DIRECTORY` as well, so a folder swapped for a link cannot lead
the read outside the workspace's folder. Error messages say what the entry is and where;
they never quote its content.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from kpi_pipelines.integrations.shared.tabular import TableFormatError

__all__ = ["CsvFileError", "FolderRefused", "UserFile", "entry_kind", "open_folder"]

_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
LINKS_REFUSED = "links are never followed; import the file itself"


class CsvFileError(TableFormatError):
    """The file cannot be read as a CSV table; the message names the file and what to fix."""


class FolderRefused(OSError):
    """A folder on the way to a file is a link or not a folder (`kind` says what it is)."""

    def __init__(self, path: Path, kind: str) -> None:
        super().__init__(f"{path} is {kind}")
        self.path = path
        self.kind = kind


def entry_kind(mode: int) -> str:
    """What a directory entry is, for messages ("a symbolic link", "a named pipe (FIFO)")."""
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISREG(mode):
        return "a regular file"
    return "not a regular file"


@contextlib.contextmanager
def open_folder(anchor: Path, parts: Sequence[str]) -> Iterator[int]:
    """A descriptor of `anchor/parts...`, every part opened without following a link.

    The anchor itself is trusted (an operator setting). Raises `FolderRefused` when a part
    is a link or not a folder, `FileNotFoundError` when it does not exist.
    """
    fd = os.open(anchor, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        path = anchor
        for part in parts:
            path = path / part
            try:
                child = os.open(part, _FOLDER_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                kind = entry_kind(os.lstat(part, dir_fd=fd).st_mode)
                raise FolderRefused(path, kind) from None
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


class UserFile:
    """A user's file that is read several times, each time checked to be the same file."""

    def __init__(self, path: Path, source: str, *, anchor: Path | None = None) -> None:
        self.path = Path(path)
        self.source = source
        self.anchor = anchor
        self._folders: tuple[str, ...] = ()
        if anchor is not None:
            relative = self.path.relative_to(anchor)  # the caller checked it is inside
            self._folders = relative.parts[:-1]
        self._first: os.stat_result | None = None

    @property
    def size(self) -> int:
        """Its size in bytes when it was first opened."""
        assert self._first is not None, "open() first"
        return self._first.st_size

    @contextlib.contextmanager
    def open(self) -> Iterator[BinaryIO]:
        """The file's bytes, checked unchanged again when the block ends without error."""
        handle = self._open()
        with handle:
            yield handle
            self._check_same(os.fstat(handle.fileno()))

    @contextlib.contextmanager
    def open_text(self) -> Iterator[io.TextIOWrapper]:
        """The file as UTF-8 text (BOM dropped, newlines kept for the csv module)."""
        with self.open() as binary:
            text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
            try:
                yield text
            finally:
                text.detach()  # `open()` closes the file and checks it

    def _open(self) -> BinaryIO:
        with self._parent() as dir_fd:
            name = self.path.name if dir_fd is not None else str(self.path)
            try:
                seen = os.lstat(name, dir_fd=dir_fd)
            except FileNotFoundError:
                raise self._error(f"was not found (looked for {self.path})") from None
            except OSError as exc:
                raise self._error(f"cannot be read: {exc.strerror or exc}") from None
            self._check_kind(seen)  # before opening: a FIFO or device is never opened
            try:
                fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
            except OSError as exc:
                raise self._open_error(exc) from None
        try:
            info = os.fstat(fd)
            self._check_kind(info)
            if (info.st_dev, info.st_ino) != (seen.st_dev, seen.st_ino):
                raise self._replaced()
            if self._first is None:
                self._first = info
            else:
                self._check_same(info)
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    @contextlib.contextmanager
    def _parent(self) -> Iterator[int | None]:
        if self.anchor is None:
            yield None
            return
        try:
            with open_folder(self.anchor, self._folders) as fd:
                yield fd
        except FolderRefused as exc:
            raise self._error(
                f"is in {exc.path}, which is {exc.kind}, not a folder; {LINKS_REFUSED}"
            ) from None
        except FileNotFoundError:
            raise self._error(f"was not found (looked for {self.path})") from None

    def _check_kind(self, info: os.stat_result) -> None:
        if stat.S_ISLNK(info.st_mode):
            raise self._error(f"is a symbolic link ({self.path}); {LINKS_REFUSED}")
        if not stat.S_ISREG(info.st_mode):
            raise self._error(f"is not a file: it is {entry_kind(info.st_mode)} ({self.path})")
        if info.st_nlink > 1:
            # A hard link is another name for a file that may live anywhere on the disk.
            raise self._error(
                f"has {info.st_nlink} hard links (other names for the same file elsewhere);"
                " only a file saved on its own is imported: save a copy and import that"
            )

    def _check_same(self, info: os.stat_result) -> None:
        first = self._first
        assert first is not None
        if (info.st_dev, info.st_ino) != (first.st_dev, first.st_ino):
            raise self._replaced()
        if (info.st_size, info.st_mtime_ns) != (first.st_size, first.st_mtime_ns):
            raise self._error("changed while it was being read; import it again once it is saved")

    def _replaced(self) -> CsvFileError:
        return self._error(
            "was replaced by another file while it was being read; import it again once it is saved"
        )

    def _open_error(self, exc: OSError) -> CsvFileError:
        if exc.errno == errno.ELOOP:
            return self._error(f"is a symbolic link ({self.path}); {LINKS_REFUSED}")
        if exc.errno == errno.ENXIO:
            return self._error(f"is not a file: it is a socket ({self.path})")
        if exc.errno == errno.ENOENT:
            return self._error(f"was not found (looked for {self.path})")
        if exc.errno == errno.EACCES:
            return self._error(f"cannot be read: permission denied ({self.path})")
        return self._error(f"cannot be read: {exc.strerror or exc}")

    def _error(self, problem: str) -> CsvFileError:
        return CsvFileError(self.source, problem)

"""A user's file is read only as a regular file, never through a link, and never quoted."""

from __future__ import annotations

import os
import shutil
import socket
import threading
from pathlib import Path

import pytest

from kpi_pipelines.integrations.csv_upload.parsing import CsvFileError, read_csv
from kpi_pipelines.integrations.shared.tabular import TableFormatError, TabularMapping

LIMIT = 1024 * 1024
MAPPING = TabularMapping(date_column="date", value_column="value", metric="revenue")
GOOD = "date,value\n2024-01-01,1\n2024-01-02,2\n"
# What a host file's first line looks like: it must never reach a message.
HOST_SECRET = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"


def refusal(path: Path, **options: object) -> str:
    with pytest.raises(CsvFileError) as caught:
        read_csv(path, MAPPING, max_bytes=LIMIT, **options)
    return str(caught.value)


def test_a_link_to_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real.csv").write_text(GOOD)
    (tmp_path / "link.csv").symlink_to(tmp_path / "real.csv")
    assert refusal(tmp_path / "link.csv") == (
        f"link.csv is a symbolic link ({tmp_path / 'link.csv'}); links are never followed;"
        " import the file itself"
    )


def test_a_link_to_a_host_file_never_shows_its_content(tmp_path: Path) -> None:
    secret = tmp_path / "host" / "passwd"
    secret.parent.mkdir()
    secret.write_text(HOST_SECRET)
    (tmp_path / "upload.csv").symlink_to(secret)
    message = refusal(tmp_path / "upload.csv")
    assert "symbolic link" in message
    assert "x:0:0" not in message and "/bin/bash" not in message and "nologin" not in message


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    outcome: list[str] = []
    reader = threading.Thread(target=lambda: outcome.append(refusal(fifo)), daemon=True)
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():  # unblock the reader so that the process can end
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading a FIFO blocked")
    assert outcome == [f"pipe.csv is not a file: it is a named pipe (FIFO) ({fifo})"]


def test_sockets_and_devices_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        assert refusal(path) == f"s.csv is not a file: it is a socket ({path})"
    assert refusal(Path("/dev/zero")) == "zero is not a file: it is a device (/dev/zero)"


def test_a_hard_link_to_a_file_elsewhere_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere.csv").write_text(GOOD)
    os.link(tmp_path / "elsewhere.csv", tmp_path / "upload.csv")
    assert refusal(tmp_path / "upload.csv") == (
        "upload.csv has 2 hard links (other names for the same file elsewhere); only a file"
        " saved on its own is imported: save a copy and import that"
    )


def test_a_file_replaced_between_passes_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "upload.csv"
    path.write_text(GOOD)
    table = read_csv(path, MAPPING, max_bytes=LIMIT)
    # Same size and modification time, another file: only its identity tells.
    twin = tmp_path / "twin.csv"
    twin.write_text(GOOD.replace("1\n", "9\n"))
    info = path.stat()
    os.utime(twin, ns=(info.st_atime_ns, info.st_mtime_ns))
    os.replace(twin, path)
    with pytest.raises(CsvFileError, match="was replaced by another file while it was being read"):
        table.validate()


def test_a_link_swapped_in_between_passes_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "upload.csv"
    path.write_text(GOOD)
    table = read_csv(path, MAPPING, max_bytes=LIMIT)
    assert table.validate() == 2
    shutil.copy2(path, tmp_path / "copy.csv")
    path.unlink()
    path.symlink_to(tmp_path / "copy.csv")
    with pytest.raises(CsvFileError, match="is a symbolic link"):
        list(table.rows())


def test_a_folder_swapped_for_a_link_under_the_anchor_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "drop"
    own = root / "ws-a" / "finance"
    other = root / "ws-b" / "finance"
    own.mkdir(parents=True)
    other.mkdir(parents=True)
    (own / "q1.csv").write_text(GOOD)
    table = read_csv(own / "q1.csv", MAPPING, max_bytes=LIMIT, anchor=root)
    # The same file (same inode: moved, not copied) now reached through a linked folder.
    os.rename(own / "q1.csv", other / "q1.csv")
    own.rmdir()
    own.symlink_to(other)
    with pytest.raises(CsvFileError) as caught:
        table.validate()
    assert str(caught.value) == (
        f"q1.csv is in {own}, which is a symbolic link, not a folder; links are never"
        " followed; import the file itself"
    )


@pytest.mark.parametrize(
    "content",
    [
        b"SECRET-TOKEN,value\n2024-01-01,\xff\n",  # not UTF-8
        b"SECRET-TOKEN,value\n2024-01-01,\x00\n",  # a NUL byte
        b"PK\x03\x04SECRET-TOKEN",  # a workbook
        b"\xff\xfeS\x00E\x00C\x00R\x00E\x00T\x00",  # UTF-16
        b'date,value\n2024-01-01,"SECRET-TOKEN\n',  # an unclosed quote
    ],
)
def test_file_level_errors_say_where_but_quote_no_content(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "upload.csv"
    path.write_bytes(content)
    with pytest.raises(CsvFileError) as caught:
        read_csv(path, MAPPING, max_bytes=LIMIT).validate()
    assert "SECRET" not in str(caught.value)


def test_the_header_listed_in_a_mismatch_is_bounded(tmp_path: Path) -> None:
    names = [f"column {i} " + "x" * 200 for i in range(500)]
    path = tmp_path / "wide.csv"
    path.write_text(",".join(names) + "\n" + ",".join("1" * 500) + "\n")
    with pytest.raises(TableFormatError) as caught:
        read_csv(path, MAPPING, max_bytes=LIMIT)
    message = str(caught.value)
    assert len(message) < 2500, len(message)
    assert message.startswith("wide.csv is missing mapped columns 'date', 'value'; the header has:")
    assert "'column 0 xxx" in message and "and 480 more" in message
    assert "x" * 100 not in message


def test_a_duplicated_header_listing_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    names = [f"{i} " + "y" * 300 for i in range(200)] * 2  # 200 names, each twice
    path.write_text(",".join(["date", "value", *names]) + "\n")
    with pytest.raises(TableFormatError) as caught:
        read_csv(path, MAPPING, max_bytes=LIMIT)
    message = str(caught.value)
    assert len(message) < 2500, len(message)
    assert "names a column more than once in its header" in message

"""Reading a user's CSV file on top of the shared table rules in `integrations/shared/tabular.py`.

`read_csv` checks the file as a whole (a regular file, size, encoding, delimiter, header)
without holding it in memory; `CsvTable.validate()` then reads every row and reports every
error, and `CsvTable.rows()` re-reads the file to stream the rows for writing. Every one of
these opens goes through `files.UserFile`: never through a link, never a FIFO or device,
always the same unchanged file. Delimiter detection is linear in the sample it reads.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from kpi_pipelines.integrations.csv_upload.files import CsvFileError, UserFile
from kpi_pipelines.integrations.shared.tabular import (
    TableFormatError,
    TabularMapping,
    TabularRow,
    parse_table,
    validate_table,
)

__all__ = ["CANDIDATE_DELIMITERS", "CsvFileError", "CsvTable", "read_csv"]

CANDIDATE_DELIMITERS = (",", ";", "\t", "|")
_DELIMITER_NAMES = {",": "comma ','", ";": "semicolon ';'", "\t": "tab", "|": "pipe '|'"}
_CHUNK_BYTES = 1 << 20
_SNIFF_CHARS = 64 * 1024
_DETECTION_RECORDS = 20  # records of the sample compared for a consistent field count
_BOMS = (  # longest first: the UTF-32 LE mark starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)
_SAVE_AS_UTF8 = "save it as UTF-8 (in Excel: Save As > 'CSV UTF-8 (Comma delimited)')"


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MB"
    if n >= 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n} bytes"


class CsvTable:
    """A CSV file whose encoding, delimiter and header have been checked.

    `validate()` reads every row and raises `TableRejected` listing every invalid row;
    `rows()` streams the rows for writing (validating first if that has not been done).
    Each pass re-reads the file, so memory does not grow with its size.
    """

    def __init__(
        self,
        file: UserFile,
        mapping: TabularMapping,
        *,
        delimiter: str,
        header: list[str],
        header_line: int,
    ) -> None:
        self.file = file  # as first opened: a later change or swap is refused
        self.path = file.path
        self.name = file.path.name
        self.mapping = mapping
        self.source = file.source
        self.delimiter = delimiter
        self.header = header
        self.header_line = header_line
        self.size_bytes = file.size
        self._validated: int | None = None

    def validate(self, report: Path | None = None) -> int:
        """Check every row; return the number of data rows or raise `TableRejected`.

        `report`: where the bounded report goes when there are more errors than the
        message shows (see `validate_table`).
        """
        with self._data_records() as records:
            count = validate_table(
                self.header, records, self.mapping, source=self.source, report=report
            )
        self._validated = count
        return count

    def rows(self) -> Iterator[TabularRow]:
        """Stream the valid rows; raises before the first row if any row is invalid."""
        if self._validated is None:
            self.validate()
        return self._stream()

    def _stream(self) -> Iterator[TabularRow]:
        with self._data_records() as records:
            yield from parse_table(self.header, records, self.mapping, source=self.source)

    @contextlib.contextmanager
    def _data_records(self) -> Iterator[Iterator[tuple[int, list[str]]]]:
        """The records after the header, for one pass over an unchanged file."""
        with self.file.open_text() as handle:
            records = _records(handle, self.delimiter, self.source)
            header = next(((line, cells) for line, cells in records if _has_content(cells)), None)
            if header != (self.header_line, self.header):
                raise CsvFileError(
                    self.source, "changed while it was being read; import it again once it is saved"
                )
            yield records


def _has_content(cells: list[str]) -> bool:
    return any(cell.strip() for cell in cells)


def _records(handle: io.TextIOBase, delimiter: str, source: str) -> Iterator[tuple[int, list[str]]]:
    """(first physical line of the record, cells), with CSV syntax errors explained."""
    reader = csv.reader(handle, delimiter=delimiter, skipinitialspace=True, strict=True)
    end = 0
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise CsvFileError(source, _csv_problem(exc, end + 1, reader.line_num)) from None
        start, end = end + 1, reader.line_num
        yield start, record


def _csv_problem(exc: csv.Error, start: int, line: int) -> str:
    message = str(exc)
    if "unexpected end of data" in message:
        return f"has a quoted field starting on line {start} that is never closed (a missing '\"')"
    if "expected after" in message:
        return (
            f"has a stray quote on line {line} ({message}); inside a quoted field write a quote "
            'as two quotes ""'
        )
    if "field larger than field limit" in message:
        return (
            f"has a field of more than {csv.field_size_limit()} characters starting on line "
            f"{start} (an unclosed quote?)"
        )
    return f"is not valid CSV on line {line}: {message}"


def read_csv(
    path: Path,
    mapping: TabularMapping,
    *,
    max_bytes: int,
    delimiter: str | None = None,
    source: str | None = None,
    anchor: Path | None = None,
) -> CsvTable:
    """Open a user's CSV file and check everything but its rows.

    Raises `CsvFileError` when the file is missing, not a regular file (a link, a FIFO, a
    folder...), larger than `max_bytes`, empty, not UTF-8 or not valid CSV, and
    `TableFormatError` when its header does not fit the mapping. `delimiter` overrides
    detection among , ; TAB and |. `source` names the file in messages (default: its name).
    `anchor`: a trusted folder the file is inside; no folder between it and the file may
    be a link (see `files.UserFile`).
    """
    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be positive, got {max_bytes}")
    if delimiter is not None and (
        len(delimiter) != 1 or delimiter in '"\r\n ' or delimiter.isalnum()
    ):
        raise ValueError(
            f"delimiter {delimiter!r} is not usable; use one character such as ',', ';', "
            "'\\t' or '|'"
        )
    path = Path(path)
    source = source or path.name
    file = UserFile(path, source, anchor=anchor)
    with file.open() as binary:
        _check_size(file.size, source, max_bytes)
        _check_encoding(binary, source, max_bytes)
    with file.open_text() as handle:
        sample = handle.read(_SNIFF_CHARS)
        if handle.read(1):
            sample = sample[: sample.rfind("\n") + 1] or sample  # whole lines only
    chosen = delimiter or _detect_delimiter(sample, mapping)
    with file.open_text() as handle:
        records = _records(handle, chosen, source)
        first = next(((line, cells) for line, cells in records if _has_content(cells)), None)
    if first is None:
        raise CsvFileError(source, "is empty: it has no header row")
    header_line, header = first
    try:
        parse_table(header, (), mapping, source=source)  # checks the header eagerly
    except TableFormatError as exc:
        if delimiter is None:
            raise TableFormatError(
                source,
                f"{exc.problem} (columns were split on the {_DELIMITER_NAMES[chosen]}, "
                "detected; set the delimiter if the file uses another)",
            ) from None
        raise
    return CsvTable(file, mapping, delimiter=chosen, header=header, header_line=header_line)


def _check_size(size: int, source: str, max_bytes: int) -> None:
    if size > max_bytes:
        raise CsvFileError(
            source, f"is {_size(size)}; the limit is {_size(max_bytes)} (KPI_CSV_MAX_BYTES)"
        )
    if size == 0:
        raise CsvFileError(source, "is empty (0 bytes)")


def _check_encoding(handle: BinaryIO, source: str, max_bytes: int) -> None:
    """Fail unless the whole file is UTF-8 text (BOM optional) with something in it."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0  # bytes before the current chunk
    newlines = 0  # newlines before the current chunk
    has_content = False
    while chunk := handle.read(_CHUNK_BYTES):
        if offset == 0:
            _check_signature(chunk, source)
        pending = len(decoder.getstate()[0])
        try:
            text = decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            bad = offset - pending + exc.start
            line = newlines + chunk[: max(0, bad - offset)].count(b"\n") + 1
            byte = exc.object[exc.start]
            raise CsvFileError(source, _not_utf8(byte, bad, line)) from None
        nul = chunk.find(b"\0")
        if nul >= 0:
            line = newlines + chunk[:nul].count(b"\n") + 1
            raise CsvFileError(
                source,
                f"contains a NUL byte at byte offset {offset + nul} (line {line}): it is not "
                f"a text file, or UTF-16 without a byte order mark; {_SAVE_AS_UTF8}",
            )
        if offset == 0:
            text = text.removeprefix("\ufeff")
        has_content = has_content or bool(text.strip())
        newlines += chunk.count(b"\n")
        offset += len(chunk)
        if offset > max_bytes:  # it grew after the size check
            raise CsvFileError(
                source,
                f"is more than {_size(max_bytes)}, the limit (KPI_CSV_MAX_BYTES)",
            )
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        bad = offset - len(exc.object) + exc.start
        raise CsvFileError(source, _not_utf8(exc.object[exc.start], bad, newlines + 1)) from None
    if not has_content:
        raise CsvFileError(source, "is empty: it contains only whitespace")


def _check_signature(head: bytes, source: str) -> None:
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            raise CsvFileError(
                source,
                f"is {encoding} encoded (byte order mark {bom.hex(' ').upper()}); {_SAVE_AS_UTF8}",
            )
    if head.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):
        raise CsvFileError(
            source, "is a spreadsheet workbook (.xlsx/.xls), not a CSV file; export it as CSV UTF-8"
        )


def _not_utf8(byte: int, offset: int, line: int) -> str:
    guess = bytes([byte]).decode("cp1252", errors="replace")
    hint = f" (in Windows-1252/Latin-1 it would be {guess!r})" if guess != "\ufffd" else ""
    return (
        f"is not UTF-8: byte 0x{byte:02X} at byte offset {offset} (line {line}) is not valid "
        f"UTF-8{hint}; {_SAVE_AS_UTF8}"
    )


def _detect_delimiter(sample: str, mapping: TabularMapping) -> str:
    """Choose among , ; TAB |, in time linear in the sample.

    (`csv.Sniffer` is not: its quote-guessing regexes backtrack over the whole sample from
    every quote, and took about a minute on a 64 KB sample.) Prefer a delimiter that splits
    the header into cells holding every mapped column; then one that gives the first
    records of the sample one and the same number of fields, more than one (most fields
    first); then the one the header line holds most often; else the comma.
    """
    header_line = next((line for line in sample.splitlines() if line.strip()), "")
    # Stable sort: ties keep the order of CANDIDATE_DELIMITERS, the comma first.
    by_frequency = sorted(CANDIDATE_DELIMITERS, key=header_line.count, reverse=True)
    records = {candidate: _sample_records(sample, candidate) for candidate in by_frequency}
    widths = {candidate: {len(record) for record in records[candidate]} for candidate in records}
    consistent = sorted(
        (c for c in by_frequency if len(widths[c]) == 1 and min(widths[c]) > 1),
        key=lambda c: -min(widths[c]),
    )
    wanted = set(mapping.columns)
    for candidate in consistent + by_frequency:
        header = records[candidate][0] if records[candidate] else []
        if wanted <= {cell.strip() for cell in header}:
            return candidate
    if consistent:
        return consistent[0]
    return by_frequency[0] if header_line.count(by_frequency[0]) else ","


def _sample_records(sample: str, delimiter: str) -> list[list[str]]:
    """The first records with content that `delimiter` makes of the sample (one C pass)."""
    reader = csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter, skipinitialspace=True)
    records: list[list[str]] = []
    try:
        for record in reader:
            if _has_content(record):
                records.append(record)
                if len(records) == _DETECTION_RECORDS:
                    break
    except csv.Error:
        pass  # what was read before the error still counts
    return records

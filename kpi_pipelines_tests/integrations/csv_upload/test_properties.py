"""CSV imports of generated files through the real adapter on the real PostgreSQL.

Every import either stores exactly the rows of the file (and changes nothing else), or is
rejected (row errors by line numbers that exist in the file, or a file-level reason) and
leaves kpi_data as it was, with no temporary file left behind. The adapter is called
directly with a `SyncContext`, as a run does, to keep each example fast.
"""

from __future__ import annotations

import csv
import datetime
import io
import re
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kpi_pipelines import settings as kpi_settings
from kpi_pipelines.integrations.csv_upload.adapter import CsvUploadAdapter
from kpi_pipelines.integrations.csv_upload.parsing import read_csv
from kpi_pipelines.integrations.shared.base_adapter import SyncContext
from kpi_pipelines.integrations.shared.tabular import (
    TableFormatError,
    TableRejected,
)
from kpi_pipelines.warehouse.control import Connection, Workspace, add_connection
from kpi_pipelines.warehouse.database import Warehouse
from kpi_pipelines.warehouse.tenant_data import read_points
from kpi_pipelines_tests.integrations.shared.test_tabular_properties import MAPPINGS

PROPERTIES = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # the importer keeps no state between examples
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
MAPPING = MAPPINGS["us"]  # the tabular properties' US-formatted table
HEADER = ["Date", "Metric", "Amount", "Region", "Plan", "Notes"]
Key = tuple[str, datetime.date, tuple[tuple[str, str], ...]]


@dataclass
class Importer:
    warehouse: Warehouse
    workspace: Workspace
    connection: Connection
    folder: Path

    def stored(self) -> dict[Key, float]:
        return {
            (p.metric, p.timestamp.date(), tuple(sorted(p.dimensions.items()))): p.value
            for p in read_points(self.warehouse, self.workspace.id, source="csv_upload")
        }

    def run(self, content: bytes) -> TableRejected | TableFormatError | None:
        """Import `content` as a file; the rejection, or None when it was imported."""
        path = self.folder / f"{uuid.uuid4().hex}.csv"
        path.write_bytes(content)
        context = SyncContext(
            warehouse=self.warehouse,
            workspace=self.workspace,
            connection=self.connection,
            run_id=uuid.uuid4().hex,
            options={"path": str(path)},
        )
        adapter = CsvUploadAdapter()
        try:
            adapter.connect(context)
            try:
                adapter.sync()
            finally:
                adapter.disconnect()
        except (TableRejected, TableFormatError) as rejection:  # CsvFileError is one too
            return rejection
        finally:
            path.unlink()
        return None

    def leftovers(self) -> list[Path]:
        """Temporary files an import left in the rejections folder."""
        folder = kpi_settings.kpi_home() / "rejections" / self.workspace.id
        return [p for p in folder.glob(".*")] if folder.exists() else []


@pytest.fixture
def importer(warehouse, workspace_a) -> Iterator[Importer]:
    connection = add_connection(
        warehouse,
        Connection(
            workspace_id="ws-a", provider="csv_upload", settings={"mapping": MAPPING.model_dump()}
        ),
    )
    with tempfile.TemporaryDirectory() as folder:
        yield Importer(warehouse, workspace_a, connection, Path(folder))


def line_breaks(text: str) -> int:
    """Physical line breaks as the csv module counts them (newline='' keeps \\r, \\n, \\r\\n)."""
    return len(re.findall(r"\r\n|\r|\n", text))


# --- files whose rows the generator knows ----------------------------------------------------

CELL_TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]))
DIMENSION = st.one_of(st.just(""), CELL_TEXT.map(lambda t: t[:12]))


def amount(cents: int, style: int) -> str:
    whole, fraction = divmod(abs(cents), 100)
    text = [f"{whole}.{fraction:02}", f"{whole:,}.{fraction:02}", f"${whole:,}.{fraction:02}"][
        style % 3
    ]
    if cents < 0:
        return f"({text})" if style >= 3 else f"-{text}"
    return text


@dataclass
class GeneratedFile:
    content: bytes
    expected: dict[Key, float]
    lines: list[int]  # the line each data row starts on
    total_lines: int


@st.composite
def known_file(draw) -> GeneratedFile:
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    header = draw(st.permutations(HEADER))
    keys = draw(
        st.lists(
            st.tuples(
                st.dates(datetime.date(1950, 1, 1), datetime.date(2100, 12, 31)),
                st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True),
                DIMENSION,
                DIMENSION,
            ),
            min_size=1,
            max_size=25,
            # As the file will hold them: stripped, and without \r in an LF file.
            unique_by=lambda k: (
                k[0],
                k[1],
                k[2].replace("\r", "").strip(),
                k[3].replace("\r", "").strip(),
            ),
        )
    )
    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=delimiter, lineterminator=newline, quoting=quoting)
    writer.writerow(header)
    expected: dict[Key, float] = {}
    lines = []
    for day, metric, region, plan in keys:
        if newline == "\n":  # csv.writer does not quote a lone \r then: keep LF files free of it
            region, plan = region.replace("\r", ""), plan.replace("\r", "")
        if draw(st.booleans()):
            out.write(newline)  # a blank line between rows is skipped
        cents, style = draw(st.integers(-(10**13), 10**13)), draw(st.integers(0, 5))
        cells = {
            "Date": day.isoformat() if style % 2 else day.strftime("%m/%d/%Y"),
            "Metric": metric,
            "Amount": amount(cents, style),
            "Region": region,
            "Plan": plan,
            "Notes": draw(CELL_TEXT.map(lambda t: t[:8])).replace("\r", ""),
        }
        lines.append(1 + line_breaks(out.getvalue()))
        writer.writerow([cells[column] for column in header])
        dimensions = {k: v.strip() for k, v in (("Region", region), ("Plan", plan)) if v.strip()}
        key = (metric, day, tuple(sorted(dimensions.items())))
        expected[key] = float(Decimal(cents).scaleb(-2)) + 0.0
    text = out.getvalue()
    bom = draw(st.sampled_from(["", "\ufeff"]))
    return GeneratedFile((bom + text).encode(), expected, lines, 1 + line_breaks(text))


@PROPERTIES
@given(known_file())
def test_a_valid_file_is_stored_exactly(importer: Importer, generated: GeneratedFile) -> None:
    before = importer.stored()
    assert importer.run(generated.content) is None
    assert importer.stored() == {**before, **generated.expected}
    assert importer.leftovers() == []


BROKEN_CELLS = {"Date": ["2024-13-01", "not a day", ""], "Amount": ["x", "", "=A1*2", "1e999"]}


@PROPERTIES
@given(known_file(), st.data())
def test_broken_rows_reject_the_file_by_their_lines(
    importer: Importer, generated: GeneratedFile, data
) -> None:
    # Rewrite chosen rows' date or amount as something never valid: the file is parsed
    # back with the csv module to find the cells, then written again the same way.
    text = generated.content.decode("utf-8-sig")
    dialect_delimiter = next(d for d in (",", ";", "\t", "|") if d in text.split("\n", 1)[0])
    newline = "\r\n" if "\r\n" in text else "\n"
    records = list(csv.reader(io.StringIO(text, newline=""), delimiter=dialect_delimiter))
    header, body = records[0], [r for r in records[1:] if r]
    broken = data.draw(st.sets(st.integers(0, len(body) - 1), min_size=1))
    for index in broken:
        column = data.draw(st.sampled_from(sorted(BROKEN_CELLS)))
        body[index][header.index(column)] = data.draw(st.sampled_from(BROKEN_CELLS[column]))
    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=dialect_delimiter, lineterminator=newline)
    writer.writerow(header)
    lines = []
    for row in body:
        lines.append(1 + line_breaks(out.getvalue()))
        writer.writerow(row)
    before = importer.stored()
    rejection = importer.run(out.getvalue().encode())
    assert isinstance(rejection, TableRejected), rejection
    assert rejection.bad_rows == len(broken)
    if rejection.report is None:
        reported = {error.line for error in rejection.errors}
    else:
        text = rejection.report.read_text(encoding="utf-8")
        listed = [line for line in text.splitlines() if line.startswith("line ")]
        reported = {int(re.match(r"line (\d+)", entry)[1]) for entry in listed}
    assert reported == {lines[index] for index in broken}
    assert importer.stored() == before
    assert importer.leftovers() == []


# --- arbitrary bytes ---------------------------------------------------------------------------


@st.composite
def mutated(draw) -> bytes:
    """A valid file with a few bytes inserted, deleted or replaced (or none)."""
    content = bytearray(draw(known_file()).content)
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(content)))
        kind = draw(st.sampled_from(["insert", "delete", "replace"]))
        byte = draw(
            st.sampled_from([b'"', b",", b";", b"\n", b"\r", b"\x00", b"\xff", b"\xc3", b"x", b" "])
        )
        if kind == "insert":
            content[at:at] = byte
        elif kind == "delete":
            del content[at : at + 1]
        else:
            content[at : at + 1] = byte
    return bytes(content)


ANY_BYTES = st.one_of(
    mutated(),
    st.binary(max_size=400),
    CELL_TEXT.map(str.encode),
    st.builds(
        lambda rows: ("Date,Metric,Amount,Region,Plan\n" + rows).encode(),
        st.text(alphabet=st.sampled_from('0123456789-/,.$()"\n\r abxé'), max_size=200),
    ),
)


@settings(PROPERTIES, max_examples=100)
@given(ANY_BYTES)
def test_any_bytes_are_stored_as_read_or_rejected_with_nothing_changed(
    importer: Importer, content: bytes
) -> None:
    # What the file holds when it can be read: the rows the parser gives, as they are.
    with tempfile.NamedTemporaryFile(dir=importer.folder, suffix=".csv") as handle:
        handle.write(content)
        handle.flush()
        try:
            table = read_csv(Path(handle.name), MAPPING, max_bytes=1 << 20)
            rows = list(table.rows())
        except (TableRejected, TableFormatError):
            rows = None
    before = importer.stored()
    rejection = importer.run(content)
    after = importer.stored()
    assert importer.leftovers() == []
    event("imported" if rejection is None else f"rejected: {type(rejection).__name__}")
    if rejection is None:
        assert rows is not None
        parsed = {
            (
                row.metric,
                row.day,
                tuple(sorted((k, v) for k, v in row.dimensions.items() if v)),
            ): row.value
            for row in rows
        }
        assert after == {**before, **parsed}
        return
    assert rows is None
    assert after == before
    assert len(str(rejection).encode()) < 8 * 1024
    if isinstance(rejection, TableRejected):
        last_line = 1 + line_breaks(content.decode("utf-8-sig"))
        assert all(1 <= error.line <= last_line for error in rejection.errors)

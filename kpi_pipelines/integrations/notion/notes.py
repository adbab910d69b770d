"""The notes beside each objective: the plain text of the objective's own page and of the
note pages its `notes` relation names, kept in the `notes` table for the dashboard.

The `notion_notes` asset runs after the Notion sync (downstream of it in the asset graph,
in its job and schedule, partitioned by workspace like it). It reads the pages the sync
landed, compares each page's last edited time with the note stored for it, and fetches the
body (`GET /v1/blocks/{id}/children`, paged, nested blocks followed) only of pages edited
since: a note is rewritten only when its page was edited, and a note whose objective left
(trashed, moved) or whose page is no longer related is removed. Notes are not KPIs.

The text: one line per block in reading order, nested blocks indented under their parent;
list items marked (`- `, `1. `), to-dos checked or not (`[x] `, `[ ] `), toggles and
headings as their text. A body is bounded (blocks, nesting depth, characters): past a
bound the text is cut and the run says so. Every block is checked by the record guard
(size, echoed secrets) before it is read: a page with a refused block keeps its last note.
Notes are written only through the owner's functions `kpi.save_notes()` and
`kpi.drop_notes()` (migration 0008), under forced row-level security.
"""

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import dagster as dg
import msgspec
import sqlalchemy as sa
from pydantic import ValidationError

from kpi_pipelines import settings
from kpi_pipelines.automation.partitions import no_workspace, provider_partitions
from kpi_pipelines.integrations.notion.metrics import NOTE_PAGES, OBJECTIVES, TEXT
from kpi_pipelines.integrations.notion.types import Block
from kpi_pipelines.integrations.shared.base_adapter import SyncContext
from kpi_pipelines.integrations.shared.bounds import RecordGuard
from kpi_pipelines.integrations.shared.own_assets import OwnAsset, materialize_each
from kpi_pipelines.integrations.shared.paging import (
    Page,
    PageRequest,
    PageToken,
    PagingError,
    items,
)
from kpi_pipelines.integrations.shared.redaction import RedactingLogger
from kpi_pipelines.integrations.shared.spec import ProviderSpec
from kpi_pipelines.integrations.shared.validation import Rejections, describe_validation, named
from kpi_pipelines.warehouse.control import UnknownWorkspace, get_connection, get_workspace
from kpi_pipelines.warehouse.database import Warehouse

NOTES_ASSET = "notion_notes"
MAX_BLOCKS = 5_000  # blocks read of one page's body
MAX_DEPTH = 8  # nesting levels followed
MAX_CHARS = 100_000  # characters of one note
MAX_TITLE_CHARS = 2_000
CUT = "\n[... cut: the page is longer than a note keeps]"
# Blocks whose children are other pages or databases: their content is not this page's.
_OWN_PAGES = frozenset({"child_page", "child_database", "link_to_page"})


@dataclass(frozen=True)
class WantedNote:
    page_id: str
    objective_id: str
    kind: str  # "objective" (its own page) or "note"
    title: str
    url: str | None
    last_edited_time: datetime


@dataclass
class NotesOutcome:
    pages_read: int = 0
    notes_written: int = 0
    notes_removed: int = 0
    notes_kept: int = 0
    cut: list[str] = field(default_factory=list)  # pages whose text was cut
    rejections: Rejections = field(default_factory=lambda: Rejections(50))

    def metadata(self) -> dict[str, Any]:
        return {
            "pages_read": self.pages_read,
            "notes_written": self.notes_written,
            "notes_removed": self.notes_removed,
            "notes_unchanged": self.notes_kept,
            "pages_cut": dg.MetadataValue.json(self.cut[:50]),
            "pages_rejected": self.rejections.count,
            "errors": dg.MetadataValue.json(self.rejections.errors),
        }


# -- the text of a page ---------------------------------------------------------------------


class PageText:
    """The plain text of one page's body, read block by block within the bounds."""

    def __init__(self, fetch: Any, guard: RecordGuard, page_size: int) -> None:
        self._fetch = fetch  # (block id, PageRequest) -> Page[bytes]
        self._guard = guard
        self._page_size = page_size
        self.blocks = 0
        self.chars = 0
        self.cut = False

    def read(self, page_id: str) -> str:
        lines: list[str] = []
        for line in self._lines(page_id, 0):
            if self.chars + len(line) + 1 > MAX_CHARS:
                lines.append(line[: max(0, MAX_CHARS - self.chars)])
                self.cut = True
                break
            lines.append(line)
            self.chars += len(line) + 1
        text = "\n".join(lines)
        return text + CUT if self.cut else text

    def _lines(self, block_id: str, depth: int) -> Iterator[str]:
        number = 0
        for block in self._children(block_id):
            number = number + 1 if block.type == "numbered_list_item" else 0
            line = _line(block, number)
            if line:
                yield "  " * depth + line
            if block.has_children and block.type not in _OWN_PAGES:
                if depth + 1 >= MAX_DEPTH:
                    self.cut = True
                    continue
                yield from self._lines(block.id, depth + 1)

    def _children(self, block_id: str) -> Iterator[Block]:
        def fetch(request: PageRequest) -> Page[bytes]:
            return self._fetch(block_id, request)

        for raw in items(PageToken("start_cursor"), fetch):
            self.blocks += 1
            if self.blocks > MAX_BLOCKS:
                self.cut = True
                return
            if problem := self._guard.problem(raw):
                raise _Refused(problem)
            try:
                yield Block.read(msgspec.json.decode(raw))
            except (ValidationError, ValueError, msgspec.DecodeError) as exc:
                reason = (
                    describe_validation(exc, limit=2)
                    if isinstance(exc, ValidationError)
                    else str(exc)
                )
                raise _Refused(f"a block that is not Notion's ({reason})") from None


class _Refused(ValueError):
    """A block the guard or validation refused: the page keeps its last note."""


def _line(block: Block, number: int) -> str:
    text = block.text.replace("\r", "").replace("\n", " ").strip()
    if block.type == "bulleted_list_item":
        return f"- {text}"
    if block.type == "numbered_list_item":
        return f"{number}. {text}"
    if block.type == "to_do":
        return f"[{'x' if block.content.checked else ' '}] {text}"
    return text


# -- syncing notes ---------------------------------------------------------------------------


def sync_notes(adapter: Any) -> NotesOutcome:
    """Bring the workspace's notes in line with its landed objectives and note pages
    (`adapter`: a connected NotionAdapter)."""
    context: SyncContext = adapter.context
    outcome = NotesOutcome()
    adapter.load_unreachable()
    wanted = _wanted(adapter)
    stored = _stored(context)
    stale: dict[str, list[WantedNote]] = {}
    for key, note in wanted.items():
        if stored.get(key) != note.last_edited_time:
            stale.setdefault(note.page_id, []).append(note)
        else:
            outcome.notes_kept += 1
    guard = RecordGuard(adapter.spec.limits.record())
    rows: list[tuple[WantedNote, str]] = []
    for page_id, notes in stale.items():
        reader = PageText(adapter.block_page, guard, adapter.page_size)
        try:
            text = reader.read(page_id)
        except _Refused as refused:
            outcome.rejections.add(f"page {named(page_id)}: {refused}")
            continue
        except PagingError as exc:
            outcome.rejections.add(f"page {named(page_id)}: its blocks {exc}")
            continue
        outcome.pages_read += 1
        if reader.cut:
            outcome.cut.append(page_id)
            context.log.warning(
                f"notion: the body of page {page_id} is past a note's bounds ({MAX_BLOCKS}"
                f" blocks, {MAX_DEPTH} levels, {MAX_CHARS} characters): its note is cut"
            )
        rows.extend((note, text) for note in notes)
    gone = [key for key in stored if key not in wanted]
    with context.warehouse.tenant(context.workspace.id, actor=context.actor) as db:
        outcome.notes_written = _save(db, rows)
        outcome.notes_removed = _drop(db, gone)
    return outcome


def _wanted(adapter: Any) -> dict[tuple[str, str], WantedNote]:
    """Each live objective's own page, and the live note pages it relates to."""
    context: SyncContext = adapter.context
    mapping = adapter.mapping
    live, params = adapter.live_filter(OBJECTIVES)
    title = TEXT.format(v="(p.payload->'properties'->CAST(:title AS text))")
    query = f"""
SELECT p.record_id, {title} AS title, p.payload->>'url' AS url,
       (p.payload->>'last_edited_time')::timestamptz AS edited,
       CASE WHEN CAST(:notes AS text) <> '' THEN ARRAY(
           SELECT r->>'id' FROM jsonb_array_elements(
               CASE WHEN jsonb_typeof(p.payload->'properties'->CAST(:notes AS text)->'relation')
                    = 'array' THEN p.payload->'properties'->CAST(:notes AS text)->'relation'
                    ELSE '[]'::jsonb END) AS r)
       ELSE ARRAY[]::text[] END AS related
FROM raw_records p WHERE {live}
"""
    wanted: dict[tuple[str, str], WantedNote] = {}
    with context.warehouse.tenant(context.workspace.id, actor=context.actor) as db:
        objectives = db.execute(
            sa.text(query), {**params, "title": mapping.title, "notes": mapping.notes or ""}
        ).all()
        notes: dict[str, Any] = {}
        if mapping.notes:
            note_live, note_params = adapter.live_filter(NOTE_PAGES)
            related = sorted({i for row in objectives for i in row.related or ()})
            notes = {
                row.record_id: row
                for row in db.execute(
                    sa.text(
                        "SELECT p.record_id, (SELECT " + TEXT.format(v="t.value") + " FROM"
                        " jsonb_each(p.payload->'properties') AS t WHERE t.value->>'type' ="
                        " 'title' LIMIT 1) AS title, p.payload->>'url' AS url,"
                        " (p.payload->>'last_edited_time')::timestamptz AS edited"
                        f" FROM raw_records p WHERE {note_live}"
                        " AND p.record_id = ANY(CAST(:related AS text[]))"
                    ),
                    {**note_params, "related": related},
                ).all()
            }
    for row in objectives:
        wanted[(row.record_id, row.record_id)] = WantedNote(
            row.record_id, row.record_id, "objective", _title(row.title), row.url, row.edited
        )
        for note_id in dict.fromkeys(_dashed(i) for i in row.related or ()):
            note = notes.get(note_id)
            if note is not None:
                wanted[(note_id, row.record_id)] = WantedNote(
                    note_id, row.record_id, "note", _title(note.title), note.url, note.edited
                )
    return wanted


def _stored(context: SyncContext) -> dict[tuple[str, str], datetime]:
    with context.warehouse.tenant(context.workspace.id, actor=context.actor) as db:
        rows = db.execute(
            sa.text(
                "SELECT page_id, objective_id, last_edited_time FROM notes WHERE source = 'notion'"
            )
        ).all()
    return {(r.page_id, r.objective_id): r.last_edited_time for r in rows}


def _save(db: sa.Connection, rows: Sequence[tuple[WantedNote, str]]) -> int:
    if not rows:
        return 0
    return int(
        db.execute(
            sa.text(
                "SELECT kpi.save_notes('notion', CAST(:pages AS text[]), CAST(:objectives AS"
                " text[]), CAST(:kinds AS text[]), CAST(:titles AS text[]), CAST(:texts AS"
                " text[]), CAST(:urls AS text[]), CAST(:edited AS timestamptz[]))"
            ),
            {
                "pages": [n.page_id for n, _ in rows],
                "objectives": [n.objective_id for n, _ in rows],
                "kinds": [n.kind for n, _ in rows],
                "titles": [n.title for n, _ in rows],
                "texts": [text for _, text in rows],
                "urls": [n.url for n, _ in rows],
                "edited": [n.last_edited_time for n, _ in rows],
            },
        ).scalar_one()
    )


def _drop(db: sa.Connection, keys: Sequence[tuple[str, str]]) -> int:
    if not keys:
        return 0
    return int(
        db.execute(
            sa.text(
                "SELECT kpi.drop_notes('notion', CAST(:pages AS text[]),"
                " CAST(:objectives AS text[]))"
            ),
            {"pages": [p for p, _ in keys], "objectives": [o for _, o in keys]},
        ).scalar_one()
    )


def _title(value: str | None) -> str:
    return (value or "")[:MAX_TITLE_CHARS]


def _dashed(page_id: str) -> str:
    raw = page_id.replace("-", "").lower()
    if len(raw) != 32:
        return page_id
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


# -- the asset --------------------------------------------------------------------------------


def notes_asset(spec: ProviderSpec) -> dg.AssetsDefinition:
    """`notion_notes`: downstream of the Notion sync, one partition per workspace."""
    with warnings.catch_warnings():
        # backfill_policy is beta in Dagster 1.13: the sync's own, so one run covers both
        warnings.simplefilter("ignore", dg.BetaWarning)
        return _notes_asset(spec)


def _notes_asset(spec: ProviderSpec) -> dg.AssetsDefinition:
    provider = spec.key

    @dg.asset(
        key=dg.AssetKey(NOTES_ASSET),
        deps=[spec.asset_key],
        description=(
            "The plain text of each objective's page and of the note pages related to it, in"
            " the notes table (rewritten only when a page was edited; not KPIs)."
        ),
        group_name=spec.group,
        kinds={"notion", "postgres"},
        owners=list(spec.owners),
        tags={"kpi/provider": provider, **spec.tags},
        partitions_def=provider_partitions(provider),
        output_required=False,
        backfill_policy=dg.BackfillPolicy.multi_run(
            settings.workspaces_per_run(spec.workspaces_per_run)
        ),
        required_resource_keys={"warehouse", provider},
        pool=spec.pool,
    )
    def notion_notes(context: dg.AssetExecutionContext) -> Iterator[dg.AssetMaterialization]:
        yield from materialize_each(
            NOTES,
            spec,
            getattr(context.resources, provider),
            context.resources.warehouse.get(),
            context.partition_keys,
            context,
            several=len(context.partition_keys) > 1,
        )

    return notion_notes


def _notes_of(
    spec: ProviderSpec,
    adapter: Any,
    warehouse: Warehouse,
    workspace_id: str,
    context: dg.AssetExecutionContext,
    several: bool,
) -> dict[str, Any] | None:
    """One workspace's notes: its materialization's metadata (None: no Notion connection,
    in a run over several workspaces)."""
    try:
        with warehouse.control() as db:
            workspace = get_workspace(db, workspace_id)
            connection = get_connection(db, workspace_id, spec.key)
    except UnknownWorkspace:
        raise LookupError(no_workspace(workspace_id)) from None
    except LookupError:
        if several:
            return None  # a range of workspaces holds some without Notion
        raise
    sync = SyncContext(
        warehouse=warehouse,
        workspace=workspace,
        connection=connection,
        run_id=context.run.run_id,
        log=RedactingLogger(context.log, prefix=f"{workspace_id}: " if several else ""),
    )
    adapter.connect(sync)
    try:
        return sync_notes(adapter).metadata()
    finally:
        adapter.disconnect()


NOTES = OwnAsset(key=NOTES_ASSET, build=notes_asset, materialize=_notes_of)

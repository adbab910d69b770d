"""A simulated Notion workspace: its users, databases and their data sources (each with a
property schema), pages with property values, and the blocks of each page.

Every change stamps the page's `last_edited_time` (and the block's) with the simulated
clock, rounded down to the minute as Notion rounds it, so that a client filtering on it
must read with an overlap. Trashing a page or restoring it is a change too. Formula and
rollup values are computed from the page's own values and its related pages, as Notion
computes them. Thread-safe: the server's thread reads while a test's thread edits.
"""

from __future__ import annotations

import hashlib
import string
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal
from urllib.parse import quote

from kpi_pipelines.sandbox.kit.clock import SimClock

PropertyType = Literal[
    "title",
    "rich_text",
    "number",
    "select",
    "status",
    "multi_select",
    "date",
    "people",
    "checkbox",
    "relation",
    "formula",
    "rollup",
    "url",
    "created_time",
    "last_edited_time",
]
FormulaResult = Literal["string", "number", "boolean", "date"]
# A date value: a day, or a day and time; with an end, a range.
DateValue = tuple[date | datetime, date | datetime | None]
BlockType = Literal[
    "paragraph",
    "heading_1",
    "heading_2",
    "heading_3",
    "bulleted_list_item",
    "numbered_list_item",
    "to_do",
    "toggle",
    "quote",
    "callout",
    "divider",
    "child_page",
]

STATUS_GROUPS = ("To-do", "In progress", "Complete")
_PROPERTY_ID_ALPHABET = string.ascii_letters + string.digits + ":;=?<>@[]^`{|}~"


def notion_id(text: str) -> str:
    """A stable UUID (Notion's id shape, dashed) for `text`."""
    return str(uuid.UUID(bytes=hashlib.sha256(text.encode()).digest()[:16], version=4))


def property_id(text: str) -> str:
    """A short property id as Notion makes them: four characters, URL-encoded (`%3AUPp`)."""
    digest = hashlib.sha256(text.encode()).digest()
    raw = "".join(_PROPERTY_ID_ALPHABET[b % len(_PROPERTY_ID_ALPHABET)] for b in digest[:4])
    return quote(raw, safe="")


def compact(notion_id_text: str) -> str:
    """An id as requests may send it: dashed or not, any case."""
    return notion_id_text.replace("-", "").lower()


def to_minute(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


@dataclass
class User:
    id: str
    name: str
    email: str | None = None
    kind: Literal["person", "bot"] = "person"


@dataclass(frozen=True)
class Option:
    """A select, multi-select or status option."""

    name: str
    color: str = "default"

    @property
    def id(self) -> str:
        return property_id(f"option:{self.name}")


@dataclass(frozen=True)
class Formula:
    """A formula property: its expression (shown in the schema), its result type and how
    the simulator computes it from the page's values (name -> raw value)."""

    expression: str
    result: FormulaResult
    compute: Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True)
class Rollup:
    """A rollup: the relation property it follows, the related pages' property it reads,
    and its function (count, sum, average, latest_date, earliest_date, show_original)."""

    relation: str
    target: str
    function: str


@dataclass
class Property:
    """One property of a data source's schema."""

    name: str
    type: PropertyType
    number_format: str = "number"
    options: tuple[Option, ...] = ()
    # status: group name -> the names of its options
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    relation: str | None = None  # the related data source's id
    formula: Formula | None = None
    rollup: Rollup | None = None
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            self.id = "title" if self.type == "title" else property_id(f"property:{self.name}")


@dataclass
class Block:
    """A block of a page: rich text (segments), a to-do's check, nested children."""

    id: str
    type: BlockType
    text: list[str] = field(default_factory=list)
    children: list[Block] = field(default_factory=list)
    checked: bool = False
    created_time: datetime = datetime(2025, 1, 1, tzinfo=UTC)
    last_edited_time: datetime = datetime(2025, 1, 1, tzinfo=UTC)
    author: str = ""

    def walk(self) -> Iterator[Block]:
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass
class Page:
    id: str
    data_source_id: str | None  # None: a page under another page
    parent_page_id: str | None
    values: dict[str, Any]
    blocks: list[Block]
    created_time: datetime
    last_edited_time: datetime
    created_by: str
    last_edited_by: str
    in_trash: bool = False


@dataclass
class DataSource:
    id: str
    name: str
    database_id: str
    properties: dict[str, Property]
    created_time: datetime
    last_edited_time: datetime
    created_by: str

    @property
    def title_property(self) -> Property:
        return next(p for p in self.properties.values() if p.type == "title")


@dataclass
class Database:
    id: str
    title: str
    parent_page_id: str | None
    data_sources: list[str]
    created_time: datetime
    last_edited_time: datetime
    created_by: str
    in_trash: bool = False


BlockSpec = tuple[Any, ...]  # (type, text) or (type, text, children) or ("to_do", text, checked)


class NotionWorkspace:
    """One Notion workspace's content (what an integration shared with it can read)."""

    def __init__(self, workspace_id: str, name: str, clock: SimClock) -> None:
        self.id = workspace_id
        self.name = name
        self.clock = clock
        self.users: dict[str, User] = {}
        self.databases: dict[str, Database] = {}
        self.data_sources: dict[str, DataSource] = {}
        self.pages: dict[str, Page] = {}
        self._blocks: dict[str, tuple[Page, Block]] = {}  # compact block id -> its page
        self._counter = 0
        self.lock = threading.RLock()

    # -- ids and time ------------------------------------------------------------------------
    def new_id(self, kind: str) -> str:
        with self.lock:
            self._counter += 1
            return notion_id(f"{self.id}:{kind}:{self._counter}")

    def now(self) -> datetime:
        return to_minute(self.clock.now())

    # -- schema ------------------------------------------------------------------------------
    def add_user(self, name: str, email: str | None = None) -> User:
        user = User(self.new_id("user"), name, email)
        self.users[user.id] = user
        return user

    def add_database(
        self,
        title: str,
        properties: Iterable[Property],
        *,
        by: str,
        data_source_name: str | None = None,
        created: datetime | None = None,
    ) -> tuple[Database, DataSource]:
        """A database with its first data source (every database has at least one)."""
        when = to_minute(created) if created else self.now()
        with self.lock:
            database = Database(self.new_id("database"), title, None, [], when, when, by)
            self.databases[database.id] = database
        source = self.add_data_source(database, data_source_name or title, properties, by=by)
        return database, source

    def add_data_source(
        self, database: Database, name: str, properties: Iterable[Property], *, by: str
    ) -> DataSource:
        when = database.created_time
        with self.lock:
            source = DataSource(
                self.new_id("data_source"),
                name,
                database.id,
                {p.name: p for p in properties},
                when,
                when,
                by,
            )
            if sum(p.type == "title" for p in source.properties.values()) != 1:
                raise ValueError("a data source has exactly one title property")
            self.data_sources[source.id] = source
            database.data_sources.append(source.id)
            return source

    def add_property(self, source: DataSource, prop: Property) -> None:
        with self.lock:
            source.properties[prop.name] = prop
            source.last_edited_time = self.now()

    def rename_property(self, source: DataSource, old: str, new: str) -> None:
        """Rename a property (its id stays, as in Notion); pages keep their values."""
        with self.lock:
            prop = source.properties.pop(old)
            prop.name = new
            source.properties[new] = prop
            for page in self.pages.values():
                if page.data_source_id == source.id and old in page.values:
                    page.values[new] = page.values.pop(old)
            source.last_edited_time = self.now()

    # -- pages -------------------------------------------------------------------------------
    def add_page(
        self,
        source: DataSource | None,
        values: Mapping[str, Any],
        *,
        by: str,
        blocks: Sequence[BlockSpec] = (),
        parent_page: Page | None = None,
        created: datetime | None = None,
    ) -> Page:
        when = to_minute(created) if created else self.now()
        with self.lock:
            if source is not None:
                unknown = set(values) - set(source.properties)
                if unknown:
                    raise KeyError(f"no properties {sorted(unknown)} in {source.name}")
            page = Page(
                self.new_id("page"),
                source.id if source else None,
                parent_page.id if parent_page else None,
                dict(values),
                [],
                when,
                when,
                by,
                by,
            )
            self.pages[page.id] = page
            page.blocks = [self._block(page, None, spec, when, by) for spec in blocks]
            return page

    def update(
        self, page: Page, *, by: str | None = None, at: datetime | None = None, **values: Any
    ) -> None:
        """Change property values (by name); the page is edited now (or `at`)."""
        with self.lock:
            source = self.data_sources.get(page.data_source_id or "")
            if source is not None:
                unknown = set(values) - set(source.properties)
                if unknown:
                    raise KeyError(f"no properties {sorted(unknown)} in {source.name}")
            page.values.update(values)
            self._edited(page, by, at)

    def set_value(self, page: Page, name: str, value: Any, *, by: str | None = None) -> None:
        """One property value whose name is not a Python identifier."""
        with self.lock:
            page.values[name] = value
            self._edited(page, by, None)

    def trash(self, page: Page, *, by: str | None = None, at: datetime | None = None) -> None:
        with self.lock:
            page.in_trash = True
            self._edited(page, by, at)

    def restore(self, page: Page, *, by: str | None = None, at: datetime | None = None) -> None:
        with self.lock:
            page.in_trash = False
            self._edited(page, by, at)

    def move(self, page: Page, source: DataSource | None, *, by: str | None = None) -> None:
        """Move a page to another data source (None: out of every database)."""
        with self.lock:
            page.data_source_id = source.id if source else None
            self._edited(page, by, None)

    def _edited(self, page: Page, by: str | None, at: datetime | None) -> None:
        page.last_edited_time = to_minute(at) if at else self.now()
        if by:
            page.last_edited_by = by

    # -- blocks ------------------------------------------------------------------------------
    def _block(
        self, page: Page, parent: Block | None, spec: BlockSpec, when: datetime, by: str
    ) -> Block:
        kind, text, *rest = spec
        block = Block(
            self.new_id("block"),
            kind,
            _segments(text),
            created_time=when,
            last_edited_time=when,
            author=by,
        )
        if kind == "to_do" and rest:
            block.checked = bool(rest[0])
        elif rest:
            block.children = [self._block(page, block, child, when, by) for child in rest[0]]
        self._blocks[compact(block.id)] = (page, block)
        return block

    def append_blocks(
        self,
        page: Page,
        specs: Sequence[BlockSpec],
        *,
        under: Block | None = None,
        by: str | None = None,
        at: datetime | None = None,
    ) -> list[Block]:
        """Add blocks at the end of the page (or of a block's children): an edit of the page."""
        with self.lock:
            when = to_minute(at) if at else self.now()
            author = by or page.last_edited_by
            made = [self._block(page, under, spec, when, author) for spec in specs]
            (under.children if under else page.blocks).extend(made)
            self._edited(page, by, at)
            return made

    def edit_block(
        self,
        block: Block,
        text: str | list[str],
        *,
        by: str | None = None,
        at: datetime | None = None,
    ) -> None:
        with self.lock:
            page, _ = self._blocks[compact(block.id)]
            block.text = _segments(text)
            block.last_edited_time = to_minute(at) if at else self.now()
            self._edited(page, by, at)

    def block(self, block_id: str) -> tuple[Page, Block] | None:
        """A block by id (dashed or not) and its page."""
        with self.lock:
            return self._blocks.get(compact(block_id))

    # -- lookups -----------------------------------------------------------------------------
    def page(self, page_id: str) -> Page | None:
        return _by_id(self.pages, page_id)

    def database(self, database_id: str) -> Database | None:
        return _by_id(self.databases, database_id)

    def data_source(self, data_source_id: str) -> DataSource | None:
        return _by_id(self.data_sources, data_source_id)

    def pages_of(self, source: DataSource) -> list[Page]:
        """The live pages of a data source (a query never shows trashed ones)."""
        with self.lock:
            return [
                p for p in self.pages.values() if p.data_source_id == source.id and not p.in_trash
            ]

    def related(self, page: Page, relation: str) -> list[Page]:
        """The live pages a relation property of `page` names."""
        return [
            related
            for related_id in page.values.get(relation) or ()
            if (related := self.pages.get(related_id)) is not None and not related.in_trash
        ]

    def source_of(self, page: Page) -> DataSource | None:
        return self.data_sources.get(page.data_source_id or "")


def _segments(text: str | list[str]) -> list[str]:
    return [text] if isinstance(text, str) else list(text)


def _by_id(items: Mapping[str, Any], wanted: str) -> Any:
    found = items.get(wanted)
    if found is not None:
        return found
    key = compact(wanted)
    return next((item for known, item in items.items() if compact(known) == key), None)

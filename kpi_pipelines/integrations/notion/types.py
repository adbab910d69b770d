"""What a notion connection stores, and pydantic models of the Notion objects we read.

A page is validated before it is landed: its id, times, parent and trash flags, and each
property value as Notion's reference types it (numbers finite and bounded, dates ISO 8601,
rich text with plain text), because the metrics' SQL reads and casts those fields; a page
outside them is rejected (named in the run, the rest stored). What we do not read is kept
as it came, in raw_records.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from kpi_pipelines.integrations.shared.connection_settings import ConnectionSettings, TenantName

API_VERSIONS = ("2025-09-03", "2022-06-28")
_COMPACT_ID = re.compile(r"^[0-9a-fA-F]{32}$")
_DASHED_ID = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
# The numbers the metrics cast to float8: finite, and far from its limits.
_NUMBER_LIMIT = 1e300

PropertyName = Annotated[str, TenantName(), Field(min_length=1, max_length=200)]


def notion_id(value: Any) -> Any:
    """A Notion id as the API writes it (dashed UUID), from a dashed or compact id or from a
    pasted address (`https://www.notion.so/acme/Team-OKRs-<32 hex>?v=...`)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if _DASHED_ID.match(text):
        return text.lower()
    if "/" in text:  # an address: the id ends its last path segment, after the title's words
        text = urlsplit(text).path.rstrip("/").rsplit("/", 1)[-1]
    text = text.rsplit("-", 1)[-1]
    if not _COMPACT_ID.match(text):
        raise ValueError(
            "is not a Notion id: use the 32 hexadecimal characters at the end of the"
            " database's address (before any ?v=)"
        )
    raw = text.lower()
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


NotionId = Annotated[str, Field(pattern=_DASHED_ID.pattern)]


class ObjectiveProperties(BaseModel):
    """Which properties of the objectives database hold what (names as Notion shows them).
    Each one left out is found from the database's schema where it can be (see
    `schema.resolve`); `done` lists the statuses that mean an objective is achieved (by
    default those of the status property's Complete group)."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    title: PropertyName | None = None
    status: PropertyName | None = None
    done: list[Annotated[str, TenantName(), Field(min_length=1, max_length=200)]] | None = Field(
        default=None, max_length=50
    )
    progress: PropertyName | None = None
    value: PropertyName | None = None  # the key result's current value
    target: PropertyName | None = None
    owner: PropertyName | None = None
    due: PropertyName | None = None
    notes: PropertyName | None = None  # a relation to the note pages


class NotionConnectionSettings(ConnectionSettings):
    """The objectives database (its id or its pasted address), the data source when the
    database has several (2025-09-03), the API version, and the property mapping."""

    pasted_urls: ClassVar[frozenset[str]] = frozenset({"database_id"})

    database_id: str
    data_source_id: str | None = None
    notion_version: Literal["2025-09-03", "2022-06-28"] = "2025-09-03"
    properties: ObjectiveProperties = Field(default_factory=ObjectiveProperties)

    @field_validator("database_id", "data_source_id", mode="before")
    @classmethod
    def _id(cls, value: Any) -> Any:
        return notion_id(value)


# -- what the API sends ---------------------------------------------------------------------------


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)


def _bounded(value: float | None) -> float | None:
    if value is not None and not -_NUMBER_LIMIT < value < _NUMBER_LIMIT:
        raise ValueError(f"a number beyond ±{_NUMBER_LIMIT:g}")
    return value


Number = Annotated[float | None, Field(allow_inf_nan=False), AfterValidator(_bounded)]


class RichText(_Lenient):
    plain_text: str


class DateValue(_Lenient):
    start: str
    end: str | None = None

    @field_validator("start", "end")
    @classmethod
    def _iso(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(
                value.replace("Z", "+00:00")
            )
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO 8601 date") from None
        return value


class Option(_Lenient):
    name: str


class PersonValue(_Lenient):
    id: str
    name: str | None = None


class Reference(_Lenient):
    id: str


class FormulaValue(_Lenient):
    type: str
    number: Number = None
    string: str | None = None
    boolean: bool | None = None
    date: DateValue | None = None


class RollupValue(_Lenient):
    type: str
    function: str | None = None
    number: Number = None
    date: DateValue | None = None
    array: list[dict[str, Any]] | None = None


class PropertyValue(_Lenient):
    """One property value of a page: its `type`, and the field of that type."""

    id: str
    type: str
    title: list[RichText] | None = None
    rich_text: list[RichText] | None = None
    number: Number = None
    select: Option | None = None
    status: Option | None = None
    multi_select: list[Option] | None = None
    date: DateValue | None = None
    people: list[PersonValue] | None = None
    checkbox: bool | None = None
    relation: list[Reference] | None = None
    formula: FormulaValue | None = None
    rollup: RollupValue | None = None


class Parent(_Lenient):
    type: str
    database_id: str | None = None
    data_source_id: str | None = None
    page_id: str | None = None


class NotionPage(_Lenient):
    """A page as a query or `GET /v1/pages/{id}` returns it."""

    object: Literal["page"]
    id: NotionId
    created_time: datetime
    last_edited_time: datetime
    in_trash: bool = False
    archived: bool = False
    url: str
    parent: Parent
    properties: dict[str, PropertyValue]

    @property
    def gone(self) -> bool:
        return self.in_trash or self.archived


class PageList(_Lenient):
    """A query's answer (its pages are read one by one, as raw text)."""

    object: Literal["list"]
    next_cursor: str | None = None
    has_more: bool = False


class SchemaProperty(_Lenient):
    """One property of a database's (2022-06-28) or data source's (2025-09-03) schema."""

    id: str
    name: str
    type: str
    number: dict[str, Any] | None = None
    status: dict[str, Any] | None = None
    select: dict[str, Any] | None = None
    relation: dict[str, Any] | None = None
    formula: dict[str, Any] | None = None
    rollup: dict[str, Any] | None = None


class DataSourceReference(_Lenient):
    id: str
    name: str = ""


class DatabaseObject(_Lenient):
    object: Literal["database"]
    id: str
    title: list[RichText] = Field(default_factory=list)
    data_sources: list[DataSourceReference] | None = None  # 2025-09-03
    properties: dict[str, SchemaProperty] | None = None  # 2022-06-28


class DataSourceObject(_Lenient):
    object: Literal["data_source"]
    id: str
    title: list[RichText] = Field(default_factory=list)
    properties: dict[str, SchemaProperty]


class BlockContent(_Lenient):
    rich_text: list[RichText] = Field(default_factory=list)
    checked: bool | None = None


class Block(_Lenient):
    """A block of a page's body: its text is the `rich_text` of its type's content."""

    object: Literal["block"]
    id: str
    type: str
    has_children: bool = False
    content: BlockContent = Field(default_factory=BlockContent)

    @classmethod
    def read(cls, raw: Any) -> Block:
        """A block from its JSON (its content sits under the key its type names)."""
        if not isinstance(raw, dict):
            raise ValueError("a block is an object")
        kind = raw.get("type")
        content = raw.get(kind) if isinstance(kind, str) else None
        return cls.model_validate({**raw, "content": content if isinstance(content, dict) else {}})

    @property
    def text(self) -> str:
        return "".join(item.plain_text for item in self.content.rich_text)

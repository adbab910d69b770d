"""Notion's JSON for the simulated objects, in each API version the sandbox serves.

Shapes follow the response types of Notion's own SDK (`@notionhq/client`: 5.x for
2025-09-03, 4.x for 2022-06-28; the conformance tests hold every object to them). What
differs between the versions: 2025-09-03 puts a database's schema on its data sources
(the database lists them) and names a page's parent by its data source; 2022-06-28 puts
the schema on the database and names the database; pages of 2025-09-03 also carry
`is_archived` and `is_locked`.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, date, datetime
from typing import Any

from kpi_pipelines.sandbox.notion.model import (
    STATUS_GROUPS,
    Block,
    Database,
    DataSource,
    NotionWorkspace,
    Option,
    Page,
    Property,
    User,
    compact,
    property_id,
)

V2022 = "2022-06-28"
V2025 = "2025-09-03"
VERSIONS = (V2022, V2025)
GROUP_COLORS = {"To-do": "gray", "In progress": "blue", "Complete": "green"}
_SLUG_KEEP = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")


def iso(moment: datetime) -> str:
    """Notion's timestamps: UTC, milliseconds, `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}Z"
    )


def notion_date(value: date | datetime) -> str:
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds")
    return value.isoformat()


def rich_text(segments: list[str]) -> list[dict[str, Any]]:
    """One rich-text item per segment (every second one bold, as a person formats text)."""
    return [
        {
            "type": "text",
            "text": {"content": text, "link": None},
            "annotations": {
                "bold": index % 2 == 1,
                "italic": False,
                "strikethrough": False,
                "underline": False,
                "code": False,
                "color": "default",
            },
            "plain_text": text,
            "href": None,
        }
        for index, text in enumerate(segments)
    ]


def partial_user(user_id: str) -> dict[str, Any]:
    return {"object": "user", "id": user_id}


def user_object(user: User) -> dict[str, Any]:
    if user.kind == "bot":
        return {
            "object": "user",
            "id": user.id,
            "name": user.name,
            "avatar_url": None,
            "type": "bot",
            "bot": {},
        }
    return {
        "object": "user",
        "id": user.id,
        "name": user.name,
        "avatar_url": None,
        "type": "person",
        "person": {"email": user.email} if user.email else {},
    }


def url_of(title: str, object_id: str) -> str:
    slug = "-".join(
        "".join(c for c in word.lower() if c in _SLUG_KEEP) for word in title.split()
    ).strip("-")
    slug = "-".join(part for part in slug.split("-") if part)
    return f"https://www.notion.so/{slug + '-' if slug else ''}{compact(object_id)}"


def title_of(workspace: NotionWorkspace, page: Page) -> str:
    source = workspace.source_of(page)
    if source is None:
        return "".join(page.values.get("title") or [])
    value = page.values.get(source.title_property.name)
    return "".join(value) if isinstance(value, list) else str(value or "")


# -- pages ------------------------------------------------------------------------------------


def page_parent(workspace: NotionWorkspace, page: Page, version: str) -> dict[str, Any]:
    source = workspace.source_of(page)
    if source is not None:
        if version == V2025:
            return {
                "type": "data_source_id",
                "data_source_id": source.id,
                "database_id": source.database_id,
            }
        return {"type": "database_id", "database_id": source.database_id}
    if page.parent_page_id:
        return {"type": "page_id", "page_id": page.parent_page_id}
    return {"type": "workspace", "workspace": True}


def page_object(
    workspace: NotionWorkspace,
    page: Page,
    version: str,
    *,
    only: Collection[str] | None = None,
) -> dict[str, Any]:
    """A page; `only`: the property ids `filter_properties` asked for."""
    source = workspace.source_of(page)
    properties: dict[str, Any] = {}
    if source is not None:
        for prop in source.properties.values():
            if only is None or prop.id in only:
                properties[prop.name] = {"id": prop.id, **property_value(workspace, page, prop)}
    elif only is None or "title" in only:
        properties["title"] = {
            "id": "title",
            "type": "title",
            "title": rich_text(page.values.get("title") or []),
        }
    body: dict[str, Any] = {
        "object": "page",
        "id": page.id,
        "created_time": iso(page.created_time),
        "last_edited_time": iso(page.last_edited_time),
        "created_by": partial_user(page.created_by),
        "last_edited_by": partial_user(page.last_edited_by),
        "cover": None,
        "icon": None,
        "parent": page_parent(workspace, page, version),
        "archived": page.in_trash,
        "in_trash": page.in_trash,
        "properties": properties,
        "url": url_of(title_of(workspace, page), page.id),
        "public_url": None,
    }
    if version == V2025:
        body["is_archived"] = page.in_trash
        body["is_locked"] = False
    return body


def property_value(workspace: NotionWorkspace, page: Page, prop: Property) -> dict[str, Any]:
    """One property's value on `page`, as Notion renders its type (without the id)."""
    raw = page.values.get(prop.name)
    if prop.type == "formula":
        assert prop.formula is not None
        return {
            "type": "formula",
            "formula": _typed(prop.formula.result, prop.formula.compute(page.values)),
        }
    if prop.type == "rollup":
        return {"type": "rollup", "rollup": _rollup(workspace, page, prop)}
    if prop.type == "created_time":
        return {"type": "created_time", "created_time": iso(page.created_time)}
    if prop.type == "last_edited_time":
        return {"type": "last_edited_time", "last_edited_time": iso(page.last_edited_time)}
    return _simple(workspace, prop, raw)


def _simple(workspace: NotionWorkspace, prop: Property, raw: Any) -> dict[str, Any]:
    kind = prop.type
    if kind in ("title", "rich_text"):
        segments = raw if isinstance(raw, list) else ([raw] if raw else [])
        return {"type": kind, kind: rich_text(segments)}
    if kind in ("select", "status"):
        option = _option(prop, raw)
        return {"type": kind, kind: _option_value(option) if option else None}
    if kind == "multi_select":
        options = [o for name in raw or () if (o := _option(prop, name)) is not None]
        return {"type": kind, kind: [_option_value(o) for o in options]}
    if kind == "date":
        return {"type": "date", "date": _date(raw)}
    if kind == "people":
        people = [workspace.users[u] for u in raw or () if u in workspace.users]
        return {"type": "people", "people": [user_object(u) for u in people]}
    if kind == "checkbox":
        return {"type": "checkbox", "checkbox": bool(raw)}
    if kind == "relation":
        return {"type": "relation", "relation": [{"id": i} for i in raw or ()]}
    if kind in ("number", "url"):
        return {"type": kind, kind: raw}
    raise ValueError(f"the sandbox cannot render a {kind} property")


def _typed(result: str, value: Any) -> dict[str, Any]:
    if result == "date":
        return {"type": "date", "date": _date(value)}
    return {"type": result, result: value}


def _rollup(workspace: NotionWorkspace, page: Page, prop: Property) -> dict[str, Any]:
    assert prop.rollup is not None
    rollup = prop.rollup
    related = workspace.related(page, rollup.relation)
    source = workspace.data_sources.get(related[0].data_source_id or "") if related else None
    target = source.properties.get(rollup.target) if source else None
    values = [r.values.get(rollup.target) for r in related]
    function = rollup.function
    if function == "count":
        return {"type": "number", "number": len(related), "function": function}
    if function in ("sum", "average", "min", "max"):
        numbers = [float(v) for v in values if isinstance(v, int | float)]
        if not numbers:
            number = None if function != "sum" else 0
        elif function == "sum":
            number = sum(numbers)
        elif function == "average":
            number = sum(numbers) / len(numbers)
        else:
            number = (min if function == "min" else max)(numbers)
        return {"type": "number", "number": number, "function": function}
    if function in ("latest_date", "earliest_date"):
        starts = [v[0] for v in values if v]
        if not starts:
            return {"type": "date", "date": None, "function": function}
        chosen = (max if function == "latest_date" else min)(starts, key=_sortable)
        return {"type": "date", "date": _date((chosen, None)), "function": function}
    if function == "show_original" and target is not None:
        return {
            "type": "array",
            "array": [_simple(workspace, target, r.values.get(rollup.target)) for r in related],
            "function": function,
        }
    return {"type": "unsupported", "unsupported": {}, "function": function}


def _sortable(value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def _date(raw: Any) -> dict[str, Any] | None:
    if not raw:
        return None
    start, end = raw
    return {
        "start": notion_date(start),
        "end": notion_date(end) if end is not None else None,
        "time_zone": None,
    }


def _option(prop: Property, name: Any) -> Option | None:
    return next((o for o in prop.options if o.name == name), None)


def _option_value(option: Option) -> dict[str, Any]:
    return {"id": option.id, "name": option.name, "color": option.color}


# -- databases and data sources ---------------------------------------------------------------


def database_object(workspace: NotionWorkspace, database: Database, version: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "object": "database",
        "id": database.id,
        "created_time": iso(database.created_time),
        "last_edited_time": iso(database.last_edited_time),
        "title": rich_text([database.title]),
        "description": [],
        "icon": None,
        "cover": None,
        "parent": (
            {"type": "page_id", "page_id": database.parent_page_id}
            if database.parent_page_id
            else {"type": "workspace", "workspace": True}
        ),
        "url": url_of(database.title, database.id),
        "public_url": None,
        "archived": database.in_trash,
        "in_trash": database.in_trash,
        "is_inline": False,
    }
    if version == V2025:
        body["data_sources"] = [
            {"id": source_id, "name": workspace.data_sources[source_id].name}
            for source_id in database.data_sources
        ]
        body["is_locked"] = False
        return body
    source = workspace.data_sources[database.data_sources[0]]
    body["created_by"] = partial_user(database.created_by)
    body["last_edited_by"] = partial_user(database.created_by)
    body["properties"] = schema(workspace, source, version)
    return body


def data_source_object(workspace: NotionWorkspace, source: DataSource) -> dict[str, Any]:
    database = workspace.databases[source.database_id]
    return {
        "object": "data_source",
        "id": source.id,
        "created_time": iso(source.created_time),
        "last_edited_time": iso(source.last_edited_time),
        "created_by": partial_user(source.created_by),
        "last_edited_by": partial_user(source.created_by),
        "title": rich_text([source.name]),
        "description": [],
        "icon": None,
        "cover": None,
        "parent": {"type": "database_id", "database_id": database.id},
        "database_parent": (
            {"type": "page_id", "page_id": database.parent_page_id}
            if database.parent_page_id
            else {"type": "workspace", "workspace": True}
        ),
        "is_inline": False,
        "archived": database.in_trash,
        "in_trash": database.in_trash,
        "properties": schema(workspace, source, V2025),
        "url": url_of(source.name, source.id),
        "public_url": None,
    }


def schema(workspace: NotionWorkspace, source: DataSource, version: str) -> dict[str, Any]:
    return {
        prop.name: {
            "id": prop.id,
            "name": prop.name,
            "description": None,
            "type": prop.type,
            prop.type: _config(workspace, source, prop, version),
        }
        for prop in source.properties.values()
    }


def _config(
    workspace: NotionWorkspace, source: DataSource, prop: Property, version: str
) -> dict[str, Any]:
    if prop.type == "number":
        return {"format": prop.number_format}
    if prop.type in ("select", "multi_select"):
        return {"options": [{**_option_value(o), "description": None} for o in prop.options]}
    if prop.type == "status":
        return {
            "options": [{**_option_value(o), "description": None} for o in prop.options],
            "groups": [
                {
                    "id": property_id(f"group:{group}"),
                    "name": group,
                    "color": GROUP_COLORS.get(group, "default"),
                    "option_ids": [
                        o.id for o in prop.options if o.name in prop.groups.get(group, ())
                    ],
                }
                for group in STATUS_GROUPS
            ],
        }
    if prop.type == "relation":
        target = workspace.data_sources[prop.relation or ""]
        config: dict[str, Any] = {
            "database_id": target.database_id,
            "type": "single_property",
            "single_property": {},
        }
        if version == V2025:
            config["data_source_id"] = target.id
        return config
    if prop.type == "formula":
        assert prop.formula is not None
        return {"expression": prop.formula.expression}
    if prop.type == "rollup":
        assert prop.rollup is not None
        relation = source.properties[prop.rollup.relation]
        target_source = workspace.data_sources[relation.relation or ""]
        target = target_source.properties[prop.rollup.target]
        return {
            "relation_property_name": relation.name,
            "relation_property_id": relation.id,
            "rollup_property_name": target.name,
            "rollup_property_id": target.id,
            "function": prop.rollup.function,
        }
    return {}


# -- blocks -----------------------------------------------------------------------------------


def block_object(
    workspace: NotionWorkspace, page: Page, block: Block, parent: Block | None, version: str
) -> dict[str, Any]:
    content: dict[str, Any]
    if block.type == "divider":
        content = {}
    elif block.type == "child_page":
        content = {"title": "".join(block.text)}
    else:
        content = {"rich_text": rich_text(block.text), "color": "default"}
        if block.type == "to_do":
            content["checked"] = block.checked
        if block.type.startswith("heading_"):
            content["is_toggleable"] = bool(block.children)
        if block.type == "callout":
            content["icon"] = {"type": "emoji", "emoji": "💡"}
        elif block.type == "paragraph" and version == V2025:
            content["icon"] = None
    return {
        "object": "block",
        "id": block.id,
        "parent": (
            {"type": "block_id", "block_id": parent.id}
            if parent is not None
            else {"type": "page_id", "page_id": page.id}
        ),
        "created_time": iso(block.created_time),
        "last_edited_time": iso(block.last_edited_time),
        "created_by": partial_user(block.author or page.created_by),
        "last_edited_by": partial_user(block.author or page.last_edited_by),
        "has_children": bool(block.children),
        "archived": False,
        "in_trash": False,
        "type": block.type,
        block.type: content,
    }

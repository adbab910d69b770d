"""A data source query as Notion runs it: the body checked (Notion's validation messages),
the filter (timestamp, property and compound filters), the sorts, and cursor paging.

A page's `next_cursor` is the id of the first page of the next batch, as Notion's cursors
look; a cursor that names no page of the result is refused. Trashed pages are never in a
result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from kpi_pipelines.sandbox.notion.model import DataSource, NotionWorkspace, Page, Property

MAX_PAGE_SIZE = 100
BODY_KEYS = frozenset(
    {"filter", "sorts", "start_cursor", "page_size", "archived", "in_trash", "result_type"}
)
DATE_CONDITIONS = ("equals", "before", "after", "on_or_before", "on_or_after")
TIMESTAMPS = ("created_time", "last_edited_time")


class QueryRefused(ValueError):
    """A query Notion answers 400 validation_error (the message is Notion's)."""


@dataclass(frozen=True)
class Batch:
    pages: list[Page]
    next_cursor: str | None


def body_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "body failed validation: body should be an object, instead was `" + repr(body) + "`."
    for key in body:
        if key not in BODY_KEYS:
            return f"body failed validation: body.{key} should be not present, instead was `{body[key]!r}`."
    return None


def page_size(value: Any, name: str = "body.page_size") -> int:
    if value is None:
        return MAX_PAGE_SIZE
    if isinstance(value, bool) or not isinstance(value, int):
        raise QueryRefused(f"{name} should be a number, instead was `{value!r}`.")
    if value < 1 or value > MAX_PAGE_SIZE:
        bound = "≥ `1`" if value < 1 else f"≤ `{MAX_PAGE_SIZE}`"
        raise QueryRefused(f"{name} should be {bound}, instead was `{value}`.")
    return value


def run_query(workspace: NotionWorkspace, source: DataSource, body: Mapping[str, Any]) -> Batch:
    problem = body_problem(body)
    if problem:
        raise QueryRefused(problem)
    size = page_size(body.get("page_size"))
    matches = _filter(workspace, source, body.get("filter"))
    pages = [p for p in workspace.pages_of(source) if matches(p)]
    pages.sort(key=lambda p: p.id)
    for key, reverse in reversed(_sorts(source, body.get("sorts"))):
        pages.sort(key=key, reverse=reverse)
    return slice_from(pages, body.get("start_cursor"), size, lambda p: p.id)


def slice_from(items: Sequence[Any], cursor: Any, size: int, id_of: Callable[[Any], str]) -> Batch:
    """The `size` items from the one `cursor` names (None: the first), and the next cursor."""
    start = 0
    if cursor is not None:
        if not isinstance(cursor, str):
            raise QueryRefused(f"start_cursor should be a string, instead was `{cursor!r}`.")
        ids = [id_of(item) for item in items]
        if cursor not in ids:
            raise QueryRefused(f"start_cursor provided is invalid: {cursor}")
        start = ids.index(cursor)
    chunk = list(items[start : start + size])
    following = start + size
    return Batch(chunk, id_of(items[following]) if following < len(items) else None)


# -- filters ----------------------------------------------------------------------------------


def _filter(
    workspace: NotionWorkspace, source: DataSource, spec: Any, depth: int = 0
) -> Callable[[Page], bool]:
    if spec is None:
        return lambda page: True
    if not isinstance(spec, dict) or depth > 2:
        raise QueryRefused("body failed validation: body.filter is not a valid filter.")
    for compound in ("and", "or"):
        if compound in spec:
            parts = spec[compound]
            if not isinstance(parts, list) or len(spec) != 1:
                raise QueryRefused(
                    f"body failed validation: body.filter.{compound} should be an array."
                )
            tests = [_filter(workspace, source, part, depth + 1) for part in parts]
            combine = all if compound == "and" else any
            return lambda page: combine(test(page) for test in tests)
    if "timestamp" in spec:
        name = spec["timestamp"]
        if name not in TIMESTAMPS or not isinstance(spec.get(name), dict):
            raise QueryRefused(
                "body failed validation: body.filter.timestamp should be `created_time` or"
                f" `last_edited_time`, instead was `{name!r}`."
            )
        condition = _date_condition(spec[name], f"body.filter.{name}")
        return lambda page: condition(getattr(page, name))
    if "property" in spec:
        prop = _property(source, spec["property"])
        return _property_filter(workspace, prop, spec)
    raise QueryRefused("body failed validation: body.filter should define property or timestamp.")


def _property(source: DataSource, name_or_id: Any) -> Property:
    for prop in source.properties.values():
        if name_or_id in (prop.name, prop.id):
            return prop
    raise QueryRefused(f"Could not find property with name or id: {name_or_id}")


def _property_filter(
    workspace: NotionWorkspace, prop: Property, spec: Mapping[str, Any]
) -> Callable[[Page], bool]:
    kind = "date" if prop.type in ("created_time", "last_edited_time") else prop.type
    if kind not in spec or not isinstance(spec[kind], dict) or len(spec[kind]) != 1:
        raise QueryRefused(
            f"body failed validation: body.filter.{kind} should be defined for a {prop.type}"
            " property."
        )
    ((condition, operand),) = spec[kind].items()
    if condition in ("is_empty", "is_not_empty"):
        empty = condition == "is_empty"
        return lambda page: (page.values.get(prop.name) in (None, [], "")) == empty
    if kind in ("select", "status"):
        if condition not in ("equals", "does_not_equal"):
            raise _unsupported(kind, condition)
        same = condition == "equals"
        return lambda page: (page.values.get(prop.name) == operand) == same
    if kind == "checkbox":
        same = condition == "equals"
        return lambda page: (bool(page.values.get(prop.name)) == bool(operand)) == same
    if kind == "number":
        compare = _NUMBER.get(condition)
        if compare is None:
            raise _unsupported(kind, condition)
        return lambda page: (
            (value := page.values.get(prop.name)) is not None and compare(value, operand)
        )
    if kind in ("title", "rich_text"):
        text_test = _TEXT.get(condition)
        if text_test is None:
            raise _unsupported(kind, condition)
        return lambda page: text_test("".join(page.values.get(prop.name) or []), str(operand))
    if kind == "relation" and condition in ("contains", "does_not_contain"):
        want = condition == "contains"
        return lambda page: (operand in (page.values.get(prop.name) or [])) == want
    if kind == "date":
        test = _date_condition({condition: operand}, f"body.filter.{kind}")
        return lambda page: (
            (value := page.values.get(prop.name)) is not None and test(_instant(value[0]))
        )
    raise _unsupported(kind, condition)


def _unsupported(kind: str, condition: str) -> QueryRefused:
    return QueryRefused(
        f"body failed validation: body.filter.{kind}.{condition} is not a supported condition."
    )


_NUMBER: dict[str, Callable[[float, float], bool]] = {
    "equals": lambda a, b: a == b,
    "does_not_equal": lambda a, b: a != b,
    "greater_than": lambda a, b: a > b,
    "less_than": lambda a, b: a < b,
    "greater_than_or_equal_to": lambda a, b: a >= b,
    "less_than_or_equal_to": lambda a, b: a <= b,
}
_TEXT: dict[str, Callable[[str, str], bool]] = {
    "equals": lambda a, b: a == b,
    "does_not_equal": lambda a, b: a != b,
    "contains": lambda a, b: b in a,
    "does_not_contain": lambda a, b: b not in a,
    "starts_with": str.startswith,
    "ends_with": str.endswith,
}


def _date_condition(spec: Mapping[str, Any], where: str) -> Callable[[datetime], bool]:
    if len(spec) != 1:
        raise QueryRefused(f"body failed validation: {where} should have one condition.")
    ((condition, value),) = spec.items()
    if condition not in DATE_CONDITIONS:
        raise QueryRefused(
            f"body failed validation: {where}.{condition} should be not present, instead was"
            f" `{value!r}`."
        )
    moment, whole_day = _parse(value, f"{where}.{condition}")
    if whole_day:
        day = moment.date()
        by_day: dict[str, Callable[[date], bool]] = {
            "equals": lambda d: d == day,
            "before": lambda d: d < day,
            "after": lambda d: d > day,
            "on_or_before": lambda d: d <= day,
            "on_or_after": lambda d: d >= day,
        }
        test_day = by_day[condition]
        return lambda instant: test_day(instant.astimezone(UTC).date())
    by_instant: dict[str, Callable[[datetime], bool]] = {
        "equals": lambda t: t == moment,
        "before": lambda t: t < moment,
        "after": lambda t: t > moment,
        "on_or_before": lambda t: t <= moment,
        "on_or_after": lambda t: t >= moment,
    }
    return by_instant[condition]


def _parse(value: Any, where: str) -> tuple[datetime, bool]:
    """An ISO 8601 date or date-time (a date alone compares whole days)."""
    if not isinstance(value, str):
        raise QueryRefused(
            f"body failed validation: {where} should be a string, instead was `{value!r}`."
        )
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC), True
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise QueryRefused(
            f"body failed validation: {where} should be a valid ISO 8601 date string, instead"
            f" was `{value!r}`."
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)), False


def _instant(value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.combine(value, datetime.min.time(), UTC)


# -- sorts ------------------------------------------------------------------------------------


def _sorts(source: DataSource, spec: Any) -> list[tuple[Callable[[Page], Any], bool]]:
    """(key, descending) per sort, first sort first; none: newest created first."""
    if spec is None:
        return [(lambda page: page.created_time, True)]
    if not isinstance(spec, list) or len(spec) > 100:
        raise QueryRefused("body failed validation: body.sorts should be an array.")
    keys: list[tuple[Callable[[Page], Any], bool]] = []
    for index, sort in enumerate(spec):
        if not isinstance(sort, dict):
            raise QueryRefused(f"body failed validation: body.sorts[{index}] should be an object.")
        direction = sort.get("direction", "ascending")
        if direction not in ("ascending", "descending"):
            raise QueryRefused(
                f"body failed validation: body.sorts[{index}].direction should be `ascending` or"
                f" `descending`, instead was `{direction!r}`."
            )
        descending = direction == "descending"
        if "timestamp" in sort:
            name = sort["timestamp"]
            if name not in TIMESTAMPS:
                raise QueryRefused(
                    f"body failed validation: body.sorts[{index}].timestamp should be"
                    f" `created_time` or `last_edited_time`, instead was `{name!r}`."
                )
            keys.append((lambda page, name=name: getattr(page, name), descending))
        elif "property" in sort:
            prop = _property(source, sort["property"])
            keys.append((lambda page, prop=prop: _sort_key(page.values.get(prop.name)), descending))
        else:
            raise QueryRefused(
                f"body failed validation: body.sorts[{index}] should define property or timestamp."
            )
    return keys


def _sort_key(value: Any) -> tuple[int, Any]:
    """Empty values last; otherwise the value's own order (text, numbers, dates)."""
    if value in (None, [], ""):
        return (1, "")
    if isinstance(value, tuple):
        return (0, _instant(value[0]))
    if isinstance(value, list):
        return (0, "".join(str(v) for v in value))
    if isinstance(value, bool | int | float):
        return (0, float(value))
    return (0, str(value))

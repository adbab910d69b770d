"""Which properties of the objectives database hold what: the connection's mapping, checked
against the database's schema, with what it leaves out found there.

Each role takes properties of some types (a progress is a number, or a formula or rollup
that gives one). A name the connection sets must be a property of the database, of one of
those types: otherwise connecting fails with a message naming the property, the setting
and what the database has. A role the connection leaves out is found from the schema:
the one property of its type, or the one whose name says it (Due, Owner, Target, ...);
`done` defaults to the options of the status property's Complete group.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kpi_pipelines.integrations.notion.types import ObjectiveProperties, SchemaProperty

# role -> the property types it takes
ACCEPTED: dict[str, tuple[str, ...]] = {
    "title": ("title",),
    "status": ("status", "select", "checkbox", "formula"),
    "progress": ("number", "formula", "rollup"),
    "value": ("number", "formula", "rollup"),
    "target": ("number", "formula", "rollup"),
    "owner": ("people", "select", "rich_text"),
    "due": ("date", "formula", "rollup"),
    "notes": ("relation",),
}
# role -> names (lower case) that say what a property holds
NAMED: dict[str, tuple[str, ...]] = {
    "status": ("status", "state", "stage"),
    "progress": ("progress", "completion", "% complete", "percent complete"),
    "value": ("current", "current value", "value", "actual", "achieved", "result"),
    "target": ("target", "target value", "goal"),
    "owner": ("owner", "owners", "lead", "dri", "assignee", "responsible"),
    "due": ("due", "due date", "deadline", "target date", "end date"),
    "notes": ("notes", "updates", "meeting notes", "check-ins"),
}
DONE_NAMES = ("done", "complete", "completed", "achieved", "finished")
_LISTED = 30  # properties a message lists


@dataclass(frozen=True)
class ObjectiveMapping:
    """The resolved mapping: a property name per role (None: the database has none)."""

    title: str
    status: str | None
    status_type: str | None
    done: tuple[str, ...]
    progress: str | None
    value: str | None
    target: str | None
    owner: str | None
    due: str | None
    notes: str | None
    notes_target: str | None  # the related data source (2025-09-03) or database (2022-06-28)

    def describe(self) -> dict[str, str | list[str] | None]:
        return {
            "title": self.title,
            "status": self.status,
            "done": list(self.done),
            "progress": self.progress,
            "value": self.value,
            "target": self.target,
            "owner": self.owner,
            "due": self.due,
            "notes": self.notes,
        }


class MappingProblem(ValueError):
    """The connection's mapping does not fit the database: says what to change."""


def resolve(
    schema: Mapping[str, SchemaProperty],
    chosen: ObjectiveProperties,
    *,
    database: str,
    objectives_source: str,
    version: str,
) -> ObjectiveMapping:
    """The mapping `chosen` names, checked against `schema`, completed from it."""
    found: dict[str, str | None] = {}
    for role, types in ACCEPTED.items():
        name = getattr(chosen, role)
        if name is not None:
            found[role] = _checked(schema, role, name, types, database)
        else:
            found[role] = _default(schema, role, types, objectives_source, version)
    title = found["title"]
    if title is None:
        raise MappingProblem(f"the objectives database {database!r} has no title property")
    status = found["status"]
    status_type = schema[status].type if status else None
    notes = found["notes"]
    return ObjectiveMapping(
        title=title,
        status=status,
        status_type=status_type,
        done=_done(schema, status, chosen.done, database),
        progress=found["progress"],
        value=found["value"],
        target=found["target"],
        owner=found["owner"],
        due=found["due"],
        notes=notes,
        notes_target=_relation_target(schema[notes], version) if notes else None,
    )


def _checked(
    schema: Mapping[str, SchemaProperty],
    role: str,
    name: str,
    types: tuple[str, ...],
    database: str,
) -> str:
    prop = schema.get(name)
    if prop is None:
        raise MappingProblem(
            f"the property {name!r} (properties.{role}) is not in the objectives database"
            f" {database!r}; its properties: {_listing(schema)}"
        )
    if prop.type not in types:
        raise MappingProblem(
            f"the property {name!r} (properties.{role}) of the objectives database {database!r}"
            f" is a {prop.type} property; {role} takes a {_either(types)} property"
        )
    return name


def _default(
    schema: Mapping[str, SchemaProperty],
    role: str,
    types: tuple[str, ...],
    objectives_source: str,
    version: str,
) -> str | None:
    """The property that holds `role`, when the schema says so unambiguously."""
    candidates = [p for p in schema.values() if p.type in types]
    if role == "notes":  # a relation to another database (not objectives to objectives)
        candidates = [p for p in candidates if _relation_target(p, version) != objectives_source]
    if role == "title":
        return candidates[0].name if candidates else None
    named = [p for p in candidates if p.name.strip().lower() in NAMED[role]]
    if len(named) == 1:
        return named[0].name
    if named:
        # several named alike: the first in the order of NAMED (Status before State)
        order = {n: i for i, n in enumerate(NAMED[role])}
        return min(named, key=lambda p: order[p.name.strip().lower()]).name
    typed = [p for p in candidates if p.type == types[0]]
    if role in ("status", "owner", "due", "notes") and len(typed) == 1:
        return typed[0].name
    if role == "progress":
        percents = [p for p in typed if (p.number or {}).get("format") == "percent"]
        return percents[0].name if len(percents) == 1 else None
    return None


def _done(
    schema: Mapping[str, SchemaProperty],
    status: str | None,
    chosen: list[str] | None,
    database: str,
) -> tuple[str, ...]:
    if status is None:
        return ()
    prop = schema[status]
    options = _options(prop)
    if chosen is not None:
        unknown = [name for name in chosen if options is not None and name not in options]
        if unknown:
            raise MappingProblem(
                f"properties.done names {', '.join(repr(n) for n in unknown)}, not an option of"
                f" the property {status!r} of the objectives database {database!r}"
                f" (its options: {', '.join(options or []) or 'none'})"
            )
        return tuple(chosen)
    if prop.type == "status":
        groups = (prop.status or {}).get("groups") or []
        by_id = {o.get("id"): o.get("name") for o in (prop.status or {}).get("options") or []}
        complete = [
            by_id[i]
            for g in groups
            if str(g.get("name", "")).lower() == "complete"
            for i in g.get("option_ids") or []
            if by_id.get(i)
        ]
        if complete:
            return tuple(complete)
    if options:
        done = tuple(o for o in options if o.strip().lower() in DONE_NAMES)
        if done:
            return done
    if prop.type in ("checkbox", "formula"):
        return ()  # checked (or a formula that is true) means done
    raise MappingProblem(
        f"cannot tell which options of the property {status!r} of the objectives database"
        f" {database!r} mean done: name them in properties.done (its options:"
        f" {', '.join(options or []) or 'none'})"
    )


def _options(prop: SchemaProperty) -> list[str] | None:
    config = (
        prop.status if prop.type == "status" else prop.select if prop.type == "select" else None
    )
    if config is None:
        return None
    return [str(o.get("name")) for o in config.get("options") or [] if isinstance(o, dict)]


def _relation_target(prop: SchemaProperty, version: str) -> str | None:
    config = prop.relation or {}
    key = "data_source_id" if version == "2025-09-03" else "database_id"
    target = config.get(key)
    return str(target) if target else None


def _listing(schema: Mapping[str, SchemaProperty]) -> str:
    shown = [f"{p.name} ({p.type})" for p in list(schema.values())[:_LISTED]]
    more = len(schema) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _either(types: tuple[str, ...]) -> str:
    return types[0] if len(types) == 1 else ", ".join(types[:-1]) + f" or {types[-1]}"

"""Each property type an objectives database uses, read through the connection's mapping:
every role set to a property of another type than the defaults (select, checkbox, formula
of each result type, rollup of numbers and of dates, rich text), the expected fields written
out from the simulator's own page values; and a missing or mistyped property named."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from kpi_pipelines.sandbox.notion import Page
from kpi_pipelines_tests.integrations.notion.world import NotionWorld
from kpi_pipelines_tests.run_results import failure_message


def _notes(world: NotionWorld, page: Page) -> list[Page]:
    [notion] = world.sandbox.workspaces.values()
    return notion.related(page, "Notes")


def _text(value: Any) -> str:
    return "".join(value)


# mapping -> the fields each objective should have, from its page values
Expected = Callable[[NotionWorld, Page], dict[str, Any]]

MAPPINGS: dict[str, tuple[dict[str, Any], Expected]] = {
    "select status, number formula, number rollup, rich text owner, date formula": (
        {
            "status": "Quarter",
            "done": ["2025-Q4"],
            "progress": "Attainment",
            "value": "Effort",
            "owner": "Summary",
            "due": "Next review",
        },
        lambda world, page: {
            "status": page.values["Quarter"],
            "done": page.values["Quarter"] == "2025-Q4",
            "progress": round(page.values["Current"] / page.values["Target"], 4),
            "value": sum(n.values["Hours"] for n in _notes(world, page)),
            "owner": _text(page.values["Summary"]),
            "due": (
                (page.values["Due"][0] - timedelta(days=7)).isoformat()
                if page.values["Due"]
                else None
            ),
        },
    ),
    "checkbox status, select owner, date rollup, count rollup": (
        {"status": "Committed", "owner": "Quarter", "due": "Last note", "value": "Note count"},
        lambda world, page: {
            "status": "checked" if page.values["Committed"] else "unchecked",
            "done": page.values["Committed"],
            "owner": page.values["Quarter"],
            "due": max(n.values["Date"][0] for n in _notes(world, page)).isoformat(),
            "value": float(len(_notes(world, page))),
        },
    ),
    "string formula status": (
        {"status": "Health", "done": ["on track"]},
        lambda world, page: {
            "status": (
                "on track"
                if page.values["Status"] in ("In progress", "Done")
                else "needs attention"
            ),
            "done": page.values["Status"] in ("In progress", "Done"),
        },
    ),
    "boolean formula status": (
        {"status": "Stretch"},
        lambda world, page: {
            "status": "true" if page.values["Target"] > 100 else "false",
            "done": page.values["Target"] > 100,
        },
    ),
}


@pytest.mark.parametrize("mapping", MAPPINGS, ids=list(MAPPINGS))
def test_each_role_reads_a_property_of_another_type(notion: NotionWorld, mapping: str) -> None:
    properties, expected = MAPPINGS[mapping]
    acme = notion.board("Acme", objectives=7, notes_per_objective=2)
    notion.connect("acme", acme, properties=properties)
    result = notion.sync("acme")
    assert result.success, failure_message(result)
    day = notion.sandbox.clock.now().date()
    points = notion.points("acme")
    pages = acme.notion.pages_of(acme.board.objectives)
    assert len(pages) == 7
    for page in pages:
        value, meta = points[("objective_progress", day, page.id)]
        fields = expected(notion, page)
        if "progress" in fields:
            assert value == pytest.approx(min(1.0, fields.pop("progress")), abs=1e-6)
        assert {k: meta[k] for k in fields} == fields, page.values
    completed = sum(bool(expected(notion, p)["done"]) for p in pages)
    assert points[("objectives_completed", day, None)][0] == completed


@pytest.mark.parametrize(
    ("properties", "named"),
    [
        ({"due": "Deadline"}, ["Deadline", "due"]),  # no such property
        ({"progress": "Tags"}, ["Tags", "progress", "multi_select"]),  # not a number
    ],
)
def test_a_missing_or_mistyped_property_fails_naming_it_and_stores_nothing(
    notion: NotionWorld, properties: dict[str, str], named: list[str]
) -> None:
    acme = notion.board("Acme", objectives=3)
    notion.connect("acme", acme, properties=properties)
    result = notion.sync("acme")
    assert not result.success
    message = failure_message(result)
    for word in named:
        assert word in message, message
    assert notion.points("acme") == {}

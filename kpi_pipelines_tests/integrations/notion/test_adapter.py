"""Notion through the real pipeline: sandbox over HTTP -> pages landed -> metrics in SQL ->
kpi_data, and the notes asset downstream. Every expected number comes from the board's own
record of the truth (okrs.py), never from what the pipeline computed."""

from __future__ import annotations

import pytest

from kpi_pipelines.sandbox.notion import V2022, V2025, BoardTruth
from kpi_pipelines_tests.integrations.notion.world import NotionWorld
from kpi_pipelines_tests.run_results import failure_message


def assert_matches_truth(world: NotionWorld, workspace_id: str, truth: BoardTruth, day) -> None:
    points = world.points(workspace_id)
    assert points[("objectives_total", day, None)][0] == truth.objectives_total
    assert points[("objectives_completed", day, None)][0] == truth.objectives_completed
    assert points[("objective_progress", day, None)][0] == pytest.approx(
        truth.objective_progress, abs=1e-6
    )
    per_objective = {
        objective: (value, meta)
        for (metric, d, objective), (value, meta) in points.items()
        if metric == "objective_progress" and d == day and objective is not None
    }
    assert per_objective.keys() == truth.objectives.keys()
    for objective_id, expected in truth.objectives.items():
        value, meta = per_objective[objective_id]
        assert value == pytest.approx(expected.progress, abs=1e-6)
        assert meta["title"] == expected.title
        assert meta["status"] == expected.status
        assert meta["done"] == expected.done
        assert meta["owner"] == expected.owner
        assert meta["due"] == (expected.due.isoformat() if expected.due else None)
        assert meta["value"] == expected.value
        assert meta["target"] == expected.target


@pytest.mark.parametrize("version", [V2025, V2022])
def test_a_first_sync_lands_every_objective_and_matches_the_boards_truth(
    notion: NotionWorld, version: str
) -> None:
    acme = notion.board("Acme", objectives=9)
    notion.connect("acme", acme, notion_version=version)
    result = notion.sync("acme")
    assert result.success, failure_message(result)
    day = notion.sandbox.clock.now().date()
    assert_matches_truth(notion, "acme", acme.board.truth(), day)
    assert notion.sandbox.stats.versions.keys() == {version}

"""Notion syncs over time: queries paged at 100, the rate limit's 429 waited out as its
Retry-After says, edits read incrementally with an overlap, trashed objectives leaving the
snapshot and coming back restored, each day equal to the board's own record, and two
workspaces that never see each other's objectives or notes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta

import pytest

from kpi_pipelines.sandbox.notion import V2022, V2025, BoardTruth, RateLimit
from kpi_pipelines_tests.integrations.notion.test_adapter import assert_matches_truth
from kpi_pipelines_tests.integrations.notion.world import NotionWorld, served_world
from kpi_pipelines_tests.run_results import failure_message

QUERY = "POST /v1/data_sources/query"


def test_a_board_of_more_than_a_page_is_read_page_after_page(notion: NotionWorld) -> None:
    acme = notion.board("Acme", objectives=230, notes_per_objective=0)
    notion.connect("acme", acme)
    result = notion.sync("acme")
    assert result.success, failure_message(result)
    assert_matches_truth(notion, "acme", acme.board.truth(), notion.sandbox.clock.now().date())
    # 230 pages at 100 a page, for the edited pages and for the roll call of live ones;
    # and one page of each for the (empty) notes database
    assert notion.sandbox.stats.requests[QUERY] == 2 * 3 + 2 * 1


@pytest.fixture
def throttled(warehouse, dagster_instance, monkeypatch) -> Iterator[NotionWorld]:
    """Notion at 4 requests a second: a sync of a few pages and their notes runs into it."""
    yield from served_world(
        warehouse,
        dagster_instance,
        monkeypatch,
        rate_limit=RateLimit(requests=4, per=timedelta(seconds=1)),
    )


def test_the_rate_limit_is_waited_out_as_retry_after_says(throttled: NotionWorld) -> None:
    acme = throttled.board("Acme", objectives=4, notes_per_objective=1)
    throttled.connect("acme", acme)
    result = throttled.sync("acme", backoff_base_seconds=0.01)
    assert result.success, failure_message(result)
    stats = throttled.sandbox.stats
    assert stats.throttled > 0  # the limit was met ...
    assert stats.early_retries == 0  # ... and never retried before its Retry-After
    assert_matches_truth(
        throttled, "acme", acme.board.truth(), throttled.sandbox.clock.now().date()
    )
    assert len(throttled.notes("acme")) == 4 * 2


def test_an_edit_shown_at_its_minute_before_the_cursor_is_read_by_the_next_sync(
    notion: NotionWorld,
) -> None:
    """Notion rounds last_edited_time down to the minute: an edit 20 seconds after a sync
    began shows as made before it; the overlap reads it again."""
    acme = notion.board("Acme", objectives=3, notes_per_objective=0)
    notion.connect("acme", acme)
    clock = notion.sandbox.clock
    clock.advance(seconds=10)
    assert notion.sync("acme").success
    page = acme.notion.pages_of(acme.board.objectives)[0]
    clock.advance(seconds=20)
    acme.notion.update(page, Current=page.values["Target"], Status="Done", Progress=1.0)
    assert page.last_edited_time < clock.now() - timedelta(seconds=20)
    clock.advance(hours=1)
    assert notion.sync("acme").success
    day = clock.now().date()
    assert_matches_truth(notion, "acme", acme.board.truth(), day)
    assert notion.points("acme")[("objective_progress", day, page.id)][1]["done"] is True


@pytest.mark.parametrize("version", [V2025, V2022])
def test_a_trashed_objective_leaves_the_snapshot_and_a_restored_one_comes_back(
    notion: NotionWorld, version: str
) -> None:
    acme = notion.board("Acme", objectives=5, notes_per_objective=0)
    notion.connect("acme", acme, notion_version=version)
    clock = notion.sandbox.clock
    assert notion.sync("acme").success
    page = acme.notion.pages_of(acme.board.objectives)[2]
    clock.advance(hours=24)
    acme.notion.trash(page)
    assert notion.sync("acme").success
    day = clock.now().date()
    assert acme.board.truth().objectives_total == 4
    assert_matches_truth(notion, "acme", acme.board.truth(), day)
    clock.advance(hours=24)
    acme.notion.restore(page)
    assert notion.sync("acme").success
    assert_matches_truth(notion, "acme", acme.board.truth(), clock.now().date())
    assert notion.points("acme")[("objectives_total", clock.now().date(), None)][0] == 5


def test_each_day_of_a_living_board_equals_its_record(notion: NotionWorld) -> None:
    """The board moves on its own each morning (progress, trashes, restores two days
    later, new objectives, edited notes); one sync each evening; every day's points equal
    what the board recorded at that day's end."""
    acme = notion.board("Acme", objectives=10, notes_per_objective=1, evolve=True, seed=3)
    notion.connect("acme", acme)
    clock = notion.sandbox.clock
    start = clock.now().date()
    days = [start + timedelta(days=n) for n in range(1, 9)]
    for day in days:
        clock.advance_to(datetime.combine(day, time(18, 0), UTC))
        result = notion.sync("acme")
        assert result.success, failure_message(result)
    clock.advance_to(datetime.combine(days[-1] + timedelta(days=1), time(1, 0), UTC))
    acme.board.catch_up()
    for day in days:
        assert_matches_truth(notion, "acme", acme.board.daily[day], day)
    assert _left_and_came_back(acme.board.daily, days)


def _left_and_came_back(daily: dict[date, BoardTruth], days: list[date]) -> bool:
    """Whether some objective was in the snapshot, left it, and was in it again."""
    seen: dict[str, list[bool]] = {}
    for day in days:
        for objective in set().union(*(daily[d].objectives for d in days)):
            seen.setdefault(objective, []).append(objective in daily[day].objectives)
    return any(
        present[i] and not present[j] and present[k]
        for present in seen.values()
        for i in range(len(present))
        for j in range(i + 1, len(present))
        for k in range(j + 1, len(present))
    )


def test_two_workspaces_never_see_each_others_objectives_or_notes(notion: NotionWorld) -> None:
    acme = notion.board("Acme", objectives=4, notes_per_objective=1)
    globex = notion.board("Globex", objectives=6, notes_per_objective=2, seed=9)
    notion.connect("acme", acme)
    notion.connect("globex", globex)
    assert notion.sync("acme").success
    assert notion.sync("globex").success
    day = notion.sandbox.clock.now().date()
    assert_matches_truth(notion, "acme", acme.board.truth(), day)
    assert_matches_truth(notion, "globex", globex.board.truth(), day)
    acme_pages, globex_pages = set(acme.notion.pages), set(globex.notion.pages)
    assert {page for page, _ in notion.notes("acme")} <= acme_pages
    assert {page for page, _ in notion.notes("globex")} <= globex_pages
    assert len(notion.notes("acme")) == 4 * 2 and len(notion.notes("globex")) == 6 * 3
    assert set(notion.landed("acme")).isdisjoint(globex_pages)
    assert set(notion.landed("globex")).isdisjoint(acme_pages)

"""The kit's call budgets on the simulated clock: fixed windows aligned to the epoch
(LinkedIn's daily limits) or opened by the first call (X's 15-minute windows), rolling
windows with a penalty (Meta's usage and blocks), and the figures each platform renders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kpi_pipelines.sandbox.kit import CallBudget, SimClock

START = datetime(2025, 6, 15, 12, 3, 20, tzinfo=UTC)


def test_a_window_opened_by_the_first_call_resets_from_it() -> None:
    clock = SimClock(START)
    budget = CallBudget(clock, limit=3, window=timedelta(minutes=15), aligned=False)
    assert budget.peek("18ce54").remaining == 3
    clock.advance(minutes=2)  # looking does not open the window
    first = budget.charge("18ce54")
    reset = int(START.timestamp()) + 17 * 60
    assert (first.allowed, first.limit, first.remaining, first.reset_at) == (True, 3, 2, reset)
    budget.charge("18ce54")
    assert budget.charge("18ce54").remaining == 0
    refused = budget.charge("18ce54")
    assert (refused.allowed, refused.remaining, refused.reset_at) == (False, 0, reset)
    assert refused.seconds_to_regain == 15 * 60
    assert budget.charge("18ce55").allowed  # another key has its own budget
    clock.advance_to(reset)
    again = budget.charge("18ce54")
    assert (again.allowed, again.remaining, again.reset_at) == (True, 2, reset + 15 * 60)


def test_a_daily_window_turns_at_midnight_utc() -> None:
    clock = SimClock(START)
    budget = CallBudget(clock, limit=100, window=timedelta(days=1))
    budget.exhaust("app")
    refused = budget.charge("app")
    midnight = datetime(2025, 6, 16, tzinfo=UTC)
    assert (refused.allowed, refused.reset_at) == (False, int(midnight.timestamp()))
    clock.advance_to(midnight - timedelta(seconds=1))
    assert not budget.charge("app").allowed
    clock.advance(seconds=1)
    assert budget.charge("app").allowed


def test_a_rolling_window_regains_as_old_calls_leave_and_a_penalty_outlasts_it() -> None:
    clock = SimClock(START)
    budget = CallBudget(
        clock, limit=4, window=timedelta(hours=1), rolling=True, penalty=timedelta(minutes=50)
    )
    for _ in range(4):
        usage = budget.charge(("app", "act_1"))
        clock.advance(minutes=10)
    assert (usage.allowed, usage.percent) == (True, 100)
    refused = budget.charge(("app", "act_1"))  # at 12:43: the 12:03 call leaves at 13:03
    assert (refused.allowed, refused.percent) == (False, 100)
    assert refused.minutes_to_regain == 50  # the penalty, longer than the 20 minutes
    clock.advance(minutes=25)
    assert not budget.charge(("app", "act_1")).allowed  # still blocked
    assert budget.peek(("app", "act_1")).percent == 75  # yet usage decays
    clock.advance(minutes=25)
    assert budget.charge(("app", "act_1")).allowed


def test_a_rolling_window_without_penalty_says_when_the_oldest_call_leaves() -> None:
    clock = SimClock(START)
    budget = CallBudget(clock, limit=2, window=timedelta(hours=1), rolling=True)
    budget.charge()
    clock.advance(minutes=30)
    budget.charge()
    refused = budget.charge()
    assert refused.seconds_to_regain == 30 * 60
    assert refused.minutes_to_regain == 30


def test_costs_and_others_usage_count_against_the_limit() -> None:
    clock = SimClock(START)
    budget = CallBudget(clock, limit=10, window=timedelta(hours=1), rolling=True)
    budget.use("act_1", 6)  # a dashboard used some
    assert budget.charge("act_1", cost=3).percent == 90
    refused = budget.charge("act_1", cost=3)
    assert not refused.allowed and refused.used == 9  # a refused call costs nothing
    assert budget.charge("act_1", cost=1).allowed
    budget.reset()
    assert budget.peek("act_1").used == 0


def test_a_budget_needs_a_limit_and_a_window() -> None:
    with pytest.raises(ValueError, match="limit of 1 or more"):
        CallBudget(SimClock(START), limit=0, window=timedelta(hours=1))
    with pytest.raises(ValueError, match="positive window"):
        CallBudget(SimClock(START), limit=1, window=timedelta(0))

"""Meta's async report runs through the real pipeline: a run that fails, is skipped, is too
big or outlives the deadline is split by days and asked again; one that fails even for a
single day fails the sync, keeping the windows already stored."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kpi_pipelines.sandbox.kit import Outcome
from kpi_pipelines_tests.integrations.meta_ads.conftest import MetaWorld, expected
from kpi_pipelines_tests.run_results import everything_the_run_left, failure_message, metadata

RECENT = {"history_days": 40}


def complete(meta: MetaWorld, workspace: str, account) -> None:
    today = account.local_day()
    assert meta.stored(workspace) == pytest.approx(
        expected(account, today - timedelta(days=39), today)
    )


@pytest.mark.parametrize("outcome", [Outcome.fail(), Outcome.skip()], ids=["failed", "skipped"])
def test_a_failed_or_skipped_run_is_split_by_days(meta: MetaWorld, outcome: Outcome) -> None:
    account = meta.workspace("acme", "1001")
    meta.sandbox.jobs.script(outcome)
    result = meta.sync("acme", RECENT)
    assert result.success, failure_message(result)
    shown = metadata(result)
    assert shown["report_job_splits"] == 1 and shown["report_jobs"] == 4 + 2  # its halves
    [split] = shown["report_job_splits_named"]
    assert "by_campaign_day" in split and "split into" in split
    # ... and logged, as the run's warning.
    assert f"meta_ads: {split}" in everything_the_run_left(meta.instance, result.run_id)
    complete(meta, "acme", account)


def test_a_run_too_big_for_meta_is_split_until_it_fits(meta: MetaWorld) -> None:
    account = meta.workspace("acme", "1001")
    meta.sandbox.jobs.max_size = 6 * 8  # campaign-days: a window of 31 days fails
    result = meta.sync("acme", RECENT)
    assert result.success, failure_message(result)
    assert metadata(result)["report_job_splits"] >= 3
    complete(meta, "acme", account)


def test_a_run_past_the_deadline_is_split(meta: MetaWorld) -> None:
    account = meta.workspace("acme", "1001")
    meta.sandbox.jobs.script(Outcome.stall())
    result = meta.sync("acme", RECENT, job_deadline_seconds=0.5)
    assert result.success, failure_message(result)
    [split] = metadata(result)["report_job_splits_named"]
    assert "still running 0.5 s after it started" in split
    complete(meta, "acme", account)


def test_a_run_failing_for_one_day_fails_the_sync_keeping_earlier_windows(meta: MetaWorld) -> None:
    account = meta.workspace("acme", "1001")
    bad = account.local_day() - timedelta(days=3)
    meta.sandbox.jobs.script(*[Outcome.fail()] * 20, match=lambda q: q.since <= bad <= q.until)
    result = meta.sync("acme", RECENT)
    assert not result.success
    message = failure_message(result)
    assert "meta_ads could not run the by_campaign_day report" in message
    assert (
        f"{bad.isoformat()}..{bad.isoformat()}" in message and "cannot be split further" in message
    )
    stored = meta.stored("acme")
    assert stored and max(day for _, day, _ in stored) < account.local_day() - timedelta(days=8)

"""Meta's throttles through the real pipeline: HTTP 400 with codes 4, 17, 613, 80000 and
80004 are retried (never taken for a bad request), waiting what the usage headers say; a
quota that stays spent ends the sync cleanly, saying when access returns, and the next sync
resumes from what was stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kpi_pipelines.sandbox.meta import THROTTLES
from kpi_pipelines_tests.integrations.meta_ads.conftest import MetaWorld, expected
from kpi_pipelines_tests.run_results import failure_message, metadata

RECENT = {"history_days": 40}


@pytest.mark.parametrize("code", sorted(THROTTLES))
def test_each_throttle_code_is_retried_not_taken_for_a_bad_request(
    meta: MetaWorld, code: int
) -> None:
    account = meta.workspace("acme", "1001")
    for api in ("account", "campaigns", "insights", "report_runs"):
        meta.sandbox.throttle(code, account="1001", api=api, times=2)
    result = meta.sync("acme", RECENT)
    assert result.success, failure_message(result)
    assert metadata(result)["http_retries"] == 8
    today = account.local_day()
    assert meta.stored("acme") == pytest.approx(
        expected(account, today - timedelta(days=39), today)
    )


def test_a_wait_the_account_usage_header_gives_is_honoured(meta: MetaWorld) -> None:
    meta.workspace("acme", "1001")
    meta.sandbox.throttle(17, account="1001", api="insights", seconds=2)
    result = meta.sync("acme", RECENT)
    assert result.success
    assert metadata(result)["http_seconds_waited"] >= 2  # reset_time_duration, not a backoff
    assert metadata(result)["http_retries"] == 1


def test_a_quota_spent_for_longer_than_the_patience_ends_the_sync_cleanly(meta: MetaWorld) -> None:
    account = meta.workspace("acme", "1001")
    # The first window's report runs go through; later, a report run's creation is refused
    # for 7 minutes (the BUC header's estimate), past the adapter's patience.
    meta.sandbox.throttle(80000, account="1001", api="insights", after=4, minutes=7)
    started = datetime.now(UTC)
    result = meta.sync("acme", RECENT, throttle_patience_seconds=120)
    assert result.success  # not a failed run: the sync stopped and says why
    [stopped] = metadata(result)["errors"]
    assert stopped.startswith("meta_ads quota is exhausted: HTTP 400: (#80000)")
    retry_at = datetime.strptime(stopped.split("Retry after ")[1][:19], "%Y-%m-%d %H:%M:%S")
    assert retry_at.replace(tzinfo=UTC) >= started + timedelta(minutes=7) - timedelta(seconds=1)
    assert "What was read is stored (by_campaign_day through" in stopped
    first = meta.stored("acme")
    today = account.local_day()
    truth = expected(account, today - timedelta(days=39), today)
    assert first and first == pytest.approx({k: truth[k] for k in first})  # whole windows only

    resumed = meta.sync("acme")  # the quota is back: the next sync finishes the range
    assert resumed.success and metadata(resumed)["errors"] == []
    assert meta.stored("acme") == pytest.approx(truth)


def test_a_spent_hourly_insights_quota_stops_until_the_hour_frees_it(meta: MetaWorld) -> None:
    account = meta.workspace("acme", "1001")
    meta.sandbox.insights_calls.exhaust("1001")
    result = meta.sync("acme", RECENT)
    [stopped] = metadata(result)["errors"]
    assert result.success and "meta_ads quota is exhausted" in stopped
    assert meta.stored("acme") == {}
    meta.sandbox.clock.advance(minutes=61)
    assert meta.sync("acme", RECENT).success
    today = account.local_day()
    assert meta.stored("acme") == pytest.approx(
        expected(account, today - timedelta(days=39), today)
    )


def test_a_bad_request_is_not_retried(meta: MetaWorld) -> None:
    meta.workspace("acme", "1001")
    meta.sandbox.faults.storm(1, 400, api="insights")  # code 100: Invalid parameter
    result = meta.sync("acme", RECENT)
    assert not result.success
    assert "meta_ads rejected the request (HTTP 400)" in failure_message(result)


def test_a_usage_header_claiming_years_is_believed_for_a_day_at_most(meta: MetaWorld) -> None:
    meta.workspace("acme", "1001")
    meta.sandbox.throttle(80004, account="1001", api="campaigns", minutes=10**9)
    started = datetime.now(UTC)
    result = meta.sync("acme", RECENT)
    [stopped] = metadata(result)["errors"]
    retry_at = datetime.strptime(stopped.split("Retry after ")[1][:19], "%Y-%m-%d %H:%M:%S")
    assert retry_at.replace(tzinfo=UTC) <= started + timedelta(days=1, minutes=1)

"""The report engine on its own: toy ad providers (report_toys/, a plugin package named by
KPI_PROVIDER_PACKAGES), their own loopback API with its own truth, through the real Dagster
asset and the real PostgreSQL.

What an ad platform needs of the engine: requests cut to the provider's limits (days, ids,
metrics) and merged per day and campaign; a lookback per report that restates recent days
(audited, unchanged days writing nothing); the account's own time zone for windows, cursors
and days; campaigns as an entity stream that names the points, renames included; async
jobs polled until done, read from a gzip file or pages, split when they fail or outlive
their deadline, down to a minimum and then a clear failure; a spent quota that stops a sync
mid-jobs cleanly and resumes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
from pydantic import BaseModel

from kpi_pipelines.demo import materialize_provider
from kpi_pipelines.integrations.shared.base_adapter import SyncContext
from kpi_pipelines.integrations.shared.engines.report import (
    Entities,
    Query,
    Report,
    ReportEngine,
    ReportJobs,
    ReportScope,
    Window,
)
from kpi_pipelines.integrations.shared.errors import ProviderError
from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.warehouse.control import (
    Connection,
    Workspace,
    add_connection,
    add_workspace,
    get_connection,
    get_workspace,
    secret_namespace,
)
from kpi_pipelines.warehouse.database import Warehouse
from kpi_pipelines.warehouse.tenant_data import load_cursor, read_points
from kpi_pipelines_tests.integrations.shared.report_toys.adapter import (
    CAMPAIGNS,
    KPI_METRICS,
    ToyAdJobsAdapter,
    ToyAdsAdapter,
    stats_report,
    toy_spec,
)
from kpi_pipelines_tests.integrations.shared.report_toys.simulator import KEY, ToyAdsWorld
from kpi_pipelines_tests.run_results import failure_message, metadata

PACKAGE = "kpi_pipelines_tests.integrations.shared.report_toys"
SYNC, JOBS = "toy_ads", "toy_ad_jobs"
ADAPTERS = {SYNC: ToyAdsAdapter, JOBS: ToyAdJobsAdapter}

Stored = dict[tuple[str, date, str], float]


@dataclass
class ToyAds:
    world: ToyAdsWorld
    warehouse: Warehouse
    instance: dg.DagsterInstance
    monkeypatch: pytest.MonkeyPatch

    def connect(self, workspace_id: str, provider: str, **settings: Any) -> None:
        add_workspace(self.warehouse, Workspace(id=workspace_id, name=workspace_id))
        variable = f"{secret_namespace(workspace_id)}TOY_KEY"
        self.monkeypatch.setenv(variable, KEY)
        add_connection(
            self.warehouse,
            Connection(
                workspace_id=workspace_id,
                provider=provider,
                settings=settings,
                secret_env={"api_key": variable},
            ),
        )

    def sync(
        self,
        workspace_id: str,
        provider: str,
        run_config: dict[str, Any] | None = None,
        **tunables: Any,
    ) -> dg.ExecuteInProcessResult:
        adapter = ADAPTERS[provider](**tunables)
        return materialize_provider(
            self.warehouse, self.instance, provider, workspace_id, run_config, adapter=adapter
        )

    def stored(self, workspace_id: str, provider: str) -> Stored:
        return {
            (p.metric, p.timestamp.date(), p.dimensions["campaign_id"]): p.value
            for p in read_points(self.warehouse, workspace_id, source=provider)
        }

    def truth(self, first: date, last: date) -> Stored:
        """What the platform says each campaign did each day (its own record)."""
        expected: Stored = {}
        day = first
        while day <= last:
            for campaign_id in self.world.campaigns:
                done = self.world.truth(campaign_id, day)
                for field, (metric, factor) in KPI_METRICS.items():
                    if done is not None:
                        expected[(metric, day, campaign_id)] = done[field] * factor
            day += timedelta(days=1)
        return expected

    def cursor(self, workspace_id: str, provider: str) -> dict[str, Any] | None:
        with self.warehouse.tenant(workspace_id, actor="test") as db:
            return load_cursor(db, provider, "stats")

    def days_asked(self) -> set[date]:
        return {day for ask in self.world.stats_asked for day in ask.days} | {
            day for job in self.world.jobs.values() for day in job.ask.days
        }


@pytest.fixture
def toys(warehouse, dagster_instance, monkeypatch) -> Iterator[ToyAds]:
    monkeypatch.setenv("KPI_PROVIDER_PACKAGES", PACKAGE)
    world = ToyAdsWorld()
    world.add_campaigns(5, paused=("c5",))
    with LoopbackServer(world.app()) as server:
        for provider in ADAPTERS:
            monkeypatch.setenv(f"KPI_{provider.upper()}_BASE_URL", server.base_url)
        yield ToyAds(world, warehouse, dagster_instance, monkeypatch)


def assert_stored_is_the_truth(toys: ToyAds, provider: str, first: date, last: date) -> None:
    stored, truth = toys.stored("ws-a", provider), toys.truth(first, last)
    assert stored.keys() == truth.keys()
    for key, value in truth.items():
        assert stored[key] == pytest.approx(value), key


# --- synchronous requests cut to the provider's limits --------------------------------------


def test_a_window_is_asked_for_in_requests_cut_to_the_limits_and_merged_per_day_and_campaign(
    toys,
) -> None:
    toys.connect("ws-a", SYNC)
    result = toys.sync("ws-a", SYNC, {"history_days": 10})
    assert result.success, failure_message(result)
    today = toys.world.today
    assert_stored_is_the_truth(toys, SYNC, today - timedelta(days=9), today)
    # The platform refuses more than 7 days, 2 campaigns or 2 metrics a request; none was
    # refused. 10 days in 7 and 3, five campaigns in 2, 2 and 1, four metrics in 2 and 2.
    asked = toys.world.stats_asked
    assert not toys.world.refused
    assert len(asked) == 2 * 3 * 2
    assert sorted({len(a.days) for a in asked}) == [3, 7]
    assert sorted({a.ids for a in asked}) == [("c1", "c2"), ("c3", "c4"), ("c5",)]
    assert sorted({a.metrics for a in asked}) == [
        ("impressions", "clicks"),
        ("spend_micro", "conversions"),
    ]
    # Rows of one day and campaign from the two metric requests are one row: four points
    # each (c5 is paused: null arrays, no rows), and every point names its campaign.
    points = read_points(toys.warehouse, "ws-a", source=SYNC)
    assert len(points) == 4 * 4 * 10
    assert {(p.dimensions["campaign_id"], p.metadata["campaign_name"]) for p in points} == {
        (f"c{n}", f"Campaign {n}") for n in range(1, 5)
    }
    run = metadata(result)
    assert run["entities"] == {"campaigns": {"listed": 5, "changed": 5}}
    assert run["points_naming_unlisted_entities"] == 0


# --- lookback, restatement, audit ----------------------------------------------------------


def test_each_sync_rereads_the_reports_lookback_and_writes_only_what_the_platform_restated(
    toys,
) -> None:
    toys.connect("ws-a", SYNC)
    assert toys.sync("ws-a", SYNC, {"history_days": 10}).success
    before = toys.stored("ws-a", SYNC)
    toys.world.restatement += 1  # attribution moves the last 3 days' numbers
    toys.world.stats_asked.clear()
    result = toys.sync("ws-a", SYNC)
    assert result.success, failure_message(result)
    today = toys.world.today
    # The cursor (today) minus the report's 3-day lookback, nothing older.
    assert toys.days_asked() == {today - timedelta(days=n) for n in range(4)}
    assert_stored_is_the_truth(toys, SYNC, today - timedelta(days=9), today)
    after = toys.stored("ws-a", SYNC)
    changed = {key: (before[key], after[key]) for key in after if before[key] != after[key]}
    assert changed and {day for _, day, _ in changed} == {
        today - timedelta(days=n) for n in range(3)
    }
    # Only the changed values were written; the re-read day that did not change wrote nothing.
    run = metadata(result)
    assert run["points_written"] == len(changed)
    assert run["points_unchanged"] == 4 * 4 * 4 - len(changed)
    with toys.warehouse.tenant("ws-a", actor="test") as db:
        audited = db.execute(
            sa.text(
                'SELECT metric, "timestamp", dimensions_key, old_value, new_value FROM audit_log'
                " WHERE action = 'update'"
            )
        ).all()
    assert {
        (r.metric, r.timestamp.date(), json.loads(r.dimensions_key)["campaign_id"]): (
            r.old_value,
            r.new_value,
        )
        for r in audited
    } == changed
    assert len(audited) == len(changed)


# --- the account's time zone ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "now", "today"),
    [
        # 05:00 on 9 March in Tokyo while UTC is still on the 8th.
        ("Asia/Tokyo", datetime(2026, 3, 8, 20, tzinfo=UTC), date(2026, 3, 9)),
        # 23:00 on 8 March in Los Angeles (UTC already on the 9th), the day clocks went
        # forward: the window's first midnight is at -08:00, its end at -07:00.
        ("America/Los_Angeles", datetime(2026, 3, 9, 6, tzinfo=UTC), date(2026, 3, 8)),
    ],
)
def test_windows_cursors_and_days_are_the_accounts_own(toys, zone, now, today) -> None:
    toys.world.time_zone, toys.world.now = zone, now
    toys.connect("ws-a", SYNC)
    result = toys.sync("ws-a", SYNC, {"history_days": 3})
    assert result.success, failure_message(result)
    # The platform accepts only windows from one midnight of its zone to another: none was
    # refused, and the days asked are the account's.
    assert not toys.world.refused
    assert toys.days_asked() == {today - timedelta(days=n) for n in range(3)}
    assert_stored_is_the_truth(toys, SYNC, today - timedelta(days=2), today)
    points = read_points(toys.warehouse, "ws-a", source=SYNC)
    assert max(p.timestamp for p in points) == datetime.combine(today, datetime.min.time(), UTC)
    assert {p.metadata["time_zone"] for p in points} == {zone}
    assert toys.cursor("ws-a", SYNC) == {
        "account_id": "acct-1",
        "synced_through": today.isoformat(),
        "time_zone": zone,
    }


def test_a_window_spans_whole_hours_of_the_account_and_xs_rule_takes_todays_offset() -> None:
    scope = ReportScope.in_zone(
        "toy",
        identity={},
        time_zone="America/Los_Angeles",
        label="toy account",
        now=datetime(2026, 3, 9, 20, tzinfo=UTC),
    )
    assert scope.today == date(2026, 3, 9)
    query = Query(Window(date(2026, 3, 7), date(2026, 3, 8)))
    start, end = query.span(scope)
    assert (start.isoformat(), end.isoformat()) == (
        "2026-03-07T00:00:00-08:00",
        "2026-03-09T00:00:00-07:00",
    )
    # X: "the offset of the current day, not of the day in question".
    start, end = query.span(scope, todays_offset=True)
    assert (start.isoformat(), end.isoformat()) == (
        "2026-03-07T00:00:00-07:00",
        "2026-03-09T00:00:00-07:00",
    )
    assert [day.isoformat() for day in query.days()] == ["2026-03-07", "2026-03-08"]


# --- entities ------------------------------------------------------------------------------


def test_campaigns_are_their_own_stream_naming_the_points_and_a_rename_shows_next_sync(
    toys,
) -> None:
    toys.connect("ws-a", SYNC)
    assert toys.sync("ws-a", SYNC, {"history_days": 10}).success
    toys.world.campaigns["c1"]["name"] = "Spring sale"
    toys.world.campaigns["c2"]["status"] = "LEARNING"
    result = toys.sync("ws-a", SYNC)
    assert result.success, failure_message(result)
    assert metadata(result)["entities"] == {"campaigns": {"listed": 5, "changed": 2}}
    # The landed copies are the platform's now.
    with toys.warehouse.tenant("ws-a", actor="test") as db:
        landed = dict(
            db.execute(
                sa.text(
                    "SELECT record_id, payload FROM raw_records WHERE source = :source"
                    " AND stream = 'campaigns'"
                ),
                {"source": SYNC},
            ).all()
        )
    assert landed == toys.world.campaigns
    # The days this sync read name c1 by its new name and c2 by its new status; older
    # points keep what was true when they were read.
    today = toys.world.today
    reread = today - timedelta(days=3)
    for point in read_points(toys.warehouse, "ws-a", source=SYNC):
        campaign = point.dimensions["campaign_id"]
        if point.timestamp.date() >= reread:
            assert point.metadata["campaign_name"] == toys.world.campaigns[campaign]["name"]
            assert point.metadata["campaign_status"] == toys.world.campaigns[campaign]["status"]
        else:
            assert point.metadata["campaign_name"] == f"Campaign {campaign[1:]}"
            assert point.metadata["campaign_status"] == "ACTIVE"


def test_an_entity_list_longer_than_its_bound_fails_the_sync(toys) -> None:
    """The toy's engine with campaigns bounded to 3 (its spec says 50,000), run on the
    connected adapter over HTTP as the asset runs it."""
    engine = ReportEngine(
        reports=(stats_report(max_days=7, max_ids=2, max_metrics=2),),
        entities=(replace(CAMPAIGNS, max_count=3),),
    )
    toys.connect("ws-a", SYNC)
    with toys.warehouse.control() as db:
        workspace = get_workspace(db, "ws-a")
        connection = get_connection(db, "ws-a", SYNC)
    adapter = ToyAdsAdapter()
    adapter.connect(SyncContext(toys.warehouse, workspace, connection, run_id="bounded"))
    try:
        with pytest.raises(ProviderError, match="lists more than 3 campaigns, the most one sync"):
            engine.sync(adapter)
    finally:
        adapter.disconnect()
    assert not toys.world.stats_asked  # nothing was asked of the reports


# --- async jobs ----------------------------------------------------------------------------


@pytest.mark.parametrize("job_result", ["file", "pages"])
def test_async_jobs_are_polled_until_done_and_their_results_read(toys, job_result) -> None:
    # Each job answers PROCESSING twice, asking to be asked again no sooner than 50 ms
    # later (the platform refuses a poll that comes sooner).
    toys.world.polls_to_finish, toys.world.retry_after = 3, 0.05
    toys.connect("ws-a", JOBS, job_result=job_result)
    result = toys.sync("ws-a", JOBS, {"history_days": 10})
    assert result.success, failure_message(result)
    assert not toys.world.refused  # no early poll, and no credentials sent to the file host
    today = toys.world.today
    assert_stored_is_the_truth(toys, JOBS, today - timedelta(days=9), today)
    # One window; five campaigns in jobs of 2, 2 and 1, two of them running at once.
    assert [job.ask.ids for job in toys.world.jobs.values()] == [
        ("c1", "c2"),
        ("c3", "c4"),
        ("c5",),
    ]
    assert all(job.polls == 3 for job in toys.world.jobs.values())
    assert toys.world.most_jobs_running == 2
    run = metadata(result)
    assert (run["report_jobs"], run["report_job_splits"]) == (3, 0)
    assert run["report_job_seconds_waited"] > 0


def test_a_failed_job_is_split_by_window_until_its_parts_succeed(toys) -> None:
    toys.world.campaigns = {c: toys.world.campaigns[c] for c in ("c1", "c2")}
    toys.world.fails = lambda ask: len(ask.days) > 2  # too big for the platform
    toys.connect("ws-a", JOBS)
    result = toys.sync("ws-a", JOBS, {"history_days": 8})
    assert result.success, failure_message(result)
    today = toys.world.today
    assert_stored_is_the_truth(toys, JOBS, today - timedelta(days=7), today)
    # 8 days fail, then 4 and 4, then four jobs of 2 days succeed.
    assert [len(job.ask.days) for job in toys.world.jobs.values()] == [8, 4, 4, 2, 2, 2, 2]
    run = metadata(result)
    assert (run["report_jobs"], run["report_job_splits"]) == (7, 3)
    first = today - timedelta(days=7)
    assert run["report_job_splits_named"][0] == (
        f"stats {first}..{today}, 2 id(s): job job-1 failed; split into"
        f" {first}..{first + timedelta(days=3)}, 2 id(s) and"
        f" {first + timedelta(days=4)}..{today}, 2 id(s)"
    )


def test_a_failed_job_of_an_odd_number_of_days_is_split_in_two(toys) -> None:
    toys.world.campaigns = {c: toys.world.campaigns[c] for c in ("c1", "c2")}
    toys.world.fails = lambda ask: len(ask.days) > 2
    toys.connect("ws-a", JOBS)
    result = toys.sync("ws-a", JOBS, {"history_days": 7})
    assert result.success, failure_message(result)
    today = toys.world.today
    assert_stored_is_the_truth(toys, JOBS, today - timedelta(days=6), today)
    # 7 days: 4 and 3 (never three parts), then 2 and 2, 2 and 1.
    assert sorted(len(job.ask.days) for job in toys.world.jobs.values()) == [1, 2, 2, 2, 3, 4, 7]


def test_a_job_that_outlives_its_deadline_is_cancelled_and_split(toys) -> None:
    toys.world.campaigns = {c: toys.world.campaigns[c] for c in ("c1", "c2")}
    toys.world.stalls = lambda ask: len(ask.days) > 4  # runs for ever
    toys.connect("ws-a", JOBS)
    result = toys.sync("ws-a", JOBS, {"history_days": 8}, job_deadline_seconds=0.5)
    assert result.success, failure_message(result)
    today = toys.world.today
    assert_stored_is_the_truth(toys, JOBS, today - timedelta(days=7), today)
    jobs = list(toys.world.jobs.values())
    assert [(len(job.ask.days), job.cancelled) for job in jobs] == [
        (8, True),
        (4, False),
        (4, False),
    ]
    run = metadata(result)
    assert (run["report_jobs"], run["report_job_splits"]) == (3, 1)
    assert "job job-1 was still running 0.5 s after it started" in run["report_job_splits_named"][0]


def test_a_job_that_fails_at_the_smallest_split_fails_the_sync_keeping_earlier_windows(
    toys,
) -> None:
    toys.world.campaigns = {c: toys.world.campaigns[c] for c in ("c1", "c2")}
    today = toys.world.today
    toys.world.fails = lambda ask: today in ask.days  # today's numbers cannot be had
    toys.connect("ws-a", JOBS)
    result = toys.sync("ws-a", JOBS, {"history_days": 4}, window_days=2)
    assert not result.success
    # Window 1 (4 and 3 days ago) is stored; window 2 split by days, then today's by ids,
    # down to one day and one campaign, which fails too.
    message = failure_message(result)
    assert message.startswith(
        f"toy_ad_jobs could not run the stats report for {today}..{today}, 1 id(s)"
        " (toy ad account acct-1): the job job-5 failed, and it cannot be split further"
        " (2 split(s) of this window before it)."
    ), message
    assert "This window is not stored (earlier ones are)" in message
    assert [(len(j.ask.days), j.ask.ids) for j in toys.world.jobs.values()] == [
        (2, ("c1", "c2")),
        (2, ("c1", "c2")),
        (1, ("c1", "c2")),
        (1, ("c1", "c2")),
        (1, ("c1",)),
        (1, ("c2",)),  # two jobs run at once
    ]
    assert {day for _, day, _ in toys.stored("ws-a", JOBS)} == {
        today - timedelta(days=3),
        today - timedelta(days=2),
    }
    assert toys.cursor("ws-a", JOBS)["synced_through"] == (today - timedelta(days=2)).isoformat()


def test_a_spent_quota_stops_the_sync_mid_jobs_cleanly_and_the_next_one_resumes(toys) -> None:
    toys.world.campaigns = {c: toys.world.campaigns[c] for c in ("c1", "c2")}
    toys.connect("ws-a", JOBS)
    # The account, the campaigns, window 1's job (create, poll, file), then window 2's job
    # is created and its first poll meets the spent quota (a 429 for an hour).
    toys.world.requests_left = 2 + 3 + 1
    result = toys.sync("ws-a", JOBS, {"history_days": 6}, window_days=2)
    assert result.success, failure_message(result)  # a stop, not a failed run
    today = toys.world.today
    window_1_end = today - timedelta(days=4)
    run = metadata(result)
    assert run["success"] is False
    [stop] = run["errors"]
    assert "toy_ad_jobs quota is exhausted" in stop and "Retry after" in stop
    assert f"(stats through {window_1_end}); the next sync resumes from there" in stop
    assert toys.cursor("ws-a", JOBS)["synced_through"] == window_1_end.isoformat()
    assert_stored_is_the_truth(toys, JOBS, today - timedelta(days=5), window_1_end)

    toys.world.requests_left = None  # the quota is back
    result = toys.sync("ws-a", JOBS)
    assert result.success and metadata(result)["success"] is True
    # From the cursor minus the 3-day lookback.
    assert_stored_is_the_truth(toys, JOBS, window_1_end - timedelta(days=3), today)


# --- declarations ---------------------------------------------------------------------------


class Thing(BaseModel):
    id: str
    name: str


def test_declarations_say_what_is_missing_before_any_sync() -> None:
    with pytest.raises(ValueError, match="declare the row_key"):
        Report("r", ("day",), ("a", "b", "c"), max_metrics=2)
    with pytest.raises(ValueError, match="max_ids needs ids_from"):
        Report("r", ("day",), ("a",), max_ids=20)
    with pytest.raises(ValueError, match="not a declared entity stream"):
        ReportEngine(reports=(stats_report(),))
    with pytest.raises(ValueError, match="fields \\['title'\\]"):
        Entities("things", Thing, dimension="thing_id", metadata={"thing_title": "title"})
    # An adapter without the hooks its declared jobs need fails when the spec is made.
    with pytest.raises(TypeError, match="ToyAdsAdapter does not implement start_job, poll_job"):
        toy_spec("toy_ads", "", ToyAdsAdapter, stats_report(jobs=ReportJobs()))

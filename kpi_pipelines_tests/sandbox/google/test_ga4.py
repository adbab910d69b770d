"""GA4 Data API runReport: shapes (official client + discovery schema), paging, truth, time
zones, restatement, quotas, validation."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from googleapiclient.errors import HttpError

from kpi_pipelines.sandbox.google import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_PROPERTY_ID,
    DEMO_REFRESH_TOKEN,
    GoogleSandbox,
    WebMetrics,
)
from kpi_pipelines.sandbox.google.ga4 import CHANNELS, METRIC_TYPES
from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines_tests.sandbox.google.conftest import ga4_client, serve, small_demo
from kpi_pipelines_tests.sandbox.google.discovery import assert_conforms

PROPERTY = f"properties/{DEMO_PROPERTY_ID}"
WEB_METRICS = ["sessions", "totalUsers", "newUsers", "engagedSessions", "keyEvents"]


@pytest.fixture(scope="module")
def big() -> Iterator[tuple[GoogleSandbox, LoopbackServer]]:
    """The full demo property (240 days of history), read-only: no test may move its clock."""
    sandbox = GoogleSandbox.demo()
    with serve(sandbox) as server:
        yield sandbox, server


def _report(client: Any, prop: str = PROPERTY, **body: Any) -> dict[str, Any]:
    response = client.properties().runReport(property=prop, body=body).execute()
    assert_conforms("analyticsdata.v1beta", "RunReportResponse", response)
    return response


def _rows(response: dict[str, Any]) -> dict[tuple[str, ...], list[str]]:
    return {
        tuple(v["value"] for v in row.get("dimensionValues", [])): [
            v["value"] for v in row["metricValues"]
        ]
        for row in response.get("rows", [])
    }


def _as_strings(truth: WebMetrics) -> list[str]:
    return [
        str(truth.sessions),
        str(truth.total_users),
        str(truth.new_users),
        str(truth.engaged_sessions),
        str(truth.key_events),
    ]


def _token(server: LoopbackServer) -> str:
    form = {
        "grant_type": "refresh_token",
        "client_id": DEMO_CLIENT_ID,
        "client_secret": DEMO_CLIENT_SECRET,
        "refresh_token": DEMO_REFRESH_TOKEN,
    }
    return httpx.post(server.url("/token"), data=form).json()["access_token"]


def _post(server: LoopbackServer, token: str, body: dict, prop: str = DEMO_PROPERTY_ID):
    return httpx.post(
        server.url(f"/v1beta/properties/{prop}:runReport"),
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


@pytest.fixture(scope="module")
def small() -> Iterator[LoopbackServer]:
    """A small demo sandbox for tests that only read (validation, limits)."""
    with serve(small_demo()) as server:
        yield server


# -- conformance -----------------------------------------------------------------------------
def test_report_shapes_conform_to_the_discovery_document(
    big: tuple[GoogleSandbox, LoopbackServer],
) -> None:
    sandbox, server = big
    client = ga4_client(server)
    full = _report(
        client,
        dateRanges=[{"startDate": "7daysAgo", "endDate": "yesterday"}],
        dimensions=[{"name": "date"}, {"name": "sessionDefaultChannelGroup"}],
        metrics=[{"name": m} for m in METRIC_TYPES if m != "userEngagementDuration"],
        metricAggregations=["TOTAL", "MAXIMUM", "MINIMUM"],
        returnPropertyQuota=True,
        limit="50",
    )
    assert [h["name"] for h in full["dimensionHeaders"]] == ["date", "sessionDefaultChannelGroup"]
    types = {h["name"]: h["type"] for h in full["metricHeaders"]}
    assert types["sessions"] == "TYPE_INTEGER"
    assert types["engagementRate"] == "TYPE_FLOAT"
    assert types["averageSessionDuration"] == "TYPE_SECONDS"
    assert len(full["rows"]) == 50 and full["rowCount"] > 50
    assert full["kind"] == "analyticsData#runReport"
    assert full["metadata"]["timeZone"] == "America/Los_Angeles"
    assert full["metadata"]["currencyCode"] == "USD"
    assert full["totals"][0]["dimensionValues"] == [{"value": "RESERVED_TOTAL"}] * 2
    assert full["maximums"][0]["dimensionValues"][0] == {"value": "RESERVED_MAX"}
    assert full["minimums"][0]["dimensionValues"][0] == {"value": "RESERVED_MIN"}
    quota = full["propertyQuota"]
    assert quota["concurrentRequests"] == {"remaining": 10}
    assert quota["tokensPerHour"]["consumed"] >= 1
    for row in full["rows"]:
        assert len(row["dimensionValues"]) == 2 and len(row["metricValues"]) == 10
        assert all(isinstance(v["value"], str) for v in row["metricValues"])

    ranges = _report(
        client,
        dateRanges=[
            {"startDate": "14daysAgo", "endDate": "8daysAgo"},
            {"startDate": "7daysAgo", "endDate": "yesterday", "name": "last_week"},
        ],
        metrics=[{"name": "sessions"}],
        metricAggregations=["TOTAL"],
    )
    assert ranges["dimensionHeaders"] == [{"name": "dateRange"}]
    assert {row["dimensionValues"][0]["value"] for row in ranges["rows"]} == {
        "date_range_0",
        "last_week",
    }
    assert [t["dimensionValues"][0]["value"] for t in ranges["totals"]] == [
        "date_range_0",
        "last_week",
    ]

    no_dimensions = _report(
        client,
        dateRanges=[{"startDate": "yesterday", "endDate": "yesterday"}],
        metrics=[{"name": "sessions"}],
    )
    assert "dimensionHeaders" not in no_dimensions
    assert list(no_dimensions["rows"][0]) == ["metricValues"]

    # An empty report: no rows and (proto3 JSON omits zeros) no rowCount.
    future = (sandbox.now() + timedelta(days=30)).date().isoformat()
    empty = _report(
        client,
        dateRanges=[{"startDate": future, "endDate": future}],
        dimensions=[{"name": "date"}],
        metrics=[{"name": "sessions"}],
    )
    assert "rows" not in empty and "rowCount" not in empty
    assert empty["metadata"]["timeZone"] == "America/Los_Angeles"


def test_paging_past_ten_thousand_rows(big: tuple[GoogleSandbox, LoopbackServer]) -> None:
    sandbox, server = big
    prop = sandbox.ga4.property(DEMO_PROPERTY_ID)
    start, end = prop.start_date, prop.today() - timedelta(days=1)
    body = {
        "dateRanges": [{"startDate": start.isoformat(), "endDate": "yesterday"}],
        "dimensions": [{"name": "date"}, {"name": "sessionSourceMedium"}],
        "metrics": [{"name": "sessions"}],
    }
    client = ga4_client(server)
    rows: list[dict[str, Any]] = []
    offset, row_count, pages = 0, None, []
    while row_count is None or offset < row_count:
        page = _report(client, **body, offset=str(offset))  # limit defaults to 10,000
        row_count = page["rowCount"]
        pages.append(len(page.get("rows", [])))
        rows.extend(page.get("rows", []))
        offset += len(page["rows"])
    assert row_count > 10_000
    assert pages[0] == 10_000 and sum(pages) == row_count and len(pages) == 2
    keys = [tuple(v["value"] for v in row["dimensionValues"]) for row in rows]
    assert len(set(keys)) == row_count
    truth = sandbox.truth_by_date(DEMO_PROPERTY_ID, start, end)
    assert sum(int(row["metricValues"][0]["value"]) for row in rows) == sum(
        t.sessions for t in truth.values()
    )


def test_reports_match_the_truth_and_users_do_not_add_up(
    big: tuple[GoogleSandbox, LoopbackServer],
) -> None:
    sandbox, server = big
    prop = sandbox.ga4.property(DEMO_PROPERTY_ID)
    end = prop.today()
    start = end - timedelta(days=13)
    client = ga4_client(server)
    ranges = [{"startDate": start.isoformat(), "endDate": "today"}]
    metrics = [{"name": m} for m in WEB_METRICS] + [{"name": "engagementRate"}]
    by_date = _rows(
        _report(
            client,
            dateRanges=ranges,
            dimensions=[{"name": "date"}],
            metrics=metrics,
            metricAggregations=["TOTAL"],
        )
    )
    by_channel = _rows(
        _report(
            client,
            dateRanges=ranges,
            dimensions=[{"name": "date"}, {"name": "sessionDefaultChannelGroup"}],
            metrics=metrics,
        )
    )
    truth_date = sandbox.truth_by_date(DEMO_PROPERTY_ID, start, end)
    truth_channel = sandbox.truth_by_date_channel(DEMO_PROPERTY_ID, start, end)
    assert {k[0] for k in by_date} == {d.strftime("%Y%m%d") for d in truth_date}
    for day, metrics_ in truth_date.items():
        values = by_date[(day.strftime("%Y%m%d"),)]
        assert values[:5] == _as_strings(metrics_)
        assert float(values[5]) == pytest.approx(metrics_.engagement_rate)
    assert len(by_channel) == len(truth_channel)
    for (day, channel), metrics_ in truth_channel.items():
        assert by_channel[(day.strftime("%Y%m%d"), channel)][:5] == _as_strings(metrics_)

    # totalUsers is not additive: users come back through several channels on one day...
    summed: Counter[date] = Counter()
    for (day, _), metrics_ in truth_channel.items():
        summed[day] += metrics_.total_users
    assert all(summed[d] >= m.total_users for d, m in truth_date.items())
    assert sum(summed[d] > m.total_users for d, m in truth_date.items()) >= 10
    # ...and sessions are, which checks the truth against the raw sessions.
    for day, metrics_ in truth_date.items():
        sessions = prop.sessions(day, day)
        assert metrics_.sessions == len(sessions)
        assert metrics_.total_users == len({s.user for s in sessions})
        assert metrics_.new_users == sum(s.new_user for s in sessions)

    # `totals` span the whole range: distinct users over 14 days, not a sum of days.
    everyone = {s.user for s in prop.sessions(start, end)}
    overall = _report(
        client,
        dateRanges=ranges,
        dimensions=[{"name": "date"}],
        metrics=[{"name": "totalUsers"}],
        metricAggregations=["TOTAL"],
    )
    assert overall["totals"][0]["metricValues"][0]["value"] == str(len(everyone))
    assert len(everyone) < sum(m.total_users for m in truth_date.values())


def test_ordering_and_dimension_filters(big: tuple[GoogleSandbox, LoopbackServer]) -> None:
    _, server = big
    client = ga4_client(server)
    week = [{"startDate": "7daysAgo", "endDate": "yesterday"}]
    default = _report(
        client, dateRanges=week, dimensions=[{"name": "date"}], metrics=[{"name": "sessions"}]
    )
    sessions = [int(r["metricValues"][0]["value"]) for r in default["rows"]]
    assert sessions == sorted(sessions, reverse=True)  # first metric, descending
    by_date = _report(
        client,
        dateRanges=week,
        dimensions=[{"name": "date"}],
        metrics=[{"name": "sessions"}],
        orderBys=[{"dimension": {"dimensionName": "date"}}],
    )
    dates = [r["dimensionValues"][0]["value"] for r in by_date["rows"]]
    assert dates == sorted(dates) and len(dates) == 7
    filtered = _report(
        client,
        dateRanges=week,
        dimensions=[{"name": "sessionDefaultChannelGroup"}],
        metrics=[{"name": "sessions"}],
        dimensionFilter={
            "orGroup": {
                "expressions": [
                    {
                        "filter": {
                            "fieldName": "sessionDefaultChannelGroup",
                            "stringFilter": {"matchType": "BEGINS_WITH", "value": "organic"},
                        }
                    },
                    {
                        "filter": {
                            "fieldName": "sessionSourceMedium",
                            "inListFilter": {"values": ["(direct) / (none)"]},
                        }
                    },
                ]
            }
        },
    )
    channels = {r["dimensionValues"][0]["value"] for r in filtered["rows"]}
    assert channels == {"Organic Search", "Organic Social", "Organic Video", "Direct"}


# -- time zones, restatement ---------------------------------------------------------------------
def test_dates_are_in_the_property_time_zone() -> None:
    # 03:00 UTC on June 15th is still June 14th in Los Angeles, already June 15th in Tokyo.
    sandbox = small_demo(start=datetime(2025, 6, 15, 3, 0, tzinfo=UTC))
    for prop_id, zone in (("1001", "America/Los_Angeles"), ("1002", "UTC"), ("1003", "Asia/Tokyo")):
        sandbox.add_property(prop_id, time_zone=zone, daily_sessions=0)
        prop = sandbox.ga4.property(prop_id)
        # 23:30 on June 10th in Los Angeles is 06:30 UTC and 15:30 in Tokyo on June 11th.
        prop.add_session(
            datetime(2025, 6, 10, 23, 30, tzinfo=ZoneInfo("America/Los_Angeles")),
            channel="Email",
        )
        prop.add_session(datetime(2025, 6, 15, 2, 30, tzinfo=UTC), channel="Direct")
    expected = {
        "1001": ("20250610", "20250614"),
        "1002": ("20250611", "20250615"),
        "1003": ("20250611", "20250615"),
    }
    with serve(sandbox) as server:
        client = ga4_client(server)
        for prop_id, (late_evening, today) in expected.items():
            report = _report(
                client,
                f"properties/{prop_id}",
                dateRanges=[{"startDate": "2025-06-09", "endDate": "2025-06-12"}],
                dimensions=[{"name": "date"}, {"name": "sessionDefaultChannelGroup"}],
                metrics=[{"name": "sessions"}],
            )
            assert _rows(report) == {(late_evening, "Email"): ["1"]}
            assert report["metadata"]["timeZone"] == sandbox.ga4.property(prop_id).time_zone
            now = _report(
                client,
                f"properties/{prop_id}",
                dateRanges=[{"startDate": "today", "endDate": "today"}],
                dimensions=[{"name": "date"}],
                metrics=[{"name": "sessions"}],
            )
            assert _rows(now) == {(today,): ["1"]}
            truth = sandbox.truth_by_date_channel(prop_id, date(2025, 6, 9), date(2025, 6, 12))
            assert [(d.strftime("%Y%m%d"), c) for d, c in truth] == [(late_evening, "Email")]


def test_restatement_follows_the_clock_and_the_truth_moves_with_it() -> None:
    sandbox = small_demo()
    prop = sandbox.ga4.property(DEMO_PROPERTY_ID)
    with serve(sandbox) as server:
        client = ga4_client(server)
        today = prop.today()
        span = [
            {"startDate": (today - timedelta(days=6)).isoformat(), "endDate": today.isoformat()}
        ]

        def snapshot() -> dict[tuple[str, ...], list[str]]:
            return _rows(
                _report(
                    client,
                    dateRanges=span,
                    dimensions=[{"name": "date"}, {"name": "sessionDefaultChannelGroup"}],
                    metrics=[{"name": m} for m in WEB_METRICS],
                    limit=1000,
                )
            )

        before_at = sandbox.now()
        before = snapshot()
        sandbox.advance(hours=24)
        after = snapshot()
    start, end = today - timedelta(days=6), today
    for rows, at in ((before, before_at), (after, sandbox.now())):
        truth = sandbox.truth_by_date_channel(DEMO_PROPERTY_ID, start, end, as_of=at)
        assert rows == {(d.strftime("%Y%m%d"), c): _as_strings(m) for (d, c), m in truth.items()}
    changed = {key[0] for key in set(before) | set(after) if before.get(key) != after.get(key)}
    # Today filled up, and yesterday and the day before were restated by late hits...
    for back in (0, 1, 2):
        assert (today - timedelta(days=back)).strftime("%Y%m%d") in changed
    # ...while days older than the 48 h processing window stayed as they were.
    assert all(day >= (today - timedelta(days=3)).strftime("%Y%m%d") for day in changed)
    # `final` gives what a day will settle at, whatever the clock.
    final = sandbox.truth_by_date(DEMO_PROPERTY_ID, start, end, as_of=before_at, final=True)
    seen = sandbox.truth_by_date(DEMO_PROPERTY_ID, start, end, as_of=before_at)
    yesterday = today - timedelta(days=1)
    assert final[yesterday].sessions > seen[yesterday].sessions


def test_subject_to_thresholding_and_keep_empty_rows() -> None:
    sandbox = small_demo()
    prop = sandbox.add_property("2002", daily_sessions=0)
    day = prop.today() - timedelta(days=3)
    prop.add_session(datetime.combine(day, datetime.min.time(), prop.tz) + timedelta(hours=9))
    with serve(sandbox) as server:
        client = ga4_client(server)
        span = [
            {
                "startDate": (day - timedelta(days=1)).isoformat(),
                "endDate": (day + timedelta(days=1)).isoformat(),
            }
        ]
        users = _report(
            client,
            "properties/2002",
            dateRanges=span,
            dimensions=[{"name": "date"}],
            metrics=[{"name": "totalUsers"}],
        )
        assert users["metadata"]["subjectToThresholding"] is True
        assert users["rowCount"] == 1
        sessions = _report(
            client,
            "properties/2002",
            dateRanges=span,
            dimensions=[{"name": "date"}],
            metrics=[{"name": "sessions"}],
            keepEmptyRows=True,
        )
        assert "subjectToThresholding" not in sessions["metadata"]
        assert sorted(_rows(sessions).values()) == [["0"], ["0"], ["1"]]


# -- quotas ------------------------------------------------------------------------------------
def test_concurrent_requests_quota() -> None:
    sandbox = small_demo()
    prop = sandbox.ga4.property(DEMO_PROPERTY_ID)
    prop.latency = 0.8
    prop.quota.concurrent_requests = 2
    body = {
        "dateRanges": [{"startDate": "yesterday", "endDate": "yesterday"}],
        "metrics": [{"name": "sessions"}],
    }
    with serve(sandbox) as server:
        token = _token(server)
        _post(server, token, body)  # simulate before the race
        with ThreadPoolExecutor(max_workers=5) as pool:
            responses = list(pool.map(lambda _: _post(server, token, body), range(5)))
        statuses = Counter(r.status_code for r in responses)
        # Two run at once; the others find both slots taken (however the threads interleave,
        # at least one of the five arrives while two are in flight).
        assert statuses[200] >= 2 and statuses[429] >= 1 and sum(statuses.values()) == 5
        refused = next(r for r in responses if r.status_code == 429)
        assert refused.json() == {
            "error": {
                "code": 429,
                "message": "Exhausted concurrent requests quota.",
                "status": "RESOURCE_EXHAUSTED",
            }
        }
        assert _post(server, token, body).status_code == 200  # clears once requests finish
        prop.latency = 0
        sandbox.ga4.script_quota_error(DEMO_PROPERTY_ID, "concurrent")
        with pytest.raises(HttpError) as caught:
            _report(ga4_client(server), **body)
        assert caught.value.resp.status == 429
        assert caught.value.reason == "Exhausted concurrent requests quota."


def test_hourly_token_quota_and_property_quota_countdown() -> None:
    sandbox = small_demo()
    body = {
        "dateRanges": [{"startDate": "28daysAgo", "endDate": "yesterday"}],
        "dimensions": [{"name": "date"}],
        "metrics": [{"name": "sessions"}],
        "returnPropertyQuota": True,
    }
    with serve(sandbox) as server:
        client = ga4_client(server)
        first = _report(client, **body)["propertyQuota"]
        second = _report(client, **body)["propertyQuota"]
        cost = first["tokensPerHour"]["consumed"]
        assert first["tokensPerHour"]["remaining"] == 40_000 - cost
        assert second["tokensPerHour"]["remaining"] == 40_000 - 2 * cost
        assert second["tokensPerDay"]["remaining"] == 200_000 - 2 * cost
        assert second["tokensPerProjectPerHour"]["remaining"] == 14_000 - 2 * cost

        sandbox.ga4.exhaust(DEMO_PROPERTY_ID, "hourly")
        with pytest.raises(HttpError) as caught:
            _report(client, **body)
        assert caught.value.resp.status == 429
        error = httpx.post(
            server.url(f"/v1beta/properties/{DEMO_PROPERTY_ID}:runReport"),
            json=body,
            headers={"Authorization": f"Bearer {_token(server)}"},
        ).json()["error"]
        assert error["status"] == "RESOURCE_EXHAUSTED"
        assert error["message"] == (
            "Exhausted property tokens per hour. These quota tokens will return in under an hour."
        )
        # The next hour brings the hourly tokens back; the day's stay used.
        sandbox.advance(hours=1)
        quota = _report(client, **body)["propertyQuota"]
        assert quota["tokensPerHour"]["remaining"] == 40_000 - cost
        assert quota["tokensPerDay"]["remaining"] < 200_000 - 40_000

        sandbox.ga4.script_quota_error(DEMO_PROPERTY_ID, "daily")
        with pytest.raises(HttpError, match="tokens per day"):
            _report(client, **body)


# -- validation ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"metrics": [{"name": "pageviews"}]}, "Field pageviews is not a valid metric."),
        ({"metrics": [{"name": "conversions"}]}, "Field conversions is not a valid metric."),
        ({"dimensions": [{"name": "channel"}]}, "Field channel is not a valid dimension."),
        ({"dateRanges": [{"startDate": "2025-13-01", "endDate": "today"}]}, "Invalid startDate"),
        ({"dateRanges": [{"startDate": "today", "endDate": "yesterday"}]}, "is after its endDate"),
        ({"dateRanges": []}, "A date range is required"),
        ({"limit": "-5"}, "limit must be positive"),
        ({"limit": "ten"}, "Invalid value at 'limit' (TYPE_INT64)"),
        ({"metrics": []}, "At least one dimension or metric must be specified."),
        ({"rowLimit": 5}, 'Invalid JSON payload received. Unknown name "rowLimit"'),
    ],
)
def test_invalid_requests_are_400(small: LoopbackServer, body: dict, message: str) -> None:
    server = small
    request = {
        "dateRanges": [{"startDate": "yesterday", "endDate": "yesterday"}],
        "metrics": [{"name": "sessions"}],
        **body,
    }
    response = _post(server, _token(server), request)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and error["code"] == 400
    assert message in error["message"]


def test_limits_accept_strings_numbers_and_snake_case(small: LoopbackServer) -> None:
    server = small
    token = _token(server)
    base = {
        "date_ranges": [{"start_date": "7daysAgo", "end_date": "yesterday"}],
        "dimensions": [{"name": "date"}],
        "metrics": [{"name": "sessions"}],
    }
    assert len(_post(server, token, {**base, "limit": "3"}).json()["rows"]) == 3
    assert len(_post(server, token, {**base, "limit": 2}).json()["rows"]) == 2
    assert len(_post(server, token, {**base, "limit": 10**9}).json()["rows"]) == 7  # capped


def test_conversions_can_be_aliased_to_key_events(
    server: LoopbackServer, sandbox: GoogleSandbox
) -> None:
    sandbox.ga4.legacy_conversions = "alias"
    body = {
        "dateRanges": [{"startDate": "7daysAgo", "endDate": "yesterday"}],
        "metrics": [{"name": "conversions"}, {"name": "keyEvents"}],
    }
    report = _report(ga4_client(server), **body)
    assert [h["name"] for h in report["metricHeaders"]] == ["conversions", "keyEvents"]
    values = report["rows"][0]["metricValues"]
    assert values[0] == values[1] and int(values[0]["value"]) > 0


def test_unknown_property_is_403(small: LoopbackServer) -> None:
    with pytest.raises(HttpError) as caught:
        _report(
            ga4_client(small),
            "properties/999",
            dateRanges=[{"startDate": "today", "endDate": "today"}],
            metrics=[{"name": "sessions"}],
        )
    assert caught.value.resp.status == 403
    assert "sufficient permissions for this property" in caught.value.reason


def test_channels_cover_the_default_channel_groups() -> None:
    names = {c.name for c in CHANNELS}
    assert {"Organic Search", "Direct", "Referral", "Paid Search", "Email"} <= names

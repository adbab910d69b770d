"""The simulator's wire behaviour, as Meta documents it: throttles as HTTP 400 with their
codes and usage headers, token errors, cursor paging with next links, overlapping action
types, archived campaigns left out, async report runs, and what Meta refuses."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest

from kpi_pipelines.sandbox.kit import Outcome
from kpi_pipelines.sandbox.kit.ads import ConversionRule, ScriptedConversions
from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.sandbox.meta import THROTTLES, MetaSandbox, create_meta_app
from kpi_pipelines_tests.sandbox.meta.conftest import ACCOUNT, Graph


def span(graph: Graph, days: int, back: int = 0) -> str:
    last = graph.account.local_day() - timedelta(days=back)
    return json.dumps(
        {"since": (last - timedelta(days=days - 1)).isoformat(), "until": last.isoformat()}
    )


@pytest.mark.parametrize("code", sorted(THROTTLES))
def test_throttles_are_http_400_with_meta_codes_and_usage_headers(graph: Graph, code: int) -> None:
    graph.sandbox.throttle(code, account=ACCOUNT, minutes=7, seconds=42)
    answer = graph.get(f"act_{ACCOUNT}/insights")
    error = answer.json()["error"]
    assert answer.status_code == 400
    assert (error["code"], error["error_subcode"], error["is_transient"]) == (
        code,
        THROTTLES[code][0],
        True,
    )
    assert error["type"] == "OAuthException" and error["fbtrace_id"]
    if code in (80000, 80004):
        [usage] = json.loads(answer.headers["x-business-use-case-usage"])[ACCOUNT]
        assert usage["type"] == THROTTLES[code][2] and usage["estimated_time_to_regain_access"] == 7
    if code in (17, 613):
        account = json.loads(answer.headers["x-ad-account-usage"])
        assert account["acc_id_util_pct"] == 100 and account["reset_time_duration"] == 42
    if code == 4:
        assert json.loads(answer.headers["x-fb-ads-insights-throttle"])["app_id_util_pct"] == 100
    assert graph.get(f"act_{ACCOUNT}/insights").status_code == 200  # once


def test_spent_quotas_refuse_with_their_codes_and_say_when_access_returns() -> None:
    sandbox = MetaSandbox(score_limit=3, insights_calls_per_hour=100, app_calls_per_second=50)
    sandbox.add_account(ACCOUNT, campaigns=1)
    token = sandbox.issue_token(ACCOUNT)
    with (
        LoopbackServer(create_meta_app(sandbox)) as server,
        httpx.Client(base_url=server.base_url, params={"access_token": token}) as http,
    ):
        first = http.get(f"/v21.0/act_{ACCOUNT}/insights")
        assert json.loads(first.headers["x-ad-account-usage"])["acc_id_util_pct"] == 33
        [buc] = json.loads(first.headers["x-business-use-case-usage"])[ACCOUNT]
        assert (buc["type"], buc["call_count"]) == ("ads_insights", 1)
        for _ in range(2):
            assert http.get(f"/v21.0/act_{ACCOUNT}").status_code == 200
        blocked = http.get(f"/v21.0/act_{ACCOUNT}")
        assert blocked.json()["error"]["code"] == 17
        assert json.loads(blocked.headers["x-ad-account-usage"])["reset_time_duration"] == 300
        sandbox.clock.advance(minutes=6)
        sandbox.insights_calls.exhaust(ACCOUNT)
        spent = http.get(f"/v21.0/act_{ACCOUNT}/insights")
        assert spent.json()["error"]["code"] == 80000
        [buc] = json.loads(spent.headers["x-business-use-case-usage"])[ACCOUNT]
        assert buc["estimated_time_to_regain_access"] == 54  # the first call leaves the hour
        sandbox.clock.advance(minutes=60)
        sandbox.app_load.exhaust()  # type: ignore[union-attr]
        assert http.get(f"/v21.0/act_{ACCOUNT}/insights").json()["error"]["code"] == 4


def test_token_errors_are_meta_oauth_exceptions(graph: Graph) -> None:
    assert graph.http.get(f"/v21.0/act_{ACCOUNT}").json()["error"]["code"] == 104
    unknown = graph.http.get(f"/v21.0/act_{ACCOUNT}", params={"access_token": "EAAGnope"}).json()
    assert (unknown["error"]["code"], unknown["error"].get("error_subcode")) == (190, None)
    other = graph.sandbox.issue_token("999")
    hidden = graph.http.get(f"/v21.0/act_{ACCOUNT}", params={"access_token": other}).json()
    assert (hidden["error"]["code"], hidden["error"]["error_subcode"]) == (100, 33)
    graph.sandbox.expire_tokens_after(1)
    assert graph.get(f"act_{ACCOUNT}").status_code == 200
    expired = graph.http.get(
        f"/v21.0/act_{ACCOUNT}", headers={"Authorization": f"Bearer {graph.token}"}
    )
    error = expired.json()["error"]
    assert (expired.status_code, error["code"], error["error_subcode"]) == (400, 190, 463)
    assert "Session has expired" in error["message"] and error["type"] == "OAuthException"
    graph.sandbox.faults.revoke()
    assert graph.get(f"act_{ACCOUNT}").json()["error"]["error_subcode"] == 460


def test_lists_page_with_cursors_and_next_links(graph: Graph) -> None:
    query = {
        "level": "campaign",
        "fields": "campaign_id,spend",
        "time_range": span(graph, 20),
        "time_increment": 1,
    }
    whole = graph.get(f"act_{ACCOUNT}/insights", limit=5000, **query).json()
    assert "next" not in whole["paging"] and len(whole["data"]) > 30
    rows, answer = [], graph.get(f"act_{ACCOUNT}/insights", limit=7, **query).json()
    while True:
        rows += answer["data"]
        assert len(answer["data"]) <= 7 and answer["paging"]["cursors"]["after"]
        if "next" not in answer["paging"]:
            break
        assert graph.token in answer["paging"]["next"]  # Meta's links repeat a query token
        answer = graph.http.get(answer["paging"]["next"]).json()
    assert rows == whole["data"]
    bearer = graph.http.get(
        f"/v21.0/act_{ACCOUNT}/insights",
        params={**query, "limit": 7},
        headers={"Authorization": f"Bearer {graph.token}"},
    ).json()
    assert graph.token not in bearer["paging"]["next"]


def test_one_purchase_shows_under_overlapping_action_types(graph: Graph) -> None:
    account = graph.account
    day = account.local_day() - timedelta(days=3)
    cid = account.add_campaign("Scripted", start=day - timedelta(days=2), daily_budget=0)
    conversions = [
        ScriptedConversions("purchase", 2, "50.00", "web"),
        ScriptedConversions("purchase", 1, "30.00", "onsite"),
        ScriptedConversions("lead", 4, 0, "web"),
    ]
    account.script_day(cid, day, spend="100", impressions=5000, clicks=80, conversions=conversions)
    account.script_day(cid, day - timedelta(days=1), spend="10", impressions=400, clicks=0)
    query = {
        "level": "campaign",
        "fields": "campaign_id,spend,actions,action_values",
        "time_increment": 1,
    }
    rows = graph.get(f"act_{ACCOUNT}/insights", time_range=span(graph, 3, back=3), **query).json()[
        "data"
    ]
    mine = {r["date_start"]: r for r in rows if r["campaign_id"] == cid}
    assert list(mine) == [(day - timedelta(days=1)).isoformat(), day.isoformat()]  # no row before
    assert "actions" not in mine[(day - timedelta(days=1)).isoformat()]
    counts = {a["action_type"]: int(a["value"]) for a in mine[day.isoformat()]["actions"]}
    values = {a["action_type"]: Decimal(a["value"]) for a in mine[day.isoformat()]["action_values"]}
    assert counts["omni_purchase"] == 3 and counts["purchase"] == 2
    assert counts["offsite_conversion.fb_pixel_purchase"] == counts["onsite_web_purchase"] == 2
    assert counts["onsite_conversion.purchase"] == 1 and counts["lead"] == 4
    assert counts["link_click"] == 80
    assert sum(counts.values()) > 3 + 4  # summing the list counts one purchase several times
    assert values["omni_purchase"] == Decimal("80.00") and "lead" not in values
    assert account.truth_by_campaign_day(day, day)[(cid, day)].conversions == 3  # omni's


def test_an_account_without_omni_types_reports_purchase_alone(graph: Graph) -> None:
    account = graph.sandbox.add_account("555", omni=False, campaigns=3)
    token = graph.sandbox.issue_token("555")
    last = account.local_day()
    query = {
        "fields": "actions",
        "time_range": json.dumps(
            {"since": (last - timedelta(days=30)).isoformat(), "until": last.isoformat()}
        ),
    }
    [row] = graph.http.get(
        "/v21.0/act_555/insights", params={"access_token": token, **query}
    ).json()["data"]
    types = {a["action_type"] for a in row["actions"]}
    assert "purchase" in types and not any(t.startswith("omni_") for t in types)
    web_app_offline = ConversionRule(channels=frozenset({"web", "app", "offline"}))
    purchases = next(int(a["value"]) for a in row["actions"] if a["action_type"] == "purchase")
    assert (
        purchases
        == account.truth(last - timedelta(days=30), last, rule=web_app_offline).conversions
    )


def test_archived_campaigns_are_listed_only_when_asked_for(graph: Graph) -> None:
    cid = graph.account.campaigns()[0].id
    graph.account.set_status(cid, "archived")
    listed = {c["id"] for c in graph.get(f"act_{ACCOUNT}/campaigns", limit=100).json()["data"]}
    everything = graph.get(
        f"act_{ACCOUNT}/campaigns",
        limit=100,
        fields="name,effective_status",
        effective_status='["ACTIVE","PAUSED","ARCHIVED"]',
    ).json()["data"]
    assert cid not in listed and cid in {c["id"] for c in everything}
    assert {c["id"]: c["effective_status"] for c in everything}[cid] == "ARCHIVED"


def test_report_runs_go_through_meta_states_and_serve_the_sync_rows(graph: Graph) -> None:
    query = {
        "level": "campaign",
        "fields": "campaign_id,spend,actions",
        "time_range": span(graph, 10),
        "time_increment": 1,
    }
    run = graph.post(f"act_{ACCOUNT}/insights", **query).json()["report_run_id"]
    statuses = [graph.get(run).json()["async_status"] for _ in range(3)]
    assert statuses == ["Job Started", "Job Running", "Job Completed"]
    assert graph.get(run).json()["async_percent_completion"] == 100
    result = graph.get(f"{run}/insights", limit=5000).json()["data"]
    assert result == graph.get(f"act_{ACCOUNT}/insights", limit=5000, **query).json()["data"]
    graph.sandbox.jobs.script(Outcome.fail(after=1), Outcome.skip(after=1))
    failed = graph.post(f"act_{ACCOUNT}/insights", **query).json()["report_run_id"]
    assert graph.get(failed).json()["async_status"] == "Job Failed"
    assert graph.get(failed).json()["error_subcode"] == 2490547
    assert graph.get(f"{failed}/insights").status_code == 400
    skipped = graph.post(f"act_{ACCOUNT}/insights", **query).json()["report_run_id"]
    assert graph.get(skipped).json()["async_status"] == "Job Skipped"
    other = graph.sandbox.issue_token("999")
    assert (
        graph.http.get(f"/v21.0/{run}", params={"access_token": other}).json()["error"]["code"]
        == 100
    )


def test_what_meta_refuses(graph: Graph) -> None:
    small = MetaSandbox(max_sync_cells=50, max_job_cells=60)
    assert graph.get(f"act_{ACCOUNT}", fields="nope").json()["error"]["code"] == 100
    old = graph.account.local_day() - timedelta(days=38 * 31)
    too_old = json.dumps({"since": old.isoformat(), "until": graph.account.local_day().isoformat()})
    assert graph.get(f"act_{ACCOUNT}/insights", time_range=too_old).json()["error"]["code"] == 3018
    assert (
        graph.http.get(f"/v19.0/act_{ACCOUNT}", params={"access_token": graph.token}).json()[
            "error"
        ]["code"]
        == 2635
    )
    graph.sandbox.max_sync_cells = small.max_sync_cells
    big = {"level": "campaign", "time_range": span(graph, 30), "time_increment": 1}
    error = graph.get(f"act_{ACCOUNT}/insights", **big).json()["error"]
    assert (error["code"], error["error_subcode"]) == (100, 1487534)
    graph.sandbox.jobs.max_size = small.jobs.max_size
    run = graph.post(f"act_{ACCOUNT}/insights", **big).json()["report_run_id"]
    assert [graph.get(run).json()["async_status"] for _ in range(3)][-1] == "Job Failed"

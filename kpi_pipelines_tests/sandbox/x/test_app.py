"""X's campaigns list, async stats jobs and rate limits, as a client meets them."""

from __future__ import annotations

import gzip
import json
import time
from datetime import timedelta

import httpx

from kpi_pipelines.sandbox.kit import Outcome
from kpi_pipelines_tests.sandbox.x.conftest import ACCOUNT, XWorld

# The keys of X's own examples (the official Python SDK's fixtures, docs.x.com).
CAMPAIGN_KEYS = {
    "name", "start_time", "reasons_not_servable", "servable", "daily_budget_amount_local_micro",
    "end_time", "funding_instrument_id", "standard_delivery", "total_budget_amount_local_micro",
    "id", "entity_status", "account_id", "currency", "created_at", "updated_at", "deleted",
}  # fmt: skip
JOB_KEYS = {
    "start_time", "segmentation_type", "url", "id_str", "entity_ids", "end_time", "country",
    "placement", "id", "expires_at", "account_id", "status", "granularity", "entity",
    "created_at", "platform", "updated_at", "metric_groups",
}  # fmt: skip
ACCOUNT_KEYS = {
    "name", "timezone", "timezone_switch_at", "id", "created_at", "salt", "updated_at",
    "approval_status", "deleted",
}  # fmt: skip


def test_objects_carry_the_keys_of_xs_examples(x: XWorld) -> None:
    assert set(x.get(f"/12/accounts/{ACCOUNT}").json()["data"]) >= ACCOUNT_KEYS
    campaigns = x.get(f"/12/accounts/{ACCOUNT}/campaigns").json()
    assert campaigns["data_type"] == "campaign"
    assert all(set(c) >= CAMPAIGN_KEYS for c in campaigns["data"])
    assert {c["currency"] for c in campaigns["data"]} == {"JPY"}


def test_campaigns_page_with_a_cursor_and_hide_deleted_ones(x: XWorld) -> None:
    archived = x.account.campaigns()[0]
    x.account.set_status(archived.id, "archived")
    seen, cursor = [], None
    while True:
        params = {"count": 7, "with_deleted": "true", **({"cursor": cursor} if cursor else {})}
        page = x.get(f"/12/accounts/{ACCOUNT}/campaigns", **params).json()
        seen += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [c["id"] for c in seen] == [c.id for c in x.account.campaigns()]
    assert next(c for c in seen if c["id"] == archived.id)["deleted"] is True
    shown = x.get(f"/12/accounts/{ACCOUNT}/campaigns", count=1000).json()["data"]
    assert [c["id"] for c in shown] == [c["id"] for c in seen if not c["deleted"]]
    assert archived.id not in {c["id"] for c in shown}
    assert x.get(f"/12/accounts/{ACCOUNT}/campaigns", count=1001).status_code == 400


def job_query(x: XWorld, days: int = 60) -> dict[str, str]:
    end = x.account.day_bounds(x.account.local_day())[0]
    return {
        "entity": "CAMPAIGN",
        "entity_ids": ",".join(c.id for c in x.account.campaigns()[:20]),
        "start_time": (end - timedelta(days=days)).isoformat(),
        "end_time": end.isoformat(),
        "granularity": "DAY",
        "metric_groups": "ENGAGEMENT,BILLING,WEB_CONVERSION",
        "placement": "ALL_ON_TWITTER",
    }


def test_a_job_runs_to_a_gzip_file_of_the_stats_body_fetched_without_credentials(
    x: XWorld,
) -> None:
    path = f"/12/stats/jobs/accounts/{ACCOUNT}"
    with x.client() as client:
        created = client.post(path, params=job_query(x))
        assert created.status_code == 200
        job = created.json()["data"]
        assert set(job) >= JOB_KEYS and job["status"] == "QUEUED" and job["url"] is None
        statuses = []
        while job["status"] not in ("SUCCESS", "FAILED"):
            polled = client.get(path, params={"job_ids": job["id_str"]})
            (job,) = polled.json()["data"]
            statuses.append(job["status"])
        assert polled.headers["x-concurrent-job-limit"] == "100"
    assert statuses[-1] == "SUCCESS" and "PROCESSING" in statuses
    file = httpx.get(job["url"])  # no Authorization: the file host needs none
    body = json.loads(gzip.decompress(file.content))
    assert body["time_series_length"] == 60 and len(body["data"]) == 20
    # Its last week is what the synchronous endpoint says of that week.
    week = {**job_query(x, days=7), "entity_ids": ",".join(e["id"] for e in body["data"])}
    synchronous = x.get(f"/12/stats/accounts/{ACCOUNT}", **week).json()["data"]
    assert [last_week(e, 60) for e in body["data"]] == [last_week(e, 7) for e in synchronous]


def last_week(entry: dict, days: int) -> list[int]:
    """An entry's spend over the last 7 days of its `days` (null: nothing spent)."""
    series = entry["id_data"][0]["metrics"]["billed_charge_local_micro"]
    return (series or [0] * days)[-7:]


def test_a_scripted_job_fails_and_a_job_over_90_days_is_refused(x: XWorld) -> None:
    x.sandbox.jobs.script(Outcome.fail(after=2))
    path = f"/12/stats/jobs/accounts/{ACCOUNT}"
    with x.client() as client:
        job = client.post(path, params=job_query(x)).json()["data"]
        for _ in range(2):
            (job,) = client.get(path, params={"job_ids": job["id_str"]}).json()["data"]
        too_long = client.post(path, params=job_query(x, days=91))
    assert job["status"] == "FAILED" and job["url"] is None
    assert too_long.status_code == 400
    assert too_long.json()["errors"][0]["parameter"] == "end_time"


def test_250_stats_calls_per_15_minutes_then_429_until_the_window_turns(x: XWorld) -> None:
    params = job_query(x, days=1)
    path = f"/12/stats/accounts/{ACCOUNT}"
    x.sandbox.stats_budget.use((x.grant.token, "stats", "GET"), 249)
    with x.client() as client:
        last = client.get(path, params=params)
        spent = client.get(path, params=params)
        other = client.get(f"/12/accounts/{ACCOUNT}")  # another endpoint, another window
        assert (last.status_code, last.headers["x-rate-limit-remaining"]) == (200, "0")
        assert spent.status_code == 429 and other.status_code == 200
        assert spent.json()["errors"][0]["code"] == "TOO_MANY_REQUESTS"
        reset = int(spent.headers["x-rate-limit-reset"])
        assert 0 < reset - time.time() <= 15 * 60
        x.sandbox.clock.advance(minutes=15)
        again = client.get(path, params=params)
    assert (again.status_code, again.headers["x-rate-limit-remaining"]) == (200, "249")

"""What X does when it does not simply answer: rate limits (waited out, or a spent window
that ends the sync cleanly and resumes), async jobs that fail or stall (split), a revoked
token or a bad signature (reconnect), an account the token may not use."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from kpi_pipelines.integrations.shared.connection_settings import save_connection
from kpi_pipelines.integrations.x_ads.spec import SPEC
from kpi_pipelines.sandbox.kit import Outcome
from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.sandbox.x import create_x_app
from kpi_pipelines.warehouse.control import add_connection
from kpi_pipelines_tests.canary import leaks
from kpi_pipelines_tests.integrations.x_ads.conftest import XAdsWorld, assert_matches, truth
from kpi_pipelines_tests.run_results import everything_the_run_left, failure_message, metadata

RECONNECT = "Reconnect this workspace to x_ads"


def test_a_429_is_waited_out_until_its_reset(x: XAdsWorld) -> None:
    account = x.account("18ce54d4x5t", campaigns=8)
    x.connect("ws-a", "18ce54d4x5t")
    x.sandbox.errors.quota_reset_seconds = 2
    x.sandbox.faults.quota(1, api="stats")
    result = x.sync("ws-a", {"history_days": 5})
    assert result.success, failure_message(result)
    run = metadata(result)
    # One retry, after waiting for the reset the 429 named (not the 10 ms backoff).
    assert run["http_retries"] == 1 and run["http_seconds_waited"] >= 1
    today = account.local_day()
    assert_matches(x.stored("ws-a"), truth(account, today - timedelta(days=4), today))


def test_a_spent_window_ends_the_sync_cleanly_and_the_next_one_resumes(x: XAdsWorld) -> None:
    """250 stats calls per 15 minutes: a window spent mid-sync stops it with what was read
    and when the window returns; 15 minutes later the next sync finishes the job."""
    account = x.account("18ce54d4x5t", campaigns=30)  # 2 calls per 7-day window
    x.connect("ws-a", "18ce54d4x5t")
    key = (x.grants["ws-a"].token, "stats", "GET")
    x.sandbox.stats_budget.use(key, 248)  # others used the window: 2 calls are left
    result = x.sync("ws-a", {"history_days": 14}, window_days=7, backoff_max_seconds=5)
    assert result.success  # the run is green: stopped, not failed
    details = metadata(result)
    [stopped] = details["errors"]
    assert not details["success"] and stopped.startswith("x_ads quota is exhausted")
    assert "Retry after" in stopped and "stats through" in stopped
    today = account.local_day()
    first_week = truth(account, today - timedelta(days=13), today - timedelta(days=7))
    assert_matches(x.stored("ws-a"), first_week)
    assert "quota is exhausted" in (x.connection("ws-a").last_error or "")
    x.sandbox.clock.advance(minutes=15)
    resumed = x.sync("ws-a", window_days=7, backoff_max_seconds=5)
    assert resumed.success and metadata(resumed)["success"]
    assert_matches(x.stored("ws-a"), truth(account, today - timedelta(days=13), today))


def test_a_failed_job_is_split_and_a_stalled_one_too(x: XAdsWorld) -> None:
    """A 30-day job fails: its halves of 15 days run as jobs; one stalls past the deadline:
    its halves of 8 and 7 days run as a job and as a synchronous request."""
    account = x.account("18ce54d4x5t", campaigns=6)
    x.connect("ws-a", "18ce54d4x5t")
    x.sandbox.jobs.script(Outcome.fail(), Outcome.stall())
    result = x.sync("ws-a", {"history_days": 30}, job_deadline_seconds=0.5)
    assert result.success, failure_message(result)
    details = metadata(result)
    assert (details["report_job_splits"], details["report_jobs"]) == (2, 4)
    assert any("failed" in note for note in details["report_job_splits_named"])
    assert any("still running" in note for note in details["report_job_splits_named"])
    today = account.local_day()
    assert_matches(x.stored("ws-a"), truth(account, today - timedelta(days=29), today))


def test_a_revoked_token_mid_sync_fails_saying_to_reconnect(x: XAdsWorld) -> None:
    x.account("18ce54d4x5t", campaigns=8)
    grant = x.connect("ws-a", "18ce54d4x5t")
    x.sandbox.faults.at_request(3, lambda: x.sandbox.revoke(grant.token))
    result = x.sync("ws-a", {"history_days": 20}, window_days=7)
    assert not result.success
    message = failure_message(result)
    assert RECONNECT in message and "UNAUTHORIZED_ACCESS" in message
    assert x.stored("ws-a")  # the windows read before it are kept


def test_a_bad_signature_fails_saying_to_reconnect_and_shows_no_secret(x: XAdsWorld) -> None:
    x.account("18ce54d4x5t")
    x.connect("ws-a", "18ce54d4x5t")
    x.monkeypatch.setenv("WS_WS_A__X_TOKEN_SECRET", "a-token-secret-the-user-mistyped")
    assert x.connection("ws-a").secret_env["access_token_secret"] == "WS_WS_A__X_TOKEN_SECRET"
    result = x.sync("ws-a", {"history_days": 3})
    assert not result.success and RECONNECT in failure_message(result)
    left = everything_the_run_left(x.instance, result.run_id)
    assert not leaks([("run", left)], ["a-token-secret-the-user-mistyped"])


def test_an_account_the_token_may_not_use_names_the_account_id_setting(x: XAdsWorld) -> None:
    x.account("18ce54d4x5t")
    x.account("otheracct")  # another advertiser's, which this user may not use
    x.connect("ws-a", "otheracct", authorized=("18ce54d4x5t",))
    result = x.sync("ws-a", {"history_days": 3})
    message = failure_message(result)
    assert "no account 'otheracct'" in message and "account_id" in message
    assert RECONNECT not in message
    assert x.stored("ws-a") == {}


def test_a_job_file_over_the_body_limit_is_refused_unread(x: XAdsWorld) -> None:
    x.account("18ce54d4x5t")
    x.connect("ws-a", "18ce54d4x5t")
    x.monkeypatch.setenv("KPI_HTTP_MAX_BODY_BYTES", str(2 * 1024 * 1024))
    x.sandbox.faults.bomb(1, size=64 * 1024 * 1024, api="files")
    result = x.sync("ws-a", {"history_days": 20})
    assert not result.success
    assert "refuse to read" in failure_message(result)


class ShortSeries:
    """In front of the sandbox: its stats answers lose their first day (a broken or hostile
    X whose arrays no longer line up with the window's days)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or "/stats/accounts/" not in scope["path"]:
            await self.app(scope, receive, send)
            return
        started: dict[str, Any] = {}

        async def cut(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
                return
            body = json.loads(message["body"])
            body["time_series_length"] -= 1
            for entry in body.get("data", []):
                metrics = entry["id_data"][0]["metrics"]
                for name, series in metrics.items():
                    if isinstance(series, list):
                        metrics[name] = series[1:]
            data = json.dumps(body).encode()
            headers = [(k, v) for k, v in started["headers"] if k != b"content-length"]
            await send({**started, "headers": [*headers, (b"content-length", b"%d" % len(data))]})
            await send({"type": "http.response.body", "body": data})

        await self.app(scope, receive, cut)


def test_arrays_that_do_not_line_up_with_the_days_store_nothing(x: XAdsWorld) -> None:
    x.account("18ce54d4x5t")
    x.connect("ws-a", "18ce54d4x5t")
    app = ShortSeries(create_x_app(x.sandbox))
    with LoopbackServer(app, dated_by=x.sandbox.clock) as server:
        x.monkeypatch.setenv("KPI_X_ADS_BASE_URL", server.base_url)
        result = x.sync("ws-a", {"history_days": 5})
    assert not result.success
    assert "answered 4 day(s) for the 5-day window" in failure_message(result)
    assert x.stored("ws-a") == {}


def test_an_account_id_cannot_carry_path_or_query_structure(x: XAdsWorld) -> None:
    """The account id goes into X's paths: one that smuggles structure (another account's
    path, a query) is refused on save, and by the run before anything is asked of X."""
    x.account("18ce54d4x5t")
    x.account("otheracct")
    smuggled = "18ce54d4x5t/../otheracct?with_deleted=true"
    x.connect("ws-a", "18ce54d4x5t")
    connection = x.connection("ws-a").model_copy(update={"settings": {"account_id": smuggled}})
    with pytest.raises(ValueError, match="x_ads settings: account_id"):
        save_connection(x.warehouse, connection, SPEC)
    add_connection(x.warehouse, connection)  # a caller that skips the spec
    result = x.sync("ws-a", {"history_days": 3})
    assert not result.success and "account_id" in failure_message(result)
    assert x.sandbox.faults.requests == 0 and x.stored("ws-a") == {}

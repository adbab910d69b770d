"""What goes wrong with LinkedIn, through the real pipeline: a retired API version, 429s
without Retry-After, a spent daily limit, tokens that expire or a grant that is revoked,
an account the member may not read, and elements that are not what LinkedIn documents."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from kpi_pipelines.definitions import PROVIDERS
from kpi_pipelines.integrations.linkedin_ads.adapter import LINKEDIN_VERSION, LinkedInAdsAdapter
from kpi_pipelines.integrations.linkedin_ads.spec import BY_ACCOUNT, BY_CAMPAIGN, SPEC
from kpi_pipelines.integrations.shared.connection_settings import save_connection
from kpi_pipelines.integrations.shared.validation import Rejections
from kpi_pipelines.resources import WarehouseResource
from kpi_pipelines.warehouse.control import Connection, add_connection, list_connections
from kpi_pipelines_tests.integrations.linkedin_ads.conftest import CLIENT_ID, CLIENT_SECRET
from kpi_pipelines_tests.run_results import failure_message, metadata, ticked_workspaces


def health(linkedin, workspace_id: str):
    with linkedin.warehouse.control() as db:
        [connection] = list_connections(db, provider="linkedin_ads", workspace_id=workspace_id)
    return connection


def test_a_retired_version_fails_saying_what_to_change(linkedin, monkeypatch) -> None:
    linkedin.account("6100")
    linkedin.workspace("ws-a", "6100")
    linkedin.sandbox.sunset(LINKEDIN_VERSION)
    result = linkedin.sync("ws-a", {"history_days": 5})
    assert not result.success
    message = failure_message(result)
    assert f"Requested version {LINKEDIN_VERSION}01 is not active" in message
    assert "set KPI_LINKEDIN_VERSION to a version it serves" in message
    assert "https://learn.microsoft.com/en-us/linkedin/marketing/versioning" in message
    monkeypatch.setenv("KPI_LINKEDIN_VERSION", "202610")  # what the operator then does
    assert linkedin.sync("ws-a", {"history_days": 5}).success


def test_429s_without_retry_after_are_retried_with_backoff(linkedin) -> None:
    linkedin.account("6200")
    linkedin.workspace("ws-a", "6200")
    linkedin.sandbox.faults.quota(3, api="adAnalytics")  # LinkedIn's short protection
    result = linkedin.sync("ws-a", {"history_days": 10})
    assert result.success and metadata(result)["success"] is True
    assert metadata(result)["http_retries"] >= 3
    assert not linkedin.sandbox.faults.pending


@pytest.mark.parametrize("limit", ["APPLICATION", "MEMBER"])
def test_a_spent_daily_limit_stops_until_midnight_utc_and_the_next_day_resumes(
    linkedin, limit: str
) -> None:
    linkedin.account("6300")
    linkedin.workspace("ws-a", "6300")
    linkedin.sandbox.exhaust_daily(limit, CLIENT_ID, member="member-ws-a")
    result = linkedin.sync("ws-a", {"history_days": 10})
    assert result.success, "a spent quota is not a failed run"
    [error] = metadata(result)["errors"]
    assert f"{limit} DAY limit" in error
    assert "Retry after 2026-11-21 00:00:00 UTC" in error
    assert linkedin.points("ws-a") == {}
    assert "quota" in health(linkedin, "ws-a").last_error
    linkedin.sandbox.clock.advance_to(datetime(2026, 11, 21, 0, 5, tzinfo=UTC))
    resumed = linkedin.sync("ws-a", {"history_days": 10})
    assert resumed.success and metadata(resumed)["success"] is True
    assert linkedin.points("ws-a")


def test_an_access_token_that_expires_mid_sync_is_refreshed(linkedin) -> None:
    linkedin.account("6400")
    linkedin.workspace("ws-a", "6400")
    linkedin.sandbox.expire_access_tokens_after(2)
    result = linkedin.sync("ws-a", {"history_days": 40}, window_days=10)
    assert result.success and metadata(result)["success"] is True


@pytest.mark.parametrize("how", ["revoked", "expired"])
def test_a_dead_grant_fails_with_the_reconnect_message(linkedin, caplog, how: str) -> None:
    linkedin.account("6500")
    linkedin.workspace("ws-a", "6500", grant_lifetime=timedelta(days=2))
    caplog.set_level(logging.DEBUG)
    assert linkedin.sync("ws-a", {"history_days": 5}).success
    linkedin.sandbox.expire_access_tokens()
    if how == "revoked":
        linkedin.sandbox.revoke_member("member-ws-a")
    else:  # a refresh token lives 365 days, not sliding: this one was granted for 2
        linkedin.sandbox.clock.advance(hours=49)
    result = linkedin.sync("ws-a")
    assert not result.success
    message = failure_message(result)
    assert "Reconnect this workspace to linkedin_ads" in message
    assert "refresh token is no longer valid" in message and "Traceback" not in message
    assert "Reconnect this workspace" in health(linkedin, "ws-a").last_error
    for secret in (CLIENT_SECRET, "AQX-refresh-ws-a-value", "AQV"):
        assert secret not in caplog.text


def test_workspaces_are_isolated(linkedin) -> None:
    linkedin.account("6600")
    linkedin.account("6700")
    linkedin.workspace("ws-a", "6600")
    # ws-b's member has a role on 6700 only; its connection names ws-a's account.
    linkedin.workspace("ws-b", "6600", roles=("6700",))
    assert linkedin.sync("ws-a", {"history_days": 10}).success
    refused = linkedin.sync("ws-b", {"history_days": 10})
    assert not refused.success
    assert "HTTP 403" in failure_message(refused)
    assert linkedin.points("ws-b") == {} and linkedin.points("ws-a")


def test_elements_that_are_not_linkedins_are_named_and_skipped() -> None:
    adapter = LinkedInAdsAdapter()
    rejections = Rejections(limit=10)

    def element(**changes):
        good = {
            "pivotValues": ["urn:li:sponsoredCampaign:123456789"],
            "dateRange": {
                "start": {"year": 2026, "month": 11, "day": 10},
                "end": {"year": 2026, "month": 11, "day": 10},
            },
            "impressions": 1000,
            "clicks": 10,
            "costInLocalCurrency": "12.345",
        }
        return good | changes

    def validated(report, raw):
        return SPEC.engine.validated(adapter, report, raw, rejections)

    row = validated(BY_CAMPAIGN, element())
    assert row.campaign_id == "123456789" and str(row.cost) == "12.345"
    assert row.model_fields_set == {"day", "campaign_id", "impressions", "clicks", "cost"}
    for bad in (
        element(costInLocalCurrency="NaN"),
        element(costInLocalCurrency=12.3),  # a JSON float, not LinkedIn's decimal string
        element(impressions=-1),
        element(clicks=True),
        element(pivotValues=["urn:li:sponsoredCreative:1"]),
        element(
            dateRange={
                "start": {"year": 2026, "month": 11, "day": 10},
                "end": {"year": 2026, "month": 11, "day": 11},
            }
        ),
    ):
        assert validated(BY_CAMPAIGN, bad) is None
    assert validated(BY_ACCOUNT, element()) is None  # a campaign's row in the account's report
    fifth = {"year": 2026, "month": 11, "day": 5}
    fifth_bad = element(dateRange={"start": fifth, "end": fifth}, clicks=-1)
    assert validated(BY_CAMPAIGN, fifth_bad) is None
    assert len(rejections.errors) == 8
    assert " on 2026-11-05:" in rejections.errors[-1]  # the day as a date, as it is shown
    assert rejections.errors[0].startswith(
        "by_campaign row urn:li:sponsoredCampaign:123456789 on 2026-11-10"
    )


def test_every_6_hours_runs_over_the_connected_workspaces_in_a_pool_of_4(linkedin) -> None:
    linkedin.account("6800")
    linkedin.workspace("ws-a", "6800")
    linkedin.workspace("ws-b", "6800")
    definitions = PROVIDERS["linkedin_ads"]
    defs = dg.Definitions(
        assets=[definitions.asset],
        jobs=[definitions.job],
        schedules=[definitions.schedule],
        resources={"warehouse": WarehouseResource(), "linkedin_ads": LinkedInAdsAdapter()},
    )
    schedule = defs.resolve_schedule_def("linkedin_ads_schedule")
    assert schedule.cron_schedule == "30 */6 * * *"
    with dg.build_schedule_context(
        instance=linkedin.instance,
        scheduled_execution_time=datetime(2026, 11, 20, 12, 30, tzinfo=UTC),
        resources={"warehouse": WarehouseResource()},
        repository_def=defs.get_repository_def(),
    ) as context:
        data = schedule.evaluate_tick(context)
    assert ticked_workspaces(linkedin.instance, "linkedin_ads", data.run_requests) == [
        "ws-a",
        "ws-b",
    ]
    assert SPEC.pool_limit == 4


def test_an_answer_cut_at_linkedins_cap_fails_the_sync_rather_than_lose_rows(linkedin) -> None:
    linkedin.account("6900")
    linkedin.workspace("ws-a", "6900")
    linkedin.sandbox.max_elements = 12  # adAnalytics' 15,000, smaller
    result = linkedin.sync("ws-a", {"history_days": 20}, answer_cap=12)
    assert not result.success
    assert "LinkedIn cuts a longer answer without saying so" in failure_message(result)


def test_settings_cannot_put_restli_structure_into_a_query(linkedin) -> None:
    """An account id is digits: one that smuggles query structure (another account, another
    parameter) is refused on save and by the run, before anything is asked of LinkedIn."""
    linkedin.account("7000")
    linkedin.account("7100")
    smuggled = "7000),urn%3Ali%3AsponsoredAccount%3A7100&fields=impressions"
    workspace = linkedin.workspace("ws-a", "7000", roles=("7000", "7100"))
    with pytest.raises(ValueError, match="account_id"):
        save_connection(
            linkedin.warehouse,
            Connection(
                workspace_id=workspace.id,
                provider="linkedin_ads",
                settings={"account_id": smuggled},
            ),
            SPEC,
        )
    for settings, named in (
        ({"account_id": smuggled}, "account_id"),
        ({"account_id": "7000", "conversions": ["likes)&fields=costInUsd"]}, "conversions"),
    ):
        add_connection(
            linkedin.warehouse,
            Connection(workspace_id="ws-a", provider="linkedin_ads", settings=settings),
        )
        result = linkedin.sync("ws-a")
        assert not result.success and named in failure_message(result)
    assert linkedin.sandbox.served == []

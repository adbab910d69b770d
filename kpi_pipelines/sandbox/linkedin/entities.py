"""Ad accounts and their campaigns, as LinkedIn shows them.

- `GET /rest/adAccounts/{id}`: the account (its currency; LinkedIn accounts have no time
  zone). 404 when there is none, 403 when the member has no role on it.
- `GET /rest/adAccounts/{id}/adCampaigns?q=search&search=(status:(values:List(ACTIVE,...)))
  &pageSize=100&pageToken=...`: cursor paging (`pageSize` 1..1000, default 100; the next
  page's token in `metadata.nextPageToken`, absent on the last page), oldest first. A
  campaign's status is ACTIVE, PAUSED or ARCHIVED, and COMPLETED once its run schedule has
  ended; `runSchedule` holds epoch milliseconds; a campaign names its account by URN.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, time
from typing import Any

from kpi_pipelines.sandbox.kit import Money, stable_digits
from kpi_pipelines.sandbox.kit.ads import AdAccount, CampaignState
from kpi_pipelines.sandbox.linkedin.restli import RestliSyntaxError, parse, query_params

STATUSES = ("ACTIVE", "PAUSED", "ARCHIVED", "COMPLETED", "CANCELED", "DRAFT", "PENDING_DELETION")
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def account_body(account: AdAccount) -> dict[str, Any]:
    created = _ms(datetime.combine(account.first_day, time.min, UTC))
    return {
        "id": int(account.account_id),
        "name": account.name,
        "currency": account.currency,
        "status": "ACTIVE",
        "type": "BUSINESS",
        "reference": f"urn:li:organization:{stable_digits(f'org:{account.account_id}', 8)}",
        "test": False,
        "servingStatuses": ["RUNNABLE"],
        "notifiedOnCampaignOptimization": False,
        "notifiedOnCreativeApproval": False,
        "notifiedOnCreativeRejection": False,
        "notifiedOnEndOfCampaign": False,
        "changeAuditStamps": {"created": {"time": created}, "lastModified": {"time": created}},
        "version": {"versionTag": "1"},
    }


def status_of(account: AdAccount, state: CampaignState) -> str:
    if state.status == "active" and state.end is not None and state.end < account.local_day():
        return "COMPLETED"
    return state.status.upper()


def campaign_body(account: AdAccount, state: CampaignState) -> dict[str, Any]:
    start, _ = account.day_bounds(state.start)
    schedule = {"start": _ms(start)}
    if state.end is not None:
        schedule["end"] = _ms(account.day_bounds(state.end)[1])
    budget = Money(state.daily_budget, account.currency).text()
    return {
        "id": int(state.id),
        "name": state.name,
        "status": status_of(account, state),
        "account": f"urn:li:sponsoredAccount:{account.account_id}",
        "campaignGroup": f"urn:li:sponsoredCampaignGroup:{stable_digits(f'g:{state.id}', 9)}",
        "type": "SPONSORED_UPDATES",
        "costType": "CPM",
        "objectiveType": "WEBSITE_CONVERSION",
        "format": "SINGLE_IMAGE",
        "dailyBudget": {"amount": budget, "currencyCode": account.currency},
        "runSchedule": schedule,
        "locale": {"country": "US", "language": "en"},
        "test": False,
        "servingStatuses": ["RUNNABLE"] if state.status == "active" else ["CAMPAIGN_STATUS_HOLD"],
        "changeAuditStamps": {
            "created": {"time": _ms(state.created_at)},
            "lastModified": {"time": _ms(state.updated_at)},
        },
        "version": {"versionTag": str(int(state.updated_at.timestamp()) % 997 + 1)},
    }


def campaigns_page(account: AdAccount, raw_query: str) -> dict[str, Any]:
    """One page of the search finder; RestliSyntaxError for a parameter it refuses."""
    params = query_params(raw_query)
    if params.get("q") != "search":
        raise RestliSyntaxError("q", "The sandbox serves the search finder (q=search)")
    wanted = _statuses(params)
    size = DEFAULT_PAGE_SIZE
    if "pageSize" in params:
        if not params["pageSize"].isdigit() or not 1 <= int(params["pageSize"]) <= MAX_PAGE_SIZE:
            raise RestliSyntaxError("pageSize", f"pageSize must be 1..{MAX_PAGE_SIZE}")
        size = int(params["pageSize"])
    offset = _offset(params.get("pageToken"))
    states = [s for s in account.campaigns() if wanted is None or status_of(account, s) in wanted]
    page = states[offset : offset + size]
    body: dict[str, Any] = {
        "paging": {"start": 0, "count": size, "links": []},
        "elements": [campaign_body(account, state) for state in page],
        "metadata": {},
    }
    if offset + size < len(states):
        token = base64.urlsafe_b64encode(f"li:{offset + size}".encode()).decode().rstrip("=")
        body["metadata"]["nextPageToken"] = token
    return body


def _statuses(params: dict[str, str]) -> set[str] | None:
    if "search" not in params:
        return None
    search = parse("search", params["search"])
    status = search.get("status") if isinstance(search, dict) else None
    if not isinstance(search, dict) or set(search) != {"status"} or not isinstance(status, dict):
        raise RestliSyntaxError("search", "The sandbox searches by status only")
    values = status.get("values")
    if set(status) != {"values"} or not isinstance(values, list) or set(values) - set(STATUSES):
        raise RestliSyntaxError(
            "search", "Invalid value for param; wrong type or other syntax error"
        )
    return set(values)


def _offset(token: str | None) -> int:
    if token is None:
        return 0
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        prefix, _, number = text.partition(":")
        if prefix == "li" and number.isdigit():
            return int(number)
    except (ValueError, UnicodeDecodeError):
        pass
    raise RestliSyntaxError("pageToken", "Invalid page token")

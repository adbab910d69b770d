"""`GET /rest/adAnalytics?q=analytics`: the Analytics finder, one pivot.

    ?q=analytics&pivot=CAMPAIGN&timeGranularity=DAILY
     &dateRange=(start:(year:2026,month:11,day:1),end:(year:2026,month:11,day:30))
     &accounts=List(urn%3Ali%3AsponsoredAccount%3A5100)      (or campaigns=List(...))
     &fields=dateRange,pivotValues,impressions,clicks,costInLocalCurrency
->  {"paging": {"start": 0, "count": 10, "links": []},
     "elements": [{"pivotValues": ["urn:li:sponsoredCampaign:123456789"],
                   "dateRange": {"start": {"year": 2026, "month": 11, "day": 1},
                                 "end": {"year": 2026, "month": 11, "day": 1}},
                   "impressions": 19090, "clicks": 100, "costInLocalCurrency": "209.44"}]}

As LinkedIn serves it: the query is Rest.li 2.0 (restli.py; a wrongly encoded one gets the
400 naming the parameter); `pivot` CAMPAIGN or ACCOUNT (also as `(value:CAMPAIGN)`);
`timeGranularity` DAILY, MONTHLY or ALL; days are UTC days (truth.py); `fields` names at
most 20 metrics (`dateRange`, `pivotValues` are not metrics; more -> 400), and an element
holds only the fields asked for (none asked: impressions and clicks); money is a decimal
string in the account's currency, counts are integers; a pivot value with no activity has no
element; an account or campaign the member has no role on is silently left out (an empty
response, as LinkedIn answers); there is no paging and at most 15,000 elements (more are cut
off without notice). LinkedIn metrics the sandbox does not model are refused by name (400),
so a test never reads zeros it did not mean to.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from kpi_pipelines.sandbox.kit.ads import AdAccount, Figures
from kpi_pipelines.sandbox.linkedin.restli import RestliSyntaxError, parse, query_params
from kpi_pipelines.sandbox.linkedin.sandbox import Caller, LinkedInSandbox
from kpi_pipelines.sandbox.linkedin.truth import COUNT_RULES, VALUE_RULES, figures_by_utc_day

MAX_METRICS = 20
NOT_METRICS = frozenset({"dateRange", "pivotValues"})
RENDERED: dict[str, Callable[[Figures], Any]] = {
    "impressions": lambda f: f.impressions,
    "clicks": lambda f: f.clicks,
    "costInLocalCurrency": lambda f: f.spend.text(),
    **{name: (lambda f, r=rule: f.count(r)) for name, rule in COUNT_RULES.items()},
    **{name: (lambda f, r=rule: f.value(r).text()) for name, rule in VALUE_RULES.items()},
}
# Metrics LinkedIn has that the sandbox does not model (a request for one is refused).
UNMODELLED = frozenset((
    "actionClicks", "adUnitClicks", "approximateMemberReach", "cardClicks", "cardImpressions",
    "commentLikes", "comments", "companyPageClicks", "costInUsd", "documentCompletions",
    "downloadClicks", "externalWebsitePostClickConversions",
    "externalWebsitePostViewConversions", "follows", "fullScreenPlays", "jobApplications",
    "jobApplyClicks", "landingPageClicks", "leadGenerationMailContactInfoShares",
    "leadGenerationMailInterestedClicks", "likes", "oneClickLeadFormOpens", "opens",
    "otherEngagements", "postClickJobApplications", "postClickRegistrations",
    "postViewJobApplications", "postViewRegistrations", "qualifiedLeads", "reactions",
    "registrations", "sends", "shares", "talentLeads", "textUrlClicks", "totalEngagements",
    "validWorkEmailLeads", "videoCompletions", "videoFirstQuartileCompletions",
    "videoMidpointCompletions", "videoStarts", "videoThirdQuartileCompletions", "videoViews",
    "viralClicks", "viralImpressions",
))  # fmt: skip
_URN = {
    "accounts": re.compile(r"^urn:li:sponsoredAccount:(\d{1,19})$"),
    "campaigns": re.compile(r"^urn:li:sponsoredCampaign:(\d{1,19})$"),
}
_INVALID = "Invalid value for param; wrong type or other syntax error"


@dataclass(frozen=True)
class AnalyticsQuery:
    pivot: str
    granularity: str
    start: date
    end: date
    facet: str  # "accounts" or "campaigns"
    ids: tuple[str, ...]
    fields: tuple[str, ...]


def parse_query(raw_query: str, today: date, max_metrics: int = MAX_METRICS) -> AnalyticsQuery:
    """The finder's parameters, or RestliSyntaxError naming the one LinkedIn refuses."""
    params = query_params(raw_query)
    if params.get("q") != "analytics":
        raise RestliSyntaxError("q", "The sandbox serves the analytics finder (q=analytics)")
    pivot = _enum(params, "pivot", ("CAMPAIGN", "ACCOUNT"))
    granularity = _enum(params, "timeGranularity", ("DAILY", "MONTHLY", "ALL"))
    if "dateRange" not in params:
        raise RestliSyntaxError("dateRange", "Parameter 'dateRange' is required")
    date_range = parse("dateRange", params["dateRange"])
    if (
        not isinstance(date_range, dict)
        or "start" not in date_range
        or set(date_range)
        - {
            "start",
            "end",
        }
    ):
        raise RestliSyntaxError("dateRange", _INVALID)
    start = _date(date_range["start"])
    end = _date(date_range["end"]) if "end" in date_range else today
    if end < start:
        raise RestliSyntaxError("dateRange", "The end of dateRange is before its start")
    facets = [name for name in _URN if name in params]
    if len(facets) != 1:
        raise RestliSyntaxError("accounts", "Exactly one of accounts or campaigns is required")
    facet = facets[0]
    urns = parse(facet, params[facet])
    if not isinstance(urns, list) or not urns:
        raise RestliSyntaxError(facet, _INVALID)
    ids = []
    for urn in urns:
        match = _URN[facet].match(urn) if isinstance(urn, str) else None
        if match is None:
            raise RestliSyntaxError(facet, _INVALID)
        ids.append(match[1])
    return AnalyticsQuery(
        pivot,
        granularity,
        start,
        end,
        facet,
        tuple(ids),
        _fields(params.get("fields"), max_metrics),
    )


def _enum(params: dict[str, str], name: str, allowed: tuple[str, ...]) -> str:
    if name not in params:
        raise RestliSyntaxError(name, f"Parameter '{name}' is required")
    value = parse(name, params[name])
    if isinstance(value, dict) and set(value) == {"value"}:
        value = value["value"]  # the union form, (value:CAMPAIGN)
    if value not in allowed:
        raise RestliSyntaxError(name, f"{value!r} is not one of {', '.join(allowed)}")
    return str(value)


def _date(value: Any) -> date:
    if not isinstance(value, dict) or set(value) != {"year", "month", "day"}:
        raise RestliSyntaxError("dateRange", _INVALID)
    try:
        return date(*(int(value[k]) for k in ("year", "month", "day")))
    except (TypeError, ValueError):
        raise RestliSyntaxError("dateRange", _INVALID) from None


def _fields(raw: str | None, max_metrics: int) -> tuple[str, ...]:
    if raw is None:
        return ("dateRange", "pivotValues", "impressions", "clicks")
    fields = tuple(raw.split(","))
    metrics = [name for name in fields if name not in NOT_METRICS]
    if len(metrics) > max_metrics:
        raise RestliSyntaxError(
            "fields", f"Too many metrics requested: {len(metrics)}, the maximum is {max_metrics}"
        )
    for name in metrics:
        if name in UNMODELLED:
            raise RestliSyntaxError(
                "fields", f"{name} is a LinkedIn metric the sandbox does not model"
            )
        if name not in RENDERED:
            raise RestliSyntaxError("fields", f"Unknown field {name!r}")
    return fields


def _buckets(query: AnalyticsQuery) -> Callable[[date], tuple[date, date]]:
    if query.granularity == "DAILY":
        return lambda day: (day, day)
    if query.granularity == "ALL":
        return lambda day: (query.start, query.end)

    def month(day: date) -> tuple[date, date]:
        first = day.replace(day=1)
        last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        return max(first, query.start), min(last, query.end)

    return month


def analytics(sandbox: LinkedInSandbox, caller: Caller, query: AnalyticsQuery) -> dict[str, Any]:
    """The finder's answer for what `caller` may read."""
    chosen: list[tuple[AdAccount, list[str] | None]] = []
    if query.facet == "accounts":
        for account_id in dict.fromkeys(query.ids):
            account = sandbox.account(account_id)
            if account is not None and sandbox.can_read(caller.member, account_id):
                chosen.append((account, None))
    else:
        for account in sandbox.accounts:
            if sandbox.can_read(caller.member, account.account_id):
                known = {c.id for c in account.campaigns()}
                ids = [cid for cid in dict.fromkeys(query.ids) if cid in known]
                if ids:
                    chosen.append((account, ids))
    bucket = _buckets(query)
    cells: dict[tuple[date, date, str], Figures] = {}
    for account, ids in chosen:
        rows = figures_by_utc_day(account, query.start, query.end, campaign_ids=ids)
        for (campaign_id, day), figures in rows.items():
            urn = (
                f"urn:li:sponsoredCampaign:{campaign_id}"
                if query.pivot == "CAMPAIGN"
                else f"urn:li:sponsoredAccount:{account.account_id}"
            )
            key = (*bucket(day), urn)
            cells[key] = cells[key] + figures if key in cells else figures
    elements = [_element(key, figures, query.fields) for key, figures in sorted(cells.items())]
    sandbox.served.append(
        {"endpoint": "adAnalytics", "pivot": query.pivot, "fields": query.fields, "ids": query.ids}
    )
    return {
        "paging": {"start": 0, "count": 10, "links": []},
        "elements": elements[: sandbox.max_elements],
    }


def _element(key: tuple[date, date, str], figures: Figures, fields: tuple[str, ...]) -> dict:
    first, last, urn = key
    element: dict[str, Any] = {}
    for name in fields:
        if name == "pivotValues":
            element[name] = [urn]
        elif name == "dateRange":
            element[name] = {"start": _ymd(first), "end": _ymd(last)}
        else:
            element[name] = RENDERED[name](figures)
    return element


def _ymd(day: date) -> dict[str, int]:
    return {"year": day.year, "month": day.month, "day": day.day}

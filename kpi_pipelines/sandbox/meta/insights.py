"""The insights edge: a query as Meta reads its parameters, and the rows it answers.

Rows are what an `AdAccount` shows at an instant, rendered Meta's way: metrics as strings
(spend in major units of the account's currency), `date_start`/`date_stop` in the
account's time zone, no row for a campaign that did not deliver in a bucket, and
conversions as lists of overlapping action types (`ACTION_TYPES`): one purchase on the
advertiser's site is counted by `omni_purchase`, `purchase`,
`offsite_conversion.fb_pixel_purchase` and `onsite_web_purchase` at once, so summing the
list counts it four times. A day with no action has no `actions` key at all. An account
added with `omni=False` (older pixels, no cross-channel deduplication) has no `omni_*`
types; its `purchase` counts the web, app and offline channels.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction
from typing import Any

from kpi_pipelines.sandbox.kit.ads import AdAccount, Figures
from kpi_pipelines.sandbox.meta.graph import GraphError, invalid_parameter

_ALL = None
# Meta action type -> (conversion kind, channels it counts: None for every channel).
ACTION_TYPES: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "omni_purchase": ("purchase", _ALL),
    "purchase": ("purchase", ("web", "app", "offline")),
    "offsite_conversion.fb_pixel_purchase": ("purchase", ("web",)),
    "onsite_web_purchase": ("purchase", ("web",)),
    "app_custom_event.fb_mobile_purchase": ("purchase", ("app",)),
    "offline_conversion.purchase": ("purchase", ("offline",)),
    "onsite_conversion.purchase": ("purchase", ("onsite",)),
    "lead": ("lead", _ALL),
    "offsite_conversion.fb_pixel_lead": ("lead", ("web",)),
    "onsite_conversion.lead_grouped": ("lead", ("onsite",)),
    "omni_complete_registration": ("sign_up", _ALL),
    "complete_registration": ("sign_up", ("web", "app")),
    "offsite_conversion.fb_pixel_complete_registration": ("sign_up", ("web",)),
    "omni_add_to_cart": ("add_to_cart", _ALL),
    "add_to_cart": ("add_to_cart", ("web", "app")),
    "offsite_conversion.fb_pixel_add_to_cart": ("add_to_cart", ("web",)),
}
ACCOUNT_FIELDS = ("account_id", "account_name", "account_currency")
CAMPAIGN_FIELDS = ("campaign_id", "campaign_name")
METRIC_FIELDS = ("spend", "impressions", "clicks", "ctr", "cpc", "cpm", "actions", "action_values")
FIELDS = (*ACCOUNT_FIELDS, *CAMPAIGN_FIELDS, *METRIC_FIELDS, "date_start", "date_stop")
LEVELS = ("ad", "adset", "campaign", "account")
_PRESET = re.compile(r"last_(\d+)d")


@dataclass(frozen=True)
class InsightsQuery:
    fields: tuple[str, ...]
    level: str
    since: date
    until: date
    increment: int | None  # days per row; None: the whole range (all_days)

    def cells(self, campaigns: int) -> int:
        """How much a report is: days x the rows a day may have."""
        return ((self.until - self.since).days + 1) * (campaigns if self.level == "campaign" else 1)


def _listed(value: str, name: str) -> list[str]:
    """A list parameter: JSON (`["a","b"]`) or comma-separated."""
    text = value.strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except ValueError:
            raise invalid_parameter(f"{name} must be a list") from None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise invalid_parameter(f"{name} must be a list of strings")
        return items
    return [part.strip() for part in text.split(",") if part.strip()]


def _day(value: Any, name: str) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise invalid_parameter(f"Param time_range[{name}] must be a date (YYYY-MM-DD)") from None


def _months_back(today: date, months: int) -> date:
    index = today.year * 12 + today.month - 1 - months
    return date(index // 12, index % 12 + 1, min(today.day, 28))


def parse_query(params: Mapping[str, str], today: date) -> InsightsQuery:
    """The query of an insights request (GET parameters or a POST's form), as Meta reads
    it; GraphError (code 100, 3018) for what Meta refuses."""
    fields = tuple(_listed(params.get("fields", "spend,impressions"), "fields"))
    for name in fields:
        if name not in FIELDS:
            raise invalid_parameter(
                f"{name} is not a valid insights field here; one of {', '.join(FIELDS)}"
            )
    level = params.get("level", "account")
    if level not in LEVELS:
        raise invalid_parameter(f"level must be one of the following values: {', '.join(LEVELS)}")
    if level in ("ad", "adset"):
        raise invalid_parameter(f"level {level} is not simulated (account and campaign are)")
    for breakdown in _listed(params.get("action_breakdowns", "action_type"), "action_breakdowns"):
        if breakdown != "action_type":
            raise invalid_parameter(
                f"action_breakdowns {breakdown!r} is not simulated (action_type is)"
            )
    if "time_range" in params:
        try:
            span = json.loads(params["time_range"])
        except ValueError:
            span = None
        if not isinstance(span, dict) or not {"since", "until"} <= set(span):
            raise invalid_parameter(
                'time_range must be {"since":"YYYY-MM-DD","until":"YYYY-MM-DD"}'
            )
        since, until = _day(span["since"], "since"), _day(span["until"], "until")
    else:
        preset = params.get("date_preset", "last_30d")
        match = _PRESET.fullmatch(preset)
        if preset in ("today", "yesterday"):
            since = until = today - timedelta(days=preset == "yesterday")
        elif match:
            since, until = today - timedelta(days=int(match[1])), today - timedelta(days=1)
        else:
            raise invalid_parameter(
                f"date_preset {preset!r} is not simulated (today, yesterday, last_Nd)"
            )
    if until < since:
        raise invalid_parameter("Param time_range has an until date before its since date")
    if since < _months_back(today, 37):
        raise GraphError(
            3018,
            "(#3018) The start date of the time range cannot be beyond 37 months from the current date",
        )
    increment_text = params.get("time_increment", "all_days")
    if increment_text == "all_days":
        increment = None
    elif increment_text.isdigit() and 1 <= int(increment_text) <= 90:
        increment = int(increment_text)
    else:
        raise invalid_parameter("time_increment must be all_days or a number of days from 1 to 90")
    return InsightsQuery(fields, level, since, min(until, today), increment)


def _buckets(query: InsightsQuery, day: date) -> tuple[date, date]:
    if query.increment is None:
        return query.since, query.until
    start = query.since + timedelta(
        days=(day - query.since).days // query.increment * query.increment
    )
    return start, min(query.until, start + timedelta(days=query.increment - 1))


def _ratio(numerator: Any, denominator: int, scale: int = 1) -> str | None:
    if not denominator:
        return None
    return f"{float(Fraction(numerator) * scale / denominator):.6f}"


def actions(figures: Figures, *, omni: bool) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The `actions` and `action_values` lists of one row (empty when nothing happened)."""
    counts: list[dict[str, str]] = []
    values: list[dict[str, str]] = []
    if figures.clicks > 0:
        counts.append({"action_type": "link_click", "value": str(figures.clicks)})
    views = {}
    for action_type, (kind, channels) in ACTION_TYPES.items():
        if omni or not action_type.startswith("omni_"):
            if channels not in views:
                views[channels] = figures.by_kind(channels)
            count, money = views[channels].get(kind, (0, None))
            if count:
                counts.append({"action_type": action_type, "value": str(count)})
            if money is not None and money.minor:
                values.append({"action_type": action_type, "value": money.text()})
    return counts, values


def render(
    account: AdAccount,
    figures: Figures,
    fields: tuple[str, ...],
    span: tuple[date, date],
    *,
    campaign: tuple[str, str] | None,
    omni: bool,
) -> dict[str, Any]:
    """One insights row with the fields asked for (campaign fields at campaign level only)."""
    spend = figures.spend
    counts, values = actions(figures, omni=omni)
    known: dict[str, Any] = {
        "account_id": account.account_id,
        "account_name": account.name,
        "account_currency": account.currency,
        "spend": spend.text(),
        "impressions": str(figures.impressions),
        "clicks": str(figures.clicks),
        "ctr": _ratio(figures.clicks * 100, figures.impressions),
        "cpc": _ratio(spend.major, figures.clicks),
        "cpm": _ratio(spend.major, figures.impressions, 1000),
        "actions": counts or None,
        "action_values": values or None,
    }
    if campaign is not None:
        known["campaign_id"], known["campaign_name"] = campaign
    row = {name: known[name] for name in fields if known.get(name) is not None}
    row["date_start"], row["date_stop"] = span[0].isoformat(), span[1].isoformat()
    return row


def rows(
    account: AdAccount, query: InsightsQuery, *, omni: bool, as_of: Any = None
) -> list[dict[str, Any]]:
    """The report's rows at `as_of` (default now), by bucket then campaign."""
    totals: dict[tuple[date, date, str], Figures] = {}
    if query.level == "campaign":
        daily = account.daily(query.since, query.until, as_of=as_of)
        cells = ((cid, day, figures) for (cid, day), figures in daily.items())
    else:
        cells = (
            (None, day, f)
            for day, f in account.account_daily(query.since, query.until, as_of=as_of).items()
        )
    for cid, day, figures in cells:
        key = (*_buckets(query, day), cid or "")
        totals[key] = totals[key] + figures if key in totals else figures
    out = []
    for (first, last, cid), figures in sorted(totals.items()):
        campaign = (cid, account.campaign(cid, as_of=as_of).name) if cid else None
        out.append(
            render(account, figures, query.fields, (first, last), campaign=campaign, omni=omni)
        )
    return out

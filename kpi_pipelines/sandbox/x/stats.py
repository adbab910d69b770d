"""X's analytics: the query a stats request (or an async job) names, checked as X checks
it, and the stats body it answers, rendered from a simulated account.

A query names an `entity` (CAMPAIGN, or ACCOUNT whose metrics are only a few ENGAGEMENT
ones: no clicks, no spend, no conversions at account level), up to 20 `entity_ids`, a
window `start_time` <= t < `end_time` in whole hours of the account's time zone (at most 7
days synchronously, 90 as a job; a bare date is midnight there at today's UTC offset, X's
rule for day windows across a clock change), a `granularity` (HOUR, DAY: 24-hour buckets
from start_time; TOTAL), `metric_groups` (MOBILE_CONVERSION only on its own) and a
`placement`. Line items, promoted tweets and the other entities are not simulated.

The body: `{"data_type": "stats", "time_series_length": n, "data": [{"id", "id_data":
[{"segment": null, "metrics": {...}}]}], "request": {"params": {...}}}`, each metric an
array of n values, or null when the entity has none in the window. Money is in micros of
the account's currency (`billed_charge_local_micro`, a conversion's `sale_amount`). Web
conversions (the web pixel's: purchases, sign-ups, the rest as custom) and mobile ones (the
app's) are objects of arrays: `metric` (all of them) = `post_engagement` + `post_view`;
`order_quantity` counts items, not orders, and `assisted` conversions are not in `metric`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

from kpi_pipelines.sandbox.kit.ads import AdAccount, Figures
from kpi_pipelines.sandbox.kit.money import Money
from kpi_pipelines.sandbox.x.errors import XApiError

MAX_IDS = 20
SYNC_DAYS = 7
JOB_DAYS = 90
GROUPS = (
    "ENGAGEMENT",
    "BILLING",
    "VIDEO",
    "MEDIA",
    "WEB_CONVERSION",
    "MOBILE_CONVERSION",
    "LIFE_TIME_VALUE_MOBILE_CONVERSION",
)
ACCOUNT_GROUPS = ("ENGAGEMENT",)
GRANULARITIES = {"HOUR": timedelta(hours=1), "DAY": timedelta(days=1), "TOTAL": None}
PLACEMENTS = ("ALL_ON_TWITTER", "PUBLISHER_NETWORK")
# The kit's conversion kinds as X's web (and mobile) conversion metrics; others are custom.
WEB_METRICS = {"purchase": "purchases", "sign_up": "sign_ups"}
WEB_METRICS_ALL = ("purchases", "sign_ups", "site_visits", "downloads", "custom")


@dataclass(frozen=True)
class StatsQuery:
    entity: str
    entity_ids: tuple[str, ...]
    start: datetime
    end: datetime
    granularity: str
    metric_groups: tuple[str, ...]
    placement: str

    @property
    def buckets(self) -> list[tuple[datetime, datetime]]:
        step = GRANULARITIES[self.granularity] or self.end - self.start
        out, at = [], self.start
        while at < self.end:
            out.append((at, min(at + step, self.end)))
            at += step
        return out

    def echo(self) -> dict[str, Any]:
        """The `request.params` X echoes back."""
        return {
            "start_time": _z(self.start),
            "end_time": _z(self.end),
            "entity": self.entity,
            "entity_ids": list(self.entity_ids),
            "granularity": self.granularity,
            "metric_groups": list(self.metric_groups),
            "placement": self.placement,
            "segmentation_type": None,
            "country": None,
            "platform": None,
        }


def _z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "").strip()
    if not value:
        raise XApiError(
            400, f'"{name}" is a required parameter', code="MISSING_PARAMETER", parameter=name
        )
    return value


def _choice(params: Mapping[str, str], name: str, allowed: Sequence[str]) -> str:
    value = _required(params, name)
    if value not in allowed:
        raise XApiError(
            400, f"Expected one of {', '.join(allowed)}, got {value!r} for {name}", parameter=name
        )
    return value


def _instant(params: Mapping[str, str], name: str, account: AdAccount) -> datetime:
    text = _required(params, name)
    try:
        if len(text) == 10:  # a date: midnight in the account's zone at today's offset
            offset = datetime.now(account.tz).utcoffset() or timedelta(0)
            day = date.fromisoformat(text)
            return datetime.combine(day, time.min, timezone(offset))
        moment = datetime.fromisoformat(text.replace(" ", "+"))
    except ValueError:
        raise XApiError(400, f'Expected time, got "{text}" for {name}', parameter=name) from None
    if moment.tzinfo is None:
        raise XApiError(400, f"{name} needs a time zone (Z or an offset)", parameter=name)
    local = moment.astimezone(account.tz)
    if local.minute or local.second or local.microsecond:
        raise XApiError(400, f"{name} must be expressed in whole hours", parameter=name)
    return moment


def parse_query(
    params: Mapping[str, str], account: AdAccount, known_ids: Callable[[], set[str]], max_days: int
) -> StatsQuery:
    """The query `params` name, or XApiError 400 saying what X would say."""
    entity = _choice(params, "entity", ("ACCOUNT", "CAMPAIGN"))
    ids = tuple(i for i in _required(params, "entity_ids").split(",") if i)
    if len(ids) > MAX_IDS:
        raise XApiError(
            400, f"At most {MAX_IDS} entity_ids may be requested, got {len(ids)}",
            parameter="entity_ids",
        )  # fmt: skip
    known = {account.account_id} if entity == "ACCOUNT" else known_ids()
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise XApiError(
            400, f"{entity.lower()} id(s) {', '.join(unknown)} not found in this account",
            parameter="entity_ids",
        )  # fmt: skip
    start, end = _instant(params, "start_time", account), _instant(params, "end_time", account)
    if end <= start:
        raise XApiError(400, "end_time must be after start_time", parameter="end_time")
    if end - start > timedelta(days=max_days):
        raise XApiError(
            400, f"The time range (end_time - start_time) may not exceed {max_days} days",
            parameter="end_time",
        )  # fmt: skip
    groups = tuple(_required(params, "metric_groups").split(","))
    for group in groups:
        if group not in (ACCOUNT_GROUPS if entity == "ACCOUNT" else GROUPS):
            raise XApiError(
                400, f"metric group {group!r} is not available for entity {entity}",
                parameter="metric_groups",
            )  # fmt: skip
    if "MOBILE_CONVERSION" in groups and len(groups) > 1:
        raise XApiError(
            400, "MOBILE_CONVERSION data must be requested separately", parameter="metric_groups"
        )
    return StatsQuery(
        entity=entity,
        entity_ids=ids,
        start=start,
        end=end,
        granularity=_choice(params, "granularity", tuple(GRANULARITIES)),
        metric_groups=groups,
        placement=_choice(params, "placement", PLACEMENTS),
    )


def _series(values: list[int]) -> list[int] | None:
    return values if any(values) else None


def _bucket(n: int, micros: int) -> dict[str, int]:
    """One bucket of one conversion metric (a fifth of them view-through)."""
    views, items = n // 5, n + n // 3
    view_micros = micros * views // n if n else 0
    view_items = items * views // n if n else 0
    return {
        "metric": n,
        "post_view": views,
        "post_engagement": n - views,
        "assisted": n // 2,
        "order_quantity": items,
        "order_quantity_view": view_items,
        "order_quantity_engagement": items - view_items,
        "sale_amount": micros,
        "sale_amount_view": view_micros,
        "sale_amount_engagement": micros - view_micros,
    }


def _conversions(
    figures: list[Figures | None], name: str, channel: str, currency: str
) -> dict[str, list[int] | None] | None:
    """Conversion metric `name` (X's: purchases, sign_ups, ...) of `channel`'s conversions,
    as an object of arrays; None when there are none in the window."""
    cells = []
    for f in figures:
        n = micros = 0
        for (kind, where), (count, value) in (f.conversions if f else {}).items():
            if where == channel and WEB_METRICS.get(kind, "custom") == name:
                n, micros = n + count, micros + Money(value, currency).micros
        cells.append(_bucket(n, micros))
    if not any(cell["metric"] for cell in cells):
        return None
    return {key: _series([cell[key] for cell in cells]) for key in cells[0]}


def _metrics(query: StatsQuery, figures: list[Figures | None], currency: str) -> dict[str, Any]:
    clicks = [f.clicks if f else 0 for f in figures]
    likes, retweets = [c // 4 for c in clicks], [c // 20 for c in clicks]
    replies, follows = [c // 30 for c in clicks], [c // 50 for c in clicks]
    engagements = [sum(v) for v in zip(clicks, likes, retweets, replies, follows, strict=True)]
    out: dict[str, Any] = {}
    if "ENGAGEMENT" in query.metric_groups:
        out |= {
            "impressions": _series([f.impressions if f else 0 for f in figures]),
            "engagements": _series(engagements),
            "likes": _series(likes),
            "retweets": _series(retweets),
            "replies": _series(replies),
            "follows": _series(follows),
        }
        if query.entity != "ACCOUNT":
            out |= {
                "clicks": _series(clicks),
                "url_clicks": _series([c - c // 5 for c in clicks]),
                "app_clicks": None,
                "card_engagements": None,
                "qualified_impressions": None,
                "tweets_send": None,
                "poll_card_vote": None,
                "carousel_swipes": None,
            }
    if "BILLING" in query.metric_groups:
        out |= {
            "billed_engagements": _series(clicks),
            "billed_charge_local_micro": _series([f.spend.micros if f else 0 for f in figures]),
        }
    if "WEB_CONVERSION" in query.metric_groups:
        for name in WEB_METRICS_ALL:
            out[f"conversion_{name}"] = _conversions(figures, name, "web", currency)
    if "MOBILE_CONVERSION" in query.metric_groups:
        for name in ("purchases", "sign_ups"):
            out[f"mobile_conversion_{name}"] = _conversions(figures, name, "app", currency)
    return out


def stats_body(account: AdAccount, query: StatsQuery, *, as_of: datetime) -> dict[str, Any]:
    """What X answers for `query` at `as_of`."""
    buckets = query.buckets
    on_x = query.placement == "ALL_ON_TWITTER"  # every simulated impression is on X
    if query.entity == "ACCOUNT":
        ids = [c.id for c in account.campaigns(as_of=as_of)]
        each: Callable[[str], list[str]] = lambda _: ids  # noqa: E731
    else:
        each = lambda entity_id: [entity_id]  # noqa: E731
    data = []
    for entity_id in query.entity_ids:
        figures: list[Figures | None] = []
        for start, end in buckets:
            parts = [
                f
                for cid in (each(entity_id) if on_x else [])
                if (f := account.figures(cid, start, end, as_of=as_of)) is not None
            ]
            figures.append(Figures.total(parts, account.currency) if parts else None)
        metrics = _metrics(query, figures, account.currency)
        data.append({"id": entity_id, "id_data": [{"segment": None, "metrics": metrics}]})
    return {
        "data_type": "stats",
        "time_series_length": len(buckets),
        "data": data,
        "request": {"params": query.echo()},
    }

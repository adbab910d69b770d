"""GA4 Data API v1beta: `POST /v1beta/properties/{property_id}:runReport` over a synthetic site.

The site (one per property, `GA4Property`) is a seeded simulation of sessions, generated hour by
hour from the property's first day. Each session has a user, a channel group and source/medium,
an engaged flag, a duration and a number of key events. A share of the sessions are by new
users; the others are by users seen recently, who come back through whatever channel, so one
user often has sessions via several channels on the same day: the day's `totalUsers` reported
by date alone is below the sum of the day's per-channel `totalUsers` (why a per-day total needs
its own report).

Dates are the property's: a session belongs to the local date (property time zone) of its start.

Restatement: a session is visible to reports only once processed, `arrives` seconds after its
end (most within the hour, a quarter within a day, the rest within two days), measured on the
sandbox clock. So yesterday's and today's figures grow as the clock moves (`advance()`), and the
truth (`truth_by_date`, `truth_by_date_channel`, computed from the same sessions at the same
instant) moves with them.

The report engine follows the API: dimensions `date`, `sessionDefaultChannelGroup`,
`sessionSourceMedium`, `sessionSource`, `sessionMedium`, `yearMonth`, `dateRange`; metrics
`sessions`, `totalUsers`, `newUsers`, `activeUsers`, `engagedSessions`, `keyEvents`,
`engagementRate`, `bounceRate`, `sessionKeyEventRate`, `averageSessionDuration`,
`userEngagementDuration`; dateRanges (YYYY-MM-DD, NdaysAgo, yesterday, today, in the property's
time zone; up to 4, with the `dateRange` dimension added when more than one); `limit`
(default 10,000, at most 250,000), `offset`; `orderBys` (default: first metric descending);
`dimensionFilter` (string, in-list and empty filters, and/or/not groups); `metricAggregations`
TOTAL/MAXIMUM/MINIMUM (`RESERVED_*` rows, over the whole range); `keepEmptyRows`;
`returnPropertyQuota`. Proto3 JSON conventions: all values are strings, empty lists and zero
numbers (`rowCount` of an empty report, `consumed: 0`) are omitted.

Quotas per property (standard-property defaults: 10 concurrent requests, 40,000 tokens per hour,
200,000 per day, 14,000 per project per hour): 429 RESOURCE_EXHAUSTED with Google's messages.
The concurrent limit is real (requests in flight, widen the window with `latency`); token
windows follow the sandbox clock (hours in UTC, days in Pacific time) and can be used up or
scripted (`consume_tokens`, `exhaust`, `script_quota_error`). A request costs 1 token, plus 1
per 30 days of date range beyond the first 30 and 1 per 2,500 rows in the result.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import threading
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from random import Random
from typing import Any, Literal, NamedTuple
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kpi_pipelines.sandbox.google._common import Fault, FaultPlan, SandboxClock, google_error
from kpi_pipelines.sandbox.google.oauth import ANALYTICS, ANALYTICS_READONLY, OAuthServer

SERVICE = "analyticsdata.googleapis.com"
DEFAULT_LIMIT = 10_000
MAX_LIMIT = 250_000
MAX_DATE_RANGES = 4
MAX_DIMENSIONS = 9
MAX_METRICS = 10
QUOTA_DAY_TZ = ZoneInfo("America/Los_Angeles")  # Google's daily quotas reset at Pacific midnight
_SCHEMA_URL = "https://developers.google.com/analytics/devguides/reporting/data/v1/api-schema"
_PROPERTY_ID_URL = "https://developers.google.com/analytics/devguides/reporting/data/v1/property-id"

QUOTA_MESSAGES: dict[str, str] = {
    "concurrent": "Exhausted concurrent requests quota.",
    "hourly": "Exhausted property tokens per hour. These quota tokens will return in under an hour.",
    "daily": "Exhausted property tokens per day. These quota tokens will return in under 24 hours.",
    "project_hourly": (
        "Exhausted property tokens for a project per hour. "
        "These quota tokens will return in under an hour."
    ),
}
QuotaKind = Literal["concurrent", "hourly", "daily", "project_hourly"]


# -- the synthetic site -----------------------------------------------------------------------
@dataclass(frozen=True)
class Channel:
    name: str
    weight: float
    engaged_rate: float
    key_event_rate: float  # per engaged session
    sources: tuple[tuple[str, float], ...]  # source / medium, weight; () = referral long tail


CHANNELS: tuple[Channel, ...] = (
    Channel(
        "Organic Search",
        0.28,
        0.68,
        0.07,
        (("google / organic", 0.86), ("bing / organic", 0.1), ("duckduckgo / organic", 0.04)),
    ),
    Channel("Direct", 0.19, 0.6, 0.09, (("(direct) / (none)", 1.0),)),
    Channel("Referral", 0.2, 0.62, 0.05, ()),
    Channel(
        "Organic Social",
        0.09,
        0.45,
        0.03,
        (
            ("l.facebook.com / referral", 0.35),
            ("t.co / referral", 0.25),
            ("linkedin.com / referral", 0.25),
            ("reddit.com / referral", 0.15),
        ),
    ),
    Channel("Paid Search", 0.08, 0.64, 0.11, (("google / cpc", 0.8), ("bing / cpc", 0.2))),
    Channel("Email", 0.06, 0.74, 0.13, (("newsletter / email", 0.7), ("hubspot / email", 0.3))),
    Channel(
        "Paid Social",
        0.04,
        0.41,
        0.04,
        (("facebook / paid_social", 0.6), ("linkedin / paid_social", 0.4)),
    ),
    Channel("Display", 0.02, 0.3, 0.02, (("google / display", 1.0),)),
    Channel("Organic Video", 0.03, 0.55, 0.02, (("youtube.com / referral", 1.0),)),
    Channel("Unassigned", 0.01, 0.2, 0.0, (("(not set) / (not set)", 1.0),)),
)
_CHANNEL_BY_NAME = {c.name: c for c in CHANNELS}


def _cumulative(weights: Iterable[float]) -> list[float]:
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return [x / total for x in out]


_CHANNEL_CUM = _cumulative(c.weight for c in CHANNELS)
_SOURCE_CUM = {c.name: _cumulative(w for _, w in c.sources) for c in CHANNELS if c.sources}


class Session(NamedTuple):
    """One session. Times are Unix seconds; `day` is the local date of `start`."""

    start: int
    day: date
    user: int
    channel: str
    source_medium: str
    engaged: bool
    duration: int
    key_events: int
    new_user: bool
    arrives: int  # when GA4 has processed it: visible to reports from then on


@dataclass(frozen=True)
class WebMetrics:
    """The truth for one cell (a day, or a day and channel), as typed numbers."""

    sessions: int
    total_users: int
    new_users: int
    engaged_sessions: int
    key_events: int

    @property
    def engagement_rate(self) -> float:
        return self.engaged_sessions / self.sessions if self.sessions else 0.0

    @property
    def conversions(self) -> int:
        """kpi-definitions' name for GA4 key events."""
        return self.key_events


def _poisson(rng: Random, mu: float) -> int:
    if mu <= 0:
        return 0
    if mu > 30:
        return max(0, round(rng.gauss(mu, math.sqrt(mu))))
    limit, k, p = math.exp(-mu), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


@dataclass
class GA4Quota:
    """A property's quota limits (standard property defaults) and its usage by window."""

    tokens_per_day: int = 200_000
    tokens_per_hour: int = 40_000
    tokens_per_project_per_hour: int = 14_000
    concurrent_requests: int = 10
    server_errors_per_project_per_hour: int = 10
    potentially_thresholded_requests_per_hour: int = 120
    hour_used: dict[int, int] = field(default_factory=dict)
    day_used: dict[date, int] = field(default_factory=dict)
    project_hour_used: dict[tuple[str, int], int] = field(default_factory=dict)
    scripted: list[QuotaKind] = field(default_factory=list)

    @staticmethod
    def windows(now: datetime) -> tuple[int, date]:
        return int(now.timestamp()) // 3600, now.astimezone(QUOTA_DAY_TZ).date()

    def remaining(self, now: datetime, project: str) -> dict[str, int]:
        hour, day = self.windows(now)
        return {
            "hourly": self.tokens_per_hour - self.hour_used.get(hour, 0),
            "daily": self.tokens_per_day - self.day_used.get(day, 0),
            "project_hourly": self.tokens_per_project_per_hour
            - self.project_hour_used.get((project, hour), 0),
        }

    def exhausted(self, now: datetime, project: str) -> QuotaKind | None:
        remaining = self.remaining(now, project)
        for kind in ("daily", "hourly", "project_hourly"):
            if remaining[kind] <= 0:
                return kind  # type: ignore[return-value]
        return None

    def consume(self, now: datetime, project: str | None, tokens: int) -> None:
        hour, day = self.windows(now)
        self.hour_used[hour] = self.hour_used.get(hour, 0) + tokens
        self.day_used[day] = self.day_used.get(day, 0) + tokens
        if project is not None:
            key = (project, hour)
            self.project_hour_used[key] = self.project_hour_used.get(key, 0) + tokens


class GA4Property:
    """A synthetic GA4 property: its sessions, quotas and truth."""

    def __init__(
        self,
        property_id: str,
        clock: SandboxClock,
        *,
        seed: int = 0,
        time_zone: str = "America/Los_Angeles",
        start_date: date | None = None,
        history_days: int = 240,
        daily_sessions: float = 300.0,
        currency_code: str = "USD",
        new_user_rate: float = 0.3,
        referral_sites: int = 2_500,
        thresholding_min_users: int = 10,
        latency: float = 0.0,
        quota: GA4Quota | None = None,
    ) -> None:
        if not re.fullmatch(r"\d+", property_id):
            raise ValueError("a GA4 property id is numeric, e.g. '123456789'")
        self.property_id = property_id
        self.clock = clock
        self.seed = seed
        self.time_zone = time_zone
        self.tz = ZoneInfo(time_zone)
        today = clock.now().astimezone(self.tz).date()
        self.start_date = start_date or today - timedelta(days=history_days)
        self.daily_sessions = daily_sessions
        self.currency_code = currency_code
        self.new_user_rate = new_user_rate
        self.referral_sites = referral_sites
        self.thresholding_min_users = thresholding_min_users
        self.latency = latency
        self.quota = quota or GA4Quota()
        self.in_flight = 0
        self.reports_served = 0
        self._lock = threading.RLock()
        self._by_day: dict[date, list[Session]] = {}
        self._next_day = self.start_date
        self._ring: list[int] = []
        self._ring_size = max(50, int(daily_sessions * 4))
        self._ring_pos = 0
        self._next_user = 1
        self._next_injected_user = -1

    # -- simulation ---------------------------------------------------------------------------
    def _midnight(self, day: date) -> int:
        return int(datetime.combine(day, datetime.min.time(), self.tz).timestamp())

    def _ensure(self, until: int) -> None:
        """Simulate every local day that starts before `until` (Unix seconds)."""
        with self._lock:
            while self._midnight(self._next_day) < until:
                self._simulate_day(self._next_day)
                self._next_day += timedelta(days=1)

    def _simulate_day(self, day: date) -> None:
        first, end = self._midnight(day), self._midnight(day + timedelta(days=1))
        day_index = (day - self.start_date).days
        weekly = 0.7 if day.weekday() >= 5 else 1.08
        trend = 1.0 + 0.4 * day_index / 365
        per_hour = self.daily_sessions / 24 * weekly * trend
        sessions = self._by_day.setdefault(day, [])
        ring, ring_size, new_user_rate = self._ring, self._ring_size, self.new_user_rate
        for hour in range(first, end, 3600):
            rng = Random(f"ga4:{self.seed}:{self.property_id}:{hour}")
            random = rng.random
            local_hour = (hour - first) // 3600
            diurnal = 1.0 + 0.6 * math.sin(2 * math.pi * (local_hour - 8) / 24)
            span = min(3600, end - hour)
            count = _poisson(rng, per_hour * diurnal * span / 3600)
            for offset in sorted(int(random() * span) for _ in range(count)):
                start = hour + offset
                if ring and random() >= new_user_rate:
                    user, new_user = ring[int(random() * len(ring))], False
                else:
                    user, new_user = self._next_user, True
                    self._next_user += 1
                if len(ring) < ring_size:
                    ring.append(user)
                else:
                    ring[self._ring_pos] = user
                    self._ring_pos = (self._ring_pos + 1) % ring_size
                channel = CHANNELS[min(bisect_right(_CHANNEL_CUM, random()), len(CHANNELS) - 1)]
                if channel.sources:
                    pick = bisect_right(_SOURCE_CUM[channel.name], random())
                    source_medium = channel.sources[min(pick, len(channel.sources) - 1)][0]
                else:
                    site = int(self.referral_sites ** random()) - 1
                    source_medium = f"site{site:04d}.example.com / referral"
                engaged = random() < channel.engaged_rate
                if engaged:
                    duration = min(3600, 10 + int(rng.expovariate(1 / 170)))
                else:
                    duration = int(random() * 10)
                key_events = 0
                if engaged:
                    roll = random()
                    if roll < channel.key_event_rate:
                        key_events = 2 if roll < channel.key_event_rate * 0.15 else 1
                roll = random()
                if roll < 0.7:
                    delay = 60 + int(random() * 3_540)
                elif roll < 0.95:
                    delay = 3_600 + int(random() * 82_800)
                else:
                    delay = 86_400 + int(random() * 86_400)
                sessions.append(
                    Session(
                        start,
                        day,
                        user,
                        channel.name,
                        source_medium,
                        engaged,
                        duration,
                        key_events,
                        new_user,
                        start + duration + delay,
                    )
                )

    def add_session(
        self,
        at: datetime,
        *,
        channel: str = "Direct",
        source_medium: str | None = None,
        user: int | None = None,
        new_user: bool | None = None,
        engaged: bool = True,
        duration: int = 60,
        key_events: int = 0,
        processing_delay: timedelta = timedelta(0),
    ) -> Session:
        """Add a hand-made session (tests: an event at 23:30 local time, a late hit...).

        `user` None makes a fresh user (a new user unless `new_user` says otherwise).
        The session is visible from `at + duration + processing_delay` on.
        """
        if at.tzinfo is None:
            raise ValueError("`at` must be timezone-aware")
        if channel not in _CHANNEL_BY_NAME:
            raise ValueError(f"unknown channel group {channel!r}")
        with self._lock:
            if user is None:
                user = self._next_injected_user
                self._next_injected_user -= 1
                new_user = True if new_user is None else new_user
            start = int(at.timestamp())
            chosen = _CHANNEL_BY_NAME[channel]
            session = Session(
                start=start,
                day=datetime.fromtimestamp(start, self.tz).date(),
                user=user,
                channel=channel,
                source_medium=source_medium
                or (chosen.sources[0][0] if chosen.sources else "example.org / referral"),
                engaged=engaged,
                duration=duration,
                key_events=key_events,
                new_user=bool(new_user),
                arrives=start + duration + int(processing_delay.total_seconds()),
            )
            self._by_day.setdefault(session.day, []).append(session)
            return session

    def today(self) -> date:
        return self.clock.now().astimezone(self.tz).date()

    def sessions(
        self, start: date, end: date, *, as_of: datetime | None = None, final: bool = False
    ) -> list[Session]:
        """Sessions of local days start..end: those processed by `as_of` (default now), or,
        with `final`, every session that has started by then, processed or not."""
        instant = int((as_of or self.clock.now()).timestamp())
        self._ensure(instant + 1)
        out: list[Session] = []
        with self._lock:
            day = start
            while day <= end:
                out.extend(
                    s
                    for s in self._by_day.get(day, ())
                    if s.start <= instant and (final or s.arrives <= instant)
                )
                day += timedelta(days=1)
        return sorted(out, key=lambda s: (s.start, s.user))

    # -- truth --------------------------------------------------------------------------------
    def truth_by_date(
        self, start: date, end: date, *, as_of: datetime | None = None, final: bool = False
    ) -> dict[date, WebMetrics]:
        """Per local day: what a report by `date` alone shows at `as_of` (default now)."""
        cells = _truth(self.sessions(start, end, as_of=as_of, final=final), lambda s: s.day)
        return dict(sorted(cells.items()))

    def truth_by_date_channel(
        self, start: date, end: date, *, as_of: datetime | None = None, final: bool = False
    ) -> dict[tuple[date, str], WebMetrics]:
        """Per (local day, session default channel group), as a report by both shows it."""
        cells = _truth(
            self.sessions(start, end, as_of=as_of, final=final), lambda s: (s.day, s.channel)
        )
        return dict(sorted(cells.items()))

    # -- the report ---------------------------------------------------------------------------
    def run_report(self, body: dict[str, Any], *, legacy_conversions: str = "reject") -> dict:
        """The runReport response for `body` at the clock's now (raises BadRequest), without
        quotas: what the API would answer."""
        return self.report(body, legacy_conversions=legacy_conversions).response

    def report(self, body: dict[str, Any], *, legacy_conversions: str = "reject") -> Report:
        now = self.clock.now()
        request = _parse_request(body, self, now, legacy_conversions)
        instant = int(now.timestamp())
        self._ensure(instant + 1)
        with self._lock:
            return _report(self, request, instant)


def _truth(sessions: Iterable[Session], key: Callable[[Session], Any]) -> dict[Any, WebMetrics]:
    acc: dict[Any, list[Any]] = {}
    for s in sessions:
        cell = acc.get(key(s))
        if cell is None:
            cell = acc[key(s)] = [0, set(), 0, 0, 0]
        cell[0] += 1
        cell[1].add(s.user)
        cell[2] += s.new_user
        cell[3] += s.engaged
        cell[4] += s.key_events
    return {k: WebMetrics(v[0], len(v[1]), v[2], v[3], v[4]) for k, v in acc.items()}


# -- request parsing and validation --------------------------------------------------------------
class BadRequest(Exception):
    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


DIMENSIONS: dict[str, Callable[[Session], str]] = {
    "date": lambda s: s.day.strftime("%Y%m%d"),
    "yearMonth": lambda s: s.day.strftime("%Y%m"),
    "sessionDefaultChannelGroup": lambda s: s.channel,
    "sessionSourceMedium": lambda s: s.source_medium,
    "sessionSource": lambda s: s.source_medium.split(" / ", 1)[0],
    "sessionMedium": lambda s: s.source_medium.split(" / ", 1)[-1],
}
METRIC_TYPES: dict[str, str] = {
    "sessions": "TYPE_INTEGER",
    "totalUsers": "TYPE_INTEGER",
    "newUsers": "TYPE_INTEGER",
    "activeUsers": "TYPE_INTEGER",
    "engagedSessions": "TYPE_INTEGER",
    "keyEvents": "TYPE_INTEGER",
    "engagementRate": "TYPE_FLOAT",
    "bounceRate": "TYPE_FLOAT",
    "sessionKeyEventRate": "TYPE_FLOAT",
    "averageSessionDuration": "TYPE_SECONDS",
    "userEngagementDuration": "TYPE_SECONDS",
}
_USER_METRICS = {"totalUsers", "newUsers", "activeUsers"}
_REQUEST_FIELDS = {
    "property",
    "dimensions",
    "metrics",
    "dateRanges",
    "dimensionFilter",
    "metricFilter",
    "offset",
    "limit",
    "metricAggregations",
    "orderBys",
    "currencyCode",
    "cohortSpec",
    "keepEmptyRows",
    "returnPropertyQuota",
    "comparisons",
}
_UNSUPPORTED_FIELDS = ("metricFilter", "cohortSpec", "comparisons")
_AGGREGATIONS = {"TOTAL": "RESERVED_TOTAL", "MAXIMUM": "RESERVED_MAX", "MINIMUM": "RESERVED_MIN"}


@dataclass
class _Request:
    dimensions: list[str]
    metrics: list[tuple[str, str]]  # (header name, metric computed)
    ranges: list[tuple[str, date, date]]
    row_filter: Callable[[dict[str, str]], bool] | None
    limit: int
    offset: int
    aggregations: list[str]
    order_bys: list[dict[str, Any]]
    keep_empty_rows: bool
    return_quota: bool
    currency_code: str


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _camelize(value: Any) -> Any:
    """Proto JSON accepts lowerCamelCase and the original snake_case field names alike."""
    if isinstance(value, dict):
        return {_camel(k): _camelize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camelize(v) for v in value]
    return value


def _int64(body: dict[str, Any], name: str) -> int:
    value = body.get(name, 0)
    if isinstance(value, bool):
        raise BadRequest(f"Invalid value at '{name}' (TYPE_INT64), {json.dumps(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    raise BadRequest(f"Invalid value at '{name}' (TYPE_INT64), {json.dumps(value)}")


def _resolve_date(text: Any, today: date, field_name: str) -> date:
    if not isinstance(text, str) or not text:
        raise BadRequest(f"Field {field_name} is required in a date range.")
    if text == "today":
        return today
    if text == "yesterday":
        return today - timedelta(days=1)
    match = re.fullmatch(r"(\d+)daysAgo", text)
    if match:
        return today - timedelta(days=int(match.group(1)))
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise BadRequest(
        f'Invalid {field_name} "{text}". A date must be in the format YYYY-MM-DD, NdaysAgo, '
        "yesterday, or today."
    )


def _names(body: dict[str, Any], key: str, kind: str) -> list[str]:
    items = body.get(key) or []
    if not isinstance(items, list):
        raise BadRequest(f"Invalid value at '{key}', expected a list of {kind}s.")
    names = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRequest(f"Each {kind} needs a name.")
        if "dimensionExpression" in item or "expression" in item or item.get("invisible"):
            raise BadRequest(
                f"The sandbox does not support {kind} expressions or invisible metrics."
            )
        names.append(item["name"])
    return names


def _string_match(spec: dict[str, Any]) -> Callable[[str], bool]:
    value = spec.get("value", "")
    match_type = spec.get("matchType", "EXACT")
    sensitive = bool(spec.get("caseSensitive", False))
    if match_type in ("FULL_REGEXP", "PARTIAL_REGEXP"):
        try:
            pattern = re.compile(value, 0 if sensitive else re.IGNORECASE)
        except re.error as exc:
            raise BadRequest(f"Invalid regular expression {value!r}: {exc}") from exc
        if match_type == "FULL_REGEXP":
            return lambda v: pattern.fullmatch(v) is not None
        return lambda v: pattern.search(v) is not None
    wanted = value if sensitive else value.lower()

    def fold(v: str) -> str:
        return v if sensitive else v.lower()

    tests: dict[str, Callable[[str], bool]] = {
        "MATCH_TYPE_UNSPECIFIED": lambda v: fold(v) == wanted,
        "EXACT": lambda v: fold(v) == wanted,
        "BEGINS_WITH": lambda v: fold(v).startswith(wanted),
        "ENDS_WITH": lambda v: fold(v).endswith(wanted),
        "CONTAINS": lambda v: wanted in fold(v),
    }
    if match_type not in tests:
        raise BadRequest(f"Invalid value at 'string_filter.match_type', \"{match_type}\"")
    return tests[match_type]


def _filter(expression: dict[str, Any], dimensions: set[str]) -> Callable[[dict[str, str]], bool]:
    if not isinstance(expression, dict) or len(expression) != 1:
        raise BadRequest(
            "A FilterExpression must set exactly one of andGroup, orGroup, notExpression, filter."
        )
    ((kind, spec),) = expression.items()
    if kind in ("andGroup", "orGroup"):
        parts = [_filter(e, dimensions) for e in (spec or {}).get("expressions", [])]
        if kind == "andGroup":
            return lambda row: all(p(row) for p in parts)
        return lambda row: any(p(row) for p in parts)
    if kind == "notExpression":
        inner = _filter(spec, dimensions)
        return lambda row: not inner(row)
    if kind != "filter":
        raise BadRequest(
            f'Invalid JSON payload received. Unknown name "{kind}": Cannot find field.'
        )
    name = spec.get("fieldName")
    if name not in DIMENSIONS and name != "dateRange":
        raise BadRequest(
            f"Field {name} is not a valid dimension. For a list of valid "
            f"dimensions and metrics, see {_SCHEMA_URL}"
        )
    dimensions.add(name)
    if "stringFilter" in spec:
        test = _string_match(spec["stringFilter"])
        return lambda row: test(row[name])
    if "inListFilter" in spec:
        in_list = spec["inListFilter"]
        sensitive = bool(in_list.get("caseSensitive", False))
        values = {v if sensitive else v.lower() for v in in_list.get("values", [])}
        return lambda row: (row[name] if sensitive else row[name].lower()) in values
    if "emptyFilter" in spec:
        return lambda row: row[name] == ""
    raise BadRequest(
        "The sandbox supports stringFilter, inListFilter and emptyFilter on dimensions only."
    )


def _parse_request(
    raw: dict[str, Any], prop: GA4Property, now: datetime, legacy_conversions: str
) -> _Request:
    body = _camelize(raw)
    unknown = sorted(set(body) - _REQUEST_FIELDS)
    if unknown:
        message = f'Invalid JSON payload received. Unknown name "{unknown[0]}": Cannot find field.'
        raise BadRequest(
            message,
            [
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"description": message}],
                }
            ],
        )
    for name in _UNSUPPORTED_FIELDS:
        if body.get(name):
            raise BadRequest(f"The sandbox does not support {name}.")
    if body.get("property") not in (None, "", f"properties/{prop.property_id}"):
        raise BadRequest("The property in the body differs from the property in the URL.")

    dimensions = _names(body, "dimensions", "dimension")
    metric_names = _names(body, "metrics", "metric")
    if not dimensions and not metric_names:
        raise BadRequest("At least one dimension or metric must be specified.")
    if len(dimensions) > MAX_DIMENSIONS:
        raise BadRequest(
            f"Requests are limited to {MAX_DIMENSIONS} dimensions; "
            f"{len(dimensions)} were requested."
        )
    if len(metric_names) > MAX_METRICS:
        raise BadRequest(
            f"Requests are limited to {MAX_METRICS} metrics; {len(metric_names)} were requested."
        )
    for name in dimensions:
        if name not in DIMENSIONS and name != "dateRange":
            raise BadRequest(
                f"Field {name} is not a valid dimension. For a list of valid "
                f"dimensions and metrics, see {_SCHEMA_URL}"
            )
    if len(set(dimensions)) != len(dimensions) or len(set(metric_names)) != len(metric_names):
        raise BadRequest("Duplicate dimension or metric names in the request.")
    metrics: list[tuple[str, str]] = []
    for name in metric_names:
        if name == "conversions" and legacy_conversions == "alias":
            metrics.append((name, "keyEvents"))
        elif name in METRIC_TYPES:
            metrics.append((name, name))
        else:
            raise BadRequest(
                f"Field {name} is not a valid metric. For a list of valid "
                f"dimensions and metrics, see {_SCHEMA_URL}"
            )

    today = now.astimezone(prop.tz).date()
    raw_ranges = body.get("dateRanges") or []
    if not isinstance(raw_ranges, list) or not raw_ranges:
        raise BadRequest("A date range is required: set dateRanges.")
    if len(raw_ranges) > MAX_DATE_RANGES:
        raise BadRequest(
            f"Requests are limited to {MAX_DATE_RANGES} dateRanges; "
            f"{len(raw_ranges)} were requested."
        )
    ranges = []
    for index, spec in enumerate(raw_ranges):
        if not isinstance(spec, dict):
            raise BadRequest("Each date range must be an object.")
        start = _resolve_date(spec.get("startDate"), today, "startDate")
        end = _resolve_date(spec.get("endDate"), today, "endDate")
        if start > end:
            raise BadRequest(
                f"The date range's startDate ({start.isoformat()}) is after its "
                f"endDate ({end.isoformat()})."
            )
        name = spec.get("name") or f"date_range_{index}"
        if spec.get("name") and (name.startswith("date_range_") or name.startswith("RESERVED_")):
            raise BadRequest(
                f"Date range name {name!r} cannot begin with 'date_range_' or 'RESERVED_'."
            )
        ranges.append((name, start, end))
    if len(ranges) > 1 and "dateRange" not in dimensions:
        dimensions.append("dateRange")

    limit = _int64(body, "limit")
    offset = _int64(body, "offset")
    if limit < 0:
        raise BadRequest(f"limit must be positive; it was {limit}.")
    if offset < 0:
        raise BadRequest(f"offset must be non-negative; it was {offset}.")
    limit = min(limit or DEFAULT_LIMIT, MAX_LIMIT)

    aggregations = []
    for name in body.get("metricAggregations") or []:
        if name not in _AGGREGATIONS:
            raise BadRequest(
                f"The sandbox supports metricAggregations TOTAL, MAXIMUM and MINIMUM; got {name!r}."
            )
        aggregations.append(name)

    used: set[str] = set()
    row_filter = _filter(body["dimensionFilter"], used) if body.get("dimensionFilter") else None
    order_bys = body.get("orderBys") or []
    for order in order_bys:
        if "metric" in order:
            if order["metric"].get("metricName") not in metric_names:
                raise BadRequest(
                    f"orderBys metric {order['metric'].get('metricName')!r} "
                    "must be one of the request's metrics."
                )
        elif "dimension" in order:
            if order["dimension"].get("dimensionName") not in dimensions:
                raise BadRequest(
                    f"orderBys dimension {order['dimension'].get('dimensionName')!r} "
                    "must be one of the request's dimensions."
                )
        else:
            raise BadRequest("The sandbox supports metric and dimension orderBys only.")
    return _Request(
        dimensions=dimensions,
        metrics=metrics,
        ranges=ranges,
        row_filter=row_filter,
        limit=limit,
        offset=offset,
        aggregations=aggregations,
        order_bys=order_bys,
        keep_empty_rows=bool(body.get("keepEmptyRows", False)),
        return_quota=bool(body.get("returnPropertyQuota", False)),
        currency_code=body.get("currencyCode") or prop.currency_code,
    )


# -- aggregation ------------------------------------------------------------------------------
class _Cell:
    __slots__ = (
        "active",
        "duration",
        "engaged",
        "engaged_duration",
        "key",
        "new",
        "sessions",
        "users",
        "with_key",
    )

    def __init__(self) -> None:
        self.sessions = self.new = self.engaged = self.key = 0
        self.duration = self.engaged_duration = self.with_key = 0
        self.users: set[int] = set()
        self.active: set[int] = set()

    def add(self, s: Session) -> None:
        self.sessions += 1
        self.users.add(s.user)
        self.new += s.new_user
        self.duration += s.duration
        self.key += s.key_events
        self.with_key += s.key_events > 0
        if s.engaged:
            self.engaged += 1
            self.engaged_duration += s.duration
            self.active.add(s.user)

    def value(self, metric: str) -> float:
        n = self.sessions
        match metric:
            case "sessions":
                return n
            case "totalUsers":
                return len(self.users)
            case "newUsers":
                return self.new
            case "activeUsers":
                return len(self.active)
            case "engagedSessions":
                return self.engaged
            case "keyEvents":
                return self.key
            case "engagementRate":
                return self.engaged / n if n else 0.0
            case "bounceRate":
                return 1 - self.engaged / n if n else 0.0
            case "sessionKeyEventRate":
                return self.with_key / n if n else 0.0
            case "averageSessionDuration":
                return self.duration / n if n else 0.0
            case "userEngagementDuration":
                return self.engaged_duration
        raise KeyError(metric)


def format_value(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


@dataclass(frozen=True)
class Report:
    response: dict[str, Any]
    tokens: int  # what the request costs against the token quotas
    return_property_quota: bool


def _report(prop: GA4Property, request: _Request, instant: int) -> Report:
    dims = request.dimensions
    cells: dict[tuple[str, ...], _Cell] = {}
    totals: dict[str, _Cell] = {}
    seen_values: list[set[str]] = [set() for _ in dims]
    per_day = {"date", "yearMonth", "dateRange"}
    want_totals = "TOTAL" in request.aggregations
    varying = [(i, DIMENSIONS[d]) for i, d in enumerate(dims) if d not in per_day]
    for range_name, start, end in request.ranges:
        total = totals.setdefault(range_name, _Cell())
        if request.keep_empty_rows and "date" in dims:
            day = start
            while day <= end:
                seen_values[dims.index("date")].add(day.strftime("%Y%m%d"))
                day += timedelta(days=1)
        day = start
        while day <= end:
            fixed = {"date": day.strftime("%Y%m%d"), "yearMonth": day.strftime("%Y%m")}
            fixed["dateRange"] = range_name
            template = [fixed.get(d) for d in dims]
            if len(varying) == 1:
                index, extract = varying[0]
                head, tail = tuple(template[:index]), tuple(template[index + 1 :])
            for s in prop._by_day.get(day, ()):
                if s.arrives > instant or s.start > instant:
                    continue
                if not varying:
                    key = tuple(template)
                elif len(varying) == 1:
                    key = (*head, extract(s), *tail)
                else:
                    values = list(template)
                    for i, f in varying:
                        values[i] = f(s)
                    key = tuple(values)
                if request.row_filter is not None:
                    row = {name: f(s) for name, f in DIMENSIONS.items()} | fixed
                    if not request.row_filter(row):
                        continue
                cell = cells.get(key)
                if cell is None:
                    cell = cells[key] = _Cell()
                cell.add(s)
                if want_totals:
                    total.add(s)
            day += timedelta(days=1)
    for key in cells:
        for i, value in enumerate(key):
            seen_values[i].add(value)
    if request.keep_empty_rows and dims:
        keys: list[tuple[str, ...]] = [()]
        for i, name in enumerate(dims):
            values = [r[0] for r in request.ranges] if name == "dateRange" else seen_values[i]
            keys = [(*k, v) for k in keys for v in sorted(values)]
        for key in keys:
            cells.setdefault(key, _Cell())

    metric_names = [computed for _, computed in request.metrics]
    rows = []
    for key, cell in cells.items():
        values = [cell.value(m) for m in metric_names]
        if not request.keep_empty_rows and metric_names and not any(values):
            continue
        rows.append((key, values))
    if not metric_names and not dims:
        rows = []

    rows.sort(key=lambda r: r[0])
    if request.order_bys:
        for order in reversed(request.order_bys):
            desc = bool(order.get("desc", False))
            if "metric" in order:
                index = [h for h, _ in request.metrics].index(order["metric"]["metricName"])
                rows.sort(key=lambda r, i=index: r[1][i], reverse=desc)
            else:
                spec = order["dimension"]
                index = dims.index(spec["dimensionName"])
                order_type = spec.get("orderType", "ALPHANUMERIC")
                if order_type == "NUMERIC":

                    def sort_key(r: tuple, i: int = index) -> tuple:
                        try:
                            return (0, float(r[0][i]))
                        except ValueError:
                            return (1, 0.0)
                elif order_type == "CASE_INSENSITIVE_ALPHANUMERIC":

                    def sort_key(r: tuple, i: int = index) -> tuple:
                        return (r[0][i].lower(),)
                else:

                    def sort_key(r: tuple, i: int = index) -> tuple:
                        return (r[0][i],)

                rows.sort(key=sort_key, reverse=desc)
    elif metric_names:
        rows.sort(key=lambda r: r[1][0], reverse=True)

    def render(key: tuple[str, ...], values: list[float]) -> dict[str, Any]:
        row: dict[str, Any] = {}
        if key:
            row["dimensionValues"] = [{"value": v} for v in key]
        if values:
            row["metricValues"] = [{"value": format_value(v)} for v in values]
        return row

    response: dict[str, Any] = {}
    if dims:
        response["dimensionHeaders"] = [{"name": d} for d in dims]
    if request.metrics:
        response["metricHeaders"] = [
            {"name": header, "type": METRIC_TYPES[computed]} for header, computed in request.metrics
        ]
    page = rows[request.offset : request.offset + request.limit]
    if page:
        response["rows"] = [render(key, values) for key, values in page]
    for aggregation in request.aggregations:
        reserved = _AGGREGATIONS[aggregation]
        out = []
        for range_name, _, _ in request.ranges:
            key = tuple(range_name if d == "dateRange" else reserved for d in dims)
            if aggregation == "TOTAL":
                values = [totals[range_name].value(m) for m in metric_names]
            else:
                in_range = [
                    v
                    for k, v in rows
                    if "dateRange" not in dims or k[dims.index("dateRange")] == range_name
                ]
                pick = max if aggregation == "MAXIMUM" else min
                values = [
                    pick((v[i] for v in in_range), default=0) for i in range(len(metric_names))
                ]
            out.append(render(key, values))
        response[{"TOTAL": "totals", "MAXIMUM": "maximums", "MINIMUM": "minimums"}[aggregation]] = (
            out
        )
    if rows:
        response["rowCount"] = len(rows)
    metadata: dict[str, Any] = {"currencyCode": request.currency_code, "timeZone": prop.time_zone}
    user_indexes = [i for i, m in enumerate(metric_names) if m in _USER_METRICS]
    threshold = prop.thresholding_min_users
    if (
        threshold
        and user_indexes
        and any(0 < values[i] < threshold for _, values in rows for i in user_indexes)
    ):
        metadata["subjectToThresholding"] = True
    response["metadata"] = metadata
    response["kind"] = "analyticsData#runReport"
    days = sum((end - start).days + 1 for _, start, end in request.ranges)
    tokens = 1 + (days - 1) // 30 + len(rows) // 2_500
    return Report(response, tokens, request.return_quota)


def _quota_status(consumed: int, remaining: int) -> dict[str, int]:
    out = {}
    if consumed:
        out["consumed"] = consumed
    if remaining:
        out["remaining"] = remaining
    return out


# -- the service ----------------------------------------------------------------------------
@dataclass
class GA4Service:
    """All GA4 properties of the sandbox."""

    clock: SandboxClock
    oauth: OAuthServer
    seed: int = 0
    legacy_conversions: Literal["reject", "alias"] = "reject"
    properties: dict[str, GA4Property] = field(default_factory=dict)

    def add_property(self, property_id: str, **options: Any) -> GA4Property:
        """Create a synthetic property (options: see GA4Property; seed defaults to the
        sandbox's)."""
        options.setdefault("seed", self.seed)
        prop = GA4Property(property_id, self.clock, **options)
        self.properties[property_id] = prop
        return prop

    def property(self, property_id: str) -> GA4Property:
        return self.properties[property_id]

    def truth_by_date(self, property_id: str, start: date, end: date, **kw: Any) -> dict:
        return self.properties[property_id].truth_by_date(start, end, **kw)

    def truth_by_date_channel(self, property_id: str, start: date, end: date, **kw: Any) -> dict:
        return self.properties[property_id].truth_by_date_channel(start, end, **kw)

    # -- quota controls -------------------------------------------------------------------
    def script_quota_error(self, property_id: str, kind: QuotaKind, times: int = 1) -> None:
        """The next `times` runReport calls on the property fail with this quota error."""
        if kind not in QUOTA_MESSAGES:
            raise ValueError(f"unknown quota kind {kind!r}")
        self.properties[property_id].quota.scripted.extend([kind] * times)

    def consume_tokens(self, property_id: str, tokens: int, project: str | None = None) -> None:
        """Use up `tokens` of the current hour's and day's quota (as other clients would)."""
        prop = self.properties[property_id]
        with prop._lock:
            prop.quota.consume(self.clock.now(), project, tokens)

    def exhaust(self, property_id: str, kind: Literal["hourly", "daily"] = "hourly") -> None:
        """Use up the rest of the current hour's (or day's) tokens."""
        prop = self.properties[property_id]
        with prop._lock:
            remaining = prop.quota.remaining(self.clock.now(), "")[kind]
            if remaining > 0:
                prop.quota.consume(self.clock.now(), None, remaining)

    # -- the handler -----------------------------------------------------------------------
    def quota_error(self, kind: QuotaKind) -> Response:
        return google_error(429, QUOTA_MESSAGES[kind])

    async def run_report(self, property_id: str, raw: bytes, project: str) -> Response:
        prop = self.properties.get(property_id)
        if prop is None:
            return google_error(
                403,
                "User does not have sufficient permissions for this property. "
                f"To learn more about Property ID, see {_PROPERTY_ID_URL}.",
            )
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError):
            return google_error(400, "Invalid JSON payload received. Unexpected token.")
        if not isinstance(body, dict):
            return google_error(400, "Invalid JSON payload received. Expected an object.")
        with prop._lock:
            if prop.quota.scripted:
                return self.quota_error(prop.quota.scripted.pop(0))
            if prop.in_flight >= prop.quota.concurrent_requests:
                return self.quota_error("concurrent")
            prop.in_flight += 1
        try:
            if prop.latency:
                await asyncio.sleep(prop.latency)
            with prop._lock:
                now = self.clock.now()
                exhausted = prop.quota.exhausted(now, project)
                if exhausted is not None:
                    return self.quota_error(exhausted)
                try:
                    result = prop.report(body, legacy_conversions=self.legacy_conversions)
                except BadRequest as exc:
                    return google_error(400, exc.message, details=exc.details)
                report, tokens = result.response, result.tokens
                prop.quota.consume(now, project, tokens)
                prop.reports_served += 1
                if result.return_property_quota:
                    remaining = prop.quota.remaining(now, project)
                    quota = prop.quota
                    report["propertyQuota"] = {
                        "tokensPerDay": _quota_status(tokens, remaining["daily"]),
                        "tokensPerHour": _quota_status(tokens, remaining["hourly"]),
                        "concurrentRequests": _quota_status(
                            0, quota.concurrent_requests - (prop.in_flight - 1)
                        ),
                        "serverErrorsPerProjectPerHour": _quota_status(
                            0, quota.server_errors_per_project_per_hour
                        ),
                        "potentiallyThresholdedRequestsPerHour": _quota_status(
                            0, quota.potentially_thresholded_requests_per_hour
                        ),
                        "tokensPerProjectPerHour": _quota_status(
                            tokens, remaining["project_hourly"]
                        ),
                    }
            return JSONResponse(report)
        finally:
            with prop._lock:
                prop.in_flight -= 1


def ga4_routes(service: GA4Service, oauth: OAuthServer, faults: FaultPlan) -> list[Route]:
    def scripted_quota_error(fault: Fault) -> Response:
        # A quota fault names its quota by Google's message; the concurrent-requests one
        # (which clears in seconds) unless it says otherwise.
        return google_error(429, fault.message or QUOTA_MESSAGES["concurrent"])

    async def run_report(request: Request) -> Response:
        async def handle() -> Response:
            auth = oauth.authenticate(
                request.headers.get("authorization"), (ANALYTICS_READONLY, ANALYTICS), SERVICE
            )
            if isinstance(auth, Response):
                return auth
            return await service.run_report(
                request.path_params["property_id"],
                await request.body(),
                oauth.project_number(auth.client_id),
            )

        return await faults.run("ga4", handle, quota_error=scripted_quota_error)

    return [Route("/v1beta/properties/{property_id}:runReport", run_report, methods=["POST"])]


__all__ = [
    "CHANNELS",
    "DIMENSIONS",
    "METRIC_TYPES",
    "QUOTA_MESSAGES",
    "GA4Property",
    "GA4Quota",
    "GA4Service",
    "Report",
    "Session",
    "WebMetrics",
    "ga4_routes",
]

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

Layout: synthetic sites (site.py, sessions.py), the API's request rules (request.py), the
report engine (report.py), quotas (quota.py) and the route (service.py). The truth (truth.py)
is counted from the sessions themselves.
"""

from kpi_pipelines.sandbox.google.ga4.quota import QUOTA_MESSAGES, GA4Quota, QuotaKind
from kpi_pipelines.sandbox.google.ga4.report import Report
from kpi_pipelines.sandbox.google.ga4.request import DIMENSIONS, METRIC_TYPES, BadRequest
from kpi_pipelines.sandbox.google.ga4.service import GA4Service, ga4_routes
from kpi_pipelines.sandbox.google.ga4.sessions import CHANNELS, Channel, Session
from kpi_pipelines.sandbox.google.ga4.site import GA4Property
from kpi_pipelines.sandbox.google.ga4.truth import WebMetrics

__all__ = [
    "CHANNELS",
    "DIMENSIONS",
    "METRIC_TYPES",
    "QUOTA_MESSAGES",
    "BadRequest",
    "Channel",
    "GA4Property",
    "GA4Quota",
    "GA4Service",
    "QuotaKind",
    "Report",
    "Session",
    "WebMetrics",
    "ga4_routes",
]

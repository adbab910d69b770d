"""The report engine: sessions aggregated into the rows, totals and metadata of a runReport."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from kpi_pipelines.sandbox.google.ga4.request import (
    _AGGREGATIONS,
    _USER_METRICS,
    DIMENSIONS,
    METRIC_TYPES,
    ReportRequest,
)
from kpi_pipelines.sandbox.google.ga4.sessions import Session
from kpi_pipelines.sandbox.kit import offset_page

if TYPE_CHECKING:  # the site calls this module; the type alone goes back
    from kpi_pipelines.sandbox.google.ga4.site import GA4Property


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


def build_report(prop: GA4Property, request: ReportRequest, instant: int) -> Report:
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
    page, _ = offset_page(rows, request.offset, request.limit)
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

"""A runReport request body, parsed and validated as the GA4 Data API does."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from kpi_pipelines.sandbox.google.ga4.sessions import Session
from kpi_pipelines.sandbox.kit import PageSize

if TYPE_CHECKING:  # the site calls this module; the type alone goes back
    from kpi_pipelines.sandbox.google.ga4.site import GA4Property

SERVICE = "analyticsdata.googleapis.com"
DEFAULT_LIMIT = 10_000
MAX_LIMIT = 250_000
PAGE_SIZE = PageSize(DEFAULT_LIMIT, MAX_LIMIT, over="clamp")  # past the maximum: the maximum
MAX_DATE_RANGES = 4
MAX_DIMENSIONS = 9
MAX_METRICS = 10


_SCHEMA_URL = "https://developers.google.com/analytics/devguides/reporting/data/v1/api-schema"


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
class ReportRequest:
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


def parse_request(
    raw: dict[str, Any], prop: GA4Property, now: datetime, legacy_conversions: str
) -> ReportRequest:
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
    limit = PAGE_SIZE.resolve(limit or None)  # proto3: 0 is unset
    assert limit is not None  # a clamping page size serves any positive size

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
    return ReportRequest(
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

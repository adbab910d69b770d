"""The Sheets values API: per-minute read quotas, options, and the values routes."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kpi_pipelines.sandbox.google._common import (
    Fault,
    GoogleApiErrors,
    error_info,
    google_error,
)
from kpi_pipelines.sandbox.google.oauth import (
    DRIVE,
    DRIVE_READONLY,
    SPREADSHEETS,
    SPREADSHEETS_READONLY,
    AccessToken,
    OAuthServer,
)
from kpi_pipelines.sandbox.google.sheets.cells import CellInput
from kpi_pipelines.sandbox.google.sheets.grid import (
    RangeError,
    Sheet,
    Spreadsheet,
    read_values,
    resolve_range,
)
from kpi_pipelines.sandbox.kit import FaultInjector, SimClock

SERVICE = "sheets.googleapis.com"


VALUE_RENDER_OPTIONS = ("FORMATTED_VALUE", "UNFORMATTED_VALUE", "FORMULA")
DATE_TIME_RENDER_OPTIONS = ("SERIAL_NUMBER", "FORMATTED_STRING")
MAJOR_DIMENSIONS = ("DIMENSION_UNSPECIFIED", "ROWS", "COLUMNS")
_SCOPES = (SPREADSHEETS_READONLY, SPREADSHEETS, DRIVE_READONLY, DRIVE)


# -- the service ----------------------------------------------------------------------------
PER_USER_LIMIT = ("Read requests per minute per user", "ReadRequestsPerMinutePerUser")
PER_PROJECT_LIMIT = ("Read requests per minute", "ReadRequestsPerMinutePerProject")


def read_quota_error(project: str, label: str, limit_name: str, limit: int) -> Response:
    """The 429 RESOURCE_EXHAUSTED Google sends when a per-minute read quota is used up."""
    consumer = f"project_number:{project}"
    return google_error(
        429,
        f"Quota exceeded for quota metric 'Read requests' and limit '{label}' of "
        f"service '{SERVICE}' for consumer '{consumer}'.",
        details=[
            error_info(
                "RATE_LIMIT_EXCEEDED",
                "googleapis.com",
                {
                    "consumer": f"projects/{project}",
                    "quota_limit": limit_name,
                    "quota_limit_value": str(limit),
                    "quota_location": "global",
                    "quota_metric": f"{SERVICE}/read_requests",
                    "service": SERVICE,
                },
            ),
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [
                    {
                        "description": "Request a higher quota limit.",
                        "url": "https://cloud.google.com/docs/quotas/help/request_increase",
                    }
                ],
            },
        ],
    )


@dataclass
class SheetsService:
    clock: SimClock
    oauth: OAuthServer
    read_requests_per_minute_per_user: int = 60
    read_requests_per_minute_per_project: int = 300
    spreadsheets: dict[str, Spreadsheet] = field(default_factory=dict)
    requests_served: int = 0
    _user_window: dict[str, deque[float]] = field(default_factory=dict)
    _project_window: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def add_spreadsheet(
        self,
        spreadsheet_id: str,
        sheets: dict[str, Iterable[Iterable[CellInput]]] | Sequence[Sheet],
        *,
        title: str = "Untitled spreadsheet",
        named_ranges: dict[str, str] | None = None,
    ) -> Spreadsheet:
        """Define a spreadsheet: `{"Sheet 1": [[cell, ...], ...]}` (rows of cells or plain
        values; None is an empty cell) or a list of `Sheet` (to set grid sizes)."""
        if isinstance(sheets, dict):
            tabs = [Sheet(name, [list(row) for row in rows]) for name, rows in sheets.items()]
        else:
            tabs = list(sheets)
        if not tabs:
            raise ValueError("a spreadsheet has at least one sheet")
        with self._lock:
            spreadsheet = Spreadsheet(spreadsheet_id, tabs, title, dict(named_ranges or {}))
            self.spreadsheets[spreadsheet_id] = spreadsheet
            return spreadsheet

    def reset_quota(self) -> None:
        with self._lock:
            self._user_window.clear()
            self._project_window.clear()

    def _admit(self, user: str, project: str) -> Response | None:
        """Count one read request, or the 429 Google sends when a per-minute quota is used up."""
        now = self.clock.monotonic()
        with self._lock:
            windows = (
                (
                    self._user_window,
                    user,
                    self.read_requests_per_minute_per_user,
                    *PER_USER_LIMIT,
                ),
                (
                    self._project_window,
                    project,
                    self.read_requests_per_minute_per_project,
                    *PER_PROJECT_LIMIT,
                ),
            )
            for store, key, limit, label, limit_name in windows:
                window = store.setdefault(key, deque())
                while window and window[0] <= now - 60:
                    window.popleft()
                if len(window) >= limit:
                    return read_quota_error(project, label, limit_name, limit)
            for store, key, *_ in windows:
                store[key].append(now)
            self.requests_served += 1
        return None

    def handle(
        self,
        token: AccessToken,
        spreadsheet_id: str,
        ranges: list[str],
        params: dict[str, str],
        batch: bool,
    ) -> Response:
        options: dict[str, str] = {}
        for name, field_name, allowed, default, enum_type in (
            (
                "valueRenderOption",
                "value_render_option",
                VALUE_RENDER_OPTIONS,
                "FORMATTED_VALUE",
                "ValueRenderOption",
            ),
            (
                "dateTimeRenderOption",
                "date_time_render_option",
                DATE_TIME_RENDER_OPTIONS,
                "SERIAL_NUMBER",
                "DateTimeRenderOption",
            ),
            ("majorDimension", "major_dimension", MAJOR_DIMENSIONS, "ROWS", "Dimension"),
        ):
            value = params.get(name, default)
            if value not in allowed:
                message = (
                    f"Invalid value at '{field_name}' "
                    f'(type.googleapis.com/google.apps.sheets.v4.{enum_type}), "{value}"'
                )
                return google_error(
                    400,
                    message,
                    details=[
                        {
                            "@type": "type.googleapis.com/google.rpc.BadRequest",
                            "fieldViolations": [{"field": field_name, "description": message}],
                        }
                    ],
                )
            options[name] = value
        project = self.oauth.project_number(token.client_id)
        refused = self._admit(f"{project}:{token.user}", project)
        if refused is not None:
            return refused
        with self._lock:
            spreadsheet = self.spreadsheets.get(spreadsheet_id)
            if spreadsheet is None:
                return google_error(404, "Requested entity was not found.")
            value_ranges = []
            for text in ranges:
                try:
                    resolved = resolve_range(spreadsheet, text)
                except RangeError:
                    return google_error(400, f"Unable to parse range: {text}")
                except ValueError as exc:
                    return google_error(400, str(exc))
                value_ranges.append(
                    read_values(
                        resolved,
                        options["majorDimension"],
                        options["valueRenderOption"],
                        options["dateTimeRenderOption"],
                    )
                )
        if not batch:
            return JSONResponse(value_ranges[0])
        body: dict[str, Any] = {"spreadsheetId": spreadsheet_id}
        if value_ranges:
            body["valueRanges"] = value_ranges
        return JSONResponse(body)


class SheetsErrors(GoogleApiErrors):
    """Google's envelope, with the per-minute read quota answer of the caller's project."""

    def __init__(self, service: SheetsService, oauth: OAuthServer, request: Request) -> None:
        self.service, self.oauth, self.request = service, oauth, request

    def quota(self, fault: Fault) -> Response:
        # The per-user limit is the one a single connector runs into (60 a minute).
        token = self.oauth.lookup(self.request.headers.get("authorization"))
        project = self.oauth.project_number(token.client_id) if token else "0"
        return read_quota_error(
            project, *PER_USER_LIMIT, self.service.read_requests_per_minute_per_user
        )


def sheets_routes(service: SheetsService, oauth: OAuthServer, faults: FaultInjector) -> list[Route]:
    async def read(request: Request, ranges: list[str], *, batch: bool) -> Response:
        async def handle() -> Response:
            auth = oauth.authenticate(request.headers.get("authorization"), _SCOPES, SERVICE)
            if isinstance(auth, Response):
                return auth
            return service.handle(
                auth,
                request.path_params["spreadsheet_id"],
                ranges,
                dict(request.query_params),
                batch=batch,
            )

        return await faults.serve("sheets", SheetsErrors(service, oauth, request), handle)

    async def values_get(request: Request) -> Response:
        return await read(request, [request.path_params["range"]], batch=False)

    async def values_batch_get(request: Request) -> Response:
        return await read(request, request.query_params.getlist("ranges"), batch=True)

    return [
        Route(
            "/v4/spreadsheets/{spreadsheet_id}/values:batchGet", values_batch_get, methods=["GET"]
        ),
        Route("/v4/spreadsheets/{spreadsheet_id}/values/{range:path}", values_get, methods=["GET"]),
    ]

"""Pieces the three Google simulators share: the clock, Google's error body, scripted faults.

Google's JSON APIs (GA4 Data API, Sheets v4) answer every failure with one envelope:
`{"error": {"code": <http status>, "message": "...", "status": "<google.rpc.Code name>",
"details": [...]}}`; `details` is present only where Google sends it (quota errors carry a
`google.rpc.ErrorInfo`). The OAuth token endpoint uses RFC 6749 bodies instead (oauth.py).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from starlette.responses import JSONResponse, Response

DEFAULT_START = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)

# google.rpc.Code names by the HTTP status Google maps them to.
STATUS_NAMES: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
DEFAULT_MESSAGES: dict[int, str] = {
    404: "Requested entity was not found.",
    500: "Internal error encountered.",
    503: "The service is currently unavailable.",
    504: "The request timed out. Please try again.",
}

Api = Literal["oauth", "ga4", "sheets"]


def google_error(
    code: int,
    message: str | None = None,
    *,
    status: str | None = None,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Google's JSON error envelope with HTTP status `code`."""
    error: dict[str, Any] = {
        "code": code,
        "message": message if message is not None else DEFAULT_MESSAGES.get(code, "Error"),
        "status": status or STATUS_NAMES.get(code, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return JSONResponse({"error": error}, status_code=code, headers=headers)


def error_info(reason: str, domain: str, metadata: dict[str, str]) -> dict[str, Any]:
    """A `google.rpc.ErrorInfo` detail."""
    return {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": domain,
        "metadata": metadata,
    }


class SandboxClock:
    """The sandbox's notion of time.

    `now()` is the simulated wall clock that drives data (GA4 days, restatement, hourly and
    daily quota windows): it stands still at `start` and moves only with `advance()`, unless
    `realtime` is set, when real elapsed time is added too. `monotonic()` drives lifetimes
    measured in seconds (access tokens, the Sheets per-minute window): real monotonic time
    plus everything `advance()` added, so a token expires both by waiting and by advancing.
    """

    def __init__(self, start: datetime = DEFAULT_START, *, realtime: bool = False) -> None:
        if start.tzinfo is None:
            raise ValueError("the clock's start must be timezone-aware")
        self._start = start.astimezone(UTC)
        self._realtime = realtime
        self._origin = time.monotonic()
        self._advanced = 0.0
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            elapsed = self._advanced
            if self._realtime:
                elapsed += time.monotonic() - self._origin
        return self._start + timedelta(seconds=elapsed)

    def monotonic(self) -> float:
        with self._lock:
            return time.monotonic() + self._advanced

    def advance(self, *, hours: float = 0, minutes: float = 0, seconds: float = 0) -> datetime:
        delta = hours * 3600 + minutes * 60 + seconds
        if delta < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._advanced += delta
        return self.now()


FaultKind = Literal["status", "delay", "truncate", "malformed"]


@dataclass
class Fault:
    """One scripted failure for the next `times` requests to `api` (None: any API).

    - status: answer `status` with Google's error body (`message` or Google's default);
    - delay: sleep `delay` seconds, then answer normally (client timeouts);
    - truncate: answer the real response cut to half its bytes (a truncated body);
    - malformed: answer 502 with Google's HTML error page instead of JSON.
    """

    kind: FaultKind
    api: Api | None = None
    times: int = 1
    status: int = 503
    message: str | None = None
    delay: float = 0.0


_GOOGLE_502_PAGE = (
    "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n"
    "  <title>Error 502 (Server Error)!!1</title>\n"
    "  <p><b>502.</b> <ins>That's an error.</ins>\n"
    "  <p>The server encountered a temporary error and could not complete your request."
    "<p>Please try again in 30 seconds.  <ins>That's all we know.</ins>\n"
)


class FaultPlan:
    """A queue of scripted faults, consumed in order by matching requests."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        if fault.times < 1:
            raise ValueError("a fault must apply at least once")
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def take(self, api: Api) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.api in (None, api):
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    async def run(self, api: Api, handler: Callable[[], Awaitable[Response]]) -> Response:
        """Answer with `handler()` unless a scripted fault for `api` says otherwise."""
        fault = self.take(api)
        if fault is None:
            return await handler()
        if fault.kind == "status":
            if api == "oauth":
                return JSONResponse(
                    {"error": "internal_failure", "error_description": fault.message or ""},
                    status_code=fault.status,
                )
            return google_error(fault.status, fault.message)
        if fault.kind == "malformed":
            return Response(_GOOGLE_502_PAGE, status_code=502, media_type="text/html")
        if fault.kind == "delay":
            await asyncio.sleep(fault.delay)
            return await handler()
        response = await handler()
        body = bytes(response.body)
        return Response(
            body[: len(body) // 2],
            status_code=response.status_code,
            media_type=response.media_type,
        )

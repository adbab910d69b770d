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
from starlette.types import Receive, Scope, Send

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


FaultKind = Literal["status", "quota", "delay", "truncate", "cut", "malformed"]


@dataclass
class Fault:
    """One scripted failure for `times` requests to `api` (None: any API), once the first
    `after` of them have been served normally (so a fault can strike in the middle of a sync).

    - status: answer `status` with Google's error body (`message` or Google's default);
    - quota: answer 429 RESOURCE_EXHAUSTED with the API's own quota body (GA4: the
      concurrent-requests message unless `message` names another quota; Sheets: the
      per-user read-requests-per-minute error with its ErrorInfo); not for the token endpoint;
    - delay: sleep `delay` seconds, then answer normally (client timeouts);
    - truncate: answer 200 with the real body cut to half its bytes, framed as a whole
      response (a 200 whose body is not JSON);
    - cut: send the real response's headers (its full Content-Length) and half its body,
      then drop the connection (a body cut short in transit);
    - malformed: answer 502 with Google's HTML error page instead of JSON.
    """

    kind: FaultKind
    api: Api | None = None
    times: int = 1
    status: int = 503
    message: str | None = None
    delay: float = 0.0
    after: int = 0


_GOOGLE_502_PAGE = (
    "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n"
    "  <title>Error 502 (Server Error)!!1</title>\n"
    "  <p><b>502.</b> <ins>That's an error.</ins>\n"
    "  <p>The server encountered a temporary error and could not complete your request."
    "<p>Please try again in 30 seconds.  <ins>That's all we know.</ins>\n"
)


class _CutShort(Response):
    """A response whose body stops half-way: the server closes the connection after half
    of the bytes its Content-Length promised (the client sees a protocol error)."""

    def __init__(self, whole: Response) -> None:
        self.status_code = whole.status_code
        self.body = bytes(whole.body)
        self.raw_headers = whole.raw_headers  # Content-Length of the whole body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        half = self.body[: len(self.body) // 2]
        await send({"type": "http.response.body", "body": half, "more_body": True})
        # Returning without the rest makes the server drop the connection mid-body.


class FaultPlan:
    """A queue of scripted faults, consumed in order by matching requests (the first fault
    that matches a request's API decides; one still waiting out its `after` lets it pass)."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        if fault.times < 1:
            raise ValueError("a fault must apply at least once")
        if fault.after < 0:
            raise ValueError("after counts requests served first: 0 or more")
        if fault.kind == "quota" and fault.api not in ("ga4", "sheets"):
            raise ValueError("a quota fault names its API (ga4 or sheets): the bodies differ")
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
                    if fault.after:
                        fault.after -= 1
                        return None
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    async def run(
        self,
        api: Api,
        handler: Callable[[], Awaitable[Response]],
        *,
        quota_error: Callable[[Fault], Response] | None = None,
    ) -> Response:
        """Answer with `handler()` unless a scripted fault for `api` says otherwise;
        `quota_error` builds the API's own 429 body for a quota fault."""
        fault = self.take(api)
        if fault is None:
            return await handler()
        if fault.kind == "quota":
            if quota_error is None:
                raise ValueError(f"the {api} routes serve no quota faults")
            return quota_error(fault)
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
        if fault.kind == "cut":
            return _CutShort(response)
        body = bytes(response.body)
        return Response(
            body[: len(body) // 2],
            status_code=response.status_code,
            media_type=response.media_type,
        )

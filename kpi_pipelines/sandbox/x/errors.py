"""X Ads API's error bodies and rate-limit headers.

Every failure is `{"errors": [{"code": "CAPS_CASE", "message": "...", "parameter": ...}],
"request": {"params": {...}}}` (`parameter` only where one parameter is at fault), with the
HTTP status of the code (docs: fundamentals/error-codes-and-responses). Rate-limited
endpoints send `x-rate-limit-limit`, `x-rate-limit-remaining` and `x-rate-limit-reset`
(epoch seconds) on every answer, and 429 once the window is spent.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

from kpi_pipelines.sandbox.kit import ErrorStyle, Fault, Usage, json_response

# The error code X sends with each status (more specific codes are passed explicitly).
CODES: dict[int, str] = {
    400: "INVALID_PARAMETER",
    401: "UNAUTHORIZED_ACCESS",
    403: "UNAUTHORIZED_ACCESS",
    404: "NOT_FOUND",
    429: "TOO_MANY_REQUESTS",
    500: "INTERNAL_ERROR",
    503: "SERVICE_UNAVAILABLE",
}
MESSAGES: dict[int, str] = {
    401: "This request is not properly authenticated",
    404: "Sorry, that page does not exist",
    429: "Rate limit exceeded",
    500: "Internal error",
    503: "Service unavailable due to request timeout; please try the request again later",
}
API_VERSION = "12"


class XApiError(Exception):
    """A request X refuses: its status, code, message and the parameter at fault."""

    def __init__(
        self, status: int, message: str, *, code: str | None = None, parameter: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or CODES.get(status, "INTERNAL_ERROR")
        self.message = message
        self.parameter = parameter


def error_body(
    code: str, message: str, parameter: str | None = None, params: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if parameter is not None:
        error["parameter"] = parameter
    return {"errors": [error], "request": {"params": dict(params or {})}}


def rate_headers(usage: Usage, *, now: float | None = None) -> dict[str, str]:
    """X's rate-limit headers for `usage`. The reset is an epoch on the real clock (what a
    client compares it with), as far ahead as the simulated window's end."""
    ahead = max(0, usage.reset_at - int(usage.now))
    return {
        "x-rate-limit-limit": str(usage.limit),
        "x-rate-limit-remaining": str(usage.remaining if usage.allowed else 0),
        "x-rate-limit-reset": str(int(now if now is not None else time.time()) + ahead),
    }


class XErrors(ErrorStyle):
    """X's error envelope, for the kit's fault injector. A scripted quota fault is a window
    spent by others (another app of the user): its reset is `quota_reset_seconds` away."""

    messages = MESSAGES
    fallback_message = "Error"

    def __init__(self, quota_reset_seconds: int = 2) -> None:
        self.quota_reset_seconds = quota_reset_seconds

    def body(self, status: int, message: str) -> dict[str, Any]:
        return error_body(CODES.get(status, "INTERNAL_ERROR"), message)

    def respond(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
        return json_response(
            status, body, {"x-current-api-version": API_VERSION, **(headers or {})}
        )

    def quota(self, fault: Fault) -> Response:
        now = time.time()
        reset = int(now) + self.quota_reset_seconds
        usage = Usage(limit=250, used=250, reset_at=reset, now=now, allowed=False)
        return self.error(429, fault.message, headers=rate_headers(usage, now=now))

    def error_response(
        self,
        error: XApiError,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        body = error_body(error.code, error.message, error.parameter, params)
        return self.respond(error.status, body, headers)

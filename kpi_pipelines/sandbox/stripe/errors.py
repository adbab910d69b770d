"""Stripe's error bodies: `{"error": {"code", "doc_url", "message", "param", "type"}}`, the
messages Stripe sends for rate limits, outages, lock timeouts and rolled keys, and the
`Stripe-Should-Retry` header. The fault injector answers Stripe's faults in these words."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from starlette.responses import Response

from kpi_pipelines.sandbox.kit import ErrorStyle, Fault

Obj = dict[str, Any]

RATE_LIMIT_MESSAGE = (
    "Too many requests hit the API too quickly. We recommend an exponential backoff of your "
    "requests."
)
LOCK_TIMEOUT_MESSAGE = (
    "This object cannot be accessed right now because another API request or Stripe "
    "process is currently accessing it. If you see this error intermittently, retry the "
    "request."
)


class ApiError(Exception):
    """An error response in Stripe's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param

    def body(self) -> Obj:
        error: Obj = {
            "code": self.code,
            "message": self.message,
            "param": self.param,
            "type": self.type,
        }
        if self.code:
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        return {"error": error}


def missing(noun: str, obj_id: str, param: str = "id") -> ApiError:
    return ApiError(404, f"No such {noun}: '{obj_id}'", code="resource_missing", param=param)


def redact(key: str) -> str:
    """A key as Stripe prints it in errors: its kind, stars, and its last four characters."""
    if len(key) <= 12:
        return "*" * len(key)
    head = key[:8] if key.startswith(("sk_", "rk_", "pk_")) else ""
    return f"{head}{'*' * (len(key) - len(head) - 4)}{key[-4:]}"


def status_error(status: int, key: str) -> ApiError:
    """What Stripe answers with `status` when it, not the request, is the problem."""
    if status == 401:  # the key was rolled or revoked in the Dashboard
        return ApiError(401, f"Expired API Key provided: {redact(key)}", code="api_key_expired")
    if status == 429:
        return ApiError(429, RATE_LIMIT_MESSAGE, code="rate_limit")
    if status == 409:
        return ApiError(409, LOCK_TIMEOUT_MESSAGE, code="lock_timeout")
    if status >= 500:
        message = (
            "The Stripe API is temporarily unavailable. Please retry your request."
            if status == 503
            else "An unknown error occurred. Please retry your request."
        )
        return ApiError(status, message, type_="api_error")
    return ApiError(status, f"The sandbox was scripted to answer {status}.")


Frame = Callable[[int, object, Mapping[str, str] | None], Response]


class StripeErrors(ErrorStyle):
    """Stripe's words for one request's faults, framed by `frame` (Request-Id, version)."""

    def __init__(self, frame: Frame, api_key: str) -> None:
        self.frame = frame
        self.api_key = api_key

    def respond(
        self, status: int, body: object, headers: Mapping[str, str] | None = None
    ) -> Response:
        return self.frame(status, body, headers)

    def body(self, status: int, message: str) -> Obj:
        error = status_error(status, self.api_key)
        if message:
            error.message = message
        return error.body()

    def message(self, status: int, message: str | None = None) -> str:
        return message or ""  # empty: Stripe's own message for the status (status_error)

    def retry_headers(self, retry: bool | None) -> dict[str, str]:
        if retry is None:
            return {}
        return {"Stripe-Should-Retry": "true" if retry else "false"}

    def revoked(self, fault: Fault) -> Response:
        return self.error(401)

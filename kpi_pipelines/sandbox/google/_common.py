"""What the Google simulators share: Google's error bodies and their fault script.

Google's JSON APIs (GA4 Data API, Sheets v4) answer every failure with one envelope:
`{"error": {"code": <http status>, "message": "...", "status": "<google.rpc.Code name>",
"details": [...]}}`; `details` is present only where Google sends it (quota errors carry a
`google.rpc.ErrorInfo`). The OAuth token endpoint uses RFC 6749 bodies instead.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from starlette.responses import Response

from kpi_pipelines.sandbox.kit import ErrorStyle, Fault, FaultInjector, FaultKind, json_response

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
# The APIs whose requests carry an access token (mid-sync token events count these).
TOKEN_APIS: tuple[Api, ...] = ("ga4", "sheets")

# What Google's front end sends when it, not the API, fails: HTML, not JSON.
_GOOGLE_502_PAGE = (
    b"<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n"
    b"  <title>Error 502 (Server Error)!!1</title>\n"
    b"  <p><b>502.</b> <ins>That's an error.</ins>\n"
    b"  <p>The server encountered a temporary error and could not complete your request."
    b"<p>Please try again in 30 seconds.  <ins>That's all we know.</ins>\n"
)


class GoogleApiErrors(ErrorStyle):
    """The JSON APIs' envelope; each API adds its own quota answer."""

    messages = DEFAULT_MESSAGES
    not_json = (502, _GOOGLE_502_PAGE, "text/html")

    def body(self, status: int, message: str) -> dict[str, Any]:
        return {"error": _error(status, message, None, None)}


class OAuthErrors(ErrorStyle):
    """The token endpoint's RFC 6749 body for a failure it did not expect."""

    fallback_message = ""
    not_json = GoogleApiErrors.not_json

    def body(self, status: int, message: str) -> dict[str, Any]:
        return {"error": "internal_failure", "error_description": message}


class GoogleFaults(FaultInjector):
    """The fault script of the Google host (APIs "oauth", "ga4", "sheets")."""

    def add(self, fault: Fault) -> Fault:
        if fault.kind == "quota" and fault.api not in ("ga4", "sheets"):
            raise ValueError("a quota fault names its API (ga4 or sheets): the bodies differ")
        return super().add(fault)


def _error(
    code: int, message: str | None, status: str | None, details: list[dict[str, Any]] | None
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "code": code,
        "message": message if message is not None else DEFAULT_MESSAGES.get(code, "Error"),
        "status": status or STATUS_NAMES.get(code, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return error


def google_error(
    code: int,
    message: str | None = None,
    *,
    status: str | None = None,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Google's JSON error envelope with HTTP status `code`."""
    return json_response(code, {"error": _error(code, message, status, details)}, headers)


def error_info(reason: str, domain: str, metadata: dict[str, str]) -> dict[str, Any]:
    """A `google.rpc.ErrorInfo` detail."""
    return {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": domain,
        "metadata": metadata,
    }


__all__ = [
    "DEFAULT_START",
    "Api",
    "Fault",
    "FaultKind",
    "GoogleApiErrors",
    "GoogleFaults",
    "OAuthErrors",
    "error_info",
    "google_error",
]

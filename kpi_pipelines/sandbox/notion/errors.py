"""Notion's error bodies: `{"object": "error", "status", "code", "message", "request_id"}`,
with the codes and messages of Notion's status-code reference."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

from kpi_pipelines.sandbox.kit import ErrorStyle, Fault, json_response

CODES: dict[int, str] = {
    400: "validation_error",
    401: "unauthorized",
    403: "restricted_resource",
    404: "object_not_found",
    409: "conflict_error",
    429: "rate_limited",
    500: "internal_server_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}
MESSAGES: dict[int, str] = {
    401: "API token is invalid.",
    403: "API token does not have access to this resource.",
    409: "Conflict occurred while saving. Please try again.",
    429: "You have been rate limited. Please try again in a few minutes.",
    500: "Unexpected error occurred.",
    502: "Bad gateway.",
    503: "Notion is unavailable, please try again later.",
    504: "Notion timed out while attempting to complete this request. Please try again later.",
}
MISSING_VERSION = (
    "Notion-Version header failed validation: Notion-Version header should be defined,"
    " instead was `undefined`."
)

# What Notion's edge sends when it, not the API, fails: an HTML page.
_EDGE_PAGE = (
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    b"<body><center><h1>502 Bad Gateway</h1></center></body></html>"
)


def notion_error(
    status: int, message: str, *, code: str | None = None, headers: Mapping[str, str] | None = None
) -> Response:
    return json_response(status, error_body(status, message, code), headers)


def error_body(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    return {
        "object": "error",
        "status": status,
        "code": code or CODES.get(status, "internal_server_error"),
        "message": message,
        "request_id": str(uuid.uuid4()),
    }


def not_found(kind: str, object_id: str) -> Response:
    return notion_error(
        404,
        f"Could not find {kind} with ID: {object_id}. Make sure the relevant pages and"
        " databases are shared with your integration.",
    )


def invalid_url() -> Response:
    return notion_error(400, "Invalid request URL.", code="invalid_request_url")


class NotionErrors(ErrorStyle):
    messages = MESSAGES
    fallback_message = "Unexpected error occurred."
    not_json = (502, _EDGE_PAGE, "text/html")

    def body(self, status: int, message: str) -> dict[str, Any]:
        return error_body(status, message)

    def quota(self, fault: Fault) -> Response:
        """A scripted rate limit: Notion's 429 with Retry-After (seconds)."""
        return self.error(429, fault.message, headers={"Retry-After": str(int(fault.delay or 1))})

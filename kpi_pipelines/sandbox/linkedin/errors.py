"""LinkedIn's error bodies, as its REST API sends them.

- API errors: `{"status": 401, "serviceErrorCode": 65602, "code": "EXPIRED_ACCESS_TOKEN",
  "message": "The token used in the request has expired"}` (the token's problems: 65600
  invalid, 65601 revoked, 65602 expired, 65604 empty); a spent daily limit: 429
  `TOO_MANY_REQUESTS` (serviceErrorCode 101) "Resource level throttle APPLICATION DAY limit
  for calls to this resource is reached." (or MEMBER DAY), with no Retry-After;
- gateway errors (the version header), with `X-RestLi-Gateway-Error: true`: 400
  `VERSION_MISSING`, 426 `NONEXISTENT_VERSION` "Requested version 20240101 is not active";
- a parameter Rest.li cannot read: 400 `{"errorDetailType":
  "com.linkedin.common.error.BadRequest", "message": "Invalid param. Please see errorDetails
  for more information.", "errorDetails": {"inputErrors": [{"description", "input":
  {"inputPath": {"fieldPath": <param>}}, "code": "PARAM_INVALID"}]}, "status": 400}`;
- the token endpoint (www.linkedin.com/oauth/v2/accessToken): RFC 6749 bodies, a refresh
  token that is invalid, expired or revoked being 400 `invalid_request` (not `invalid_grant`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

from kpi_pipelines.sandbox.kit import ErrorStyle, Fault, json_response

THROTTLE_MESSAGE = "Resource level throttle limit for calls to this resource is reached."
GATEWAY = {"X-RestLi-Gateway-Error": "true"}
_CODES = {
    400: "BAD_REQUEST",
    401: "INVALID_ACCESS_TOKEN",
    403: "ACCESS_DENIED",
    404: "NOT_FOUND",
    429: "TOO_MANY_REQUESTS",
    500: "INTERNAL_SERVER_ERROR",
    503: "SERVICE_UNAVAILABLE",
    504: "GATEWAY_TIMEOUT",
}
_SERVICE_CODES = {401: 65600, 403: 100, 429: 101}
# The token's problems (kit TokenBook) -> (serviceErrorCode, code, message).
TOKEN_PROBLEMS: dict[str, tuple[int, str, str]] = {
    "missing": (65604, "EMPTY_ACCESS_TOKEN", "Empty oauth2_access_token"),
    "unknown": (65600, "INVALID_ACCESS_TOKEN", "Invalid access token"),
    "revoked": (
        65601,
        "REVOKED_ACCESS_TOKEN",
        "The token used in the request has been revoked by the user",
    ),
    "expired": (65602, "EXPIRED_ACCESS_TOKEN", "The token used in the request has expired"),
}


def api_error(
    status: int,
    message: str,
    *,
    code: str | None = None,
    service_code: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"status": status}
    if service_code is not None or status in _SERVICE_CODES:
        body["serviceErrorCode"] = service_code or _SERVICE_CODES[status]
    body["code"] = code or _CODES.get(status, "ERROR")
    body["message"] = message
    return json_response(status, body, headers)


def token_problem(problem: str) -> Response:
    service_code, code, message = TOKEN_PROBLEMS[problem]
    return api_error(401, message, code=code, service_code=service_code)


def param_invalid(param: str, description: str) -> Response:
    return json_response(
        400,
        {
            "errorDetailType": "com.linkedin.common.error.BadRequest",
            "message": "Invalid param. Please see errorDetails for more information.",
            "errorDetails": {
                "inputErrors": [
                    {
                        "description": description,
                        "input": {"inputPath": {"fieldPath": param}},
                        "code": "PARAM_INVALID",
                    }
                ]
            },
            "status": 400,
        },
    )


def daily_limit(kind: str) -> Response:
    """A spent daily limit (`kind`: APPLICATION or MEMBER); it turns at midnight UTC."""
    return api_error(
        429, f"Resource level throttle {kind} DAY limit for calls to this resource is reached."
    )


class LinkedInErrors(ErrorStyle):
    """How the fault injector answers in LinkedIn's words."""

    messages = {
        429: THROTTLE_MESSAGE,
        500: "Internal Server Error",
        503: "Service Unavailable",
        504: "Gateway Timeout",
    }

    def body(self, status: int, message: str) -> dict[str, Any]:
        body: dict[str, Any] = {"status": status}
        if status in _SERVICE_CODES:
            body["serviceErrorCode"] = _SERVICE_CODES[status]
        return body | {"code": _CODES.get(status, "ERROR"), "message": message}

    def revoked(self, fault: Fault) -> Response:
        return token_problem("revoked")


class TokenEndpointErrors(ErrorStyle):
    """The token endpoint's RFC 6749 body for a failure it did not expect."""

    fallback_message = "Internal server error"

    def body(self, status: int, message: str) -> dict[str, Any]:
        return {"error": "server_error", "error_description": message}

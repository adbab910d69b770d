"""How the Graph API says it failed, and how busy a caller is: Meta's error envelope, its
throttles (HTTP 400, not 429) and the usage headers every Marketing API answer carries.

Every error is `{"error": {"message", "type", "code", "error_subcode"?, "is_transient"?,
"error_user_title"?, "error_user_msg"?, "fbtrace_id"}}` with HTTP 400 (500 for Meta's own
failures). Throttles, by what is spent (Meta's Marketing API rate-limiting page):
- 4 (subcode 1504022): the app's Ads Insights load, app-wide (`X-FB-Ads-Insights-Throttle`
  `app_id_util_pct`); no estimate of when it frees up;
- 17 (2446079) and 613 (1487742): the ad account's call score over a rolling 5 minutes
  (`X-Ad-Account-Usage`: `acc_id_util_pct`, `reset_time_duration` in seconds);
- 80000 (ads_insights) and 80004 (ads_management): the account's business-use-case quota
  over a rolling hour (`X-Business-Use-Case-Usage`: `call_count`, `total_cputime`,
  `total_time` in percent and `estimated_time_to_regain_access` in minutes).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.responses import Response

from kpi_pipelines.sandbox.kit import ErrorStyle, Fault, Usage, json_response

RATE_LIMITS_URL = "https://developers.facebook.com/docs/graph-api/overview/rate-limiting"
# code -> (subcode, message, BUC type whose header says when access returns)
THROTTLES: dict[int, tuple[int, str, str | None]] = {
    4: (
        1504022,
        "(#4) There have been too many calls from this app. Wait a bit and try again.",
        None,
    ),
    17: (2446079, "(#17) User request limit reached", None),
    613: (
        1487742,
        "(#613) There have been too many calls from this ad-account. Please wait a bit and try again.",
        None,
    ),
    80000: (
        2446079,
        "(#80000) There have been too many calls from this ad-account. Wait a bit and try again."
        f" For more info, please refer to {RATE_LIMITS_URL}#ads-insights.",
        "ads_insights",
    ),
    80004: (
        2446079,
        "(#80004) There have been too many calls to this ad-account. Wait a bit and try again."
        f" For more info, please refer to {RATE_LIMITS_URL}#ads-management.",
        "ads_management",
    ),
}


class GraphError(Exception):
    """An error answer in the Graph API's words (raised by handlers, rendered once)."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        subcode: int | None = None,
        type_: str = "OAuthException",
        status: int = 400,
        transient: bool | None = None,
        headers: Mapping[str, str] | None = None,
        user_title: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.subcode, self.type = code, message, subcode, type_
        self.status, self.transient, self.user_title = status, transient, user_title
        self.headers = dict(headers or {})

    def response(self) -> Response:
        error: dict[str, Any] = {"message": self.message, "type": self.type, "code": self.code}
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        if self.transient is not None:
            error["is_transient"] = self.transient
        if self.user_title is not None:
            error["error_user_title"] = self.user_title
            error["error_user_msg"] = self.message
        error["fbtrace_id"] = secrets.token_urlsafe(8)[:11]
        return json_response(self.status, {"error": error}, self.headers)


def invalid_parameter(message: str, subcode: int | None = None) -> GraphError:
    return GraphError(100, f"(#100) {message}", subcode=subcode)


def unsupported_get(node: str, method: str = "get") -> GraphError:
    """What Meta answers for a node that does not exist or that the token cannot see."""
    return GraphError(
        100,
        f"Unsupported {method} request. Object with ID '{node}' does not exist, cannot be loaded"
        " due to missing permissions, or does not support this operation. Please read the Graph"
        " API documentation at https://developers.facebook.com/docs/graph-api",
        subcode=33,
        type_="GraphMethodException",
    )


@dataclass
class MetaThrottle(Fault):
    """A scripted throttle: `code` (4, 17, 613, 80000, 80004) answered as Meta does, with
    the usage headers saying `minutes` (BUC estimate) or `seconds` (the account's reset) to
    regain access."""

    code: int = 80000
    account: str | None = None  # whose usage headers say so
    minutes: int = 0
    seconds: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.code not in THROTTLES:
            raise ValueError(f"Meta throttles with codes {sorted(THROTTLES)}, not {self.code}")


def throttled(
    code: int, account_id: str | None, *, minutes: int = 0, seconds: int = 0
) -> GraphError:
    """The 400 of a throttle `code`, with the usage headers of the spent quota."""
    subcode, message, buc = THROTTLES[code]
    headers: dict[str, str] = {}
    if buc is not None and account_id is not None:
        headers |= buc_header(account_id, buc, 100, minutes)
    if code in (17, 613) and account_id is not None:
        headers |= account_header(100, seconds)
    if code == 4:
        headers |= insights_throttle_header(100, 0)
    return GraphError(code, message, subcode=subcode, transient=True, headers=headers)


TIER = "standard_access"


def _header(name: str, value: Any) -> dict[str, str]:
    return {name: msgspec.json.encode(value).decode()}


def buc_header(account_id: str, kind: str, percent: int, minutes: int) -> dict[str, str]:
    return _header(
        "X-Business-Use-Case-Usage",
        {
            account_id: [
                {
                    "type": kind,
                    "call_count": percent,
                    "total_cputime": max(1, percent // 4),
                    "total_time": max(1, percent // 4),
                    "estimated_time_to_regain_access": minutes,
                    "ads_api_access_tier": TIER,
                }
            ]
        },
    )


def account_header(percent: float, seconds: int) -> dict[str, str]:
    return _header(
        "X-Ad-Account-Usage",
        {"acc_id_util_pct": percent, "reset_time_duration": seconds, "ads_api_access_tier": TIER},
    )


def insights_throttle_header(app_percent: float, account_percent: float) -> dict[str, str]:
    return _header(
        "X-FB-Ads-Insights-Throttle",
        {
            "app_id_util_pct": app_percent,
            "acc_id_util_pct": account_percent,
            "ads_api_access_tier": TIER,
        },
    )


def usage_headers(account_id: str, kind: str, buc: Usage, score: Usage) -> dict[str, str]:
    """What a successful answer about an account carries: its BUC and score usage."""
    return buc_header(account_id, kind, buc.percent, buc.minutes_to_regain) | account_header(
        score.percent, score.seconds_to_regain
    )


class GraphErrors(ErrorStyle):
    """The fault injector's answers in Meta's words."""

    messages = {
        400: "(#100) Invalid parameter",
        500: "An unknown error has occurred.",
        503: "(#2) Service temporarily unavailable",
    }
    fallback_message = "An unexpected error has occurred. Please retry your request later."

    def body(self, status: int, message: str) -> dict[str, Any]:
        code = 100 if status < 500 else (1 if status == 500 else 2)
        error = {"message": message, "type": "OAuthException", "code": code}
        if status >= 500:
            error["is_transient"] = True
        return {"error": {**error, "fbtrace_id": secrets.token_urlsafe(8)[:11]}}

    def quota(self, fault: Fault) -> Response:
        if isinstance(fault, MetaThrottle):
            return throttled(
                fault.code, fault.account, minutes=fault.minutes, seconds=fault.seconds
            ).response()
        return throttled(80000, None).response()

    def revoked(self, fault: Fault) -> Response:
        return expired_token(460).response()


def expired_token(subcode: int, when: str = "") -> GraphError:
    """Code 190: 463 the token's lifetime ended, 460 it was invalidated (a password change,
    a revoked grant)."""
    if subcode == 463:
        message = f"Error validating access token: Session has expired on {when}."
    else:
        message = (
            "Error validating access token: The session has been invalidated because the user"
            " changed their password or Facebook has changed the session for security reasons."
        )
    return GraphError(190, message, subcode=subcode)

"""How a provider says it failed: each simulator declares its `ErrorStyle`, the kit uses it.

The fault injector answers a scripted fault in the provider's own words (its error envelope,
its rate-limit answer and headers, what a revoked key gets, what the proxy in front of it sends
when it is not the API answering), so a simulator writes only those declarations, never the
fault machinery. `json_response` is the one way the kit frames a JSON body.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.responses import Response

if TYPE_CHECKING:
    from kpi_pipelines.sandbox.kit.faults import Fault

JSON = Any

# What a proxy or load balancer in front of an API sends when it, not the API, answers.
MAINTENANCE_PAGE = (
    b"<!DOCTYPE html><html><head><title>Service maintenance</title></head>"
    b"<body><h1>We'll be back shortly.</h1></body></html>"
)


def json_response(status: int, body: JSON, headers: Mapping[str, str] | None = None) -> Response:
    # msgspec: the sandbox must stay well ahead of the pipelines it serves (benchmarks/).
    return Response(
        msgspec.json.encode(body),
        status_code=status,
        headers=dict(headers) if headers else None,
        media_type="application/json",
    )


class ErrorStyle(ABC):
    """A provider's error vocabulary. Subclasses declare `body()` and override what differs.

    `messages`: the provider's default message per HTTP status (else `fallback_message`).
    """

    messages: Mapping[int, str] = {}
    fallback_message = "Error"
    # The non-JSON answer of whatever stands in front of the API: status, body, media type.
    not_json: tuple[int, bytes, str] = (200, MAINTENANCE_PAGE, "text/html")

    @abstractmethod
    def body(self, status: int, message: str) -> JSON:
        """The provider's JSON error envelope for `status`."""

    def message(self, status: int, message: str | None = None) -> str:
        return message if message is not None else self.messages.get(status, self.fallback_message)

    def respond(
        self, status: int, body: JSON, headers: Mapping[str, str] | None = None
    ) -> Response:
        """Frame a body as the provider frames every answer (override to add its headers)."""
        return json_response(status, body, headers)

    def error(
        self,
        status: int,
        message: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        return self.respond(status, self.body(status, self.message(status, message)), headers)

    def retry_headers(self, retry: bool | None) -> dict[str, str]:
        """Headers that tell a client whether to retry (most providers send none)."""
        return {}

    def quota(self, fault: Fault) -> Response:
        """The provider's own answer when a rate limit or quota is used up."""
        return self.error(429, fault.message, headers=self.retry_headers(fault.retry))

    def status(self, fault: Fault) -> Response:
        return self.error(fault.status, fault.message, headers=self.retry_headers(fault.retry))

    def revoked(self, fault: Fault) -> Response:
        """What a request gets once its key or token was revoked."""
        return self.error(401, fault.message)

    def not_json_response(self) -> Response:
        status, body, media_type = self.not_json
        return Response(body, status_code=status, media_type=media_type)

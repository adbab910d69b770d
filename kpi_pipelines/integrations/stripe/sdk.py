"""The official Stripe SDK's side of the adapter: its client over the kit's bounded HTTP, and
its typed errors read into messages.

Imported when a sync first talks to Stripe, not with the Definitions: every run process, the
code server and the daemon load the adapter's module, and the SDK (its HTTP client is
subclassed here) is tens of milliseconds of each one's start.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import stripe

from kpi_pipelines.integrations.shared.bounds import BoundedTransport, ResponseLimits

PROVIDER = "stripe"

# What the adapter tells apart (it imports this module only when it talks to Stripe).
ConnectionFailed = stripe.APIConnectionError
AUTH_ERRORS: tuple[type[stripe.StripeError], ...] = (
    stripe.AuthenticationError,
    stripe.PermissionError,
)


def new_client(
    key: str, base_url: str, api_version: str, limits: ResponseLimits, *, timeout: float
) -> stripe.StripeClient:
    """A client whose requests go through BoundedHttpClient, with the SDK's retries off (the
    adapter's own do the retrying)."""
    return stripe.StripeClient(
        key,
        base_addresses={"api": base_url},
        stripe_version=api_version,
        max_network_retries=0,
        http_client=BoundedHttpClient(limits, timeout=timeout),
    )


class BoundedHttpClient(stripe.HTTPClient):
    """The SDK's HTTP client (its documented base for custom clients): httpx over the kit's
    BoundedTransport, so a body over the limits is refused while it streams
    (ProviderResponseRefused, never retried) and never reaches the SDK.

    `stripe.HTTPXClient` takes no client or transport of its own; this does what it does for
    synchronous requests (Stripe's CA bundle; a network failure is an APIConnectionError
    that may be retried)."""

    name = "httpx-bounded"

    def __init__(self, limits: ResponseLimits, *, timeout: float) -> None:
        super().__init__()
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            transport=BoundedTransport(PROVIDER, limits, verify=stripe.ca_bundle_path),
        )

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[bytes, int, Mapping[str, str]]:
        try:
            response = self._client.request(method, url, headers=headers, content=post_data or None)
        except httpx.HTTPError as exc:
            raise stripe.APIConnectionError(
                f"Unexpected error communicating with Stripe ({type(exc).__name__}:"
                f" {exc or 'no detail'})",
                should_retry=True,
            ) from None
        return response.content, response.status_code, response.headers

    def request_stream(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[ReadBody, int, Mapping[str, str]]:
        """`request`, its body read in full (within the limits) and handed over as a stream:
        the SDK does not format a stream into its debug log (see `StripeAdapter._attempt`)."""
        content, status, response_headers = self.request(method, url, headers, post_data)
        return ReadBody(content), status, response_headers

    def close(self) -> None:
        self._client.close()


class ReadBody:
    """A response body already read, in the shape of a stream."""

    __slots__ = ("_content",)

    def __init__(self, content: bytes) -> None:
        self._content = content

    def read(self) -> bytes:
        return self._content


def error_of(requestor: Any, body: Any, status: int, headers: Any) -> stripe.StripeError:
    """The SDK's typed error for an error response (its own parsing of Stripe's body)."""
    try:
        requestor._interpret_response(body, status, headers, api_mode="V1")
    except stripe.StripeError as exc:
        return exc
    return stripe.APIError(f"unexpected HTTP {status}", http_status=status)


def message_of(exc: stripe.StripeError, limit: int) -> str:
    """What Stripe said, in at most `limit` characters."""
    return (exc.user_message or str(exc) or type(exc).__name__)[:limit]

"""OAuth 1.0a user context (RFC 5849, HMAC-SHA1) for the providers that sign requests with
it (X Ads).

The signature (the base string over method, URL, query and form body, HMAC-SHA1, nonce,
timestamp, the `Authorization: OAuth ...` header) is authlib's `authlib.oauth1.ClientAuth`;
`OAuth1Signing` makes it an `httpx.Auth`, so a `ProviderHttpClient` signs every request it
sends, each attempt of a retry afresh (a new nonce and timestamp). The four credentials
come from the variables a connection names: the user's access token and token secret,
and the app's consumer key and secret, which are the operator's (`KPI_<PROVIDER>_CONSUMER_*`)
unless the connection names its own. All four are registered for redaction when read.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Self

import httpx
from authlib.oauth1 import ClientAuth

from kpi_pipelines.integrations.shared.secrets import read_secret
from kpi_pipelines.integrations.shared.spec import SecretSpec
from kpi_pipelines.warehouse.control import Connection


class AuthlibSigning(httpx.Auth):
    """An authlib client authentication (its `prepare(method, uri, headers, body)`) as an
    httpx.Auth: each request is sent as authlib signed it."""

    requires_request_body = True

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        url, headers, body = self.prepare(  # type: ignore[attr-defined]  # authlib's, mixed in
            request.method, str(request.url), request.headers, request.content
        )
        content = self.body_to_send(body, headers)
        headers["Content-Length"] = str(len(content))
        signed = httpx.Request(request.method, url, headers=headers, content=content)
        signed.extensions = request.extensions
        yield signed

    def body_to_send(self, body: bytes | str, headers: dict[str, str]) -> bytes:
        """The signed body as sent (a subclass may re-encode it, setting its headers)."""
        return body.encode() if isinstance(body, str) else body


class OAuth1Signing(AuthlibSigning, ClientAuth):
    """Signs each request with OAuth 1.0a user context: HMAC-SHA1, in the Authorization
    header (what X Ads expects)."""


def oauth1_secrets(app_variables: Mapping[str, str]) -> tuple[SecretSpec, ...]:
    """What an OAuth 1.0a connection names: the user's token and its secret, and the app's
    consumer key and secret when the workspace uses its own app instead of the operator's
    (`app_variables`: purpose -> the operator's variable)."""
    return (
        SecretSpec("access_token", "the user's OAuth 1.0a access token"),
        SecretSpec("access_token_secret", "the access token's secret"),
        *(
            SecretSpec(
                purpose,
                f"the app's {purpose.replace('_', ' ')}, when the workspace uses its own app",
                operator_variable=variable,
            )
            for purpose, variable in app_variables.items()
        ),
    )


@dataclass(frozen=True)
class OAuth1Credentials:
    """The four secrets of OAuth 1.0a user context; read from the environment, never stored."""

    consumer_key: str = field(repr=False)
    consumer_secret: str = field(repr=False)
    token: str = field(repr=False)
    token_secret: str = field(repr=False)

    @classmethod
    def from_connection(cls, connection: Connection, app_variables: Mapping[str, str]) -> Self:
        """Read them from the variables `connection` names (the app's from the operator's
        `app_variables` when it names none); MissingSecret names the variable to set."""
        return cls(
            consumer_key=read_secret(
                connection, "consumer_key", operator_variable=app_variables["consumer_key"]
            ),
            consumer_secret=read_secret(
                connection, "consumer_secret", operator_variable=app_variables["consumer_secret"]
            ),
            token=read_secret(connection, "access_token"),
            token_secret=read_secret(connection, "access_token_secret"),
        )

    def auth(self) -> OAuth1Signing:
        return OAuth1Signing(
            self.consumer_key,
            client_secret=self.consumer_secret,
            token=self.token,
            token_secret=self.token_secret,
        )

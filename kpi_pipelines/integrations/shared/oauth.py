"""OAuth 2.0 refresh-token grant for every provider that uses it (Google first).

The protocol exchange with the token endpoint (the grant's form body, client
authentication, token and RFC 6749 error parsing) is authlib's framework-agnostic
`authlib.oauth2.client.OAuth2Client`, sending through our own `httpx.Client` (authlib's
ready-made httpx integration now warns that it moves to the `httpx2` package, while this
project is on httpx). This module adds what a sync needs around it:

- `OAuth2Session` holds one connection's access token **in memory only**, refreshes it
  ahead of expiry (`leeway`), and once when an API answers 401 (`refresh(stale=...)`). It is
  thread-safe: when several requests need a token at the same moment, one refresh happens
  and the others wait for it and use its token.
- `OAuth2BearerAuth` (an `httpx.Auth`, from `session.auth()`) plugs the session into any
  httpx client, `ProviderHttpClient` included: it sets `Authorization: Bearer ...` on every
  request and, on a 401, refreshes once and sends the request again.
- A refresh token the provider no longer accepts (`invalid_grant`: revoked, expired, or
  the user removed access) ends the sync with a `ProviderAuthError` that says to reconnect
  the workspace; a token endpoint that stays down ends it with `ProviderUnavailable`.

The refresh token is the tenant's grant: it comes from the variable the connection names
(secret purpose `refresh_token`, in its workspace's namespace). The OAuth client (id and
secret) is the deployment's (`KPI_GOOGLE_CLIENT_ID`, `KPI_GOOGLE_CLIENT_SECRET` for Google),
unless the connection names its own. Every
secret and every access token is registered with the redactor as soon as it is known, and
none of them is ever logged, put in an exception, in metadata or in the database.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import httpx
from authlib.integrations.base_client.errors import OAuthError
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.client import OAuth2Client
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from kpi_pipelines import settings
from kpi_pipelines.integrations.shared.base_adapter import IntegrationAdapter
from kpi_pipelines.integrations.shared.bounds import BoundedTransport, ResponseLimits
from kpi_pipelines.integrations.shared.errors import (
    ProviderAuthError,
    ProviderRequestError,
    ProviderUnavailable,
)
from kpi_pipelines.integrations.shared.http import ProviderHttpClient
from kpi_pipelines.integrations.shared.redaction import (
    install_redaction_filter,
    redact,
    register_secret,
)
from kpi_pipelines.integrations.shared.secrets import read_secret
from kpi_pipelines.integrations.shared.spec import SecretSpec
from kpi_pipelines.settings import operator_url
from kpi_pipelines.warehouse.control import Connection

__all__ = [
    "DEFAULT_GOOGLE_TOKEN_URL",
    "GOOGLE",
    "GOOGLE_CLIENT_VARIABLES",
    "OAuth2BearerAuth",
    "OAuth2Credentials",
    "OAuth2Session",
    "TokenEndpoint",
    "TokenResponse",
    "google_secrets",
    "google_token_url",
]

logger = logging.getLogger("kpi_pipelines.oauth")
install_redaction_filter(logger.name)

DEFAULT_GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"

# RFC 6749 section 5.2 error codes, by what the user has to do about them.
_RECONNECT_ERRORS = frozenset({"invalid_grant"})
_CLIENT_ERRORS = frozenset({"invalid_client", "unauthorized_client"})
_REQUEST_ERRORS = frozenset({"invalid_request", "unsupported_grant_type"})
_TRANSIENT_ERRORS = frozenset({"temporarily_unavailable", "server_error"})
_TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class TokenEndpoint:
    """A provider's OAuth 2.0 token endpoint as the deployment reaches it: its address
    (`url_variable`, an operator setting for a sandbox or proxy, else `default_url`), the
    operator's OAuth client (`client_variables`: purpose -> variable), used by every
    connection that names none of its own, and the answers besides RFC 6749's
    `invalid_grant` by which the provider says a refresh token is gone (`gone`: an error code
    and the start of its description), which end the sync with the reconnect message."""

    default_url: str
    url_variable: str
    client_variables: Mapping[str, str]
    gone: tuple[tuple[str, str], ...] = ()

    def url(self, configured: str | None = None) -> str:
        """`configured` (a resource's config), the operator's variable or the provider's
        own; https only, except on loopback."""
        if configured:
            return operator_url(configured, "the resource's token_url")
        return operator_url(
            os.environ.get(self.url_variable) or self.default_url, self.url_variable
        )

    def secrets(self, grant: str) -> tuple[SecretSpec, ...]:
        """What a connection names: its grant (`grant` says what it allows), and the OAuth
        client when the workspace uses its own instead of the operator's."""
        return (
            SecretSpec("refresh_token", f"the workspace's grant ({grant})"),
            *(
                SecretSpec(
                    purpose,
                    f"the OAuth client's {what}, when the workspace uses its own",
                    operator_variable=variable,
                )
                for (purpose, variable), what in zip(
                    self.client_variables.items(), ("id", "secret"), strict=True
                )
            ),
        )

    def grant_gone(self, error: str, description: str) -> bool:
        """Whether the endpoint's answer says the refresh token is no longer valid."""
        return error in _RECONNECT_ERRORS or any(
            error == code and description.startswith(start) for code, start in self.gone
        )


# The operator's OAuth client for every Google connection that names none of its own.
GOOGLE_CLIENT_VARIABLES = {
    "client_id": "KPI_GOOGLE_CLIENT_ID",
    "client_secret": "KPI_GOOGLE_CLIENT_SECRET",
}
GOOGLE = TokenEndpoint(DEFAULT_GOOGLE_TOKEN_URL, "KPI_GOOGLE_TOKEN_URL", GOOGLE_CLIENT_VARIABLES)


def google_secrets(grant: str) -> tuple[SecretSpec, ...]:
    return GOOGLE.secrets(grant)


def google_token_url(configured: str | None = None) -> str:
    return GOOGLE.url(configured)


@dataclass(frozen=True)
class OAuth2Credentials:
    """What the refresh-token grant needs; read from the environment, never stored."""

    client_id: str = field(repr=False)
    client_secret: str = field(repr=False)
    refresh_token: str = field(repr=False)
    token_url: str
    scope: str | None = None

    @classmethod
    def from_connection(
        cls,
        connection: Connection,
        *,
        token_url: str,
        scope: str | None = None,
        client_variables: Mapping[str, str] | None = None,
    ) -> Self:
        """Read the secrets from the variables `connection` names, the client's from the
        operator's `client_variables` when it names none (all registered for redaction);
        raises MissingSecret naming the variable to set."""
        client = client_variables or {}
        return cls(
            client_id=read_secret(
                connection, "client_id", operator_variable=client.get("client_id")
            ),
            client_secret=read_secret(
                connection, "client_secret", operator_variable=client.get("client_secret")
            ),
            refresh_token=read_secret(connection, "refresh_token"),
            token_url=token_url,
            scope=scope,
        )


class TokenResponse(BaseModel):
    """A successful token endpoint response (RFC 6749 section 5.1)."""

    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)

    access_token: str = Field(min_length=1)
    token_type: str = "Bearer"
    expires_in: float | None = Field(default=None, ge=0)
    refresh_token: str | None = None
    scope: str | None = None

    @field_validator("token_type")
    @classmethod
    def _bearer(cls, value: str) -> str:
        if value.lower() != "bearer":
            raise ValueError(f"token_type {value!r} is not supported (only Bearer)")
        return value


class _TransientTokenFailure(Exception):
    """The token endpoint failed in a way worth retrying; never leaves this module."""

    def __init__(self, description: str, status: int | None) -> None:
        super().__init__(description)
        self.description = description
        self.status = status


class OAuth2Session:
    """One connection's access token: refreshed ahead of expiry and on a 401, thread-safe.

    `clock` (seconds, monotonic) decides when a token is about to expire; `leeway` is how
    long before its expiry a token is replaced. `on_refresh_token_rotated` is called with a
    new refresh token when the provider rotates it (Google does not), for a caller that
    keeps it encrypted at rest. `grant_gone(error, description)` says which of the token
    endpoint's error answers mean the refresh token is gone (default: `invalid_grant`).
    """

    def __init__(
        self,
        provider: str,
        credentials: OAuth2Credentials,
        *,
        leeway: float = 60.0,
        timeout: float = 30.0,
        max_attempts: int = 4,
        backoff_max: float = 8.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        limits: ResponseLimits | None = None,
        on_refresh_token_rotated: Callable[[str], None] | None = None,
        grant_gone: Callable[[str, str], bool] | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.provider = provider
        self.token_url = credentials.token_url
        self.leeway = leeway
        self.max_attempts = max_attempts
        self.backoff_max = backoff_max
        self.refreshes = 0
        register_secret(credentials.client_id, credentials.client_secret, credentials.refresh_token)
        self._refresh_token = credentials.refresh_token
        self._scope = credentials.scope
        self._clock = clock
        self._sleep = sleep
        self._on_rotated = on_refresh_token_rotated
        self._grant_gone = grant_gone
        self._lock = threading.Lock()
        self._access_token: str | None = None
        self._renew_at: float | None = None  # on `clock`; None: only when the API says 401
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout),
            # The token endpoint's answers are read within the limits too (bounds.py).
            transport=transport or BoundedTransport(provider, limits),
            headers={"User-Agent": "kpi-pipelines"},
        )
        self._client = _TokenClient(
            self._http,
            client_id=credentials.client_id,
            client_secret=credentials.client_secret,
            token_endpoint_auth_method="client_secret_post",
        )
        # authlib parses a JSON error body as an OAuth error whatever its status; a 429
        # (or a 5xx with JSON) is the endpoint being busy, not a verdict on the token.
        self._client.register_compliance_hook("refresh_token_response", _raise_if_transient)

    def __repr__(self) -> str:
        return f"OAuth2Session(provider={self.provider!r}, token_url={redact(self.token_url)!r})"

    # -- tokens ----------------------------------------------------------------------------

    def access_token(self) -> str:
        """A token valid for at least `leeway` seconds more (refreshing it if needed)."""
        with self._lock:
            if self._access_token is None:
                self._refresh_locked(reason="first use")
            elif self._expiring():
                self._refresh_locked(reason="about to expire")
            assert self._access_token is not None
            return self._access_token

    def refresh(self, *, stale: str | None = None) -> str:
        """Replace the access token because the API rejected `stale` (a 401).

        When another thread has already replaced `stale`, its token is returned and no
        second refresh happens: N requests rejected at once cause one refresh.
        """
        with self._lock:
            current = self._access_token
            if stale is not None and current is not None and current != stale:
                return current
            self._refresh_locked(reason="rejected by the API (HTTP 401)")
            assert self._access_token is not None
            return self._access_token

    def auth(self, *, retry_on_unauthorized: bool = True) -> OAuth2BearerAuth:
        """An httpx.Auth that signs requests with this session's token."""
        return OAuth2BearerAuth(self, retry_on_unauthorized=retry_on_unauthorized)

    def close(self) -> None:
        """Forget the access token and release the token endpoint's connections."""
        with self._lock:
            self._access_token = None
            self._renew_at = None
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- refresh ---------------------------------------------------------------------------

    def _expiring(self) -> bool:
        return self._renew_at is not None and self._clock() >= self._renew_at

    def _refresh_locked(self, *, reason: str) -> None:
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_random_exponential(multiplier=0.5, max=self.backoff_max),
            retry=retry_if_exception_type(_TransientTokenFailure),
            sleep=self._sleep,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            token = retrying(self._exchange)
        except _TransientTokenFailure as failure:
            raise ProviderUnavailable(
                self.provider,
                f"the OAuth token endpoint failed: {failure.description}",
                attempts=self.max_attempts,
                status=failure.status,
            ) from None
        register_secret(token.access_token)
        self._access_token = token.access_token
        if token.expires_in is None:
            self._renew_at = None
        else:
            # `leeway` before expiry, but never sooner than half the lifetime: a token that
            # lives shorter than the leeway must not be refreshed on every request.
            ahead = min(self.leeway, token.expires_in / 2)
            self._renew_at = self._clock() + token.expires_in - ahead
        self.refreshes += 1
        if token.refresh_token and token.refresh_token != self._refresh_token:
            register_secret(token.refresh_token)
            self._refresh_token = token.refresh_token
            if self._on_rotated is not None:
                self._on_rotated(token.refresh_token)
        lifetime = "no stated lifetime" if token.expires_in is None else f"{token.expires_in:.0f} s"
        logger.info(
            "%s: access token refreshed (%s; valid for %s)", self.provider, reason, lifetime
        )

    def _exchange(self) -> TokenResponse:
        """One refresh-token grant; raises _TransientTokenFailure or a ProviderError."""
        options: dict[str, Any] = {}
        if self._scope:
            options["scope"] = self._scope
        try:
            raw = self._client.refresh_token(
                self.token_url, refresh_token=self._refresh_token, **options
            )
        except OAuthError as exc:
            raise self._oauth_failure(exc.error or "", exc.description or "") from None
        except httpx.HTTPStatusError as exc:
            status = exc.response.status_code
            description = f"HTTP {status} from {redact(str(exc.request.url))}"
            if status in _TRANSIENT_STATUSES:
                raise _TransientTokenFailure(description, status) from None
            if status in (400, 401, 403):
                raise ProviderAuthError(self.provider, description, status=status) from None
            raise ProviderRequestError(self.provider, description, status=status) from None
        except httpx.TransportError as exc:
            raise _TransientTokenFailure(
                f"{type(exc).__name__}: {exc or 'no detail'} (POST {redact(self.token_url)})", None
            ) from None
        except ValueError as exc:  # a body that is not a JSON object
            raise _TransientTokenFailure(str(exc), None) from None
        try:
            return TokenResponse.model_validate(dict(raw))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
            )
            raise ProviderUnavailable(
                self.provider, f"the OAuth token endpoint returned an unusable token: {problems}"
            ) from None

    def _oauth_failure(self, error: str, description: str) -> Exception:
        said = f"{error}: {description}" if description else error or "unknown error"
        gone = self._grant_gone(error, description) if self._grant_gone else None
        if gone or (gone is None and error in _RECONNECT_ERRORS):
            return ProviderAuthError(
                self.provider,
                f"the refresh token is no longer valid (revoked, expired, or access was removed;"
                f" the token endpoint said {said})",
                status=400,
            )
        if error in _CLIENT_ERRORS:
            return ProviderAuthError(
                self.provider,
                f"the OAuth client was refused ({said}); check the client id and secret in the"
                " environment variables the connection names",
                status=401,
            )
        if error in _TRANSIENT_ERRORS:
            return _TransientTokenFailure(f"token endpoint said {said}", None)
        if error in _REQUEST_ERRORS:
            return ProviderRequestError(self.provider, f"the token request was refused ({said})")
        return ProviderAuthError(self.provider, f"the token endpoint refused a refresh ({said})")

    def _before_sleep(self, state: RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        logger.warning(
            "%s: %s; retrying the token refresh in %.2f s (attempt %d of %d)",
            self.provider,
            getattr(failure, "description", failure),
            wait,
            state.attempt_number + 1,
            self.max_attempts,
        )


class _ClientAuthentication(httpx.Auth, ClientAuth):
    """authlib's client authentication (client_secret_post / _basic) as an httpx.Auth."""

    requires_request_body = True

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        url, headers, body = self.prepare(
            request.method, str(request.url), request.headers, request.content
        )
        headers["Content-Length"] = str(len(body))
        signed = httpx.Request(request.method, url, headers=headers, content=body)
        signed.extensions = request.extensions
        yield signed


class _TokenClient(OAuth2Client):
    """authlib's OAuth 2.0 client protocol over an httpx.Client."""

    client_auth_class = _ClientAuthentication
    oauth_error_class = OAuthError


def _raise_if_transient(response: httpx.Response) -> httpx.Response:
    if response.status_code in _TRANSIENT_STATUSES:
        response.raise_for_status()
    return response


class OAuth2BearerAuth(httpx.Auth):
    """Signs each request with the session's access token; on a 401, refreshes once."""

    def __init__(self, session: OAuth2Session, *, retry_on_unauthorized: bool = True) -> None:
        self.session = session
        self.retry_on_unauthorized = retry_on_unauthorized

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.session.access_token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401 or not self.retry_on_unauthorized:
            return
        logger.info(
            "%s: HTTP 401 on %s %s; refreshing the access token and sending once more",
            self.session.provider,
            request.method,
            request.url.copy_with(query=None),
        )
        fresh = self.session.refresh(stale=token)
        request.headers["Authorization"] = f"Bearer {fresh}"
        yield request


class OAuthApi:
    """A provider's OAuth2 session and the REST client that carries its tokens, opened and
    closed together (what every OAuth provider's adapter holds between connect and
    disconnect)."""

    def __init__(
        self,
        provider: str,
        connection: Connection,
        *,
        token_url: str,
        base_url: str,
        client_variables: Mapping[str, str] | None = None,
        limits: ResponseLimits | None = None,
        grant_gone: Callable[[str, str], bool] | None = None,
        **http_options: Any,
    ) -> None:
        self.session = OAuth2Session(
            provider,
            OAuth2Credentials.from_connection(
                connection, token_url=token_url, client_variables=client_variables
            ),
            limits=limits,
            grant_gone=grant_gone,
        )
        # Duplicate requests inside a sync are served from its cache, for every REST
        # provider (its hits are in the run's metadata): not an option a provider turns off.
        self.http = ProviderHttpClient(
            provider, base_url, auth=self.session.auth(), cache=True, limits=limits, **http_options
        )

    def close(self) -> None:
        self.http.close()
        self.session.close()


class OAuthAdapter(IntegrationAdapter):
    """An adapter that reaches its provider through one OAuthApi, opened by its
    check_connection and closed on disconnect (also when connecting fails)."""

    _api: OAuthApi | None = PrivateAttr(default=None)

    def _open_api(
        self,
        *,
        token_url: str,
        base_url: str,
        client_variables: Mapping[str, str] | None = None,
        grant_gone: Callable[[str, str], bool] | None = None,
        **http_options: Any,
    ) -> OAuthApi:
        self._close_api()
        self._api = OAuthApi(
            self.provider,
            self.context.connection,
            token_url=token_url,
            base_url=base_url,
            client_variables=client_variables,
            limits=self.spec.limits.response(),
            grant_gone=grant_gone,
            **http_options,
        )
        return self._api

    def request_stats(self) -> dict[str, int | float]:
        return self._api.http.stats.as_metadata() if self._api is not None else {}

    def _close_api(self) -> None:
        if self._api is not None:
            self._api.close()
        self._api = None

    def disconnect(self) -> None:
        self._close_api()
        super().disconnect()


class TokenEndpointAdapter(OAuthAdapter):
    """An adapter of one REST API behind one OAuth token endpoint (`token_endpoint`: its
    address and the operator's OAuth client), the API's host from
    `KPI_<PROVIDER>_BASE_URL`."""

    default_base_url: ClassVar[str]  # the API's own host
    token_endpoint: ClassVar[TokenEndpoint]

    base_url: str | None = None  # default: KPI_<PROVIDER>_BASE_URL, else default_base_url
    token_url: str | None = None  # default: the endpoint's variable, else the provider's own
    timeout_seconds: float = 60.0  # one HTTP request

    def _open_endpoint_api(self, **http_options: Any) -> OAuthApi:
        endpoint = self.token_endpoint
        return self._open_api(
            token_url=endpoint.url(self.token_url),
            base_url=settings.provider_base_url(
                self.provider, self.default_base_url, self.base_url
            ),
            client_variables=endpoint.client_variables,
            grant_gone=endpoint.grant_gone,
            timeout=self.timeout_seconds,
            **http_options,
        )


class GoogleApiAdapter(TokenEndpointAdapter):
    """An adapter of one of Google's REST APIs: Google's token endpoint and the operator's
    OAuth client (`KPI_GOOGLE_*`)."""

    token_endpoint: ClassVar[TokenEndpoint] = GOOGLE

    def _open_google_api(self, **http_options: Any) -> OAuthApi:
        return self._open_endpoint_api(**http_options)

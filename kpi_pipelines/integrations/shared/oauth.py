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

The refresh token is the tenant's grant: the one `kpi-pipelines connect` stored, encrypted,
in the warehouse (`grants.StoredGrant`: read and refreshed under its row lock, the refreshed
grant written in the same transaction), or the variable the connection names (secret
purpose `refresh_token`, in its workspace's namespace). How the provider's token endpoint is
reached (its URL, client authentication, form or JSON body) is its spec's `OAuthFlow`
(oauth_flow.py). The OAuth client (id and secret) is the deployment's
(`KPI_GOOGLE_CLIENT_ID`, `KPI_GOOGLE_CLIENT_SECRET` for Google), unless the connection names
its own. Every secret and every token is registered with the redactor as soon as it is
known, and none of them is ever logged, put in an exception, in metadata or in the database
(but sealed in the grants' table); the client id is public (RFC 6749 section 2.2).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self
from urllib.parse import parse_qsl

import httpx
from authlib.common.errors import AuthlibBaseError
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.client import OAuth2Client
from pydantic import PrivateAttr, ValidationError
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
from kpi_pipelines.integrations.shared.grants import GrantTokens, StoredGrant, connect_command
from kpi_pipelines.integrations.shared.http import ProviderHttpClient
from kpi_pipelines.integrations.shared.oauth1 import AuthlibSigning
from kpi_pipelines.integrations.shared.oauth_flow import (
    ClientAuthMethod,
    OAuthFlow,
    TokenBody,
    TokenResponse,
)
from kpi_pipelines.integrations.shared.redaction import (
    install_redaction_filter,
    redact,
    register_secret,
)
from kpi_pipelines.integrations.shared.secrets import read_secret
from kpi_pipelines.integrations.shared.spec import SecretSpec
from kpi_pipelines.warehouse.control import Connection

__all__ = [
    "DEFAULT_GOOGLE_TOKEN_URL",
    "GOOGLE_AUTHORIZE_URL",
    "GOOGLE_CLIENT_VARIABLES",
    "OAuth2BearerAuth",
    "OAuth2Credentials",
    "OAuth2Session",
    "TokenResponse",
    "google_oauth",
    "google_secrets",
    "google_token_url",
    "oauth_secrets",
]

logger = logging.getLogger("kpi_pipelines.oauth")
install_redaction_filter(logger.name)

DEFAULT_GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
GOOGLE_AUTHORIZE_URL = "https://accounts.google.com/o/oauth2/v2/auth"

# RFC 6749 section 5.2 error codes, by what the user has to do about them.
_RECONNECT_ERRORS = frozenset({"invalid_grant"})
_CLIENT_ERRORS = frozenset({"invalid_client", "unauthorized_client"})
_REQUEST_ERRORS = frozenset({"invalid_request", "unsupported_grant_type"})
_TRANSIENT_ERRORS = frozenset({"temporarily_unavailable", "server_error"})
_TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
# What a refused authorization code means (Google answers a reused one "Bad Request").
_CODE_HINTS = {
    "invalid_grant": "; a code is exchanged once, within minutes of its consent, with the"
    " verifier of its challenge: grant access again",
    "redirect_uri_mismatch": "; the redirect address differs from the consent page's, or the"
    " OAuth client does not allow it (a Desktop client allows http://127.0.0.1 on any port)",
}


# The operator's OAuth client for every Google connection that names none of its own.
GOOGLE_CLIENT_VARIABLES = {
    "client_id": "KPI_GOOGLE_CLIENT_ID",
    "client_secret": "KPI_GOOGLE_CLIENT_SECRET",
}


def google_oauth(scope: str) -> OAuthFlow:
    """Google's consent flow for one scope (`kpi-pipelines connect`): a refresh token
    (`access_type=offline`) asked for on every consent (`prompt=consent`: Google gives one
    only on a consent), the client's id and secret in the body of token requests."""
    return OAuthFlow(
        authorize_url=GOOGLE_AUTHORIZE_URL,
        token_url=DEFAULT_GOOGLE_TOKEN_URL,
        client_variables=GOOGLE_CLIENT_VARIABLES,
        scopes=(scope,),
        authorize_url_variable="KPI_GOOGLE_AUTHORIZE_URL",
        token_url_variable="KPI_GOOGLE_TOKEN_URL",
        client_auth="client_secret_post",
        authorize_params={"access_type": "offline", "prompt": "consent"},
    )


def oauth_secrets(flow: OAuthFlow, grant: str) -> tuple[SecretSpec, ...]:
    """What a connection of `flow`'s provider may name: a variable holding its refresh
    token (`grant` says what it allows) unless `kpi-pipelines connect` stored its grant (a
    provider that rotates refresh tokens takes none: connect only), and the OAuth client
    when the workspace uses its own instead of the operator's."""
    client = tuple(
        SecretSpec(
            purpose,
            f"the OAuth client's {purpose.removeprefix('client_')}, when the workspace uses"
            " its own",
            operator_variable=variable,
        )
        for purpose, variable in flow.client_variables.items()
    )
    if flow.rotates_refresh_tokens:
        return client
    refresh_token = SecretSpec(
        "refresh_token",
        f"the workspace's refresh token ({grant}), unless `kpi-pipelines connect` stored its grant",
    )
    return (refresh_token, *client)


def google_secrets(grant: str) -> tuple[SecretSpec, ...]:
    """What a Google connection may name (`oauth_secrets` of Google's flow)."""
    return oauth_secrets(google_oauth(""), grant)


def google_token_url(configured: str | None = None) -> str:
    """Google's token endpoint: `configured` (a resource's config), `KPI_GOOGLE_TOKEN_URL`
    (sandbox, proxy) or Google's own; https only, except on loopback."""
    return google_oauth("").token_endpoint(configured)


@dataclass(frozen=True)
class OAuth2Credentials:
    """What the refresh-token grant needs; read from the environment, never stored."""

    client_id: str = field(repr=False)
    client_secret: str = field(repr=False)
    # None: the grant is stored in the warehouse (the session's `grant` reads it).
    refresh_token: str | None = field(repr=False)
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
        stored_grant: bool = False,
    ) -> Self:
        """Read the secrets from the variables `connection` names, the client's from the
        operator's `client_variables` when it names none (all registered for redaction but
        the client id, which is public); raises MissingSecret naming the variable to set.
        `stored_grant`: a connection naming no refresh-token variable has its grant in the
        warehouse (refresh_token is then None)."""
        client = client_variables or {}
        named = "refresh_token" in connection.secret_env
        return cls(
            client_id=read_secret(
                connection, "client_id", operator_variable=client.get("client_id"), public=True
            ),
            client_secret=read_secret(
                connection, "client_secret", operator_variable=client.get("client_secret")
            ),
            refresh_token=(
                read_secret(connection, "refresh_token") if named or not stored_grant else None
            ),
            token_url=token_url,
            scope=scope,
        )


class _TransientTokenFailure(Exception):
    """The token endpoint failed in a way worth retrying; never leaves this module."""

    def __init__(self, description: str, status: int | None) -> None:
        super().__init__(description)
        self.description = description
        self.status = status


class OAuth2Session:
    """One connection's access token: refreshed ahead of expiry and on a 401, thread-safe.

    `clock` (seconds, monotonic) decides when a token is about to expire; `leeway` is how
    long before its expiry a token is replaced. With a `grant` (credentials without a
    refresh token), the tokens are the stored grant's: its access token while it is good,
    refreshed under the grant's row lock and stored again (another run may have done so
    first). `client_auth` and `token_body` are how the provider's token endpoint takes the
    client and the request (its spec's OAuthFlow); `reconnect` is the command that grants
    access again, named when the provider refuses the grant; `grant_gone`: the provider's
    answers besides `invalid_grant` that mean the grant is gone (OAuthFlow.grant_gone).
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
        grant: StoredGrant | None = None,
        client_auth: ClientAuthMethod = "client_secret_post",
        token_body: TokenBody = "form",
        reconnect: str | None = None,
        grant_gone: Sequence[tuple[str, str]] = (),
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if credentials.refresh_token is None and grant is None:
            raise ValueError("an OAuth2Session needs a refresh token or a stored grant")
        self.provider = provider
        self.token_url = credentials.token_url
        self.leeway = leeway
        self.max_attempts = max_attempts
        self.backoff_max = backoff_max
        self.refreshes = 0
        register_secret(credentials.client_secret, credentials.refresh_token)
        self._refresh_token = credentials.refresh_token
        self._scope = credentials.scope
        self._clock = clock
        self._sleep = sleep
        self._grant = grant
        self._reconnect = reconnect
        self._grant_gone = tuple(grant_gone)
        self._lock = threading.Lock()
        self._access_token: str | None = None
        self._renew_at: float | None = None  # on `clock`; None: only when the API says 401
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout),
            # The token endpoint's answers are read within the limits too (bounds.py).
            transport=transport or BoundedTransport(provider, limits),
            headers={"User-Agent": "kpi-pipelines"},
        )
        self._client = token_client(
            self._http,
            client_id=credentials.client_id,
            client_secret=credentials.client_secret,
            client_auth=client_auth,
            token_body=token_body,
        )

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
        if self._grant is not None:
            tokens = self._grant.tokens(
                self._exchange_retried, stale=self._access_token, min_life=self.leeway
            )
        else:
            assert self._refresh_token is not None
            tokens = GrantTokens(self._exchange_retried(self._refresh_token), refreshed=True)
        token = tokens.token
        register_secret(token.access_token)
        self._access_token = token.access_token
        if token.expires_in is None:
            self._renew_at = None
        else:
            # `leeway` before expiry, but never sooner than half the lifetime: a token that
            # lives shorter than the leeway must not be refreshed on every request.
            ahead = min(self.leeway, token.expires_in / 2)
            self._renew_at = self._clock() + token.expires_in - ahead
        lifetime = "no stated lifetime" if token.expires_in is None else f"{token.expires_in:.0f} s"
        if not tokens.refreshed:
            logger.info(
                "%s: access token read from the stored grant (%s; valid for %s)",
                self.provider,
                reason,
                lifetime,
            )
            return
        self.refreshes += 1
        if token.refresh_token and token.refresh_token != self._refresh_token:
            register_secret(token.refresh_token)
            if self._grant is None:  # a stored grant keeps it itself
                self._refresh_token = token.refresh_token
        logger.info(
            "%s: access token refreshed (%s; valid for %s)", self.provider, reason, lifetime
        )

    def _exchange_retried(self, refresh_token: str) -> TokenResponse:
        """One refresh-token grant, retried while the endpoint fails transiently."""
        return _retried(
            self.provider,
            lambda: self._exchange(refresh_token),
            max_attempts=self.max_attempts,
            backoff_max=self.backoff_max,
            sleep=self._sleep,
        )

    def _exchange(self, refresh_token: str) -> TokenResponse:
        """One refresh-token grant; raises _TransientTokenFailure or a ProviderError."""
        options: dict[str, Any] = {}
        if self._scope:
            options["scope"] = self._scope
        return _token_request(
            self.provider,
            self.token_url,
            lambda: self._client.refresh_token(
                self.token_url, refresh_token=refresh_token, **options
            ),
            self._oauth_failure,
        )

    def _oauth_failure(self, error: str, description: str) -> Exception:
        said = f"{error}: {description}" if description else error or "unknown error"
        gone = any(
            error == code and description.startswith(start) for code, start in self._grant_gone
        )
        if error in _RECONNECT_ERRORS or gone:
            again = f"; grant access again with `{self._reconnect}`" if self._reconnect else ""
            return ProviderAuthError(
                self.provider,
                f"the refresh token is no longer valid (revoked, expired, or access was removed;"
                f" the token endpoint said {said}){again}",
                status=400,
            )
        return _token_failure(self.provider, error, said, action="refused a refresh")


def _token_failure(provider: str, error: str, said: str, *, action: str) -> Exception:
    """What an RFC 6749 error from a token endpoint means for the caller."""
    if error in _CLIENT_ERRORS:
        return ProviderAuthError(
            provider,
            f"the OAuth client was refused ({said}); check the client id and secret in the"
            " environment variables the connection names",
            status=401,
        )
    if error in _TRANSIENT_ERRORS:
        return _TransientTokenFailure(f"token endpoint said {said}", None)
    if error in _REQUEST_ERRORS:
        return ProviderRequestError(provider, f"the token request was refused ({said})")
    return ProviderAuthError(provider, f"the token endpoint {action} ({said})")


def _token_request(
    provider: str,
    token_url: str,
    call: Callable[[], Any],
    failure: Callable[[str, str], Exception],
) -> TokenResponse:
    """One token endpoint request made by `call` (authlib); its answer validated, its
    failure as _TransientTokenFailure (worth retrying) or a ProviderError (`failure` maps
    an RFC 6749 error body)."""
    try:
        raw = call()
    except TokenEndpointError as exc:
        raise failure(exc.error or "", exc.description or "") from None
    except httpx.HTTPStatusError as exc:
        status = exc.response.status_code
        description = f"HTTP {status} from {redact(str(exc.request.url))}"
        if status in _TRANSIENT_STATUSES:
            raise _TransientTokenFailure(description, status) from None
        if status in (400, 401, 403):
            raise ProviderAuthError(provider, description, status=status) from None
        raise ProviderRequestError(provider, description, status=status) from None
    except httpx.TransportError as exc:
        raise _TransientTokenFailure(
            f"{type(exc).__name__}: {exc or 'no detail'} (POST {redact(token_url)})", None
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
            provider, f"the OAuth token endpoint returned an unusable token: {problems}"
        ) from None


def _retried(
    provider: str,
    request: Callable[[], TokenResponse],
    *,
    max_attempts: int,
    backoff_max: float,
    sleep: Callable[[float], None] = time.sleep,
) -> TokenResponse:
    """`request` retried with backoff while the token endpoint fails transiently; then
    ProviderUnavailable."""

    def before_sleep(state: RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        logger.warning(
            "%s: %s; retrying the token request in %.2f s (attempt %d of %d)",
            provider,
            getattr(failure, "description", failure),
            wait,
            state.attempt_number + 1,
            max_attempts,
        )

    retrying = Retrying(
        stop=stop_after_attempt(max_attempts),
        wait=wait_random_exponential(multiplier=0.5, max=backoff_max),
        retry=retry_if_exception_type(_TransientTokenFailure),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return retrying(request)
    except _TransientTokenFailure as failure:
        raise ProviderUnavailable(
            provider,
            f"the OAuth token endpoint failed: {failure.description}",
            attempts=max_attempts,
            status=failure.status,
        ) from None


def exchange_code(
    provider: str,
    flow: OAuthFlow,
    credentials: OAuth2Credentials,
    *,
    code: str,
    redirect_uri: str,
    code_verifier: str,
    limits: ResponseLimits | None = None,
    timeout: float = 30.0,
    max_attempts: int = 3,
) -> TokenResponse:
    """The authorization-code grant (RFC 6749 section 4.1.3, with the PKCE verifier of RFC
    7636) at `credentials.token_url`, as `flow` says the provider takes it; a refused code
    raises ProviderAuthError with the provider's error."""
    register_secret(code, code_verifier)
    with httpx.Client(
        timeout=httpx.Timeout(timeout),
        transport=BoundedTransport(provider, limits),
        headers={"User-Agent": "kpi-pipelines"},
    ) as http:
        client = token_client(
            http,
            client_id=credentials.client_id,
            client_secret=credentials.client_secret,
            client_auth=flow.client_auth,
            token_body=flow.token_body,
        )
        token = _retried(
            provider,
            lambda: _token_request(
                provider,
                credentials.token_url,
                lambda: client.fetch_token(
                    credentials.token_url,
                    grant_type="authorization_code",
                    code=code,
                    redirect_uri=redirect_uri,
                    code_verifier=code_verifier,
                ),
                lambda error, description: _token_failure(
                    provider,
                    error,
                    (f"{error}: {description}" if description else error or "unknown error")
                    + _CODE_HINTS.get(error, ""),
                    action="refused the authorization code",
                ),
            ),
            max_attempts=max_attempts,
            backoff_max=4.0,
        )
    register_secret(token.access_token, token.refresh_token)
    return token


class TokenEndpointError(AuthlibBaseError):
    """An RFC 6749 error body from a token endpoint, as authlib's client raises it (`error`,
    `description`, taken as sent). Not authlib's `OAuthError`: importing that loads its
    OpenID Connect clients, joserfc and cryptography, in every process."""


class _ClientAuthentication(AuthlibSigning, ClientAuth):
    """authlib's client authentication (client_secret_post / _basic) as an httpx.Auth;
    with `json_body`, the token request's parameters go as a JSON object (Notion)."""

    json_body = False

    def body_to_send(self, body: bytes | str, headers: dict[str, str]) -> bytes:
        if not self.json_body:
            return super().body_to_send(body, headers)
        text = body.decode() if isinstance(body, bytes) else body
        headers["Content-Type"] = "application/json"
        return json.dumps(dict(parse_qsl(text, keep_blank_values=True))).encode()


class _TokenClient(OAuth2Client):
    """authlib's OAuth 2.0 client protocol over an httpx.Client."""

    client_auth_class = _ClientAuthentication
    oauth_error_class = TokenEndpointError
    token_body: TokenBody = "form"

    def client_auth(self, auth_method: Any) -> _ClientAuthentication:
        auth = super().client_auth(auth_method)
        auth.json_body = self.token_body == "json"
        return auth


def token_client(
    http: httpx.Client,
    *,
    client_id: str,
    client_secret: str,
    client_auth: ClientAuthMethod = "client_secret_post",
    token_body: TokenBody = "form",
) -> OAuth2Client:
    """authlib's OAuth 2.0 client over `http`, authenticating as the provider's token
    endpoint wants (an OAuthFlow's `client_auth` and `token_body`)."""
    client = _TokenClient(
        http,
        client_id=client_id,
        client_secret=client_secret,
        token_endpoint_auth_method=client_auth,
    )
    client.token_body = token_body
    # authlib parses a JSON error body as an OAuth error whatever its status; a 429 (or a
    # 5xx with JSON) is the endpoint being busy, not a verdict on the token or the code.
    client.register_compliance_hook("refresh_token_response", _raise_if_transient)
    client.register_compliance_hook("access_token_response", _raise_if_transient)
    return client


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
    disconnect). With `grant`, a connection that names no refresh-token variable uses its
    stored grant; `flow` says how the token endpoint takes the client."""

    def __init__(
        self,
        provider: str,
        connection: Connection,
        *,
        token_url: str,
        base_url: str,
        client_variables: Mapping[str, str] | None = None,
        limits: ResponseLimits | None = None,
        flow: OAuthFlow | None = None,
        grant: StoredGrant | None = None,
        **http_options: Any,
    ) -> None:
        credentials = OAuth2Credentials.from_connection(
            connection,
            token_url=token_url,
            client_variables=client_variables,
            stored_grant=grant is not None,
        )
        self.session = OAuth2Session(
            provider,
            credentials,
            limits=limits,
            grant=grant if credentials.refresh_token is None else None,
            client_auth=flow.client_auth if flow else "client_secret_post",
            token_body=flow.token_body if flow else "form",
            reconnect=connect_command(connection) if flow else None,
            grant_gone=flow.grant_gone if flow else (),
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
    check_connection and closed on disconnect (also when connecting fails).

    The token endpoint and the operator's OAuth client are its spec's `oauth` flow's unless
    given; the grant is the connection's refresh-token variable when it names one, else the
    one `kpi-pipelines connect` stored (read and refreshed as the run)."""

    _api: OAuthApi | None = PrivateAttr(default=None)

    def _open_api(
        self,
        *,
        base_url: str,
        token_url: str | None = None,
        client_variables: Mapping[str, str] | None = None,
        **http_options: Any,
    ) -> OAuthApi:
        self._close_api()
        flow = self.spec.oauth
        if token_url is None:
            if flow is None:
                raise TypeError(f"{self.provider}: no token_url and no OAuthFlow in its spec")
            token_url = flow.token_endpoint()
        context = self.context
        self._api = OAuthApi(
            self.provider,
            context.connection,
            token_url=token_url,
            base_url=base_url,
            client_variables=client_variables or (flow.client_variables if flow else None),
            limits=self.spec.limits.response(),
            flow=flow,
            grant=(
                StoredGrant(context.warehouse, context.connection, actor=context.actor)
                if context.connection.id is not None
                else None
            ),
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


class GoogleApiAdapter(OAuthAdapter):
    """An adapter of one of Google's REST APIs: Google's token endpoint and the operator's
    OAuth client (`KPI_GOOGLE_*`), the API's host from `KPI_<PROVIDER>_BASE_URL`."""

    default_base_url: ClassVar[str]  # the API's own host

    base_url: str | None = None  # default: KPI_<PROVIDER>_BASE_URL, else default_base_url
    token_url: str | None = None  # default: KPI_GOOGLE_TOKEN_URL, else Google's
    timeout_seconds: float = 60.0  # one HTTP request

    def _open_google_api(self, **http_options: Any) -> OAuthApi:
        return self._open_api(
            token_url=google_token_url(self.token_url),
            base_url=settings.provider_base_url(
                self.provider, self.default_base_url, self.base_url
            ),
            client_variables=GOOGLE_CLIENT_VARIABLES,
            timeout=self.timeout_seconds,
            **http_options,
        )

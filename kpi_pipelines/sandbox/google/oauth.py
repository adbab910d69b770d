"""Google's OAuth 2.0 consent page (`GET /o/oauth2/v2/auth`), token endpoint (`POST /token`,
`POST /revoke`) and bearer-token checks.

The consent page (the kit's ConsentDesk) takes Google's parameters (`client_id`,
`redirect_uri`, `response_type=code`, `scope`, `state`, `code_challenge` with
`code_challenge_method=S256` or plain, `access_type`, `prompt`) and, as the simulated user
approves (`consent.answer`, "approve" unless a test says "deny"), redirects at once to the
redirect with `code` (`4/0A...`, one use, 10 minutes), `scope` and the `state` as sent; a
refusal redirects with `error=access_denied`. A desktop client's redirect is a loopback IP
literal on any port (`http://127.0.0.1:<port>/...`, RFC 8252). What Google shows as an error
page, without redirecting: an unknown client (401 invalid_client), a redirect the client
does not have (400 redirect_uri_mismatch), a request that is not a code request or names an
unknown challenge method (400 invalid_request), an unknown scope (400 invalid_scope).

The token endpoint serves two grants (form body; the client may also authenticate with HTTP
Basic):
- `grant_type=authorization_code&code=..&redirect_uri=..&code_verifier=..` -> the access
  token, and a refresh token when the consent asked for `access_type=offline`;
- `grant_type=refresh_token&refresh_token=..` ->
  `{"access_token": "ya29...", "expires_in": 3599, "scope": "...", "token_type": "Bearer"}`
  (with `rotate_refresh_tokens`, a test's knob, a new refresh token too, and the one used is
  refused from then on, as providers that rotate do).
Failures use RFC 6749 bodies as Google sends them:
- unknown client -> 401 `{"error": "invalid_client", "error_description": "The OAuth client was not found."}`
- wrong secret -> 401 `{"error": "invalid_client", "error_description": "Unauthorized"}`
- unknown, revoked or another client's refresh token -> 400
  `{"error": "invalid_grant", "error_description": "Token has been expired or revoked."}`
- a code used before, expired or another client's -> 400 `invalid_grant` "Bad Request"
  ("Malformed auth code." for one never issued); another redirect than the consent's -> 400
  `redirect_uri_mismatch`; no verifier for a challenged code -> 400 `invalid_grant`
  "Missing code verifier.", a wrong one -> "Invalid code verifier."
- missing parameter -> 400 `invalid_request`; another grant type -> 400 `unsupported_grant_type`.

The APIs check `Authorization: Bearer <token>`: a missing, unknown, expired or revoked token
gets 401 UNAUTHENTICATED with Google's message (and a `WWW-Authenticate` header), a token
without the API's scope gets 403 PERMISSION_DENIED "Request had insufficient authentication
scopes.". Lifetimes run on the sandbox clock's `monotonic()` (real seconds plus `advance()`).

Mid-sync events (`GoogleSandbox.expire_access_tokens_after`, `revoke_after`) are scheduled
in API calls by the fault injector, which calls `expire_access_tokens` or `revoke` here.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape
from urllib.parse import parse_qsl, unquote

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from kpi_pipelines.sandbox.google._common import OAuthErrors, error_info, google_error
from kpi_pipelines.sandbox.kit import (
    AuthorizationRequest,
    ConsentDesk,
    FaultInjector,
    IssuedCode,
    SimClock,
)

ANALYTICS_READONLY = "https://www.googleapis.com/auth/analytics.readonly"
ANALYTICS = "https://www.googleapis.com/auth/analytics"
SPREADSHEETS_READONLY = "https://www.googleapis.com/auth/spreadsheets.readonly"
SPREADSHEETS = "https://www.googleapis.com/auth/spreadsheets"
DRIVE_READONLY = "https://www.googleapis.com/auth/drive.readonly"
DRIVE = "https://www.googleapis.com/auth/drive"
DEFAULT_SCOPES: tuple[str, ...] = (ANALYTICS_READONLY, SPREADSHEETS_READONLY)
KNOWN_SCOPES = frozenset(
    {ANALYTICS_READONLY, ANALYTICS, SPREADSHEETS_READONLY, SPREADSHEETS, DRIVE_READONLY, DRIVE}
)
DEFAULT_TOKEN_LIFETIME = 3599
# A desktop client's redirects: a loopback IP literal on any port (RFC 8252 7.3).
LOOPBACK_REDIRECTS = ("http://127.0.0.1", "http://[::1]")
CONSENT_PATH = "/o/oauth2/v2/auth"

_MISSING_CREDENTIALS = (
    "Request is missing required authentication credential. Expected OAuth 2 access token, "
    "login cookie or other valid authentication credential. "
    "See https://developers.google.com/identity/sign-in/web/devconsole-project."
)
_INVALID_CREDENTIALS = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, "
    "login cookie or other valid authentication credential. "
    "See https://developers.google.com/identity/sign-in/web/devconsole-project."
)
_NO_STORE = {
    "Cache-Control": "no-cache, no-store, max-age=0, must-revalidate",
    "Pragma": "no-cache",
}


@dataclass
class OAuthClient:
    client_id: str
    client_secret: str
    project_number: str = "100000000001"
    redirect_uris: tuple[str, ...] = LOOPBACK_REDIRECTS


@dataclass
class RefreshToken:
    token: str
    client_id: str
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    user: str = "sandbox-user@example.com"
    revoked: bool = False
    replaced_by: str | None = None  # rotated: the token issued in its place


@dataclass
class AccessToken:
    token: str
    refresh_token: str
    client_id: str
    user: str
    scopes: tuple[str, ...]
    expires_at: float  # on SimClock.monotonic()
    revoked: bool = False
    uses: int = 0


@dataclass
class TokenRequest:
    """One call to the token endpoint, for tests to inspect (secrets are not kept)."""

    grant_type: str
    client_id: str
    status: int
    error: str | None = None


@dataclass
class OAuthServer:
    """The token endpoint's state: clients, refresh tokens, issued access tokens."""

    clock: SimClock
    token_lifetime: int = DEFAULT_TOKEN_LIFETIME
    clients: dict[str, OAuthClient] = field(default_factory=dict)
    refresh_tokens: dict[str, RefreshToken] = field(default_factory=dict)
    access_tokens: dict[str, AccessToken] = field(default_factory=dict)
    requests: list[TokenRequest] = field(default_factory=list)
    # A refresh also issues a new refresh token and retires the one used.
    rotate_refresh_tokens: bool = False
    consent: ConsentDesk = field(init=False)
    _issued: Counter[str] = field(default_factory=Counter)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        self.consent = ConsentDesk(self.clock, code_prefix="4/0A")

    # -- control -------------------------------------------------------------------------
    def register_client(
        self,
        client_id: str,
        client_secret: str,
        *,
        project_number: str = "100000000001",
        redirect_uris: tuple[str, ...] = LOOPBACK_REDIRECTS,
    ) -> OAuthClient:
        with self._lock:
            client = OAuthClient(client_id, client_secret, project_number, redirect_uris)
            self.clients[client_id] = client
            return client

    def add_refresh_token(
        self,
        refresh_token: str,
        client_id: str,
        *,
        scopes: tuple[str, ...] = DEFAULT_SCOPES,
        user: str = "sandbox-user@example.com",
    ) -> RefreshToken:
        with self._lock:
            if client_id not in self.clients:
                raise KeyError(f"register client {client_id!r} first")
            record = RefreshToken(refresh_token, client_id, tuple(scopes), user)
            self.refresh_tokens[refresh_token] = record
            return record

    def revoke(self, refresh_token: str) -> None:
        """Revoke a refresh token and every access token issued from it (as Google does)."""
        with self._lock:
            self.refresh_tokens[refresh_token].revoked = True
            for access in self.access_tokens.values():
                if access.refresh_token == refresh_token:
                    access.revoked = True

    def expire_access_tokens(self) -> int:
        """Make every access token issued so far expire now; returns how many were live."""
        with self._lock:
            now = self.clock.monotonic()
            live = [a for a in self.access_tokens.values() if a.expires_at > now]
            for access in live:
                access.expires_at = now
            return len(live)

    def issued_count(self, refresh_token: str | None = None) -> int:
        """Access tokens issued in all, or from one refresh token."""
        with self._lock:
            if refresh_token is None:
                return sum(self._issued.values())
            return self._issued[refresh_token]

    def issue(self, refresh_token: str) -> AccessToken:
        """Issue an access token directly (tests that do not go through /token)."""
        with self._lock:
            record = self.refresh_tokens[refresh_token]
            access = AccessToken(
                token="ya29.sandbox-" + secrets.token_urlsafe(24),
                refresh_token=record.token,
                client_id=record.client_id,
                user=record.user,
                scopes=record.scopes,
                expires_at=self.clock.monotonic() + self.token_lifetime,
            )
            self.access_tokens[access.token] = access
            self._issued[record.token] += 1
            return access

    # -- bearer checks used by the API apps --------------------------------------------------
    def lookup(self, authorization: str | None) -> AccessToken | None:
        """The live access token named by an `Authorization` header, else None."""
        if not authorization:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        with self._lock:
            access = self.access_tokens.get(token.strip())
            if access is None or access.revoked or access.expires_at <= self.clock.monotonic():
                return None
            return access

    def validate_bearer(self, authorization: str | None) -> bool:
        """Whether an `Authorization` header carries a live (issued, unexpired, unrevoked) token."""
        return self.lookup(authorization) is not None

    def authenticate(
        self, authorization: str | None, accepted_scopes: tuple[str, ...], service: str
    ) -> AccessToken | Response:
        """The caller's token, or the 401/403 response Google would send instead."""
        challenge = 'Bearer realm="https://accounts.google.com/"'
        if not authorization:
            return google_error(
                401,
                _MISSING_CREDENTIALS,
                details=[error_info("CREDENTIALS_MISSING", "googleapis.com", {"service": service})],
                headers={"WWW-Authenticate": challenge},
            )
        access = self.lookup(authorization)
        if access is None:
            return google_error(
                401,
                _INVALID_CREDENTIALS,
                details=[
                    error_info("ACCESS_TOKEN_EXPIRED", "googleapis.com", {"service": service})
                ],
                headers={"WWW-Authenticate": challenge + ', error="invalid_token"'},
            )
        if not set(accepted_scopes) & set(access.scopes):
            return google_error(
                403,
                "Request had insufficient authentication scopes.",
                details=[
                    error_info(
                        "ACCESS_TOKEN_SCOPE_INSUFFICIENT", "googleapis.com", {"service": service}
                    )
                ],
                headers={"WWW-Authenticate": challenge + ', error="insufficient_scope"'},
            )
        with self._lock:
            access.uses += 1
        return access

    def project_number(self, client_id: str) -> str:
        client = self.clients.get(client_id)
        return client.project_number if client else "0"

    # -- the endpoint --------------------------------------------------------------------------
    def token_response(self, form: dict[str, str], basic: tuple[str, str] | None) -> JSONResponse:
        grant_type = form.get("grant_type", "")
        client_id = form.get("client_id") or (basic[0] if basic else "")
        client_secret = form.get("client_secret") or (basic[1] if basic else "")

        def fail(status: int, error: str, description: str) -> JSONResponse:
            with self._lock:
                self.requests.append(TokenRequest(grant_type, client_id, status, error))
            return JSONResponse(
                {"error": error, "error_description": description},
                status_code=status,
                headers=_NO_STORE,
            )

        if grant_type not in ("refresh_token", "authorization_code"):
            return fail(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")
        if not client_id:
            return fail(400, "invalid_request", "Could not determine client ID from request.")
        with self._lock:
            client = self.clients.get(client_id)
            if client is None:
                return fail(401, "invalid_client", "The OAuth client was not found.")
            if not secrets.compare_digest(client.client_secret, client_secret):
                return fail(401, "invalid_client", "Unauthorized")
            if grant_type == "authorization_code":
                return self._code_grant(form, client_id, fail)
            token = form.get("refresh_token", "")
            if not token:
                return fail(400, "invalid_request", "Missing required parameter: refresh_token")
            record = self.refresh_tokens.get(token)
            if (
                record is None
                or record.revoked
                or record.replaced_by is not None
                or record.client_id != client_id
            ):
                return fail(400, "invalid_grant", "Token has been expired or revoked.")
            if self.rotate_refresh_tokens:
                record = self._rotate(record)
            access = self.issue(record.token)
            self.requests.append(TokenRequest(grant_type, client_id, 200))
        return self._token_body(access, record if self.rotate_refresh_tokens else None)

    def _token_body(self, access: AccessToken, refresh: RefreshToken | None) -> JSONResponse:
        body: dict[str, object] = {
            "access_token": access.token,
            "expires_in": self.token_lifetime,
            "scope": " ".join(access.scopes),
            "token_type": "Bearer",
        }
        if refresh is not None:
            body["refresh_token"] = refresh.token
        return JSONResponse(body, headers=_NO_STORE)

    def _rotate(self, record: RefreshToken) -> RefreshToken:
        fresh = RefreshToken(
            "1//sandbox-" + secrets.token_urlsafe(24), record.client_id, record.scopes, record.user
        )
        self.refresh_tokens[fresh.token] = fresh
        record.replaced_by = fresh.token
        return fresh

    def _code_grant(
        self, form: dict[str, str], client_id: str, fail: Callable[[int, str, str], JSONResponse]
    ) -> JSONResponse:
        """grant_type=authorization_code (under the lock, the client authenticated)."""
        if not form.get("code"):
            return fail(400, "invalid_request", "Missing required parameter: code")
        outcome = self.consent.redeem(
            form.get("code"),
            client_id=client_id,
            redirect_uri=form.get("redirect_uri"),
            code_verifier=form.get("code_verifier"),
        )
        if not isinstance(outcome, IssuedCode):
            return fail(400, *_CODE_PROBLEMS[outcome])
        refresh = None
        if outcome.params.get("access_type") == "offline":
            refresh = self.add_refresh_token(
                "1//sandbox-" + secrets.token_urlsafe(24),
                client_id,
                scopes=outcome.scopes,
                user=outcome.subject,
            )
            outcome.grant = refresh.token
            access = self.issue(refresh.token)
        else:  # an online grant: an access token only
            access = AccessToken(
                token="ya29.sandbox-" + secrets.token_urlsafe(24),
                refresh_token="",
                client_id=client_id,
                user=outcome.subject,
                scopes=outcome.scopes,
                expires_at=self.clock.monotonic() + self.token_lifetime,
            )
            self.access_tokens[access.token] = access
        self.requests.append(TokenRequest("authorization_code", client_id, 200))
        return self._token_body(access, refresh)

    # -- the consent page ------------------------------------------------------------------
    def consent_page(self, query: dict[str, str]) -> Response:
        """What Google answers on its consent page: a redirect back (the simulated user's
        answer), or an error page when the request cannot be redirected."""
        request = AuthorizationRequest.parse(query)
        with self._lock:
            client = self.clients.get(request.client_id)
        if client is None:
            return _error_page(401, "invalid_client", "The OAuth client was not found.")
        problem = request.problem(client.redirect_uris)
        if problem == "redirect_uri":
            return _error_page(
                400,
                "redirect_uri_mismatch",
                "You can't sign in to this app because it doesn't comply with Google's OAuth 2.0"
                " policy.",
            )
        if problem is not None:
            return _error_page(400, "invalid_request", f"Invalid parameter value for {problem}.")
        if not request.scopes:
            return _error_page(400, "invalid_request", "Missing required parameter: scope")
        unknown = [scope for scope in request.scopes if scope not in KNOWN_SCOPES]
        if unknown:
            return _error_page(
                400, "invalid_scope", f"Some requested scopes were invalid. {{invalid={unknown}}}"
            )
        if self.consent.answer == "deny":
            return self.consent.redirect(request, error="access_denied")
        issued = self.consent.issue(request, subject="sandbox-user@example.com")
        return self.consent.redirect(
            request,
            code=issued.code,
            scope=" ".join(issued.scopes),
            authuser="0",
            prompt="consent",
        )

    def revoke_response(self, token: str) -> JSONResponse:
        with self._lock:
            if token in self.refresh_tokens and not self.refresh_tokens[token].revoked:
                self.revoke(token)
                return JSONResponse({})
            access = self.access_tokens.get(token)
            if access is not None and not access.revoked:
                access.revoked = True
                return JSONResponse({})
        return JSONResponse(
            {"error": "invalid_token", "error_description": "Token expired or revoked"},
            status_code=400,
        )


# What the token endpoint answers for a code it will not exchange (the kit's problems).
_CODE_PROBLEMS: dict[str, tuple[str, str]] = {
    "missing": ("invalid_request", "Missing required parameter: code"),
    "unknown": ("invalid_grant", "Malformed auth code."),
    "wrong_client": ("invalid_grant", "Bad Request"),
    "expired": ("invalid_grant", "Bad Request"),
    "reused": ("invalid_grant", "Bad Request"),
    "redirect_mismatch": ("redirect_uri_mismatch", "Bad Request"),
    "verifier_missing": ("invalid_grant", "Missing code verifier."),
    "verifier_mismatch": ("invalid_grant", "Invalid code verifier."),
}


def _error_page(status: int, error: str, message: str) -> HTMLResponse:
    """Google's "Authorization Error" page (no redirect: the request itself is wrong)."""
    return HTMLResponse(
        "<!doctype html><title>Sign in - Google Accounts</title><h1>Access blocked: Authorization"
        f" Error</h1><p>{escape(message)}</p><p>Error {status}: {escape(error)}</p>",
        status_code=status,
    )


async def _form(request: Request) -> dict[str, str]:
    """An `application/x-www-form-urlencoded` body (the token endpoint takes nothing else)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return dict(parse_qsl(body, keep_blank_values=True))


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip()).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, password = decoded.partition(":")
    return unquote(user), unquote(password)


def oauth_routes(server: OAuthServer, faults: FaultInjector) -> list[Route]:
    errors = OAuthErrors()

    async def token(request: Request) -> Response:
        async def handle() -> Response:
            return server.token_response(await _form(request), _basic_credentials(request))

        return await faults.serve("oauth", errors, handle)

    async def revoke(request: Request) -> Response:
        form = await _form(request)
        return server.revoke_response(request.query_params.get("token") or form.get("token", ""))

    async def consent(request: Request) -> Response:
        return server.consent_page(dict(request.query_params))

    return [
        Route(CONSENT_PATH, consent, methods=["GET"]),
        Route("/token", token, methods=["POST"]),
        Route("/revoke", revoke, methods=["POST"]),
    ]

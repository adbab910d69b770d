"""OAuth 1.0a user context, verified as X verifies it: authlib's resource protector checks
the HMAC-SHA1 signature over the request as it arrived (method, URL, query, body), the
consumer key and access token it names, a timestamp within 5 minutes of the real clock
(what the client signed with) and a nonce not seen before. Anything wrong is X's 401
`UNAUTHORIZED_ACCESS`, whatever it was (X does not say which part failed).

Apps (consumer key and secret) and user grants (access token and secret, for some ad
accounts) are registered by tests and the demo; tokens never expire, but are revoked.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from authlib.oauth1.rfc5849.errors import InvalidRequestError, OAuth1Error
from authlib.oauth1.rfc5849.resource_protector import ResourceProtector
from authlib.oauth1.rfc5849.wrapper import OAuth1Request
from starlette.requests import Request

from kpi_pipelines.sandbox.kit import Token, TokenBook
from kpi_pipelines.sandbox.x.errors import XApiError

SKEW_SECONDS = 300


@dataclass(frozen=True)
class App:
    consumer_key: str
    consumer_secret: str

    def get_client_secret(self) -> str:
        return self.consumer_secret

    def get_rsa_public_key(self) -> None:
        return None


@dataclass(frozen=True)
class Grant:
    """A user's access token for one app, and the ad accounts it may use."""

    token: str
    token_secret: str
    consumer_key: str
    accounts: frozenset[str] = frozenset()

    def get_oauth_token_secret(self) -> str:
        return self.token_secret


class OAuth1Verifier(ResourceProtector):
    """The apps and grants of one simulator, and the nonces it has seen."""

    EXPIRY_TIME = SKEW_SECONDS

    def __init__(self, tokens: TokenBook) -> None:
        self.tokens = tokens
        self.apps: dict[str, App] = {}
        self.grants: dict[str, Grant] = {}
        self._nonces: set[tuple[str, str, str]] = set()
        self._nonce_times: deque[tuple[float, tuple[str, str, str]]] = deque()
        self._lock = threading.Lock()

    def get_client_by_id(self, client_id: str) -> App | None:
        return self.apps.get(client_id)

    def get_token_credential(self, request: OAuth1Request) -> Grant | None:
        grant = self.grants.get(request.token or "")
        if grant is None or grant.consumer_key != request.client_id:
            return None
        checked = self.tokens.check(grant.token)
        return grant if isinstance(checked, Token) else None

    def validate_timestamp_and_nonce(self, request: OAuth1Request) -> None:
        super().validate_timestamp_and_nonce(request)  # too old, missing, reused
        if int(request.timestamp) > time.time() + SKEW_SECONDS:
            raise InvalidRequestError('Invalid "oauth_timestamp" value')

    def exists_nonce(self, nonce: str, request: OAuth1Request) -> bool:
        """Seen before (for this app and token)? Records it; forgets what is too old to
        be replayed anyway."""
        key = (request.client_id or "", request.token or "", nonce)
        now = time.time()
        with self._lock:
            while self._nonce_times and self._nonce_times[0][0] < now - 2 * SKEW_SECONDS:
                self._nonces.discard(self._nonce_times.popleft()[1])
            if key in self._nonces:
                return True
            self._nonces.add(key)
            self._nonce_times.append((now, key))
            return False

    async def verify(self, request: Request) -> Grant:
        """The grant a request is signed with; XApiError 401 when it is not properly signed."""
        body: str | None = None
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            body = (await request.body()).decode("utf-8", "replace")
        try:
            verified = self.validate_request(
                request.method, str(request.url), body, request.headers
            )
        except (OAuth1Error, ValueError):
            raise XApiError(401, "This request is not properly authenticated") from None
        return verified.credential


def account_access(grant: Grant, account_id: str) -> None:
    """X's answer to a user asking for an account it has no access to (or none by that id)."""
    if account_id not in grant.accounts:
        raise XApiError(
            403,
            f"User is not authorized to access account {account_id}",
            code="ACCOUNT_NOT_FOUND",
        )

"""A provider's consent page and authorization-code grant, as every simulator serves them.

What RFC 6749 (4.1), RFC 7636 (PKCE) and RFC 8252 (loopback redirects) fix is here, once;
each simulator keeps its routes, its error bodies and what a code grants:

    desk = ConsentDesk(clock, code_prefix="4/0A")                  # one per simulator
    request = AuthorizationRequest.parse(request.query_params)       # the consent page's query
    problem = request.problem(allowed_redirects)                     # "redirect_uri", ... or None
    if desk.answer == "deny":                                        # the simulated user
        return desk.redirect(request, error="access_denied")        # state echoed
    issued = desk.issue(request, subject="user@example.com")        # a one-time code
    return desk.redirect(request, code=issued.code)                 # 302 back to the client

    # the token endpoint, grant_type=authorization_code:
    outcome = desk.redeem(form.get("code"), client_id=..., redirect_uri=form.get("redirect_uri"),
                          code_verifier=form.get("code_verifier"))
    -> IssuedCode (redeemed now: attach what it granted, `issued.grant = refresh_token`)
       or a CodeProblem: "missing", "unknown", "wrong_client", "expired", "reused",
       "redirect_mismatch", "verifier_missing", "verifier_mismatch"

A code lives `lifetime` on the clock's monotonic seconds and is spent by the first
redemption its client attempts (a wrong verifier spends it too, so a verifier cannot be
guessed); the PKCE challenge is checked with authlib's RFC 7636 comparisons. Tests read
`desk.codes` (what was issued, challenged with which method, redeemed or not) and set
`desk.answer` to have the simulated user refuse.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

from authlib.oauth2.rfc7636.challenge import (
    compare_plain_code_challenge,
    compare_s256_code_challenge,
)
from starlette.responses import RedirectResponse

from kpi_pipelines.sandbox.kit.clock import SimClock

CodeProblem = Literal[
    "missing",
    "unknown",
    "wrong_client",
    "expired",
    "reused",
    "redirect_mismatch",
    "verifier_missing",
    "verifier_mismatch",
]
RequestProblem = Literal[
    "client_id", "redirect_uri", "response_type", "code_challenge", "code_challenge_method"
]
# RFC 7636 4.1 and 4.2: 43 to 128 unreserved characters.
_PKCE_TEXT = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_CHALLENGE_CHECKS = {"S256": compare_s256_code_challenge, "plain": compare_plain_code_challenge}
DEFAULT_CODE_LIFETIME = 600.0  # seconds: RFC 6749 4.1.2 recommends 10 minutes at most


@dataclass(frozen=True)
class AuthorizationRequest:
    """The consent page's query (RFC 6749 4.1.1, RFC 7636 4.3); `params` has all of it."""

    client_id: str
    redirect_uri: str
    response_type: str
    scopes: tuple[str, ...]
    state: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    params: Mapping[str, str]

    @classmethod
    def parse(cls, query: Mapping[str, str], *, scope_separator: str = " ") -> AuthorizationRequest:
        scope = query.get("scope", "")
        challenge = query.get("code_challenge") or None
        return cls(
            client_id=query.get("client_id", ""),
            redirect_uri=query.get("redirect_uri", ""),
            response_type=query.get("response_type", ""),
            scopes=tuple(s for s in scope.split(scope_separator) if s),
            state=query.get("state"),
            code_challenge=challenge,
            # RFC 7636 4.3: a challenge without a method is "plain"
            code_challenge_method=query.get("code_challenge_method")
            or ("plain" if challenge else None),
            params=dict(query),
        )

    def problem(self, allowed_redirects: Iterable[str]) -> RequestProblem | None:
        """What the consent page must refuse outright (without redirecting: the redirect
        itself may be what is wrong), or None."""
        if not self.client_id:
            return "client_id"
        if not redirect_allowed(allowed_redirects, self.redirect_uri):
            return "redirect_uri"
        if self.response_type != "code":
            return "response_type"
        if (
            self.code_challenge_method is not None
            and self.code_challenge_method not in _CHALLENGE_CHECKS
        ):
            return "code_challenge_method"
        if self.code_challenge is not None and not _PKCE_TEXT.match(self.code_challenge):
            return "code_challenge"
        return None


def redirect_allowed(allowed: Iterable[str], requested: str) -> bool:
    """Whether `requested` is one of the client's redirects: the same address, or (RFC 8252
    7.3) an http redirect to the same loopback IP literal on any port, with the same path
    (any path when the registered one has none)."""
    try:
        asked = urlsplit(requested)
        asked_port = asked.port
    except ValueError:
        return False
    if not requested or asked.fragment:
        return False
    for registered in allowed:
        if requested == registered:
            return True
        known = urlsplit(registered)
        if (
            known.scheme == asked.scheme == "http"
            and _loopback_literal(known.hostname)
            and known.hostname == asked.hostname
            and known.port is None
            and asked_port is not None
            and not asked.query
            and (known.path in ("", "/") or known.path == asked.path)
        ):
            return True
    return False


def _loopback_literal(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name ("localhost") is not a literal
        return False


@dataclass
class IssuedCode:
    """One authorization code and what it was issued for."""

    code: str = field(repr=False)
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    subject: str
    code_challenge: str | None
    code_challenge_method: str | None
    expires_at: float  # on the clock's monotonic()
    params: Mapping[str, str]  # the consent page's query (access_type=offline, owner=user...)
    redeemed: bool = False
    verified: bool = False  # redeemed with a verifier matching its challenge
    grant: Any = None  # what the token endpoint issued for it (the simulator's to fill)


class ConsentDesk:
    """The authorization codes of one simulator (thread-safe)."""

    def __init__(
        self,
        clock: SimClock,
        *,
        code_prefix: str = "",
        lifetime: float = DEFAULT_CODE_LIFETIME,
    ) -> None:
        self.clock = clock
        self.code_prefix = code_prefix
        self.lifetime = lifetime
        # The simulated user's answer on the consent page.
        self.answer: Literal["approve", "deny"] = "approve"
        self.codes: list[IssuedCode] = []
        self._by_code: dict[str, IssuedCode] = {}
        self._lock = threading.Lock()

    def issue(
        self,
        request: AuthorizationRequest,
        *,
        subject: str,
        scopes: tuple[str, ...] | None = None,
    ) -> IssuedCode:
        """A one-time code for `request`, approved by `subject` (for `scopes`, else the
        requested ones)."""
        issued = IssuedCode(
            code=self.code_prefix + secrets.token_urlsafe(32),
            client_id=request.client_id,
            redirect_uri=request.redirect_uri,
            scopes=request.scopes if scopes is None else scopes,
            subject=subject,
            code_challenge=request.code_challenge,
            code_challenge_method=request.code_challenge_method,
            expires_at=self.clock.monotonic() + self.lifetime,
            params=request.params,
        )
        with self._lock:
            self.codes.append(issued)
            self._by_code[issued.code] = issued
        return issued

    def redeem(
        self,
        code: str | None,
        *,
        client_id: str,
        redirect_uri: str | None,
        code_verifier: str | None,
    ) -> IssuedCode | CodeProblem:
        """The code's record if `client_id` may exchange it now (RFC 6749 4.1.3: the same
        client and redirect; RFC 7636 4.6: a verifier matching the challenge), else what is
        wrong. Its client's first attempt spends the code, whatever the outcome."""
        if not code:
            return "missing"
        with self._lock:
            issued = self._by_code.get(code)
            if issued is None:
                return "unknown"
            if issued.client_id != client_id:
                return "wrong_client"
            if issued.redeemed:
                return "reused"
            issued.redeemed = True
        if self.clock.monotonic() >= issued.expires_at:
            return "expired"
        # RFC 6749 4.1.3: required, and identical, when the request included it
        if redirect_uri != issued.redirect_uri:
            return "redirect_mismatch"
        if issued.code_challenge is not None:
            if not code_verifier:
                return "verifier_missing"
            check = _CHALLENGE_CHECKS[issued.code_challenge_method or "plain"]
            if not _PKCE_TEXT.match(code_verifier) or not check(
                code_verifier, issued.code_challenge
            ):
                return "verifier_mismatch"
            issued.verified = True
        return issued

    def redirect(self, request: AuthorizationRequest, **params: str) -> RedirectResponse:
        """The 302 back to the client's redirect with `params` (a code, or an error) and
        the request's state, as it came."""
        query = dict(params)
        if request.state is not None:
            query["state"] = request.state
        separator = "&" if urlsplit(request.redirect_uri).query else "?"
        return RedirectResponse(
            request.redirect_uri + separator + urlencode(query),
            status_code=302,
            headers={"Cache-Control": "no-store"},
        )

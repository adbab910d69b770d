"""Credentials a simulator issued, with lifetimes on the simulated clock, that a test can
expire or revoke mid-sync; each platform answers a bad one in its own words.

    tokens = TokenBook(clock)
    access = tokens.issue("act_1", lifetime=timedelta(days=60))           # Meta, LinkedIn
    refresh = tokens.issue("member_9", lifetime=timedelta(days=365), kind="refresh")
    checked = tokens.check(request_token)      # a Token, or "missing" / "unknown" /
                                               # "expired" / "revoked"
    -> Meta: code 190 for "expired"; LinkedIn: 401; X (lifetime None): 401 once revoked
    tokens.expire()                           # every access token expires now
    faults.at_request(5, tokens.expire)       # ... after 5 more requests
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from kpi_pipelines.sandbox.kit.clock import SimClock

TokenKind = Literal["access", "refresh"]
Problem = Literal["missing", "unknown", "expired", "revoked"]


@dataclass(frozen=True)
class Token:
    value: str
    subject: str  # the account, member or app it acts for
    kind: TokenKind
    issued_at: datetime
    expires_at: datetime | None  # None: never (X's OAuth 1.0a tokens)
    scopes: frozenset[str] = frozenset()
    revoked: bool = False

    def problem(self, now: datetime) -> Problem | None:
        if self.revoked:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return None


class TokenBook:
    """The tokens of one simulator (thread-safe)."""

    def __init__(self, clock: SimClock, *, prefix: str = "") -> None:
        self.clock = clock
        self.prefix = prefix
        self._tokens: dict[str, Token] = {}
        self._lock = threading.Lock()

    def issue(
        self,
        subject: str,
        *,
        lifetime: timedelta | None,
        kind: TokenKind = "access",
        scopes: Iterable[str] = (),
        value: str | None = None,
    ) -> Token:
        """A new token for `subject` valid for `lifetime` from now (None: until revoked);
        `value` for a fixed one (a demo's), else a random one with the book's prefix."""
        now = self.clock.now()
        token = Token(
            value or self.prefix + secrets.token_urlsafe(32),
            subject,
            kind,
            now,
            None if lifetime is None else now + lifetime,
            frozenset(scopes),
        )
        with self._lock:
            self._tokens[token.value] = token
        return token

    def check(self, value: str | None, *, kind: TokenKind = "access") -> Token | Problem:
        """The live token `value` names, or what is wrong with it (another kind of token
        is "unknown": a refresh token does not open the API)."""
        if not value:
            return "missing"
        with self._lock:
            token = self._tokens.get(value)
        if token is None or token.kind != kind:
            return "unknown"
        return token.problem(self.clock.now()) or token

    def get(self, value: str) -> Token | None:
        with self._lock:
            return self._tokens.get(value)

    def revoke(self, value: str | None = None, *, subject: str | None = None) -> int:
        """Revoke one token, or every token of `subject` (both None: all). Returns how many."""
        return self._update(value, subject, None, lambda t: replace(t, revoked=True))

    def expire(
        self, value: str | None = None, *, subject: str | None = None, kind: TokenKind = "access"
    ) -> int:
        """End the lifetime of one token, or of every `kind` token (of `subject`), now."""
        now = self.clock.now()
        return self._update(value, subject, kind, lambda t: replace(t, expires_at=now))

    def _update(
        self,
        value: str | None,
        subject: str | None,
        kind: TokenKind | None,
        change: Callable[[Token], Token],
    ) -> int:
        with self._lock:
            chosen = [
                t
                for t in self._tokens.values()
                if (value is None or t.value == value)
                and (subject is None or t.subject == subject)
                and (kind is None or value is not None or t.kind == kind)
            ]
            for token in chosen:
                self._tokens[token.value] = change(token)
            return len(chosen)

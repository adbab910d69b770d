"""The simulated LinkedIn Marketing API's state and the controls tests and the demo use.

    sandbox = LinkedInSandbox(seed=7)                      # fixed clock at LINKEDIN_START
    sandbox.register_client("client-1", "secret")
    account = sandbox.add_account("5100", time_zone="America/Los_Angeles", currency="USD")
    sandbox.add_member("member-1", refresh_token="AQX...", client_id="client-1",
                       accounts=["5100"])
    sandbox.clock.advance(hours=6)

- Ad accounts are the kit's (`AdSandbox`): campaigns deliver in the advertiser's hours (its
  `time_zone`), but LinkedIn has no account time zone: adAnalytics days are UTC days
  (truth.py), and an ad account shows only its currency.
- Members hold OAuth grants of one client (a refresh token of 365 days, not sliding, and
  access tokens of 60 days, both on the simulated clock) and roles on ad accounts: an
  account a member has no role on is refused (403) or, in adAnalytics, simply empty.
- Versions (`LinkedIn-Version: YYYYMM`): a version is served from the first of its month
  until the 15th of the same month a year later (LinkedIn supports each for at least a
  year), unless a test sunsets it sooner (`sunset`).
- Daily limits per application and per member (and endpoint), turning at midnight UTC:
  a call past either is answered 429 naming the limit, with no Retry-After.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from kpi_pipelines.sandbox.kit import CallBudget, stable_digits
from kpi_pipelines.sandbox.kit.ads import AdMetrics, AdSandbox, Restatement
from kpi_pipelines.sandbox.linkedin.truth import (
    DEFAULT_CONVERSIONS,
    DEFAULT_VALUE,
    figures_by_utc_day,
    metrics_of,
)

LINKEDIN_START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
ACCESS_LIFETIME = timedelta(days=60)
REFRESH_LIFETIME = timedelta(days=365)
SCOPES = ("r_ads", "r_ads_reporting")
ENDPOINTS = ("adAccounts", "adCampaigns", "adAnalytics")
# The APIs whose requests carry an access token (mid-sync token events count these).
TOKEN_APIS = ENDPOINTS
Limit = Literal["APPLICATION", "MEMBER"]
_VERSION = re.compile(r"^(\d{4})(\d{2})(?:\.\d{2})?$")


def _campaign_id(key: str) -> str:
    return stable_digits(f"linkedin:{key}", 9)


@dataclass(frozen=True)
class Caller:
    """Who a live access token acts for."""

    member: str
    client_id: str
    scopes: frozenset[str]


class LinkedInSandbox(AdSandbox):
    """LinkedIn's ad accounts, OAuth grants, versions and daily limits on one clock."""

    restatement = Restatement(conversion_days=30, billing_days=1)
    campaign_id_shape = staticmethod(_campaign_id)
    token_prefix = "AQV"

    def __init__(
        self,
        *,
        seed: int = 0,
        start: datetime = LINKEDIN_START,
        realtime: bool = False,
        app_daily_limit: int = 100_000,
        member_daily_limit: int = 25_000,
        max_elements: int = 15_000,
        max_metrics: int = 20,
        **options: Any,
    ) -> None:
        super().__init__(seed=seed, start=start, realtime=realtime, **options)
        self._lock = threading.Lock()
        self.clients: dict[str, str] = {}
        self._client_of: dict[str, str] = {}  # a token (refresh or access) -> its client
        self._roles: dict[str, set[str]] = {}  # member -> ad account ids
        self._sunset: set[str] = set()
        daily = timedelta(days=1)  # aligned: the window turns at 00:00 UTC
        self.app_daily = CallBudget(self.clock, limit=app_daily_limit, window=daily)
        self.member_daily = CallBudget(self.clock, limit=member_daily_limit, window=daily)
        self.max_elements = max_elements  # adAnalytics cuts a longer answer off silently
        self.max_metrics = max_metrics  # metrics one adAnalytics request may name
        self.served: list[dict[str, Any]] = []  # what each API request asked (for tests)

    # -- OAuth --------------------------------------------------------------------------------
    def register_client(self, client_id: str, client_secret: str) -> None:
        self.clients[client_id] = client_secret

    def add_member(
        self,
        member: str,
        *,
        refresh_token: str,
        client_id: str,
        accounts: Iterable[str] = (),
        scopes: Iterable[str] = SCOPES,
        lifetime: timedelta = REFRESH_LIFETIME,
    ) -> None:
        """A member who granted `client_id` (its refresh token) and has a role on `accounts`."""
        if client_id not in self.clients:
            raise KeyError(f"register client {client_id!r} first")
        self.tokens.issue(
            member, lifetime=lifetime, kind="refresh", scopes=scopes, value=refresh_token
        )
        with self._lock:
            self._client_of[refresh_token] = client_id
            self._roles.setdefault(member, set()).update(accounts)

    def bind(self, token: str, client_id: str) -> None:
        """Record which client a token was issued to."""
        with self._lock:
            self._client_of[token] = client_id

    def client_of(self, token: str) -> str | None:
        return self._client_of.get(token)

    def can_read(self, member: str, account_id: str) -> bool:
        with self._lock:
            return account_id in self._roles.get(member, set())

    def revoke_member(self, member: str) -> int:
        """The member removes the app: its refresh and access tokens stop working."""
        return self.tokens.revoke(subject=member)

    def expire_access_tokens(self) -> int:
        return self.tokens.expire(kind="access")

    def expire_access_tokens_after(self, calls: int) -> None:
        """Access tokens run out after the APIs have answered `calls` more requests."""
        self.faults.at_request(calls, self.expire_access_tokens, apis=TOKEN_APIS)

    def revoke_after(self, member: str, calls: int) -> None:
        """The member revokes the grant after the APIs have answered `calls` more requests."""
        self.faults.at_request(calls, lambda: self.revoke_member(member), apis=TOKEN_APIS)

    # -- versions -----------------------------------------------------------------------------
    def sunset(self, version: str) -> None:
        """`version` is no longer served (426), whatever its date."""
        self._sunset.add(version)

    def version_active(self, version: str) -> bool:
        match = _VERSION.match(version)
        if match is None or version in self._sunset or version.split(".")[0] in self._sunset:
            return False
        year, month = int(match[1]), int(match[2])
        if not 1 <= month <= 12:
            return False
        today = self.clock.now().date()
        return date(year, month, 1) <= today < date(year + 1, month, 15)

    # -- daily limits -------------------------------------------------------------------------
    def charge(self, caller: Caller, endpoint: str) -> Limit | None:
        """Count one call, or name the daily limit that refuses it (nothing counted then)."""
        app, member = (caller.client_id, endpoint), (caller.client_id, caller.member, endpoint)
        if not self.app_daily.peek(app).allowed:
            return "APPLICATION"
        if not self.member_daily.peek(member).allowed:
            return "MEMBER"
        self.app_daily.charge(app)
        self.member_daily.charge(member)
        return None

    def exhaust_daily(
        self, limit: Limit, client_id: str, *, member: str = "", endpoint: str = "adAnalytics"
    ) -> None:
        """Spend what is left of today's limit (as other syncs of the app would)."""
        if limit == "APPLICATION":
            self.app_daily.exhaust((client_id, endpoint))
        else:
            self.member_daily.exhaust((client_id, member, endpoint))

    # -- the truth (LinkedIn's days are UTC days) ---------------------------------------------
    def truth_by_campaign_day(
        self,
        account_id: str,
        start: date,
        end: date,
        *,
        conversions: tuple[str, ...] = DEFAULT_CONVERSIONS,
        value: str | None = DEFAULT_VALUE,
        as_of: datetime | None = None,
    ) -> dict[tuple[str, date], AdMetrics]:
        rows = figures_by_utc_day(self.accounts[account_id], start, end, as_of=as_of)
        return {key: metrics_of(f, conversions, value) for key, f in rows.items()}

    def truth_by_day(
        self, account_id: str, start: date, end: date, **options: Any
    ) -> dict[date, AdMetrics]:
        """The account's metrics per UTC day (ratios of the day's sums over campaigns);
        `options` as truth_by_campaign_day's."""
        out: dict[date, AdMetrics] = {}
        cells = self.truth_by_campaign_day(account_id, start, end, **options)
        for (_, day), cell in sorted(cells.items(), key=lambda item: item[0][1]):
            out[day] = out[day] + cell if day in out else cell
        return out

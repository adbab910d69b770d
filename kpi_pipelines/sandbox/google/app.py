"""One loopback host for Google: the token endpoint, the GA4 Data API and Sheets v4.

    sandbox = GoogleSandbox.demo()                # or GoogleSandbox() and add what you need
    with LoopbackServer(create_google_app(sandbox)) as server:
        server.base_url  # token_uri = base_url + "/token", API endpoint = base_url

Routes: `POST /token`, `POST /revoke` (oauth.py), `POST /v1beta/properties/{id}:runReport`
(ga4/), `GET /v4/spreadsheets/{id}/values/{range}` and `.../values:batchGet` (sheets/).
`GoogleSandbox` holds all state and the controls tests and the demo use: the clock
(`advance`), OAuth (`register_client`, `add_refresh_token`, `revoke`, `expire_access_tokens`,
and mid-sync `revoke_after`, `expire_access_tokens_after`), GA4 properties and their truth,
spreadsheets, quotas and scripted faults (`add_fault`, see `Fault`, or the kit injector's verbs
on `faults`: `storm`, `down`, `slow`, ...).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from starlette.applications import Starlette

from kpi_pipelines.sandbox.google._common import DEFAULT_START, TOKEN_APIS, Fault, GoogleFaults
from kpi_pipelines.sandbox.google.ga4 import GA4Property, GA4Service, WebMetrics, ga4_routes
from kpi_pipelines.sandbox.google.oauth import DEFAULT_TOKEN_LIFETIME, OAuthServer, oauth_routes
from kpi_pipelines.sandbox.google.sheets import (
    DateTime,
    ErrorValue,
    Formula,
    Sheet,
    SheetsService,
    Spreadsheet,
    currency,
    percent,
    sheets_routes,
)
from kpi_pipelines.sandbox.kit import SimClock

DEMO_CLIENT_ID = "sandbox-client-1.apps.googleusercontent.com"
DEMO_CLIENT_SECRET = "GOCSPX-sandbox-secret"
DEMO_REFRESH_TOKEN = "1//sandbox-refresh-token"
DEMO_PROPERTY_ID = "314159265"
DEMO_SPREADSHEET_ID = "1SandboxKpiSheet0000000000000000000000000000"


class GoogleSandbox:
    """State and controls of the simulated Google APIs (deterministic for a given seed)."""

    def __init__(
        self,
        *,
        seed: int = 0,
        start: datetime = DEFAULT_START,
        realtime: bool = False,
        token_lifetime: int = DEFAULT_TOKEN_LIFETIME,
    ) -> None:
        self.seed = seed
        self.clock = SimClock(start, realtime=realtime)
        self.faults = GoogleFaults()
        self.oauth = OAuthServer(self.clock, token_lifetime=token_lifetime)
        self.ga4 = GA4Service(self.clock, self.oauth, seed=seed)
        self.sheets = SheetsService(self.clock, self.oauth)

    @classmethod
    def demo(
        cls, *, property_options: dict[str, Any] | None = None, **options: Any
    ) -> GoogleSandbox:
        """A sandbox with one client and refresh token (both scopes), one GA4 property
        (`property_options` go to `add_property`) and one spreadsheet (`DEMO_*` constants)."""
        sandbox = cls(**options)
        sandbox.register_client(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
        sandbox.add_refresh_token(DEMO_REFRESH_TOKEN, DEMO_CLIENT_ID)
        sandbox.add_property(DEMO_PROPERTY_ID, **(property_options or {}))
        today = sandbox.clock.now().date()
        rows: list[list[Any]] = [["Date", "Revenue", "Conversion rate", "Note"]]
        total = 0.0
        for back in range(14, 0, -1):
            revenue = 1000 + 37.5 * back
            total += revenue
            rows.append(
                [
                    DateTime(today - timedelta(days=back)),
                    currency(revenue),
                    percent(0.02 + back / 1000),
                ]
            )
        rows.append(["Total", Formula(f"=SUM(B2:B{len(rows)})", currency(total)), None, "check"])
        sandbox.add_spreadsheet(
            DEMO_SPREADSHEET_ID,
            {"KPIs": rows, "Notes": [["Owner", "ops@example.com"], [], ["Status", ErrorValue()]]},
            title="Sandbox KPIs",
        )
        return sandbox

    # -- clock ----------------------------------------------------------------------------
    def now(self) -> datetime:
        return self.clock.now()

    def advance(self, hours: float = 0, *, minutes: float = 0, seconds: float = 0) -> datetime:
        """Move the simulated clock forward: GA4 data is processed and restated, hourly and
        daily quotas roll over, access tokens and the per-minute Sheets window age too."""
        return self.clock.advance(hours=hours, minutes=minutes, seconds=seconds)

    # -- oauth ----------------------------------------------------------------------------
    def register_client(self, client_id: str, client_secret: str, **kw: Any) -> None:
        self.oauth.register_client(client_id, client_secret, **kw)

    def add_refresh_token(self, refresh_token: str, client_id: str, **kw: Any) -> None:
        self.oauth.add_refresh_token(refresh_token, client_id, **kw)

    def revoke(self, refresh_token: str) -> None:
        self.oauth.revoke(refresh_token)

    def expire_access_tokens(self) -> int:
        return self.oauth.expire_access_tokens()

    def expire_access_tokens_after(self, calls: int) -> None:
        """The access tokens run out after the APIs have answered `calls` more requests."""
        self.faults.at_request(calls, self.oauth.expire_access_tokens, apis=TOKEN_APIS)

    def revoke_after(self, refresh_token: str, calls: int) -> None:
        """The grant (and its access tokens) is revoked after the APIs have answered `calls`
        more requests, so the client's refresh is then refused with invalid_grant."""
        if refresh_token not in self.oauth.refresh_tokens:
            raise KeyError("unknown refresh token")
        self.faults.at_request(calls, lambda: self.oauth.revoke(refresh_token), apis=TOKEN_APIS)

    # -- data -----------------------------------------------------------------------------
    def add_property(self, property_id: str, **options: Any) -> GA4Property:
        return self.ga4.add_property(property_id, **options)

    def add_spreadsheet(self, spreadsheet_id: str, sheets: Any, **options: Any) -> Spreadsheet:
        return self.sheets.add_spreadsheet(spreadsheet_id, sheets, **options)

    def truth_by_date(
        self, property_id: str, start: date, end: date, **options: Any
    ) -> dict[date, WebMetrics]:
        return self.ga4.truth_by_date(property_id, start, end, **options)

    def truth_by_date_channel(
        self, property_id: str, start: date, end: date, **options: Any
    ) -> dict[tuple[date, str], WebMetrics]:
        return self.ga4.truth_by_date_channel(property_id, start, end, **options)

    # -- faults ---------------------------------------------------------------------------
    def add_fault(self, fault: Fault) -> Fault:
        return self.faults.add(fault)


def create_google_app(sandbox: GoogleSandbox) -> Starlette:
    """The Starlette app serving `sandbox` (token endpoint, GA4 Data API, Sheets v4)."""
    app = Starlette(
        routes=[
            *oauth_routes(sandbox.oauth, sandbox.faults),
            *ga4_routes(sandbox.ga4, sandbox.oauth, sandbox.faults),
            *sheets_routes(sandbox.sheets, sandbox.oauth, sandbox.faults),
        ]
    )
    app.state.sandbox = sandbox
    return app


__all__ = [
    "DEMO_CLIENT_ID",
    "DEMO_CLIENT_SECRET",
    "DEMO_PROPERTY_ID",
    "DEMO_REFRESH_TOKEN",
    "DEMO_SPREADSHEET_ID",
    "GoogleSandbox",
    "Sheet",
    "create_google_app",
]

"""Fixtures: a LinkedIn sandbox per test with one client, one member and a USD account in
Tokyo, served on loopback, and a client that speaks to it as LinkedIn's docs say."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
import pytest

from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.sandbox.linkedin import LinkedInSandbox, create_linkedin_app

CLIENT, SECRET, MEMBER, REFRESH = "client-1", "client-secret-1", "member-1", "AQXrefresh-1"
VERSION = "202611"
ACCOUNT = "5100"
FIELDS = (
    "dateRange,pivotValues,impressions,clicks,costInLocalCurrency,"
    "externalWebsiteConversions,conversionValueInLocalCurrency"
)


def restli_date(day: date) -> str:
    return f"(year:{day.year},month:{day.month},day:{day.day})"


def analytics_query(
    start: date,
    end: date,
    *,
    pivot: str = "CAMPAIGN",
    granularity: str = "DAILY",
    facet: str = f"accounts=List(urn%3Ali%3AsponsoredAccount%3A{ACCOUNT})",
    fields: str | None = FIELDS,
) -> str:
    query = (
        f"/rest/adAnalytics?q=analytics&pivot={pivot}&timeGranularity={granularity}"
        f"&dateRange=(start:{restli_date(start)},end:{restli_date(end)})&{facet}"
    )
    return query + (f"&fields={fields}" if fields is not None else "")


@dataclass
class Served:
    sandbox: LinkedInSandbox
    server: LoopbackServer
    http: httpx.Client

    def refresh(self, refresh_token: str = REFRESH, **form: str) -> httpx.Response:
        body = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": CLIENT,
            "client_secret": SECRET,
        }
        return self.http.post("/oauth/v2/accessToken", data=body | form)

    def token(self) -> str:
        response = self.refresh()
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def get(self, path: str, token: str | None = None, **headers: str) -> httpx.Response:
        sent = {
            "Authorization": f"Bearer {token or self.token()}",
            "LinkedIn-Version": VERSION,
            "X-Restli-Protocol-Version": "2.0.0",
        }
        sent.update({name.replace("_", "-"): value for name, value in headers.items()})
        return self.http.get(path, headers={k: v for k, v in sent.items() if v})

    def ok(self, path: str, token: str | None = None) -> Any:
        response = self.get(path, token)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def served() -> Iterator[Served]:
    sandbox = LinkedInSandbox(seed=11)
    sandbox.register_client(CLIENT, SECRET)
    sandbox.add_account(ACCOUNT, time_zone="Asia/Tokyo", currency="USD", campaigns=6)
    sandbox.add_member(MEMBER, refresh_token=REFRESH, client_id=CLIENT, accounts=[ACCOUNT])
    with (
        LoopbackServer(create_linkedin_app(sandbox)) as server,
        httpx.Client(base_url=server.base_url) as http,
    ):
        yield Served(sandbox, server, http)

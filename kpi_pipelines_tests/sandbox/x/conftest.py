"""An X sandbox per test, served on loopback, with one app, one user and a client that
signs its requests with authlib's OAuth 1.0a (not the project's code)."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from authlib.oauth1 import ClientAuth

from kpi_pipelines.sandbox.kit.ads import AdAccount
from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.sandbox.x import Grant, XSandbox, create_x_app

ACCOUNT = "18ce54d4x5t"
CONSUMER_KEY, CONSUMER_SECRET = "sandbox-consumer-key", "sandbox-consumer-secret"


class Signed(httpx.Auth):
    """authlib's OAuth 1.0a client, straight (HMAC-SHA1 in the Authorization header)."""

    def __init__(self, grant: Grant, consumer_secret: str = CONSUMER_SECRET) -> None:
        self.client = ClientAuth(
            grant.consumer_key,
            client_secret=consumer_secret,
            token=grant.token,
            token_secret=grant.token_secret,
        )

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        _, headers, _ = self.client.prepare(request.method, str(request.url), {}, b"")
        request.headers["Authorization"] = headers["Authorization"]
        yield request


@dataclass
class XWorld:
    sandbox: XSandbox
    server: LoopbackServer
    grant: Grant
    account: AdAccount

    def client(self, auth: httpx.Auth | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.server.base_url, auth=auth or Signed(self.grant))

    def get(self, path: str, **params: Any) -> httpx.Response:
        with self.client() as client:
            return client.get(path, params=params)

    def stats(self, **params: Any) -> httpx.Response:
        query = {
            "entity": "CAMPAIGN",
            "granularity": "DAY",
            "metric_groups": "ENGAGEMENT,BILLING,WEB_CONVERSION",
            "placement": "ALL_ON_TWITTER",
            **params,
        }
        return self.get(f"/12/stats/accounts/{self.account.account_id}", **query)


@pytest.fixture
def x() -> Iterator[XWorld]:
    sandbox = XSandbox(seed=5)
    sandbox.register_app(CONSUMER_KEY, CONSUMER_SECRET)
    account = sandbox.add_account(ACCOUNT, time_zone="Asia/Tokyo", currency="JPY", campaigns=25)
    grant = sandbox.authorize(CONSUMER_KEY, ACCOUNT)
    with LoopbackServer(create_x_app(sandbox)) as server:
        yield XWorld(sandbox, server, grant, account)

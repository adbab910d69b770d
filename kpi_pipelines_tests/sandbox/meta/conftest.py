"""A Meta sandbox per test, served on loopback, with one account and a token that reads it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from kpi_pipelines.sandbox.kit.ads import AdAccount
from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.sandbox.meta import MetaSandbox, create_meta_app

ACCOUNT = "1234567890"


@dataclass
class Graph:
    sandbox: MetaSandbox
    account: AdAccount
    token: str
    http: httpx.Client

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(f"/v21.0/{path}", params={"access_token": self.token, **params})

    def post(self, path: str, **form: Any) -> httpx.Response:
        return self.http.post(f"/v21.0/{path}", data={"access_token": self.token, **form})


@pytest.fixture
def graph() -> Iterator[Graph]:
    sandbox = MetaSandbox(seed=11)
    account = sandbox.add_account(ACCOUNT, time_zone="America/Los_Angeles", campaigns=6)
    token = sandbox.issue_token(ACCOUNT)
    with (
        LoopbackServer(create_meta_app(sandbox)) as server,
        httpx.Client(base_url=server.base_url) as http,
    ):
        yield Graph(sandbox, account, token, http)

"""Fixtures for the Stripe sandbox tests: a small sandbox served on loopback."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.sandbox.stripe import StripeSandbox, create_app

Get = Callable[..., dict[str, Any]]


# Stripe's own example object for every resource (from Stripe's public OpenAPI repository,
# MIT licence beside it), kept with the tests so they never depend on anything outside.
FIXTURES = Path(__file__).parent / "reference" / "stripe-fixtures3.json"


@pytest.fixture(scope="session")
def stripe_fixtures() -> dict[str, dict]:
    return json.loads(FIXTURES.read_text())["resources"]


class Served:
    """A sandbox with its loopback server and an authenticated client."""

    def __init__(self, sandbox: StripeSandbox, server: LoopbackServer) -> None:
        self.sandbox = sandbox
        self.server = server
        self.client = httpx.Client(
            base_url=server.base_url,
            headers={"Authorization": f"Bearer {sandbox.api_key}"},
            timeout=30.0,
        )

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def get(self, path: str, params: Any = None, **kwargs: Any) -> httpx.Response:
        return self.client.get(path, params=params, **kwargs)

    def ok(self, path: str, params: Any = None, **kwargs: Any) -> dict[str, Any]:
        response = self.get(path, params, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()

    def all(
        self, path: str, params: Any = None, version: str | None = None
    ) -> list[dict[str, Any]]:
        """Every object of a list, newest first, paging with starting_after."""
        pairs = list(params.items()) if isinstance(params, dict) else list(params or [])
        pairs = [(k, v) for k, v in pairs if k != "limit"] + [("limit", 100)]
        headers = {"Stripe-Version": version} if version else None
        out: list[dict[str, Any]] = []
        cursor: list[tuple[str, Any]] = []
        while True:
            page = self.ok(path, pairs + cursor, headers=headers)
            out += page["data"]
            if not page["has_more"]:
                return out
            cursor = [("starting_after", page["data"][-1]["id"])]


def serve(sandbox: StripeSandbox) -> Iterator[Served]:
    with LoopbackServer(create_app(sandbox)) as server:
        served = Served(sandbox, server)
        try:
            yield served
        finally:
            served.client.close()


@pytest.fixture(scope="package")
def served() -> Iterator[Served]:
    """A read-only sandbox (seed 11, 150 customers) shared by the package's tests."""
    yield from serve(StripeSandbox(seed=11, customers=150))


@pytest.fixture
def fresh() -> Iterator[Served]:
    """A sandbox of one's own, for tests that script faults or move the clock."""
    yield from serve(StripeSandbox(seed=5, customers=40))

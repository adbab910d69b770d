"""LoopbackServer: a real uvicorn server on 127.0.0.1 in a background thread."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kpi_pipelines.sandbox.kit.clock import SimClock
from kpi_pipelines.sandbox.kit.server import LoopbackServer


async def hello(request: Request) -> JSONResponse:
    return JSONResponse({"hello": request.query_params.get("name", "world")})


def _app() -> Starlette:
    return Starlette(routes=[Route("/hello", hello)])


def _loopback_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("loopback-")]


def test_serves_the_app_on_loopback() -> None:
    with LoopbackServer(_app()) as server:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.base_url)
        assert server.port > 0
        assert server.running
        assert server.url("/hello") == f"{server.base_url}/hello"
        response = httpx.get(server.url("hello"), params={"name": "kpi"})
        assert response.status_code == 200
        assert response.json() == {"hello": "kpi"}


def test_two_servers_get_distinct_free_ports() -> None:
    with LoopbackServer(_app()) as first, LoopbackServer(_app()) as second:
        assert first.port != second.port
        assert httpx.get(first.url("/hello")).status_code == 200
        assert httpx.get(second.url("/hello")).status_code == 200


def test_stop_ends_the_thread_and_releases_the_port() -> None:
    before = set(_loopback_threads())
    with LoopbackServer(_app()) as server:
        url = server.url("/hello")
        port = server.port
        assert len(set(_loopback_threads()) - before) == 1
    assert set(_loopback_threads()) - before == set()
    assert not server.running
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.base_url
    with pytest.raises(httpx.ConnectError):
        httpx.get(url)
    # The port can be bound again at once (e.g. a simulator on a fixed port, restarted).
    with LoopbackServer(_app(), port=port) as again:
        assert again.port == port
        assert httpx.get(again.url("/hello")).status_code == 200


def test_start_twice_is_refused_and_stop_is_idempotent() -> None:
    server = LoopbackServer(_app()).start()
    try:
        with pytest.raises(RuntimeError, match="already started"):
            server.start()
    finally:
        server.stop()
    server.stop()
    assert not server.running


def test_lifespan_runs_before_the_first_request() -> None:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.ready = True
        yield

    async def ready(request: Request) -> JSONResponse:
        return JSONResponse({"ready": request.app.state.ready})

    app = Starlette(routes=[Route("/ready", ready)], lifespan=lifespan)
    with LoopbackServer(app) as server:
        assert httpx.get(server.url("/ready")).json() == {"ready": True}


def test_an_app_that_fails_to_start_raises() -> None:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        raise RuntimeError("simulator misconfigured")
        yield

    before = set(_loopback_threads())
    server = LoopbackServer(Starlette(lifespan=lifespan))
    with pytest.raises(RuntimeError, match="failed to start"):
        server.start()
    assert not server.running
    assert set(_loopback_threads()) - before == set()


def test_uvicorn_stays_quiet(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG), LoopbackServer(_app()) as server:
        for _ in range(3):
            httpx.get(server.url("/hello"))
    uvicorn_records = [r for r in caplog.records if r.name.startswith("uvicorn")]
    assert uvicorn_records == []


def test_answers_carry_the_simulated_clocks_date_when_asked() -> None:
    clock = SimClock(datetime(2025, 6, 15, 12, 0, tzinfo=UTC))
    with LoopbackServer(_app(), dated_by=clock) as server:
        assert httpx.get(server.url("/hello")).headers.get_list("date") == [
            "Sun, 15 Jun 2025 12:00:00 GMT"
        ]
        clock.advance(hours=30)
        assert httpx.get(server.url("/missing")).headers["date"] == "Mon, 16 Jun 2025 18:00:00 GMT"
    with LoopbackServer(_app()) as server:  # otherwise the machine's own time
        assert httpx.get(server.url("/hello")).headers["date"] != "Sun, 15 Jun 2025 12:00:00 GMT"

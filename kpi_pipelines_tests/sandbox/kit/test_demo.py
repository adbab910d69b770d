"""The kit's demo pieces: a module's one running demo simulator, and a simulator served on
loopback that satisfies the demo layer's DemoSimulator contract."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from kpi_pipelines.demo import DemoSimulator
from kpi_pipelines.sandbox.kit.demo import DemoSlot, LoopbackDemo
from kpi_pipelines.warehouse.control import list_connections


class ExampleDemo(LoopbackDemo):
    def __init__(self) -> None:
        async def hello(request: Request) -> PlainTextResponse:
            return PlainTextResponse("hello")

        super().__init__(Starlette(routes=[Route("/hello", hello)]))

    def env(self) -> dict[str, str]:
        return {"KPI_EXAMPLE_BASE_URL": self.server.base_url}


def test_a_loopback_demo_serves_until_stopped() -> None:
    slot: DemoSlot[ExampleDemo] = DemoSlot("Example")
    with pytest.raises(RuntimeError, match="the Example demo simulator is not started"):
        slot.get()
    demo = slot.start(ExampleDemo)
    simulator: DemoSimulator = demo  # the demo layer's contract
    try:
        assert slot.get() is demo
        url = simulator.env()["KPI_EXAMPLE_BASE_URL"]
        assert httpx.get(f"{url}/hello").text == "hello"
        assert simulator.follow_clock(None) == 0
    finally:
        simulator.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/hello")


def test_a_workspace_is_connected_to_the_running_demo_naming_its_secrets(
    warehouse, workspace_a
) -> None:
    slot: DemoSlot[ExampleDemo] = DemoSlot("Example")
    token = {"api_key": "WS_WS_A__EXAMPLE_KEY"}
    with pytest.raises(RuntimeError, match="not started"):
        slot.connect(warehouse, workspace_a, "stripe", settings={}, secret_env=token)
    demo = slot.start(ExampleDemo)
    try:
        account = {"account_id": "acct_1"}
        running = slot.connect(warehouse, workspace_a, "stripe", settings=account, secret_env=token)
        assert running is demo
        with warehouse.control() as db:
            [connection] = list_connections(db, workspace_id="ws-a")
        assert (connection.provider, connection.settings) == ("stripe", account)
        assert connection.secret_env == token
    finally:
        demo.stop()

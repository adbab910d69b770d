"""The kit's fault injector, served for real on loopback: scripted faults in order and per API,
standing faults, actions due at a request count, and each fault answered in the declared
provider's words."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kpi_pipelines.sandbox.kit import (
    ErrorStyle,
    Fault,
    FaultInjector,
    LoopbackServer,
    json_response,
)


class ExampleErrors(ErrorStyle):
    """A provider with Notion's envelope and a retry header, declared as a simulator would."""

    messages = {503: "Notion is unavailable."}

    def body(self, status: int, message: str) -> Any:
        return {"object": "error", "status": status, "code": f"e{status}", "message": message}

    def retry_headers(self, retry: bool | None) -> dict[str, str]:
        return {} if retry is None else {"X-Should-Retry": str(retry).lower()}

    def quota(self, fault: Fault) -> Response:
        body = self.body(429, "rate_limited")
        return self.respond(429, body, {"Retry-After": "1"})


@pytest.fixture
def served() -> Iterator[tuple[FaultInjector, httpx.Client]]:
    faults = FaultInjector()
    errors = ExampleErrors()

    async def endpoint(request: Request) -> Response:
        async def handle() -> Response:
            return json_response(200, {"ok": True, "padding": "x" * 200})

        return await faults.serve(request.path_params["api"], errors, handle)

    app = Starlette(routes=[Route("/{api}", endpoint)])
    with LoopbackServer(app) as server, httpx.Client(base_url=server.base_url) as client:
        yield faults, client


def statuses(client: httpx.Client, n: int, api: str = "a") -> list[int]:
    return [client.get(f"/{api}").status_code for _ in range(n)]


def test_scripted_faults_follow_each_other_and_wait_out_their_after(served) -> None:
    faults, client = served
    faults.storm(2, 503, retry=True, after=1).truncate(1)
    responses = [client.get("/a") for _ in range(5)]
    assert [r.status_code for r in responses] == [200, 503, 503, 200, 200]
    error = responses[1].json()
    assert error == {"object": "error", "status": 503, "code": "e503", "message": error["message"]}
    assert error["message"] == "Notion is unavailable."
    assert responses[1].headers["X-Should-Retry"] == "true"
    with pytest.raises(ValueError):
        responses[3].json()  # cut to half, framed whole
    assert int(responses[3].headers["content-length"]) == len(responses[3].content)
    assert responses[4].json()["ok"] is True
    assert faults.pending == [] and faults.injected == 3 and faults.requests == 5


def test_a_fault_for_one_api_leaves_the_others_alone(served) -> None:
    faults, client = served
    faults.add(Fault("quota", api="b", after=1))
    assert statuses(client, 2, "a") == [200, 200]
    assert statuses(client, 1, "b") == [200]
    limited = client.get("/b")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert limited.json()["message"] == "rate_limited"


def test_malformed_cut_and_slow_answers(served) -> None:
    faults, client = served
    faults.malformed(1).cut(1).slow_next(1, 0.3)
    page = client.get("/a")
    assert page.status_code == 200 and page.text.startswith("<!DOCTYPE html>")
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/a")
    started = time.perf_counter()
    assert client.get("/a").status_code == 200
    assert time.perf_counter() - started >= 0.3


def test_standing_faults_outage_every_nth_and_revocation(served) -> None:
    faults, client = served
    faults.down(500)
    assert statuses(client, 2) == [500, 500]
    faults.up().fail_every(3)
    assert statuses(client, 3) == [500, 200, 200]  # requests 3, 4 and 5: 3 is a multiple
    faults.clear().revoke(after=1)
    assert statuses(client, 3) == [200, 401, 401]
    faults.clear()
    assert statuses(client, 1) == [200]


def test_slow_delays_every_answer_until_turned_off(served) -> None:
    faults, client = served
    faults.slow(0.2)
    started = time.perf_counter()
    assert statuses(client, 2) == [200, 200]
    assert time.perf_counter() - started >= 0.4
    faults.slow(0)
    assert faults.delay == 0


def test_actions_run_once_the_requests_to_their_apis_are_seen(served) -> None:
    faults, client = served
    ran: list[str] = []
    faults.at_request(2, lambda: ran.append("token expired"), apis=("a",))
    statuses(client, 3, "b")  # another API does not count
    statuses(client, 2, "a")
    assert ran == []
    statuses(client, 1, "a")  # the third request to "a" sees the action done first
    assert ran == ["token expired"]
    statuses(client, 3, "a")
    assert ran == ["token expired"]


def test_faults_are_checked_when_scripted() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault("explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least once"):
        Fault("status", times=0)
    with pytest.raises(ValueError, match="0 or more"):
        Fault("status", after=-1)
    with pytest.raises(ValueError, match="0 or more"):
        FaultInjector().at_request(-1, lambda: None)

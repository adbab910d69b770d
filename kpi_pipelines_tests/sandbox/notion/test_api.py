"""The Notion sandbox as a client sees it over HTTP: the version header required, each
version's endpoints only, Notion's error bodies, queries filtered by last edited time,
sorted and paged by cursor up to 100, and the rate limit's 429 with Retry-After."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.sandbox.notion import (
    V2022,
    V2025,
    NotionSandbox,
    ObjectivesBoard,
    RateLimit,
    create_notion_app,
)


class Api:
    def __init__(self, sandbox: NotionSandbox, board: ObjectivesBoard, token: str, url: str):
        self.sandbox, self.board, self.token, self.url = sandbox, board, token, url

    def call(
        self,
        method: str,
        path: str,
        *,
        version: str | None = V2025,
        token: str | None = None,
        body: dict[str, Any] | None = None,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        if version:
            headers["Notion-Version"] = version
        return httpx.request(method, self.url + path, headers=headers, json=body)


def serve(rate_limit: RateLimit | None) -> Iterator[Api]:
    sandbox = NotionSandbox(seed=2, rate_limit=rate_limit)
    notion = sandbox.add_workspace("Acme")
    board = ObjectivesBoard.create(notion, seed=2, objectives=23, notes_per_objective=0)
    token = sandbox.add_integration(notion, share=[board.objectives_db])
    with LoopbackServer(create_notion_app(sandbox), dated_by=sandbox.clock) as server:
        yield Api(sandbox, board, token, server.base_url)


@pytest.fixture
def api() -> Iterator[Api]:
    yield from serve(None)


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    body = response.json()
    assert response.status_code == status, body
    assert body["object"] == "error" and body["status"] == status and body["code"] == code
    assert body["message"] and body["request_id"]
    return body


def test_a_request_without_the_version_header_gets_notions_400(api: Api) -> None:
    body = assert_error(api.call("GET", "/v1/users/me", version=None), 400, "missing_version")
    assert "Notion-Version" in body["message"]
    assert_error(api.call("GET", "/v1/users/me", version="2021-05-13"), 400, "validation_error")


def test_each_version_has_its_own_endpoints(api: Api) -> None:
    database, source = api.board.objectives_db.id, api.board.objectives.id
    listed = api.call("GET", f"/v1/databases/{database}").json()
    assert [s["id"] for s in listed["data_sources"]] == [source]
    assert "properties" not in listed  # 2025-09-03: the schema is the data source's
    assert api.call("POST", f"/v1/data_sources/{source}/query", body={}).status_code == 200
    assert_error(
        api.call("POST", f"/v1/databases/{database}/query", body={}), 400, "invalid_request_url"
    )
    old = api.call("GET", f"/v1/databases/{database}", version=V2022).json()
    assert "Status" in old["properties"] and "data_sources" not in old
    assert api.call("POST", f"/v1/databases/{database}/query", version=V2022).status_code == 200
    assert_error(
        api.call("POST", f"/v1/data_sources/{source}/query", version=V2022),
        400,
        "invalid_request_url",
    )


def test_tokens_and_sharing_are_notions(api: Api) -> None:
    assert_error(api.call("GET", "/v1/users/me", token="ntn_forged"), 401, "unauthorized")
    notes = api.board.notes_db.id  # not shared with the integration
    assert_error(api.call("GET", f"/v1/databases/{notes}"), 404, "object_not_found")


def test_a_query_filters_sorts_and_pages_by_cursor(api: Api) -> None:
    source = api.board.objectives.id
    pages = api.sandbox.workspaces[api.board.workspace.id].pages_of(api.board.objectives)
    since = sorted(p.last_edited_time for p in pages)[8]
    body: dict[str, Any] = {
        "filter": {
            "timestamp": "last_edited_time",
            "last_edited_time": {"on_or_after": since.isoformat()},
        },
        "sorts": [{"timestamp": "last_edited_time", "direction": "ascending"}],
        "page_size": 4,
    }
    seen: list[dict[str, Any]] = []
    while True:
        answer = api.call("POST", f"/v1/data_sources/{source}/query", body=body).json()
        assert len(answer["results"]) <= 4
        seen.extend(answer["results"])
        if not answer["has_more"]:
            assert answer["next_cursor"] is None
            break
        body["start_cursor"] = answer["next_cursor"]
    expected = sorted(
        (p for p in pages if p.last_edited_time >= since), key=lambda p: p.last_edited_time
    )
    assert [p["id"] for p in seen] == [p.id for p in expected]
    too_many = api.call("POST", f"/v1/data_sources/{source}/query", body={"page_size": 101})
    assert "100" in assert_error(too_many, 400, "validation_error")["message"]


def test_past_the_limit_comes_429_with_retry_after() -> None:
    for api in serve(RateLimit(requests=3, per=timedelta(seconds=30))):
        answers = [api.call("GET", "/v1/users/me") for _ in range(4)]
        assert [a.status_code for a in answers[:3]] == [200, 200, 200]
        assert_error(answers[3], 429, "rate_limited")
        assert int(answers[3].headers["Retry-After"]) >= 1
        assert api.sandbox.stats.throttled == 1

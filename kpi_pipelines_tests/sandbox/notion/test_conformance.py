"""The Notion sandbox's answers hold to the response types of Notion's own SDK
(`@notionhq/client`), as JSON Schemas in reference/ (what they are: reference/README.md):
every endpoint the adapter calls, in both API versions, over a board with every property
type, trashed pages and nested blocks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.sandbox.notion import (
    V2022,
    V2025,
    NotionSandbox,
    ObjectivesBoard,
    create_notion_app,
)

REFERENCE = Path(__file__).parent / "reference"


def schema_path(version: str) -> Path:
    return REFERENCE / f"notion-{version}.schema.json"


def served_answers(version: str) -> Iterator[tuple[str, str, Any]]:
    """(the SDK's type, the request, the answer) for each endpoint the adapter calls."""
    sandbox = NotionSandbox(seed=4, rate_limit=None)
    notion = sandbox.add_workspace("Acme")
    board = ObjectivesBoard.create(notion, seed=4, objectives=12, notes_per_objective=2)
    token = sandbox.add_integration(notion, share=[board.objectives_db, board.notes_db])
    objectives = notion.pages_of(board.objectives)
    trashed = objectives[1]
    notion.trash(trashed)
    toggle = next(b for b in objectives[0].blocks if b.type == "toggle")
    headers = {"Authorization": f"Bearer {token}", "Notion-Version": version}
    query = "QueryDataSourceResponse" if version == V2025 else "QueryDatabaseResponse"
    calls: list[tuple[str, str, str, dict[str, Any] | None]] = [
        ("GetSelfResponse", "GET", "/v1/users/me", None),
        ("PageObjectResponse", "GET", f"/v1/pages/{trashed.id}", None),
        ("PageObjectResponse", "GET", f"/v1/pages/{objectives[0].id}", None),
        ("ListBlockChildrenResponse", "GET", f"/v1/blocks/{toggle.id}/children", None),
    ]
    for database, source in (
        (board.objectives_db, board.objectives),
        (board.notes_db, board.notes),
    ):
        calls.append(("DatabaseObjectResponse", "GET", f"/v1/databases/{database.id}", None))
        target = f"/v1/databases/{database.id}/query"
        if version == V2025:
            calls.append(("DataSourceObjectResponse", "GET", f"/v1/data_sources/{source.id}", None))
            target = f"/v1/data_sources/{source.id}/query"
        body = {
            "page_size": 100,
            "sorts": [{"timestamp": "last_edited_time", "direction": "ascending"}],
        }
        calls.append((query, "POST", target, body))
    for page in notion.pages.values():
        calls.append(("ListBlockChildrenResponse", "GET", f"/v1/blocks/{page.id}/children", None))
    with (
        LoopbackServer(create_notion_app(sandbox), dated_by=sandbox.clock) as server,
        httpx.Client(base_url=server.base_url, headers=headers) as client,
    ):
        for expected, method, path, body in calls:
            response = client.request(method, path, json=body)
            assert response.status_code == 200, (path, response.text)
            yield expected, f"{method} {path}", response.json()


@pytest.mark.parametrize("version", [V2025, V2022])
def test_every_answer_is_of_the_sdks_response_type(version: str) -> None:
    schema = json.loads(schema_path(version).read_text())
    checked = 0
    for expected, request, answer in served_answers(version):
        validator = jsonschema.Draft7Validator({**schema, "$ref": f"#/definitions/{expected}"})
        errors = sorted(validator.iter_errors(answer), key=lambda e: list(e.absolute_path))
        assert not errors, f"{request}: {errors[0].message} at {list(errors[0].absolute_path)}"
        checked += 1
    assert checked > 20

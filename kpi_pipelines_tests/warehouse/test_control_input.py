"""What a tenant may name or submit through the control plane is bounded and plain."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kpi_pipelines.warehouse.control import (
    MAX_SETTINGS_BYTES,
    Connection,
    Workspace,
    add_connection,
    list_connections,
)


def test_a_workspace_name_is_bounded() -> None:
    assert Workspace(id="acme", name="A" * 200).name == "A" * 200
    for bad in ("", "A" * 201):
        with pytest.raises(ValidationError, match="name"):
            Workspace(id="acme", name=bad)


@pytest.mark.parametrize("name", ["../ws-b", "Finance", "eu shop", "a__b", "", "x" * 64])
def test_a_connection_name_is_a_plain_word(warehouse, workspace_a, name: str) -> None:
    with pytest.raises(ValueError, match="connection name"):
        add_connection(warehouse, Connection(workspace_id="ws-a", provider="csv_upload", name=name))
    with warehouse.control() as db:
        assert list_connections(db) == []


def test_connection_settings_are_bounded(warehouse, workspace_a) -> None:
    huge = {"mapping": {"date_column": "d" * MAX_SETTINGS_BYTES}}
    with pytest.raises(ValueError, match=f"at most {MAX_SETTINGS_BYTES}"):
        add_connection(
            warehouse, Connection(workspace_id="ws-a", provider="csv_upload", settings=huge)
        )

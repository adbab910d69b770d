"""The notes table (migration 0008) through the pipeline's own role: each workspace reads
and writes only its own notes, and only through the owner's functions."""

from datetime import UTC, datetime

import psycopg
import pytest
import sqlalchemy as sa

from kpi_pipelines.warehouse.database import Warehouse

EDITED = datetime(2026, 1, 2, tzinfo=UTC)
SAVE = (
    "SELECT kpi.save_notes('notion', ARRAY[:page], ARRAY['o1'], ARRAY['note'], ARRAY['t'],"
    " ARRAY[:text], ARRAY[NULL], ARRAY[CAST(:edited AS timestamptz)])"
)


def _save(db: sa.Connection, page: str, text: str) -> int:
    return db.execute(sa.text(SAVE), {"page": page, "text": text, "edited": EDITED}).scalar_one()


def test_each_workspace_reads_and_removes_only_its_own_notes(
    warehouse: Warehouse, workspace_a, workspace_b
) -> None:
    with warehouse.tenant("ws-a", actor="test") as db:
        assert _save(db, "p1", "ours") == 1
    with warehouse.tenant("ws-b", actor="test") as db:
        assert db.execute(sa.text("SELECT count(*) FROM notes")).scalar() == 0
        dropped = db.execute(
            sa.text("SELECT kpi.drop_notes('notion', ARRAY['p1'], ARRAY['o1'])")
        ).scalar_one()
        assert dropped == 0
        assert _save(db, "p1", "theirs") == 1  # the same page id: a note of its own
    with warehouse.tenant("ws-a", actor="test") as db:
        rows = db.execute(sa.text("SELECT workspace_id, text FROM notes")).all()
    assert [tuple(r) for r in rows] == [("ws-a", "ours")]


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO notes (workspace_id, source, page_id, objective_id, kind, title, text,"
        " last_edited_time, synced_by) VALUES ('ws-a', 'notion', 'p', 'o', 'note', 't', 'x',"
        " now(), 'me')",
        "UPDATE notes SET text = 'changed'",
        "DELETE FROM notes",
    ],
)
def test_the_tenant_role_writes_notes_only_through_the_owners_functions(
    warehouse: Warehouse, workspace_a, statement: str
) -> None:
    with (
        pytest.raises(sa.exc.ProgrammingError) as raised,
        warehouse.tenant("ws-a", actor="test") as db,
    ):
        db.execute(sa.text(statement))
    assert isinstance(raised.value.orig, psycopg.errors.InsufficientPrivilege)


def test_an_unscoped_transaction_cannot_save_notes(warehouse: Warehouse, workspace_a) -> None:
    with pytest.raises(sa.exc.DBAPIError), warehouse.unscoped_tenant() as db:
        _save(db, "p1", "x")

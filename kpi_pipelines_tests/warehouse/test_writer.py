"""The one write path: conflict resolution and audit, exactly as DESIGN.md states them."""

import threading
import time
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from kpi_pipelines.models import KPIData
from kpi_pipelines.warehouse.database import Warehouse
from kpi_pipelines.warehouse.tenant_data import list_overrides, read_points, set_override
from kpi_pipelines.warehouse.writer import RawRecord, write_kpis, write_raw_records

DAY = datetime(2026, 3, 1, tzinfo=UTC)
T0 = datetime(2026, 3, 2, 12, tzinfo=UTC)


def point(
    value: float, *, source_ts: datetime | None = None, metric: str = "mrr", **dims: str
) -> KPIData:
    return KPIData(
        value=value,
        timestamp=DAY,
        source="stripe",
        workspace_id="ws-a",
        metric=metric,
        dimensions=dims,
        metadata={"granularity": "day"},
        source_ts=source_ts,
    )


def write(warehouse: Warehouse, *points: KPIData, actor: str = "run:1", fetched_at: datetime = T0):
    with warehouse.tenant("ws-a", actor=actor) as db:
        return write_kpis(db, list(points), fetched_at=fetched_at)


def audit(warehouse: Warehouse) -> list[tuple]:
    with warehouse.tenant("ws-a", actor="test") as db:
        return [
            tuple(r)
            for r in db.execute(
                sa.text(
                    "SELECT metric, dimensions_key, action, old_value, new_value, actor"
                    " FROM audit_log ORDER BY id"
                )
            )
        ]


def values(warehouse: Warehouse) -> dict[tuple[str, str], float]:
    return {
        (p.metric, ",".join(f"{k}={v}" for k, v in p.dimensions.items())): p.value
        for p in read_points(warehouse, "ws-a")
    }


def test_source_overwrites_its_own_earlier_value(warehouse, workspace_a) -> None:
    write(warehouse, point(100, source_ts=T0))
    stats = write(warehouse, point(120, source_ts=T0 + timedelta(hours=1)), actor="run:2")
    assert (stats.inserted, stats.updated) == (0, 1)
    assert values(warehouse) == {("mrr", ""): 120}
    assert audit(warehouse) == [
        ("mrr", "", "insert", None, 100, "run:1"),
        ("mrr", "", "update", 100, 120, "run:2"),
    ]


def test_unchanged_values_are_not_rewritten_nor_audited(warehouse, workspace_a) -> None:
    write(warehouse, point(100, source_ts=T0), point(5, metric="active_customers"))
    stats = write(
        warehouse,
        point(100, source_ts=T0 + timedelta(days=1)),
        point(6, metric="active_customers"),
        fetched_at=T0 + timedelta(days=1),
    )
    assert (stats.inserted, stats.updated, stats.unchanged) == (0, 1, 1)
    assert [a[2] for a in audit(warehouse)] == ["insert", "insert", "update"]


def test_older_write_changes_nothing(warehouse, workspace_a) -> None:
    write(warehouse, point(100, source_ts=T0))
    stats = write(warehouse, point(50, source_ts=T0 - timedelta(minutes=1)), actor="run:late")
    assert stats.written == 0 and stats.unchanged == 1
    assert values(warehouse) == {("mrr", ""): 100}
    assert len(audit(warehouse)) == 1


def test_manual_override_stands_until_the_sources_next_sync_writes_that_key(
    warehouse, workspace_a
) -> None:
    write(warehouse, point(100, source_ts=T0), point(7, plan="pro"))
    set_override(warehouse, point(90), user="maria", reason="refund not yet in Stripe")
    assert values(warehouse)[("mrr", "")] == 90
    # The next sync writes another key only: the override stands.
    write(warehouse, point(8, plan="pro", source_ts=datetime.now(UTC)), actor="run:2")
    assert values(warehouse)[("mrr", "")] == 90
    assert list_overrides(warehouse, "ws-a")[0].superseded_at is None
    # A sync that writes the key supersedes it, even with the very same value as before.
    write(warehouse, point(100, source_ts=datetime.now(UTC)), actor="run:3")
    assert values(warehouse)[("mrr", "")] == 100
    [override] = list_overrides(warehouse, "ws-a")
    assert override.superseded_at is not None and override.superseded_by == "run:3"
    assert override.set_by == "user:maria" and override.reason == "refund not yet in Stripe"
    actions = [(a[0], a[1], a[2], a[3], a[4], a[5]) for a in audit(warehouse)]
    assert ("mrr", "", "override", 100, 90, "user:maria") in actions
    assert actions[-1] == ("mrr", "", "supersede", 90, 100, "run:3")


def test_override_of_a_key_the_source_never_wrote(warehouse, workspace_a) -> None:
    set_override(warehouse, point(42, metric="arpa"), user="li")
    assert values(warehouse) == {("arpa", ""): 42}
    assert audit(warehouse) == [("arpa", "", "override", None, 42, "user:li")]


def test_every_change_has_its_audit_row(warehouse, workspace_a) -> None:
    batch = [point(float(i), plan=f"p{i}", source_ts=T0) for i in range(300)]
    write(warehouse, *batch)
    write(
        warehouse,
        *[
            point(float(i) + (i % 3 == 0), plan=f"p{i}", source_ts=T0 + timedelta(1))
            for i in range(300)
        ],
        actor="run:2",
    )
    set_override(warehouse, point(1000.0, plan="p1"), user="ann")
    write(warehouse, point(1.0, plan="p1", source_ts=datetime.now(UTC)), actor="run:3")
    rows = audit(warehouse)
    assert sum(1 for r in rows if r[2] == "insert") == 300
    assert sum(1 for r in rows if r[2] == "update") == 100
    assert sum(1 for r in rows if r[2] == "override") == 1
    assert sum(1 for r in rows if r[2] == "supersede") == 1
    with warehouse.tenant("ws-a", actor="test") as db:
        changed = db.execute(
            sa.text("SELECT count(*) FROM audit_log WHERE old_value IS DISTINCT FROM new_value")
        ).scalar()
    assert changed == len(rows)  # every audited change really changed a value


def test_duplicate_keys_in_one_batch_keep_the_newest(warehouse, workspace_a) -> None:
    stats = write(warehouse, point(1, source_ts=T0), point(2, source_ts=T0 + timedelta(seconds=1)))
    assert stats.inserted == 1
    assert values(warehouse) == {("mrr", ""): 2}


def test_one_batch_inserts_new_keys_updates_changed_ones_and_leaves_the_rest(
    warehouse, workspace_a
) -> None:
    write(warehouse, point(1, plan="a", source_ts=T0), point(2, plan="b", source_ts=T0))
    later = T0 + timedelta(hours=1)
    stats = write(
        warehouse,
        point(1, plan="a", source_ts=later),  # unchanged
        point(3, plan="b", source_ts=later),  # changed
        point(4, plan="c", source_ts=later),  # new
        actor="run:2",
    )
    assert (stats.inserted, stats.updated, stats.unchanged) == (1, 1, 1)
    assert values(warehouse) == {("mrr", "plan=a"): 1, ("mrr", "plan=b"): 3, ("mrr", "plan=c"): 4}
    assert audit(warehouse)[2:] == [
        ("mrr", '{"plan":"b"}', "update", 2, 3, "run:2"),
        ("mrr", '{"plan":"c"}', "insert", None, 4, "run:2"),
    ]


def test_new_keys_ahead_of_a_stored_one_are_inserted_and_audited_once(
    warehouse, workspace_a
) -> None:
    write(warehouse, point(1, plan="a", source_ts=T0))
    stats = write(
        warehouse,
        point(4, plan="c", source_ts=T0),  # new, staged before the stored key
        point(5, plan="d", source_ts=T0),  # new
        point(1, plan="a", source_ts=T0),  # stored, unchanged
        actor="run:2",
    )
    assert (stats.inserted, stats.updated, stats.unchanged) == (2, 0, 1)
    assert values(warehouse) == {("mrr", "plan=a"): 1, ("mrr", "plan=c"): 4, ("mrr", "plan=d"): 5}
    assert audit(warehouse)[1:] == [
        ("mrr", '{"plan":"c"}', "insert", None, 4, "run:2"),
        ("mrr", '{"plan":"d"}', "insert", None, 5, "run:2"),
    ]


def test_a_stored_key_twice_in_one_batch_is_judged_by_its_newest_row(
    warehouse, workspace_a
) -> None:
    write(warehouse, point(100, source_ts=T0), point(5, plan="pro", source_ts=T0))
    # mrr: the older row would change the value, the newest is the stored value again
    # plan=pro: the newest row changes it
    stats = write(
        warehouse,
        point(150, source_ts=T0 + timedelta(hours=1)),
        point(100, source_ts=T0 + timedelta(hours=2)),
        point(6, plan="pro", source_ts=T0 + timedelta(hours=1)),
        point(7, plan="pro", source_ts=T0 + timedelta(hours=2)),
        actor="run:2",
    )
    assert (stats.inserted, stats.updated) == (0, 1)
    assert values(warehouse) == {("mrr", ""): 100, ("mrr", "plan=pro"): 7}
    assert audit(warehouse)[2:] == [("mrr", '{"plan":"pro"}', "update", 5, 7, "run:2")]


def test_a_key_another_transaction_inserts_meanwhile_is_merged_not_refused(
    warehouse, workspace_a
) -> None:
    """The merge saw the key missing, the other transaction's commit made it exist: the
    upsert takes the batch over, with the conflict resolution and audit of any update."""
    outcome: dict[str, object] = {}
    with warehouse.tenant("ws-a", actor="run:first") as first:
        write_kpis(first, [point(1, source_ts=T0)], fetched_at=T0)

        def second_writer() -> None:
            try:
                outcome["stats"] = write(
                    warehouse, point(2, source_ts=T0 + timedelta(hours=1)), actor="run:second"
                )
            except Exception as exc:  # reported by the assertion below
                outcome["error"] = exc

        thread = threading.Thread(target=second_writer)
        thread.start()
        _wait_for_lock_wait(warehouse)
    thread.join(timeout=30)
    assert "error" not in outcome, outcome.get("error")
    stats = outcome["stats"]
    assert (stats.inserted, stats.updated) == (0, 1)
    assert values(warehouse) == {("mrr", ""): 2}
    assert audit(warehouse) == [
        ("mrr", "", "insert", None, 1, "run:first"),
        ("mrr", "", "update", 1, 2, "run:second"),
    ]


def _wait_for_lock_wait(warehouse: Warehouse) -> None:
    """Until a tenant session waits for another's transaction (the second insert of a key)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with warehouse.engine(None).connect() as admin:
            waiting = admin.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE usename = 'kpi_tenant' AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        if waiting:
            return
        time.sleep(0.05)
    raise AssertionError("the second writer never waited for the first")


def test_raw_records_land_once_and_update_when_newer(warehouse, workspace_a) -> None:
    first = RawRecord("subscriptions", "sub_1", {"status": "active"}, T0)
    with warehouse.tenant("ws-a", actor="run:1") as db:
        assert write_raw_records(db, "stripe", [first, first], fetched_at=T0) == 1
    older = RawRecord("subscriptions", "sub_1", {"status": "trialing"}, T0 - timedelta(1))
    newer = RawRecord("subscriptions", "sub_1", {"status": "canceled"}, T0 + timedelta(1))
    with warehouse.tenant("ws-a", actor="run:2") as db:
        assert write_raw_records(db, "stripe", [older], fetched_at=T0) == 0
        assert write_raw_records(db, "stripe", [newer], fetched_at=T0) == 1
        payload = db.execute(sa.text("SELECT payload FROM raw_records")).scalar()
    assert payload == {"status": "canceled"}


def test_a_raw_batch_of_new_and_stored_records_writes_the_new_and_the_changed(
    warehouse, workspace_a
) -> None:
    """The merge's plain INSERT (a first load's) meets a stored record after new ones: it is
    rolled back, and the upsert writes exactly the new and the changed records."""
    stored = RawRecord("customers", "cus_2", {"name": "Ada"}, T0)
    with warehouse.tenant("ws-a", actor="run:1") as db:
        assert write_raw_records(db, "stripe", [stored], fetched_at=T0) == 1
    batch = [
        RawRecord("customers", "cus_1", {"name": "Bo"}, T0),
        stored,
        RawRecord("customers", "cus_3", {"name": "Cy"}, T0),
        RawRecord("customers", "cus_4", {"name": "Di"}, T0 + timedelta(1)),
    ]
    changed = RawRecord("customers", "cus_4", {"name": "Dee"}, T0 + timedelta(2))
    with warehouse.tenant("ws-a", actor="run:2") as db:
        assert write_raw_records(db, "stripe", batch, fetched_at=T0) == 3
        assert write_raw_records(db, "stripe", [*batch[:3], changed], fetched_at=T0) == 1
        rows = db.execute(
            sa.text("SELECT record_id, payload, run_id FROM raw_records ORDER BY record_id")
        ).all()
    assert [(r.record_id, r.payload["name"], r.run_id) for r in rows] == [
        ("cus_1", "Bo", "run:2"),
        ("cus_2", "Ada", "run:1"),
        ("cus_3", "Cy", "run:2"),
        ("cus_4", "Dee", "run:2"),
    ]


def test_raw_json_text_lands_as_the_same_document(warehouse, workspace_a) -> None:
    # Adapters may land an object's JSON text as the provider sent it (no re-encoding).
    text = b'{"id": "in_1", "lines": {"data": [{"amount": 1000}], "has_more": false}, "x": 1.5}'
    as_dict = {"id": "in_1", "lines": {"data": [{"amount": 1000}], "has_more": False}, "x": 1.5}
    with warehouse.tenant("ws-a", actor="run:1") as db:
        landed = write_raw_records(
            db, "stripe", [RawRecord("invoices", "in_1", text)], fetched_at=T0
        )
        assert landed == 1
        again = write_raw_records(
            db, "stripe", [RawRecord("invoices", "in_1", as_dict)], fetched_at=T0
        )
        assert again == 0  # the same document: nothing to update
        payload = db.execute(sa.text("SELECT payload FROM raw_records")).scalar()
    assert payload == as_dict

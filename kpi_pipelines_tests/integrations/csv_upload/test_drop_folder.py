"""Drop folders: the sensor, evaluated on a real instance, and the runs it requests."""

import os
import socket
import time
from pathlib import Path

import dagster as dg
import pytest

from kpi_pipelines.automation.partitions import provider_partitions
from kpi_pipelines.definitions import PROVIDERS, RESOURCES, defs
from kpi_pipelines.warehouse.control import Connection, add_connection
from kpi_pipelines.warehouse.tenant_data import read_points
from kpi_pipelines_tests.canary import scanned_instance
from kpi_pipelines_tests.run_results import apply_partition_requests, failure_message

[csv_drop_folder_sensor] = PROVIDERS["csv_upload"].sensors
# what the partition sensor adds for the workspaces connected to csv_upload
CSV_PARTITIONS = provider_partitions("csv_upload").name

MAPPING = {"mapping": {"date_column": "day", "metric": "orders", "value_column": "n"}}


@pytest.fixture
def drop_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KPI_CSV_DROP_DIR", str(tmp_path / "drop"))
    return tmp_path / "drop"


def settled(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    old = time.time() - 60
    os.utime(path, (old, old))
    return path


def tick(instance: dg.DagsterInstance):
    """The sensor's tick, its partition requests applied as the daemon applies them."""
    with dg.build_sensor_context(instance=instance, resources=RESOURCES) as context:
        result = csv_drop_folder_sensor(context)
    apply_partition_requests(instance, result)
    return result


def run(instance: dg.DagsterInstance, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def("csv_upload_job")
    return job.execute_in_process(
        run_config=request.run_config,
        instance=instance,
        partition_key=request.partition_key,
        raise_on_error=False,
    )


def test_dropped_files_are_imported_once_and_archived(
    warehouse, workspace_a, workspace_b, drop_dir
) -> None:
    add_connection(
        warehouse, Connection(workspace_id="ws-a", provider="csv_upload", settings=MAPPING)
    )
    with scanned_instance() as instance:
        # the partition sensor has not seen the connection yet
        first = tick(instance)
        assert isinstance(first, dg.SkipReason)
        assert (drop_dir / "ws-a").is_dir() and (drop_dir / "ws-b").is_dir()

        good = settled(drop_dir / "ws-a" / "orders.csv", "day,n\n2026-02-01,3\n")
        bad = settled(drop_dir / "ws-a" / "broken.csv", "day,n\n2026-02-01,x\n")
        settled(drop_dir / "ws-a" / "notes.txt", "not a csv")
        fresh = drop_dir / "ws-a" / "still-copying.csv"
        fresh.write_text("day,n\n", encoding="utf-8")

        result = tick(instance)
        requests = {
            Path(r.run_config["ops"]["csv_upload_kpis"]["config"]["path"]).name: r
            for r in result.run_requests
        }
        assert sorted(requests) == ["broken.csv", "orders.csv"]
        assert {r.partition_key for r in requests.values()} == {"ws-a"}
        # their partition came in the same result, so that the runs can target it
        assert [
            (r.partitions_def_name, r.partition_keys) for r in result.dynamic_partitions_requests
        ] == [(CSV_PARTITIONS, ["ws-a"])]

        assert run(instance, requests["orders.csv"]).success
        assert not run(instance, requests["broken.csv"]).success
        assert [p.value for p in read_points(warehouse, "ws-a")] == [3.0]
        assert not good.exists() and not bad.exists()
        [imported] = (drop_dir / "ws-a" / "imported").glob("*orders.csv")
        [errors] = (drop_dir / "ws-a" / "rejected").glob("*broken.csv.errors.txt")
        assert "line 2" in errors.read_text() and imported.read_text().startswith("day,n")

        os.utime(fresh, (time.time() - 60, time.time() - 60))
        later = tick(instance)
        assert [
            Path(r.run_config["ops"]["csv_upload_kpis"]["config"]["path"]).name
            for r in later.run_requests
        ] == ["still-copying.csv"]


def test_run_keys_change_only_when_the_file_changes(warehouse, workspace_a, drop_dir) -> None:
    with scanned_instance() as instance:
        path = settled(drop_dir / "ws-a" / "orders.csv", "day,n\n2026-02-01,3\n")
        [one] = tick(instance).run_requests
        [same] = tick(instance).run_requests
        assert one.run_key == same.run_key  # Dagster drops a repeated run key
        settled(path, "day,n\n2026-02-01,4\n2026-02-02,5\n")
        [changed] = tick(instance).run_requests
        assert changed.run_key != one.run_key


def test_subfolder_routes_to_a_named_connection(warehouse, workspace_a, drop_dir) -> None:
    add_connection(
        warehouse,
        Connection(workspace_id="ws-a", provider="csv_upload", name="finance", settings=MAPPING),
    )
    add_connection(
        warehouse,
        Connection(workspace_id="ws-a", provider="csv_upload", name="ops", settings=MAPPING),
    )
    with scanned_instance() as instance:
        instance.add_dynamic_partitions(CSV_PARTITIONS, ["ws-a"])
        settled(drop_dir / "ws-a" / "finance" / "q1.csv", "day,n\n2026-02-01,9\n")
        [request] = tick(instance).run_requests
        assert request.run_config["ops"]["csv_upload_kpis"]["config"]["connection"] == "finance"
        assert run(instance, request).success
        assert [p.value for p in read_points(warehouse, "ws-a")] == [9.0]


# --- only regular files saved in the workspace's own folder ---------------------------------

HOST_SECRET = "root:x:0:0:root:/root:/bin/bash\n"


def requested(result) -> dict[str, dg.RunRequest]:
    """Run requests by '<workspace>/<path under it>'."""
    if isinstance(result, dg.SkipReason):
        return {}
    return {
        f"{r.partition_key}:{r.run_config['ops']['csv_upload_kpis']['config']['path']}": r
        for r in result.run_requests
    }


def drop_request(workspace: str, path: Path, archive: bool = True) -> dg.RunRequest:
    config = {"path": str(path), "archive": archive}
    return dg.RunRequest(
        partition_key=workspace, run_config={"ops": {"csv_upload_kpis": {"config": config}}}
    )


def rejected_notes(folder: Path) -> dict[str, str]:
    """The notes in `folder/rejected/`, by the name of the entry they describe."""
    return {
        note.name.split("-", 1)[1].removesuffix(".errors.txt"): note.read_text()
        for note in (folder / "rejected").glob("*.errors.txt")
    }


@pytest.fixture
def two_workspaces(warehouse, workspace_a, workspace_b, drop_dir):
    for workspace in ("ws-a", "ws-b"):
        add_connection(
            warehouse, Connection(workspace_id=workspace, provider="csv_upload", settings=MAPPING)
        )
    with scanned_instance() as instance:
        instance.add_dynamic_partitions(CSV_PARTITIONS, ["ws-a", "ws-b"])
        yield instance


def test_a_link_to_another_workspaces_file_is_moved_aside_unread(
    warehouse, two_workspaces, drop_dir
) -> None:
    theirs = settled(drop_dir / "ws-b" / "orders.csv", "day,n\n2026-02-01,42\n")
    link = drop_dir / "ws-a" / "orders.csv"
    link.parent.mkdir(parents=True)
    link.symlink_to(theirs)
    result = tick(two_workspaces)
    assert list(requested(result)) == [f"ws-b:{theirs}"]
    assert not os.path.lexists(link)
    [moved] = (drop_dir / "ws-a" / "rejected").glob("*-orders.csv")
    assert moved.is_symlink() and moved.readlink() == theirs  # the link itself, not a copy
    assert rejected_notes(drop_dir / "ws-a") == {
        "orders.csv": "orders.csv is a symbolic link; only regular files saved in the folder"
        " are imported\n"
    }
    assert theirs.read_text() == "day,n\n2026-02-01,42\n"
    assert read_points(warehouse, "ws-a") == []


def test_a_linked_subfolder_is_never_descended_into(warehouse, two_workspaces, drop_dir) -> None:
    settled(drop_dir / "ws-b" / "finance" / "q1.csv", "day,n\n2026-02-01,7\n")
    (drop_dir / "ws-a").mkdir(parents=True)
    (drop_dir / "ws-a" / "finance").symlink_to(drop_dir / "ws-b" / "finance")
    result = tick(two_workspaces)
    assert {r.partition_key for r in requested(result).values()} == {"ws-b"}
    assert "finance" in rejected_notes(drop_dir / "ws-a")
    assert "is a symbolic link" in rejected_notes(drop_dir / "ws-a")["finance"]
    assert (drop_dir / "ws-b" / "finance" / "q1.csv").is_file()


def test_fifos_sockets_and_hard_links_are_moved_aside_unread(two_workspaces, drop_dir) -> None:
    folder = drop_dir / "ws-a"
    folder.mkdir(parents=True)
    os.mkfifo(folder / "pipe.csv")
    settled(drop_dir / "elsewhere.csv", "day,n\n2026-02-01,1\n")
    os.link(drop_dir / "elsewhere.csv", folder / "hard.csv")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(folder / "sock.csv"))
        assert isinstance(tick(two_workspaces), dg.SkipReason)  # would block on the FIFO
    notes = rejected_notes(folder)
    assert notes["pipe.csv"].startswith("pipe.csv is a named pipe (FIFO); only regular files")
    assert notes["sock.csv"].startswith("sock.csv is a socket; only regular files")
    assert notes["hard.csv"].startswith("hard.csv has 2 hard links")
    assert [p.name for p in folder.iterdir()] == ["rejected"]


def test_a_workspace_folder_that_is_a_link_is_refused(two_workspaces, drop_dir, tmp_path) -> None:
    elsewhere = tmp_path / "elsewhere"
    settled(elsewhere / "orders.csv", "day,n\n2026-02-01,3\n")
    drop_dir.mkdir()
    (drop_dir / "ws-a").symlink_to(elsewhere)
    assert isinstance(tick(two_workspaces), dg.SkipReason)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["orders.csv"]


def test_a_run_cannot_import_another_workspaces_file(warehouse, two_workspaces, drop_dir) -> None:
    theirs = settled(drop_dir / "ws-b" / "orders.csv", "day,n\n2026-02-01,42\n")
    result = run(two_workspaces, drop_request("ws-a", theirs))
    assert not result.success
    assert failure_message(result) == (
        f"orders.csv is not in the drop folder of workspace 'ws-a' ({drop_dir / 'ws-a'}): a"
        " drop-folder run imports only files saved in its own workspace's folder (the run"
        f" names {theirs})"
    )
    assert theirs.is_file() and not (drop_dir / "ws-b" / "rejected").exists()
    assert read_points(warehouse, "ws-a") == []
    # Without archiving (a run launched by hand) it is refused too.
    result = run(two_workspaces, drop_request("ws-a", theirs, archive=False))
    assert "is in the drop folder of another workspace" in failure_message(result)
    assert read_points(warehouse, "ws-a") == []


@pytest.mark.parametrize("archive", [True, False])
def test_a_run_naming_a_link_to_a_host_file_never_shows_it(
    warehouse, two_workspaces, drop_dir, tmp_path, archive
) -> None:
    host_file = tmp_path / "passwd"
    host_file.write_text(HOST_SECRET)
    link = drop_dir / "ws-a" / "passwd.csv"
    link.parent.mkdir(parents=True)
    link.symlink_to(host_file)
    result = run(two_workspaces, drop_request("ws-a", link, archive=archive))
    message = failure_message(result)
    assert "symbolic link" in message
    assert "x:0:0" not in message and "/bin/bash" not in message
    assert host_file.read_text() == HOST_SECRET


def test_a_rejected_folder_that_is_a_link_never_receives_a_file(
    warehouse, two_workspaces, drop_dir
) -> None:
    bad = settled(drop_dir / "ws-a" / "broken.csv", "day,n\n2026-02-01,x\n")
    [request] = requested(tick(two_workspaces)).values()
    (drop_dir / "ws-b").mkdir(exist_ok=True)
    (drop_dir / "ws-a" / "rejected").symlink_to(drop_dir / "ws-b")  # planted after the tick
    assert not run(two_workspaces, request).success
    assert list((drop_dir / "ws-b").iterdir()) == []
    assert not bad.exists()
    rejected = drop_dir / "ws-a" / "rejected"
    assert rejected.is_dir() and not rejected.is_symlink()
    notes = rejected_notes(drop_dir / "ws-a")
    assert "line 2" in notes["broken.csv"]
    [aside] = [name for name in notes if "rejected-refused" in name]
    assert notes[aside].startswith("rejected is a symbolic link; rejected/ must be a real folder")


def test_a_file_refused_before_its_rows_are_read_is_moved_to_rejected(
    warehouse, two_workspaces, drop_dir
) -> None:
    settled(drop_dir / "ws-a" / "wrong.csv", "date,amount\n2026-02-01,3\n")
    settled(drop_dir / "ws-a" / "latin1.csv", "day,n\n2026-02-01,3\n")
    (drop_dir / "ws-a" / "latin1.csv").write_bytes(b"day,n,caf\xe9\n2026-02-01,3,x\n")
    os.utime(drop_dir / "ws-a" / "latin1.csv", (time.time() - 60, time.time() - 60))
    for request in requested(tick(two_workspaces)).values():
        assert not run(two_workspaces, request).success
    assert sorted(p.name for p in (drop_dir / "ws-a").iterdir()) == ["rejected"]
    notes = rejected_notes(drop_dir / "ws-a")
    assert "is missing mapped columns 'day', 'n'" in notes["wrong.csv"]
    assert "is not UTF-8" in notes["latin1.csv"]


def test_same_name_in_two_connection_subfolders_has_two_run_keys(
    warehouse, workspace_a, drop_dir
) -> None:
    with scanned_instance() as instance:
        for connection in ("finance", "ops"):
            settled(drop_dir / "ws-a" / connection / "q1.csv", "day,n\n2026-02-01,9\n")
        old = time.time() - 60
        for connection in ("finance", "ops"):
            os.utime(drop_dir / "ws-a" / connection / "q1.csv", (old, old))
        keys = {r.run_key for r in tick(instance).run_requests}
        assert len(keys) == 2


def test_a_rejected_drop_lists_every_error_next_to_the_file(
    warehouse, two_workspaces, drop_dir, kpi_home
) -> None:
    rows = "".join(f"2026-02-{1 + i % 28:02},x{i}\n" for i in range(100))
    settled(drop_dir / "ws-a" / "many.csv", "day,n\n" + rows)
    [request] = requested(tick(two_workspaces)).values()
    result = run(two_workspaces, request)
    assert not result.success
    [archived] = (drop_dir / "ws-a" / "rejected").glob("*-many.csv")
    note = archived.with_name(archived.name + ".errors.txt")
    message = failure_message(result)
    assert message.startswith("many.csv was rejected and nothing was imported: 100 invalid rows\n")
    assert message.endswith(f"\n... and 80 more; every error is listed in {note}")
    text = note.read_text()
    summary, listed = text.split("\n\n", 1)
    assert summary == message.replace(f"in {note}", "below")
    assert listed.splitlines()[0].startswith("Errors in many.csv, line numbers as in the table")
    assert [
        int(line.split(",")[0].removeprefix("line "))
        for line in listed.splitlines()
        if line.startswith("line ")
    ] == list(range(2, 102))
    assert listed.splitlines()[-1] == (
        "many.csv: 100 invalid row(s) (100 errors) in all, every one listed above."
    )
    # The private copy under KPI_HOME was moved, not left behind.
    assert not list((kpi_home / "rejections" / "ws-a").glob(f"{result.run_id}-*"))


def test_notes_beside_rejected_drops_are_kept_for_the_retention_only(
    warehouse, two_workspaces, drop_dir, tmp_path, monkeypatch
) -> None:
    """Writing a note removes the notes of that rejected/ folder older than
    KPI_REJECTION_RETENTION_DAYS and beyond KPI_REJECTION_MAX_REPORTS (the newest kept);
    what is not a regular file is left alone, and a link is never followed."""
    monkeypatch.setenv("KPI_REJECTION_RETENTION_DAYS", "7")
    monkeypatch.setenv("KPI_REJECTION_MAX_REPORTS", "3")
    rejected = drop_dir / "ws-a" / "rejected"
    rejected.mkdir(parents=True)
    host_file = tmp_path / "host.errors.txt"
    host_file.write_text("not the tenant's")
    (rejected / "planted.errors.txt").symlink_to(host_file)
    now = time.time()
    for age_days, name in ((8, "old"), (6, "recent-3"), (5, "recent-2"), (4, "recent-1")):
        note = rejected / f"{name}.csv.errors.txt"
        note.write_text("...")
        os.utime(note, (now - age_days * 86400, now - age_days * 86400))
    (rejected / "old.csv").write_text("the tenant's rejected file stays")
    os.utime(rejected / "old.csv", (now - 30 * 86400, now - 30 * 86400))

    settled(drop_dir / "ws-a" / "bad.csv", "day,n\n2026-02-01,x\n")
    [request] = requested(tick(two_workspaces)).values()
    assert not run(two_workspaces, request).success

    [new_note] = rejected.glob("*-bad.csv.errors.txt")
    assert sorted(p.name for p in rejected.iterdir()) == sorted(
        [
            new_note.name,
            new_note.name.removesuffix(".errors.txt"),
            "old.csv",
            "planted.errors.txt",
            "recent-1.csv.errors.txt",
            "recent-2.csv.errors.txt",
        ]
    )
    assert host_file.read_text() == "not the tenant's"

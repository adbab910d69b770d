"""Notion in Dagster: a daily schedule from the spec, the notes asset downstream of the
sync in the asset graph and in the job (so the schedule, the UI's materialize and
`kpi-pipelines sync` run both), and the CLI's sync of a workspace end to end."""

from __future__ import annotations

import json

import dagster as dg

from kpi_pipelines.automation.partitions import provider_partitions
from kpi_pipelines.definitions import defs
from kpi_pipelines.demo import materialize_workspaces
from kpi_pipelines.integrations.notion.adapter import NotionAdapter
from kpi_pipelines.integrations.notion.notes import NOTES_ASSET
from kpi_pipelines.integrations.notion.spec import SPEC
from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.sandbox.notion import NotionSandbox, ObjectivesBoard, create_notion_app
from kpi_pipelines.warehouse.control import secret_namespace
from kpi_pipelines_tests.integrations.notion.world import NotionWorld
from kpi_pipelines_tests.processes import run_cli
from kpi_pipelines_tests.run_results import failure_message


def test_the_notes_run_daily_after_the_sync_in_its_job() -> None:
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    notes = dg.AssetKey(NOTES_ASSET)
    assert graph.get(notes).parent_keys == {SPEC.asset_key}
    job = defs.resolve_job_def(SPEC.job_name)
    assert set(job.asset_layer.executable_asset_keys) >= {SPEC.asset_key, notes}
    # the notes step waits for the sync's output
    upstream = job.graph.dependency_structure.all_upstream_outputs_from_node("notion_notes")
    assert {(o.node_name, o.output_name) for o in upstream} == {("notion_kpis", "result")}
    [schedule] = [s for s in repo.schedule_defs if s.job_name == SPEC.job_name]
    assert schedule.cron_schedule == "30 2 * * *"


def test_kpi_pipelines_sync_lands_objectives_and_notes(private_home) -> None:
    env = dict(private_home)
    sandbox = NotionSandbox(seed=3, rate_limit=None)
    notion = sandbox.add_workspace("Acme")
    board = ObjectivesBoard.create(notion, seed=3, objectives=5, notes_per_objective=1)
    sandbox.tickers.append(board.catch_up)
    token = sandbox.add_integration(notion, share=[board.objectives_db, board.notes_db])
    variable = f"{secret_namespace('acme')}NOTION_TOKEN"
    with LoopbackServer(create_notion_app(sandbox), dated_by=sandbox.clock) as server:
        env.update({"KPI_NOTION_BASE_URL": server.base_url, variable: token})
        run_cli(env, "workspace", "add", "acme")
        settings = json.dumps({"database_id": board.objectives_db.id})
        run_cli(
            env,
            *("connection", "add", "acme", "notion", "--settings-json", settings),
            *("--secret", f"token={variable}"),
        )
        synced = run_cli(env, "sync", "acme", "notion")
        shown = run_cli(env, "kpi", "show", "acme").stdout
    assert sandbox.stats.requests["GET /v1/blocks/children"] > 0, synced.stdout  # the notes ran
    assert "objectives_total" in shown and "objective_progress" in shown, shown


def run_acme_and_globex(notion: NotionWorld) -> dg.ExecuteInProcessResult:
    """One run over both workspaces, as a backfill or a scheduled tick groups them."""
    [result] = materialize_workspaces(
        notion.warehouse,
        notion.instance,
        "notion",
        ["acme", "globex"],
        adapter=NotionAdapter(backoff_base_seconds=0.01),
    )
    return result


def test_a_run_over_two_workspaces_materializes_each_once_with_its_own_metadata(
    notion: NotionWorld,
) -> None:
    """One run for a range of workspaces (a backfill, the demo): the sync's output carries
    each workspace's metadata on its own partition, and the notes run for both."""
    acme = notion.board("Acme", objectives=3, notes_per_objective=1)
    globex = notion.board("Globex", objectives=5, notes_per_objective=0, seed=8)
    notion.connect("acme", acme)
    notion.connect("globex", globex)
    result = run_acme_and_globex(notion)
    assert result.success, failure_message(result)
    events = result.get_asset_materialization_events()
    by_asset: dict[str, dict[str, dict]] = {}
    for event in events:
        key = event.asset_key.to_user_string()
        assert event.partition not in by_asset.get(key, {}), (key, event.partition)  # once
        by_asset.setdefault(key, {})[event.partition] = event.materialization.metadata
    assert set(by_asset) == {"notion_kpis", "notion_notes"}
    assert set(by_asset["notion_kpis"]) == set(by_asset["notion_notes"]) == {"acme", "globex"}
    acme_meta, globex_meta = by_asset["notion_kpis"]["acme"], by_asset["notion_kpis"]["globex"]
    assert acme_meta and acme_meta != globex_meta
    assert len(notion.notes("acme")) == 3 * 2 and len(notion.notes("globex")) == 5


def test_one_workspace_failing_in_a_grouped_run_leaves_the_others_notes_materialized(
    notion: NotionWorld,
) -> None:
    """Dagster skips the notes' step when the sync's gives no output (one workspace of the
    run failed): the sync's step then materializes the notes of those that synced, and only
    the failed workspace's partitions end failed."""
    acme = notion.board("Acme", objectives=3, notes_per_objective=1)
    globex = notion.board("Globex", objectives=2, notes_per_objective=1, seed=8)
    notion.connect("acme", acme)
    notion.connect("globex", globex)
    notion.monkeypatch.setenv(f"{secret_namespace('globex')}NOTION_TOKEN", "secret_revoked")
    result = run_acme_and_globex(notion)
    assert not result.success
    assert failure_message(result).startswith("notion: 1 of 2 workspaces failed")
    materialized = {
        (e.asset_key.to_user_string(), e.partition)
        for e in result.get_asset_materialization_events()
    }
    assert materialized == {("notion_kpis", "acme"), ("notion_notes", "acme")}
    assert len(notion.notes("acme")) == 3 * 2 and not notion.notes("globex")
    partitions = provider_partitions("notion")
    for asset in ("notion_kpis", "notion_notes"):
        status = notion.instance.get_status_by_partition(
            dg.AssetKey(asset), ["acme", "globex"], partitions
        )
        assert {k: v.value for k, v in status.items()} == {
            "acme": "MATERIALIZED",
            "globex": "FAILED",
        }, asset

"""Every `kpi-pipelines` command, in process, on the session's embedded server."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kpi_pipelines.automation.partitions import provider_partitions, workspace_partitions
from kpi_pipelines.cli import app
from kpi_pipelines.dagster_instance import open_instance
from kpi_pipelines.warehouse.tenant_data import list_overrides, read_points
from kpi_pipelines_tests.canary import runs_scanned

runner = CliRunner()


@pytest.fixture(autouse=True)
def _commands_runs_scanned(restored_environment, warehouse) -> Iterator[None]:
    """The secret canary over the runs a test's commands made in the project's instance
    (their compute logs; the warehouse, with the event log, is scanned anyway)."""
    with open_instance() as instance, runs_scanned(instance):
        yield


def cli(*args: str, ok: bool = True):
    result = runner.invoke(app, list(args), catch_exceptions=False)
    print(result.output)  # the test's output, which the secret canary scans
    if ok:
        assert result.exit_code == 0, result.output
    return result


def test_workspace_lifecycle(warehouse) -> None:
    cli(
        "workspace",
        "add",
        "acme",
        "--name",
        "Acme Inc",
        "--currency",
        "eur",
        "--timezone",
        "Europe/Paris",
    )
    listed = cli("workspace", "list").output
    assert "acme" in listed and "EUR" in listed and "Europe/Paris" in listed
    # its partition exists at once, without waiting for the sensor
    instance = open_instance()
    assert instance.has_dynamic_partition(workspace_partitions.name, "acme")
    duplicate = cli("workspace", "add", "acme", ok=False)
    assert duplicate.exit_code == 1 and "already exists" in duplicate.output
    bad = cli("workspace", "add", "Acme Corp", ok=False)
    assert bad.exit_code == 1 and "lowercase" in bad.output
    # a connection gives it its partition of the provider's asset, at once too
    csv_partitions = provider_partitions("csv_upload").name
    assert not instance.has_dynamic_partition(csv_partitions, "acme")
    mapping = {"mapping": {"date_column": "day", "metric": "orders", "value_column": "n"}}
    added = cli("connection", "add", "acme", "csv_upload", "--settings-json", json.dumps(mapping))
    assert "its partition of csv_upload_kpis" in added.output
    assert instance.has_dynamic_partition(csv_partitions, "acme")
    cli("workspace", "remove", "acme", "--yes")
    assert "acme" not in cli("workspace", "list").output
    assert not instance.has_dynamic_partition(workspace_partitions.name, "acme")
    assert not instance.has_dynamic_partition(csv_partitions, "acme")
    assert "does not exist" in cli("workspace", "remove", "acme", "--yes", ok=False).output


def test_connections_show_variable_names_never_values(
    warehouse, workspace_a, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("WS_WS_A__STRIPE_KEY", "sk_test_do_not_print_me")
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"account_id": "acct_1"}), encoding="utf-8")
    cli(
        "connection",
        "add",
        "ws-a",
        "stripe",
        "--settings-file",
        str(settings),
        "--secret",
        "api_key=WS_WS_A__STRIPE_KEY",
    )
    listed = cli("connection", "list", "ws-a").output
    assert "api_key=WS_WS_A__STRIPE_KEY" in listed and "sk_test_do_not_print_me" not in listed
    foreign = cli(
        "connection", "add", "ws-a", "stripe", "--secret", "api_key=KPI_DATABASE_URL", ok=False
    )
    assert foreign.exit_code == 1 and "own namespace WS_WS_A__" in foreign.output
    assert "no csv_upload" not in listed
    missing = cli("connection", "add", "nope", "stripe", ok=False)
    assert "workspace 'nope' does not exist" in missing.output
    not_json = cli("connection", "add", "ws-a", "stripe", "--settings-json", "{oops", ok=False)
    assert "not valid JSON" in not_json.output
    # Checked against the provider's spec when saved, not at the first run.
    unknown_setting = cli(
        "connection", "add", "ws-a", "stripe", "--setting", "acount_id=1", ok=False
    )
    assert "stripe settings: acount_id: Extra inputs are not permitted" in unknown_setting.output
    no_mapping = cli("connection", "add", "ws-a", "csv_upload", ok=False)
    assert "csv_upload settings: mapping: Field required" in no_mapping.output
    unknown_secret = cli(
        "connection", "add", "ws-a", "stripe", "--secret", "apikey=WS_WS_A__STRIPE_KEY", ok=False
    )
    assert "stripe takes the secrets api_key, webhook_secret; not apikey" in unknown_secret.output


def test_fx_import_all_or_nothing(warehouse, tmp_path) -> None:
    good = tmp_path / "rates.csv"
    good.write_text(
        "day,base,quote,rate\n2026-01-01,EUR,USD,1.08\n2026-01-02,eur,usd,1.09\n", encoding="utf-8"
    )
    assert "imported 2 exchange rate(s)" in cli("fx", "import", str(good)).output
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "day,base,quote,rate\n2026-01-03,EUR,USD,1.1\n2026-01-04,EURO,USD,1.1\n2026-01-05,EUR,USD,-2\n",
        encoding="utf-8",
    )
    rejected = cli("fx", "import", str(bad), ok=False)
    assert (
        "line 3" in rejected.output
        and "line 4" in rejected.output
        and "nothing imported" in rejected.output
    )
    with warehouse.control() as db:
        import sqlalchemy as sa

        days = db.execute(sa.text("SELECT day::text FROM fx_rates ORDER BY day")).scalars().all()
    assert days == ["2026-01-01", "2026-01-02"]


def test_override_set_list_and_kpi_show(warehouse, workspace_a) -> None:
    cli(
        "override",
        "set",
        "ws-a",
        "csv_upload",
        "signups",
        "2026-01-05",
        "42",
        "--dimension",
        "team=growth",
        "--reason",
        "double-counted",
        "--user",
        "ann",
    )
    [override] = list_overrides(warehouse, "ws-a")
    assert (override.value, override.set_by, override.reason) == (
        42.0,
        "user:ann",
        "double-counted",
    )
    assert [p.origin for p in read_points(warehouse, "ws-a")] == ["manual"]
    listed = cli("override", "list", "ws-a").output
    assert "signups" in listed and "open" in listed and "user:ann" in listed
    shown = cli("kpi", "show", "ws-a", "--metric", "signups", "--days", "100000").output
    assert "team=growth" in shown and "42.00" in shown and "manual" in shown
    bad_day = cli("override", "set", "ws-a", "csv_upload", "signups", "05/01/2026", "1", ok=False)
    assert bad_day.exit_code == 1 and "05/01/2026" in bad_day.output


def test_db_upgrade_reports_the_revision(warehouse) -> None:
    from kpi_pipelines.warehouse.migrate import head_revision

    assert f"revision {head_revision()}" in cli("db", "upgrade").output


def test_pools_set_writes_limits_into_the_instance(warehouse) -> None:
    import dagster as dg

    output = cli("pools", "set", "--limit", "stripe=3").output
    assert "pool stripe: 3 run(s) at once" in output
    instance = dg.DagsterInstance.get()
    assert instance.event_log_storage.get_concurrency_info("stripe").slot_count == 3
    assert (
        "must be a positive integer" in cli("pools", "set", "--limit", "stripe=0", ok=False).output
    )


def test_csv_import_prints_what_it_did(warehouse, workspace_a, tmp_path: Path) -> None:
    cli(
        "connection",
        "add",
        "ws-a",
        "csv_upload",
        "--settings-json",
        json.dumps({"mapping": {"date_column": "d", "metric": "orders", "value_column": "v"}}),
    )
    path = tmp_path / "orders.csv"
    path.write_text("d,v\n2026-01-01,4\n", encoding="utf-8")
    output = cli("import", "ws-a", "csv_upload", str(path)).output
    assert "1 records, 1 points written" in output

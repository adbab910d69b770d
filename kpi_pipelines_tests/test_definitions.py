"""The Definitions load, as Dagster itself loads them (a separate process, its own CLI)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

import kpi_pipelines
from kpi_pipelines.definitions import PROVIDERS, defs
from kpi_pipelines.warehouse.database import Warehouse


def test_dagster_definitions_validate(tmp_path: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    completed = subprocess.run(
        [
            *(sys.executable, "-m", "dagster", "definitions", "validate"),
            *(
                "-m",
                "kpi_pipelines.definitions",
                "-d",
                str(Path(kpi_pipelines.__file__).parents[1]),
            ),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "All code locations passed validation" in completed.stdout + completed.stderr


def test_every_provider_asset_is_workspace_partitioned_and_checked() -> None:
    """A provider's assets by the workspaces connected to it, the mart by every workspace,
    and the mart's partition of a workspace reads the same partition of each provider's."""
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    by_provider = {
        asset.key: provider
        for provider, made in PROVIDERS.items()
        for asset in (made.asset, *made.downstream)
    }
    for key in graph.get_all_asset_keys():
        asset = graph.get(key)
        expected = (
            dg.DynamicPartitionsDefinition(name=f"{by_provider[key]}_workspaces")
            if key in by_provider
            else dg.DynamicPartitionsDefinition(name="workspace")
        )
        assert asset.partitions_def == expected, key
        assert asset.description and asset.group_name != "default", key
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("workspace", ["acme", "globex"])
        instance.add_dynamic_partitions("stripe_workspaces", ["globex"])
        mart, stripe = dg.AssetKey("kpi_mart"), dg.AssetKey("stripe_kpis")
        upstream = graph.get_partition_mapping(mart, stripe)
        mapped = upstream.get_upstream_mapped_partitions_result_for_partitions(
            graph.get(mart).partitions_def.subset_with_partition_keys(["acme", "globex"]),
            graph.get(mart).partitions_def,
            graph.get(stripe).partitions_def,
            dynamic_partitions_store=instance,
        )
        assert list(mapped.partitions_subset.get_partition_keys()) == ["globex"]
    check_names = {c.name for c in repo.asset_graph.asset_check_keys}
    assert {"no_missing_values", "no_duplicate_keys", "no_rejected_records"} <= check_names


def test_one_code_location_name_everywhere() -> None:
    """pyproject (`dagster`, `dg`), workspace.yaml, the code server `kpi-pipelines ui` and
    `dev` start and the runs the CLI starts name the code location alike, so schedule and
    sensor history do not split and the UI finds a CLI run's job."""
    import tomllib
    from pathlib import Path

    import yaml

    from kpi_pipelines.cli import CODE_SERVER_WORKSPACE
    from kpi_pipelines.dagster_instance import CODE_LOCATION
    from kpi_pipelines.runs import DEFINITIONS_MODULE

    root = Path(__file__).resolve().parent.parent
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    names = {
        pyproject["tool"]["dagster"]["code_location_name"],
        pyproject["tool"]["dg"]["project"]["code_location_name"],
        CODE_LOCATION,
    }
    [entry] = yaml.safe_load((root / "workspace.yaml").read_text(encoding="utf-8"))["load_from"]
    assert entry["python_module"]["module_name"] == pyproject["tool"]["dagster"]["module_name"]
    assert pyproject["tool"]["dagster"]["module_name"] == DEFINITIONS_MODULE
    names.add(entry["python_module"]["location_name"])
    [served] = yaml.safe_load(CODE_SERVER_WORKSPACE.format(port=4000))["load_from"]
    names.add(served["grpc_server"]["location_name"])
    assert names == {"kpi_pipelines"}


def test_runs_execute_their_steps_in_the_run_process() -> None:
    from kpi_pipelines.definitions import defs

    for job in defs.resolve_all_job_defs():
        assert job.executor_def.name == "in_process", job.name


# Libraries a run process does not load unless its work needs them: where each one loads.
LOADED_WHERE_NEEDED = {
    "pandas": "the mart and read_kpis (about 0.4 CPU-s and 45 MB with numpy)",
    "numpy": "the mart and read_kpis",
    "alembic": "a migration (a schema at head is checked by reading its version table)",
    "joserfc": "nowhere in a run (authlib's OpenID clients, never used)",
    "cryptography": "sealing or opening an OAuth grant",
    "stripe": "a Stripe sync's first request (integrations/stripe/sdk.py)",
}


def test_a_run_process_leaves_heavy_libraries_to_the_work_that_needs_them(
    warehouse: Warehouse,
) -> None:
    """Every run worker, the code server and the daemon load the definitions, and a run
    checks the warehouse's schema: neither loads what only some work needs."""
    probe = (
        "import json, sys, kpi_pipelines.definitions as d; d.defs;"
        " from kpi_pipelines.warehouse.database import Warehouse;"
        " Warehouse.connect().ensure_ready();"
        f" print(json.dumps([m for m in {sorted(LOADED_WHERE_NEEDED)!r} if m in sys.modules]))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True
    )
    early = json.loads(loaded.stdout)
    assert not early, {name: f"should load only in {LOADED_WHERE_NEEDED[name]}" for name in early}

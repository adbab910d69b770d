"""The secret canary (canary.py) finds a secret wherever one is planted, so that its silence
over the whole suite means something."""

from __future__ import annotations

import sys
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from kpi_pipelines.demo import start_demo_simulators, write_env_file
from kpi_pipelines.integrations.shared.redaction import register_secret
from kpi_pipelines_tests.canary import canaries, demo_secrets, instance_leaks, warehouse_leaks
from kpi_pipelines_tests.processes import (
    cli_env,
    run_cli,
    run_process,
    script_path,
    start_service,
    traced_home,
)

PLANTED = "canary-planted-4c7d1e9a"

pytest_plugins = ["pytester"]


@pytest.fixture
def planted() -> str:
    register_secret(PLANTED)
    assert PLANTED in canaries()
    return PLANTED


def test_a_secret_in_any_warehouse_table_is_found(warehouse, workspace_a, planted) -> None:
    with warehouse.engine(None).begin() as db:
        db.execute(sa.text("UPDATE kpi.workspaces SET name = :n WHERE id = 'ws-a'"), {"n": planted})
        db.execute(sa.text("CREATE TABLE public.canary_probe (note text)"))
        db.execute(sa.text("INSERT INTO public.canary_probe VALUES (:n)"), {"n": f"x{planted}x"})
    try:
        found = warehouse_leaks(warehouse)
    finally:
        with warehouse.engine(None).begin() as db:
            db.execute(sa.text("DROP TABLE public.canary_probe"))
            db.execute(sa.text("UPDATE kpi.workspaces SET name = 'A' WHERE id = 'ws-a'"))
    assert sorted(found) == [
        "table kpi.workspaces: canary...",
        "table public.canary_probe: canary...",
    ]
    assert warehouse_leaks(warehouse) == []


def test_a_secret_in_a_runs_event_log_or_compute_log_is_found(planted, capfd) -> None:
    @dg.asset
    def leaky(context) -> None:  # type: ignore[no-untyped-def]
        context.log.info(f"connecting with {planted}")  # Dagster's own logger: no redaction
        print(f"stdout says {planted}")

    @dg.asset
    def tidy(context) -> None:  # type: ignore[no-untyped-def]
        context.log.info("connecting with the key from the environment")

    with dg.instance_for_test() as instance:
        assert dg.materialize([tidy], instance=instance).success
        assert instance_leaks(instance) == []
        assert dg.materialize([leaky], instance=instance).success
        found = instance_leaks(instance)
    capfd.readouterr()  # what the leaky run printed is this test's plant, not a leak
    assert any("event log: canary..." in place for place in found)
    assert any(place.startswith("compute log ") for place in found)


def test_a_secret_in_a_tests_output_fails_that_test(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('pytest_plugins = ["kpi_pipelines_tests.canary"]')
    pytester.makepyfile(
        f"""
        from kpi_pipelines.integrations.shared.redaction import register_secret

        def test_prints_a_secret():
            register_secret({PLANTED!r})
            print("the key is " + {PLANTED!r})

        def test_prints_nothing_secret():
            register_secret({PLANTED!r})
            print("the key is [REDACTED]")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*secret canary: a secret appears in Captured stdout call*"])
    assert PLANTED not in result.stdout.str()


# A Dagster asset as a user's code might write it: the secret in its log and its output.
LEAKY_ASSET = """
import os
import dagster as dg

@dg.asset
def leaky(context) -> None:
    context.log.info("connecting with " + os.environ["PLANTED"])
    print("stdout says " + os.environ["PLANTED"])
"""


def test_a_secret_subprocesses_left_in_their_warehouse_compute_logs_or_output_is_found(
    planted, tmp_path
) -> None:
    asset_file = tmp_path / "leaky.py"
    asset_file.write_text(LEAKY_ASSET, encoding="utf-8")
    with traced_home() as (env, trail):
        # the CLI writes the secret into the kpi schema, a Dagster run into its event log
        # (in the same database) and its compute log
        run_cli(env, "workspace", "add", "leaky-shop", "--name", planted)
        materialize = [script_path("dagster"), "asset", "materialize", "-f", str(asset_file)]
        run_process(
            [*materialize, "--select", "leaky"], {**env, **cli_env(env), "PLANTED": planted}
        )
        found = trail.leaks()
    places = {place.rpartition(":")[0] for place in found}
    assert "home's table kpi.workspaces" in places, found
    assert "home's table public.event_logs" in places, found
    assert any(p.startswith("file home/dagster/storage/") and "/compute_logs/" in p for p in places)
    assert any(p.startswith("stderr of `dagster asset materialize") for p in places), found
    assert all(place.endswith(": canary...") for place in found), found


def test_a_secret_in_a_services_log_file_or_a_commands_output_is_found(planted) -> None:
    with traced_home() as (env, trail):
        echo = [sys.executable, "-c", "import os; print('key:', os.environ['PLANTED'])"]
        service = start_service("leaky-service", echo, {**env, "PLANTED": planted}, trail.folder)
        assert service.process.wait(timeout=60) == 0
        # a command whose arguments hold the secret is named without it
        run_process([sys.executable, "-c", f"print({planted!r})"], env)
        found = trail.leaks()
    [in_file, in_output] = sorted(found)
    assert in_file == "file leaky-service.log: canary..."
    assert in_output.startswith(f"stdout of `{Path(sys.executable).name} -c ")
    assert in_output.endswith("[CANARY]'\"'\"')'`: canary...")


def test_the_demos_and_devs_own_secrets_are_canaries_where_they_ran(tmp_path) -> None:
    """Read from the env file `dev` wrote, and from the demo simulators (the same accounts
    on the same folder, as `dev` starts them: some demo secrets derive from it): secrets,
    not the simulators' hosts."""
    written = tmp_path / "dev-home"
    planted = "sk_test_devPlanted0123456789"  # registered nowhere
    write_env_file(
        written / "demo" / "dev.env",
        {"WS_ACME__STRIPE_KEY": planted, "KPI_STRIPE_BASE_URL": "http://127.0.0.1:1"},
    )
    assert demo_secrets(written) == {planted}

    demo_home = tmp_path / "demo-home"
    (demo_home / "demo" / "simulators").mkdir(parents=True)
    secrets = demo_secrets(demo_home)
    stack = start_demo_simulators(demo_home / "demo" / "simulators")
    try:
        given = stack.env()
    finally:
        stack.stop()
    assert secrets == {value for name, value in given.items() if not name.endswith("_URL")}
    for name in (
        "WS_ACME__STRIPE_KEY",
        "WS_GLOBEX__STRIPE_WHSEC",
        "WS_ACME__GOOGLE_REFRESH_TOKEN",
        "KPI_GOOGLE_CLIENT_SECRET",
        "WS_ACME__META_TOKEN",
        "KPI_GRANT_KEYS",
    ):
        assert given[name] in secrets, name
    assert demo_secrets(tmp_path / "no-demo") == set()


def test_a_demo_secret_in_what_processes_left_is_found(tmp_path) -> None:
    stack = start_demo_simulators(tmp_path / "simulators")
    try:
        webhook_secret = stack.env()["WS_GLOBEX__STRIPE_WHSEC"]
    finally:
        stack.stop()
    with traced_home() as (env, trail):
        home = Path(env["KPI_HOME"])
        (home / "demo" / "simulators").mkdir(parents=True)
        write_env_file(home / "demo" / "dev.env", {"WS_GLOBEX__STRIPE_WHSEC": webhook_secret})
        assert trail.leaks() == []  # the env file is where the secrets belong
        (home / "dev.log").write_text(f"signing with {webhook_secret}\n", encoding="utf-8")
        found = trail.leaks()
    assert found == ["file home/dev.log: whsec_..."]


def test_a_secret_left_by_a_tests_processes_fails_that_test(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        'pytest_plugins = ["kpi_pipelines_tests.canary", "kpi_pipelines_tests.processes"]'
    )
    pytester.makepyfile(
        f"""
        import sys
        from kpi_pipelines.integrations.shared.redaction import register_secret
        from kpi_pipelines_tests.processes import run_process

        def test_runs_a_process_that_prints_a_secret(private_home):
            register_secret({PLANTED!r})
            run_process([sys.executable, "-c", "import os; print(os.environ['P'])"],
                        {{**private_home, "P": {PLANTED!r}}})

        def test_runs_a_process_that_prints_nothing_secret(private_home):
            register_secret({PLANTED!r})
            run_process([sys.executable, "-c", "print('[REDACTED]')"], private_home)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["*SecretLeak: a secret leaked where the test's processes left it: stdout of *: canary..."]
    )
    assert PLANTED not in result.stdout.str()

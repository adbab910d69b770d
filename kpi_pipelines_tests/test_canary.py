"""The secret canary (canary.py) finds a secret wherever one is planted, so that its silence
over the whole suite means something."""

from __future__ import annotations

import dagster as dg
import pytest
import sqlalchemy as sa

from kpi_pipelines.integrations.shared.redaction import register_secret
from kpi_pipelines_tests.canary import canaries, instance_leaks, warehouse_leaks

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

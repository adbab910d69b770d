"""Layers point one way (DESIGN.md): read from the code's own imports, lazy ones included.

- the neutral models import nothing of the project;
- the warehouse imports only itself, the models and the settings;
- the kit (integrations/shared) imports no provider, and no provider imports another;
- production code never imports the simulators: only the sandbox itself, the demo layer
  (kpi_pipelines/demo.py, which resolves the demos that specs name) and tests do;
- no module imports itself back through others (no import circles).
"""

from __future__ import annotations

import functools

from kpi_pipelines_tests.imports import circles, import_graph

NEUTRAL = {"kpi_pipelines", "kpi_pipelines.models", "kpi_pipelines.settings"}


@functools.cache
def every_import() -> dict[str, set[str]]:
    """The package's imports, read once; layering counts even those only a type checker
    reads."""
    return import_graph(type_checking=True)


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _provider_of(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) > 2 and parts[:2] == ["kpi_pipelines", "integrations"] and parts[2] != "shared":
        return parts[2]
    return None


def test_the_models_and_the_warehouse_import_nothing_above_them() -> None:
    graph = every_import()
    for module, imported in graph.items():
        if module == "kpi_pipelines.models":
            assert imported <= {"kpi_pipelines"}, imported
        if _inside(module, "kpi_pipelines.warehouse"):
            above = {
                m
                for m in imported
                if not _inside(m, "kpi_pipelines.warehouse") and m not in NEUTRAL
            }
            assert not above, f"{module} imports {sorted(above)}"


def test_the_kit_imports_no_provider_and_no_provider_imports_another() -> None:
    for module, imported in every_import().items():
        own = _provider_of(module)
        others = {_provider_of(m) for m in imported} - {None, own}
        assert not others, f"{module} imports the provider(s) {sorted(others)}"  # type: ignore[type-var]


def test_production_code_never_imports_the_simulators() -> None:
    allowed = ("kpi_pipelines.sandbox", "kpi_pipelines.demo")
    for module, imported in every_import().items():
        if any(_inside(module, a) for a in allowed):
            continue
        simulators = {m for m in imported if _inside(m, "kpi_pipelines.sandbox")}
        assert not simulators, f"{module} imports {sorted(simulators)}"


def test_there_are_no_import_circles() -> None:
    assert circles(import_graph()) == []


def test_the_circle_finder_finds_circles() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c"}}) == [["a", "b"], ["c", "d"]]
    assert circles({"a": {"b"}, "b": set()}) == []

"""Layers point one way (DESIGN.md): read from the code's own imports, lazy ones included.

- the neutral models import nothing of the project;
- the warehouse imports only itself, the models and the settings;
- the kit (integrations/shared) imports no provider, and no provider imports another;
- production code never imports the simulators: only the sandbox itself, the demo layer
  (kpi_pipelines/demo.py, which resolves the demos that specs name) and tests do.
"""

from __future__ import annotations

import ast
from pathlib import Path

import kpi_pipelines

PACKAGE = Path(kpi_pipelines.__file__).parent
NEUTRAL = {"kpi_pipelines", "kpi_pipelines.models", "kpi_pipelines.settings"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the project's modules it imports (at the top or inside a function)."""
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    imported.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _provider_of(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) > 2 and parts[:2] == ["kpi_pipelines", "integrations"] and parts[2] != "shared":
        return parts[2]
    return None


def test_the_models_and_the_warehouse_import_nothing_above_them() -> None:
    graph = import_graph()
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
    for module, imported in import_graph().items():
        own = _provider_of(module)
        others = {_provider_of(m) for m in imported} - {None, own}
        assert not others, f"{module} imports the provider(s) {sorted(others)}"  # type: ignore[type-var]


def test_production_code_never_imports_the_simulators() -> None:
    allowed = ("kpi_pipelines.sandbox", "kpi_pipelines.demo")
    for module, imported in import_graph().items():
        if any(_inside(module, a) for a in allowed):
            continue
        simulators = {m for m in imported if _inside(m, "kpi_pipelines.sandbox")}
        assert not simulators, f"{module} imports {sorted(simulators)}"

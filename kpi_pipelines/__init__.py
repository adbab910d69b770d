"""kpi_pipelines: SaaS business data into one normalized, per-workspace KPI store."""

from __future__ import annotations

from typing import Any

__all__ = ["MissingKPIWarning", "read_kpis"]


def __getattr__(name: str) -> Any:
    # read_kpis brings pandas: imported when asked for, not with every pipeline module
    if name in __all__:
        from kpi_pipelines.warehouse import mart

        return getattr(mart, name)
    raise AttributeError(f"module 'kpi_pipelines' has no attribute {name!r}")

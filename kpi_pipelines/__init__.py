"""kpi_pipelines: SaaS business data into one normalized, per-workspace KPI store."""

from __future__ import annotations

from typing import Any

__all__ = ["read_kpis"]


def __getattr__(name: str) -> Any:
    # read_kpis brings pandas: imported when asked for, not with every pipeline module
    if name == "read_kpis":
        from kpi_pipelines.warehouse.mart import read_kpis

        return read_kpis
    raise AttributeError(f"module 'kpi_pipelines' has no attribute {name!r}")

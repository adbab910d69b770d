"""Dagster resources shared by every asset."""

from __future__ import annotations

import dagster as dg

from kpi_pipelines.warehouse.database import Warehouse


class WarehouseResource(dg.ConfigurableResource):
    """The KPI warehouse: KPI_DATABASE_URL, or the embedded server when it is unset."""

    database_url: str | None = None

    def get(self) -> Warehouse:
        return Warehouse.connect(self.database_url or None).ensure_ready()

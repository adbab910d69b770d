"""kpi_pipelines: SaaS business data into one normalized, per-workspace KPI store."""

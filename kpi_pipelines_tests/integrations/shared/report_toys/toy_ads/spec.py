"""Toy ads, declared: synchronous stats cut to 7 days, 2 campaigns and 2 metrics a request."""

from kpi_pipelines_tests.integrations.shared.report_toys.adapter import (
    ToyAdsAdapter,
    stats_report,
    toy_spec,
)

SPEC = toy_spec(
    "toy_ads",
    "Daily campaign stats of a toy ad platform, read as synchronous requests.",
    ToyAdsAdapter,
    stats_report(max_days=7, max_ids=2, max_metrics=2),
)

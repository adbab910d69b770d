"""Toy ad stats asked at once for up to 3 days and as async jobs beyond (as X does)."""

from kpi_pipelines.integrations.shared.engines.report import ReportJobs
from kpi_pipelines_tests.integrations.shared.report_toys.adapter import (
    ToyAdMixedAdapter,
    stats_report,
    toy_spec,
)

SPEC = toy_spec(
    "toy_ad_mixed",
    "Daily campaign stats of a toy ad platform: requests up to 3 days, async jobs beyond.",
    ToyAdMixedAdapter,
    stats_report(max_ids=2, max_metrics=2, jobs=ReportJobs(in_flight=2, sync_days=3)),
)

"""Toy ad jobs, declared: the same stats as async jobs of 2 campaigns, 2 running at once."""

from kpi_pipelines.integrations.shared.engines.report import ReportJobs
from kpi_pipelines_tests.integrations.shared.report_toys.adapter import (
    ToyAdJobsAdapter,
    stats_report,
    toy_spec,
)

SPEC = toy_spec(
    "toy_ad_jobs",
    "Daily campaign stats of a toy ad platform, read as async jobs.",
    ToyAdJobsAdapter,
    stats_report(max_ids=2, jobs=ReportJobs(in_flight=2)),
)

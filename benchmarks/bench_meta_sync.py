"""A Meta Ads first sync (a year of one account's campaigns) through the real pipeline,
against the same HTTP done with plain httpx.

In a fresh temporary KPI_HOME (the embedded PostgreSQL), the Meta simulator serves one
account on loopback (`--campaigns` campaigns, report runs that finish at the first poll).
Alternately, `--rounds` times:

- baseline: the requests a sync sends, with httpx and nothing else: the account, the
  campaigns, and for each 31-day window and level a report run created, polled and its
  pages read (json decoded, nothing validated or written);
- pipeline: `materialize_provider` of meta_ads for a new workspace (a first sync of
  `--days` days): the same requests through the kit's HTTP layer, every row validated,
  its points converted and written through the one write path, campaigns landed.

Only ratios within one run are meaningful (the machine is shared, the simulator computes
its answers in the same process); nothing is asserted on time. The script exits 1 when a
run fails or stores other than the account's truth. The last line printed is one JSON
object with every figure.

    python benchmarks/bench_meta_sync.py                          # 365 days, 50 campaigns
    python benchmarks/bench_meta_sync.py --days 90 --campaigns 10
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ACCOUNT = "777000111"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--campaigns", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="kpi-bench-meta-"))
    os.environ["KPI_HOME"] = str(home)
    os.environ.pop("DAGSTER_HOME", None)
    try:
        return measure(args.days, args.campaigns, args.rounds)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def baseline(base: str, token: str, days: int, today) -> int:
    """The sync's requests with plain httpx; returns the rows read."""
    import httpx

    rows = 0
    with httpx.Client(
        base_url=f"{base}/v24.0", headers={"Authorization": f"Bearer {token}"}
    ) as http:
        http.get(f"act_{ACCOUNT}", params={"fields": "name,currency,timezone_name"}).json()
        http.get(f"act_{ACCOUNT}/campaigns", params={"limit": 500}).json()
        first = today - timedelta(days=days - 1)
        while first <= today:
            last = min(today, first + timedelta(days=30))
            for level, fields in (("campaign", "campaign_id,"), ("account", "")):
                span = json.dumps({"since": first.isoformat(), "until": last.isoformat()})
                form = {
                    "level": level,
                    "time_range": span,
                    "time_increment": "1",
                    "fields": fields + "spend,impressions,clicks,actions,action_values",
                }
                run = http.post(f"act_{ACCOUNT}/insights", data=form).json()["report_run_id"]
                while http.get(run).json()["async_status"] != "Job Completed":
                    pass
                page = http.get(f"{run}/insights", params={"limit": 500}).json()
                while True:
                    rows += len(page["data"])
                    if "next" not in page.get("paging", {}):
                        break
                    page = http.get(page["paging"]["next"]).json()
            first = last + timedelta(days=1)
    return rows


def _peak_mb() -> float:
    """The process's peak RSS so far (the simulator's and the pipeline's together)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def measure(days: int, campaigns: int, rounds: int) -> int:
    import sqlalchemy as sa

    from kpi_pipelines.dagster_instance import open_instance
    from kpi_pipelines.demo import materialize_provider
    from kpi_pipelines.integrations.meta_ads.adapter import MetaAdsAdapter
    from kpi_pipelines.sandbox.kit.server import LoopbackServer
    from kpi_pipelines.sandbox.meta import MetaSandbox, create_meta_app
    from kpi_pipelines.warehouse.control import Connection, Workspace, add_connection, add_workspace
    from kpi_pipelines.warehouse.database import Warehouse

    warehouse = Warehouse.connect().ensure_ready()
    instance = open_instance()
    sandbox = MetaSandbox(seed=3, job_steps=1, max_job_cells=10**7)
    account = sandbox.add_account(ACCOUNT, campaigns=campaigns, history_days=days + 30)
    token = sandbox.issue_token(ACCOUNT, lifetime=None)
    os.environ["WS_BENCH__META_TOKEN"] = token
    today = account.local_day()
    truth_points = sum(
        len(m.kpis())
        for m in account.truth_by_campaign_day(today - timedelta(days=days - 1), today).values()
    )
    figures: dict[str, list[float]] = {"baseline": [], "pipeline": []}
    peaks: dict[str, list[float]] = {"baseline": [], "pipeline": []}
    rows = 0
    with LoopbackServer(create_meta_app(sandbox), dated_by=sandbox.clock) as server:
        os.environ["KPI_META_ADS_BASE_URL"] = server.base_url
        for n in range(rounds):
            started = time.perf_counter()
            rows = baseline(server.base_url, token, days, today)
            figures["baseline"].append(time.perf_counter() - started)
            peaks["baseline"].append(_peak_mb())
            workspace = f"bench-{n}"
            add_workspace(warehouse, Workspace(id=workspace, name=workspace))
            add_connection(
                warehouse,
                Connection(
                    workspace_id=workspace,
                    provider="meta_ads",
                    settings={"account_id": ACCOUNT},
                    secret_env={"access_token": f"WS_BENCH_{n}__META_TOKEN"},
                ),
            )
            os.environ[f"WS_BENCH_{n}__META_TOKEN"] = token
            started = time.perf_counter()
            result = materialize_provider(
                warehouse,
                instance,
                "meta_ads",
                workspace,
                {"history_days": days},
                adapter=MetaAdsAdapter(job_poll_seconds=0.01),
            )
            figures["pipeline"].append(time.perf_counter() - started)
            peaks["pipeline"].append(_peak_mb())
            # Counted in SQL: reading the points back would put its own peak in the figures.
            with warehouse.tenant(workspace, actor="bench") as db:
                stored = db.execute(
                    sa.text(
                        "SELECT count(*) FROM kpi_data"
                        " WHERE source = 'meta_ads' AND dimensions_key <> ''"
                    )
                ).scalar_one()
            if not result.success or stored != truth_points:
                print(
                    f"round {n}: the sync failed or stored {stored} campaign points,"
                    f" not {truth_points}"
                )
                return 1
    base, pipe = statistics.median(figures["baseline"]), statistics.median(figures["pipeline"])
    summary = {
        "days": days,
        "campaigns": campaigns,
        "rows": rows,
        "points": truth_points,
        "baseline_s": round(base, 3),
        "pipeline_s": round(pipe, 3),
        "ratio": round(pipe / base, 2),
        "pipeline_rows_per_s": round(rows / pipe, 1),
        "peak_rss_mb": _peak_mb(),
        "peak_rss_mb_after": peaks,
        "all": {k: [round(v, 3) for v in vs] for k, vs in figures.items()},
    }
    print(f"{days} days x {campaigns} campaigns: {rows} rows, {truth_points} campaign points")
    print(
        f"baseline (httpx, no writes) median {base:.2f} s; pipeline median {pipe:.2f} s: {pipe / base:.2f}x"
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

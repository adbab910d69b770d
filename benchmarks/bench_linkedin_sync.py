"""A LinkedIn Ads sync through the real pipeline, against fetching the same answers with a
plain httpx client.

In a fresh temporary KPI_HOME (the embedded PostgreSQL), the LinkedIn simulator serves one
ad account of `--campaigns` campaigns (in USD; the workspace reports in EUR, so every money
point is converted with the day's rate) on loopback, its clock fixed, so every request is
answered the same way each time. Alternating, `--runs` times each:

- baseline: one OAuth refresh, then the requests a sync sends (the campaign search, then
  per 31-day window the campaign rows 100 campaigns at a time and the account's rows) with
  httpx, each answer decoded: what reading the API costs, nothing stored;
- first sync: `materialize_provider` of linkedin_ads for a new workspace, 90 days (OAuth,
  the engine's windows and chunks, validation, fx, points written and audited, cursors);
- re-sync: the same workspace again, which re-reads its last 30 days (the lookback) and
  writes nothing (nothing changed): against a baseline of those 30 days.

Only ratios within one run are meaningful (the simulator runs in this process and takes its
share of the time in both); nothing is asserted on time. Exits 1 when a sync fails or stores
other points than the first one did. The last line printed is one JSON object.

    python benchmarks/bench_linkedin_sync.py                  # 100 campaigns, 3 runs
    python benchmarks/bench_linkedin_sync.py --campaigns 300 --runs 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx

ACCOUNT, CLIENT, SECRET, TOKEN = "5100", "bench-client", "bench-secret", "AQXbench-refresh"
VERSION = "202611"
FIELDS = "dateRange,pivotValues,impressions,clicks,costInLocalCurrency"
FIELDS += ",externalWebsiteConversions,conversionValueInLocalCurrency"


def baseline(base: str, campaign_ids: list[str], first: date, last: date) -> int:
    """The sync's requests with plain httpx; returns the elements read."""
    with httpx.Client(base_url=base, timeout=60) as http:
        form = {"grant_type": "refresh_token", "refresh_token": TOKEN}
        form |= {"client_id": CLIENT, "client_secret": SECRET}
        token = http.post("/oauth/v2/accessToken", data=form).json()["access_token"]
        http.headers.update(
            {
                "Authorization": f"Bearer {token}",
                "LinkedIn-Version": VERSION,
                "X-Restli-Protocol-Version": "2.0.0",
            }
        )
        http.get(f"/rest/adAccounts/{ACCOUNT}").json()
        search = f"/rest/adAccounts/{ACCOUNT}/adCampaigns?q=search&pageSize=500"
        http.get(search).json()
        read, start = 0, first
        while start <= last:
            end = min(last, start + timedelta(days=30))
            span = (
                f"dateRange=(start:(year:{start.year},month:{start.month},day:{start.day}),"
                f"end:(year:{end.year},month:{end.month},day:{end.day}))"
            )
            facets = [
                ("CAMPAIGN", "campaigns=" + _urns("sponsoredCampaign", campaign_ids[i : i + 100]))
                for i in range(0, len(campaign_ids), 100)
            ] + [("ACCOUNT", "accounts=" + _urns("sponsoredAccount", [ACCOUNT]))]
            for pivot, facet in facets:
                path = f"/rest/adAnalytics?q=analytics&pivot={pivot}&timeGranularity=DAILY"
                body = http.get(f"{path}&{span}&{facet}&fields={FIELDS}").json()
                read += len(body["elements"])
            start = end + timedelta(days=1)
    return read


def _urns(kind: str, ids: list[str]) -> str:
    return "List(" + ",".join(quote(f"urn:li:{kind}:{i}", safe="") for i in ids) + ")"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaigns", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="kpi-bench-linkedin-"))
    os.environ["KPI_HOME"] = str(home)
    os.environ.pop("DAGSTER_HOME", None)
    try:
        return measure(args.campaigns, args.runs)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def measure(campaigns: int, runs: int) -> int:
    from kpi_pipelines.automation.partitions import register_partition
    from kpi_pipelines.dagster_instance import open_instance
    from kpi_pipelines.demo import materialize_provider
    from kpi_pipelines.sandbox.kit.server import LoopbackServer
    from kpi_pipelines.sandbox.linkedin import LinkedInSandbox, create_linkedin_app
    from kpi_pipelines.warehouse.control import (
        Connection,
        FxRate,
        Workspace,
        add_connection,
        add_workspace,
        import_fx_rates,
        secret_namespace,
    )
    from kpi_pipelines.warehouse.database import Warehouse
    from kpi_pipelines.warehouse.tenant_data import read_points

    warehouse = Warehouse.connect().ensure_ready()
    instance = open_instance()
    sandbox = LinkedInSandbox(seed=1)
    sandbox.register_client(CLIENT, SECRET)
    account = sandbox.add_account(ACCOUNT, campaigns=campaigns, history_days=150)
    sandbox.add_member("bench", refresh_token=TOKEN, client_id=CLIENT, accounts=[ACCOUNT])
    today = sandbox.clock.now().date()
    first, lookback_first = today - timedelta(days=89), today - timedelta(days=30)
    ids = sorted(c.id for c in account.campaigns())
    import_fx_rates(
        warehouse,
        [
            FxRate(base="USD", quote="EUR", day=today - timedelta(days=n), rate=0.9)
            for n in range(100)
        ],
    )
    figures: dict[str, list[float]] = {"baseline": [], "first": [], "baseline_30": [], "re": []}
    elements = written = 0
    with LoopbackServer(create_linkedin_app(sandbox), dated_by=sandbox.clock) as server:
        os.environ |= {
            "KPI_LINKEDIN_ADS_BASE_URL": server.url("/rest"),
            "KPI_LINKEDIN_TOKEN_URL": server.url("/oauth/v2/accessToken"),
            "KPI_LINKEDIN_CLIENT_ID": CLIENT,
            "KPI_LINKEDIN_CLIENT_SECRET": SECRET,
        }
        for run in range(runs):
            workspace = f"bench-{run}"
            variable = f"{secret_namespace(workspace)}LINKEDIN_TOKEN"
            os.environ[variable] = TOKEN
            add_workspace(
                warehouse, Workspace(id=workspace, name=workspace, reporting_currency="EUR")
            )
            add_connection(
                warehouse,
                Connection(
                    workspace_id=workspace,
                    provider="linkedin_ads",
                    settings={"account_id": ACCOUNT},
                    secret_env={"refresh_token": variable},
                ),
            )
            register_partition(instance, workspace, "linkedin_ads")
            started = time.perf_counter()
            elements = baseline(server.base_url, ids, first, today)
            figures["baseline"].append(time.perf_counter() - started)
            for phase, config in (("first", {"history_days": 90}), ("re", None)):
                started = time.perf_counter()
                result = materialize_provider(
                    warehouse, instance, "linkedin_ads", workspace, config
                )
                figures[phase].append(time.perf_counter() - started)
                if not result.success:
                    print(f"{phase} sync of {workspace} failed", file=sys.stderr)
                    return 1
            started = time.perf_counter()
            baseline(server.base_url, ids, lookback_first, today)
            figures["baseline_30"].append(time.perf_counter() - started)
            points = len(read_points(warehouse, workspace, source="linkedin_ads"))
            if written and points != written:
                print(f"{workspace} stored {points} points, not {written}", file=sys.stderr)
                return 1
            written = points
    median = {phase: statistics.median(seconds) for phase, seconds in figures.items()}
    out = {
        "campaigns": campaigns,
        "days": 90,
        "elements": elements,
        "points": written,
        **{f"{phase}_s": round(s, 3) for phase, s in median.items()},
        "first_x_baseline": round(median["first"] / median["baseline"], 2),
        "re_x_baseline_30": round(median["re"] / median["baseline_30"], 2),
    }
    print(
        f"{campaigns} campaigns x 90 days: {elements:,} elements, {written:,} points\n"
        f"first sync {median['first']:.2f} s = {out['first_x_baseline']}x the baseline"
        f" ({median['baseline']:.2f} s)\n"
        f"re-sync (30 days, nothing written) {median['re']:.2f} s ="
        f" {out['re_x_baseline_30']}x its baseline ({median['baseline_30']:.2f} s)"
    )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What an anonymous request to the webhook receiver costs, by what its workspace holds.

Runs the real receiver (`kpi-pipelines webhooks serve`, its own process, on loopback) over
a warehouse with three endpoints: a workspace that does not exist (the baseline), one with
one Stripe connection, and one with 21 (three with a signing secret of their own, 18 naming
a variable nobody set). Then it sends each, in interleaved rounds, requests anyone can
send: unsigned, and badly signed (a well-formed, current `Stripe-Signature` whose signature
is no one's) with a small and a large body, and times each answer at the client (a new
connection per request, since a refusal closes it), one request per workspace in turn. It prints the median and 90th
percentile per case, each as a ratio to the unknown workspace's in the same run, and what
the receiver logged meanwhile (ERROR lines: one per missing secret and interval is what
the receiver promises, not one per request).

Only ratios within one run are meaningful (the machine is shared). The last line printed is
one JSON object with every figure. Nothing is asserted on time; the script exits 1 if a
request is not refused.

    python benchmarks/bench_webhook_refusals.py
    python benchmarks/bench_webhook_refusals.py --requests 100 --rounds 3   # a quick look
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from kpi_pipelines import settings
from kpi_pipelines.warehouse.control import (
    Connection,
    Workspace,
    add_connection,
    add_workspace,
    remove_workspace,
    secret_namespace,
)
from kpi_pipelines.warehouse.database import Warehouse

CONNECTIONS_MANY = 21
WITH_SECRETS = 3  # of the 21; the others name variables nobody set
LARGE_BODY = 256 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def set_up(warehouse: Warehouse, suffix: str) -> tuple[dict[str, str], dict[str, str]]:
    """The workspaces (case -> id) and the secret variables the receiver needs."""
    ids = {
        "unknown workspace": f"bench-nobody-{suffix}",
        "1 connection": f"bench-one-{suffix}",
        f"{CONNECTIONS_MANY} connections": f"bench-many-{suffix}",
    }
    env: dict[str, str] = {}
    for case, count, with_secret in (
        ("1 connection", 1, 1),
        (f"{CONNECTIONS_MANY} connections", CONNECTIONS_MANY, WITH_SECRETS),
    ):
        workspace_id = ids[case]
        add_workspace(warehouse, Workspace(id=workspace_id, name=case))
        namespace = secret_namespace(workspace_id)
        for n in range(count):
            variable = f"{namespace}STRIPE_WHSEC_{n}"
            if n < with_secret:
                env[variable] = f"whsec_bench_{uuid.uuid4().hex}"
            add_connection(
                warehouse,
                Connection(
                    workspace_id=workspace_id,
                    provider="stripe",
                    name=f"shop-{n}",
                    secret_env={"webhook_secret": variable},
                ),
            )
    return ids, env


def start_receiver(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "kpi_pipelines.cli", "webhooks", "serve", "--port", str(port)],
            env={**os.environ, **env},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the receiver did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.2)


def requests_of(kind: str) -> tuple[bytes, dict[str, str]]:
    """A fresh request of `kind` (its timestamp is now, so it stays current)."""
    event = {"id": "evt_bench", "object": "event", "type": "invoice.paid", "created": 1}
    body = json.dumps({**event, "data": {"object": {}}}).encode()
    if kind.endswith("large body"):
        body = body[:-1] + b', "pad": "' + b"x" * LARGE_BODY + b'"}'
    if kind == "unsigned":
        return body, {"Content-Type": "application/json"}
    return body, {
        "Content-Type": "application/json",
        "Stripe-Signature": f"t={int(time.time())},v1={'0' * 64}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="per case and round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    own_server = not settings.database_url()
    home = None
    if own_server:
        home = Path(tempfile.mkdtemp(prefix="kpi_bench_"))
        atexit.register(shutil.rmtree, home, ignore_errors=True)
        os.environ["KPI_HOME"] = str(home)
    warehouse = Warehouse.connect(home=home).ensure_ready()
    suffix = uuid.uuid4().hex[:8]
    ids, env = set_up(warehouse, suffix)
    log = Path(tempfile.mkdtemp(prefix="kpi_bench_log_")) / "receiver.log"
    atexit.register(shutil.rmtree, log.parent, ignore_errors=True)
    process, base = start_receiver(env, log)
    kinds = ("unsigned", "badly signed", "badly signed, large body")
    print(
        f"webhook refusals: {args.rounds} rounds x {args.requests} requests per case;"
        f" {os.cpu_count()} CPUs; Python {platform.python_version()}",
        flush=True,
    )
    times: dict[tuple[str, str], list[float]] = {(k, c): [] for k in kinds for c in ids}
    failures = 0
    try:
        with httpx.Client(timeout=30) as client:
            for kind in kinds:  # warm up: imports, pools, the receiver's cache
                for workspace_id in ids.values():
                    client.post(f"{base}/stripe/{workspace_id}", content=requests_of(kind)[0])
            logged_before = log.stat().st_size
            for round_ in range(args.rounds):
                order = list(ids.items())
                order = order[round_ % len(order) :] + order[: round_ % len(order)]
                for kind in kinds:
                    for _ in range(args.requests):
                        for case, workspace_id in order:  # side by side: alike disturbed
                            body, headers = requests_of(kind)
                            started = time.perf_counter()
                            response = client.post(
                                f"{base}/stripe/{workspace_id}", content=body, headers=headers
                            )
                            times[(kind, case)].append(time.perf_counter() - started)
                            failures += response.status_code != 400
        time.sleep(0.5)  # the last log lines may trail the answers
        logged = log.read_bytes()[logged_before:].decode("utf-8", "replace").splitlines()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        for workspace_id in ids.values():
            if not own_server and "nobody" not in workspace_id:
                remove_workspace(warehouse, workspace_id)

    figures = []
    print(
        f"{'request':26} {'workspace':16} {'median ms':>10} {'x unknown':>10} {'p90 ms':>8}"
        f" {'x unknown':>10}"
    )
    for kind in kinds:
        base_median = statistics.median(times[(kind, "unknown workspace")])
        base_p90 = statistics.quantiles(times[(kind, "unknown workspace")], n=10)[-1]
        for case in ids:
            samples = times[(kind, case)]
            median, p90 = statistics.median(samples), statistics.quantiles(samples, n=10)[-1]
            figures.append(
                {
                    "request": kind,
                    "workspace": case,
                    "median_ms": round(median * 1000, 3),
                    "x_unknown": round(median / base_median, 2),
                    "p90_ms": round(p90 * 1000, 3),
                    "p90_x_unknown": round(p90 / base_p90, 2),
                }
            )
            print(
                f"{kind:26} {case:16} {median * 1000:10.2f} {median / base_median:10.2f}"
                f" {p90 * 1000:8.2f} {p90 / base_p90:10.2f}"
            )
    requests = sum(len(v) for v in times.values())
    errors = sum(" ERROR " in line or line.startswith("ERROR") for line in logged)
    print(
        f"the receiver logged {len(logged)} lines for {requests} requests,"
        f" {errors} of them ERROR ({CONNECTIONS_MANY - WITH_SECRETS} connections lack a secret)"
    )
    print(
        json.dumps(
            {
                "requests": requests,
                "log_lines": len(logged),
                "error_lines": errors,
                "not_refused": failures,
                "figures": figures,
            }
        )
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

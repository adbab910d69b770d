"""Determinism, the moving clock, on-demand simulation, and scale (CLI server process)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta

import httpx
import psutil

from kpi_pipelines.sandbox.stripe import StripeSandbox, StripeSandboxConfig
from kpi_pipelines.sandbox.stripe.api import Api
from kpi_pipelines.sandbox.stripe.generator import SETTLE
from kpi_pipelines.sandbox.stripe.render import DEFAULT_API_VERSION

LISTS = [
    "customers",
    "subscriptions",
    "invoices",
    "charges",
    "refunds",
    "balance_transactions",
    "events",
]


def dump(sandbox: StripeSandbox, resource: str, limit: int = 100) -> list[dict]:
    status, body = Api(sandbox).handle(
        "GET",
        f"/v1/{resource}",
        [("limit", str(limit))] + ([("status", "all")] if resource == "subscriptions" else []),
        None,
    )
    assert status == 200, body
    return body["data"]


def test_same_seed_same_objects_other_seed_other_objects() -> None:
    a, b, c = (StripeSandbox(seed=s, customers=40) for s in (7, 7, 8))
    for resource in LISTS:
        assert dump(a, resource) == dump(b, resource), resource
        assert dump(a, resource) != dump(c, resource), resource
    assert a.webhook_secret == b.webhook_secret != c.webhook_secret


def test_advance_adds_events_and_changes_states() -> None:
    sandbox = StripeSandbox(seed=3, customers=60)
    before = sandbox.now
    subs_before = {s["id"]: s for s in _all(sandbox, "subscriptions")}
    invoices_before = {i["id"] for i in _all(sandbox, "invoices")}
    assert sandbox.events_since(before + timedelta(seconds=1)) == []
    sandbox.advance(timedelta(days=20))
    assert sandbox.now == before + timedelta(days=20)
    new_events = sandbox.events_since(before + timedelta(seconds=1))
    assert len(new_events) > 50
    assert {e["type"] for e in new_events} >= {
        "invoice.created",
        "invoice.paid",
        "charge.succeeded",
    }
    subs_after = {s["id"]: s for s in _all(sandbox, "subscriptions")}
    assert set(subs_before) <= set(subs_after)
    changed = [sid for sid, s in subs_before.items() if subs_after[sid] != s]
    assert changed, "renewals, cancellations and upgrades change subscriptions"
    assert invoices_before < {i["id"] for i in _all(sandbox, "invoices")}
    # New customers keep arriving after the first year.
    assert sandbox.customer_count > 60
    # An advanced sandbox is the sandbox built at the later clock.
    fresh = StripeSandbox(StripeSandboxConfig(seed=3, customers=60, now=sandbox.now))
    for resource in LISTS:
        assert dump(sandbox, resource) == dump(fresh, resource), resource


def _all(sandbox: StripeSandbox, resource: str) -> list[dict]:
    api, out, cursor = Api(sandbox), [], []
    extra = [("status", "all")] if resource == "subscriptions" else []
    while True:
        status, body = api.handle(
            "GET", f"/v1/{resource}", [("limit", "100"), *extra, *cursor], None
        )
        assert status == 200
        out += body["data"]
        if not body["has_more"]:
            return out
        cursor = [("starting_after", body["data"][-1]["id"])]


def test_shorter_simulations_render_settled_objects_identically() -> None:
    """Lists simulate a customer only up to an object's creation + SETTLE (causality)."""
    sandbox = StripeSandbox(seed=9, customers=80)
    gen, r, now = sandbox.generator, sandbox.renderer, sandbox.now_ts
    rng = random.Random(4)
    renders = {
        "invoices": lambda cs, o: r.invoice(cs, o, now, DEFAULT_API_VERSION),
        "charges": lambda cs, o: r.charge(cs, o, now),
        "refunds": lambda cs, o: r.refund(cs, o, now),
        "bts": lambda cs, o: r.balance_transaction(cs, o, now),
    }
    checked = 0
    for ci in range(80):
        full = gen.simulate(ci, events=False)
        with_events = gen.simulate(ci)
        for name, render in renders.items():
            for obj in getattr(full, name):
                assert render(full, obj) == render(with_events, getattr(with_events, name)[obj.li])
        horizon = rng.randrange(sandbox.config.start_ts, now)
        part = gen.simulate(ci, events=False, horizon=horizon)
        for name, render in renders.items():
            for obj in getattr(full, name):
                if obj.created + SETTLE <= horizon:
                    assert render(full, obj) == render(part, getattr(part, name)[obj.li])
                    checked += 1
    assert checked > 300


def test_cli_serves_a_200k_object_sandbox_fast_and_small() -> None:
    env = dict(os.environ)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kpi_pipelines.sandbox.stripe",
            "serve",
            "--port",
            "0",
            "--seed",
            "1",
            "--objects",
            "200000",
            "--api-key",
            "sk_test_scale",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL),
    )
    try:
        t0 = time.perf_counter()
        url = proc.stdout.readline().strip()
        info = _first_json_line(proc)
        startup = time.perf_counter() - t0
        assert url.startswith("http://127.0.0.1:")
        counts = info["counts"]
        total = sum(
            counts[k]
            for k in (
                "customers",
                "subscriptions",
                "invoices",
                "charges",
                "refunds",
                "balance_transactions",
            )
        )
        assert 170_000 < total < 230_000
        client = httpx.Client(
            base_url=url, headers={"Authorization": "Bearer sk_test_scale"}, timeout=60
        )
        timings = {}
        for resource in ("invoices", "charges", "customers", "balance_transactions"):
            t = time.perf_counter()
            first = client.get(f"/v1/{resource}", params={"limit": 100}).json()
            timings[f"{resource} first page"] = time.perf_counter() - t
            assert len(first["data"]) == 100 and first["has_more"]
            oldest = client.get(
                f"/v1/{resource}", params={"limit": 2, "created[lte]": info_start(info)}
            ).json()["data"]
            t = time.perf_counter()
            last = client.get(
                f"/v1/{resource}", params={"limit": 100, "starting_after": oldest[0]["id"]}
            ).json()
            timings[f"{resource} last page"] = time.perf_counter() - t
            assert last["has_more"] is False and len(last["data"]) <= 100
        t = time.perf_counter()
        pages = 0
        params = {"limit": 100}
        while pages < 20:
            body = client.get("/v1/invoices", params=params).json()
            params["starting_after"] = body["data"][-1]["id"]
            pages += 1
        timings["invoices pages/s (20 pages)"] = pages / (time.perf_counter() - t)
        rss = psutil.Process(proc.pid).memory_info().rss / 2**20
        print(
            f"\n200k sandbox: {total} objects, startup {startup:.1f}s, "
            f"index {info['index_bytes'] / 2**20:.1f} MiB, server RSS {rss:.0f} MiB"
        )
        for name, value in timings.items():
            print(f"  {name}: {value:.3f}")
        assert rss < 400, "the server holds a compact index, not the objects"
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(10)
    assert proc.returncode is not None


def _first_json_line(proc: subprocess.Popen) -> dict:
    """The server's startup summary (skipping anything else written to stderr first)."""
    for _ in range(50):
        line = proc.stderr.readline()
        if line.startswith("{"):
            return json.loads(line)
    raise AssertionError("no startup summary on stderr")


def info_start(info: dict) -> int:
    return 1_735_689_600 + 3 * 86_400  # 2025-01-04: only the oldest objects


def test_objects_rendered_from_the_index_equal_the_simulated_ones() -> None:
    """Customers, charges and balance transactions are listed from the index and the
    customer's header alone; expanding anything takes the simulation path."""
    sandbox = StripeSandbox(seed=2, customers=120)
    expand = {
        "customers": "data.test_clock",
        "charges": "data.refunds",
        "balance_transactions": "data.source",
    }
    for resource, path in expand.items():
        fast = _all(sandbox, resource)
        api, slow, cursor = Api(sandbox), [], []
        while True:
            query = [("limit", "100"), ("expand[]", path), *cursor]
            status, body = api.handle("GET", f"/v1/{resource}", query, None)
            assert status == 200
            slow += body["data"]
            if not body["has_more"]:
                break
            cursor = [("starting_after", body["data"][-1]["id"])]
        assert len(fast) == len(slow) >= 120
        for indexed, simulated in zip(fast, slow, strict=True):
            if resource == "balance_transactions":
                simulated = dict(simulated, source=simulated["source"]["id"])
            assert indexed == simulated, resource

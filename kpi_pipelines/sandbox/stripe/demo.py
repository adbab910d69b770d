"""Demo data for Stripe: each demo workspace is its own simulated Stripe account, all of them
served on one loopback host (the key a request carries picks the account, as on Stripe).

The accounts follow the real clock from a fixed anchor kept under the simulator's folder, so
the demo and every later `kpi-pipelines dev` serve the same business (same ids, same
history) at whatever time it is; under `dev` each account's events are delivered to the
webhook receiver as they happen, signed with the account's endpoint secret.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kpi_pipelines.demo import DemoSimulator
from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.sandbox.stripe import StripeSandbox, StripeSandboxConfig, create_app
from kpi_pipelines.sandbox.stripe.ids import stable_b62
from kpi_pipelines.sandbox.stripe.webhooks import deliver
from kpi_pipelines.warehouse.control import (
    Connection,
    FxRate,
    Workspace,
    add_connection,
    import_fx_rates,
    secret_namespace,
)
from kpi_pipelines.warehouse.database import Warehouse

logger = logging.getLogger(__name__)

# Stripe retries a webhook for up to three days: older events are never delivered.
WEBHOOK_RETRY_SECONDS = 3 * 24 * 3600
HISTORY = timedelta(days=365)
# From the anchor on, one customer of each account signs in every few minutes (each a
# customer.updated event: see StripeSandboxConfig.sign_ins_from), so under `dev` a
# webhook-triggered run follows within minutes; the accounts take their turns apart.
SIGN_IN_SECONDS = 180

_lock = threading.Lock()
_running: StripeDemo | None = None


def _variables(workspace_id: str) -> tuple[str, str]:
    namespace = secret_namespace(workspace_id)
    return f"{namespace}STRIPE_KEY", f"{namespace}STRIPE_WHSEC"


def account(workspace_id: str, anchor: datetime, now: datetime) -> StripeSandbox:
    """The demo workspace's account: a year of business before `anchor`, simulated to `now`."""
    seed = zlib.crc32(workspace_id.encode())
    return StripeSandbox(
        StripeSandboxConfig(
            seed=seed,
            customers=150,
            start=anchor - HISTORY,
            now=now,
            sign_ins_from=anchor + timedelta(seconds=seed % SIGN_IN_SECONDS),
            sign_in_seconds=SIGN_IN_SECONDS,
        ),
        api_key="sk_test_demo" + stable_b62(f"demo-key:{workspace_id}", 24),
    )


class StripeDemo:
    """The demo accounts, served on loopback, following the real clock."""

    def __init__(self, workspaces: Sequence[Workspace], folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._state_path = folder / "state.json"
        state = self._load()
        now = datetime.now(UTC).replace(microsecond=0)
        anchor = datetime.fromisoformat(
            state.setdefault("anchor", now.replace(hour=0, minute=0, second=0).isoformat())
        )
        self.accounts = {w.id: account(w.id, anchor, now) for w in workspaces}
        # Until a receiver is there, what happened is what the runs read from the API.
        self._delivered: dict[str, int] = state.setdefault("delivered_through", {})
        for workspace_id in self.accounts:
            self._delivered.setdefault(workspace_id, int(now.timestamp()))
        self._state = state
        self._save()
        self.server = LoopbackServer(create_app(self.accounts.values())).start()

    def env(self) -> dict[str, str]:
        env = {"KPI_STRIPE_BASE_URL": self.server.base_url}
        for workspace_id, sandbox in self.accounts.items():
            key, whsec = _variables(workspace_id)
            env[key], env[whsec] = sandbox.api_key, sandbox.webhook_secret
        return env

    def follow_clock(self, webhook_base_url: str | None) -> int:
        now = int(time.time())
        delivered = 0
        for workspace_id, sandbox in self.accounts.items():
            if now > sandbox.now_ts:
                sandbox.advance(now)
            if webhook_base_url is None:
                continue
            since = max(self._delivered[workspace_id] + 1, now - WEBHOOK_RETRY_SECONDS)
            events = sandbox.events_since(since)
            if events:
                url = f"{webhook_base_url}/stripe/{workspace_id}"
                refused = [s for s in deliver(events, url, sandbox.webhook_secret) if s != 200]
                if refused:  # the receiver keeps nothing of a refused event: try them again
                    logger.warning("%s: the receiver refused %d event(s)", url, len(refused))
                    continue
                delivered += len(events)
            self._delivered[workspace_id] = sandbox.now_ts
        self._save()
        return delivered

    def stop(self) -> None:
        self.server.stop()

    def _load(self) -> dict[str, Any]:
        if self._state_path.exists():
            return json.loads(self._state_path.read_text(encoding="utf-8"))
        return {}

    def _save(self) -> None:
        self._state_path.write_text(json.dumps(self._state, indent=2), encoding="utf-8")


def start_simulator(workspaces: Sequence[Workspace], folder: Path) -> DemoSimulator:
    global _running
    with _lock:
        _running = StripeDemo(workspaces, folder)
        return _running


def prepare(warehouse: Warehouse, workspace: Workspace, folder: Path) -> dict[str, Any]:
    """Connect the workspace to its account (its key and webhook secret named, never stored)
    and import the exchange rates its currencies need."""
    if _running is None:
        raise RuntimeError("the Stripe demo simulator is not started (start_demo_stack)")
    sandbox = _running.accounts[workspace.id]
    key, whsec = _variables(workspace.id)
    add_connection(
        warehouse,
        Connection(
            workspace_id=workspace.id,
            provider="stripe",
            secret_env={"api_key": key, "webhook_secret": whsec},
        ),
    )
    quote = workspace.reporting_currency
    first = sandbox.start.date() - timedelta(days=2)
    last = sandbox.now.date() + timedelta(days=2)
    import_fx_rates(
        warehouse,
        [
            FxRate(base=base.upper(), quote=q.upper(), day=day, rate=rate)
            for day, base, q, rate in sandbox.truth.fx_rates(first, last)
            if q.upper() == quote and base.upper() != quote
        ],
    )
    return {}

"""What demo simulators share (kpi_pipelines/demo.py's DemoSimulator contract): one running
instance per demo module, and a simulator served on loopback that follows the real clock.

    class MetaDemo(LoopbackDemo):
        def __init__(self, workspaces):
            self.sandbox = MetaSandbox(clock=SimClock(datetime.now(UTC), realtime=True))
            ...                                   # one account per workspace
            super().__init__(create_meta_app(self.sandbox))
        def env(self): return {"KPI_META_BASE_URL": self.server.base_url, ...}

    _demo: DemoSlot[MetaDemo] = DemoSlot("Meta")

    start_simulator = _demo.starter(MetaDemo)   # the demo contract's start_simulator
    def prepare(warehouse, workspace, folder):
        _demo.connect(warehouse, workspace, "meta_ads", settings={...}, secret_env={...})
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

from starlette.types import ASGIApp

from kpi_pipelines.sandbox.kit.clock import SimClock
from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.warehouse.control import Connection, Workspace, add_connection
from kpi_pipelines.warehouse.database import Warehouse

D = TypeVar("D")


class DemoSlot(Generic[D]):
    """The one running demo simulator of a module: `start` replaces it, `get` reads it."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self._lock = threading.Lock()
        self._running: D | None = None

    def start(self, make: Callable[[], D]) -> D:
        with self._lock:
            self._running = make()
            return self._running

    def starter(self, make: Callable[[Sequence[Workspace]], D]) -> Callable[..., D]:
        """The demo module's `start_simulator(workspaces, folder)` for a demo made from the
        workspaces alone (one that keeps nothing in `folder`)."""

        def start_simulator(workspaces: Sequence[Workspace], folder: Path) -> D:
            return self.start(lambda: make(workspaces))

        return start_simulator

    def get(self) -> D:
        running = self._running
        if running is None:
            raise RuntimeError(
                f"the {self.provider} demo simulator is not started (start_demo_stack)"
            )
        return running

    def connect(
        self,
        warehouse: Warehouse,
        workspace: Workspace,
        provider: str,
        *,
        settings: Mapping[str, Any],
        secret_env: Mapping[str, str],
    ) -> D:
        """The running demo, once `workspace` has a connection of `provider` to it: its
        `settings`, and the variables it reads its secrets from (their values are in the
        demo's env(), never stored)."""
        running = self.get()
        connection = Connection(
            workspace_id=workspace.id,
            provider=provider,
            settings=dict(settings),
            secret_env=dict(secret_env),
        )
        add_connection(warehouse, connection)
        return running


class LoopbackDemo:
    """A demo simulator serving `app` on loopback; subclasses say `env()`. Its sandbox's clock
    runs with real time, so it has nothing to catch up and sends no webhooks (`dated_by`:
    its answers' Date header is that clock's, see LoopbackServer)."""

    def __init__(self, app: ASGIApp, *, dated_by: SimClock | None = None) -> None:
        self.server = LoopbackServer(app, dated_by=dated_by).start()

    def env(self) -> dict[str, str]:
        return {}

    def follow_clock(self, webhook_base_url: str | None) -> int:
        return 0

    def stop(self) -> None:
        self.server.stop()

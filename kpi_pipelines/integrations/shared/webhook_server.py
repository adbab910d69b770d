"""The webhook receiver's HTTP server: every provider's receiver routes (its spec's
`webhooks`), served by uvicorn with the time bounds it lacks.

uvicorn bounds how long an idle keep-alive connection lives, but not how long a client may
take to send its request line and headers, nor its body: a client that sends half a request
and waits holds a connection (and with the body, a request task) for ever. `DeadlineH11Protocol`
adds both deadlines to uvicorn's h11 protocol, passed as uvicorn's documented `http=` option
(a protocol class is accepted). Header size is bounded by h11 (16 KiB), body size by the app.

`ExpiringCache` and `Throttle` keep what an anonymous request costs independent of what a
workspace holds: a receiver reads an endpoint's secrets at most once per interval, and logs
a problem with one at most once per interval, however many requests arrive.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

import h11
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.h11_impl import H11Protocol

from kpi_pipelines import settings
from kpi_pipelines.integrations.shared.spec import ProviderSpec, discover, resolve
from kpi_pipelines.warehouse.database import Warehouse

logger = logging.getLogger("kpi_pipelines.webhooks")

# Stripe opens a connection per delivery; an idle one need not wait long for another.
KEEP_ALIVE_SECONDS = 5
# h11's own default, stated: request line plus headers larger than this get a 400.
MAX_HEADER_BYTES = 16 * 1024
# Keys an ExpiringCache or a Throttle remembers at most (the least recently used go first):
# requests naming ever new workspaces cannot grow them.
MAX_REMEMBERED_KEYS = 10_000

V = TypeVar("V")


class _Recent(Generic[V]):
    """Values remembered with when they were kept, for `period` seconds of `clock`; at most
    `max_keys` of them (the least recently used are forgotten first). Thread-safe."""

    def __init__(
        self,
        period: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_REMEMBERED_KEYS,
    ) -> None:
        self.period = period
        self.clock = clock
        self.max_keys = max_keys
        self._kept: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, key: Hashable, now: float) -> tuple[float, V] | None:
        """What `key` holds if it was kept less than `period` ago (call with the lock)."""
        kept = self._kept.get(key)
        if kept is None or now - kept[0] >= self.period:
            return None
        self._kept.move_to_end(key)
        return kept

    def _keep(self, key: Hashable, now: float, value: V) -> None:
        """Remember `value` for `key` from `now` (call with the lock)."""
        self._kept[key] = (now, value)
        self._kept.move_to_end(key)
        while len(self._kept) > self.max_keys:
            self._kept.popitem(last=False)


class ExpiringCache(_Recent[V]):
    """A value per key, computed again once it is `period` seconds old (two threads may
    compute one key at once, which costs only the work twice)."""

    def get(self, key: Hashable, compute: Callable[[], V]) -> V:
        now = self.clock()
        with self._lock:
            kept = self._recent(key, now)
        if kept is not None:
            return kept[1]
        value = compute()
        with self._lock:
            self._keep(key, now, value)
        return value


class Throttle(_Recent[None]):
    """True for a key at most once per `period` seconds: one log line per connection and
    interval, say, however often the thing it reports happens."""

    def __call__(self, key: Hashable) -> bool:
        now = self.clock()
        with self._lock:
            if self._recent(key, now) is not None:
                return False
            self._keep(key, now, None)
            return True


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose client does not send its request
    headers within `header_timeout` seconds of the server being ready for them (accepted,
    or the previous response sent), or its body within `body_timeout` seconds of its headers.

    A request waiting for its body then sees the client leave (`http.disconnect`)."""

    header_timeout: float = 5.0
    body_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._awaiting: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch()

    def handle_events(self) -> None:
        super().handle_events()
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    def _watch(self) -> None:
        """Keep one deadline running for what the client owes now (h11 says which part)."""
        state = self.conn.their_state
        awaiting = "headers" if state is h11.IDLE else "body" if state is h11.SEND_BODY else None
        if awaiting == self._awaiting:
            return
        self._cancel()
        self._awaiting = awaiting
        if awaiting is not None:
            timeout = self.header_timeout if awaiting == "headers" else self.body_timeout
            self._deadline = self.loop.call_later(timeout, self._expire, awaiting, timeout)

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._awaiting = None

    def _expire(self, awaiting: str, timeout: float) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        client = "{}:{}".format(*self.client) if self.client else "a client"
        logger.warning(
            "closing the connection of %s: request %s not received within %g s",
            client,
            awaiting,
            timeout,
        )
        self.transport.close()


def receiver_app(routes: list[BaseRoute]) -> Starlette:
    """Receiver routes, with GET /health."""

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[*routes, Route("/health", health, methods=["GET"])])


def providers_app(warehouse: Warehouse, specs: list[ProviderSpec] | None = None) -> Starlette:
    """Every provider's receiver routes (the providers whose spec names `webhooks`)."""
    routes: list[BaseRoute] = []
    for spec in specs if specs is not None else discover():
        if spec.webhooks:
            routes += resolve(spec.webhooks)(warehouse, max_bytes=settings.webhook_max_bytes())
    return receiver_app(routes)


def build_server(warehouse: Warehouse, host: str = "127.0.0.1", port: int = 8787) -> uvicorn.Server:
    """The receiver's server, bounded by the KPI_WEBHOOK_* settings (see settings.py)."""
    protocol = type(
        "WebhookH11Protocol",
        (DeadlineH11Protocol,),
        {
            "header_timeout": settings.webhook_header_timeout_seconds(),
            "body_timeout": settings.webhook_read_timeout_seconds(),
        },
    )
    config = uvicorn.Config(
        providers_app(warehouse),
        host=host,
        port=port,
        http=protocol,
        # No WebSocket upgrade: it would hand the connection to a protocol without our bounds.
        ws="none",
        lifespan="off",
        limit_concurrency=settings.webhook_max_connections(),
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        server_header=False,
        log_config=_log_config(),
        log_level="info",
    )
    return uvicorn.Server(config)


def _log_config() -> dict[str, Any]:
    """uvicorn's logging, with the receiver's own log (refusals and their reasons) beside it."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"][logger.name] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def serve(warehouse: Warehouse, host: str, port: int) -> None:
    """Serve webhooks until interrupted."""
    build_server(warehouse, host, port).run()

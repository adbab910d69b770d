"""Serve an ASGI app (a provider simulator) on 127.0.0.1 from a background thread."""

from __future__ import annotations

import argparse
import contextlib
import email.utils
import socket
import threading
import time
from types import TracebackType
from typing import Self

import uvicorn
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kpi_pipelines.sandbox.kit.clock import SimClock

HOST = "127.0.0.1"


class LoopbackServer:
    """Run `app` with uvicorn on 127.0.0.1 until stopped; use as a context manager.

    The port is bound before the thread starts (port 0 picks a free one), so `base_url` is
    known at once and there is no race for the port with other servers. With `dated_by`,
    every answer's `Date` header is that simulated clock's (a client that reads the
    provider's time sees the simulation's, not the machine's).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        port: int = 0,
        startup_timeout: float = 10.0,
        shutdown_timeout: float = 5.0,
        dated_by: SimClock | None = None,
    ) -> None:
        self.app = app if dated_by is None else _SimulatedDate(app, dated_by)
        self._dated = dated_by is not None
        self._requested_port = port
        self._startup_timeout = startup_timeout
        self._shutdown_timeout = shutdown_timeout
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The bound port (only while running)."""
        if self._port is None:
            raise RuntimeError("LoopbackServer is not running; call start() or use `with`")
        return self._port

    @property
    def base_url(self) -> str:
        """e.g. "http://127.0.0.1:54321" (no trailing slash)."""
        return f"http://{HOST}:{self.port}"

    def url(self, path: str = "") -> str:
        """An absolute URL on this server for `path`."""
        return f"{self.base_url}/{path.lstrip('/')}" if path else self.base_url

    @property
    def running(self) -> bool:
        """Whether the server thread is alive and accepting connections."""
        return bool(
            self._server and self._server.started and self._thread and self._thread.is_alive()
        )

    def start(self) -> Self:
        """Bind, start the server thread and wait until it accepts connections."""
        if self._thread is not None:
            raise RuntimeError("LoopbackServer is already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((HOST, self._requested_port))
        except OSError:
            sock.close()
            raise
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            host=HOST,
            port=port,
            log_level="warning",
            access_log=False,
            # None: leave the process's logging configuration alone (no dictConfig).
            log_config=None,
            timeout_graceful_shutdown=self._shutdown_timeout,
            date_header=not self._dated,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=_serve, args=(server, sock), name=f"loopback-{port}", daemon=True
        )
        self._socket, self._server, self._thread, self._port = sock, server, thread, port
        thread.start()
        deadline = time.monotonic() + self._startup_timeout
        while not server.started:
            if not thread.is_alive():
                self._reset()
                raise RuntimeError(
                    "LoopbackServer failed to start the app (see the uvicorn.error log)"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"LoopbackServer did not start within {self._startup_timeout} s")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Ask uvicorn to exit, wait for the thread, and release the port. Idempotent."""
        server, thread = self._server, self._thread
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(self._shutdown_timeout + 1.0)
            if thread.is_alive():
                server.force_exit = True
                thread.join(self._shutdown_timeout)
        self._reset()

    def _reset(self) -> None:
        if self._socket is not None:
            self._socket.close()
        self._socket = self._server = self._thread = self._port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _SimulatedDate:
    """Sets each answer's Date header from the simulated clock."""

    def __init__(self, app: ASGIApp, clock: SimClock) -> None:
        self.app, self.clock = app, clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def dated(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["date"] = email.utils.format_datetime(self.clock.now(), usegmt=True)
            await send(message)

        await self.app(scope, receive, dated if scope["type"] == "http" else send)


def _serve(server: uvicorn.Server, sock: socket.socket) -> None:
    # uvicorn raises SystemExit when the app's lifespan startup fails; start() reports it.
    with contextlib.suppress(SystemExit):
        server.run(sockets=[sock])


def serve_command(
    prog: str, help: str, *, port: int
) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """`python -m <simulator> serve --host --port --seed`: the command line every simulator's
    `__main__` starts from. Returns the parser and its `serve` subcommand, for the
    simulator's own options."""
    parser = argparse.ArgumentParser(prog=prog)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help=help)
    serve.add_argument("--host", default=HOST)
    serve.add_argument("--port", type=int, default=port, help="0: any free port")
    serve.add_argument("--seed", type=int, default=0)
    return parser, serve


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound and already listening: connections wait in its backlog from now on,
    so the URL a simulator prints is usable before its server loop starts."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock

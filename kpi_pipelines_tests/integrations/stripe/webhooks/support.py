"""Helpers for the webhook receiver's tests: signed events, the inbox, and the real
`webhooks serve` command on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from kpi_pipelines.sandbox.stripe import sign
from kpi_pipelines.warehouse.control import Connection, add_connection, record_proved_account
from kpi_pipelines.warehouse.database import Warehouse

SECRET_A = "whsec_test_secret_for_workspace_a"
SECRET_B = "whsec_test_secret_for_workspace_b"
SECRETS = {
    "WS_WS_A__STRIPE_WHSEC": SECRET_A,
    "WS_WS_B__STRIPE_WHSEC": SECRET_B,
    # ws-c (for the tests that add it) signs like ws-a: two claims of one account both verify.
    "WS_WS_C__STRIPE_WHSEC": SECRET_A,
}
# The live server's bounds, small so that the tests of them are quick.
HEADER_TIMEOUT = 1.0
READ_TIMEOUT = 1.5


def event(event_id: str, account: str | None = None, **extra: object) -> dict:
    body: dict = {
        "id": event_id,
        "object": "event",
        "type": "customer.subscription.updated",
        "created": int(time.time()),
        "data": {"object": {"id": "sub_1", "object": "subscription"}},
        **extra,
    }
    if account:
        body["account"] = account
    return body


def signed(body: bytes | dict, secret: str, *, timestamp: int | None = None) -> tuple[bytes, dict]:
    """A body (an event is serialized) and the headers Stripe sends with it."""
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    t = int(time.time()) if timestamp is None else timestamp
    return payload, {
        "Stripe-Signature": sign(payload, secret, t),
        "Content-Type": "application/json",
    }


def inbox(warehouse: Warehouse) -> list[tuple]:
    with warehouse.control() as db:
        return [
            tuple(r)
            for r in db.execute(
                sa.text(
                    "SELECT event_id, workspace_id, processed_at IS NOT NULL FROM webhook_inbox"
                    " ORDER BY id"
                )
            )
        ]


def stripe_connection(
    warehouse: Warehouse,
    workspace_id: str,
    variable: str,
    account: str | None,
    name: str = "default",
    *,
    proved: bool = False,
) -> Connection:
    """A Stripe connection signing with the secret in `variable`; `proved`: its account_id
    proved, as its sync records it when Stripe says the connection's key belongs to it."""
    saved = add_connection(
        warehouse,
        Connection(
            workspace_id=workspace_id,
            provider="stripe",
            name=name,
            settings={"account_id": account} if account else {},
            secret_env={"webhook_secret": variable},
        ),
    )
    if proved:
        assert saved.id is not None and account is not None
        record_proved_account(warehouse, saved.id, account)
    return saved


class Clock:
    """Monotonic seconds that move only when a test moves them (the receiver's `clock`)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Receiver:
    """`kpi-pipelines webhooks serve` running as its own process, its log in a file."""

    base_url: str
    port: int
    log: Path

    def log_since(self, offset: int) -> str:
        return self.log.read_bytes()[offset:].decode("utf-8", "replace")

    def log_size(self) -> int:
        return self.log.stat().st_size


@contextlib.contextmanager
def start_receiver(env: dict[str, str], log: Path) -> Iterator[Receiver]:
    """Run the receiver command (with `env`, its output in `log`) until the block ends."""
    port = free_port()
    with log.open("wb") as output:
        # `python -m` runs the same command as the `kpi-pipelines` script; a new session with
        # default SIGTERM, since background processes here inherit an ignored one.
        process = subprocess.Popen(
            [sys.executable, "-m", "kpi_pipelines.cli", "webhooks", "serve", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL),
        )
    receiver = Receiver(f"http://127.0.0.1:{port}", port, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{receiver.base_url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"webhook receiver did not start:\n{receiver.log_since(0)}")
            time.sleep(0.2)
        yield receiver
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)

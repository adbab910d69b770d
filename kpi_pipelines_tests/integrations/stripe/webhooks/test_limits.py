"""The receiver's bounds, proven against the real `webhooks serve` process with real sockets:
body size (what a client manages to send before the server answers or closes) and time
(half-sent headers, trickled bodies), while ordinary deliveries keep working."""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from kpi_pipelines import settings
from kpi_pipelines.integrations.shared.webhook_server import DeadlineH11Protocol, build_server
from kpi_pipelines_tests.integrations.stripe.webhooks.support import (
    HEADER_TIMEOUT,
    READ_TIMEOUT,
    SECRET_A,
    SECRETS,
    event,
    inbox,
    signed,
    start_receiver,
)

MiB = 1024 * 1024
CAP = MiB  # the default KPI_WEBHOOK_MAX_BYTES, which the live receiver runs with
FLOOD = 32 * MiB
CHUNK = 16 * 1024
# Kernel buffers between the client's send() and the server's read(), on loopback.
BUFFER_SLACK = MiB
# Scheduling slack on this shared 2-core machine when timing a deadline.
TIME_SLACK = 2.0


def connect(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # A small send buffer, so that what send() accepted is close to what the server took.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    sock.connect(("127.0.0.1", port))
    return sock


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """What the server sends until it closes; fails if it keeps the connection open."""
    sock.settimeout(timeout)
    received = bytearray()
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for {timeout} s")
    return bytes(received)


def flood(port: int, head: bytes, chunks: Iterator[bytes]) -> tuple[int, bytes]:
    """Send `head`, then `chunks` until the server answers or closes the connection.

    Returns the bytes of `chunks` the kernel accepted from us, and the server's answer."""
    sock = connect(port)
    sent = 0
    try:
        sock.sendall(head)
        sock.settimeout(10)
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                if select.select([sock], [], [], 0)[0]:
                    return sent, read_until_closed(sock, 10)  # an answer, or the close
                try:
                    n = sock.send(view)
                except (BrokenPipeError, ConnectionResetError):
                    return sent, b""
                except TimeoutError:
                    pytest.fail("the server neither read the body nor answered nor closed")
                sent += n
                view = view[n:]
        return sent, read_until_closed(sock, 10)
    finally:
        sock.close()


def raw(size: int) -> Iterator[bytes]:
    block = b"x" * CHUNK
    for _ in range(size // CHUNK):
        yield block


def chunked(size: int) -> Iterator[bytes]:
    frame = b"%x\r\n" % CHUNK + b"x" * CHUNK + b"\r\n"
    for _ in range(size // CHUNK):
        yield frame
    yield b"0\r\n\r\n"


def head(path: str, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode()


SIGNATURE = f"Stripe-Signature: t={int(time.time())},v1={'0' * 64}"


@pytest.mark.parametrize(
    ("path", "headers", "body"),
    [
        pytest.param("/stripe/ws-a", [f"Content-Length: {FLOOD}"], raw, id="declared too long"),
        pytest.param("/stripe/ws-a", ["Transfer-Encoding: chunked"], chunked, id="chunked"),
        pytest.param("/stripe", ["Transfer-Encoding: chunked"], chunked, id="chunked, Connect"),
        pytest.param(
            "/stripe/nobody", ["Transfer-Encoding: chunked"], chunked, id="chunked, unknown"
        ),
        pytest.param(
            "/stripe/ws-a",
            ["Content-Length: 100", "Transfer-Encoding: chunked"],
            chunked,
            id="a small Content-Length over a chunked body",
        ),
        pytest.param(
            "/stripe/ws-a", ["Content-Length: 100"], raw, id="a body longer than its Content-Length"
        ),
    ],
)
def test_a_body_over_the_cap_is_refused_having_read_about_the_cap(
    live_receiver, connections, warehouse, path, headers, body
) -> None:
    sent, answer = flood(live_receiver.port, head(path, SIGNATURE, *headers), body(FLOOD))
    assert sent < CAP + BUFFER_SLACK, f"the server took {sent / MiB:.1f} MiB"
    # The answer, when the client got to read it before the close, is a refusal.
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400 ")
    assert inbox(warehouse) == []
    assert httpx.get(f"{live_receiver.base_url}/health").status_code == 200


def test_a_body_under_the_cap_is_read_whole(live_receiver, connections, warehouse) -> None:
    padding = "x" * (CAP - 4096)
    body, headers = signed(event("evt_big", note=padding), SECRET_A)
    response = httpx.post(f"{live_receiver.base_url}/stripe/ws-a", content=body, headers=headers)
    assert response.status_code == 200
    assert inbox(warehouse) == [("evt_big", "ws-a", False)]


def deliver_one(base_url: str, event_id: str) -> int:
    body, headers = signed(event(event_id), SECRET_A)
    return httpx.post(f"{base_url}/stripe/ws-a", content=body, headers=headers).status_code


def test_hundreds_of_half_sent_requests_are_closed_within_the_header_timeout(
    live_receiver, connections, warehouse
) -> None:
    sockets = []  # each with the time it connected: its deadline counts from then
    for _ in range(300):
        sock = connect(live_receiver.port)
        sockets.append((sock, time.monotonic()))
        sock.sendall(b"POST /stripe/ws-a HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
    try:
        for sock, connected in sockets:
            remaining = connected + HEADER_TIMEOUT + TIME_SLACK - time.monotonic()
            read_until_closed(sock, max(remaining, 0.01))
    finally:
        for sock, _ in sockets:
            sock.close()
    assert deliver_one(live_receiver.base_url, "evt_after") == 200
    assert inbox(warehouse) == [("evt_after", "ws-a", False)]


def test_headers_dribbled_past_the_timeout_are_cut_off(live_receiver, connections) -> None:
    request = head("/stripe/ws-a", SIGNATURE, "Content-Length: 2")
    with connect(live_receiver.port) as sock:
        started = time.monotonic()
        try:
            for byte in request:
                sock.sendall(bytes([byte]))
                time.sleep(0.05)  # 100-odd bytes: several header timeouts in all
        except (BrokenPipeError, ConnectionResetError):
            pass
        read_until_closed(sock, TIME_SLACK)
        assert time.monotonic() - started < HEADER_TIMEOUT + TIME_SLACK


def test_a_kept_alive_connection_must_send_its_next_headers_in_time(
    live_receiver, connections, warehouse
) -> None:
    body, headers = signed(event("evt_first"), SECRET_A)
    first = head(
        "/stripe/ws-a",
        *(f"{name}: {value}" for name, value in headers.items()),
        f"Content-Length: {len(body)}",
    )
    with connect(live_receiver.port) as sock:
        sock.sendall(first + body)
        sock.settimeout(10)
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 ")
        started = time.monotonic()
        sock.sendall(b"POST /stripe/ws-a HTTP/1.1\r\nHost: 127")
        read_until_closed(sock, HEADER_TIMEOUT + TIME_SLACK)
        assert time.monotonic() - started < HEADER_TIMEOUT + TIME_SLACK
    assert inbox(warehouse) == [("evt_first", "ws-a", False)]


def test_a_trickled_body_is_refused_while_other_deliveries_go_through(
    live_receiver, connections, warehouse
) -> None:
    outcome: dict[str, object] = {}

    def trickle() -> None:
        with connect(live_receiver.port) as sock:
            sock.sendall(head("/stripe/ws-a", SIGNATURE, "Content-Length: 1000"))
            started = time.monotonic()
            answer = b""
            try:
                for _ in range(1000):
                    if select.select([sock], [], [], 0)[0]:
                        break
                    sock.sendall(b"{")
                    time.sleep(0.1)
                answer = read_until_closed(sock, TIME_SLACK)
            except (BrokenPipeError, ConnectionResetError):
                pass
            outcome["answer"] = answer
            outcome["seconds"] = time.monotonic() - started

    # Half-sent headers too, held open while the ordinary delivery is made.
    idle = [connect(live_receiver.port) for _ in range(20)]
    for sock in idle:
        sock.sendall(b"POST /stripe/ws-a HTTP/1.1\r\n")
    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        time.sleep(0.3)
        assert deliver_one(live_receiver.base_url, "evt_meanwhile") == 200
    finally:
        trickler.join(timeout=READ_TIMEOUT + 2 * TIME_SLACK + 100 * 0.1)
        for sock in idle:
            sock.close()
    assert not trickler.is_alive()
    assert not outcome["answer"] or outcome["answer"].startswith(b"HTTP/1.1 400 ")  # type: ignore[union-attr]
    assert outcome["seconds"] < READ_TIMEOUT + TIME_SLACK
    assert inbox(warehouse) == [("evt_meanwhile", "ws-a", False)]


def test_the_server_is_built_with_the_configured_bounds(warehouse, monkeypatch) -> None:
    monkeypatch.setenv("KPI_WEBHOOK_HEADER_TIMEOUT_SECONDS", "2.5")
    monkeypatch.setenv("KPI_WEBHOOK_READ_TIMEOUT_SECONDS", "7")
    monkeypatch.setenv("KPI_WEBHOOK_MAX_CONNECTIONS", "40")
    config = build_server(warehouse).config
    assert issubclass(config.http, DeadlineH11Protocol)  # type: ignore[arg-type]
    assert (config.http.header_timeout, config.http.body_timeout) == (2.5, 7.0)  # type: ignore[union-attr]
    assert config.limit_concurrency == 40
    assert config.timeout_keep_alive == 5
    assert config.ws == "none"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("KPI_WEBHOOK_MAX_BYTES", "0"),
        ("KPI_WEBHOOK_HEADER_TIMEOUT_SECONDS", "nan"),
        ("KPI_WEBHOOK_READ_TIMEOUT_SECONDS", "-1"),
        ("KPI_WEBHOOK_MAX_CONNECTIONS", "many"),
    ],
)
def test_a_nonsense_bound_is_refused_by_name(monkeypatch, variable, value) -> None:
    monkeypatch.setenv(variable, value)
    reader = {
        "KPI_WEBHOOK_MAX_BYTES": settings.webhook_max_bytes,
        "KPI_WEBHOOK_HEADER_TIMEOUT_SECONDS": settings.webhook_header_timeout_seconds,
        "KPI_WEBHOOK_READ_TIMEOUT_SECONDS": settings.webhook_read_timeout_seconds,
        "KPI_WEBHOOK_MAX_CONNECTIONS": settings.webhook_max_connections,
    }[variable]
    with pytest.raises(ValueError, match=variable):
        reader()


def test_connections_past_the_limit_get_503_until_the_idle_ones_are_closed(
    warehouse, connections, tmp_path
) -> None:
    env = {
        **os.environ,
        **SECRETS,
        "KPI_WEBHOOK_MAX_CONNECTIONS": "3",
        "KPI_WEBHOOK_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
    }
    with start_receiver(env, tmp_path / "receiver.log") as receiver:
        idle = [connect(receiver.port) for _ in range(3)]
        try:
            # Stripe retries a 503 later; the idle connections are gone by then.
            assert deliver_one(receiver.base_url, "evt_crowded") == 503
            for sock in idle:
                read_until_closed(sock, HEADER_TIMEOUT + TIME_SLACK)
        finally:
            for sock in idle:
                sock.close()
        assert deliver_one(receiver.base_url, "evt_later") == 200
    assert inbox(warehouse) == [("evt_later", "ws-a", False)]

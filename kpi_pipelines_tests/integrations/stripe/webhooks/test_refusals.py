"""Every refusal looks the same from outside, whatever its reason; the reason is in the
server's log only. Unverified bodies are never parsed; verified ones that are not a
storable Stripe event are refused (400), never a server error."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from kpi_pipelines.integrations.stripe.webhooks.signature import SignatureError, matching_secrets
from kpi_pipelines.warehouse.control import Workspace, add_workspace
from kpi_pipelines_tests.integrations.stripe.webhooks.support import (
    SECRET_A,
    SECRET_B,
    event,
    inbox,
    signed,
    stripe_connection,
)

MARKER = "BODY-MARKER-7c1d"  # put in every body: it must never reach the log


def request(port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """The server's whole answer to one request, its Date line removed (it is the time)."""
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if not any(name.lower() == "content-length" for name in headers):
        lines.append(f"Content-Length: {len(body)}")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall("\r\n".join([*lines, "", ""]).encode("latin-1") + body)
        answer = bytearray()
        try:
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and _complete(bytes(answer)):
                    break
        except ConnectionResetError:
            pass
    return b"\r\n".join(
        line for line in bytes(answer).split(b"\r\n") if not line.lower().startswith(b"date:")
    )


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def refusal_cases() -> dict[str, tuple[str, bytes, dict[str, str]]]:
    """(path, body, headers) of requests refused for as many reasons as there are."""
    now = int(time.time())
    good = event("evt_refused", note=MARKER)

    def with_secret(body: dict | bytes, secret: str = SECRET_A, **kw: int) -> tuple[bytes, dict]:
        return signed(body, secret, **kw)

    cases: dict[str, tuple[str, bytes, dict[str, str]]] = {
        "unknown workspace": ("/stripe/nobody", *with_secret(good)),
        "workspace without a Stripe connection": ("/stripe/ws-e", *with_secret(good)),
        "connection whose secret is not set": ("/stripe/ws-d", *with_secret(good)),
        "impossible workspace id": ("/stripe/%00..", *with_secret(good)),
        "missing signature": ("/stripe/ws-a", json.dumps(good).encode(), {}),
        "wrong secret": ("/stripe/ws-a", *with_secret(good, "whsec_guess")),
        "another workspace's secret": ("/stripe/ws-a", *with_secret(good, SECRET_B)),
        # Well past the 300 s bounds: the requests are made a while after `now`.
        "stale": ("/stripe/ws-a", *with_secret(good, timestamp=now - 600)),
        "future": ("/stripe/ws-a", *with_secret(good, timestamp=now + 600)),
        "garbled signature": (
            "/stripe/ws-a",
            json.dumps(good).encode(),
            {"Stripe-Signature": "t=\xe9\xe9,v1=\xff" + "0" * 63},
        ),
        "oversized": ("/stripe/ws-a", b"", {"Content-Length": str(2 * 1024 * 1024)}),
        "signed, not JSON": ("/stripe/ws-a", *with_secret(f"{{{MARKER}".encode())),
        "signed, not an object": ("/stripe/ws-a", *with_secret(f'["{MARKER}"]'.encode())),
        "signed, NUL": ("/stripe/ws-a", *with_secret({**good, "x": "\x00"})),
        "Connect, unsigned, deeply nested": ("/stripe", b"[" * 100_000 + MARKER.encode(), {}),
        "Connect, no account": ("/stripe", *with_secret(good)),
        "Connect, unknown account": ("/stripe", *with_secret({**good, "account": "acct_zz"})),
        "Connect, account of another secret": (
            "/stripe",
            *with_secret({**good, "account": "acct_b"}),
        ),
        "Connect, ambiguous account": (
            "/stripe",
            *with_secret({**good, "account": "acct_twice"}),
        ),
        "Connect, account claimed without proof": (
            "/stripe",
            *with_secret({**good, "account": "acct_unproved"}),
        ),
    }
    return cases


@pytest.fixture
def refusal_world(warehouse, connections) -> None:
    """ws-a and ws-c have both proved `acct_twice` (their secrets are equal); ws-c claims
    `acct_unproved` without proof; ws-d names a secret the receiver does not have; ws-e has
    no Stripe connection."""
    for ws in ("ws-c", "ws-d", "ws-e"):
        add_workspace(warehouse, Workspace(id=ws, name=ws))
    twice = "acct_twice"
    stripe_connection(warehouse, "ws-a", "WS_WS_A__STRIPE_WHSEC", twice, "twice", proved=True)
    stripe_connection(warehouse, "ws-c", "WS_WS_C__STRIPE_WHSEC", twice, proved=True)
    stripe_connection(warehouse, "ws-c", "WS_WS_C__STRIPE_WHSEC", "acct_unproved", "unproved")
    stripe_connection(warehouse, "ws-d", "WS_WS_D__STRIPE_WHSEC", "acct_d")


def test_every_refusal_is_the_same_bytes_and_only_the_log_says_why(
    live_receiver, refusal_world, warehouse
) -> None:
    offset = live_receiver.log_size()
    answers = {
        name: request(live_receiver.port, path, body, headers)
        for name, (path, body, headers) in refusal_cases().items()
    }
    reference = answers["missing signature"]
    assert reference.startswith(b"HTTP/1.1 400 ")
    different = {name: answer for name, answer in answers.items() if answer != reference}
    assert different == {}, f"reference: {reference!r}"
    assert inbox(warehouse) == []

    time.sleep(0.2)  # the log line may trail the answer
    log = live_receiver.log_since(offset)
    assert log.count("webhook refused") == len(answers), log
    for reason in (
        "does not exist or has no Stripe connection",
        "WS_WS_D__STRIPE_WHSEC",  # the operator is told which variable to set
        "no signing secret of workspace 'ws-a' signed this body",
        "more than 300 s old",
        "more than 300 s in the future",
        "is not a length up to",
        "is not JSON",
        "NUL character",
        "has no `account`",
        "which no verified connection",
        "several connections",
        "claimed without proof by ws-c/unproved",
    ):
        assert reason in log, reason
    for secret in (SECRET_A, SECRET_B):
        assert secret not in log
    assert MARKER not in log


REFUSED = b'{"error":"webhook refused"}'


def refused(response: httpx.Response) -> bool:
    return response.status_code == 400 and response.content == REFUSED


def deep(levels: int) -> str:
    return '{"id":"evt_deep","object":"event","type":"t","created":1,"data":' + (
        '{"a":' * levels + "1" + "}" * levels + "}"
    )


def envelope(extra: str) -> str:
    return '{"id":"evt_x","object":"event","type":"t","created":1,"data":{}' + extra + "}"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(envelope(',"note":"a\\u0000b"').encode(), id="NUL in a value"),
        pytest.param(envelope(',"a\\u0000":1').encode(), id="NUL in a key"),
        pytest.param(envelope(',"note":"\\ud800"').encode(), id="lone high surrogate"),
        pytest.param(envelope(',"note":"\\udc00x"').encode(), id="lone low surrogate"),
        pytest.param(envelope(',"note":"\xff"').encode("latin-1"), id="invalid UTF-8"),
        pytest.param(b"\xef\xbb\xbf" + envelope("").encode(), id="byte order mark"),
        pytest.param(b"", id="empty"),
        pytest.param(b"[]", id="list"),
        pytest.param(b'"evt_1"', id="string"),
        pytest.param(b"null", id="null"),
        pytest.param(b"1e999", id="number"),
        pytest.param(b'{"id":1,"object":"event","type":"t","created":1,"data":{}}', id="int id"),
        pytest.param(b'{"id":"","object":"event","type":"t","created":1,"data":{}}', id="empty id"),
        pytest.param(
            b'{"id":"evt 1","object":"event","type":"t","created":1,"data":{}}', id="id with space"
        ),
        pytest.param(
            (
                '{"id":"' + "e" * 10_000 + '","object":"event","type":"t","created":1,"data":{}}'
            ).encode(),
            id="huge id",
        ),
        pytest.param(
            b'{"id":"evt_1","object":"event","type":"","created":1,"data":{}}', id="empty type"
        ),
        pytest.param(
            b'{"id":"evt_1","object":"event","type":["t"],"created":1,"data":{}}', id="list type"
        ),
        pytest.param(b'{"id":"evt_1","object":"event","created":1,"data":{}}', id="no type"),
        pytest.param(
            b'{"id":"evt_1","object":"event","type":"t","created":"1","data":{}}', id="text created"
        ),
        pytest.param(
            b'{"id":"evt_1","object":"event","type":"t","created":true,"data":{}}',
            id="bool created",
        ),
        pytest.param(
            b'{"id":"evt_1","object":"customer","type":"t","created":1,"data":{}}',
            id="not an event",
        ),
        pytest.param(
            b'{"id":"evt_1","object":"event","type":"t","created":1,"data":[]}', id="list data"
        ),
        pytest.param(envelope(',"account":7').encode(), id="number account"),
        pytest.param(deep(10_000).encode(), id="recursion-deep nesting"),
        pytest.param(deep(100).encode(), id="deeper than a Stripe event"),
        pytest.param(envelope(',"n":1e400').encode(), id="infinite number"),
        pytest.param(envelope(',"n":1e-400').encode(), id="underflowing number"),
        pytest.param(envelope(',"n":1e99999999').encode(), id="numeric overflow"),
        pytest.param(envelope(',"n":' + "9" * 5000).encode(), id="5000-digit integer"),
        pytest.param(envelope(',"n":NaN').encode(), id="NaN"),
        pytest.param(envelope(',"n":-Infinity').encode(), id="Infinity"),
        pytest.param(envelope(',"n":0.' + "0" * 20000 + "1").encode(), id="20000 decimals"),
        pytest.param(envelope("").encode()[:-1], id="truncated"),
    ],
)
def test_a_signed_body_that_is_not_a_storable_event_is_refused(client, warehouse, body) -> None:
    for path, secret in (("/stripe/ws-a", SECRET_A), ("/stripe", SECRET_B)):
        _, headers = signed(body, secret)
        assert refused(client.post(path, content=body, headers=headers))
    assert inbox(warehouse) == []


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" * 100_000, id="deeply nested"),
        pytest.param(b'{"account":"acct_a","id":"evt_1"', id="truncated, naming an account"),
        pytest.param(b"\xff\xfe", id="not UTF-8"),
        pytest.param(json.dumps(event("evt_1", account="acct_a")).encode(), id="a good event"),
    ],
)
def test_an_unverified_body_is_refused_without_being_read(client, warehouse, body) -> None:
    for path in ("/stripe", "/stripe/ws-a"):
        for headers in ({}, {"Stripe-Signature": f"t={int(time.time())},v1={'a' * 64}"}):
            assert refused(client.post(path, content=body, headers=headers))
    assert inbox(warehouse) == []


@pytest.mark.parametrize(
    ("offset", "accepted"), [(-301, False), (-300, True), (0, True), (300, True), (301, False)]
)
def test_a_signature_is_good_for_300_seconds_either_side(offset, accepted) -> None:
    now = 1_700_000_000
    body = b'{"id":"evt_t"}'
    header = signed(body, SECRET_A, timestamp=now + offset)[1]["Stripe-Signature"]
    if accepted:
        assert matching_secrets(body, header, [SECRET_B, SECRET_A], now=now) == [SECRET_A]
    else:
        with pytest.raises(SignatureError):
            matching_secrets(body, header, [SECRET_A], now=now)

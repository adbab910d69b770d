"""Webhook signatures verify with the official SDK; delivery can be out of order and repeated."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
import stripe
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.sandbox.stripe import StripeSandbox, deliver, sign
from kpi_pipelines.sandbox.stripe.webhooks import payload_of


@pytest.fixture(scope="module")
def sandbox() -> StripeSandbox:
    return StripeSandbox(seed=4, customers=25)


def test_signature_verifies_with_the_sdk(sandbox: StripeSandbox) -> None:
    event = sandbox.events_since(sandbox.now_ts - 5 * 86_400)[0]
    body = payload_of(event)
    now = int(time.time())
    header = sign(body, sandbox.webhook_secret, now)
    assert header.startswith(f"t={now},v1=")
    parsed = stripe.Webhook.construct_event(body, header, sandbox.webhook_secret)
    assert parsed.id == event["id"] and parsed.type == event["type"]
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, header, "whsec_other")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body + b" ", header, sandbox.webhook_secret)
    stale = sign(body, sandbox.webhook_secret, now - 3600)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, stale, sandbox.webhook_secret)


def test_delivery_out_of_order_and_duplicated(sandbox: StripeSandbox) -> None:
    received: list[str] = []

    async def hook(request: Request) -> JSONResponse:
        body = await request.body()
        assert request.headers["content-type"].startswith("application/json")
        try:
            event = stripe.Webhook.construct_event(
                body, request.headers["stripe-signature"], sandbox.webhook_secret
            )
        except stripe.SignatureVerificationError:
            return JSONResponse({"ok": False}, status_code=400)
        received.append(event.id)
        return JSONResponse({"ok": True})

    events = sandbox.events_since(sandbox.now_ts - 20 * 86_400)[:40]
    assert len(events) > 5
    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    with LoopbackServer(app) as server:
        statuses = deliver(
            events, server.url("/hook"), sandbox.webhook_secret, shuffle=True, duplicate=True
        )
        assert statuses == [200] * (2 * len(events))
        assert Counter(received) == Counter({e["id"]: 2 for e in events})
        assert received[: len(events)] != [e["id"] for e in events], "shuffled"
        bad = deliver(events[:2], server.url("/hook"), "whsec_wrong")
        assert bad == [400, 400]
    assert json.loads(payload_of(events[0])) == events[0]

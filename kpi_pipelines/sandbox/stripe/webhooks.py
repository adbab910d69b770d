"""Stripe webhook signatures and delivery (at least once, possibly out of order).

`Stripe-Signature: t=<unix>,v1=<hex>` where v1 is HMAC-SHA256 over `"{t}.{raw body}"` with the
endpoint's `whsec_` secret, as the official SDK's `Webhook.construct_event` verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterable
from random import Random

import httpx


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """The Stripe-Signature header value for `payload` sent at `timestamp`."""
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def payload_of(event: dict) -> bytes:
    """The body Stripe posts for an event (pretty-printed JSON, as Stripe sends it)."""
    return json.dumps(event, indent=2).encode()


def deliver(
    events: Iterable[dict],
    url: str,
    secret: str,
    *,
    client: httpx.Client | None = None,
    timestamp: int | None = None,
    shuffle: bool = False,
    duplicate: bool = False,
    seed: int = 0,
) -> list[int]:
    """POST each event to `url` signed with `secret`; returns the response statuses in order.

    `shuffle` delivers in a (seeded) random order; `duplicate` delivers every event twice, the
    second copy later in the sequence, as Stripe's at-least-once delivery may.
    """
    batch = list(events)
    order = list(range(len(batch)))
    rng = Random(seed)
    if shuffle:
        rng.shuffle(order)
    if duplicate:
        again = list(order)
        if shuffle:
            rng.shuffle(again)
        order = order + again
    own = client is None
    http = client or httpx.Client(timeout=10.0)
    try:
        statuses = []
        for i in order:
            body = payload_of(batch[i])
            ts = int(time.time()) if timestamp is None else timestamp
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": sign(body, secret, ts),
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            }
            statuses.append(http.post(url, content=body, headers=headers).status_code)
        return statuses
    finally:
        if own:
            http.close()

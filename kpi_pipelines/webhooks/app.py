"""Receives Stripe webhooks, verifies them, and stores each event once in the inbox.

Endpoints: `POST /stripe/{workspace_id}` (one endpoint per workspace, each with its own
signing secret) and `POST /stripe` for Connect platforms, where the event's `account` maps
to the workspace whose Stripe connection has that `account_id` setting. A bad, missing or
stale signature gets 400 and stores nothing; a duplicate delivery gets 200 and is ignored.
The signing secret is read from the environment variable the connection names
(`--secret webhook_secret=STRIPE_WHSEC_ACME`).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import sqlalchemy as sa
import stripe
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kpi_pipelines.integrations.shared.secrets import MissingSecret, read_secret
from kpi_pipelines.warehouse.control import Connection, list_connections
from kpi_pipelines.warehouse.database import Warehouse

logger = logging.getLogger("kpi_pipelines.webhooks")

TOLERANCE_SECONDS = 300
PROVIDER = "stripe"


def create_app(warehouse: Warehouse) -> Starlette:
    async def workspace_endpoint(request: Request) -> JSONResponse:
        workspace_id = request.path_params["workspace_id"]
        return await _receive(
            request, warehouse, _connections(warehouse, workspace_id=workspace_id)
        )

    async def platform_endpoint(request: Request) -> JSONResponse:
        body = await request.body()
        account = _peek(body).get("account")
        if not account:
            return _reject("an event without `account` must be sent to /stripe/{workspace_id}")
        candidates = [c for c in _connections(warehouse) if c.settings.get("account_id") == account]
        return await _receive(request, warehouse, candidates, body=body)

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/stripe/{workspace_id}", workspace_endpoint, methods=["POST"]),
            Route("/stripe", platform_endpoint, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )


def _connections(warehouse: Warehouse, *, workspace_id: str | None = None) -> list[Connection]:
    with warehouse.control() as db:
        return list_connections(db, provider=PROVIDER, workspace_id=workspace_id)


async def _receive(
    request: Request,
    warehouse: Warehouse,
    candidates: list[Connection],
    *,
    body: bytes | None = None,
) -> JSONResponse:
    payload = body if body is not None else await request.body()
    header = request.headers.get("stripe-signature")
    if not header:
        return _reject("missing Stripe-Signature header")
    if not candidates:
        return _reject("no workspace is connected to Stripe at this endpoint")
    if _from_the_future(header):
        return _reject("signature timestamp is more than 300 s in the future")
    for connection in candidates:
        try:
            secret = read_secret(connection, "webhook_secret")
        except MissingSecret as exc:
            logger.error("cannot verify a webhook: %s", exc)
            continue
        try:
            # The SDK's check: HMAC-SHA256 over "{t}.{body}", constant-time compare, 300 s.
            stripe.WebhookSignature.verify_header(
                payload.decode("utf-8"), header, secret, tolerance=TOLERANCE_SECONDS
            )
        except (stripe.SignatureVerificationError, UnicodeDecodeError):
            continue
        return _store(warehouse, connection.workspace_id, payload)
    return _reject("invalid signature (wrong secret, tampered body, or older than 300 s)")


def _store(warehouse: Warehouse, workspace_id: str, payload: bytes) -> JSONResponse:
    event = _peek(payload)
    if not event.get("id") or not event.get("type"):
        return _reject("the body is not a Stripe event")
    with warehouse.control() as db:
        inserted = db.execute(
            sa.text(
                "INSERT INTO webhook_inbox (provider, event_id, workspace_id, event_type, payload)"
                " VALUES (:provider, :event_id, :ws, :type, :payload)"
                " ON CONFLICT (provider, workspace_id, event_id) DO NOTHING RETURNING id"
            ).bindparams(sa.bindparam("payload", type_=sa.JSON)),
            {
                "provider": PROVIDER,
                "event_id": event["id"],
                "ws": workspace_id,
                "type": event["type"],
                "payload": event,
            },
        ).first()
    status = "stored" if inserted else "duplicate"
    logger.info("stripe event %s (%s) for %s: %s", event["id"], event["type"], workspace_id, status)
    return JSONResponse({"received": True, "status": status})


def _from_the_future(header: str) -> bool:
    """The SDK rejects stale timestamps; a clock far ahead is as suspicious."""
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            return int(value) > time.time() + TOLERANCE_SECONDS
    return False


def _peek(payload: bytes) -> dict[str, Any]:
    try:
        value = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _reject(reason: str) -> JSONResponse:
    logger.warning("webhook rejected: %s", reason)
    return JSONResponse({"error": reason}, status_code=400)

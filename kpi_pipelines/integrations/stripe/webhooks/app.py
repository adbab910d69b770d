"""Receives Stripe webhooks, verifies them, and stores each event once in the inbox.

Endpoints: `POST /stripe/{workspace_id}` (one endpoint per workspace, verified with the
`webhook_secret` of that workspace's Stripe connections) and `POST /stripe` for Connect
platforms (verified with the secrets of the Stripe connections that have an `account_id`
setting, then routed to the one verified connection whose `account_id` is the event's
`account`). The secret is read from the environment variable the connection names
(`--secret webhook_secret=WS_ACME__STRIPE_WHSEC`).

Anyone on the network can reach this, so every request is hostile until verified: the body
is read up to a bound, its signature checked over the raw bytes, and only then is it parsed.
Every refusal gets the same answer (`REFUSAL_STATUS`, `REFUSAL_BODY`), so a caller learns
nothing about which workspaces exist or why it was refused; the reason goes to the server
log (never a secret or the body). A duplicate delivery gets 200 and is not stored again.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kpi_pipelines import settings
from kpi_pipelines.integrations.shared.redaction import install_redaction_filter
from kpi_pipelines.integrations.shared.secrets import ForbiddenSecret, MissingSecret, read_secret
from kpi_pipelines.integrations.shared.webhook_server import receiver_app
from kpi_pipelines.integrations.stripe.webhooks.events import (
    MalformedEvent,
    StripeEvent,
    parse_event,
)
from kpi_pipelines.integrations.stripe.webhooks.signature import SignatureError, matching_secrets
from kpi_pipelines.warehouse.control import WORKSPACE_ID, Connection, list_connections
from kpi_pipelines.warehouse.database import Warehouse

logger = logging.getLogger("kpi_pipelines.webhooks")
# Belt and braces: no line of ours or of uvicorn's (tracebacks) may carry a secret it read.
install_redaction_filter(logger.name, "uvicorn.error")

PROVIDER = "stripe"
REFUSAL_STATUS = 400
REFUSAL_BODY = b'{"error":"webhook refused"}'
# Checked when no connection has a secret to check against, so that an unknown workspace
# costs the same HMAC as a known one with a wrong signature. Nobody knows it.
_DECOY_SECRET = "whsec_" + secrets.token_hex(32)


class Refused(Exception):
    """The request will not be stored; the message is for the server log only."""


def routes(warehouse: Warehouse, *, max_bytes: int | None = None) -> list[Route]:
    """The receiver's endpoints; bodies over `max_bytes` (default: settings.webhook_max_bytes)
    are refused. The webhook server mounts them beside other providers' (see the spec)."""
    receiver = _Receiver(warehouse)
    limit = max_bytes or settings.webhook_max_bytes()

    async def workspace_endpoint(request: Request) -> Response:
        workspace_id = request.path_params["workspace_id"]
        return await _receive(
            request,
            limit,
            lambda body, header: receiver.workspace_event(workspace_id, body, header),
        )

    async def platform_endpoint(request: Request) -> Response:
        return await _receive(request, limit, receiver.platform_event)

    return [
        Route("/stripe/{workspace_id}", workspace_endpoint, methods=["POST"]),
        Route("/stripe", platform_endpoint, methods=["POST"]),
    ]


def create_app(warehouse: Warehouse, *, max_bytes: int | None = None) -> Starlette:
    """The Stripe receiver on its own (as the webhook server serves it, with /health)."""
    return receiver_app(routes(warehouse, max_bytes=max_bytes))


def refusal() -> Response:
    """The one answer to every refused request. `Connection: close` so that the server reads
    no more of a body it refused before its end."""
    return Response(
        REFUSAL_BODY,
        status_code=REFUSAL_STATUS,
        media_type="application/json",
        headers={"Connection": "close"},
    )


async def _receive(request: Request, limit: int, handle: Callable[[bytes, str], str]) -> Response:
    try:
        body = await _read_body(request, limit)
        # Database and HMAC work off the event loop, which must keep serving (and timing
        # out) other connections meanwhile.
        status = await run_in_threadpool(handle, body, request.headers.get("stripe-signature", ""))
    except Refused as exc:
        logger.warning("webhook refused on %r: %s", request.url.path, exc)
        return refusal()
    except ClientDisconnect:
        # Also how a body that did not arrive in time ends: the server closed the connection.
        logger.warning(
            "webhook refused on %r: the client left before its body ended", request.url.path
        )
        return refusal()
    return JSONResponse({"received": True, "status": status})


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it is known to pass `limit` bytes: at once when its
    Content-Length says so, else (chunked) after reading no more than about `limit` of it.
    What is counted is what arrives, never what a header promised."""
    declared = request.headers.get("content-length")
    if declared is not None and "transfer-encoding" in request.headers:
        # Framed two ways: how a proxy in front might read it is anyone's guess (smuggling).
        raise Refused("both Content-Length and Transfer-Encoding")
    if declared is not None and not (
        declared.isascii() and declared.isdigit() and len(declared) <= 20 and int(declared) <= limit
    ):
        raise Refused(f"Content-Length {declared[:20]!r} is not a length up to {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Refused(f"the body passed the {limit}-byte limit")
    return bytes(body)


class _Receiver:
    """Verify, then parse, then store: the steps after the body is in (run in a thread)."""

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    def workspace_event(self, workspace_id: str, body: bytes, header: str) -> str:
        # An id that cannot exist is not looked up (a NUL in it would not even reach SQL).
        connections = (
            self._connections(workspace_id) if WORKSPACE_ID.fullmatch(workspace_id) else []
        )
        verified = self._verify(body, header, connections)
        if not connections:
            raise Refused(f"workspace {workspace_id!r} does not exist or has no Stripe connection")
        if not verified:
            raise Refused(f"no signing secret of workspace {workspace_id!r} signed this body")
        event, text = self._parse(body)
        return self._store(workspace_id, event.id, event.type, text)

    def platform_event(self, body: bytes, header: str) -> str:
        connections = [c for c in self._connections() if _account_id(c)]
        verified = self._verify(body, header, connections)
        if not verified:
            raise Refused("no signing secret of a Connect connection signed this body")
        event, text = self._parse(body)
        if event.account is None:
            raise Refused(
                f"event {event.id} has no `account`; send it to /stripe/<workspace> instead"
            )
        routes = [c for c in verified if _account_id(c) == event.account]
        if len(routes) > 1:
            # Two verified connections claim one account: only the operator can say which.
            logger.error(
                "Stripe account %r is the account_id of several connections signed with the"
                " same secret (%s): Connect events for it are refused until only one claims it",
                event.account,
                ", ".join(f"{c.workspace_id}/{c.name}" for c in routes),
            )
        if len(routes) != 1:
            raise Refused(
                f"event {event.id} is for account {event.account!r}, which"
                f" {'several' if routes else 'no'} verified connection(s) have as account_id"
            )
        return self._store(routes[0].workspace_id, event.id, event.type, text)

    def _connections(self, workspace_id: str | None = None) -> list[Connection]:
        with self.warehouse.control() as db:
            return list_connections(db, provider=PROVIDER, workspace_id=workspace_id)

    def _verify(self, body: bytes, header: str, connections: list[Connection]) -> list[Connection]:
        """The connections whose secret signed `body`; each distinct secret is checked once."""
        by_secret: dict[str, list[Connection]] = {}
        for connection in connections:
            try:
                secret = read_secret(connection, "webhook_secret")
            except (MissingSecret, ForbiddenSecret) as exc:
                logger.error("cannot verify webhooks for a connection: %s", exc)
                continue
            by_secret.setdefault(secret, []).append(connection)
        try:
            matched = matching_secrets(body, header, list(by_secret) or [_DECOY_SECRET])
        except SignatureError as exc:
            raise Refused(str(exc)) from None
        return [c for secret in matched for c in by_secret.get(secret, [])]

    @staticmethod
    def _parse(body: bytes) -> tuple[StripeEvent, str]:
        try:
            return parse_event(body)
        except MalformedEvent as exc:
            raise Refused(f"a signed body that is not a storable Stripe event: {exc}") from None

    def _store(self, workspace_id: str, event_id: str, event_type: str, text: str) -> str:
        with self.warehouse.control() as db:
            inserted = db.execute(
                sa.text(
                    "INSERT INTO webhook_inbox"
                    " (provider, event_id, workspace_id, event_type, payload)"
                    " VALUES (:provider, :event_id, :ws, :type, CAST(:payload AS jsonb))"
                    " ON CONFLICT (provider, workspace_id, event_id) DO NOTHING RETURNING id"
                ),
                # The JSON text as received: PostgreSQL parses the very bytes that were signed.
                {
                    "provider": PROVIDER,
                    "event_id": event_id,
                    "ws": workspace_id,
                    "type": event_type,
                    "payload": text,
                },
            ).first()
        status = "stored" if inserted else "duplicate"
        logger.info("stripe event %s (%s) for %s: %s", event_id, event_type, workspace_id, status)
        return status


def _account_id(connection: Connection) -> str | None:
    value = connection.settings.get("account_id")
    return value if isinstance(value, str) and value else None

"""Receives Stripe webhooks, verifies them, and stores each event once in the inbox.

Endpoints: `POST /stripe/{workspace_id}` (one endpoint per workspace, verified with the
`webhook_secret` of that workspace's Stripe connections) and `POST /stripe` for Connect
platforms (verified with the secrets of the Stripe connections that have an `account_id`
setting, then routed to the one verified connection whose account_id is the event's
`account` and was proved: its sync showed, with the connection's own API key, that the key
belongs to that account). The secret is read from the environment variable the connection
names (`--secret webhook_secret=WS_ACME__STRIPE_WHSEC`).

Anyone on the network can reach this, so every request is hostile until verified: the body
is read up to a bound, the signature header checked, the signature checked over the raw
bytes, and only then is the body parsed. Every refusal gets the same answer
(`REFUSAL_STATUS`, `REFUSAL_BODY`), so a caller learns nothing about which workspaces exist
or why it was refused; the reason goes to the server log (never a secret or the body). A
duplicate delivery gets 200 and is not stored again; a verified event whose workspace's
inbox is full gets 503 (`DEFERRAL_BODY`), and Stripe delivers it again later.

What a request costs does not depend on what its workspace holds: the header is checked
before anything is looked up; an endpoint's connections and secrets are read at most once
per SECRETS_TTL_SECONDS; every checked body costs HMACS_PER_REQUEST HMACs (up to that many
secrets); and a problem for the operator (a secret variable not set, a full inbox) is
logged once per PROBLEM_LOG_INTERVAL_SECONDS, not once per request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kpi_pipelines import settings
from kpi_pipelines.integrations.shared.redaction import install_redaction_filter
from kpi_pipelines.integrations.shared.secrets import ForbiddenSecret, MissingSecret, read_secret
from kpi_pipelines.integrations.shared.webhook_server import (
    ExpiringCache,
    Throttle,
    receiver_app,
)
from kpi_pipelines.integrations.stripe.webhooks.events import (
    MalformedEvent,
    StripeEvent,
    parse_event,
)
from kpi_pipelines.integrations.stripe.webhooks.signature import (
    SignatureError,
    SignatureHeader,
    parse_header,
)
from kpi_pipelines.warehouse.control import (
    WORKSPACE_ID,
    Connection,
    UnknownWorkspace,
    list_connections,
)
from kpi_pipelines.warehouse.database import Warehouse
from kpi_pipelines.warehouse.inbox import InboxFull, store_event

logger = logging.getLogger("kpi_pipelines.webhooks")
# Belt and braces: no line of ours or of uvicorn's (tracebacks) may carry a secret it read.
install_redaction_filter(logger.name, "uvicorn.error")

PROVIDER = "stripe"
REFUSAL_STATUS = 400
REFUSAL_BODY = b'{"error":"webhook refused"}'
DEFERRAL_STATUS = 503
DEFERRAL_BODY = b'{"error":"try again later"}'
# An endpoint's connections and secrets are read again after this long: a connection added
# or changed takes webhooks within it, and the requests in between cost no lookup.
SECRETS_TTL_SECONDS = 10.0
# What the operator must fix is logged once per connection (or workspace, or account) and
# interval, however many requests run into it.
PROBLEM_LOG_INTERVAL_SECONDS = 300


class Refused(Exception):
    """The request will not be stored; the message is for the server log only."""


class Deferred(Exception):
    """A verified event that cannot be stored now (its workspace's inbox is full)."""


def routes(
    warehouse: Warehouse,
    *,
    max_bytes: int | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[Route]:
    """The receiver's endpoints; bodies over `max_bytes` (default: settings.webhook_max_bytes)
    are refused. The webhook server mounts them beside other providers' (see the spec).
    `clock` (monotonic seconds) times the secrets' cache and the problems' log lines."""
    receiver = _Receiver(warehouse, quota=settings.webhook_inbox_quota(), clock=clock)
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


def create_app(
    warehouse: Warehouse,
    *,
    max_bytes: int | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Starlette:
    """The Stripe receiver on its own (as the webhook server serves it, with /health)."""
    return receiver_app(routes(warehouse, max_bytes=max_bytes, clock=clock))


def refusal() -> Response:
    """The one answer to every refused request. `Connection: close` so that the server reads
    no more of a body it refused before its end."""
    return Response(
        REFUSAL_BODY,
        status_code=REFUSAL_STATUS,
        media_type="application/json",
        headers={"Connection": "close"},
    )


def deferral() -> Response:
    """The answer to a verified event that cannot be stored now: Stripe retries a 503."""
    return Response(DEFERRAL_BODY, status_code=DEFERRAL_STATUS, media_type="application/json")


async def _receive(request: Request, limit: int, handle: Callable[[bytes, str], str]) -> Response:
    try:
        body = await _read_body(request, limit)
        # Database and HMAC work off the event loop, which must keep serving (and timing
        # out) other connections meanwhile.
        status = await run_in_threadpool(handle, body, request.headers.get("stripe-signature", ""))
    except Refused as exc:
        logger.warning("webhook refused on %r: %s", request.url.path, exc)
        return refusal()
    except Deferred as exc:
        logger.warning("webhook deferred on %r: %s", request.url.path, exc)
        return deferral()
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


@dataclass(frozen=True)
class _Endpoint:
    """The Stripe connections an endpoint serves, by the signing secret each names."""

    known: bool  # some Stripe connection is there (with a readable secret or not)
    by_secret: dict[str, tuple[Connection, ...]]

    def verified(self, body: bytes, signature: SignatureHeader) -> list[Connection]:
        """The connections whose secret signed `body` (HMACS_PER_REQUEST HMACs at least)."""
        return [
            c for secret in signature.matching(body, self.by_secret) for c in self.by_secret[secret]
        ]


_NOWHERE = _Endpoint(known=False, by_secret={})


class _Receiver:
    """Verify, then parse, then store: the steps after the body is in (run in a thread)."""

    def __init__(self, warehouse: Warehouse, *, quota: int, clock: Callable[[], float]) -> None:
        self.warehouse = warehouse
        self.quota = quota
        self._endpoints: ExpiringCache[_Endpoint] = ExpiringCache(SECRETS_TTL_SECONDS, clock=clock)
        self._first_time = Throttle(PROBLEM_LOG_INTERVAL_SECONDS, clock=clock)

    def workspace_event(self, workspace_id: str, body: bytes, header: str) -> str:
        signature = _checked(header)
        # An id that cannot exist is not looked up (a NUL in it would not even reach SQL).
        endpoint = (
            self._endpoint(workspace_id) if WORKSPACE_ID.fullmatch(workspace_id) else _NOWHERE
        )
        verified = endpoint.verified(body, signature)
        if not endpoint.known:
            raise Refused(f"workspace {workspace_id!r} does not exist or has no Stripe connection")
        if not verified:
            raise Refused(f"no signing secret of workspace {workspace_id!r} signed this body")
        event, text = self._parse(body)
        return self._store(workspace_id, event, text)

    def platform_event(self, body: bytes, header: str) -> str:
        signature = _checked(header)
        verified = self._endpoint(None).verified(body, signature)
        if not verified:
            raise Refused("no signing secret of a Connect connection signed this body")
        event, text = self._parse(body)
        if event.account is None:
            raise Refused(
                f"event {event.id} has no `account`; send it to /stripe/<workspace> instead"
            )
        claims = [c for c in verified if _account_id(c) == event.account]
        # Only a connection whose own key Stripe said belongs to the account receives its
        # events: a claim without that proof neither receives them nor blocks the owner.
        proved = [c for c in claims if c.proved_account == event.account]
        unproved = [c for c in claims if c.proved_account != event.account]
        if unproved and self._first_time(("unproved", event.account)):
            logger.warning(
                "Stripe account %r is the account_id of %s without proof (a sync proves it with"
                " the connection's own API key): Connect events for it do not go there",
                event.account,
                _named(unproved),
            )
        if len(proved) > 1:
            # Two connections hold keys of one account: only the operator can say which.
            if self._first_time(("ambiguous", event.account)):
                logger.error(
                    "Stripe account %r is the proved account_id of several connections signed"
                    " with the same secret (%s): Connect events for it are refused until only"
                    " one claims it",
                    event.account,
                    _named(proved),
                )
            raise Refused(
                f"event {event.id} is for account {event.account!r}, which several verified"
                " connections have as account_id"
            )
        if not proved:
            raise Refused(
                f"event {event.id} is for account {event.account!r}, which no verified"
                " connection has as a proved account_id"
                + (f" (claimed without proof by {_named(unproved)})" if unproved else "")
            )
        return self._store(proved[0].workspace_id, event, text)

    def _endpoint(self, workspace_id: str | None) -> _Endpoint:
        """The endpoint of a workspace (None: the Connect endpoint), read again at most once
        per SECRETS_TTL_SECONDS: the requests in between cost no lookup, whatever it holds."""
        return self._endpoints.get(workspace_id, lambda: self._read_endpoint(workspace_id))

    def _read_endpoint(self, workspace_id: str | None) -> _Endpoint:
        with self.warehouse.control() as db:
            connections = list_connections(db, provider=PROVIDER, workspace_id=workspace_id)
        if workspace_id is None:
            connections = [c for c in connections if _account_id(c)]
        by_secret: dict[str, list[Connection]] = {}
        # A connection naming no webhook secret takes no webhooks (it syncs on a schedule).
        for connection in [c for c in connections if "webhook_secret" in c.secret_env]:
            try:
                secret = read_secret(connection, "webhook_secret")
            except (MissingSecret, ForbiddenSecret) as exc:
                if self._first_time(("secret", connection.id)):
                    logger.error(
                        "cannot verify webhooks for a connection: %s (said once per %d s)",
                        exc,
                        PROBLEM_LOG_INTERVAL_SECONDS,
                    )
                continue
            by_secret.setdefault(secret, []).append(connection)
        return _Endpoint(
            known=bool(connections),
            by_secret={secret: tuple(found) for secret, found in by_secret.items()},
        )

    @staticmethod
    def _parse(body: bytes) -> tuple[StripeEvent, str]:
        try:
            return parse_event(body)
        except MalformedEvent as exc:
            raise Refused(f"a signed body that is not a storable Stripe event: {exc}") from None

    def _store(self, workspace_id: str, event: StripeEvent, text: str) -> str:
        try:
            status = store_event(
                self.warehouse,
                PROVIDER,
                workspace_id,
                event.id,
                event.type,
                text,
                quota=self.quota,
            )
        except InboxFull as exc:
            if self._first_time(("inbox full", workspace_id)):
                logger.error(
                    "%s: its Stripe events are answered 503 (Stripe delivers them again later)"
                    " until stripe_webhook_sensor drains the inbox; is the Dagster daemon"
                    " running? (said once per %d s)",
                    exc,
                    PROBLEM_LOG_INTERVAL_SECONDS,
                )
            raise Deferred(str(exc)) from None
        except UnknownWorkspace as exc:  # removed since its endpoint was read
            raise Refused(str(exc)) from None
        logger.info("stripe event %s (%s) for %s: %s", event.id, event.type, workspace_id, status)
        return status


def _checked(header: str) -> SignatureHeader:
    """The Stripe-Signature header, refused before any lookup when it cannot match."""
    try:
        return parse_header(header)
    except SignatureError as exc:
        raise Refused(str(exc)) from None


def _named(connections: list[Connection]) -> str:
    return ", ".join(f"{c.workspace_id}/{c.name}" for c in connections)


def _account_id(connection: Connection) -> str | None:
    value = connection.settings.get("account_id")
    return value if isinstance(value, str) and value else None

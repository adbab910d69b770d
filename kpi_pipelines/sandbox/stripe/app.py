"""The Stripe sandbox as a Starlette app: `create_app(sandbox)` or `create_app([a, b])`.

One host serves one or several accounts, each a sandbox with its own API key, as Stripe
does: the key a request carries chooses the account it reads.
`/v1/...` is Stripe's read API (auth, API versions, scripted faults, Stripe's error bodies).
`/_sandbox/...` (same API key) controls the account's simulation from another process:
`GET state`, `POST advance` (`{"to": unix}` or `{"days": n}`, optionally `"into_second"`),
`POST faults` (see `Faults.configure`), `POST event_delays` (see `StripeSandbox.delay_events`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import gc
import itertools
import re
from collections.abc import Iterable, Mapping

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kpi_pipelines.sandbox.kit import answer, json_response
from kpi_pipelines.sandbox.stripe.api import Api
from kpi_pipelines.sandbox.stripe.errors import ApiError, StripeErrors, redact
from kpi_pipelines.sandbox.stripe.faults import API as FAULTS_API
from kpi_pipelines.sandbox.stripe.render import DEFAULT_API_VERSION
from kpi_pipelines.sandbox.stripe.sandbox import StripeSandbox

_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$")


def _api_key(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return value.strip() or None
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[0] or None
    return None


def create_app(
    sandbox: StripeSandbox | Iterable[StripeSandbox], *, collect_every: int | None = None
) -> Starlette:
    """An ASGI app serving `sandbox`, or several accounts on one host (each its own API key);
    run it with LoopbackServer or `python -m ... serve`.

    `collect_every`: run a full garbage collection every that many requests (for a server
    process that turned off automatic full collections, see `__main__`).
    """
    sandboxes = [sandbox] if isinstance(sandbox, StripeSandbox) else list(sandbox)
    accounts = {account.api_key: (account, Api(account)) for account in sandboxes}
    if len(accounts) != len(sandboxes):
        raise ValueError("each account served on one host needs its own API key")
    request_ids = itertools.count(1)

    def respond(
        status: int, body: object, version: str, extra: Mapping[str, str] | None = None
    ) -> Response:
        headers = {
            "Request-Id": f"req_sbx{next(request_ids):011d}",
            "Stripe-Version": version,
            "Cache-Control": "no-cache, no-store",
        }
        if extra:
            headers.update(extra)
        return json_response(status, body, headers)

    def authenticate(request: Request) -> tuple[StripeSandbox, Api] | ApiError:
        key = _api_key(request.headers.get("authorization"))
        if key is None:
            return ApiError(
                401,
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, "
                "or we can help at https://support.stripe.com/.",
            )
        if key not in accounts:
            return ApiError(401, f"Invalid API Key provided: {redact(key)}")
        return accounts[key]

    async def v1(request: Request) -> Response:
        version = request.headers.get("stripe-version") or DEFAULT_API_VERSION
        account = authenticate(request)
        if isinstance(account, ApiError):
            return respond(account.status, account.body(), version)
        sandbox, api = account
        if collect_every and sandbox.faults.requests % collect_every == collect_every - 1:
            gc.collect()
        if not _VERSION.match(version):
            err = ApiError(400, f"Invalid Stripe API version: {version}", param="Stripe-Version")
            return respond(400, err.body(), DEFAULT_API_VERSION)
        fault = sandbox.faults.next(FAULTS_API)

        async def serve() -> Response:
            query = sandbox.faults.rewound(request.query_params.multi_items())
            status, body = api.handle(request.method, request.url.path, query, version)
            if sandbox.faults.malformed_objects:
                body = sandbox.faults.apply_malformations(body)
            return respond(status, body, version)

        if fault is None and not sandbox.faults.delay:
            return await serve()
        errors = StripeErrors(lambda s, b, h: respond(s, b, version, h), sandbox.api_key)
        return await answer(fault, sandbox.faults.delay, errors, serve)

    async def control(request: Request) -> Response:
        account = authenticate(request)
        if isinstance(account, ApiError):
            return respond(account.status, account.body(), DEFAULT_API_VERSION)
        sandbox = account[0]
        action = request.path_params["action"]
        if action == "state" and request.method == "GET":
            return respond(200, _state(sandbox), DEFAULT_API_VERSION)
        if request.method != "POST":
            return respond(405, {"error": {"message": "use POST"}}, DEFAULT_API_VERSION)
        spec = await request.json() if await request.body() else {}
        if action == "advance":
            if "to" in spec:
                target = int(spec["to"])
            else:
                target = sandbox.now_ts + int(float(spec.get("days", 0)) * 86_400)
            into = spec.get("into_second")
            await asyncio.to_thread(
                sandbox.advance, target, into_second=None if into is None else float(into)
            )
            return respond(200, _state(sandbox), DEFAULT_API_VERSION)
        if action == "faults":
            sandbox.faults.configure(spec)
            return respond(200, {"ok": True}, DEFAULT_API_VERSION)
        if action == "event_delays":
            if spec.get("clear"):
                sandbox.clear_event_delays()
            if "seconds" in spec:
                sandbox.delay_events(
                    spec["seconds"],
                    types=spec.get("types"),
                    created_from=spec.get("created_from"),
                    share=float(spec.get("share", 1.0)),
                )
            return respond(200, {"ok": True}, DEFAULT_API_VERSION)
        return respond(404, {"error": {"message": f"unknown action {action}"}}, DEFAULT_API_VERSION)

    methods = ["GET", "POST", "DELETE", "PUT", "PATCH"]
    return Starlette(
        routes=[
            Route("/v1/{path:path}", v1, methods=methods),
            Route("/_sandbox/{action}", control, methods=["GET", "POST"]),
        ]
    )


def _state(sandbox: StripeSandbox) -> dict:
    return {
        "now": sandbox.now_ts,
        "customers": sandbox.customer_count,
        "counts": sandbox.counts(),
        "index_bytes": sandbox.index_bytes(),
        "seed": sandbox.config.seed,
    }

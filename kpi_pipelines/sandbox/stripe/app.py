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
from collections.abc import Iterable

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kpi_pipelines.sandbox.stripe.api import Api, ApiError
from kpi_pipelines.sandbox.stripe.render import DEFAULT_API_VERSION
from kpi_pipelines.sandbox.stripe.sandbox import StripeSandbox

_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$")
_RATE_LIMIT_MESSAGE = (
    "Too many requests hit the API too quickly. We recommend an exponential backoff of your "
    "requests."
)


def _encode(body: object) -> bytes:
    # msgspec: the sandbox must stay well ahead of the pipelines it serves (benchmarks/).
    return msgspec.json.encode(body)


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


def _redact(key: str) -> str:
    if len(key) <= 12:
        return "*" * len(key)
    head = key[:8] if key.startswith(("sk_", "rk_", "pk_")) else ""
    return f"{head}{'*' * (len(key) - len(head) - 4)}{key[-4:]}"


def _fault_error(status: int, key: str) -> ApiError:
    if status == 401:  # the key was rolled or revoked in the Dashboard
        return ApiError(401, f"Expired API Key provided: {_redact(key)}", code="api_key_expired")
    if status == 429:
        return ApiError(429, _RATE_LIMIT_MESSAGE, code="rate_limit")
    if status == 409:
        return ApiError(
            409,
            "This object cannot be accessed right now because another API request or Stripe "
            "process is currently accessing it. If you see this error intermittently, retry the "
            "request.",
            code="lock_timeout",
        )
    if status >= 500:
        message = (
            "The Stripe API is temporarily unavailable. Please retry your request."
            if status == 503
            else "An unknown error occurred. Please retry your request."
        )
        return ApiError(status, message, type_="api_error")
    return ApiError(status, f"The sandbox was scripted to answer {status}.")


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

    def respond(status: int, body: object, version: str, extra: dict | None = None) -> Response:
        headers = {
            "Request-Id": f"req_sbx{next(request_ids):011d}",
            "Stripe-Version": version,
            "Cache-Control": "no-cache, no-store",
        }
        if extra:
            headers.update(extra)
        return Response(
            _encode(body), status_code=status, headers=headers, media_type="application/json"
        )

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
            return ApiError(401, f"Invalid API Key provided: {_redact(key)}")
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
        fault = sandbox.faults.next()
        delay = sandbox.faults.delay + (fault.delay if fault is not None else 0.0)
        if delay:
            await asyncio.sleep(delay)
        extra = None
        if fault is not None and fault.should_retry is not None:
            extra = {"Stripe-Should-Retry": "true" if fault.should_retry else "false"}
        if fault is not None and fault.status != 200:
            err = _fault_error(fault.status, sandbox.api_key)
            return respond(fault.status, err.body(), version, extra)
        if fault is not None and fault.body is not None:
            return Response(fault.body, status_code=200, media_type="text/html")
        status, body = api.handle(
            request.method, request.url.path, request.query_params.multi_items(), version
        )
        if sandbox.faults.malformed:
            body = sandbox.faults.apply_malformations(body)
        response = respond(status, body, version, extra)
        if fault is not None and fault.truncate:
            body_bytes = bytes(response.body)
            response.body = body_bytes[: max(1, len(body_bytes) // 2)]
            response.headers["content-length"] = str(len(response.body))
        return response

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

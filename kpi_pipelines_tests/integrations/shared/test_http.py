"""ProviderHttpClient against a real starlette app served on 127.0.0.1 by LoopbackServer."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import pickle
import random
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Generator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from kpi_pipelines.integrations.shared.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderQuotaExhausted,
    ProviderRequestError,
    ProviderUnavailable,
    RequestBudgetExceeded,
)
from kpi_pipelines.integrations.shared.http import (
    HttpStats,
    ProviderHttpClient,
    RetryDecision,
    parse_retry_after,
    provider_message,
    provider_now,
)
from kpi_pipelines.integrations.shared.redaction import register_secret
from kpi_pipelines.sandbox.kit.server import LoopbackServer

# --- the scriptable provider --------------------------------------------------------------

HITS: Counter[str] = Counter()
VALID_TOKENS: dict[str, str] = {}


def _hit(request: Request) -> int:
    key = request.path_params["key"]
    HITS[key] += 1
    return HITS[key]


def _int(request: Request, name: str, default: int = 0) -> int:
    return int(request.query_params.get(name, default))


async def count(request: Request) -> JSONResponse:
    n = _hit(request)
    body = await request.body()
    return JSONResponse(
        {"count": n, "query": sorted(request.query_params.multi_items()), "body": body.decode()}
    )


async def flaky(request: Request) -> JSONResponse:
    """Fails `fail` times with `status` (and a Retry-After), then succeeds."""
    n = _hit(request)
    if n <= _int(request, "fail"):
        headers = {}
        if "retry_after" in request.query_params:
            headers["Retry-After"] = request.query_params["retry_after"]
        if "retry_after_in" in request.query_params:
            when = datetime.now(UTC) + timedelta(seconds=_int(request, "retry_after_in"))
            headers["Retry-After"] = email.utils.format_datetime(when, usegmt=True)
        body = {
            "error": {
                "code": 429,
                "message": "Exhausted concurrent requests quota.",
                "status": "RESOURCE_EXHAUSTED",
            }
        }
        return JSONResponse(body, status_code=_int(request, "status", 429), headers=headers)
    return JSONResponse({"ok": True, "calls": n})


async def down(request: Request) -> JSONResponse:
    _hit(request)
    body = {
        "error": {
            "code": 503,
            "message": "The service is currently unavailable.",
            "status": "UNAVAILABLE",
        }
    }
    return JSONResponse(body, status_code=503)


async def slow(request: Request) -> JSONResponse:
    _hit(request)
    await asyncio.sleep(float(request.query_params.get("delay", "0.3")))
    return JSONResponse({"slow": True})


async def protected(request: Request) -> JSONResponse:
    _hit(request)
    if (
        request.headers.get("Authorization")
        == f"Bearer {VALID_TOKENS.get(request.path_params['key'])}"
    ):
        return JSONResponse({"ok": True})
    body = {
        "error": {
            "code": 401,
            "message": "Request had invalid authentication credentials.",
            "status": "UNAUTHENTICATED",
        }
    }
    return JSONResponse(body, status_code=401)


async def status(request: Request) -> JSONResponse:
    _hit(request)
    code = _int(request, "code")
    return JSONResponse(
        {"object": "error", "status": code, "code": "some_error", "message": f"status {code}"},
        status_code=code,
    )


async def bad_request(request: Request) -> JSONResponse:
    _hit(request)
    body = {
        "error": {
            "code": 400,
            "message": "Field foo is not a valid dimension.",
            "status": "INVALID_ARGUMENT",
        }
    }
    return JSONResponse(body, status_code=400)


async def salesforce_error(request: Request) -> JSONResponse:
    _hit(request)
    body = [{"errorCode": "MALFORMED_QUERY", "message": "unexpected token: FROM"}]
    return JSONResponse(body, status_code=400)


async def salesforce_limit(request: Request) -> JSONResponse:
    _hit(request)
    body = [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}]
    return JSONResponse(body, status_code=403)


async def meta(request: Request) -> JSONResponse:
    """Meta's throttling: HTTP 400 with error.code 17, not 429."""
    if _hit(request) <= _int(request, "fail"):
        body = {
            "error": {
                "message": "(#17) User request limit reached",
                "type": "OAuthException",
                "code": 17,
                "error_subcode": 2446079,
                "fbtrace_id": "AbCdEf",
            }
        }
        return JSONResponse(body, status_code=400)
    return JSONResponse({"data": [{"spend": "1.00"}]})


async def stripe(request: Request) -> JSONResponse:
    if _hit(request) <= _int(request, "fail"):
        headers = {"Stripe-Should-Retry": request.query_params.get("should_retry", "true")}
        body = {"error": {"type": "api_error", "message": "Stripe is having a moment."}}
        return JSONResponse(body, status_code=_int(request, "status", 409), headers=headers)
    return JSONResponse({"object": "list", "data": []})


async def x_rate(request: Request) -> JSONResponse:
    """X Ads: 429 with an x-rate-limit-reset epoch, no Retry-After."""
    if _hit(request) <= _int(request, "fail"):
        reset = int(time.time() + _int(request, "reset_in"))
        headers = {
            "x-rate-limit-limit": "100",
            "x-rate-limit-remaining": "0",
            "x-rate-limit-reset": str(reset),
        }
        body = {"errors": [{"code": 88, "message": "Rate limit exceeded"}]}
        return JSONResponse(body, status_code=429, headers=headers)
    return JSONResponse({"data": []})


async def leaky(request: Request) -> JSONResponse:
    """Echoes the caller's token back in the error, as some providers do."""
    _hit(request)
    token = request.query_params.get("access_token") or request.headers.get("Authorization", "")
    body = {
        "error": {"message": f"Invalid OAuth access token - Cannot parse access token: {token}"}
    }
    return JSONResponse(body, status_code=_int(request, "code", 400))


async def not_json(request: Request) -> PlainTextResponse:
    return PlainTextResponse("<html>hello</html>")


async def empty(request: Request) -> Response:
    return Response(status_code=204)


APP = Starlette(
    routes=[
        Route("/count/{key}", count, methods=["GET", "POST"]),
        Route("/flaky/{key}", flaky),
        Route("/down/{key}", down),
        Route("/slow/{key}", slow),
        Route("/protected/{key}", protected),
        Route("/status/{key}", status),
        Route("/bad-request/{key}", bad_request),
        Route("/salesforce-error/{key}", salesforce_error),
        Route("/salesforce-limit/{key}", salesforce_limit),
        Route("/meta/{key}", meta),
        Route("/stripe/{key}", stripe),
        Route("/x-rate/{key}", x_rate),
        Route("/leaky/{key}", leaky),
        Route("/not-json", not_json),
        Route("/empty", empty),
    ]
)


# --- fixtures and helpers -----------------------------------------------------------------


class RecordingSleep:
    """Records the waits instead of sleeping, so retry tests stay fast."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class UpperBoundRandom(random.Random):
    """Jitter always at the top of its window, to read off the backoff caps."""

    def uniform(self, a: float, b: float) -> float:
        return b


class TokenAuth(httpx.Auth):
    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(APP) as running:
        yield running


@pytest.fixture
def key() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def sleeps() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def make_client(server: LoopbackServer, sleeps: RecordingSleep) -> Iterator[Any]:
    clients: list[ProviderHttpClient] = []

    def make(**kwargs: Any) -> ProviderHttpClient:
        kwargs.setdefault("sleep", sleeps)
        kwargs.setdefault("backoff_base", 0.01)
        client = ProviderHttpClient(
            kwargs.pop("provider", "ga4"), kwargs.pop("base_url", server.base_url), **kwargs
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


# --- basics -------------------------------------------------------------------------------


def test_get_json_relative_and_absolute_urls(
    make_client: Any, server: LoopbackServer, key: str
) -> None:
    client = make_client()
    assert client.get_json(f"/count/{key}", params={"a": "1"})["count"] == 1
    assert client.get_json(server.url(f"/count/{key}"), params={"a": "2"})["count"] == 2
    assert client.get_json(server.url(f"/count/{key}?a=3"))["query"] == [["a", "3"]]
    assert client.stats == HttpStats(requests_sent=3)


def test_base_url_path_prefix_is_kept(make_client: Any, server: LoopbackServer, key: str) -> None:
    client = make_client(base_url=server.url("/count"))
    assert client.get_json(key)["count"] == 1
    assert client.get_json(f"/{key}", cacheable=False)["count"] == 2


def test_absolute_url_on_another_origin_is_refused(make_client: Any, key: str) -> None:
    client = make_client()
    with pytest.raises(ValueError, match="refusing to send credentials"):
        client.get_json(f"http://localhost:1/count/{key}")
    assert client.stats.requests_sent == 0


def test_allowed_origins_extend_the_base_origin(
    make_client: Any, server: LoopbackServer, key: str
) -> None:
    client = make_client(
        base_url="https://api.example.invalid/v1", allowed_origins=[server.base_url]
    )
    assert client.get_json(server.url(f"/count/{key}"))["count"] == 1


def test_post_json_with_json_and_form_bodies(make_client: Any, key: str) -> None:
    client = make_client()
    assert client.post_json(f"/count/{key}", json={"b": 1})["body"] == '{"b":1}'
    assert (
        client.post_json(f"/count/{key}", data={"grant_type": "refresh_token"})["body"]
        == "grant_type=refresh_token"
    )


def test_empty_body_decodes_to_none_and_non_json_is_asked_for_again(make_client: Any) -> None:
    client = make_client()
    assert client.get_json("/empty") is None
    # A 200 whose body is not JSON was cut short or mangled on the way: a transport fault.
    with pytest.raises(ProviderUnavailable, match="not JSON") as caught:
        client.get_json("/not-json")
    assert caught.value.status == 200 and caught.value.attempts == client.max_attempts


# --- retries and backoff ------------------------------------------------------------------


def test_retry_after_seconds_is_honoured(
    make_client: Any, sleeps: RecordingSleep, key: str
) -> None:
    client = make_client()
    result = client.get_json(f"/flaky/{key}", params={"fail": 2, "status": 429, "retry_after": 7})
    assert result == {"ok": True, "calls": 3}
    assert sleeps.calls == [7.0, 7.0]
    assert client.stats == HttpStats(requests_sent=3, retries=2, seconds_waited=14.0)
    assert HITS[key] == 3


def test_retry_after_http_date_is_honoured(
    make_client: Any, sleeps: RecordingSleep, key: str
) -> None:
    client = make_client()
    client.get_json(f"/flaky/{key}", params={"fail": 1, "status": 503, "retry_after_in": 30})
    [waited] = sleeps.calls
    assert 28.0 <= waited <= 31.0


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_default_retry_statuses(
    make_client: Any, sleeps: RecordingSleep, key: str, status: int
) -> None:
    client = make_client()
    assert client.get_json(f"/flaky/{key}", params={"fail": 1, "status": status})["ok"] is True
    assert len(sleeps.calls) == 1


def test_backoff_doubles_up_to_the_cap(make_client: Any, sleeps: RecordingSleep, key: str) -> None:
    client = make_client(backoff_base=0.5, backoff_max=3, max_attempts=6, rng=UpperBoundRandom())
    with pytest.raises(ProviderUnavailable):
        client.get_json(f"/down/{key}")
    assert sleeps.calls == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert HITS[key] == 6


def test_backoff_has_full_jitter(make_client: Any, sleeps: RecordingSleep, key: str) -> None:
    client = make_client(backoff_base=1, backoff_max=100, max_attempts=6, rng=random.Random(7))
    with pytest.raises(ProviderUnavailable):
        client.get_json(f"/down/{key}")
    caps = [1, 2, 4, 8, 16]
    assert len(sleeps.calls) == 5
    assert all(0 <= waited <= cap for waited, cap in zip(sleeps.calls, caps, strict=True))
    assert sleeps.calls != caps
    assert len(set(sleeps.calls)) == 5

    other_sleeps = RecordingSleep()
    other = make_client(backoff_base=1, backoff_max=100, max_attempts=6, sleep=other_sleeps)
    with pytest.raises(ProviderUnavailable):
        other.get_json(f"/down/{key}")
    assert other_sleeps.calls != sleeps.calls


def test_gives_up_with_a_clear_message(make_client: Any, key: str) -> None:
    client = make_client(provider="ga4", max_attempts=4)
    with pytest.raises(ProviderUnavailable) as caught:
        client.get_json(f"/down/{key}")
    error = caught.value
    message = str(error)
    assert message.startswith("ga4 is unavailable after 4 attempts over ")
    assert "HTTP 503" in message
    assert "UNAVAILABLE: The service is currently unavailable." in message
    assert f"/down/{key}" in message
    assert (error.provider, error.status, error.attempts) == ("ga4", 503, 4)
    assert error.__cause__ is None
    assert error.__suppress_context__
    assert HITS[key] == 4


def test_timeouts_are_retried(make_client: Any, sleeps: RecordingSleep, key: str) -> None:
    client = make_client(timeout=0.05, max_attempts=2)
    with pytest.raises(ProviderUnavailable, match="ReadTimeout") as caught:
        client.get_json(f"/slow/{key}", params={"delay": 0.5})
    assert caught.value.status is None
    assert client.stats.requests_sent == 2
    assert len(sleeps.calls) == 1


def test_connection_errors_are_retried(sleeps: RecordingSleep) -> None:
    with LoopbackServer(Starlette()) as gone:
        base_url = gone.base_url
    client = ProviderHttpClient(
        "hubspot", base_url, max_attempts=3, backoff_base=0.01, sleep=sleeps
    )
    with client, pytest.raises(ProviderUnavailable, match="ConnectError"):
        client.get_json("/anything")
    assert client.stats.requests_sent == 3
    assert len(sleeps.calls) == 2


# --- quotas and provider hooks ------------------------------------------------------------


def test_retry_after_beyond_backoff_max_is_quota_exhausted(
    make_client: Any, sleeps: RecordingSleep, key: str
) -> None:
    client = make_client(backoff_max=60)
    before = datetime.now(UTC)
    with pytest.raises(ProviderQuotaExhausted) as caught:
        client.get_json(f"/flaky/{key}", params={"fail": 5, "status": 429, "retry_after": 3600})
    error = caught.value
    assert error.retry_at is not None
    assert (
        before + timedelta(seconds=3595)
        <= error.retry_at
        <= datetime.now(UTC) + timedelta(seconds=3605)
    )
    assert error.status == 429
    assert "ga4 quota is exhausted" in str(error)
    assert "Exhausted concurrent requests quota." in str(error)
    assert sleeps.calls == []
    assert HITS[key] == 1


def meta_classify(response: httpx.Response) -> RetryDecision | None:
    if response.status_code == 400:
        error = response.json().get("error", {})
        if error.get("code") in (4, 17, 613, 80000, 80004):
            return RetryDecision(retry=True)
    return None


def test_meta_throttle_sent_as_400_needs_classify(
    make_client: Any, sleeps: RecordingSleep, key: str
) -> None:
    plain = make_client(provider="meta")
    with pytest.raises(ProviderRequestError, match=r"\(#17\) User request limit reached") as caught:
        plain.get_json(f"/meta/{key}", params={"fail": 2})
    assert caught.value.status == 400
    assert HITS[key] == 1

    HITS[key] = 0
    classified = make_client(provider="meta", classify=meta_classify)
    assert classified.get_json(f"/meta/{key}", params={"fail": 2}) == {"data": [{"spend": "1.00"}]}
    assert HITS[key] == 3
    assert len(sleeps.calls) == 2


def stripe_classify(response: httpx.Response) -> RetryDecision | None:
    should_retry = response.headers.get("Stripe-Should-Retry")
    if should_retry is None:
        return None
    return RetryDecision(retry=should_retry == "true")


def test_stripe_should_retry_overrides_the_status(make_client: Any, key: str) -> None:
    client = make_client(provider="stripe", classify=stripe_classify)
    assert client.get_json(f"/stripe/{key}", params={"fail": 1, "status": 409})["object"] == "list"
    assert HITS[key] == 2

    other = uuid.uuid4().hex
    with pytest.raises(ProviderUnavailable, match="Stripe is having a moment") as caught:
        client.get_json(
            f"/stripe/{other}", params={"fail": 1, "status": 503, "should_retry": "false"}
        )
    assert caught.value.attempts == 1
    assert HITS[other] == 1


def x_classify(response: httpx.Response) -> RetryDecision | None:
    reset = response.headers.get("x-rate-limit-reset")
    if response.status_code == 429 and reset:
        return RetryDecision(retry=True, quota_reset_at=datetime.fromtimestamp(int(reset), UTC))
    return None


def test_quota_reset_within_patience_is_waited_for(
    make_client: Any, sleeps: RecordingSleep, key: str
) -> None:
    client = make_client(provider="x", classify=x_classify, backoff_max=60)
    assert client.get_json(f"/x-rate/{key}", params={"fail": 1, "reset_in": 5}) == {"data": []}
    [waited] = sleeps.calls
    assert 3.5 <= waited <= 5.5


def test_quota_reset_beyond_patience_raises_with_retry_at(
    make_client: Any, sleeps: RecordingSleep, key: str
) -> None:
    client = make_client(provider="x", classify=x_classify, backoff_max=60)
    with pytest.raises(ProviderQuotaExhausted, match="Rate limit exceeded") as caught:
        client.get_json(f"/x-rate/{key}", params={"fail": 1, "reset_in": 900})
    retry_at = caught.value.retry_at
    assert retry_at is not None
    assert 890 <= (retry_at - datetime.now(UTC)).total_seconds() <= 901
    assert sleeps.calls == []


def test_classify_can_turn_a_403_into_a_quota_error(make_client: Any, key: str) -> None:
    tomorrow = datetime.now(UTC) + timedelta(days=1)

    def salesforce_classify(response: httpx.Response) -> RetryDecision | None:
        if response.status_code == 403 and "REQUEST_LIMIT_EXCEEDED" in response.text:
            return RetryDecision(retry=False, quota_reset_at=tomorrow)
        return None

    client = make_client(provider="salesforce", classify=salesforce_classify)
    with pytest.raises(
        ProviderQuotaExhausted, match="REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded"
    ) as caught:
        client.get_json(f"/salesforce-limit/{key}")
    assert caught.value.retry_at == tomorrow
    assert HITS[key] == 1


# --- auth and request errors --------------------------------------------------------------


def test_401_without_a_hook_is_an_auth_error(make_client: Any, key: str) -> None:
    client = make_client(headers={"Authorization": "Bearer expired-token-123"})
    with pytest.raises(ProviderAuthError) as caught:
        client.get_json(f"/protected/{key}")
    assert caught.value.status == 401
    assert "Reconnect this workspace" in str(caught.value)
    assert "UNAUTHENTICATED: Request had invalid authentication credentials." in str(caught.value)
    assert HITS[key] == 1


def test_401_with_a_refresh_hook_is_retried_once_with_new_headers(
    make_client: Any, key: str
) -> None:
    fresh = "fresh-" + secrets.token_hex(8)
    VALID_TOKENS[key] = fresh
    refreshes: list[int] = []

    def refresh() -> bool:
        refreshes.append(1)
        client.set_headers({"Authorization": f"Bearer {fresh}"})
        return True

    client = make_client(
        headers={"Authorization": "Bearer stale-token-123"}, on_unauthorized=refresh
    )
    assert client.get_json(f"/protected/{key}") == {"ok": True}
    assert refreshes == [1]
    assert HITS[key] == 2


def test_refresh_hook_is_tried_only_once_per_request(make_client: Any, key: str) -> None:
    VALID_TOKENS[key] = "never-matches-" + secrets.token_hex(8)
    auth = TokenAuth("stale-token-123")
    refreshes: list[int] = []

    def refresh() -> bool:
        refreshes.append(1)
        auth.token = "still-wrong-456"
        return True

    client = make_client(auth=auth, on_unauthorized=refresh)
    with pytest.raises(ProviderAuthError):
        client.get_json(f"/protected/{key}")
    assert refreshes == [1]
    assert HITS[key] == 2


def test_a_hook_that_cannot_refresh_gives_an_auth_error(make_client: Any, key: str) -> None:
    client = make_client(auth=TokenAuth("stale-token-123"), on_unauthorized=lambda: False)
    with pytest.raises(ProviderAuthError):
        client.get_json(f"/protected/{key}")
    assert HITS[key] == 1


@pytest.mark.parametrize(
    ("code", "error_type"),
    [
        (401, ProviderAuthError),
        (403, ProviderAuthError),
        (404, ProviderRequestError),
        (422, ProviderRequestError),
        (501, ProviderUnavailable),
    ],
)
def test_status_mapping_without_retry(
    make_client: Any, sleeps: RecordingSleep, key: str, code: int, error_type: type[ProviderError]
) -> None:
    client = make_client(provider="notion")
    with pytest.raises(error_type, match=f"some_error: status {code}") as caught:
        client.get_json(f"/status/{key}", params={"code": code})
    assert type(caught.value) is error_type
    assert caught.value.status == code
    assert caught.value.provider == "notion"
    assert HITS[key] == 1
    assert sleeps.calls == []


def test_400_carries_the_providers_message(make_client: Any, key: str) -> None:
    client = make_client()
    with pytest.raises(ProviderRequestError) as caught:
        client.get_json(f"/bad-request/{key}", params={"dimension": "foo"})
    message = str(caught.value)
    assert "HTTP 400" in message
    assert "INVALID_ARGUMENT: Field foo is not a valid dimension." in message
    assert "The request is wrong" in message


def test_salesforce_error_list_is_understood(make_client: Any, key: str) -> None:
    client = make_client(provider="salesforce")
    with pytest.raises(ProviderRequestError, match="MALFORMED_QUERY: unexpected token: FROM"):
        client.get_json(f"/salesforce-error/{key}")


# --- budget -------------------------------------------------------------------------------


def test_request_budget_is_enforced_but_cache_hits_are_free(make_client: Any, key: str) -> None:
    client = make_client(provider="hubspot", request_budget=3)
    for page in range(3):
        client.get_json(f"/count/{key}", params={"page": page})
    with pytest.raises(RequestBudgetExceeded, match="request budget of 3 requests") as caught:
        client.get_json(f"/count/{key}", params={"page": 3})
    assert caught.value.provider == "hubspot"
    assert HITS[key] == 3
    assert client.get_json(f"/count/{key}", params={"page": 0})["count"] == 1


def test_request_budget_counts_retries(make_client: Any, key: str) -> None:
    client = make_client(request_budget=2, max_attempts=6)
    with pytest.raises(RequestBudgetExceeded):
        client.get_json(f"/down/{key}")
    assert HITS[key] == 2


# --- cache --------------------------------------------------------------------------------


def test_identical_gets_are_served_from_the_cache(make_client: Any, key: str) -> None:
    client = make_client()
    first = client.get_json(f"/count/{key}", params={"a": "1", "b": "2"})
    second = client.get_json(f"/count/{key}", params={"b": "2", "a": "1"})
    assert first == second == {"count": 1, "query": [["a", "1"], ["b", "2"]], "body": ""}
    assert client.get_json(f"/count/{key}?b=2&a=1") == first
    assert HITS[key] == 1
    assert client.stats.cache_hits == 2
    assert client.stats.requests_sent == 1

    assert client.get_json(f"/count/{key}", params={"a": "1", "b": "3"})["count"] == 2
    assert (
        client.get_json(f"/count/{key}", params={"a": "1", "b": "2"}, cacheable=False)["count"] == 3
    )


def test_posts_are_cached_only_when_marked_cacheable(make_client: Any, key: str) -> None:
    client = make_client()
    client.post_json(f"/count/{key}", json={"x": 1, "y": 2})
    client.post_json(f"/count/{key}", json={"x": 1, "y": 2})
    assert HITS[key] == 2

    report = {"dateRanges": [{"startDate": "2024-05-01"}], "limit": "10000"}
    reordered = {"limit": "10000", "dateRanges": [{"startDate": "2024-05-01"}]}
    client.post_json(f"/count/{key}", json=report, cacheable=True)
    client.post_json(f"/count/{key}", json=reordered, cacheable=True)
    assert HITS[key] == 3
    client.post_json(f"/count/{key}", json={**report, "offset": "10000"}, cacheable=True)
    assert HITS[key] == 4


def test_cache_can_be_disabled(make_client: Any, key: str) -> None:
    client = make_client(cache=False)
    client.get_json(f"/count/{key}")
    client.get_json(f"/count/{key}")
    assert HITS[key] == 2
    assert client.stats.cache_hits == 0


def test_cache_is_bounded(make_client: Any, key: str) -> None:
    client = make_client(cache_max_entries=2)
    for page in ("a", "b", "c", "a"):
        client.get_json(f"/count/{key}", params={"page": page})
    assert HITS[key] == 4
    client.get_json(f"/count/{key}", params={"page": "c"})
    assert HITS[key] == 4


def test_errors_are_not_cached(make_client: Any, key: str) -> None:
    client = make_client()
    for _ in range(2):
        with pytest.raises(ProviderRequestError):
            client.get_json(f"/bad-request/{key}")
    assert HITS[key] == 2


# --- secrets ------------------------------------------------------------------------------


def test_secrets_never_reach_logs_exceptions_or_reprs(
    make_client: Any, server: LoopbackServer, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    token = "EAAB" + secrets.token_urlsafe(24)
    stripe_key = "sk_test_" + secrets.token_hex(12)  # never registered: caught by its shape
    client = make_client(
        provider="meta",
        base_url=server.base_url,
        secrets=[token],
        headers={"X-Extra": stripe_key},
        max_attempts=2,
    )
    errors: list[ProviderError] = []
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(ProviderUnavailable) as unavailable:
            client.get_json(f"/leaky/{key}", params={"access_token": token, "code": 503})
        errors.append(unavailable.value)
        with pytest.raises(ProviderRequestError) as rejected:
            client.get_json(f"/leaky/{key}", params={"access_token": token})
        errors.append(rejected.value)
        with pytest.raises(ProviderRequestError) as rejected_stripe:
            client.get_json(f"/leaky/{key}", headers={"Authorization": f"Bearer {stripe_key}"})
        errors.append(rejected_stripe.value)
        logging.getLogger("kpi_pipelines.http").exception(
            "logged with args %s", token, exc_info=rejected.value
        )

    assert HITS[key] == 4
    assert any(record.levelno == logging.WARNING for record in caplog.records)  # the retry line
    assert any("[REDACTED]" in record.getMessage() for record in caplog.records)
    for secret in (token, stripe_key):
        assert secret not in caplog.text
        assert all(secret not in record.getMessage() for record in caplog.records)
        assert secret not in repr(client)
        for error in errors:
            assert secret not in str(error)
            assert secret not in repr(error)
            assert all(secret not in str(arg) for arg in error.args)
            assert secret not in pickle.loads(pickle.dumps(error)).__str__()
    assert "Cannot parse access token: [REDACTED]" in str(rejected.value)


def test_provider_error_is_redacted_even_for_secrets_registered_later() -> None:
    secret = "late-" + secrets.token_hex(10)
    error = ProviderAuthError("hubspot", f"token {secret} was revoked", status=401)
    assert secret in error.detail  # not known to be secret yet
    register_secret(secret)
    assert secret not in str(error)
    assert secret not in repr(error)


def test_errors_pickle_with_their_fields() -> None:
    retry_at = datetime(2030, 1, 1, tzinfo=UTC)
    error = ProviderQuotaExhausted("ga4", "hourly tokens", retry_at=retry_at, status=429)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is ProviderQuotaExhausted
    assert (copy.provider, copy.status, copy.retry_at, str(copy)) == (
        "ga4",
        429,
        retry_at,
        str(error),
    )
    assert "2030-01-01 00:00:00 UTC" in str(error)
    budget = pickle.loads(pickle.dumps(RequestBudgetExceeded("x", 10)))
    assert budget.budget == 10


def test_unavailable_message_shape() -> None:
    error = ProviderUnavailable("linkedin", "HTTP 503: down", attempts=6, elapsed=31.25, status=503)
    assert str(error).startswith(
        "linkedin is unavailable after 6 attempts over 31.2 s: last error HTTP 503: down"
    )


# --- small pieces -------------------------------------------------------------------------


def test_parse_retry_after() -> None:
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    past = email.utils.format_datetime(datetime(2000, 1, 1, tzinfo=UTC), usegmt=True)
    assert parse_retry_after(past) == 0.0
    future = datetime.now(UTC) + timedelta(seconds=120)
    waited = parse_retry_after(email.utils.format_datetime(future, usegmt=True))
    assert waited is not None
    assert 118 <= waited <= 121


def test_provider_now_is_its_date_header() -> None:
    sent = httpx.Response(200, headers={"Date": "Tue, 17 Nov 2026 23:59:58 GMT"})
    assert provider_now(sent) == datetime(2026, 11, 17, 23, 59, 58, tzinfo=UTC)
    for headers in ({}, {"Date": "yesterday"}):
        before = datetime.now(UTC)
        assert before <= provider_now(httpx.Response(200, headers=headers)) <= datetime.now(UTC)


def test_stats_as_metadata() -> None:
    stats = HttpStats(requests_sent=3, retries=1, cache_hits=2, seconds_waited=1.23456)
    assert stats.as_metadata() == {
        "http_requests_sent": 3,
        "http_retries": 1,
        "http_cache_hits": 2,
        "http_seconds_waited": 1.235,
    }
    # A client without the cache reports no hit count at all.
    uncached = ProviderHttpClient("ga4", "http://127.0.0.1:1", cache=False)
    assert "http_cache_hits" not in uncached.stats.as_metadata()
    uncached.close()


def test_constructor_validates_limits() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        ProviderHttpClient("ga4", "http://127.0.0.1:1", max_attempts=0)
    with pytest.raises(ValueError, match="request_budget"):
        ProviderHttpClient("ga4", "http://127.0.0.1:1", request_budget=0)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            429,
            {
                "error": {
                    "code": 429,
                    "message": "Quota hit.",
                    "status": "RESOURCE_EXHAUSTED",
                    "errors": [{"message": "x"}],
                }
            },
            "RESOURCE_EXHAUSTED: Quota hit.",
        ),
        (
            400,
            {
                "error": {
                    "type": "invalid_request_error",
                    "code": "resource_missing",
                    "message": "No such customer",
                }
            },
            "resource_missing: No such customer",
        ),
        (
            400,
            {"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
            "invalid_grant: Token has been expired or revoked.",
        ),
        (
            400,
            {"object": "error", "status": 400, "code": "validation_error", "message": "bad filter"},
            "validation_error: bad filter",
        ),
        (
            429,
            {
                "status": "error",
                "message": "Ten second limit",
                "errorType": "RATE_LIMIT",
                "policyName": "TEN_SECONDLY_ROLLING",
            },
            "RATE_LIMIT: Ten second limit",
        ),
        (
            400,
            {"errors": [{"code": 88, "message": "Rate limit exceeded"}]},
            "88: Rate limit exceeded",
        ),
        (
            401,
            [{"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"}],
            "INVALID_SESSION_ID: Session expired or invalid",
        ),
        (
            400,
            {
                "status": 400,
                "message": "Invalid param. Please see errorDetails for more information.",
                "errorDetails": {
                    "inputErrors": [
                        {
                            "description": "Too many metrics requested: 21, the maximum is 20",
                            "input": {"inputPath": {"fieldPath": "fields"}},
                            "code": "PARAM_INVALID",
                        }
                    ]
                },
            },
            "400: Invalid param. Please see errorDetails for more information. fields: Too"
            " many metrics requested: 21, the maximum is 20",
        ),
        (502, "<html><body>Bad gateway</body></html>", "Bad Gateway"),
        (500, "plain failure text", "plain failure text"),
    ],
)
def test_provider_message_shapes(status: int, body: Any, expected: str) -> None:
    if isinstance(body, str):
        response = httpx.Response(status, text=body)
    else:
        response = httpx.Response(status, json=body)
    assert provider_message(response) == expected


def test_a_single_string_secret_is_registered_whole(
    make_client: Any, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    token = "str-" + secrets.token_hex(10)
    client = make_client(secrets=token)
    with caplog.at_level(logging.DEBUG), pytest.raises(ProviderRequestError) as caught:
        client.get_json(f"/leaky/{key}", headers={"X-Anything": "1"}, params={"t": token})
    assert token not in str(caught.value)
    assert token not in caplog.text

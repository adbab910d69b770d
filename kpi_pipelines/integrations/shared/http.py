"""The HTTP layer every REST provider shares: retries, quotas, a request budget, a cache.

One `ProviderHttpClient` lives for one sync of one connection (it is not thread-safe).
Failures surface as the typed errors of `errors.py`; nothing it logs or raises contains a
registered secret.
"""

from __future__ import annotations

import email.utils
import json as jsonlib
import logging
import math
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

import httpx
import msgspec
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from kpi_pipelines.integrations.shared.bounds import (
    BoundedTransport,
    ProviderLimits,
    ResponseLimits,
    file_json_text,
)
from kpi_pipelines.integrations.shared.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderQuotaExhausted,
    ProviderRequestError,
    ProviderUnavailable,
    RequestBudgetExceeded,
)
from kpi_pipelines.integrations.shared.redaction import (
    install_redaction_filter,
    redact,
    register_secret,
)

logger = logging.getLogger("kpi_pipelines.http")
# httpx logs every request URL at INFO (query strings may carry access_token=...).
install_redaction_filter(
    logger.name,
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_RETRY_EXCEPTIONS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
_SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key"}
)
_MESSAGE_LIMIT = 500


@dataclass(frozen=True)
class RetryDecision:
    """A provider's verdict on one response, returned by the `classify` hook.

    `retry`: send the request again. `wait`: seconds to wait first (None: the default
    backoff, at least any Retry-After). `quota_reset_at`: when the provider's quota resets;
    the client waits until then, or raises ProviderQuotaExhausted when that is further away
    than `backoff_max` or `retry` is False.
    """

    retry: bool
    wait: float | None = None
    quota_reset_at: datetime | None = None


@dataclass
class HttpStats:
    """What one client did, for run metadata."""

    requests_sent: int = 0
    retries: int = 0
    cache_hits: int = 0
    seconds_waited: float = 0.0
    # False for a client without the in-sync cache: its metadata then has no hit count
    # (a 0 would read as "nothing repeated", not "nothing cached").
    cached: bool = field(default=True, compare=False)
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def add(self, *, requests: int = 0, retries: int = 0, waited: float = 0.0) -> None:
        """Count what a request did, from any thread (a sync listing several lists at once)."""
        with self._lock:
            self.requests_sent += requests
            self.retries += retries
            self.seconds_waited += waited

    def as_metadata(self) -> dict[str, int | float]:
        """Flat, prefixed values for a Dagster materialization."""
        return {
            "http_requests_sent": self.requests_sent,
            "http_retries": self.retries,
            **({"http_cache_hits": self.cache_hits} if self.cached else {}),
            "http_seconds_waited": round(self.seconds_waited, 3),
        }


class _RetryableFailure(Exception):
    """One attempt failed in a way worth retrying; never leaves this module."""

    def __init__(
        self, description: str, *, status: int | None, wait: float | None = None, floor: float = 0.0
    ) -> None:
        super().__init__(description)
        self.description = description
        self.status = status
        self.wait = wait
        self.floor = floor


@dataclass
class _Call:
    method: str
    url: str
    params: Any
    json: Any
    data: Any
    headers: Mapping[str, str] | None
    label: str
    expect_json: bool = False
    decoded: Any = None  # the body, when expect_json and it decoded
    # Reads a 2xx body (instead of expect_json's JSON); ValueError: ask again.
    decode: Callable[[httpx.Response], Any] | None = None
    anonymous: bool = False  # sent without the client's credentials (a file download)
    started: float = field(default_factory=time.monotonic)
    waited_before: float = 0.0
    attempts: int = 0
    refreshed: bool = False


class ProviderHttpClient:
    """A sync httpx client with the retry, quota, budget, cache and redaction rules."""

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | None = None,
        secrets: Sequence[str] = (),
        timeout: float = 30,
        max_attempts: int = 6,
        backoff_base: float = 0.5,
        backoff_max: float = 60,
        request_budget: int | None = None,
        classify: Callable[[httpx.Response], RetryDecision | None] | None = None,
        on_unauthorized: Callable[[], bool] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        cache: bool = True,
        cache_max_entries: int = 256,
        cache_max_bytes: int = 32 * 1024 * 1024,
        allowed_origins: Sequence[str] = (),
        file_origins: Sequence[str] = (),
        rng: random.Random | None = None,
        limits: ResponseLimits | None = None,
    ) -> None:
        """Create a client for one provider.

        `on_unauthorized` is called on a 401; if it returns True (a token was refreshed) the
        request is sent once more. Absolute URLs (next-page links) must share the origin of
        `base_url` or one of `allowed_origins`, so credentials never go to another host.
        The cache is bounded by `cache_max_entries` and `cache_max_bytes` (LRU) so memory does
        not grow with the size of an account. Every response is read within `limits` (the
        deployment's by default; see bounds.py): one over them raises ProviderResponseRefused
        and is not retried. `download_json` fetches files (an async report's result) from
        the base URL's origin or one of `file_origins`, without credentials.
        """
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if request_budget is not None and request_budget < 1:
            raise ValueError("request_budget must be at least 1 (or None for no budget)")
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.request_budget = request_budget
        self.stats = HttpStats(cached=cache)
        self._classify = classify
        self._on_unauthorized = on_unauthorized
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._cache_enabled = cache
        self._cache_max_entries = cache_max_entries
        self._cache_max_bytes = cache_max_bytes
        self._cache: OrderedDict[tuple[Any, ...], httpx.Response] = OrderedDict()
        self._cache_bytes = 0
        self._origins = {_origin(httpx.URL(self.base_url))} | {
            _origin(httpx.URL(origin)) for origin in allowed_origins
        }
        self._file_origins = self._origins | {_origin(httpx.URL(o)) for o in file_origins}
        self._limits = limits or ProviderLimits().response()
        self._timeout = httpx.Timeout(timeout)
        self._files: httpx.Client | None = None
        self.add_secrets(*([secrets] if isinstance(secrets, str) else secrets))
        self._register_header_secrets(headers or {})
        default_headers = httpx.Headers({"User-Agent": "kpi-pipelines"})
        default_headers.update(headers or {})
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=default_headers,
            auth=auth,
            timeout=self._timeout,
            transport=BoundedTransport(provider, self._limits),
        )

    def __repr__(self) -> str:
        return redact(f"ProviderHttpClient(provider={self.provider!r}, base_url={self.base_url!r})")

    def add_secrets(self, *secrets: str | None) -> None:
        """Register more secret values (e.g. a freshly refreshed access token)."""
        register_secret(*secrets)

    def set_headers(self, headers: Mapping[str, str]) -> None:
        """Replace or add default headers (e.g. a new Authorization after a token refresh)."""
        self._register_header_secrets(headers)
        self._client.headers.update(headers)

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Any = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        cacheable: bool | None = None,
    ) -> httpx.Response:
        """Send a request with retries and return the successful (< 400) response.

        GETs are cached unless `cacheable=False` (e.g. polling a job); other methods only
        with `cacheable=True`. Raises a ProviderError subclass on failure.
        """
        response, _ = self._perform(
            method,
            path_or_url,
            params=params,
            json=json,
            data=data,
            headers=headers,
            cacheable=cacheable,
            expect_json=False,
        )
        return response

    def _perform(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Any = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        cacheable: bool | None = None,
        expect_json: bool = False,
        decode: Callable[[httpx.Response], Any] | None = None,
        anonymous: bool = False,
    ) -> tuple[httpx.Response, Any]:
        """`request`, and with `expect_json` the decoded body (None when empty), or what
        `decode` reads of it: a successful response whose body is not JSON (cut short or
        mangled on the way) is asked for again like a 5xx. `anonymous`: without the
        client's credentials and headers (a file download; never cached)."""
        method = method.upper()
        self._register_header_secrets(headers or {})
        client = self._file_client() if anonymous else self._client
        probe = client.build_request(
            method, path_or_url, params=params, json=json, data=data, headers=headers
        )
        self._check_origin(probe.url, download=anonymous)
        call = _Call(
            method=method,
            url=path_or_url,
            params=params,
            json=json,
            data=data,
            headers=headers,
            # A presigned download's query is its credential: named without it.
            label=f"{method} {probe.url.copy_with(query=None) if anonymous else probe.url}",
            expect_json=expect_json,
            decode=decode,
            anonymous=anonymous,
            refreshed=anonymous,  # no credentials to refresh on a 401
            waited_before=self.stats.seconds_waited,
        )
        key = None if anonymous else self._cache_key(probe, json, headers, cacheable)
        if key is not None and key in self._cache:
            self._cache.move_to_end(key)
            self.stats.cache_hits += 1
            logger.debug("%s: %s served from the sync cache", self.provider, call.label)
            cached = self._cache[key]
            if decode is not None:
                return cached, decode(cached)
            return cached, (_json_or_none(cached) if expect_json else None)

        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_RetryableFailure),
            sleep=self._sleep_for,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            response = retrying(self._attempt, call)
        except _RetryableFailure as failure:
            raise ProviderUnavailable(
                self.provider,
                failure.description,
                attempts=call.attempts,
                elapsed=self._elapsed(call),
                status=failure.status,
            ) from None
        if key is not None and 200 <= response.status_code < 300:
            self._store(key, response)
        return response, call.decoded

    def get_json(
        self,
        path_or_url: str,
        *,
        params: Any = None,
        headers: Mapping[str, str] | None = None,
        cacheable: bool | None = None,
        decode: Callable[[httpx.Response], Any] | None = None,
    ) -> Any:
        """GET and decode the JSON body (None for an empty body), or what `decode` reads of
        the response (its body into a typed structure, its headers); a ValueError from it
        means the body was cut short or mangled on the way: it is asked for again."""
        _, decoded = self._perform(
            "GET",
            path_or_url,
            params=params,
            headers=headers,
            cacheable=cacheable,
            expect_json=decode is None,
            decode=decode,
        )
        return decoded

    def post_json(
        self,
        path_or_url: str,
        *,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        params: Any = None,
        headers: Mapping[str, str] | None = None,
        cacheable: bool = False,
        decode: Callable[[httpx.Response], Any] | None = None,
    ) -> Any:
        """POST (a JSON or form body) and decode the JSON response (None for an empty body),
        or what `decode` reads of it (as `get_json`)."""
        _, decoded = self._perform(
            "POST",
            path_or_url,
            params=params,
            json=json,
            data=data,
            headers=headers,
            cacheable=cacheable,
            expect_json=decode is None,
            decode=decode,
        )
        return decoded

    def download_json(self, url: str, *, gzipped: bool = False) -> Any:
        """GET a file the provider points at (an async report's result) and decode its JSON:
        sent without the client's credentials or headers (a presigned URL needs none, and a
        file host is not the API), from the base URL's origin or one of `file_origins`;
        gunzipped when `gzipped`, within the same limits as any response (bounds.py). A
        file cut short is asked for again like a 5xx."""
        what = f"GET {httpx.URL(url).path}"

        def decode(response: httpx.Response) -> Any:
            text = file_json_text(
                self.provider, what, response.content, self._limits, gzipped=gzipped
            )
            try:
                return msgspec.json.decode(text)
            except msgspec.DecodeError:
                raise ValueError(f"the file of {len(text):,} bytes is not JSON") from None

        _, decoded = self._perform("GET", url, cacheable=False, decode=decode, anonymous=True)
        return decoded

    def close(self) -> None:
        """Release connections and drop the cache."""
        self._client.close()
        if self._files is not None:
            self._files.close()
            self._files = None
        self._cache.clear()
        self._cache_bytes = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- one attempt -------------------------------------------------------------------

    def _attempt(self, call: _Call) -> httpx.Response:
        call.attempts += 1
        while True:
            response = self._send(call)
            decision = self._classify(response) if self._classify is not None else None
            if decision is None and response.status_code == 401 and self._refresh(call):
                continue
            judged = self._judge(call, response, decision)
            if call.decode is not None and 200 <= judged.status_code < 300:
                try:
                    call.decoded = call.decode(judged)
                except ValueError as exc:
                    raise _RetryableFailure(
                        f"HTTP {judged.status_code}: {exc} (cut short or mangled on the way?)"
                        f" ({call.label})",
                        status=judged.status_code,
                    ) from None
            elif call.expect_json and 200 <= judged.status_code < 300:
                try:
                    call.decoded = _json_or_none(judged)
                except ValueError:
                    raise _RetryableFailure(
                        f"HTTP {judged.status_code} with a body that is not JSON"
                        f" ({len(judged.content)} bytes; cut short or mangled on the way?)"
                        f" ({call.label})",
                        status=judged.status_code,
                    ) from None
            return judged

    def _send(self, call: _Call) -> httpx.Response:
        if self.request_budget is not None and self.stats.requests_sent >= self.request_budget:
            raise RequestBudgetExceeded(self.provider, self.request_budget)
        client = self._file_client() if call.anonymous else self._client
        # Built afresh each time so that headers changed by a token refresh are used.
        request = client.build_request(
            call.method,
            call.url,
            params=call.params,
            json=call.json,
            data=call.data,
            headers=call.headers,
        )
        self.stats.requests_sent += 1
        started = time.monotonic()
        try:
            response = client.send(request)
        except _RETRY_EXCEPTIONS as exc:
            description = f"{type(exc).__name__}: {exc or 'no detail'} ({call.label})"
            logger.debug("%s: %s", self.provider, description)
            raise _RetryableFailure(description, status=None) from None
        except httpx.HTTPError as exc:
            raise ProviderRequestError(
                self.provider, f"{call.label} could not be sent: {type(exc).__name__}: {exc}"
            ) from None
        logger.debug(
            "%s: %s -> HTTP %d in %.3f s",
            self.provider,
            call.label,
            response.status_code,
            time.monotonic() - started,
        )
        return response

    def _refresh(self, call: _Call) -> bool:
        if self._on_unauthorized is None or call.refreshed:
            return False
        call.refreshed = True
        refreshed = bool(self._on_unauthorized())
        logger.info(
            "%s: HTTP 401 on %s; credentials %s",
            self.provider,
            call.label,
            "refreshed, sending once more" if refreshed else "could not be refreshed",
        )
        return refreshed

    def _judge(
        self, call: _Call, response: httpx.Response, decision: RetryDecision | None
    ) -> httpx.Response:
        status = response.status_code
        if decision is not None:
            return self._apply(call, response, decision)
        if status < 400:
            return response
        if status in RETRY_STATUSES:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is not None and retry_after > self.backoff_max:
                raise self._quota(call, response, _now() + timedelta(seconds=retry_after))
            raise _RetryableFailure(
                self._describe(call, response), status=status, floor=retry_after or 0.0
            )
        raise self._failure(call, response)

    def _apply(
        self, call: _Call, response: httpx.Response, decision: RetryDecision
    ) -> httpx.Response:
        reset_at = _aware(decision.quota_reset_at) if decision.quota_reset_at else None
        if decision.wait is not None:
            wait: float | None = max(0.0, decision.wait)
        elif reset_at is not None:
            wait = max(0.0, (reset_at - _now()).total_seconds())
        else:
            wait = None
        beyond_patience = wait is not None and wait > self.backoff_max
        if beyond_patience or (reset_at is not None and not decision.retry):
            retry_at = reset_at or _now() + timedelta(seconds=wait or 0.0)
            raise self._quota(call, response, retry_at)
        if decision.retry:
            floor = 0.0
            if wait is None:
                floor = parse_retry_after(response.headers.get("Retry-After")) or 0.0
                if floor > self.backoff_max:
                    raise self._quota(call, response, _now() + timedelta(seconds=floor))
            raise _RetryableFailure(
                self._describe(call, response), status=response.status_code, wait=wait, floor=floor
            )
        if response.status_code < 400:
            return response
        raise self._failure(call, response)

    def _failure(self, call: _Call, response: httpx.Response) -> ProviderError:
        status = response.status_code
        detail = f"{provider_message(response)} ({call.label})"
        if status in (401, 403):
            return ProviderAuthError(self.provider, detail, status=status)
        if status == 429 or status >= 500:
            return ProviderUnavailable(
                self.provider,
                self._describe(call, response),
                attempts=call.attempts,
                elapsed=self._elapsed(call),
                status=status,
            )
        return ProviderRequestError(self.provider, detail, status=status)

    def _quota(
        self, call: _Call, response: httpx.Response, retry_at: datetime
    ) -> ProviderQuotaExhausted:
        return ProviderQuotaExhausted(
            self.provider,
            self._describe(call, response),
            retry_at=retry_at,
            status=response.status_code,
        )

    def _elapsed(self, call: _Call) -> float:
        # With an injected (recording) sleep the clock does not move, so count the waits too.
        return max(time.monotonic() - call.started, self.stats.seconds_waited - call.waited_before)

    def _describe(self, call: _Call, response: httpx.Response) -> str:
        return f"HTTP {response.status_code}: {provider_message(response)} ({call.label})"

    # -- tenacity hooks ----------------------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome else None
        if isinstance(failure, _RetryableFailure) and failure.wait is not None:
            return failure.wait
        floor = failure.floor if isinstance(failure, _RetryableFailure) else 0.0
        # Full jitter: uniform in [0, base * 2**retry], capped.
        cap = min(self.backoff_max, self.backoff_base * 2 ** (state.attempt_number - 1))
        return max(self._rng.uniform(0, cap), floor)

    def _before_sleep(self, state: RetryCallState) -> None:
        self.stats.retries += 1
        failure = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        logger.warning(
            "%s: %s; retrying in %.2f s (attempt %d of %d)",
            self.provider,
            getattr(failure, "description", failure),
            wait,
            state.attempt_number + 1,
            self.max_attempts,
        )

    def _sleep_for(self, seconds: float) -> None:
        self.stats.seconds_waited += seconds
        self._sleep(seconds)

    # -- cache and helpers -------------------------------------------------------------

    def _cache_key(
        self,
        request: httpx.Request,
        json: Any,
        headers: Mapping[str, str] | None,
        cacheable: bool | None,
    ) -> tuple[Any, ...] | None:
        if not self._cache_enabled:
            return None
        if request.method == "GET":
            if cacheable is False:
                return None
        elif not cacheable:
            return None
        url = request.url
        if json is not None:
            body = jsonlib.dumps(json, sort_keys=True, default=str).encode()
        else:
            body = request.content
        return (
            request.method,
            str(url.copy_with(query=None, fragment=None)),
            tuple(sorted(url.params.multi_items())),
            body,
            tuple(sorted((name.lower(), value) for name, value in (headers or {}).items())),
        )

    def _store(self, key: tuple[Any, ...], response: httpx.Response) -> None:
        size = len(response.content)
        if size > self._cache_max_bytes or self._cache_max_entries < 1:
            return
        self._cache[key] = response
        self._cache_bytes += size
        while (
            len(self._cache) > self._cache_max_entries or self._cache_bytes > self._cache_max_bytes
        ):
            _, evicted = self._cache.popitem(last=False)
            self._cache_bytes -= len(evicted.content)

    def _check_origin(self, url: httpx.URL, *, download: bool = False) -> None:
        origins = self._file_origins if download else self._origins
        if _origin(url) not in origins:
            what = "to download from" if download else "to send credentials to"
            raise ValueError(
                redact(
                    f"{self.provider}: refusing {what} {url.scheme}://{url.host}; only"
                    f" {', '.join(sorted(origins))} are allowed"
                    f" ({'file_origins' if download else 'allowed_origins'})"
                )
            )

    def _file_client(self) -> httpx.Client:
        """A client for downloads: no credentials, no headers but ours, and a transport that
        does not track JSON nesting on the wire (a gzip file is binary: file_json_text
        tracks it once decompressed)."""
        if self._files is None:
            self._files = httpx.Client(
                base_url=self.base_url,
                headers={"User-Agent": "kpi-pipelines"},
                timeout=self._timeout,
                transport=BoundedTransport(
                    self.provider,
                    ResponseLimits(self._limits.max_body_bytes, self._limits.max_wire_bytes, None),
                ),
            )
        return self._files

    def _register_header_secrets(self, headers: Mapping[str, str]) -> None:
        for name, value in headers.items():
            if name.lower() in _SENSITIVE_HEADERS:
                # Both the whole value and the credential after the scheme ("Bearer xyz").
                register_secret(value, value.partition(" ")[2].strip())


def _json_or_none(response: httpx.Response) -> Any:
    """The decoded body, None when empty; ValueError when it is not JSON."""
    return response.json() if response.content else None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After value (delta-seconds or an HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, (_aware(when) - _now()).total_seconds())


def provider_now(response: httpx.Response) -> datetime:
    """The provider's now, from its response's Date header (a provider that reports whole
    days decides which day is today by its own clock), else ours when it sent none."""
    try:
        sent = email.utils.parsedate_to_datetime(response.headers.get("date", ""))
    except (TypeError, ValueError, IndexError):
        return _now()
    return _aware(sent).astimezone(UTC)


def provider_message(response: httpx.Response) -> str:
    """The provider's error message, best effort from the common JSON error shapes; redacted."""
    try:
        body = response.json()
    except ValueError:
        body = None
    message = _message_from(body)
    if not message:
        text = response.text.strip()
        # An HTML error page (a proxy's 502) says nothing useful; the reason phrase does.
        if text and not text.startswith("<"):
            message = text
        else:
            message = response.reason_phrase or f"HTTP {response.status_code}"
    return _shorten(message)


def _message_from(body: Any) -> str | None:
    if isinstance(body, list):  # Salesforce: [{"errorCode", "message"}]; X's "errors" list
        parts = [part for part in (_message_from(item) for item in body[:3]) if part]
        return "; ".join(parts) or None
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict):  # Google, Stripe, Meta: {"error": {"message", "code", ...}}
        return _message_from(error)
    if isinstance(error, str):  # OAuth: {"error": "invalid_grant", "error_description"}
        description = body.get("error_description")
        return f"{error}: {description}" if description else error
    message = body.get("message") or body.get("error_description") or body.get("detail")
    if not message and isinstance(body.get("errors"), list):  # X: {"errors": [{"code", "message"}]}
        return _message_from(body["errors"])
    codes = [body.get(name) for name in ("errorCode", "code", "errorType", "category", "status")]
    code = next((c for c in codes if isinstance(c, str) and c), None)
    if code is None:
        code = next((c for c in codes if isinstance(c, int) and not isinstance(c, bool)), None)
    if message and isinstance(body.get("errorDetails"), dict):  # Rest.li (LinkedIn)
        message = f"{message} {_input_errors(body['errorDetails'])}".strip()
    if message and code is not None and str(code) not in str(message):
        return f"{code}: {message}"
    if message:
        return str(message)
    return str(code) if code is not None else None


def _input_errors(details: dict[str, Any]) -> str:
    """Rest.li's `errorDetails.inputErrors` (its message only says to read them): which
    parameter was refused and why."""
    errors = details.get("inputErrors")
    parts = []
    for error in errors[:3] if isinstance(errors, list) else []:
        if not isinstance(error, dict) or not isinstance(error.get("description"), str):
            continue
        where = error.get("input", {}).get("inputPath", {}).get("fieldPath")
        where = where if isinstance(where, str) else None
        parts.append(f"{where}: {error['description']}" if where else error["description"])
    return "; ".join(parts)


def _shorten(text: str) -> str:
    # Redact before cutting: a cut could leave half a secret that no longer matches.
    text = redact(" ".join(text.split()))
    return text if len(text) <= _MESSAGE_LIMIT else text[:_MESSAGE_LIMIT] + "..."


def _origin(url: httpx.URL) -> str:
    default_port = {"http": 80, "https": 443}.get(url.scheme)
    return f"{url.scheme}://{url.host}:{url.port or default_port}"


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _now() -> datetime:
    return datetime.now(UTC)

"""The Stripe adapter: the object engine's hooks over the official SDK.

The object engine (engines/objects.py) lists the streams of the spec, lands each object as
Stripe sent it in raw_records, and computes the metrics in SQL over what is landed
(metrics.py; `transform` turns one row of that query into its points). What is Stripe's
own is here:

- Pages are read with the SDK's requestor (auth, API version, Stripe's error bodies), which
  skips building SDK objects for every record: a page is only split into its objects' JSON
  texts, and the next page is fetched while this one is validated (`starting_after` the
  last id, known on arrival).
- Retries are ours: every 429 (the SDK retries one only when Stripe sends
  `Stripe-Should-Retry: true`, and Stripe's 429s usually carry no such header), then as
  Stripe documents (see `_attempt`), with exponential backoff and jitter within a budget.
- Subscription events (`customer.subscription.*`, with `previous_attributes`) are landed
  too, as the stream `subscription_events`: they date every change of a subscription's
  status, items and discounts (see metrics.py).
- Changes come from `/v1/events`: an incremental sync reads the events from a little
  before the newest one already read (the list is eventually consistent: an event may
  appear after later ones, or share their second), skips those already applied by id, and
  names every changed object and its customer. Events are kept 30 days: an older cursor
  means a full read. Balance transactions have no events: they are listed again from a
  day before the cursor.
- An invoice's embedded line list stops after its first page: the rest is read before the
  invoice is validated and landed.
- The SDK (sdk.py, imported when a sync first talks to Stripe) sends through httpx over
  the kit's BoundedTransport, so a Stripe body is read within the same limits as every
  other provider's (bounds.py), and an event is checked by the record guard before
  anything of it is used.

- A Connect `account_id` is proved at every sync: `GET /v1/account` with the connection's
  own key must answer that account. The proof, kept on the connection by the control
  plane, is what lets the webhook receiver route that account's Connect events here.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import msgspec
from pydantic import BaseModel, PrivateAttr, ValidationError
from sqlalchemy.engine import Connection as DbConnection
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
)

from kpi_pipelines import settings
from kpi_pipelines.integrations.shared.engines.objects import (
    Changes,
    Ledger,
    ObjectAdapter,
    ObjectHead,
    Relisting,
    Stream,
)
from kpi_pipelines.integrations.shared.errors import (
    ProviderAuthError,
    ProviderRequestError,
    ProviderUnavailable,
)
from kpi_pipelines.integrations.shared.http import HttpStats
from kpi_pipelines.integrations.shared.paging import (
    Page,
    PageRequest,
    PagingError,
    StartingAfter,
    items,
)
from kpi_pipelines.integrations.shared.secrets import read_secret
from kpi_pipelines.integrations.shared.validation import describe_validation, validated_settings
from kpi_pipelines.integrations.stripe import types as st
from kpi_pipelines.integrations.stripe.metrics import (
    MetricsRow,
    MetricsScope,
    compute_stripe_metrics,
    metric_points,
    reporting_today,
)
from kpi_pipelines.models import KPIData
from kpi_pipelines.warehouse.control import record_proved_account

if TYPE_CHECKING:
    import stripe

PROVIDER = "stripe"
DEFAULT_BASE_URL = "https://api.stripe.com"
API_VERSION = "2025-03-31.basil"
EVENT_RETENTION = timedelta(days=30)
# The stream whose objects have no events of their own, listed again from a day back.
UNEVENTFUL_STREAM = "balance_transactions"
# The landed subscription events, and the types it holds (Stripe allows 20 per list call).
SUBSCRIPTION_EVENTS = "subscription_events"
SUBSCRIPTION_EVENT_TYPES = (
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "customer.subscription.pending_update_applied",
    "customer.subscription.pending_update_expired",
)
STREAM_BY_OBJECT = {
    "customer": "customers",
    "product": "products",
    "price": "prices",
    "coupon": "coupons",
    "subscription": "subscriptions",
    "invoice": "invoices",
    "charge": "charges",
    "refund": "refunds",
}
_MESSAGE_LIMIT = 300
# The cursor's mark that the subscription events of the last 30 days have been landed.
_EVENTS_LANDED = "subscription_events_landed"

T = TypeVar("T")


class StripeAdapter(ObjectAdapter):
    """Stripe via the official SDK; the connection names the env var of its secret key."""

    provider: ClassVar[str] = PROVIDER
    # The SDK's requestor is safe to share between threads (prefetch, lists listed at once).
    prefetch_pages: ClassVar[bool] = True

    base_url: str | None = None  # default: KPI_STRIPE_BASE_URL, else api.stripe.com
    api_version: str = API_VERSION
    timeout_seconds: float = 60.0  # one HTTP request
    page_size: int = 100
    # A failed request (429, 409, 5xx, timeout, a body we cannot read) is sent again after an
    # exponential backoff with jitter: at most this many retries ...
    max_network_retries: int = 6
    retry_backoff_seconds: float = 0.5  # first wait (each later one doubles, jittered)
    retry_backoff_max_seconds: float = 20.0  # longest single wait
    # ... and no retry that would start later than this after the request's first attempt.
    retry_budget_seconds: float = 120.0
    # Incremental syncs re-read the events created this long before the newest one already
    # read (late-visible events, events of the same second) and skip those already applied.
    event_overlap_seconds: int = 300
    # Ids of applied events kept in the cursor (those within the overlap); beyond this the
    # oldest are forgotten and re-applied, which re-fetches an object: harmless, only slower.
    max_remembered_events: int = 5000

    _stripe: stripe.StripeClient | None = PrivateAttr(default=None)
    _newest_event: dict[str, Any] | None = PrivateAttr(default=None)
    _scope: MetricsScope | None = PrivateAttr(default=None)
    _stats: HttpStats = PrivateAttr(default_factory=lambda: HttpStats(cached=False))
    _connected_at: datetime = PrivateAttr(default_factory=lambda: datetime.now(UTC))

    def check_connection(self) -> None:
        # No cache: a sync never asks Stripe for the same thing twice (changed objects are
        # keyed by id, each list page follows the last), so there would be no hits to count.
        self._stats = HttpStats(cached=False)
        self._connected_at = datetime.now(UTC)
        # One cheap call proves the key: the newest event (also tells how fresh we are).
        self._newest_event = self._first("/v1/events", {"limit": 1})
        self._prove_account()

    def _prove_account(self) -> None:
        """A Connect `account_id` routes that account's webhook events to this connection
        only once Stripe says the connection's own key belongs to it (`GET /v1/account`
        answers the key's account): recorded on the connection, or taken back, every sync.
        A key of another account fails the sync, saying what to fix."""
        connection = self.context.connection
        claimed = validated_settings(connection, st.StripeConnectionSettings).account_id
        if claimed is None or connection.id is None:
            return
        raw = self._read("/v1/account", {}, msgspec.Raw)
        try:
            account = st.Account.model_validate_json(bytes(raw))
        except ValidationError as exc:
            raise ProviderRequestError(
                PROVIDER, f"/v1/account sent no account we can read: {describe_validation(exc)}"
            ) from None
        proved = account.id == claimed
        record_proved_account(self.context.warehouse, connection.id, claimed if proved else None)
        if not proved:
            raise ValueError(
                f"the stripe connection {connection.name!r} of workspace"
                f" {connection.workspace_id!r} has account_id {claimed!r}, but its api_key"
                f" belongs to the Stripe account {account.id!r}; Connect events go only to a"
                f" connection whose own key belongs to their account: set account_id to"
                f" {account.id!r} (or remove it), or name a key of {claimed!r}"
            )

    def disconnect(self) -> None:
        self._stripe = None
        self._newest_event = None
        self._scope = None
        super().disconnect()

    def request_stats(self) -> dict[str, int | float]:
        return self._stats.as_metadata()

    # --- the object engine's hooks: reading ----------------------------------------------

    def paginator(self, stream: Stream) -> StartingAfter:
        return StartingAfter(_id_of)

    def fetch_page(
        self, stream: Stream, filters: Mapping[str, Any], request: PageRequest
    ) -> Page[bytes]:
        return self._page(stream.path, {**dict(stream.params), **filters}, request)

    def retrieve(self, stream: Stream, object_id: str) -> bytes | None:
        # The list's expansions, minus their "data." prefix.
        expand = [
            path.removeprefix("data.")
            for key, value in stream.params
            if key == "expand"
            for path in value
        ]
        params = {"expand": expand} if expand else {}
        try:
            obj = bytes(self._read(f"{stream.path}/{object_id}", params, msgspec.Raw))
        except ProviderRequestError as exc:
            if exc.status == 404:
                return None  # deleted since the event; its landed copy stays as history
            raise
        try:
            if msgspec.json.decode(obj, type=_Deleted).deleted:
                return None  # a deleted customer answers {"id", "deleted": true}: keep history
        except msgspec.DecodeError:
            pass  # not even an object: validation names it
        return obj

    def complete(self, stream: Stream, obj: bytes, model: BaseModel) -> bytes | None:
        if isinstance(model, st.Invoice) and model.lines.has_more:
            return self._with_all_lines(obj)
        if isinstance(model, st.Price) and (missing := model.options_without_tiers()):
            return self._with_option_tiers(stream, model.id, missing)
        if isinstance(model, st.SubscriptionEvent) and model.data is None:
            return None  # not a subscription's event: nothing to land
        return obj

    def head(self, obj: bytes) -> ObjectHead:
        return _head(obj)

    # --- the object engine's hooks: changes ----------------------------------------------

    def needs_full_read(self, cursor: Mapping[str, Any]) -> bool:
        newest = (self._newest_event or {}).get("created")
        created = _EventPosition.from_cursor(cursor).created
        return created is None or (
            newest is not None and newest - created > EVENT_RETENTION.total_seconds()
        )

    def changes(self, cursor: Mapping[str, Any], ledger: Ledger) -> Changes:
        position = _EventPosition.from_cursor(cursor)
        since = position.created
        assert since is not None, "needs_full_read() said a full read"
        changed, position, subscription_events = self._read_events(
            since - self.event_overlap_seconds, set(position.seen), ledger, floor=since
        )
        overlap = since - int(timedelta(days=1).total_seconds())
        relist: dict[str, Mapping[str, Any]] = {UNEVENTFUL_STREAM: {"created[gte]": overlap}}
        if not cursor.get(_EVENTS_LANDED):
            # landed before subscription events were: read Stripe's 30 days of them once
            relist[SUBSCRIPTION_EVENTS] = {}
        return Changes(
            objects={
                stream: {object_id: _ts(created) for object_id, created in ids.items()}
                for stream, ids in changed.items()
            },
            cursor={**position.as_cursor(), _EVENTS_LANDED: True},
            since=_ts(since),
            # Objects that have no events of their own are listed again with an overlap,
            # which the upsert makes harmless.
            relist=relist,
            records={SUBSCRIPTION_EVENTS: subscription_events},
        )

    def relisting(self, cursor: Mapping[str, Any], ledger: Ledger) -> Relisting:
        """The events already visible are remembered first: the lists read afterwards show
        their effects, so the next incremental sync skips them."""
        position = _EventPosition.from_cursor(cursor)
        newest = (self._newest_event or {}).get("created")
        if newest is not None:
            position = self._read_events(
                newest - self.event_overlap_seconds, set(), ledger, floor=newest
            )[1]
        return Relisting(cursor={**position.as_cursor(), _EVENTS_LANDED: True}, bound=newest)

    # --- the object engine's hooks: metrics ----------------------------------------------

    def metrics(self, db: DbConnection) -> Iterator[MetricsRow]:
        workspace = self.context.workspace
        self._scope = MetricsScope(
            workspace_id=workspace.id,
            reporting_currency=workspace.reporting_currency,
            timezone=workspace.timezone,
            today=self._today(),
            observed_at=self._observed_at(),
            landed_since=self._connected_at,
        )
        return compute_stripe_metrics(db, self._scope)

    def transform(self, raw: MetricsRow) -> list[KPIData]:
        """One row of the metrics query (a day's MRR, movements, counts and cohort ratios,
        or one money metric of a day) -> its points."""
        assert self._scope is not None, "transform() runs inside sync()"
        return metric_points(self._scope, raw)

    # --- events ----------------------------------------------------------------------------

    def _read_events(
        self,
        window_start: int,
        seen: set[str],
        ledger: Ledger,
        *,
        floor: int | None = None,
    ) -> tuple[dict[str, dict[str, int]], _EventPosition, list[bytes]]:
        """The objects changed by events created since `window_start` that are not in `seen`
        (stream -> id -> newest event time), the cursor to keep (the newest event time, at
        least `floor`, and the ids of the events within the overlap before it), and the
        texts of the subscription events among them."""
        changed: dict[str, dict[str, int]] = defaultdict(dict)
        subscription_events: list[bytes] = []
        newest: int | None = None
        recent: list[tuple[int, str]] = []
        for text in self._list_items("/v1/events", {"created[gte]": window_start}):
            if problem := ledger.guard.problem(text):
                ledger.reject("events", text, problem)  # nothing of it is used
                continue
            head = _head(text)
            if head.created is not None:
                # newest first: the first event read is the newest one
                newest = head.created if newest is None else newest
                if head.id and head.created >= newest - self.event_overlap_seconds:
                    recent.append((head.created, head.id))
            if head.id in seen:
                continue  # applied by an earlier sync (read again in the overlap)
            try:
                event = st.Event.model_validate_json(text)
            except ValidationError as exc:
                ledger.reject("events", text, exc)
                continue
            _note_change(changed, event)
            if event.type in SUBSCRIPTION_EVENT_TYPES:
                subscription_events.append(text)
        if floor is not None:
            newest = floor if newest is None else max(newest, floor)
        if newest is None:
            return changed, _EventPosition(None), subscription_events
        recent = sorted(
            (r for r in recent if r[0] >= newest - self.event_overlap_seconds), reverse=True
        )
        return (
            changed,
            _EventPosition(
                newest, tuple(event_id for _, event_id in recent[: self.max_remembered_events])
            ),
            subscription_events,
        )

    # --- reading -------------------------------------------------------------------------

    def _with_all_lines(self, invoice_json: bytes) -> bytes | None:
        """The invoice with every line (an embedded line list stops after its first page);
        None when the invoice no longer exists."""
        invoice = msgspec.json.decode(invoice_json)  # validated as an Invoice already
        lines = invoice["lines"]
        data = list(lines["data"])
        last = data[-1]["id"] if data else None
        try:
            for line in self._list_items(f"/v1/invoices/{invoice['id']}/lines", {}, after=last):
                data.append(msgspec.json.decode(line))
        except ProviderRequestError as exc:
            if exc.status == 404:
                return None
            raise
        return msgspec.json.encode({**invoice, "lines": {**lines, "data": data, "has_more": False}})

    def _with_option_tiers(
        self, stream: Stream, price_id: str, currencies: list[str]
    ) -> bytes | None:
        """A tiered price read again with the tiers of its currency options (each must be
        expanded by name, `currency_options.<currency>.tiers`, which a list cannot ask for
        before it knows the currencies); None when the price no longer exists."""
        expand = ["tiers", "currency_options", *(f"currency_options.{c}.tiers" for c in currencies)]
        try:
            return bytes(self._read(f"{stream.path}/{price_id}", {"expand": expand}, msgspec.Raw))
        except ProviderRequestError as exc:
            if exc.status == 404:
                return None
            raise

    def _first(self, path: str, params: dict[str, Any]) -> dict[str, Any] | None:
        page = self._read(path, params, _Page)
        return msgspec.json.decode(page.data[0]) if page.data else None

    def _list_items(
        self, path: str, params: dict[str, Any], *, after: str | None = None
    ) -> Iterator[bytes]:
        """The JSON text of every object of a list endpoint, newest first (the next page
        fetched while the caller handles this one)."""

        def fetch(request: PageRequest) -> Page[bytes]:
            return self._page(path, params, request)

        try:
            yield from items(StartingAfter(_id_of, start=after), fetch, prefetch=True)
        except PagingError as exc:
            raise ProviderUnavailable(PROVIDER, f"{path} {exc}") from None

    def _page(self, path: str, params: Mapping[str, Any], request: PageRequest) -> Page[bytes]:
        """One page, only split into its objects' texts (never decoded into Python objects)."""
        page = self._read(path, {**params, "limit": self.page_size, **request.query}, _Page)
        return Page(items=[bytes(raw) for raw in page.data], has_more=page.has_more)

    def _read(self, path: str, params: dict[str, Any], into: type[T]) -> T:
        """GET and decode into `into`, retrying what is worth retrying (see `_attempt`).

        A body cut short on the way, or one that is not JSON at all (a proxy's error page
        with status 200), is a transport fault too: it is asked for again.
        """
        started = time.monotonic()
        attempts = 0

        def attempt() -> T:
            nonlocal attempts
            attempts += 1
            self._stats.add(requests=1)
            body = self._attempt(path, params)
            try:
                return msgspec.json.decode(body, type=into)
            except msgspec.DecodeError as exc:  # also a valid JSON of the wrong shape
                raise _Failure(f"{path} sent a body we cannot read: {exc}", retry=True) from None

        retrying = Retrying(
            stop=stop_after_attempt(self.max_network_retries + 1)
            | stop_before_delay(self.retry_budget_seconds),
            wait=self._backoff,
            retry=retry_if_exception(lambda exc: isinstance(exc, _Failure) and exc.retry),
            before_sleep=self._log_retry(path),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _Failure as failure:
            elapsed = time.monotonic() - started
            if attempts == 1:  # not retried: Stripe said so, say that instead of "1 attempts"
                raise ProviderUnavailable(
                    PROVIDER, failure.description, status=failure.status
                ) from None
            raise ProviderUnavailable(
                PROVIDER,
                failure.description,
                attempts=attempts,
                elapsed=elapsed,
                status=failure.status,
            ) from None

    def _attempt(self, path: str, params: dict[str, Any]) -> bytes:
        """One GET through the SDK's own requestor (auth, Stripe-Version, error bodies) with
        its retries off, returning the body unparsed.

        `StripeClient.raw_request` parses every body into OrderedDicts, which was a quarter
        of the sync's CPU time; the adapter only splits a page into its objects' JSON texts
        and validates each text with pydantic. The requestor is private API, hence the
        `stripe` pin to one major version. The body comes back as a stream (`ReadBody`, read
        in full by then): a plain body is turned into a debug log line (decoded and repr'd,
        about 4 ms a page under the GIL, on the way to the next page) even when nothing
        logs it.

        Retried (as `_Failure`): every 429 (Stripe sends no Retry-After, and rarely
        Stripe-Should-Retry), then as Stripe documents: Stripe-Should-Retry true or false
        decides; without it 409 and 5xx are retried, other statuses are not; network errors
        and timeouts are.
        """
        from kpi_pipelines.integrations.stripe import sdk

        requestor = self._client()._requestor
        try:
            stream, status, headers = requestor.request_raw(
                "get",
                path,
                params=params,
                is_streaming=True,
                base_address="api",
                api_mode="V1",
                usage=["raw_request"],
            )
        except sdk.ConnectionFailed as exc:
            message = f"{path}: {sdk.message_of(exc, _MESSAGE_LIMIT)}"
            raise _Failure(message, retry=bool(exc.should_retry)) from None
        body = stream.read() if isinstance(stream, sdk.ReadBody) else stream
        if 200 <= status < 300:
            return body if isinstance(body, bytes) else str(body).encode()
        error = sdk.error_of(requestor, body, status, headers)
        should_retry = _header(headers, "stripe-should-retry")
        # the SDK builds some errors (RateLimitError) without Stripe's code: read it from the body
        code = error.code or getattr(error.error, "code", None)
        description = (
            f"HTTP {status}{f' {code}' if code else ''}: {sdk.message_of(error, _MESSAGE_LIMIT)}"
        )
        if status == 429:
            raise _Failure(description, status=status, retry=True)
        if should_retry == "false" and (status == 409 or status >= 500):
            raise _Failure(
                f"{description} (Stripe-Should-Retry: false, so not retried)",
                status=status,
                retry=False,
            )
        if should_retry == "true" or (should_retry is None and (status == 409 or status >= 500)):
            raise _Failure(description, status=status, retry=True)
        if isinstance(error, sdk.AUTH_ERRORS):
            raise ProviderAuthError(PROVIDER, sdk.message_of(error, _MESSAGE_LIMIT), status=status)
        if status >= 500 or status == 409:
            raise _Failure(description, status=status, retry=False)
        raise ProviderRequestError(
            PROVIDER, f"{path}: {sdk.message_of(error, _MESSAGE_LIMIT)}", status=status
        )

    def _backoff(self, retry_state: RetryCallState) -> float:
        """Exponential backoff with equal jitter: half the step fixed, half random."""
        step = min(
            self.retry_backoff_max_seconds,
            self.retry_backoff_seconds * 2 ** (retry_state.attempt_number - 1),
        )
        return step / 2 + random.uniform(0, step / 2)

    def _log_retry(self, path: str) -> Callable[[RetryCallState], None]:
        def log(retry_state: RetryCallState) -> None:
            failure = retry_state.outcome.exception() if retry_state.outcome else None
            what = failure.description if isinstance(failure, _Failure) else repr(failure)
            self.context.log.warning(
                f"stripe: GET {path} attempt {retry_state.attempt_number} failed ({what});"
                f" retrying in {retry_state.upcoming_sleep:.2f} s"
            )

        return log

    def _sleep(self, seconds: float) -> None:
        self._stats.add(retries=1, waited=seconds)
        time.sleep(seconds)

    def _client(self) -> stripe.StripeClient:
        if self._stripe is None:
            key = read_secret(self.context.connection, "api_key")
            validated_settings(self.context.connection, st.StripeConnectionSettings)
            base = settings.provider_base_url(PROVIDER, DEFAULT_BASE_URL, self.base_url)
            from kpi_pipelines.integrations.stripe import sdk

            # the SDK's retries off: ours, in _read
            self._stripe = sdk.new_client(
                key,
                base,
                self.api_version,
                self.spec.limits.response(),
                timeout=self.timeout_seconds,
            )
        return self._stripe

    def _observed_at(self) -> int:
        """When the objects this sync read were true, in Stripe's clock: its newest event at
        the start of the sync (nothing changed since without an event), else now."""
        newest = (self._newest_event or {}).get("created")
        return int(newest) if newest is not None else int(datetime.now(UTC).timestamp())

    def _today(self) -> date:
        newest = (self._newest_event or {}).get("created")
        now = datetime.now(UTC)
        if newest is not None:
            now = max(now, _ts(newest))
        return reporting_today(now, self.context.workspace.timezone)


@dataclass(frozen=True)
class _EventPosition:
    """Where the events cursor stands: the newest event time read, and the ids of the
    events created within the overlap before it (already applied, so skipped when read
    again)."""

    created: int | None
    seen: tuple[str, ...] = ()

    @classmethod
    def from_cursor(cls, cursor: Mapping[str, Any]) -> _EventPosition:
        return cls(cursor.get("last_event_created"), tuple(cursor.get("seen_event_ids") or ()))

    def as_cursor(self) -> dict[str, Any]:
        return {"last_event_created": self.created, "seen_event_ids": list(self.seen)}


class _Failure(Exception):
    """One attempt failed; `retry` says whether another attempt may help. Never leaves
    this module (it becomes ProviderUnavailable)."""

    def __init__(self, description: str, *, status: int | None = None, retry: bool) -> None:
        super().__init__(description)
        # ProviderUnavailable ends the message with its own full stop
        self.description = description[:_MESSAGE_LIMIT].rstrip(".")
        self.status = status
        self.retry = retry


def _note_change(changed: dict[str, dict[str, int]], event: st.Event) -> None:
    """Remember the object an event changed, and its customer: Stripe changes a customer's
    own fields (currency, balance, next_invoice_sequence, delinquent) as a side effect of its
    invoices and charges, so re-reading it keeps the landed customer as a full read sees it."""
    obj = event.changed_object
    created = event.created or 0
    stream = STREAM_BY_OBJECT.get(str(obj.get("object", "")))
    if stream and isinstance(obj.get("id"), str):
        changed[stream][obj["id"]] = max(changed[stream].get(obj["id"], 0), created)
    customer = obj.get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    if stream not in (None, "customers") and isinstance(customer, str):
        changed["customers"][customer] = max(changed["customers"].get(customer, 0), created)


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    value = headers.get(name)
    if value is None and isinstance(headers, Mapping):  # a plain dict: compare names ourselves
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value.strip().lower() if isinstance(value, str) else None


class _Page(msgspec.Struct):
    data: list[msgspec.Raw]
    has_more: bool = False


class _Identified(msgspec.Struct):
    id: str


class _Deleted(msgspec.Struct):
    deleted: bool = False


def _head(obj: bytes) -> ObjectHead:
    try:
        return msgspec.json.decode(obj, type=ObjectHead)
    except msgspec.DecodeError:
        return ObjectHead()


def _id_of(obj: bytes) -> str | None:
    try:
        return msgspec.json.decode(obj, type=_Identified).id
    except msgspec.DecodeError:
        return None


def _ts(seconds: int | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds is not None else None

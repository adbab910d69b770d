"""The Stripe adapter: the official SDK, a full first read, then incremental from events.

Auth and API versioning come from the SDK; pages are read with its raw request interface,
which skips building SDK objects for every record. Retries are ours (the SDK retries a 429
only when Stripe sends `Stripe-Should-Retry: true`, and Stripe's 429s usually carry no such
header). Each object is validated with pydantic, landed in raw_records, and the metrics are
recomputed in SQL over what is landed (metrics.py).

Three ways to sync (the cursor says which one ran):
- full: no cursor, or one older than Stripe's 30 days of events: every stream is listed.
- incremental: `/v1/events` from a little before the newest event already read (the list is
  eventually consistent: an event may appear after later ones, or share their second), events
  already applied skipped by id, then every changed object (and its customer) re-fetched.
- reconcile (run config `reconcile: true`, the daily schedule): every stream is listed again
  and compared with the landed copies; only what differs is written, and the run's metadata
  says per stream how many objects differed and how many landed ones are no longer listed
  (deleted in Stripe; their landed copies are kept as history).
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar

import dagster as dg
import msgspec
import sqlalchemy as sa
import stripe
from pydantic import BaseModel, PrivateAttr, ValidationError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
)

from kpi_pipelines import settings
from kpi_pipelines.integrations.shared.base_adapter import IntegrationAdapter
from kpi_pipelines.integrations.shared.errors import (
    ProviderAuthError,
    ProviderRequestError,
    ProviderUnavailable,
)
from kpi_pipelines.integrations.shared.secrets import read_secret
from kpi_pipelines.integrations.stripe import types as st
from kpi_pipelines.integrations.stripe.metrics import (
    MetricsScope,
    compute_stripe_metrics,
    reporting_today,
)
from kpi_pipelines.models import KPIData, SyncResult
from kpi_pipelines.warehouse.tenant_data import load_cursor, save_cursor
from kpi_pipelines.warehouse.writer import RawRecord

PROVIDER = "stripe"
DEFAULT_BASE_URL = "https://api.stripe.com"
API_VERSION = "2025-03-31.basil"
EVENT_RETENTION = timedelta(days=30)
CURSOR_STREAM = "events"
# Rejections named one by one in SyncResult.errors; past this they are only counted.
MAX_NAMED_ERRORS = 200
# Rejected objects per stream the cursor keeps, to read them again in the next sync.
MAX_RETRIED_REJECTIONS = 200
_MESSAGE_LIMIT = 300

T = TypeVar("T")


@dataclass(frozen=True)
class Stream:
    name: str
    path: str
    model: type[BaseModel]
    params: tuple[tuple[str, Any], ...] = ()


STREAMS = (
    Stream("customers", "/v1/customers", st.Customer),
    Stream("products", "/v1/products", st.StripeObject),
    Stream("prices", "/v1/prices", st.Price, (("expand[]", "data.tiers"),)),
    Stream("coupons", "/v1/coupons", st.Coupon),
    Stream(
        "subscriptions",
        "/v1/subscriptions",
        st.Subscription,
        (("status", "all"), ("expand[]", "data.discounts")),
    ),
    Stream("invoices", "/v1/invoices", st.Invoice, (("expand[]", "data.discounts"),)),
    Stream("charges", "/v1/charges", st.Charge),
    Stream("refunds", "/v1/refunds", st.Refund),
    Stream("balance_transactions", "/v1/balance_transactions", st.BalanceTransaction),
)
STREAM_BY_NAME = {s.name: s for s in STREAMS}
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


class StripeAdapter(IntegrationAdapter):
    """Stripe via the official SDK; the connection names the env var of its secret key."""

    provider: ClassVar[str] = PROVIDER

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

    def check_connection(self) -> None:
        # One cheap call proves the key: the newest event (also tells how fresh we are).
        self._newest_event = self._first("/v1/events", {"limit": 1})

    def disconnect(self) -> None:
        self._stripe = None
        self._newest_event = None
        super().disconnect()

    # --- sync ----------------------------------------------------------------------------

    def sync(self) -> SyncResult:
        started = datetime.now(UTC)
        report = _Report()
        with self.context.warehouse.tenant(
            self.context.workspace.id, actor=self.context.actor
        ) as db:
            cursor = load_cursor(db, PROVIDER, CURSOR_STREAM) or {}
        newest = (self._newest_event or {}).get("created")
        position = _EventPosition.from_cursor(cursor)
        expired = position.created is None or (
            newest is not None and newest - position.created > EVENT_RETENTION.total_seconds()
        )
        reconcile = bool(self.context.options.get("reconcile"))
        mode = "full" if expired else "reconcile" if reconcile else "incremental"
        landing_started = time.perf_counter()
        if mode == "incremental":
            position = self._incremental(position, report)
        else:
            self.context.log.info(
                "stripe: reconciling every stream with the landed copies"
                if mode == "reconcile"
                else "stripe: full read (no cursor, or older than 30 days)"
            )
            position = self._relist(position, report, reconcile=mode == "reconcile")
        landing_seconds = time.perf_counter() - landing_started
        metrics_started = time.perf_counter()
        points = self._write_metrics()
        metrics_seconds = time.perf_counter() - metrics_started
        with self.context.warehouse.tenant(
            self.context.workspace.id, actor=self.context.actor
        ) as db:
            position = position.with_rejected(report.rejected_ids)
            save_cursor(db, PROVIDER, CURSOR_STREAM, {**position.as_cursor(), "mode": mode})
        return SyncResult(
            success=not report.errors,
            records_processed=report.records,
            records_rejected=report.rejected,
            points_written=points.written,
            points_unchanged=points.unchanged,
            errors=report.errors,
            last_sync_at=started,
            timings={"landing": landing_seconds, "metrics": metrics_seconds},
        )

    def transform(self, raw: Any) -> list[KPIData]:
        """Stripe's KPIs are computed over every landed object at once, in SQL."""
        return list(self._metrics())

    # --- full read and reconciliation ----------------------------------------------------

    def _relist(
        self, position: _EventPosition, report: _Report, *, reconcile: bool
    ) -> _EventPosition:
        """List every stream, landing what differs from the landed copy (the upsert writes
        only changed payloads). The events already visible are remembered first: the lists
        read afterwards show their effects, so the next incremental sync skips them."""
        newest = (self._newest_event or {}).get("created")
        if newest is not None:
            position = self._read_events(
                newest - self.event_overlap_seconds, set(), report, floor=newest
            )[1]
        # Objects created after the newest event known at the start may have been landed
        # meanwhile by a webhook-triggered run: they are left out of "no longer listed".
        report.bound = newest
        if not reconcile:
            # One writer across the streams: its batches keep flowing at stream boundaries.
            writer = self.record_writer(background=True)
            with writer.open():
                for stream in STREAMS:
                    writer.add_all(self._list(stream, report))
            return position
        compared: dict[str, dict[str, int]] = {}
        for stream in STREAMS:
            # A writer per stream, to count what differed in each.
            writer = self.record_writer(background=True)
            with writer.open():
                writer.add_all(self._list(stream, report))
            compared[stream.name] = {
                "listed": report.per_stream[stream.name],
                "differed": writer.stats.written,
                "no_longer_listed": self._no_longer_listed(stream.name, report),
            }
        differed = {name: c["differed"] for name, c in compared.items() if c["differed"]}
        gone = {name: c["no_longer_listed"] for name, c in compared.items()}
        self.context.log.info(
            f"stripe: reconciled; objects that differed from the landed copy: {differed or 0};"
            f" landed but no longer listed: { {k: v for k, v in gone.items() if v} or 0 }"
        )
        _add_run_metadata(
            {
                "reconcile_differed": sum(c["differed"] for c in compared.values()),
                "reconcile_no_longer_listed": sum(gone.values()),
                "reconcile": dg.MetadataValue.json(compared),
            }
        )
        return position

    def _no_longer_listed(self, stream: str, report: _Report) -> int:
        """Landed objects of `stream` the list no longer shows (deleted in Stripe). Counted,
        never deleted: their history stays. Counts only objects created by `report.bound`."""
        rejected_ids = report.rejected_in_bound[stream]
        with self.context.warehouse.tenant(
            self.context.workspace.id, actor=self.context.actor
        ) as db:
            landed, rejected_landed = db.execute(
                sa.text(
                    "SELECT count(*),"
                    " count(*) FILTER (WHERE record_id = ANY(CAST(:rejected AS text[])))"
                    " FROM raw_records WHERE source = :source AND stream = :stream"
                    " AND coalesce((payload->>'created')::bigint, 0) <= :newest"
                ),
                {
                    "source": PROVIDER,
                    "stream": stream,
                    "rejected": rejected_ids,
                    "newest": report.bound if report.bound is not None else 2**62,
                },
            ).one()
        # every listed object that passed validation is landed now; a rejected one may have
        # an older landed copy
        still_listed = report.listed_in_bound[stream] - len(rejected_ids) + rejected_landed
        return max(0, landed - still_listed)

    # --- incremental ---------------------------------------------------------------------

    def _incremental(self, position: _EventPosition, report: _Report) -> _EventPosition:
        since = position.created
        assert since is not None
        retried = position.rejected
        changed, position = self._read_events(
            since - self.event_overlap_seconds, set(position.seen), report, floor=since
        )
        for stream_name, ids in retried.items():
            for object_id in ids:
                changed[stream_name].setdefault(object_id, since)
        if not changed:
            self.context.log.info("stripe: nothing changed since the last sync")
            return position
        writer = self.record_writer(background=True)
        with writer.open():
            for stream_name, ids in changed.items():
                stream = STREAM_BY_NAME[stream_name]
                for object_id, event_created in ids.items():
                    obj = self._retrieve(stream, object_id)
                    if obj is None:
                        continue
                    record = self._validated(stream, obj, report, _ts(event_created))
                    if record is not None:
                        writer.add_all([record])
            # Objects that have no events of their own (balance transactions) are re-listed
            # with an overlap, which the upsert makes harmless.
            bt = STREAM_BY_NAME["balance_transactions"]
            overlap = since - int(timedelta(days=1).total_seconds())
            writer.add_all(self._list(bt, report, {"created[gte]": overlap}))
        return position

    def _read_events(
        self,
        window_start: int,
        seen: set[str],
        report: _Report,
        *,
        floor: int | None = None,
    ) -> tuple[dict[str, dict[str, int]], _EventPosition]:
        """The objects changed by events created since `window_start` that are not in `seen`
        (stream -> id -> newest event time), and the cursor to keep: the newest event time
        (at least `floor`) and the ids of the events within the overlap before it."""
        changed: dict[str, dict[str, int]] = defaultdict(dict)
        newest: int | None = None
        recent: list[tuple[int, str]] = []
        for text in self._pages("/v1/events", {"created[gte]": window_start}):
            head = _event_head(text)
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
                report.reject("events", text, exc)
                continue
            _note_change(changed, event)
        if floor is not None:
            newest = floor if newest is None else max(newest, floor)
        if newest is None:
            return changed, _EventPosition(None)
        recent = sorted(
            (r for r in recent if r[0] >= newest - self.event_overlap_seconds), reverse=True
        )
        return changed, _EventPosition(
            newest, tuple(event_id for _, event_id in recent[: self.max_remembered_events])
        )

    # --- reading -------------------------------------------------------------------------

    def _list(
        self, stream: Stream, report: _Report, extra: Mapping[str, Any] | None = None
    ) -> Iterator[RawRecord]:
        for obj in self._pages(stream.path, {**dict(stream.params), **(extra or {})}):
            record = self._validated(stream, obj, report)
            if record is not None:
                yield record

    def _validated(
        self,
        stream: Stream,
        obj: bytes,
        report: _Report,
        source_updated_at: datetime | None = None,
    ) -> RawRecord | None:
        """Validate one object's JSON text; the text itself is what gets landed. A record
        that fails is named and counted, and the others carry on."""
        report.listed(stream.name, obj)
        try:
            model = stream.model.model_validate_json(obj)
            if isinstance(model, st.Invoice) and model.lines.has_more:
                complete = self._with_all_lines(obj)
                if complete is None:
                    return None  # a draft deleted while we read it
                obj = complete
                model = stream.model.model_validate_json(obj)
        except ValidationError as exc:
            report.reject(stream.name, obj, exc)
            return None
        return RawRecord(stream.name, model.id, obj, source_updated_at)

    def _retrieve(self, stream: Stream, object_id: str) -> bytes | None:
        # The list's expansions, minus their "data." prefix (one per stream).
        params = {k: v.removeprefix("data.") for k, v in stream.params if k == "expand[]"}
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

    def _with_all_lines(self, invoice_json: bytes) -> bytes | None:
        """The invoice with every line (an embedded line list stops after its first page);
        None when the invoice no longer exists."""
        invoice = msgspec.json.decode(invoice_json)  # validated as an Invoice already
        lines = invoice["lines"]
        data = list(lines["data"])
        last = data[-1]["id"] if data else None
        try:
            for line in self._pages(f"/v1/invoices/{invoice['id']}/lines", {}, starting_after=last):
                data.append(msgspec.json.decode(line))
        except ProviderRequestError as exc:
            if exc.status == 404:
                return None
            raise
        return msgspec.json.encode({**invoice, "lines": {**lines, "data": data, "has_more": False}})

    def _first(self, path: str, params: dict[str, Any]) -> dict[str, Any] | None:
        page = self._read(path, params, _Page)
        return msgspec.json.decode(page.data[0]) if page.data else None

    def _pages(
        self, path: str, params: dict[str, Any], *, starting_after: str | None = None
    ) -> Iterator[bytes]:
        """The JSON text of every object of a list endpoint, newest first.

        A page is only split into its objects' texts here (never decoded into Python
        objects); the next page is fetched while the caller handles this one, its cursor
        being this page's last id, known on arrival.
        """

        def fetch(after: str | None) -> tuple[list[bytes], str | None]:
            query = {**params, "limit": self.page_size}
            if after:
                query["starting_after"] = after
            page = self._read(path, query, _Page)
            data = [bytes(raw) for raw in page.data]
            return data, _last_id(path, data) if page.has_more else None

        with ThreadPoolExecutor(max_workers=1) as prefetch:
            upcoming = prefetch.submit(fetch, starting_after)
            while True:
                data, after = upcoming.result()
                if after:
                    upcoming = prefetch.submit(fetch, after)
                yield from data
                if not after:
                    return

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
        `stripe` pin to one major version.

        Retried (as `_Failure`): every 429 (Stripe sends no Retry-After, and rarely
        Stripe-Should-Retry), then as Stripe documents: Stripe-Should-Retry true or false
        decides; without it 409 and 5xx are retried, other statuses are not; network errors
        and timeouts are.
        """
        requestor = self._client()._requestor
        try:
            body, status, headers = requestor.request_raw(
                "get", path, params=params, base_address="api", api_mode="V1", usage=["raw_request"]
            )
        except stripe.APIConnectionError as exc:
            message = f"{path}: {_stripe_message(exc)}"
            raise _Failure(message, retry=bool(exc.should_retry)) from None
        if 200 <= status < 300:
            return body if isinstance(body, bytes) else str(body).encode()
        error = _error_of(requestor, body, status, headers)
        should_retry = _header(headers, "stripe-should-retry")
        # the SDK builds some errors (RateLimitError) without Stripe's code: read it from the body
        code = error.code or getattr(error.error, "code", None)
        description = f"HTTP {status}{f' {code}' if code else ''}: {_stripe_message(error)}"
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
        if isinstance(error, stripe.AuthenticationError | stripe.PermissionError):
            raise ProviderAuthError(PROVIDER, _stripe_message(error), status=status)
        if status >= 500 or status == 409:
            raise _Failure(description, status=status, retry=False)
        raise ProviderRequestError(PROVIDER, f"{path}: {_stripe_message(error)}", status=status)

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

    def _client(self) -> stripe.StripeClient:
        if self._stripe is None:
            key = read_secret(self.context.connection, "api_key")
            st.StripeConnectionSettings.model_validate(self.context.connection.settings)
            base = settings.provider_base_url(PROVIDER, DEFAULT_BASE_URL, self.base_url)
            self._stripe = stripe.StripeClient(
                key,
                base_addresses={"api": base},
                stripe_version=self.api_version,
                max_network_retries=0,  # ours, in _read
                http_client=stripe.HTTPXClient(
                    timeout=self.timeout_seconds, allow_sync_methods=True
                ),
            )
        return self._stripe

    # --- metrics -------------------------------------------------------------------------

    def _metrics(self) -> Iterator[KPIData]:
        workspace = self.context.workspace
        scope = MetricsScope(
            workspace_id=workspace.id,
            reporting_currency=workspace.reporting_currency,
            timezone=workspace.timezone,
            today=self._today(),
        )
        with self.context.warehouse.tenant(workspace.id, actor=self.context.actor) as db:
            yield from compute_stripe_metrics(db, scope)

    def _write_metrics(self) -> Any:
        started = time.perf_counter()
        points = list(self._metrics())
        writer = self.point_writer()
        with writer.open():
            writer.add_all(points)
        self.context.log.info(
            f"stripe: {len(points)} metric points computed in"
            f" {time.perf_counter() - started:.1f} s; {writer.stats.written} changed"
        )
        return writer.stats

    def _today(self) -> Any:
        newest = (self._newest_event or {}).get("created")
        now = datetime.now(UTC)
        if newest is not None:
            now = max(now, _ts(newest))
        return reporting_today(now, self.context.workspace.timezone)


@dataclass(frozen=True)
class _EventPosition:
    """Where the events cursor stands: the newest event time read, the ids of the events
    created within the overlap before it (already applied, so skipped when read again), and
    the objects rejected by the last sync (read again by the next one: no event may name
    them again)."""

    created: int | None
    seen: tuple[str, ...] = ()
    rejected: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_cursor(cls, cursor: Mapping[str, Any]) -> _EventPosition:
        rejected = cursor.get("rejected_ids") or {}
        return cls(
            cursor.get("last_event_created"),
            tuple(cursor.get("seen_event_ids") or ()),
            {s: tuple(ids) for s, ids in rejected.items() if s in STREAM_BY_NAME},
        )

    def with_rejected(self, rejected: Mapping[str, list[str]]) -> _EventPosition:
        kept = {
            s: tuple(ids[:MAX_RETRIED_REJECTIONS])
            for s, ids in rejected.items()
            if ids and s in STREAM_BY_NAME  # a rejected event names no object to read again
        }
        return _EventPosition(self.created, self.seen, kept)

    def as_cursor(self) -> dict[str, Any]:
        return {
            "last_event_created": self.created,
            "seen_event_ids": list(self.seen),
            "rejected_ids": {s: list(ids) for s, ids in self.rejected.items()},
        }


@dataclass
class _Report:
    """Records read and rejected, the rejections named (bounded), and per stream what a
    reconciliation needs: objects read, and those created by `bound` (read or rejected)."""

    records: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)
    unnamed: int = 0
    bound: int | None = None
    per_stream: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    listed_in_bound: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rejected_ids: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    rejected_in_bound: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def _in_bound(self, obj: bytes) -> bool:
        created = _created_of(obj) if self.bound is not None else None
        return created is None or self.bound is None or created <= self.bound

    def listed(self, stream: str, obj: bytes) -> None:
        self.records += 1
        self.per_stream[stream] += 1
        if self._in_bound(obj):
            self.listed_in_bound[stream] += 1

    def reject(self, stream: str, obj: bytes, exc: ValidationError) -> None:
        self.rejected += 1
        object_id = _id_of(obj)
        if object_id is not None and len(self.rejected_ids[stream]) < 10 * MAX_NAMED_ERRORS:
            self.rejected_ids[stream].append(object_id)
            if self._in_bound(obj):
                self.rejected_in_bound[stream].append(object_id)
        if len(self.errors) < MAX_NAMED_ERRORS:
            self.errors.append(_rejection(stream, object_id, exc))
        else:
            self.unnamed += 1
            note = f"... and {self.unnamed} more rejected record(s), not named"
            if self.errors[-1].startswith("... and "):
                self.errors[-1] = note
            else:
                self.errors.append(note)


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


def _error_of(requestor: Any, body: Any, status: int, headers: Any) -> stripe.StripeError:
    """The SDK's typed error for an error response (its own parsing of Stripe's body)."""
    try:
        requestor._interpret_response(body, status, headers, api_mode="V1")
    except stripe.StripeError as exc:
        return exc
    return stripe.APIError(f"unexpected HTTP {status}", http_status=status)


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    value = headers.get(name)
    if value is None and isinstance(headers, Mapping):  # a plain dict: compare names ourselves
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value.strip().lower() if isinstance(value, str) else None


def _last_id(path: str, data: list[bytes]) -> str:
    """The cursor for the next page: the id of the page's last object (or of the last one
    that has an id, when an object came without one: it is rejected, the rest carries on)."""
    for obj in reversed(data):
        object_id = _id_of(obj)
        if object_id is not None:
            return object_id
    raise ProviderUnavailable(PROVIDER, f"{path} sent a page whose objects have no ids")


class _Page(msgspec.Struct):
    data: list[msgspec.Raw]
    has_more: bool = False


class _Identified(msgspec.Struct):
    id: str


class _Head(msgspec.Struct):
    id: str | None = None
    created: int | None = None


class _Deleted(msgspec.Struct):
    deleted: bool = False


def _event_head(obj: bytes) -> _Head:
    try:
        return msgspec.json.decode(obj, type=_Head)
    except msgspec.DecodeError:
        return _Head()


def _id_of(obj: bytes) -> str | None:
    try:
        return msgspec.json.decode(obj, type=_Identified).id
    except msgspec.DecodeError:
        return None


def _created_of(obj: bytes) -> int | None:
    return _event_head(obj).created


def _add_run_metadata(metadata: dict[str, Any]) -> None:
    """Add to the materialization's metadata of the asset this sync runs for."""
    try:
        context = dg.AssetExecutionContext.get()
    except dg.DagsterInvariantViolationError:
        return  # not inside a Dagster step: the log line has it
    context.add_asset_metadata(metadata)


def _ts(seconds: int | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds is not None else None


def _stripe_message(exc: stripe.StripeError) -> str:
    return (exc.user_message or str(exc) or type(exc).__name__)[:_MESSAGE_LIMIT]


def _rejection(stream: str, object_id: str | None, exc: ValidationError) -> str:
    reasons = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3]
    )
    return f"{stream} {object_id or '?'}: {reasons}"

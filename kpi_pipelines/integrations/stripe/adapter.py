"""The Stripe adapter: the official SDK, a full first read, then incremental from events.

Auth, retries (Stripe-Should-Retry honoured, exponential backoff with jitter) and API
versioning come from the SDK; pages are read with its raw request interface, which skips
building SDK objects for every record. Each object is validated with pydantic, landed in
raw_records, and the metrics are recomputed in SQL over what is landed (metrics.py).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar

import msgspec
import stripe
from pydantic import BaseModel, PrivateAttr, ValidationError

from kpi_pipelines import settings
from kpi_pipelines.integrations.shared.base_adapter import IntegrationAdapter
from kpi_pipelines.integrations.shared.errors import (
    ProviderAuthError,
    ProviderRequestError,
    ProviderUnavailable,
)
from kpi_pipelines.integrations.shared.secrets import read_secret
from kpi_pipelines.integrations.shared.types import KPIData, SyncResult
from kpi_pipelines.integrations.stripe import types as st
from kpi_pipelines.integrations.stripe.metrics import (
    MetricsScope,
    compute_stripe_metrics,
    reporting_today,
)
from kpi_pipelines.warehouse.tenant_data import load_cursor, save_cursor
from kpi_pipelines.warehouse.writer import RawRecord

PROVIDER = "stripe"
DEFAULT_BASE_URL = "https://api.stripe.com"
API_VERSION = "2025-03-31.basil"
EVENT_RETENTION = timedelta(days=30)
CURSOR_STREAM = "events"

UNREADABLE_BODY_ATTEMPTS = 3

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
    cadence: ClassVar[timedelta | None] = timedelta(days=1)  # webhooks plus a daily reconciliation
    pool_limit: ClassVar[int | None] = 4

    base_url: str | None = None  # default: KPI_STRIPE_BASE_URL, else api.stripe.com
    api_version: str = API_VERSION
    max_network_retries: int = 6
    timeout_seconds: float = 60.0
    page_size: int = 100

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
        errors: list[str] = []
        counts = {"records": 0, "rejected": 0}
        with self.context.warehouse.tenant(
            self.context.workspace.id, actor=self.context.actor
        ) as db:
            cursor = load_cursor(db, PROVIDER, CURSOR_STREAM) or {}
        newest = (self._newest_event or {}).get("created")
        last_event = cursor.get("last_event_created")
        full = last_event is None or (
            newest is not None and newest - last_event > EVENT_RETENTION.total_seconds()
        )
        landing_started = time.perf_counter()
        writer = self.record_writer(background=True)
        with writer.open():
            if full:
                self.context.log.info("stripe: full read (no cursor, or older than 30 days)")
                for stream in STREAMS:
                    writer.add_all(self._list(stream, errors, counts))
                last_event = newest if newest is not None else last_event
            else:
                last_event = self._incremental(writer, last_event, errors, counts)
        landing_seconds = time.perf_counter() - landing_started
        metrics_started = time.perf_counter()
        points = self._write_metrics()
        metrics_seconds = time.perf_counter() - metrics_started
        with self.context.warehouse.tenant(
            self.context.workspace.id, actor=self.context.actor
        ) as db:
            save_cursor(
                db,
                PROVIDER,
                CURSOR_STREAM,
                {"last_event_created": last_event, "mode": "full" if full else "incremental"},
            )
        return SyncResult(
            success=not errors,
            records_processed=counts["records"],
            records_rejected=counts["rejected"],
            points_written=points.written,
            points_unchanged=points.unchanged,
            errors=errors,
            last_sync_at=started,
            timings={"landing": landing_seconds, "metrics": metrics_seconds},
        )

    def transform(self, raw: Any) -> list[KPIData]:
        """Stripe's KPIs are computed over every landed object at once, in SQL."""
        return list(self._metrics())

    # --- incremental ---------------------------------------------------------------------

    def _incremental(
        self, writer: Any, since: int, errors: list[str], counts: dict[str, int]
    ) -> int:
        changed: dict[str, dict[str, int]] = defaultdict(dict)
        newest = since
        for event in self._pages("/v1/events", {"created[gt]": since}):
            try:
                parsed = st.Event.model_validate_json(event)
            except ValidationError as exc:
                errors.append(_rejection("events", event, exc))
                continue
            newest = max(newest, parsed.created or since)
            obj = parsed.changed_object
            stream = STREAM_BY_OBJECT.get(obj.get("object", ""))
            if stream and obj.get("id"):
                changed[stream][obj["id"]] = max(
                    changed[stream].get(obj["id"], 0), parsed.created or 0
                )
        if not changed and newest == since:
            self.context.log.info("stripe: nothing changed since the last sync")
            return since
        by_name = {s.name: s for s in STREAMS}
        for stream_name, ids in changed.items():
            stream = by_name[stream_name]
            for object_id, event_created in ids.items():
                obj = self._retrieve(stream, object_id)
                if obj is None:
                    continue
                record = self._validated(stream, obj, errors, counts, _ts(event_created))
                if record is not None:
                    writer.add_all([record])
        # Objects that have no events of their own (balance transactions) are re-listed with
        # an overlap, which the upsert makes harmless.
        overlap = since - int(timedelta(days=1).total_seconds())
        bt = by_name["balance_transactions"]
        for obj in self._pages(bt.path, {"created[gte]": overlap, **dict(bt.params)}):
            record = self._validated(bt, obj, errors, counts)
            if record is not None:
                writer.add_all([record])
        return newest

    # --- reading -------------------------------------------------------------------------

    def _list(
        self, stream: Stream, errors: list[str], counts: dict[str, int]
    ) -> Iterator[RawRecord]:
        for obj in self._pages(stream.path, dict(stream.params)):
            record = self._validated(stream, obj, errors, counts)
            if record is not None:
                yield record

    def _validated(
        self,
        stream: Stream,
        obj: bytes,
        errors: list[str],
        counts: dict[str, int],
        source_updated_at: datetime | None = None,
    ) -> RawRecord | None:
        """Validate one object's JSON text; the text itself is what gets landed."""
        counts["records"] += 1
        try:
            model = stream.model.model_validate_json(obj)
            if isinstance(model, st.Invoice) and model.lines.has_more:
                obj = self._with_all_lines(obj)
                model = stream.model.model_validate_json(obj)
        except ValidationError as exc:
            counts["rejected"] += 1
            errors.append(_rejection(stream.name, obj, exc))
            return None
        return RawRecord(stream.name, model.id, obj, source_updated_at)

    def _retrieve(self, stream: Stream, object_id: str) -> bytes | None:
        # The list's expansions, minus their "data." prefix (one per stream).
        params = {k: v.removeprefix("data.") for k, v in stream.params if k == "expand[]"}
        try:
            return bytes(self._read(f"{stream.path}/{object_id}", params, msgspec.Raw))
        except ProviderRequestError as exc:
            if exc.status == 404:
                return None  # deleted since the event; the event's copy stays landed
            raise

    def _with_all_lines(self, invoice_json: bytes) -> bytes:
        """The invoice with every line: an embedded line list stops after its first page."""
        invoice = msgspec.json.decode(invoice_json)  # validated as an Invoice already
        lines = invoice["lines"]
        data = list(lines["data"])
        last = data[-1]["id"] if data else None
        for line in self._pages(f"/v1/invoices/{invoice['id']}/lines", {}, starting_after=last):
            data.append(msgspec.json.decode(line))
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
            last = msgspec.json.decode(data[-1], type=_Identified).id if data else None
            return data, last if page.has_more else None

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
        """GET and decode into `into`. A body cut short on the way is asked for again: the
        SDK retries failed statuses only, and a 200 with half a page is a transport fault."""
        for _ in range(UNREADABLE_BODY_ATTEMPTS):
            try:
                return msgspec.json.decode(self._request(path, params), type=into)
            except msgspec.DecodeError as exc:  # also a valid JSON of the wrong shape
                problem = str(exc)
                self.context.log.warning(f"stripe: {path} sent a body we cannot read ({problem})")
        raise ProviderUnavailable(
            PROVIDER,
            f"{path} sent a body we cannot read: {problem}",
            attempts=UNREADABLE_BODY_ATTEMPTS,
        )

    def _request(self, path: str, params: dict[str, Any]) -> bytes:
        """One GET's body, with the SDK's errors turned into the platform's."""
        try:
            return _get(self._client(), path, params)
        except stripe.AuthenticationError as exc:
            raise ProviderAuthError(
                PROVIDER, _stripe_message(exc), status=exc.http_status
            ) from None
        except stripe.PermissionError as exc:
            raise ProviderAuthError(
                PROVIDER, _stripe_message(exc), status=exc.http_status
            ) from None
        except stripe.RateLimitError as exc:
            raise ProviderUnavailable(
                PROVIDER,
                f"rate limited after {self.max_network_retries} retries: {_stripe_message(exc)}",
                attempts=self.max_network_retries + 1,
                status=429,
            ) from None
        except stripe.InvalidRequestError as exc:
            raise ProviderRequestError(
                PROVIDER, f"{path}: {_stripe_message(exc)}", status=exc.http_status
            ) from None
        except (stripe.APIConnectionError, stripe.APIError) as exc:
            raise ProviderUnavailable(
                PROVIDER,
                _stripe_message(exc),
                attempts=self.max_network_retries + 1,
                status=getattr(exc, "http_status", None),
            ) from None

    def _client(self) -> stripe.StripeClient:
        if self._stripe is None:
            key = read_secret(self.context.connection, "api_key")
            st.StripeConnectionSettings.model_validate(self.context.connection.settings)
            base = settings.provider_base_url(PROVIDER, DEFAULT_BASE_URL, self.base_url)
            self._stripe = stripe.StripeClient(
                key,
                base_addresses={"api": base},
                stripe_version=self.api_version,
                max_network_retries=self.max_network_retries,
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


def _get(client: stripe.StripeClient, path: str, params: dict[str, Any]) -> bytes:
    """GET through the SDK's own requestor (auth, Stripe-Version, retries honouring
    Stripe-Should-Retry, error mapping) but return the body unparsed.

    `StripeClient.raw_request` parses every body into OrderedDicts, which was a quarter of
    the sync's CPU time; the adapter only splits a page into its objects' JSON texts and
    validates each text with pydantic. The requestor is private API, hence the `stripe`
    pin to one major version.
    """
    requestor = client._requestor
    body, status, headers = requestor.request_raw(
        "get", path, params=params, base_address="api", api_mode="V1", usage=["raw_request"]
    )
    if not 200 <= status < 300:
        requestor._interpret_response(body, status, headers, api_mode="V1")  # raises
    return body if isinstance(body, bytes) else str(body).encode()


class _Page(msgspec.Struct):
    data: list[msgspec.Raw]
    has_more: bool = False


class _Identified(msgspec.Struct):
    id: str


def _ts(seconds: int | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds is not None else None


def _stripe_message(exc: stripe.StripeError) -> str:
    return exc.user_message or str(exc) or type(exc).__name__


def _rejection(stream: str, obj: bytes, exc: ValidationError) -> str:
    reasons = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3]
    )
    try:
        object_id = msgspec.json.decode(obj, type=_Identified).id
    except msgspec.DecodeError:
        object_id = "?"
    return f"{stream} {object_id}: {reasons}"

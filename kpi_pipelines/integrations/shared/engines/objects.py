"""The object engine: a provider's objects landed raw, its metrics computed in SQL over them.

For Stripe now; Notion, HubSpot and Salesforce next: providers whose API lists objects
(customers, pages, deals) rather than reporting numbers. Each object of each stream is
validated by the stream's pydantic model and landed as the provider sent it in
raw_records (batches written on worker threads, two at a time, while the next pages are
read; `concurrent_lists` streams listed at once), so KPIs can be recomputed without calling
the API again. Then the provider's metrics query runs over the landed records in one tenant
transaction (`metrics(db)`), after a large landing with the table's statistics refreshed,
and `transform(row)` turns each row of it into points.

Three ways to sync; the cursor (one sync_state stream, `cursor_stream`) says which ran:
- full: no cursor, or one the provider can no longer continue from (`needs_full_read`):
  every stream is listed and landed.
- incremental: the provider's change feed since the cursor (`changes()`: Stripe's events,
  a last-edited filter), then every changed object fetched again (`retrieve`), and the
  streams it names listed again with a filter (objects without changes of their own).
  When nothing changed, landing ends after that one request.
- reconcile (run config `reconcile: true`): every stream is listed again and compared with
  the landed copies; only what differs is written (the upsert compares payloads), so what a
  lost webhook or a missed change left stale or missing is healed, and the run's metadata
  says per stream how many objects were healed and how many landed ones are no longer
  listed (deleted in the provider; their landed copies are kept as history).

An object that fails validation is named and counted (SyncResult.errors, bounded), the
others carry on, and its id is kept in the cursor so the next sync reads it again: no
change may name it again. So is an object the record guard refuses before validation
(bounds.py: too big, a string too long, a secret echoed back), which is never landed; an
id that holds a secret is neither shown nor kept.
"""

from __future__ import annotations

import contextlib
import time
from abc import abstractmethod
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import msgspec
import sqlalchemy as sa
from pydantic import BaseModel, ValidationError
from sqlalchemy.engine import Connection as DbConnection

from kpi_pipelines.integrations.shared.base_adapter import BatchWriter, IntegrationAdapter
from kpi_pipelines.integrations.shared.bounds import ProviderLimits, RecordGuard
from kpi_pipelines.integrations.shared.engines import Engine
from kpi_pipelines.integrations.shared.errors import ProviderUnavailable
from kpi_pipelines.integrations.shared.paging import (
    Page,
    PageRequest,
    Paginator,
    PagingError,
    concurrently,
    pages,
)
from kpi_pipelines.integrations.shared.redaction import default_redactor
from kpi_pipelines.integrations.shared.validation import Rejections, describe_validation, named
from kpi_pipelines.models import SyncResult
from kpi_pipelines.warehouse.tenant_data import analyze_raw_records, load_cursor, save_cursor
from kpi_pipelines.warehouse.writer import RawRecord, WriteStats

FULL, INCREMENTAL, RECONCILE = "full", "incremental", "reconcile"
# Records a landing writes at least for its table's statistics to be refreshed before the
# metrics read them (migration 0012); below it autovacuum's own schedule is soon enough.
ANALYZE_AFTER_RECORDS = 10_000


@dataclass(frozen=True)
class Stream:
    """One list endpoint: its objects are the stream's landed records."""

    name: str  # raw_records.stream
    path: str
    model: type[BaseModel]  # validates one object; its `id` is the landed record's id
    params: tuple[tuple[str, Any], ...] = ()  # sent with every list request
    # The provider lists only the objects created this long ago or later (Stripe's events:
    # 30 days); older landed ones are history, not "no longer listed".
    retention_seconds: int | None = None


class ObjectHead(msgspec.Struct):
    """What the engine reads of an object without validating it: its id, and when it was
    created (epoch seconds), which bounds what "no longer listed" counts."""

    id: str | None = None
    created: int | None = None


@dataclass
class Changes:
    """What the provider's change feed says changed since the cursor."""

    # stream -> object id -> when it changed (the landed record's source time)
    objects: dict[str, dict[str, datetime | None]]
    cursor: dict[str, Any]  # the provider's part of the next cursor
    # When objects changed that the feed does not name (those rejected last time, read again)
    since: datetime | None = None
    # Streams listed again with these filters (objects without changes of their own)
    relist: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    # stream -> objects the feed itself carries whole (Stripe's events), landed as read
    records: dict[str, list[bytes]] = field(default_factory=dict)


@dataclass(frozen=True)
class Relisting:
    """Where a full read or a reconcile starts: the provider's cursor to keep afterwards,
    and the newest creation time it knows of (objects created later may have been landed
    meanwhile by another run: they are left out of "no longer listed"); and the landed
    objects the lists will no longer show but the provider still answers for (Notion's
    trashed pages), fetched again after the listing (stream -> object id -> when changed)."""

    cursor: dict[str, Any]
    bound: int | None
    objects: dict[str, dict[str, datetime | None]] = field(default_factory=dict)


class Ledger:
    """What one sync read: objects per stream, the rejected ones named (bounded) with their
    ids kept to read again, and what a reconcile compares (objects created by `bound`)."""

    def __init__(
        self, head: Callable[[bytes], ObjectHead], limit: int, guard: RecordGuard | None = None
    ) -> None:
        self.head = head
        self.limit = limit
        # What may be validated and landed at all (bounds.py), checked before validation.
        self.guard = guard or RecordGuard(ProviderLimits().record())
        self.records = 0
        self.landed = 0  # written (new or changed) by this sync's record writers
        self.bound: int | None = None
        self.rejections = Rejections(limit)
        self.per_stream: dict[str, int] = defaultdict(int)
        self.listed_in_bound: dict[str, int] = defaultdict(int)
        self.rejected_ids: dict[str, list[str]] = defaultdict(list)
        self.rejected_in_bound: dict[str, list[str]] = defaultdict(list)

    def _in_bound(self, obj: bytes) -> bool:
        created = self.head(obj).created if self.bound is not None else None
        return created is None or self.bound is None or created <= self.bound

    def listed(self, stream: str, obj: bytes) -> None:
        self.records += 1
        self.per_stream[stream] += 1
        if self._in_bound(obj):
            self.listed_in_bound[stream] += 1

    def reject(self, stream: str, obj: bytes, exc: ValidationError | str) -> None:
        """Count `obj` as rejected, for `exc` (a validation error, or the record guard's
        reason), and keep its id to read it again."""
        object_id = self.head(obj).id
        if object_id is not None and default_redactor.found_in(object_id.encode()):
            object_id = None  # an id that is a secret is neither shown nor kept
        if object_id is not None and len(self.rejected_ids[stream]) < 10 * self.limit:
            self.rejected_ids[stream].append(object_id)
            if self._in_bound(obj):
                self.rejected_in_bound[stream].append(object_id)
        reason = exc if isinstance(exc, str) else describe_validation(exc, limit=3)
        self.rejections.add(f"{stream} {named(object_id or '?')}: {reason}")


class ObjectAdapter(IntegrationAdapter):
    """The object engine's hooks."""

    # Fetch a list's next page while this one is handled, and list several streams at once
    # (the engine's `concurrent_lists`): fetch_page must be safe to call from several threads.
    prefetch_pages: ClassVar[bool] = False

    @abstractmethod
    def paginator(self, stream: Stream) -> Paginator:
        """How the provider pages a list."""

    @abstractmethod
    def fetch_page(
        self, stream: Stream, filters: Mapping[str, Any], request: PageRequest
    ) -> Page[bytes]:
        """One page of `stream` (with `filters` besides the stream's params): each object's
        JSON text as the provider sent it."""

    @abstractmethod
    def retrieve(self, stream: Stream, object_id: str) -> bytes | None:
        """One object as the list shows it, or None when it no longer exists."""

    def complete(self, stream: Stream, obj: bytes, model: BaseModel) -> bytes | None:
        """The object with what its list left out (an embedded list's later pages), or None
        when it no longer exists; by default the object as listed."""
        return obj

    def head(self, obj: bytes) -> ObjectHead:
        """An object's id and creation time, read without validating it."""
        try:
            return msgspec.json.decode(obj, type=ObjectHead)
        except msgspec.DecodeError:
            return ObjectHead()

    @abstractmethod
    def needs_full_read(self, cursor: Mapping[str, Any]) -> bool:
        """Whether the provider cannot continue from `cursor` (none, or too old)."""

    @abstractmethod
    def changes(self, cursor: Mapping[str, Any], ledger: Ledger) -> Changes:
        """What changed since `cursor` (the provider's change feed)."""

    @abstractmethod
    def relisting(self, cursor: Mapping[str, Any], ledger: Ledger) -> Relisting:
        """Where a full read or reconcile starts (read before any list)."""

    @abstractmethod
    def metrics(self, db: DbConnection) -> Iterator[Any]:
        """The rows of the provider's metrics query over its landed records, each one
        turned into points by `transform`."""


@dataclass(frozen=True)
class ObjectEngine(Engine):
    """Land each stream's objects (full, incremental or reconcile), then compute metrics."""

    streams: tuple[Stream, ...]
    cursor_stream: str  # the sync_state stream of the cursor
    # The object field holding its creation time in epoch seconds ("no longer listed").
    created_field: str = "created"
    max_named_errors: int = 200  # rejections named in SyncResult.errors
    max_retried_rejections: int = 200  # rejected ids per stream the cursor keeps
    # Streams listed at once by a full read or a reconcile, each still paged in order: a
    # list's next page waits for the last one's cursor, so one list at a time spends most
    # of a sync waiting on the provider. Needs an adapter with `prefetch_pages`.
    concurrent_lists: int = 1

    kind = "object"

    @property
    def hooks(self) -> type[ObjectAdapter]:
        return ObjectAdapter

    def describe(self) -> str:
        return f"object ({', '.join(stream.name for stream in self.streams)})"

    def stream(self, name: str) -> Stream:
        for stream in self.streams:
            if stream.name == name:
                return stream
        raise LookupError(f"no stream {name!r}")

    def sync(self, adapter: ObjectAdapter) -> SyncResult:
        context = adapter.context
        started = datetime.now(UTC)
        ledger = Ledger(
            adapter.head, self.max_named_errors, RecordGuard(adapter.spec.limits.record())
        )
        with context.warehouse.tenant(context.workspace.id, actor=context.actor) as db:
            cursor = load_cursor(db, adapter.provider, self.cursor_stream) or {}
        if adapter.needs_full_read(cursor):
            mode = FULL
        else:
            mode = RECONCILE if context.options.get("reconcile") else INCREMENTAL
        details: dict[str, Any] = {}
        landing_started = time.perf_counter()
        if mode == INCREMENTAL:
            kept = self._incremental(adapter, cursor, ledger)
        else:
            context.log.info(
                f"{adapter.provider}: reconciling every stream with the landed copies"
                if mode == RECONCILE
                else f"{adapter.provider}: full read (no cursor, or one it cannot continue from)"
            )
            kept, details = self._relist(adapter, cursor, ledger, reconcile=mode == RECONCILE)
        landing_seconds = time.perf_counter() - landing_started
        metrics_started = time.perf_counter()
        if ledger.landed >= ANALYZE_AFTER_RECORDS:  # the metrics' time: it is for them
            with context.warehouse.tenant(context.workspace.id, actor=context.actor) as db:
                analyze_raw_records(db)
        points = self._write_metrics(adapter)
        metrics_seconds = time.perf_counter() - metrics_started
        with context.warehouse.tenant(context.workspace.id, actor=context.actor) as db:
            save_cursor(
                db,
                adapter.provider,
                self.cursor_stream,
                {**kept, "rejected_ids": self._to_retry(ledger), "mode": mode},
            )
        return SyncResult(
            success=not ledger.rejections.errors,
            records_processed=ledger.records,
            records_rejected=ledger.rejections.count,
            points_written=points.written,
            points_unchanged=points.unchanged,
            errors=ledger.rejections.errors,
            last_sync_at=started,
            timings={"landing": landing_seconds, "metrics": metrics_seconds},
            details=details,
        )

    # --- full read and reconciliation ----------------------------------------------------

    def _relist(
        self, adapter: ObjectAdapter, cursor: Mapping[str, Any], ledger: Ledger, *, reconcile: bool
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """List every stream, landing what differs from the landed copy (the upsert writes
        only changed payloads)."""
        start = adapter.relisting(cursor, ledger)
        ledger.bound = start.bound
        if not reconcile:
            # One writer across the streams: its batches keep flowing at stream boundaries.
            writer = adapter.record_writer(background=True)
            with writer.open():
                for stream, page in self._every_list(adapter):
                    if page is not None:
                        writer.add_all(self._records(adapter, stream, page.items, ledger))
                writer.add_all(self._fetched_again(adapter, start.objects, ledger))
            ledger.landed += writer.stats.written
            return start.cursor, {}
        compared: dict[str, dict[str, int]] = {}
        # A writer per stream, to count what differed in each; closed when its list ends.
        writers: dict[str, tuple[BatchWriter[RawRecord], contextlib.ExitStack]] = {}
        with contextlib.ExitStack() as still_open:
            for stream, page in self._every_list(adapter):
                if stream.name not in writers:
                    writer = adapter.record_writer(background=True)
                    closing = still_open.enter_context(contextlib.ExitStack())
                    closing.enter_context(writer.open())
                    writers[stream.name] = writer, closing
                writer, closing = writers[stream.name]
                if page is not None:
                    writer.add_all(self._records(adapter, stream, page.items, ledger))
                    continue
                writer.add_all(
                    self._fetched_again(
                        adapter, {stream.name: start.objects.get(stream.name, {})}, ledger
                    )
                )
                closing.close()  # its last batch written
                ledger.landed += writer.stats.written
                compared[stream.name] = {
                    "listed": ledger.per_stream[stream.name],
                    # missing, or landed with a payload that differs from the provider's
                    "healed": writer.stats.written,
                    "no_longer_listed": self._no_longer_listed(adapter, stream, ledger),
                }
        compared = {stream.name: compared[stream.name] for stream in self.streams}
        healed = {name: c["healed"] for name, c in compared.items() if c["healed"]}
        gone = {name: c["no_longer_listed"] for name, c in compared.items()}
        adapter.context.log.info(
            f"{adapter.provider}: reconciled; objects healed (missing or stale):"
            f" {healed or 0}; landed but no longer listed:"
            f" { {k: v for k, v in gone.items() if v} or 0 }"
        )
        return start.cursor, {
            "reconcile_healed": sum(c["healed"] for c in compared.values()),
            "reconcile_no_longer_listed": sum(gone.values()),
            "reconcile": compared,
        }

    def _no_longer_listed(self, adapter: ObjectAdapter, stream: Stream, ledger: Ledger) -> int:
        """Landed objects of `stream` the list no longer shows (deleted in the provider).
        Counted, never deleted: their history stays. Counts only objects created by
        `ledger.bound`, and within the stream's retention."""
        context = adapter.context
        rejected_ids = ledger.rejected_in_bound[stream.name]
        with context.warehouse.tenant(context.workspace.id, actor=context.actor) as db:
            landed, rejected_landed = db.execute(
                sa.text(
                    "SELECT count(*),"
                    " count(*) FILTER (WHERE record_id = ANY(CAST(:rejected AS text[])))"
                    " FROM raw_records WHERE source = :source AND stream = :stream"
                    " AND coalesce((payload->>:created_field)::bigint, 0) <= :newest"
                    " AND coalesce((payload->>:created_field)::bigint, 0) >= :oldest"
                ),
                {
                    "source": adapter.provider,
                    "stream": stream.name,
                    "rejected": rejected_ids,
                    "created_field": self.created_field,
                    "newest": ledger.bound if ledger.bound is not None else 2**62,
                    "oldest": self._retained_since(stream, ledger),
                },
            ).one()
        # every listed object that passed validation is landed now; a rejected one may have
        # an older landed copy
        still_listed = ledger.listed_in_bound[stream.name] - len(rejected_ids) + rejected_landed
        return max(0, landed - still_listed)

    def _retained_since(self, stream: Stream, ledger: Ledger) -> int:
        """The oldest creation time the provider still lists for `stream` (epoch seconds); a
        day's margin, since the provider's clock and ours differ."""
        if stream.retention_seconds is None:
            return 0
        now = ledger.bound if ledger.bound is not None else int(time.time())
        return now - stream.retention_seconds + 86_400

    # --- incremental ---------------------------------------------------------------------

    def _incremental(
        self, adapter: ObjectAdapter, cursor: Mapping[str, Any], ledger: Ledger
    ) -> dict[str, Any]:
        changes = adapter.changes(cursor, ledger)
        for stream_name, ids in self._retried(cursor).items():
            for object_id in ids:
                changes.objects.setdefault(stream_name, {}).setdefault(object_id, changes.since)
        if not any(changes.objects.values()) and not any(changes.records.values()):
            adapter.context.log.info(f"{adapter.provider}: nothing changed since the last sync")
            return changes.cursor
        writer = adapter.record_writer(background=True)
        with writer.open():
            for stream_name, texts in changes.records.items():
                stream = self.stream(stream_name)
                for obj in texts:
                    record = self._validated(adapter, stream, obj, ledger)
                    if record is not None:
                        writer.add_all([record])
            writer.add_all(self._fetched_again(adapter, changes.objects, ledger))
            for stream_name, filters in changes.relist.items():
                writer.add_all(self._list(adapter, self.stream(stream_name), ledger, filters))
        ledger.landed += writer.stats.written
        return changes.cursor

    def _fetched_again(
        self,
        adapter: ObjectAdapter,
        objects: Mapping[str, Mapping[str, datetime | None]],
        ledger: Ledger,
    ) -> Iterator[RawRecord]:
        """Each named object as the provider shows it now (those it no longer has skipped)."""
        for stream_name, changed in objects.items():
            stream = self.stream(stream_name)
            for object_id, changed_at in changed.items():
                obj = adapter.retrieve(stream, object_id)
                if obj is None:
                    continue
                record = self._validated(adapter, stream, obj, ledger, changed_at)
                if record is not None:
                    yield record

    # --- reading -------------------------------------------------------------------------

    def _list(
        self,
        adapter: ObjectAdapter,
        stream: Stream,
        ledger: Ledger,
        filters: Mapping[str, Any] | None = None,
    ) -> Iterator[RawRecord]:
        for page in self._pages(adapter, stream, filters, prefetch=adapter.prefetch_pages):
            yield from self._records(adapter, stream, page.items, ledger)

    def _every_list(self, adapter: ObjectAdapter) -> Iterator[tuple[Stream, Page[bytes] | None]]:
        """Every stream's pages, `concurrent_lists` streams at a time (in the streams' order
        otherwise), and `(stream, None)` once a stream's list is complete."""
        if self.concurrent_lists < 2 or not adapter.prefetch_pages:
            for stream in self.streams:
                for page in self._pages(adapter, stream, None, prefetch=adapter.prefetch_pages):
                    yield stream, page
                yield stream, None
            return

        def listing(stream: Stream) -> Callable[[], Iterator[Page[bytes]]]:
            # each list's worker thread is its prefetch: no second thread per list
            return lambda: self._pages(adapter, stream, None, prefetch=False)

        yield from concurrently(
            [(stream, listing(stream)) for stream in self.streams], at_once=self.concurrent_lists
        )

    def _pages(
        self,
        adapter: ObjectAdapter,
        stream: Stream,
        filters: Mapping[str, Any] | None,
        *,
        prefetch: bool,
    ) -> Iterator[Page[bytes]]:
        wanted = filters or {}

        def fetch(request: PageRequest) -> Page[bytes]:
            return adapter.fetch_page(stream, wanted, request)

        try:
            yield from pages(adapter.paginator(stream), fetch, prefetch=prefetch)
        except PagingError as exc:
            raise ProviderUnavailable(adapter.provider, f"{stream.path} {exc}") from None

    def _records(
        self, adapter: ObjectAdapter, stream: Stream, objects: Iterable[bytes], ledger: Ledger
    ) -> Iterator[RawRecord]:
        for obj in objects:
            record = self._validated(adapter, stream, obj, ledger)
            if record is not None:
                yield record

    def _validated(
        self,
        adapter: ObjectAdapter,
        stream: Stream,
        obj: bytes,
        ledger: Ledger,
        source_updated_at: datetime | None = None,
    ) -> RawRecord | None:
        """Validate one object's JSON text; the text itself is what gets landed. A record
        that fails (or that the record guard refuses) is named and counted, and the others
        carry on."""
        ledger.listed(stream.name, obj)
        try:
            if problem := ledger.guard.problem(obj):
                ledger.reject(stream.name, obj, problem)
                return None
            model = stream.model.model_validate_json(obj)
            completed = adapter.complete(stream, obj, model)
            if completed is None:
                return None  # gone while we read it
            if completed is not obj:
                obj = completed
                if problem := ledger.guard.problem(obj):
                    ledger.reject(stream.name, obj, problem)
                    return None
                model = stream.model.model_validate_json(obj)
        except ValidationError as exc:
            ledger.reject(stream.name, obj, exc)
            return None
        return RawRecord(stream.name, model.id, obj, source_updated_at)  # type: ignore[attr-defined]

    # --- cursor and metrics --------------------------------------------------------------

    def _retried(self, cursor: Mapping[str, Any]) -> dict[str, list[str]]:
        """The objects the last sync rejected, to read again."""
        names = {stream.name for stream in self.streams}
        rejected = cursor.get("rejected_ids") or {}
        return {name: list(ids) for name, ids in rejected.items() if name in names}

    def _to_retry(self, ledger: Ledger) -> dict[str, list[str]]:
        names = {stream.name for stream in self.streams}
        return {
            name: ids[: self.max_retried_rejections]
            for name, ids in ledger.rejected_ids.items()
            # a rejected change (a Stripe event) names no object to read again
            if ids and name in names
        }

    def _write_metrics(self, adapter: ObjectAdapter) -> WriteStats:
        context = adapter.context
        started = time.perf_counter()
        with context.warehouse.tenant(context.workspace.id, actor=context.actor) as db:
            points = [point for row in adapter.metrics(db) for point in adapter.transform(row)]
        writer = adapter.point_writer()
        with writer.open():
            writer.add_all(points)
        context.log.info(
            f"{adapter.provider}: {len(points)} metric points computed in"
            f" {time.perf_counter() - started:.1f} s; {writer.stats.written} changed"
        )
        return writer.stats

"""The adapter contract every provider implements, and the machinery they share.

A provider is a Dagster ConfigurableResource (its configuration is provider-wide: hosts,
timeouts, batch size). A run binds it to one workspace's connection with `connect()`, then
calls `sync()`, and finally `disconnect()`; a run over several workspaces does this once per
workspace with the same resource, so nothing of one workspace may outlive `disconnect()`.

`sync()` runs the engine the provider's spec names (report, object or table: see
`engines/`), which calls the provider's hooks and streams what it reads through
validate -> transform -> write. `transform(raw)` turns one unit of what the engine computed
into KPI points: a validated report row (report engine), a row of the provider's metrics
query over its landed records (object engine), a valid table row (table engine).
"""

from __future__ import annotations

import functools
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

import dagster as dg
from pydantic import PrivateAttr
from sqlalchemy.engine import Connection as DbConnection

from kpi_pipelines import settings
from kpi_pipelines.integrations.shared.spec import (
    ProviderSpec,
    discover,
    provider_packages,
    spec_for,
)
from kpi_pipelines.models import KPIData, SyncResult
from kpi_pipelines.warehouse.control import Connection, Workspace
from kpi_pipelines.warehouse.database import Warehouse
from kpi_pipelines.warehouse.writer import RawRecord, WriteStats, write_kpis, write_raw_records

T = TypeVar("T")

# Raw batches a background writer has in flight at once, each its own transaction: while one
# waits on the network or on the GIL, the database parses and inserts another (a Stripe full
# read landed 1.3x faster with two on a 2-core machine: benchmarks/README.md).
BACKGROUND_WRITES_IN_FLIGHT = 2
# A raw batch is written once its payloads reach this many bytes of JSON, however few records
# it holds: its staging table then stays within PostgreSQL's default temp_buffers (8 MB)
# instead of being written to disk and read back (a 5,000-record Stripe batch is ~15 MB),
# and a provider's large records cannot make a batch's memory grow with them.
RAW_BATCH_BYTES = 4 * 1024 * 1024


class AdapterNotConnected(RuntimeError):
    pass


@dataclass
class SyncContext:
    """What a run hands an adapter: where it writes, for whom, and who is writing."""

    warehouse: Warehouse
    workspace: Workspace
    connection: Connection
    run_id: str
    options: dict[str, Any] = field(default_factory=dict)
    log: logging.Logger | logging.LoggerAdapter = field(
        default_factory=lambda: logging.getLogger("kpi_pipelines.sync")
    )

    @property
    def actor(self) -> str:
        return f"run:{self.run_id}"


class IntegrationAdapter(dg.ConfigurableResource, ABC):
    """connect / sync / transform / disconnect, as the integration spec requires."""

    provider: ClassVar[str]  # its spec's key (cadence, pool and the rest are in the spec)

    batch_size: int = 0  # 0: KPI_BATCH_SIZE

    _context: SyncContext | None = PrivateAttr(default=None)

    @property
    def context(self) -> SyncContext:
        if self._context is None:
            raise AdapterNotConnected(f"{self.provider}: call connect() before sync()")
        return self._context

    def effective_batch_size(self) -> int:
        return self.batch_size or settings.batch_size()

    def connect(self, context: SyncContext) -> None:
        """Bind to a workspace's connection and prove it works with one cheap call."""
        self._context = context
        try:
            self.check_connection()
        except BaseException:
            self.disconnect()  # release whatever the check opened: no sync will follow
            raise

    @abstractmethod
    def check_connection(self) -> None:
        """Fail with a message that says what to fix when the connection cannot work."""

    @property
    def spec(self) -> ProviderSpec:
        """This provider's declaration (found by its key, so an adapter used on its own
        knows its engine too)."""
        return _spec_of(self.provider, tuple(provider_packages()))

    def sync(self) -> SyncResult:
        """Run the engine of this provider's spec over its hooks."""
        engine = self.spec.engine
        if engine is None:
            raise NotImplementedError(
                f"{self.provider}: its spec names no engine, so its adapter must define sync()"
            )
        return engine.sync(self)

    @abstractmethod
    def transform(self, raw: Any) -> list[KPIData]: ...

    def request_stats(self) -> dict[str, int | float]:
        """What this sync asked of the provider's API (requests, retries, cache hits), for
        the run's metadata; empty for providers that send no requests."""
        return {}

    def disconnect(self) -> None:
        self._context = None

    # Helpers for subclasses.

    def point_writer(self, *, single_transaction: bool = False) -> BatchWriter[KPIData]:
        """KPI points into kpi_data (conflict resolution and audit included)."""
        return BatchWriter(
            self.context,
            lambda db, batch, fetched_at: write_kpis(db, batch, fetched_at=fetched_at),
            batch_size=self.effective_batch_size(),
            single_transaction=single_transaction,
        )

    def record_writer(self, *, background: bool = False) -> BatchWriter[RawRecord]:
        """Provider objects into raw_records, the landing copy metrics are computed from;
        in the background, BACKGROUND_WRITES_IN_FLIGHT batches at once."""
        provider = self.provider
        return BatchWriter(
            self.context,
            lambda db, batch, fetched_at: write_raw_records(
                db, provider, batch, fetched_at=fetched_at
            ),
            batch_size=self.effective_batch_size(),
            background=background,
            in_flight=BACKGROUND_WRITES_IN_FLIGHT if background else 1,
            key=_record_key,
            max_batch_bytes=RAW_BATCH_BYTES,
            size=_payload_bytes,
        )


def _record_key(record: RawRecord) -> tuple[str, str]:
    return record.stream, record.record_id


def _payload_bytes(record: RawRecord) -> int:
    # JSON text as the provider sent it (the object engine's records); a decoded payload (a
    # report's entity: names and ids) is not encoded twice to be weighed
    return len(record.payload) if isinstance(record.payload, bytes) else 0


@functools.cache
def _spec_of(provider: str, packages: tuple[str, ...]) -> ProviderSpec:
    return spec_for(provider, discover(list(packages)))


class BatchWriter(Generic[T]):
    """Buffers items and writes each full batch through the one write path.

    By default every batch is its own transaction (a crash loses at most the batch in
    flight, and a rerun rewrites it without duplicates). `single_transaction=True` makes the
    whole sync one transaction, for user submissions that are all-or-nothing.
    A batch holds at most `batch_size` items, and with `max_batch_bytes` it is written as soon
    as its items' `size` adds up to that many bytes.
    `background=True` writes batches on worker threads while the caller fetches the next
    pages (the database does its part without the GIL), up to `in_flight` batches at once,
    each its own transaction. A batch that shares a `key` with one in flight waits for it:
    concurrent transactions never wait on each other's rows (nor deadlock), and a key's
    writes stay in order. Memory stays bounded (the batches in flight and one filling), and
    a failed write is raised on the caller's next call.
    """

    def __init__(
        self,
        context: SyncContext,
        write: Callable[[DbConnection, list[T], datetime], int | WriteStats],
        *,
        batch_size: int,
        single_transaction: bool = False,
        background: bool = False,
        in_flight: int = 1,
        key: Callable[[T], Hashable] | None = None,
        max_batch_bytes: int | None = None,
        size: Callable[[T], int] | None = None,
    ):
        if (max_batch_bytes is None) != (size is None) or (
            max_batch_bytes is not None and max_batch_bytes < 1
        ):
            raise ValueError("a byte bound on batches needs a positive bound and an item size")
        if single_transaction and background:
            raise ValueError("a single-transaction writer cannot write in the background")
        if in_flight < 1 or (in_flight > 1 and (not background or key is None)):
            raise ValueError("batches in flight at once need a background writer and item keys")
        self.context = context
        self.batch_size = batch_size
        self.single_transaction = single_transaction
        self.stats = WriteStats()
        self.fetched_at = datetime.now(UTC)
        self._write = write
        self._key = key
        self._in_flight = in_flight
        self._buffer: list[T] = []
        self._max_batch_bytes = max_batch_bytes
        self._size = size
        self._buffered_bytes = 0
        self._shared: DbConnection | None = None
        self._worker = ThreadPoolExecutor(max_workers=in_flight) if background else None
        # oldest first: each batch's write and, when several may be in flight, its keys
        self._pending: list[tuple[Future[None], frozenset[Hashable]]] = []
        self._counting = threading.Lock()

    @contextmanager
    def open(self) -> Iterator[BatchWriter[T]]:
        if self.single_transaction:
            with self.context.warehouse.tenant(
                self.context.workspace.id, actor=self.context.actor
            ) as db:
                self._shared = db
                yield self
                self.flush()
            self._shared = None
        elif self._worker is not None:
            try:
                yield self
                self.flush()
                self._wait(len(self._pending))
            finally:
                self._worker.shutdown(wait=True)
        else:
            yield self
            self.flush()

    def add_all(self, items: Iterable[T]) -> None:
        size, max_bytes = self._size, self._max_batch_bytes
        for item in items:
            self._buffer.append(item)
            if size is not None:
                self._buffered_bytes += size(item)
            if len(self._buffer) >= self.batch_size or (
                max_bytes is not None and self._buffered_bytes >= max_bytes
            ):
                self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        self._buffered_bytes = 0
        if self._shared is not None:
            self._count(self._write(self._shared, batch, self.fetched_at))
        elif self._worker is not None:
            keys: frozenset[Hashable] = frozenset()
            if self._in_flight > 1:
                assert self._key is not None
                keys = frozenset(map(self._key, batch))
                # the last in flight that shares a key, and every one before it
                shared = [
                    n for n, (_, held) in enumerate(self._pending) if not keys.isdisjoint(held)
                ]
                self._wait(shared[-1] + 1 if shared else 0)
            self._wait(len(self._pending) - self._in_flight + 1)
            self._pending.append((self._worker.submit(self._write_batch, batch), keys))
        else:
            self._write_batch(batch)

    def _write_batch(self, batch: list[T]) -> None:
        with self.context.warehouse.tenant(
            self.context.workspace.id, actor=self.context.actor
        ) as db:
            self._count(self._write(db, batch, self.fetched_at))

    def _wait(self, oldest: int) -> None:
        """Wait for the `oldest` batches in flight (raising a failed write's error), and
        raise the error of any later one that has failed already."""
        for _ in range(max(oldest, 0)):
            future, _keys = self._pending.pop(0)
            future.result()
        for future, _keys in self._pending:
            if future.done():
                future.result()

    def _count(self, outcome: int | WriteStats) -> None:
        with self._counting:  # batches in flight count from their own threads
            if isinstance(outcome, WriteStats):
                self.stats += outcome
            else:
                self.stats.inserted += outcome

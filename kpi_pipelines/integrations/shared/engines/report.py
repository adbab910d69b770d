"""The report engine: a provider's reports read in date windows of its own time zone.

For GA4 and the ad platforms (Meta, LinkedIn, X): whatever a provider reports per day,
broken down by its dimensions. A provider declares its reports (`Report`) and the small
streams of objects its rows name by id (`Entities`) in its spec; its adapter implements
the hooks of `ReportAdapter` (see there). The engine does the rest:

- Days are the account's own: its probe (`probe()`) says which account the reports are
  about, its time zone and today's date there (`ReportScope.in_zone`). Windows, cursors and
  the days of points are that zone's dates; a request that needs instants gets the window's
  midnights there (`Query.span`).
- Each report has its own cursor in sync_state (stream = the report's name): the last day
  read, with the account and time zone it belongs to (a connection that now names another
  account, or an account in another time zone, starts over). The first sync reads
  `history_days` (run config `start_date` for more); later syncs read from the cursor
  minus the report's lookback (`Report.lookback_days`: the days its provider restates),
  and the write path stores only values that changed (a restatement leaves an audit row
  per changed value; an unchanged day writes nothing). A date-range re-sync is the run
  config `start_date`/`end_date`.
- Entities (campaigns) are listed whole first, every sync, landed in raw_records (only
  changed ones are written) and kept for the sync: a point whose breakdown holds an
  entity's id gets its declared fields in its metadata (its name, its status), so a
  renamed campaign is named anew by the next sync.
- The range is read in windows of `window_days`; each report's window is the unit of
  commit: all its rows are read first, then its points and its cursor are written in one
  transaction, so a sync that stops half-way (an outage, a revoked grant, a spent quota)
  leaves whole windows behind, never part of one, and the next sync resumes after the
  last whole window. A window is asked for in requests of at most `max_days` days,
  `max_ids` ids (of the report's `ids_from` entities) and `max_metrics` metrics; rows of
  one `row_key` from requests for other metrics are merged into one row before they
  become points.
- A report declared with `ReportJobs` runs as async jobs (report_jobs.py): created,
  polled with backoff until done, their results read through `fetch_page`; a job that
  fails or outlives its deadline is split into smaller windows or id lists and run
  again. Jobs and splits are counted in the run's metadata.

A row (or an entity) that fails validation, or that the record guard refuses (bounds.py:
too big, a string too long, a secret echoed back), is named and skipped (the rest is
stored). A list that goes round in circles fails the sync (ProviderUnavailable). A quota
the provider says is spent for longer than the HTTP layer waits (ProviderQuotaExhausted),
whether it is met by a request, a job's creation or a poll, ends the sync cleanly: not a
failed run, but `success=False` with a message naming when the quota comes back and the
day each report resumes from; the connection's health records it, so the schedule backs
off instead of hammering an empty quota.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, PrivateAttr, ValidationError
from sqlalchemy.engine import Connection as DbConnection

from kpi_pipelines.integrations.shared.base_adapter import IntegrationAdapter
from kpi_pipelines.integrations.shared.bounds import RecordGuard
from kpi_pipelines.integrations.shared.engines import Engine
from kpi_pipelines.integrations.shared.engines.report_jobs import JobRunner, JobTally, JobTiming
from kpi_pipelines.integrations.shared.engines.report_types import (
    Entities,
    JobState,
    JobStatus,
    Query,
    Report,
    ReportJobs,
    ReportScope,
    Window,
    merged_rows,
    row_field,
)
from kpi_pipelines.integrations.shared.errors import (
    ProviderError,
    ProviderQuotaExhausted,
    ProviderUnavailable,
)
from kpi_pipelines.integrations.shared.paging import (
    Page,
    PageRequest,
    Paginator,
    PagingError,
    items,
    pages,
)
from kpi_pipelines.integrations.shared.spec import ProviderRunConfig
from kpi_pipelines.integrations.shared.validation import Rejections, describe_validation, named
from kpi_pipelines.models import KPIData, SyncResult
from kpi_pipelines.warehouse.tenant_data import load_cursor, save_cursor
from kpi_pipelines.warehouse.writer import RawRecord, WriteStats, write_kpis

__all__ = [
    "Entities",
    "EntityIndex",
    "JobState",
    "JobStatus",
    "Query",
    "ReadTally",
    "Report",
    "ReportAdapter",
    "ReportEngine",
    "ReportJobs",
    "ReportRunConfig",
    "ReportScope",
    "Window",
    "option_date",
]

# Rejected rows named in SyncResult.errors (all are counted).
MAX_NAMED_ROWS = 1000


@dataclass
class ReadTally:
    """What one sync read: rows (valid or not), pages, entities, jobs, rejected records."""

    rows: int = 0
    pages: int = 0
    rejections: Rejections = field(default_factory=lambda: Rejections(MAX_NAMED_ROWS))
    jobs: JobTally = field(default_factory=JobTally)
    # entity stream -> {"listed": valid ones, "changed": landed anew}
    entities: dict[str, dict[str, int]] = field(default_factory=dict)
    unnamed_points: int = 0  # points naming an entity id the list did not have


class EntityIndex:
    """The entities one sync listed, by stream and id (what names its points)."""

    def __init__(self) -> None:
        self._by_stream: dict[str, dict[str, BaseModel]] = {}
        self._named: dict[tuple[str, str], dict[str, Any]] = {}

    def replace(self, stream: str, entities: dict[str, BaseModel]) -> None:
        self._by_stream[stream] = entities
        self._named = {key: names for key, names in self._named.items() if key[0] != stream}

    def get(self, stream: str, entity_id: str) -> Any:
        """The validated entity, or None when the list did not have it."""
        return self._by_stream.get(stream, {}).get(entity_id)

    def ids(self, stream: str) -> tuple[str, ...]:
        return tuple(sorted(self._by_stream.get(stream, {})))

    def all(self, stream: str) -> list[Any]:
        return list(self._by_stream.get(stream, {}).values())

    def metadata(self, entities: Entities, entity_id: str) -> dict[str, Any] | None:
        """What a point naming `entity_id` gets in its metadata (None: not listed)."""
        key = (entities.name, entity_id)
        if key not in self._named:
            entity = self.get(entities.name, entity_id)
            if entity is None:
                return None
            values = entity.model_dump(mode="json", include=set(entities.metadata.values()))
            self._named[key] = {
                name: values.get(field) for name, field in entities.metadata.items()
            }
        return self._named[key]

    def clear(self) -> None:
        self._by_stream.clear()
        self._named.clear()


class ReportRunConfig(ProviderRunConfig):
    """Leave everything unset for the incremental sync; set dates to re-sync a range."""

    # Re-sync from this day (YYYY-MM-DD, the provider's time zone). Default: the cursor
    # minus the lookback, or history_days back on the first sync.
    start_date: str | None = None
    # Last day to read (YYYY-MM-DD); default and latest: today in the provider's time zone.
    end_date: str | None = None
    # Days a first sync reads; default: the resource's history_days.
    history_days: int | None = None


class ReportAdapter(IntegrationAdapter):
    """The report engine's hooks, and the tunables every report provider has.

    Every report provider implements `probe`, `paginator`, `fetch_page`, `validate` and
    `transform` (and `check_connection`). A spec that declares `Entities` needs
    `entity_paginator` and `list_entities`; a report declared with `ReportJobs` needs
    `start_job` and `poll_job` (and may have `cancel_job`)."""

    history_days: int = 90  # what a first sync reads (run config start_date reads more)
    window_days: int = 31  # days per commit: the cursor is saved after each window
    # Async jobs: a job still running this long after it was created is split.
    job_deadline_seconds: float = 1800.0
    # Waits between polls of running jobs: from this, doubling with jitter, up to the max.
    job_poll_seconds: float = 2.0
    job_poll_max_seconds: float = 60.0

    _entities: EntityIndex = PrivateAttr(default_factory=EntityIndex)

    @abstractmethod
    def probe(self) -> ReportScope:
        """The account the reports are about, its time zone and today there (one cheap
        request; `ReportScope.in_zone` makes one from an IANA time zone)."""

    def lookback_days(self, report: Report) -> int:
        """Recent days of `report` the provider restates, read again by every sync (by
        default its declaration's)."""
        return report.lookback_days

    @abstractmethod
    def paginator(self, report: Report) -> Paginator:
        """How the provider pages a report (or a finished job's result: see `fetch_page`)."""

    @abstractmethod
    def fetch_page(
        self, report: Report, scope: ReportScope, query: Query, request: PageRequest
    ) -> Page[Any]:
        """One page of `report` for `query` (its window, ids and metrics; for an async
        report, `query.job` is the finished job whose result to read), its rows as the
        provider sent them. A row must carry its day and ids itself: where the provider
        answers per-day arrays, spread them into rows here (`query.days()`)."""

    @abstractmethod
    def validate(self, report: Report, raw: Any) -> Any:
        """One row as the record `transform` takes (a pydantic model, or a mapping);
        raises ValueError (or a pydantic ValidationError) saying why it is not valid."""

    def describe(self, raw: Any) -> str:
        """How a rejected row is named (its dimension values, say)."""
        return "?"

    # --- entities ------------------------------------------------------------------------

    @property
    def entities(self) -> EntityIndex:
        """What this sync listed of each entity stream (by id)."""
        return self._entities

    def entity_paginator(self, entities: Entities) -> Paginator:
        """How the provider pages an entity list."""
        raise NotImplementedError(f"{self.provider} declares entities but no entity_paginator")

    def list_entities(
        self, entities: Entities, scope: ReportScope, request: PageRequest
    ) -> Page[Any]:
        """One page of an entity list (each object as the provider sent it)."""
        raise NotImplementedError(f"{self.provider} declares entities but no list_entities")

    def report_ids(self, report: Report, scope: ReportScope, window: Window) -> Sequence[str]:
        """The ids a report is asked for over `window` (by default every listed entity of
        its `ids_from` stream; a provider may leave out what cannot have data then)."""
        assert report.ids_from is not None
        return self.entities.ids(report.ids_from)

    # --- async jobs ----------------------------------------------------------------------

    def start_job(self, report: Report, scope: ReportScope, query: Query) -> str:
        """Create the provider's job for `query`; its id."""
        raise NotImplementedError(f"{self.provider} declares report jobs but no start_job")

    def poll_job(self, report: Report, scope: ReportScope, job_id: str) -> JobState:
        """Ask once how a job is doing (never from the HTTP cache: `cacheable=False`)."""
        raise NotImplementedError(f"{self.provider} declares report jobs but no poll_job")

    def cancel_job(self, report: Report, scope: ReportScope, job_id: str) -> None:
        """Stop a job the engine gave up on (overdue); by default nothing."""

    def check_report_options(self) -> None:
        """The run's dates and the tunables, checked before anything is asked of the API."""
        for name in ("start_date", "end_date"):
            option_date(self.context.options, name)
        history = self.context.options.get("history_days")
        if history is not None and history < 1:
            raise ValueError(f"history_days must be at least 1, got {history}")
        if self.window_days < 1 or self.history_days < 1:
            raise ValueError("window_days and history_days must be at least 1")
        if min(self.job_deadline_seconds, self.job_poll_seconds, self.job_poll_max_seconds) <= 0:
            raise ValueError(
                "job_deadline_seconds, job_poll_seconds and job_poll_max_seconds must be positive"
            )

    def disconnect(self) -> None:
        self._entities.clear()
        super().disconnect()


@dataclass(frozen=True)
class ReportEngine(Engine):
    """Entities first, then each report, window after window, each window written whole with
    its cursor."""

    reports: tuple[Report, ...]
    entities: tuple[Entities, ...] = ()

    kind = "report"

    def __post_init__(self) -> None:
        for kind, names in (
            ("report", [r.name for r in self.reports]),
            ("entity stream", [e.name for e in self.entities]),
        ):
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(f"two {kind}s are named {', '.join(twice)}")
        declared = {e.name for e in self.entities}
        for report in self.reports:
            if report.ids_from is not None and report.ids_from not in declared:
                raise ValueError(
                    f"report {report.name} asks for the ids of {report.ids_from!r}, which is"
                    " not a declared entity stream"
                )

    @property
    def hooks(self) -> type[ReportAdapter]:
        return ReportAdapter

    def check(self, adapter: type[Any]) -> None:
        needed = []
        if self.entities:
            needed += ["entity_paginator", "list_entities"]
        if any(report.jobs for report in self.reports):
            needed += ["start_job", "poll_job"]
        missing = [
            name for name in needed if getattr(adapter, name) is getattr(ReportAdapter, name)
        ]
        if missing:
            raise TypeError(
                f"{adapter.__name__} does not implement {', '.join(missing)}, which its"
                " declared entities or report jobs need"
            )

    def describe(self) -> str:
        reports = ", ".join(report.name for report in self.reports)
        if self.entities:
            reports += f"; entities {', '.join(e.name for e in self.entities)}"
        return f"report ({reports})"

    def sync(self, adapter: ReportAdapter) -> SyncResult:
        context = adapter.context
        started = datetime.now(UTC)
        tally = ReadTally()
        stats = WriteStats()
        stopped_by: str | None = None
        scope: ReportScope | None = None
        adapter.entities.clear()
        try:
            scope = adapter.probe()
            for entities in self.entities:
                self._refresh_entities(adapter, entities, scope, tally)
            plan = self._plan(adapter, scope)
            whole = Window(min(w.first for w in plan.values()), max(w.last for w in plan.values()))
            for window in whole.split(adapter.window_days):
                for report in self.reports:
                    planned = plan[report]
                    part = Window(max(planned.first, window.first), min(planned.last, window.last))
                    if part.first <= part.last:
                        stats += self._sync_window(adapter, report, scope, part, tally)
        except ProviderQuotaExhausted as exc:
            stopped_by = f"{exc} {self._resume_note(adapter, scope)}"
            context.log.warning(stopped_by)
        jobs = tally.jobs
        context.log.info(
            f"{adapter.provider}: {tally.rows} row(s) in {tally.pages} page(s)"
            + (f", {jobs.jobs} job(s), {jobs.splits} split(s)" if jobs.jobs else "")
            + f"; {stats.inserted} new and {stats.updated} changed point(s)"
        )
        if tally.unnamed_points:
            context.log.warning(
                f"{adapter.provider}: {tally.unnamed_points} point(s) name an entity the"
                " provider's list did not have; they are stored without its name"
            )
        errors = [*tally.rejections.errors, *([stopped_by] if stopped_by else [])]
        return SyncResult(
            success=not errors,
            records_processed=tally.rows + sum(e["listed"] for e in tally.entities.values()),
            records_rejected=tally.rejections.count,
            points_written=stats.written,
            points_unchanged=stats.unchanged,
            errors=errors,
            last_sync_at=started,
            stopped_by=stopped_by,
            details=self._details(tally),
        )

    def _details(self, tally: ReadTally) -> dict[str, Any]:
        details: dict[str, Any] = {}
        if any(report.jobs for report in self.reports):
            details |= {
                "report_jobs": tally.jobs.jobs,
                "report_job_splits": tally.jobs.splits,
                "report_job_splits_named": tally.jobs.splits_named,
                "report_job_seconds_waited": round(tally.jobs.seconds_waited, 3),
            }
        if self.entities:
            details |= {
                "entities": tally.entities,
                "points_naming_unlisted_entities": tally.unnamed_points,
            }
        return details

    # --- entities ---------------------------------------------------------------------------

    def _refresh_entities(
        self, adapter: ReportAdapter, entities: Entities, scope: ReportScope, tally: ReadTally
    ) -> None:
        """List `entities` whole, landing them (only changed ones are written) and keeping
        them for this sync's points."""
        guard = RecordGuard(adapter.spec.limits.record())
        found: dict[str, BaseModel] = {}

        def fetch(request: PageRequest) -> Page[Any]:
            page = adapter.list_entities(entities, scope, request)
            tally.pages += 1
            return page

        writer = adapter.record_writer()
        with writer.open():
            try:
                for raw in items(adapter.entity_paginator(entities), fetch):
                    entity = self._valid_entity(entities, raw, tally.rejections, guard)
                    if entity is None:
                        continue
                    entity_id = str(entity.id)  # type: ignore[attr-defined]
                    if entity_id not in found and len(found) >= entities.max_count:
                        raise ProviderError(
                            adapter.provider,
                            f"{scope.label} lists more than {entities.max_count:,}"
                            f" {entities.name}, the most one sync keeps (Entities.max_count)",
                        )
                    found[entity_id] = entity
                    writer.add_all([RawRecord(entities.name, entity_id, raw)])
            except PagingError as exc:
                raise ProviderUnavailable(adapter.provider, f"{entities.name} {exc}") from None
        adapter.entities.replace(entities.name, found)
        tally.entities[entities.name] = {"listed": len(found), "changed": writer.stats.written}
        adapter.context.log.info(
            f"{adapter.provider}: {len(found)} {entities.name} listed,"
            f" {writer.stats.written} new or changed"
        )

    def _valid_entity(
        self, entities: Entities, raw: Any, rejections: Rejections, guard: RecordGuard
    ) -> BaseModel | None:
        label = named(str(raw.get("id", "?")) if isinstance(raw, Mapping) else "?")
        if problem := guard.problem_of(raw):
            rejections.add(f"{entities.name} {label}: {problem}")
            return None
        try:
            return entities.model.model_validate(raw)
        except ValidationError as exc:
            rejections.add(f"{entities.name} {label}: {describe_validation(exc, limit=3)}")
            return None

    def _named(
        self, adapter: ReportAdapter, points: list[KPIData], tally: ReadTally
    ) -> list[KPIData]:
        """`points` with the declared fields of the entities their breakdowns name."""
        if not self.entities:
            return points
        named_points = []
        for point in points:
            extra: dict[str, Any] = {}
            for entities in self.entities:
                entity_id = point.dimensions.get(entities.dimension)
                if entity_id is None or not entities.metadata:
                    continue
                names = adapter.entities.metadata(entities, entity_id)
                if names is None:
                    tally.unnamed_points += 1
                    continue
                extra |= names
            named_points.append(
                point.model_copy(update={"metadata": {**point.metadata, **extra}})
                if extra
                else point
            )
        return named_points

    # --- reading ----------------------------------------------------------------------------

    def queries(
        self, adapter: ReportAdapter, report: Report, scope: ReportScope, window: Window
    ) -> list[Query]:
        """The requests (or jobs) `window` of `report` is read in: its days, ids and metrics
        cut to the report's limits (none when it asks for ids and there are none)."""
        windows = list(window.split(report.max_days)) if report.max_days else [window]
        id_lists: list[tuple[str, ...]] = [()]
        if report.ids_from is not None:
            ids = tuple(dict.fromkeys(str(i) for i in adapter.report_ids(report, scope, window)))
            if not ids:
                return []
            id_lists = report.id_chunks(ids)
        return [
            Query(days, ids, metrics)
            for days in windows
            for ids in id_lists
            for metrics in report.metric_chunks()
        ]

    def rows(
        self,
        adapter: ReportAdapter,
        report: Report,
        scope: ReportScope,
        window: Window,
        tally: ReadTally,
    ) -> Iterator[Any]:
        """Every valid row of `report` over `window`: each request's (or job's) pages, rows
        of one key merged where the report declares one."""
        queries: Iterator[Query] = iter(self.queries(adapter, report, scope, window))
        if report.jobs is not None:
            runner = JobRunner(
                adapter,
                report,
                scope,
                provider=adapter.provider,
                timing=JobTiming(
                    adapter.job_deadline_seconds,
                    adapter.job_poll_seconds,
                    adapter.job_poll_max_seconds,
                ),
                tally=tally.jobs,
                log=adapter.context.log,
            )
            queries = runner.run(list(queries))
        if not report.row_key:
            for query in queries:
                yield from self._read(adapter, report, scope, query, tally)
            return
        merged: dict[tuple[Any, ...], Any] = {}
        for query in queries:
            for row in self._read(adapter, report, scope, query, tally):
                key = tuple(row_field(row, name) for name in report.row_key)
                merged[key] = merged_rows(merged[key], row) if key in merged else row
        yield from merged.values()

    def _read(
        self,
        adapter: ReportAdapter,
        report: Report,
        scope: ReportScope,
        query: Query,
        tally: ReadTally,
    ) -> Iterator[Any]:
        """The valid rows of one request (or finished job), page after page."""

        def fetch(request: PageRequest) -> Page[Any]:
            page = adapter.fetch_page(report, scope, query, request)
            tally.pages += 1
            return page

        guard = RecordGuard(adapter.spec.limits.record())
        try:
            for page in pages(adapter.paginator(report), fetch):
                for raw in page.items:
                    tally.rows += 1
                    row = self.validated(adapter, report, raw, tally.rejections, guard)
                    if row is not None:
                        yield row
        except PagingError as exc:
            raise ProviderUnavailable(adapter.provider, f"{report.name} {exc}") from None

    def validated(
        self,
        adapter: ReportAdapter,
        report: Report,
        raw: Any,
        rejections: Rejections,
        guard: RecordGuard | None = None,
    ) -> Any:
        """`raw` validated by the provider's hook, or None (named in `rejections`): first
        the record guard (bounds.py), then the hook."""
        guard = guard or RecordGuard(adapter.spec.limits.record())
        if problem := guard.problem_of(raw):
            rejections.add(f"{report.name} row {named(adapter.describe(raw))}: {problem}")
            return None
        try:
            return adapter.validate(report, raw)
        except (ValidationError, ValueError) as exc:
            rejections.add(
                f"{report.name} row {named(adapter.describe(raw))}:"
                f" {describe_validation(exc, limit=3)}"
            )
            return None

    def _sync_window(
        self,
        adapter: ReportAdapter,
        report: Report,
        scope: ReportScope,
        window: Window,
        tally: ReadTally,
    ) -> WriteStats:
        """Read every row of `report` over `window`, then write its points and its cursor
        in one transaction (the window is the unit of commit)."""
        context = adapter.context
        fetched_at = datetime.now(UTC)
        rows = list(self.rows(adapter, report, scope, window, tally))
        stats = WriteStats()
        size = adapter.effective_batch_size()
        batch: list[KPIData] = []
        with context.warehouse.tenant(context.workspace.id, actor=context.actor) as db:
            for row in rows:
                batch += self._named(adapter, adapter.transform(row), tally)
                if len(batch) >= size:
                    stats += write_kpis(db, batch, fetched_at=fetched_at)
                    batch = []
            stats += write_kpis(db, batch, fetched_at=fetched_at)
            self._advance_cursor(db, adapter, report, scope, window.last)
        return stats

    # --- planning and cursors ---------------------------------------------------------------

    def _plan(self, adapter: ReportAdapter, scope: ReportScope) -> dict[Report, Window]:
        context = adapter.context
        options = context.options
        explicit_start = option_date(options, "start_date")
        end = min(option_date(options, "end_date") or scope.today, scope.today)
        history = options.get("history_days") or adapter.history_days
        plan: dict[Report, Window] = {}
        for report in self.reports:
            if explicit_start is not None:
                start = explicit_start
            else:
                through = self._synced_through(adapter, report, scope)
                if through is None:
                    start = scope.today - timedelta(days=history - 1)
                else:
                    lookback = adapter.lookback_days(report)
                    start = min(through, scope.today) - timedelta(days=lookback)
            if start > end:
                raise ValueError(
                    f"start_date {start.isoformat()} is after end_date {end.isoformat()}"
                    f" (today is {scope.today.isoformat()} in the time zone of {scope.label},"
                    f" {scope.time_zone})"
                )
            plan[report] = Window(start, end)
        context.log.info(
            f"{adapter.provider}: "
            + "; ".join(
                f"{r.name} {w.first.isoformat()}..{w.last.isoformat()}" for r, w in plan.items()
            )
            + f" ({scope.time_zone})"
        )
        return plan

    def _synced_through(
        self, adapter: ReportAdapter, report: Report, scope: ReportScope
    ) -> date | None:
        context = adapter.context
        with context.warehouse.tenant(context.workspace.id, actor=context.actor) as db:
            return _synced_through(load_cursor(db, adapter.provider, report.name), scope)

    def _advance_cursor(
        self,
        db: DbConnection,
        adapter: ReportAdapter,
        report: Report,
        scope: ReportScope,
        through: date,
    ) -> None:
        """Record, in the caller's transaction, that `report` has been read through
        `through` (never moves backwards)."""
        current = _synced_through(load_cursor(db, adapter.provider, report.name), scope)
        if current is not None and current >= through:
            return
        save_cursor(
            db,
            adapter.provider,
            report.name,
            {**scope.identity, "synced_through": through.isoformat(), "time_zone": scope.time_zone},
        )

    def _resume_note(self, adapter: ReportAdapter, scope: ReportScope | None) -> str:
        if scope is None:
            return "Nothing was read; the next sync starts over."
        parts = []
        for report in self.reports:
            through = self._synced_through(adapter, report, scope)
            parts.append(
                f"{report.name} through {through.isoformat()}"
                if through
                else f"{report.name} not yet"
            )
        return (
            "What was read is stored (" + ", ".join(parts) + "); the next sync resumes from there."
        )


def _synced_through(cursor: Mapping[str, Any] | None, scope: ReportScope) -> date | None:
    cursor = cursor or {}
    if any(cursor.get(key) != value for key, value in scope.identity.items()):
        return None  # never synced, or the connection now names another account
    if cursor.get("time_zone", scope.time_zone) != scope.time_zone:
        return None  # the account's days are another zone's now: read them all again
    if not cursor.get("synced_through"):
        return None
    return date.fromisoformat(cursor["synced_through"])


def option_date(options: Mapping[str, Any], name: str) -> date | None:
    """A run option that holds a day (YYYY-MM-DD), or None when unset."""
    value = options.get(name)
    if value in (None, ""):
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{name} {value!r} is not a date in the form YYYY-MM-DD") from None

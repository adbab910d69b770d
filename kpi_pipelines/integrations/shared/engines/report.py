"""The report engine: a provider's reports read in date windows of its own time zone.

For GA4 now, and the ad platforms (Meta, LinkedIn, X) next: whatever a provider reports per
day, broken down by its dimensions.

Days are the provider's own: its probe (`probe()`) says which account the reports are
about, its time zone and today's date there. Each report has its own cursor in sync_state
(stream = the report's name): the last day read, with the account it belongs to (a
connection that now names another account starts over). The first sync reads
`history_days` (run config `start_date` for more); later syncs read from the cursor minus
the provider's lookback (`lookback()`: the days it restates), because the provider
restates recent days and the write path stores only values that changed (a restatement
leaves an audit row per changed value). A date-range re-sync is the run config
`start_date`/`end_date`.

The range is read in windows of `window_days`; in each window, each report is paged with
the provider's paginator until its stop condition. A report's window is the unit of
commit: all its pages are read first, then its points and its cursor are written in one
transaction, so a sync that stops half-way (an outage, a revoked grant, a spent quota)
leaves whole windows behind, never part of one, and the next sync resumes after the last
whole window. A window holds at most window_days x the breakdown's rows, and no
transaction stays open while the API is retried.

A row that fails validation, or that the record guard refuses (bounds.py: too big, a
string too long, a secret echoed back), is named and skipped (the rest is stored). A list
that goes round in circles fails the sync (ProviderUnavailable). A quota the
provider says is spent for longer than the HTTP layer waits (ProviderQuotaExhausted) ends
the sync cleanly: not a failed run, but `success=False` with a message naming when the
quota comes back and the day each report resumes from; the connection's health records it,
so the schedule backs off instead of hammering an empty quota.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.engine import Connection as DbConnection

from kpi_pipelines.integrations.shared.base_adapter import IntegrationAdapter
from kpi_pipelines.integrations.shared.bounds import RecordGuard
from kpi_pipelines.integrations.shared.engines import Engine
from kpi_pipelines.integrations.shared.errors import ProviderQuotaExhausted, ProviderUnavailable
from kpi_pipelines.integrations.shared.paging import (
    Page,
    PageRequest,
    Paginator,
    PagingError,
    pages,
)
from kpi_pipelines.integrations.shared.spec import ProviderRunConfig
from kpi_pipelines.integrations.shared.validation import Rejections, describe_validation, named
from kpi_pipelines.models import KPIData, SyncResult
from kpi_pipelines.warehouse.tenant_data import load_cursor, save_cursor
from kpi_pipelines.warehouse.writer import WriteStats, write_kpis

# Rejected rows named in SyncResult.errors (all are counted).
MAX_NAMED_ROWS = 1000


@dataclass(frozen=True)
class Report:
    """One report shape: its cursor's stream in sync_state, and what it breaks down by."""

    name: str
    dimensions: tuple[str, ...]
    metrics: tuple[str, ...]


@dataclass(frozen=True)
class ReportScope:
    """What a sync's reports are about, as the provider's probe found it."""

    # What the cursors belong to ({"property_id": "123"}): a cursor of another is not used.
    identity: Mapping[str, str]
    time_zone: str
    today: date  # in the provider's time zone
    label: str  # how messages name the account ("property 123")


@dataclass(frozen=True)
class Window:
    first: date
    last: date  # inclusive


@dataclass
class ReadTally:
    """What one sync read: rows (valid or not), report pages, and the rejected rows."""

    rows: int = 0
    pages: int = 0
    rejections: Rejections = field(default_factory=lambda: Rejections(MAX_NAMED_ROWS))


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
    """The report engine's hooks, and the tunables every report provider has."""

    history_days: int = 90  # what a first sync reads (run config start_date reads more)
    window_days: int = 31  # days per request; the cursor is saved after each window

    @abstractmethod
    def probe(self) -> ReportScope:
        """The account the reports are about, its time zone and today there (one cheap
        request)."""

    def lookback(self) -> timedelta:
        """Recent days the provider restates, read again by every sync."""
        return self.spec.lookback or timedelta(0)

    @abstractmethod
    def paginator(self, report: Report) -> Paginator:
        """How the provider pages a report."""

    @abstractmethod
    def fetch_page(
        self, report: Report, scope: ReportScope, window: Window, request: PageRequest
    ) -> Page[Any]:
        """One page of `report` over `window` (its rows as the provider sent them)."""

    @abstractmethod
    def validate(self, report: Report, raw: Any) -> Any:
        """One row as the record `transform` takes; raises ValueError (or a pydantic
        ValidationError) saying why it is not valid."""

    def describe(self, raw: Any) -> str:
        """How a rejected row is named (its dimension values, say)."""
        return "?"

    def check_report_options(self) -> None:
        """The run's dates and the tunables, checked before anything is asked of the API."""
        for name in ("start_date", "end_date"):
            option_date(self.context.options, name)
        history = self.context.options.get("history_days")
        if history is not None and history < 1:
            raise ValueError(f"history_days must be at least 1, got {history}")
        if self.window_days < 1 or self.history_days < 1:
            raise ValueError("window_days and history_days must be at least 1")


@dataclass(frozen=True)
class ReportEngine(Engine):
    """Each report, window after window, each window written whole with its cursor."""

    reports: tuple[Report, ...]

    kind = "report"

    @property
    def hooks(self) -> type[ReportAdapter]:
        return ReportAdapter

    def describe(self) -> str:
        return f"report ({', '.join(report.name for report in self.reports)})"

    def sync(self, adapter: ReportAdapter) -> SyncResult:
        context = adapter.context
        started = datetime.now(UTC)
        tally = ReadTally()
        stats = WriteStats()
        stopped_by: str | None = None
        scope: ReportScope | None = None
        try:
            scope = adapter.probe()
            plan = self._plan(adapter, scope)
            for window in _windows(
                min(w.first for w in plan.values()),
                max(w.last for w in plan.values()),
                adapter.window_days,
            ):
                for report in self.reports:
                    planned = plan[report]
                    part = Window(max(planned.first, window.first), min(planned.last, window.last))
                    if part.first <= part.last:
                        stats += self._sync_window(adapter, report, scope, part, tally)
        except ProviderQuotaExhausted as exc:
            stopped_by = f"{exc} {self._resume_note(adapter, scope)}"
            context.log.warning(stopped_by)
        context.log.info(
            f"{adapter.provider}: {tally.rows} row(s) in {tally.pages} report page(s);"
            f" {stats.inserted} new and {stats.updated} changed point(s)"
        )
        errors = [*tally.rejections.errors, *([stopped_by] if stopped_by else [])]
        return SyncResult(
            success=not errors,
            records_processed=tally.rows,
            records_rejected=tally.rejections.count,
            points_written=stats.written,
            points_unchanged=stats.unchanged,
            errors=errors,
            last_sync_at=started,
            stopped_by=stopped_by,
        )

    # --- reading ----------------------------------------------------------------------------

    def rows(
        self,
        adapter: ReportAdapter,
        report: Report,
        scope: ReportScope,
        window: Window,
        tally: ReadTally,
    ) -> Iterator[Any]:
        """Every valid row of `report` over `window`, page after page."""

        def fetch(request: PageRequest) -> Page[Any]:
            page = adapter.fetch_page(report, scope, window, request)
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
        """Read every page of `report` over `window`, then write its points and its cursor
        in one transaction (the window is the unit of commit)."""
        context = adapter.context
        fetched_at = datetime.now(UTC)
        rows = list(self.rows(adapter, report, scope, window, tally))
        stats = WriteStats()
        size = adapter.effective_batch_size()
        batch: list[KPIData] = []
        with context.warehouse.tenant(context.workspace.id, actor=context.actor) as db:
            for row in rows:
                batch += adapter.transform(row)
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
                    start = min(through, scope.today) - timedelta(days=adapter.lookback().days)
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
    if not cursor.get("synced_through"):
        return None
    return date.fromisoformat(cursor["synced_through"])


def _windows(start: date, end: date, size: int) -> Iterator[Window]:
    while start <= end:
        last = min(end, start + timedelta(days=size - 1))
        yield Window(start, last)
        start = last + timedelta(days=1)


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

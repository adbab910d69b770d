"""What the report engine's declarations and hooks speak in (engines/report.py uses them).

Declarations, in a provider's spec: a `Report` (its metrics, the days it restates, how
one request may be cut: days, ids, metrics; `ReportJobs` when it runs as async jobs) and
`Entities` (the small stream of objects its rows name by id only, such as campaigns).
Values the engine hands the hooks: the `ReportScope` a probe found (the account and its
time zone), the `Query` one request or job asks for, and a job's `JobState`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel

from kpi_pipelines.integrations.shared.errors import ProviderError


@dataclass(frozen=True)
class ReportJobs:
    """A report the provider runs as async jobs (create, poll until done, read the result).

    A job that fails, or runs past the adapter's `job_deadline_seconds`, is split in two
    (its days first, down to `min_days`, then its ids, down to `min_ids`) and each half
    runs again; one that fails at the smallest size fails the sync."""

    in_flight: int = 1  # jobs of one sync running at once (the provider's limit)
    min_days: int = 1
    min_ids: int = 1

    def __post_init__(self) -> None:
        if min(self.in_flight, self.min_days, self.min_ids) < 1:
            raise ValueError("in_flight, min_days and min_ids must be at least 1")


@dataclass(frozen=True)
class Report:
    """One report shape: its cursor's stream in sync_state (its name), what it breaks down
    by, what it measures, the days it restates and how a request for it may be cut.

    The engine cuts each window into requests (`Query`): into `max_days` days, lists of at
    most `max_ids` ids of the entity stream `ids_from`, and at most `max_metrics` metrics;
    their rows are one result. Rows of one `row_key` from requests for other metrics are
    merged into one row (so a report whose metrics are cut needs a row key)."""

    name: str
    dimensions: tuple[str, ...]
    metrics: tuple[str, ...]
    lookback_days: int = 0  # recent days the provider restates: every sync reads them again
    max_days: int | None = None  # days one request may span (X's synchronous stats: 7)
    ids_from: str | None = None  # the Entities stream whose ids each request names
    max_ids: int | None = None  # ids one request may name (X: 20)
    max_metrics: int | None = None  # metrics one request may ask for (LinkedIn: 20)
    # Fields of a validated row that identify it across requests (its day and entity id).
    row_key: tuple[str, ...] = ()
    jobs: ReportJobs | None = None  # None: each request answers at once

    def __post_init__(self) -> None:
        for name in ("max_days", "max_ids", "max_metrics"):
            limit = getattr(self, name)
            if limit is not None and limit < 1:
                raise ValueError(f"report {self.name}: {name} must be at least 1, not {limit}")
        if self.lookback_days < 0:
            raise ValueError(f"report {self.name}: lookback_days cannot be negative")
        if self.max_ids is not None and self.ids_from is None:
            raise ValueError(f"report {self.name}: max_ids needs ids_from (whose ids?)")
        cut = self.max_metrics is not None and len(self.metrics) > self.max_metrics
        if cut and not self.row_key:
            raise ValueError(
                f"report {self.name}: its metrics are asked for {self.max_metrics} at a"
                " time, so its rows are merged: declare the row_key that identifies one"
            )

    def metric_chunks(self) -> list[tuple[str, ...]]:
        size = self.max_metrics or len(self.metrics) or 1
        return [self.metrics[i : i + size] for i in range(0, len(self.metrics), size)] or [()]

    def id_chunks(self, ids: tuple[str, ...]) -> list[tuple[str, ...]]:
        size = self.max_ids or len(ids) or 1
        return [ids[i : i + size] for i in range(0, len(ids), size)]


@dataclass(frozen=True)
class Entities:
    """A small stream of the objects a report's rows name by id only (campaigns): listed
    whole by every sync and landed in raw_records (stream `name`), so a breakdown point
    names its object and a rename shows on the next sync.

    Each listed object is validated by `model` (its `id` is the record's id). A point whose
    `dimension` holds an id gets the entity's fields in its metadata: `metadata` maps a
    metadata key to a field of the model ({"campaign_name": "name"})."""

    name: str
    model: type[BaseModel]
    dimension: str
    metadata: Mapping[str, str] = field(default_factory=dict, hash=False)
    max_count: int = 50_000  # more fails the sync: a list that size is not a small stream

    def __post_init__(self) -> None:
        if "id" not in self.model.model_fields:
            raise ValueError(f"entities {self.name}: {self.model.__name__} has no `id` field")
        unknown = sorted(set(self.metadata.values()) - set(self.model.model_fields))
        if unknown:
            raise ValueError(
                f"entities {self.name}: metadata names fields {unknown} that"
                f" {self.model.__name__} does not have"
            )


@dataclass(frozen=True)
class Window:
    first: date
    last: date  # inclusive

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def split(self, size: int) -> Iterator[Window]:
        """This window in consecutive windows of at most `size` days."""
        start = self.first
        while start <= self.last:
            last = min(self.last, start + timedelta(days=size - 1))
            yield Window(start, last)
            start = last + timedelta(days=1)


@dataclass(frozen=True)
class ReportScope:
    """What a sync's reports are about, as the provider's probe found it."""

    # What the cursors belong to ({"property_id": "123"}): a cursor of another is not used.
    identity: Mapping[str, str]
    time_zone: str
    today: date  # in the provider's time zone
    label: str  # how messages name the account ("property 123")

    @classmethod
    def in_zone(
        cls,
        provider: str,
        *,
        identity: Mapping[str, str],
        time_zone: str,
        label: str,
        now: datetime | None = None,
    ) -> ReportScope:
        """The scope of an account whose days are `time_zone`'s (an IANA name the provider
        gave): today is the date there now (or at `now`). An unknown zone is the provider's
        error, naming the account."""
        try:
            zone = ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ProviderError(
                provider, f"{label} reports an unknown time zone {time_zone!r}"
            ) from None
        moment = now.astimezone(zone) if now is not None else datetime.now(zone)
        return cls(identity=identity, time_zone=time_zone, today=moment.date(), label=label)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def midnight(self, day: date, *, todays_offset: bool = False) -> datetime:
        """When `day` begins in the account's time zone (an aware datetime, whole hours
        there). With `todays_offset`, at the UTC offset in force today rather than on `day`
        (X's rule for analytics windows across a daylight-saving change)."""
        if todays_offset:
            today = datetime.combine(self.today, time(12), self.zone)
            offset = today.utcoffset() or timedelta(0)
            return datetime.combine(day, time.min, timezone(offset))
        return datetime.combine(day, time.min, self.zone)


@dataclass(frozen=True)
class Query:
    """What one request (or one async job) of a report asks for: a window of days, the
    ids it names (of the report's `ids_from` stream) and its metrics; `job` is set when
    `fetch_page` reads the result of a finished job."""

    window: Window
    ids: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    job: JobState | None = None

    @property
    def first(self) -> date:
        return self.window.first

    @property
    def last(self) -> date:
        return self.window.last

    def days(self) -> list[date]:
        """Each day of the window, in order (a provider's per-day arrays index them)."""
        return [self.first + timedelta(days=n) for n in range(self.window.days)]

    def span(self, scope: ReportScope, *, todays_offset: bool = False) -> tuple[datetime, datetime]:
        """The window as instants in the account's time zone: the midnight its first day
        begins and the midnight after its last day (exclusive), whole hours there."""
        return (
            scope.midnight(self.first, todays_offset=todays_offset),
            scope.midnight(self.last + timedelta(days=1), todays_offset=todays_offset),
        )

    def with_job(self, job: JobState) -> Query:
        return replace(self, job=job)

    def describe(self) -> str:
        parts = [f"{self.first.isoformat()}..{self.last.isoformat()}"]
        if self.ids:
            parts.append(f"{len(self.ids)} id(s)")
        return ", ".join(parts)


class JobStatus(StrEnum):
    RUNNING = "running"  # not started yet, or running
    DONE = "done"  # its result can be read
    FAILED = "failed"  # failed, or skipped by the provider


@dataclass(frozen=True)
class JobState:
    """One poll of an async job, as the adapter read the provider's answer."""

    id: str
    status: JobStatus
    # Where its result is, for fetch_page: a file's URL, a report id (None: the job's id).
    result: str | None = None
    wait_seconds: float | None = None  # how long the provider says to wait before asking
    progress: float | None = None  # percent done, for the log
    detail: str | None = None  # why it failed, in the provider's words

    @property
    def done(self) -> bool:
        return self.status is JobStatus.DONE


def row_field(row: Any, name: str) -> Any:
    """A field of a validated row (a pydantic model or a mapping)."""
    if isinstance(row, Mapping):
        return row.get(name)
    return getattr(row, name, None)


def merged_rows(kept: Any, new: Any) -> Any:
    """Two rows of one key from requests for other metrics, as one: `new`'s fields that
    its request set over `kept`'s."""
    if isinstance(kept, BaseModel) and isinstance(new, BaseModel):
        return kept.model_copy(update={name: getattr(new, name) for name in new.model_fields_set})
    if isinstance(kept, Mapping) and isinstance(new, Mapping):
        return {**kept, **new}
    raise TypeError(f"rows of {type(kept).__name__} cannot be merged: return a model or a mapping")

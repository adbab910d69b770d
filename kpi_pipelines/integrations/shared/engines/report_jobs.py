"""Async report jobs, run for the report engine: created, polled until done, split on failure.

A report declared with `ReportJobs` is asked for as jobs: the engine hands `JobRunner` the
queries of one window, and gets back each query whose job is done (with its `JobState`,
whose result `fetch_page` then reads). Up to `in_flight` jobs run at once. Between polls
the runner waits with tenacity (as the HTTP layer does): exponential backoff with jitter
from the adapter's `job_poll_seconds` up to `job_poll_max_seconds`, and never before the
time a provider asked for (`JobState.wait_seconds`), so a job is not asked about sooner
than its provider wants.

A job that fails, or is still running `job_deadline_seconds` after it was created, is
split in two and each half runs as its own job: its days first (while both halves keep
`min_days`), then its ids (`min_ids`). Every split is logged and counted (the run's
metadata shows them); a job that cannot be split further fails the sync with
ReportJobFailed. An overdue job is cancelled where the provider can (`cancel_job`).
Errors of the hooks themselves (a spent quota, a revoked token) are not job failures:
they end the run as they would any request.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from tenacity import RetryCallState, Retrying, retry_if_result, stop_never, wait_exponential_jitter

from kpi_pipelines.integrations.shared.engines.report_types import (
    JobState,
    JobStatus,
    Query,
    Report,
    ReportJobs,
    ReportScope,
)
from kpi_pipelines.integrations.shared.errors import ReportJobFailed

# Splits a run's metadata describes one by one (all are counted).
MAX_NAMED_SPLITS = 20


class JobHooks(Protocol):
    """The adapter's async-job hooks (ReportAdapter implements them)."""

    def start_job(self, report: Report, scope: ReportScope, query: Query) -> str: ...

    def poll_job(self, report: Report, scope: ReportScope, job_id: str) -> JobState: ...

    def cancel_job(self, report: Report, scope: ReportScope, job_id: str) -> None: ...


@dataclass(frozen=True)
class JobTiming:
    deadline_seconds: float
    poll_seconds: float
    poll_max_seconds: float


@dataclass
class JobTally:
    """What one sync's jobs did, for its metadata."""

    jobs: int = 0
    splits: int = 0
    seconds_waited: float = 0.0
    splits_named: list[str] = field(default_factory=list)

    def split(self, note: str) -> None:
        self.splits += 1
        if len(self.splits_named) < MAX_NAMED_SPLITS:
            self.splits_named.append(note)


@dataclass
class _Running:
    query: Query
    job_id: str
    started: float
    due: float  # not asked about before this (the provider's wait)


class JobRunner:
    """Runs one window's queries of one report as jobs (see the module)."""

    def __init__(
        self,
        hooks: JobHooks,
        report: Report,
        scope: ReportScope,
        *,
        provider: str,
        timing: JobTiming,
        tally: JobTally,
        log: logging.Logger | logging.LoggerAdapter,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        assert report.jobs is not None, f"report {report.name} is not declared with jobs"
        self.hooks = hooks
        self.report = report
        self.policy: ReportJobs = report.jobs
        self.scope = scope
        self.provider = provider
        self.timing = timing
        self.tally = tally
        self.log = log
        self._sleep = sleep
        self._clock = clock
        self._backoff = wait_exponential_jitter(
            initial=timing.poll_seconds, max=timing.poll_max_seconds, jitter=timing.poll_seconds
        )
        self._window_splits = 0

    def run(self, queries: Iterable[Query]) -> Iterator[Query]:
        """Each query whose job is done, with its state (in the order jobs end)."""
        pending = deque(queries)
        running: list[_Running] = []
        while pending or running:
            while pending and len(running) < self.policy.in_flight:
                running.append(self._start(pending.popleft()))
            for job, state in self._until_some_end(running):
                running.remove(job)
                if state is not None and state.done:
                    yield job.query.with_job(state)
                else:
                    pending.extendleft(reversed(self._split(job, state)))

    # --- one job ----------------------------------------------------------------------------

    def _start(self, query: Query) -> _Running:
        job_id = self.hooks.start_job(self.report, self.scope, query)
        self.tally.jobs += 1
        now = self._clock()
        self.log.debug(f"{self.provider}: {self.report.name} job {job_id} for {query.describe()}")
        return _Running(query, job_id, started=now, due=now)

    def _until_some_end(self, running: list[_Running]) -> list[tuple[_Running, JobState | None]]:
        """Poll the running jobs, waiting between rounds, until at least one has ended:
        done or failed (its last state), or overdue (None)."""

        def poll_round() -> list[tuple[_Running, JobState | None]]:
            ended: list[tuple[_Running, JobState | None]] = []
            for job in running:
                now = self._clock()
                overdue = now - job.started >= self.timing.deadline_seconds
                if now < job.due:  # the provider asked us to wait
                    if overdue:
                        ended.append((job, None))
                    continue
                state = self.hooks.poll_job(self.report, self.scope, job.job_id)
                job.due = self._clock() + max(0.0, state.wait_seconds or 0.0)
                if state.status is not JobStatus.RUNNING:
                    ended.append((job, state))
                elif overdue:
                    ended.append((job, None))
            return ended

        def wait(retry_state: RetryCallState) -> float:
            now = self._clock()
            backoff = self._backoff(retry_state)
            soonest_due = min(job.due for job in running) - now
            soonest_deadline = min(j.started + self.timing.deadline_seconds for j in running) - now
            return max(0.0, min(max(backoff, soonest_due), soonest_deadline))

        retrying = Retrying(
            retry=retry_if_result(lambda ended: not ended),
            wait=wait,
            stop=stop_never,
            sleep=self._wait,
            reraise=True,
        )
        return retrying(poll_round)

    def _wait(self, seconds: float) -> None:
        self.tally.seconds_waited += seconds
        self._sleep(seconds)

    # --- splitting --------------------------------------------------------------------------

    def _split(self, job: _Running, state: JobState | None) -> list[Query]:
        """The job's query in two smaller ones, or ReportJobFailed when it cannot be."""
        query = job.query
        if state is None:
            reason = f"was still running {self.timing.deadline_seconds:g} s after it started"
            self._cancel(job)
        else:
            detail = f": {state.detail}" if state.detail else ""
            reason = f"failed{detail}"
        days, ids = query.window.days, query.ids
        if days >= 2 * self.policy.min_days:
            first, second = query.window.split(-(-days // 2))
            halves = [Query(first, ids, query.metrics), Query(second, ids, query.metrics)]
        elif len(ids) >= 2 * self.policy.min_ids:
            middle = len(ids) // 2
            halves = [
                Query(query.window, ids[:middle], query.metrics),
                Query(query.window, ids[middle:], query.metrics),
            ]
        else:
            raise ReportJobFailed(
                self.provider,
                self.report.name,
                f"{query.describe()} ({self.scope.label})",
                f"{job.job_id} {reason}",
                splits=self._window_splits,
            )
        self._window_splits += 1
        note = (
            f"{self.report.name} {query.describe()}: job {job.job_id} {reason}; split into"
            f" {halves[0].describe()} and {halves[1].describe()}"
        )
        self.tally.split(note)
        self.log.warning(f"{self.provider}: {note}")
        return halves

    def _cancel(self, job: _Running) -> None:
        self.hooks.cancel_job(self.report, self.scope, job.job_id)

"""Async report jobs on the simulated clock: the lifecycle Meta's report runs and X's async
stats jobs share, with outcomes a test scripts. Each platform keeps its own state names
and bodies; the kit keeps the phases, the progress and the result.

    jobs = ReportJobs(clock, steps=3, max_size=400)      # a job over 400 units fails
    job = jobs.create(account_id, query, size=days * len(ids),
                      compute=lambda at: report_rows(query, as_of=at))
    job = jobs.poll(job.id, owner=account_id)             # each poll is one step
    META_STATUS[job.phase], job.percent                   # "Job Running", 50
    job.result                                            # once job.phase == "succeeded"

A job moves one step per poll (and, with `step_seconds`, one per that many seconds of the
simulated clock): step 0 `queued`, step 1 `started`, then `running` with its percentage
rising, and at its last step it ends as its outcome says. Its result is computed when it
succeeds, as of that instant, from the account (so it carries the restatement of then).

Outcomes, first match wins:
- a job bigger than `max_size` (e.g. days x entities) fails with reason "too_big" (what
  splitting the window or the id list cures);
- otherwise the first scripted outcome whose `match(query)` holds (or that matches any)
  is used once: `Outcome.fail()`, `Outcome.skip()`, `Outcome.stall()` (runs forever: the
  engine's deadline must give up on it), `Outcome.succeed(after=N)`;
- otherwise it succeeds after the registry's `steps`.
`max_active` bounds the jobs an owner has unfinished (X counts concurrent jobs per
account): `create` raises TooManyJobs past it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from kpi_pipelines.sandbox.kit.clock import SimClock
from kpi_pipelines.sandbox.kit.ids import stable_digits

R = TypeVar("R")
JobPhase = Literal["queued", "started", "running", "succeeded", "failed", "skipped"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "skipped"})
Ending = Literal["succeed", "fail", "skip", "stall"]


class TooManyJobs(Exception):
    """The owner has `limit` unfinished jobs already."""

    def __init__(self, owner: str, limit: int) -> None:
        super().__init__(f"{owner} has {limit} unfinished report jobs (the most allowed)")
        self.owner = owner
        self.limit = limit


@dataclass(frozen=True)
class Outcome:
    """How a job ends, after how many steps (None: the registry's default)."""

    ending: Ending = "succeed"
    after: int | None = None
    reason: str | None = None  # why a failed job failed (the platform may show it)
    stall_percent: int = 60

    def __post_init__(self) -> None:
        if self.after is not None and self.after < 1:
            raise ValueError("a job ends after 1 step or more")

    @classmethod
    def succeed(cls, after: int | None = None) -> Outcome:
        return cls("succeed", after)

    @classmethod
    def fail(cls, after: int | None = None, reason: str = "scripted") -> Outcome:
        return cls("fail", after, reason)

    @classmethod
    def skip(cls, after: int | None = None) -> Outcome:
        return cls("skip", after, "skipped")

    @classmethod
    def stall(cls, percent: int = 60) -> Outcome:
        """Never finishes: stays running at `percent`."""
        return cls("stall", None, None, percent)


_ENDED: dict[str, JobPhase] = {"succeed": "succeeded", "fail": "failed", "skip": "skipped"}


@dataclass
class Job(Generic[R]):
    """One report job as of the call that returned it (a snapshot: poll again to see it
    move)."""

    id: str
    owner: str
    query: Any
    size: int
    created_at: datetime
    outcome: Outcome
    steps: int
    polls: int = 0
    phase: JobPhase = "queued"
    percent: int = 0
    result: R | None = None
    finished_at: datetime | None = None
    _compute: Callable[[datetime], R] | None = field(default=None, repr=False)

    @property
    def done(self) -> bool:
        return self.phase in TERMINAL

    @property
    def reason(self) -> str | None:
        return self.outcome.reason if self.phase in ("failed", "skipped") else None


class ReportJobs(Generic[R]):
    """The report jobs of one simulator (thread-safe)."""

    def __init__(
        self,
        clock: SimClock,
        *,
        steps: int = 3,
        step_seconds: float | None = None,
        max_size: int | None = None,
        max_active: int | None = None,
        ids: Callable[[int], str] | None = None,
        seed: int = 0,
    ) -> None:
        if steps < 1:
            raise ValueError("a job takes 1 step or more")
        self.clock = clock
        self.steps = steps
        self.step_seconds = step_seconds
        self.max_size = max_size
        self.max_active = max_active
        self._ids = ids or (lambda n: stable_digits(f"report-job:{seed}:{n}", 16))
        self._jobs: dict[str, Job[R]] = {}
        self._scripted: list[tuple[Outcome, Callable[[Any], bool] | None]] = []
        self._lock = threading.Lock()
        self.created = 0

    def script(self, *outcomes: Outcome, match: Callable[[Any], bool] | None = None) -> None:
        """The next jobs (whose query `match` accepts) end as `outcomes` say, one each."""
        with self._lock:
            self._scripted.extend((o, match) for o in outcomes)

    def _outcome(self, query: Any, size: int) -> Outcome:
        if self.max_size is not None and size > self.max_size:
            return Outcome.fail(reason="too_big")
        for i, (outcome, match) in enumerate(self._scripted):
            if match is None or match(query):
                del self._scripted[i]
                return outcome
        return Outcome.succeed()

    def create(
        self, owner: str, query: Any, *, size: int, compute: Callable[[datetime], R]
    ) -> Job[R]:
        """A new job for `query`, `size` units of work big (e.g. days x entities); its
        result will be `compute(instant it succeeded)`."""
        if size < 0:
            raise ValueError("a job's size is 0 or more")
        with self._lock:
            if self.max_active is not None and self._active(owner) >= self.max_active:
                raise TooManyJobs(owner, self.max_active)
            outcome = self._outcome(query, size)
            job_id = self._ids(self.created)
            while job_id in self._jobs:
                self.created += 1
                job_id = self._ids(self.created)
            self.created += 1
            job: Job[R] = Job(
                job_id,
                owner,
                query,
                size,
                self.clock.now(),
                outcome,
                outcome.after or self.steps,
                _compute=compute,
            )
            self._jobs[job_id] = job
            return replace(job)

    def _find(self, job_id: str, owner: str | None) -> Job[R]:
        job = self._jobs.get(job_id)
        if job is None or (owner is not None and job.owner != owner):
            raise KeyError(f"no report job {job_id!r}" + (f" for {owner}" if owner else ""))
        return job

    def poll(self, job_id: str, *, owner: str | None = None) -> Job[R]:
        """The job after one more poll; KeyError when there is none (for `owner`)."""
        with self._lock:
            job = self._find(job_id, owner)
            job.polls += 1
            self._advance(job)
            return replace(job)

    def look(self, job_id: str, *, owner: str | None = None) -> Job[R]:
        """The job as it is now, without counting a poll."""
        with self._lock:
            job = self._find(job_id, owner)
            self._advance(job)
            return replace(job)

    def jobs(self, owner: str) -> list[Job[R]]:
        with self._lock:
            return [replace(j) for j in self._jobs.values() if j.owner == owner]

    def active(self, owner: str) -> int:
        """How many of the owner's jobs are unfinished."""
        with self._lock:
            return self._active(owner)

    def _active(self, owner: str) -> int:
        count = 0
        for job in self._jobs.values():
            if job.owner == owner:
                self._advance(job)
                count += not job.done
        return count

    def _advance(self, job: Job[R]) -> None:
        if job.done:
            return
        now = self.clock.now()
        step = job.polls
        if self.step_seconds:
            step += int((now - job.created_at).total_seconds() // self.step_seconds)
        ending = job.outcome.ending
        if step == 0:
            job.phase, job.percent = "queued", 0
        elif ending == "stall":
            job.phase = "started" if step == 1 else "running"
            job.percent = 0 if step == 1 else job.outcome.stall_percent
        elif step < job.steps:
            job.phase = "started" if step == 1 else "running"
            job.percent = round(100 * (step - 1) / (job.steps - 1))
        else:
            job.phase = _ENDED[ending]
            job.finished_at = now
            if ending == "succeed":
                assert job._compute is not None
                job.result = job._compute(now)
                job.percent = 100
            job._compute = None

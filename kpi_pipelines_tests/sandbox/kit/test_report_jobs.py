"""The kit's async report jobs: the lifecycle by polls and by simulated time, outcomes a test
scripts (failure, a job that never finishes, success after N polls), jobs too big to finish
that succeed once split, and a result computed from the account when the job completes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from kpi_pipelines.sandbox.kit import Outcome, ReportJobs, SimClock, TooManyJobs
from kpi_pipelines.sandbox.kit.ads import AdAccount, Restatement

START = datetime(2025, 6, 15, 12, tzinfo=UTC)
# How Meta and X name the phases (each platform's simulator keeps its own table).
META = {
    "queued": "Job Not Started",
    "started": "Job Started",
    "running": "Job Running",
    "succeeded": "Job Completed",
    "failed": "Job Failed",
    "skipped": "Job Skipped",
}
X = {
    "queued": "QUEUED",
    "started": "PROCESSING",
    "running": "PROCESSING",
    "succeeded": "SUCCESS",
    "failed": "FAILED",
}


def when(at: datetime) -> datetime:
    return at


def phases(jobs: ReportJobs[Any], job_id: str, polls: int) -> list[tuple[str, int]]:
    return [(job.phase, job.percent) for job in (jobs.poll(job_id) for _ in range(polls))]


def test_a_job_moves_a_step_per_poll_and_computes_its_result_when_it_completes() -> None:
    clock = SimClock(START)
    jobs: ReportJobs[datetime] = ReportJobs(clock, steps=3)
    job = jobs.create("act_1", {"level": "campaign"}, size=10, compute=when)
    assert (META[job.phase], job.percent, job.result) == ("Job Not Started", 0, None)
    assert [(META[p], pct) for p, pct in phases(jobs, job.id, 2)] == [
        ("Job Started", 0),
        ("Job Running", 50),
    ]
    clock.advance(minutes=5)
    done = jobs.poll(job.id)
    assert (META[done.phase], done.percent, done.done) == ("Job Completed", 100, True)
    assert done.result == done.finished_at == START + timedelta(minutes=5)
    assert jobs.poll(job.id).result == done.result  # computed once
    assert jobs.look(job.id).polls == 4  # looking is not polling


def test_the_simulated_clock_moves_jobs_without_polls() -> None:
    clock = SimClock(START)
    jobs: ReportJobs[datetime] = ReportJobs(clock, steps=4, step_seconds=30)
    job = jobs.create("18ce54", "query", size=1, compute=when)
    clock.advance(seconds=65)
    assert X[jobs.look(job.id).phase] == "PROCESSING"
    clock.advance(seconds=60)
    assert X[jobs.look(job.id).phase] == "SUCCESS"


def test_scripted_outcomes_apply_to_the_next_jobs_in_order() -> None:
    jobs: ReportJobs[datetime] = ReportJobs(SimClock(START), steps=2)
    jobs.script(Outcome.fail(after=2), Outcome.skip(), Outcome.succeed(after=5))
    failed = jobs.create("act_1", "a", size=1, compute=when)
    skipped = jobs.create("act_1", "b", size=1, compute=when)
    slow = jobs.create("act_1", "c", size=1, compute=when)
    normal = jobs.create("act_1", "d", size=1, compute=when)
    assert phases(jobs, failed.id, 2)[-1] == ("failed", 0)
    assert jobs.look(failed.id).reason == "scripted" and jobs.look(failed.id).result is None
    assert failed.phase == "queued"  # what create returned is a snapshot
    assert phases(jobs, skipped.id, 2)[-1][0] == "skipped"
    assert [p for p, _ in phases(jobs, slow.id, 5)] == [
        "started",
        "running",
        "running",
        "running",
        "succeeded",
    ]
    assert phases(jobs, normal.id, 2)[-1] == ("succeeded", 100)


def test_a_stalled_job_never_finishes_so_a_deadline_must_give_up() -> None:
    clock = SimClock(START)
    jobs: ReportJobs[datetime] = ReportJobs(clock, steps=2, step_seconds=10)
    jobs.script(Outcome.stall(percent=37))
    job = jobs.create("act_1", "q", size=1, compute=when)
    clock.advance(hours=6)
    for _ in range(50):
        job = jobs.poll(job.id)
    assert (job.phase, job.percent, job.done) == ("running", 37, False)
    assert jobs.active("act_1") == 1


def test_a_scripted_outcome_can_wait_for_the_query_it_names() -> None:
    jobs: ReportJobs[datetime] = ReportJobs(SimClock(START), steps=1)
    jobs.script(Outcome.fail(), match=lambda query: "c2" in query["ids"])
    first = jobs.create("act_1", {"ids": ["c1"]}, size=1, compute=when)
    second = jobs.create("act_1", {"ids": ["c2", "c3"]}, size=2, compute=when)
    assert jobs.poll(first.id).phase == "succeeded"
    assert jobs.poll(second.id).phase == "failed"


def test_a_job_too_big_fails_and_its_split_halves_succeed_with_the_same_rows() -> None:
    clock = SimClock(START)
    account = AdAccount("act_1", clock, seed=5, campaigns=6, restatement=Restatement(28))
    jobs: ReportJobs[dict] = ReportJobs(clock, steps=2, max_size=100)
    ids = [c.id for c in account.campaigns()]
    last = account.local_day() - timedelta(days=1)
    first = last - timedelta(days=29)

    def run(since: date, until: date) -> Any:
        query = {"since": since, "until": until, "ids": ids}
        size = ((until - since).days + 1) * len(ids)
        job = jobs.create(
            account.account_id,
            query,
            size=size,
            compute=lambda at: account.daily(since, until, campaign_ids=ids, as_of=at),
        )
        while not job.done:
            job = jobs.poll(job.id, owner=account.account_id)
        return job

    whole = run(first, last)  # 30 days x 6 campaigns = 180 > 100
    assert (whole.phase, whole.reason, whole.result) == ("failed", "too_big", None)
    middle = first + timedelta(days=14)
    halves = [run(first, middle), run(middle + timedelta(days=1), last)]  # 90 each
    assert [h.phase for h in halves] == ["succeeded", "succeeded"]
    assert halves[0].result | halves[1].result == account.daily(first, last, campaign_ids=ids)


def test_the_result_is_the_account_as_of_completion_with_its_restatement() -> None:
    clock = SimClock(START)
    account = AdAccount("act_1", clock, seed=5, campaigns=6)
    jobs: ReportJobs[dict] = ReportJobs(clock, steps=2)
    day = account.local_day() - timedelta(days=2)
    job = jobs.create("act_1", day, size=6, compute=lambda at: account.daily(day, day, as_of=at))
    at_creation = account.daily(day, day)
    jobs.poll(job.id)
    clock.advance(hours=48)
    done = jobs.poll(job.id)
    assert done.result == account.daily(day, day) != at_creation


def test_owners_see_only_their_jobs_and_are_bounded() -> None:
    jobs: ReportJobs[datetime] = ReportJobs(SimClock(START), steps=2, max_active=2)
    one = jobs.create("18ce54", "a", size=1, compute=when)
    jobs.create("18ce54", "b", size=1, compute=when)
    with pytest.raises(TooManyJobs, match="18ce54 has 2 unfinished report jobs"):
        jobs.create("18ce54", "c", size=1, compute=when)
    jobs.create("18ce55", "a", size=1, compute=when)  # another account has its own bound
    with pytest.raises(KeyError, match="for 18ce55"):
        jobs.poll(one.id, owner="18ce55")
    with pytest.raises(KeyError, match="no report job"):
        jobs.poll("123")
    phases(jobs, one.id, 2)
    jobs.create("18ce54", "c", size=1, compute=when)  # one finished: room again
    assert [j.query for j in jobs.jobs("18ce54")] == ["a", "b", "c"]


def test_job_ids_are_stable_and_distinct() -> None:
    def ids(seed: int) -> list[str]:
        jobs: ReportJobs[datetime] = ReportJobs(SimClock(START), seed=seed)
        return [jobs.create("a", n, size=1, compute=when).id for n in range(20)]

    assert ids(1) == ids(1) != ids(2)
    assert len(set(ids(1))) == 20 and all(i.isdigit() and len(i) == 16 for i in ids(1))

"""One line when a run starts and one when it ends, with its outcome: what `kpi-pipelines ui`
and `dev` show of the runs Dagster's daemon and UI launch (every event of a run stays in
Dagster, and in the services' log file).

Read from the instance's run storage, which every Dagster process shares: a thread polls it
every few seconds, whoever launched the run (a schedule, a sensor, a backfill, the UI).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import dagster as dg
from dagster import DagsterEventType, DagsterRunStatus

# (text, level): how a report reaches the person (a logging level says how to show it)
Say = Callable[[str, int], None]

FINISHED = {
    DagsterRunStatus.SUCCESS: ("succeeded", logging.INFO),
    DagsterRunStatus.FAILURE: ("failed", logging.ERROR),
    DagsterRunStatus.CANCELED: ("was canceled", logging.WARNING),
}
RUNNING = {DagsterRunStatus.STARTED, *FINISHED}
# Runs read per poll at most, newest first: far more than a machine starts in a poll.
BATCH = 200
MAX_REASON_CHARS = 300


def failure_reason(events: Iterable[Any]) -> str | None:
    """What a failed run's first failed step said (its Failure's description, else its
    error's message), from the run's DagsterEvents; None when no step failed."""
    for event in events:
        if event.event_type_value != "STEP_FAILURE":
            continue
        data = event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            return data.user_failure_data.description
        if data.error is not None:
            return data.error.message.strip()
    return None


class RunReporter:
    """Says when a run created after it started starts and ends (with its outcome and, for
    a failure, the reason and where to see it in the UI)."""

    def __init__(
        self, instance: dg.DagsterInstance, say: Say, ui_url: str, every: float = 2.0
    ) -> None:
        self._instance = instance
        self._say = say
        self._ui_url = ui_url.rstrip("/")
        self._every = every
        self._stopped = threading.Event()
        self._open: dict[str, bool] = {}  # unfinished run: whether its start was said
        newest = instance.get_run_records(limit=1)
        self._last_id = newest[0].storage_id if newest else 0
        self._thread = threading.Thread(target=self._follow, name="run reports", daemon=True)

    def start(self) -> RunReporter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=10)

    def _follow(self) -> None:
        log = logging.getLogger(__name__)
        while not self._stopped.wait(self._every):
            try:
                self.poll()
            except Exception as exc:  # the storage restarting: say nothing, try again
                log.info("could not read the runs (%s); trying again", type(exc).__name__)

    def poll(self) -> None:
        """Say what changed since the last poll."""
        records = [
            r for r in self._instance.get_run_records(limit=BATCH) if r.storage_id > self._last_id
        ]
        if records:
            self._last_id = max(r.storage_id for r in records)
        for record in sorted(records, key=lambda r: r.storage_id):
            self._open.setdefault(record.dagster_run.run_id, False)
        if not self._open:
            return
        tracked = self._instance.get_run_records(filters=dg.RunsFilter(run_ids=list(self._open)))
        for record in sorted(tracked, key=lambda r: r.storage_id):
            self._report(record)
        known = {r.dagster_run.run_id for r in tracked}
        for run_id in [r for r in self._open if r not in known]:  # deleted meanwhile
            del self._open[run_id]

    def _report(self, record: Any) -> None:
        run = record.dagster_run
        if run.status not in RUNNING:
            return  # queued or starting: said once it runs
        name = f"run {run.run_id[:8]} {run.job_name}{_workspaces(run.tags)}"
        if not self._open[run.run_id]:
            self._open[run.run_id] = True
            if run.status == DagsterRunStatus.STARTED or record.start_time:
                self._say(f"{name} started{_origin(run.tags)}", logging.INFO)
        if run.status not in FINISHED:
            return
        del self._open[run.run_id]
        outcome, level = FINISHED[run.status]
        took = (
            f" in {record.end_time - record.start_time:.0f} s"
            if record.start_time and record.end_time
            else ""
        )
        text = f"{name} {outcome}{took}"
        if run.status == DagsterRunStatus.FAILURE:
            reason = self._failure(run.run_id)
            text += f": {reason}" if reason else ""
            text += f" ({self._ui_url}/runs/{run.run_id})"
        self._say(text, level)

    def _failure(self, run_id: str) -> str | None:
        entries = self._instance.all_logs(
            run_id, of_type={DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE}
        )
        events = [e.dagster_event for e in entries if e.dagster_event is not None]
        reason = failure_reason(events)
        if reason is None:  # the run failed outside its steps (launch, a crashed worker)
            reason = next((e.message for e in events if e.message), None)
        if reason is None:
            return None
        first = reason.strip().splitlines()[0] if reason.strip() else ""
        return first[:MAX_REASON_CHARS] + ("…" if len(first) > MAX_REASON_CHARS else "")


def _workspaces(tags: Mapping[str, str]) -> str:
    """` for acme`, ` for acme…globex` (a range of workspace partitions), or nothing."""
    if "dagster/partition" in tags:
        return f" for {tags['dagster/partition']}"
    first = tags.get("dagster/asset_partition_range_start")
    last = tags.get("dagster/asset_partition_range_end")
    if first and last:
        return f" for {first}" if first == last else f" for {first}…{last}"
    return ""


def _origin(tags: Mapping[str, str]) -> str:
    for tag, what in (
        ("dagster/sensor_name", "sensor"),
        ("dagster/schedule_name", "schedule"),
        ("dagster/backfill", "backfill"),
    ):
        if tag in tags:
            return f" ({what} {tags[tag]})"
    return ""

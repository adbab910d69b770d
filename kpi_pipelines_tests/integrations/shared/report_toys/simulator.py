"""A toy ad platform on loopback, for the report engine's own tests, with its own truth.

- `GET /v1/accounts/me`: the account, its time zone and the platform's clock.
- `GET /v1/campaigns?cursor=`: campaigns (id, name, status), two a page.
- `GET /v1/stats?entity_ids=&metrics=&start_time=&end_time=`: X-like synchronous stats,
  per-day arrays (null for a campaign without delivery), for at most `max_ids` campaigns,
  `max_metrics` metrics and `max_days` days, the window's ends at midnights of the
  account's time zone; anything else is refused with a 400 that says why.
- `POST /v1/jobs`, `GET /v1/jobs/{id}` (PROCESSING, SUCCESS with the result's URL, FAILED;
  `retry_after` when the platform wants to be asked later, and a 400 for a poll sooner),
  `DELETE /v1/jobs/{id}`, `GET /v1/jobs/{id}/rows?cursor=` (the result in pages, one
  campaign a page) and `GET /v1/files/{id}.json.gz` (the result as a gzip file, a
  presigned download that must come without credentials).
- A quota (`requests_left`): spent, every request gets a 429 with a Retry-After of an hour.

The truth is computed from the world's own state (campaigns, the restatement counter), never
from what a sync read. Tests change the world directly (the server runs in-process).
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

KEY = "toy-ads-key-" + "5c1e9a77d2b4"
METRICS = ("impressions", "clicks", "spend_micro", "conversions")
HISTORY_DAYS = 120  # campaigns delivered on the days before today, this far back
JOB_MAX_IDS = 20
JOB_MAX_DAYS = 90


@dataclass(frozen=True)
class StatsAsk:
    """What one stats request or job asked for."""

    ids: tuple[str, ...]
    metrics: tuple[str, ...]
    days: tuple[date, ...]


@dataclass
class Job:
    id: str
    ask: StatsAsk
    outcome: str  # "ok", "fail" or "stall"
    polls: int = 0
    last_poll: float | None = None
    ended: bool = False
    cancelled: bool = False


@dataclass
class ToyAdsWorld:
    time_zone: str = "UTC"
    now: datetime = datetime(2026, 3, 9, 12, tzinfo=UTC)
    campaigns: dict[str, dict[str, Any]] = field(default_factory=dict)
    restatement: int = 0  # bump it: the last `restated_days` days change, as attribution does
    restated_days: int = 3
    max_ids: int = 2
    max_days: int = 7
    max_metrics: int = 2
    polls_to_finish: int = 1
    retry_after: float | None = None
    fails: Callable[[StatsAsk], bool] = lambda ask: False
    stalls: Callable[[StatsAsk], bool] = lambda ask: False
    requests_left: int | None = None
    # what the platform saw
    stats_asked: list[StatsAsk] = field(default_factory=list)
    jobs: dict[str, Job] = field(default_factory=dict)
    most_jobs_running: int = 0
    refused: list[str] = field(default_factory=list)
    _job_ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def add_campaigns(self, count: int, *, paused: tuple[str, ...] = ()) -> None:
        for n in range(1, count + 1):
            campaign_id = f"c{n}"
            status = "PAUSED" if campaign_id in paused else "ACTIVE"
            self.campaigns[campaign_id] = {
                "id": campaign_id,
                "name": f"Campaign {n}",
                "status": status,
            }

    @property
    def today(self) -> date:
        return self.now.astimezone(ZoneInfo(self.time_zone)).date()

    def truth(self, campaign_id: str, day: date) -> dict[str, int] | None:
        """What the campaign did that day, as the platform now reports it (None: it did not
        deliver at all)."""
        campaign = self.campaigns.get(campaign_id)
        age = (self.today - day).days
        if campaign is None or campaign["status"] == "PAUSED" or not 0 <= age < HISTORY_DAYS:
            return None
        version = self.restatement if age < self.restated_days else 0
        seed = hashlib.sha256(f"{campaign_id}/{day}/{version}".encode()).digest()
        impressions = 1000 + int.from_bytes(seed[:4]) % 9000
        clicks = impressions // (20 + seed[4] % 30)
        return {
            "impressions": impressions,
            "clicks": clicks,
            "spend_micro": clicks * 350_000 + int.from_bytes(seed[5:7]) % 100_000,
            "conversions": clicks // (5 + seed[7] % 10),
        }

    def stats(self, ask: StatsAsk) -> dict[str, Any]:
        data = []
        for campaign_id in ask.ids:
            days = [self.truth(campaign_id, day) for day in ask.days]
            delivered = any(day is not None for day in days)
            metrics = {
                metric: [day[metric] if day else 0 for day in days] if delivered else None
                for metric in ask.metrics
            }
            data.append({"id": campaign_id, "metrics": metrics})
        return {"time_series_length": len(ask.days), "data": data}

    def running(self) -> int:
        return sum(1 for job in self.jobs.values() if not job.ended)

    # --- the API ----------------------------------------------------------------------------

    def app(self) -> Starlette:
        world = self

        def refused(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
            world.refused.append(message)
            body = msgspec.json.encode({"errors": [{"code": "INVALID", "message": message}]})
            return Response(body, status, headers, media_type="application/json")

        def answer(body: Any) -> Response:
            return Response(msgspec.json.encode(body), media_type="application/json")

        def guarded(handler: Callable[[Request], Any], *, presigned: bool = False) -> Any:
            async def endpoint(request: Request) -> Response:
                if presigned:
                    if "authorization" in request.headers:
                        return refused(400, "credentials sent to the file host")
                elif request.headers.get("authorization") != f"Bearer {KEY}":
                    return refused(401, "unauthorized")
                if world.requests_left is not None:
                    if world.requests_left <= 0:
                        return refused(429, "rate limit exceeded", {"Retry-After": "3600"})
                    world.requests_left -= 1
                return await handler(request)

            return endpoint

        async def account(request: Request) -> Response:
            return answer(
                {"id": "acct-1", "timezone": world.time_zone, "now": world.now.isoformat()}
            )

        async def campaigns(request: Request) -> Response:
            listed = sorted(world.campaigns.values(), key=lambda c: int(c["id"][1:]))
            start = int(request.query_params.get("cursor") or 0)
            more = start + 2 < len(listed)
            return answer(
                {"data": listed[start : start + 2], "next_cursor": str(start + 2) if more else None}
            )

        async def stats(request: Request) -> Response:
            ask = world._ask(dict(request.query_params), world.max_ids, world.max_days)
            if isinstance(ask, str):
                return refused(400, ask)
            if len(ask.metrics) > world.max_metrics:
                return refused(400, f"at most {world.max_metrics} metrics, not {len(ask.metrics)}")
            world.stats_asked.append(ask)
            return answer(world.stats(ask))

        async def create_job(request: Request) -> Response:
            fields = msgspec.json.decode(await request.body())
            fields = {k: ",".join(v) if isinstance(v, list) else v for k, v in fields.items()}
            ask = world._ask(fields, JOB_MAX_IDS, JOB_MAX_DAYS)
            if isinstance(ask, str):
                return refused(400, ask)
            outcome = "fail" if world.fails(ask) else "stall" if world.stalls(ask) else "ok"
            job = Job(f"job-{next(world._job_ids)}", ask, outcome)
            world.jobs[job.id] = job
            world.most_jobs_running = max(world.most_jobs_running, world.running())
            return answer({"id": job.id})

        async def poll_job(request: Request) -> Response:
            job = world.jobs.get(request.path_params["job_id"])
            if job is None:
                return refused(404, "no such job")
            now = time.monotonic()
            last = job.last_poll
            if world.retry_after and last is not None and now - last < world.retry_after:
                return refused(400, f"{job.id} polled sooner than its retry_after")
            job.last_poll, job.polls = now, job.polls + 1
            status = "PROCESSING"
            if job.outcome == "fail":
                status, job.ended = "FAILED", True
            elif job.outcome == "ok" and job.polls >= world.polls_to_finish:
                status, job.ended = "SUCCESS", True
            body: dict[str, Any] = {"id": job.id, "status": status}
            if status == "SUCCESS":
                body["url"] = str(request.url_for("file", name=f"{job.id}.json.gz"))
            elif status == "PROCESSING" and world.retry_after:
                body["retry_after"] = world.retry_after
            return answer(body)

        async def cancel_job(request: Request) -> Response:
            job = world.jobs.get(request.path_params["job_id"])
            if job is None:
                return refused(404, "no such job")
            job.cancelled = job.ended = True
            return answer({"id": job.id, "status": "CANCELLED"})

        async def job_rows(request: Request) -> Response:
            job = world.jobs.get(request.path_params["job_id"])
            if job is None or job.outcome != "ok" or not job.ended:
                return refused(404, "no finished job of that id")
            data = world.stats(job.ask)["data"]
            start = int(request.query_params.get("cursor") or 0)
            more = start + 1 < len(data)
            return answer(
                {
                    "time_series_length": len(job.ask.days),
                    "data": data[start : start + 1],
                    "next_cursor": str(start + 1) if more else None,
                }
            )

        async def file(request: Request) -> Response:
            job = world.jobs.get(request.path_params["name"].removesuffix(".json.gz"))
            if job is None or job.outcome != "ok" or not job.ended:
                return refused(404, "no such file")
            content = gzip.compress(msgspec.json.encode(world.stats(job.ask)))
            return Response(content, media_type="application/gzip")

        return Starlette(
            routes=[
                Route("/v1/accounts/me", guarded(account)),
                Route("/v1/campaigns", guarded(campaigns)),
                Route("/v1/stats", guarded(stats)),
                Route("/v1/jobs", guarded(create_job), methods=["POST"]),
                Route("/v1/jobs/{job_id}", guarded(poll_job)),
                Route("/v1/jobs/{job_id}", guarded(cancel_job), methods=["DELETE"]),
                Route("/v1/jobs/{job_id}/rows", guarded(job_rows)),
                Route("/v1/files/{name}", guarded(file, presigned=True), name="file"),
            ]
        )

    def _ask(self, fields: dict[str, str], max_ids: int, max_days: int) -> StatsAsk | str:
        """What a request asks for, or why it is refused."""
        ids = tuple(i for i in fields.get("entity_ids", "").split(",") if i)
        metrics = tuple(m for m in fields.get("metrics", "").split(",") if m)
        if not ids or len(ids) > max_ids:
            return f"entity_ids must name 1 to {max_ids} campaigns, not {len(ids)}"
        if not metrics or set(metrics) - set(METRICS):
            return f"metrics must be some of {', '.join(METRICS)}"
        zone = ZoneInfo(self.time_zone)
        try:
            start, end = (
                datetime.fromisoformat(fields[name]).astimezone(zone)
                for name in ("start_time", "end_time")
            )
        except (KeyError, ValueError):
            return "start_time and end_time must be ISO 8601 instants"
        for moment in (start, end):
            if (moment.hour, moment.minute, moment.second) != (0, 0, 0):
                return f"{moment.isoformat()} is not a midnight in {self.time_zone}"
        span = (end.date() - start.date()).days
        if not 1 <= span <= max_days:
            return f"a window of 1 to {max_days} days, not {span}"
        return StatsAsk(ids, metrics, tuple(start.date() + timedelta(days=n) for n in range(span)))

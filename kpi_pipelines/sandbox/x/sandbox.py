"""The simulated X Ads platform: accounts on the kit's clock, the apps and user grants that
may call it, its rate limits and its async stats jobs.

    sandbox = XSandbox(seed=7)
    sandbox.register_app("ck", "cs")                      # the deployment's consumer key
    grant = sandbox.authorize("ck", "18ce54d4x5t")         # a user's token for an account
    account = sandbox.add_account("18ce54d4x5t", time_zone="Asia/Tokyo", currency="JPY")
    sandbox.revoke(grant.token)                            # the user removed the app
    sandbox.stats_budget.exhaust(grant.token)              # 250 stats calls per 15 minutes
    sandbox.jobs.script(Outcome.fail())                    # the next async job fails

X's figures settle within 3 days (billing credits and late web conversions).
"""

from __future__ import annotations

import gzip
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from kpi_pipelines.sandbox.kit import CallBudget, Job, ReportJobs, stable_base36, stable_digits
from kpi_pipelines.sandbox.kit.ads import AdAccount, AdSandbox, CampaignState, Restatement
from kpi_pipelines.sandbox.kit.money import Money
from kpi_pipelines.sandbox.x.auth import App, Grant, OAuth1Verifier
from kpi_pipelines.sandbox.x.errors import XErrors
from kpi_pipelines.sandbox.x.stats import StatsQuery, stats_body

WINDOW = timedelta(minutes=15)
STATS_LIMIT = 250  # synchronous stats requests per user per 15 minutes
API_LIMIT = 450  # any other endpoint, per user per 15 minutes
MAX_ACTIVE_JOBS = 100  # async jobs processing at once, per account
JOB_FILE_DAYS = 7  # how long a job's result file is kept
FILES_PATH = "/advertiser-api-async-analytics"
_STATUS = {
    "queued": "QUEUED",
    "started": "PROCESSING",
    "running": "PROCESSING",
    "succeeded": "SUCCESS",
    "failed": "FAILED",
    "skipped": "FAILED",
}


def _z(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def _campaign_id(key: str) -> str:
    return stable_base36(f"x:{key}", 5)


class XSandbox(AdSandbox):
    restatement = Restatement(conversion_days=3, billing_days=3)
    campaign_id_shape = staticmethod(_campaign_id)

    def __init__(self, *, job_steps: int = 3, **options: Any) -> None:
        super().__init__(**options)
        self.auth = OAuth1Verifier(self.tokens)
        self.errors = XErrors()
        self.stats_budget = CallBudget(self.clock, limit=STATS_LIMIT, window=WINDOW, aligned=False)
        self.api_budget = CallBudget(self.clock, limit=API_LIMIT, window=WINDOW, aligned=False)
        self.jobs: ReportJobs[bytes] = ReportJobs(
            self.clock,
            steps=job_steps,
            max_active=MAX_ACTIVE_JOBS,
            ids=lambda n: stable_digits(f"x-job:{self.seed}:{n}", 18),
        )
        self.file_base_url: str | None = None  # None: the host the job was asked of
        self._files: dict[str, str] = {}  # file name -> job id
        self._file_urls: dict[str, str] = {}  # job id -> its file's URL
        self._cursors: dict[str, int] = {}

    # -- credentials ------------------------------------------------------------------------
    def register_app(self, consumer_key: str, consumer_secret: str) -> App:
        app = self.auth.apps[consumer_key] = App(consumer_key, consumer_secret)
        return app

    def authorize(
        self,
        consumer_key: str,
        *account_ids: str,
        token: str | None = None,
        token_secret: str | None = None,
    ) -> Grant:
        """A user's access token (and secret) for the app, with access to `account_ids`."""
        if consumer_key not in self.auth.apps:
            raise KeyError(f"no app with consumer key {consumer_key!r}")
        user = stable_digits(f"x-user:{self.seed}:{len(self.auth.grants)}", 18)
        value = token or f"{user}-{secrets.token_urlsafe(24)}"
        self.tokens.issue(user, lifetime=None, value=value)
        secret = token_secret or secrets.token_urlsafe(32)
        grant = Grant(value, secret, consumer_key, frozenset(account_ids))
        self.auth.grants[value] = grant
        return grant

    def revoke(self, token: str) -> None:
        """The user revoked the app (or X suspended the token): every request now gets 401."""
        self.tokens.revoke(token)

    # -- objects as X renders them ----------------------------------------------------------
    def account_object(self, account: AdAccount) -> dict[str, Any]:
        created = account.day_bounds(account.first_day)[0]
        return {
            "name": account.name,
            "business_name": None,
            "timezone": account.time_zone,
            "timezone_switch_at": _z(created),
            "id": account.account_id,
            "created_at": _z(created),
            "salt": stable_base36(f"salt:{account.account_id}", 32),
            "updated_at": _z(created),
            "business_id": None,
            "approval_status": "ACCEPTED",
            "deleted": False,
        }

    def campaign_object(self, account: AdAccount, state: CampaignState) -> dict[str, Any]:
        ended = state.end is not None and state.end < account.local_day()
        reasons = ["EXPIRED"] if ended else []
        if state.status == "paused":
            reasons.append("PAUSED_BY_ADVERTISER")
        return {
            "name": state.name,
            "start_time": _z(account.day_bounds(state.start)[0]),
            "end_time": _z(account.day_bounds(state.end)[1]) if state.end else None,
            "reasons_not_servable": reasons,
            "servable": not reasons,
            "purchase_order_number": None,
            "effective_status": "RUNNING" if not reasons else ("EXPIRED" if ended else "PAUSED"),
            "daily_budget_amount_local_micro": Money(state.daily_budget, account.currency).micros,
            "funding_instrument_id": stable_base36(f"fi:{account.account_id}", 5),
            "duration_in_days": None,
            "standard_delivery": True,
            "total_budget_amount_local_micro": None,
            "id": state.id,
            "entity_status": "ACTIVE" if state.status == "active" else "PAUSED",
            "account_id": account.account_id,
            "frequency_cap": None,
            "budget_optimization": "CAMPAIGN",
            "currency": account.currency,
            "created_at": _z(state.created_at),
            "updated_at": _z(state.updated_at),
            "deleted": state.status == "archived",
        }

    def cursor(self, offset: int) -> str:
        value = stable_base36(f"cursor:{self.seed}:{offset}", 9)
        self._cursors[value] = offset
        return value

    def offset(self, cursor: str) -> int | None:
        return self._cursors.get(cursor)

    # -- async jobs -------------------------------------------------------------------------
    def create_job(self, account: AdAccount, query: StatsQuery, base_url: str) -> Job[bytes]:
        """A job for `query`; its result file is computed when it succeeds (TooManyJobs
        past the account's concurrent jobs)."""

        def compute(at: datetime) -> bytes:
            body = stats_body(account, query, as_of=at)
            return gzip.compress(msgspec.json.encode(body), mtime=0)

        days = max(1, round((query.end - query.start) / timedelta(days=1)))
        job = self.jobs.create(
            account.account_id, query, size=days * len(query.entity_ids), compute=compute
        )
        name = stable_base36(f"file:{self.seed}:{job.id}", 24)
        self._files[name] = job.id
        host = (self.file_base_url or base_url).rstrip("/")
        self._file_urls[job.id] = f"{host}{FILES_PATH}/{name}.json.gz"
        return job

    def job_object(self, job: Job[bytes]) -> dict[str, Any]:
        query: StatsQuery = job.query
        params = query.echo()
        done = job.phase == "succeeded" and job.finished_at is not None
        return {
            **{k: params[k] for k in ("start_time", "end_time", "entity", "entity_ids")},
            **{k: params[k] for k in ("placement", "granularity", "metric_groups")},
            "segmentation_type": None,
            "country": None,
            "platform": None,
            "url": self._file_urls[job.id] if done else None,
            "id": int(job.id),
            "id_str": job.id,
            "expires_at": _z(job.finished_at + timedelta(days=JOB_FILE_DAYS)) if done else None,
            "account_id": job.owner,
            "status": _STATUS[job.phase],
            "created_at": _z(job.created_at),
            "updated_at": _z(job.finished_at or self.clock.now()),
        }

    def job_file(self, name: str) -> bytes | None:
        """A finished job's gzip file by its name, None when there is none (or expired)."""
        job_id = self._files.get(name)
        if job_id is None:
            return None
        job = self.jobs.look(job_id)
        if job.result is None or job.finished_at is None:
            return None
        if self.clock.now() > job.finished_at + timedelta(days=JOB_FILE_DAYS):
            return None
        return job.result

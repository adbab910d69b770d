"""Meta's simulated state: ad accounts (the kit's, with Meta's 28-day attribution and ids),
the tokens that read them, the async report runs, and the quotas a caller spends.

    sandbox = MetaSandbox(seed=7)
    account = sandbox.add_account("1234567890", time_zone="Asia/Tokyo", currency="JPY")
    token = sandbox.issue_token("1234567890")             # a long-lived token, 60 days
    sandbox.throttle(80000, account="1234567890", minutes=3)  # the next call is throttled
    sandbox.insights_calls.exhaust("1234567890")           # the hour's ads_insights quota spent
    sandbox.jobs.script(Outcome.fail())                    # the next report run fails

Quotas (the kit's CallBudget, per account unless said), refused as Meta refuses them:
`insights_calls` (ads_insights, per rolling hour: 80000), `management_calls` (ads_management:
80004), `score` (every call scores 1 over a rolling 5 minutes, blocked when full: 17) and
`app_load` (the app's insights calls per second, every account together: 4; off by default,
as a fixed clock never lets a second pass).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from kpi_pipelines.sandbox.kit import CallBudget, ReportJobs, stable_digits
from kpi_pipelines.sandbox.kit.ads import AdAccount, AdSandbox, Restatement
from kpi_pipelines.sandbox.meta.graph import MetaThrottle

# Meta's documented limits (Marketing API rate limiting): ads_insights per account per hour
# is 600 + 400 x active ads in the development tier; the standard tier's account score is
# 9,000 over 300 s, blocked 60 s when reached.
INSIGHTS_CALLS_PER_HOUR = 600 + 400 * 12
MANAGEMENT_CALLS_PER_HOUR = 300 + 40 * 12
SCORE_LIMIT = 9000


def _campaign_id(key: str) -> str:
    return "2385" + stable_digits(f"meta:{key}", 14)


class MetaSandbox(AdSandbox):
    """The simulated Marketing API's state (serve it with `create_meta_app`)."""

    restatement = Restatement(conversion_days=28, billing_days=1, delay=timedelta(minutes=15))
    campaign_id_shape = staticmethod(_campaign_id)
    token_prefix = "EAAG"

    def __init__(
        self,
        *,
        insights_calls_per_hour: int = INSIGHTS_CALLS_PER_HOUR,
        management_calls_per_hour: int = MANAGEMENT_CALLS_PER_HOUR,
        score_limit: int = SCORE_LIMIT,
        app_calls_per_second: int | None = None,
        max_sync_cells: int = 20_000,
        max_job_cells: int = 200_000,
        job_steps: int = 3,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        clock = self.clock
        hour = timedelta(hours=1)
        self.insights_calls = CallBudget(
            clock, limit=insights_calls_per_hour, window=hour, rolling=True
        )
        self.management_calls = CallBudget(
            clock, limit=management_calls_per_hour, window=hour, rolling=True
        )
        self.score = CallBudget(
            clock,
            limit=score_limit,
            window=timedelta(seconds=300),
            rolling=True,
            penalty=timedelta(seconds=60),
        )
        self.app_load = (
            CallBudget(clock, limit=app_calls_per_second, window=timedelta(seconds=1))
            if app_calls_per_second
            else None
        )
        self.max_sync_cells = max_sync_cells
        self.jobs: ReportJobs[list[dict[str, Any]]] = ReportJobs(
            clock,
            steps=job_steps,
            max_size=max_job_cells,
            ids=lambda n: stable_digits(f"meta-report-run:{self.seed}:{n}", 15),
        )
        self.without_omni: set[str] = set()

    def add_account(self, account_id: str, *, omni: bool = True, **options: Any) -> AdAccount:
        """An ad account (its number, without `act_`); `omni=False`: its actions have no
        `omni_*` types (see insights.py)."""
        if not account_id.isdigit():
            raise ValueError(
                f"a Meta ad account id is a number (no act_ prefix), not {account_id!r}"
            )
        if not omni:
            self.without_omni.add(account_id)
        return super().add_account(account_id, **options)

    def issue_token(
        self,
        *account_ids: str,
        lifetime: timedelta | None = timedelta(days=60),
        value: str | None = None,
    ) -> str:
        """A token that reads `account_ids`: long-lived (60 days) by default, None for a
        system user's token that never expires."""
        return self.tokens.issue("user", lifetime=lifetime, scopes=account_ids, value=value).value

    def expire_tokens_after(self, requests: int) -> None:
        """Every token's lifetime ends after `requests` more requests (mid-sync)."""
        self.faults.at_request(requests, self.tokens.expire)

    def throttle(
        self,
        code: int,
        *,
        account: str | None = None,
        times: int = 1,
        after: int = 0,
        api: str | None = None,
        minutes: int = 0,
        seconds: int = 0,
    ) -> None:
        """The next `times` requests (to `api`: "account", "campaigns", "insights",
        "report_runs"), once `after` more are served, get throttle `code`; the usage
        headers name `account` and say `minutes` (BUC) or `seconds` (score) to wait."""
        self.faults.add(
            MetaThrottle(
                "quota",
                api,
                times=times,
                after=after,
                code=code,
                account=account,
                minutes=minutes,
                seconds=seconds,
            )
        )

"""Typed provider failures whose message says what to do about them.

Every message is redacted when the error is built and again whenever it is rendered, so a
secret registered later (a refreshed token) is still kept out of logs and the Dagster UI.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kpi_pipelines.integrations.shared.redaction import redact


class ProviderError(Exception):
    """A provider call failed. `provider` names the provider; `status` is the HTTP status."""

    def __init__(self, provider: str, message: str, *, status: int | None = None) -> None:
        self.provider = provider
        self.status = status
        super().__init__(redact(message))

    def __str__(self) -> str:
        return redact(str(self.args[0]) if self.args else "")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take keyword-only arguments, so the default pickling (cls(*args)) fails.
        return (_restore, (type(self), self.args, self.__dict__))


def _restore(
    cls: type[ProviderError], args: tuple[Any, ...], state: dict[str, Any]
) -> ProviderError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class ProviderUnavailable(ProviderError):
    """The provider kept failing (5xx, 429, timeouts) after every retry: try again later."""

    def __init__(
        self,
        provider: str,
        last_error: str,
        *,
        attempts: int | None = None,
        elapsed: float | None = None,
        status: int | None = None,
    ) -> None:
        self.attempts = attempts
        self.elapsed = elapsed
        self.last_error = redact(last_error)
        if attempts is None:
            summary = f"{provider} is unavailable"
        elif elapsed is None:
            summary = f"{provider} is unavailable after {attempts} attempts"
        else:
            summary = f"{provider} is unavailable after {attempts} attempts over {elapsed:.1f} s"
        super().__init__(
            provider,
            f"{summary}: last error {last_error}. The sync will be retried later.",
            status=status,
        )


class ProviderAuthError(ProviderError):
    """The provider rejected the credentials (401/403): the workspace must reconnect."""

    def __init__(self, provider: str, detail: str, *, status: int | None = None) -> None:
        self.detail = redact(detail)
        http = f" (HTTP {status})" if status is not None else ""
        super().__init__(
            provider,
            f"{provider} rejected the credentials{http}: {detail}. Reconnect this workspace "
            f"to {provider} (the key or token is invalid, expired, revoked or lacks access).",
            status=status,
        )


class ProviderRequestError(ProviderError):
    """The provider refused the request itself (a 4xx other than 401/403/429): not retried."""

    def __init__(self, provider: str, detail: str, *, status: int | None = None) -> None:
        self.detail = redact(detail)
        http = f" (HTTP {status})" if status is not None else ""
        super().__init__(
            provider,
            f"{provider} rejected the request{http}: {detail}. The request is wrong "
            "(adapter or connection settings); retrying will not help.",
            status=status,
        )


class ProviderQuotaExhausted(ProviderError):
    """The provider's quota is spent for longer than we are willing to wait in a run."""

    def __init__(
        self,
        provider: str,
        detail: str,
        *,
        retry_at: datetime | None = None,
        status: int | None = None,
    ) -> None:
        self.detail = redact(detail)
        self.retry_at = retry_at
        if retry_at is None:
            when = "the quota resets"
        else:
            when = retry_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        super().__init__(
            provider,
            f"{provider} quota is exhausted: {detail}. Retry after {when}.",
            status=status,
        )


class ReportJobFailed(ProviderError):
    """An async report job failed (or outlived its deadline) even when split to the smallest
    job the report allows: the sync fails; what earlier windows read is kept."""

    def __init__(self, provider: str, report: str, job: str, reason: str, *, splits: int) -> None:
        self.report = report
        self.reason = redact(reason)
        super().__init__(
            provider,
            f"{provider} could not run the {report} report for {job}: the job {reason}, and"
            f" it cannot be split further ({splits} split(s) of this window before it). This"
            " window is not stored (earlier ones are); the next sync asks again.",
        )


class RequestBudgetExceeded(ProviderError):
    """This client sent as many requests as one sync may send."""

    def __init__(self, provider: str, budget: int) -> None:
        self.budget = budget
        super().__init__(
            provider,
            f"{provider} request budget of {budget} requests for this sync is spent. "
            "Narrow the sync (shorter backfill window) or raise the budget.",
        )


class ProviderResponseRefused(ProviderError):
    """A response we refuse to read (bigger or deeper than the limits, an encoding we did not
    ask for): a hostile or broken provider. Not retried: the sync fails, saying which
    request and which limit."""

    def __init__(self, provider: str, request: str, problem: str, *, status: int | None = None):
        self.request = redact(request)
        self.problem = problem
        super().__init__(
            provider,
            f"{provider} sent a response we refuse to read: {request} {problem}. A hostile or"
            " broken response is not retried; the sync fails and the next one asks again.",
            status=status,
        )

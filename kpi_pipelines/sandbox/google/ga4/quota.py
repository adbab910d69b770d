"""GA4 Data API quotas per property: token windows by the sandbox clock, concurrent requests,
and Google's RESOURCE_EXHAUSTED messages for each."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal
from zoneinfo import ZoneInfo

QUOTA_DAY_TZ = ZoneInfo("America/Los_Angeles")  # Google's daily quotas reset at Pacific midnight


QUOTA_MESSAGES: dict[str, str] = {
    "concurrent": "Exhausted concurrent requests quota.",
    "hourly": "Exhausted property tokens per hour. These quota tokens will return in under an hour.",
    "daily": "Exhausted property tokens per day. These quota tokens will return in under 24 hours.",
    "project_hourly": (
        "Exhausted property tokens for a project per hour. "
        "These quota tokens will return in under an hour."
    ),
}
QuotaKind = Literal["concurrent", "hourly", "daily", "project_hourly"]


@dataclass
class GA4Quota:
    """A property's quota limits (standard property defaults) and its usage by window."""

    tokens_per_day: int = 200_000
    tokens_per_hour: int = 40_000
    tokens_per_project_per_hour: int = 14_000
    concurrent_requests: int = 10
    server_errors_per_project_per_hour: int = 10
    potentially_thresholded_requests_per_hour: int = 120
    hour_used: dict[int, int] = field(default_factory=dict)
    day_used: dict[date, int] = field(default_factory=dict)
    project_hour_used: dict[tuple[str, int], int] = field(default_factory=dict)
    scripted: list[QuotaKind] = field(default_factory=list)

    @staticmethod
    def windows(now: datetime) -> tuple[int, date]:
        return int(now.timestamp()) // 3600, now.astimezone(QUOTA_DAY_TZ).date()

    def remaining(self, now: datetime, project: str) -> dict[str, int]:
        hour, day = self.windows(now)
        return {
            "hourly": self.tokens_per_hour - self.hour_used.get(hour, 0),
            "daily": self.tokens_per_day - self.day_used.get(day, 0),
            "project_hourly": self.tokens_per_project_per_hour
            - self.project_hour_used.get((project, hour), 0),
        }

    def exhausted(self, now: datetime, project: str) -> QuotaKind | None:
        remaining = self.remaining(now, project)
        for kind in ("daily", "hourly", "project_hourly"):
            if remaining[kind] <= 0:
                return kind  # type: ignore[return-value]
        return None

    def consume(self, now: datetime, project: str | None, tokens: int) -> None:
        hour, day = self.windows(now)
        self.hour_used[hour] = self.hour_used.get(hour, 0) + tokens
        self.day_used[day] = self.day_used.get(day, 0) + tokens
        if project is not None:
            key = (project, hour)
            self.project_hour_used[key] = self.project_hour_used.get(key, 0) + tokens


def quota_status(consumed: int, remaining: int) -> dict[str, int]:
    out = {}
    if consumed:
        out["consumed"] = consumed
    if remaining:
        out["remaining"] = remaining
    return out

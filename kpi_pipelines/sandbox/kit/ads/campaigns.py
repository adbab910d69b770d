"""A campaign's life: created at an instant, then a timeline of status changes and renames,
generated from the seed up to a horizon (or scripted by a test). What the platform shows
at an instant is the timeline up to it; delivery happens only while the campaign is active
and between its start and end days."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from random import Random
from zoneinfo import ZoneInfo

from kpi_pipelines.sandbox.kit.ads.model import STATUSES, CampaignState, Status

DAY = 86_400
_OBJECTIVES = ("Prospecting", "Retargeting", "Brand", "Lead gen", "App installs", "Catalog")
_AUDIENCES = ("Lookalike 1%", "Cart abandoners", "Interests", "Broad", "Site visitors 30d")
_MARKETS = ("US", "UK", "DE", "JP", "FR", "CA", "Global")
_RENAMES = ("v2", "refresh", "Q{quarter}", "new creative", "scaled")


@dataclass(frozen=True)
class Profile:
    """How a campaign delivers (all money in minor units of the account's currency)."""

    daily_budget: int
    cpm: float
    ctr: float
    conversion_scale: float  # multiplies every conversion kind's rate per click
    order_value: float
    dark_day_rate: float  # the share of active days with no delivery at all


@dataclass(frozen=True)
class Change:
    at: int  # unix seconds
    status: Status | None = None
    name: str | None = None


class Campaign:
    """One campaign's identity, delivery profile and timeline (not thread-safe on its own:
    the account holds the lock)."""

    def __init__(
        self,
        key: str,
        campaign_id: str,
        *,
        name: str,
        status: Status,
        created_at: int,
        start: date,
        end: date | None,
        profile: Profile,
        tz: ZoneInfo,
    ) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; one of {STATUSES}")
        if end is not None and end < start:
            raise ValueError(f"a campaign's end day {end} is before its start day {start}")
        self.key = key  # what its delivery is seeded by
        self.id = campaign_id
        self.created_at = created_at
        self.start = start
        self.end = end
        self.profile = profile
        self._tz = tz
        self._changes: list[Change] = [Change(created_at, status, name)]
        self._refresh()

    # -- the timeline -------------------------------------------------------------------------
    def change(self, at: int, *, status: Status | None = None, name: str | None = None) -> None:
        """Add a change at `at` (before, between or after the others)."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; one of {STATUSES}")
        if name is not None and not name.strip():
            raise ValueError("a campaign's name is not blank")
        if at < self.created_at:
            raise ValueError("a campaign changes only after it is created")
        position = bisect_right([c.at for c in self._changes], at)
        self._changes.insert(position, Change(at, status, name))
        self._refresh()

    def _refresh(self) -> None:
        """Fold the changes into instants and states, and the spans it is active in."""
        self._instants = [c.at for c in self._changes]
        self._states: list[tuple[Status, str]] = []
        status, name = self._changes[0].status, self._changes[0].name
        active: list[tuple[int, int]] = []
        since: int | None = None
        for c in self._changes:
            status = c.status or status
            name = c.name or name
            assert status is not None and name is not None
            self._states.append((status, name))
            if status == "active" and since is None:
                since = c.at
            elif status != "active" and since is not None:
                active.append((since, c.at))
                since = None
        if since is not None:
            active.append((since, 2**62))
        self._active = active
        self._active_starts = [a for a, _ in active]

    def state(self, at: int) -> CampaignState | None:
        """What the platform shows at `at` (None: not created yet)."""
        i = bisect_right(self._instants, at) - 1
        if i < 0:
            return None
        status, name = self._states[i]
        return CampaignState(
            id=self.id,
            name=name,
            status=status,
            start=self.start,
            end=self.end,
            created_at=datetime.fromtimestamp(self.created_at, UTC),
            updated_at=datetime.fromtimestamp(self._instants[i], UTC),
            daily_budget=self.profile.daily_budget,
        )

    def active_at(self, instant: int) -> bool:
        i = bisect_right(self._active_starts, instant) - 1
        return i >= 0 and instant < self._active[i][1]

    def may_deliver(self, day: date) -> bool:
        return self.start <= day and (self.end is None or day <= self.end)


def generated_campaign(
    key: str,
    campaign_id: str,
    rng: Random,
    *,
    tz: ZoneInfo,
    first: int,
    last: int,
    horizon: int,
) -> Campaign:
    """A campaign created between `first` and `last` (unix seconds), with its changes up to
    `horizon`: pauses a few days long every couple of months, a rename now and then, and
    archiving some days after its end (or, for some, at a random time)."""
    created = first + int(rng.random() ** 2 * (last - first))  # most are old, some still to come
    start = datetime.fromtimestamp(created, tz).date() + timedelta(days=rng.choice((0, 0, 1, 3)))
    end = start + timedelta(days=rng.randint(14, 150)) if rng.random() < 0.3 else None
    name = f"{rng.choice(_OBJECTIVES)} | {rng.choice(_AUDIENCES)} | {rng.choice(_MARKETS)}"
    small = rng.random() < 0.25  # low-volume campaigns: days with delivery and no conversion
    profile = Profile(
        daily_budget=rng.randint(500, 3_000) if small else rng.randint(3_000, 150_000),
        cpm=rng.uniform(400, 2_200),
        ctr=rng.uniform(0.004, 0.025),
        conversion_scale=rng.uniform(0.3, 1.6),
        order_value=rng.uniform(2_500, 16_000),
        dark_day_rate=rng.choice((0.0, 0.01, 0.03)),
    )
    status: Status = "paused" if rng.random() < 0.08 else "active"
    campaign = Campaign(
        key,
        campaign_id,
        name=name,
        status=status,
        created_at=created,
        start=start,
        end=end,
        profile=profile,
        tz=tz,
    )
    archive_at = horizon
    if end is not None:
        end_instant = int(
            datetime.combine(end + timedelta(days=1), datetime.min.time(), tz).timestamp()
        )
        archive_at = end_instant + rng.randint(3, 40) * DAY
    elif rng.random() < 0.2:
        archive_at = created + rng.randint(30, 500) * DAY
    t = created
    if status == "paused":
        t += rng.randint(1, 10) * DAY
        campaign.change(t, status="active")
    while True:
        t += int(rng.expovariate(1 / (75 * DAY))) + 3600
        if t >= min(archive_at, horizon):
            break
        if rng.random() < 0.3:
            quarter = (datetime.fromtimestamp(t, tz).month - 1) // 3 + 1
            suffix = rng.choice(_RENAMES).format(quarter=quarter)
            campaign.change(t, name=f"{name} ({suffix})")
        else:
            back = t + rng.randint(1, 12) * DAY + rng.randint(0, 23) * 3600
            if back >= min(archive_at, horizon):
                break
            campaign.change(t, status="paused")
            campaign.change(back, status="active")
            t = back
    if archive_at < horizon:
        campaign.change(archive_at, status="archived")
    return campaign

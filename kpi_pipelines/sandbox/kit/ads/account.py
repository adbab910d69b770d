"""A simulated ad account: campaigns that live and change on the simulated clock, their
delivery per account day (in the account's own time zone), attribution that keeps restating
recent days, and the account's own record of the truth.

Everything is a pure function of (seed, account id, what a test scripted) and the instant
asked about: the same seed and clock give the same answers in any query order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from random import Random
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kpi_pipelines.sandbox.kit.ads.campaigns import DAY, Campaign, Profile, generated_campaign
from kpi_pipelines.sandbox.kit.ads.delivery import DayPlan, generated_day, hour_slots, scripted_day
from kpi_pipelines.sandbox.kit.ads.figures import AdMetrics, Figures
from kpi_pipelines.sandbox.kit.ads.model import (
    DEFAULT_KINDS,
    PURCHASES,
    CampaignState,
    ConversionKind,
    ConversionRule,
    Restatement,
    ScriptedConversions,
    Status,
)
from kpi_pipelines.sandbox.kit.clock import SimClock
from kpi_pipelines.sandbox.kit.ids import stable_digits
from kpi_pipelines.sandbox.kit.money import Money, minor_unit_exponent

Instant = datetime | None  # None: the clock's now


def _numeric_ids(key: str) -> str:
    return stable_digits(key, 12)


def _days(start: date, end: date) -> Iterable[date]:
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


class AdAccount:
    """One ad account of a platform (see the package docstring for how a simulator uses it).

    `campaigns`: how many campaigns to generate (0: only those a test adds), created over
    the `history_days` before the clock's start and the 60 days after it (so some appear
    later), with status changes and renames generated up to `horizon_days` after the start.
    `campaign_id(key)`: the platform's id for a campaign's stable key (default: 12 digits).
    """

    def __init__(
        self,
        account_id: str,
        clock: SimClock,
        *,
        seed: int = 0,
        time_zone: str = "America/Los_Angeles",
        currency: str = "USD",
        name: str | None = None,
        campaigns: int = 12,
        history_days: int = 400,
        horizon_days: int = 730,
        restatement: Restatement | None = None,
        kinds: Sequence[ConversionKind] = DEFAULT_KINDS,
        campaign_id: Callable[[str], str] = _numeric_ids,
    ) -> None:
        try:
            self.tz = ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {time_zone!r}") from exc
        minor_unit_exponent(currency)
        if campaigns < 0 or history_days < 0 or horizon_days < 0:
            raise ValueError("campaigns, history_days and horizon_days are 0 or more")
        self.account_id = account_id
        self.clock = clock
        self.seed = seed
        self.time_zone = time_zone
        self.currency = currency.upper()
        self.name = name or f"Account {account_id}"
        self.restatement = restatement or Restatement()
        self.kinds = tuple(kinds)
        self._campaign_id = campaign_id
        self._lock = threading.RLock()
        self._campaigns: dict[str, Campaign] = {}
        self._plans: dict[tuple[str, date], DayPlan | None] = {}
        self._scripted: dict[tuple[str, date], DayPlan] = {}
        self._frames: dict[date, tuple[tuple[int, ...], int, tuple[int, ...]]] = {}
        started = int(clock.start.timestamp())
        self.first_day = self.local_day(clock.start) - timedelta(days=history_days)
        first = self._midnight(self.first_day)
        for i in range(campaigns):
            key = f"{seed}:{account_id}:campaign:{i}"
            rng = Random(f"ads:{key}")
            campaign = generated_campaign(
                key,
                self._new_id(key),
                rng,
                tz=self.tz,
                first=first,
                last=started + 60 * DAY,
                horizon=started + horizon_days * DAY,
            )
            self._campaigns[campaign.id] = campaign

    # -- account days -------------------------------------------------------------------------
    def _now(self, as_of: Instant) -> int:
        return int((as_of or self.clock.now()).timestamp())

    def _midnight(self, day: date) -> int:
        return int(datetime.combine(day, datetime.min.time(), self.tz).timestamp())

    def local_day(self, instant: datetime | None = None) -> date:
        """The account day an instant falls on (default: now)."""
        return (instant or self.clock.now()).astimezone(self.tz).date()

    def day_bounds(self, day: date) -> tuple[datetime, datetime]:
        """The UTC instants the account day starts and ends at (23 or 25 hours apart on the
        days its clocks change)."""
        return (
            datetime.fromtimestamp(self._midnight(day), UTC),
            datetime.fromtimestamp(self._midnight(day + timedelta(days=1)), UTC),
        )

    def settled_at(self, day: date) -> datetime:
        """The instant from which the day's figures no longer change."""
        return self.day_bounds(day)[1] + self.restatement.settles_after

    def _frame(self, day: date) -> tuple[tuple[int, ...], int, tuple[int, ...]]:
        frame = self._frames.get(day)
        if frame is None:
            midnight, end = self._midnight(day), self._midnight(day + timedelta(days=1))
            slots = hour_slots(midnight, end)
            hours = tuple(datetime.fromtimestamp(s, self.tz).hour for s in slots)
            frame = self._frames[day] = (slots, end, hours)
        return frame

    # -- campaigns ----------------------------------------------------------------------------
    def _new_id(self, key: str) -> str:
        candidate, n = self._campaign_id(key), 0
        while candidate in self._campaigns:
            n += 1
            candidate = self._campaign_id(f"{key}#{n}")
        return candidate

    def _get(self, campaign_id: str) -> Campaign:
        try:
            return self._campaigns[campaign_id]
        except KeyError:
            raise KeyError(f"account {self.account_id} has no campaign {campaign_id!r}") from None

    def campaigns(self, *, as_of: Instant = None) -> list[CampaignState]:
        """The campaigns created by `as_of`, oldest first, as they are then."""
        at = self._now(as_of)
        with self._lock:
            states = [s for c in self._campaigns.values() if (s := c.state(at)) is not None]
        return sorted(states, key=lambda s: (s.created_at, s.id))

    def campaign(self, campaign_id: str, *, as_of: Instant = None) -> CampaignState:
        """The campaign as it is at `as_of`; KeyError when it does not exist (yet)."""
        with self._lock:
            state = self._get(campaign_id).state(self._now(as_of))
        if state is None:
            raise KeyError(f"campaign {campaign_id!r} is not created yet")
        return state

    def add_campaign(
        self,
        name: str,
        *,
        start: date,
        end: date | None = None,
        status: Status = "active",
        created_at: datetime | None = None,
        daily_budget: Decimal | str | int | None = None,
    ) -> str:
        """Add a campaign; returns its id. It is created at `created_at` (default: its start
        day's midnight) and delivers like a generated one with `daily_budget` (major
        units; default: drawn from the seed; 0: only the days a test scripts)."""
        with self._lock:
            key = f"{self.seed}:{self.account_id}:added:{len(self._campaigns)}"
            rng = Random(f"ads:{key}")
            budget = (
                rng.randint(3_000, 100_000)
                if daily_budget is None
                else Money.of(daily_budget, self.currency).minor
            )
            profile = Profile(
                daily_budget=budget,
                cpm=rng.uniform(400, 2_200),
                ctr=rng.uniform(0.005, 0.02),
                conversion_scale=rng.uniform(0.5, 1.5),
                order_value=rng.uniform(2_500, 16_000),
                dark_day_rate=0.0,
            )
            campaign = Campaign(
                key,
                self._new_id(key),
                name=name,
                status=status,
                created_at=self._now(created_at) if created_at else self._midnight(start),
                start=start,
                end=end,
                profile=profile,
                tz=self.tz,
            )
            self._campaigns[campaign.id] = campaign
            return campaign.id

    def set_status(self, campaign_id: str, status: Status, *, at: Instant = None) -> None:
        """The campaign's status becomes `status` at `at` (default now): it delivers only
        while active."""
        with self._lock:
            self._get(campaign_id).change(self._now(at), status=status)
            self._forget(campaign_id)

    def rename(self, campaign_id: str, name: str, *, at: Instant = None) -> None:
        with self._lock:
            self._get(campaign_id).change(self._now(at), name=name)

    def _forget(self, campaign_id: str) -> None:
        for key in [k for k in self._plans if k[0] == campaign_id]:
            del self._plans[key]

    def script_day(
        self,
        campaign_id: str,
        day: date,
        *,
        spend: Decimal | str | int,
        impressions: int,
        clicks: int,
        conversions: Sequence[ScriptedConversions] = (),
    ) -> None:
        """The campaign's figures on `day` are these (final: spend in major units, no
        credits), whatever its status; conversions arrive as each says."""
        with self._lock:
            slots, end, hours = self._frame(day)
        plan = scripted_day(
            slots,
            end,
            hours,
            spend=Money.of(spend, self.currency).minor,
            impressions=impressions,
            clicks=clicks,
            conversions=[
                (
                    (c.kind, c.channel),
                    c.count,
                    Money.of(c.value, self.currency).minor,
                    int(c.after.total_seconds()),
                )
                for c in conversions
            ],
            delay=int(self.restatement.delay.total_seconds()),
        )
        with self._lock:
            self._get(campaign_id)
            self._scripted[(campaign_id, day)] = plan

    # -- delivery -----------------------------------------------------------------------------
    def _plan(self, campaign: Campaign, day: date) -> DayPlan | None:
        key = (campaign.id, day)
        scripted = self._scripted.get(key)
        if scripted is not None:
            return scripted
        if key in self._plans:
            return self._plans[key]
        plan = None
        if day >= self.first_day and campaign.may_deliver(day) and campaign.profile.daily_budget:
            slots, end, hours = self._frame(day)
            active = [campaign.active_at(s) for s in slots]
            if any(active):
                rng = Random(f"ads:{campaign.key}:{day.isoformat()}")
                plan = generated_day(
                    rng,
                    day,
                    slots,
                    end,
                    active,
                    campaign.profile,
                    self.kinds,
                    self.restatement,
                    hours,
                )
        self._plans[key] = plan
        return plan

    def _figures(
        self, campaign: Campaign, day: date, start: int, end: int, at: int
    ) -> Figures | None:
        plan = self._plan(campaign, day)
        if plan is None:
            return None
        delay = int(self.restatement.delay.total_seconds())
        figures = plan.figures(start, end, at, delay, self.currency)
        return figures if figures.delivered else None

    def day_figures(self, campaign_id: str, day: date, *, as_of: Instant = None) -> Figures | None:
        """What the platform reports for the campaign on the account day at `as_of` (default
        now); None when it has no row (no delivery shown)."""
        at = self._now(as_of)
        with self._lock:
            return self._figures(self._get(campaign_id), day, 0, 2**62, at)

    def figures(
        self, campaign_id: str, start: datetime, end: datetime, *, as_of: Instant = None
    ) -> Figures | None:
        """The campaign's figures over the hours starting in [start, end) (X's whole-hour
        windows, hourly breakdowns), at `as_of`; None when nothing shows."""
        at, lo, hi = self._now(as_of), int(start.timestamp()), int(end.timestamp())
        with self._lock:
            campaign = self._get(campaign_id)
            parts = [
                f
                for day in _days(self.local_day(start), self.local_day(end))
                if (f := self._figures(campaign, day, lo, hi, at)) is not None
            ]
        return Figures.total(parts, self.currency) if parts else None

    def daily(
        self,
        start: date,
        end: date,
        *,
        campaign_ids: Iterable[str] | None = None,
        as_of: Instant = None,
    ) -> dict[tuple[str, date], Figures]:
        """Every (campaign, day) row the platform reports for days start..end at `as_of`,
        ordered by campaign (oldest first) then day; rows without delivery are absent."""
        at = self._now(as_of)
        out: dict[tuple[str, date], Figures] = {}
        with self._lock:
            if campaign_ids is None:
                chosen = sorted(self._campaigns.values(), key=lambda c: (c.created_at, c.id))
            else:
                chosen = [self._get(cid) for cid in campaign_ids]
            for campaign in chosen:
                for day in _days(start, end):
                    figures = self._figures(campaign, day, 0, 2**62, at)
                    if figures is not None:
                        out[(campaign.id, day)] = figures
        return out

    def account_daily(
        self, start: date, end: date, *, as_of: Instant = None
    ) -> dict[date, Figures]:
        """The account's total per day (Meta's level=account), days with delivery only."""
        out: dict[date, Figures] = {}
        for (_, day), figures in self.daily(start, end, as_of=as_of).items():
            out[day] = out[day] + figures if day in out else figures
        return dict(sorted(out.items()))

    def restated(
        self, start: date, end: date, earlier: datetime, later: datetime
    ) -> set[tuple[str, date]]:
        """The (campaign, day) rows whose figures differ between two instants."""
        before = self.daily(start, end, as_of=earlier)
        after = self.daily(start, end, as_of=later)
        return {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}

    # -- the truth (kpi-definitions.md's ad metrics) ------------------------------------------
    def truth_by_campaign_day(
        self, start: date, end: date, *, rule: ConversionRule = PURCHASES, as_of: Instant = None
    ) -> dict[tuple[str, date], AdMetrics]:
        return {k: f.metrics(rule) for k, f in self.daily(start, end, as_of=as_of).items()}

    def truth_by_day(
        self, start: date, end: date, *, rule: ConversionRule = PURCHASES, as_of: Instant = None
    ) -> dict[date, AdMetrics]:
        """The account's metrics per day (ratios of the day's sums over campaigns)."""
        return {d: f.metrics(rule) for d, f in self.account_daily(start, end, as_of=as_of).items()}

    def truth(
        self,
        start: date,
        end: date,
        *,
        campaign_id: str | None = None,
        rule: ConversionRule = PURCHASES,
        as_of: Instant = None,
    ) -> AdMetrics:
        """The metrics of days start..end summed (one campaign, or the account): ratios of
        the sums, never averages of daily ratios."""
        ids = None if campaign_id is None else [campaign_id]
        rows = self.daily(start, end, campaign_ids=ids, as_of=as_of).values()
        return AdMetrics.total((f.metrics(rule) for f in rows), self.currency)


class AdAccounts:
    """A platform simulator's accounts on one clock: `add` makes one with the platform's
    defaults (`seed`, `restatement`, `kinds`, `campaign_id`, ...) unless told otherwise."""

    def __init__(self, clock: SimClock, **defaults: Any) -> None:
        self.clock = clock
        self.defaults = defaults
        self._accounts: dict[str, AdAccount] = {}
        self._lock = threading.Lock()

    def add(self, account_id: str, **options: Any) -> AdAccount:
        if account_id in self._accounts:
            raise ValueError(f"account {account_id!r} exists already")
        account = AdAccount(account_id, self.clock, **{**self.defaults, **options})
        with self._lock:
            self._accounts[account_id] = account
        return account

    def get(self, account_id: str) -> AdAccount | None:
        return self._accounts.get(account_id)

    def __getitem__(self, account_id: str) -> AdAccount:
        return self._accounts[account_id]

    def __contains__(self, account_id: object) -> bool:
        return account_id in self._accounts

    def __iter__(self) -> Iterator[AdAccount]:
        return iter(list(self._accounts.values()))

    def __len__(self) -> int:
        return len(self._accounts)

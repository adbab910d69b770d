"""A synthetic GA4 property: sessions simulated hour by hour, processed late (restatement),
reported at the clock's now."""

from __future__ import annotations

import math
import re
import threading
from bisect import bisect_right
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from random import Random
from typing import Any
from zoneinfo import ZoneInfo

from kpi_pipelines.sandbox.google.ga4.quota import GA4Quota
from kpi_pipelines.sandbox.google.ga4.report import Report, build_report
from kpi_pipelines.sandbox.google.ga4.request import parse_request
from kpi_pipelines.sandbox.google.ga4.sessions import (
    CHANNEL_BY_NAME,
    CHANNEL_WEIGHTS,
    CHANNELS,
    SOURCE_WEIGHTS,
    Session,
)
from kpi_pipelines.sandbox.google.ga4.truth import WebMetrics, tally
from kpi_pipelines.sandbox.kit import SimClock
from kpi_pipelines.sandbox.kit.draws import poisson


@dataclass(frozen=True)
class Traffic:
    """The site's traffic model: sessions a day (before weekly swing and trend), the share by
    new users, and how many referring sites there are."""

    daily_sessions: float
    new_user_rate: float
    referral_sites: int


class GA4Property:
    """A synthetic GA4 property: its sessions, quotas and truth."""

    def __init__(
        self,
        property_id: str,
        clock: SimClock,
        *,
        seed: int = 0,
        time_zone: str = "America/Los_Angeles",
        start_date: date | None = None,
        history_days: int = 240,
        daily_sessions: float = 300.0,
        currency_code: str = "USD",
        new_user_rate: float = 0.3,
        referral_sites: int = 2_500,
        thresholding_min_users: int = 10,
        latency: float = 0.0,
        quota: GA4Quota | None = None,
    ) -> None:
        if not re.fullmatch(r"\d+", property_id):
            raise ValueError("a GA4 property id is numeric, e.g. '123456789'")
        self.property_id = property_id
        self.clock = clock
        self.seed = seed
        self.time_zone = time_zone
        self.tz = ZoneInfo(time_zone)
        today = clock.now().astimezone(self.tz).date()
        self.start_date = start_date or today - timedelta(days=history_days)
        self.traffic = Traffic(daily_sessions, new_user_rate, referral_sites)
        self.currency_code = currency_code
        self.thresholding_min_users = thresholding_min_users
        self.latency = latency
        self.quota = quota or GA4Quota()
        self.in_flight = 0
        self.reports_served = 0
        self._lock = threading.RLock()
        self._by_day: dict[date, list[Session]] = {}
        self._next_day = self.start_date
        self._ring: list[int] = []
        self._ring_size = max(50, int(daily_sessions * 4))
        self._ring_pos = 0
        self._next_user = 1
        self._next_injected_user = -1

    # -- simulation ---------------------------------------------------------------------------
    def _midnight(self, day: date) -> int:
        return int(datetime.combine(day, datetime.min.time(), self.tz).timestamp())

    def _ensure(self, until: int) -> None:
        """Simulate every local day that starts before `until` (Unix seconds)."""
        with self._lock:
            while self._midnight(self._next_day) < until:
                self._simulate_day(self._next_day)
                self._next_day += timedelta(days=1)

    def _simulate_day(self, day: date) -> None:
        first, end = self._midnight(day), self._midnight(day + timedelta(days=1))
        day_index = (day - self.start_date).days
        weekly = 0.7 if day.weekday() >= 5 else 1.08
        trend = 1.0 + 0.4 * day_index / 365
        per_hour = self.traffic.daily_sessions / 24 * weekly * trend
        sessions = self._by_day.setdefault(day, [])
        ring, ring_size, new_user_rate = self._ring, self._ring_size, self.traffic.new_user_rate
        for hour in range(first, end, 3600):
            rng = Random(f"ga4:{self.seed}:{self.property_id}:{hour}")
            random = rng.random
            local_hour = (hour - first) // 3600
            diurnal = 1.0 + 0.6 * math.sin(2 * math.pi * (local_hour - 8) / 24)
            span = min(3600, end - hour)
            count = poisson(rng, per_hour * diurnal * span / 3600)
            for offset in sorted(int(random() * span) for _ in range(count)):
                start = hour + offset
                if ring and random() >= new_user_rate:
                    user, new_user = ring[int(random() * len(ring))], False
                else:
                    user, new_user = self._next_user, True
                    self._next_user += 1
                if len(ring) < ring_size:
                    ring.append(user)
                else:
                    ring[self._ring_pos] = user
                    self._ring_pos = (self._ring_pos + 1) % ring_size
                channel = CHANNELS[min(bisect_right(CHANNEL_WEIGHTS, random()), len(CHANNELS) - 1)]
                if channel.sources:
                    pick = bisect_right(SOURCE_WEIGHTS[channel.name], random())
                    source_medium = channel.sources[min(pick, len(channel.sources) - 1)][0]
                else:
                    site = int(self.traffic.referral_sites ** random()) - 1
                    source_medium = f"site{site:04d}.example.com / referral"
                engaged = random() < channel.engaged_rate
                if engaged:
                    duration = min(3600, 10 + int(rng.expovariate(1 / 170)))
                else:
                    duration = int(random() * 10)
                key_events = 0
                if engaged:
                    roll = random()
                    if roll < channel.key_event_rate:
                        key_events = 2 if roll < channel.key_event_rate * 0.15 else 1
                roll = random()
                if roll < 0.7:
                    delay = 60 + int(random() * 3_540)
                elif roll < 0.95:
                    delay = 3_600 + int(random() * 82_800)
                else:
                    delay = 86_400 + int(random() * 86_400)
                sessions.append(
                    Session(
                        start,
                        day,
                        user,
                        channel.name,
                        source_medium,
                        engaged,
                        duration,
                        key_events,
                        new_user,
                        start + duration + delay,
                    )
                )

    def add_session(
        self,
        at: datetime,
        *,
        channel: str = "Direct",
        source_medium: str | None = None,
        user: int | None = None,
        new_user: bool | None = None,
        engaged: bool = True,
        duration: int = 60,
        key_events: int = 0,
        processing_delay: timedelta = timedelta(0),
    ) -> Session:
        """Add a hand-made session (tests: an event at 23:30 local time, a late hit...).

        `user` None makes a fresh user (a new user unless `new_user` says otherwise).
        The session is visible from `at + duration + processing_delay` on.
        """
        if at.tzinfo is None:
            raise ValueError("`at` must be timezone-aware")
        if channel not in CHANNEL_BY_NAME:
            raise ValueError(f"unknown channel group {channel!r}")
        with self._lock:
            if user is None:
                user = self._next_injected_user
                self._next_injected_user -= 1
                new_user = True if new_user is None else new_user
            start = int(at.timestamp())
            chosen = CHANNEL_BY_NAME[channel]
            session = Session(
                start=start,
                day=datetime.fromtimestamp(start, self.tz).date(),
                user=user,
                channel=channel,
                source_medium=source_medium
                or (chosen.sources[0][0] if chosen.sources else "example.org / referral"),
                engaged=engaged,
                duration=duration,
                key_events=key_events,
                new_user=bool(new_user),
                arrives=start + duration + int(processing_delay.total_seconds()),
            )
            self._by_day.setdefault(session.day, []).append(session)
            return session

    def today(self) -> date:
        return self.clock.now().astimezone(self.tz).date()

    def sessions(
        self, start: date, end: date, *, as_of: datetime | None = None, final: bool = False
    ) -> list[Session]:
        """Sessions of local days start..end: those processed by `as_of` (default now), or,
        with `final`, every session that has started by then, processed or not."""
        instant = int((as_of or self.clock.now()).timestamp())
        self._ensure(instant + 1)
        out: list[Session] = []
        with self._lock:
            day = start
            while day <= end:
                out.extend(
                    s
                    for s in self._by_day.get(day, ())
                    if s.start <= instant and (final or s.arrives <= instant)
                )
                day += timedelta(days=1)
        return sorted(out, key=lambda s: (s.start, s.user))

    # -- truth --------------------------------------------------------------------------------
    def truth_by_date(
        self, start: date, end: date, *, as_of: datetime | None = None, final: bool = False
    ) -> dict[date, WebMetrics]:
        """Per local day: what a report by `date` alone shows at `as_of` (default now)."""
        cells = tally(self.sessions(start, end, as_of=as_of, final=final), lambda s: s.day)
        return dict(sorted(cells.items()))

    def truth_by_date_channel(
        self, start: date, end: date, *, as_of: datetime | None = None, final: bool = False
    ) -> dict[tuple[date, str], WebMetrics]:
        """Per (local day, session default channel group), as a report by both shows it."""
        cells = tally(
            self.sessions(start, end, as_of=as_of, final=final), lambda s: (s.day, s.channel)
        )
        return dict(sorted(cells.items()))

    # -- the report ---------------------------------------------------------------------------
    def run_report(self, body: dict[str, Any], *, legacy_conversions: str = "reject") -> dict:
        """The runReport response for `body` at the clock's now (raises BadRequest), without
        quotas: what the API would answer."""
        return self.report(body, legacy_conversions=legacy_conversions).response

    def report(self, body: dict[str, Any], *, legacy_conversions: str = "reject") -> Report:
        now = self.clock.now()
        request = parse_request(body, self, now, legacy_conversions)
        instant = int(now.timestamp())
        self._ensure(instant + 1)
        with self._lock:
            return build_report(self, request, instant)

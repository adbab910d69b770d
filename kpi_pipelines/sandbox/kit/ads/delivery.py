"""One campaign's delivery on one account day, and when each part of it becomes visible.

A `DayPlan` holds the day's hours (slots from local midnight; 23 or 25 on the days clocks
change), the spend, impressions and clicks of each hour, the billing credits that later
take some spend and clicks back, and the conversions in arrival waves: each wave is
attributed to an hour of the day (when its clicks happened) and arrives at an instant, most
within the day, the rest over the platform's conversion window. `figures(hours, as_of)`
is what the platform reports for those hours at that instant: an hour's delivery shows
`delay` after it ends; a credit or a wave shows once it has arrived.

Plans are pure functions of (seed, account, campaign key, day, the campaign's active hours),
so any query order gives the same figures.
"""

from __future__ import annotations

import itertools
import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from random import Random

from kpi_pipelines.sandbox.kit.ads.campaigns import DAY, Profile
from kpi_pipelines.sandbox.kit.ads.figures import Cell, Figures
from kpi_pipelines.sandbox.kit.ads.model import ConversionKind, Restatement
from kpi_pipelines.sandbox.kit.draws import poisson
from kpi_pipelines.sandbox.kit.money import Money

# Share of a day's delivery by local hour (people scroll in the evening).
_DIURNAL = (
    0.45, 0.3, 0.22, 0.18, 0.2, 0.3, 0.55, 0.8, 0.95, 1.0, 1.02, 1.05,
    1.1, 1.08, 1.02, 1.0, 1.03, 1.1, 1.25, 1.4, 1.45, 1.35, 1.05, 0.7,
)  # fmt: skip
_WEEKDAY = (1.0, 1.02, 1.03, 1.01, 0.97, 0.86, 0.84)
# Conversion arrival waves: the share of a day's conversions in each, and when each arrives
# as a fraction of the conversion window after the day's end (the first: within the day).
_WAVE_SHARES = (0.52, 0.2, 0.11, 0.08, 0.06, 0.03)
_WAVE_BOUNDS = tuple(itertools.accumulate(_WAVE_SHARES))
_WAVE_SPANS = ((0.0, 0.0), (0.0, 0.04), (0.04, 0.12), (0.12, 0.3), (0.3, 0.6), (0.6, 0.999))


@dataclass(frozen=True)
class Wave:
    slot: int  # the hour its conversions are attributed to
    arrives: int  # unix seconds
    cells: tuple[tuple[Cell, int, int], ...]  # (kind, channel), count, value (minor units)


@dataclass(frozen=True)
class Credit:
    slot: int
    arrives: int
    spend: int
    clicks: int


@dataclass(frozen=True)
class DayPlan:
    slots: tuple[int, ...]  # each hour's first instant (unix seconds)
    day_end: int
    spend: tuple[int, ...]
    impressions: tuple[int, ...]
    clicks: tuple[int, ...]
    credits: tuple[Credit, ...]
    waves: tuple[Wave, ...]  # by arrival

    def slot_end(self, i: int) -> int:
        return self.slots[i + 1] if i + 1 < len(self.slots) else self.day_end

    def figures(self, start: int, end: int, as_of: int, delay: int, currency: str) -> Figures:
        """The figures of the hours starting in [start, end) that show at `as_of`."""
        spend = impressions = clicks = 0
        shown = [
            start <= s < end and self.slot_end(i) + delay <= as_of for i, s in enumerate(self.slots)
        ]
        for i, visible in enumerate(shown):
            if visible:
                spend += self.spend[i]
                impressions += self.impressions[i]
                clicks += self.clicks[i]
        for credit in self.credits:
            if credit.arrives <= as_of and shown[credit.slot]:
                spend -= credit.spend
                clicks -= credit.clicks
        cells: dict[Cell, tuple[int, int]] = {}
        for wave in self.waves:
            if wave.arrives > as_of:
                break
            if shown[wave.slot]:
                for cell, n, v in wave.cells:
                    count, value = cells.get(cell, (0, 0))
                    cells[cell] = (count + n, value + v)
        return Figures(Money(spend, currency), impressions, clicks, cells)


def split(total: int, weights: Sequence[float]) -> list[int]:
    """`total` split in proportion to `weights`, in integers that sum to it exactly (the
    largest remainders get the units rounding left over)."""
    whole = sum(weights)
    if total == 0 or whole <= 0:
        return [0] * len(weights)
    shares = [total * w / whole for w in weights]
    out = [int(s) for s in shares]
    left = total - sum(out)
    if left:
        by_remainder = sorted(range(len(weights)), key=lambda i: out[i] - shares[i])
        for i in by_remainder[:left]:
            out[i] += 1
    return out


def hour_slots(midnight: int, next_midnight: int) -> tuple[int, ...]:
    return tuple(range(midnight, next_midnight, 3600))


def _pick(rng: Random, cumulative: Sequence[int]) -> int:
    """An index drawn in proportion to the weights whose running sums are `cumulative`
    (their total is positive)."""
    return bisect_right(cumulative, rng.random() * cumulative[-1])


def _spread(rng: Random, count: int, late: bool) -> list[int]:
    """`count` conversions over the arrival waves (all in the first without a window): drawn
    one by one when few, so small days restate unevenly too; split by jittered shares when
    many."""
    if not late:
        return [count] + [0] * (len(_WAVE_SHARES) - 1)
    if count > 40:
        return split(count, [s * rng.uniform(0.75, 1.25) for s in _WAVE_SHARES])
    out = [0] * len(_WAVE_SHARES)
    for _ in range(count):
        out[min(bisect_right(_WAVE_BOUNDS, rng.random()), len(out) - 1)] += 1
    return out


def _waves(
    rng: Random,
    slots: tuple[int, ...],
    day_end: int,
    clicks: Sequence[int],
    restatement: Restatement,
    counts: dict[Cell, tuple[list[int], float]],
) -> tuple[Wave, ...]:
    """Spread each cell's conversions over the arrival waves; `counts` maps a cell to its
    conversions per wave and the mean value of one (minor units)."""
    delay = int(restatement.delay.total_seconds())
    window = restatement.conversion_days * DAY
    waves = []
    by_clicks = list(itertools.accumulate(clicks))
    for w, (low, high) in enumerate(_WAVE_SPANS):
        slot = _pick(rng, by_clicks)
        slot_end = slots[slot + 1] if slot + 1 < len(slots) else day_end
        if w == 0:
            arrives = slot_end + delay + int(rng.random() * 7_200)
        else:
            arrives = day_end + int(rng.uniform(low, high) * window)
        arrives = min(max(arrives, slot_end + delay), day_end + window + delay - 1)
        cells = []
        for cell, (per_wave, mean_value) in counts.items():
            n = per_wave[w]
            if n:
                value = round(n * mean_value * rng.lognormvariate(0, 0.25)) if mean_value else 0
                cells.append((cell, n, value))
        if cells:
            waves.append(Wave(slot, arrives, tuple(cells)))
    return tuple(sorted(waves, key=lambda wave: wave.arrives))


def generated_day(
    rng: Random,
    day: date,
    slots: tuple[int, ...],
    day_end: int,
    active: Sequence[bool],
    profile: Profile,
    kinds: Sequence[ConversionKind],
    restatement: Restatement,
    local_hours: Sequence[int],
) -> DayPlan | None:
    """A seeded day of delivery in the hours the campaign is active (None: no delivery)."""
    weights = [_DIURNAL[h] if on else 0.0 for h, on in zip(local_hours, active, strict=True)]
    share = sum(weights) / sum(_DIURNAL[h] for h in local_hours)
    if share == 0 or rng.random() < profile.dark_day_rate:
        return None
    season = 1.0 + 0.25 * math.exp(-(((day.timetuple().tm_yday - 330) / 25) ** 2))
    spend = round(
        profile.daily_budget * rng.uniform(0.82, 1.0) * _WEEKDAY[day.weekday()] * season * share
    )
    if spend < 1:
        return None
    impressions = max(1, round(spend / profile.cpm * 1000 * rng.lognormvariate(0, 0.12)))
    clicks = min(impressions, poisson(rng, impressions * profile.ctr * rng.lognormvariate(0, 0.15)))
    spend_h = split(spend, weights)
    impressions_h = split(impressions, weights)
    clicks_h = [min(c, i) for c, i in zip(split(clicks, weights), impressions_h, strict=True)]
    credits: tuple[Credit, ...] = ()
    if restatement.billing_days and sum(clicks_h) and rng.random() < 0.6:
        slot = _pick(rng, list(itertools.accumulate(clicks_h)))
        taken = max(1, round(clicks_h[slot] * rng.uniform(0.02, 0.25)))
        refund = min(spend_h[slot], round(spend_h[slot] * taken / clicks_h[slot]))
        arrives = day_end + int(rng.uniform(0.05, 1.0) * restatement.billing_days * DAY)
        credits = (Credit(slot, arrives, refund, taken),)
    counts: dict[Cell, tuple[list[int], float]] = {}
    total_clicks = sum(clicks_h)
    for kind in kinds:
        n = poisson(rng, total_clicks * kind.per_click * profile.conversion_scale)
        channels = list(kind.channels)
        for channel, m in zip(
            channels, split(n, [kind.channels[c] for c in channels]), strict=True
        ):
            if m:
                per_wave = _spread(rng, m, restatement.conversion_days > 0)
                counts[(kind.name, channel)] = (per_wave, kind.order_value * profile.order_value)
    waves = _waves(rng, slots, day_end, clicks_h, restatement, counts) if counts else ()
    return DayPlan(
        slots, day_end, tuple(spend_h), tuple(impressions_h), tuple(clicks_h), credits, waves
    )


def scripted_day(
    slots: tuple[int, ...],
    day_end: int,
    local_hours: Sequence[int],
    *,
    spend: int,
    impressions: int,
    clicks: int,
    conversions: Sequence[tuple[Cell, int, int, int]],
    delay: int,
) -> DayPlan:
    """A day a test wrote: its totals spread over the hours, and `conversions` as
    ((kind, channel), count, value, seconds after the day's end) arriving when said."""
    if clicks > impressions or min(spend, impressions, clicks) < 0:
        raise ValueError(
            "a day's spend, impressions and clicks are 0 or more, clicks <= impressions"
        )
    weights = [_DIURNAL[h] for h in local_hours]
    impressions_h = split(impressions, weights)
    clicks_h = split(clicks, weights)
    for i, (c, n) in enumerate(zip(clicks_h, impressions_h, strict=True)):
        if c > n:  # a quiet hour got the rounding: move its clicks to the busiest hour
            clicks_h[i] = n
            clicks_h[max(range(len(weights)), key=lambda j: impressions_h[j] - clicks_h[j])] += (
                c - n
            )
    last = len(slots) - 1
    waves = tuple(
        sorted(
            (
                Wave(last, day_end + delay + after, ((cell, n, value),))
                for cell, n, value, after in conversions
                if n
            ),
            key=lambda w: w.arrives,
        )
    )
    return DayPlan(
        slots,
        day_end,
        tuple(split(spend, weights)),
        tuple(impressions_h),
        tuple(clicks_h),
        (),
        waves,
    )

"""The generator's own record of the truth, computed from its internal timeline.

Never derived from the served JSON: MRR comes from each subscription's item states, trial,
unpaid spells, end and forever coupons as the simulation decided them (kpi-definitions.md,
Stripe section). Instants are unix seconds; the state "at T" includes every change made at
or before T, so the MRR at the end of a local day is `mrr_at(next local midnight - 1 s)`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from random import Random
from typing import Protocol
from zoneinfo import ZoneInfo

from kpi_pipelines.sandbox.stripe.generator import (
    CustomerSim,
    StripeSandboxConfig,
    customer_mrr_at,
    customer_mrr_steps,
    step_value,
)


class SimulatedAccount(Protocol):
    """What the truth reads of a sandbox: its clock, its config and its customers' simulations
    (the state the simulator set, never what its API serves)."""

    config: StripeSandboxConfig

    @property
    def now_ts(self) -> int: ...

    def sim(self, ci: int) -> CustomerSim: ...


# USD per unit of each currency on the FX origin day; the walk starts there.
_FX_ANCHOR = {"usd": 1.0, "eur": 1.08, "gbp": 1.27, "jpy": 0.0067, "cad": 0.74, "aud": 0.66}


@dataclass(frozen=True)
class Movement:
    kind: str  # new | reactivation | expansion | contraction | churn
    amount: float  # positive, in the customer's currency minor units
    currency: str


@dataclass(frozen=True)
class DayTruth:
    day: date
    mrr: dict[str, tuple[str, float]]  # customers with MRR > 0 at the end of the day
    movements: dict[str, Movement]  # customers whose MRR changed since the day before

    def totals(self) -> dict[str, float]:
        """MRR per currency (minor units)."""
        out: dict[str, float] = {}
        for currency, value in self.mrr.values():
            out[currency] = out.get(currency, 0.0) + value
        return out

    def movement_totals(self) -> dict[tuple[str, str], float]:
        """{(kind, currency): amount} for the day."""
        out: dict[tuple[str, str], float] = {}
        for m in self.movements.values():
            out[(m.kind, m.currency)] = out.get((m.kind, m.currency), 0.0) + m.amount
        return out


@dataclass(frozen=True)
class RevenueDay:
    day: date  # UTC day
    currency: str
    revenue: int  # succeeded charges, captured amount
    refunds: int  # refunded amount
    net: int  # balance transactions' net (after fees and refunds)


def end_of_day(day: date, tz: str = "UTC") -> int:
    """The last second of local `day` (the instant daily snapshots are taken)."""
    zone = ZoneInfo(tz)
    nxt = datetime(day.year, day.month, day.day, tzinfo=zone) + timedelta(days=1)
    # normalize across DST: build the next local midnight explicitly
    nxt = datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone)
    return int(nxt.timestamp()) - 1


def _ts(at: datetime | int) -> int:
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise ValueError("use timezone-aware datetimes")
        return int(at.timestamp())
    return int(at)


class StripeTruth:
    """Truth queries over a sandbox at its current clock."""

    def __init__(self, sandbox: SimulatedAccount) -> None:
        self.sandbox = sandbox
        self._steps: dict[tuple[int, int], list[tuple[int, float]]] = {}

    def _check(self, t: int) -> None:
        if t > self.sandbox.now_ts:
            raise ValueError("the truth is only known up to the sandbox clock (now)")

    # -- MRR ----------------------------------------------------------------------------------

    def customer_mrr_at(self, ci: int, at: datetime | int) -> float:
        t = _ts(at)
        self._check(t)
        return customer_mrr_at(self.sandbox.sim(ci), t)

    def mrr_at(self, at: datetime | int) -> dict[str, tuple[str, float]]:
        """{customer id: (currency, MRR in minor units)} for every customer existing at `at`."""
        t = _ts(at)
        self._check(t)
        sb = self.sandbox
        out: dict[str, tuple[str, float]] = {}
        for ci in range(sb.generator.customer_count(t)):
            cs = sb.sim(ci)
            out[sb.customer_id(ci)] = (cs.currency, customer_mrr_at(cs, t))
        return out

    def steps(self, ci: int) -> list[tuple[int, float]]:
        """Customer ci's MRR as a step function [(from instant, value)] up to now."""
        key = (self.sandbox.now_ts, ci)
        steps = self._steps.get(key)
        if steps is None and self._steps and next(iter(self._steps))[0] != key[0]:
            self._steps.clear()  # the clock moved: forget the old steps
        if steps is None:
            steps = self._steps[key] = customer_mrr_steps(self.sandbox.sim(ci), self.sandbox.now_ts)
        return steps

    def daily(self, day_start: date, day_end: date, tz: str = "UTC") -> Iterator[DayTruth]:
        """Per local day in [day_start, day_end]: MRR at the end of the day and movements."""
        self._check(end_of_day(day_end, tz))
        sb = self.sandbox
        n = sb.generator.customer_count(end_of_day(day_end, tz))
        sims: list[tuple[str, CustomerSim, list[tuple[int, float]], bool, float]] = []
        before = day_start - timedelta(days=1)
        t_before = end_of_day(before, tz)
        for ci in range(n):
            cs = sb.sim(ci)
            steps = self.steps(ci)
            # Did the customer have MRR at the end of any day before day_start?
            had = False
            created_day = datetime.fromtimestamp(cs.created, ZoneInfo(tz)).date()
            d = created_day
            while d <= before and not had:
                had = step_value(steps, end_of_day(d, tz)) > 0
                d += timedelta(days=1)
            prev = step_value(steps, t_before) if created_day <= before else 0.0
            sims.append((sb.customer_id(ci), cs, steps, had, prev))
        state = [(cid, cs, steps, had, prev) for cid, cs, steps, had, prev in sims]
        day = day_start
        while day <= day_end:
            t = end_of_day(day, tz)
            mrr: dict[str, tuple[str, float]] = {}
            moves: dict[str, Movement] = {}
            for k, (cid, cs, steps, had, prev) in enumerate(state):
                if cs.created > t:
                    continue
                value = step_value(steps, t)
                if value > 0:
                    mrr[cid] = (cs.currency, value)
                if not math.isclose(value, prev, rel_tol=0, abs_tol=1e-9):
                    if prev <= 0:
                        kind = "reactivation" if had else "new"
                        moves[cid] = Movement(kind, value, cs.currency)
                    elif value <= 0:
                        moves[cid] = Movement("churn", prev, cs.currency)
                    elif value > prev:
                        moves[cid] = Movement("expansion", value - prev, cs.currency)
                    else:
                        moves[cid] = Movement("contraction", prev - value, cs.currency)
                state[k] = (cid, cs, steps, had or value > 0, value)
            yield DayTruth(day, mrr, moves)
            day += timedelta(days=1)

    # -- revenue ------------------------------------------------------------------------------

    def revenue_daily(self, day_start: date, day_end: date) -> list[RevenueDay]:
        """Per UTC day and currency: captured charges, refunds and balance-transaction net."""
        sb = self.sandbox
        now = sb.now_ts
        lo = int(datetime(day_start.year, day_start.month, day_start.day, tzinfo=UTC).timestamp())
        hi = lo + ((day_end - day_start).days + 1) * 86_400
        rows: dict[tuple[date, str], list[int]] = {}

        def bucket(t: int, currency: str) -> list[int] | None:
            if not lo <= t < hi or t > now:
                return None
            day = datetime.fromtimestamp(t, UTC).date()
            return rows.setdefault((day, currency), [0, 0, 0])

        for cs in sb.customers():
            for ch in cs.charges:
                if ch.status == "succeeded" and (b := bucket(ch.created, cs.currency)):
                    b[0] += ch.amount
            for rf in cs.refunds:
                if b := bucket(rf.created, cs.currency):
                    b[1] += rf.amount
            for bt in cs.bts:
                if b := bucket(bt.created, cs.currency):
                    b[2] += bt.net
        return [
            RevenueDay(day, currency, *values) for (day, currency), values in sorted(rows.items())
        ]

    # -- FX -----------------------------------------------------------------------------------

    def fx_rates(self, start: date, end: date) -> list[tuple[date, str, str, float]]:
        return fx_rates(self.sandbox.config.seed, self.sandbox.config.currencies, start, end)


def fx_rates(
    seed: int, currencies: tuple[str, ...], start: date, end: date
) -> list[tuple[date, str, str, float]]:
    """Deterministic daily rates for every ordered pair: (day, base, quote, quote per base).

    Each currency's USD value follows a seeded mean-reverting walk (0.4% daily moves around a
    fixed anchor) from a fixed origin (2020-01-01), so a day's rate does not depend on the
    range asked for.
    """
    origin = date(2020, 1, 1)
    days = (end - origin).days + 1
    if days <= 0 or end < start:
        return []
    usd: dict[str, list[float]] = {}
    for currency in currencies:
        rng = Random(f"{seed}:fx:{currency}")
        anchor = _FX_ANCHOR.get(currency, 1.0)
        drift = 0.0  # log deviation from the anchor, mean-reverting (about 2% standard deviation)
        series = []
        for _ in range(days):
            if currency != "usd":
                drift = drift * 0.98 + rng.gauss(0.0, 0.004)
            series.append(anchor * math.exp(drift))
        usd[currency] = series
    out = []
    d = max(start, origin)
    while d <= end:
        k = (d - origin).days
        for base in currencies:
            for quote in currencies:
                if base != quote:
                    out.append((d, base, quote, usd[base][k] / usd[quote][k]))
        d += timedelta(days=1)
    return out

"""Subscription schedules: a subscription's phases (a scripted sandbox's SubscriptionScript
phases), with their timeline."""

from __future__ import annotations

from kpi_pipelines.sandbox.stripe.catalog import Price


class SchedulePhase:
    """One phase: [start, end) with its items' (price, quantity) and proration_behavior."""

    __slots__ = ("end", "items", "proration_behavior", "start")

    def __init__(
        self,
        start: int,
        end: int,
        items: list[tuple[Price, int | None]],
        proration_behavior: str,
    ) -> None:
        self.start = start
        self.end = end
        self.items = items
        self.proration_behavior = proration_behavior


class Schedule:
    """A subscription schedule (`sub`: its subscription's index; `li`: its index among the
    customer's schedules); end_behavior release: released when its last phase ends."""

    __slots__ = ("canceled_at", "created", "li", "phases", "released_at", "sub")

    def __init__(self, li: int, sub: int, created: int, phases: list[SchedulePhase]) -> None:
        self.li = li
        self.sub = sub
        self.created = created
        self.phases = phases
        self.released_at: int | None = None
        self.canceled_at: int | None = None

    def status_at(self, t: int) -> str:
        if self.canceled_at is not None and self.canceled_at <= t:
            return "canceled"
        if self.released_at is not None and self.released_at <= t:
            return "released"
        return "active"

    def phase_at(self, t: int) -> SchedulePhase | None:
        """The current phase while the schedule is active, else None."""
        if self.status_at(t) != "active":
            return None
        for phase in self.phases:
            if phase.start <= t < phase.end:
                return phase
        return None

"""The GA4 simulator's own record of the truth: metrics counted from its sessions directly,
never from a report (the code under test reads reports)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kpi_pipelines.sandbox.google.ga4.sessions import Session


@dataclass(frozen=True)
class WebMetrics:
    """The truth for one cell (a day, or a day and channel), as typed numbers."""

    sessions: int
    total_users: int
    new_users: int
    engaged_sessions: int
    key_events: int

    @property
    def engagement_rate(self) -> float:
        return self.engaged_sessions / self.sessions if self.sessions else 0.0

    @property
    def conversions(self) -> int:
        """kpi-definitions' name for GA4 key events."""
        return self.key_events


def tally(sessions: Iterable[Session], key: Callable[[Session], Any]) -> dict[Any, WebMetrics]:
    acc: dict[Any, list[Any]] = {}
    for s in sessions:
        cell = acc.get(key(s))
        if cell is None:
            cell = acc[key(s)] = [0, set(), 0, 0, 0]
        cell[0] += 1
        cell[1].add(s.user)
        cell[2] += s.new_user
        cell[3] += s.engaged
        cell[4] += s.key_events
    return {k: WebMetrics(v[0], len(v[1]), v[2], v[3], v[4]) for k, v in acc.items()}

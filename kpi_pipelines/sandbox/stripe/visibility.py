"""When an event shows up in `/v1/events`: Stripe's events list is eventually consistent.

Two documented ways a reader that pages events by `created` meets an event late:

- Events are stamped with whole seconds. A clock stopped inside a second (`advance(t,
  into_second=0.5)`) has seen only the first events of that second: of the n events created
  in it, the k-th (in the list's order, oldest first) has happened once `k / n < into_second`.
  The rest appear when the second is over, with the same `created` as those already read.
- An event may become visible some time after its `created` (`StripeSandbox.delay_events`),
  or never (a lost event, as webhooks and event feeds occasionally lose one).

Objects themselves are read-your-writes: a change is visible on the object at once, and only
its event lags. The sandbox's truth and `events_since` ignore visibility (they are the record
of what happened, not of what the list shows).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from kpi_pipelines.sandbox.stripe.generator import EVENT_CODE


@dataclass(frozen=True)
class EventDelay:
    """Events (of `codes`, created at or after `created_from`; `share` of them, chosen by a
    stable hash) become visible `seconds` after their `created`; None: never."""

    seconds: int | None
    codes: frozenset[int] | None = None
    created_from: int | None = None
    share: float = 1.0

    def hides(self, now: int, created: int, ci: int, li: int, code: int) -> bool:
        if self.codes is not None and code not in self.codes:
            return False
        if self.created_from is not None and created < self.created_from:
            return False
        if self.share < 1.0 and zlib.crc32(f"{ci}:{li}".encode()) / 2**32 >= self.share:
            return False
        return self.seconds is None or created + self.seconds > now


class EventVisibility:
    """The delays in force and how far into its current second the clock is."""

    def __init__(self) -> None:
        self.delays: list[EventDelay] = []
        self.into_second: float | None = None  # None: the clock's second is over

    @property
    def active(self) -> bool:
        return bool(self.delays) or self.into_second is not None

    def delay(
        self,
        seconds: int | None,
        *,
        types: Iterable[str] | None = None,
        created_from: int | None = None,
        share: float = 1.0,
    ) -> None:
        codes = None
        if types is not None:
            unknown = [t for t in types if t not in EVENT_CODE]
            if unknown:
                raise ValueError(f"unknown event types: {unknown}")
            codes = frozenset(EVENT_CODE[t] for t in types)
        if not 0.0 < share <= 1.0:
            raise ValueError("share must be in (0, 1]")
        self.delays.append(EventDelay(seconds, codes, created_from, share))

    def delayed(self, now: int, created: int, ci: int, li: int, code: int) -> bool:
        return any(d.hides(now, created, ci, li, code) for d in self.delays)

    def happened_in_second(self, count: int) -> int:
        """How many of the `count` events created in the clock's second have happened."""
        if self.into_second is None:
            return count
        return min(count, math.ceil(self.into_second * count))

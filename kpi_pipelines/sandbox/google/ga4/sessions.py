"""The sessions a synthetic GA4 site is made of, and the channel groups they arrive through."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import NamedTuple


# -- the synthetic site -----------------------------------------------------------------------
@dataclass(frozen=True)
class Channel:
    name: str
    weight: float
    engaged_rate: float
    key_event_rate: float  # per engaged session
    sources: tuple[tuple[str, float], ...]  # source / medium, weight; () = referral long tail


CHANNELS: tuple[Channel, ...] = (
    Channel(
        "Organic Search",
        0.28,
        0.68,
        0.07,
        (("google / organic", 0.86), ("bing / organic", 0.1), ("duckduckgo / organic", 0.04)),
    ),
    Channel("Direct", 0.19, 0.6, 0.09, (("(direct) / (none)", 1.0),)),
    Channel("Referral", 0.2, 0.62, 0.05, ()),
    Channel(
        "Organic Social",
        0.09,
        0.45,
        0.03,
        (
            ("l.facebook.com / referral", 0.35),
            ("t.co / referral", 0.25),
            ("linkedin.com / referral", 0.25),
            ("reddit.com / referral", 0.15),
        ),
    ),
    Channel("Paid Search", 0.08, 0.64, 0.11, (("google / cpc", 0.8), ("bing / cpc", 0.2))),
    Channel("Email", 0.06, 0.74, 0.13, (("newsletter / email", 0.7), ("hubspot / email", 0.3))),
    Channel(
        "Paid Social",
        0.04,
        0.41,
        0.04,
        (("facebook / paid_social", 0.6), ("linkedin / paid_social", 0.4)),
    ),
    Channel("Display", 0.02, 0.3, 0.02, (("google / display", 1.0),)),
    Channel("Organic Video", 0.03, 0.55, 0.02, (("youtube.com / referral", 1.0),)),
    Channel("Unassigned", 0.01, 0.2, 0.0, (("(not set) / (not set)", 1.0),)),
)
CHANNEL_BY_NAME = {c.name: c for c in CHANNELS}


def _cumulative(weights: Iterable[float]) -> list[float]:
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return [x / total for x in out]


CHANNEL_WEIGHTS = _cumulative(c.weight for c in CHANNELS)
SOURCE_WEIGHTS = {c.name: _cumulative(w for _, w in c.sources) for c in CHANNELS if c.sources}


class Session(NamedTuple):
    """One session. Times are Unix seconds; `day` is the local date of `start`."""

    start: int
    day: date
    user: int
    channel: str
    source_medium: str
    engaged: bool
    duration: int
    key_events: int
    new_user: bool
    arrives: int  # when GA4 has processed it: visible to reports from then on

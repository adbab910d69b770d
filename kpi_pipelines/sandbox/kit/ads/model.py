"""The vocabulary of a simulated ad account, shared by every ad platform's simulator.

Platform-neutral on purpose: a platform maps these to its own names when it renders.
- statuses `active`, `paused`, `archived` (Meta ACTIVE/PAUSED/ARCHIVED, LinkedIn
  ACTIVE/PAUSED/ARCHIVED, X ACTIVE/PAUSED + an archived flag);
- conversions by kind (`purchase`, `lead`, `sign_up`, `add_to_cart`) and channel (`web`: the
  advertiser's site through the pixel or insight tag; `app`; `offline`: uploaded sales;
  `onsite`: the platform's own surfaces, lead forms and shops). One conversion has one kind
  and one channel, so Meta's overlapping action types are views of these cells:
  `omni_purchase` = purchases on every channel, `offsite_conversion.fb_pixel_purchase` = web
  purchases, `app_custom_event.fb_mobile_purchase` = app purchases, ... and summing the
  views counts a purchase several times, as on Meta;
- `Restatement`: how late a platform's figures keep changing;
- `ConversionRule`: what the truth counts as `conversions` (kpi-definitions.md's default per
  platform: Meta purchases, LinkedIn web conversions, X web purchases).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Literal

Status = Literal["active", "paused", "archived"]
STATUSES: tuple[Status, ...] = ("active", "paused", "archived")
CHANNELS = ("web", "app", "offline", "onsite")


@dataclass(frozen=True)
class Restatement:
    """How a platform's figures of a day keep changing after the day ends (its account time
    zone's midnight):
    - `conversion_days`: conversions and their value keep arriving for this many days (Meta
      28, LinkedIn 30, X 3), most of them early; none after;
    - `billing_days`: spend and clicks are corrected (invalid clicks credited back) within
      this many days (X: "billing figures settle within 3 days"); 0: never;
    - `delay`: how long after an hour ends its delivery shows (reports lag real time).
    A day's figures are final from `day end + max(conversion_days, billing_days) + delay`.
    """

    conversion_days: int = 28
    billing_days: int = 1
    delay: timedelta = timedelta(minutes=30)

    def __post_init__(self) -> None:
        if self.conversion_days < 0 or self.billing_days < 0:
            raise ValueError("restatement windows are 0 days or more")
        if self.delay < timedelta(0):
            raise ValueError("the reporting delay is 0 or more")

    @property
    def settles_after(self) -> timedelta:
        """From a day's end until its figures stop changing."""
        return timedelta(days=max(self.conversion_days, self.billing_days)) + self.delay


@dataclass(frozen=True)
class ConversionKind:
    """A conversion the simulated advertiser tracks: how many per click (on average), how it
    splits over channels, and its value (`order_value`: the mean value in minor units of
    the account's currency, as a multiple of the campaign's order value; 0: no value)."""

    name: str
    per_click: float
    channels: Mapping[str, float]
    order_value: float = 0.0

    def __post_init__(self) -> None:
        unknown = set(self.channels) - set(CHANNELS)
        if unknown:
            raise ValueError(f"unknown channel(s) {sorted(unknown)}; one of {CHANNELS}")
        if self.per_click < 0 or not self.channels or min(self.channels.values()) < 0:
            raise ValueError(f"conversion kind {self.name!r}: rates and shares are positive")


DEFAULT_KINDS: tuple[ConversionKind, ...] = (
    ConversionKind(
        "purchase", 0.03, {"web": 0.72, "app": 0.18, "offline": 0.06, "onsite": 0.04}, 1.0
    ),
    ConversionKind("lead", 0.035, {"web": 0.55, "onsite": 0.45}),
    ConversionKind("sign_up", 0.02, {"web": 0.7, "app": 0.3}),
    ConversionKind("add_to_cart", 0.09, {"web": 0.8, "app": 0.2}, 0.6),
)


@dataclass(frozen=True)
class ConversionRule:
    """What counts as a conversion: the kinds (None: all) on the channels (None: all)."""

    kinds: frozenset[str] | None = frozenset({"purchase"})
    channels: frozenset[str] | None = None

    def counts(self, kind: str, channel: str) -> bool:
        return (self.kinds is None or kind in self.kinds) and (
            self.channels is None or channel in self.channels
        )


PURCHASES = ConversionRule()  # Meta's default: omni_purchase, every channel
WEB_CONVERSIONS = ConversionRule(kinds=None, channels=frozenset({"web"}))  # LinkedIn's
WEB_PURCHASES = ConversionRule(channels=frozenset({"web"}))  # X's WEB_CONVERSION purchases


@dataclass(frozen=True)
class ScriptedConversions:
    """Conversions a test puts on a scripted day: `count` of `kind` on `channel` worth
    `value` (major units of the account's currency), arriving `after` the day's end (0:
    with the day's last hour)."""

    kind: str
    count: int
    value: Decimal | str | int = 0
    channel: str = "web"
    after: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        if self.channel not in CHANNELS:
            raise ValueError(f"unknown channel {self.channel!r}; one of {CHANNELS}")
        if self.count < 0 or self.after < timedelta(0):
            raise ValueError("a count and a delay are 0 or more")


@dataclass(frozen=True)
class CampaignState:
    """A campaign as the platform shows it at one instant."""

    id: str
    name: str
    status: Status
    start: date  # its first account day
    end: date | None  # its last account day (None: runs until stopped)
    created_at: datetime
    updated_at: datetime  # its last change (creation included) by that instant
    daily_budget: int = field(compare=False)  # minor units

    def delivers_on(self, day: date) -> bool:
        return self.start <= day and (self.end is None or day <= self.end)

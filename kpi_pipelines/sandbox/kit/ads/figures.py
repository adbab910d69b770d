"""What an ad platform reports for a campaign (or an account) over some hours, as of an
instant, and the kpi-definitions.md ad metrics of it.

`Figures` are the raw figures a platform renders its way: spend (`Money`), impressions,
clicks, and conversions per (kind, channel) cell with their value. `AdMetrics` are the
catalog's metrics of them under a `ConversionRule`: `ad_spend`, `impressions`, `clicks`,
`conversions`, `conversion_value`, and the ratios `ctr`, `cpc`, `cpm`, `roas` computed from
summed numerators and denominators (None where the denominator is 0: no point).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from kpi_pipelines.sandbox.kit.ads.model import PURCHASES, ConversionRule
from kpi_pipelines.sandbox.kit.money import Money

Cell = tuple[str, str]  # (conversion kind, channel)


@dataclass(frozen=True)
class Figures:
    """A platform's figures for some hours of one campaign or of the whole account.

    `conversions`: (kind, channel) -> (count, value in minor units). A cell is present only
    when its count is above 0, so "no conversions" is an empty mapping (Meta: no `actions`).
    """

    spend: Money
    impressions: int
    clicks: int
    conversions: Mapping[Cell, tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def zero(cls, currency: str) -> Figures:
        return cls(Money.zero(currency), 0, 0, {})

    @property
    def currency(self) -> str:
        return self.spend.currency

    @property
    def delivered(self) -> bool:
        """Whether the platform has a row for these figures (no delivery: no row)."""
        return self.impressions > 0 or self.spend.minor > 0

    def count(self, rule: ConversionRule = PURCHASES) -> int:
        """The conversions `rule` counts (each one once, whatever views a platform shows)."""
        return sum(
            n for (kind, channel), (n, _) in self.conversions.items() if rule.counts(kind, channel)
        )

    def value(self, rule: ConversionRule = PURCHASES) -> Money:
        """The value of the conversions `rule` counts."""
        minor = sum(
            v for (kind, channel), (_, v) in self.conversions.items() if rule.counts(kind, channel)
        )
        return Money(minor, self.currency)

    def by_kind(self, channels: Iterable[str] | None = None) -> dict[str, tuple[int, Money]]:
        """Count and value per kind, over `channels` (None: all): what one overlapping
        action type shows (Meta's `omni_purchase` is `by_kind()["purchase"]`)."""
        wanted = None if channels is None else set(channels)
        out: dict[str, tuple[int, int]] = {}
        for (kind, channel), (n, v) in self.conversions.items():
            if wanted is None or channel in wanted:
                count, value = out.get(kind, (0, 0))
                out[kind] = (count + n, value + v)
        return {k: (n, Money(v, self.currency)) for k, (n, v) in sorted(out.items())}

    def metrics(self, rule: ConversionRule = PURCHASES) -> AdMetrics:
        return AdMetrics(
            currency=self.currency,
            ad_spend=self.spend.major,
            impressions=self.impressions,
            clicks=self.clicks,
            conversions=self.count(rule),
            conversion_value=self.value(rule).major,
        )

    def __add__(self, other: Figures) -> Figures:
        cells = dict(self.conversions)
        for cell, (n, v) in other.conversions.items():
            count, value = cells.get(cell, (0, 0))
            cells[cell] = (count + n, value + v)
        return Figures(
            self.spend + other.spend,
            self.impressions + other.impressions,
            self.clicks + other.clicks,
            cells,
        )

    @classmethod
    def total(cls, figures: Iterable[Figures], currency: str) -> Figures:
        return sum(figures, cls.zero(currency))


def _ratio(numerator: Decimal | int, denominator: Decimal | int, scale: int = 1) -> float | None:
    if not denominator:
        return None
    return float(Fraction(numerator) * scale / Fraction(denominator))


@dataclass(frozen=True)
class AdMetrics:
    """kpi-definitions.md's ad metrics for one cell (a campaign-day, an account-day, or any
    sum of them), money in major units of `currency` (the account's)."""

    currency: str
    ad_spend: Decimal
    impressions: int
    clicks: int
    conversions: int
    conversion_value: Decimal

    @property
    def ctr(self) -> float | None:
        return _ratio(self.clicks, self.impressions)

    @property
    def cpc(self) -> float | None:
        return _ratio(self.ad_spend, self.clicks)

    @property
    def cpm(self) -> float | None:
        return _ratio(self.ad_spend, self.impressions, 1000)

    @property
    def roas(self) -> float | None:
        return _ratio(self.conversion_value, self.ad_spend)

    def kpis(self) -> dict[str, float]:
        """Metric key -> value as kpi_data holds it; ratios only where they are defined."""
        out = {
            "ad_spend": float(self.ad_spend),
            "impressions": float(self.impressions),
            "clicks": float(self.clicks),
            "conversions": float(self.conversions),
            "conversion_value": float(self.conversion_value),
        }
        for name in ("ctr", "cpc", "cpm", "roas"):
            ratio = getattr(self, name)
            if ratio is not None:
                out[name] = ratio
        return out

    def __add__(self, other: AdMetrics) -> AdMetrics:
        if other.currency != self.currency:
            raise ValueError(f"cannot add {other.currency} metrics to {self.currency} ones")
        return AdMetrics(
            self.currency,
            self.ad_spend + other.ad_spend,
            self.impressions + other.impressions,
            self.clicks + other.clicks,
            self.conversions + other.conversions,
            self.conversion_value + other.conversion_value,
        )

    @classmethod
    def total(cls, cells: Iterable[AdMetrics], currency: str) -> AdMetrics:
        """The sum of `cells` (ratios of the sum, never an average of ratios)."""
        return sum(cells, cls(currency, Decimal(0), 0, 0, 0, Decimal(0)))

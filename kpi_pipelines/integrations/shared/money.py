"""Money in the workspace's reporting currency: the day's rate from the fx table.

Every provider that reports money (the ad platforms, the CRMs) converts it the same way:
with the rate of the day the amount belongs to (kpi-definitions.md), read from `fx_rates`
as `base -> quote` or, failing that, the inverse of `quote -> base`; the same currency is
1. A rate the table does not have is an error naming the currency and the day, never a
silent 1.0 (`kpi-pipelines fx import` fills the table).

    rates = day_rates(db, "EUR", {("USD", day) for day in days})
    value = rates.to_reporting(Decimal("152.37"), "USD", day)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

# Named in the message: more would only be noise (a whole year missing is one fix).
_NAMED = 5


class MissingFxRate(LookupError):
    """A money metric needs a rate the fx table does not have; names currency and day."""


@dataclass(frozen=True)
class DayRates:
    """The rates of the currency-days a sync needs, into `reporting`."""

    reporting: str
    rates: dict[tuple[str, date], float]

    def to_reporting(self, amount: Decimal | float, currency: str, day: date) -> float:
        """`amount` (major units of `currency`) in the reporting currency on `day`."""
        code = currency.upper()
        if code == self.reporting:
            return float(amount)
        return float(amount) * self.rates[(code, day)]


def day_rates(db: Connection, reporting: str, needed: Iterable[tuple[str, date]]) -> DayRates:
    """The rates into `reporting` of every (currency, day) in `needed`, read in the caller's
    transaction; raises MissingFxRate naming the first missing ones."""
    reporting = reporting.upper()
    wanted = sorted(
        {(currency.upper(), day) for currency, day in needed if currency.upper() != reporting}
    )
    if not wanted:
        return DayRates(reporting, {})
    rows = db.execute(
        sa.text(
            "SELECT n.currency, n.day, coalesce(direct.rate, 1.0 / inverse.rate) AS rate"
            " FROM unnest(CAST(:currencies AS text[]), CAST(:days AS date[])) AS n(currency, day)"
            " LEFT JOIN fx_rates direct"
            "   ON direct.base = n.currency AND direct.quote = :reporting AND direct.day = n.day"
            " LEFT JOIN fx_rates inverse"
            "   ON inverse.base = :reporting AND inverse.quote = n.currency AND inverse.day = n.day"
        ),
        {
            "currencies": [currency for currency, _ in wanted],
            "days": [day for _, day in wanted],
            "reporting": reporting,
        },
    ).all()
    missing = sorted((row.day, row.currency) for row in rows if row.rate is None)
    if missing:
        listed = ", ".join(f"{currency} on {day.isoformat()}" for day, currency in missing[:_NAMED])
        more = f" and {len(missing) - _NAMED} more" if len(missing) > _NAMED else ""
        raise MissingFxRate(
            f"no exchange rate to {reporting} for {listed}{more}; import rates with"
            " `kpi-pipelines fx import` (day,base,quote,rate)"
        )
    return DayRates(reporting, {(row.currency, row.day): float(row.rate) for row in rows})

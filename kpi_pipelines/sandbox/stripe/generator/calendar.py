"""Calendar arithmetic on unix seconds (billing periods, month ends) and Stripe's card fees."""

from __future__ import annotations

from kpi_pipelines.sandbox.stripe.catalog import (
    DAY,
)


def first_of(entry: tuple) -> int:
    return entry[0]


# ---------------------------------------------------------------------------------------------
# Calendar arithmetic (Stripe keeps the anchor's day of month, clamped to the month's length).


def civil_date(days: int) -> tuple[int, int, int]:
    """(year, month, day) of a day number since 1970-01-01 (Hinnant's algorithm)."""
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def days_from_civil(year: int, month: int, day: int) -> int:
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def add_months(ts: int, months: int) -> int:
    """`ts` plus calendar months, keeping the time of day and clamping the day of month."""
    days, secs = divmod(ts, DAY)
    year, month, day = civil_date(days)
    m0 = month - 1 + months
    year, month = year + m0 // 12, m0 % 12 + 1
    last = _MONTH_DAYS[month - 1]
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        last = 29
    return days_from_civil(year, month, min(day, last)) * DAY + secs


def period_bound(anchor: int, interval: str, count: int, k: int) -> int:
    if interval == "month":
        return add_months(anchor, k * count)
    if interval == "year":
        return add_months(anchor, 12 * k * count)
    if interval == "week":
        return anchor + 7 * DAY * count * k
    return anchor + DAY * count * k


def fee_for(amount: int, currency: str) -> int:
    """Stripe's card processing fee in the charge currency."""
    if currency == "usd":
        return round(amount * 0.029) + 30
    if currency == "eur":
        return round(amount * 0.015) + 25
    if currency == "gbp":
        return round(amount * 0.015) + 20
    if currency == "jpy":
        return round(amount * 0.036)
    return round(amount * 0.029) + 30

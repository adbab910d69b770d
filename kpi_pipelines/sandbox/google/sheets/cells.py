"""Cell values as Sheets stores them, and how it renders them (formatted, unformatted, formula)."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

SERIAL_EPOCH = datetime(1899, 12, 30)


# -- cells --------------------------------------------------------------------------------------
def _round_half_up(value: float, decimals: int) -> Decimal:
    return Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-decimals), ROUND_HALF_UP)


def _general(value: float) -> str:
    """Sheets' "General" (automatic) number format."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    text = f"{float(value):.15g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        return f"{mantissa}E{exponent[0]}{int(exponent[1:]):02d}"
    return text


def format_number(value: float, pattern: str | None) -> str:
    """Render a number with a (subset of) Sheets number-format pattern.

    Supports literal prefixes/suffixes ("$", "€", quoted text, `[$€]`), grouping (","),
    required ("0") and optional ("#") decimals, percent ("%"); negative numbers get a leading
    "-" (Sheets' default for patterns without a negative section). None means General.
    """
    if pattern is None or pattern.lower() in ("", "general"):
        return _general(value)
    section = pattern.split(";")[0]
    section = re.sub(r"\[\$([^\]-]*)(?:-[^\]]*)?\]", r"\1", section)  # [$€-407] -> €
    section = re.sub(r'"([^"]*)"', r"\1", section)
    section = section.replace("\\", "")
    digits = [i for i, ch in enumerate(section) if ch in "#0"]
    if not digits:
        return section
    first, last = digits[0], digits[-1]
    prefix, numeric, suffix = section[:first], section[first : last + 1], section[last + 1 :]
    if "%" in prefix + suffix:
        value = value * 100
    integer, _, fraction = numeric.partition(".")
    required = fraction.count("0")
    optional = fraction.count("#")
    rounded = _round_half_up(abs(value), required + optional)
    text = f"{rounded:,f}" if "," in integer else f"{rounded:f}"
    if optional and "." in text:
        head, tail = text.split(".")
        tail = tail.rstrip("0").ljust(required, "0")
        text = f"{head}.{tail}" if tail else head
    if text.split(".")[0] == "0" and not integer.strip(",").endswith("0"):
        text = text[1:] if "." in text else text
    sign = "-" if value < 0 and rounded != 0 else ""
    return f"{sign}{prefix}{text}{suffix}"


_DATE_TOKENS = re.compile(
    r'(yyyy|yy|mmmm|mmm|mm|m|dddd|ddd|dd|d|hh|h|ss|s|am/pm|a/p|"[^"]*"|\\.|.)', re.IGNORECASE
)
_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def format_datetime(value: date | datetime, pattern: str) -> str:
    """Render a date or date-time with a Sheets date/time pattern (M/d/yyyy, yyyy-mm-dd,
    d mmm yyyy, M/d/yyyy H:mm:ss, h:mm AM/PM ...). Tokens are case-insensitive; m/mm after
    an hour or before seconds means minutes."""
    moment = value if isinstance(value, datetime) else datetime(value.year, value.month, value.day)
    tokens = [t for t in _DATE_TOKENS.findall(pattern) if t]
    kinds = [t.lower() for t in tokens]
    twelve_hour = any(k in ("am/pm", "a/p") for k in kinds)
    out = []
    for i, (token, kind) in enumerate(zip(tokens, kinds, strict=True)):
        if kind in ("m", "mm"):
            before = next((k for k in reversed(kinds[:i]) if k[0] in "hdyms" and k[0] != '"'), "")
            after = next((k for k in kinds[i + 1 :] if k[0] in "hdyms" and k[0] != '"'), "")
            if before.startswith("h") or after.startswith("s"):
                out.append(f"{moment.minute:02d}" if kind == "mm" else str(moment.minute))
                continue
        hour = moment.hour % 12 or 12 if twelve_hour else moment.hour
        rendered = {
            "yyyy": f"{moment.year:04d}",
            "yy": f"{moment.year % 100:02d}",
            "mmmm": _MONTHS[moment.month - 1],
            "mmm": _MONTHS[moment.month - 1][:3],
            "mm": f"{moment.month:02d}",
            "m": str(moment.month),
            "dddd": _DAYS[moment.weekday()],
            "ddd": _DAYS[moment.weekday()][:3],
            "dd": f"{moment.day:02d}",
            "d": str(moment.day),
            "hh": f"{hour:02d}",
            "h": str(hour),
            "ss": f"{moment.second:02d}",
            "s": str(moment.second),
            "am/pm": "AM" if moment.hour < 12 else "PM",
            "a/p": "A" if moment.hour < 12 else "P",
        }.get(kind)
        if rendered is None:
            rendered = token[1:-1] if token.startswith('"') else token.lstrip("\\")
        out.append(rendered)
    return "".join(out)


class Cell(ABC):
    """A typed cell. `formatted()` is what the sheet shows, `unformatted()` the raw value."""

    @abstractmethod
    def formatted(self) -> str: ...

    @abstractmethod
    def unformatted(self) -> Any: ...


@dataclass(frozen=True)
class Number(Cell):
    value: float
    pattern: str | None = None  # a Sheets number format pattern; None = General

    def formatted(self) -> str:
        return format_number(self.value, self.pattern)

    def unformatted(self) -> Any:
        return int(self.value) if float(self.value).is_integer() else float(self.value)


def currency(value: float, symbol: str = "$", decimals: int = 2) -> Number:
    """A currency-formatted number, e.g. "$1,234.50"."""
    return Number(value, f"{symbol}#,##0" + ("." + "0" * decimals if decimals else ""))


def percent(value: float, decimals: int = 2) -> Number:
    """A percent-formatted fraction: 0.125 shows as "12.50%"."""
    return Number(value, "0" + ("." + "0" * decimals if decimals else "") + "%")


@dataclass(frozen=True)
class DateTime(Cell):
    value: date | datetime  # a naive datetime is the sheet's local wall time
    pattern: str | None = None  # default: M/d/yyyy, or M/d/yyyy H:mm:ss for a datetime

    @property
    def effective_pattern(self) -> str:
        if self.pattern:
            return self.pattern
        return "M/d/yyyy H:mm:ss" if isinstance(self.value, datetime) else "M/d/yyyy"

    def formatted(self) -> str:
        return format_datetime(self.value, self.effective_pattern)

    def unformatted(self) -> Any:
        return self.serial()

    def serial(self) -> int | float:
        """Days since 1899-12-30, with the time of day as a fraction."""
        if isinstance(self.value, datetime):
            delta = self.value.replace(tzinfo=None) - SERIAL_EPOCH
            serial = delta.days + delta.seconds / 86_400 + delta.microseconds / 86_400e6
            return int(serial) if float(serial).is_integer() else serial
        return (self.value - SERIAL_EPOCH.date()).days


@dataclass(frozen=True)
class Text(Cell):
    value: str

    def formatted(self) -> str:
        return self.value

    def unformatted(self) -> Any:
        return self.value


@dataclass(frozen=True)
class Bool(Cell):
    value: bool

    def formatted(self) -> str:
        return "TRUE" if self.value else "FALSE"

    def unformatted(self) -> Any:
        return self.value


@dataclass(frozen=True)
class ErrorValue(Cell):
    code: str = "#N/A"  # "#DIV/0!", "#REF!", "#VALUE!", "#NAME?", "#N/A", "#ERROR!"

    def formatted(self) -> str:
        return self.code

    def unformatted(self) -> Any:
        return self.code


@dataclass(frozen=True)
class Formula(Cell):
    formula: str  # "=SUM(B2:B4)"
    value: Cell | float | str | bool | date | None  # the cached result, typed like any cell

    def __post_init__(self) -> None:
        if not self.formula.startswith("="):
            raise ValueError("a formula starts with '='")

    @property
    def result(self) -> Cell:
        return to_cell(self.value) or Text("")

    def formatted(self) -> str:
        return self.result.formatted()

    def unformatted(self) -> Any:
        return self.result.unformatted()


CellInput = Cell | float | int | str | bool | date | None


def to_cell(value: CellInput) -> Cell | None:
    """Plain Python values as cells: None empty, bool, int/float (General), str, date."""
    if value is None or isinstance(value, Cell):
        return value
    if isinstance(value, bool):
        return Bool(value)
    if isinstance(value, int | float):
        return Number(value)
    if isinstance(value, str):
        return Text(value)
    if isinstance(value, date):
        return DateTime(value)
    raise TypeError(f"cannot put {type(value).__name__} in a cell")


def render(cell: Cell | None, value_render: str, date_time_render: str) -> Any:
    if cell is None:
        return None
    if isinstance(cell, Formula):
        if value_render == "FORMULA":
            return cell.formula
        cell = cell.result
    if value_render == "FORMATTED_VALUE":
        return cell.formatted()
    if isinstance(cell, DateTime) and date_time_render == "FORMATTED_STRING":
        return cell.formatted()
    return cell.unformatted()

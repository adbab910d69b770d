"""Exact money for simulators: an amount is an integer of its currency's minor units, so every
API's rendering of it is exact.

    spend = Money.of("152.37", "USD")   # or Money(15237, "USD")
    spend.text()     # "152.37"   Meta's major-unit strings (JPY: "15237", KWD: "1.250")
    str(spend.major) # "152.37"   LinkedIn's decimal strings
    spend.micros     # 152370000  X's *_micro integers
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

# ISO 4217 minor units that are not 2 (the rest of the world's currencies have cents).
_ZERO_DECIMAL = (
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW",
    "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF",
)  # fmt: skip
_THREE_DECIMAL = ("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND")
_EXPONENTS: dict[str, int] = dict.fromkeys(_ZERO_DECIMAL, 0) | dict.fromkeys(_THREE_DECIMAL, 3)
MICROS_EXPONENT = 6


def minor_unit_exponent(currency: str) -> int:
    """How many decimals the currency's minor unit has: JPY 0, USD 2, KWD 3."""
    if len(currency) != 3 or not currency.isascii() or not currency.isalpha():
        raise ValueError(f"a currency is a 3-letter ISO 4217 code, not {currency!r}")
    return _EXPONENTS.get(currency.upper(), 2)


@dataclass(frozen=True, order=True)
class Money:
    """`minor` units of `currency` (upper-case ISO 4217 code)."""

    minor: int
    currency: str

    def __post_init__(self) -> None:
        minor_unit_exponent(self.currency)  # validates the code
        if self.currency != self.currency.upper():
            object.__setattr__(self, "currency", self.currency.upper())

    @classmethod
    def of(cls, amount: Decimal | str | int, currency: str) -> Money:
        """Money from a major-unit amount, which must be whole in minor units."""
        exponent = minor_unit_exponent(currency)
        minor = Decimal(amount).scaleb(exponent)
        if minor != minor.to_integral_value():
            raise ValueError(f"{amount} {currency} is not a whole number of minor units")
        return cls(int(minor), currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    @classmethod
    def total(cls, amounts: Iterable[Money], currency: str) -> Money:
        return sum(amounts, cls.zero(currency))

    @property
    def exponent(self) -> int:
        return minor_unit_exponent(self.currency)

    @property
    def major(self) -> Decimal:
        """The amount in major units with the currency's decimals (Decimal("152.37"))."""
        return Decimal(self.minor).scaleb(-self.exponent)

    @property
    def micros(self) -> int:
        """The amount in millionths of the major unit (X Ads' `*_local_micro`)."""
        return self.minor * 10 ** (MICROS_EXPONENT - self.exponent)

    def text(self) -> str:
        """The major-unit amount as a plain string: "152.37", "15237" (JPY)."""
        return f"{self.major:f}"

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor - other.minor, self.currency)

    def __str__(self) -> str:
        return f"{self.text()} {self.currency}"

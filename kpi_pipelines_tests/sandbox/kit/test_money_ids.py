"""The kit's exact money (each platform's rendering of one amount) and stable ids."""

from __future__ import annotations

from decimal import Decimal

import pytest

from kpi_pipelines.sandbox.kit import Money, minor_unit_exponent, stable_base36, stable_digits


@pytest.mark.parametrize(
    ("amount", "currency", "minor", "text", "micros"),
    [
        ("152.37", "USD", 15_237, "152.37", 152_370_000),
        ("15237", "jpy", 15_237, "15237", 15_237_000_000),
        ("1.250", "KWD", 1_250, "1.250", 1_250_000),
        (Decimal("0.1"), "EUR", 10, "0.10", 100_000),
    ],
)
def test_one_amount_renders_exactly_as_each_platform_wants(
    amount: str, currency: str, minor: int, text: str, micros: int
) -> None:
    money = Money.of(amount, currency)
    assert (money.minor, money.currency, money.text(), money.micros) == (
        minor,
        currency.upper(),
        text,
        micros,
    )
    assert str(money.major) == text  # LinkedIn's decimal strings


def test_money_refuses_what_is_not_exact_or_not_a_currency() -> None:
    with pytest.raises(ValueError, match="not a whole number of minor units"):
        Money.of("1.005", "USD")
    with pytest.raises(ValueError, match="not a whole number of minor units"):
        Money.of("10.5", "JPY")
    with pytest.raises(ValueError, match="3-letter ISO 4217 code"):
        minor_unit_exponent("US$")
    with pytest.raises(ValueError, match="cannot combine USD with EUR"):
        Money(1, "USD") + Money(1, "EUR")
    assert Money(5, "USD") - Money(7, "USD") == Money(-2, "USD")
    assert Money.total([Money(1, "GBP"), Money(2, "GBP")], "GBP") == Money(3, "GBP")


def test_stable_ids_have_the_shape_asked_and_depend_only_on_the_text() -> None:
    assert stable_digits("a", 18) == stable_digits("a", 18) != stable_digits("b", 18)
    assert all(len(stable_digits(str(n), 9)) == 9 for n in range(200))
    assert not any(stable_digits(str(n), 9).startswith("0") for n in range(200))
    ids = {stable_base36(str(n), 5) for n in range(500)}
    assert len(ids) == 500
    assert all(len(i) == 5 and i[0] != "0" and i.isalnum() and i == i.lower() for i in ids)

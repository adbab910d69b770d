"""The kit's ad metrics of one reported day: kpi-definitions.md's ratios, no point on a zero
denominator, money in the reporting currency with the account's amount kept."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from kpi_pipelines.integrations.shared.ad_metrics import AdDay, ad_points
from kpi_pipelines.integrations.shared.money import DayRates

DAY = date(2026, 3, 2)


def points(row: AdDay, currency: str = "USD", rates: DayRates | None = None) -> dict[str, float]:
    found = ad_points(
        row,
        currency=currency,
        rates=rates or DayRates("USD", {}),
        source="toy",
        workspace_id="ws",
        dimensions={"campaign_id": "7"},
        metadata={"time_zone": "UTC"},
    )
    assert all(p.dimensions == {"campaign_id": "7"} for p in found)
    return {p.metric: p.value for p in found}


def test_worked_example_9() -> None:
    row = AdDay(DAY, Decimal(500), 100_000, 1_250, Decimal(40), Decimal(2000))
    assert points(row) == pytest.approx(
        {
            "ad_spend": 500.0,
            "impressions": 100_000.0,
            "clicks": 1_250.0,
            "conversions": 40.0,
            "conversion_value": 2000.0,
            "ctr": 0.0125,
            "cpc": 0.40,
            "cpm": 5.00,
            "roas": 4.0,
        }
    )


def test_a_zero_denominator_gives_no_point() -> None:
    assert set(points(AdDay(DAY, Decimal(0), 0, 0, Decimal(0), Decimal(0)))) == {
        "ad_spend",
        "impressions",
        "clicks",
        "conversions",
        "conversion_value",
    }
    assert "cpc" not in points(AdDay(DAY, Decimal(3), 10, 0, Decimal(0), Decimal(0)))


def test_money_in_the_reporting_currency_with_the_accounts_amount_kept() -> None:
    rates = DayRates("EUR", {("JPY", DAY): 0.006})
    row = AdDay(DAY, Decimal(16_000), 4_000, 40, Decimal(2), Decimal(32_000))
    found = ad_points(
        row,
        currency="JPY",
        rates=rates,
        source="toy",
        workspace_id="ws",
        dimensions={},
        metadata={},
    )
    by_metric = {p.metric: p for p in found}
    assert by_metric["ad_spend"].value == pytest.approx(96.0)
    assert by_metric["ad_spend"].metadata == {"currency": "JPY", "amount": 16_000.0}
    assert by_metric["cpc"].value == pytest.approx(2.4)  # 400 JPY a click
    assert by_metric["cpm"].metadata["amount"] == 4_000.0
    assert by_metric["roas"].value == 2.0 and "currency" not in by_metric["roas"].metadata

"""Money into the reporting currency with the day's rate, from the real fx table."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from kpi_pipelines.integrations.shared.money import MissingFxRate, day_rates
from kpi_pipelines.warehouse.control import FxRate, import_fx_rates

DAY = date(2026, 3, 2)


def test_the_days_rate_direct_or_inverse_and_one_for_the_same_currency(
    warehouse, workspace_a
) -> None:
    import_fx_rates(
        warehouse,
        [
            FxRate(day=DAY, base="USD", quote="EUR", rate=0.5),
            FxRate(day=DAY, base="EUR", quote="JPY", rate=160.0),
            FxRate(day=date(2026, 3, 3), base="USD", quote="EUR", rate=0.25),
        ],
    )
    with warehouse.tenant("ws-a", actor="test") as db:
        rates = day_rates(db, "eur", [("usd", DAY), ("JPY", DAY), ("EUR", DAY)])
    assert rates.to_reporting(Decimal("152.37"), "usd", DAY) == pytest.approx(76.185)
    assert rates.to_reporting(16_000, "JPY", DAY) == pytest.approx(100.0)  # the inverse
    assert rates.to_reporting(Decimal("3.5"), "EUR", DAY) == 3.5


def test_a_missing_rate_names_currency_and_day_never_one(warehouse, workspace_a) -> None:
    import_fx_rates(warehouse, [FxRate(day=DAY, base="USD", quote="EUR", rate=0.5)])
    with (
        pytest.raises(MissingFxRate, match=r"GBP on 2026-03-02, USD on 2026-03-03; import"),
        warehouse.tenant("ws-a", actor="test") as db,
    ):
        day_rates(db, "EUR", [("USD", DAY), ("USD", date(2026, 3, 3)), ("GBP", DAY)])

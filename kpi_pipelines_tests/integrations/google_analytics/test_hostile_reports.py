"""A hostile GA4, through the real adapter and the report engine (the kit's REST and OAuth
clients): report rows it should not send are rejected by name, the rest is stored, and a
secret it echoes back reaches no table, event log or message (the canary checks)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kpi_pipelines.sandbox.google import DEMO_REFRESH_TOKEN
from kpi_pipelines_tests.integrations.google_analytics.conftest import GA4World
from kpi_pipelines_tests.integrations.google_analytics.test_adapter import (
    assert_matches,
    stored_points,
    truth,
)
from kpi_pipelines_tests.run_results import metadata


def test_rows_with_a_label_over_the_limit_or_an_echoed_secret_are_rejected_the_rest_stored(
    ga4: GA4World, monkeypatch: pytest.MonkeyPatch
) -> None:
    prop = ga4.property("1001")
    ga4.workspace("ws-a", "1001")
    monkeypatch.setenv("KPI_RECORD_MAX_STRING_CHARS", "10000")
    # The API echoes the connection's refresh token as a channel, and sends a huge one.
    ga4.sandbox.ga4.relabel("1001", "Email", DEMO_REFRESH_TOKEN)
    ga4.sandbox.ga4.relabel("1001", "Referral", "R" * 10_001)
    md = metadata(ga4.sync("ws-a"))
    today = prop.today()
    expected = truth(ga4, "1001", today - timedelta(days=89), today)
    relabelled = {"Email", "Referral"}
    rejected = {(day, channel) for _, day, channel in expected if channel in relabelled}
    assert md["records_rejected"] == len(rejected) > 0
    errors = md["errors"]
    echoed = sum(
        e.endswith(
            "it holds a secret this deployment uses (a key or token sent to the provider,"
            " echoed back); refused, not stored"
        )
        for e in errors
    )
    too_long = sum(
        e.endswith(
            "a string of 10,001 characters, over the limit of 10,000"
            " (KPI_RECORD_MAX_STRING_CHARS); not stored"
        )
        for e in errors
    )
    assert echoed + too_long == len(errors) and echoed and too_long
    assert all(e.startswith("by_date_channel row [") and len(e) <= 503 for e in errors)
    assert_matches(
        stored_points(ga4, "ws-a"),
        {key: value for key, value in expected.items() if key[2] not in relabelled},
    )

"""The common part of an ad platform's simulator: a subclass declares its defaults once and
every account it adds has them."""

from __future__ import annotations

from datetime import UTC, datetime

from kpi_pipelines.sandbox.kit import SimClock, stable_base36
from kpi_pipelines.sandbox.kit.ads import DEFAULT_START, AdSandbox, ConversionKind, Restatement
from kpi_pipelines.warehouse.control import Workspace


class ExamplePlatform(AdSandbox):
    restatement = Restatement(conversion_days=3, billing_days=3)
    kinds = (ConversionKind("purchase", 0.05, {"web": 1.0}, 1.0),)
    campaign_id_shape = staticmethod(lambda key: stable_base36(f"example:{key}", 5))
    token_prefix = "ex-"


def test_a_platform_declares_its_defaults_once() -> None:
    sandbox = ExamplePlatform(seed=4)
    assert sandbox.clock.now() == DEFAULT_START
    account = sandbox.add_account("18ce54", time_zone="Asia/Tokyo", currency="JPY", campaigns=3)
    assert sandbox.account("18ce54") is account and sandbox.account("nope") is None
    assert account.restatement.billing_days == 3 and account.seed == 4
    assert all(len(c.id) == 5 for c in account.campaigns())
    rows = account.daily(account.first_day, account.local_day())
    assert {kind for f in rows.values() for kind, _ in f.conversions} == {"purchase"}
    assert sandbox.tokens.issue("18ce54", lifetime=None).value.startswith("ex-")
    again = ExamplePlatform(seed=4).add_account(
        "18ce54", time_zone="Asia/Tokyo", currency="JPY", campaigns=3
    )
    assert again.campaigns() == account.campaigns()


def test_a_platform_can_share_a_clock_or_run_with_real_time() -> None:
    clock = SimClock(datetime(2025, 1, 1, tzinfo=UTC))
    shared = ExamplePlatform(clock=clock)
    clock.advance(hours=1)
    assert shared.clock.now() == datetime(2025, 1, 1, 1, tzinfo=UTC)
    live = ExamplePlatform(start=datetime.now(UTC), realtime=True)
    assert live.clock.realtime


def test_demo_accounts_report_in_their_workspaces_places() -> None:
    sandbox = ExamplePlatform(seed=3)
    acme = Workspace(id="acme", name="Acme", reporting_currency="USD", timezone="UTC")
    other = Workspace(id="initech", name="Initech", reporting_currency="JPY", timezone="Asia/Tokyo")
    west = sandbox.add_demo_account(acme, "1", name="Acme ads")
    east = sandbox.add_demo_account(other, "2", name="Initech ads")
    assert (west.time_zone, west.currency) == ("America/Los_Angeles", "USD")
    assert (east.time_zone, east.currency, east.name) == ("Asia/Tokyo", "JPY", "Initech ads")
    assert len(west.campaigns()) == len(east.campaigns()) == 8

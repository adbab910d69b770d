"""The kit's simulated ad account: seeded and order-independent, its own time zone's days,
restatement that stops at the platform's window, campaigns whose status and name change on
the simulated clock, and conversions counted once whatever view a platform shows."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from kpi_pipelines.sandbox.kit import SimClock, stable_base36
from kpi_pipelines.sandbox.kit.ads import (
    PURCHASES,
    WEB_CONVERSIONS,
    WEB_PURCHASES,
    AdAccount,
    AdAccounts,
    ConversionRule,
    Restatement,
    ScriptedConversions,
)

START = datetime(
    2025, 6, 15, 20, 0, tzinfo=UTC
)  # Sunday 13:00 in Los Angeles, Monday 05:00 in Tokyo
EVERYTHING = ConversionRule(kinds=None)


def account(
    *,
    seed: int = 7,
    time_zone: str = "America/Los_Angeles",
    clock: SimClock | None = None,
    **options,
) -> AdAccount:
    options.setdefault("campaigns", 8)
    options.setdefault("history_days", 120)
    return AdAccount("act_1", clock or SimClock(START), seed=seed, time_zone=time_zone, **options)


def test_the_same_seed_and_clock_give_the_same_account_in_any_query_order() -> None:
    a, b = account(), account()
    assert a.campaigns() == b.campaigns()
    first, last = a.local_day() - timedelta(days=90), a.local_day()
    forward = a.daily(first, last)
    backward: dict = {}
    day = last
    while day >= first:  # another order, one day at a time
        backward.update(b.daily(day, day))
        day -= timedelta(days=1)
    assert forward == backward
    assert len(forward) > 300
    assert a.daily(first, last) == forward  # asking again changes nothing
    assert account(seed=8).daily(first, last) != forward
    assert [c.id for c in account(seed=8).campaigns()] != [c.id for c in a.campaigns()]


def test_campaign_ids_take_the_platform_shape() -> None:
    x_like = account(campaign_id=lambda key: stable_base36(f"x:{key}", 5))
    ids = [c.id for c in x_like.campaigns()]
    assert len(set(ids)) == len(ids) == 8
    assert all(len(i) == 5 and i.isalnum() and i.islower() for i in ids)
    assert all(c.id.isdigit() and len(c.id) == 12 for c in account().campaigns())


@pytest.mark.parametrize(
    ("conversion_days", "billing_days"),
    [(28, 1), (30, 1), (3, 3)],  # Meta, LinkedIn, X
)
def test_recent_days_restate_within_the_window_and_never_after(
    conversion_days: int, billing_days: int
) -> None:
    clock = SimClock(START)
    restatement = Restatement(conversion_days=conversion_days, billing_days=billing_days)
    ads = account(clock=clock, restatement=restatement)
    last = ads.local_day() - timedelta(days=1)
    first = last - timedelta(days=conversion_days + 5)

    first_sync = ads.truth_by_campaign_day(first, last, rule=EVERYTHING)
    clock.advance(hours=26)
    second_sync = ads.truth_by_campaign_day(first, last, rule=EVERYTHING)
    restated = {k for k in first_sync if first_sync[k] != second_sync[k]}
    assert restated, "a day later, recent days have new conversions or billing credits"
    window_start = ads.local_day() - timedelta(days=max(conversion_days, billing_days) + 1)
    assert all(day >= window_start for _, day in restated), "only days within the window move"
    for key in restated:
        before, after = first_sync[key], second_sync[key]
        assert after.conversions >= before.conversions  # conversions only arrive
        assert after.ad_spend <= before.ad_spend  # billing only credits back
        assert after.impressions == before.impressions
    if billing_days > 1:
        assert any(second_sync[k].ad_spend < first_sync[k].ad_spend for k in restated)

    clock.advance_to(ads.settled_at(last))
    settled = ads.truth_by_campaign_day(first, last, rule=EVERYTHING)
    clock.advance(hours=24 * 60)
    assert ads.truth_by_campaign_day(first, last, rule=EVERYTHING) == settled
    assert ads.restated(first, last, ads.settled_at(last), clock.now()) == set()


def test_a_day_keeps_restating_until_its_window_closes() -> None:
    ads = account(restatement=Restatement(conversion_days=28, billing_days=1))
    day = ads.local_day() - timedelta(days=40)
    end = ads.day_bounds(day)[1]
    a_day_on = ads.truth_by_day(day, day, as_of=end + timedelta(days=1))[day]
    two_weeks_on = ads.truth_by_day(day, day, as_of=end + timedelta(days=14))[day]
    settled = ads.truth_by_day(day, day, as_of=ads.settled_at(day))[day]
    assert a_day_on.conversions < two_weeks_on.conversions <= settled.conversions
    assert a_day_on.conversion_value < settled.conversion_value
    later = ads.truth_by_day(day, day, as_of=ads.settled_at(day) + timedelta(days=90))[day]
    assert later == settled


def test_the_same_instant_is_a_different_day_in_los_angeles_and_tokyo() -> None:
    days = {}
    for zone in ("America/Los_Angeles", "Asia/Tokyo"):
        clock = SimClock(START)
        ads = account(time_zone=zone, campaigns=0, clock=clock)
        # A campaign that delivers for exactly one hour, the one that starts at START.
        cid = ads.add_campaign(
            "One hour",
            start=date(2025, 6, 1),
            status="paused",
            created_at=START - timedelta(days=1),
        )
        ads.set_status(cid, "active", at=START)
        ads.set_status(cid, "paused", at=START + timedelta(hours=1))
        clock.advance(hours=3)
        rows = ads.daily(date(2025, 6, 10), date(2025, 6, 20))
        assert len(rows) == 1
        [(_, day)] = rows
        days[zone] = day
        assert ads.local_day(START) == day
        assert rows[(cid, day)] == ads.figures(cid, START, START + timedelta(hours=1))
        assert ads.account_daily(date(2025, 6, 10), date(2025, 6, 20)) == {day: rows[(cid, day)]}
    assert days == {"America/Los_Angeles": date(2025, 6, 15), "Asia/Tokyo": date(2025, 6, 16)}


def test_account_days_have_the_hours_of_their_time_zone() -> None:
    la, tokyo = account(), account(time_zone="Asia/Tokyo")
    assert la.day_bounds(date(2025, 6, 15)) == (
        datetime(2025, 6, 15, 7, tzinfo=UTC),
        datetime(2025, 6, 16, 7, tzinfo=UTC),
    )
    assert tokyo.day_bounds(date(2025, 6, 16)) == (
        datetime(2025, 6, 15, 15, tzinfo=UTC),
        datetime(2025, 6, 16, 15, tzinfo=UTC),
    )
    short, long = la.day_bounds(date(2025, 3, 9)), la.day_bounds(date(2024, 11, 3))
    assert short[1] - short[0] == timedelta(hours=23)
    assert long[1] - long[0] == timedelta(hours=25)


def test_hourly_windows_add_up_to_the_day_on_days_the_clocks_change() -> None:
    ads = account(history_days=400)
    for day in (date(2025, 3, 9), date(2024, 11, 3), date(2025, 5, 1)):
        start, end = ads.day_bounds(day)
        rows = {cid: f for (cid, d), f in ads.daily(day, day).items() if d == day}
        assert rows
        for cid, whole in rows.items():
            hours = []
            at = start
            while at < end:
                hours.append(ads.figures(cid, at, at + timedelta(hours=1)))
                at += timedelta(hours=1)
            total = [h for h in hours if h is not None]
            assert sum(h.spend.minor for h in total) == whole.spend.minor
            assert sum(h.clicks for h in total) == whole.clicks
            assert sum(h.impressions for h in total) == whole.impressions
            assert ads.figures(cid, start, end) == whole


def test_campaigns_change_status_and_name_over_simulated_time() -> None:
    ads = account(campaigns=12, history_days=400)
    first = ads.first_day
    seen = set()
    renamed = 0
    for state in ads.campaigns():
        at = state.created_at
        history = []
        while at <= START:
            history.append(ads.campaign(state.id, as_of=at))
            at += timedelta(days=5)
        seen |= {s.status for s in history}
        renamed += len({s.name for s in history}) > 1
    assert seen == {"active", "paused", "archived"}
    assert renamed >= 1
    # Delivery follows status: no row for a day the campaign was never active in.
    for (cid, day), _ in ads.daily(first, ads.local_day()).items():
        start, end = ads.day_bounds(day)
        hours = [start + timedelta(hours=h) for h in range((end - start) // timedelta(hours=1))]
        created = [at for at in hours if at >= ads.campaign(cid).created_at]
        statuses = {ads.campaign(cid, as_of=at).status for at in created}
        assert "active" in statuses, f"{cid} delivered on {day} without being active"


def test_scripted_pauses_renames_and_new_campaigns_show_from_their_instant() -> None:
    clock = SimClock(START)
    ads = account(clock=clock, campaigns=3)
    cid = ads.add_campaign("Evergreen", start=date(2025, 4, 1))
    paused_at = START - timedelta(days=20)
    ads.set_status(cid, "paused", at=paused_at)
    ads.set_status(cid, "active", at=paused_at + timedelta(days=5))
    ads.rename(cid, "Renamed in the past", at=paused_at)
    before, during = (
        ads.campaign(cid, as_of=paused_at - timedelta(seconds=1)),
        ads.campaign(cid, as_of=paused_at),
    )
    assert (before.status, during.status) == ("active", "paused")
    assert during.name == "Renamed in the past" != before.name
    assert during.updated_at == paused_at
    # Paused at 13:00 local for 5 days: four whole days without delivery.
    quiet = [ads.local_day(paused_at) + timedelta(days=n) for n in range(1, 5)]
    rows = ads.daily(
        quiet[0] - timedelta(days=3), quiet[-1] + timedelta(days=4), campaign_ids=[cid]
    )
    assert {day for _, day in rows} & set(quiet) == set()
    assert len(rows) == 7  # 3 days before (the last till 13:00), 4 after (the first from 13:00)

    later = START + timedelta(days=2)
    new = ads.add_campaign("Launch", start=ads.local_day(later), created_at=later)
    assert new not in [c.id for c in ads.campaigns()]
    with pytest.raises(KeyError, match="not created yet"):
        ads.campaign(new)
    clock.advance_to(later)
    assert ads.campaigns()[-1].id == new
    ads.set_status(new, "archived")
    assert ads.campaign(new).status == "archived"
    with pytest.raises(ValueError, match="unknown status"):
        ads.set_status(new, "deleted")  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="no campaign"):
        ads.rename("nope", "x")


def test_rows_exist_only_with_delivery_and_some_have_no_conversions() -> None:
    ads = account(campaigns=12, history_days=200)
    rows = ads.daily(ads.first_day, ads.local_day() - timedelta(days=1))
    assert all(f.delivered and f.impressions > 0 for f in rows.values())
    without = [f for f in rows.values() if f.count(EVERYTHING) == 0]
    assert without, "low-volume campaigns have days with delivery but no conversion"
    assert all(f.conversions == {} for f in without)  # Meta: no `actions` key at all
    assert all(f.clicks <= f.impressions for f in rows.values())
    ends = {c.id: c for c in ads.campaigns()}
    assert all(ends[cid].delivers_on(day) for cid, day in rows), "only between start and end"
    assert any(c.end is not None for c in ends.values())


def test_one_purchase_counts_once_whatever_view_a_platform_shows() -> None:
    ads = account(campaigns=0)
    cid = ads.add_campaign("Scripted", start=date(2025, 6, 1), daily_budget=0)
    day = date(2025, 6, 10)
    ads.script_day(
        cid,
        day,
        spend="100.50",
        impressions=10_000,
        clicks=200,
        conversions=[
            ScriptedConversions("purchase", 3, "90.00", channel="web"),
            ScriptedConversions("purchase", 2, "50.00", channel="app"),
            ScriptedConversions("lead", 4, channel="web"),
        ],
    )
    f = ads.day_figures(cid, day)
    assert f is not None
    assert f.by_kind()["purchase"][0] == 5  # Meta's omni_purchase
    assert f.by_kind(["web"])["purchase"][0] == 3  # offsite_conversion.fb_pixel_purchase
    assert f.by_kind(["app"])["purchase"][0] == 2  # app_custom_event.fb_mobile_purchase
    assert f.count(PURCHASES) == 5 and f.value(PURCHASES).text() == "140.00"
    assert f.count(WEB_PURCHASES) == 3 and f.value(WEB_PURCHASES).major == Decimal("90.00")
    assert f.count(WEB_CONVERSIONS) == 7  # LinkedIn counts every web conversion
    assert f.spend.text() == "100.50" and f.spend.micros == 100_500_000


def test_scripted_conversions_arrive_when_they_say() -> None:
    clock = SimClock(START)
    ads = account(clock=clock, campaigns=0, restatement=Restatement(conversion_days=28))
    cid = ads.add_campaign("Late", start=date(2025, 6, 1), daily_budget=0)
    day = date(2025, 6, 20)
    ads.script_day(
        cid,
        day,
        spend=50,
        impressions=5_000,
        clicks=60,
        conversions=[ScriptedConversions("purchase", 2, 80, after=timedelta(days=10))],
    )
    end = ads.day_bounds(day)[1]
    assert ads.day_figures(cid, day) is None  # the day has not happened yet
    mid_day = ads.day_figures(cid, day, as_of=end - timedelta(hours=6))
    assert mid_day is not None and 0 < mid_day.spend.minor < 5_000
    whole = ads.day_figures(cid, day, as_of=end + timedelta(hours=1))
    assert whole is not None and whole.spend.minor == 5_000 and whole.count() == 0
    later = ads.day_figures(cid, day, as_of=end + timedelta(days=10, hours=1))
    assert later is not None and later.count() == 2 and later.value().major == 80


def test_zero_decimal_and_three_decimal_currencies_stay_exact() -> None:
    yen = account(campaigns=3, currency="JPY", time_zone="Asia/Tokyo")
    rows = yen.daily(yen.first_day, yen.local_day())
    some = next(iter(rows.values()))
    assert some.spend.currency == "JPY" and some.spend.text() == str(some.spend.minor)
    assert some.spend.micros == some.spend.minor * 1_000_000
    dinar = account(campaigns=0, currency="KWD")
    cid = dinar.add_campaign("KWD", start=date(2025, 6, 1), daily_budget=0)
    dinar.script_day(cid, date(2025, 6, 2), spend="1.250", impressions=100, clicks=1)
    f = dinar.day_figures(cid, date(2025, 6, 2))
    assert f is not None and f.spend.text() == "1.250" and f.spend.micros == 1_250_000
    with pytest.raises(ValueError, match="whole number of minor units"):
        dinar.script_day(cid, date(2025, 6, 3), spend="1.2505", impressions=1, clicks=0)


def test_bad_settings_are_refused_with_what_was_wrong() -> None:
    with pytest.raises(ValueError, match="unknown IANA time zone 'Mars/Olympus'"):
        account(time_zone="Mars/Olympus")
    with pytest.raises(ValueError, match="3-letter ISO 4217 code"):
        account(currency="dollars")
    ads = account(campaigns=0)
    cid = ads.add_campaign("x", start=date(2025, 6, 1))
    with pytest.raises(ValueError, match="clicks <= impressions"):
        ads.script_day(cid, date(2025, 6, 2), spend=1, impressions=5, clicks=6)
    with pytest.raises(ValueError, match="before its start day"):
        ads.add_campaign("y", start=date(2025, 6, 2), end=date(2025, 6, 1))


def test_a_platform_keeps_its_accounts_with_its_defaults() -> None:
    clock = SimClock(START)
    accounts = AdAccounts(clock, seed=3, restatement=Restatement(conversion_days=3, billing_days=3))
    la = accounts.add("18ce54", campaigns=2)
    tokyo = accounts.add("18ce55", time_zone="Asia/Tokyo", campaigns=2, seed=4)
    assert [a.account_id for a in accounts] == ["18ce54", "18ce55"]
    assert "18ce54" in accounts and accounts["18ce55"] is tokyo and accounts.get("x") is None
    assert la.restatement.billing_days == 3 and la.seed == 3 and tokyo.seed == 4
    with pytest.raises(ValueError, match="exists already"):
        accounts.add("18ce54")

"""The kit's token book: lifetimes on the simulated clock, kinds kept apart, and tokens that a
test expires or revokes mid-sync (one, a subject's, or all)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kpi_pipelines.sandbox.kit import FaultInjector, SimClock, TokenBook

START = datetime(2025, 6, 15, 12, tzinfo=UTC)


def test_a_token_lives_its_lifetime_on_the_simulated_clock() -> None:
    clock = SimClock(START)
    tokens = TokenBook(clock, prefix="AQV")
    access = tokens.issue("member_9", lifetime=timedelta(days=60), scopes=["r_ads_reporting"])
    refresh = tokens.issue("member_9", lifetime=timedelta(days=365), kind="refresh")
    assert access.value.startswith("AQV") and access.value != refresh.value
    assert tokens.check(access.value) == access
    assert tokens.check(refresh.value) == "unknown"  # a refresh token does not open the API
    assert tokens.check(refresh.value, kind="refresh") == refresh
    assert tokens.check(None) == tokens.check("") == "missing"
    assert tokens.check("AQVforged") == "unknown"
    clock.advance(hours=24 * 60)
    assert tokens.check(access.value) == "expired"
    assert tokens.check(refresh.value, kind="refresh") == refresh


def test_tokens_without_a_lifetime_last_until_revoked() -> None:
    tokens = TokenBook(SimClock(START))
    x_token = tokens.issue("18ce54", lifetime=None, value="1234-abcd")
    other = tokens.issue("18ce55", lifetime=None)
    assert tokens.check("1234-abcd") == x_token and x_token.expires_at is None
    assert tokens.revoke(subject="18ce54") == 1
    assert tokens.check("1234-abcd") == "revoked"
    assert tokens.check(other.value) == other
    assert tokens.revoke() == 2
    assert tokens.check(other.value) == "revoked"


def test_access_tokens_expire_mid_sync_on_a_fault_script() -> None:
    tokens = TokenBook(SimClock(START))
    access = tokens.issue("act_1", lifetime=timedelta(days=60))
    refresh = tokens.issue("act_1", lifetime=timedelta(days=365), kind="refresh")
    faults = FaultInjector()
    faults.at_request(2, tokens.expire)
    answers = []
    for _ in range(4):
        faults.next("insights")
        answers.append(tokens.check(access.value))
    assert answers == [access, access, "expired", "expired"]
    assert tokens.check(refresh.value, kind="refresh") == refresh  # only access tokens
    assert tokens.expire(refresh.value) == 1
    assert tokens.check(refresh.value, kind="refresh") == "expired"

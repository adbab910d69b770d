"""The sandbox's fault script: storms placed mid-sync, late answers, bodies that are not JSON, a
key revoked mid-sync, and objects served malformed (an API regression)."""

from __future__ import annotations

import time

import pytest

from kpi_pipelines_tests.sandbox.stripe.conftest import Served


def statuses(served: Served, n: int, path: str = "/v1/customers") -> list[int]:
    return [served.get(path, {"limit": 1}).status_code for _ in range(n)]


def test_a_storm_can_start_mid_sync_with_or_without_stripe_should_retry(fresh: Served) -> None:
    fresh.sandbox.faults.storm(2, status=429, should_retry=None, after=1)
    responses = [fresh.get("/v1/customers", {"limit": 1}) for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 429, 429, 200]
    assert all("Stripe-Should-Retry" not in r.headers for r in responses)
    assert responses[1].json()["error"]["code"] == "rate_limit"
    fresh.sandbox.faults.storm(1, status=500, should_retry=False)
    response = fresh.get("/v1/customers")
    assert response.status_code == 500 and response.headers["Stripe-Should-Retry"] == "false"


def test_late_answers_then_normal_ones(fresh: Served) -> None:
    fresh.sandbox.faults.slow_next(1, 0.3, after=1)
    timings = []
    for _ in range(3):
        t0 = time.perf_counter()
        assert fresh.get("/v1/charges", {"limit": 1}).status_code == 200
        timings.append(time.perf_counter() - t0)
    assert timings[1] >= 0.3 and timings[0] < 0.3 and timings[2] < 0.3


def test_a_200_that_is_not_json(fresh: Served) -> None:
    fresh.sandbox.faults.not_json(1)
    response = fresh.get("/v1/charges")
    assert response.status_code == 200
    assert response.text.startswith("<!DOCTYPE html>")
    with pytest.raises(ValueError):
        response.json()
    assert fresh.get("/v1/charges").json()["object"] == "list"


def test_a_key_revoked_mid_sync_gets_stripes_401_until_cleared(fresh: Served) -> None:
    fresh.sandbox.faults.revoke_key(after=2)
    assert statuses(fresh, 4) == [200, 200, 401, 401]
    error = fresh.get("/v1/customers").json()["error"]
    assert error["code"] == "api_key_expired"
    assert fresh.sandbox.api_key not in error["message"]
    assert error["message"].endswith(fresh.sandbox.api_key[-4:])
    fresh.sandbox.faults.clear()
    assert statuses(fresh, 1) == [200]


def test_a_malformed_object_is_served_malformed_everywhere_it_appears(fresh: Served) -> None:
    charges = fresh.all("/v1/charges")
    target, other = charges[3], charges[4]
    fresh.sandbox.faults.malform(target["id"], {"amount": "12.00"}, drop=["currency"])
    listed = {c["id"]: c for c in fresh.all("/v1/charges")}
    assert listed[target["id"]]["amount"] == "12.00"
    assert "currency" not in listed[target["id"]]
    assert listed[other["id"]] == other
    retrieved = fresh.ok(f"/v1/charges/{target['id']}")
    assert retrieved["amount"] == "12.00" and "currency" not in retrieved
    events = fresh.all("/v1/events", {"type": "charge.succeeded"})
    about = [e for e in events if e["data"]["object"]["id"] == target["id"]]
    assert about and about[0]["data"]["object"]["amount"] == "12.00"
    fresh.sandbox.faults.clear()
    assert fresh.ok(f"/v1/charges/{target['id']}") == target


def test_the_new_faults_can_be_scripted_over_http(fresh: Served) -> None:
    charge = fresh.ok("/v1/charges", {"limit": 1})["data"][0]
    script = {
        "storm": {"count": 1, "status": 429, "should_retry": None, "after": 1},
        "not_json": {"count": 1, "after": 0},
        "malform": {"id": charge["id"], "drop": ["status"]},
    }
    assert fresh.client.post("/_sandbox/faults", json=script).status_code == 200
    # queued faults follow each other in the order scripted: normal, 429, not JSON
    responses = [fresh.get("/v1/customers", {"limit": 1}) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 429, 200]
    assert responses[0].json()["object"] == "list"
    assert responses[2].text.startswith("<!DOCTYPE html>")
    assert "status" not in fresh.ok(f"/v1/charges/{charge['id']}")
    fresh.client.post("/_sandbox/faults", json={"clear": True, "revoke_key": {"after": 1}})
    assert statuses(fresh, 2) == [200, 401]

"""The campaign search finder: cursor paging with pageSize and pageToken, status filters,
COMPLETED once a run schedule ends, and what a campaign names."""

from __future__ import annotations

from datetime import date

from kpi_pipelines_tests.sandbox.linkedin.conftest import ACCOUNT, Served

SEARCH = f"/rest/adAccounts/{ACCOUNT}/adCampaigns?q=search"


def test_pages_follow_next_page_tokens_until_none(served: Served) -> None:
    listed, token = [], None
    while True:
        page = served.ok(SEARCH + "&pageSize=4" + (f"&pageToken={token}" if token else ""))
        listed += page["elements"]
        token = page["metadata"].get("nextPageToken")
        if token is None:
            break
    everyone = served.sandbox.accounts[ACCOUNT].campaigns()
    assert [c["id"] for c in listed] == [int(c.id) for c in everyone]
    assert served.get(SEARCH + "&pageSize=1001").status_code == 400
    assert served.get(SEARCH + "&pageToken=garbage!").status_code == 400


def test_statuses_and_what_a_campaign_names(served: Served) -> None:
    account = served.sandbox.accounts[ACCOUNT]
    done = account.add_campaign("Done", start=date(2026, 9, 1), end=date(2026, 9, 30))
    paused = account.add_campaign("Paused", start=date(2026, 9, 1), status="paused")
    found = {c["id"]: c for c in served.ok(SEARCH)["elements"]}
    assert found[int(done)]["status"] == "COMPLETED"
    assert found[int(done)]["runSchedule"]["end"] > found[int(done)]["runSchedule"]["start"]
    assert found[int(paused)]["account"] == f"urn:li:sponsoredAccount:{ACCOUNT}"
    only = served.ok(SEARCH + "&search=(status:(values:List(COMPLETED)))")["elements"]
    assert int(done) in {c["id"] for c in only} and int(paused) not in {c["id"] for c in only}
    assert served.get(SEARCH + "&search=(status:(values:List(BOGUS)))").status_code == 400

"""Notion through a public integration's grant: `kpi-pipelines connect` (the kit's flow, in
process, the test as the browser) against the sandbox's consent page and token endpoint,
then syncs on the stored grant; Notion rotates the refresh token on each refresh, and two
runs refreshing at once must not lose the grant."""

from __future__ import annotations

import os

import httpx
import sqlalchemy as sa
from cryptography.fernet import Fernet

from kpi_pipelines.integrations.notion.adapter import NotionAdapter
from kpi_pipelines.integrations.shared.base_adapter import SyncResult
from kpi_pipelines.integrations.shared.grants import GRANT_KEYS_VARIABLE, Grant
from kpi_pipelines_tests.canary import canaries
from kpi_pipelines_tests.integrations.google_sandbox import (
    browser_forging_state,
    sync_in_thread,
)
from kpi_pipelines_tests.integrations.notion.test_adapter import assert_matches_truth
from kpi_pipelines_tests.integrations.notion.world import NotionWorld
from kpi_pipelines_tests.run_results import failure_message


def stored_grant(world: NotionWorld, workspace_id: str) -> tuple[Grant, int]:
    with world.warehouse.engine(None).connect() as db:
        row = db.execute(
            sa.text(
                "SELECT sealed, version FROM kpi.oauth_grants"
                " WHERE workspace_id = :w AND provider = 'notion'"
            ),
            {"w": workspace_id},
        ).one()
    key = os.environ[GRANT_KEYS_VARIABLE].split(",")[0]
    return Grant.model_validate_json(Fernet(key).decrypt(bytes(row.sealed))), row.version


def test_connect_then_sync_on_the_grant_and_its_rotated_refresh(notion: NotionWorld) -> None:
    globex = notion.board("Globex", objectives=4, notes_per_objective=1)
    connected = notion.connect_with_grant("globex", globex)
    assert connected.has_refresh_token
    [issued] = notion.sandbox.oauth.consent.codes
    assert issued.redeemed and issued.verified and issued.code_challenge_method == "S256"
    assert issued.params["owner"] == "user"
    grant, version = stored_grant(notion, "globex")
    assert version == 1

    result = notion.sync("globex")
    assert result.success, failure_message(result)
    assert_matches_truth(notion, "globex", globex.board.truth(), notion.sandbox.clock.now().date())
    assert len(notion.notes("globex")) == 4 * 2
    assert notion.sandbox.oauth.refreshes == 0  # the access token of the consent served

    # Notion no longer takes the access token: the run refreshes, the rotated refresh
    # token is stored, and the one it replaced is refused from then on
    notion.sandbox.tokens.expire(kind="access")
    notion.sandbox.clock.advance(hours=1)
    result = notion.sync("globex")
    assert result.success, failure_message(result)
    assert notion.sandbox.oauth.refreshes == 1
    rotated, version = stored_grant(notion, "globex")
    assert version == 2 and rotated.refresh_token != grant.refresh_token
    assert notion.sandbox.tokens.check(grant.refresh_token, kind="refresh") == "revoked"
    assert {grant.refresh_token, rotated.refresh_token, rotated.access_token} <= set(canaries())


def test_a_callback_with_a_forged_state_is_refused_and_its_code_never_exchanged(
    notion: NotionWorld,
) -> None:
    globex = notion.board("Globex", objectives=2, notes_per_objective=0)
    forged: list[httpx.Response] = []

    connected = notion.connect_with_grant("globex", globex, browser=browser_forging_state(forged))
    assert connected.has_refresh_token
    assert [page.status_code for page in forged] == [400, 400, 400]
    assert all("state does not match" in page.text for page in forged)
    genuine, attackers = notion.sandbox.oauth.consent.codes
    assert genuine.redeemed and genuine.verified and not attackers.redeemed
    assert stored_grant(notion, "globex")[1] == 1  # one grant stored: the genuine consent's


def test_two_runs_refreshing_the_rotating_grant_at_once_both_sync(notion: NotionWorld) -> None:
    globex = notion.board("Globex", objectives=3, notes_per_objective=0)
    notion.connect_with_grant("globex", globex)
    grant, _ = stored_grant(notion, "globex")
    # Notion stops taking the access token and answers the first refresh a second late:
    # both runs hold the same grant when they find they must refresh.
    notion.sandbox.tokens.expire(kind="access")
    notion.sandbox.oauth.refresh_delay = 1.0
    outcomes: dict[str, SyncResult | Exception] = {}
    threads = [
        sync_in_thread(
            notion.warehouse,
            NotionAdapter(backoff_base_seconds=0.01),
            "globex",
            "notion",
            f"race-{n}",
            outcomes,
        )
        for n in (1, 2)
    ]
    for thread in threads:
        thread.join(timeout=120)
    assert all(isinstance(o, SyncResult) and o.success for o in outcomes.values()), outcomes
    # one refresh (the other run re-read the grant under its lock), never the spent token
    assert notion.sandbox.oauth.refreshes == 1
    assert notion.sandbox.oauth.refused_refreshes == 0
    rotated, version = stored_grant(notion, "globex")
    assert version == 2 and rotated.refresh_token != grant.refresh_token
    assert notion.sandbox.tokens.check(rotated.refresh_token, kind="refresh") != "revoked"

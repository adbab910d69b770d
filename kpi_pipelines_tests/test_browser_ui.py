"""The Dagster UI in a real browser, after the quick start: `kpi-pipelines demo`, then
`kpi-pipelines ui`, then headless Chromium (Debian's, driven by Playwright) reads what a data
engineer would look for: the asset graph, a workspace's partitions, the mart's checks and a
finished run.

Each page is checked by DOM queries that wait on their own (Playwright's auto-waiting), and
photographed; on a failure the screenshots are kept and their folder is named.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect, sync_playwright

from kpi_pipelines.assets.kpi_mart import MART_JOB, MART_KEY, NO_MISSING_DAYS, NO_SHARP_DROPS
from kpi_pipelines.definitions import SPECS
from kpi_pipelines.demo import DEMO_WORKSPACES
from kpi_pipelines_tests.processes import cli_serving, run_cli

CHROMIUM = Path("/usr/bin/chromium")
# This machine's network is closed: without the background-networking flags Chromium's own
# connections (updates, sync, field trials) are refused over and over.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Generous: the webserver answers its first GraphQL queries slowly on a busy 2-core machine.
TIMEOUT_MS = 90_000
# What a check that ran shows in the UI's checks list, whatever its outcome; a check the demo
# never ran shows "Not evaluated" instead.
EVALUATED = re.compile(r"Succeeded|Failed")


def require_chromium() -> str:
    """Debian's Chromium, or a skip naming the package (a failure under CI, which installs it)."""
    if CHROMIUM.exists():
        return str(CHROMIUM)
    reason = (
        f"the browser test needs Debian's Chromium at {CHROMIUM}:"
        " apt-get install --no-install-recommends chromium (.ci/run installs it)"
    )
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI is set, so it should have been installed")
    pytest.skip(reason)


class Shots:
    """Screenshots of each page checked, in a folder kept only when a check fails."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.folder = Path(tempfile.mkdtemp(prefix="kpi-ui-shots-"))
        self.count = 0
        self.failed = False

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{name}.png"
        try:
            yield
        # expect() raises AssertionError; an action that times out, Playwright's Error
        except (AssertionError, PlaywrightError) as exc:
            self.failed = True
            # a browser that died takes no picture; the failure itself is what matters
            with suppress(PlaywrightError):
                self.page.screenshot(path=path.with_stem(path.stem + "-failed"), full_page=True)
            # the folder first: Playwright's message ends with a long snapshot of the page
            raise AssertionError(
                f"{name} (page {self.page.url}; screenshots kept in {self.folder}): {exc}"
            ) from exc
        self.page.screenshot(path=path, full_page=True)

    def finish(self) -> None:
        if not self.failed:
            shutil.rmtree(self.folder, ignore_errors=True)


def dismiss_community_dialog(page: Page) -> Callable[[], None]:
    """The webserver greets a new browser profile with a newsletter dialog over every page."""

    def skip() -> None:
        page.get_by_role("button", name="Skip").click()

    page.add_locator_handler(page.get_by_text("Join the Dagster community"), skip)
    return skip


def test_dagster_ui_shows_the_demos_assets_partitions_checks_and_runs(private_home) -> None:
    chromium = require_chromium()
    env = private_home
    run_cli(env, "demo")  # the quick start: every provider's asset and the mart, per workspace
    provider_assets = [spec.name for spec in SPECS]
    mart = MART_KEY.to_user_string()
    workspace = DEMO_WORKSPACES[0].id

    log = Path(env["KPI_HOME"]).parent / "ui.log"
    with cli_serving(env, log, "ui") as ui, sync_playwright() as playwright:
        port = ui.port
        base = f"http://127.0.0.1:{port}"
        # Playwright gives the browser a fresh, temporary profile of its own.
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_FLAGS
        )
        page = browser.new_page(viewport={"width": 1600, "height": 1400})
        page.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)
        dismiss_community_dialog(page)
        shots = Shots(page)
        try:
            with shots.step("asset-graph"):
                # Tall enough that the whole expanded lineage (eight providers in six groups,
                # the notes, the mart) stays on screen: the graph draws only what is.
                page.set_viewport_size({"width": 2400, "height": 4000})
                page.goto(f"{base}/asset-groups")
                graph = page.locator("svg")
                # The global lineage opens with each group collapsed: expand them all (the
                # graph's own shortcut, as its context menu lists it).
                expect(graph.get_by_text("marts", exact=True)).to_be_visible()
                page.keyboard.press("Alt+KeyE")
                for name in [*provider_assets, mart]:
                    expect(graph.get_by_text(name, exact=True)).to_be_visible()
                # every node has loaded its status before the screenshot
                expect(graph.get_by_text(re.compile(r"^Loading"))).to_have_count(0)

            page.set_viewport_size({"width": 1600, "height": 1400})
            asset = provider_assets[0]
            with shots.step("partitions"):
                page.goto(f"{base}/assets/{asset}?view=partitions")
                # both demo workspaces counted as materialized, none missing
                expect(page.get_by_text(f"Materialized ({len(DEMO_WORKSPACES)})")).to_be_visible()
                expect(page.get_by_text("Missing (0)")).to_be_visible()
                page.get_by_text(workspace, exact=True).first.click()
                expect(page).to_have_url(re.compile(f"partition={workspace}"))
                expect(page.get_by_text("Materialized", exact=True)).to_be_visible()
                # the sync's own metadata on this workspace's materialization
                expect(page.get_by_text("points_written", exact=True)).to_be_visible()

            with shots.step("checks"):
                page.goto(f"{base}/assets/{mart}?view=checks")
                expect(page.get_by_text("Checks (2)")).to_be_visible()
                # The checks list's rows (Dagster's CSS-module class; the UI is pinned).
                rows = page.locator("[class*='AssetChecks_checkRow']")
                # one result per workspace: the latest execution shown names its workspace
                names_a_workspace = re.compile(
                    "^(" + "|".join(re.escape(w.id) for w in DEMO_WORKSPACES) + "): "
                )
                for check in (NO_SHARP_DROPS, NO_MISSING_DAYS):
                    row = rows.filter(has=page.get_by_text(check, exact=True))
                    expect(row).to_have_count(1)
                    expect(row).to_contain_text(EVALUATED)
                    row.click()
                    expect(page.get_by_text(names_a_workspace).first).to_be_visible()

            with shots.step("runs"):
                page.goto(f"{base}/runs")
                success = page.get_by_text("Success", exact=True).first
                expect(success).to_be_visible()
                # open the newest finished run: its log ends with the run's success
                rows = page.locator("[class*='RunsFeedRow_rowGrid']")
                rows.filter(has=page.get_by_text("Success", exact=True)).first.get_by_role(
                    "link"
                ).first.click()
                expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}"))
                expect(page.get_by_text("RUN_SUCCESS", exact=True)).to_be_visible()

            with shots.step("re-execute"):
                # the demo's runs are their jobs' runs, which the UI re-executes
                demo_run = page.url
                expect(page.get_by_text(MART_JOB, exact=True).first).to_be_visible()
                page.get_by_role("button", name=re.compile(r"^Re-execute")).first.click()
                expect(page).not_to_have_url(demo_run)
                expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}"))
                expect(page.get_by_text("RUN_SUCCESS", exact=True)).to_be_visible()

            with shots.step("runs-by-job"):
                page.goto(f"{base}/runs")
                for job in [*(spec.job_name for spec in SPECS), MART_JOB]:
                    expect(page.get_by_text(job, exact=True).first).to_be_visible()
                expect(page.get_by_text("__ephemeral_asset_job__")).to_have_count(0)
        finally:
            browser.close()
            shots.finish()

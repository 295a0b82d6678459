"""The Dagster UI in headless Chromium (Debian's ``chromium``, driven by Playwright), used as
the DPO uses it: the export assets in the catalog, a completed request found from there.

A failing test leaves ``failure.png`` (the page as it was) in its pytest tmp dir.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.dagster_fixtures import EXPORT_ASSETS, SOURCE_POOLS, DagsterUI

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT_MS = 30_000
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
            "(apt-get install -y chromium; .ci/run installs it)"
        )
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM))
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 2000})
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    yield pg
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        pg.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
    context.close()


def test_the_asset_catalog_lists_the_export_assets(page: Page, dagster_ui: DagsterUI) -> None:
    page.goto(f"{dagster_ui.url}/assets")
    for key in sorted(EXPORT_ASSETS):
        link = page.locator(f'a[href="/assets/{key}"]').first
        expect(link).to_be_visible()
        expect(link).to_contain_text(key.rsplit("/", 1)[-1])


def test_a_completed_request_is_found_from_the_catalog(page: Page, dagster_ui: DagsterUI) -> None:
    rid, run = dagster_ui.request_id, dagster_ui.run_id[:8]
    page.goto(f"{dagster_ui.url}/assets")
    page.locator('a[href="/assets/delivery"]').first.click()
    page.get_by_role("tab", name="Partitions").click()
    page.get_by_placeholder(re.compile("Filter by name")).fill(rid)
    page.get_by_text(re.compile(rid[:8])).first.click()
    # the partition's page: materialized, where the archive is, by which run
    expect(page.get_by_text(rid, exact=True).filter(visible=True).first).to_be_visible()
    expect(page.get_by_text("Materialized", exact=True).first).to_be_visible()
    expect(page.get_by_text(f"{rid}.zip").first).to_be_visible()
    page.get_by_role("link", name=run).first.click()
    # the run's page: the export job, succeeded, for that request
    expect(page).to_have_url(re.compile(f"/runs/{dagster_ui.run_id}"))
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    expect(page.get_by_text(f"partition: {rid}").first).to_be_visible()


def test_the_export_run_succeeded_in_the_run_list(page: Page, dagster_ui: DagsterUI) -> None:
    page.goto(f"{dagster_ui.url}/runs")
    tag = page.get_by_text(f"partition: {dagster_ui.request_id}")
    expect(tag).to_be_visible()
    row = page.locator("div").filter(has=tag).filter(has_text="export_request").last  # innermost
    expect(row).to_contain_text(dagster_ui.run_id[:8])
    expect(row).to_contain_text("Success")


def test_each_source_pool_shows_its_limit(page: Page, dagster_ui: DagsterUI) -> None:
    page.goto(f"{dagster_ui.url}/deployment/concurrency")
    for pool in sorted(SOURCE_POOLS):  # dagster.yaml's default limit, set by the export run
        link = page.get_by_role("link", name=pool, exact=True)
        row = page.locator("div").filter(has=link)  # the innermost holding the pool and a limit
        row = row.filter(has_text=re.compile(rf"^\s*{pool}\s*\d+\s*$")).last
        expect(row).to_have_text(re.compile(rf"^\s*{pool}\s*2\s*$"))

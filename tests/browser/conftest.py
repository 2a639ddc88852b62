"""Fixtures for the browser tests: the system's headless Chromium driven by Playwright.

They skip when /usr/bin/chromium is missing (a system package: .ci/run installs it); Playwright never downloads a
browser here."""
from __future__ import annotations

import pytest
from playwright import sync_api

from tests.browser.frontends import start_latest
from tests.browser.live import CHROMIUM, CHROMIUM_ARGS, OUTPUT, Recorder


# Module scope: Playwright's sync API keeps its own event loop, which must be gone before asyncio tests run.
@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (.ci/run installs Debian's chromium package)")
    with sync_api.sync_playwright() as playwright:
        yield playwright.chromium


@pytest.fixture
def open_page(chromium, tmp_path_factory):
    """open_page(url) -> (page, recorder): a fresh Chromium profile per page, closed after the test."""
    contexts = []
    OUTPUT.mkdir(parents=True, exist_ok=True)

    def open_(url: str):
        profile = tmp_path_factory.mktemp("chromium-profile")
        context = chromium.launch_persistent_context(str(profile), executable_path=str(CHROMIUM), headless=True,
                                                     args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 900})
        contexts.append(context)
        page = context.pages[0] if context.pages else context.new_page()
        recorder = Recorder(page, url.rstrip("/"))
        page.goto(url)
        return page, recorder

    yield open_
    for context in contexts:
        context.close()


@pytest.fixture(scope="module")
def comfyd(tmp_path_factory):
    """A live comfyd with the tiny checkpoint, shared by a module's tests."""
    server = start_latest(tmp_path_factory)
    yield server
    server.stop()

"""Fixtures for the console's browser tests: the world of console_support.py and a headless
Chromium driven by Playwright (Debian's /usr/bin/chromium: Playwright never downloads one)."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# oidc_fixture (the real OIDC provider) lives in tests/integration; test modules here load it
# with pytest_plugins = ["oidc_fixture"], which needs it importable by that name.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integration"))

from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from pgwarden.devcluster import DevCluster
from tests.e2e.console.console_support import CHROMIUM, ConsoleEnv

# Requests to anything but loopback are refused: the console must need nothing from outside,
# and the provider's own page (which links a stylesheet on a CDN) must not wait on the network.
_EXTERNAL = re.compile(r"^https?://(?!127\.0\.0\.1[:/]|localhost[:/])")


# Module scope, not session: sync Playwright keeps an event loop running in this thread while
# it is open, and later tests that call asyncio.run() must not find one.
@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make setup` installs Debian's chromium package")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def console(
    pg_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory, oidc_provider: Any
) -> Iterator[ConsoleEnv]:
    env = ConsoleEnv(pg_cluster, tmp_path_factory.mktemp("console-gateway"), oidc_provider)
    try:
        yield env
    finally:
        env.close()


@pytest.fixture
def context(chromium: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile per test (its own cookies: its own person)."""
    ctx = chromium.new_context(viewport={"width": 1280, "height": 860}, locale="en-US")
    ctx.route(_EXTERNAL, lambda route: route.abort())
    ctx.set_default_timeout(15_000)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()

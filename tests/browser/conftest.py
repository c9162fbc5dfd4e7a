"""Headless Chromium (Debian's, at /usr/bin/chromium) driven by Playwright, for the pages
people look at. Screenshots go to reports/screenshots/, which CI keeps."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

SCREENSHOTS = REPO / "reports" / "screenshots"
CHROMIUM = os.environ.get("MLSHIP_CHROMIUM", "/usr/bin/chromium")
# no background traffic: this machine's network is closed, and a test must not depend on it
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="package")  # closed after these tests: Playwright's sync API keeps an
def browser() -> Iterator[Any]:  # event loop running, which asyncio.run() elsewhere refuses
    if not Path(CHROMIUM).exists() and shutil.which(CHROMIUM) is None:
        message = f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)"
        if os.environ.get("MLSHIP_REQUIRE_BROWSER") == "1":
            pytest.fail(f"required here: {message}")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()


class Page:
    """A page with its console errors and failed requests collected."""

    def __init__(self, browser: Any, **context: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900}, **context)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("requestfailed", lambda r: self.errors.append(f"failed: {r.url}"))

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / name
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def open_page(browser: Any) -> Iterator[Any]:
    opened: list[Page] = []

    def make(**context: Any) -> Page:
        opened.append(Page(browser, **context))
        return opened[-1]

    yield make
    for page in opened:
        page.context.close()

"""Headless Chromium (Debian's ``chromium``) driven by Playwright from PyPI."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium() -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def sign_in(browser: Browser, base: str, user: str, password: str, next_path: str) -> Page:
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(f"{base}/login?next={next_path}")
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("button[type=submit]")
    return page

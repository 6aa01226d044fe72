"""One headless Chromium per session (Debian's, through Playwright), a fresh signed-in page
per test, and the folder screenshots go to."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import LiveService

CHROMIUM = os.environ.get("OPENRFT_CHROMIUM", "/usr/bin/chromium")


# module scope: Playwright's sync API keeps an event loop running on the main thread while it
# is open, which would make every later test's asyncio.run() fail
@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.skip(
            f"no Chromium at {CHROMIUM}: install Debian's `chromium` (scripts/install-system-packages.sh "
            "does) or point OPENRFT_CHROMIUM at one"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """$OPENRFT_SCREENSHOT_DIR, else a `screenshots` folder in pytest's temporary folder."""
    configured = os.environ.get("OPENRFT_SCREENSHOT_DIR")
    folder = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def dashboard_url(service: LiveService) -> str:
    return service.base_url.removesuffix("/v1") + "/"


@pytest.fixture
def page(browser, service: LiveService) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """A page at 1280 x 900 in a fresh browser context (own sessionStorage), not signed in."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_default_timeout(30_000)
    page.goto(dashboard_url(service))
    yield page
    context.close()
    assert not errors, f"script errors on the page: {errors}"


def sign_in(page, api_key: str) -> None:  # type: ignore[no-untyped-def]
    page.get_by_label("API key").fill(api_key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("navigation", name="Main").wait_for()


@pytest.fixture
def signed_in(page, service: LiveService):  # type: ignore[no-untyped-def]
    sign_in(page, service.api_key)
    return page

"""The portal with the keyboard alone, and without JavaScript.

The keyboard test never clicks: only Tab, Shift+Tab, Enter, Space and typing. On every stop of
the portal's own pages the focused element must show a focus style (an outline or a ring) and
be on screen. The provider's login form is not ours; it is only typed into.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import Page

from portal.catalog.document import SHIPPED_CATALOG, read_catalog_file
from portal.catalog.publication import load_catalog
from portal.db import commit
from tests.support.browser import migrated_sqlite_database, screenshot, sign_in_with_form
from tests.support.identity import ACCOUNTS, PASSWORD

pytestmark = pytest.mark.browser

#: What the focused element is, and whether a sighted keyboard user can see where focus is.
FOCUSED = """() => {
  const element = document.activeElement;
  if (!element || element === document.body) return null;
  const style = getComputedStyle(element);
  const box = element.getBoundingClientRect();
  return {
    tag: element.tagName.toLowerCase(), id: element.id,
    name: (element.value && element.tagName === "INPUT" ? element.value : element.textContent)
      .replace(/\\s+/g, " ").trim(),
    href: element.getAttribute("href"),
    inMain: element.closest("main") !== null,
    outline: style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2,
    ring: style.boxShadow !== "none",
    onScreen: box.width > 0 && box.height > 0 && box.bottom > 0 && box.right > 0
      && box.top < window.innerHeight && box.left < window.innerWidth,
  };
}"""


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: these pages do not depend on the backend."""
    return migrated_sqlite_database(tmp_path / "portal.sqlite3")


def _publish_catalog(app: Flask) -> None:
    with app.app_context():
        load_catalog(read_catalog_file(SHIPPED_CATALOG), published_by="tests")
        commit()


def focused(tab: Page) -> dict[str, Any]:
    """Describe the focused element, failing if nothing has focus."""
    found: dict[str, Any] | None = tab.evaluate(FOCUSED)
    assert found is not None, f"nothing has focus on {tab.url}"
    return found


def assert_focus_visible(tab: Page) -> dict[str, Any]:
    """Fail unless the focused element shows a focus style and is on screen."""
    found = focused(tab)
    assert found["outline"] or found["ring"], f"focus not visible on {tab.url}: {found}"
    assert found["onScreen"], f"focused element off screen on {tab.url}: {found}"
    return found


def tab_to(tab: Page, *, name: str = "", href: str = "", backwards: bool = False,
           limit: int = 80) -> dict[str, Any]:
    """Press Tab (or Shift+Tab) until the wanted element has focus, checking every stop."""
    for _ in range(limit):
        tab.keyboard.press("Shift+Tab" if backwards else "Tab")
        found = assert_focus_visible(tab)
        if (not name or found["name"] == name) and (not href or found["href"] == href):
            return found
    raise AssertionError(f"never reached {name or href} on {tab.url}")


def press_and_wait(tab: Page, key: str) -> None:
    """Press a key that sends a form or follows a link, and wait for the next page."""
    with tab.expect_navigation():
        tab.keyboard.press(key)


def test_sign_in_consent_and_download_with_the_keyboard_alone(
        app: Flask, page: Page, live_server: str, tmp_path: Path) -> None:
    _publish_catalog(app)
    page.goto("/")

    # The first Tab reaches the skip link, which shows itself; Enter moves focus to the content.
    skip = tab_to(page, limit=1)
    assert skip["href"] == "#main" and skip["name"] == "Skip to main content"
    screenshot(page, "keyboard-skip-link")
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    first = tab_to(page, limit=1)
    assert first["inMain"] and first["name"] == "Sign in with your company account", first

    # The provider's login form (not ours: only typed into).
    press_and_wait(page, "Enter")
    page.wait_for_selector("#username:focus")  # the provider's form focuses it by itself
    page.keyboard.type(ACCOUNTS["alex"].sub)
    page.keyboard.press("Tab")
    assert focused(page)["id"] == "password"
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server}/")
    assert page.get_by_text("You are signed in.").is_visible()

    # Give consent for keystrokes from the overview, then withdraw it with Space.
    tab_to(page, name="Give consent (Keystrokes)")
    screenshot(page, "keyboard-give-consent")
    press_and_wait(page, "Enter")
    assert page.get_by_text("Consent given for Keystrokes.").is_visible()
    withdraw = tab_to(page, name="Withdraw consent (Keystrokes)")
    before = tab_to(page, backwards=True, limit=1)
    assert before["name"] != withdraw["name"]
    tab_to(page, name="Withdraw consent (Keystrokes)", limit=1)
    press_and_wait(page, "Space")
    assert page.get_by_text("Consent withdrawn for Keystrokes.").is_visible()

    # My data, its download form, and the ZIP.
    tab_to(page, href="/my-data")
    press_and_wait(page, "Enter")
    tab_to(page, href="/my-data/download")
    press_and_wait(page, "Enter")
    tab_to(page, name="Download my data")
    screenshot(page, "keyboard-download")
    with page.expect_download() as started:
        page.keyboard.press("Enter")
    saved = tmp_path / started.value.suggested_filename
    started.value.save_as(saved)
    with zipfile.ZipFile(saved) as archive:
        assert archive.testzip() is None
        assert archive.namelist()[-1] == "manifest.json"
        history = json.loads(archive.read("consent/history.json"))
    assert "ConsentWithdrawn" in json.dumps(history) and "keystrokes" in json.dumps(history)


def test_sign_in_consent_and_download_without_javascript(
        app: Flask, browser: Any, live_server: str, tmp_path: Path) -> None:
    _publish_catalog(app)
    context = browser.new_context(base_url=live_server, java_script_enabled=False,
                                  locale="en-GB")
    context.set_default_timeout(15_000)
    tab = context.new_page()
    try:
        sign_in_with_form(tab, live_server, ACCOUNTS["bea"].sub, PASSWORD)
        assert tab.get_by_text("You are signed in.").is_visible()

        tab.goto("/categories/clicks")
        with tab.expect_navigation(url=f"{live_server}/categories/clicks"):
            tab.get_by_role("button", name="Give consent (Clicks)", exact=True).click()
        assert tab.get_by_text("Consent given for Clicks.").is_visible()
        with tab.expect_navigation(url=f"{live_server}/categories/clicks"):
            tab.get_by_role("button", name="Withdraw consent (Clicks)", exact=True).click()
        assert tab.get_by_text("Consent withdrawn for Clicks.").is_visible()
        tab.goto("/consent/history")
        assert tab.locator("table.consent-history tbody tr").count() == 2

        # The download form: a mistake gets its error summary, then the ZIP arrives.
        tab.goto("/my-data/download")
        for box in tab.locator("input[name=categories]").all():
            box.uncheck()
        with tab.expect_navigation():
            tab.get_by_role("button", name="Download my data").click()
        assert tab.get_by_role("heading", name="There is a problem").is_visible()
        tab.get_by_label("Clicks").check()
        with tab.expect_download() as started:
            tab.get_by_role("button", name="Download my data").click()
        saved = tmp_path / started.value.suggested_filename
        started.value.save_as(saved)
        with zipfile.ZipFile(saved) as archive:
            assert archive.testzip() is None
            assert "consent/history.json" in archive.namelist()
    finally:
        context.close()

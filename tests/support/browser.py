"""Debian's Chromium through Playwright, and axe-core for accessibility checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from playwright.sync_api import Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
AXE = (Path(__file__).resolve().parent.parent / "browser" / "node_modules" / "axe-core"
       / "axe.min.js")
# WCAG 2.2 AA and everything below it.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
SCREENSHOTS = Path(__file__).resolve().parent.parent.parent / "test-artifacts" / "screenshots"


#: True once the document has loaded and every stylesheet it links has applied.
_STYLED = """() => document.readyState === "complete"
    && Array.from(document.querySelectorAll('link[rel="stylesheet"]'))
            .every(link => link.sheet !== null)"""


def wait_until_styled(page: Page) -> None:
    """Wait until the page has loaded and its stylesheets apply.

    axe judges sizes and contrast from the computed style, and screenshots show it: run on a
    document that is still loading, axe finds every link too small (``target-size``). This
    waits for the document that is there; a test that clicks a link or a form's button waits
    for the navigation itself (``page.expect_navigation()`` or ``page.wait_for_url``) first.
    """
    page.wait_for_load_state("load")
    page.wait_for_function(_STYLED)


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """Run axe-core on the page, once it has loaded and is styled; return its violations.

    ``evaluate`` runs outside the page's Content-Security-Policy, so the policy stays on.
    """
    wait_until_styled(page)
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())
    result = page.evaluate(
        "options => axe.run(document, options)",
        {"runOnly": {"type": "tag", "values": AXE_TAGS}, "resultTypes": ["violations"]})
    violations: list[dict[str, Any]] = result["violations"]
    return violations


def assert_accessible(page: Page) -> None:
    """Fail with a readable list when axe finds any violation."""
    violations = axe_violations(page)
    summary = [
        {"rule": item["id"], "impact": item["impact"], "help": item["help"],
         "targets": [node["target"] for node in item["nodes"]][:5]}
        for item in violations
    ]
    assert not violations, f"axe violations on {page.url}:\n{json.dumps(summary, indent=2)}"


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot under test-artifacts/screenshots for people to look at."""
    wait_until_styled(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in_with_form(page: Page, base_url: str, username: str, password: str,
                      next_path: str | None = None) -> None:
    """Sign in as a person would: the start page's button (or a protected page's redirect),
    then the provider's login form."""
    if next_path is None:
        page.goto(f"{base_url}/")
        with page.expect_navigation():
            page.get_by_role("link", name="Sign in with your company account").click()
    else:
        page.goto(f"{base_url}{next_path}")
    page.fill("#username", username)
    page.fill("#password", password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base_url}/**")


#: The href of the element that has the keyboard's focus (None when it is not a link).
FOCUSED_HREF = "() => document.activeElement && document.activeElement.getAttribute('href')"


def follow_link_by_keyboard(page: Page, base_url: str, href: str, *, most: int = 80) -> None:
    """Press Tab until the link to ``href`` has the focus, then Enter, and wait for its page.

    :raise AssertionError: ``most`` presses of Tab never reach the link.
    """
    for _ in range(most):
        page.keyboard.press("Tab")
        if page.evaluate(FOCUSED_HREF) == href:
            break
    else:
        raise AssertionError(f"the link to {href} is not reachable with Tab")
    with page.expect_navigation(url=f"{base_url}{href}"):
        page.keyboard.press("Enter")


def migrated_sqlite_database(path: Path) -> str:
    """Create an SQLite database at the latest schema and return its URL.

    For browser tests whose pages do not depend on the backend: overriding the conftest's
    ``database_url`` with this runs them once (on SQLite) instead of once per backend.
    """
    from portal import create_app
    from portal.cli import upgrade_database
    from portal.db import get_engine
    from tests.support.config import portal_settings
    from tests.support.identity import ISSUER

    url = f"sqlite:///{path}"
    app = create_app(portal_settings(url, ISSUER, "http://localhost"))
    upgrade_database(app)
    get_engine(app).dispose()
    return url

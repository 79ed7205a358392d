"""Sign-in and sign-out in Chromium, through the real provider's login form."""

from __future__ import annotations

from typing import Any

from tests.support.browser import assert_accessible, screenshot, sign_in_with_form
from tests.support.identity import ACCOUNTS, PASSWORD


def test_sign_in_reach_dashboard_sign_out_and_old_cookie_is_dead(
        page: Any, browser: Any, live_server: str) -> None:
    page.goto("/")
    assert_accessible(page)
    screenshot(page, "welcome")

    sign_in_with_form(page, live_server, ACCOUNTS["chris"].sub, PASSWORD)
    page.wait_for_url(f"{live_server}/")
    assert page.get_by_role("heading", level=1).inner_text() == "Hello, Chris Okafor"
    assert page.get_by_text("You are signed in.").is_visible()
    assert "HR" in page.locator(".summary-list").inner_text()
    assert_accessible(page)
    screenshot(page, "dashboard")
    [cookie] = [c for c in page.context.cookies() if c["name"] == "portal_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"

    with page.expect_navigation():
        page.get_by_role("link", name="Sign out").click()
    assert_accessible(page)
    screenshot(page, "sign-out-confirm")
    with page.expect_navigation():
        page.get_by_role("button", name="Sign out").click()
    # The provider asks whether to end its session too (RP-initiated logout).
    with page.expect_navigation(url=f"{live_server}/"):
        page.locator("#logout-confirm").click()
    assert page.get_by_role("link", name="Sign in with your company account").is_visible()

    # The cookie from before sign-out, replayed in a clean browser, gets nothing.
    stolen = browser.new_context(base_url=live_server)
    stolen.add_cookies([{key: cookie[key] for key in ("name", "value", "domain", "path")}])
    tab = stolen.new_page()
    tab.goto("/")
    assert "Chris Okafor" not in tab.content()
    assert tab.get_by_role("link", name="Sign in with your company account").is_visible()
    stolen.close()


def test_wrong_password_is_refused_by_the_provider(page: Any, live_server: str) -> None:
    page.goto("/")
    page.get_by_role("link", name="Sign in with your company account").click()
    page.fill("#username", ACCOUNTS["alex"].sub)
    page.fill("#password", "not the password")
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    assert page.get_by_text("Invalid username or password").is_visible()
    assert not page.url.startswith(live_server)


def test_language_switch_without_javascript(browser: Any, live_server: str) -> None:
    context = browser.new_context(base_url=live_server, java_script_enabled=False,
                                  locale="en-GB")
    tab = context.new_page()
    tab.goto("/")
    tab.select_option("#locale-select", "de")
    with tab.expect_navigation():
        tab.get_by_role("button", name="Change language").click()
    assert tab.locator("html").get_attribute("lang") == "de"
    assert tab.get_by_role("heading", level=1).inner_text() == "Ihre Daten, Ihre Entscheidung"
    context.close()


def test_error_pages_are_plain_and_accessible(page: Any) -> None:
    response = page.goto("/no-such-page")
    assert response is not None and response.status == 404
    assert page.get_by_role("heading", level=1).inner_text() == "Page not found"
    assert "Traceback" not in page.content()
    assert_accessible(page)
    screenshot(page, "error-404")

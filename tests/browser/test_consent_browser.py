"""Consent in Chromium: give, withdraw, download and check a receipt; axe finds nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask

from portal.catalog.document import SHIPPED_CATALOG, read_catalog_file
from portal.catalog.publication import load_catalog
from portal.db import commit
from tests.support.browser import assert_accessible, screenshot, sign_in_with_form
from tests.support.factories import publish_changed_text
from tests.support.identity import ACCOUNTS, PASSWORD


def _publish_catalog(app: Flask) -> None:
    with app.app_context():
        load_catalog(read_catalog_file(SHIPPED_CATALOG), published_by="tests")
        commit()


def test_give_withdraw_download_and_verify_a_receipt(
        app: Flask, page: Any, live_server: str, tmp_path: Path) -> None:
    _publish_catalog(app)
    sign_in_with_form(page, live_server, ACCOUNTS["alex"].sub, PASSWORD)
    page.wait_for_url(f"{live_server}/")
    assert_accessible(page)
    screenshot(page, "consent-dashboard")

    page.goto("/categories/keystrokes")
    controls = page.locator("#consent-keystrokes")
    assert "Not given" in controls.inner_text()
    assert_accessible(page)
    screenshot(page, "consent-category-not-given")

    with page.expect_navigation(url=f"{live_server}/categories/keystrokes"):
        page.get_by_role("button", name="Give consent (Keystrokes)", exact=True).click()
    assert page.get_by_text("Consent given for Keystrokes.").is_visible()
    assert "Given" in page.locator("#consent-keystrokes .tag").inner_text()
    assert_accessible(page)
    screenshot(page, "consent-category-given")

    with page.expect_navigation(url=f"{live_server}/categories/keystrokes"):
        page.get_by_role("button", name="Withdraw consent (Keystrokes)", exact=True).click()
    assert page.get_by_text("Consent withdrawn for Keystrokes.").is_visible()
    assert page.locator("#consent-keystrokes .tag").inner_text() == "Withdrawn"
    assert_accessible(page)

    page.goto("/")
    with page.expect_navigation(url=f"{live_server}/"):
        page.get_by_role("button", name="Give consent (Clicks)", exact=True).click()
    assert page.get_by_text("Consent given for Clicks.").is_visible()

    with page.expect_navigation(url=f"{live_server}/consent/history"):
        page.get_by_role("link", name="Consent history").click()
    rows = page.locator("table.consent-history tbody tr")
    assert rows.count() == 3
    assert "Withdrawn" in rows.nth(1).inner_text()
    assert_accessible(page)
    screenshot(page, "consent-history")

    with page.expect_download() as signed:
        page.get_by_role("link", name="Signed file receipt for Keystrokes, Withdrawn").click()
    receipt = tmp_path / signed.value.suggested_filename
    signed.value.save_as(receipt)
    assert receipt.name.startswith("consent-receipt-") and receipt.suffix == ".jws"
    jwks = tmp_path / "jwks.json"
    jwks.write_text(page.request.get("/.well-known/jwks.json").text())
    result = app.test_cli_runner().invoke(args=["receipts", "verify", str(receipt), "--key",
                                                str(jwks)])
    assert result.exit_code == 0, result.output
    assert "VALID" in result.output and "ConsentWithdrawn for keystrokes" in result.output

    with page.expect_download() as printed:
        page.get_by_role("link", name="PDF receipt for Keystrokes, Withdrawn").click()
    pdf = tmp_path / "receipt.pdf"
    printed.value.save_as(pdf)
    assert pdf.read_bytes().startswith(b"%PDF")

    # Withdraw all, in one action, from the history page.
    with page.expect_navigation(url=f"{live_server}/consent/history"):
        page.get_by_role("button", name="Withdraw all consent").click()
    assert page.get_by_text("Consent withdrawn for 1 category: Clicks.").is_visible()
    assert_accessible(page)


def test_confirm_or_decline_after_a_material_change(app: Flask, page: Any,
                                                     live_server: str) -> None:
    _publish_catalog(app)
    sign_in_with_form(page, live_server, ACCOUNTS["bea"].sub, PASSWORD)
    page.goto("/categories/keystrokes")
    with page.expect_navigation(url=f"{live_server}/categories/keystrokes"):
        page.get_by_role("button", name="Give consent (Keystrokes)", exact=True).click()
    publish_changed_text(app, "keystrokes", material=True)
    page.goto("/categories/keystrokes")
    controls = page.locator("#consent-keystrokes")
    assert "Paused: notice changed" in controls.inner_text()
    confirm = page.get_by_role("button", name="Confirm under the new notice (Keystrokes)",
                               exact=True)
    decline = page.get_by_role("button", name="Decline (Keystrokes)", exact=True)
    assert confirm.get_attribute("class") == decline.get_attribute("class")
    assert_accessible(page)
    screenshot(page, "consent-category-expired")
    with page.expect_navigation():
        confirm.click()
    page.wait_for_url(f"{live_server}/categories/keystrokes")
    assert page.get_by_text("Consent confirmed for Keystrokes under notice version 2.").is_visible()
    assert page.locator("#consent-keystrokes .tag").inner_text() == "Given again"


def test_privacy_admin_sees_deliveries(app: Flask, page: Any, live_server: str) -> None:
    from portal.api.service import register_collector

    _publish_catalog(app)
    with app.app_context():
        register_collector("Keystroke logger", ["keystrokes"], webhook_url="http://127.0.0.1:9/")
        commit()
    sign_in_with_form(page, live_server, ACCOUNTS["eli"].sub, PASSWORD)
    page.goto("/categories/keystrokes")
    with page.expect_navigation():
        page.get_by_role("button", name="Give consent (Keystrokes)", exact=True).click()
    with page.expect_navigation():
        page.get_by_role("button", name="Withdraw consent (Keystrokes)", exact=True).click()
    page.goto("/consent/admin/webhooks")
    assert page.get_by_role("heading", level=1).inner_text() == "Withdrawal notices to collectors"
    assert "Keystroke logger" in page.locator("table").inner_text()
    assert_accessible(page)
    screenshot(page, "consent-admin-webhooks")

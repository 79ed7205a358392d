"""The catalog in Chromium: read a category as an employee, object, publish as the admin.

Every page this feature adds is checked with axe-core (WCAG 2.2 AA) and photographed for
people to look at (test-artifacts/screenshots).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask

from tests.support.browser import assert_accessible, screenshot, sign_in_with_form
from tests.support.catalog import (
    Raw,
    category,
    changed_document,
    load_shipped,
    new_purpose,
    publish,
    shipped_raw,
    to_yaml,
)
from tests.support.identity import ACCOUNTS, PASSWORD

pytestmark = pytest.mark.browser
# The consent controls name their category in words only a screen reader hears.
GIVE = re.compile(r"^Give consent\b.*Keystrokes")


def test_employee_reads_a_category_and_objects(app: Flask, page: Any, live_server: str,
                                               backend: str) -> None:
    load_shipped(app)
    sign_in_with_form(page, live_server, ACCOUNTS["alex"].sub, PASSWORD,
                      next_path="/categories/keystrokes")
    page.wait_for_url(f"{live_server}/categories/keystrokes")
    assert page.get_by_role("heading", level=1).inner_text() == "Keystrokes"
    fields = page.get_by_role("table").filter(has_text="What it means")
    assert "How long that run of typing took, in milliseconds." in fields.inner_text()
    example = page.locator(".example-record")
    assert "total += row.amount" in example.inner_text()
    json_view = page.locator("details.technical pre")
    assert not json_view.is_visible()
    page.get_by_text("The same record as the collecting software sends it").click()
    assert '"duration_ms"' in json_view.inner_text()
    assert page.get_by_role("button", name=GIVE).is_visible()
    assert page.get_by_role("button", name=re.compile(r"^Do not give consent\b.*Keystrokes")
                            ).is_visible()
    assert_accessible(page)
    screenshot(page, f"catalog-keystrokes-{backend}")

    with page.expect_navigation(url=f"{live_server}/categories/"):
        page.get_by_role("link", name="What is recorded").first.click()
    assert page.get_by_role("row").count() == 8
    assert_accessible(page)
    screenshot(page, f"catalog-index-{backend}")

    page.goto("/categories/performance")
    with page.expect_navigation():
        page.get_by_role("button", name="Send my objection").click()
    summary = page.locator(".error-summary")
    assert "Write why you object" in summary.inner_text()
    assert_accessible(page)
    screenshot(page, f"catalog-performance-error-{backend}")
    summary.get_by_role("link").click()
    assert page.evaluate("document.activeElement.id") == "reason"
    page.fill("#reason", "I would like my reviews to stay in the HR system only.")
    with page.expect_navigation():
        page.get_by_role("button", name="Send my objection").click()
    assert "Your objection has been received" in page.locator(".messages").inner_text()
    assert "The data protection officer will answer by" in page.locator(
        "#objections + table").inner_text()
    assert_accessible(page)
    screenshot(page, f"catalog-performance-{backend}")

    page.goto("/")
    assert page.locator(".category-card").count() == 7
    assert_accessible(page)
    screenshot(page, f"dashboard-categories-{backend}")

    with page.expect_navigation():
        page.get_by_role("button", name=GIVE).click()
    assert page.get_by_role("button", name=re.compile(r"^Withdraw consent\b.*Keystrokes")
                            ).is_visible()


def test_admin_publishes_a_material_change(app: Flask, page: Any, live_server: str,
                                           backend: str) -> None:
    load_shipped(app)
    sign_in_with_form(page, live_server, ACCOUNTS["eli"].sub, PASSWORD, next_path="/admin/")
    page.wait_for_url(f"{live_server}/admin/")
    assert_accessible(page)
    screenshot(page, f"admin-index-{backend}")

    with page.expect_navigation():
        page.get_by_role("link", name="Publish a new notice version").click()
    with page.expect_navigation():
        page.get_by_role("button", name="Continue").click()
    assert "Upload the catalog file or paste it." in page.locator(".error-summary").inner_text()
    assert_accessible(page)
    screenshot(page, f"admin-new-error-{backend}")
    raw = shipped_raw()
    new_purpose("keystrokes")(raw)
    # Uploaded as an administrator would: typing a catalog in three languages into the text
    # box takes Chromium longer than Playwright's timeout.
    page.set_input_files("#catalog_file", files=[{
        "name": "catalog.yaml", "mimeType": "application/yaml",
        "buffer": to_yaml(raw).encode("utf-8")}])
    with page.expect_navigation(url=f"{live_server}/admin/notices/new/review"):
        page.get_by_role("button", name="Continue").click()
    assert "Also train the meeting summariser." in page.locator(".diff").first.inner_text()
    assert_accessible(page)
    screenshot(page, f"admin-review-{backend}")

    page.get_by_label("This change is material").check()
    page.get_by_label("Why is the change material?").fill("A new purpose.")
    page.get_by_label("Data protection officer's sign-off").fill("Dana Novak, 2026-11-20")
    page.get_by_label("Works council reference").fill("WC-2026-14")
    page.get_by_label("What changed, in English").fill("Keystrokes also train the summariser.")
    page.get_by_label("What changed, in Deutsch").fill(
        "Tastatureingaben trainieren auch den Zusammenfasser.")
    page.get_by_label("What changed, in Français").fill(
        "Les frappes au clavier entraînent aussi le résumeur.")
    with page.expect_navigation(url=f"{live_server}/admin/notices/new/check"):
        page.get_by_role("button", name="Continue").click()
    assert_accessible(page)
    screenshot(page, f"admin-check-{backend}")

    with page.expect_navigation(url=f"{live_server}/admin/notices/2?published=1"):
        page.get_by_role("button", name="Publish version 2").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Notice version 2 is published"
    assert_accessible(page)
    screenshot(page, f"admin-published-{backend}")


def test_person_sees_a_material_change_and_confirms(app: Flask, page: Any, live_server: str,
                                                    backend: str) -> None:
    load_shipped(app)
    sign_in_with_form(page, live_server, ACCOUNTS["bea"].sub, PASSWORD,
                      next_path="/categories/keystrokes")
    page.wait_for_url(f"{live_server}/categories/keystrokes")
    with page.expect_navigation():
        page.get_by_role("button", name=GIVE).click()

    def change(raw: Raw) -> None:
        new_purpose("keystrokes")(raw)
        category(raw, "keystrokes")["retention_days"] = 60

    publish(app, changed_document(change), material={"keystrokes": "A new purpose."})
    page.goto("/categories/keystrokes")
    changes = page.locator(".reconsent")
    assert "What changed since you agreed" in changes.inner_text()
    lines = changes.get_by_role("listitem").all_inner_texts()
    assert lines == ["Added: Purpose: Also train the meeting summariser.",
                     "Removed: Kept for: 30 days", "Added: Kept for: 60 days"]
    assert_accessible(page)
    screenshot(page, f"catalog-keystrokes-changed-{backend}")
    page.goto("/")
    assert_accessible(page)
    screenshot(page, f"dashboard-changed-{backend}")
    page.goto("/categories/keystrokes")
    with page.expect_navigation():
        page.get_by_role("button", name=re.compile(r"^Confirm")).click()
    assert page.locator(".reconsent").count() == 0

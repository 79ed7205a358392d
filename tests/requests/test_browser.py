"""The whole path in Chromium: Alex asks, Dana approves and executes after a fresh sign-in,
Alex downloads and checks the certificate; axe finds nothing on any page of the way."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import expect
from sqlalchemy import update

from portal.auth.models import WebSession
from portal.db import commit, db
from tests.support.browser import SCREENSHOTS, assert_accessible, screenshot, sign_in_with_form
from tests.support.deletion import collect
from tests.support.factories import account_person
from tests.support.identity import ACCOUNTS, PASSWORD

pytestmark = pytest.mark.browser


@pytest.fixture
def settings(database_url: str, idp: Any) -> dict[str, Any]:
    """The real identity provider; no mail server (mail stays in the outbox)."""
    from tests.support.config import portal_settings

    return portal_settings(database_url, idp[0].issuer, "http://localhost")


def look(page: Any, name: str) -> None:
    assert_accessible(page)
    screenshot(page, name)


def test_request_approve_execute_and_download_the_certificate(
        app: Flask, page: Any, browser: Any, live_server: str, catalog: int,
        tmp_path: Path) -> None:
    sign_in_with_form(page, live_server, ACCOUNTS["alex"].sub, PASSWORD)
    with app.app_context():
        collect(account_person(app, "alex"))
        commit()

    page.goto("/requests/")
    look(page, "requests-index-empty")
    with page.expect_navigation():
        page.get_by_role("link", name="Request deletion").click()
    with page.expect_navigation():
        page.get_by_role("button", name="Send my deletion request").click()
    expect(page.get_by_role("heading", name="There is a problem")).to_be_visible()
    look(page, "requests-new-error")
    page.get_by_label("Only the categories I choose").check()
    page.get_by_label("Keystrokes").check()
    page.get_by_label("Clicks").check()
    page.get_by_label("Your reason (optional)").fill("I am leaving the team.")
    page.get_by_label("Also withdraw my consent").check()
    look(page, "requests-new")
    with page.expect_navigation():
        page.get_by_role("button", name="Send my deletion request").click()
    expect(page.get_by_role("heading", name="Deletion request received")).to_be_visible()
    look(page, "requests-submitted")
    with page.expect_navigation(url=re.compile(r".*/requests/[0-9a-f-]{36}$")):
        page.get_by_role("link", name="See your request").click()
    reference = page.url.rstrip("/").rsplit("/", 1)[1]
    look(page, "requests-show-received")
    with page.expect_navigation():
        page.get_by_role("link", name="Cancel this request").click()
    look(page, "requests-cancel")
    with page.expect_navigation():
        page.get_by_role("link", name="Keep my request").click()
    with app.app_context():
        from portal.catalog.notices import find_section
        from portal.catalog.objections import file_objection

        section = find_section("sensitivity_ratings")
        assert section is not None
        objection_id = file_objection(account_person(app, "alex"), section,
                                      "My ratings are mine").id
        commit()

    dpo = browser.new_context(base_url=live_server, locale="en-GB").new_page()
    sign_in_with_form(dpo, live_server, ACCOUNTS["dana"].sub, PASSWORD)
    dpo.goto("/dpo/requests")
    assert "Alex Morgan" in dpo.locator("table").first.inner_text()
    look(dpo, "dpo-queue")
    dpo.goto(f"/dpo/objections/{objection_id}")
    look(dpo, "dpo-objection")
    dpo.goto("/dpo/requests")
    with dpo.expect_navigation():
        dpo.get_by_role("link", name="Deletion").first.click()
    assert "Keystrokes" in dpo.locator("main").inner_text()
    look(dpo, "dpo-show-received")
    with dpo.expect_navigation():
        dpo.get_by_role("link", name="Refuse, with reasons").click()
    look(dpo, "dpo-refuse")
    dpo.go_back()
    with dpo.expect_navigation():
        dpo.get_by_role("link", name="Approve in part (keep some categories, with reasons)").click()
    with dpo.expect_navigation():
        dpo.get_by_role("button", name="Approve in part").click()
    look(dpo, "dpo-approve-in-part-error")
    dpo.goto(f"/dpo/requests/{reference}")
    with dpo.expect_navigation():
        dpo.get_by_role("link", name="Extend the deadline (once)").click()
    look(dpo, "dpo-extend")
    dpo.go_back()
    with dpo.expect_navigation():
        dpo.get_by_role("link", name="Approve the deletion").click()
    look(dpo, "dpo-approve")
    with dpo.expect_navigation():
        dpo.get_by_role("button", name="Approve the deletion").click()
    expect(dpo.get_by_text("Approved. The employee has been told.")).to_be_visible()
    look(dpo, "dpo-show-approved")

    # Dana's sign-in is an hour old: deleting sends her to the provider (OIDC max_age) first.
    with app.app_context():
        db.execute(update(WebSession).values(
            authenticated_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)))
        commit()
    with dpo.expect_request(lambda request: "max_age=" in request.url):
        dpo.get_by_role("link", name="Delete the data").click()
    dpo.wait_for_url(f"{live_server}/dpo/requests/{reference}/execute")
    look(dpo, "dpo-execute")
    with dpo.expect_navigation(url=f"{live_server}/dpo/requests/{reference}/executed"):
        dpo.get_by_role("button", name="Delete the data now").click()
    expect(dpo.get_by_role("heading", name="Data deleted")).to_be_visible()
    look(dpo, "dpo-executed")

    page.reload()
    expect(page.get_by_role("heading", name="Deleted", exact=True)).to_be_visible()
    look(page, "requests-show-executed")
    with page.expect_download() as signed:
        page.get_by_role("link", name="Download the signed certificate file").click()
    certificate = tmp_path / signed.value.suggested_filename
    signed.value.save_as(certificate)
    jwks = tmp_path / "jwks.json"
    jwks.write_text(page.request.get("/.well-known/jwks.json").text())
    result = app.test_cli_runner().invoke(args=["receipts", "verify", str(certificate),
                                                "--key", str(jwks)])
    assert result.exit_code == 0 and "VALID: certificate of deletion" in result.output
    with page.expect_download() as printed:
        page.get_by_role("link", name="Download the certificate (PDF)").click()
    pdf = tmp_path / "certificate.pdf"
    printed.value.save_as(pdf)
    assert pdf.read_bytes().startswith(b"%PDF")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    subprocess.run(["pdftoppm", "-png", "-r", "60", str(pdf),
                    str(SCREENSHOTS / "deletion-certificate")], check=True)

    page.goto("/requests/")
    look(page, "requests-index")

"""My data in Chromium: the page, the download form, the ZIP opened, the access log; axe clean."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from portal.catalog.document import SHIPPED_CATALOG, read_catalog_file
from portal.catalog.publication import load_catalog
from portal.db import commit
from tests.support.browser import SCREENSHOTS, assert_accessible, screenshot, sign_in_with_form
from tests.support.downloads import COLLEAGUE, days_ago, message, pointer_events, store
from tests.support.identity import ACCOUNTS, PASSWORD

pytestmark = pytest.mark.browser


def test_see_download_and_open_my_data(app: Flask, page: Any, live_server: str,
                                       tmp_path: Path) -> None:
    with app.app_context():
        load_catalog(read_catalog_file(SHIPPED_CATALOG), published_by="tests")
        commit()
    sign_in_with_form(page, live_server, ACCOUNTS["alex"].sub, PASSWORD)
    page.wait_for_url(f"{live_server}/")
    store(app, "alex", "pointer", pointer_events(days_ago(2), 25))
    store(app, "alex", "conversations", [
        message(days_ago(1), 1, "self", "Can we move the release review to Thursday?"),
        message(days_ago(1, hour=13), 2, COLLEAGUE, "Only the colleague's own words")],
        dss_level=4)

    with page.expect_navigation(url=f"{live_server}/my-data"):
        page.get_by_role("link", name="My data", exact=True).click()
    assert page.get_by_role("heading", name="Pointer movements").is_visible()
    assert page.get_by_text("Can we move the release review to Thursday?").is_visible()
    assert "Only the colleague's own words" not in page.content()
    assert_accessible(page)
    screenshot(page, "my-data")

    with page.expect_navigation(url=f"{live_server}/my-data/download"):
        page.get_by_role("link", name="Download a copy of all your data").click()
    assert_accessible(page)
    screenshot(page, "my-data-download-form")
    page.get_by_label("Clicks").uncheck()
    with page.expect_download() as started:
        page.get_by_role("button", name="Download my data").click()
    download = started.value
    assert download.suggested_filename.startswith("my-data-")
    assert download.suggested_filename.endswith(".zip")
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)

    with zipfile.ZipFile(saved) as archive:
        assert archive.testzip() is None
        manifest = json.loads(archive.read("manifest.json"))
        assert "collected/clicks.jsonl" not in archive.namelist()
        assert {item["key"]: item["events"] for item in manifest["categories"]}["pointer"] == 25
        summary = archive.read("summary.pdf")
    (tmp_path / "summary.pdf").write_bytes(summary)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    subprocess.run(["pdftoppm", "-png", "-r", "60", str(tmp_path / "summary.pdf"),
                    str(SCREENSHOTS / "my-data-summary-pdf")], check=True)

    with page.expect_navigation(url=f"{live_server}/access-log"):
        page.get_by_role("link", name="Who accessed my data", exact=True).first.click()
    assert page.get_by_text("No one else has accessed your data").is_visible()
    assert_accessible(page)
    screenshot(page, "access-log-empty")

    # The error summary of the form is accessible too.
    page.goto("/my-data/download")
    for box in page.locator("input[name=categories]").all():
        box.uncheck()
    with page.expect_navigation():
        page.get_by_role("button", name="Download my data").click()
    assert page.get_by_role("link", name="Choose at least one category to download.").is_visible()
    assert_accessible(page)
    screenshot(page, "my-data-download-form-error")

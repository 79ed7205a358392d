"""HR in Chromium: filter, export a CSV and a PDF report; axe finds nothing on the page."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from portal.hr.service import EXPORT_COLUMNS
from tests.support.browser import SCREENSHOTS, assert_accessible, screenshot, sign_in_with_form
from tests.support.hr import T0, add_people, decide
from tests.support.identity import ACCOUNTS, PASSWORD


def test_hr_filters_and_exports_a_csv_and_a_pdf(
        app: Flask, catalog: int, page: Any, live_server: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    specs = ([(f"Engineer {n}", "Engineering", "Berlin") for n in range(7)]
             + [(f"Designer {n}", "Design", "Munich") for n in range(6)]
             + [("Sam Sales", "Sales", "Vienna")])
    ids = add_people(app, specs)
    for index, person_id in enumerate(ids.values()):
        if index % 3:
            decide(app, monkeypatch, person_id, "pointer", "grant",
                   T0 + dt.timedelta(days=5 * index))
        if index % 2:
            decide(app, monkeypatch, person_id, "clicks", "refuse",
                   T0 + dt.timedelta(days=4 * index))

    sign_in_with_form(page, live_server, ACCOUNTS["chris"].sub, PASSWORD, next_path="/hr/")
    page.wait_for_url(f"{live_server}/hr/")
    assert page.get_by_role("heading", level=1).inner_text() == "Consent records"
    assert_accessible(page)
    screenshot(page, "hr-index")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("table.hr-rates").screenshot(path=str(SCREENSHOTS / "hr-rates.png"))
    page.locator("ul.hr-charts").screenshot(path=str(SCREENSHOTS / "hr-charts.png"))

    page.get_by_label("Department", exact=True).select_option("Engineering")
    with page.expect_navigation(url="**/hr/?department=Engineering**"):
        page.get_by_role("button", name="Apply filters").click()
    caption = page.locator("table.hr-records caption").inner_text()
    assert caption.startswith("7 consent records")
    assert_accessible(page)

    # No purpose: the error summary links to the field, and nothing is exported.
    with page.expect_navigation():
        page.get_by_role("button", name="Export", exact=True).click()
    summary = page.locator(".error-summary")
    assert "Enter what the export is for." in summary.inner_text()
    assert_accessible(page)
    screenshot(page, "hr-export-error")
    summary.get_by_role("link").first.click()
    assert page.evaluate("document.activeElement.id") == "purpose"

    page.get_by_label("What is this export for?").fill("Works council audit of consent 2026")
    page.get_by_label("CSV (spreadsheet, plain text)").check()
    with page.expect_download() as csv_download:
        page.get_by_role("button", name="Export", exact=True).click()
    assert csv_download.value.suggested_filename.endswith(".csv")
    saved = tmp_path / "records.csv"
    csv_download.value.save_as(saved)
    table = list(csv.reader(io.StringIO(saved.read_text(encoding="utf-8"), newline="")))
    assert tuple(table[0]) == EXPORT_COLUMNS
    assert {row[3] for row in table[1:]} == {"Engineering"} and len(table) == 8

    page.get_by_label("What is this export for?").fill("Works council audit of consent 2026")
    page.get_by_label("PDF summary report (figures, no names)").check()
    with page.expect_download() as pdf_download:
        page.get_by_role("button", name="Export", exact=True).click()
    assert pdf_download.value.suggested_filename.endswith(".pdf")
    report = SCREENSHOTS / "hr-report.pdf"
    pdf_download.value.save_as(report)
    assert report.read_bytes().startswith(b"%PDF")

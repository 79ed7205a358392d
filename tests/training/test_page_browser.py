"""Training pages in Chromium: the person's (English, German, keyboard, no JavaScript), the
admin's list and the DPO's section; axe finds nothing on any of them."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import Browser, Page

from portal.db import commit
from portal.requests import service
from portal.requests.models import DeletionScope
from tests.support.browser import (
    assert_accessible,
    follow_link_by_keyboard,
    screenshot,
    sign_in_with_form,
)
from tests.support.factories import account_person, publish_shipped_catalog
from tests.support.identity import ACCOUNTS, PASSWORD
from tests.support.training_views import (
    add_client,
    add_model,
    add_snapshot,
    hold,
    name_training_purposes,
    record_read,
)

pytestmark = pytest.mark.browser

SENSITIVE = ("412 records left out: made while a confidential or strictly confidential "
             "document (DSS level 3 or 4) was open.")
#: What has focus and whether it is the link wanted.


def _sign_in(page: Page, live_server: str, who: str) -> None:
    sign_in_with_form(page, live_server, ACCOUNTS[who].sub, PASSWORD)
    page.wait_for_url(f"{live_server}/")


def _datasets(app: Flask) -> None:
    """Alex and Bea in dataset 12, Alex in the retired dataset 13; a model on both."""
    alex, bea = account_person(app, "alex"), account_person(app, "bea")
    with app.app_context():
        client = add_client()
        twelve = add_snapshot(client, 12, categories=("keystrokes", "pointer"))
        hold(twelve, alex, "keystrokes", 1234, {"sensitive_document": 412, "no_consent": 1})
        hold(twelve, alex, "pointer", 56)
        hold(twelve, bea, "keystrokes", 4321, {"above_max_dss": 9})
        thirteen = add_snapshot(client, 13, retired=True)
        hold(thirteen, alex, "keystrokes", 5)
        add_model(client, "helper-llm", "3.1", [twelve, thirteen])
        record_read(twelve, [alex, bea])
        commit()


@pytest.fixture
def published(app: Flask) -> None:
    publish_shipped_catalog(app)
    with app.app_context():
        name_training_purposes()
        commit()


def _bea_signs_in_once(browser: Browser, live_server: str) -> None:
    """Bea, who shares dataset 12 with Alex, exists once she has signed in."""
    other = browser.new_context(base_url=live_server)
    try:
        _sign_in(other.new_page(), live_server, "bea")
    finally:
        other.close()


def test_the_person_finds_reads_and_understands_their_training_page(
        app: Flask, browser: Browser, page: Page, live_server: str, published: None) -> None:
    _sign_in(page, live_server, "alex")
    _bea_signs_in_once(browser, live_server)
    _datasets(app)

    with page.expect_navigation(url=f"{live_server}/my-data"):
        page.get_by_role("link", name="My data", exact=True).click()
    # The keyboard alone reaches the link to the training page and follows it.
    follow_link_by_keyboard(page, live_server, "/my-data/training")

    assert page.get_by_role("heading", name="Your records in AI training", level=1).is_visible()
    assert page.get_by_role("heading", name="Training dataset 12: Task assistant").is_visible()
    assert page.get_by_text(SENSITIVE).is_visible()
    assert page.get_by_role("row", name="Keystrokes 1,234").is_visible()
    assert page.get_by_text("helper-llm, version 3.1").first.is_visible()
    assert "4,321" not in page.content()
    assert_accessible(page)
    screenshot(page, "training-my-data-en")

    with page.expect_navigation(url=f"{live_server}/access-log"):
        page.get_by_role("link", name="See who accessed your data").first.click()
    assert page.get_by_text("Training dataset 12 for the purpose “Task assistant” read 1,234 of "
                            "your records in “Keystrokes”, 56 of your records in “Pointer "
                            "movements”.").is_visible()
    assert_accessible(page)
    screenshot(page, "training-access-log-en")

    page.goto("/my-data/training")
    page.get_by_label("Language").select_option("de")
    with page.expect_navigation():
        page.get_by_role("button", name="Change language").click()
    assert page.get_by_role("heading", name="Ihre Daten im KI-Training", level=1).is_visible()
    assert page.get_by_text("412 Datensätze nicht aufgenommen: entstanden, während ein "
                            "vertrauliches oder streng vertrauliches Dokument (DSS-Stufe 3 "
                            "oder 4) geöffnet war.").is_visible()
    assert page.get_by_role("row", name="Tastatureingaben 1.234").is_visible()
    assert_accessible(page)
    screenshot(page, "training-my-data-de")


def test_the_page_works_without_javascript(app: Flask, browser: Browser, live_server: str,
                                           published: None) -> None:
    context = browser.new_context(base_url=live_server, locale="en-GB",
                                  java_script_enabled=False)
    try:
        tab = context.new_page()
        _sign_in(tab, live_server, "alex")
        _bea_signs_in_once(browser, live_server)
        _datasets(app)
        tab.goto("/my-data/training")
        assert tab.get_by_text(SENSITIVE).is_visible()
        assert tab.get_by_role("heading", name="Training dataset 13: Task assistant").is_visible()
    finally:
        context.close()


def test_the_admin_list_and_the_dpo_section(app: Flask, browser: Browser, live_server: str,
                                            published: None) -> None:
    contexts: dict[str, Any] = {}
    try:
        for who in ("alex", "bea", "eli", "dana"):
            contexts[who] = browser.new_context(base_url=live_server, locale="en-GB")
            _sign_in(contexts[who].new_page(), live_server, who)
        _datasets(app)
        with app.app_context():
            request = service.submit_deletion_request(account_person(app, "alex"),
                                                      scope=DeletionScope.ALL)
            commit()
            reference = request.reference

        admin = contexts["eli"].pages[0]
        admin.goto("/admin/")
        with admin.expect_navigation(url=f"{live_server}/admin/training/snapshots"):
            admin.get_by_role("link", name="Training datasets: purposes, counts, states and "
                                           "models").click()
        assert admin.get_by_role("heading", name="Training datasets", level=1).is_visible()
        assert admin.get_by_text("2 people, 5,611 records in all").is_visible()
        assert ACCOUNTS["alex"].name not in admin.content()
        assert_accessible(admin)
        screenshot(admin, "training-admin-snapshots")

        dpo = contexts["dana"].pages[0]
        dpo.goto(f"/dpo/requests/{reference}")
        assert dpo.get_by_role("heading", name="Training datasets holding this person's "
                                             "records").is_visible()
        assert dpo.get_by_text("Keystrokes: 1,234 records used").is_visible()
        assert "4,321" not in dpo.content()
        assert_accessible(dpo)
        screenshot(dpo, "training-dpo-request")
    finally:
        for context in contexts.values():
            context.close()

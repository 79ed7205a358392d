"""The person's training page in Chromium, after a dataset was built for real: asked for through
the API, built by the worker's command. Signed in through the identity provider, reached with
the keyboard from My data, read in English and German, and checked by axe."""

from __future__ import annotations

import pytest
from flask import Flask
from playwright.sync_api import Browser, Page

from portal.db import commit
from tests.support.browser import (
    assert_accessible,
    follow_link_by_keyboard,
    screenshot,
    sign_in_with_form,
)
from tests.support.factories import withdraw
from tests.support.identity import ACCOUNTS, PASSWORD
from tests.support.training_e2e import (
    KEYS,
    SENSITIVE,
    SENSITIVE_DE,
    ask,
    collect,
    create_client,
    person,
    register_model,
    work,
)

pytestmark = pytest.mark.browser

#: Where the focus is: the href of the focused element, if any.


def _sign_in(page: Page, live_server: str, who: str) -> None:
    sign_in_with_form(page, live_server, ACCOUNTS[who].sub, PASSWORD)
    page.wait_for_url(f"{live_server}/")


@pytest.mark.usefixtures("catalog")
def test_the_person_reads_a_dataset_built_for_real(app: Flask, browser: Browser, page: Page,
                                                   live_server: str) -> None:
    _sign_in(page, live_server, "alex")
    other = browser.new_context(base_url=live_server)
    try:
        _sign_in(other.new_page(), live_server, "bea")
    finally:
        other.close()
    token, _secret = create_client(app)
    collect(app, grant_signed_in=True)
    api = app.test_client()
    public_id = ask(api, token)
    assert "built 1 part(s)" in work(app)
    register_model(api, token, public_id)

    page.goto("/")
    with page.expect_navigation(url=f"{live_server}/my-data"):
        page.get_by_role("link", name="My data", exact=True).click()
    # The keyboard alone reaches the link to the training page and follows it.
    follow_link_by_keyboard(page, live_server, "/my-data/training")

    assert page.get_by_role("heading", name="Your records in AI training", level=1).is_visible()
    assert page.get_by_role("heading",
                            name="Training dataset 1: Code and text assistance").is_visible()
    assert page.get_by_role("row", name="Keystrokes 2").is_visible()
    assert page.get_by_text(SENSITIVE).is_visible()
    assert page.get_by_text("completion-llm, version 2.0").first.is_visible()
    assert "bea-plain" not in page.content() and "more sensitive than" not in page.content()
    assert_accessible(page)
    screenshot(page, "training-e2e-my-data-en")

    page.get_by_label("Language").select_option("de")
    with page.expect_navigation():
        page.get_by_role("button", name="Change language").click()
    assert page.get_by_role("heading", name="Ihre Daten im KI-Training", level=1).is_visible()
    assert page.get_by_role("heading", name="Trainingsdatensatz 1: Unterstützung beim "
                                            "Schreiben von Code und Text").is_visible()
    assert page.get_by_role("row", name="Tastatureingaben 2").is_visible()
    assert page.get_by_text(SENSITIVE_DE).is_visible()
    assert_accessible(page)
    screenshot(page, "training-e2e-my-data-de")

    # After Alex withdraws, the dataset still lists the records, marked outdated.
    with app.app_context():
        withdraw(person("sub-alex"), KEYS)
        commit()
    page.reload()
    assert page.get_by_text("Als veraltet markiert", exact=True).first.is_visible()
    assert page.get_by_role("row", name="Tastatureingaben 2").is_visible()
    assert_accessible(page)
    screenshot(page, "training-e2e-my-data-outdated-de")

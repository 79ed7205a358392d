"""The privacy admin's list of training datasets: counts, states and models, and no one named."""

from __future__ import annotations

import pytest
from flask import Flask

from portal.db import commit
from tests.support.factories import account_person
from tests.support.identity import ACCOUNTS, SignIn, signed_in
from tests.support.training_views import (
    add_client,
    add_model,
    add_snapshot,
    hold,
    name_training_purposes,
)


@pytest.fixture
def datasets(app: Flask, sign_in: SignIn, catalog: int) -> None:
    """Alex and Bea in dataset 7 (outdated), Alex in dataset 8 (retired); one model on 7."""
    for who in ("alex", "bea"):
        signed_in(app, sign_in, who)
    alex, bea = account_person(app, "alex"), account_person(app, "bea")
    with app.app_context():
        name_training_purposes()
        client = add_client("Assistant pipeline")
        # No totals on dataset 7: the list adds up its holdings instead.
        seven = add_snapshot(client, 7, categories=("keystrokes", "pointer"), max_dss_level=2,
                             outdated=True)
        hold(seven, alex, "keystrokes", 1234, {"sensitive_document": 412})
        hold(seven, bea, "keystrokes", 77, {"above_max_dss": 9})
        eight = add_snapshot(client, 8, retired=True, totals={"included": 5, "excluded": {}})
        hold(eight, alex, "keystrokes", 5)
        add_model(client, "helper-llm", "3.1", [seven])
        commit()


def test_the_admin_sees_every_dataset_with_counts_and_no_names(
        app: Flask, sign_in: SignIn, datasets: None) -> None:
    eli = signed_in(app, sign_in, "eli")
    assert 'href="/admin/training/snapshots"' in eli.get("/admin/").get_data(as_text=True)
    page = eli.get("/admin/training/snapshots").get_data(as_text=True)
    assert "Assistant pipeline" in page and "Task assistant" in page
    assert "Keystrokes: 1,311" in page and "Pointer movements: 0" in page
    assert "2 people, 1,311 records in all" in page
    assert "Made while a DSS 3 or 4 document was open: 412" in page
    assert "Above the dataset&#39;s DSS level: 9" in page
    assert page.index("DSS 3 or 4 document was open: 412") < page.index("DSS level: 9")
    assert "Nothing left out" in page  # dataset 8, whose totals say so
    assert "DSS level up to 2" in page
    assert "Marked outdated" in page and "Retired: deleted" in page
    assert "helper-llm 3.1" in page
    for who in ("alex", "bea"):
        account = ACCOUNTS[who]
        assert account.name not in page and account.sub not in page
        assert account.email not in page


def test_the_list_says_when_there_is_none(app: Flask, sign_in: SignIn, catalog: int) -> None:
    page = signed_in(app, sign_in, "eli").get("/admin/training/snapshots").get_data(as_text=True)
    assert "No training dataset yet" in page


@pytest.mark.parametrize("who", ["alex", "chris", "dana"])
def test_only_the_privacy_admin_opens_it(app: Flask, sign_in: SignIn, datasets: None,
                                         who: str) -> None:
    assert signed_in(app, sign_in, who).get("/admin/training/snapshots").status_code == 403

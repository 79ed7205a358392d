"""The request pages through HTTP: the employee's and the DPO's paths, and who may see what."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.db import commit
from portal.requests import service
from portal.requests.models import RequestState
from tests.support.config import portal_settings
from tests.support.deletion import collect
from tests.support.factories import account_person
from tests.support.forms import csrf_token
from tests.support.identity import SignIn, signed_in
from tests.support.smtp import Inbox


@pytest.fixture
def settings(database_url: str, idp: Any, smtp: tuple[Inbox, int]) -> dict[str, Any]:
    """The real identity provider, and mail through the test SMTP server."""
    values = portal_settings(database_url, idp[0].issuer, "http://localhost")
    values.update(SMTP_HOST="127.0.0.1", SMTP_PORT=smtp[1], SMTP_SECURITY="none",
                  DPO_TEAM_EMAIL="privacy-team@example.com")
    return values


@pytest.fixture
def clients(app: Flask, sign_in: SignIn, catalog: int) -> dict[str, FlaskClient]:
    people = {who: signed_in(app, sign_in, who) for who in ("alex", "bea", "dana")}
    with app.app_context():
        collect(account_person(app, "alex"))
        commit()
    return people


def reference_of(response: Any) -> str:
    match = re.search(r"/requests/([0-9a-f-]{36})", response.headers["Location"])
    assert match
    return match.group(1)


def submit(client: FlaskClient, **data: Any) -> Any:
    return client.post("/requests/new",
                       data={"csrf_token": csrf_token(client, "/consent/history"), **data})


def test_the_whole_path_through_the_pages(app: Flask, clients: dict[str, FlaskClient],
                                          smtp: tuple[Inbox, int]) -> None:
    alex, dana = clients["alex"], clients["dana"]
    assert "Request deletion" in alex.get("/requests/").get_data(as_text=True)
    response = submit(alex, scope="categories", categories=["keystrokes"],
                      reason="Please", withdraw="y")
    assert response.status_code == 303
    response.close()  # as a server does once the answer is sent: then the mail goes out
    assert [message["Subject"] for message in smtp[0].to("alex@example.com")] == [
        "Your deletion request has been received"]
    reference = reference_of(response)
    page = alex.get(response.headers["Location"]).get_data(as_text=True)
    assert "Deletion request received" in page and reference in page
    page = alex.get(f"/requests/{reference}").get_data(as_text=True)
    assert "Consent withdrawn, as you asked" in page and "Cancel this request" in page

    queue = dana.get("/dpo/requests").get_data(as_text=True)
    assert "Alex Morgan" in queue and "On time" in queue
    page = dana.get(f"/dpo/requests/{reference}").get_data(as_text=True)
    assert "Keystrokes" in page and ">2<" in page  # two batches, counted, never opened
    assert "beta-typed" not in page and "gamma-typed" not in page
    token = csrf_token(dana, "/consent/history")
    assert dana.post(f"/dpo/requests/{reference}/refuse",
                     data={"csrf_token": token, "reason": ""}).status_code == 400
    response = dana.post(f"/dpo/requests/{reference}/approve", data={"csrf_token": token})
    assert response.status_code == 303
    assert dana.get(f"/dpo/requests/{reference}/execute").status_code == 200
    response = dana.post(f"/dpo/requests/{reference}/execute", data={"csrf_token": token})
    assert response.status_code == 303, response.get_data(as_text=True)
    assert "Data deleted" in dana.get(response.headers["Location"]).get_data(as_text=True)
    again = dana.post(f"/dpo/requests/{reference}/execute", data={"csrf_token": token})
    assert again.status_code == 409 and "Nothing was changed" in again.get_data(as_text=True)

    page = alex.get(f"/requests/{reference}").get_data(as_text=True)
    assert "Download the certificate (PDF)" in page
    pdf = alex.get(f"/requests/{reference}/certificate.pdf")
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")
    jws = alex.get(f"/requests/{reference}/certificate.jws")
    assert jws.status_code == 200 and jws.get_data(as_text=True).count(".") == 2


def test_who_may_see_what(app: Flask, clients: dict[str, FlaskClient]) -> None:
    alex, bea, dana = clients["alex"], clients["bea"], clients["dana"]
    reference = reference_of(submit(alex, scope="all"))
    for path in ("", "/cancel", "/certificate.pdf", "/certificate.jws", "/submitted"):
        assert bea.get(f"/requests/{reference}{path}").status_code == 404, path
    for path in ("/dpo/requests", f"/dpo/requests/{reference}",
                 f"/dpo/requests/{reference}/approve", f"/dpo/requests/{reference}/execute"):
        assert alex.get(path).status_code == 403, path
        assert bea.get(path).status_code == 403, path
    assert alex.post(f"/dpo/requests/{reference}/approve",
                     data={"csrf_token": csrf_token(alex, "/consent/history")}).status_code == 403
    anonymous = app.test_client()
    assert anonymous.get("/requests/").status_code == 302
    assert anonymous.get("/dpo/requests").status_code == 302
    # Without the CSRF token nothing happens.
    assert dana.post(f"/dpo/requests/{reference}/approve", data={}).status_code == 400
    assert alex.post(f"/requests/{reference}/cancel", data={}).status_code == 400
    with app.app_context():
        found = service.find_request(reference)
        assert found is not None and found.state is RequestState.RECEIVED


def test_bad_input_is_a_form_error_and_changes_nothing(app: Flask,
                                                       clients: dict[str, FlaskClient]) -> None:
    alex = clients["alex"]
    for data in ({}, {"scope": "categories"}, {"scope": "categories", "categories": ["nope"]},
                 {"scope": "range", "since": "2026-03-02", "until": "2026-03-01"},
                 {"scope": "range", "since": "yesterday"}, {"scope": "everything"}):
        response = submit(alex, **data)
        assert response.status_code == 400, data
        assert "There is a problem" in response.get_data(as_text=True)
    with app.app_context():
        assert service.own_requests(account_person(app, "alex")) == []


def test_cancel_and_a_stale_sign_in_before_execution(
        app: Flask, clients: dict[str, FlaskClient], monkeypatch: pytest.MonkeyPatch) -> None:
    alex, dana = clients["alex"], clients["dana"]
    first = reference_of(submit(alex, scope="all"))
    assert "Cancel your deletion request?" in alex.get(
        f"/requests/{first}/cancel").get_data(as_text=True)
    response = alex.post(f"/requests/{first}/cancel",
                         data={"csrf_token": csrf_token(alex, "/consent/history")})
    assert response.status_code == 303
    assert "Nothing was deleted" in alex.get(f"/requests/{first}").get_data(as_text=True)

    second = reference_of(submit(alex, scope="all"))
    token = csrf_token(dana, "/consent/history")
    dana.post(f"/dpo/requests/{second}/approve", data={"csrf_token": token})
    monkeypatch.setattr("portal.requests.views.signed_in_within", lambda age: False)
    response = dana.post(f"/dpo/requests/{second}/execute", data={"csrf_token": token})
    assert response.status_code == 302
    assert "/auth/login" in response.headers["Location"]
    assert "max_age=900" in response.headers["Location"]
    with app.app_context():
        found = service.find_request(second)
        assert found is not None and found.state is RequestState.APPROVED


def test_objections_are_decided_by_the_dpo_and_answered_on_the_requests_page(
        app: Flask, clients: dict[str, FlaskClient]) -> None:
    from portal.catalog.notices import find_section
    from portal.catalog.objections import file_objection

    alex, dana = clients["alex"], clients["dana"]
    with app.app_context():
        section = find_section("sensitivity_ratings")
        assert section is not None
        objection = file_objection(account_person(app, "alex"), section, "My ratings are private")
        commit()
        objection_id = objection.id
    assert "Objection" in dana.get("/dpo/requests").get_data(as_text=True)
    assert alex.get(f"/dpo/objections/{objection_id}").status_code == 403
    page = dana.get(f"/dpo/objections/{objection_id}").get_data(as_text=True)
    assert "My ratings are private" in page
    token = csrf_token(dana, "/consent/history")
    assert dana.post(f"/dpo/objections/{objection_id}",
                     data={"csrf_token": token, "decision": "dismissed"}).status_code == 400
    response = dana.post(f"/dpo/objections/{objection_id}/extend", data={
        "csrf_token": token, "extend-months": "1", "extend-reason": "We ask the team"})
    assert response.status_code == 303
    response = dana.post(f"/dpo/objections/{objection_id}", data={
        "csrf_token": token, "decision": "dismissed", "reason": "Needed to protect documents"})
    assert response.status_code == 303
    again = dana.post(f"/dpo/objections/{objection_id}", data={
        "csrf_token": token, "decision": "upheld", "reason": "Changed my mind"})
    assert again.status_code == 409
    page = alex.get("/requests/").get_data(as_text=True)
    assert "Dismissed" in page and "Needed to protect documents" in page
    assert "supervisory authority" in page and "We ask the team" in page
    assert "Dismissed" in alex.get("/categories/sensitivity_ratings").get_data(as_text=True)

"""The privacy admin's pages: who may open them, and publishing a version step by step."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from portal.catalog.models import CategoryNotice, NoticeVersion
from portal.db import db
from tests.support.catalog import (
    category,
    changed_document,
    new_purpose,
    publish,
    shipped_raw,
    to_yaml,
    versions,
)
from tests.support.factories import person_id
from tests.support.forms import csrf_token
from tests.support.identity import ACCOUNTS, SignIn

ADMIN_PAGES = ["/admin/", "/admin/notices/new", "/admin/notices/1", "/admin/notices/new/review",
               "/admin/notices/new/check"]


def _changed_yaml() -> str:
    raw = shipped_raw()
    new_purpose("keystrokes")(raw)
    category(raw, "clicks")["retention_days"] = 60
    return to_yaml(raw)


@pytest.mark.parametrize("who", ["alex", "chris", "dana"])
def test_only_privacy_admins_open_admin_pages(shipped: Flask, client: FlaskClient,
                                              sign_in: SignIn, who: str) -> None:
    sign_in.login(client, who)
    for path in ADMIN_PAGES:
        assert client.get(path).status_code == 403, path
    token = csrf_token(client)
    assert client.post("/admin/notices/new", data={"csrf_token": token,
                                                   "catalog_text": _changed_yaml()},
                       ).status_code == 403
    assert "/admin/" not in client.get("/").get_data(as_text=True)
    assert len(versions(shipped)) == 1


def test_admin_pages_need_sign_in(shipped: Flask, client: FlaskClient) -> None:
    for path in ADMIN_PAGES:
        response = client.get(path)
        assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


def test_admin_sees_versions_with_who_approved(shipped: Flask, client: FlaskClient,
                                               sign_in: SignIn) -> None:
    publish(shipped, changed_document(new_purpose("keystrokes")),
            material={"keystrokes": "A new purpose."})
    sign_in.login(client, "eli")
    page = client.get("/admin/").get_data(as_text=True)
    assert 'href="/admin/"' in page  # the navigation's Administration entry
    assert "Version 2" in page and "Version 1" in page
    assert "Dana Novak" in page and "WC-1" in page and "Not recorded" in page
    assert "1 material" in page
    detail = client.get("/admin/notices/2").get_data(as_text=True)
    assert "A new purpose." in detail
    assert "Removed" not in detail  # a purpose was only added
    assert "Added" in detail and "Also train the meeting summariser." in detail
    assert client.get("/admin/notices/9").status_code == 404


def test_publish_a_version_from_the_admin_pages(shipped: Flask, client: FlaskClient,
                                                sign_in: SignIn) -> None:
    sign_in.login(client, "eli")
    token = csrf_token(client, "/admin/notices/new")
    response = client.post("/admin/notices/new",
                           data={"csrf_token": token, "catalog_text": _changed_yaml()})
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/notices/new/review"

    review = client.get("/admin/notices/new/review").get_data(as_text=True)
    assert "Review the changes for version 2" in review
    assert "Added" in review and "Also train the meeting summariser." in review
    assert "Removed" in review and "Kept for: 90 days" in review
    assert "Kept for: 60 days" in review
    assert 'name="material_keystrokes"' in review and 'name="material_clicks"' in review
    assert 'name="material_pointer"' not in review  # unchanged: cannot be material

    answers = {"csrf_token": token, "dpo_sign_off": "Dana Novak, 2026-11-20",
               "works_council_ref": "WC-2026-14",
               "summary_en": "Keystrokes also train the summariser; clicks are kept shorter.",
               "summary_de": "Tastatureingaben trainieren auch den Zusammenfasser.",
               "summary_fr": "Les frappes au clavier entraînent aussi le résumeur.",
               "material_keystrokes": "y", "reason_keystrokes": "A new purpose."}
    response = client.post("/admin/notices/new/review", data=answers)
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/notices/new/check"

    check = client.get("/admin/notices/new/check").get_data(as_text=True)
    assert "Check your answers before publishing version 2" in check
    for answer in ("Dana Novak, 2026-11-20", "WC-2026-14", "A new purpose.",
                   "Changed, not material: consents stay as they are."):
        assert answer in check
    assert len(versions(shipped)) == 1  # nothing is published before the last step

    assert client.post("/admin/notices/new/check", data={}).status_code == 400  # no CSRF
    response = client.post("/admin/notices/new/check", data={"csrf_token": token})
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/notices/2?published=1"
    confirmation = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Notice version 2 is published" in confirmation
    assert "What happens next" in confirmation

    [_, second] = versions(shipped)
    assert second.published_by_id == person_id(shipped, ACCOUNTS["eli"].sub)
    assert second.published_by_name == "Eli Laurent"
    assert second.change_summary["de"] == "Tastatureingaben trainieren auch den Zusammenfasser."
    assert second.change_summary["fr"] == "Les frappes au clavier entraînent aussi le résumeur."
    with shipped.app_context():
        sections = {s.category_key: s for s in db.scalars(
            select(CategoryNotice).where(CategoryNotice.notice_version_id == second.id))}
    assert sections["keystrokes"].material and sections["keystrokes"].changed
    assert sections["clicks"].changed and not sections["clicks"].material
    assert not sections["pointer"].changed
    # The draft is gone: the steps start again from the beginning.
    assert client.get("/admin/notices/new/check").headers["Location"] == "/admin/notices/new"


def test_upload_a_catalog_file(shipped: Flask, client: FlaskClient, sign_in: SignIn) -> None:
    sign_in.login(client, "eli")
    token = csrf_token(client, "/admin/notices/new")
    response = client.post("/admin/notices/new", content_type="multipart/form-data", data={
        "csrf_token": token,
        "catalog_file": (io.BytesIO(_changed_yaml().encode()), "catalog.yaml")})
    assert response.status_code == 302
    assert "Also train the meeting summariser." in client.get(
        "/admin/notices/new/review").get_data(as_text=True)


@pytest.mark.parametrize(("data", "message"), [
    (dict, "Upload the catalog file or paste it."),
    (lambda: {"catalog_text": "format: 1\n\tbroken"}, "The file is not valid YAML at line 2"),
    (lambda: {"catalog_text": _changed_yaml().replace("retention_days: 60",
                                                      "retention_days: -1")},
     "Category &#39;clicks&#39;, field &#39;retention_days&#39;: Input should be greater"),
    (lambda: {"catalog_text": to_yaml(shipped_raw())},
     "This catalog is the same as notice version 1: there is nothing to publish."),
    (lambda: {"catalog_text": _changed_yaml(),
              "catalog_file": (io.BytesIO(b"format: 1"), "catalog.yaml")},
     "Upload the catalog file or paste it, not both."),
    (lambda: {"catalog_file": (io.BytesIO("Café".encode("latin-1")), "catalog.yaml")},
     "The file must be UTF-8 text (a YAML file)."),
])
def test_a_bad_catalog_is_shown_in_the_error_summary(
        shipped: Flask, client: FlaskClient, sign_in: SignIn,
        data: Callable[[], dict[str, object]], message: str) -> None:
    sign_in.login(client, "eli")
    token = csrf_token(client, "/admin/notices/new")
    response = client.post("/admin/notices/new", data={"csrf_token": token, **data()},
                           content_type="multipart/form-data")
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert 'class="error-summary"' in page
    assert message in page
    assert client.get("/admin/notices/new/review").status_code == 302  # no draft kept


def _start_draft(client: FlaskClient) -> str:
    token = csrf_token(client, "/admin/notices/new")
    client.post("/admin/notices/new", data={"csrf_token": token, "catalog_text": _changed_yaml()})
    return token


def test_material_needs_a_reason_and_approval_is_required(
        shipped: Flask, client: FlaskClient, sign_in: SignIn) -> None:
    sign_in.login(client, "eli")
    token = _start_draft(client)
    response = client.post("/admin/notices/new/review", data={
        "csrf_token": token, "material_keystrokes": "y", "summary_en": "x"})
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Say why the change to “keystrokes” is material." in page
    assert "Enter the data protection officer's sign-off." in page
    assert "Summarise the change in Deutsch." in page
    assert "Summarise the change in Français." in page
    assert 'href="#reason_keystrokes"' in page
    assert client.get("/admin/notices/new/check").headers["Location"] == \
        "/admin/notices/new/review"


def test_a_version_published_meanwhile_voids_the_draft(
        shipped: Flask, client: FlaskClient, sign_in: SignIn) -> None:
    sign_in.login(client, "eli")
    _start_draft(client)
    publish(shipped, changed_document(new_purpose("pointer")))
    response = client.get("/admin/notices/new/review")
    assert response.headers["Location"] == "/admin/notices/new"
    assert "Another notice version was published while you worked" in client.get(
        "/admin/notices/new").get_data(as_text=True)
    with shipped.app_context():
        assert db.scalar(select(NoticeVersion.number).order_by(
            NoticeVersion.number.desc()).limit(1)) == 2


def test_the_first_version_can_be_published_from_the_admin_pages(
        app: Flask, client: FlaskClient, sign_in: SignIn) -> None:
    sign_in.login(client, "eli")
    assert "No notice version is published yet" in client.get("/admin/").get_data(as_text=True)
    token = csrf_token(client, "/admin/notices/new")
    client.post("/admin/notices/new", data={"csrf_token": token,
                                            "catalog_text": to_yaml(shipped_raw())})
    review = client.get("/admin/notices/new/review").get_data(as_text=True)
    assert "This is the first version" in review and "material_" not in review
    client.post("/admin/notices/new/review", data={
        "csrf_token": token, "dpo_sign_off": "Dana Novak", "summary_en": "First.",
        "summary_de": "Erste.", "summary_fr": "Première."})
    assert client.post("/admin/notices/new/check", data={"csrf_token": token}
                       ).status_code == 302
    [first] = versions(app)
    assert first.number == 1 and first.dpo_sign_off == "Dana Novak"


def test_a_removed_category_is_shown_on_the_version(shipped: Flask, client: FlaskClient,
                                                   sign_in: SignIn) -> None:
    def drop(raw: dict[str, object]) -> None:
        raw["categories"] = [c for c in raw["categories"]  # type: ignore[attr-defined]
                             if c["key"] != "clicks"]

    publish(shipped, changed_document(drop))
    sign_in.login(client, "eli")
    page = client.get("/admin/notices/2").get_data(as_text=True)
    assert "Removed from the catalog" in page and "<code>clicks</code>" in page
    assert "No category text changed" not in page

"""Pages every feature relies on: errors, health, headers, language choice."""

from __future__ import annotations

import html
from typing import Any, get_args

import pytest
from flask import Flask, abort
from flask.testing import FlaskClient
from sqlalchemy import select

from portal.auth.models import Person
from portal.config import Settings
from portal.db import db
from portal.i18n import LANGUAGES, TRANSLATIONS
from tests.support.identity import SignIn


@pytest.fixture
def crashing_app(app: Flask) -> Flask:
    """The app with two routes that fail on purpose, to see what a person is shown."""

    def crash() -> str:
        raise RuntimeError("database password is hunter2 at /srv/portal/secret.py line 12")

    def forbidden() -> str:
        abort(403)

    app.add_url_rule("/_test/crash", "test_crash", crash)
    app.add_url_rule("/_test/forbidden", "test_forbidden", forbidden)
    return app


@pytest.mark.parametrize(("method", "path", "code", "title"), [
    ("GET", "/no-such-page", 404, "Page not found"),
    ("GET", "/locale", 405, "This action is not allowed here"),
    ("POST", "/locale", 400, "The request could not be processed"),
    ("GET", "/_test/forbidden", 403, "You do not have access to this page"),
    ("GET", "/_test/crash", 500, "Something went wrong on our side"),
])
def test_error_pages_say_what_happened_and_nothing_internal(
        crashing_app: Flask, method: str, path: str, code: int, title: str) -> None:
    response = crashing_app.test_client().open(path, method=method)
    text = response.get_data(as_text=True)
    assert response.status_code == code
    assert f"<h1>{title}</h1>" in text
    for secret in ("hunter2", "Traceback", "secret.py", "RuntimeError", "werkzeug"):
        assert secret not in text


def test_too_many_sign_in_attempts_get_429(app: Flask, settings: dict[str, Any]) -> None:
    app.config["SIGN_IN_RATE_LIMIT"] = "3 per minute"
    client = app.test_client()
    codes = [client.get("/auth/login").status_code for _ in range(4)]
    assert codes == [302, 302, 302, 429]
    page = client.get("/auth/login")
    assert "Too many requests" in page.get_data(as_text=True)
    assert "Retry-After" in page.headers


def test_health_and_readiness(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json() == {"status": "ok", "checks": {"database": "ok"}}


def test_readiness_fails_when_the_database_is_gone(settings: dict[str, Any], tmp_path: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from portal import create_app

    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path))
    # A PostgreSQL address where nothing listens.
    down = create_app(settings | {"DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"})
    client = down.test_client()
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["checks"] == {"database": "unreachable"}
    client.set_cookie("portal_session", "a-session-from-before-the-outage")
    page = client.get("/")
    assert page.status_code == 503
    assert "The portal is briefly unavailable" in page.get_data(as_text=True)


def test_security_headers(client: FlaskClient) -> None:
    response = client.get("/")
    policy = response.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    assert "Strict-Transport-Security" not in response.headers  # only over https


def test_page_landmarks_and_language(client: FlaskClient) -> None:
    text = client.get("/", headers={"Accept-Language": "de-DE,de;q=0.9"}).get_data(as_text=True)
    assert '<html lang="de">' in text
    assert 'class="skip-link" href="#main"' in text
    assert '<main id="main"' in text and "<header" in text and "<nav" in text
    french = html.unescape(client.get("/", headers={"Accept-Language": "fr-CA,fr;q=0.9"})
                           .get_data(as_text=True))
    assert '<html lang="fr">' in french
    assert "Vos données, votre décision" in french
    assert "Aller au contenu principal" in french
    # Every language is offered in its own name, marked as that language for screen readers.
    assert '<option value="fr" lang="fr" selected>Français</option>' in french
    english = client.get("/", headers={"Accept-Language": "it-IT,en;q=0.5"}).get_data(
        as_text=True)
    assert '<html lang="en">' in english


def _csrf(client: FlaskClient) -> str:
    page = client.get("/").get_data(as_text=True)
    marker = 'name="csrf_token" value="'
    start = page.index(marker) + len(marker)
    return page[start:page.index('"', start)]


def test_language_choice_is_remembered_on_the_person(app: Flask, client: FlaskClient,
                                                     sign_in: SignIn) -> None:
    sign_in.login(client, "alex")
    response = client.post("/locale", data={"locale": "de", "csrf_token": _csrf(client),
                                            "next": "/"})
    assert response.status_code == 302 and response.headers["Location"] == "/"
    with app.app_context():
        person = db.scalar(select(Person))
        assert person is not None and person.locale == "de"
    page = client.get("/", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert '<html lang="de">' in page
    client.post("/locale", data={"locale": "fr", "csrf_token": _csrf(client), "next": "/"})
    with app.app_context():
        assert db.scalar(select(Person.locale)) == "fr"
    page = html.unescape(client.get("/", headers={"Accept-Language": "de"}).get_data(
        as_text=True))
    assert '<html lang="fr">' in page and "Se déconnecter" in page


def test_language_change_needs_csrf_and_a_known_language(client: FlaskClient) -> None:
    assert client.post("/locale", data={"locale": "de"}).status_code == 400
    bad = client.post("/locale", data={"locale": "xx", "csrf_token": _csrf(client)})
    assert bad.status_code == 400


def test_off_site_next_after_language_change_is_ignored(client: FlaskClient) -> None:
    response = client.post("/locale", data={"locale": "de", "csrf_token": _csrf(client),
                                            "next": "//evil.example/"})
    assert response.headers["Location"] == "/"


def test_every_language_is_offered_everywhere() -> None:
    # A language is added in several places; a forgotten one would be refused or untranslated.
    assert get_args(Settings.model_fields["DEFAULT_LOCALE"].annotation) == tuple(LANGUAGES)
    for code in LANGUAGES:
        assert (TRANSLATIONS / code / "LC_MESSAGES" / "messages.po").is_file(), code

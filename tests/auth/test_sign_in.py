"""Sign-in against the real provider: the happy path and every rejection."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from portal.auth.models import Person, WebSession
from portal.db import db
from tests.support.browserless_login import login_via_form
from tests.support.identity import ACCOUNTS, PASSWORD, SignIn
from tests.support.tamper_proxy import TamperProxy


def _people(app: Flask) -> list[Person]:
    with app.app_context():
        return list(db.scalars(select(Person).order_by(Person.id)))


def test_sign_in_creates_person_with_roles_and_profile(app: Flask, client: FlaskClient,
                                                       sign_in: SignIn) -> None:
    sign_in.login(client, "chris")
    page = client.get("/")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Chris Okafor" in text and "People Operations" in text and "HR" in text
    [person] = _people(app)
    assert person.subject == ACCOUNTS["chris"].sub
    assert person.issuer == app.config["OIDC_ISSUER"]
    assert person.roles == ["hr"]
    assert person.email == "chris@example.com"
    assert person.location == "Berlin"


def test_authorization_request_uses_pkce_state_and_nonce(client: FlaskClient,
                                                         sign_in: SignIn) -> None:
    query = parse_qs(urlsplit(sign_in.authorize_url(client)).query)
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) >= 43
    assert query["state"][0] and query["nonce"][0]
    assert query["response_type"] == ["code"]
    assert "openid" in query["scope"][0].split()


def test_profile_and_roles_refreshed_at_every_sign_in(app: Flask, client: FlaskClient,
                                                      sign_in: SignIn) -> None:
    sign_in.login(client, "dana")
    with app.app_context():
        person = db.scalar(select(Person))
        assert person is not None
        person.roles = ["admin"]
        person.name = "Stale Name"
        db.commit()
    client.post("/auth/logout", data={"csrf_token": _csrf(client)})
    second = app.test_client()
    sign_in.login(second, "dana")
    [person] = _people(app)
    assert person.roles == ["dpo"]
    assert person.name == "Dana Novak"


def test_same_email_other_subject_is_another_person(app: Flask, sign_in: SignIn) -> None:
    sign_in.login(app.test_client(), "alex")
    with app.app_context():
        person = db.scalar(select(Person))
        assert person is not None
        # Someone else's e-mail on a record must not let anyone in as them.
        person.email = ACCOUNTS["bea"].email
        db.commit()
    sign_in.login(app.test_client(), "bea")
    assert [p.subject for p in _people(app)] == [ACCOUNTS["alex"].sub, ACCOUNTS["bea"].sub]


def _csrf(client: FlaskClient) -> str:
    page = client.get("/auth/logout").get_data(as_text=True)
    marker = 'name="csrf_token" type="hidden" value="'
    start = page.index(marker) + len(marker)
    return page[start:page.index('"', start)]


def test_session_id_changes_at_sign_in(app: Flask, client: FlaskClient,
                                       sign_in: SignIn) -> None:
    client.get("/")  # an anonymous session exists before sign-in (CSRF token of the page)
    before = client.get_cookie("portal_session")
    assert before is not None
    sign_in.login(client, "alex")
    after = client.get_cookie("portal_session")
    assert after is not None and after.value != before.value
    planted = app.test_client()
    planted.set_cookie("portal_session", before.value)
    assert planted.get("/").get_data(as_text=True).count("Alex Morgan") == 0


def test_logout_kills_the_old_cookie(app: Flask, client: FlaskClient, sign_in: SignIn) -> None:
    sign_in.login(client, "alex")
    cookie = client.get_cookie("portal_session")
    assert cookie is not None
    response = client.post("/auth/logout", data={"csrf_token": _csrf(client)})
    assert response.status_code == 302
    # RP-initiated logout at the provider, with our post-logout address.
    location = urlsplit(response.headers["Location"])
    assert parse_qs(location.query)["post_logout_redirect_uri"] == ["http://localhost/"]
    replay = app.test_client()
    replay.set_cookie("portal_session", cookie.value)
    page = replay.get("/")
    assert "Alex Morgan" not in page.get_data(as_text=True)
    assert "Sign in with your company account" in page.get_data(as_text=True)


def test_logout_needs_post_with_csrf(client: FlaskClient, sign_in: SignIn) -> None:
    sign_in.login(client, "alex")
    assert client.post("/auth/logout").status_code == 400
    assert "Alex Morgan" in client.get("/").get_data(as_text=True)


def test_disabled_person_loses_access_at_once(app: Flask, client: FlaskClient,
                                              sign_in: SignIn) -> None:
    from portal.auth.service import disable_person

    sign_in.login(client, "bea")
    with app.app_context():
        person = db.scalar(select(Person))
        assert person is not None
        disable_person(person)
        db.commit()
        assert db.scalar(select(func.count()).select_from(WebSession)
                         .where(WebSession.person_id == person.id)) == 0
    assert "Bea Schmidt" not in client.get("/").get_data(as_text=True)
    # And signing in again is refused while disabled.
    other = app.test_client()
    response = sign_in.finish(other, sign_in.callback_url(other, "bea"))
    assert response.status_code == 400


def test_cookie_flags_over_http(client: FlaskClient, sign_in: SignIn) -> None:
    response = sign_in.finish(client, sign_in.callback_url(client, "alex"))
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert client.get("/").headers["Cache-Control"] == "no-store"


def test_secure_cookie_over_https(app: Flask) -> None:
    client = app.test_client()
    response = client.get("/", base_url="https://localhost")
    cookie = response.headers.get("Set-Cookie", "")
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Strict-Transport-Security" in response.headers


# --- rejections ------------------------------------------------------------------------------

def _refused(app: Flask, response: object) -> None:
    assert getattr(response, "status_code", None) == 400
    assert "Sign-in did not succeed" in response.get_data(as_text=True)  # type: ignore[attr-defined]
    assert _people(app) == []


def test_foreign_state_is_refused(app: Flask, client: FlaskClient, sign_in: SignIn) -> None:
    # The code and state come from another browser's sign-in.
    other = app.test_client()
    callback = sign_in.callback_url(other, "alex")
    client.get("/auth/login")
    _refused(app, sign_in.finish(client, callback))


def test_wrong_nonce_is_refused(app: Flask, client: FlaskClient, sign_in: SignIn) -> None:
    authorize = urlsplit(sign_in.authorize_url(client))
    query = parse_qs(authorize.query)
    query["nonce"] = ["a-nonce-the-portal-never-issued"]
    forged = urlunsplit(authorize._replace(query=urlencode(query, doseq=True)))
    callback = login_via_form(requests.Session(), forged, ACCOUNTS["alex"].sub, PASSWORD)
    _refused(app, sign_in.finish(client, callback))


@pytest.mark.parametrize("mode", ["foreign_audience", "foreign_audience_our_azp",
                                  "wrong_issuer", "bad_signature", "wrong_key", "alg_none"])
def test_tampered_id_token_is_refused(app: Flask, client: FlaskClient, sign_in: SignIn,
                                      tamper: TamperProxy, mode: str) -> None:
    callback = sign_in.callback_url(client, "alex")
    tamper.mode = mode  # type: ignore[assignment]
    _refused(app, sign_in.finish(client, callback))


def test_replayed_callback_is_refused(app: Flask, client: FlaskClient, sign_in: SignIn) -> None:
    callback = sign_in.callback_url(client, "alex")
    assert sign_in.finish(client, callback).status_code == 302
    replay = sign_in.finish(client, callback)
    assert replay.status_code == 400
    fresh_browser = app.test_client()
    assert sign_in.finish(fresh_browser, callback).status_code == 400


def test_provider_naming_another_issuer_is_refused(app: Flask, settings: dict[str, object],
                                                  client: FlaskClient) -> None:
    # Pin the issuer to something the discovery document does not say.
    app.extensions["portal.oidc"].expected_issuer = "http://127.0.0.1:1/evil"
    response = client.get("/auth/login")
    assert response.status_code == 503


def test_open_redirect_after_sign_in_is_refused(client: FlaskClient, sign_in: SignIn) -> None:
    callback = sign_in.callback_url(client, "alex", next="https://evil.example/")
    response = sign_in.finish(client, callback)
    assert response.headers["Location"] == "/"


@pytest.fixture(scope="module")
def thin_id_token_provider() -> Any:
    """A provider whose ID tokens carry only the subject: the rest is at userinfo."""
    from tests.support.identity import ACCOUNTS as accounts
    from tests.support.identity import CLIENT_ID, CLIENT_SECRET
    from tests.support.oidc_provider import OIDCProvider

    client = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
              "redirect_uris": ["http://localhost/auth/callback"],
              "token_endpoint_auth_method": "client_secret_basic"}
    with OIDCProvider([client], [a.provider_entry() for a in accounts.values()],
                      userinfo_only=True) as provider:
        yield provider


def test_claims_missing_from_the_id_token_come_from_userinfo(
        settings: dict[str, Any], thin_id_token_provider: Any, tmp_path: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from portal import create_app

    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path))
    app = create_app(settings | {"OIDC_ISSUER": thin_id_token_provider.issuer})
    client = app.test_client()
    sign_in = SignIn(app)
    callback = sign_in.callback_url(client, "dana")
    assert sign_in.finish(client, callback).status_code == 302
    [person] = _people(app)
    assert (person.name, person.email, person.department, person.roles) == (
        "Dana Novak", "dana@example.com", "Legal & Privacy", ["dpo"])

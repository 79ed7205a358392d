"""The demo identity provider, served on a real port and spoken to over HTTP.

The portal's own OIDC client reaches it exactly as it would a company's provider; the other
tests play that client by hand, to check what the provider promises: discovery, RS256 ID
tokens that verify with its JWKS, PKCE required, a code redeemed once, logout.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import secrets
import stat
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pytest
import requests
from flask import Flask
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.serving import BaseWSGIServer, make_server

from portal import create_app
from portal.auth import demo
from portal.auth.models import Person
from portal.auth.sessions import COOKIE_NAME
from portal.cli import upgrade_database
from portal.db import get_engine
from tests.support.postgres import PostgresCluster

TIMEOUT = 10


@dataclass
class DemoPortal:
    """The portal in demo mode, served on 127.0.0.1."""

    url: str
    app: Flask

    @property
    def issuer(self) -> str:
        return f"{self.url}/demo-idp"

    @property
    def callback(self) -> str:
        return f"{self.url}/auth/callback"


def _not_started(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    raise AssertionError("the portal is not ready yet")


def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PORTAL_"):
            monkeypatch.delenv(name)


_database_numbers = itertools.count(1)


@pytest.fixture
def empty_database(backend: str, request: pytest.FixtureRequest,
                   tmp_path: Path) -> Iterator[str]:
    """Give the test an empty database of its own (SQLite in a temporary folder)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'portal.sqlite3'}"
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    name = f"demo_idp_{next(_database_numbers)}"
    yield cluster.create_database(name)
    cluster.drop_database(name)


@pytest.fixture
def portal(empty_database: str, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[DemoPortal]:
    """Serve a demo-mode portal, threaded: its client calls its provider in the same server."""
    _clean_environment(monkeypatch)
    # Bound first, so that the base URL (and with it the issuer) names the real port.
    server: BaseWSGIServer = make_server("127.0.0.1", 0, _not_started, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setenv("PORTAL_DEMO", "1")
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("PORTAL_BASE_URL", url)
    monkeypatch.setenv("PORTAL_DATABASE_URL", empty_database)
    app = create_app()
    # From empty, through every migration: the demo tables come from 0002.
    upgrade_database(app)
    server.app = app
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield DemoPortal(url, app)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        get_engine(app).dispose()


@pytest.fixture
def http_client() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


# --- reading pages ---------------------------------------------------------------------------

@dataclass
class Form:
    action: str
    method: str
    inputs: dict[str, str] = field(default_factory=dict)
    buttons: list[str] = field(default_factory=list)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._button: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append(Form(attributes.get("action", ""),
                                   attributes.get("method", "get").lower()))
        elif tag == "input" and self.forms and attributes.get("name"):
            if attributes.get("type") == "submit":
                self.forms[-1].buttons.append(attributes.get("value", ""))
            self.forms[-1].inputs[attributes["name"]] = attributes.get("value", "")
        elif tag == "button" and self.forms:
            self._button = []

    def handle_data(self, data: str) -> None:
        if self._button is not None:
            self._button.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "button" and self._button is not None:
            self.forms[-1].buttons.append(" ".join("".join(self._button).split()))
            self._button = None


def forms(html: str) -> list[Form]:
    parser = _FormParser()
    parser.feed(html)
    return parser.forms


def form_with_button(html: str, label: str) -> Form:
    matches = [form for form in forms(html) if label in form.buttons]
    assert len(matches) == 1, f"expected one form with a {label!r} button"
    return matches[0]


def query_of(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def paths(response: requests.Response) -> list[str]:
    return [urlsplit(hop.url).path for hop in response.history]


# --- playing the client by hand --------------------------------------------------------------

@dataclass
class Flow:
    """One authorization request's secrets, as a client keeps them."""

    verifier: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    nonce: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    state: str = field(default_factory=lambda: secrets.token_urlsafe(16))

    @property
    def challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_url(portal: DemoPortal, flow: Flow, **changes: str | None) -> str:
    query: dict[str, str | None] = {
        "response_type": "code", "client_id": demo.CLIENT_ID, "redirect_uri": portal.callback,
        "scope": "openid profile email", "state": flow.state, "nonce": flow.nonce,
        "code_challenge": flow.challenge, "code_challenge_method": "S256",
    }
    query.update(changes)
    return f"{portal.issuer}/authorize?" + urlencode(
        {name: value for name, value in query.items() if value is not None})


def sign_in_at_provider(http_client: requests.Session, portal: DemoPortal, flow: Flow,
                        name: str) -> dict[str, str]:
    """Choose ``name`` on the demo sign-in page; return the callback's query, unfollowed."""
    page = http_client.get(authorize_url(portal, flow), timeout=TIMEOUT)
    assert page.status_code == 200, page.text
    form = form_with_button(page.text, f"Sign in as {name}")
    answer = http_client.post(urljoin(page.url, form.action), data=form.inputs,
                          allow_redirects=False, timeout=TIMEOUT)
    assert answer.status_code == 302, answer.text
    location = answer.headers["Location"]
    assert location.startswith(portal.callback + "?")
    return query_of(location)


def redeem(portal: DemoPortal, code: str, verifier: str, *,
           secret: str | None = None) -> requests.Response:
    with portal.app.app_context():
        client_secret = secret or demo.client_secret(portal.app)
    return requests.post(f"{portal.issuer}/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": portal.callback,
        "code_verifier": verifier,
    }, auth=(demo.CLIENT_ID, client_secret), timeout=TIMEOUT)


def userinfo(portal: DemoPortal, access_token: str) -> requests.Response:
    return requests.get(f"{portal.issuer}/userinfo", timeout=TIMEOUT,
                        headers={"Authorization": f"Bearer {access_token}"})


def find_person(app: Flask, subject: str) -> Person | None:
    with Session(get_engine(app)) as session:
        return session.scalar(select(Person).where(Person.subject == subject))


# --- through the portal ----------------------------------------------------------------------

def test_sign_in_as_hr_through_the_portal_and_sign_out(portal: DemoPortal,
                                                        http_client: requests.Session) -> None:
    page = http_client.get(f"{portal.url}/auth/login", timeout=TIMEOUT)
    assert page.status_code == 200
    assert urlsplit(page.url).path == "/demo-idp/authorize"
    assert "Choose a demo person to sign in as" in page.text
    for name in ("Alex Morgan", "Bea Schmidt", "Chris Okafor", "Dana Novak", "Eli Laurent"):
        assert f"Sign in as {name}" in page.text

    form = form_with_button(page.text, "Sign in as Chris Okafor")
    assert form.method == "post" and form.inputs["csrf_token"]
    dashboard = http_client.post(urljoin(page.url, form.action), data=form.inputs, timeout=TIMEOUT)

    assert dashboard.status_code == 200
    assert paths(dashboard) == ["/demo-idp/authorize", "/auth/callback"]
    assert dashboard.url == f"{portal.url}/"
    assert "Hello, Chris Okafor" in dashboard.text
    assert "People Operations" in dashboard.text
    assert "Employee, HR" in dashboard.text
    person = find_person(portal.app, "demo-chris")
    assert person is not None
    assert person.issuer == portal.issuer == demo.issuer(portal.app)
    assert person.roles == ["hr"]
    assert person.email == "chris.okafor@example.com"

    old_cookie = http_client.cookies.get(COOKIE_NAME)
    assert old_cookie
    confirm = http_client.get(f"{portal.url}/auth/logout", timeout=TIMEOUT)
    sign_out = form_with_button(confirm.text, "Sign out")
    signed_out = http_client.post(urljoin(confirm.url, sign_out.action), data=sign_out.inputs,
                              timeout=TIMEOUT)
    assert paths(signed_out) == ["/auth/logout", "/demo-idp/end-session"]
    assert signed_out.url == f"{portal.url}/"
    assert "You are signed out." in signed_out.text
    assert "Hello, Chris Okafor" not in signed_out.text

    with requests.Session() as thief:
        thief.cookies.set(COOKIE_NAME, old_cookie)
        page = thief.get(f"{portal.url}/", timeout=TIMEOUT)
    assert page.status_code == 200
    assert "Hello, Chris Okafor" not in page.text
    assert "Sign in with your company account" in page.text


def test_fresh_sign_in_shows_the_page_again(portal: DemoPortal,
                                             http_client: requests.Session) -> None:
    page = http_client.get(f"{portal.url}/auth/login", timeout=TIMEOUT)
    form = form_with_button(page.text, "Sign in as Dana Novak")
    http_client.post(urljoin(page.url, form.action), data=form.inputs, timeout=TIMEOUT)

    again = http_client.get(f"{portal.url}/auth/login?max_age=0&next=/", timeout=TIMEOUT)
    assert urlsplit(again.url).path == "/demo-idp/authorize"
    assert query_of(again.url)["max_age"] == "0"
    assert "asked to confirm who is signing in" in again.text
    form = form_with_button(again.text, "Sign in as Dana Novak")
    dashboard = http_client.post(urljoin(again.url, form.action), data=form.inputs,
                             timeout=TIMEOUT)
    assert dashboard.url == f"{portal.url}/"
    assert "Hello, Dana Novak" in dashboard.text
    assert "Data protection officer" in dashboard.text


# --- the provider's promises -----------------------------------------------------------------

def test_discovery_document(portal: DemoPortal) -> None:
    response = requests.get(f"{portal.issuer}/.well-known/openid-configuration",
                            timeout=TIMEOUT)
    assert response.status_code == 200
    document = response.json()
    issuer = portal.issuer
    assert document["issuer"] == issuer
    assert document["authorization_endpoint"] == f"{issuer}/authorize"
    assert document["token_endpoint"] == f"{issuer}/token"
    assert document["userinfo_endpoint"] == f"{issuer}/userinfo"
    assert document["jwks_uri"] == f"{issuer}/jwks"
    assert document["end_session_endpoint"] == f"{issuer}/end-session"
    assert document["response_types_supported"] == ["code"]
    assert document["grant_types_supported"] == ["authorization_code"]
    assert document["id_token_signing_alg_values_supported"] == ["RS256"]
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["subject_types_supported"] == ["public"]
    assert set(document["scopes_supported"]) == {"openid", "profile", "email"}
    assert "client_secret_basic" in document["token_endpoint_auth_methods_supported"]
    assert "none" not in document["token_endpoint_auth_methods_supported"]
    assert {"groups", "department", "location"} <= set(document["claims_supported"])
    keys = requests.get(document["jwks_uri"], timeout=TIMEOUT).json()["keys"]
    assert [(key["kty"], key["alg"], key["use"]) for key in keys] == [("RSA", "RS256", "sig")]
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(keys[0])


def test_id_token_is_rs256_signed_and_verifies_with_the_jwks(
        portal: DemoPortal, http_client: requests.Session) -> None:
    flow = Flow()
    before = int(time.time())
    callback = sign_in_at_provider(http_client, portal, flow, "Dana Novak")
    assert callback["state"] == flow.state
    response = redeem(portal, callback["code"], flow.verifier)
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    tokens = response.json()
    assert tokens["token_type"].lower() == "bearer"
    assert "refresh_token" not in tokens

    jwks = KeySet.import_key_set(requests.get(f"{portal.issuer}/jwks", timeout=TIMEOUT).json())
    id_token = jwt.decode(tokens["id_token"], jwks, algorithms=["RS256"])
    assert id_token.header["alg"] == "RS256"
    assert id_token.header["kid"] == jwks.keys[0].kid
    claims = id_token.claims
    assert claims["iss"] == portal.issuer
    assert claims["aud"] == demo.CLIENT_ID
    assert claims["sub"] == "demo-dana"
    assert claims["nonce"] == flow.nonce
    assert claims["name"] == "Dana Novak"
    assert claims["email"] == "dana.novak@example.com"
    assert claims["groups"] == ["privacy-office"]
    assert claims["department"] == "Legal & Privacy"
    assert claims["location"] == "Vienna"
    assert claims["zoneinfo"] == "Europe/Vienna"
    assert claims["locale"] == "de"
    assert before - 1 <= claims["auth_time"] <= int(time.time()) + 1
    assert claims["iat"] < claims["exp"] <= claims["iat"] + 3600

    header, payload, signature = tokens["id_token"].split(".")
    forged = f"{header}.{payload}.{signature[:-4]}AAAA"
    with pytest.raises(BadSignatureError):
        jwt.decode(forged, jwks, algorithms=["RS256"])

    info = userinfo(portal, tokens["access_token"])
    assert info.status_code == 200
    assert info.json()["sub"] == "demo-dana"
    assert info.json()["groups"] == ["privacy-office"]
    assert userinfo(portal, "not-a-token").status_code == 401


def test_signing_key_is_kept_private_and_reused(portal: DemoPortal) -> None:
    path = Path(portal.app.instance_path) / "demo-idp-key.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = requests.get(f"{portal.issuer}/jwks", timeout=TIMEOUT).json()
    second_app = create_app()
    with second_app.test_client() as client:
        assert client.get("/demo-idp/jwks").get_json() == first
    get_engine(second_app).dispose()


@pytest.mark.parametrize("pkce", [
    pytest.param({"code_challenge": None, "code_challenge_method": None}, id="none"),
    pytest.param({"code_challenge_method": "plain"}, id="plain"),
    pytest.param({"code_challenge_method": None}, id="method-missing"),
])
def test_authorization_without_s256_pkce_is_refused(portal: DemoPortal,
                                                    http_client: requests.Session,
                                                    pkce: dict[str, str | None]) -> None:
    response = http_client.get(authorize_url(portal, Flow(), **pkce), allow_redirects=False,
                           timeout=TIMEOUT)
    assert response.status_code == 302
    assert response.headers["Location"].startswith(portal.callback + "?")
    answer = query_of(response.headers["Location"])
    assert answer["error"] == "invalid_request"
    assert "code" not in answer


def test_wrong_code_verifier_is_refused(portal: DemoPortal, http_client: requests.Session) -> None:
    flow = Flow()
    callback = sign_in_at_provider(http_client, portal, flow, "Alex Morgan")
    response = redeem(portal, callback["code"], Flow().verifier)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    # A refused attempt does not spend the code.
    assert redeem(portal, callback["code"], flow.verifier).status_code == 200


def test_code_is_redeemed_once_and_a_replay_revokes_its_tokens(
        portal: DemoPortal, http_client: requests.Session) -> None:
    flow = Flow()
    callback = sign_in_at_provider(http_client, portal, flow, "Bea Schmidt")
    first = redeem(portal, callback["code"], flow.verifier)
    assert first.status_code == 200
    access_token = first.json()["access_token"]
    assert userinfo(portal, access_token).status_code == 200

    replay = redeem(portal, callback["code"], flow.verifier)
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert "id_token" not in replay.json()
    assert userinfo(portal, access_token).status_code == 401


def test_racing_redemptions_of_one_code_succeed_once(portal: DemoPortal,
                                                      http_client: requests.Session) -> None:
    flow = Flow()
    callback = sign_in_at_provider(http_client, portal, flow, "Eli Laurent")
    start = threading.Barrier(4)
    statuses: list[int] = []

    def attempt() -> None:
        start.wait()
        statuses.append(redeem(portal, callback["code"], flow.verifier).status_code)

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert sorted(statuses) == [200, 400, 400, 400]


def test_token_request_needs_the_client_secret(portal: DemoPortal,
                                               http_client: requests.Session) -> None:
    flow = Flow()
    callback = sign_in_at_provider(http_client, portal, flow, "Alex Morgan")
    response = redeem(portal, callback["code"], flow.verifier, secret="guessed-secret")
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_foreign_redirect_uri_gets_a_page_not_a_redirect(portal: DemoPortal,
                                                         http_client: requests.Session) -> None:
    response = http_client.get(
        authorize_url(portal, Flow(), redirect_uri="https://attacker.example/callback"),
        allow_redirects=False, timeout=TIMEOUT)
    assert response.status_code == 400
    assert "attacker.example" not in response.headers.get("Location", "")
    assert "cannot accept this sign-in request" in response.text


def test_prompt_none_answers_login_required(portal: DemoPortal,
                                            http_client: requests.Session) -> None:
    response = http_client.get(authorize_url(portal, Flow(), prompt="none"),
                           allow_redirects=False, timeout=TIMEOUT)
    assert response.status_code == 302
    assert query_of(response.headers["Location"])["error"] == "login_required"


def test_sign_in_form_needs_its_csrf_token(portal: DemoPortal,
                                           http_client: requests.Session) -> None:
    page = http_client.get(authorize_url(portal, Flow()), timeout=TIMEOUT)
    form = form_with_button(page.text, "Sign in as Alex Morgan")
    response = http_client.post(urljoin(page.url, form.action),
                            data={"sub": form.inputs["sub"]}, allow_redirects=False,
                            timeout=TIMEOUT)
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_end_session_redirects_only_into_the_portal(portal: DemoPortal,
                                                    http_client: requests.Session) -> None:
    flow = Flow()
    callback = sign_in_at_provider(http_client, portal, flow, "Alex Morgan")
    tokens = redeem(portal, callback["code"], flow.verifier).json()

    foreign = http_client.get(f"{portal.issuer}/end-session", params={
        "id_token_hint": tokens["id_token"], "client_id": demo.CLIENT_ID,
        "post_logout_redirect_uri": "https://attacker.example/"},
        allow_redirects=False, timeout=TIMEOUT)
    assert foreign.status_code == 200
    assert "You are signed out of the demo sign-in service" in foreign.text
    assert userinfo(portal, tokens["access_token"]).status_code == 401

    home = http_client.get(f"{portal.issuer}/end-session", params={
        "id_token_hint": tokens["id_token"], "client_id": demo.CLIENT_ID,
        "post_logout_redirect_uri": f"{portal.url}/", "state": "s1"},
        allow_redirects=False, timeout=TIMEOUT)
    assert home.status_code == 302
    assert home.headers["Location"] == f"{portal.url}/?state=s1"


def test_end_session_without_proof_asks_first(portal: DemoPortal,
                                              http_client: requests.Session) -> None:
    page = http_client.get(f"{portal.issuer}/end-session", params={
        "post_logout_redirect_uri": f"{portal.url}/"}, allow_redirects=False, timeout=TIMEOUT)
    assert page.status_code == 200
    form = form_with_button(page.text, "Sign out of the demo sign-in service")
    done = http_client.post(urljoin(page.url, form.action), data=form.inputs,
                        allow_redirects=False, timeout=TIMEOUT)
    assert done.status_code == 200
    assert "You are signed out of the demo sign-in service" in done.text


# --- configuration and commands --------------------------------------------------------------

def test_demo_people_command_lists_people_and_roles(portal: DemoPortal) -> None:
    result = portal.app.test_cli_runner().invoke(args=["demo", "people"])
    assert result.exit_code == 0, result.output
    for name in ("Alex Morgan", "Bea Schmidt", "Chris Okafor", "Dana Novak", "Eli Laurent"):
        assert name in result.output
    assert "employee, hr" in result.output
    assert "employee, dpo" in result.output
    assert "employee, admin" in result.output


def test_demo_seed_records_the_people_once(portal: DemoPortal,
                                           http_client: requests.Session) -> None:
    runner = portal.app.test_cli_runner()
    first = runner.invoke(args=["demo", "seed"])
    assert first.exit_code == 0, first.output
    assert "5 added" in first.output
    assert "0 added, 5 already there" in runner.invoke(args=["demo", "seed"]).output
    seeded = find_person(portal.app, "demo-dana")
    assert seeded is not None
    assert (seeded.roles, seeded.last_sign_in_at) == (["dpo"], None)

    page = http_client.get(f"{portal.url}/auth/login", timeout=TIMEOUT)
    form = form_with_button(page.text, "Sign in as Dana Novak")
    http_client.post(urljoin(page.url, form.action), data=form.inputs, timeout=TIMEOUT)
    signed_in = find_person(portal.app, "demo-dana")
    assert signed_in is not None
    assert signed_in.id == seeded.id
    assert signed_in.last_sign_in_at is not None
    with Session(get_engine(portal.app)) as session:
        assert len(session.scalars(select(Person)).all()) == 5


def test_configured_role_map_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _clean_environment(monkeypatch)
    monkeypatch.setenv("PORTAL_DEMO", "1")
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("PORTAL_ROLE_MAP", '{"hr": ["hr-team"]}')
    app = create_app()
    assert app.config["ROLE_MAP"] == {"hr": ["hr-team"]}
    get_engine(app).dispose()


def test_client_secret_is_derived_from_the_secret_key(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _clean_environment(monkeypatch)
    monkeypatch.setenv("PORTAL_DEMO", "1")
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    secrets_seen = set()
    for secret_key in ("a" * 40, "a" * 40, "b" * 40):
        monkeypatch.setenv("PORTAL_SECRET_KEY", secret_key)
        app = create_app()
        secrets_seen.add(demo.client_secret(app))
        assert len(demo.client_secret(app)) >= 43
        get_engine(app).dispose()
    assert len(secrets_seen) == 2
    stored = "".join(path.read_text() for path in (tmp_path / "instance").iterdir()
                     if path.is_file() and path.suffix != ".sqlite3")
    assert not any(secret in stored for secret in secrets_seen)


def test_demo_sign_in_in_chromium_is_accessible(portal: DemoPortal, browser: Any) -> None:
    from tests.support.browser import assert_accessible, screenshot

    context = browser.new_context(base_url=portal.url, locale="en-GB")
    page = context.new_page()
    page.goto("/")
    assert page.get_by_text("This is a demonstration.").is_visible()
    assert_accessible(page)
    with page.expect_navigation(url=f"{portal.issuer}/**"):
        page.get_by_role("link", name="Sign in with your company account").click()
    assert_accessible(page)
    screenshot(page, "demo-sign-in")
    with page.expect_navigation(url=f"{portal.url}/"):
        page.get_by_role("button", name="Sign in as Dana Novak").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Hello, Dana Novak"
    assert "Data protection officer" in page.locator(".summary-list").inner_text()
    # The demo is never silent: the banner is on every page, signed in too.
    assert page.get_by_text("This is a demonstration.").is_visible()
    assert_accessible(page)
    screenshot(page, "demo-dashboard")
    context.close()

"""The privacy admin's collector pages: register (token shown once), list, revoke."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.collector_api import World, bearer
from tests.support.config import portal_settings
from tests.support.forms import csrf_token
from tests.support.identity import SignIn
from tests.support.oidc_provider import OIDCProvider
from tests.support.tamper_proxy import TamperProxy

PAGES = ["/admin/collectors/", "/admin/collectors/new", "/admin/collectors/1/revoke"]
_TOKEN = re.compile(r'<code class="breakable" id="collector-token">([A-Za-z0-9_-]+)</code>')


@pytest.fixture
def settings(database_url: str, idp: tuple[OIDCProvider, TamperProxy]) -> dict[str, Any]:
    """These pages need people to sign in: bring the identity provider back."""
    return portal_settings(database_url, idp[0].issuer, "http://localhost")


@pytest.fixture
def admin(client: FlaskClient, sign_in: SignIn, world: World) -> FlaskClient:
    sign_in.login(client, "eli")
    return client


def _register(client: FlaskClient, **form: Any) -> Any:
    data = {"csrf_token": csrf_token(client, "/admin/collectors/new"), **form}
    return client.post("/admin/collectors/new", data=data)


@pytest.mark.parametrize("who", ["alex", "chris", "dana"])
def test_only_privacy_admins_open_the_collector_pages(world: World, client: FlaskClient,
                                                      sign_in: SignIn, who: str) -> None:
    world.collector()
    sign_in.login(client, who)
    for path in PAGES:
        assert client.get(path).status_code == 403, path
    assert client.post("/admin/collectors/1/revoke").status_code in {400, 403}


def test_the_pages_need_sign_in(world: World, client: FlaskClient) -> None:
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


def test_registering_shows_the_token_once_and_it_works(app: Flask, admin: FlaskClient,
                                                       world: World) -> None:
    page = admin.get("/admin/collectors/new").get_data(as_text=True)
    assert 'value="keystrokes"' in page and 'value="performance"' in page
    response = _register(admin, name="laptop agent, Berlin", categories=["keystrokes", "clicks"],
                         webhook_url="https://agent.example.com/hooks")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "This is the only time the token is shown." in html
    assert 'id="webhook-secret">whsec_' in html
    match = _TOKEN.search(html)
    assert match is not None
    token = match.group(1)
    assert response.headers["Cache-Control"] == "no-store"
    assert admin.get("/api/v1/consent/changes", headers=bearer(token)).status_code == 200
    listing = admin.get("/admin/collectors/").get_data(as_text=True)
    assert "laptop agent, Berlin" in listing and "Active" in listing
    assert token not in listing


@pytest.mark.parametrize(("form", "message"), [
    ({"name": "agent"}, "Choose at least one category."),
    ({"name": "", "categories": ["clicks"]}, "Enter the collector's name."),
    ({"name": "agent", "categories": ["screenshots"]},
     "Choose categories from the catalog in force."),
    ({"name": "agent", "categories": ["clicks"], "webhook_url": "ftp://x"},
     "Enter an address that starts with https:// or http://."),
    ({"name": "laptop agent", "categories": ["clicks"]},
     "Another collector already has this name."),
])
def test_a_bad_registration_says_what_to_fix(admin: FlaskClient, world: World,
                                             form: dict[str, Any], message: str) -> None:
    world.collector()
    response = _register(admin, **form)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "There is a problem" in html and message in html
    assert world.stored() == (0, 0, 0)


def test_revoking_asks_first_and_takes_effect_at_once(admin: FlaskClient, world: World) -> None:
    token = world.collector()
    confirm = admin.get("/admin/collectors/1/revoke").get_data(as_text=True)
    assert "This cannot be undone." in confirm
    response = admin.post("/admin/collectors/1/revoke",
                          data={"csrf_token": csrf_token(admin, "/admin/collectors/1/revoke")})
    assert response.status_code == 303
    assert admin.get("/api/v1/consent/changes", headers=bearer(token)).status_code == 401
    listing = admin.get("/admin/collectors/").get_data(as_text=True)
    assert "Revoked" in listing and "/admin/collectors/1/revoke" not in listing
    assert admin.get("/admin/collectors/99/revoke").status_code == 404


def test_unacknowledged_withdrawals_are_listed(admin: FlaskClient, world: World) -> None:
    world.collector()
    assert "Every active collector has acknowledged" in admin.get(
        "/admin/collectors/").get_data(as_text=True)
    world.grant("sub-a", "keystrokes")
    world.withdraw("sub-a", "keystrokes")
    listing = admin.get("/admin/collectors/").get_data(as_text=True)
    assert "Withdrawals waiting" in listing
    assert re.search(r"laptop agent</th>\s*<td><code>keystrokes</code></td>", listing)
    assert "sub-a" not in listing  # who withdrew stays private

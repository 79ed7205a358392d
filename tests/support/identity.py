"""The people of the test identity provider, and signing a test client in as one of them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import Flask
from flask.testing import FlaskClient

from tests.support.browserless_login import login_via_form

CLIENT_ID = "consent-portal"
CLIENT_SECRET = "test-client-secret-that-is-long-enough"  # only ever on 127.0.0.1
PASSWORD = "correct horse battery staple"
ROLE_MAP = {"hr": ["people-ops"], "dpo": ["privacy-office"], "admin": ["privacy-admin"]}
#: The groups of a data protection officer at the provider.
DPO_GROUPS = ("privacy-office",)
#: The issuer of tests that sign nobody in: nothing listens there.
ISSUER = "http://127.0.0.1:9"


@dataclass(frozen=True)
class Account:
    """A person known to the test identity provider."""

    sub: str
    name: str
    email: str
    groups: tuple[str, ...]
    department: str
    location: str

    def provider_entry(self) -> dict[str, Any]:
        return {"sub": self.sub, "password": PASSWORD, "claims": {
            "name": self.name, "email": self.email, "groups": list(self.groups),
            "department": self.department, "location": self.location,
            "zoneinfo": "Europe/Berlin", "locale": "en"}}


ACCOUNTS = {
    "alex": Account("sub-alex", "Alex Morgan", "alex@example.com", (), "Engineering", "Berlin"),
    "bea": Account("sub-bea", "Bea Schmidt", "bea@example.com", (), "Design", "Munich"),
    "chris": Account("sub-chris", "Chris Okafor", "chris@example.com", ("people-ops",),
                     "People Operations", "Berlin"),
    "dana": Account("sub-dana", "Dana Novak", "dana@example.com", ("privacy-office",),
                    "Legal & Privacy", "Vienna"),
    "eli": Account("sub-eli", "Eli Laurent", "eli@example.com", ("privacy-admin",),
                   "Legal & Privacy", "Paris"),
    # Hostile attributes from the provider (tests/hardening/test_hostile_content.py): markup,
    # script, spreadsheet formulas, template syntax and CRLF, each where a field would run it.
    "mallory": Account("sub-mallory",
                       "=HYPERLINK(\"http://evil.example/name\")<script>alert('name')</script>",
                       "mallory+{{7*7}}@example.com", (),
                       "+cmd|' /C calc'!A0\"><img src=x onerror=alert('department')>",
                       "@SUM(1)<link rel=stylesheet href=file:///etc/passwd>"),
    "oscar": Account("sub-oscar", "-2+3<svg onload=alert('staff')>{{7*7}}", "oscar@example.com",
                     ("people-ops", "privacy-office", "privacy-admin"),
                     "\tjavascript:alert('staff')", "Vienna"),
    "eve": Account("sub-eve", "Eve\r\nBcc: x@evil.example",
                   "eve@example.com\r\nBcc: x@evil.example", (), "Sales", "Berlin"),
}


class SignIn:
    """Sign a test client in through the real provider's login form."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def authorize_url(self, client: FlaskClient, **query: str) -> str:
        response = client.get("/auth/login", query_string=query)
        assert response.status_code == 302, response.get_data(as_text=True)
        return response.headers["Location"]

    def callback_url(self, client: FlaskClient, who: str, **query: str) -> str:
        """Run the provider's part of sign-in and return the callback URL it sends back."""
        browser = requests.Session()
        return login_via_form(browser, self.authorize_url(client, **query),
                              ACCOUNTS[who].sub, PASSWORD)

    def login(self, client: FlaskClient, who: str) -> None:
        response = self.finish(client, self.callback_url(client, who))
        assert response.status_code == 302, response.get_data(as_text=True)

    def finish(self, client: FlaskClient, callback_url: str) -> Any:
        parts = urlsplit(callback_url)
        return client.get(f"{parts.path}?{parts.query}")


def signed_in(app: Flask, sign_in: SignIn, who: str) -> FlaskClient:
    """Return a new client signed in as ``who``."""
    client = app.test_client()
    sign_in.login(client, who)
    return client

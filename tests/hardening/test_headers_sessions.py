"""Security headers on every page, session timeouts, and rate-limit refusals (issue 9, point 4).

Counting rate limits across processes (Redis) is tested elsewhere; here each limit's refusal
is checked as a person sees it.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from werkzeug.test import TestResponse

from portal.auth.models import Person, WebSession
from portal.db import commit, db, utcnow
from tests.support.authorization_matrix import (
    METRICS_TOKEN,
    TABLE,
    Access,
    AlexWorld,
    build_alex_world,
    csrf_token,
    methods_of,
    walked_rules,
)
from tests.support.config import portal_settings
from tests.support.identity import ACCOUNTS, SignIn
from tests.support.oidc_provider import OIDCProvider
from tests.support.tamper_proxy import TamperProxy

#: Who opens the pages of each kind of endpoint in the header walk.
OPENED_BY = {Access.PUBLIC: "anonymous", Access.PERSON: "alex", Access.OWNER: "alex",
             Access.HR_DPO: "chris", Access.DPO: "dana", Access.ADMIN: "eli",
             Access.COLLECTOR: "collector", Access.SCRAPER: "scraper"}
#: Public answers without personal data that a cache may keep.
CACHEABLE = {"static", "consent.jwks", "core.healthz", "core.readyz"}
STRICT_REFERRER_POLICIES = {"no-referrer", "same-origin", "strict-origin",
                            "strict-origin-when-cross-origin"}
HSTS_MIN_SECONDS = 365 * 24 * 3600


@pytest.fixture
def settings(database_url: str, idp: tuple[OIDCProvider, TamperProxy]) -> dict[str, Any]:
    """The portal with the real identity provider (the hardening default has none)."""
    return {**portal_settings(database_url, idp[0].issuer, "http://localhost"),
            "METRICS_TOKEN": METRICS_TOKEN}


# --- headers ---------------------------------------------------------------------------------

def header_problems(response: TestResponse, *, https: bool, endpoint: str) -> list[str]:
    """Return what is missing or too weak among an answer's security headers."""
    headers = response.headers
    problems = []
    policy = headers.get("Content-Security-Policy", "")
    directives = {part.split()[0]: part.split()[1:]
                  for part in policy.split(";") if part.strip()}
    if not policy or "unsafe-inline" in policy or "unsafe-eval" in policy:
        problems.append(f"Content-Security-Policy {policy!r}")
    if directives.get("frame-ancestors") != ["'none'"]:
        problems.append("no frame-ancestors 'none'")
    if directives.get("default-src") != ["'self'"] or directives.get("object-src") != ["'none'"]:
        problems.append("default-src or object-src too wide")
    if headers.get("X-Content-Type-Options") != "nosniff":
        problems.append("no X-Content-Type-Options: nosniff")
    if headers.get("Referrer-Policy") not in STRICT_REFERRER_POLICIES:
        problems.append(f"Referrer-Policy {headers.get('Referrer-Policy')!r}")
    if endpoint not in CACHEABLE and headers.get("Cache-Control") != "no-store":
        problems.append(f"Cache-Control {headers.get('Cache-Control')!r}")
    hsts = headers.getlist("Strict-Transport-Security")
    if https:
        age = re.fullmatch(r"max-age=(\d+)(; ?includeSubDomains)?(; ?preload)?",
                           hsts[0] if len(hsts) == 1 else "")
        if age is None or int(age.group(1)) < HSTS_MIN_SECONDS:
            problems.append(f"Strict-Transport-Security {hsts!r} over https")
    elif hsts:
        problems.append("Strict-Transport-Security over plain http")
    return problems


def _page_urls(app: Flask, world: AlexWorld) -> list[tuple[str, str, str]]:
    """Return (endpoint, opener, URL) of every GET rule, with A's first real object."""
    pages = []
    for rule in walked_rules(app):
        if "GET" not in methods_of(rule) or rule.endpoint == "auth.logout":
            continue
        url = rule.rule
        for name in rule.arguments:
            value = next(target.value for target in world.targets(name) if target.real)
            url = re.sub(r"<(?:[^:<>]+:)?" + name + r">", value, url)
        pages.append((rule.endpoint, OPENED_BY[TABLE[rule.endpoint]], url))
    return pages


def test_every_page_carries_the_security_headers(app: Flask, sign_in: SignIn) -> None:
    world = build_alex_world(app)
    clients: dict[str, FlaskClient] = {}
    for who in ("alex", "chris", "dana", "eli"):
        clients[who] = app.test_client()
        sign_in.login(clients[who], who)
    tokens = {"collector": world.tokens["collector"], "scraper": METRICS_TOKEN}
    pages = _page_urls(app, world)
    problems, seen = [], 0
    anonymous = app.test_client()
    # Refusals, error pages and plain http carry them too. First: over https a session
    # cookie comes back marked Secure, and a client then no longer sends it over http.
    for url, opener, https in (("/dpo/requests", "alex", True), ("/no-such-page", "eli", True),
                               ("/my-data", "anonymous", False), ("/hr/", "chris", False),
                               ("/api/v1/consent/changes", "anonymous", False)):
        response = clients.get(opener, anonymous).get(
            url, base_url="https://localhost" if https else "http://localhost")
        assert response.status_code in {200, 302, 401, 403, 404}
        assert (response.status_code == 200) == (url == "/hr/")
        seen += 1
        problems += [f"GET {url} as {opener} ({response.status_code}): {problem}"
                     for problem in header_problems(response, https=https, endpoint="")]
    # Over https, which is how the portal is served: HSTS must come too. (That plain http
    # gets none is checked above and in test_hsts_is_sent_once_and_only_over_https.)
    for endpoint, opener, url in pages:
        client = clients.get(opener, anonymous)
        headers = {"Authorization": f"Bearer {tokens[opener]}"} if opener in tokens else {}
        query = {"subject": "sub-alex", "category": "keystrokes"} \
            if endpoint == "api.consent" else None
        response = client.get(url, base_url="https://localhost", headers=headers,
                              query_string=query)
        assert response.status_code < 500, (url, response.status_code)
        seen += 1
        problems += [f"GET {url} as {opener} ({response.status_code}): {problem}"
                     for problem in header_problems(response, https=True, endpoint=endpoint)]
    print(f"\n{seen} answers checked for security headers")
    assert problems == [], "\n".join(problems)


def test_hsts_is_sent_once_and_only_over_https(client: FlaskClient) -> None:
    assert "Strict-Transport-Security" not in client.get("/healthz").headers
    secure = client.get("/healthz", base_url="https://localhost")
    assert secure.headers.getlist("Strict-Transport-Security") == [
        "max-age=63072000; includeSubDomains"]


# --- sessions --------------------------------------------------------------------------------

def _session_row(app: Flask, who: str) -> WebSession:
    with app.app_context():
        person_id = db.scalar(select(Person.id).where(Person.subject == ACCOUNTS[who].sub))
        rows = list(db.scalars(select(WebSession).where(WebSession.person_id == person_id)))
        assert len(rows) == 1, rows
        db.expunge(rows[0])
        return rows[0]


def _move_clock(app: Flask, row: WebSession, **values: dt.datetime) -> None:
    """Make the session look older, as the clock moving on would."""
    with app.app_context():
        db.execute(update(WebSession).where(WebSession.id_hash == row.id_hash).values(**values))
        commit()


def _signed_in_as(client: FlaskClient, who: str) -> bool:
    return ACCOUNTS[who].name in client.get("/").get_data(as_text=True)


def _sent_to_sign_in(client: FlaskClient) -> bool:
    response = client.get("/my-data")
    return response.status_code == 302 and "/auth/login" in response.headers["Location"]


def test_idle_session_ends_after_the_configured_minutes(app: Flask, client: FlaskClient,
                                                        sign_in: SignIn) -> None:
    app.config["SESSION_IDLE_MINUTES"] = 20
    sign_in.login(client, "bea")
    row = _session_row(app, "bea")
    now = utcnow()
    # 19 minutes without a request: still signed in, and the request counts as activity.
    _move_clock(app, row, last_seen_at=now - dt.timedelta(minutes=19))
    assert _signed_in_as(client, "bea")
    assert utcnow() - _session_row(app, "bea").last_seen_at < dt.timedelta(minutes=1)
    # 21 minutes: the session is over, its row is gone, the cookie opens nothing.
    _move_clock(app, row, last_seen_at=utcnow() - dt.timedelta(minutes=21))
    assert not _signed_in_as(client, "bea")
    assert _sent_to_sign_in(client)
    with app.app_context():
        assert db.get(WebSession, row.id_hash) is None


def test_absolute_session_limit_holds_however_active(app: Flask, client: FlaskClient,
                                                     sign_in: SignIn) -> None:
    sign_in.login(client, "bea")
    row = _session_row(app, "bea")
    hours = app.config["SESSION_ABSOLUTE_HOURS"]
    assert row.expires_at - row.created_at == dt.timedelta(hours=hours)
    # Activity moves the idle clock but never the absolute end.
    _move_clock(app, row, last_seen_at=utcnow() - dt.timedelta(minutes=5))
    assert _signed_in_as(client, "bea")
    touched = _session_row(app, "bea")
    assert touched.last_seen_at > row.last_seen_at and touched.expires_at == row.expires_at
    # The end arrives while the person is active (seen a second ago): signed out anyway.
    start = utcnow() - dt.timedelta(hours=hours, seconds=1)
    _move_clock(app, row, created_at=start, expires_at=start + dt.timedelta(hours=hours),
                last_seen_at=utcnow() - dt.timedelta(seconds=1))
    assert not _signed_in_as(client, "bea")
    assert _sent_to_sign_in(client)
    with app.app_context():
        assert db.get(WebSession, row.id_hash) is None


# --- rate limits -----------------------------------------------------------------------------

def _plain_refusal(response: TestResponse, message: str) -> None:
    """Check a 429 as a person sees it: the message, when to return, the usual headers."""
    text = response.get_data(as_text=True)
    assert response.status_code == 429
    assert message in text
    assert int(response.headers["Retry-After"]) > 0
    assert response.mimetype == "text/html"
    for internal in ("Traceback", "flask_limiter", "RateLimitExceeded", "per 1 hour"):
        assert internal not in text
    assert header_problems(response, https=False, endpoint="") == []


def test_finishing_sign_in_is_rate_limited_too(app: Flask, client: FlaskClient) -> None:
    app.config["SIGN_IN_RATE_LIMIT"] = "2 per minute"
    # Guessing codes at the callback is counted like starting sign-ins.
    assert [client.get("/auth/callback?code=guess&state=guess").status_code
            for _ in range(2)] == [400, 400]
    _plain_refusal(client.get("/auth/callback?code=guess&state=guess"), "Too many requests")


def test_download_and_export_refusals_are_plain(app: Flask, client: FlaskClient,
                                                sign_in: SignIn) -> None:
    build_alex_world(app)
    app.config.update(DOWNLOAD_RATE_LIMIT="1 per hour", EXPORT_RATE_LIMIT="1 per hour")
    # The DPO is a person with data of their own and may export consent records.
    sign_in.login(client, "dana")
    token = csrf_token(client, {})

    def download() -> TestResponse:
        return client.post("/my-data/download", data={"csrf_token": token,
                                                      "categories": ["keystrokes"]})

    def export() -> TestResponse:
        return client.post("/hr/export", data={"csrf_token": token, "format": "csv",
                                               "purpose": "Quarterly consent audit"})

    assert download().status_code == 200
    _plain_refusal(download(), "as often as the portal allows")
    assert export().status_code == 200
    _plain_refusal(export(), "many exports in a short time")

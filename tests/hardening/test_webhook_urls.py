"""Webhook URLs cannot reach inside (SSRF): refused at registration and again at delivery."""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from portal.api import webhooks
from portal.api.models import Collector, DeliveryState, WebhookDelivery
from portal.api.service import register_collector
from portal.db import commit, db, utcnow
from portal.webhook_urls import WebhookURLRefused, _CheckedAdapter, check_webhook_url
from tests.support.collector_api import World
from tests.support.config import portal_settings
from tests.support.identity import SignIn
from tests.support.oidc_provider import OIDCProvider
from tests.support.tamper_proxy import TamperProxy

_CSRF = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')

#: Addresses inside: loopback, private, link-local (cloud metadata), shared, multicast,
#: reserved, unspecified, written as literals, as names and in the usual disguises.
INSIDE = [
    "https://127.0.0.1/hooks", "https://localhost:8443/hooks", "https://[::1]/hooks",
    "https://10.1.2.3/hooks", "https://172.16.0.1/hooks", "https://192.168.1.1/hooks",
    "https://169.254.169.254/latest/meta-data/", "https://100.64.0.1/hooks",
    "https://224.0.0.1/hooks", "https://240.0.0.1/hooks", "https://0.0.0.0/hooks",
    "https://[::ffff:127.0.0.1]/hooks", "https://[fe80::1]/hooks", "https://[fd00::1]/hooks",
    "https://2130706433/hooks", "https://0x7f.1/hooks",
]


@pytest.fixture
def settings(database_url: str, idp: tuple[OIDCProvider, TamperProxy]) -> dict[str, Any]:
    """Production's rule: https to public addresses only (the test default allows 127.0.0.1)."""
    return {**portal_settings(database_url, idp[0].issuer, "http://localhost"),
            "WEBHOOK_ALLOW_PRIVATE_NETWORKS": False}


class Receiver:
    """A real listening socket on 127.0.0.1 that records every request reaching it."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    state.thread.start()
    yield state
    state.server.shutdown()
    state.server.server_close()
    state.thread.join(5)


def _collectors(app: Flask) -> int:
    with app.app_context():
        return db.scalar(select(func.count()).select_from(Collector)) or 0


def test_the_admin_form_refuses_inside_addresses_and_plain_http(
        app: Flask, client: FlaskClient, sign_in: SignIn, world: World) -> None:
    sign_in.login(client, "eli")
    match = _CSRF.search(client.get("/admin/collectors/new").get_data(as_text=True))
    assert match is not None
    form = {"csrf_token": match.group(1), "name": "agent", "categories": ["clicks"]}
    for url in INSIDE:
        response = client.post("/admin/collectors/new", data={**form, "webhook_url": url})
        html = response.get_data(as_text=True)
        assert response.status_code == 400, url
        assert "There is a problem" in html, url
        assert "is inside the company network" in html, url
    response = client.post("/admin/collectors/new",
                           data={**form, "webhook_url": "http://collector.example.com/hooks"})
    assert response.status_code == 400
    assert "Enter an address that starts with https://." in response.get_data(as_text=True)
    assert _collectors(app) == 0
    # A public address is fine (a literal: the test needs no DNS).
    response = client.post("/admin/collectors/new",
                           data={**form, "webhook_url": "https://93.184.215.14/hooks"})
    assert response.status_code == 200 and 'id="webhook-secret">whsec_' in response.text
    assert _collectors(app) == 1


def test_the_command_refuses_inside_addresses(app: Flask, world: World) -> None:
    runner = app.test_cli_runner()
    for url in ("https://169.254.169.254/latest/meta-data/", "https://localhost/hooks",
                "http://93.184.215.14/hooks"):
        result = runner.invoke(args=["collectors", "create", "agent", "--categories", "clicks",
                                     "--webhook", url])
        assert result.exit_code == 2, url
        assert "Not registered: webhook_url" in result.output
        assert ("reaches an internal address" in result.output
                or "must be an https:// URL" in result.output), result.output
    assert _collectors(app) == 0


def _withdraw_with_a_collector_at(app: Flask, world: World, url: str) -> None:
    # Registered past the check, as a collector registered before the rule (or before its
    # name started resolving inside) would be.
    with app.app_context():
        register_collector("recorder", ["keystrokes"], webhook_url=url)
        commit()
    world.grant("sub-a", "keystrokes")
    world.withdraw("sub-a", "keystrokes")


def test_a_delivery_to_an_inside_address_is_not_attempted_and_says_why(
        app: Flask, world: World, receiver: Receiver) -> None:
    _withdraw_with_a_collector_at(app, world, receiver.url.replace("http:", "https:"))
    run = webhooks.deliver_due(app)
    assert (run.delivered, run.retrying) == (0, 1)
    assert receiver.requests == []
    with app.app_context():
        [delivery] = db.scalars(select(WebhookDelivery)).all()
        assert delivery.state is DeliveryState.PENDING and delivery.last_status is None
        assert delivery.last_error.startswith(
            "not sent: the webhook URL reaches an internal address (127.0.0.1: 127.0.0.1); "
            "loopback, private")
    # The same notice goes out once the operator allows the local collector.
    app.config["WEBHOOK_ALLOW_PRIVATE_NETWORKS"] = True
    with app.app_context():
        collector = db.scalar(select(Collector))
        assert collector is not None
        collector.webhook_url = receiver.url
        commit()
    assert webhooks.deliver_due(app, now=utcnow() + dt.timedelta(minutes=1)).delivered == 1
    assert receiver.requests == ["/hooks"]


def test_a_name_that_no_longer_resolves_is_not_called(app: Flask, world: World) -> None:
    # Accepted at registration (the collector may not be deployed yet), checked at delivery.
    with app.app_context():
        assert check_webhook_url("https://collector.invalid/hooks", unresolved_ok=True) is None
    _withdraw_with_a_collector_at(app, world, "https://collector.invalid/hooks")
    webhooks.deliver_due(app)
    with app.app_context():
        [delivery] = db.scalars(select(WebhookDelivery)).all()
        assert delivery.last_error == ("not sent: the webhook URL names a host that does not "
                                       "resolve (collector.invalid)")


def test_the_connection_itself_refuses_an_inside_peer(receiver: Receiver) -> None:
    """A name checked public that then resolves inside (DNS rebinding) still reaches nothing:
    the address connected to is checked before anything is written to the socket."""
    with requests.Session() as session:
        session.trust_env = False
        session.mount("http://", _CheckedAdapter())
        with pytest.raises(WebhookURLRefused, match="internal address"):
            session.post(receiver.url, data=b"{}", timeout=5)
    assert receiver.requests == []

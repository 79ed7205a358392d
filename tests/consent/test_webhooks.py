"""Collectors learn of withdrawals at once: signed notices from an outbox, retried with backoff."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from portal.api import webhooks
from portal.api.models import DeliveryState, WebhookDelivery
from portal.api.service import register_collector
from portal.catalog.notices import current_notice
from portal.db import commit, db
from tests.support.consent import Chooser
from tests.support.factories import publish_changed_text
from tests.support.identity import SignIn, signed_in


@dataclass
class Receiver:
    """A collector's webhook endpoint on 127.0.0.1 that answers with the statuses it is given."""

    statuses: list[int] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    def answer(self) -> int:
        return self.statuses.pop(0) if self.statuses else 204


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append({"headers": dict(self.headers), "body": body})
            self.send_response(state.answer())
            self.end_headers()
            state.arrived.set()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/consent"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(5)


def _register(app: Flask, url: str, categories: tuple[str, ...] = ("keystrokes",),
              name: str = "Keystroke logger") -> str:
    with app.app_context():
        _collector, _token, secret = register_collector(name, categories, webhook_url=url)
        commit()
        return secret


def _deliveries(app: Flask) -> list[WebhookDelivery]:
    with app.app_context():
        return list(db.scalars(select(WebhookDelivery).order_by(WebhookDelivery.created_at)))


def _give_then_withdraw(app: Flask, sign_in: SignIn, who: str, key: str = "keystrokes") -> None:
    """Have ``who`` give and withdraw consent through the service, in one committed command."""
    from portal.consent import service
    from portal.consent.models import ConsentMethod
    from tests.support.factories import account_person, category_row

    signed_in(app, sign_in, who)
    with app.app_context():
        someone = account_person(app, who)
        notice = current_notice()
        assert notice is not None
        service.grant_consent(someone, category_row(app, key), notice_version=notice,
                              method=ConsentMethod.WEB, actor=someone)
        service.withdraw_consent(someone, category_row(app, key), method=ConsentMethod.WEB,
                                 actor=someone)
        commit()


def _check_signature(request: dict[str, Any], secret: str) -> dict[str, Any]:
    headers = {name.lower(): value for name, value in request["headers"].items()}
    message = (f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode()
               + request["body"])
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    payload: dict[str, Any] = json.loads(request["body"])
    return payload


def test_withdrawal_reaches_the_collector_within_seconds_signed(
        app: Flask, alex: Chooser, receiver: Receiver) -> None:
    secret = _register(app, receiver.url)
    alex.post("keystrokes", "grant")
    assert _deliveries(app) == []  # giving consent is no stop notice
    started = time.monotonic()
    # A WSGI server closes every response once sent; Flask's test client leaves that to us.
    alex.post("keystrokes", "withdraw").close()
    assert receiver.arrived.wait(5), "no notice within 5 seconds without the delivery loop"
    assert time.monotonic() - started < 5
    [request] = receiver.received
    payload = _check_signature(request, secret)
    assert payload["type"] == "consent.withdrawn"
    assert payload["data"]["category"] == "keystrokes"
    assert payload["data"]["state"] == "ConsentWithdrawn"
    assert payload["data"]["subject"] == "sub-alex"
    assert payload["data"]["collect"] is False
    deadline = time.monotonic() + 5
    while _deliveries(app)[0].state is not DeliveryState.DELIVERED:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    [delivery] = _deliveries(app)
    assert (delivery.attempts, delivery.last_status, delivery.last_error) == (1, 204, "")


def test_failing_collector_is_retried_with_backoff(app: Flask, catalog: int,
                                                   receiver: Receiver, sign_in: SignIn) -> None:
    secret = _register(app, receiver.url)
    receiver.statuses = [500, 503]
    client = signed_in(app, sign_in, "alex")
    chooser = Chooser(client, catalog)
    chooser.post("keystrokes", "grant")
    # Queued through the service in a command, so only this test's calls send it.
    from portal.consent import service
    from portal.consent.models import ConsentMethod
    from tests.support.factories import account_person, category_row

    with app.app_context():
        alex = account_person(app, "alex")
        service.withdraw_consent(alex, category_row(app, "keystrokes"), method=ConsentMethod.WEB,
                                 actor=alex)
        commit()
    [delivery] = _deliveries(app)
    start = delivery.next_attempt_at

    first = webhooks.deliver_due(app, now=start)
    assert (first.delivered, first.retrying) == (0, 1)
    [delivery] = _deliveries(app)
    assert (delivery.attempts, delivery.last_status, delivery.state) == (
        1, 500, DeliveryState.PENDING)
    assert delivery.next_attempt_at == start + dt.timedelta(seconds=5)

    assert webhooks.deliver_due(app, now=start + dt.timedelta(seconds=4)).attempted == 0
    second = webhooks.deliver_due(app, now=start + dt.timedelta(seconds=5))
    assert second.retrying == 1
    [delivery] = _deliveries(app)
    assert delivery.next_attempt_at == start + dt.timedelta(seconds=15)  # waited 10 s more

    third = webhooks.deliver_due(app, now=start + dt.timedelta(seconds=15))
    assert third.delivered == 1
    [delivery] = _deliveries(app)
    assert (delivery.attempts, delivery.state, delivery.last_status) == (
        3, DeliveryState.DELIVERED, 204)
    assert len(receiver.received) == 3
    bodies = {request["body"] for request in receiver.received}
    assert len(bodies) == 1  # every retry sends the same notice
    for request in receiver.received:
        _check_signature(request, secret)
    assert webhooks.deliver_due(app, now=start + dt.timedelta(hours=1)).attempted == 0


def test_a_collector_that_never_answers_is_marked_failed(app: Flask, catalog: int,
                                                         sign_in: SignIn) -> None:
    _register(app, "http://127.0.0.1:9/unreachable")
    _give_then_withdraw(app, sign_in, "bea")
    moment = _deliveries(app)[0].next_attempt_at
    for _ in range(webhooks.MAX_ATTEMPTS):
        webhooks.deliver_due(app, now=moment)
        moment += webhooks.LONGEST_WAIT
    [delivery] = _deliveries(app)
    assert (delivery.state, delivery.attempts) == (DeliveryState.FAILED, webhooks.MAX_ATTEMPTS)
    assert delivery.last_error == "ConnectionError"


def test_only_active_collectors_of_the_category_are_told(
        app: Flask, alex: Chooser, receiver: Receiver) -> None:
    _register(app, receiver.url, ("keystrokes", "clicks"), "Input logger")
    _register(app, receiver.url, ("pointer",), "Pointer logger")
    _register(app, "", ("keystrokes",), "Poller without webhook")
    revoked = _register(app, receiver.url, ("keystrokes",), "Old logger")
    assert revoked
    with app.app_context():
        from portal.api.models import Collector

        old = db.scalar(select(Collector).where(Collector.name == "Old logger"))
        assert old is not None
        old.revoked_at = dt.datetime.now(dt.UTC)
        commit()
    alex.post("keystrokes", "grant")
    alex.post("keystrokes", "withdraw")
    deliveries = _deliveries(app)
    assert len(deliveries) == 1
    with app.app_context():
        from portal.api.models import Collector

        collector = db.get(Collector, deliveries[0].collector_id)
        assert collector is not None and collector.name == "Input logger"


def test_expiry_after_a_material_change_tells_collectors_too(
        app: Flask, alex: Chooser, receiver: Receiver) -> None:
    _register(app, receiver.url)
    alex.post("keystrokes", "grant")
    publish_changed_text(app, "keystrokes", material=True)
    [delivery] = _deliveries(app)
    assert delivery.kind == "consent.expired"
    webhooks.deliver_due(app)
    assert receiver.received and json.loads(receiver.received[-1]["body"])["data"][
        "state"] == "ConsentExpired"


def test_notice_is_queued_in_the_same_transaction(app: Flask, catalog: int,
                                                  sign_in: SignIn) -> None:
    _register(app, "http://127.0.0.1:9/x")
    from portal.consent import service
    from portal.consent.models import ConsentMethod
    from tests.support.factories import account_person, category_row

    signed_in(app, sign_in, "alex")
    with app.app_context():
        alex = account_person(app, "alex")
        notice = current_notice()
        assert notice is not None
        service.grant_consent(alex, category_row(app, "keystrokes"), notice_version=notice,
                              method=ConsentMethod.WEB, actor=alex)
        commit()
        service.withdraw_consent(alex, category_row(app, "keystrokes"), method=ConsentMethod.WEB,
                                 actor=alex)
        assert len(db.scalars(select(WebhookDelivery)).all()) == 1
        db.rollback()
    assert _deliveries(app) == []


def test_deliver_command_sends_what_is_due(app: Flask, catalog: int, receiver: Receiver,
                                           sign_in: SignIn) -> None:
    _register(app, receiver.url)
    _give_then_withdraw(app, sign_in, "alex")
    result = app.test_cli_runner().invoke(args=["webhooks", "deliver"])
    assert (result.exit_code, result.output) == (0, "1 delivered, 0 to retry, 0 failed for "
                                                    "good.\n")
    assert len(receiver.received) == 1


def test_privacy_admin_sees_delivery_states_without_who_or_what(
        app: Flask, alex: Chooser, receiver: Receiver, sign_in: SignIn,
        client: FlaskClient) -> None:
    _register(app, receiver.url)
    alex.post("keystrokes", "grant")
    alex.post("keystrokes", "withdraw").close()
    assert receiver.arrived.wait(5)
    time.sleep(0.3)
    admin = signed_in(app, sign_in, "eli")
    response = admin.get("/consent/admin/webhooks")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Keystroke logger" in page
    assert "Delivered" in page and "Consent withdrawn: stop" in page
    for private in ("Alex", "alex@example.com", "sub-alex", "Keystrokes", "keystrokes"):
        assert private not in page.replace("Keystroke logger", "")
    for who in ("alex", "chris", "dana"):
        other = client if who == "alex" else signed_in(app, sign_in, who)
        assert other.get("/consent/admin/webhooks").status_code == 403


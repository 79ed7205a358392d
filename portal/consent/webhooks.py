"""Telling collectors at once that they must stop: signed webhook notices from an outbox.

A withdrawal (or an expiry after a material notice change) writes one ``WebhookDelivery`` per
collector of that category in the same transaction as the ledger event. Right after the
request has committed, a background thread tries to send them, so a collector hears within
seconds; ``portal webhooks deliver --loop`` sends whatever is left and retries failures with
exponential backoff. Rows are claimed with a lease, so any number of senders may run.

Notices follow the Standard Webhooks layout: headers ``webhook-id``, ``webhook-timestamp``
and ``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, keyed with
the collector's ``whsec_`` secret.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import requests
from flask import Flask, current_app, g
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from portal.api.models import Collector
from portal.api.service import open_secret
from portal.auth.models import Person
from portal.consent.chain import format_time
from portal.consent.models import ConsentEvent, ConsentState, DeliveryState, WebhookDelivery
from portal.db import db, get_engine, utcnow
from portal.webhook_urls import WebhookURLRefused, post_checked

log = logging.getLogger(__name__)

#: How often a notice is tried before it is marked failed for the privacy admin.
MAX_ATTEMPTS = 12
FIRST_RETRY = dt.timedelta(seconds=5)
LONGEST_WAIT = dt.timedelta(hours=1)
#: How long a sender may hold a claimed notice before another sender may take it over.
LEASE = dt.timedelta(seconds=60)
TIMEOUT_SECONDS = 5.0
BATCH = 50

KINDS = {ConsentState.WITHDRAWN: "consent.withdrawn", ConsentState.EXPIRED: "consent.expired",
         ConsentState.REFUSED: "consent.refused"}


def enqueue_stop_notices(event: ConsentEvent) -> list[WebhookDelivery]:
    """Queue a notice of ``event`` for every active collector of its category.

    Flushed in the same transaction as the event, so both are saved or neither is.
    """
    collectors = [collector for collector in db.scalars(
        select(Collector).where(Collector.revoked_at.is_(None), Collector.webhook_url != "")
        .order_by(Collector.id)) if collector.records(event.category_key)]
    if not collectors:
        return []
    person = db.get(Person, event.person_id)
    deliveries = []
    for collector in collectors:
        delivery = WebhookDelivery(collector_id=collector.id, event_id=event.id,
                                   kind=KINDS.get(event.state, "consent.changed"),
                                   state=DeliveryState.PENDING, attempts=0,
                                   next_attempt_at=event.occurred_at, created_at=event.occurred_at)
        delivery.id = str(uuid.uuid4())
        delivery.body = json.dumps({
            "type": delivery.kind,
            "timestamp": format_time(event.occurred_at),
            "data": {
                "person_id": event.person_id,
                "subject": person.subject if person else None,
                "category": event.category_key,
                "state": str(event.state),
                "collect": event.state.allows_collection,
                "occurred_at": format_time(event.occurred_at),
            },
        }, sort_keys=True, separators=(",", ":"))
        db.add(delivery)
        deliveries.append(delivery)
    db.flush()
    g.webhooks_queued = True
    return deliveries


#: A deletion notice: the collector must delete its local copies of a person's category.
DELETE_KIND = "data.delete"


def enqueue_deletion_notices(person: Person, category_key: str, *, reference: str,
                             since: dt.datetime | None, until: dt.datetime | None,
                             occurred_at: dt.datetime) -> list[WebhookDelivery]:
    """Queue "delete your local copies" for every active collector of a category.

    Sent when a deletion request is carried out, in the transaction that deletes the portal's
    own copy; ``since``/``until`` bound the period (both ``None``: everything).
    """
    collectors = [collector for collector in db.scalars(
        select(Collector).where(Collector.revoked_at.is_(None), Collector.webhook_url != "")
        .order_by(Collector.id)) if collector.records(category_key)]
    deliveries = []
    for collector in collectors:
        delivery = WebhookDelivery(collector_id=collector.id, event_id=None, kind=DELETE_KIND,
                                   state=DeliveryState.PENDING, attempts=0,
                                   next_attempt_at=occurred_at, created_at=occurred_at)
        delivery.id = str(uuid.uuid4())
        delivery.body = json.dumps({
            "type": DELETE_KIND,
            "timestamp": format_time(occurred_at),
            "data": {
                "person_id": person.id,
                "subject": person.subject,
                "category": category_key,
                "since": format_time(since) if since else None,
                "until": format_time(until) if until else None,
                "request": reference,
                "occurred_at": format_time(occurred_at),
            },
        }, sort_keys=True, separators=(",", ":"))
        db.add(delivery)
        deliveries.append(delivery)
    if deliveries:
        db.flush()
        g.webhooks_queued = True
    return deliveries


def signing_key(secret: str) -> bytes:
    """Return the HMAC key of a ``whsec_`` secret (its base64-decoded bytes)."""
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(secret: str, delivery_id: str, timestamp: int, body: str) -> str:
    """Return the ``webhook-signature`` header value for a notice."""
    message = f"{delivery_id}.{timestamp}.{body}".encode()
    digest = hmac.new(signing_key(secret), message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def backoff(attempts: int) -> dt.timedelta:
    """Return how long to wait after the ``attempts``-th failure (5 s, 10 s, 20 s … 1 h)."""
    wait: dt.timedelta = FIRST_RETRY * (2 ** max(0, attempts - 1))
    return min(wait, LONGEST_WAIT)


@dataclass
class DeliveryRun:
    """What one pass of the sender did."""

    delivered: int = 0
    retrying: int = 0
    failed: int = 0

    @property
    def attempted(self) -> int:
        """Count the notices tried in this pass."""
        return self.delivered + self.retrying + self.failed


def _claim(session: Session, now: dt.datetime) -> list[str]:
    due = session.scalars(
        select(WebhookDelivery.id)
        .where(WebhookDelivery.state == DeliveryState.PENDING,
               WebhookDelivery.next_attempt_at <= now,
               or_(WebhookDelivery.claimed_until.is_(None),
                WebhookDelivery.claimed_until < now))
        .order_by(WebhookDelivery.next_attempt_at).limit(BATCH)).all()
    claimed = []
    for delivery_id in due:
        # Compare-and-set: of several senders reaching the same row, exactly one wins.
        result = session.execute(
            update(WebhookDelivery.__table__)
            .where(WebhookDelivery.id == delivery_id,
                   WebhookDelivery.state == DeliveryState.PENDING,
                   or_(WebhookDelivery.claimed_until.is_(None),
                       WebhookDelivery.claimed_until < now))
            .values(claimed_until=now + LEASE))
        if result.rowcount == 1:  # type: ignore[attr-defined]
            claimed.append(delivery_id)
    session.commit()
    return claimed


def _send(delivery: WebhookDelivery, collector: Collector,
          now: dt.datetime) -> tuple[int | None, str]:
    """Post one signed notice; return the HTTP status (if any) and an error ("" on success)."""
    timestamp = int(now.timestamp())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "consent-portal-webhooks/1",
        "webhook-id": delivery.id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(open_secret(collector.webhook_secret_sealed), delivery.id,
                                  timestamp, delivery.body),
    }
    try:
        # Checked again now, and the address connected to as well: DNS may have changed.
        response = post_checked(collector.webhook_url, data=delivery.body.encode(),
                                headers=headers, timeout=TIMEOUT_SECONDS, allow_redirects=False)
    except WebhookURLRefused as exc:
        return None, f"not sent: the webhook URL {exc}"
    except requests.RequestException as exc:
        return None, type(exc).__name__
    if 200 <= response.status_code < 300:
        return response.status_code, ""
    return response.status_code, f"HTTP {response.status_code}"


def deliver_due(app: Flask | None = None, *, now: dt.datetime | None = None) -> DeliveryRun:
    """Send every notice that is due once; record success, or schedule the next try."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    run = DeliveryRun()
    with app.app_context(), Session(get_engine(app), expire_on_commit=False) as session:
        moment = now or utcnow()
        for delivery_id in _claim(session, moment):
            delivery = session.get(WebhookDelivery, delivery_id)
            assert delivery is not None
            collector = session.get(Collector, delivery.collector_id)
            attempt_at = now or utcnow()
            if collector is None or not collector.active or not collector.webhook_url:
                status, error = None, "collector revoked"
                delivery.attempts = MAX_ATTEMPTS - 1
            else:
                status, error = _send(delivery, collector, attempt_at)
            delivery.attempts += 1
            delivery.last_attempt_at = attempt_at
            delivery.last_status = status
            delivery.last_error = error[:255]
            delivery.claimed_until = None
            if not error:
                delivery.state = DeliveryState.DELIVERED
                delivery.delivered_at = attempt_at
                run.delivered += 1
            elif delivery.attempts >= MAX_ATTEMPTS:
                delivery.state = DeliveryState.FAILED
                run.failed += 1
                log.error("webhook notice %s to collector %s failed for good: %s",
                          delivery.id, delivery.collector_id, error)
            else:
                delivery.next_attempt_at = attempt_at + backoff(delivery.attempts)
                run.retrying += 1
                log.warning("webhook notice %s to collector %s failed (%s); retry at %s",
                            delivery.id, delivery.collector_id, error,
                            delivery.next_attempt_at.isoformat())
            session.commit()
    return run


def _deliver_quietly(app: Flask) -> None:
    try:
        deliver_due(app)
    except Exception:
        # The outbox keeps the notice; the loop or the next request sends it.
        log.exception("sending webhook notices after a request failed")


def start_background_delivery(app: Flask) -> Callable[[], None]:
    """Return a callback that sends due notices in a thread (for after the commit)."""

    def start() -> None:
        threading.Thread(target=_deliver_quietly, args=(app,), name="webhook-delivery",
                         daemon=True).start()

    return start


def send_after_commit(response: Response) -> Response:
    """Arrange for queued notices to go out once the response is sent (and so committed)."""
    if g.pop("webhooks_queued", False) and response.status_code < 400:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        response.call_on_close(start_background_delivery(app))
    return response


@dataclass(frozen=True)
class DeliveryLine:
    """One notice as the privacy admin sees it: no person, no category, only the delivery."""

    id: str
    collector: str
    kind: str
    state: DeliveryState
    attempts: int
    created_at: dt.datetime
    last_attempt_at: dt.datetime | None
    last_status: int | None
    last_error: str
    next_attempt_at: dt.datetime | None


def delivery_overview(limit: int = 100) -> tuple[dict[str, int], list[DeliveryLine]]:
    """Return how many notices are in each state, and the latest ones, for the privacy admin."""
    counts = {state.value: 0 for state in DeliveryState}
    for state, number in db.execute(select(WebhookDelivery.state, func.count())
                                    .group_by(WebhookDelivery.state)):
        counts[str(state)] = number
    rows = db.execute(
        select(WebhookDelivery, Collector.name)
        .join(Collector, Collector.id == WebhookDelivery.collector_id)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id).limit(limit))
    lines = [DeliveryLine(
        delivery.id, name, delivery.kind, delivery.state, delivery.attempts, delivery.created_at,
        delivery.last_attempt_at, delivery.last_status, delivery.last_error,
        delivery.next_attempt_at if delivery.state is DeliveryState.PENDING else None)
        for delivery, name in rows]
    return counts, lines

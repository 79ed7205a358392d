"""Telling collectors at once that they must stop: signed webhook notices from an outbox.

A withdrawal (or an expiry after a material notice change) writes one ``WebhookDelivery`` per
collector of that category in the same transaction as the ledger event (consent sends
``collection_stopped``; the API's ``init_app`` connects :func:`tell_collectors_to_stop`), and
so does the deletion of a category by a deletion request. Once the request has committed and
answered, a background thread tries to send them, so a collector hears within seconds;
``portal webhooks deliver --loop`` sends whatever is left and retries failures with exponential
backoff. The claiming, retrying and sending in
the background are :mod:`portal.outbox`'s, shared with mail.

The same outbox carries the notices of :mod:`portal.training` to training clients
(``training.snapshot.outdated``): that package sits above this one, so it tells the sender
where its notices go through :func:`register_recipients` instead of being imported here.

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
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from flask import Flask, current_app
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal import outbox
from portal.api.models import Collector, DeliveryState, WebhookDelivery
from portal.api.service import open_secret
from portal.auth.models import Person
from portal.consent.chain import format_time
from portal.consent.models import ConsentEvent, ConsentState
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
RETRIES = outbox.Retries(MAX_ATTEMPTS, FIRST_RETRY, LONGEST_WAIT, LEASE)

KINDS = {ConsentState.WITHDRAWN: "consent.withdrawn", ConsentState.EXPIRED: "consent.expired",
         ConsentState.REFUSED: "consent.refused"}


def _listening(category_key: str) -> list[Collector]:
    """Return the active collectors of a category that have a webhook, in a stable order."""
    return [collector for collector in db.scalars(
        select(Collector).where(Collector.revoked_at.is_(None), Collector.webhook_url != "")
        .order_by(Collector.id)) if collector.records(category_key)]


def enqueue_stop_notices(event: ConsentEvent) -> list[WebhookDelivery]:
    """Queue a notice of ``event`` for every active collector of its category.

    Flushed in the same transaction as the event, so both are saved or neither is.
    """
    collectors = _listening(event.category_key)
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
    outbox.send_after_commit(deliver_due, in_thread=True)
    return deliveries


def tell_collectors_to_stop(event: ConsentEvent, **_kwargs: Any) -> None:
    """Queue the stop notices of a consent change (connected to ``collection_stopped``)."""
    enqueue_stop_notices(event)


#: A deletion notice: the collector must delete its local copies of a person's category.
DELETE_KIND = "data.delete"


def enqueue_deletion_notices(person: Person, category_key: str, *, reference: str,
                             since: dt.datetime | None, until: dt.datetime | None,
                             occurred_at: dt.datetime) -> list[WebhookDelivery]:
    """Queue "delete your local copies" for every active collector of a category.

    Sent when a deletion request is carried out, in the transaction that deletes the portal's
    own copy; ``since``/``until`` bound the period (both ``None``: everything).
    """
    collectors = _listening(category_key)
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
        outbox.send_after_commit(deliver_due, in_thread=True)
    return deliveries


@dataclass(frozen=True)
class Recipient:
    """Where a notice goes: who (for logs and the privacy admin), the URL, the sealed secret."""

    name: str
    webhook_url: str
    webhook_secret_sealed: str
    active: bool


#: Finds the recipient of a notice that is not addressed to a collector (``None``: not one of
#: the finder's notices, or its recipient is gone).
RecipientFinder = Callable[[Session, WebhookDelivery], Recipient | None]
_FINDERS = "portal.webhook_recipients"


def register_recipients(app: Flask, finder: RecipientFinder) -> None:
    """Have the sender deliver notices addressed to others than collectors (training clients).

    For the packages above this one that queue notices in this outbox, in their ``init_app``.
    """
    finders: list[RecipientFinder] = app.extensions.setdefault(_FINDERS, [])
    if finder not in finders:
        finders.append(finder)


def find_recipient(app: Flask, session: Session, delivery: WebhookDelivery) -> Recipient | None:
    """Return where ``delivery`` goes, or ``None`` when its recipient no longer exists."""
    if delivery.collector_id is not None:
        collector = session.get(Collector, delivery.collector_id)
        if collector is None:
            return None
        return Recipient(f"collector {collector.name}", collector.webhook_url,
                         collector.webhook_secret_sealed, collector.active)
    for finder in app.extensions.get(_FINDERS, ()):
        found = finder(session, delivery)
        if found is not None:
            return found
    return None


def signing_key(secret: str) -> bytes:
    """Return the HMAC key of a ``whsec_`` secret (its base64-decoded bytes)."""
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(secret: str, delivery_id: str, timestamp: int, body: str) -> str:
    """Return the ``webhook-signature`` header value for a notice."""
    message = f"{delivery_id}.{timestamp}.{body}".encode()
    digest = hmac.new(signing_key(secret), message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


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


def _send(delivery: WebhookDelivery, recipient: Recipient,
          now: dt.datetime) -> tuple[int | None, str]:
    """Post one signed notice; return the HTTP status (if any) and an error ("" on success)."""
    timestamp = int(now.timestamp())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "consent-portal-webhooks/1",
        "webhook-id": delivery.id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(open_secret(recipient.webhook_secret_sealed), delivery.id,
                                  timestamp, delivery.body),
    }
    try:
        # Checked again now, and the address connected to as well: DNS may have changed.
        response = post_checked(recipient.webhook_url, data=delivery.body.encode(),
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
        for delivery_id in outbox.claim(session, WebhookDelivery, DeliveryState.PENDING,
                                        now=moment, retries=RETRIES):
            delivery = session.get(WebhookDelivery, delivery_id)
            assert delivery is not None
            recipient = find_recipient(app, session, delivery)
            attempt_at = now or utcnow()
            if recipient is None or not recipient.active or not recipient.webhook_url:
                status, error = None, "recipient revoked"
                delivery.attempts = MAX_ATTEMPTS - 1
            else:
                status, error = _send(delivery, recipient, attempt_at)
            delivery.last_attempt_at = attempt_at
            delivery.last_status = status
            outcome = outbox.settle(delivery, error, at=attempt_at, retries=RETRIES,
                                    done=DeliveryState.DELIVERED, failed=DeliveryState.FAILED)
            if outcome is outbox.Outcome.DONE:
                delivery.delivered_at = attempt_at
                run.delivered += 1
            elif outcome is outbox.Outcome.FAILED:
                run.failed += 1
                log.error("webhook notice %s to %s failed for good: %s", delivery.id,
                          _recipient_name(recipient, delivery), error)
            else:
                run.retrying += 1
                log.warning("webhook notice %s to %s failed (%s); retry at %s", delivery.id,
                            _recipient_name(recipient, delivery), error,
                            delivery.next_attempt_at.isoformat())
            session.commit()
    return run


def _recipient_name(recipient: Recipient | None, delivery: WebhookDelivery) -> str:
    if recipient is not None:
        return recipient.name
    if delivery.collector_id is not None:
        return f"collector {delivery.collector_id}"
    return f"training client {delivery.training_client_id}"


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
        .outerjoin(Collector, Collector.id == WebhookDelivery.collector_id)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id).limit(limit))
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    lines = []
    for delivery, name in rows:
        if name is None:
            # A training client's notice: its name from the package that queued it.
            recipient = find_recipient(app, db, delivery)
            name = recipient.name if recipient is not None else _recipient_name(None, delivery)
        lines.append(DeliveryLine(
            delivery.id, name, delivery.kind, delivery.state, delivery.attempts,
            delivery.created_at, delivery.last_attempt_at, delivery.last_status,
            delivery.last_error,
            delivery.next_attempt_at if delivery.state is DeliveryState.PENDING else None))
    return counts, lines

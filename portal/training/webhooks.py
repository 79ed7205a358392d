"""Telling a training client of its snapshots' changes: signed notices in the collectors' outbox.

A notice (``training.snapshot.outdated``, ``training.snapshot.retired``) is a
:class:`~portal.api.models.WebhookDelivery` addressed to the training client, written in the
transaction of the change it announces, and sent by the collectors' sender
(:func:`portal.api.webhooks.deliver_due`: after the request's answer, then by
``portal webhooks deliver --loop``), with the same Standard Webhooks signature and retries.
One outbox, one sender, one place where the privacy admin sees failed notices. A notice names
the snapshot, what happened and when; never a person, nor how many.
"""

from __future__ import annotations

import json
import uuid

from sqlalchemy.orm import Session

from portal import outbox
from portal.api.models import DeliveryState, WebhookDelivery
from portal.api.webhooks import Recipient, deliver_due
from portal.consent.chain import format_time
from portal.db import db
from portal.training.models import SnapshotEvent, SnapshotEventKind, TrainingClient

OUTDATED_KIND = "training.snapshot.outdated"
RETIRED_KIND = "training.snapshot.retired"
KINDS = {SnapshotEventKind.OUTDATED: OUTDATED_KIND, SnapshotEventKind.RETIRED: RETIRED_KIND}


def find_training_client(session: Session, delivery: WebhookDelivery) -> Recipient | None:
    """Return the training client a notice is addressed to (registered with the sender)."""
    if delivery.training_client_id is None:
        return None
    client = session.get(TrainingClient, delivery.training_client_id)
    if client is None:
        return None
    return Recipient(f"training client {client.name}", client.webhook_url,
                     client.webhook_secret_sealed, client.active)


def notice_body(event: SnapshotEvent) -> str:
    """Return the exact body of the notice of ``event`` (signed and sent byte for byte)."""
    snapshot = event.snapshot
    data: dict[str, object] = {
        "snapshot": snapshot.public_id,
        "number": snapshot.number,
        "cursor": str(event.id),
        "occurred_at": format_time(event.occurred_at),
    }
    if event.kind is SnapshotEventKind.OUTDATED:
        data["reasons"] = list(event.reasons)
    return json.dumps({"type": KINDS[event.kind], "timestamp": format_time(event.occurred_at),
                       "data": data}, sort_keys=True, separators=(",", ":"))


def enqueue_snapshot_notice(event: SnapshotEvent) -> WebhookDelivery | None:
    """Queue the notice of ``event`` for the snapshot's client, if it listens (flushes).

    Sent once the unit of work has committed and answered; a command leaves it to
    ``portal webhooks deliver``.
    """
    client = event.snapshot.client
    if not client.active or not client.webhook_url:
        return None
    delivery = WebhookDelivery(collector_id=None, training_client_id=client.id, event_id=None,
                               kind=KINDS[event.kind], state=DeliveryState.PENDING, attempts=0,
                               next_attempt_at=event.occurred_at, created_at=event.occurred_at)
    delivery.id = str(uuid.uuid4())
    delivery.body = notice_body(event)
    db.add(delivery)
    db.flush()
    outbox.send_after_commit(deliver_due, in_thread=True)
    return delivery


def rewrite_notice(delivery: WebhookDelivery, event: SnapshotEvent) -> None:
    """Bring a notice not yet sent (queued in this transaction) up to date with its event."""
    delivery.body = notice_body(event)
    db.flush()

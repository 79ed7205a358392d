"""What mail and webhook notices share: an outbox, claimed with a lease, retried with backoff.

A message owed to someone is a row written in the same transaction as the step it announces,
so it is never sent for a step that was rolled back, and never lost for one that was saved.
A sender claims due rows with a lease (so any number of senders may run, and none sends a row
another holds), tries each once, and records the outcome: done, retried later with
exponential backoff, or failed for good after the last try. After a request that queued
rows has committed and answered, they are sent at once; the commands (``portal mail send``,
``portal webhooks deliver``) send what is left.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app, has_request_context
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from portal.db import after_commit

log = logging.getLogger(__name__)

#: Sends what is due in ``app``'s outbox once (``portal.mail.send_pending``, …).
Sender = Callable[[Flask], object]


@dataclass(frozen=True)
class Retries:
    """How an outbox retries: how often, how long it waits, how long a claim holds."""

    max_attempts: int
    first_retry: dt.timedelta
    longest_wait: dt.timedelta
    #: How long a sender may hold a claimed row before another sender may take it over.
    lease: dt.timedelta
    #: How many rows one pass claims.
    batch: int = 50

    def backoff(self, attempts: int) -> dt.timedelta:
        """Return how long to wait after the ``attempts``-th failure (doubling, up to a cap)."""
        wait: dt.timedelta = self.first_retry * (2 ** max(0, attempts - 1))
        return min(wait, self.longest_wait)


def claim(session: Session, model: Any, pending: enum.Enum, *, now: dt.datetime,
          retries: Retries) -> list[str]:
    """Claim the rows of ``model`` due at ``now``, oldest first; commit and return their ids.

    ``model`` has the outbox columns ``id``, ``state``, ``next_attempt_at`` and
    ``claimed_until``; ``pending`` is its state of a row still to send.
    """
    free = or_(model.claimed_until.is_(None), model.claimed_until < now)
    due = session.scalars(
        select(model.id).where(model.state == pending, model.next_attempt_at <= now, free)
        .order_by(model.next_attempt_at).limit(retries.batch)).all()
    claimed = []
    for row_id in due:
        # Compare-and-set: of several senders reaching the same row, exactly one wins.
        result = session.execute(
            update(model.__table__).where(model.id == row_id, model.state == pending, free)
            .values(claimed_until=now + retries.lease))
        if result.rowcount == 1:  # type: ignore[attr-defined]
            claimed.append(row_id)
    session.commit()
    return claimed


class Outcome(enum.StrEnum):
    """What became of one try."""

    DONE = "done"
    RETRYING = "retrying"
    FAILED = "failed"


def settle(row: Any, error: str, *, at: dt.datetime, retries: Retries, done: enum.Enum,
           failed: enum.Enum, for_good: bool = False) -> Outcome:
    """Record one try of a claimed row (``error`` empty: it went out) and release the claim.

    A failure is retried after :meth:`Retries.backoff`, until the last attempt or at once
    when it can never succeed (``for_good``); then the row is marked ``failed``.
    """
    row.attempts += 1
    row.claimed_until = None
    row.last_error = error[:255]
    if not error:
        row.state = done
        return Outcome.DONE
    if for_good or row.attempts >= retries.max_attempts:
        row.state = failed
        return Outcome.FAILED
    row.next_attempt_at = at + retries.backoff(row.attempts)
    return Outcome.RETRYING


@dataclass(frozen=True)
class _AfterAnswer:
    """Run a sender once, quietly; equal ones are queued once per request."""

    send: Sender
    app: Flask
    in_thread: bool

    def __call__(self) -> None:
        if self.in_thread:
            threading.Thread(target=self._quietly, name=f"outbox-{self._name}",
                             daemon=True).start()
        else:
            self._quietly()

    @property
    def _name(self) -> str:
        return str(getattr(self.send, "__qualname__", self.send))

    def _quietly(self) -> None:
        try:
            self.send(self.app)
        except Exception:
            # The outbox keeps every row; the command or the next request sends it.
            log.exception("sending %s after a request failed", self._name)


def send_after_commit(send: Sender, *, in_thread: bool = False) -> None:
    """Have ``send`` run once this request has committed and its answer has been sent.

    It runs where the server closes the answer (the client already has it), or with
    ``in_thread`` in a thread of its own, so that the worker is not held either (for senders
    that may wait on several slow receivers in turn). Nothing runs if the request rolls back,
    nor outside a request: a command that queues rows leaves them to the sending commands, so
    that it controls what is sent.
    """
    if not has_request_context():
        return
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    after_commit(_AfterAnswer(send, app, in_thread), after_response=True)

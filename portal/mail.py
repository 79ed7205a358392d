"""Mail to employees and the DPO team: an outbox written with each step, sent after commit.

:func:`queue_mail` renders a message in the recipient's language and adds it to the outbox in
the same transaction as the step it announces, so a mail is never sent for a step that was
rolled back, and never lost for one that was saved. :func:`send_pending` sends what is due
through the configured SMTP server (STARTTLS, implicit TLS, or none for a local relay); a
failure leaves the message pending with a later retry time. It runs right after a request
that queued mail, and from ``portal mail send``. The claiming, retrying and sending in the
background are :mod:`portal.outbox`'s, shared with the webhook notices.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import smtplib
import ssl
import uuid
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import click
from flask import Flask, current_app, render_template
from flask.cli import with_appcontext
from flask_babel import force_locale
from flask_babel.speaklater import LazyString
from sqlalchemy import CheckConstraint, Enum, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, Session, mapped_column

from portal import outbox
from portal.db import Base, UTCDateTime, get_engine, utcnow

log = logging.getLogger(__name__)

#: After this many failed tries a message is marked failed (and shown by ``portal mail send``).
MAX_ATTEMPTS = 20
FIRST_RETRY = dt.timedelta(minutes=1)
LONGEST_WAIT = dt.timedelta(hours=6)
LEASE = dt.timedelta(minutes=2)
TIMEOUT_SECONDS = 10.0
RETRIES = outbox.Retries(MAX_ATTEMPTS, FIRST_RETRY, LONGEST_WAIT, LEASE)


class MailState(enum.StrEnum):
    """Where a message stands."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class MailMessage(Base):
    """A message owed to someone: the exact text to send, kept until it is sent.

    Bodies name requests and steps only, never collected content.
    """

    __tablename__ = "mail_message"
    __table_args__ = (
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        Index("ix_mail_message_state_next_attempt_at", "state", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True,
                                    default=lambda: str(uuid.uuid4()))
    recipient: Mapped[str] = mapped_column(String(320))
    locale: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[MailState] = mapped_column(
        Enum(MailState, native_enum=False, length=16, validate_strings=True,
             values_callable=lambda members: [str(member.value) for member in members],
             create_constraint=True, name="mailstate"),
        default=MailState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str] = mapped_column(String(255), default="")
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


def recipient_locale(locale: str | None) -> str:
    """Return the language to write to someone in: theirs if we speak it, else the default."""
    from portal.i18n import LANGUAGES

    return locale if locale in LANGUAGES else str(current_app.config["DEFAULT_LOCALE"])


def queue_mail(recipient: str, *, locale: str | None, subject: LazyString, template: str,
               **context: object) -> MailMessage | None:
    """Render ``template`` in the recipient's language and add it to the outbox (flushes).

    ``subject`` is a lazy string, translated in that language. Returns ``None`` when there is
    nobody to write to (no address).
    """
    from portal.db import db

    if not recipient:
        return None
    language = recipient_locale(locale)
    with force_locale(language):
        message = MailMessage(recipient=recipient[:320], locale=language,
                              subject=str(subject)[:255],
                              body=render_template(template, **context),
                              state=MailState.PENDING, attempts=0, created_at=utcnow(),
                              next_attempt_at=utcnow())
    if not is_single_address(recipient):
        # The address comes from the identity provider: "a@x.com\r\nBcc: b@y.com" or
        # "a@x.com, b@y.com" would add recipients. Kept, marked failed, so the outbox says why.
        message.state, message.last_error = MailState.FAILED, NOT_ONE_ADDRESS
        log.warning("mail %r not sent: %s", recipient, NOT_ONE_ADDRESS)
    db.add(message)
    db.flush()
    outbox.send_after_commit(send_pending)
    return message


NOT_ONE_ADDRESS = "not sent: the recipient is not one valid e-mail address"


def is_single_address(recipient: str) -> bool:
    """Return whether ``recipient`` is exactly one plain address (``name@domain``), no more."""
    try:
        address = Address(addr_spec=recipient)
    except (ValueError, IndexError, HeaderParseError):
        return False
    return bool(address.username and address.domain) and address.addr_spec == recipient


@dataclass
class SendRun:
    """What one pass of the sender did."""

    sent: int = 0
    retrying: int = 0
    failed: int = 0


def _connect(config: dict[str, object]) -> smtplib.SMTP:
    host, port = str(config["SMTP_HOST"]), int(str(config["SMTP_PORT"]))
    security = config["SMTP_SECURITY"]
    context = ssl.create_default_context()
    server: smtplib.SMTP
    if security == "tls":
        server = smtplib.SMTP_SSL(host, port, timeout=TIMEOUT_SECONDS, context=context)
    else:
        server = smtplib.SMTP(host, port, timeout=TIMEOUT_SECONDS)
        if security == "starttls":
            server.starttls(context=context)
    if config["SMTP_USERNAME"]:
        server.login(str(config["SMTP_USERNAME"]), str(config["SMTP_PASSWORD"]))
    return server


def _email(message: MailMessage, sender: str) -> EmailMessage:
    email = EmailMessage()
    email["From"] = sender
    email["To"] = message.recipient
    email["Subject"] = message.subject
    email["Date"] = format_datetime(message.created_at)
    email["Message-ID"] = make_msgid(idstring=message.id.replace("-", ""), domain="portal")
    email.set_content(message.body)
    # After set_content, which replaces every Content-* header.
    email["Content-Language"] = message.locale
    return email


def send_pending(app: Flask | None = None, *, now: dt.datetime | None = None) -> SendRun:
    """Send every message that is due once; a failure is retried later, never dropped."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    run = SendRun()
    if not app.config["SMTP_HOST"]:
        return run
    with app.app_context(), Session(get_engine(app), expire_on_commit=False) as session:
        claimed = outbox.claim(session, MailMessage, MailState.PENDING, now=now or utcnow(),
                               retries=RETRIES)
        if not claimed:
            return run
        server: smtplib.SMTP | None = None
        try:
            server = _connect(app.config)
        except (OSError, smtplib.SMTPException) as exc:
            connect_error = f"{type(exc).__name__}: {exc}"[:255]
        for message_id in claimed:
            message = session.get(MailMessage, message_id)
            assert message is not None
            attempt_at = now or utcnow()
            error = "" if server is not None else connect_error
            try:
                email = _email(message, app.config["SMTP_FROM"])
            except ValueError:
                # A header that would carry a line break (an older row; queue_mail refuses
                # them now): it can never be sent, and must not stop the others.
                email, error = None, NOT_ONE_ADDRESS
            if server is not None and email is not None:
                try:
                    server.send_message(email)
                except (OSError, smtplib.SMTPException) as exc:
                    error = f"{type(exc).__name__}: {exc}"[:255]
            outcome = outbox.settle(message, error, at=attempt_at, retries=RETRIES,
                                    done=MailState.SENT, failed=MailState.FAILED,
                                    for_good=email is None)
            if outcome is outbox.Outcome.DONE:
                message.sent_at = attempt_at
                run.sent += 1
            elif outcome is outbox.Outcome.FAILED:
                run.failed += 1
                log.error("mail %s failed for good: %s", message.id, error)
            else:
                run.retrying += 1
                log.warning("mail %s not sent (%s); retry at %s", message.id, error,
                            message.next_attempt_at.isoformat())
            session.commit()
        if server is not None:
            try:
                server.quit()
            except (OSError, smtplib.SMTPException):
                log.warning("the mail server did not close the connection cleanly")
    return run


@click.group("mail")
def mail_group() -> None:
    """Send the portal's mail."""


@mail_group.command("send")
@with_appcontext
def mail_send() -> None:
    """Send every message that is due; failures stay pending and are retried later."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    if not app.config["SMTP_HOST"]:
        click.echo("PORTAL_SMTP_HOST is not set: nothing was sent; messages stay pending.")
        return
    run = send_pending(app)
    click.echo(f"{run.sent} sent, {run.retrying} to retry, {run.failed} failed for good.")


def init_app(app: Flask) -> None:
    """Add ``portal mail send`` (a request that queues mail sends it by itself)."""
    app.cli.add_command(mail_group)

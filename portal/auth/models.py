"""People as the identity provider knows them, and their server-side sessions."""

from __future__ import annotations

import datetime as dt
import enum
import secrets
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, UTCDateTime, utcnow


class Role(enum.StrEnum):
    """A role beyond "employee", which every signed-in person is for their own data."""

    HR = "hr"
    DPO = "dpo"
    ADMIN = "admin"


def new_workplace_pseudonym() -> str:
    """Return a fresh workplace pseudonym: "p-" and 12 random hex digits."""
    return "p-" + secrets.token_hex(6)


class Person(Base):
    """Someone who has signed in; keyed by issuer and subject, never by e-mail.

    Name, e-mail, department, location and roles are copied from the identity provider at
    every sign-in, so the provider stays the source of truth for them.
    """

    __tablename__ = "person"
    __table_args__ = (UniqueConstraint("issuer", "subject"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    issuer: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255), default="")
    email: Mapped[str] = mapped_column(String(320), default="")
    department: Mapped[str] = mapped_column(String(255), default="")
    location: Mapped[str] = mapped_column(String(255), default="")
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    locale: Mapped[str | None] = mapped_column(String(16))
    timezone: Mapped[str | None] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_sign_in_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # How collectors name this person inside other people's records ("p-" and 12 hex
    # digits, e.g. a conversation's author): random, so it says nothing about the person;
    # the collector API hands it out with each consent lookup.
    workplace_pseudonym: Mapped[str] = mapped_column(String(14), unique=True,
                                                     default=new_workplace_pseudonym)

    # Flask-Login's interface. Its id lives in the server-side session (portal.auth.sessions),
    # so deleting that session's row is what makes sign-out final.
    is_anonymous = False

    @property
    def is_authenticated(self) -> bool:
        """Say yes: a loaded person is signed in (Flask-Login)."""
        return True

    @property
    def is_active(self) -> bool:
        """Say whether the person may still sign in (Flask-Login)."""
        return self.active

    def get_id(self) -> str:
        """Return the id Flask-Login keeps in the session."""
        return str(self.id)

    def has_role(self, role: Role | str) -> bool:
        """Say whether the person holds ``role`` (from the last sign-in's claims)."""
        return str(role) in self.roles

    @property
    def display_name(self) -> str:
        """Return what to call the person on a page."""
        return self.name or self.email or self.subject


class WebSession(Base):
    """A browser session kept on the server; the cookie holds only a random id.

    Only the SHA-256 of the id is stored, so a copy of the table lets nobody take over a
    session. Deleting the row (sign-out, a disabled person, a timeout) kills the cookie.
    """

    __tablename__ = "web_session"
    __table_args__ = (
        CheckConstraint("expires_at > created_at", name="expires_after_creation"),
        Index("ix_web_session_person_id", "person_id"),
    )

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The absolute limit; the idle limit is checked against last_seen_at.
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # When the person last proved who they are at the provider (OIDC auth_time).
    authenticated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

"""Server-side sessions: the cookie carries a random id, the data lives in the database.

Flask's default session is a signed cookie that stays valid after sign-out; here sign-out
deletes the row, so the old cookie gets nothing. Rows are shared by every process and host.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from typing import Any, NoReturn

from flask import Flask, Request, Response
from flask.sessions import NullSession, SessionInterface, SessionMixin
from sqlalchemy import delete, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session as DbSession
from typing_extensions import override
from werkzeug.datastructures import CallbackDict

from portal.auth.models import WebSession
from portal.db import get_engine, utcnow

log = logging.getLogger(__name__)
COOKIE_NAME = "portal_session"
# Writing last_seen_at on every request would turn every page view into a write.
TOUCH_INTERVAL = dt.timedelta(seconds=60)
#: Requests under this path (the collector API) authenticate by bearer token only and never
#: have a session: no row is read or written for them, whatever cookies they carry.
SESSIONLESS_PREFIX = "/api/"


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class ServerSession(CallbackDict[str, Any], SessionMixin):
    """The session of one browser, loaded from its row."""

    def __init__(self, data: dict[str, Any] | None = None, session_id: str | None = None,
                 last_seen_at: dt.datetime | None = None,
                 authenticated_at: dt.datetime | None = None) -> None:
        def on_update(_self: CallbackDict[str, Any]) -> None:
            self.modified = True

        super().__init__(data or {}, on_update)
        self.session_id = session_id
        self.last_seen_at = last_seen_at
        self.authenticated_at = authenticated_at
        self.modified = False
        self.regenerate_id = False
        self.unavailable = False

    @property
    def new(self) -> bool:  # type: ignore[override]
        """Say whether the browser has no session row yet."""
        return self.session_id is None


class NoSession(NullSession):
    """The session of a request that has none (the collector API): empty, never stored."""

    def _refuse(self, *_args: object, **_kwargs: object) -> NoReturn:
        raise RuntimeError(f"requests under {SESSIONLESS_PREFIX} have no session; they "
                           "authenticate by bearer token only")

    __setitem__ = __delitem__ = clear = pop = popitem = update = setdefault = _refuse


def regenerate(session: SessionMixin, *, authenticated_at: dt.datetime | None) -> None:
    """Give the session a new id at sign-in and sign-out, so an old or planted id is worthless."""
    assert isinstance(session, ServerSession)
    session.regenerate_id = True
    session.authenticated_at = authenticated_at
    session.modified = True


def revoke_sessions(db: DbSession, person_id: int) -> int:
    """Delete every session of a person (disabled, or signed out everywhere)."""
    result = db.execute(delete(WebSession).where(WebSession.person_id == person_id))
    return result.rowcount or 0


class DatabaseSessionInterface(SessionInterface):
    """Keep sessions in the ``web_session`` table."""

    null_session_class = NoSession

    @override
    def open_session(self, app: Flask, request: Request) -> ServerSession | None:
        if request.path.startswith(SESSIONLESS_PREFIX):
            # Flask then uses a NoSession, and never calls save_session for it.
            return None
        session_id = request.cookies.get(COOKIE_NAME)
        if not session_id or len(session_id) > 128:
            return ServerSession()
        now = utcnow()
        try:
            return self._load(app, session_id, now)
        except SQLAlchemyError as exc:
            # The database is down: serve the request without a session (health checks and
            # the 503 page still work) and never write one back.
            log.error("sessions unavailable: %s", type(exc).__name__)
            unavailable = ServerSession()
            unavailable.unavailable = True
            return unavailable

    def _load(self, app: Flask, session_id: str, now: dt.datetime) -> ServerSession:
        with DbSession(get_engine(app)) as db:
            row = db.get(WebSession, _hash(session_id))
            if row is None:
                return ServerSession()
            idle_limit = dt.timedelta(minutes=app.config["SESSION_IDLE_MINUTES"])
            if row.expires_at <= now or row.last_seen_at + idle_limit <= now:
                db.delete(row)
                db.commit()
                return ServerSession()
            return ServerSession(dict(row.data), session_id, row.last_seen_at,
                                 row.authenticated_at)

    @override
    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        assert isinstance(session, ServerSession)
        if session.unavailable:
            return
        try:
            self._save(app, session, response)
        except SQLAlchemyError as exc:
            # Without a stored session the browser gets no cookie; nothing half-written.
            log.error("session not saved, database unavailable: %s", type(exc).__name__)

    def _save(self, app: Flask, session: ServerSession, response: Response) -> None:
        secure = self._is_secure(app)
        if not session and not session.regenerate_id:
            if session.session_id is not None:
                # Emptied (sign-out): the row goes, and the browser is told to forget the id.
                self._delete(app, session.session_id)
                response.delete_cookie(COOKIE_NAME, path="/", secure=secure, httponly=True,
                                       samesite="Lax")
            return
        now = utcnow()
        person_id = _person_id(session)
        if session.session_id is None or session.regenerate_id:
            if session.session_id is not None:
                self._delete(app, session.session_id)
            session.session_id = secrets.token_urlsafe(32)
            expires_at = now + dt.timedelta(hours=app.config["SESSION_ABSOLUTE_HOURS"])
            with DbSession(get_engine(app)) as db, db.begin():
                db.add(WebSession(id_hash=_hash(session.session_id), person_id=person_id,
                                  data=dict(session), created_at=now, last_seen_at=now,
                                  expires_at=expires_at,
                                  authenticated_at=session.authenticated_at))
            session.regenerate_id = False
        elif session.modified or (session.last_seen_at or now) + TOUCH_INTERVAL <= now:
            values: dict[str, Any] = {"last_seen_at": now}
            if session.modified:
                values |= {"data": dict(session), "person_id": person_id}
            with DbSession(get_engine(app)) as db, db.begin():
                db.execute(update(WebSession)
                           .where(WebSession.id_hash == _hash(session.session_id))
                           .values(**values))
        else:
            return
        # No Expires: the cookie ends with the browser; the server enforces both limits.
        response.set_cookie(COOKIE_NAME, session.session_id, path="/", secure=secure,
                            httponly=True, samesite="Lax")

    @staticmethod
    def _is_secure(app: Flask) -> bool:
        from flask import request

        return bool(app.config.get("SESSION_COOKIE_SECURE")) or request.scheme == "https"

    @staticmethod
    def _delete(app: Flask, session_id: str) -> None:
        with DbSession(get_engine(app)) as db, db.begin():
            db.execute(delete(WebSession).where(WebSession.id_hash == _hash(session_id)))


def _person_id(session: ServerSession) -> int | None:
    user_id = session.get("_user_id")
    return int(user_id) if user_id and str(user_id).isdigit() else None


"""Database plumbing: the declarative base, one engine per app, one unit of work per request.

Service functions only ``flush``; the request commits once at its end (or rolls back on any
error or 4xx answer), so a change and the audit row that describes it are saved or undone
together. Commands commit explicitly through :func:`commit`. Work that must wait until the
change is saved (the shred journal, sending mail and webhook notices) is queued with
:func:`after_commit`.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import select
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, g, has_request_context
from sqlalchemy import DateTime, Enum, MetaData, create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, SessionTransaction, sessionmaker
from sqlalchemy.types import TypeDecorator
from typing_extensions import override
from werkzeug.local import LocalProxy

log = logging.getLogger(__name__)

EXTENSION = "portal.db"
#: Where a unit of work keeps the callbacks waiting for its commit (``Session.info``).
AFTER_COMMIT = "portal.after_commit"
#: Where a request keeps the committed callbacks waiting for its response to be sent (``g``).
AFTER_RESPONSE = "portal_after_response"

# Stable constraint names, so that migrations can name what they change on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Base of every model."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored in UTC and always returned timezone-aware.

    SQLite keeps no time zone; without this, values read back would be naive and compare
    wrongly with aware ones.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    @override
    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC)

    @override
    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def _enum_values(members: type[enum.Enum]) -> list[str]:
    return [str(member.value) for member in members]


def str_enum(cls: type[enum.Enum], length: int) -> Enum:
    """Return the column type of a StrEnum: stored as its value, checked by the database.

    No native enum type, so the same schema works on SQLite and PostgreSQL; the CHECK
    constraint is named after the enum class.
    """
    return Enum(cls, native_enum=False, length=length, validate_strings=True,
                values_callable=_enum_values, create_constraint=True, name=cls.__name__.lower())


def utcnow() -> dt.datetime:
    """Return the current time, aware, in UTC (use as a column default callable)."""
    return dt.datetime.now(dt.UTC)


def normalise_url(url: str) -> str:
    """Route ``postgresql://`` URLs to psycopg 3, the only PostgreSQL driver we ship."""
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # Foreign keys are off by default in SQLite; WAL lets readers and one writer coexist.
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def create_portal_engine(url: str) -> Engine:
    """Create the engine for ``url`` with the settings each backend needs."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # Optimistic disconnect handling, not pool_pre_ping: a ping on every checkout cost one
    # round trip per request. A statement that meets a dead connection (a restarted or
    # failed-over server) makes SQLAlchemy discard that connection and every older pooled
    # one, so each process loses at most that one statement; the collector API runs its
    # first statement once more in that case (portal.api.auth.first_statement) and so
    # loses none. pool_recycle replaces connections (at checkout, once older than this)
    # before the idle timeouts of servers, poolers and load balancers (5 minutes and more,
    # typically) can cut them. A connection the server has closed is not even lent out
    # (_skip_closed_connections), so after a restart not even that one statement is lost.
    engine = create_engine(url, pool_size=10, max_overflow=10, pool_recycle=280)
    _skip_closed_connections(engine)
    return engine


def _skip_closed_connections(engine: Engine) -> None:
    """Before lending a pooled connection, check without a round trip that it is still open.

    An idle connection has nothing to read. If its socket is readable, the server has said
    goodbye (a restart, a failover, an administrator) or hung up: the pool then replaces it,
    and every older one, before anyone uses it. Without this, the first statement of each
    process after a restart it did not witness failed (a 503 page, a failed /readyz, a
    session that did not load); a ping on every checkout (pool_pre_ping) would cost a round
    trip per request instead of one system call.
    """

    @event.listens_for(engine, "checkout")
    def _check(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        try:
            socket = select.poll()  # not select.select: it fails on descriptors above 1023
            socket.register(dbapi_connection.fileno(), select.POLLIN)
            events = socket.poll(0)
        except (OSError, engine.dialect.loaded_dbapi.Error) as exc:
            raise DisconnectionError(f"pooled connection unusable: {exc}") from exc
        if events:
            raise DisconnectionError("the server closed this pooled connection")


def init_app(app: Flask) -> None:
    """Bind an engine and a session factory to ``app`` and manage the per-request session."""
    engine = create_portal_engine(app.config["DATABASE_URL"])
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    # On the portal's sessions only: the outboxes' senders open sessions of their own.
    event.listen(factory, "after_commit", _run_after_commit)
    event.listen(factory, "after_transaction_end", _forget_uncommitted)
    app.extensions[EXTENSION] = factory
    manage_units_of_work(app)


def share_engine(app: Flask, source: Flask) -> None:
    """Give ``app`` the engine (so the pool) of ``source``, with its own unit of work per request.

    For the collector API's app, mounted beside the portal's: one pool per process, not two.
    """
    app.extensions[EXTENSION] = source.extensions[EXTENSION]
    manage_units_of_work(app)


def manage_units_of_work(app: Flask) -> None:
    """Commit each request's unit of work at its end if it succeeded, else roll it back."""

    @app.after_request
    def _commit_or_roll_back(response: Response) -> Response:
        session: Session | None = g.pop("db_session", None)
        if session is None:
            return response
        try:
            if response.status_code < 400:
                session.commit()
            else:
                # A refused request changes nothing, whatever it flushed before refusing.
                session.rollback()
        except Exception:
            # The failed unit of work expired everything it loaded, the signed-in person
            # included; the error page must not touch those objects. Flask-Login loads the
            # person again, in a new unit of work, if the page needs them.
            g.pop("_login_user", None)
            raise
        finally:
            session.close()
            # What committed work queued for after the answer: the server calls these once
            # it has sent the response, so they cannot delay it.
            for callback in g.pop(AFTER_RESPONSE, ()):
                response.call_on_close(_guarded(callback))
        return response

    @app.teardown_appcontext
    def _close(_exc: BaseException | None) -> None:
        session: Session | None = g.pop("db_session", None)
        if session is not None:
            # close() rolls back whatever was not committed; unlike rollback() it leaves
            # loaded objects readable (detached), which commands and tests rely on.
            session.close()


def get_engine(app: Flask | None = None) -> Engine:
    """Return the engine of ``app`` (default: the current app)."""
    factory: sessionmaker[Session] = (app or current_app).extensions[EXTENSION]
    bind = factory.kw["bind"]
    assert isinstance(bind, Engine)
    return bind


def _session() -> Session:
    if "db_session" not in g:
        g.db_session = current_app.extensions[EXTENSION]()
    session: Session = g.db_session
    return session


#: The unit of work of the current request or command.
db: Session = LocalProxy(_session)  # type: ignore[assignment]


def commit() -> None:
    """Commit the current unit of work (for commands; requests commit by themselves)."""
    db.commit()


def after_commit(callback: Callable[[], object], *, after_response: bool = False) -> None:
    """Run ``callback`` once the current unit of work has committed; never if it rolls back.

    Callbacks run in the order queued, right after the commit: a request's before its answer
    is sent, so what must be durable before anyone is told (the shred journal) is. With
    ``after_response``, a request's callback waits until its answer has been sent instead, so
    that slow or failing work (sending mail, posting webhooks) cannot delay or break it; in a
    command it runs right after the commit. A callback queued twice (an equal one) runs once.
    A callback that fails is logged: the commit stands.
    """
    if not db.in_transaction():
        # Tied to a transaction, so that a rollback or close before any statement drops it.
        db.begin()
    queued: list[tuple[Callable[[], object], bool]] = db.info.setdefault(AFTER_COMMIT, [])
    if (callback, after_response) not in queued:
        queued.append((callback, after_response))


def _run_after_commit(session: Session) -> None:
    for callback, after_response in session.info.pop(AFTER_COMMIT, ()):
        if after_response and has_request_context():
            waiting: list[Callable[[], object]] = g.setdefault(AFTER_RESPONSE, [])
            if callback not in waiting:
                waiting.append(callback)
        else:
            _guarded(callback)()


def _forget_uncommitted(session: Session, transaction: SessionTransaction) -> None:
    # Whatever else ends the unit of work (a rollback, a close) drops what it queued. Not a
    # savepoint rolled back inside it: queue work outside savepoints (none does today).
    if transaction.parent is None:
        session.info.pop(AFTER_COMMIT, None)


def _guarded(callback: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        try:
            callback()
        except Exception:
            # The unit of work is committed; whatever the callback was for must be caught
            # up by its own means (the outboxes keep their rows, the journal logs its lines).
            log.exception("after-commit work %r failed; the commit stands", callback)

    return run


def ping() -> None:
    """Run a trivial query; raises if the database cannot be reached."""
    with get_engine().connect() as connection:
        connection.execute(text("SELECT 1"))


def append_only_ddl(dialect: str, table: str) -> list[str]:
    """Return the statements that make ``table`` refuse UPDATE and DELETE.

    For ledgers and published notices: the database itself refuses to rewrite history, so
    a bug or a stolen application login cannot do it either. Used by migrations.
    """
    message = f"{table} is append-only"
    if dialect == "sqlite":
        return [
            f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END",
            f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END",
        ]
    return [
        f"CREATE OR REPLACE FUNCTION {table}_refuse_change() RETURNS trigger AS $$ "
        f"BEGIN RAISE EXCEPTION '{message}' USING ERRCODE = 'insufficient_privilege'; END "
        "$$ LANGUAGE plpgsql",
        f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {table}_refuse_change()",
        f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {table}_refuse_change()",
        # TRUNCATE bypasses row triggers; refuse it as well.
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {table}_refuse_change()",
    ]


def drop_append_only_ddl(dialect: str, table: str) -> list[str]:
    """Return the statements that undo :func:`append_only_ddl` (for downgrades and tamper tests)."""
    triggers = ["no_update", "no_delete"] + ([] if dialect == "sqlite" else ["no_truncate"])
    if dialect == "sqlite":
        return [f"DROP TRIGGER IF EXISTS {table}_{name}" for name in triggers]
    return [f"DROP TRIGGER IF EXISTS {table}_{name} ON {table}" for name in triggers] + [
        f"DROP FUNCTION IF EXISTS {table}_refuse_change()"]

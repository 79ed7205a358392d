"""Registering collectors and keeping their secrets; what collectors may ask and send."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import logging
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

import psycopg
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app
from sqlalchemy import Select, and_, bindparam, exists, func, select, true
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import aliased

from portal.api.errors import ApiError, invalid
from portal.api.models import CollectionAcknowledgement, CollectionAction, Collector
from portal.auth.models import Person
from portal.catalog.models import (
    Category,
    CategoryNotice,
    LegalBasis,
    NoticeVersion,
    Objection,
    ObjectionState,
)
from portal.consent.models import ConsentEvent, ConsentState, ConsentStatus
from portal.db import db, utcnow
from portal.observability import metrics
from portal.vault.checks import check_batch
from portal.vault.errors import (
    BatchInvalid,
    BatchTooLarge,
    ConsentRequired,
    IdempotencyConflict,
    ObjectionUpheld,
    UnknownCategory,
    VaultError,
    VaultIntegrityError,
)
from portal.vault.ingest import IngestResult, ingest_batch
from portal.webhook_urls import webhook_url_refusal

if TYPE_CHECKING:
    from portal.api.forms import BatchRequest

log = logging.getLogger(__name__)

_SEAL_INFO = b"consent-portal collector webhook secret v1"


def _sealing_key() -> bytes:
    secret_key = str(current_app.config["SECRET_KEY"]).encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=_SEAL_INFO).derive(secret_key)


def seal_secret(secret: str) -> str:
    """Encrypt a webhook secret for storage."""
    nonce = os.urandom(12)
    sealed = AESGCM(_sealing_key()).encrypt(nonce, secret.encode(), _SEAL_INFO)
    return base64.urlsafe_b64encode(nonce + sealed).decode("ascii")


def open_secret(sealed: str) -> str:
    """Decrypt a stored webhook secret (raises if it was tampered with or the key changed)."""
    raw = base64.urlsafe_b64decode(sealed.encode("ascii"))
    return AESGCM(_sealing_key()).decrypt(raw[:12], raw[12:], _SEAL_INFO).decode()


def hash_token(token: str) -> str:
    """Return the stored form of a collector token."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_webhook_secret() -> str:
    """Return a new webhook secret (shown once, stored sealed).

    The Standard Webhooks form (``whsec_`` and base64), so collectors and training clients
    can check signatures with its libraries.
    """
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def webhook_url_problem(webhook_url: str) -> str | None:
    """Return why a webhook URL (stripped, not empty) cannot be registered, or ``None``."""
    parts = urlsplit(webhook_url)
    if parts.scheme not in {"http", "https"} or not parts.hostname or len(webhook_url) > 2048:
        return "must be an http:// or https:// URL of at most 2048 characters"
    return webhook_url_refusal(webhook_url)


def register_collector(name: str, categories: Iterable[str], *,
                       webhook_url: str = "") -> tuple[Collector, str, str]:
    """Register a collector; return it with its token and webhook secret (shown once)."""
    token = secrets.token_urlsafe(32)
    webhook_secret = new_webhook_secret()
    collector = Collector(name=name, categories=sorted(set(categories)), webhook_url=webhook_url,
                          webhook_secret_sealed=seal_secret(webhook_secret),
                          token_hash=hash_token(token))
    db.add(collector)
    db.flush()
    return collector, token, webhook_secret


# --- managing collectors ---------------------------------------------------------------------

#: Longer than any token we issue (43 characters); a longer one is refused before hashing.
MAX_TOKEN_LENGTH = 256
MAX_NAME_LENGTH = 100


class CollectorRefused(ValueError):
    """A collector could not be registered as asked; ``problems`` maps each field to why."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in problems.items()))
        self.problems = problems


def categories_in_force() -> list[str]:
    """Return the keys of the categories in the notice version in force, in notice order."""
    latest = select(func.max(NoticeVersion.number)).scalar_subquery()
    return list(db.scalars(
        select(CategoryNotice.category_key)
        .join(NoticeVersion, NoticeVersion.id == CategoryNotice.notice_version_id)
        .where(NoticeVersion.number == latest).order_by(CategoryNotice.position)))


def create_collector(name: str, categories: Iterable[str], *,
                     webhook_url: str = "") -> tuple[Collector, str, str]:
    """Check the request, then register a collector; return it with its token and webhook secret.

    The token and the secret exist in clear only in the return value: show them once.

    :raise CollectorRefused: the name is empty, too long or taken; a category is not in the
        catalog in force; the webhook is not an http(s) URL.
    """
    problems: dict[str, str] = {}
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable():
        problems["name"] = f"must be 1 to {MAX_NAME_LENGTH} printable characters"
    elif db.scalar(select(Collector.id).where(Collector.name == name)) is not None:
        problems["name"] = "is taken by another collector (revoked ones keep their names)"
    keys = sorted({key.strip() for key in categories if key.strip()})
    known = set(categories_in_force())
    if not keys:
        problems["categories"] = "must name at least one category"
    elif unknown := [key for key in keys if key not in known]:
        problems["categories"] = ("are not in the catalog in force: " + ", ".join(unknown)
                                  + " (known: " + ", ".join(sorted(known)) + ")")
    webhook_url = webhook_url.strip()
    if webhook_url and (problem := webhook_url_problem(webhook_url)):
        problems["webhook_url"] = problem
    if problems:
        raise CollectorRefused(problems)
    return register_collector(name, keys, webhook_url=webhook_url)


def find_collector(name: str) -> Collector | None:
    """Return the collector called ``name``, revoked or not."""
    return db.scalar(select(Collector).where(Collector.name == name))


@dataclass(frozen=True)
class CollectorIdentity:
    """Who is calling the API: the few facts of a collector that each request needs."""

    id: int
    name: str
    categories: tuple[str, ...]
    revoked: bool

    def records(self, category_key: str) -> bool:
        """Say whether the collector is registered for ``category_key``."""
        return category_key in self.categories


def identify_collector(token: str) -> CollectorIdentity | None:
    """Return the collector holding ``token`` (revoked ones too), looked up by its hash.

    Looking up the hash, never comparing tokens, keeps the check constant-time with respect to
    the secret: what is compared is a SHA-256 the caller cannot steer byte by byte. Columns,
    not an entity, and a statement built once: every request pays for this lookup.
    """
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    row = db.execute(_identity_by_token_hash(), {"token_hash": hash_token(token)}).first()
    if row is None:
        return None
    return CollectorIdentity(row.id, row.name, tuple(row.categories or ()),
                             row.revoked_at is not None)


@functools.cache
def _identity_by_token_hash() -> Select[Any]:
    return (select(Collector.id, Collector.name, Collector.categories, Collector.revoked_at)
            .where(Collector.token_hash == bindparam("token_hash")))


def list_collectors() -> list[Collector]:
    """Return every collector: active ones first, then by name."""
    return list(db.scalars(select(Collector).order_by(Collector.revoked_at.is_not(None),
                                                      Collector.name)))


def revoke_collector(collector: Collector) -> bool:
    """Revoke a collector's token at once; return ``False`` if it was revoked already."""
    if collector.revoked_at is not None:
        return False
    collector.revoked_at = utcnow()
    db.flush()
    return True


def rotate_collector_token(collector: Collector) -> str:
    """Give an active collector a new token (the old one stops working); return it, shown once."""
    if collector.revoked_at is not None:
        raise ValueError(f"collector {collector.name!r} is revoked")
    token = secrets.token_urlsafe(32)
    collector.token_hash = hash_token(token)
    db.flush()
    return token


# --- what collectors may ask -----------------------------------------------------------------

@dataclass(frozen=True)
class ConsentAnswer:
    """Whether a category may be recorded for a person now, and on what footing.

    ``state`` is ``None`` for a person who never decided, for an unknown person, and for a
    category that does not rest on consent (``legal_basis`` says which basis it rests on).
    """

    subject: str
    category_key: str
    allowed: bool
    state: ConsentState | None
    notice_version: int | None
    since: dt.datetime | None
    legal_basis: LegalBasis | None
    #: How collectors name the person inside records (a conversation's ``author``); given
    #: only with ``allowed``, so that it tells nothing about who exists that ``allowed`` hides.
    workplace_pseudonym: str | None = None


def look_up_consent(subject: str, category_key: str, *, issuer: str,
                    token: str) -> tuple[CollectorIdentity | None, ConsentAnswer]:
    """Say who holds ``token`` and whether ``category_key`` may be recorded for ``subject`` now.

    Deny by default: an unknown person, a category outside the catalog in force, a consent
    never given all answer "not allowed". The caller must still refuse an unknown or revoked
    token and a category outside the collector's scope (the answer is computed regardless).

    One statement for both questions, run by :func:`read_one`: collectors ask before every
    recording session, and each round trip to the database costs more than the rest of the
    check.
    """
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None, _denied(subject, category_key, None)
    row = read_one(_consent_statement(), {
        "token_hash": hash_token(token), "issuer": issuer, "subject": subject,
        "category_key": category_key})
    if row is None:
        return None, _denied(subject, category_key, None)
    identity = CollectorIdentity(row.collector_id, row.collector_name,
                                 tuple(row.collector_categories or ()),
                                 row.collector_revoked_at is not None)
    return identity, _answer(subject, category_key, row)


#: Where the app keeps the engine that runs statements outside any transaction.
AUTOCOMMIT_ENGINE = "portal.api.autocommit_engine"


class ConsentRow(NamedTuple):
    """The one row of :func:`_consent_statement`, typed as the ORM would type it."""

    collector_id: int
    collector_name: str
    collector_categories: list[str] | None
    collector_revoked_at: dt.datetime | None
    legal_basis: LegalBasis | None
    notice_in_force: int | None
    in_force: str | None
    person_id: int | None
    state: ConsentState | None
    state_notice: int | None
    since: dt.datetime | None
    #: An objection of the person to the category was upheld (categories not on consent).
    objected: bool | None
    workplace_pseudonym: str | None


def read_one(statement: Select[Any], parameters: dict[str, Any]) -> ConsentRow | None:
    """Run the consent statement outside any transaction; return its only row, if any.

    On PostgreSQL through the pooled psycopg connection itself, as a prepared statement (see
    :func:`_read_one_postgresql`); elsewhere (SQLite, for development and tests) through
    SQLAlchemy, on a pooled connection of its own in autocommit mode.
    """
    engine: Engine = current_app.extensions[AUTOCOMMIT_ENGINE]
    if engine.dialect.name == "postgresql":
        return _read_one_postgresql(engine, statement, parameters)
    try:
        with engine.connect() as connection:
            row = connection.execute(statement, parameters).one_or_none()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        with engine.connect() as connection:
            row = connection.execute(statement, parameters).one_or_none()
    return None if row is None else ConsentRow(*row)


@functools.cache
def _postgresql_text(statement: Select[Any], dialect: Dialect) -> tuple[str, dict[str, Any]]:
    """Return the SQL of ``statement`` for psycopg, and its fixed parameters; compiled once."""
    compiled = statement.compile(dialect=dialect)
    # The fixed ones only (LIMIT 1); the others come with each call.
    return str(compiled), compiled.construct_params(_check=False)


def _read_one_postgresql(engine: Engine, statement: Select[Any],
                         parameters: dict[str, Any]) -> ConsentRow | None:
    """Run the statement on a pooled psycopg connection, in autocommit, prepared.

    Profiled under gunicorn, SQLAlchemy's Connection (checkout with its isolation-level
    switch, execution context, result object, return) cost several times the driver's own
    work for this one-row read, which collectors repeat before every recording session.
    Here the pool still lends, recycles and takes back the connection; psycopg runs the
    statement prepared (parsed and planned once per connection), without BEGIN or COMMIT:
    switching autocommit on and off costs no round trip while the connection is idle, and
    the pool's rollback on return has nothing to roll back. A connection the server dropped
    is discarded and the read runs once more on a new one (it can always be repeated).
    """
    sql, fixed = _postgresql_text(statement, engine.dialect)
    values = {**fixed, **parameters}
    for attempt in (1, 2):
        pooled = engine.raw_connection()
        try:
            connection = pooled.driver_connection
            assert connection is not None
            connection.autocommit = True
            try:
                found = connection.execute(sql, values, prepare=True).fetchone()
            finally:
                if not connection.closed:
                    connection.autocommit = False
        except psycopg.OperationalError:
            pooled.invalidate()
            if attempt == 2:
                raise
            continue
        finally:
            pooled.close()
        break
    if found is None:
        return None
    (collector_id, name, categories, revoked_at, legal_basis, notice_in_force, in_force,
     person_id, state, state_notice, since, objected, workplace_pseudonym) = found
    return ConsentRow(
        collector_id, name, categories, revoked_at,
        None if legal_basis is None else LegalBasis(legal_basis), notice_in_force, in_force,
        person_id, None if state is None else ConsentState(state), state_notice,
        None if since is None else since.astimezone(dt.UTC), objected, workplace_pseudonym)


def _denied(subject: str, category_key: str, legal_basis: LegalBasis | None) -> ConsentAnswer:
    return ConsentAnswer(subject, category_key, allowed=False, state=None, notice_version=None,
                         since=None, legal_basis=legal_basis)


def _answer(subject: str, category_key: str, row: Any) -> ConsentAnswer:
    """Read the answer from the consent columns of :func:`_consent_statement`'s row."""
    legal_basis: LegalBasis | None = row.legal_basis
    if legal_basis is None or row.in_force is None:
        return _denied(subject, category_key, None)
    if row.person_id is None:
        # The category's basis is public; what the answer must not tell is who exists.
        return _denied(subject, category_key, legal_basis)
    if legal_basis is not LegalBasis.CONSENT:
        # No consent to ask for; but once the person's objection is upheld, no more is recorded.
        allowed = not row.objected
        return ConsentAnswer(subject, category_key, allowed=allowed, state=None,
                             notice_version=row.notice_in_force, since=None,
                             legal_basis=legal_basis,
                             workplace_pseudonym=row.workplace_pseudonym if allowed else None)
    state: ConsentState | None = row.state
    if state is None:
        return _denied(subject, category_key, legal_basis)
    allowed = state.allows_collection
    return ConsentAnswer(subject, category_key, allowed=allowed, state=state,
                         notice_version=row.state_notice, since=row.since,
                         legal_basis=legal_basis,
                         workplace_pseudonym=row.workplace_pseudonym if allowed else None)


@functools.cache
def _consent_statement() -> Select[Any]:
    """Return the one statement behind :func:`look_up_consent`, built once.

    The collector holding the token, with the answer joined to it: no row for an unknown
    token; consent columns all null for a category that does not exist. Built once and run
    with bound parameters, so SQLAlchemy compiles it once per process.
    """
    status_notice = aliased(NoticeVersion)
    latest = (select(NoticeVersion.id, NoticeVersion.number)
              .order_by(NoticeVersion.number.desc()).limit(1).subquery())
    answer = (
        select(Category.legal_basis, latest.c.number.label("notice_in_force"),
               CategoryNotice.category_key.label("in_force"), Person.id.label("person_id"),
               ConsentStatus.state, status_notice.number.label("state_notice"),
               ConsentStatus.since,
               exists().where(Objection.person_id == Person.id,
                              Objection.category_key == Category.key,
                              Objection.state == ObjectionState.UPHELD.value).label("objected"),
               Person.workplace_pseudonym)
        .select_from(Category)
        .join(latest, true())
        .outerjoin(CategoryNotice, and_(CategoryNotice.notice_version_id == latest.c.id,
                                        CategoryNotice.category_key == Category.key))
        .outerjoin(Person, and_(Person.issuer == bindparam("issuer"),
                                Person.subject == bindparam("subject")))
        .outerjoin(ConsentStatus, and_(ConsentStatus.person_id == Person.id,
                                       ConsentStatus.category_key == Category.key))
        .outerjoin(status_notice, status_notice.id == ConsentStatus.notice_version_id)
        .where(Category.key == bindparam("category_key"))
        .subquery("answer"))
    return (
        select(Collector.id.label("collector_id"), Collector.name.label("collector_name"),
               Collector.categories.label("collector_categories"),
               Collector.revoked_at.label("collector_revoked_at"), *answer.c)
        .select_from(Collector)
        .outerjoin(answer, true())
        .where(Collector.token_hash == bindparam("token_hash")))


@dataclass(frozen=True)
class BatchCategory:
    """What storing a batch needs to know of its category (read as columns, not an ORM object).

    The vault takes it where it takes a :class:`~portal.catalog.models.Category`.
    """

    key: str
    legal_basis: LegalBasis
    retention_days: int
    event_schema: dict[str, Any]

    @property
    def needs_consent(self) -> bool:
        """Say whether collection depends on the person's consent (else: right to object)."""
        return self.legal_basis is LegalBasis.CONSENT


@dataclass(frozen=True)
class BatchPerson:
    """The person a batch is about: their id is all that storing it needs."""

    id: int


@dataclass(frozen=True)
class BatchParties:
    """Who sends a batch, and the category and person it is about (``None``: none such).

    ``category_in_force``: the category is in the notice version in force.
    """

    collector: CollectorIdentity | None
    category: BatchCategory | None
    person: BatchPerson | None
    category_in_force: bool = False


def identify_batch_parties(token: str, *, category_key: str, subject: str,
                           issuer: str) -> BatchParties:
    """Return the collector holding ``token``, the category and the person of a batch.

    One statement for the three, and whether the category is in the catalog in force,
    because a collector sends batches all day: the caller must still refuse an unknown or
    revoked token, and check the collector's scope, before anything else. Columns, through
    the session's connection: loading ORM objects cost the batch more than the read itself.
    """
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return BatchParties(None, None, None)
    row = db.connection().execute(_batch_parties_statement(), {
        "token_hash": hash_token(token), "category_key": category_key, "issuer": issuer,
        "subject": subject}).one_or_none()
    if row is None:
        return BatchParties(None, None, None)
    identity = CollectorIdentity(row.collector_id, row.collector_name,
                                 tuple(row.collector_categories or ()),
                                 row.collector_revoked_at is not None)
    category = None if row.category_key is None else BatchCategory(
        row.category_key, row.legal_basis, row.retention_days, row.event_schema)
    person = None if row.person_id is None else BatchPerson(row.person_id)
    return BatchParties(identity, category, person, row.in_force is not None)


@functools.cache
def _batch_parties_statement() -> Select[Any]:
    """Return the statement behind :func:`identify_batch_parties`, built once."""
    latest = (select(NoticeVersion.id).order_by(NoticeVersion.number.desc()).limit(1)
              .scalar_subquery())
    in_force = (select(CategoryNotice.category_key)
                .where(CategoryNotice.notice_version_id == latest,
                       CategoryNotice.category_key == Category.key)
                .scalar_subquery().label("in_force"))
    return (
        select(Collector.id.label("collector_id"), Collector.name.label("collector_name"),
               Collector.categories.label("collector_categories"),
               Collector.revoked_at.label("collector_revoked_at"),
               Category.key.label("category_key"), Category.legal_basis,
               Category.retention_days, Category.event_schema,
               Person.id.label("person_id"), in_force)
        .select_from(Collector)
        .outerjoin(Category, Category.key == bindparam("category_key"))
        .outerjoin(Person, and_(Person.issuer == bindparam("issuer"),
                                Person.subject == bindparam("subject")))
        .where(Collector.token_hash == bindparam("token_hash")))


#: How a refusal of a batch words the consent state that refused it.
REASONS = {None: "not given", ConsentState.WITHDRAWN: "withdrawn",
           ConsentState.REFUSED: "refused",
           ConsentState.EXPIRED: "expired after a material change of the notice (the person "
                                 "must confirm again)"}


def _consent_required(category_key: str, state: ConsentState | None) -> ApiError:
    reason = REASONS.get(state, "not current")
    return ApiError(403, "consent_required", f"Recording {category_key!r} is not allowed for "
                    f"this person now: consent is {reason}. Nothing was stored.")


def accept_batch(collector: CollectorIdentity, batch: BatchRequest, parties: BatchParties, *,
                 idempotency_key: str | None) -> IngestResult:
    """Store one batch if consent is current when it commits; return what the vault did.

    ``parties`` are what :func:`identify_batch_parties` found for the batch, in this same
    transaction; ``collector`` is their collector, accepted and in scope for the category.
    A person the portal does not know is refused as one who never consented, after the same
    checks of the batch: answers do not tell which people exist.

    :raise ApiError: in the API's words, with nothing stored: the category is not in the
        catalog in force (403), the batch breaks a rule or its schema (400) or is too large
        (413), consent is not current (403) or an objection was upheld (403), the
        Idempotency-Key was used for other content (409), the vault could not store it now
        (503, with Retry-After).
    :raise VaultIntegrityError: evidence of tampering or a wrong master key, never papered
        over.
    """
    try:
        # Whether the category is in the catalog in force came with the parties, in the
        # same transaction as the rest of the batch: ingest_batch need not read it again.
        category = parties.category
        if category is None or not parties.category_in_force:
            raise UnknownCategory(batch.category_key)
        options: dict[str, Any] = {
            "events": batch.events, "collected_from": batch.collected_from,
            "collected_to": batch.collected_to, "dss_level": batch.dss_level,
            "collector_id": collector.id, "idempotency_key": idempotency_key}
        person = parties.person
        if person is None:
            # The same checks and the same refusal as for a person who never consented, so
            # that answers do not tell which people exist.
            check_batch(category, **options)
            raise _consent_required(category.key, None)
        result = ingest_batch(person, category, catalog_checked=True, **options)
    except UnknownCategory:
        raise ApiError(403, "category_not_allowed", f"Category {batch.category_key!r} is not "
                       "in the catalog in force: nothing may be recorded for it.") from None
    except BatchInvalid as exc:
        raise invalid([(error.path, error.message) for error in exc.errors]) from None
    except BatchTooLarge as exc:
        raise ApiError(413, "payload_too_large", f"{exc}. Nothing was stored.") from None
    except ConsentRequired as exc:
        raise _consent_required(batch.category_key, exc.state) from None
    except ObjectionUpheld:
        raise ApiError(403, "objection_upheld", f"Recording {batch.category_key!r} is not "
                       "allowed for this person: their objection to it was upheld. Nothing "
                       "was stored.") from None
    except IdempotencyConflict as exc:
        raise ApiError(409, "idempotency_conflict", f"The Idempotency-Key was used before for "
                       f"batch {exc.public_id}, with different content. Use a new key for a "
                       "new batch. Nothing was stored.") from None
    except VaultIntegrityError:
        raise  # evidence of tampering or a wrong master key: a 500, logged, never papered over
    except VaultError as exc:
        log.warning("batch refused by the vault: %s", exc)
        raise ApiError(503, "service_unavailable", "The batch could not be stored right now. "
                       "Send it again (with the same Idempotency-Key).",
                       headers={"Retry-After": "5"}) from None
    metrics.count_ingested_batch(category.key, result.event_count, created=result.created)
    return result


@dataclass(frozen=True)
class ConsentChange:
    """One change of the consent ledger as a collector sees it."""

    cursor: int
    subject: str
    category_key: str
    state: ConsentState
    notice_version: int
    at: dt.datetime


def list_consent_changes(category_keys: Iterable[str], *, after: int, limit: int,
                         issuer: str) -> list[ConsentChange]:
    """Return up to ``limit`` changes of the given categories after cursor ``after``, oldest first.

    The cursor is the ledger position, which only grows and has no gaps, so a collector that
    polls with the last cursor it saw misses nothing and sees nothing twice.
    """
    keys = list(category_keys)
    if not keys:
        return []
    rows = db.execute(
        select(ConsentEvent.id, Person.subject, ConsentEvent.category_key, ConsentEvent.state,
               NoticeVersion.number, ConsentEvent.occurred_at)
        .join(Person, Person.id == ConsentEvent.person_id)
        .join(NoticeVersion, NoticeVersion.id == ConsentEvent.notice_version_id)
        .where(ConsentEvent.id > after, ConsentEvent.category_key.in_(keys),
               Person.issuer == issuer)
        .order_by(ConsentEvent.id).limit(limit))
    return [ConsentChange(*row) for row in rows]


# --- acknowledgements ------------------------------------------------------------------------

#: States that end collection. A refusal never follows a state that allowed it.
STOPPING = frozenset({ConsentState.WITHDRAWN, ConsentState.EXPIRED})


class AcknowledgementRefused(ValueError):
    """The acknowledgement does not fit the change it names; ``field`` says which part."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class AcknowledgementConflict(ValueError):
    """The collector acknowledged this change before, saying something else."""


def record_acknowledgement(collector_id: int, *, subject: str, issuer: str, category_key: str,
                           change_cursor: int, action: CollectionAction,
                           last_event_at: dt.datetime | None,
                           ) -> tuple[CollectionAcknowledgement, bool]:
    """Record that the collector ``collector_id`` acted on a change; return it, and if it is new.

    Sending the same acknowledgement again returns the first one (a collector may retry).

    :raise AcknowledgementRefused: the cursor does not name a change of this subject and
        category, or the action does not fit the change (``stopped`` after a withdrawal or
        expiry, ``resumed`` after consent was given).
    :raise AcknowledgementConflict: this change was acknowledged before with other facts.
    """
    event = db.scalar(
        select(ConsentEvent).join(Person, Person.id == ConsentEvent.person_id)
        .where(ConsentEvent.id == change_cursor, ConsentEvent.category_key == category_key,
               Person.subject == subject, Person.issuer == issuer))
    if event is None:
        # The same words whether the person, the category or the cursor is wrong: an answer
        # must not tell who exists.
        raise AcknowledgementRefused("change_cursor",
                                     "does not name a change of this subject and category")
    expected = (CollectionAction.RESUMED if event.state.allows_collection
                else CollectionAction.STOPPED)
    if action is not expected:
        raise AcknowledgementRefused("action", f"must be {expected.value!r} for a change to "
                                     f"{event.state.value}")
    earlier = db.scalar(select(CollectionAcknowledgement).where(
        CollectionAcknowledgement.collector_id == collector_id,
        CollectionAcknowledgement.change_event_id == event.id))
    if earlier is None:
        acknowledgement = CollectionAcknowledgement(
            collector_id=collector_id, change_event_id=event.id, person_id=event.person_id,
            category_key=event.category_key, action=action, last_event_at=last_event_at,
            acknowledged_at=utcnow())
        try:
            # A savepoint: a retry racing this one must not undo the rest of the request.
            with db.begin_nested():
                db.add(acknowledgement)
                db.flush()
            return acknowledgement, True
        except IntegrityError:
            earlier = db.scalar(select(CollectionAcknowledgement).where(
                CollectionAcknowledgement.collector_id == collector_id,
                CollectionAcknowledgement.change_event_id == event.id))
            assert earlier is not None
    if earlier.action is not action or earlier.last_event_at != last_event_at:
        raise AcknowledgementConflict(
            f"change {event.id} was acknowledged before as {earlier.action.value!r} with "
            "another last_event_at; an acknowledgement cannot be changed")
    return earlier, False


@dataclass(frozen=True)
class CollectionStop:
    """The last change that stopped collection for a person, and what one collector said about it.

    One line per category and collector.
    """

    category_key: str
    collector_name: str
    state: ConsentState
    changed_at: dt.datetime
    acknowledged_at: dt.datetime | None
    last_event_at: dt.datetime | None

    @property
    def acknowledged(self) -> bool:
        """Say whether the collector confirmed that it stopped."""
        return self.acknowledged_at is not None

    @property
    def recorded_after_change(self) -> bool:
        """Say whether the collector recorded events after the change (it stopped late)."""
        return self.last_event_at is not None and self.last_event_at > self.changed_at


def acknowledgements_for(person_id: int) -> list[CollectionStop]:
    """Return, per category and collector, when collection stopped after the person's last stop.

    Only categories whose current state stopped collection (a withdrawal, or an expiry after a
    material change) appear, each with every collector registered for the category at the time.
    """
    stops = db.execute(
        select(ConsentEvent.id, ConsentEvent.category_key, ConsentEvent.state,
               ConsentEvent.occurred_at)
        .join(ConsentStatus, ConsentStatus.event_id == ConsentEvent.id)
        .where(ConsentStatus.person_id == person_id, ConsentEvent.state.in_(STOPPING))
        .order_by(ConsentEvent.category_key)).all()
    if not stops:
        return []
    collectors = list(db.scalars(select(Collector).order_by(Collector.name)))
    acknowledged = {
        (ack.collector_id, ack.change_event_id): ack for ack in db.scalars(
            select(CollectionAcknowledgement)
            .where(CollectionAcknowledgement.change_event_id.in_([stop.id for stop in stops])))}
    lines = []
    for event_id, category_key, state, changed_at in stops:
        for collector in collectors:
            ack = acknowledged.get((collector.id, event_id))
            # A collector revoked before the change had nothing left to stop.
            was_there = collector.created_at <= changed_at and (
                collector.revoked_at is None or collector.revoked_at > changed_at)
            if ack is None and not (was_there and collector.records(category_key)):
                continue
            lines.append(CollectionStop(category_key, collector.name, state, changed_at,
                                        ack.acknowledged_at if ack else None,
                                        ack.last_event_at if ack else None))
    return lines


@dataclass(frozen=True)
class PendingStops:
    """Stops of one category that an active collector has not acknowledged yet."""

    collector_name: str
    category_key: str
    count: int
    oldest: dt.datetime


def unacknowledged_stops() -> list[PendingStops]:
    """Return, per active collector and category, the withdrawals it has not acknowledged.

    A stop counts as acknowledged when the collector acknowledged it or any later change of
    the same person and category (acting on the later change implies it saw the earlier one).
    Metadata only: no person is named.
    """
    pending: list[PendingStops] = []
    later_ack = aliased(CollectionAcknowledgement)
    for collector in db.scalars(select(Collector).where(Collector.revoked_at.is_(None))
                                .order_by(Collector.name)):
        keys = list(collector.categories or [])
        if not keys:
            continue
        settled = exists().where(later_ack.collector_id == collector.id,
                                 later_ack.person_id == ConsentEvent.person_id,
                                 later_ack.category_key == ConsentEvent.category_key,
                                 later_ack.change_event_id >= ConsentEvent.id)
        rows = db.execute(
            select(ConsentEvent.category_key, func.count(), func.min(ConsentEvent.occurred_at))
            .where(ConsentEvent.category_key.in_(keys), ConsentEvent.state.in_(STOPPING),
                   ConsentEvent.occurred_at >= collector.created_at, ~settled)
            .group_by(ConsentEvent.category_key).order_by(ConsentEvent.category_key))
        pending.extend(PendingStops(collector.name, key, count, oldest)
                       for key, count, oldest in rows)
    return pending

"""The vault's operations: consent-gated ingestion, reading one's own data, erasure, retention.

Ingestion checks the batch, then consent, in the transaction that stores the batch and under
a lock that a withdrawal must wait for: a batch is stored if and only if consent is current
when it commits. Content is read back only for the person it is about
(:func:`read_own_batches`); everyone else gets metadata (:func:`held_summary`).

Functions here only flush; the request or the command commits once, so a crash leaves no
partial batch behind.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, NamedTuple, Protocol

import jsonschema
import orjson
from flask import current_app
from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from portal.auth.models import Person
from portal.catalog.models import (
    Category,
    CategoryNotice,
    NoticeVersion,
    Objection,
    ObjectionState,
)
from portal.consent.models import ConsentState, ConsentStatus
from portal.db import db, utcnow
from portal.vault import crypto, journal
from portal.vault.models import CollectedBatch, DataKey
from portal.vault.validation import Check, compile_batch_schema, compile_schema

#: Limits of one batch. The API also caps the request body; these hold for every caller.
MAX_EVENTS = 10_000
MAX_CONTENT_BYTES = 8 * 1024 * 1024
MAX_IDEMPOTENCY_KEY_LENGTH = 255
#: Enough errors to fix a collector, few enough that a hostile body cannot make a huge answer.
MAX_FIELD_ERRORS = 50
#: How far in the future a batch may claim to end: collectors' clocks drift a little.
CLOCK_SKEW = dt.timedelta(minutes=5)
#: How many data keys a master-key rotation re-wraps per locked chunk.
_ROTATION_CHUNK = 500


# --- errors ----------------------------------------------------------------------------------

class VaultError(Exception):
    """The vault refused or could not do what was asked; the message says why."""


class UnknownCategory(VaultError):
    """The category is not in the catalog in force, so nothing may be collected for it."""

    def __init__(self, key: str) -> None:
        super().__init__(f"category {key!r} is not in the catalog in force")
        self.key = key


@dataclass(frozen=True)
class FieldError:
    """One problem with a batch: where and what is wrong.

    ``path`` is a JSON path into the API's batch body (``$.events[3].x``), or the header
    ``Idempotency-Key``.

    Messages never repeat the submitted value: it may be exactly the content that must not
    end up in a log.
    """

    path: str
    message: str


class BatchInvalid(VaultError):
    """The batch breaks the category's event format or the batch rules; nothing was stored."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        super().__init__("; ".join(f"{error.path}: {error.message}" for error in errors))
        self.errors = list(errors)


class BatchTooLarge(VaultError):
    """The batch has more events or bytes than one batch may hold; nothing was stored."""

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(f"the batch has more than {limit} {what}; split it into smaller "
                         "batches")
        self.what = what
        self.limit = limit


class ConsentRequired(VaultError):
    """The person's consent for the category is not current; nothing was stored.

    ``state`` is the current state (``None``: never decided), so the caller can say whether
    consent was withdrawn, refused, expired or never given.
    """

    def __init__(self, person_id: int, category_key: str, state: ConsentState | None) -> None:
        super().__init__(f"no current consent of person {person_id} for {category_key} "
                         f"({state.value if state else 'never given'})")
        self.person_id = person_id
        self.category_key = category_key
        self.state = state


class ObjectionUpheld(VaultError):
    """The category does not rest on consent, and the person's objection to it was upheld.

    From then on nothing more of theirs may be collected in it (GDPR Art. 21(1)).
    """

    def __init__(self, person_id: int, category_key: str) -> None:
        super().__init__(f"person {person_id} objected to {category_key}; the objection was "
                         "upheld")
        self.person_id = person_id
        self.category_key = category_key


class IdempotencyConflict(VaultError):
    """The idempotency key was used before for a different batch; nothing was stored."""

    def __init__(self, public_id: str) -> None:
        super().__init__(f"this idempotency key was already used for batch {public_id}, with "
                         "different content")
        self.public_id = public_id


class VaultIntegrityError(VaultError):
    """Stored content does not open: wrong master key, a moved or altered row.

    Never caught to carry on: a batch that does not authenticate is evidence of tampering or
    of a misconfiguration, and either must stop the operation.
    """


# --- results ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class IngestResult:
    """What :func:`ingest_batch` did: stored a new batch, or recognised a retry."""

    public_id: str
    created: bool
    event_count: int
    received_at: dt.datetime


@dataclass(frozen=True)
class DecryptedBatch:
    """One batch as its subject reads it."""

    public_id: str
    category_key: str
    collected_from: dt.datetime
    collected_to: dt.datetime
    received_at: dt.datetime
    dss_level: int
    events: list[dict[str, Any]]


@dataclass(frozen=True)
class HeldSummary:
    """What is held about a person in one category, from metadata only.

    ``dss_levels`` maps each DSS level to the number of events collected at that level.
    """

    batches: int
    events: int
    first: dt.datetime
    last: dt.datetime
    dss_levels: dict[int, int]


@dataclass(frozen=True)
class PurgedCategory:
    """What a retention purge removed (or would remove) from one category."""

    category_key: str
    retention_days: int
    cutoff: dt.datetime
    batches: int
    events: int
    oldest: dt.datetime
    newest: dt.datetime
    #: The people whose batches these were (for the audit log; ids only).
    person_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class RotationReport:
    """What a master-key rotation did: which keys it re-wrapped, which it did not need to."""

    old_key_id: str
    new_key_id: str
    rewrapped: int
    already_new: int
    destroyed: int


# --- checking a batch ------------------------------------------------------------------------

# [0-9], not \d: \d also matches the digits of other scripts, which fromisoformat refuses
# anyway, and it makes the match (run on every event's time) twice as slow.
_RFC3339 = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}"
                      r"(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})")
#: Longer than any RFC 3339 time; longer strings are refused without a look.
_TIMESTAMP_MAX_LENGTH = 40
_SIMPLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def parse_timestamp(value: str) -> dt.datetime | None:
    """Parse an RFC 3339 date-time with its offset (``2026-03-02T09:14:07.250Z``), else ``None``."""
    if len(value) > _TIMESTAMP_MAX_LENGTH:
        return None
    match = _RFC3339.fullmatch(value)
    if match is None:
        return None
    # fromisoformat reads the rest (a "t" separator, and "Z" since Python 3.11), but neither
    # a lowercase "z" nor, in every Python version, more than six digits of a second.
    fraction = match.group(1)
    if fraction and len(fraction) > 7:
        # Python keeps microseconds; nanoseconds from a collector are cut, not refused.
        value = value.replace(fraction, fraction[:7], 1)
    if value[-1] == "z":
        value = value[:-1] + "Z"
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        return None


#: The form collectors write (``2026-03-02T09:14:07.250Z``): the RFC 3339 that fromisoformat
#: reads as it is, without the adjustments of parse_timestamp (no "z", six digits at most).
_PLAIN_TIME = (r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
               r"(?:Z|[+-][0-9]{2}:[0-9]{2})")
_PLAIN_TIMES = re.compile(rf"(?:{_PLAIN_TIME}\n)*{_PLAIN_TIME}")


def _parse_times(values: list[str]) -> list[dt.datetime | None]:
    """Return :func:`parse_timestamp` of each value, faster when all have the plain form.

    A batch's thousand times, one line each, are then matched by one regular expression and
    parsed by fromisoformat, both in C, instead of a thousand calls of parse_timestamp.

    :raise TypeError: a value is not a string.
    """
    lines = "\n".join(values)
    if lines.count("\n") == len(values) - 1 and _PLAIN_TIMES.fullmatch(lines):
        try:
            return list(map(dt.datetime.fromisoformat, values))
        except ValueError:
            pass  # an impossible date (February 30th): told apart one by one below
    return list(map(parse_timestamp, values))


#: jsonschema checks "date-time" only when an optional package is installed; the event
#: schemas rely on it, so the vault brings its own strict check.
FORMAT_CHECKER = jsonschema.FormatChecker()


@FORMAT_CHECKER.checks("date-time")
def _is_date_time(instance: object) -> bool:
    return not isinstance(instance, str) or parse_timestamp(instance) is not None


@dataclass(frozen=True)
class _EventValidators:
    """The checks of one event schema: jsonschema's, and the fast ones (``None``: not possible).

    ``fast_batch`` checks a whole list of events in one call; ``fast_event`` one event.
    """

    full: jsonschema.Draft202012Validator
    fast_event: Check | None
    fast_batch: Check | None


@functools.lru_cache(maxsize=64)
def _validators(schema_json: str) -> _EventValidators:
    """Return the validators of an event schema.

    Keyed by the schema's text, so a new notice version's schema is never served stale.
    """
    schema = json.loads(schema_json)
    formats = {"date-time": lambda value: parse_timestamp(value) is not None}
    return _EventValidators(
        full=jsonschema.Draft202012Validator(schema, format_checker=FORMAT_CHECKER),
        fast_event=compile_schema(schema, formats),
        # check_batch parses every event's time itself (see _times_fit).
        fast_batch=compile_batch_schema(schema, formats,
                                        checked_by_caller={_TIME_FIELD: "date-time"}))


def _member(name: str) -> str:
    """Return a JSON path step for an object member named ``name``."""
    if _SIMPLE_NAME.match(name):
        return "." + name
    return "[" + json.dumps(name[:64]) + "]"


_TYPE_NAMES = {"string": "a string", "integer": "a whole number", "number": "a number",
               "object": "an object", "array": "a list", "boolean": "true or false",
               "null": "null"}


def _message(error: jsonschema.ValidationError) -> str:
    """Say what is wrong without quoting the submitted value."""
    rule, expected = error.validator, error.validator_value
    if rule == "type":
        names = [expected] if isinstance(expected, str) else list(expected)
        return "must be " + " or ".join(_TYPE_NAMES.get(name, name) for name in names)
    if rule == "enum":
        return "must be one of: " + ", ".join(json.dumps(value) for value in expected)
    if rule == "const":
        return f"must be {json.dumps(expected)}"
    if rule == "format":
        return ("must be a date and time with its time zone (RFC 3339), such as "
                "2026-03-02T09:14:07Z")
    messages = {
        "maxLength": f"must be at most {expected} characters long",
        "minLength": "must not be empty" if expected == 1
        else f"must be at least {expected} characters long",
        "pattern": f"must match the pattern {expected}",
        "minimum": f"must be at least {expected}",
        "maximum": f"must be at most {expected}",
        "exclusiveMinimum": f"must be more than {expected}",
        "exclusiveMaximum": f"must be less than {expected}",
        "minItems": f"must hold at least {expected} items",
        "maxItems": f"must hold at most {expected} items",
        "uniqueItems": "must not repeat an item",
    }
    return messages.get(str(rule), f"does not have the format this category records ({rule})")


def _field_errors(prefix: str, error: jsonschema.ValidationError) -> list[FieldError]:
    """Turn one schema error into field errors, naming the missing or unexpected field."""
    where = prefix + "".join(f"[{step}]" if isinstance(step, int) else _member(str(step))
                             for step in error.absolute_path)
    instance = error.instance
    if error.validator == "required" and isinstance(instance, dict):
        return [FieldError(where + _member(str(name)), "is required")
                for name in error.validator_value if name not in instance]
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        known = set(error.schema.get("properties", {}))
        return [FieldError(where + _member(str(name)),
                           "is not a field this category records")
                for name in sorted(map(str, instance)) if name not in known]
    return [FieldError(where, _message(error))]


#: The field every event's schema has for the moment it was recorded.
_TIME_FIELD = "t"
_event_time = itemgetter(_TIME_FIELD)


def _times_fit(events: list[Any], start: dt.datetime | None, end: dt.datetime | None) -> bool:
    """Say whether every event's time parses as RFC 3339 and lies within [start, end].

    (The window only when both ends are known.) This parse is the schemas' "date-time" test
    of ``t`` as well, so the fast check of the shape leaves that one out. ``False`` also when
    an event has no ``t`` as a string: the event-by-event check then decides.
    """
    try:
        moments = _parse_times(list(map(_event_time, events)))
    except (KeyError, TypeError):
        return False
    if None in moments:
        return False
    return not (start and end) or (start <= min(moments) and max(moments) <= end)


def _require_aware(name: str, value: object, errors: list[FieldError]) -> dt.datetime | None:
    if not isinstance(value, dt.datetime):
        errors.append(FieldError(f"$.{name}", "must be a date and time"))
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        errors.append(FieldError(f"$.{name}", "must include a time zone"))
        return None
    return value.astimezone(dt.UTC)


class BatchSubject(Protocol):
    """Whom a batch is about: a :class:`Person`, or anything with a person's ``id``."""

    @property
    def id(self) -> int:
        """The person's id."""


class BatchRules(Protocol):
    """What storing a batch reads of its category: a :class:`Category`, or its columns."""

    @property
    def key(self) -> str:
        """The category's key."""

    @property
    def retention_days(self) -> int:
        """How long its batches are kept."""

    @property
    def event_schema(self) -> dict[str, Any]:
        """The JSON Schema of one event."""

    @property
    def needs_consent(self) -> bool:
        """Whether collection depends on consent (else: the right to object)."""


def check_batch(category: BatchRules, *, events: object, collected_from: object,
                collected_to: object, dss_level: object, collector_id: int | None = None,
                idempotency_key: str | None = None, now: dt.datetime | None = None) -> bytes:
    """Check a batch against the batch rules and the category's event schema.

    Returns the events as canonical JSON, the bytes that get encrypted. Every event is checked
    (up to :data:`MAX_FIELD_ERRORS` problems), and its time ``t`` must lie within the batch's
    collection window, so the dates a person is shown are the dates of the events.

    :raise BatchInvalid: with a :class:`FieldError` per problem, paths as in the API body.
    :raise BatchTooLarge: more than :data:`MAX_EVENTS` events or :data:`MAX_CONTENT_BYTES`.
    """
    now = now or utcnow()
    errors: list[FieldError] = []
    start = _require_aware("collected_from", collected_from, errors)
    end = _require_aware("collected_to", collected_to, errors)
    if start and end:
        if start > end:
            errors.append(FieldError("$.collected_to", "must not be before collected_from"))
        if end > now + CLOCK_SKEW:
            errors.append(FieldError("$.collected_to", "must not be in the future"))
        elif end < now - dt.timedelta(days=category.retention_days):
            # Storing it only to purge it would keep data longer than the notice promises.
            errors.append(FieldError("$.collected_to", "is older than this category's "
                                     f"retention period ({category.retention_days} days)"))
    if isinstance(dss_level, bool) or not isinstance(dss_level, int) \
            or not 1 <= dss_level <= 4:
        errors.append(FieldError("$.dss_level", "must be a whole number from 1 to 4"))
    if idempotency_key is not None:
        if collector_id is None:
            raise ValueError("an idempotency key belongs to a collector: give collector_id")
        if not 1 <= len(idempotency_key) <= MAX_IDEMPOTENCY_KEY_LENGTH \
                or not idempotency_key.isprintable() or not idempotency_key.isascii():
            errors.append(FieldError("Idempotency-Key", "must be 1 to "
                                     f"{MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters"))
    if not isinstance(events, list):
        raise BatchInvalid([*errors, FieldError("$.events", "must be a list of events")])
    if not events:
        raise BatchInvalid([*errors, FieldError("$.events", "must hold at least one event")])
    if len(events) > MAX_EVENTS:
        raise BatchTooLarge("events", MAX_EVENTS)
    try:
        plaintext = crypto.encode_events(events)
    except (TypeError, ValueError, RecursionError):
        raise BatchInvalid([*errors, FieldError("$.events", "must hold only JSON values "
                                                "(no NaN or Infinity, not nested without "
                                                "end)")]) from None
    if len(plaintext) > MAX_CONTENT_BYTES:
        raise BatchTooLarge("bytes of events", MAX_CONTENT_BYTES)

    validators = _validators(orjson.dumps(category.event_schema,
                                          option=orjson.OPT_SORT_KEYS).decode())
    # The common case, cheaply: every event has the category's shape (checked in one call)
    # and a time within the window. Otherwise each event is checked again, to name faults.
    shaped = validators.fast_batch is not None and validators.fast_batch(events)
    if not (shaped and _times_fit(events, start, end)):
        _check_each_event(validators, events, start, end, errors)
    if errors:
        raise BatchInvalid(errors[:MAX_FIELD_ERRORS])
    return plaintext


def _check_each_event(validators: _EventValidators, events: list[Any],
                      start: dt.datetime | None, end: dt.datetime | None,
                      errors: list[FieldError]) -> None:
    """Add the problems of each event to ``errors``, until there are enough of them."""
    fast, validator = validators.fast_event, validators.full
    for index, event in enumerate(events):
        if len(errors) >= MAX_FIELD_ERRORS:
            break
        prefix = f"$.events[{index}]"
        event_errors = [] if fast is not None and fast(event) else [
            found for error in validator.iter_errors(event)
            for found in _field_errors(prefix, error)]
        errors.extend(event_errors)
        moment = event.get("t") if isinstance(event, dict) and not event_errors else None
        if isinstance(moment, str) and start and end:
            parsed = parse_timestamp(moment)
            if parsed is not None and not start <= parsed <= end:
                errors.append(FieldError(prefix + ".t", "must lie between collected_from and "
                                         "collected_to"))


# --- keys ------------------------------------------------------------------------------------

def configured_master_key() -> crypto.MasterKey:
    """Return the master key from the configuration (``PORTAL_MASTER_KEY``)."""
    value = current_app.config.get("MASTER_KEY") or ""
    if not value:
        raise VaultError("PORTAL_MASTER_KEY is not set: the vault cannot open or seal anything")
    return crypto.MasterKey.from_base64(value)


def _unwrap(master: crypto.MasterKey, key: DataKey | LiveKey) -> bytes:
    if key.master_key_id != master.key_id:
        raise VaultIntegrityError(
            f"data key {key.id} is wrapped by master key {key.master_key_id}, but the "
            f"configured master key is {master.key_id}: finish the master-key rotation "
            "(`portal vault rotate-master-key`) or configure the key that wrapped it")
    try:
        return crypto.unwrap_data_key(master, key.wrapped_key, key_id=key.id,
                                      person_id=key.person_id, category_key=key.category_key)
    except crypto.DecryptionFailed as exc:
        raise VaultIntegrityError(str(exc)) from exc


def _live_key(person_id: int, category_key: str, *, lock: bool) -> DataKey | None:
    return db.scalar(_live_key_statement(lock),
                     {"person_id": person_id, "category_key": category_key})


@functools.cache
def _live_key_statement(lock: bool) -> Select[tuple[DataKey]]:
    # Built once, like the other statements that every batch runs: building a statement
    # costs about as much as SQLAlchemy's work to run one it has seen before.
    statement = (select(DataKey)
                 .where(DataKey.person_id == bindparam("person_id"),
                        DataKey.category_key == bindparam("category_key"),
                        DataKey.destroyed_at.is_(None))
                 .execution_options(populate_existing=True))
    if lock:
        # A share lock: shredding (an UPDATE of this row) waits until the batch commits, and
        # then deletes it with the rest; a key shredded first is no longer live here.
        statement = statement.with_for_update(read=True)
    return statement


def _insert_for(dialect: str) -> Any:
    """Return the dialect's INSERT construct, the one with ``on_conflict_do_nothing``."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def _data_key_for_writing(person_id: int, category_key: str) -> tuple[DataKey, bytes]:
    """Return the live data key of (person, category) and its material, making it if needed."""
    master = configured_master_key()
    key = _live_key(person_id, category_key, lock=True)
    if key is None:
        key_id = str(uuid.uuid4())
        material = crypto.new_data_key()
        values = {"id": key_id, "person_id": person_id, "category_key": category_key,
                  "master_key_id": master.key_id, "created_at": utcnow(),
                  "wrapped_key": crypto.wrap_data_key(master, material, key_id=key_id,
                                                      person_id=person_id,
                                                      category_key=category_key)}
        insert = _insert_for(db.get_bind().dialect.name)
        # Two first batches at once both try to make the key; the second one's insert does
        # nothing (after waiting for the first to commit) and both use the same key.
        db.execute(insert(DataKey).values(**values).on_conflict_do_nothing(
            index_elements=["person_id", "category_key"],
            index_where=DataKey.destroyed_at.is_(None)))
        key = _live_key(person_id, category_key, lock=True)
        if key is None:
            raise VaultError(f"the data key of person {person_id} for {category_key} was "
                             "destroyed while this batch was being stored; send it again")
    return key, _unwrap(master, key)


# --- ingestion -------------------------------------------------------------------------------

def find_category(key: str) -> Category:
    """Return the category ``key`` if the catalog in force lists it.

    :raise UnknownCategory: never published, or left out of the current notice.
    """
    category = db.get(Category, key) if isinstance(key, str) else None
    if category is None:
        raise UnknownCategory(str(key))
    _require_in_catalog(category)
    return category


def _require_in_catalog(category: BatchRules) -> None:
    if db.scalar(_in_force_statement(), {"category_key": category.key}) is None:
        raise UnknownCategory(category.key)


@functools.cache
def _in_force_statement() -> Select[tuple[str]]:
    """Return the statement that finds a category in the latest notice, built once.

    One small statement on every batch: loading the notice itself would also read its
    published document (tens of kilobytes) to use only its id.
    """
    latest = (select(NoticeVersion.id).order_by(NoticeVersion.number.desc()).limit(1)
              .scalar_subquery())
    return select(CategoryNotice.category_key).where(
        CategoryNotice.notice_version_id == latest,
        CategoryNotice.category_key == bindparam("category_key"))


def _serialise_writers(person_id: int, category_key: str) -> None:
    """On SQLite, take the database's write lock before reading anything the batch depends on.

    pysqlite reads outside a transaction until the first write, so a withdrawal could commit
    between the consent check and the insert. A write that changes nothing starts the
    transaction and takes SQLite's single write lock: from here on, withdrawals wait for us.
    PostgreSQL uses row locks instead (see :func:`_require_consent`).
    """
    if db.get_bind().dialect.name != "sqlite":
        return
    table = ConsentStatus.__table__
    db.execute(update(table).where(table.c.person_id == person_id,
                                   table.c.category_key == category_key)
               .values(state=table.c.state))


def _require_consent(person_id: int, category: BatchRules) -> None:
    """Refuse unless the person's consent allows collection now; hold it until commit.

    ``FOR SHARE`` on the person's consent row: a withdrawal UPDATEs that row, so one that
    committed earlier is seen here, one in progress is waited for and then seen, and one
    arriving later waits until this batch has committed. Categories on another legal basis
    need no consent row, but an upheld objection stops their collection likewise.
    """
    if not category.needs_consent:
        _require_no_upheld_objection(person_id, category)
        return
    state = db.scalar(_consent_state_statement(),
                      {"person_id": person_id, "category_key": category.key})
    if state is None or not state.allows_collection:
        raise ConsentRequired(person_id, category.key, state)


def _require_no_upheld_objection(person_id: int, category: BatchRules) -> None:
    """Refuse if the person's objection to the category was upheld; hold that until commit.

    Every objection row of the person and category is share-locked, whatever its state: a
    DPO upholding one at this moment UPDATEs that row, so the batch waits and then sees the
    new state (a filter on "upheld" would skip the row being changed without waiting).
    """
    states = db.scalars(_objection_states_statement(),
                        {"person_id": person_id, "category_key": category.key})
    if ObjectionState.UPHELD in set(states):
        raise ObjectionUpheld(person_id, category.key)


@functools.cache
def _objection_states_statement() -> Select[tuple[ObjectionState]]:
    return (select(Objection.state)
            .where(Objection.person_id == bindparam("person_id"),
                   Objection.category_key == bindparam("category_key"))
            .with_for_update(read=True))


@functools.cache
def _consent_state_statement() -> Select[tuple[ConsentState]]:
    return (select(ConsentStatus.state)
            .where(ConsentStatus.person_id == bindparam("person_id"),
                   ConsentStatus.category_key == bindparam("category_key"))
            .with_for_update(read=True))


class LiveKey(NamedTuple):
    """The columns of a live data key that storing a batch needs (no ORM object)."""

    id: str
    person_id: int
    category_key: str
    master_key_id: str
    wrapped_key: bytes


@functools.cache
def _consent_and_key_statement() -> Select[Any]:
    """Return the statement that reads and share-locks the consent row and the live key at once.

    The two locks of :func:`_require_consent` and :func:`_data_key_for_writing` in one round
    trip, for the usual batch: consent on record and a key made by an earlier batch. An inner
    join, since PostgreSQL locks no row on the nullable side of an outer join: no row means
    that one of the two is missing (or changed while we waited for its lock), and the batch
    takes the step-by-step path, which says which. Waiting for a withdrawal's lock and then
    reading the row it committed works as for the consent row alone: the join's conditions
    are checked again on the new row. Columns rather than ORM objects, run as a Core
    statement: this runs for every batch, and the ORM's loading cost more than the read.
    """
    return (select(ConsentStatus.state, DataKey.id, DataKey.person_id, DataKey.category_key,
                   DataKey.master_key_id, DataKey.wrapped_key)
            .join(DataKey, and_(DataKey.person_id == ConsentStatus.person_id,
                                DataKey.category_key == ConsentStatus.category_key,
                                DataKey.destroyed_at.is_(None)))
            .where(ConsentStatus.person_id == bindparam("person_id"),
                   ConsentStatus.category_key == bindparam("category_key"))
            .with_for_update(read=True, of=[ConsentStatus.__table__, DataKey.__table__]))


def _earlier_batch(collector_id: int | None, idempotency_key: str | None,
                   ) -> CollectedBatch | None:
    """Return the batch stored under the collector's idempotency key, if there is one."""
    if idempotency_key is None:
        return None
    return db.scalars(select(CollectedBatch).where(
        CollectedBatch.collector_id == collector_id,
        CollectedBatch.idempotency_key == idempotency_key)).one_or_none()


@functools.cache
def _insert_batch_statement(dialect: str) -> Any:
    """Return the INSERT of a batch that stores nothing if its idempotency key is taken.

    It returns the new row's id, so no row means a retry (or a reused key), answered by
    :func:`_replay`. On PostgreSQL a second request with the same key waits in this insert
    until the first commits or rolls back, then sees its row or stores its own: retries of
    one key are serialised by the unique constraint itself, without a statement of their own.
    """
    table = CollectedBatch.__table__
    return (_insert_for(dialect)(table)
            .on_conflict_do_nothing(index_elements=["collector_id", "idempotency_key"])
            .returning(table.c.id))


def _replay(earlier: CollectedBatch, *, person_id: int, category_key: str, plaintext: bytes,
            event_count: int, collected_from: dt.datetime, collected_to: dt.datetime,
            dss_level: int) -> IngestResult:
    """Answer a retry with the first batch, if it is the same batch.

    The content is compared by decrypting the first batch, so that nothing derived from the
    plaintext has to be stored for the comparison.
    """
    same = (earlier.person_id == person_id and earlier.category_key == category_key
            and earlier.collected_from == collected_from
            and earlier.collected_to == collected_to and earlier.dss_level == dss_level
            and earlier.event_count == event_count)
    key = db.get(DataKey, earlier.data_key_id)
    # A shredded first batch cannot be compared; its metadata has to do.
    if same and key is not None and not key.destroyed:
        material = _unwrap(configured_master_key(), key)
        same = crypto.same_events(_open(material, earlier), plaintext)
    if not same:
        raise IdempotencyConflict(earlier.public_id)
    return IngestResult(earlier.public_id, created=False, event_count=earlier.event_count,
                        received_at=earlier.received_at)


def _consent_and_key(person_id: int, category: BatchRules) -> tuple[DataKey | LiveKey, bytes]:
    """Require current consent and return the live data key with its material, both locked.

    One statement when both are there (see :func:`_consent_and_key_statement`); else the
    consent check, then the key, made if needed.
    """
    if category.needs_consent:
        found = db.connection().execute(_consent_and_key_statement(), {
            "person_id": person_id, "category_key": category.key}).first()
        if found is not None:
            state, key = found[0], LiveKey(*found[1:])
            if not state.allows_collection:
                raise ConsentRequired(person_id, category.key, state)
            return key, _unwrap(configured_master_key(), key)
    _require_consent(person_id, category)
    return _data_key_for_writing(person_id, category.key)


def ingest_batch(person: BatchSubject, category: BatchRules, *, events: object,
                 collected_from: dt.datetime, collected_to: dt.datetime, dss_level: int,
                 collector_id: int | None = None,
                 idempotency_key: str | None = None,
                 catalog_checked: bool = False) -> IngestResult:
    """Check, consent-gate, encrypt and store one batch of ``person``'s events of ``category``.

    Stored if and only if consent allows collection when the transaction commits (see
    :func:`_require_consent`). A retry with the same ``(collector_id, idempotency_key)``
    returns the first batch (``created`` false) without storing anything.

    :raise BatchInvalid: the batch breaks a rule or the event schema (errors name the fields).
    :raise BatchTooLarge: too many events or bytes.
    :raise UnknownCategory: the category is not in the catalog in force.
    :raise ConsentRequired: the category rests on consent and it is not current.
    :raise ObjectionUpheld: the category rests on another basis and the person's objection to
        it was upheld.
    :raise IdempotencyConflict: the key was used for a different batch.
    :raise VaultIntegrityError: the person's data key does not open with the master key.

    ``catalog_checked``: the caller found the category in the catalog in force in this same
    transaction (the collector API reads it with the token, in one statement).
    """
    if not catalog_checked:
        _require_in_catalog(category)
    plaintext = check_batch(category, events=events, collected_from=collected_from,
                            collected_to=collected_to, dss_level=dss_level,
                            collector_id=collector_id, idempotency_key=idempotency_key)
    assert isinstance(events, list)

    def replay(earlier: CollectedBatch) -> IngestResult:
        return _replay(earlier, person_id=person.id, category_key=category.key,
                       plaintext=plaintext, event_count=len(events),
                       collected_from=collected_from, collected_to=collected_to,
                       dss_level=dss_level)

    _serialise_writers(person.id, category.key)
    try:
        key, material = _consent_and_key(person.id, category)
    except (ConsentRequired, ObjectionUpheld):
        # A retry of a batch stored while collection was allowed: its first answer was lost,
        # and the collector learns that the batch was stored after all.
        earlier = _earlier_batch(collector_id, idempotency_key)
        if earlier is None:
            raise
        return replay(earlier)
    public_id = str(uuid.uuid4())
    sealed = crypto.seal_batch(material, plaintext, batch_id=public_id, person_id=person.id,
                               category_key=category.key)
    received_at = utcnow()
    # A plain INSERT rather than an ORM object and a flush: nothing here reads the row
    # back, and the unit of work would double the cost of storing it.
    stored = db.connection().scalar(_insert_batch_statement(db.get_bind().dialect.name), {
        "public_id": public_id, "person_id": person.id, "category_key": category.key,
        "data_key_id": key.id, "collector_id": collector_id,
        "idempotency_key": idempotency_key, "collected_from": collected_from,
        "collected_to": collected_to, "received_at": received_at, "dss_level": dss_level,
        "event_count": len(events), "compressed_size": sealed.compressed_size,
        "nonce": sealed.nonce, "ciphertext": sealed.ciphertext})
    if stored is None:
        earlier = _earlier_batch(collector_id, idempotency_key)
        if earlier is None:  # purged or erased since the insert saw it: rare, and harmless
            raise VaultError("a batch with this idempotency key was deleted while this one "
                             "was being stored; send it again")
        return replay(earlier)
    return IngestResult(public_id, created=True, event_count=len(events),
                        received_at=received_at)


# --- reading ---------------------------------------------------------------------------------

def _open(material: bytes, batch: CollectedBatch) -> bytes:
    try:
        return crypto.open_batch(material, batch.nonce, batch.ciphertext,
                                 batch_id=batch.public_id, person_id=batch.person_id,
                                 category_key=batch.category_key, max_size=MAX_CONTENT_BYTES)
    except crypto.DecryptionFailed as exc:
        raise VaultIntegrityError(str(exc)) from exc


def _window(since: dt.datetime | None, until: dt.datetime | None) -> list[ColumnElement[bool]]:
    """Return the criteria for batches whose collection window overlaps [since, until]."""
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware")
    criteria: list[ColumnElement[bool]] = []
    if since is not None:
        criteria.append(CollectedBatch.collected_to >= since)
    if until is not None:
        criteria.append(CollectedBatch.collected_from <= until)
    return criteria


def read_own_batches(subject: Person, category_key: str | None = None, *,
                     since: dt.datetime | None = None,
                     until: dt.datetime | None = None) -> Iterator[DecryptedBatch]:
    """Decrypt and yield the signed-in person's own batches, oldest first.

    ``subject`` must be the person reading: there is deliberately no way to read another
    person's content (DESIGN principle 2). Batches whose key was shredded are gone and are
    not yielded; ``since``/``until`` select batches whose collection window overlaps them.

    :raise VaultIntegrityError: a batch does not open (wrong master key, moved or altered).
    """
    criteria = _window(since, until)
    key_query = select(DataKey).where(DataKey.person_id == subject.id,
                                      DataKey.destroyed_at.is_(None))
    if category_key is not None:
        key_query = key_query.where(DataKey.category_key == category_key)
    keys = {key.id: key for key in db.scalars(key_query)}
    if not keys:
        return
    master = configured_master_key()
    materials: dict[str, bytes] = {}
    batches = db.scalars(
        select(CollectedBatch)
        .where(CollectedBatch.person_id == subject.id,
               CollectedBatch.data_key_id.in_(list(keys)), *criteria)
        .order_by(CollectedBatch.collected_from, CollectedBatch.id)
        .execution_options(yield_per=100))
    for batch in batches:
        if batch.data_key_id not in materials:
            materials[batch.data_key_id] = _unwrap(master, keys[batch.data_key_id])
        events = json.loads(_open(materials[batch.data_key_id], batch))
        yield DecryptedBatch(batch.public_id, batch.category_key, batch.collected_from,
                             batch.collected_to, batch.received_at, batch.dss_level, events)


def held_summary(person_id: int) -> dict[str, HeldSummary]:
    """Summarise what is held about a person, per category key, without decrypting anything.

    Batches whose data key was shredded are erased content waiting for the purge of their
    rows, and are not counted.
    """
    rows = db.execute(
        select(CollectedBatch.category_key, CollectedBatch.dss_level, func.count(),
               func.sum(CollectedBatch.event_count), func.min(CollectedBatch.collected_from),
               func.max(CollectedBatch.collected_to))
        .join(DataKey, DataKey.id == CollectedBatch.data_key_id)
        .where(CollectedBatch.person_id == person_id, DataKey.destroyed_at.is_(None))
        .group_by(CollectedBatch.category_key, CollectedBatch.dss_level)).all()
    parts: dict[str, list[tuple[int, int, int, dt.datetime, dt.datetime]]] = {}
    for key, level, batches, events, first, last in rows:
        parts.setdefault(key, []).append((level, batches, int(events or 0), first, last))
    return {key: HeldSummary(
        batches=sum(part[1] for part in levels), events=sum(part[2] for part in levels),
        first=min(part[3] for part in levels), last=max(part[4] for part in levels),
        dss_levels={part[0]: part[2] for part in sorted(levels)})
        for key, levels in parts.items()}


def held_counts(person_id: int) -> dict[str, int]:
    """Count the events held about a person, per category key (for the dashboard)."""
    return {key: summary.events for key, summary in held_summary(person_id).items()}


# --- erasure and retention -------------------------------------------------------------------

def destroy_data_keys(person_id: int, category_key: str, *, reference: str | None = None) -> int:
    """Crypto-shred the person's data key for a category; return how many keys were destroyed.

    The wrapped key is overwritten with nothing, so every copy of the batches it sealed
    (replicas, copies of the batch table, object storage) stops decrypting. A database
    backup taken *before* this holds the old key row too, and opens with the master key
    that wrapped it: erasure reaches such backups once the master key has been rotated and
    the old one destroyed.
    Call :func:`delete_batches` in the same transaction to remove the rows as well. When
    consent is withdrawn in the same transaction, withdraw first: ingestion locks consent
    before the key, and the same order here avoids a deadlock. ``reference`` names the
    deletion request being carried out, for the shred journal.
    """
    # So that a restore cannot undo it.
    journal.note_destroyed_keys(person_id, category_key, reference=reference)
    result = db.execute(update(DataKey)
                        .where(DataKey.person_id == person_id,
                               DataKey.category_key == category_key,
                               DataKey.destroyed_at.is_(None))
                        .values(wrapped_key=b"", destroyed_at=utcnow()))
    db.flush()
    return int(result.rowcount)  # type: ignore[attr-defined]


def delete_batches(person_id: int, category_key: str | None = None, *,
                   since: dt.datetime | None = None, until: dt.datetime | None = None) -> int:
    """Delete a person's batches (of one category, or all); return how many were deleted.

    With ``since``/``until``, a batch is deleted when its collection window overlaps the
    period at all: a deletion request errs on the side of deleting.
    """
    criteria = [CollectedBatch.person_id == person_id, *_window(since, until)]
    if category_key is not None:
        criteria.append(CollectedBatch.category_key == category_key)
    result = db.execute(delete(CollectedBatch).where(*criteria))
    db.flush()
    return int(result.rowcount)  # type: ignore[attr-defined]


def purge_expired(*, now: dt.datetime | None = None,
                  dry_run: bool = False) -> list[PurgedCategory]:
    """Delete every batch collected before its category's retention period; report per category.

    A batch expires when its last event (``collected_to``) is older than the category's
    ``retention_days``. With ``dry_run`` nothing is deleted and the report says what would be.
    """
    now = now or utcnow()
    report = []
    for category in db.scalars(select(Category).order_by(Category.position, Category.key)):
        cutoff = now - dt.timedelta(days=category.retention_days)
        criteria = (CollectedBatch.category_key == category.key,
                    CollectedBatch.collected_to < cutoff)
        batches, events, oldest, newest = db.execute(
            select(func.count(), func.sum(CollectedBatch.event_count),
                   func.min(CollectedBatch.collected_from),
                   func.max(CollectedBatch.collected_to)).where(*criteria)).one()
        if not batches:
            continue
        people = tuple(db.scalars(select(CollectedBatch.person_id).where(*criteria)
                                  .distinct().order_by(CollectedBatch.person_id)))
        if not dry_run:
            batches = db.execute(delete(CollectedBatch).where(*criteria)).rowcount  # type: ignore[attr-defined]
        report.append(PurgedCategory(category.key, category.retention_days, cutoff,
                                     int(batches), int(events or 0), oldest, newest, people))
    db.flush()
    return report


# --- master key rotation ---------------------------------------------------------------------

def rotate_master_key(new: crypto.MasterKey) -> RotationReport:
    """Re-wrap every live data key from the configured master key to ``new``.

    Touches no ciphertext. Keys already wrapped by ``new`` are left alone, so the command can
    run again after an interruption. Refuses, changing nothing, when a live key is wrapped by
    a third master key (the result would be a vault that no single key opens).

    :raise VaultError: ``new`` is the configured key, or a key belongs to an unknown master.
    :raise VaultIntegrityError: a data key does not open with the configured master key.
    """
    current = configured_master_key()
    if new.key_id == current.key_id:
        raise VaultError("the new master key is the one already configured")
    live = DataKey.destroyed_at.is_(None)
    counts: dict[str, int] = {
        key_id: count for key_id, count in db.execute(
            select(DataKey.master_key_id, func.count()).where(live)
            .group_by(DataKey.master_key_id))}
    foreign = {key_id: count for key_id, count in counts.items()
               if key_id not in {current.key_id, new.key_id}}
    if foreign:
        raise VaultError("some data keys are wrapped by a master key that is neither the "
                         "configured one nor the new one: " + ", ".join(
                             f"{count} by {key_id}" for key_id, count in sorted(foreign.items()))
                         + "; nothing was changed")
    destroyed = db.scalar(select(func.count()).select_from(DataKey)
                          .where(DataKey.destroyed_at.is_not(None))) or 0
    ids = list(db.scalars(select(DataKey.id).where(live, DataKey.master_key_id == current.key_id)
                          .order_by(DataKey.id)))
    rewrapped = 0
    for start in range(0, len(ids), _ROTATION_CHUNK):
        chunk = ids[start:start + _ROTATION_CHUNK]
        # Locked so that a concurrent shredding or ingestion waits for the new wraps.
        keys = db.scalars(select(DataKey).where(DataKey.id.in_(chunk), live)
                          .with_for_update().execution_options(populate_existing=True))
        for key in keys:
            material = _unwrap(current, key)
            key.wrapped_key = crypto.wrap_data_key(new, material, key_id=key.id,
                                                   person_id=key.person_id,
                                                   category_key=key.category_key)
            key.master_key_id = new.key_id
            rewrapped += 1
        db.flush()
    return RotationReport(old_key_id=current.key_id, new_key_id=new.key_id,
                          rewrapped=rewrapped, already_new=counts.get(new.key_id, 0),
                          destroyed=destroyed)



# --- long reads of one's own data (the download) ---------------------------------------------

def stream_own_batches(subject: Person, category_key: str, *,
                       since: dt.datetime | None = None, until: dt.datetime | None = None,
                       newest_first: bool = False,
                       rows_per_fetch: int = 16) -> Iterator[DecryptedBatch]:
    """Decrypt and yield the signed-in person's batches of one category, a few at a time.

    Like :func:`read_own_batches` (the same rule: ``subject`` is the person reading), for
    reads of any size: rows come from the database ``rows_per_fetch`` at a time (a
    server-side cursor on PostgreSQL) as plain rows, not ORM objects, so the memory used is
    a few batches whatever the person holds. ``newest_first`` orders by the end of the
    collection window, newest first (for previews); otherwise oldest first.

    :raise VaultIntegrityError: a batch does not open (wrong master key, moved or altered).
    """
    key = db.scalar(select(DataKey).where(DataKey.person_id == subject.id,
                                          DataKey.category_key == category_key,
                                          DataKey.destroyed_at.is_(None)))
    if key is None:
        return
    material = _unwrap(configured_master_key(), key)
    order = ((CollectedBatch.collected_to.desc(), CollectedBatch.id.desc()) if newest_first
             else (CollectedBatch.collected_from, CollectedBatch.id))
    rows = db.execute(
        select(CollectedBatch.public_id, CollectedBatch.person_id, CollectedBatch.category_key,
               CollectedBatch.collected_from, CollectedBatch.collected_to,
               CollectedBatch.received_at, CollectedBatch.dss_level, CollectedBatch.nonce,
               CollectedBatch.ciphertext)
        .where(CollectedBatch.person_id == subject.id, CollectedBatch.data_key_id == key.id,
               *_window(since, until))
        .order_by(*order)
        .execution_options(yield_per=rows_per_fetch))
    for row in rows:
        try:
            plaintext = crypto.open_batch(material, row.nonce, row.ciphertext,
                                          batch_id=row.public_id, person_id=row.person_id,
                                          category_key=row.category_key,
                                          max_size=MAX_CONTENT_BYTES)
        except crypto.DecryptionFailed as exc:
            raise VaultIntegrityError(str(exc)) from exc
        yield DecryptedBatch(row.public_id, row.category_key, row.collected_from,
                             row.collected_to, row.received_at, row.dss_level,
                             json.loads(plaintext))


# --- erasure checks (deletion requests) ------------------------------------------------------

@dataclass(frozen=True)
class ScopeCount:
    """How much of a person's data lies in a deletion's scope: metadata only."""

    batches: int
    events: int
    first: dt.datetime | None
    last: dt.datetime | None


def count_in_scope(person_id: int, category_key: str, *, since: dt.datetime | None = None,
                   until: dt.datetime | None = None,
                   received_before: dt.datetime | None = None) -> ScopeCount:
    """Count the person's batches of a category whose window overlaps [since, until].

    ``received_before`` leaves out batches stored after that moment (consent given again
    after a deletion is new data, not a remainder of the deleted one).
    """
    criteria = [CollectedBatch.person_id == person_id,
                CollectedBatch.category_key == category_key, *_window(since, until)]
    if received_before is not None:
        criteria.append(CollectedBatch.received_at <= received_before)
    batches, events, first, last = db.execute(
        select(func.count(), func.sum(CollectedBatch.event_count),
               func.min(CollectedBatch.collected_from), func.max(CollectedBatch.collected_to))
        .where(*criteria)).one()
    return ScopeCount(int(batches or 0), int(events or 0), first, last)


def categories_with_data(person_id: int) -> set[str]:
    """Return the category keys of which the person has batches or a live data key."""
    with_batches = set(db.scalars(select(CollectedBatch.category_key).distinct()
                                  .where(CollectedBatch.person_id == person_id)))
    with_keys = set(db.scalars(select(DataKey.category_key)
                               .where(DataKey.person_id == person_id,
                                      DataKey.destroyed_at.is_(None))))
    return with_batches | with_keys


def live_key_ids(person_id: int, category_key: str) -> list[str]:
    """Return the ids of the person's live data keys of a category (before shredding them)."""
    return list(db.scalars(select(DataKey.id).where(
        DataKey.person_id == person_id, DataKey.category_key == category_key,
        DataKey.destroyed_at.is_(None)).order_by(DataKey.id)))


def key_still_opens(key_id: str) -> bool:
    """Try to unwrap a data key with the configured master key; say whether it still opens.

    A crypto-shredded key has no wrapped material left, so nothing it sealed can be read
    again; this proves it by trying.
    """
    key = db.get(DataKey, key_id, populate_existing=True)
    if key is None:
        return False
    try:
        crypto.unwrap_data_key(configured_master_key(), key.wrapped_key, key_id=key.id,
                               person_id=key.person_id, category_key=key.category_key)
    except crypto.DecryptionFailed:
        return False
    return True


def batches_sealed_by(key_ids: Sequence[str]) -> int:
    """Count the batches still stored under any of these data keys."""
    if not key_ids:
        return 0
    return int(db.scalar(select(func.count()).select_from(CollectedBatch)
                         .where(CollectedBatch.data_key_id.in_(list(key_ids)))) or 0)

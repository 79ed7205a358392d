"""Checking a batch before it is stored: the batch rules, its category's event format, its times.

Nothing here reads the database: the collector API checks a batch with :func:`check_batch`
before anything else, and :func:`portal.vault.ingest.ingest_batch` checks it again for every
other caller.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Protocol

import jsonschema
import orjson

from portal.db import utcnow
from portal.vault import crypto
from portal.vault.errors import BatchInvalid, BatchTooLarge, FieldError
from portal.vault.validation import Check, compile_batch_schema, compile_schema

#: Limits of one batch. The API also caps the request body; these hold for every caller.
MAX_EVENTS = 10_000
MAX_CONTENT_BYTES = 8 * 1024 * 1024
MAX_IDEMPOTENCY_KEY_LENGTH = 255
#: Enough errors to fix a collector, few enough that a hostile body cannot make a huge answer.
MAX_FIELD_ERRORS = 50
#: How far in the future a batch may claim to end: collectors' clocks drift a little.
CLOCK_SKEW = dt.timedelta(minutes=5)

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


class BatchRules(Protocol):
    """What storing a batch reads of its category.

    A :class:`~portal.catalog.models.Category`, or anything with its columns.
    """

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


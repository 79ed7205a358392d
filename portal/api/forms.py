"""What clients hand in: the collector API's request bodies and queries.

The API parsers check the envelope of a request (which fields, which types) and say what is
wrong with every field at once; the contents of a batch's events are the vault's to check,
against the category's event schema.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from portal.api.errors import invalid
from portal.api.models import CollectionAction
from portal.db import utcnow
from portal.vault.checks import CLOCK_SKEW, parse_timestamp

MAX_SUBJECT_LENGTH = 255
MAX_CATEGORY_LENGTH = 64
DEFAULT_CHANGES = 100
MAX_CHANGES = 1000
#: A cursor is a ledger position; 18 digits fit a 64-bit integer with room to spare.
MAX_CURSOR_DIGITS = 18
#: Cursors are ledger positions, stored as 32-bit integers: none can lie beyond this one.
LAST_POSITION = 2**31 - 1
TIME_HINT = "must be a date and time with its time zone (RFC 3339), such as 2026-03-02T09:14:07Z"


# Subjects and category keys are printable; a NUL would also be refused by PostgreSQL.
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f]")


def _text(body: Mapping[str, Any], name: str, limit: int, path: str,
          problems: list[tuple[str, str]]) -> str:
    value = body.get(name)
    if name not in body:
        problems.append((path + name, "is required"))
    elif not isinstance(value, str):
        problems.append((path + name, "must be a string"))
    elif not value or len(value) > limit:
        problems.append((path + name, f"must be 1 to {limit} characters long"))
    elif CONTROL_CHARACTERS.search(value):
        problems.append((path + name, "must not contain control characters"))
    else:
        return value
    return ""


def _subject_and_category(body: Mapping[str, Any], path: str,
                          problems: list[tuple[str, str]]) -> tuple[str, str]:
    """Check whom and what a collector's call is about: every call names both."""
    return (_text(body, "subject", MAX_SUBJECT_LENGTH, path, problems),
            _text(body, "category", MAX_CATEGORY_LENGTH, path, problems))


def _moment(body: Mapping[str, Any], name: str, problems: list[tuple[str, str]], *,
            nullable: bool = False) -> dt.datetime | None:
    value = body.get(name)
    if name not in body:
        problems.append((f"$.{name}", "is required"))
    elif value is None and nullable:
        return None
    elif not isinstance(value, str) or (parsed := parse_timestamp(value)) is None:
        problems.append((f"$.{name}", TIME_HINT + (", or null" if nullable else "")))
    else:
        return parsed
    return None


def json_object(body: object, allowed: frozenset[str]) -> Mapping[str, Any]:
    """Return ``body`` if it is a JSON object with no field but ``allowed``; refuse with 400."""
    if not isinstance(body, dict):
        raise invalid([("$", "must be a JSON object")])
    unknown = sorted(str(name) for name in body if name not in allowed)
    if unknown:
        raise invalid([(f"$.{name[:64]}", "is not a field of this request")
                       for name in unknown[:20]])
    return body


@dataclass(frozen=True)
class BatchRequest:
    """The envelope of a batch; ``dss_level`` and ``events`` go to the vault unchecked."""

    subject: str
    category_key: str
    collected_from: dt.datetime
    collected_to: dt.datetime
    dss_level: object
    events: object


BATCH_FIELDS = frozenset({"subject", "category", "collected_from", "collected_to", "dss_level",
                          "events"})


def parse_batch(body: object) -> BatchRequest:
    """Check a batch's envelope.

    :raise ApiError: 400 naming every missing, unknown or mistyped field.
    """
    fields = json_object(body, BATCH_FIELDS)
    problems: list[tuple[str, str]] = []
    subject, category_key = _subject_and_category(fields, "$.", problems)
    start = _moment(fields, "collected_from", problems)
    end = _moment(fields, "collected_to", problems)
    problems.extend((f"$.{name}", "is required") for name in ("dss_level", "events")
                    if name not in fields)
    if problems:
        raise invalid(problems)
    assert start is not None and end is not None
    return BatchRequest(subject, category_key, start, end, fields["dss_level"], fields["events"])


@dataclass(frozen=True)
class AcknowledgementRequest:
    """A collector's report that it acted on a change."""

    subject: str
    category_key: str
    change_cursor: int
    action: CollectionAction
    last_event_at: dt.datetime | None


ACKNOWLEDGEMENT_FIELDS = frozenset({"subject", "category", "change_cursor", "action",
                                    "last_event_at"})


def _cursor(value: object) -> int | None:
    if isinstance(value, str) and value.isascii() and value.isdigit() \
            and len(value) <= MAX_CURSOR_DIGITS:
        return int(value)
    return None


def parse_acknowledgement(body: object) -> AcknowledgementRequest:
    """Check an acknowledgement.

    :raise ApiError: 400 naming every missing, unknown or mistyped field.
    """
    fields = json_object(body, ACKNOWLEDGEMENT_FIELDS)
    problems: list[tuple[str, str]] = []
    subject, category_key = _subject_and_category(fields, "$.", problems)
    cursor = _cursor(fields.get("change_cursor"))
    if "change_cursor" not in fields:
        problems.append(("$.change_cursor", "is required"))
    elif cursor is None or cursor > LAST_POSITION:
        problems.append(("$.change_cursor", "must be a cursor from the changes feed (a string "
                         "of digits)"))
    action = fields.get("action")
    if "action" not in fields:
        problems.append(("$.action", "is required"))
    elif action not in {member.value for member in CollectionAction}:
        problems.append(("$.action", 'must be "stopped" or "resumed"'))
    last_event_at = _moment(fields, "last_event_at", problems, nullable=True)
    if last_event_at is not None and last_event_at > utcnow() + CLOCK_SKEW:
        problems.append(("$.last_event_at", "must not be in the future"))
    if problems:
        raise invalid(problems)
    assert cursor is not None
    return AcknowledgementRequest(subject, category_key, cursor, CollectionAction(action),
                                  last_event_at)


def parse_consent_query(args: Mapping[str, str]) -> tuple[str, str]:
    """Return the subject and category asked about.

    :raise ApiError: 400 naming each missing or malformed parameter.
    """
    problems: list[tuple[str, str]] = []
    subject, category_key = _subject_and_category(args, "", problems)
    if problems:
        raise invalid(problems)
    return subject, category_key


def parse_changes_query(args: Mapping[str, str]) -> tuple[int, int]:
    """Return the cursor to start after (0: the beginning) and how many changes to return.

    :raise ApiError: 400 naming each malformed parameter.
    """
    problems: list[tuple[str, str]] = []
    after = 0
    if "after" in args:
        parsed = _cursor(args["after"])
        if parsed is None:
            problems.append(("after", "must be a cursor from the changes feed (a string of "
                             "digits)"))
        else:
            # Nothing follows a cursor beyond the last possible position; clamping keeps
            # such a value out of the query, where PostgreSQL would refuse it.
            after = min(parsed, LAST_POSITION)
    limit = DEFAULT_CHANGES
    if "limit" in args:
        raw = args["limit"]
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 4
                and 1 <= int(raw) <= MAX_CHANGES):
            problems.append(("limit", f"must be a whole number from 1 to {MAX_CHANGES}"))
        else:
            limit = int(raw)
    if problems:
        raise invalid(problems)
    return after, limit

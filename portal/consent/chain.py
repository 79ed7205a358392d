"""The consent ledger's hash chain: canonical event encoding, leaf and chain hashes, checking.

Pure functions with no database, so that a receipt holder, an auditor or ``portal ledger
verify`` compute exactly the same bytes.

- leaf hash  = SHA-256(0x00 || canonical JSON of the event's fields)   (RFC 6962, section 2.1)
- chain hash = SHA-256(0x01 || previous chain hash || leaf hash)
- the first event's previous chain hash is 32 zero bytes.

Canonical JSON: keys sorted, no whitespace, UTF-8, values only integers, strings and null
(times are RFC 3339 strings in UTC with microseconds), which makes it the RFC 8785 form.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: Version of the leaf encoding, hashed with every event so that a future format can coexist.
LEAF_FORMAT = 1
GENESIS = bytes(32)
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
#: The fields of an event that its leaf hash covers, in no particular order (keys are sorted).
LEAF_FIELDS = ("id", "receipt_id", "person_id", "category_key", "notice_version_id", "state",
               "occurred_at", "actor_id", "actor_role", "method")


def format_time(value: dt.datetime) -> str:
    """Return ``value`` as the RFC 3339 UTC string the leaf hash covers."""
    if value.tzinfo is None:
        raise ValueError("naive datetime in a ledger event")
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Return exactly the hashed fields of an event, with times written as strings."""
    missing = [name for name in LEAF_FIELDS if name not in fields]
    if missing:
        raise ValueError(f"event lacks {', '.join(missing)}")
    canonical: dict[str, Any] = {"v": LEAF_FORMAT}
    for name in LEAF_FIELDS:
        value = fields[name]
        if isinstance(value, dt.datetime):
            value = format_time(value)
        elif value is not None and not isinstance(value, int | str):
            # Enums are StrEnums; anything else would make the encoding ambiguous.
            raise TypeError(f"{name}: {type(value).__name__} cannot be hashed canonically")
        if isinstance(value, bool):
            raise TypeError(f"{name}: booleans are not part of the leaf format")
        canonical[name] = str(value) if isinstance(value, str) else value
    return canonical


def canonical_json(fields: Mapping[str, Any]) -> bytes:
    """Encode an event's hashed fields as canonical JSON bytes."""
    return json.dumps(canonical_fields(fields), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def leaf_hash(fields: Mapping[str, Any]) -> bytes:
    """Return the RFC 6962 leaf hash of an event."""
    return hashlib.sha256(LEAF_PREFIX + canonical_json(fields)).digest()


def chain_hash(previous: bytes, leaf: bytes) -> bytes:
    """Return the chain hash that links ``leaf`` to the chain ending in ``previous``."""
    if len(previous) != 32 or len(leaf) != 32:
        raise ValueError("chain and leaf hashes are 32 bytes")
    return hashlib.sha256(NODE_PREFIX + previous + leaf).digest()


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking a chain: intact, or the first broken link and what is wrong."""

    ok: bool
    count: int
    head: str
    broken_event_id: int | None = None
    problem: str = ""

    def describe(self) -> str:
        """Say the outcome in one line, for the command line and logs."""
        if self.ok:
            return f"OK: {self.count} events, chain head {self.head}"
        where = f"event {self.broken_event_id}" if self.broken_event_id is not None else "head"
        return f"BROKEN at {where}: {self.problem}"


def verify_chain(rows: Iterable[Mapping[str, Any]], *, expected_length: int | None = None,
                 expected_head: str | None = None) -> Verdict:
    """Check a chain given as rows in id order, each with the leaf fields and both hashes.

    Ids must run 1, 2, 3 … without gaps: a gap is a deleted event, a repeat a reordering.
    ``expected_length`` and ``expected_head`` come from the chain-head row; they reveal an
    event removed or forged at the end, which leaves no broken link behind it.
    """
    previous = GENESIS
    count = 0
    for row in rows:
        count += 1
        event_id = row["id"]
        if event_id != count:
            problem = (f"expected event {count} here, found event {event_id}: "
                       + ("an event is missing (deleted)" if event_id > count
                          else "events are out of order"))
            return Verdict(False, count - 1, previous.hex(), event_id, problem)
        try:
            leaf = leaf_hash(row)
        except (TypeError, ValueError) as exc:
            return Verdict(False, count - 1, previous.hex(), event_id,
                           f"its fields cannot be encoded ({exc})")
        if leaf.hex() != row["leaf_hash"]:
            return Verdict(False, count - 1, previous.hex(), event_id,
                           "its leaf hash does not match its fields (the event was changed)")
        link = chain_hash(previous, leaf)
        if link.hex() != row["chain_hash"]:
            return Verdict(False, count - 1, previous.hex(), event_id,
                           "its chain hash does not follow from the event before it "
                           "(an event was inserted, removed or reordered)")
        previous = link
    head = previous.hex()
    if expected_length is not None and expected_length != count:
        return Verdict(False, count, head, None,
                       f"the chain head records {expected_length} events but the ledger holds "
                       f"{count}")
    if expected_head is not None and expected_head != head:
        return Verdict(False, count, head, None,
                       "the chain head's hash differs from the last event's chain hash")
    return Verdict(True, count, head)

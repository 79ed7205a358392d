"""Hash chains for append-only logs: canonical record encoding, leaf and chain hashes, checking.

Shared by the consent ledger (:mod:`portal.consent.chain`) and the audit log
(:mod:`portal.audit`). Pure functions with no database, so that a receipt holder, an auditor
or ``portal ledger verify`` / ``portal audit verify`` compute exactly the same bytes.

- leaf hash  = SHA-256(0x00 || canonical JSON of the record's fields)  (RFC 6962, section 2.1)
- chain hash = SHA-256(0x01 || previous chain hash || leaf hash)
- the first record's previous chain hash is 32 zero bytes.

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

GENESIS = bytes(32)
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"


@dataclass(frozen=True)
class LeafFormat:
    """What one log's leaf hash covers, and how its checks name things."""

    #: The hashed fields, in no particular order (keys are sorted when encoded).
    fields: tuple[str, ...]
    #: Hashed with every record (as ``v``) so that a future format can coexist.
    version: int = 1
    #: Words for messages: "BROKEN at event 3", "the ledger holds …".
    noun: str = "event"
    plural: str = "events"
    log: str = "ledger"


def format_time(value: dt.datetime) -> str:
    """Return ``value`` as the RFC 3339 UTC string the leaf hash covers."""
    if value.tzinfo is None:
        raise ValueError("naive datetime in a hashed record")
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_fields(fields: Mapping[str, Any], form: LeafFormat) -> dict[str, Any]:
    """Return exactly the hashed fields of a record, with times written as strings."""
    missing = [name for name in form.fields if name not in fields]
    if missing:
        raise ValueError(f"{form.noun} lacks {', '.join(missing)}")
    canonical: dict[str, Any] = {"v": form.version}
    for name in form.fields:
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


def canonical_json(fields: Mapping[str, Any], form: LeafFormat) -> bytes:
    """Encode a record's hashed fields as canonical JSON bytes."""
    return json.dumps(canonical_fields(fields, form), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def leaf_hash(fields: Mapping[str, Any], form: LeafFormat) -> bytes:
    """Return the RFC 6962 leaf hash of a record."""
    return hashlib.sha256(LEAF_PREFIX + canonical_json(fields, form)).digest()


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
    broken_id: int | None = None
    problem: str = ""
    form: LeafFormat | None = None

    def describe(self) -> str:
        """Say the outcome in one line, for the command line and logs."""
        noun, plural = (self.form.noun, self.form.plural) if self.form else ("record", "records")
        if self.ok:
            return f"OK: {self.count} {plural}, chain head {self.head}"
        where = f"{noun} {self.broken_id}" if self.broken_id is not None else "head"
        return f"BROKEN at {where}: {self.problem}"


def _check_link(row: Mapping[str, Any], position: int, previous: bytes,
                form: LeafFormat) -> tuple[bytes, str]:
    """Return the chain hash after ``row`` and what is wrong with it ("" when nothing)."""
    noun, plural, record_id = form.noun, form.plural, row["id"]
    if record_id != position:
        return previous, (f"expected {noun} {position} here, found {noun} {record_id}: "
                          + (f"an {noun} is missing (deleted)" if record_id > position
                             else f"{plural} are out of order"))
    try:
        leaf = leaf_hash(row, form)
    except (TypeError, ValueError) as exc:
        return previous, f"its fields cannot be encoded ({exc})"
    if leaf.hex() != row["leaf_hash"]:
        return previous, f"its leaf hash does not match its fields (the {noun} was changed)"
    link = chain_hash(previous, leaf)
    if link.hex() != row["chain_hash"]:
        return previous, (f"its chain hash does not follow from the {noun} before it "
                          f"(an {noun} was inserted, removed or reordered)")
    return link, ""


def verify_chain(rows: Iterable[Mapping[str, Any]], form: LeafFormat, *,
                 expected_length: int | None = None,
                 expected_head: str | None = None) -> Verdict:
    """Check a chain given as rows in id order, each with the leaf fields and both hashes.

    Ids must run 1, 2, 3 … without gaps: a gap is a deleted record, a repeat a reordering.
    ``expected_length`` and ``expected_head`` come from the chain-head row; they reveal a
    record removed or forged at the end, which leaves no broken link behind it.
    """
    previous = GENESIS
    count = 0
    for row in rows:
        count += 1
        link, problem = _check_link(row, count, previous, form)
        if problem:
            return Verdict(False, count - 1, previous.hex(), row["id"], problem, form)
        previous = link
    head = previous.hex()
    if expected_length is not None and expected_length != count:
        return Verdict(False, count, head, None,
                       f"the chain head records {expected_length} {form.plural} but the {form.log} "
                       f"holds {count}", form)
    if expected_head is not None and expected_head != head:
        return Verdict(False, count, head, None,
                       f"the chain head's hash differs from the last {form.noun}'s chain hash",
                       form)
    return Verdict(True, count, head, form=form)

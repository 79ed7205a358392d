"""The consent ledger's leaf format: which fields of an event its hash chain covers.

The chain itself (canonical JSON, RFC 6962 leaf and chain hashes, checking) is
:mod:`portal.hashchain`, shared with the audit log; these wrappers fix the ledger's format so
that receipts, ``portal ledger verify`` and offline checkers compute the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from portal import hashchain
from portal.hashchain import GENESIS, LeafFormat, Verdict, chain_hash, format_time

__all__ = ["GENESIS", "LEAF_FIELDS", "LEDGER", "Verdict", "canonical_fields", "canonical_json",
           "chain_hash", "format_time", "leaf_hash", "verify_chain"]

#: The fields of an event that its leaf hash covers.
LEAF_FIELDS = ("id", "receipt_id", "person_id", "category_key", "notice_version_id", "state",
               "occurred_at", "actor_id", "actor_role", "method")
LEDGER = LeafFormat(fields=LEAF_FIELDS, version=1, noun="event", plural="events", log="ledger")


def canonical_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Return exactly the hashed fields of an event, with times written as strings."""
    return hashchain.canonical_fields(fields, LEDGER)


def canonical_json(fields: Mapping[str, Any]) -> bytes:
    """Encode an event's hashed fields as canonical JSON bytes."""
    return hashchain.canonical_json(fields, LEDGER)


def leaf_hash(fields: Mapping[str, Any]) -> bytes:
    """Return the RFC 6962 leaf hash of a ledger event."""
    return hashchain.leaf_hash(fields, LEDGER)


def verify_chain(rows: Iterable[Mapping[str, Any]], *, expected_length: int | None = None,
                 expected_head: str | None = None) -> Verdict:
    """Check the ledger given as rows in id order (see :func:`portal.hashchain.verify_chain`)."""
    return hashchain.verify_chain(rows, LEDGER, expected_length=expected_length,
                                  expected_head=expected_head)

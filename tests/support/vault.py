"""Storing collected data straight through the vault (what the collector API calls after
parsing), in the caller's application context."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from portal.auth.models import Person
from portal.catalog.models import Category
from portal.db import db
from portal.vault.checks import parse_timestamp
from portal.vault.ingest import IngestResult, find_category, ingest_batch
from portal.vault.models import CollectedBatch, DataKey


def ingest(person: Person, key: str, events: list[dict[str, Any]], *, dss_level: int = 2,
           **options: Any) -> IngestResult:
    """Ingest ``events`` with a window spanning exactly their times."""
    moments = [parse_timestamp(event["t"]) for event in events]
    assert all(moments)
    return ingest_batch(person, find_category(key), events=events,
                        collected_from=min(m for m in moments if m),
                        collected_to=max(m for m in moments if m), dss_level=dss_level,
                        **options)


def ingest_body(person: Person, body: dict[str, Any], **options: Any) -> IngestResult:
    """Ingest an API-shaped batch body (as the demo generator makes them)."""
    start, end = parse_timestamp(body["collected_from"]), parse_timestamp(body["collected_to"])
    assert start and end
    return ingest_batch(person, find_category(body["category"]), events=body["events"],
                        collected_from=start, collected_to=end, dss_level=body["dss_level"],
                        **options)


def stored() -> tuple[int, int]:
    """Count the stored batches and data keys."""
    batches = db.scalar(select(func.count()).select_from(CollectedBatch)) or 0
    keys = db.scalar(select(func.count()).select_from(DataKey)) or 0
    return batches, keys


def category(key: str) -> Category:
    """Return a category row of the catalog in force."""
    return find_category(key)

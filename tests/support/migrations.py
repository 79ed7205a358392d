"""Checks shared by the tests of each migration: the schema it builds matches the models."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask

from portal.db import get_engine
from portal.models import MODELS


def schema_differences(app: Flask, tables: Collection[str]) -> list[Any]:
    """Return autogenerate's differences between the database and the models on ``tables``."""
    with get_engine(app).connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        found = compare_metadata(context, MODELS[0].metadata)
    return [difference for difference in found
            if any(table in repr(difference) for table in tables)]

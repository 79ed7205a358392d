"""The migrations build exactly the schema the models describe, and can be undone."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import inspect

from portal.cli import downgrade_database, upgrade_database
from portal.db import get_engine
from tests.support.migrations import schema_differences


def test_the_migrated_schema_is_the_models_schema(app: Flask) -> None:
    # Every table: a model changed without a migration (or the reverse) shows here.
    assert schema_differences(app, [""]) == []


def test_every_migration_can_be_undone_and_redone(app: Flask) -> None:
    tables = set(inspect(get_engine(app)).get_table_names())
    downgrade_database(app, "base")
    assert set(inspect(get_engine(app)).get_table_names()) <= {"alembic_version"}
    upgrade_database(app)
    assert set(inspect(get_engine(app)).get_table_names()) == tables
    assert schema_differences(app, [""]) == []

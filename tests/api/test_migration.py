"""Migration 0006 creates exactly the acknowledgements model, and goes down and up cleanly."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import inspect

from portal.cli import downgrade_database, upgrade_database
from portal.db import get_engine
from tests.support.migrations import schema_differences

TABLE = "collection_acknowledgement"


def test_the_migrated_schema_matches_the_model(app: Flask) -> None:
    assert schema_differences(app, [TABLE]) == []


def test_the_migration_goes_down_and_up_again(app: Flask) -> None:
    engine = get_engine(app)
    downgrade_database(app, "0005")
    assert TABLE not in inspect(engine).get_table_names()
    upgrade_database(app, "head")
    assert TABLE in inspect(engine).get_table_names()
    assert schema_differences(app, [TABLE]) == []

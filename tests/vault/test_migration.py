"""Migration 0005 creates exactly the vault's models, and goes down and up again cleanly."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import inspect

from portal.cli import downgrade_database, upgrade_database
from portal.db import get_engine
from tests.support.migrations import schema_differences

VAULT_TABLES = {"data_key", "collected_batch"}


def test_the_migrated_schema_matches_the_models(app: Flask) -> None:
    assert schema_differences(app, VAULT_TABLES) == []


def test_the_migration_goes_down_and_up_again(app: Flask) -> None:
    engine = get_engine(app)
    downgrade_database(app, "0004")
    assert VAULT_TABLES.isdisjoint(inspect(engine).get_table_names())
    upgrade_database(app, "head")
    assert set(inspect(engine).get_table_names()) >= VAULT_TABLES
    assert schema_differences(app, VAULT_TABLES) == []

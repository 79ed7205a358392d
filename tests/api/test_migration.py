"""Migration 0006 creates exactly the acknowledgements model, and goes down and up cleanly."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask
from sqlalchemy import inspect

from portal.cli import alembic_config, upgrade_database
from portal.db import get_engine
from portal.models import MODELS

TABLE = "collection_acknowledgement"


def _differences(app: Flask) -> list[Any]:
    with get_engine(app).connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        found = compare_metadata(context, MODELS[0].metadata)
    return [difference for difference in found if TABLE in repr(difference)]


def test_the_migrated_schema_matches_the_model(app: Flask) -> None:
    assert _differences(app) == []


def test_the_migration_goes_down_and_up_again(app: Flask) -> None:
    engine = get_engine(app)
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0005")
    assert TABLE not in inspect(engine).get_table_names()
    upgrade_database(app, "head")
    assert TABLE in inspect(engine).get_table_names()
    assert _differences(app) == []

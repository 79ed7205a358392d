"""`make demo` on a demo database that an earlier version of the portal made."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from portal import create_app
from portal.catalog.models import CategoryNotice
from portal.cli import ROOT
from portal.consent.models import ConsentState, ConsentStatus
from portal.db import commit, db, get_engine
from tests.support.catalog import Raw, category, in_app, shipped_raw, versions, write_catalog
from tests.support.config import portal_settings
from tests.support.factories import add_person, grant


@pytest.fixture
def settings(database_url: str) -> dict[str, Any]:
    """Demo mode, as `make demo` runs every command (PORTAL_DEMO=1)."""
    return {"DATABASE_URL": database_url, "DEMO": True}


def make_demo_catalog_load() -> list[str]:
    """Return the arguments of the `portal catalog load` step of the Makefile's demo target."""
    recipe = (ROOT / "Makefile").read_text(encoding="utf-8").split("\ndemo:", 1)[1]
    [line] = [line for line in recipe.splitlines() if "portal catalog load" in line]
    return shlex.split(line.split("/portal ", 1)[1])


def before_french(raw: Raw) -> Raw:
    """Return the catalog as it shipped before French: no French text anywhere."""
    for item in raw["categories"]:
        del item["text"]["fr"]
    for level in raw["sensitivity_levels"].values():
        del level["fr"]
    for purpose in raw["training_purposes"].values():
        del purpose["fr"]
    del raw["controller"]["supervisory_authority"]["fr"]
    return raw


def consent_state(person_id: int, key: str) -> ConsentState:
    state = db.scalar(select(ConsentStatus.state).where(ConsentStatus.person_id == person_id,
                                                        ConsentStatus.category_key == key))
    assert state is not None
    return state


def test_an_old_demo_database_gets_the_new_catalog_as_a_new_version(
        app: Flask, tmp_path: Path) -> None:
    runner = app.test_cli_runner()
    # The demo as an earlier version made it: no French yet, and clicks then kept 60 days.
    old = before_french(shipped_raw())
    category(old, "clicks")["retention_days"] = 60
    made = runner.invoke(args=["catalog", "load", str(write_catalog(tmp_path, old)),
                               "--by", "make demo"])
    assert made.exit_code == 0, made.output
    with in_app(app):
        ada = add_person("Ada")
        grant(ada, "keystrokes")
        grant(ada, "clicks")
        commit()
        ada_id = ada.id

    upgraded = runner.invoke(args=make_demo_catalog_load())
    assert upgraded.exception is None, upgraded.output  # no traceback, no stop
    assert "catalog.yaml differs from notice version 1: published it as notice version 2." \
        in upgraded.output
    assert "texts in added languages only (not material): pointer, keystrokes," \
        in upgraded.output
    assert "clicks: changed, material; 1 consents now wait for the person's confirmation" \
        in upgraded.output
    assert len(versions(app)) == 2
    second = versions(app)[1]
    assert second.published_by_name == "make demo"
    assert second.dpo_sign_off == "Dana Novak (demo)"
    assert set(second.change_summary) == {"en", "de", "fr"}
    assert "French" in second.change_summary["en"]
    assert "Französisch" in second.change_summary["de"]
    with in_app(app):
        sections = {section.category_key: section for section in db.scalars(
            select(CategoryNotice).where(CategoryNotice.notice_version_id == second.id))}
        assert sections["keystrokes"].content["text"]["fr"]["title"]
        assert not sections["keystrokes"].material  # nobody was told anything different
        assert sections["clicks"].material
        assert consent_state(ada_id, "keystrokes") is ConsentState.GIVEN
        assert consent_state(ada_id, "clicks") is ConsentState.EXPIRED

    again = runner.invoke(args=make_demo_catalog_load())
    assert again.exit_code == 0, again.output
    assert "matches notice version 2; nothing to do" in again.output
    assert len(versions(app)) == 2


def test_the_demo_catalog_is_published_as_version_one_on_a_new_database(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=make_demo_catalog_load())
    assert result.exit_code == 0, result.output
    assert "Published notice version 1 with 7 categories" in result.output
    assert len(versions(app)) == 1


@pytest.mark.usefixtures("app")  # for its clean environment and instance folder
def test_publishing_changes_unasked_is_for_the_demo_only(database_url: str,
                                                         tmp_path: Path) -> None:
    # The same database outside demo mode: real people's notices.
    real = create_app(portal_settings(database_url, "http://127.0.0.1:9", "http://localhost"))
    runner = real.test_cli_runner()
    old = runner.invoke(args=["catalog", "load", str(write_catalog(tmp_path, before_french(
        shipped_raw())))])
    assert old.exit_code == 0, old.output
    refused = runner.invoke(args=["catalog", "load", "--publish-changes"])
    assert refused.exit_code == 2
    assert "--publish-changes is for demo mode only" in refused.output
    assert "Nothing was changed" in refused.output
    assert len(versions(real)) == 1
    get_engine(real).dispose()

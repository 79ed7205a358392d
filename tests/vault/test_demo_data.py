"""Demo data: plausible, reproducible, valid against the shipped catalog, and ingestible."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from typing import Any

import jsonschema
import pytest

from portal.catalog.document import SHIPPED_CATALOG, read_catalog_file
from portal.db import commit
from portal.vault import demo_data
from portal.vault.checks import FORMAT_CHECKER, parse_timestamp
from portal.vault.reading import read_own_batches
from tests.support.factories import create_person, grant
from tests.support.vault import ingest_body

CATALOG = {category.key: category for category in read_catalog_file(SHIPPED_CATALOG).categories}
SCHEMAS = {key: category.event_schema for key, category in CATALOG.items()}
END = dt.date(2026, 3, 7)  # a Saturday: the last five working days are 2 to 6 March


def test_every_category_of_the_catalog_has_a_generator() -> None:
    assert set(demo_data.PLANS) == set(SCHEMAS)


@pytest.mark.parametrize("key", sorted(SCHEMAS))
@pytest.mark.parametrize("seed", [1, "alex", "dana"])
def test_batches_are_valid_api_bodies_with_events_inside_their_window(key: str,
                                                                      seed: int | str) -> None:
    validator = jsonschema.Draft202012Validator(SCHEMAS[key], format_checker=FORMAT_CHECKER)
    batches = demo_data.generate_batches(key, person_seed=seed, days=5, batches_per_day=3,
                                         end=END)
    assert len(batches) == (1 if key == "performance" else 15)
    for batch in batches:
        assert set(batch) == {"category", "collected_from", "collected_to", "dss_level",
                              "events"}
        assert batch["category"] == key and batch["dss_level"] in (1, 2, 3, 4)
        start, end = parse_timestamp(batch["collected_from"]), parse_timestamp(
            batch["collected_to"])
        assert start and end and start <= end
        assert start.weekday() < 5 and dt.date(2026, 3, 2) <= start.date() <= dt.date(2026, 3, 6)
        assert batch["events"]
        for event in batch["events"]:
            assert not list(validator.iter_errors(event)), event
            moment = parse_timestamp(event["t"])
            assert moment and start <= moment <= end
        json.dumps(batch, allow_nan=False)


def test_the_same_seed_gives_the_same_batches_and_another_seed_others() -> None:
    def make(seed: str) -> list[dict[str, Any]]:
        return demo_data.generate_batches("conversations", person_seed=seed, days=2,
                                          batches_per_day=2, end=END)

    assert make("alex") == make("alex")
    assert make("alex") != make("bea")


def test_the_content_is_plausible() -> None:
    pointer = demo_data.generate_batches("pointer", person_seed="alex", days=1,
                                         batches_per_day=1, end=END)[0]["events"]
    steps = [abs(a["x"] - b["x"]) + abs(a["y"] - b["y"])
             for a, b in itertools.pairwise(pointer)]
    # Smooth paths: mostly small steps between samples, not teleporting points.
    assert len(pointer) > 20 and sorted(steps)[len(steps) // 2] < 80

    chats = [event for batch in demo_data.generate_batches(
        "conversations", person_seed="alex", days=3, batches_per_day=2, end=END)
        for event in batch["events"]]
    persona = demo_data.make_persona("alex")
    assert {e["author"] for e in chats} - {"self"} <= set(persona.colleagues)
    assert all(re.fullmatch(r"p-[0-9a-f]{12}", p) for e in chats for p in e["participants"])
    assert len({e["message_id"] for e in chats}) == len(chats)

    ratings = demo_data.generate_batches("sensitivity_ratings", person_seed="alex", days=3,
                                         batches_per_day=2, end=END)
    levels = {d.document_id: d.dss_level for d in persona.documents}
    for batch in ratings:
        assert batch["dss_level"] == max(e["dss_level"] for e in batch["events"])
        assert all(levels[e["document_id"]] == e["dss_level"] for e in batch["events"])

    [review] = demo_data.generate_batches("performance", person_seed="alex", days=5,
                                          batches_per_day=3, end=END)[0]["events"]
    assert review["review_period"] == "2025-H2" and review["reviewer_id"] == persona.manager

    transcripts = demo_data.generate_batches("ai_transcripts", person_seed="alex", days=3,
                                             batches_per_day=2, end=END)
    conversations: dict[str, list[str]] = {}
    for event in (e for batch in transcripts for e in batch["events"]):
        conversations.setdefault(event["conversation_id"], []).append(event["prompt"])
    assert any(len(prompts) > 1 for prompts in conversations.values())


@pytest.mark.usefixtures("ctx")
def test_generated_batches_go_through_the_ingestion_path() -> None:
    alex = create_person("sub-alex", email=False)
    end = dt.datetime.now(dt.UTC).date()
    for key in SCHEMAS:
        if CATALOG[key].legal_basis == "consent":
            grant(alex, key)
        for body in demo_data.generate_batches(key, person_seed="alex", days=2,
                                               batches_per_day=2, end=end):
            assert ingest_body(alex, body).created
    commit()
    keys = {batch.category_key for batch in read_own_batches(alex)}
    assert keys == set(SCHEMAS)


def test_colleagues_can_be_the_other_demo_people() -> None:
    known = ("p-00000000000a", "p-00000000000b", "p-00000000000c")
    chats = [event for batch in demo_data.generate_batches(
        "conversations", person_seed="alex", days=3, batches_per_day=2, end=END,
        colleagues=known) for event in batch["events"]]
    assert {event["author"] for event in chats} - {"self"} <= set(known)
    assert {person for event in chats for person in event["participants"]} <= set(known)
    assert any(event["author"] != "self" for event in chats)

"""The fast event check never accepts what the JSON Schema standard refuses."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal.catalog.document import SHIPPED_CATALOG, read_catalog_file
from portal.vault import crypto, demo_data
from portal.vault.checks import FORMAT_CHECKER, _parse_times, parse_timestamp
from portal.vault.validation import compile_batch_schema, compile_schema

SCHEMAS = {category.key: category.event_schema
           for category in read_catalog_file(SHIPPED_CATALOG).categories}
FORMATS = {"date-time": lambda value: parse_timestamp(value) is not None}

_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-3, 40_000),
                       st.floats(allow_nan=False, allow_infinity=False),
                       st.text(max_size=12))
_json = st.recursive(_json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=6)
_times = st.one_of(
    st.datetimes(timezones=st.just(dt.UTC)).map(lambda moment: moment.isoformat()),
    st.sampled_from(["2026-03-02T09:14:07.250Z", "2026-03-02 09:14:07Z", "2026-02-30T00:00:00Z",
                     "2026-03-02T09:14:07", "2026-03-02T25:00:00+01:00",
                     "2026-03-02t09:14:07.123456789z"]))


def _values(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values for one property: mostly of its own shape, sometimes anything at all."""
    shaped: list[st.SearchStrategy[Any]] = [_json]
    if "enum" in schema:
        shaped.append(st.sampled_from(schema["enum"]))
    if "pattern" in schema:
        shaped.append(st.from_regex(schema["pattern"]))
    if schema.get("format") == "date-time":
        shaped.append(_times)
    if schema.get("type") == "integer":
        limits = (schema.get("minimum", -10), schema.get("maximum", 10))
        shaped.append(st.integers(limits[0] - 2, limits[1] + 2))
        shaped.append(st.integers(*limits).map(float))
    if schema.get("type") == "string":
        shaped.append(st.text(max_size=20))
        if schema.get("maxLength", 1000) <= 200:
            # Right at the limit and one past it, in characters (not bytes): "é" is one.
            # Longer limits are tested without Hypothesis, which dislikes huge examples.
            shaped.append(st.sampled_from(["x", "é"]).flatmap(lambda char: st.sampled_from([
                char * schema["maxLength"], char * (schema["maxLength"] + 1)])))
    if schema.get("type") == "array":
        items = _values(schema.get("items", {}))
        shaped.append(st.lists(items, max_size=4))
        if schema.get("uniqueItems"):
            shaped.append(items.map(lambda item: [item, item]))
        if "maxItems" in schema:
            limit = schema["maxItems"]
            shaped.append(st.lists(items, min_size=limit, max_size=limit + 1))
    return st.one_of(*shaped)


def _valid_events(key: str) -> list[dict[str, Any]]:
    batches = demo_data.generate_batches(key, person_seed="fast", days=3, batches_per_day=2,
                                         end=dt.date(2026, 3, 7))
    return [event for batch in batches for event in batch["events"]][:200]


def _mutation(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """One change to a valid event: a field replaced, removed, or one added."""
    names = sorted(schema["properties"])
    replace = st.sampled_from(names).flatmap(
        lambda name: st.tuples(st.just("replace"), st.just(name),
                               _values(schema["properties"][name])))
    remove = st.tuples(st.just("remove"), st.sampled_from(names), st.none())
    add = st.tuples(st.just("add"), st.text(max_size=6), _json)
    return st.one_of(replace, remove, add)


def _mutate(event: dict[str, Any], changes: list[tuple[str, str, Any]]) -> dict[str, Any]:
    event = dict(event)
    for kind, name, value in changes:
        if kind == "remove":
            event.pop(name, None)
        else:
            event[name] = value
    return event


def _events(key: str, schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Mostly near-valid events (where a lax check would show), sometimes anything."""
    near = st.builds(_mutate, st.sampled_from(_valid_events(key)),
                     st.lists(_mutation(schema), min_size=1, max_size=2))
    return st.one_of(near, near, near, _json)


@pytest.mark.parametrize("key", sorted(SCHEMAS))
def test_the_fast_check_is_never_laxer_than_jsonschema(key: str) -> None:
    schema = SCHEMAS[key]
    fast = compile_schema(schema, FORMATS)
    assert fast is not None, "every shipped schema compiles"
    full = jsonschema.Draft202012Validator(schema, format_checker=FORMAT_CHECKER)

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
    @given(_events(key, schema))
    def check(event: Any) -> None:
        if fast(event):
            assert full.is_valid(event), json.dumps(event, default=str)

    check()


@pytest.mark.parametrize(("key", "name"), sorted(
    (key, name) for key, schema in SCHEMAS.items()
    for name, field in schema["properties"].items() if "maxLength" in field or "maxItems" in field))
def test_the_fast_check_holds_every_length_limit(key: str, name: str) -> None:
    schema = SCHEMAS[key]
    fast = compile_schema(schema, FORMATS)
    assert fast is not None
    full = jsonschema.Draft202012Validator(schema, format_checker=FORMAT_CHECKER)
    field = schema["properties"][name]
    event = _valid_events(key)[0]
    if "maxItems" in field:
        limit = field["maxItems"]
        values = [[f"p-{n:012x}" for n in range(size)] for size in (limit, limit + 1)]
    else:
        limit = field["maxLength"]
        values = [char * size for char in "xé" for size in (limit, limit + 1)]
    for value in values:
        changed = {**event, name: value}
        if fast(changed):
            assert full.is_valid(changed)
        assert len(value) <= limit or not fast(changed)


@pytest.mark.parametrize("key", sorted(SCHEMAS))
def test_the_fast_check_accepts_ordinary_valid_events(key: str) -> None:
    fast = compile_schema(SCHEMAS[key], FORMATS)
    assert fast is not None
    assert all(fast(event) for event in _valid_events(key))


@pytest.mark.parametrize("schema", [
    {"type": "object", "patternProperties": {"^x": {}}},
    {"type": "object", "additionalProperties": {"type": "string"}},
    {"type": "object", "properties": {"a": {"oneOf": [{"type": "string"}]}}},
    {"type": "string", "format": "email"},
    {"type": "array", "prefixItems": [{"type": "string"}]},
    {"$ref": "#/$defs/x"},
])
def test_a_schema_with_anything_unknown_is_left_to_jsonschema(schema: dict[str, Any]) -> None:
    assert compile_schema(schema, FORMATS) is None


def test_json_equality_is_not_pythons() -> None:
    fast = compile_schema({"enum": [1, "a"], "type": ["integer", "string", "boolean"]}, FORMATS)
    assert fast is not None
    assert fast(1) and fast("a")
    assert not fast(True)


# --- whole batches -------------------------------------------------------------------------

@pytest.mark.parametrize("key", sorted(SCHEMAS))
def test_the_batch_check_is_never_laxer_than_jsonschema(key: str) -> None:
    schema = SCHEMAS[key]
    batch_check = compile_batch_schema(schema, FORMATS)
    assert batch_check is not None, "every shipped schema compiles"
    full = jsonschema.Draft202012Validator(schema, format_checker=FORMAT_CHECKER)

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(_events(key, schema), min_size=1, max_size=4),
           st.sampled_from(_valid_events(key)))
    def check(events: list[Any], valid: dict[str, Any]) -> None:
        batch = [valid, *events, valid]
        if batch_check(batch):
            assert all(full.is_valid(event) for event in batch), json.dumps(batch, default=str)

    check()


@pytest.mark.parametrize("key", sorted(SCHEMAS))
def test_a_format_left_to_the_caller_is_not_checked_twice(key: str) -> None:
    events = _valid_events(key)
    late = [*events[:-1], {**events[-1], "t": "2026-02-30T09:14:07Z"}]
    checked_here = compile_batch_schema(SCHEMAS[key], FORMATS)
    left_to_caller = compile_batch_schema(SCHEMAS[key], FORMATS,
                                          checked_by_caller={"t": "date-time"})
    assert checked_here is not None and left_to_caller is not None
    assert checked_here(events) and left_to_caller(events)
    assert not checked_here(late)
    assert left_to_caller(late)


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"when": {"type": "object", "properties": {
        "t": {"type": "string", "format": "date-time"}}}}},
    {"type": "array", "items": {"type": "string", "format": "date-time"}},
])
def test_formats_below_the_events_own_fields_are_checked_by_the_batch_check(
        schema: dict[str, Any]) -> None:
    batch_check = compile_batch_schema(schema, FORMATS)
    assert batch_check is not None
    good, bad = "2026-03-02T09:14:07Z", "2026-03-02 09:14:07Z"
    if schema["type"] == "object":
        assert batch_check([{"when": {"t": good}}])
        assert not batch_check([{"when": {"t": bad}}])
    else:
        assert batch_check([[good]])
        assert not batch_check([[good, bad]])


def test_values_that_are_not_json_go_to_jsonschema() -> None:
    fast = compile_schema({"type": "array"}, FORMATS)
    assert fast is not None
    assert fast([1, "a"])
    # jsonschema-rs would take a tuple for a list, or refuse a set with an error: the fast
    # check says no, and jsonschema decides.
    assert not fast({1, 2})


# --- times, one by one and all at once ------------------------------------------------------

@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.one_of(_times, st.sampled_from([
    "2026-03-02T09:14:07.250Z", "2026-03-02t09:14:07.250+01:00", "2026-02-30T09:14:07Z",
    "2026-03-02T09:14:07.1234567Z", "2026-03-02T09:14:07Z\n2026-03-02T09:14:08Z",
    "2026-03-02T09:14:07z", ""])), min_size=1, max_size=8))
def test_times_parse_alike_one_by_one_and_all_at_once(values: list[str]) -> None:
    assert _parse_times(values) == [parse_timestamp(value) for value in values]


# --- canonical JSON -------------------------------------------------------------------------

_json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
              st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=8)


def _json_module(events: Any) -> bytes:
    return json.dumps(events, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_json_values, min_size=1, max_size=4))
def test_the_canonical_form_holds_the_same_json_as_before(events: list[Any]) -> None:
    written = crypto.encode_events(events)
    assert json.loads(written) == events
    # Batches stored in the json module's form (before orjson) still match their retries.
    assert crypto.same_events(_json_module(events), written)
    if "." not in written.decode() and "e" not in written.decode().lower():
        assert written == _json_module(events)


def test_the_canonical_form_refuses_what_json_refuses() -> None:
    for events in ([{"t": float("nan")}], [{"t": float("inf")}], [{"t": object()}],
                   [{"t": dt.datetime.now(dt.UTC)}]):
        with pytest.raises((TypeError, ValueError)):
            crypto.encode_events(events)
    assert crypto.encode_events([{"n": None, "s": "null"}]) == b'[{"n":null,"s":"null"}]'
    assert crypto.same_events(b'[{"x":1e-05}]', b'[{"x":0.00001}]')
    assert not crypto.same_events(b'[{"x":1}]', b'[{"x":1.0}]')

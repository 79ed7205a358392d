"""A fast yes/no check of events against the catalog's JSON Schemas, before jsonschema's full one.

jsonschema (pure Python) validates some thousands of events per second; a collector sends a
thousand per batch, and ingestion must keep up with a plain COPY into the database. So the
events are checked first by jsonschema-rs, a validator of the same JSON Schema 2020-12 written
in Rust, a whole batch in one call (:func:`compile_batch_schema`). When it says no,
jsonschema goes through the events and names the fields at fault.

The fast check may be stricter than jsonschema, never laxer. The two implementations agree on
the standard, but not on everything around it (regular expressions are not Python's, Python
values are converted on the way in), so only schemas built from the keywords below, whose
agreement the tests check against jsonschema, get a fast check; any other schema is left to
jsonschema alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jsonschema_rs

Check = Callable[[Any], bool]

#: Keywords that only describe (annotations); they never make an instance invalid.
_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "title", "description", "examples",
                          "default", "deprecated", "readOnly", "writeOnly"})
_TYPES = frozenset({"string", "integer", "number", "object", "array", "boolean", "null"})
_LENGTHS = frozenset({"minLength", "maxLength", "minItems", "maxItems"})
_LIMITS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})


class Unsupported(Exception):
    """The schema uses a keyword or form that the fast check does not take."""


def compile_schema(schema: Mapping[str, Any],
                   formats: Mapping[str, Callable[[str], bool]]) -> Check | None:
    """Compile ``schema`` into a check, or return ``None`` if it uses anything unknown.

    ``formats`` checks each ``format`` the schema names (one missing here: no check), so
    that formats mean exactly what they mean to jsonschema's format checker.
    """
    try:
        _require_supported(schema, formats)
        validator = jsonschema_rs.Draft202012Validator(
            dict(schema), validate_formats=True, formats=dict(formats))
    except (Unsupported, jsonschema_rs.ValidationError, ValueError):
        return None

    def check(instance: Any) -> bool:
        try:
            return bool(validator.is_valid(instance))
        except ValueError:
            # Not a JSON value (a set, bytes, a subclass of int...): jsonschema decides.
            return False

    return check


def compile_batch_schema(event_schema: Mapping[str, Any],
                         formats: Mapping[str, Callable[[str], bool]], *,
                         checked_by_caller: Mapping[str, str] | None = None) -> Check | None:
    """Compile a check of a whole list of events against ``event_schema``, or return ``None``.

    Like :func:`compile_schema` of an array of such events, but faster where the catalog puts
    formats, on the event's own fields (``t``): jsonschema-rs checks the list without them,
    then each format test runs here on the Python strings themselves. From Rust, every test
    would be a call back into Python with a new copy of the string, which costs more than
    all the rest of the check.

    ``checked_by_caller`` names fields whose format the caller tests itself on every event
    (``{"t": "date-time"}``): where the schema asks for that format there, it is left out.
    """
    properties = event_schema.get("properties")
    if event_schema.get("type") != "object" or not isinstance(properties, Mapping):
        return compile_schema({"type": "array", "items": event_schema}, formats)
    tests = {name: subschema["format"] for name, subschema in properties.items()
             if isinstance(subschema, Mapping) and "format" in subschema}
    stripped = {**event_schema, "properties": {
        name: {keyword: value for keyword, value in subschema.items() if keyword != "format"}
        if name in tests else subschema for name, subschema in properties.items()}}
    if any(name not in formats for name in tests.values()) or _has_format(stripped):
        return compile_schema({"type": "array", "items": event_schema}, formats)
    shape = compile_schema({"type": "array", "items": stripped}, formats)
    if shape is None:
        return None
    left_to_caller = checked_by_caller or {}
    field_tests = [(name, formats[format_name]) for name, format_name in tests.items()
                   if left_to_caller.get(name) != format_name]

    def check(events: Any) -> bool:
        if not shape(events):
            return False
        # Every event is an object now. A format concerns strings only, as in jsonschema.
        return all(test(value) for name, test in field_tests for event in events
                   if isinstance(value := event.get(name), str))

    return check


def _has_format(schema: Any) -> bool:
    if isinstance(schema, Mapping):
        return "format" in schema or any(map(_has_format, schema.values()))
    if isinstance(schema, list):
        return any(map(_has_format, schema))
    return False


def _require_supported(schema: Any, formats: Mapping[str, Callable[[str], bool]]) -> None:
    if not isinstance(schema, Mapping):
        raise Unsupported("a schema must be an object here")
    for keyword, expected in schema.items():
        if keyword in _ANNOTATIONS or keyword in {"enum", "const", "pattern", "required"}:
            continue
        if keyword == "type":
            names = [expected] if isinstance(expected, str) else list(expected)
            if not set(names) <= _TYPES:
                raise Unsupported(f"type {expected!r}")
        elif keyword == "format":
            if expected not in formats:
                raise Unsupported(f"format {expected!r}")
        elif keyword in _LENGTHS:
            if type(expected) is not int:
                raise Unsupported(f"{keyword} {expected!r}")
        elif keyword in _LIMITS:
            if type(expected) not in (int, float):
                raise Unsupported(f"{keyword} {expected!r}")
        elif keyword == "uniqueItems":
            if not isinstance(expected, bool):
                raise Unsupported("uniqueItems must be true or false")
        elif keyword == "items":
            _require_supported(expected, formats)
        elif keyword == "properties":
            if not isinstance(expected, Mapping):
                raise Unsupported("properties must be an object")
            for subschema in expected.values():
                _require_supported(subschema, formats)
        elif keyword == "additionalProperties":
            if expected is not False or "patternProperties" in schema:
                raise Unsupported("additionalProperties other than false")
        else:
            raise Unsupported(keyword)

"""A fast yes/no check of events against the catalog's JSON Schemas, before jsonschema's full one.

jsonschema validates some thousands of events per second; a collector sends a thousand per
batch, and ingestion must keep up with a plain COPY into the database. The catalog's event
schemas use a small, fixed set of keywords, so they are compiled here into plain Python
checks. The compiled check may be stricter than the standard, never laxer: when it says no
(or when a schema uses a keyword it does not know), jsonschema decides and names the fields.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Check = Callable[[Any], bool]

#: Keywords that only describe (annotations); they never make an instance invalid.
_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "title", "description", "examples",
                          "default", "deprecated", "readOnly", "writeOnly"})
_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda value: isinstance(value, str),
    # Stricter than the standard (which accepts 1.0 as an integer); jsonschema decides then.
    "integer": lambda value: type(value) is int,
    "number": lambda value: type(value) in (int, float),
    "object": lambda value: isinstance(value, dict),
    "array": lambda value: isinstance(value, list),
    "boolean": lambda value: isinstance(value, bool),
    "null": lambda value: value is None,
}


class Unsupported(Exception):
    """The schema uses a keyword or form this compiler does not handle."""


def compile_schema(schema: Mapping[str, Any],
                   formats: Mapping[str, Callable[[str], bool]]) -> Check | None:
    """Compile ``schema`` into a check, or return ``None`` if it uses anything unknown."""
    try:
        return _compile(schema, formats)
    except Unsupported:
        return None


def _same(value: Any, allowed: Any) -> bool:
    # JSON equality without Python's 1 == True == 1.0: stricter, so never wrongly valid.
    return type(value) is type(allowed) and value == allowed


def _compile(schema: Any, formats: Mapping[str, Callable[[str], bool]]) -> Check:
    if not isinstance(schema, Mapping):
        raise Unsupported("a schema must be an object here")
    checks: list[Check] = []
    for keyword, expected in schema.items():
        if keyword in _ANNOTATIONS or keyword in {"properties", "required"}:
            continue
        checks.append(_keyword(keyword, expected, schema, formats))
    checks.extend(_object_checks(schema, formats))
    return _all_of(checks)


def _all_of(checks: list[Check]) -> Check:
    """Combine checks; the common small cases without a loop (this runs per field of per event)."""
    if not checks:
        return lambda value: True
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda value: first(value) and second(value)
    if len(checks) == 3:
        first, second, third = checks
        return lambda value: first(value) and second(value) and third(value)
    head, rest = _all_of(checks[:3]), _all_of(checks[3:])
    return lambda value: head(value) and rest(value)


def _keyword(keyword: str, expected: Any, schema: Mapping[str, Any],
             formats: Mapping[str, Callable[[str], bool]]) -> Check:
    """Return the check of one keyword (applied only to instances of the type it concerns)."""
    if keyword == "type":
        names = [expected] if isinstance(expected, str) else list(expected)
        if any(name not in _TYPES for name in names):
            raise Unsupported(f"type {expected!r}")
        tests = [_TYPES[name] for name in names]
        if len(tests) == 1:
            return tests[0]
        return lambda value: any(test(value) for test in tests)
    if keyword == "enum":
        allowed = list(expected)
        return lambda value: any(_same(value, option) for option in allowed)
    if keyword == "const":
        return lambda value: _same(value, expected)
    if keyword == "pattern":
        # JSON Schema patterns are unanchored searches, as jsonschema runs them.
        search = re.compile(expected).search
        return lambda value: not isinstance(value, str) or search(value) is not None
    if keyword == "format":
        if expected not in formats:
            raise Unsupported(f"format {expected!r}")
        test = formats[expected]
        return lambda value: not isinstance(value, str) or test(value)
    if keyword in {"minLength", "maxLength", "minItems", "maxItems"}:
        return _bound(keyword, int(expected))
    if keyword in {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}:
        return _number_bound(keyword, expected)
    if keyword == "uniqueItems":
        return _unique if expected else (lambda value: True)
    if keyword == "items":
        item = _compile(expected, formats)
        return lambda value: not isinstance(value, list) or all(item(entry) for entry in value)
    if keyword == "additionalProperties":
        if expected is not False or "patternProperties" in schema:
            raise Unsupported("additionalProperties other than false")
        known = frozenset(schema.get("properties", {}))
        return lambda value: not isinstance(value, dict) or known.issuperset(value)
    raise Unsupported(keyword)


def _bound(keyword: str, limit: int) -> Check:
    kind: type = str if keyword.endswith("Length") else list
    if keyword.startswith("min"):
        return lambda value: not isinstance(value, kind) or len(value) >= limit
    return lambda value: not isinstance(value, kind) or len(value) <= limit


def _number_bound(keyword: str, limit: Any) -> Check:
    if type(limit) not in (int, float):
        raise Unsupported(f"{keyword} {limit!r}")
    compare: Callable[[Any], bool] = {
        "minimum": lambda value: value >= limit,
        "maximum": lambda value: value <= limit,
        "exclusiveMinimum": lambda value: value > limit,
        "exclusiveMaximum": lambda value: value < limit,
    }[keyword]
    return lambda value: type(value) not in (int, float) or compare(value)


def _unique(value: Any) -> bool:
    if not isinstance(value, list):
        return True
    # Only lists of strings are judged here; anything else goes to jsonschema.
    return all(isinstance(entry, str) for entry in value) and len(set(value)) == len(value)


def _object_checks(schema: Mapping[str, Any],
                   formats: Mapping[str, Callable[[str], bool]]) -> list[Check]:
    checks: list[Check] = []
    required = frozenset(schema.get("required", ()))
    if required:
        checks.append(lambda value: not isinstance(value, dict) or required <= value.keys())
    properties = schema.get("properties", {})
    if not isinstance(properties, Mapping):
        raise Unsupported("properties must be an object")
    compiled = {name: _compile(sub, formats) for name, sub in properties.items()}
    if compiled:
        def check_properties(value: Any) -> bool:
            if not isinstance(value, dict):
                return True
            for name, check in compiled.items():
                if name in value and not check(value[name]):
                    return False
            return True

        checks.append(check_properties)
    return checks


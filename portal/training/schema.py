"""The columns of a category's dataset, from its event schema in the catalog.

One column per property of the category's ``event_schema`` (JSON Schema 2020-12), in the
schema's order, after ``person`` (the person's pseudonym in this snapshot). Types follow the
JSON Schema: a ``date-time`` string becomes a UTC timestamp, an integer a 64-bit integer, an
array of strings a list of strings. The Parquet files (pyarrow) and the Croissant description
are both made from :func:`columns`, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

#: The column naming whose records a row is: the person's pseudonym in this snapshot.
PERSON_COLUMN = "person"


@dataclass(frozen=True)
class Column:
    """One column: its name, its Arrow type, its Croissant (schema.org) data type."""

    name: str
    arrow_type: pa.DataType
    croissant_type: str
    repeated: bool = False
    description: str = ""


_SCALARS: dict[str, tuple[pa.DataType, str]] = {
    "integer": (pa.int64(), "sc:Integer"),
    "number": (pa.float64(), "sc:Float"),
    "boolean": (pa.bool_(), "sc:Boolean"),
    "string": (pa.string(), "sc:Text"),
}
_TIMESTAMP = (pa.timestamp("ms", tz="UTC"), "sc:DateTime")


class UnsupportedField(ValueError):
    """A property of an event schema has no column type (the catalog should not allow it)."""


def _scalar(name: str, spec: Mapping[str, Any]) -> tuple[pa.DataType, str]:
    kind = spec.get("type")
    if kind == "string" and spec.get("format") == "date-time":
        return _TIMESTAMP
    if isinstance(kind, str) and kind in _SCALARS:
        return _SCALARS[kind]
    raise UnsupportedField(f"field {name!r}: type {kind!r} has no column type")


def columns(event_schema: Mapping[str, Any],
            descriptions: Mapping[str, str] | None = None) -> list[Column]:
    """Return the dataset's columns for a category's event schema (``person`` first)."""
    found = [Column(PERSON_COLUMN, pa.string(), "sc:Text",
                    description="The person's pseudonym in this snapshot (keyed per snapshot).")]
    described = descriptions or {}
    for name, spec in (event_schema.get("properties") or {}).items():
        if spec.get("type") == "array":
            arrow_type, croissant_type = _scalar(name, spec.get("items") or {})
            found.append(Column(name, pa.list_(arrow_type), croissant_type, repeated=True,
                                description=described.get(name, "")))
        else:
            arrow_type, croissant_type = _scalar(name, spec)
            found.append(Column(name, arrow_type, croissant_type,
                                description=described.get(name, "")))
    return found


def arrow_schema(event_schema: Mapping[str, Any]) -> pa.Schema:
    """Return the Arrow schema of a category's Parquet files."""
    return pa.schema([pa.field(column.name, column.arrow_type, nullable=column.name not in
                               {PERSON_COLUMN, *event_schema.get("required", [])})
                      for column in columns(event_schema)])

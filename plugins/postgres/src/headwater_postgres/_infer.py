"""
Column types for a table that ``write`` creates without a declared schema (pure logic).

The types come from the first batch, the records the table's columns come from anyway
(see `_write`): dict records by the Python types of their values, Arrow input by its
schema. One type per column: values of two kinds in one column are an error naming the
column and the records, not a guess (a text column would silently turn numbers into
strings). NULLs take any type; a column that is NULL in every record has none to give.

=====================================  ==================================================
Python value                           PostgreSQL type
=====================================  ==================================================
``bool``                               ``boolean``
``int``                                ``bigint`` (``numeric`` when one is beyond 64 bits)
``float``                              ``double precision`` (with ints: when each int is
                                       exact as a double, |n| <= 2**53)
``decimal.Decimal``                    ``numeric`` (with ints too)
``str``                                ``text``
``bytes`` / ``bytearray``              ``bytea``
``datetime`` with a time zone          ``timestamptz``
``datetime`` without one               ``timestamp``
``date``                               ``date``
``time``                               ``time`` (``timetz`` with a time zone)
``timedelta``                          ``interval``
``uuid.UUID``                          ``uuid``
``dict`` / ``list``                    ``jsonb``
=====================================  ==================================================
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, Final

from headwater import ConfigError

#: The largest integer every double holds exactly.
_EXACT_IN_DOUBLE: Final = 2**53
_INT64: Final = (-(2**63), 2**63 - 1)

_HINT: Final = "pass schema={column: type} to write() to declare the table's columns"


def _kind(value: Any) -> str:
    """The inference kind of one non-NULL value (exact types: a bool is not an int)."""
    cls = type(value)
    if cls is bool:
        return "boolean"
    if cls is int:
        return "int"
    if cls is float:
        return "float"
    if cls is Decimal:
        return "numeric"
    if cls is str:
        return "text"
    if cls in (bytes, bytearray, memoryview):
        return "bytea"
    if cls is dt.datetime:
        return "timestamp" if value.utcoffset() is None else "timestamptz"
    if cls is dt.date:
        return "date"
    if cls is dt.time:
        return "time" if value.utcoffset() is None else "timetz"
    if cls is dt.timedelta:
        return "interval"
    if cls is uuid.UUID:
        return "uuid"
    if cls in (dict, list):
        return "jsonb"
    # Subclasses (an IntEnum, a str subclass, pandas' Timestamp): the plain type's rule,
    # by isinstance, after the exact checks.
    if isinstance(value, dt.datetime):
        return "timestamp" if value.utcoffset() is None else "timestamptz"
    bases: tuple[tuple[type, str], ...] = (
        (bool, "boolean"),
        (int, "int"),
        (float, "float"),
        (Decimal, "numeric"),
        (str, "text"),
        (dt.date, "date"),
        (dict, "jsonb"),
        (list, "jsonb"),
    )
    for base, kind in bases:
        if isinstance(value, base):
            return kind
    raise TypeError(type(value).__name__)


_NAMES: Final = {
    "boolean": "bool",
    "int": "int",
    "float": "float",
    "numeric": "Decimal",
    "text": "str",
    "bytea": "bytes",
    "timestamp": "datetime without a time zone",
    "timestamptz": "datetime with a time zone",
    "date": "date",
    "time": "time without a time zone",
    "timetz": "time with a time zone",
    "interval": "timedelta",
    "uuid": "UUID",
    "jsonb": "dict or list",
}


def infer_dict_columns(records: Iterable[dict[str, Any]]) -> dict[str, str]:
    """
    PostgreSQL column types for dict records, in the order their keys first appear.
    Raises ConfigError naming the column for mixed kinds, an unknown type, or a column
    with no value but NULL.
    """
    # column -> kind -> (first record number holding it, 1-based)
    kinds: dict[str, dict[str, int]] = {}
    ints: dict[str, tuple[int, int]] = {}  # column -> (min, max) of its ints
    for n, record in enumerate(records, 1):
        for column, value in record.items():
            seen = kinds.setdefault(column, {})
            if value is None:
                continue
            try:
                kind = _kind(value)
            except TypeError:
                raise ConfigError(
                    f"column {column!r}: no PostgreSQL type is inferred for "
                    f"{type(value).__name__} values (record {n})",
                    field="schema",
                    hint=_HINT,
                ) from None
            seen.setdefault(kind, n)
            if kind == "int":
                low, high = ints.get(column, (value, value))
                ints[column] = (min(low, value), max(high, value))
    return {column: _column_type(column, seen, ints.get(column)) for column, seen in kinds.items()}


def _column_type(column: str, seen: dict[str, int], int_range: tuple[int, int] | None) -> str:
    if not seen:
        raise ConfigError(
            f"column {column!r} is NULL in every record of the first batch: its type "
            "cannot be inferred",
            field="schema",
            hint=_HINT,
        )
    found = set(seen)
    wide = int_range is not None and (int_range[0] < _INT64[0] or int_range[1] > _INT64[1])
    if found == {"int"}:
        return "numeric" if wide else "bigint"
    if found == {"int", "numeric"}:
        return "numeric"
    if (
        found == {"int", "float"}
        and int_range is not None
        and max(-int_range[0], int_range[1]) <= _EXACT_IN_DOUBLE
    ):
        return "double precision"
    if len(found) == 1:
        kind = found.pop()
        return "double precision" if kind == "float" else kind
    first, second = sorted(seen.items(), key=lambda item: item[1])[:2]
    raise ConfigError(
        f"column {column!r} holds values of different types: {_NAMES[first[0]]} "
        f"(record {first[1]}) and {_NAMES[second[0]]} (record {second[1]}); a table "
        "created from records needs one type per column",
        field="schema",
        hint=f"make the values agree, or {_HINT}",
    )


def infer_arrow_columns(schema: Any) -> dict[str, str]:
    """PostgreSQL column types for an Arrow schema."""
    return {field.name: _arrow_type(field.name, field.type) for field in schema}


def _arrow_type(column: str, kind: Any) -> str:
    import pyarrow as pa

    t = pa.types
    if isinstance(kind, pa.BaseExtensionType):
        name = getattr(kind, "extension_name", "")
        if name == "arrow.json":
            return "jsonb"
        if name == "arrow.uuid":
            return "uuid"
        kind = kind.storage_type
    if t.is_dictionary(kind):
        kind = kind.value_type
    simple: list[tuple[Any, str]] = [
        (t.is_boolean, "boolean"),
        (t.is_int8, "smallint"),
        (t.is_int16, "smallint"),
        (t.is_uint8, "smallint"),
        (t.is_int32, "integer"),
        (t.is_uint16, "integer"),
        (t.is_int64, "bigint"),
        (t.is_uint32, "bigint"),
        (t.is_uint64, "numeric"),
        (t.is_float16, "real"),
        (t.is_float32, "real"),
        (t.is_float64, "double precision"),
        (t.is_string, "text"),
        (t.is_large_string, "text"),
        (getattr(t, "is_string_view", lambda _: False), "text"),
        (t.is_binary, "bytea"),
        (t.is_large_binary, "bytea"),
        (t.is_fixed_size_binary, "bytea"),
        (t.is_date, "date"),
        (t.is_time, "time"),
        (t.is_duration, "interval"),
        (t.is_interval, "interval"),
        (t.is_struct, "jsonb"),
        (t.is_map, "jsonb"),
    ]
    for test, pg in simple:
        if test(kind):
            return pg
    if t.is_decimal(kind):
        return f"numeric({kind.precision},{kind.scale})" if kind.scale >= 0 else "numeric"
    if t.is_timestamp(kind):
        return "timestamp" if kind.tz is None else "timestamptz"
    if t.is_list(kind) or t.is_large_list(kind) or t.is_fixed_size_list(kind):
        try:
            inner = _arrow_type(column, kind.value_type)
        except ConfigError:
            return "jsonb"
        # A list of scalars is an array; of arrays or documents, JSON (PostgreSQL arrays
        # are rectangular, Arrow's nested lists need not be).
        return "jsonb" if inner == "jsonb" or inner.endswith("[]") else inner + "[]"
    if t.is_null(kind):
        raise ConfigError(
            f"column {column!r} is of Arrow type null (no value but NULL): its type cannot "
            "be inferred",
            field="schema",
            hint=_HINT,
        )
    raise ConfigError(
        f"column {column!r}: no PostgreSQL type is inferred for Arrow type {kind}",
        field="schema",
        hint=_HINT,
    )

"""
JSON Lines made by the server: ``read(format="jsonl")`` (pure logic; imports psycopg).

For a JSON Lines output the fastest client is one that does nothing per value: the
server builds each record's JSON text in the ``SELECT`` and streams it with ``COPY``, and
the client cuts the stream into batches (`headwater.formats.EncodedLines`) that a JSON
Lines sink writes as they are. The text follows the dict read's JSON representation
(README, "Value mapping"), so the file is the same, value for value, as the one written
from dicts:

=============================  =====================================================
column type                    JSON (as the dict read writes it)
=============================  =====================================================
integers, oid, boolean         number / true / false
real, double precision         number; NaN, Infinity, -Infinity as Python's json writes
                               them (``extra_float_digits`` 1: the shortest exact form)
numeric                        string with every digit ("1.50")
text, varchar, char(n), name   string
json                           the document as written (a reader that keeps a
                               field's JSON text gets it back); the document null
                               (JSON Lines has one null for it and NULL), one with
                               a line break or spaces around it fail the read
jsonb, jsonb[]                 the document(s); one holding the
                               document null fails the read
bytea                          base64 string
date, time, timestamp(tz)      ISO 8601 string (timestamptz in UTC; the fraction of a
                               second without trailing zeros, "13:14:15.5", where
                               Python writes "13:14:15.500000": the same time)
interval                       ISO 8601 duration string
uuid                           string
arrays of the above            arrays (nested for multi-dimensional ones); one with
                               a lower bound other than 1 as its text, a string
anything else                  the server's text form, as a string
=============================  =====================================================

A table holding a column this mapping cannot express in SQL (floats inside arrays, bytea
or json arrays) is read as dicts instead, which a JSON Lines sink encodes on the client.
The COPY is in CSV format with a quote and a delimiter byte that JSON text never holds
raw (control characters are escaped in JSON strings), so every output row is exactly one
JSON text and a newline: nothing to unescape.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final

from psycopg import postgres, sql

from headwater_postgres._sql import Column

_TYPES = postgres.types


def _oid(name: str) -> int:
    info = _TYPES.get(name)
    assert info is not None, name
    return info.oid


def _array_oid(name: str) -> int:
    info = _TYPES.get(name)
    assert info is not None, name
    return info.array_oid


_NUMBERS: Final = frozenset(map(_oid, ["int2", "int4", "int8", "oid", "bool"]))
_FLOATS: Final = frozenset(map(_oid, ["float4", "float8"]))
_NUMERIC: Final = _oid("numeric")
_TO_JSON: Final = frozenset(
    map(
        _oid,
        [
            "text",
            "varchar",
            "bpchar",
            "name",
            "date",
            "time",
            "timestamp",
            "timestamptz",
            "interval",
            "uuid",
        ],
    )
)
#: Types whose text form (under `SETTINGS`) holds no character a JSON string escapes:
#: digits, signs, points, NaN / Infinity, dashes, hex digits, " BC". A date's text is
#: then what to_json writes for it too ("2000-01-02", "0044-03-15 BC", "infinity").
_QUOTED_TEXT: Final = frozenset(map(_oid, ["numeric", "date", "uuid"]))
_JSON: Final = _oid("json")
_JSONB: Final = _oid("jsonb")
_BYTEA: Final = _oid("bytea")
#: Arrays whose to_json matches the dict read's JSON.
_ARRAYS_TO_JSON: Final = frozenset(
    map(
        _array_oid,
        [
            "int2",
            "int4",
            "int8",
            "oid",
            "bool",
            "text",
            "varchar",
            "bpchar",
            "name",
            "date",
            "time",
            "timestamp",
            "timestamptz",
            "interval",
            "uuid",
            "jsonb",
        ],
    )
)
_NUMERIC_ARRAY: Final = _array_oid("numeric")
_JSONB_ARRAY: Final = _array_oid("jsonb")
#: Arrays read natively as dicts whose JSON the server would write differently.
_UNSUPPORTED_ARRAYS: Final = frozenset(map(_array_oid, ["float4", "float8", "bytea", "json"]))
#: Key types whose JSON value is also their text input (a resumable state must cast back).
_KEY_TYPES: Final = _NUMBERS | _TO_JSON | {_NUMERIC} | _FLOATS

#: COPY options: one column, and a quote / delimiter byte JSON text never holds raw.
COPY_OPTIONS: Final = sql.SQL("(FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')")
#: Session settings the JSON above assumes, for the read's transaction.
SETTINGS: Final = (
    "SET LOCAL TimeZone = 'UTC'",
    "SET LOCAL IntervalStyle = 'iso_8601'",
    "SET LOCAL extra_float_digits = 1",
    "SET LOCAL DateStyle = 'ISO, YMD'",
)


def _value(col: Column, ident: sql.Composable) -> sql.Composable | None:
    """The JSON text of one column's value (NULL for SQL NULL), or None if unsupported."""
    oid = col.base_oid or col.type_oid
    is_array = col.type.endswith("[]")
    if oid in _NUMBERS:
        return sql.SQL("{}::text").format(ident)
    if oid in _FLOATS:
        # PostgreSQL prints an integral float without a point ("2166"), which JSON
        # readers take for an integer; Python's json writes "2166.0". Plain digits are
        # printed below 1e15 (above, and for NaN/Infinity, the text has no point to add).
        return sql.SQL(
            "{0}::float8::text || CASE WHEN {0}::float8 = trunc({0}::float8) "
            "AND abs({0}::float8) < 1e15 THEN '.0' ELSE '' END"
        ).format(ident)
    if oid in _QUOTED_TEXT:
        # Text forms without a character JSON escapes: quoting them gives to_json's
        # result at a fraction of its cost (to_json of such columns was about 15 % of
        # the server's time for a read of the benchmark table).
        return sql.SQL("'\"' || {}::text || '\"'").format(ident)
    if oid in _TO_JSON:
        return sql.SQL("to_json({})::text").format(ident)
    if oid == _JSONB:
        # The document null would read back as SQL NULL (JSON Lines has one null):
        # refused, naming the column (a per-row cast the planner cannot fold).
        message = (
            f"headwater: column {col.name!r} (jsonb) holds the JSON document null, which a "
            'JSON Lines file cannot tell from NULL; read it with format="csv" or write '
            "Parquet. Value: "
        )
        return sql.SQL(
            "CASE WHEN jsonb_typeof({0}) = 'null' THEN (({1} || {0}::text)::int[])::text "
            "ELSE {0}::text END"
        ).format(ident, sql.Literal(message))
    if oid == _JSON:
        # A json document is its text (duplicate keys, spacing, digits), carried as it
        # is (a reader keeping it, `formats.object_with_json_text`, gets it back), unless
        # it is the document null, or holds a line break or spaces around it, which a
        # line cannot carry: refused, as the JSON Lines encoder refuses them.
        message = (
            f"headwater: column {col.name!r} (json) holds the JSON document null, a line "
            "break or spaces around the document, which a JSON Lines file cannot carry as "
            'written; read it with format="csv" or write Parquet. Value: '
        )
        return sql.SQL(
            "CASE WHEN json_typeof({0}) = 'null' OR strpos({0}::text, E'\n') > 0 "
            "OR strpos({0}::text, E'\r') > 0 OR {0}::text <> btrim({0}::text, E' \t') "
            "THEN (({1} || left({0}::text, 40))::int[])::text ELSE {0}::text END"
        ).format(ident, sql.Literal(message))
    if oid == _BYTEA:
        return sql.SQL("'\"' || translate(encode({}, 'base64'), E'\\n', '') || '\"'").format(ident)
    if oid == _JSONB_ARRAY:
        message = (
            f"headwater: column {col.name!r} (jsonb[]) holds the JSON document null, which a "
            'JSON Lines file cannot tell from a NULL element; read it with format="csv". '
            "Value: "
        )
        return sql.SQL(
            "CASE WHEN 'null'::jsonb = ANY({0}) THEN (({1} || left({0}::text, 40))::int[])::text "
            "ELSE to_json({0})::text END"
        ).format(ident, sql.Literal(message))
    if oid in _ARRAYS_TO_JSON:
        return sql.SQL("to_json({})::text").format(ident)
    if oid == _NUMERIC_ARRAY:
        return sql.SQL("to_json({}::text[])::text").format(ident)
    if oid in _UNSUPPORTED_ARRAYS:
        return None
    # Every other type is read as its text form (arrays of them as text[]).
    return sql.SQL("to_json({}::{})::text").format(ident, sql.SQL("text[]" if is_array else "text"))


def json_expression(columns: Sequence[Column], *, source: str | None) -> sql.Composed | None:
    """
    ``concat('{"a":', coalesce(<a as JSON>, 'null'), ',"b":', ...)``: one row's JSON
    text, or None when a column's JSON cannot be built in SQL exactly as the dict read's.
    """
    parts: list[sql.Composable] = []
    for index, col in enumerate(columns):
        ident: sql.Composable = (
            sql.Identifier(source, col.name) if source else sql.Identifier(col.name)
        )
        value = _value(col, ident)
        if value is not None and col.type.endswith("[]"):
            from headwater_postgres._plan import BOUNDS_CONDITION

            # An array a JSON array cannot hold (a lower bound other than 1) as its
            # text, a string, as the dict read gives it; `write` hands it to the server.
            value = sql.SQL(
                "CASE WHEN " + BOUNDS_CONDITION + " THEN to_json({0}::text)::text ELSE {1} END"
            ).format(ident, value)
        if value is None:
            return None
        prefix = ("{" if index == 0 else ",") + json.dumps(col.name, ensure_ascii=False) + ":"
        parts.append(sql.Literal(prefix))
        parts.append(sql.SQL("coalesce({}, 'null')").format(value))
    parts.append(sql.Literal("}" if columns else "{}"))
    return sql.SQL("concat({})").format(sql.SQL(", ").join(parts))


def keys_supported(keys: Sequence[Column]) -> bool:
    """Whether a key's JSON values are also text its column type reads back (for states)."""
    return all((k.base_oid or k.type_oid) in _KEY_TYPES and not k.type.endswith("[]") for k in keys)

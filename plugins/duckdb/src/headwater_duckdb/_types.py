"""
Types between Arrow and DuckDB, kept exact both ways (pure logic over pyarrow).

Reading: DuckDB exports most types to Arrow exactly. A few it does not (a UHUGEINT
above 2^127 comes out negative, a TIMETZ loses its offset, BIT and BIGNUM become opaque
bytes): those columns are read as DuckDB's text for them (`read_item`). JSON columns are
strings marked with `headwater.formats.JSON_FIELD_METADATA`.

Writing: batches are scanned by DuckDB as Arrow (no Python object per value). Before
that, `prepare_arrow` refuses what DuckDB would change: decimals beyond 38 digits,
nanoseconds in a duration or interval (DuckDB's INTERVAL holds microseconds), and
`check_target` compares each incoming column's DuckDB type with the table's column and
allows only conversions that keep every value (same type, wider integers, wider
decimals, ...). Anything else is an error naming the column, never a silent cast.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any, Final

from headwater import ConfigError
from headwater.formats import JSON_FIELD_METADATA
from headwater_duckdb._sql import Column, quote_ident

#: DuckDB types whose Arrow export changes values; read as their text form instead.
TEXT_READ_TYPES: Final = frozenset(
    {"UHUGEINT", "TIME WITH TIME ZONE", "TIMETZ", "BIT", "BITSTRING", "BIGNUM", "VARINT"}
)

_HINT: Final = "cast the column in the source (a query stream) to a type DuckDB holds"


def read_item(column: Column) -> str:
    """The select-list item that reads ``column`` exactly into Arrow."""
    ident = quote_ident(column.name)
    if column.type.upper() in TEXT_READ_TYPES:
        return f"CAST({ident} AS VARCHAR) AS {ident}"
    return ident


def mark_json(batch: Any, json_positions: tuple[int, ...]) -> Any:
    """``batch`` with its JSON columns' fields marked as JSON text (no data copied)."""
    if not json_positions:
        return batch
    import pyarrow as pa

    fields = list(batch.schema)
    for i in json_positions:
        fields[i] = fields[i].with_metadata(JSON_FIELD_METADATA)
    return pa.RecordBatch.from_arrays(batch.columns, schema=pa.schema(fields))


def is_json_field(field: Any) -> bool:
    """Whether an Arrow field is JSON text (marked `JSON_FIELD_METADATA`, among other keys)."""
    metadata = field.metadata or {}
    return all(metadata.get(key) == value for key, value in JSON_FIELD_METADATA.items())


def is_json_type(type_name: str) -> bool:
    return type_name.upper() == "JSON"


# --- writing: what DuckDB's Arrow scan would change -------------------------------------------


def prepare_arrow(table: Any) -> Any:
    """
    ``table`` (a ``pyarrow.Table`` or ``RecordBatch``) as DuckDB can scan it without
    changing a value; decimal256 columns that fit 38 digits become decimal128.

    Raises:
        ConfigError: a column holds values DuckDB cannot keep exactly (naming it).
    """
    import pyarrow as pa

    columns = list(table.columns)
    fields = list(table.schema)
    changed = False
    for i, field in enumerate(fields):
        kind = field.type
        if isinstance(kind, pa.OpaqueType):
            columns[i], fields[i] = _opaque(field, columns[i])
            changed = True
        elif pa.types.is_decimal(kind) and kind.bit_width > 128:
            if kind.precision > 38:
                raise ConfigError(
                    f"column {field.name!r} holds decimals of up to {kind.precision} digits; "
                    "DuckDB's DECIMAL holds at most 38",
                    field=field.name,
                    hint="write the column as text (cast it in the source), or to a "
                    "destination with wider numbers (PostgreSQL numeric)",
                )
            target = pa.decimal128(kind.precision, kind.scale)
            columns[i] = columns[i].cast(target)
            fields[i] = field.with_type(target)
            changed = True
        else:
            for leaf in _leaves(columns[i]):
                _check_leaf(field.name, leaf)
    if not changed:
        return table
    schema = pa.schema(fields, metadata=table.schema.metadata)
    if isinstance(table, pa.RecordBatch):
        return pa.RecordBatch.from_arrays(columns, schema=schema)
    return pa.Table.from_arrays(columns, schema=schema)


#: ADBC PostgreSQL's ``numeric``: an Arrow opaque type over the value's text, with the
#: column's type modifier, ``(precision << 16 | scale) + 4`` (-1 when unconstrained).
_PG_NUMERIC: Final = ("PostgreSQL", "numeric")
_PG_TYPMOD: Final = b"POSTGRESQL:typmod"


def _opaque(field: Any, column: Any) -> tuple[Any, Any]:
    """
    An opaque column (a type Arrow has no name for, carried as its source's text) as
    DuckDB can hold it: a PostgreSQL ``numeric(p, s)`` of up to 38 digits as
    DECIMAL(p, s), every other one as the text it carries (what a dict read gives).

    Raises:
        ConfigError: a ``numeric`` of more than 38 digits, or a value (NaN, ±Infinity)
            DuckDB's DECIMAL cannot hold, naming the column.
    """
    import pyarrow as pa

    kind = field.type
    storage = _storage(column)
    metadata = dict(field.metadata or {})
    typmod = int(metadata.get(_PG_TYPMOD, b"-1") or -1)
    if (kind.vendor_name, kind.type_name) != _PG_NUMERIC or typmod < 4:
        return storage, pa.field(field.name, kind.storage_type, field.nullable, metadata)
    precision, scale = (typmod - 4) >> 16, (typmod - 4) & 0xFFFF
    if precision > 38:
        raise ConfigError(
            f"column {field.name!r} is numeric({precision},{scale}); DuckDB's DECIMAL "
            "holds at most 38 digits",
            field=field.name,
            hint="write the column as text (cast it in the source), or to a destination "
            "with wider numbers (PostgreSQL numeric)",
        )
    target = pa.decimal128(precision, scale)
    try:
        converted = storage.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise ConfigError(
            f"column {field.name!r} (numeric({precision},{scale})) holds a value DuckDB's "
            "DECIMAL cannot hold (NaN or ±Infinity)",
            field=field.name,
            hint=_HINT,
        ) from None
    return converted, pa.field(field.name, target, field.nullable, metadata)


def _storage(column: Any) -> Any:
    """An extension-typed array (or chunked array) as its storage array."""
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        return pa.chunked_array(
            [chunk.storage for chunk in column.chunks], column.type.storage_type
        )
    return column.storage


def _leaves(array: Any) -> Iterator[Any]:
    """The arrays of a column and, inside lists, maps and structs, of its children."""
    import pyarrow as pa

    chunks = array.chunks if isinstance(array, pa.ChunkedArray) else [array]
    for chunk in chunks:
        yield chunk
        kind = chunk.type
        if (
            pa.types.is_list(kind)
            or pa.types.is_large_list(kind)
            or pa.types.is_fixed_size_list(kind)
            or pa.types.is_map(kind)
        ):
            yield from _leaves(chunk.flatten())
        elif pa.types.is_struct(kind):
            for index in range(kind.num_fields):
                yield from _leaves(chunk.field(index))


def _check_leaf(name: str, array: Any) -> None:
    """Refuse values of ``array`` (part of column ``name``) that DuckDB would change."""
    import pyarrow as pa

    kind = array.type
    if pa.types.is_decimal(kind) and kind.bit_width > 128:
        # Top-level columns were converted to decimal128 above; a nested one DuckDB
        # cannot scan at all (the probe in `_write` names it).
        return
    if pa.types.is_duration(kind) and kind.unit == "ns":
        if _any(_sub_micro(array.cast(pa.int64()))):
            raise _nanos(name, "durations")
    elif pa.types.is_interval(kind):
        # No compute kernel reads an interval's parts; interval columns are rare.
        nanos = [v.nanoseconds for v in array.to_pylist() if v is not None]
        if any(n % 1000 for n in nanos):
            raise _nanos(name, "intervals")


def _sub_micro(nanos: Any) -> Any:
    """Whether each value has a part below a microsecond (integer division truncates)."""
    import pyarrow.compute as pc

    return pc.not_equal(pc.multiply(pc.divide(nanos, 1000), 1000), nanos)


def _any(mask: Any) -> bool:
    import pyarrow.compute as pc

    return bool(pc.any(mask).as_py())


def _nanos(name: str, what: str) -> ConfigError:
    return ConfigError(
        f"column {name!r} holds {what} with nanoseconds; DuckDB's INTERVAL holds microseconds",
        field=name,
        hint="round the column to microseconds in the source, or write it as text",
    )


# --- writing: incoming type against the table's column --------------------------------------

_INTEGERS: Final = {
    "TINYINT": (True, 8),
    "SMALLINT": (True, 16),
    "INTEGER": (True, 32),
    "BIGINT": (True, 64),
    "HUGEINT": (True, 128),
    "UTINYINT": (False, 8),
    "USMALLINT": (False, 16),
    "UINTEGER": (False, 32),
    "UBIGINT": (False, 64),
    "UHUGEINT": (False, 128),
}
#: Decimal digits an integer type needs at most.
_DIGITS: Final = {8: 3, 16: 5, 32: 10, 64: 20, 128: 39}
_DECIMAL: Final = re.compile(r"^DECIMAL\((\d+),\s*(\d+)\)$")
#: Widenings that keep every value: (from, to).
_WIDER: Final = frozenset(
    {
        ("FLOAT", "DOUBLE"),
        ("TIMESTAMP_S", "TIMESTAMP"),
        ("TIMESTAMP_MS", "TIMESTAMP"),
        ("TIMESTAMP_S", "TIMESTAMP_NS"),
        ("TIMESTAMP_MS", "TIMESTAMP_NS"),
        ("TIMESTAMP", "TIMESTAMP_NS"),
        ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ_NS"),
        ("TIME", "TIME_NS"),
        ("VARCHAR", "JSON"),
        ("JSON", "VARCHAR"),
        ("BLOB", "BLOB"),
    }
)
#: Text DuckDB parses strictly into these (an invalid value is an error, not a guess).
_STRICT_FROM_TEXT: Final = frozenset({"UUID", "JSON", "BOOLEAN"})

_DAY = r"[0-9]{4,}-[0-9]{2}-[0-9]{2}"
_INFINITY = r"|[+-]?infinity"


def _clock(digits: int) -> str:
    fraction = rf"(\.[0-9]{{1,{digits}}})?" if digits else ""
    return rf"[0-9]{{2}}:[0-9]{{2}}(:[0-9]{{2}}{fraction})?"


#: The text a temporal column takes (regexp_full_match, after trim): what DuckDB's cast
#: would otherwise cut silently is refused (a time of day for a DATE, a zone offset for a
#: TIMESTAMP or TIME, digits beyond the type's precision).
_TEXT_PATTERNS: Final = {
    "DATE": rf"{_DAY}{_INFINITY}",
    "TIME": _clock(6),
    "TIME_NS": _clock(9),
    "TIMESTAMP_S": rf"{_DAY}([ T]{_clock(0)})?{_INFINITY}",
    "TIMESTAMP_MS": rf"{_DAY}([ T]{_clock(3)})?{_INFINITY}",
    "TIMESTAMP": rf"{_DAY}([ T]{_clock(6)})?{_INFINITY}",
    "TIMESTAMP_NS": rf"{_DAY}([ T]{_clock(9)})?{_INFINITY}",
    "TIMESTAMP WITH TIME ZONE": (
        rf"{_DAY}([ T]{_clock(6)})? ?(Z|[+-][0-9]{{2}}(:?[0-9]{{2}}(:?[0-9]{{2}})?)?){_INFINITY}"
    ),
}


def text_pattern(target: str) -> str:
    """The `_TEXT_PATTERNS` entry of a column type."""
    return _TEXT_PATTERNS[target.upper()]


def _integer(name: str) -> tuple[bool, int] | None:
    return _INTEGERS.get(name)


def _decimal(name: str) -> tuple[int, int] | None:
    match = _DECIMAL.match(name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def widens(source: str, target: str) -> bool:
    """Whether DuckDB type ``source`` converts to ``target`` keeping every value."""
    source, target = source.upper(), target.upper()
    if source == target or source == '"NULL"' or source == "NULL":
        return True
    if (source, target) in _WIDER or (target.startswith("ENUM(") and source == "VARCHAR"):
        # VARCHAR into ENUM: DuckDB refuses a value that is no member.
        return True
    a, b = _integer(source), _integer(target)
    if a and b:
        (a_signed, a_bits), (b_signed, b_bits) = a, b
        if a_signed == b_signed:
            return b_bits >= a_bits
        return b_signed and b_bits > a_bits
    d = _decimal(target)
    if a and d:
        precision, scale = d
        return precision - scale >= _DIGITS[a[1]]
    c = _decimal(source)
    if c and d:
        return d[1] >= c[1] and d[0] - d[1] >= c[0] - c[1]
    if a and target == "DOUBLE":
        return a[1] <= 32
    if c and target == "DOUBLE":
        return c[0] <= 15
    return False


def _numeric(name: str) -> bool:
    return _integer(name) is not None or _decimal(name) is not None or name in ("FLOAT", "DOUBLE")


@dataclasses.dataclass(frozen=True, slots=True)
class ValueCheck:
    """A column whose values must be checked before they are cast into the table."""

    column: str
    #: ``"integer_text"`` / ``"decimal_text"``: text into an integer / decimal column
    #: (no rounding allowed); ``"pattern_text"``: text into a temporal column (the exact
    #: shape only, `_TEXT_PATTERNS`); ``"round_trip"``: a numeric type into a narrower one
    #: (each value must come back equal from the target type).
    kind: str
    source: str
    target: str


def check_target(
    incoming: list[tuple[str, str]],
    columns: dict[str, str],
    *,
    text: bool,
    table: str,
) -> list[ValueCheck]:
    """
    Check each incoming ``(column, DuckDB type)`` against the table's ``columns``
    (name → type; matched case-insensitively as DuckDB does). Returns the columns whose
    values must be checked one by one (a BIGINT batch into an INTEGER column is fine
    when every value fits; `Writer.insert` checks in SQL before inserting).

    Raises:
        ConfigError: an unknown column, or a type the column's cannot hold exactly.
    """
    by_lower = {name.lower(): (name, kind) for name, kind in columns.items()}
    checks: list[ValueCheck] = []
    for name, kind in incoming:
        found = by_lower.get(name.lower())
        if found is None:
            raise ConfigError(
                f"{table} has no column {name!r} (it has {', '.join(columns)})",
                field=name,
                hint="add the column to the table, or leave the field out of the records",
            )
        source, target = kind.upper(), found[1].upper()
        if widens(source, target):
            continue
        if source == "VARCHAR" and (target in _STRICT_FROM_TEXT or target.startswith("ENUM(")):
            continue
        if source == "VARCHAR" and target in _TEXT_PATTERNS:
            # DuckDB's casts cut what they do not hold: a date's time of day, a
            # timestamp's zone offset or its 7th fractional digit. Only text of the exact
            # shape passes.
            checks.append(ValueCheck(name, "pattern_text", source, target))
            continue
        if text and source == "VARCHAR":
            # Text forms of values (a CSV): DuckDB parses them by column type, where its
            # text form is the common one. Integers and decimals are checked first, since
            # DuckDB would round '1.5' into an INTEGER and '1.255' into a DECIMAL(5,2).
            if _integer(target) is not None:
                checks.append(ValueCheck(name, "integer_text", source, target))
            elif _decimal(target) is not None:
                checks.append(ValueCheck(name, "decimal_text", source, target))
            elif target not in ("DOUBLE", "FLOAT"):
                raise ConfigError(
                    f"column {name!r}: the records hold text and {table}.{found[0]} is "
                    f"{found[1]}, whose text form in DuckDB may differ from the source's "
                    "(a bytea's \\x00ff, an array's {1,2}), so nothing was written",
                    field=name,
                    hint="load the column as VARCHAR and convert it with SQL in DuckDB",
                )
            continue
        if _numeric(source) and _numeric(target):
            checks.append(ValueCheck(name, "round_trip", kind, found[1]))
            continue
        raise ConfigError(
            f"column {name!r}: the records hold {kind} values and {table}.{found[0]} is "
            f"{found[1]}; DuckDB would change them, so nothing was written",
            field=name,
            hint=f"give the column a type that holds {kind} values exactly, or {_HINT}",
        )
    return checks


def create_type(kind: str, field: Any, *, from_records: bool) -> str:
    """
    The column type a new table gets for an incoming column: DuckDB's type of the Arrow
    column, JSON for JSON text, and for records converted from dicts (whose decimal
    precision is inferred from one batch's values) DECIMAL(38, scale), so the next
    batches' larger values fit.
    """
    if field is not None and is_json_field(field):
        return "JSON"
    upper = kind.upper()
    if upper in ('"NULL"', "NULL"):
        return "VARCHAR"
    decimal = _decimal(upper)
    if decimal and from_records:
        return f"DECIMAL(38,{decimal[1]})"
    return kind

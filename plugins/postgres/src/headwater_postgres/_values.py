"""
How PostgreSQL values become Python values and back (imports psycopg: load it lazily).

Read mapping (documented in the README):

=============================  ===================================================
PostgreSQL                     Python
=============================  ===================================================
smallint, integer, bigint      int
real, double precision         float (NaN and infinities stay floats)
numeric                        decimal.Decimal (exact; never a float)
boolean                        bool
text, varchar, char, name      str
bytea                          bytes
json, jsonb                    the parsed value (dict, list, str, int, float, bool, None)
date / time                    datetime.date / datetime.time
timestamp                      naive datetime.datetime
timestamptz                    aware datetime.datetime in UTC
interval                       str, ISO 8601 duration ("P1Y2M3DT4H5M6.5S"): exact,
                               unlike a timedelta, which has no months
uuid                           uuid.UUID
arrays of the above            list (nested for multi-dimensional arrays)
anything else                  str: the server's text form (enums, inet, money,
                               geometric, range, PostGIS, ...)
NULL                           None
=============================  ===================================================

Write mapping for tables created from a declared schema (Python type → PostgreSQL):
int → bigint, float → double precision, Decimal → numeric, bool → boolean, str → text,
bytes → bytea, datetime → timestamptz, date → date, time → time, timedelta → interval,
UUID → uuid, dict / list / Any → jsonb, ``list[T]`` → T[] (e.g. ``list[int]`` → bigint[]).
A string that is a PostgreSQL type name (``"varchar(20)"``, ``"numeric(12,2)"``) is used
as written.
"""

from __future__ import annotations

import datetime as dt
import json
import json.encoder
import json.scanner
import re
import struct
import typing
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final

from psycopg import adapt, postgres
from psycopg.adapt import AdaptersMap
from psycopg.pq import Format

from headwater import ConfigError, loads_json

_TYPES = postgres.types

#: Scalar types read with psycopg's binary loaders as they are (by type name).
_DIRECT: Final = [
    "int2",
    "int4",
    "int8",
    "oid",
    "float4",
    "float8",
    "numeric",
    "bool",
    "text",
    "varchar",
    "bpchar",
    "name",
    "bytea",
    "json",
    "jsonb",
    "date",
    "time",
    "timestamp",
    "timestamptz",
    "interval",
    "uuid",
]


def _oids(names: list[str]) -> frozenset[int]:
    found: set[int] = set()
    for name in names:
        info = _TYPES.get(name)
        assert info is not None, name
        found.add(info.oid)
        found.add(info.array_oid)
    return frozenset(found)


#: Type OIDs (scalars and their arrays) read natively; every other type is cast to text.
NATIVE_OIDS: Final = _oids(_DIRECT)
TEXT_OID: Final = 25
TEXT_ARRAY_OID: Final = 1009
#: json and jsonb (scalars): read as text and parsed a batch at a time (see `BatchCutter`).
JSON_OIDS: Final = frozenset({114, 3802})

# --- intervals as ISO 8601 -------------------------------------------------------------

_INTERVAL = struct.Struct("!qii")


def interval_to_iso(micros: int, days: int, months: int) -> str:
    """The ISO 8601 duration PostgreSQL's ``IntervalStyle=iso_8601`` prints for an interval."""
    if not (micros or days or months):
        return "PT0S"
    # PostgreSQL splits with C division (truncating toward zero), sign on every field.
    years, months = int(months / 12), months - int(months / 12) * 12
    out = ["P"]
    for value, unit in ((years, "Y"), (months, "M"), (days, "D")):
        if value:
            out.append(f"{value}{unit}")
    if micros:
        out.append("T")
        sign = -1 if micros < 0 else 1
        rest = abs(micros)
        hours, rest = divmod(rest, 3_600_000_000)
        minutes, rest = divmod(rest, 60_000_000)
        seconds, fraction = divmod(rest, 1_000_000)
        if hours:
            out.append(f"{sign * hours}H")
        if minutes:
            out.append(f"{sign * minutes}M")
        if seconds or fraction:
            text = f"{seconds}.{fraction:06d}".rstrip("0").rstrip(".") if fraction else str(seconds)
            out.append(f"{'-' if sign < 0 else ''}{text}S")
    return "".join(out)


_ISO_DURATION = re.compile(
    r"^P(?:(?P<Y>-?\d+)Y)?(?:(?P<Mo>-?\d+)M)?(?:(?P<W>-?\d+)W)?(?:(?P<D>-?\d+)D)?"
    r"(?:T(?:(?P<H>-?\d+)H)?(?:(?P<Mi>-?\d+)M)?(?:(?P<S>-?\d+(?:\.\d+)?)S)?)?$"
)


def iso_to_interval(text: str) -> tuple[int, int, int]:
    """Parse an ISO 8601 duration into (microseconds, days, months); ValueError if not one."""
    match = _ISO_DURATION.match(text.strip())
    if not match or text.strip() in ("P", "PT") or text.strip().endswith("T"):
        raise ValueError(f"not an ISO 8601 duration: {text!r}")
    g = {k: v for k, v in match.groupdict().items() if v is not None}
    months = int(g.get("Y", 0)) * 12 + int(g.get("Mo", 0))
    days = int(g.get("W", 0)) * 7 + int(g.get("D", 0))
    seconds = Decimal(g.get("S", "0"))
    micros = (
        int(g.get("H", 0)) * 3_600_000_000
        + int(g.get("Mi", 0)) * 60_000_000
        + int((seconds * 1_000_000).to_integral_value())
    )
    return micros, days, months


class IsoIntervalBinaryLoader(adapt.Loader):
    """interval (binary) → ISO 8601 duration string."""

    format = Format.BINARY

    def load(self, data: adapt.Buffer) -> str:
        micros, days, months = _INTERVAL.unpack(data)
        return interval_to_iso(micros, days, months)


class IntervalTextLoader(adapt.Loader):
    """interval (text) → the server's text; ISO 8601 because we set IntervalStyle."""

    def load(self, data: adapt.Buffer) -> str:
        return bytes(data).decode()


class _IntervalInput:
    """Marker type: registering a dumper for it puts that dumper in the by-OID table."""


class IntervalBinaryDumper(adapt.Dumper):
    """timedelta or ISO 8601 duration string → interval (binary), months kept exact."""

    format = Format.BINARY
    oid = _TYPES["interval"].oid

    def dump(self, obj: Any) -> bytes:
        if isinstance(obj, dt.timedelta):
            micros = obj.seconds * 1_000_000 + obj.microseconds
            return _INTERVAL.pack(micros, obj.days, 0)
        if isinstance(obj, str):
            return _INTERVAL.pack(*iso_to_interval(obj))
        raise TypeError(f"cannot write {type(obj).__name__} to an interval column")


# --- JSON: the hot spot of a dict read -----------------------------------------------------


#: headwater's JSON parser: orjson, with the stdlib for whatever orjson would refuse or
#: change, so values are exactly what ``json.loads`` gives (see headwater._json).
json_loads: Final = loads_json


def json_column(texts: list[str | None]) -> list[Any]:
    """
    The values of a batch of json/jsonb column texts (``None`` stays ``None``), exactly
    as `json_loads` gives them one by one, from one parser call for the whole batch.

    The texts must be the server's: each one valid JSON value, which PostgreSQL checks
    on input for both types. They are joined into one JSON array and parsed once with
    `json_loads`, which saves a Python call per value (most of the cost of small
    documents); `json_loads` itself takes the stdlib path for a batch that orjson would
    get wrong (a long integer) or refuse (NaN, a lone surrogate escape).
    """
    if None in texts:
        present = iter(json_column([t for t in texts if t is not None]))
        return [None if t is None else next(present) for t in texts]
    if not texts:
        return []
    joined = ("[" + ",".join(texts) + "]").encode()  # type: ignore[arg-type]  # no None
    parsed = json_loads(joined)
    if len(parsed) != len(texts):  # a "value" that was not one: parse them one by one
        return [json_loads(text) for text in texts]  # type: ignore[arg-type]  # no None
    return parsed  # type: ignore[no-any-return]  # "[...]" is a list


class JsonbBinaryLoader(adapt.Loader):
    """jsonb (binary: a version byte, then the text) → Python value."""

    format = Format.BINARY

    def load(self, data: adapt.Buffer) -> Any:
        if not data or data[0] != 1:
            from psycopg import DataError

            raise DataError("unknown jsonb binary format")
        return loads_json(memoryview(data)[1:])


class JsonLoader(adapt.Loader):
    """json / jsonb (text) → Python value."""

    def load(self, data: adapt.Buffer) -> Any:
        return json_loads(data)


class JsonBinaryLoader(JsonLoader):
    """json (binary: the text itself) → Python value."""

    format = Format.BINARY


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_c_make_encoder: Callable[..., Callable[[Any, int], list[str]]] | None = getattr(
    json.encoder, "c_make_encoder", None
)
#: json's C encoder, built once: json.dumps builds one per call, which cost more than
#: the encoding itself for the small documents of a jsonb column (the hot spot of a
#: write). Same output as json.dumps(ensure_ascii=False); no cycle check (a
#: self-referencing document fails with RecursionError instead of ValueError).
_ENCODE: Final = (
    _c_make_encoder(
        None, _not_json, json.encoder.encode_basestring, None, ": ", ", ", False, False, True
    )
    if _c_make_encoder is not None
    else None
)


def json_dumps(value: Any) -> str:
    """JSON text for a value (the fast path of jsonb / json writes)."""
    if _ENCODE is None:  # pragma: no cover - CPython has the C encoder
        return json.dumps(value, ensure_ascii=False)
    return "".join(_ENCODE(value, 0))


class _JsonbInput:
    """Marker type: puts `JsonbBinaryDumper` in the by-OID table used by COPY."""


class _JsonInput:
    """Marker type: puts `JsonBinaryDumper` in the by-OID table used by COPY."""


class JsonbBinaryDumper(adapt.Dumper):
    """Any JSON-able value → jsonb (binary: version byte + text)."""

    format = Format.BINARY
    oid = _TYPES["jsonb"].oid

    def dump(self, obj: Any) -> bytes:
        return b"\x01" + json_dumps(obj).encode()


class JsonBinaryDumper(adapt.Dumper):
    """Any JSON-able value → json (binary: the text)."""

    format = Format.BINARY
    oid = _TYPES["json"].oid

    def dump(self, obj: Any) -> bytes:
        return json_dumps(obj).encode()


def build_adapters() -> AdaptersMap:
    """The adapters every headwater connection uses (a copy of psycopg's defaults + ours)."""
    adapters = AdaptersMap(postgres.adapters)
    adapters.register_loader("jsonb", JsonbBinaryLoader)
    adapters.register_loader("jsonb", JsonLoader)
    adapters.register_loader("json", JsonBinaryLoader)
    adapters.register_loader("json", JsonLoader)
    adapters.register_loader("interval", IsoIntervalBinaryLoader)
    adapters.register_loader("interval", IntervalTextLoader)
    adapters.register_dumper(_IntervalInput, IntervalBinaryDumper)
    adapters.register_dumper(_JsonbInput, JsonbBinaryDumper)
    adapters.register_dumper(_JsonInput, JsonBinaryDumper)
    return adapters


# --- reading: select lists and JSON-safe state values ------------------------------------


def load_oid(type_oid: int, base_oid: int) -> tuple[int, bool]:
    """
    The OID to load a column with, and whether to cast it to text in the query.

    Domains are read as their base type; anything without a native loader is cast to
    text (its array to text[]), so every column gets a well-defined Python value.
    """
    oid = base_oid or type_oid
    if oid in NATIVE_OIDS:
        return oid, False
    return TEXT_OID, True


def to_state_value(value: Any) -> Any:
    """A key value as JSON: the text form PostgreSQL reads back with a cast."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        # repr round-trips exactly; JSON has no NaN/inf, so keep those as text too.
        return (
            value if value == value and value not in (float("inf"), float("-inf")) else str(value)
        )
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    raise ConfigError(
        f"a {type(value).__name__} column cannot be a resumption key",
        hint="use a column of a scalar type as key / cursor_field",
    )


# --- writing ---------------------------------------------------------------------------


def _to_decimal(value: Any) -> Any:
    if isinstance(value, Decimal) or value is None:
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)


def _datetime_from(value: Any) -> Any:
    return dt.datetime.fromisoformat(value) if isinstance(value, str) else value


def _date_from(value: Any) -> Any:
    return dt.date.fromisoformat(value) if isinstance(value, str) else value


def _time_from(value: Any) -> Any:
    return dt.time.fromisoformat(value) if isinstance(value, str) else value


def _uuid_from(value: Any) -> Any:
    return uuid.UUID(value) if isinstance(value, str) else value


def _bytes_from(value: Any) -> Any:
    if isinstance(value, str):
        if value.startswith("\\x"):
            return bytes.fromhex(value[2:])
        raise TypeError("bytea values must be bytes (or a '\\x' hex string)")
    return value


_NONE = type(None)

#: type name → (Python types written as they are, conversion for any other value).
#: The conversion runs only for batches holding some other type (strings from a JSON
#: file, floats from Arrow); checking a batch's types is one C-level pass per column.
_COERCE: Final[Mapping[str, tuple[frozenset[type], Callable[[Any], Any]]]] = {
    "numeric": (frozenset({Decimal, _NONE}), _to_decimal),
    "timestamptz": (frozenset({dt.datetime, _NONE}), _datetime_from),
    "timestamp": (frozenset({dt.datetime, _NONE}), _datetime_from),
    "date": (frozenset({dt.date, _NONE}), _date_from),
    "time": (frozenset({dt.time, _NONE}), _time_from),
    "uuid": (frozenset({uuid.UUID, _NONE}), _uuid_from),
    "bytea": (frozenset({bytes, _NONE}), _bytes_from),
}

#: Scalar types a binary COPY can write directly (with the conversions above).
_BINARY_WRITE: Final = frozenset(
    _oids(
        [
            "int2",
            "int4",
            "int8",
            "float4",
            "float8",
            "numeric",
            "bool",
            "text",
            "varchar",
            "bpchar",
            "bytea",
            "json",
            "jsonb",
            "date",
            "time",
            "timestamp",
            "timestamptz",
            "interval",
            "uuid",
        ]
    )
)


def coercer(type_oid: int) -> tuple[frozenset[type], Callable[[Any], Any]] | None:
    """For a column of this scalar type: the types needing no conversion, and the conversion."""
    info = _TYPES.get(type_oid)
    return _COERCE.get(info.name) if info is not None else None


def binary_writable(type_oids: list[int]) -> bool:
    """Whether a binary COPY can write every one of these column types."""
    return all(oid in _BINARY_WRITE for oid in type_oids)


# --- declared schemas ------------------------------------------------------------------

_PY_TO_PG: Final[Mapping[Any, str]] = {
    bool: "boolean",
    int: "bigint",
    float: "double precision",
    Decimal: "numeric",
    str: "text",
    bytes: "bytea",
    dt.datetime: "timestamptz",
    dt.date: "date",
    dt.time: "time",
    dt.timedelta: "interval",
    uuid.UUID: "uuid",
    dict: "jsonb",
    list: "jsonb",
    Any: "jsonb",
}

#: A PostgreSQL type as written in a schema: names, an optional modifier, array brackets.
_TYPE_TEXT = re.compile(
    r"^[a-z_][a-z0-9_]*(?: [a-z_][a-z0-9_]*)*(?:\(\s*\d+\s*(?:,\s*\d+\s*)?\))?"
    r"(?: with(?:out)? time zone)?(?:\[\])*$"
)


def pg_type_for(declared: Any, column: str) -> str:
    """
    The PostgreSQL type for a declared column type (a Python type or a type name).

    Type names are checked against a strict pattern (and later by the server), so a
    schema can never smuggle SQL into the CREATE TABLE statement.
    """
    if isinstance(declared, str):
        text = " ".join(declared.lower().split())
        if not _TYPE_TEXT.match(text):
            raise ConfigError(
                f"column {column!r}: {declared!r} is not a PostgreSQL type name", field="schema"
            )
        return text
    origin = typing.get_origin(declared)
    if origin is list:
        (inner,) = typing.get_args(declared) or (Any,)
        if inner is Any or typing.get_origin(inner) is not None or inner in (dict, list):
            return "jsonb"
        return pg_type_for(inner, column) + "[]"
    if origin is not None:
        args = [a for a in typing.get_args(declared) if a is not type(None)]
        if len(args) == 1:  # Optional[T]: nullability is the default anyway
            return pg_type_for(args[0], column)
    if declared in _PY_TO_PG:
        return _PY_TO_PG[declared]
    raise ConfigError(
        f"column {column!r}: no PostgreSQL type for {declared!r}",
        field="schema",
        hint="declare a PostgreSQL type name as a string instead, e.g. 'numeric(12,2)'",
    )

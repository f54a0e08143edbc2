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
jsonb                          the parsed value (dict, list, str, int, float, bool);
                               Decimal for a number a float would change; the
                               document null as JsonText("null") (None is SQL NULL)
json                           JsonText: the document as written (key order,
                               duplicate keys, spacing, digits)
date / time                    datetime.date / datetime.time
timestamp                      naive datetime.datetime
timestamptz                    aware datetime.datetime in UTC
(what Python cannot hold:      str, the server's text: "0044-03-15 BC", "infinity",
BC, year > 9999, ±infinity,    "10000-01-01 00:00:00+00", "24:00:00")
time 24:00)
interval                       str, ISO 8601 duration ("P1Y2M3DT4H5M6.5S"): exact,
                               unlike a timedelta, which has no months
uuid                           uuid.UUID
arrays of the above            list (nested for multi-dimensional arrays); one with
                               a lower bound other than 1: str, the server's text
                               ("[0:1]={7,8}"; see `_plan.bounds_text`)
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

import base64
import dataclasses
import datetime as dt
import functools
import itertools
import json
import json.encoder
import json.scanner
import operator
import re
import struct
import typing
import uuid
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, Final

from psycopg import DataError, adapt, postgres
from psycopg.abc import AdaptContext
from psycopg.adapt import AdaptersMap
from psycopg.pq import Format
from psycopg.types.string import StrBinaryDumper

from headwater import ConfigError, formats
from headwater.formats import dumps_document
from headwater.toolkit import gc_paused, loads_json
from headwater_postgres._flows import Flow, call

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
#: json and jsonb (scalars): read as text and parsed a batch at a time (see `BatchCutter`).
JSON_OIDS: Final = frozenset({114, 3802})
#: json[] and jsonb[].
JSON_ARRAY_OIDS: Final = frozenset({199, 3807})
JSON_OID: Final = 114
JSONB_OID: Final = 3802

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


class IntervalParts(typing.NamedTuple):
    """An interval as PostgreSQL stores it (exact: months are not a number of days)."""

    micros: int
    days: int
    months: int

    @classmethod
    def from_iso(cls, text: str) -> IntervalParts:
        """From an ISO 8601 duration; ValueError if it is not one."""
        return cls(*iso_to_interval(text))

    @classmethod
    def from_month_day_nano(cls, value: Any) -> IntervalParts:
        """From Arrow's ``MonthDayNano``, nanoseconds rounded half-even as the server rounds."""
        micros, rest = divmod(value.nanoseconds, 1000)
        if rest > 500 or (rest == 500 and micros % 2):
            micros += 1
        return cls(micros, value.days, value.months)

    def iso(self) -> str:
        return interval_to_iso(self.micros, self.days, self.months)


class _IntervalInput:
    """Marker type: registering a dumper for it puts that dumper in the by-OID table."""


class IntervalBinaryDumper(adapt.Dumper):
    """timedelta, `IntervalParts` or ISO 8601 duration string → interval (binary)."""

    format = Format.BINARY
    oid = _TYPES["interval"].oid

    def dump(self, obj: Any) -> bytes:
        if type(obj) is IntervalParts:
            return _INTERVAL.pack(*obj)
        if isinstance(obj, dt.timedelta):
            micros = obj.seconds * 1_000_000 + obj.microseconds
            return _INTERVAL.pack(micros, obj.days, 0)
        if isinstance(obj, str):
            return _INTERVAL.pack(*iso_to_interval(obj))
        raise TypeError(f"cannot write {type(obj).__name__} to an interval column")


class _BpcharInput:
    """Marker type: puts `BpcharBinaryDumper` in the by-OID table used by COPY."""


class BpcharBinaryDumper(StrBinaryDumper):
    """str → char(n) (binary: the text; the server pads it). psycopg registers none."""

    oid = _TYPES["bpchar"].oid


# --- dates and times Python cannot hold ---------------------------------------------------
#
# PostgreSQL's date and timestamp types reach from 4713 BC to far past year 9999 and
# have ±infinity; its time has 24:00:00. Python's date, datetime and time hold none of
# these, and psycopg refuses the whole row (DataError). A valid table must stay
# readable, so such a value is read as the text PostgreSQL prints for it (DateStyle
# ISO, UTC: "0044-03-15 BC", "10000-01-01", "infinity", "24:00:00"), which `write`
# hands back to the server to parse. The fast C loaders stay in place: a batch is only
# loaded again, with `SAFE_TEMPORAL`, when one of its values failed them.

_DAYS_400_YEARS: Final = 146_097  # the Gregorian calendar repeats every 400 years
_MICROS_PER_DAY: Final = 86_400_000_000
_INT32: Final = struct.Struct("!i")
_INT64: Final = struct.Struct("!q")


def _pg_date_text(days: int) -> tuple[str, bool]:
    """(``YYYY-MM-DD``, BC?) for days since 2000-01-01, in the proleptic Gregorian calendar."""
    cycles, rest = divmod(days, _DAYS_400_YEARS)
    day = dt.date(2000, 1, 1) + dt.timedelta(days=rest)
    year = day.year + 400 * cycles  # astronomical: 0 is 1 BC
    bc = year <= 0
    return f"{1 - year if bc else year:04d}-{day.month:02d}-{day.day:02d}", bc


def pg_time_text(micros: int) -> str:
    """A binary time (µs since midnight, 24:00:00 included) as PostgreSQL prints it."""
    seconds, fraction = divmod(micros, 1_000_000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    text = f"{hour:02d}:{minute:02d}:{second:02d}"
    return text + f".{fraction:06d}".rstrip("0") if fraction else text


def pg_date_text(days: int) -> str:
    """A binary date (days since 2000-01-01) as PostgreSQL prints it (DateStyle ISO)."""
    if days == 2**31 - 1:
        return "infinity"
    if days == -(2**31):
        return "-infinity"
    text, bc = _pg_date_text(days)
    return text + " BC" if bc else text


def pg_timestamp_text(micros: int, *, utc: bool) -> str:
    """A binary timestamp (µs since 2000-01-01) as PostgreSQL prints it (ISO, UTC)."""
    if micros == 2**63 - 1:
        return "infinity"
    if micros == -(2**63):
        return "-infinity"
    days, rest = divmod(micros, _MICROS_PER_DAY)
    date, bc = _pg_date_text(days)
    text = f"{date} {pg_time_text(rest)}{'+00' if utc else ''}"
    return text + " BC" if bc else text


class _TemporalFallback(adapt.Loader):
    """psycopg's loader for the type, and PostgreSQL's text for what it refuses."""

    format = Format.BINARY

    def __init__(self, oid: int, context: AdaptContext | None = None) -> None:
        super().__init__(oid, context)
        fast = postgres.adapters.get_loader(oid, Format.BINARY)
        assert fast is not None
        self._fast = fast(oid, context)

    def load(self, data: adapt.Buffer) -> Any:
        try:
            return self._fast.load(data)
        except (DataError, ValueError, OverflowError):
            return self.text(bytes(data))

    def text(self, data: bytes) -> str:
        raise NotImplementedError


class DateFallbackLoader(_TemporalFallback):
    def text(self, data: bytes) -> str:
        return pg_date_text(_INT32.unpack(data)[0])


class TimestampFallbackLoader(_TemporalFallback):
    def text(self, data: bytes) -> str:
        return pg_timestamp_text(_INT64.unpack(data)[0], utc=False)


class TimestamptzFallbackLoader(_TemporalFallback):
    def text(self, data: bytes) -> str:
        return pg_timestamp_text(_INT64.unpack(data)[0], utc=True)


class TimeFallbackLoader(_TemporalFallback):
    def text(self, data: bytes) -> str:
        return pg_time_text(_INT64.unpack(data)[0])  # only 24:00:00 fails


_FALLBACKS: Final = {
    "date": DateFallbackLoader,
    "timestamp": TimestampFallbackLoader,
    "timestamptz": TimestamptzFallbackLoader,
    "time": TimeFallbackLoader,
}


@dataclasses.dataclass(frozen=True)
class _FallbackContext:
    adapters: AdaptersMap
    connection: Any


def _fallback_rows(result: Any, adapters: AdaptersMap, connection: Any) -> list[tuple[Any, ...]]:
    """The rows of ``result`` loaded with the fallback loaders (the server's text for a
    date or time Python cannot hold)."""
    from psycopg.adapt import Transformer

    adapters = AdaptersMap(adapters)
    for name, loader in _FALLBACKS.items():
        adapters.register_loader(name, loader)
    tx = Transformer(_FallbackContext(adapters, connection))
    tx.set_pgresult(result)
    return tx.load_rows(0, result.ntuples, tuple)


def _reload(cur: Any) -> list[tuple[Any, ...]]:
    """The cursor's last fetched result, loaded again with the fallback loaders."""
    return _fallback_rows(cur.pgresult, cur.adapters, cur.connection)


def load_rows(tx: Any, result: Any, conn: Any) -> list[tuple[Any, ...]]:
    """
    The rows of a binary ``result`` as tuples, loaded by the transformer ``tx`` (made
    for ``conn``), with dates and times Python cannot hold as text: what `fetch_rows`
    gives for the same rows.
    """
    tx.set_pgresult(result)
    try:
        with gc_paused():
            rows: list[tuple[Any, ...]] = tx.load_rows(0, result.ntuples, tuple)
    except DataError:  # only decoding runs here: a value psycopg could not load
        return _fallback_rows(result, conn.adapters, conn)
    return rows


def fetch_rows(cur: Any, size: int) -> Flow[list[tuple[Any, ...]]]:
    """``cur.fetchmany(size)``, with dates and times Python cannot hold as text."""
    try:
        rows: list[tuple[Any, ...]] = yield call(cur, "fetchmany", size)
    except DataError as exc:
        # Only a value psycopg could not load (no SQLSTATE: raised on the client, after
        # the rows arrived); a server error is the read's failure.
        if exc.sqlstate is not None or cur.pgresult is None:
            raise
        return _reload(cur)
    return rows


# --- JSON: the hot spot of a dict read -----------------------------------------------------


#: headwater's JSON parser: msgspec, with the stdlib for whatever msgspec refuses, so
#: values are exactly what ``json.loads`` gives (see headwater._json).
json_loads: Final = loads_json


def json_column(texts: list[str | None]) -> list[Any]:
    """
    The values of a batch of json/jsonb column texts (``None`` stays ``None``), exactly
    as `json_loads` gives them one by one, from one parser call for the whole batch.

    The texts must be the server's: each one valid JSON value, which PostgreSQL checks
    on input for both types. They are joined into one JSON array and parsed once with
    msgspec (integers of any size exact), which saves a Python call per value (most of
    the cost of small documents); a batch msgspec refuses (NaN, a lone surrogate escape,
    a number beyond a double) goes to `json_loads`, which takes the stdlib path where
    orjson would get it wrong or refuse it.
    """
    if None in texts:
        present = iter(json_column([t for t in texts if t is not None]))
        return [None if t is None else next(present) for t in texts]
    if not texts:
        return []
    if "null" in texts:
        # The document null is not SQL NULL: it reads as its JSON text (a `JsonText`),
        # which `write` stores as the document null again, where None would be NULL.
        parsed = (
            json_column([t for t in texts if t != "null"])
            if texts.count("null") < len(texts)
            else []
        )
        rest = iter(parsed)
        return [JSON_NULL if t == "null" else next(rest) for t in texts]
    joined = ("[" + ",".join(texts) + "]").encode()  # type: ignore[arg-type]  # no None
    try:
        # msgspec: faster than orjson on a batch of small documents, and integers of any
        # size stay exact. What it refuses (NaN, a lone surrogate, a number beyond a
        # double, deep nesting) goes to `json_loads`, which gives what json.loads gives.
        parsed = _msgspec_decode()(joined)
    except (ValueError, RecursionError):
        parsed = json_loads(joined)
    if len(parsed) != len(texts):  # a "value" that was not one: parse them one by one
        return [json_loads(text) for text in texts]  # type: ignore[arg-type]  # no None
    # A float changes a number whose digits it cannot hold ("2.50", "0.1000000000000000055",
    # "12345678901234567890.5"). jsonb prints its documents in the form json_dumps writes,
    # so a batch whose text may hold a fraction or exponent is checked by writing it
    # again; one that differs is parsed value by value with `loads_exact_json`.
    if _MAY_HOLD_FLOAT.search(joined) and json_dumps(parsed) != "[" + ", ".join(texts) + "]":  # type: ignore[arg-type]
        return [loads_exact_json(text) for text in texts]  # type: ignore[arg-type]  # no None
    return parsed  # type: ignore[no-any-return]  # "[...]" is a list


@functools.cache
def _msgspec_decode() -> Callable[[bytes], Any]:
    """
    msgspec's JSON decoder (any JSON value; its errors are ValueErrors), imported on the
    first jsonb batch: a read without one (or an Arrow read) does not pay for its import.
    """
    import msgspec.json

    decode: Callable[[bytes], Any] = msgspec.json.Decoder().decode
    return decode


#: A digit followed by a point or an exponent: where a JSON text may hold a float.
_MAY_HOLD_FLOAT: Final = re.compile(rb"\d[.eE]")


def _exact_number(text: str) -> float | Decimal:
    number = float(text)
    return number if repr(number) == text else Decimal(text)


def loads_exact_json(text: str | bytes) -> Any:
    """
    A JSON value with every number exact: a float where the float writes the same
    text again, a `decimal.Decimal` otherwise (`json_dumps` writes it back as a number).
    """
    return json.loads(text, parse_float=_exact_number)


class JsonbBinaryLoader(adapt.Loader):
    """jsonb (binary: a version byte, then the text) → Python value."""

    format = Format.BINARY

    def load(self, data: adapt.Buffer) -> Any:
        if not data or data[0] != 1:
            from psycopg import DataError

            raise DataError("unknown jsonb binary format")
        return json_document(bytes(data[1:]).decode())


def json_document(text: str) -> Any:
    """One jsonb document's value as `json_column` gives it (exact numbers, null apart)."""
    return json_column([text])[0]


class JsonLoader(adapt.Loader):
    """json / jsonb (text) → Python value."""

    def load(self, data: adapt.Buffer) -> Any:
        return json_loads(data)


class JsonBinaryLoader(adapt.Loader):
    """json (binary: the text itself) → `JsonText`, as a json column reads (json[] elements)."""

    format = Format.BINARY

    def load(self, data: adapt.Buffer) -> Any:
        return JsonText(bytes(data).decode())


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
    """JSON text for a value (the fast path of jsonb / json writes); Decimals as numbers."""
    try:
        if _ENCODE is None:  # pragma: no cover - CPython has the C encoder
            return json.dumps(value, ensure_ascii=False)
        return "".join(_ENCODE(value, 0))
    except TypeError:
        # A Decimal (a number `loads_exact_json` kept exact), or a value JSON has no
        # form for, which dumps_document refuses with the same TypeError.
        return dumps_document(value, default=_not_json)


class _JsonbInput:
    """Marker type: puts `JsonbBinaryDumper` in the by-OID table used by COPY."""


class _JsonInput:
    """Marker type: puts `JsonBinaryDumper` in the by-OID table used by COPY."""


#: A str that already is JSON text, written as it is (`headwater.formats.JsonText`): a
#: json column's document in a dict read, the json/jsonb values of an Arrow batch and of a
#: ``text_values`` write. A plain str in a json column is a JSON string value (encoded).
JsonText = formats.JsonText


#: The JSON document null of a json/jsonb column in a dict read (None is SQL NULL).
JSON_NULL: Final = formats.JSON_NULL


class JsonbBinaryDumper(adapt.Dumper):
    """Any JSON-able value (or `JsonText`) → jsonb (binary: version byte + text)."""

    format = Format.BINARY
    oid = _TYPES["jsonb"].oid

    def dump(self, obj: Any) -> bytes:
        if type(obj) is JsonText:
            return b"\x01" + obj.encode()
        return b"\x01" + json_dumps(obj).encode()


class JsonBinaryDumper(adapt.Dumper):
    """Any JSON-able value (or `JsonText`) → json (binary: the text)."""

    format = Format.BINARY
    oid = _TYPES["json"].oid

    def dump(self, obj: Any) -> bytes:
        if type(obj) is JsonText:
            return obj.encode()
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
    adapters.register_dumper(_BpcharInput, BpcharBinaryDumper)
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
#
# A binary COPY is the fast way in, but its dumpers are chosen by column type and trust
# the Python type they are given: a str reaches the integer dumper as a TypeError, a
# "false" reaches the boolean dumper as TRUE, 2**40 reaches the int4 dumper as 0 (psycopg's
# C dumpers do not range-check). So every batch is checked, one C-level pass per column
# that has a rule below, against the values that column's binary dumper writes exactly;
# a few text forms are converted on the client where Python's parser is a subset of the
# server's (ISO 8601 strings, plain decimal numbers, UUIDs, bytea hex/base64). Any other
# value makes the write switch to a text COPY (see `_write`), where the server parses
# every value by its column type, exactly as an INSERT of that text would: a value it
# cannot parse fails there, with the line and column in the error.


def bytea_from_text(value: str) -> bytes:
    """bytea given as text: ``\\x`` hex (PostgreSQL's form) or base64 (headwater's JSON/CSV)."""
    if value.startswith("\\x"):
        return bytes.fromhex(value[2:])
    # validate=True: text that is not base64 is an error, never some other bytes.
    return base64.b64decode(value, validate=True)


#: ``NOT_NONE(value)``: ``value is not None`` without a Python frame (for filter()).
NOT_NONE: Final = functools.partial(operator.is_not, None)


#: Plain decimal numbers, as both Python's Decimal and PostgreSQL's numeric read them.
#: (Decimal alone also takes "1_000", non-ASCII digits and "sNaN", which numeric may not.)
_NUMERIC_TEXT: Final = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*|NaN", re.A)


def _numeric_from(value: Any) -> Decimal:
    kind = type(value)
    if kind is float:
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("not a finite float")
        return Decimal(repr(value))
    if kind is str and _NUMERIC_TEXT.fullmatch(value):
        return Decimal(value)
    raise TypeError(kind.__name__)


def _iso_parser(parse: Callable[[str], Any]) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        # ASCII only: fromisoformat reads other scripts' digits, the server does not.
        if type(value) is str and value.isascii():
            return parse(value)
        raise TypeError(type(value).__name__)

    return convert


def _uuid_from(value: Any) -> uuid.UUID:
    if type(value) is str and value.isascii() and not value.startswith("urn:"):
        return uuid.UUID(value)
    if type(value) is bytes and len(value) == 16:  # Arrow's fixed_size_binary(16)
        return uuid.UUID(bytes=value)
    raise TypeError(type(value).__name__)


def _bytea_from(value: Any) -> bytes:
    if type(value) is str:
        return bytea_from_text(value)
    raise TypeError(type(value).__name__)


def _interval_from(value: Any) -> IntervalParts:
    if type(value) is str:
        return IntervalParts.from_iso(value)
    raise TypeError(type(value).__name__)


def json_array(value: Any) -> list[Any]:
    """
    An array given as JSON text (``[1, null, 3]``: how headwater's CSV writer and Arrow
    conversion store lists) → list; TypeError/ValueError for anything else. A PostgreSQL
    array literal starts with ``{``, or with ``[`` only for bounds (``[1:2]={1,2}``),
    which is not JSON: the two never meet.
    """
    if type(value) is str and value.startswith("["):
        parsed = json_loads(value)
        if type(parsed) is list:
            return parsed
    raise TypeError(type(value).__name__)


#: Given a function returning a fresh iterable over a column's non-None values (at least
#: one): whether the binary dumper writes them all exactly. Passes, not lists: C speed.
Check = Callable[[Callable[[], Iterable[Any]]], bool]


def _between(low: int, high: int) -> Check:
    def check(values: Callable[[], Iterable[Any]]) -> bool:
        return bool(low <= min(values()) and max(values()) <= high)

    return check


_FLOAT4_MAX: Final = 3.4028234663852886e38


def _float4_fits(values: Callable[[], Iterable[Any]]) -> bool:
    # The binary float4 dumper turns anything larger into an infinity without a word.
    return not any(_FLOAT4_MAX < abs(v) < float("inf") for v in values())


def _aware(values: Callable[[], Iterable[Any]]) -> bool:
    return None not in set(map(operator.attrgetter("tzinfo"), values()))


def _naive(values: Callable[[], Iterable[Any]]) -> bool:
    return set(map(operator.attrgetter("tzinfo"), values())) == {None}


_NONE = type(None)


@dataclasses.dataclass(frozen=True, slots=True)
class WriteRule:
    """What a binary COPY takes for one column type (see the comment above)."""

    #: Python types the binary dumper writes exactly as they are (None included).
    native: frozenset[type]
    #: For a value of any other type: the native value, or an exception (→ text COPY).
    convert: Callable[[Any], Any] | None = None
    #: Over the non-None (converted) values: whether the dumper writes them exactly.
    check: Check | None = None
    #: For an array type: the rule of its elements (no conversions inside arrays).
    element: WriteRule | None = None


def _rule(*native: type, convert: Any = None, check: Any = None) -> WriteRule:
    return WriteRule(frozenset({*native, _NONE}), convert, check)


_NUMBERS: Final = (int, bool)
_RULES: Final[Mapping[str, WriteRule]] = {
    "int2": _rule(*_NUMBERS, check=_between(-(2**15), 2**15 - 1)),
    "int4": _rule(*_NUMBERS, check=_between(-(2**31), 2**31 - 1)),
    # int8: a value beyond 64 bits raises OverflowError on the client (a clear error).
    "int8": _rule(*_NUMBERS),
    "float4": _rule(float, *_NUMBERS, check=_float4_fits),
    "float8": _rule(float, *_NUMBERS),
    "numeric": _rule(Decimal, int, convert=_numeric_from),
    "bool": _rule(bool),
    "date": _rule(dt.date, convert=_iso_parser(dt.date.fromisoformat)),
    "time": _rule(dt.time, convert=_iso_parser(dt.time.fromisoformat)),
    "timestamp": _rule(dt.datetime, convert=_iso_parser(dt.datetime.fromisoformat), check=_naive),
    "timestamptz": _rule(dt.datetime, convert=_iso_parser(dt.datetime.fromisoformat), check=_aware),
    "interval": _rule(dt.timedelta, IntervalParts, convert=_interval_from),
    "uuid": _rule(uuid.UUID, convert=_uuid_from),
    "bytea": _rule(bytes, bytearray, memoryview, convert=_bytea_from),
}

#: Scalar types a binary COPY can write (with the rules above; text, varchar and char(n)
#: take str, json and jsonb any JSON value or `JsonText`). Their arrays too.
_BINARY_WRITE: Final = frozenset(_oids([*_RULES, "text", "varchar", "bpchar", "json", "jsonb"]))


def _rules_by_oid() -> dict[int, WriteRule]:
    by_oid: dict[int, WriteRule] = {}
    for name in [*_RULES, "text", "varchar", "bpchar", "json", "jsonb"]:
        info = _TYPES[name]
        element = _RULES.get(name)
        if element is not None:
            by_oid[info.oid] = element
        by_oid[info.array_oid] = WriteRule(
            frozenset({list, _NONE}), convert=json_array, element=element
        )
    return by_oid


_RULES_BY_OID: Final = _rules_by_oid()


def binary_writable(type_oids: list[int]) -> bool:
    """Whether a binary COPY can write every one of these column types."""
    return all(oid in _BINARY_WRITE for oid in type_oids)


def write_rule(type_oid: int) -> WriteRule | None:
    """The binary-COPY rule of a column type (None: its dumper takes any value given)."""
    return _RULES_BY_OID.get(type_oid)


def elements_fit(rule: WriteRule, arrays: Iterable[Any]) -> bool:
    """Whether the binary array dumper writes these (non-None) array values exactly."""
    if rule.element is None:
        return True
    level = arrays
    while True:
        flat = list(itertools.chain.from_iterable(level))
        types = set(map(type, flat))
        if list in types:
            if types != {list}:  # ragged: a sub-array next to scalars or NULLs
                return False
            level = flat
            continue
        if not types <= rule.element.native:
            return False
        check = rule.element.check
        if check is None or types <= {_NONE}:
            return True
        return check(functools.partial(filter, NOT_NONE, flat))


def _json_fix(text_values: bool) -> tuple[frozenset[type], Callable[[Any], Any]]:
    if text_values:
        # A str is the column's text form: JSON text, written as it is.
        return frozenset({JsonText, str, _NONE}), _json_text_or_encode
    return frozenset({JsonText, _NONE}), _json_encode


def _json_encode(value: Any) -> JsonText:
    return value if type(value) is JsonText else JsonText(json_dumps(value))


def _json_text_or_encode(value: Any) -> JsonText | str:
    return value if isinstance(value, str) else JsonText(json_dumps(value))


def _bytea_text(value: Any) -> Any:
    return bytea_from_text(value) if type(value) is str else value


def _no_bool(value: Any) -> Any:
    # A text COPY writes True as "t", which no number column reads; binary wrote 1.
    return int(value) if type(value) is bool else value


def _interval_text(value: Any) -> Any:
    return value.iso() if type(value) is IntervalParts else value


def _uuid_text(value: Any) -> Any:
    return _uuid_from(value) if type(value) is bytes else value


def _array_text(value: Any) -> Any:
    if type(value) is str and value.startswith("["):
        try:
            return json_array(value)
        except (TypeError, ValueError):
            return value  # "[1:2]={1,2}": the literal's bounds, for the server
    return value


_TEMPORAL_NAMES: Final = frozenset({"date", "time", "timestamp", "timestamptz"})


def _bytea_array_text(value: Any) -> Any:
    """bytea[] elements given as text (base64 or ``\\x`` hex, as JSON writes bytes) → bytes."""
    if type(value) is not list:
        value = _array_text(value)  # a JSON array's text (a Parquet column) or a literal
        if type(value) is not list:
            return value
    return [_bytea_array_text(item) if type(item) is list else _bytea_text(item) for item in value]


def _json_array_literal(value: Any) -> Any:
    """
    A json[]/jsonb[] value for a text COPY: a list of documents (JsonText as it is, any
    other value encoded) as an array literal; a str is a literal already.
    """
    if type(value) is not list:
        return value
    items = []
    for item in value:
        if item is None:
            items.append("NULL")
        else:
            text = item if type(item) is JsonText else json_dumps(item)
            items.append('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(items) + "}"


def _temporal_array_text(value: Any) -> Any:
    """A list of dates/times and their text forms as a PostgreSQL array literal."""
    if type(value) is not list:
        return _array_text(value)
    flat: list[Any] = list(value)
    kinds: set[type] = set()
    while flat:
        kinds.update(map(type, flat))
        flat = [inner for item in flat if type(item) is list for inner in item]
    if len(kinds - {list, _NONE}) <= 1:
        return value  # one element type: psycopg dumps it
    return _array_literal(value)


def _array_literal(value: list[Any]) -> str:
    items = []
    for item in value:
        if item is None:
            items.append("NULL")
        elif type(item) is list:
            items.append(_array_literal(item))
        else:
            text = item.isoformat() if isinstance(item, dt.date | dt.time) else str(item)
            items.append('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(items) + "}"


def text_fix(
    type_oid: int, *, text_values: bool
) -> tuple[frozenset[type], Callable[[Any], Any]] | None:
    """
    For a text COPY into a column of this type: the Python types written as they are,
    and the conversion for any other value (which psycopg would dump by its Python type
    into a form the column does not read, or, for a json str, as its JSON text).
    """
    info = _TYPES.get(type_oid)
    name = info.name if info is not None else None
    if info is not None and type_oid == info.array_oid:
        if name in _TEMPORAL_NAMES:
            # Every list is looked at: one may mix dates with the text of dates Python
            # cannot hold ("infinity"), which psycopg cannot dump as one array.
            return frozenset({_NONE}), _temporal_array_text
        if name == "bytea":
            return frozenset({_NONE}), _bytea_array_text
        if name in ("json", "jsonb"):
            return frozenset({_NONE}), _json_array_literal
        return frozenset({list, _NONE}), _array_text
    if name in ("json", "jsonb"):
        return _json_fix(text_values)
    if name == "bytea":
        return frozenset({bytes, bytearray, memoryview, _NONE}), _bytea_text
    if name in ("int2", "int4", "int8", "float4", "float8", "numeric"):
        return frozenset({int, float, Decimal, str, _NONE}), _no_bool
    if name == "interval":
        return frozenset({dt.timedelta, str, _NONE}), _interval_text
    if name == "uuid":
        return frozenset({uuid.UUID, str, _NONE}), _uuid_text
    return None


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

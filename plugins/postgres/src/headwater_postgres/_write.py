"""
Writes: the statements one ``write`` call runs, records → COPY rows, and the COPY itself
as a flow (`_flows`: no I/O here; ``write`` and ``awrite`` drive the same flow).

One ``write`` runs this sequence inside one transaction::

    [CREATE TABLE ...]                    when the table is missing and a schema is given
    [TRUNCATE ...]                        mode="replace"
    [CREATE TEMP TABLE stage ...]         upsert_on: rows go to a stage first
    COPY target-or-stage (cols) FROM STDIN (FORMAT BINARY)
    [COPY target-or-stage (cols) FROM STDIN]      from the first batch a binary COPY
                                                  cannot write exactly (see `_values`)
    [INSERT INTO target SELECT DISTINCT ON (key) ... FROM stage ON CONFLICT (key) DO UPDATE]
    [CREATE TABLE IF NOT EXISTS schema.headwater_state ...; INSERT ... ON CONFLICT]
                                          state_key/state: the state, in the same commit

The columns written are those of the first records (missing keys in later records are
NULL; keys the table does not have are an error, raised before anything commits).
Records come as lists of dicts, `headwater.Batch` objects, or Arrow record batches and
tables (``pyarrow.RecordBatch`` / ``pyarrow.Table``, converted a column at a time).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import functools
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from operator import itemgetter
from typing import Any, Final

from psycopg import sql

from headwater import Batch, ConfigError, ConnectorError, HeadwaterError, State
from headwater.formats import CopyText
from headwater.toolkit import atomic_state_options
from headwater_postgres._flows import END, PULL, CopyRows, Flow, call, execute, within
from headwater_postgres._sql import Relation, split_name
from headwater_postgres._values import (
    JSON_ARRAY_OIDS,
    JSON_OIDS,
    NOT_NONE,
    IntervalParts,
    JsonText,
    WriteRule,
    binary_writable,
    elements_fit,
    json_dumps,
    pg_date_text,
    pg_time_text,
    pg_timestamp_text,
    pg_type_for,
    text_fix,
    write_rule,
)

CURRENT_SCHEMA = sql.SQL("SELECT current_schema()")

#: The table, in the target table's schema, holding states written with the data.
STATE_TABLE: Final = "headwater_state"

#: Rows per piece an Arrow table is cut into (one piece is converted at a time).
ARROW_PIECE_ROWS: Final = 10_000

Records = Batch | list[dict[str, Any]] | Any  # Any: pyarrow.RecordBatch / pyarrow.Table

_NONE = type(None)


def _names(value: Any, field: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value) and value:
        return list(value)
    raise ConfigError(f"{field} must be a column name or a list of them", field=field)


@dataclasses.dataclass(frozen=True)
class WriteSpec:
    """The options of one ``write`` call, validated."""

    stream: str
    schema: dict[str, Any] | None = None
    primary_key: list[str] | None = None
    upsert_on: list[str] | None = None
    mode: str = "append"
    text_values: bool = False
    state_key: str | None = None
    #: The caller's dict, read only when the write commits (`headwater.copy` fills it in
    #: as the batches pass).
    state: State | None = dataclasses.field(default=None, compare=False)

    @classmethod
    def from_options(
        cls, stream: str, options: dict[str, Any], allowed: frozenset[str]
    ) -> WriteSpec:
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise ConfigError(
                f"postgres: unknown write option(s): {', '.join(unknown)} "
                f"(known: {', '.join(sorted(allowed))})"
            )
        mode = options.get("mode", "append")
        if mode not in ("append", "replace"):
            raise ConfigError(
                f"write mode must be 'append' or 'replace', not {mode!r}", field="mode"
            )
        schema = options.get("schema")
        if schema is not None and (not isinstance(schema, dict) or not schema):
            raise ConfigError("schema must map column names to types", field="schema")
        if schema is not None:
            # Validate every declared type now, before any connection is made.
            for column, declared in schema.items():
                pg_type_for(declared, column)
        primary_key = _names(options.get("primary_key"), "primary_key")
        if primary_key and schema and any(k not in schema for k in primary_key):
            raise ConfigError("primary_key names a column the schema lacks", field="primary_key")
        text_values = options.get("text_values", False)
        if not isinstance(text_values, bool):
            raise ConfigError("text_values must be true or false", field="text_values")
        state_key, state = atomic_state_options(options)
        return cls(
            stream=stream,
            schema=dict(schema) if schema else None,
            primary_key=primary_key,
            upsert_on=_names(options.get("upsert_on"), "upsert_on"),
            mode=mode,
            text_values=text_values,
            state_key=state_key,
            state=state,
        )

    def create_sql(
        self, current_schema_row: Sequence[Any] | None, first: Any | None = None
    ) -> sql.Composed:
        """
        ``CREATE TABLE`` from the declared schema, or else from the types of the first
        records (``first``: `_infer`); NotFound when there is neither.
        """
        schema = self.schema
        if not schema and first is not None and not isinstance(first, CopyText):
            schema = infer_columns(first)
            missing = [k for k in self.primary_key or () if k not in schema]
            if missing:
                raise ConfigError(
                    f"primary_key names {missing[0]!r}, which the records do not have",
                    field="primary_key",
                )
        if not schema:
            from headwater import NotFound

            hint = "create it first, or pass schema={column: type} to create it"
            if isinstance(first, CopyText):
                hint = "COPY text carries no types: " + hint
            raise NotFound(f"no table {self.stream!r}", field="stream", hint=hint)
        schema_name, name = split_name(self.stream)
        if schema_name is None:
            schema_name = current_schema_row[0] if current_schema_row else None
        if schema_name is None:
            raise ConfigError("no current schema to create the table in; qualify the name")
        columns: list[sql.Composable] = [
            sql.SQL("{} {}").format(sql.Identifier(col), sql.SQL(pg_type_for(declared, col)))
            for col, declared in schema.items()
        ]
        if self.primary_key:
            columns.append(
                sql.SQL("PRIMARY KEY ({})").format(
                    sql.SQL(", ").join(map(sql.Identifier, self.primary_key))
                )
            )
        return sql.SQL("CREATE TABLE {} ({})").format(
            sql.Identifier(schema_name, name), sql.SQL(", ").join(columns)
        )


def infer_columns(first: Any) -> dict[str, str]:
    """Column types of a table created from its first records (see `_infer`)."""
    from headwater_postgres._infer import infer_arrow_columns, infer_dict_columns

    if _is_arrow(first):
        return infer_arrow_columns(first.schema)
    for record in first:
        if not isinstance(record, dict):
            raise ConfigError(f"records must be dicts, got {type(record).__name__}")
    return infer_dict_columns(first)


# --- the state stored with the data --------------------------------------------------------

_STATE_EXISTS: Final = sql.SQL(
    "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')"
)


def state_exists_query(schema: str) -> tuple[sql.SQL, tuple[str, str]]:
    """Whether ``schema.headwater_state`` exists (a row when it does)."""
    return _STATE_EXISTS, (schema, STATE_TABLE)


def create_state_sql(schema: str) -> sql.Composed:
    """The state table; only created when missing (creating needs CREATE on the schema)."""
    return sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (key text PRIMARY KEY, stream text NOT NULL, "
        "state jsonb NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())"
    ).format(sql.Identifier(schema, STATE_TABLE))


def store_state_query(
    relation: Relation, key: str, state: State
) -> tuple[sql.Composed, tuple[str, str, str]]:
    """The upsert of ``state`` under ``key``; the state is serialized now."""
    try:
        text = json_dumps(state)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ConfigError(f"state must be JSON-serializable: {exc}", field="state") from None
    statement = sql.SQL(
        "INSERT INTO {} (key, stream, state) VALUES (%s, %s, %s::jsonb) "
        "ON CONFLICT (key) DO UPDATE SET stream = EXCLUDED.stream, state = EXCLUDED.state, "
        "updated_at = now()"
    ).format(sql.Identifier(relation.schema, STATE_TABLE))
    return statement, (key, relation.display, text)


def read_state_query(relation: Relation, key: str) -> tuple[sql.Composed, tuple[str, str]]:
    """The state stored under ``key`` for this table (the stream is checked too)."""
    statement = sql.SQL("SELECT state FROM {} WHERE key = %s AND stream = %s").format(
        sql.Identifier(relation.schema, STATE_TABLE)
    )
    return statement, (key, relation.display)


def state_from(row: Sequence[Any] | None) -> State | None:
    """The state of a `read_state_query` row."""
    if row is None:
        return None
    state = row[0]
    if not isinstance(state, dict):
        raise ConnectorError(f"{STATE_TABLE} holds a state that is not a JSON object")
    return state


# --- records → columns -----------------------------------------------------------------------


def _is_arrow(value: Any) -> bool:
    return type(value).__module__.startswith("pyarrow")


def _arrow_values(array: Any, oid: int) -> list[Any]:
    """One Arrow column as the Python values a COPY of a column of type ``oid`` takes."""
    import pyarrow as pa

    storage = array.type
    if isinstance(storage, pa.BaseExtensionType):
        storage = storage.storage_type
    if pa.types.is_dictionary(storage):
        storage = storage.value_type
    if array.type == storage:  # plain (no extension, no dictionary): look at the integers
        temporal = _temporal_values(array, storage)
        if temporal is not None:
            return temporal
        if pa.types.is_list(storage):
            whole = pa.concat_arrays([array])  # offset 0: values and offsets line up
            elements = _temporal_values(whole.values, storage.value_type)
            if elements is not None:
                offsets = whole.offsets.to_pylist()
                return [
                    None if null else elements[offsets[i] : offsets[i + 1]]
                    for i, null in enumerate(whole.is_null().to_pylist())
                ]
    values: list[Any] = array.to_pylist()
    if oid in JSON_OIDS and (
        pa.types.is_string(storage)
        or pa.types.is_large_string(storage)
        or getattr(pa.types, "is_string_view", bool)(storage)  # pyarrow >= 16
    ):
        # headwater's Arrow reads carry json/jsonb as their text: JSON already.
        return [None if v is None else JsonText(v) for v in values]
    element = storage.value_type if pa.types.is_list(storage) else None
    if isinstance(element, pa.BaseExtensionType):  # the driver's arrow.json (canonical)
        element = element.storage_type
    if oid in JSON_ARRAY_OIDS and element is not None and pa.types.is_string(element):
        # json[] / jsonb[] from the ADBC driver: lists of the documents' text.
        return [
            None if v is None else [None if d is None else JsonText(d) for d in v] for v in values
        ]
    if pa.types.is_interval(storage):
        return [None if v is None else IntervalParts.from_month_day_nano(v) for v in values]
    return values


#: Python's date / datetime / time range, in days and µs since 1970 (Arrow's epoch).
_PY_DAYS: Final = (-719_162, 2_932_896)
_PY_MICROS: Final = (-62_135_596_800_000_000, 253_402_300_799_999_999)
_DAY_MICROS: Final = 86_400_000_000
_UNIX_DATE: Final = dt.date(1970, 1, 1)
_UNIX: Final = dt.datetime(1970, 1, 1)
_UNIX_UTC: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _temporal_values(array: Any, storage: Any) -> list[Any] | None:
    """
    A date32 / timestamp[us] / time64[us] column holding values Python's types cannot
    (BC, after 9999, ±infinity as the type's extreme values, time 24:00) as Python
    values where they can be and PostgreSQL's text elsewhere, which a text COPY parses;
    None when every value fits (``to_pylist`` is exact then). ``to_pylist`` would raise
    on the others, or for a time of 24:00 silently give 00:00.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from headwater_postgres._arrow import DATE_SHIFT, TIMESTAMP_SHIFT

    if pa.types.is_date32(storage):
        low, high = _PY_DAYS
        ints = array.view(pa.int32())
    elif pa.types.is_timestamp(storage) and storage.unit == "us":
        low, high = _PY_MICROS
        ints = array.view(pa.int64())
    elif pa.types.is_time64(storage) and storage.unit == "us":
        low, high = 0, _DAY_MICROS - 1
        ints = array.view(pa.int64())
    else:
        return None
    bounds = pc.min_max(ints).as_py()
    if bounds["min"] is None or (low <= bounds["min"] and bounds["max"] <= high):
        return None
    out: list[Any] = []
    for value in ints.to_pylist():
        if value is None:
            out.append(None)
        elif pa.types.is_date32(storage):
            if low <= value <= high:
                out.append(_UNIX_DATE + dt.timedelta(days=value))
            elif value in (2**31 - 1, -(2**31)):
                out.append("infinity" if value > 0 else "-infinity")
            else:
                out.append(pg_date_text(value - DATE_SHIFT))
        elif pa.types.is_timestamp(storage):
            utc = storage.tz is not None
            if low <= value <= high:
                out.append((_UNIX_UTC if utc else _UNIX) + dt.timedelta(microseconds=value))
            elif value in (2**63 - 1, -(2**63)):
                out.append("infinity" if value > 0 else "-infinity")
            else:
                out.append(pg_timestamp_text(value - TIMESTAMP_SHIFT, utc=utc))
        elif value <= high:
            out.append((_UNIX + dt.timedelta(microseconds=value)).time())
        else:
            out.append(pg_time_text(value))
    return out


class _Chunk:
    """One batch of records as columns: values per column, and rows for COPY."""

    count: int

    def column(self, index: int) -> Iterable[Any]:
        raise NotImplementedError

    def rows(self, patches: dict[int, list[Any]]) -> Iterator[Sequence[Any]]:
        """Row tuples in column order, with the columns in ``patches`` replaced."""
        raise NotImplementedError

    def validate(self) -> None:
        """Raise the records' shape error, if any (a fast path may have skipped it)."""


class _DictChunk(_Chunk):
    """
    Dict records. The common case (every record has exactly the columns) reads each
    column and builds each row tuple with C-level passes (``map(itemgetter, rows)``), made
    one at a time as COPY consumes them: no Python code per row, and no second copy of
    the batch alive (which would cost more in garbage-collector passes than in work).
    """

    def __init__(self, records: list[dict[str, Any]], columns: list[str]) -> None:
        self.count = len(records)
        self._records = records
        self._columns = columns
        self._tuples: list[tuple[Any, ...]] | None = None
        try:
            regular = set(map(len, records)) == {len(columns)}
        except TypeError:  # a record without a length: no dict
            regular = False
        if not regular:
            # Records with fewer keys (NULLs) or bad ones: one tuple per record, checked.
            # (A record of the right length that is no dict, or has other keys, fails in
            # itemgetter; `RowWriter.failure` then calls `validate` to say why.)
            self._tuples = list(map(self._tuple, records))

    def _tuple(self, record: Any) -> tuple[Any, ...]:
        if not isinstance(record, dict):
            raise ConfigError(f"records must be dicts, got {type(record).__name__}")
        extra = record.keys() - set(self._columns)
        if extra:
            raise ConfigError(
                f"a record has field(s) {sorted(extra)} that the first records did not have "
                f"(columns: {self._columns})",
                field="records",
            )
        return tuple(record.get(c) for c in self._columns)

    def validate(self) -> None:
        if self._tuples is None:
            for record in self._records:
                self._tuple(record)

    def column(self, index: int) -> Iterable[Any]:
        if self._tuples is not None:
            return map(itemgetter(index), self._tuples)
        return map(itemgetter(self._columns[index]), self._records)

    def rows(self, patches: dict[int, list[Any]]) -> Iterator[Sequence[Any]]:
        tuples: Iterable[Any]
        if self._tuples is not None:
            tuples = self._tuples
        elif len(self._columns) == 1:
            tuples = zip(map(itemgetter(self._columns[0]), self._records))
        else:
            tuples = map(itemgetter(*self._columns), self._records)
        if not patches:
            return iter(tuples)
        return _patched(tuples, patches)


def _patched(tuples: Iterable[Any], patches: dict[int, list[Any]]) -> Iterator[list[Any]]:
    columns = list(patches.items())
    for n, values in enumerate(tuples):
        row = list(values)
        for i, patch in columns:
            row[i] = patch[n]
        yield row


class _ArrowChunk(_Chunk):
    """An Arrow record batch: each column converted once (``to_pylist``), rows zipped."""

    def __init__(self, batch: Any, columns: list[str], oids: list[int]) -> None:
        names: list[str] = list(batch.schema.names)
        unknown = [n for n in names if n not in columns]
        if unknown:
            raise ConfigError(
                f"an Arrow batch has column(s) {unknown} that the first records did not have "
                f"(columns: {columns})",
                field="records",
            )
        self.count = int(batch.num_rows)
        self._lists = [
            _arrow_values(batch.column(names.index(name)), oid)
            if name in names
            else [None] * self.count
            for name, oid in zip(columns, oids, strict=True)
        ]

    def column(self, index: int) -> Iterable[Any]:
        return self._lists[index]

    def rows(self, patches: dict[int, list[Any]]) -> Iterator[Sequence[Any]]:
        return zip(*(patches.get(i, values) for i, values in enumerate(self._lists)), strict=True)


@dataclasses.dataclass(frozen=True, slots=True)
class Prepared:
    """One batch ready for COPY: its rows (made as COPY consumes them), and which COPY."""

    rows: Iterator[Sequence[Any]]
    count: int
    #: True: the rows are for a text-format COPY, False: for a binary one.
    text: bool
    #: COPY text rows to send as they are (`CopyText` from another PostgreSQL read).
    data: bytes | None = None


#: What a COPY error's context says: ``COPY t, line 3, column n: "abc"``.
_COPY_CONTEXT: Final = re.compile(r"^COPY .*?, line (?P<line>\d+)(?:, column (?P<rest>.*))?$")


class RowWriter:
    """Turns records into COPY rows for one relation; see the module docstring."""

    def __init__(self, spec: WriteSpec, relation: Relation) -> None:
        self.spec = spec
        self.relation = relation
        self.columns: list[str] = []
        #: Records handed to COPY so far (the write's result when it commits).
        self.written = 0
        #: Whether the COPY is (from now on) text format; it never goes back to binary.
        self.text = spec.text_values
        self._stage = sql.Identifier(f"headwater_stage_{uuid.uuid4().hex[:12]}")
        self._oids: list[int] = []
        self._types: list[str] = []
        self._rules: list[tuple[int, WriteRule]] = []
        self._text_fixes: list[tuple[int, frozenset[type], Callable[[Any], Any]]] = []
        self._segment_start = 0
        self._batch_start = 0
        self._chunk: _Chunk | None = None
        self._patches: dict[int, list[Any]] = {}

    # --- statements -------------------------------------------------------------------

    def before(self) -> list[sql.Composed]:
        statements = []
        if self.spec.mode == "replace":
            statements.append(sql.SQL("TRUNCATE {}").format(self.relation.ident))
        if self.spec.upsert_on:
            statements.append(
                sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
                    self._stage, self.relation.ident
                )
            )
        return statements

    @property
    def copy_sql(self) -> sql.Composed:
        target = self._stage if self.spec.upsert_on else self.relation.ident
        fmt = sql.SQL("" if self.text else " (FORMAT BINARY)")
        return sql.SQL("COPY {} ({}) FROM STDIN{}").format(
            target, sql.SQL(", ").join(map(sql.Identifier, self.columns)), fmt
        )

    def after(self) -> list[sql.Composed]:
        keys = self.spec.upsert_on
        if not keys or not self.columns:
            return []
        cols = sql.SQL(", ").join(map(sql.Identifier, self.columns))
        key_list = sql.SQL(", ").join(map(sql.Identifier, keys))
        others = [c for c in self.columns if c not in keys]
        action: sql.Composable
        if others:
            action = sql.SQL("DO UPDATE SET {}").format(
                sql.SQL(", ").join(
                    sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c))
                    for c in others
                )
            )
        else:
            action = sql.SQL("DO NOTHING")
        # DISTINCT ON keeps the last record per key (ctid follows insertion order in a
        # fresh temp table): the same key twice in one write is an update, not an error.
        return [
            sql.SQL(
                "INSERT INTO {target} ({cols}) SELECT DISTINCT ON ({keys}) {cols} FROM {stage} "
                "ORDER BY {keys}, ctid DESC ON CONFLICT ({keys}) {action}"
            ).format(
                target=self.relation.ident,
                cols=cols,
                keys=key_list,
                stage=self._stage,
                action=action,
            )
        ]

    # --- rows ---------------------------------------------------------------------------

    def start(self, first: list[dict[str, Any]] | Any) -> None:
        """Fix the columns from the first records; check them against the table."""
        seen: dict[str, None] = {}
        if isinstance(first, CopyText):
            # COPY text from another read: the server parses every value by column type.
            seen.update(dict.fromkeys(first.columns))
            self.text = True
        elif _is_arrow(first):
            arrow: Any = first
            seen.update(dict.fromkeys(arrow.schema.names))
        else:
            for record in first:
                if not isinstance(record, dict):
                    raise ConfigError(f"records must be dicts, got {type(record).__name__}")
                seen.update(dict.fromkeys(record))
        by_name = {c.name: c for c in self.relation.columns}
        unknown = [c for c in seen if c not in by_name]
        if unknown:
            raise ConfigError(
                f"{self.relation.display} has no column {unknown[0]!r}", field="records"
            )
        for key in self.spec.upsert_on or ():
            if key not in seen:
                raise ConfigError(
                    f"upsert_on column {key!r} is not in the records", field="upsert_on"
                )
        if not seen:
            raise ConfigError("the records have no fields", field="records")
        self.columns = list(seen)
        columns = [by_name[c] for c in self.columns]
        self._oids = [c.base_oid or c.type_oid for c in columns]
        self._types = [c.type for c in columns]
        if not binary_writable(self._oids):
            # enums, inet, ranges, ...: only their text form is known on the client.
            self.text = True
        self._rules = [
            (i, rule) for i, oid in enumerate(self._oids) if (rule := write_rule(oid)) is not None
        ]
        self._text_fixes = [
            (i, *fix)
            for i, oid in enumerate(self._oids)
            if (fix := text_fix(oid, text_values=self.spec.text_values)) is not None
        ]

    def prepare(self, records: list[dict[str, Any]] | Any | None) -> Prepared | None:
        """
        The next batch's COPY rows (None: no batch). Decides the COPY format first: a
        batch holding a value the binary COPY cannot write exactly turns the write into a
        text COPY from this batch on (the caller starts a new COPY statement).
        """
        if records is None:
            return None
        if isinstance(records, CopyText):
            if list(records.columns) != self.columns:
                raise ConfigError(
                    f"COPY rows of columns {list(records.columns)} after rows of {self.columns}",
                    field="records",
                )
            self._chunk, self._batch_start = None, self.written
            return Prepared(iter(()), records.num_rows, True, data=records.data)
        chunk: _Chunk = (
            _ArrowChunk(records, self.columns, self._oids)
            if _is_arrow(records)
            else _DictChunk(records, self.columns)
        )
        self._chunk, self._batch_start = chunk, self.written
        patches = None if self.text else self._binary_patches(chunk)
        if patches is None:
            self.text = True
            patches = self._text_patches(chunk)
        self._patches = patches
        return Prepared(chunk.rows(patches), chunk.count, self.text)

    def begin(self, copy: Any) -> None:
        """A COPY statement starts: tell a binary one the column types (it carries none)."""
        self._segment_start = self.written
        if not self.text:
            copy.set_types(self._oids)

    def wrote(self, prepared: Prepared) -> None:
        """The rows of ``prepared`` went to COPY."""
        self.written += prepared.count

    def _binary_patches(self, chunk: _Chunk) -> dict[int, list[Any]] | None:
        """
        Per column, the values a binary COPY writes exactly (converted where needed), or
        None when some value cannot be: a text COPY must take this batch.

        Text (rather than an error) because that makes the whole class of mismatches go
        away: whatever the Python type of a value — a CSV's strings, a JSON file's ISO
        dates, an Arrow int64 into an int4 column — the server parses its text form by
        the column type, exactly as it would read it in an INSERT, and what it cannot
        parse fails with the column and line in the error. Detecting per batch, not
        just on the first, covers streams whose value types change part-way.
        """
        patches: dict[int, list[Any]] = {}
        for i, rule in self._rules:
            column: Callable[[], Iterable[Any]] = functools.partial(chunk.column, i)
            if rule.check is not None or rule.element is not None:
                # Several passes ahead: reading the values out of the records once is
                # cheaper than once per pass (most of a pass is the dict lookups).
                values = list(chunk.column(i))
                column = functools.partial(iter, values)
            types = set(map(type, column()))
            if not types <= rule.native:
                if rule.convert is None:
                    return None
                native, convert = rule.native, rule.convert
                try:
                    patch = [v if type(v) in native else convert(v) for v in column()]
                except Exception:  # any value the client cannot convert: the server will
                    return None
                patches[i] = patch
                types = set(map(type, patch))
                column = functools.partial(iter, patch)
            if types <= {_NONE} or (rule.check is None and rule.element is None):
                continue
            present = column if _NONE not in types else _present(column)
            if rule.element is not None and not elements_fit(rule, present()):
                return None
            if rule.check is not None and not rule.check(present):
                return None
        return patches

    def _text_patches(self, chunk: _Chunk) -> dict[int, list[Any]]:
        patches: dict[int, list[Any]] = {}
        for i, native, fix in self._text_fixes:
            if set(map(type, chunk.column(i))) <= native:
                continue
            values = list(chunk.column(i))
            try:
                patches[i] = [None if v is None else fix(v) for v in values]
            except Exception as exc:
                n = next(n for n, v in enumerate(values) if v is not None and _fails(fix, v))
                raise self._value_error(self._batch_start + n + 1, i, values[n], exc) from None
        return patches

    # --- failures -------------------------------------------------------------------------

    def failure(self, exc: BaseException, context: Any, target: str) -> HeadwaterError | None:
        """
        ``exc`` said in terms of the records, when it is about one value: the record's
        number in this write (1 = the first record), its column and the column's type.
        ``context`` is the adapters' context (a connection or an AdaptersMap).
        """
        if isinstance(exc, HeadwaterError):
            return None
        import psycopg

        if isinstance(exc, psycopg.Error) and exc.sqlstate is not None:
            return self._server_failure(exc, target)
        chunk = self._chunk
        if chunk is None:
            return None
        if isinstance(exc, KeyError | TypeError):
            try:
                chunk.validate()  # records with other keys than the first ones' fail here
            except ConfigError as shape:
                return shape
        if isinstance(exc, psycopg.OperationalError) or not isinstance(
            exc, TypeError | ValueError | ArithmeticError | psycopg.Error
        ):
            return None
        found = self._unwritable(chunk, context)
        if found is None:
            return None
        n, i, value, error = found
        return self._value_error(self._batch_start + n + 1, i, value, error)

    def _server_failure(self, exc: Any, target: str) -> HeadwaterError | None:
        sqlstate: str = exc.sqlstate
        if not sqlstate.startswith(("22", "23")):
            return None
        context = (exc.diag.context or "").strip().splitlines()
        match = _COPY_CONTEXT.match(context[0]) if context else None
        if match is None:
            return None
        record = self._segment_start + int(match["line"])
        where = f"record {record}"
        rest = match["rest"] or ""
        # The context names the column as it is, then ": value" in a text COPY: match
        # it against our column names rather than parse a name that may hold ": ".
        for i, name in sorted(enumerate(self.columns), key=lambda c: -len(c[1])):
            if rest == name or rest.startswith(name + ": "):
                where += f", column {name!r} ({self._types[i]})"
                break
        kind = "invalid data" if sqlstate.startswith("22") else "constraint violated"
        primary = " ".join((exc.diag.message_primary or str(exc)).split())
        return ConnectorError(
            f"{target}: {kind} writing {self.relation.display}, {where}: {primary}",
            hint=None
            if self.spec.text_values or not sqlstate.startswith("22")
            else "the server could not read the value as the column's type; nothing was written",
        )

    def _unwritable(self, chunk: _Chunk, context: Any) -> tuple[int, int, Any, Exception] | None:
        """The first value of the batch that psycopg cannot dump for this COPY, if any."""
        from psycopg.adapt import PyFormat, Transformer
        from psycopg.pq import Format

        formats = [PyFormat.TEXT if self.text else PyFormat.BINARY]
        dumpers = []
        for oid in self._oids:
            tx = Transformer(context)
            if not self.text:
                tx.set_dumper_types([oid], Format.BINARY)
            dumpers.append(tx)
        for n, row in enumerate(chunk.rows(self._patches)):
            for i, value in enumerate(row):
                if value is None:
                    continue
                try:
                    dumpers[i].dump_sequence([value], formats)
                except Exception as exc:
                    return n, i, value, exc
        return None

    def _value_error(self, record: int, index: int, value: Any, exc: Exception) -> ConnectorError:
        kind = type(value).__name__
        column = self.columns[index]
        hint = (
            "pass text_values=True when every value is the column type's text form "
            "(a CSV file, say)"
            if isinstance(value, str) and not self.spec.text_values
            else f"give a value that a {self._types[index]} column takes"
        )
        detail = " ".join(str(exc).split()) or type(exc).__name__
        return ConnectorError(
            f"cannot write record {record} into {self.relation.display}: column {column!r} "
            f"({self._types[index]}) cannot take the {kind} value given ({detail})",
            field="records",
            hint=hint,
        )


def _present(column: Callable[[], Iterable[Any]]) -> Callable[[], Iterable[Any]]:
    """A column's values without its NULLs, as a fresh iterable on every call."""
    return lambda: filter(NOT_NONE, column())


def _fails(fix: Callable[[Any], Any], value: Any) -> bool:
    try:
        fix(value)
    except Exception:
        return True
    return False


# --- batches → records ---------------------------------------------------------------------


def _pieces(batch: Records) -> list[Any]:
    """The record lists / Arrow record batches of one input batch."""
    if isinstance(batch, Batch):
        records: Any = batch.records
        if isinstance(records, list | CopyText) or _is_arrow(records):
            return _pieces(records)
        return [batch.rows()]
    if isinstance(batch, list | CopyText):
        return [batch]
    if _is_arrow(batch):
        import pyarrow as pa

        if isinstance(batch, pa.RecordBatch):
            return [batch]
        if isinstance(batch, pa.Table):
            pieces: list[Any] = batch.to_batches(max_chunksize=ARROW_PIECE_ROWS)
            return pieces
    raise ConfigError(
        "write takes batches: lists of dicts, headwater.Batch, pyarrow.RecordBatch or "
        f"pyarrow.Table; got {type(batch).__name__}"
    )


def _size(piece: Any) -> int:
    return int(piece.num_rows) if _is_arrow(piece) else len(piece)


def text_values_option(first: Any, options: dict[str, Any]) -> dict[str, Any]:
    """
    A stream whose first batch says its values are text (``Batch.text``: a CSV source)
    is written as ``text_values=True`` unless the caller said otherwise, so a CSV file
    copied into a table is parsed by column type (a jsonb column's text as JSON, not as
    a JSON string).
    """
    if isinstance(first, Batch) and first.text and "text_values" not in options:
        return {**options, "text_values": True}
    return options


_UNSET: Final = object()


class Pieces:
    """
    The record pieces (lists of dicts, Arrow record batches, COPY text) of a write's
    batches, `PULL`ed from the driver as the COPY asks for them. ``first`` is the batch
    pulled already (`END`: none).
    """

    def __init__(self, first: Any) -> None:
        self._held = first
        self._pending: collections.deque[Any] = collections.deque()
        self._first: Any = _UNSET

    def next(self) -> Flow[Any | None]:
        """The next piece; None after the last."""
        while not self._pending:
            batch = (yield PULL) if self._held is _UNSET else self._held
            self._held = _UNSET
            if batch is END:
                self._held = END
                return None
            self._pending.extend(_pieces(batch))
        return self._pending.popleft()

    def first(self) -> Flow[Any | None]:
        """The first non-empty piece (None: none); the same one when asked again."""
        if self._first is _UNSET:
            piece = yield from self.next()
            while piece is not None and not _size(piece):
                piece = yield from self.next()
            self._first = piece
        return self._first


def copy(
    conn: Any,
    writer: RowWriter,
    first: Any,
    pieces: Pieces,
    queue: Callable[[Any], Any] | None,
) -> Flow[None]:
    """
    COPY ``first`` and every piece after it: binary while it can be, then text to the
    end, one COPY statement per format. ``queue`` makes the COPY writer that sends in a
    worker thread while this one formats rows (None: psycopg's plain writer).
    """
    from headwater_postgres._jsonl import SETTINGS

    if isinstance(first, CopyText):
        # The text forms were written under these settings (see `_read_copy`).
        for setting in SETTINGS:
            yield execute(conn, setting)
    pending = writer.prepare(first)

    def statements(cur: Any) -> Flow[None]:
        next_: Prepared | None = pending
        while next_ is not None:
            # Waiting for the server (indexes, WAL) then overlaps with our work instead of
            # alternating with it. Not for COPY text passed through: there is no
            # formatting to overlap, and psycopg's queue would hold up to 1,024 pieces of
            # 128 KiB while the destination is slower than the source (memory grew with
            # the row count).
            queued = None if queue is None or next_.data is not None else queue(cur)
            statement = cur.copy(writer.copy_sql, writer=queued)
            body = functools.partial(_copy_statement, writer, next_, pieces)
            next_ = yield from within(statement, body)

    yield from within(conn.cursor(), statements)


def _copy_statement(
    writer: RowWriter, pending: Prepared, pieces: Pieces, copy: Any
) -> Flow[Prepared | None]:
    """One COPY statement: the pieces of ``pending``'s format; the first of the other."""
    writer.begin(copy)
    text = pending.text
    next_: Prepared | None = pending
    while next_ is not None and next_.text == text:
        if next_.data is not None:
            yield call(copy, "write", next_.data)
        else:
            yield CopyRows(copy, next_.rows)
        writer.wrote(next_)
        next_ = writer.prepare((yield from pieces.next()))
    return next_

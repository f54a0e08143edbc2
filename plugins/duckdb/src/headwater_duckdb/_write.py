"""
Writes: the options of one ``write`` call and the statements it runs (over a DuckDB
cursor), all inside one transaction::

    [CREATE TABLE ...]                  create=True (types from the batches) or schema={...}
    [DELETE FROM table]                 mode="replace"
    INSERT INTO table (cols) SELECT cols FROM <the batch, scanned as Arrow>
        [QUALIFY ... ON CONFLICT (key) DO UPDATE SET ...]      upsert_on: the last row wins
    [CREATE TABLE IF NOT EXISTS schema.headwater_state ...; INSERT ... ON CONFLICT]
                                        state_key/state: the state, in the same commit

Every batch becomes Arrow before DuckDB sees it: Arrow batches as they are, dicts through
`headwater.formats.arrow_from_records`. DuckDB then scans the Arrow data itself; no
Python object is built per value. Each batch's DuckDB types are checked against the
table's before it is inserted (`_types.check_target`), so nothing is cast silently.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final

from headwater import Batch, ConfigError, NotFound, State
from headwater.formats import arrow_from_records, json_default
from headwater.toolkit import atomic_state_options
from headwater_duckdb._sql import STATE_TABLE, Relation, one, qualified, quote_ident, run
from headwater_duckdb._types import (
    ValueCheck,
    check_target,
    create_type,
    prepare_arrow,
    text_pattern,
)

if TYPE_CHECKING:
    import duckdb

WRITE_OPTIONS: Final = frozenset(
    {"mode", "create", "schema", "primary_key", "upsert_on", "state_key", "state"}
)
#: How many batches a new table's column types may be looked for in, when the first
#: batches hold only NULLs in a column (those batches are held in memory meanwhile).
LOOKAHEAD_BATCHES: Final = 8
#: The name a batch is registered under for the statements that scan it.
BATCH_VIEW: Final = "headwater_batch"
_SEQ: Final = "__headwater_seq"

#: Python types a declared schema may name, and the DuckDB type each becomes.
PYTHON_TYPES: Final = {
    "int": "BIGINT",
    "float": "DOUBLE",
    "str": "VARCHAR",
    "bool": "BOOLEAN",
    "bytes": "BLOB",
    "date": "DATE",
    "datetime": "TIMESTAMP WITH TIME ZONE",
    "time": "TIME",
    "timedelta": "INTERVAL",
    "UUID": "UUID",
    "dict": "JSON",
    "list": "JSON",
}


def _names(value: Any, field: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(f"{field} must be a column name or a list of them", field=field)


def declared_type(column: str, declared: Any) -> str:
    """A declared column type: a DuckDB type name, or a Python type."""
    if isinstance(declared, str) and declared.strip():
        return declared.strip()
    name = getattr(declared, "__name__", None)
    if isinstance(declared, type) and name in PYTHON_TYPES:
        return PYTHON_TYPES[name]
    raise ConfigError(
        f"schema: column {column!r} has type {declared!r}; give a DuckDB type name "
        f"('DECIMAL(12,2)', 'TIMESTAMPTZ') or one of {', '.join(sorted(PYTHON_TYPES))}",
        field="schema",
    )


@dataclasses.dataclass(frozen=True)
class WriteSpec:
    """The options of one ``write`` call, validated."""

    stream: str
    mode: str = "append"
    create: bool = False
    schema: dict[str, str] | None = None
    primary_key: list[str] | None = None
    upsert_on: list[str] | None = None
    state_key: str | None = None
    #: The caller's dict, read only when the write commits (`headwater.copy` fills it in
    #: as the batches pass).
    state: State | None = dataclasses.field(default=None, compare=False)

    @classmethod
    def from_options(cls, stream: str, options: dict[str, Any]) -> WriteSpec:
        unknown = sorted(set(options) - WRITE_OPTIONS)
        if unknown:
            raise ConfigError(
                f"duckdb: unknown write option(s): {', '.join(unknown)} "
                f"(known: {', '.join(sorted(WRITE_OPTIONS))})"
            )
        mode = options.get("mode", "append")
        if mode not in ("append", "replace"):
            raise ConfigError(
                f"write mode must be 'append' or 'replace', not {mode!r} (upsert: upsert_on=...)",
                field="mode",
            )
        create = options.get("create", False)
        if not isinstance(create, bool):
            raise ConfigError("create must be true or false", field="create")
        schema = options.get("schema")
        if schema is not None and (not isinstance(schema, dict) or not schema):
            raise ConfigError("schema must map column names to types", field="schema")
        declared = {str(k): declared_type(str(k), v) for k, v in (schema or {}).items()}
        primary_key = _names(options.get("primary_key"), "primary_key")
        upsert_on = _names(options.get("upsert_on"), "upsert_on")
        if primary_key and declared and any(k not in declared for k in primary_key):
            raise ConfigError("primary_key names a column the schema lacks", field="primary_key")
        if upsert_on and mode == "replace":
            raise ConfigError(
                "upsert_on and mode='replace' exclude each other: a replaced table is empty",
                field="upsert_on",
            )
        state_key, state = atomic_state_options(options)
        return cls(
            stream=stream,
            mode=mode,
            create=create,
            schema=declared or None,
            primary_key=primary_key,
            upsert_on=upsert_on,
            state_key=state_key,
            state=state,
        )


@dataclasses.dataclass
class Piece:
    """One batch as Arrow, and how it came."""

    table: Any  # pyarrow.Table or RecordBatch
    #: Every value is the text form of its type (a CSV's): parsed by column type.
    text: bool
    #: Converted from dicts here (its types were inferred from this batch's values).
    from_records: bool


def pieces(batches: Iterable[Any]) -> Iterator[Piece]:
    """Each batch as Arrow (`Piece`), empty ones skipped."""
    for batch in batches:
        text = False
        records = batch
        if isinstance(batch, Batch):
            text, records = batch.text, batch.records
        if isinstance(records, list):
            if not records:
                continue
            yield Piece(arrow_from_records(records), text, True)
        elif type(records).__module__.startswith("pyarrow"):
            if records.num_rows:
                yield Piece(records, text, False)
        else:
            # Encoded forms (JSON Lines, COPY text) another connector made: as records.
            rows = batch.rows() if isinstance(batch, Batch) else list(records)
            if rows:
                yield Piece(arrow_from_records(rows), text, True)


class Writer:
    """The statements of one write on one cursor (inside the caller's transaction)."""

    def __init__(self, cur: duckdb.DuckDBPyConnection, spec: WriteSpec) -> None:
        self.cur = cur
        self.spec = spec
        self.written = 0

    # --- the incoming batch -------------------------------------------------------------

    def describe(self, piece: Piece) -> list[tuple[str, str]]:
        """``(column, DuckDB type)`` of the registered batch, as DuckDB scans it."""
        import duckdb

        try:
            rows = self.cur.execute(f"DESCRIBE SELECT * FROM {BATCH_VIEW}").fetchall()  # noqa: S608 - identifiers quoted (quote_ident)
        except duckdb.NotImplementedException as exc:
            raise _unscannable(self.cur, piece.table, exc) from None
        return [(str(r[0]), str(r[1])) for r in rows]

    def register(self, piece: Piece) -> None:
        import duckdb

        piece.table = prepare_arrow(piece.table)
        try:
            self.cur.register(BATCH_VIEW, piece.table)
        except duckdb.NotImplementedException as exc:
            raise _unscannable(self.cur, piece.table, exc) from None

    def unregister(self) -> None:
        # After a failed statement DuckDB refuses even this (the transaction is aborted);
        # the failure that matters is already on its way up, and the cursor is closed next.
        with contextlib.suppress(Exception):
            self.cur.unregister(BATCH_VIEW)

    # --- creating the table ---------------------------------------------------------------

    def create(
        self, database: str, schema: str, name: str, first: list[Piece], display: str
    ) -> None:
        """``CREATE TABLE`` from the declared schema or from the first batches' types."""
        spec = self.spec
        columns: dict[str, str] = {}
        if spec.schema:
            columns = dict(spec.schema)
        elif not spec.create:
            raise NotFound(
                f"no table {display!r}",
                field="stream",
                hint="create it first, or write with create=True (-W create=true) to create "
                "it from the records' types, or with schema={column: type}",
            )
        elif not first:
            raise ConfigError(
                f"no table {display!r} and no records to take its columns from",
                field="schema",
                hint="pass schema={column: type} to create an empty table",
            )
        else:
            # Each column takes the type of its first non-NULL batch (NULL-only: VARCHAR).
            types: dict[str, str | None] = {}
            for piece in first:
                self.register(piece)
                try:
                    described = self.describe(piece)
                finally:
                    self.unregister()
                for column, kind in described:
                    if types.get(column) is None and kind.upper() not in ("NULL", '"NULL"'):
                        field = piece.table.schema.field(column)
                        types[column] = create_type(kind, field, from_records=piece.from_records)
                    else:
                        types.setdefault(column, None)
            columns = {c: t or "VARCHAR" for c, t in types.items()}
        key = spec.primary_key or spec.upsert_on
        if key:
            missing = [k for k in key if k not in columns]
            if missing:
                raise ConfigError(
                    f"the key column {missing[0]!r} is not among the new table's columns",
                    field="primary_key",
                )
        items = [f"{quote_ident(c)} {t}" for c, t in columns.items()]
        if key:
            items.append(f"PRIMARY KEY ({', '.join(map(quote_ident, key))})")
        run(
            self.cur,
            f"CREATE SCHEMA IF NOT EXISTS {quote_ident(database)}.{quote_ident(schema)}",
        )
        run(self.cur, f"CREATE TABLE {qualified(database, schema, name)} ({', '.join(items)})")

    # --- inserting --------------------------------------------------------------------------

    def before(self, relation: Relation) -> None:
        if self.spec.mode == "replace":
            # In the write's transaction: readers see the old rows until it commits.
            run(self.cur, f"DELETE FROM {relation.ident}")  # noqa: S608 - identifiers quoted (quote_ident)
        if self.spec.upsert_on:
            self._check_unique(relation)

    def _check_unique(self, relation: Relation) -> None:
        from headwater_duckdb._sql import UNIQUE_KEYS

        wanted = {k.lower() for k in self.spec.upsert_on or ()}
        rows = self.cur.execute(
            UNIQUE_KEYS, {"schema": relation.schema, "name": relation.name}
        ).fetchall()
        if not any({c.lower() for c in row[0]} == wanted for row in rows):
            raise ConfigError(
                f"upsert_on={self.spec.upsert_on} needs a PRIMARY KEY or UNIQUE constraint on "
                f"exactly those columns of {relation.display}",
                field="upsert_on",
                hint="add the constraint, or create the table with primary_key=[...]",
            )

    def insert_all(self, relation: Relation, pieces: Iterable[Piece]) -> None:
        """Insert every piece (see `insert`)."""
        following = iter(pieces)
        piece = next(following, None)
        while piece is not None:
            piece = self.insert(relation, piece, following)

    def insert(
        self, relation: Relation, piece: Piece, following: Iterator[Piece] | None = None
    ) -> Piece | None:
        """
        Insert one batch (checked first; nothing is cast that would change), and with it
        the ``following`` Arrow batches of the same schema that need no value checks:
        those go through the same ``INSERT``, scanned as one stream (`_Run`). One
        statement per batch would keep every batch of the transaction in memory until
        the commit (DuckDB writes a large statement's row groups to the file as they
        fill). Returns the next piece to insert (the first of ``following`` that did
        not join), else None.
        """
        spec = self.spec
        table = piece.table
        if spec.upsert_on:
            table = _with_sequence(table)
        piece = Piece(table, piece.text, piece.from_records)
        self.register(piece)
        try:
            incoming = [(c, t) for c, t in self.describe(piece) if c != _SEQ]
            targets = {c.name: c.type for c in relation.columns}
            checks = check_target(incoming, targets, text=piece.text, table=relation.display)
            for check in checks:
                self._check_values(check, relation)
            by_lower = {c.lower(): c for c in targets}
            names = [c for c, _ in incoming]
            target_list = ", ".join(quote_ident(by_lower[c.lower()]) for c in names)
            source_list = ", ".join(quote_ident(c) for c in names)
            statement = (
                f"INSERT INTO {relation.ident} ({target_list}) SELECT {source_list} "  # noqa: S608 - identifiers quoted (quote_ident)
                f"FROM {BATCH_VIEW}"
            )
            if spec.upsert_on:
                keys = [by_lower.get(k.lower(), k) for k in spec.upsert_on]
                partition = ", ".join(quote_ident(k) for k in spec.upsert_on)
                # The last row of a key wins, as it would row by row.
                statement += (
                    f" QUALIFY row_number() OVER (PARTITION BY {partition} "
                    f"ORDER BY {quote_ident(_SEQ)} DESC) = 1"
                )
                key_set = {k.lower() for k in keys}
                updated = [
                    quote_ident(by_lower[c.lower()]) for c in names if c.lower() not in key_set
                ]
                updates = [f"{c} = excluded.{c}" for c in updated]
                conflict = ", ".join(quote_ident(k) for k in keys)
                statement += (
                    f" ON CONFLICT ({conflict}) DO UPDATE SET {', '.join(updates)}"
                    if updates
                    else f" ON CONFLICT ({conflict}) DO NOTHING"
                )
            if following is None or checks or spec.upsert_on or piece.text or piece.from_records:
                run(self.cur, statement)
                self.written += table.num_rows
                return None if following is None else next(following, None)
            stream = _Run(piece.table, following)
            self.unregister()
            self.cur.register(BATCH_VIEW, stream.reader())
            run(self.cur, statement)
            if stream.failure is not None:
                raise stream.failure
            self.written += stream.rows
            return stream.leftover
        finally:
            self.unregister()

    def _check_values(self, check: ValueCheck, relation: Relation) -> None:
        """Refuse a batch whose values the table's column type would change (in SQL)."""
        ident = quote_ident(check.column)
        if check.kind == "integer_text":
            # DuckDB would round '1.5' to 2.
            wrong = f"NOT regexp_full_match(trim({ident}), '[+-]?[0-9]+')"
            why = "is not an integer"
        elif check.kind == "decimal_text":
            # At most the column's scale of digits after the point (no rounding), and in
            # range (TRY_CAST gives NULL when the integer part is too long).
            scale = check.target.rstrip(")").rsplit(",", 1)[-1].strip()
            pattern = f"[+-]?[0-9]*(\\.[0-9]{{0,{int(scale)}}})?"
            wrong = (
                f"NOT regexp_full_match(trim({ident}), '{pattern}') "
                f"OR TRY_CAST({ident} AS {check.target}) IS NULL"
            )
            why = f"does not fit {check.target} without rounding"
        elif check.kind == "pattern_text":
            pattern = text_pattern(check.target).replace("'", "''")
            wrong = f"NOT regexp_full_match(trim({ident}), '{pattern}')"
            why = f"is not {check.target} text DuckDB reads without cutting part of it"
        else:
            # Each value must come back equal from the target type: out of range, or
            # rounded (a decimal's digits, a float's precision), it would not.
            cast = f"TRY_CAST({ident} AS {check.target})"
            wrong = f"{cast} IS NULL OR CAST({cast} AS {check.source}) <> {ident}"
            why = f"({check.source}) does not fit {check.target} exactly"
        row = one(
            self.cur,
            f"SELECT CAST({ident} AS VARCHAR) FROM {BATCH_VIEW} "  # noqa: S608 - identifiers quoted (quote_ident)
            f"WHERE {ident} IS NOT NULL AND ({wrong}) LIMIT 1",
        )
        if row is not None:
            raise ConfigError(
                f"column {check.column!r}: the value {row[0]} {why} ({relation.display}."
                f"{check.column} is {check.target}); nothing was written",
                field=check.column,
                hint="widen the table's column, or fix the value in the source",
            )

    # --- the state committed with the rows ---------------------------------------------------

    def store_state(self, relation: Relation) -> None:
        spec = self.spec
        if spec.state_key is None:
            return
        assert spec.state is not None  # WriteSpec checks both or neither
        try:
            text = json.dumps(spec.state, default=json_default, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            raise ConfigError(f"state must be JSON-serializable: {exc}", field="state") from None
        table = qualified(relation.database, relation.schema, STATE_TABLE)
        run(
            self.cur,
            f"CREATE TABLE IF NOT EXISTS {table} (key VARCHAR PRIMARY KEY, "
            "stream VARCHAR NOT NULL, state JSON NOT NULL, "
            "updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now())",
        )
        run(
            self.cur,
            f"INSERT INTO {table} (key, stream, state) VALUES (?, ?, ?) ON CONFLICT (key) "  # noqa: S608 - identifiers quoted (quote_ident)
            "DO UPDATE SET stream = excluded.stream, state = excluded.state, "
            "updated_at = now()",
            [spec.state_key, relation.display, text],
        )


def read_state(cur: duckdb.DuckDBPyConnection, relation: Relation, key: str) -> State | None:
    """The state stored under ``key`` for this table, or None."""
    from headwater import ConnectorError

    found = one(
        cur,
        "SELECT 1 FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = ? AND table_name = ?",
        [relation.schema, STATE_TABLE],
    )
    if found is None:
        return None
    table = qualified(relation.database, relation.schema, STATE_TABLE)
    row = one(
        cur,
        f"SELECT state FROM {table} WHERE key = ? AND stream = ?",  # noqa: S608 - identifiers quoted (quote_ident)
        [key, relation.display],
    )
    if row is None:
        return None
    state = json.loads(row[0]) if isinstance(row[0], str) else row[0]
    if not isinstance(state, dict):
        raise ConnectorError(f"{STATE_TABLE} holds a state that is not a JSON object")
    return state


class _Run:
    """
    Consecutive Arrow batches of one schema, as one ``pyarrow.RecordBatchReader`` that
    DuckDB scans in one statement. The batches after the first are prepared
    (`prepare_arrow`) as DuckDB pulls them; the first that does not share the schema
    (or needs the per-batch checks) ends the run and is kept in ``leftover``. A failure
    while pulling (the source's, or a value `prepare_arrow` refuses) ends the stream and
    is kept in ``failure`` for the caller to raise as it is: raised inside DuckDB's
    scan, it would come back as a DuckDB error of another type.
    """

    def __init__(self, first: Any, following: Iterator[Piece]) -> None:
        self.first = first
        self.following = following
        self.schema = first.schema
        self.rows = 0
        self.leftover: Piece | None = None
        self.failure: BaseException | None = None

    def reader(self) -> Any:
        import pyarrow as pa

        return pa.RecordBatchReader.from_batches(self.schema, self._batches())

    def _batches(self) -> Iterator[Any]:
        yield from self._as_batches(self.first)
        try:
            for piece in self.following:
                if piece.text or piece.from_records:
                    self.leftover = piece
                    return
                table = prepare_arrow(piece.table)
                if not table.schema.equals(self.schema):
                    self.leftover = Piece(table, piece.text, piece.from_records)
                    return
                yield from self._as_batches(table)
        except BaseException as exc:  # kept for the caller, see the class docstring
            self.failure = exc

    def _as_batches(self, table: Any) -> Iterator[Any]:
        self.rows += table.num_rows
        if hasattr(table, "to_batches"):
            yield from table.to_batches()
        else:
            yield table


def _with_sequence(table: Any) -> Any:
    """``table`` with a row-number column, so the last row of a key can win."""
    import pyarrow as pa

    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    return table.append_column(_SEQ, pa.array(range(table.num_rows), pa.int64()))


def _unscannable(cur: duckdb.DuckDBPyConnection, table: Any, exc: Exception) -> ConfigError:
    """The error for a batch DuckDB cannot scan: which column, found one at a time."""
    import duckdb

    # On a cursor of its own: the failure aborted the write's transaction.
    probe = cur.cursor()
    try:
        for field in table.schema:
            try:
                probe.register("headwater_probe", table.select([field.name]))
                probe.execute("DESCRIBE SELECT * FROM headwater_probe").fetchall()
            except duckdb.NotImplementedException:
                return ConfigError(
                    f"column {field.name!r} is Arrow {field.type}, which DuckDB cannot store",
                    field=field.name,
                    hint="cast the column in the source (a query stream) to a type DuckDB holds",
                )
            finally:
                with contextlib.suppress(Exception):
                    probe.unregister("headwater_probe")
    finally:
        probe.close()
    return ConfigError(f"DuckDB cannot scan these records: {str(exc).splitlines()[0]}")

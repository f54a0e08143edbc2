"""
The ``duckdb`` connector: tables, views and queries of a DuckDB database file, through
the ``duckdb`` package (embedded; no server).

* Reads run one ``SELECT ... ORDER BY key`` in a ``READ ONLY`` transaction and hand
  DuckDB's Arrow record batches through as they are; each batch carries the key of its
  last row, so a resumed read adds ``WHERE ROW(key) > ROW(last)`` and yields exactly
  the rest (`_plan`).
* Writes scan each batch as Arrow (no Python object per value) inside one transaction
  per ``write`` call, together with the copy state when asked (`_write`).
* One DuckDB connection per connector, opened on first use; every operation works on a
  cursor of it (DuckDB's cursors are connections of their own to the same database, so
  a read in progress and a write do not share a transaction). With ``access="auto"``
  the file is opened read-only until the first write, so several processes can read it
  at once; DuckDB allows one read-write process per file.
* duckdb and pyarrow are imported only when a connection is made: this module imports
  pydantic and headwater, nothing more, at import time.
"""

from __future__ import annotations

import builtins
import contextlib
import itertools
import logging
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headwater import (
    Batch,
    Capability,
    ConfigError,
    Connector,
    Estimate,
    HeadwaterError,
    Item,
    NotFound,
    State,
    WriteResult,
)
from headwater.toolkit import RedactingFilter
from headwater_duckdb._config import DuckDBConfig, config_from_url

if TYPE_CHECKING:
    import duckdb

    from headwater import Registry
    from headwater_duckdb._plan import ReadPlan
    from headwater_duckdb._sql import Column, QuerySource, Relation
    from headwater_duckdb._write import WriteSpec

__all__ = ["DuckDBConfig", "DuckDBConnector"]

logger = logging.getLogger("headwater.duckdb")
logger.addFilter(RedactingFilter())


class DuckDBConnector(Connector[DuckDBConfig]):
    """
    Tables, views and queries of a DuckDB database file (or an in-memory database).

    ``read(stream)`` takes a table or view name (``schema.table``; ``main`` when not
    given) or a SQL query (a stream starting with SELECT / WITH / VALUES / TABLE) and
    yields batches of ``pyarrow.RecordBatch``. Read options:

    * ``columns``: column names to read (the key columns are always included);
    * ``key``: the column(s) to order and resume by (default: the primary key);
    * ``cursor_field``: incremental reads, ordered by this column (then the primary key);
    * ``ordered=False``: no ORDER BY (faster; the states cannot be resumed from).

    ``write(stream, batches, ...)`` takes Arrow batches or tables, `Batch` objects or
    lists of dicts; see `write` for the options.
    """

    id = "duckdb"
    Config = DuckDBConfig
    summary = "DuckDB files (embedded): Arrow reads resumable by key, Arrow writes"
    capabilities = frozenset(
        {
            Capability.CHECK,
            Capability.LIST,
            Capability.READ,
            Capability.RESUME,
            Capability.METADATA,
            Capability.WRITE,
            Capability.ARROW,
            Capability.UNORDERED,
            Capability.ATOMIC_STATE,
        }
    )
    #: Reads give Arrow batches whatever the format asked; "arrow" is accepted by name.
    read_formats = frozenset({"arrow"})
    write_formats = frozenset({"arrow"})

    def __init__(
        self, config: DuckDBConfig | dict[str, Any], *, registry: Registry | None = None
    ) -> None:
        super().__init__(config, registry=registry)
        self._lock = threading.Lock()
        self._db: duckdb.DuckDBPyConnection | None = None
        self._read_only = False
        #: Cursors in use: a read-only database is reopened read-write only when none is.
        self._active = 0

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> DuckDBConnector:
        """``duckdb:///relative.db``, ``duckdb:////absolute.db``, ``duckdb:///:memory:``."""
        return cls(config_from_url(url, overrides))

    # --- the database ------------------------------------------------------------------------

    @property
    def target(self) -> str:
        """The database file for messages."""
        return str(self.config.path)

    def translate_error(self, exc: BaseException) -> HeadwaterError:
        if isinstance(exc, HeadwaterError):
            return exc
        from headwater_duckdb._errors import translate

        return translate(exc, target=self.target)

    def _file(self) -> Path:
        return Path(self.config.path).expanduser()

    def _open(self, *, write: bool) -> duckdb.DuckDBPyConnection:
        """
        The connector's connection, opened (or reopened read-write) as needed. Called with
        ``self._lock`` held, so no cursor is taken from a connection being replaced.
        """
        import duckdb

        config = self.config
        if write and config.access == "read_only":
            raise ConfigError(
                f"duckdb: {self.target} is opened read-only (access='read_only'); "
                "writing needs access 'auto' or 'read_write'",
                field="access",
            )
        if self._closed:
            raise ConfigError("this duckdb connector is closed")
        if self._db is not None and not (write and self._read_only):
            return self._db
        if self._db is not None:
            if self._active:
                raise ConfigError(
                    f"duckdb: {self.target} is open read-only for a read in progress; a "
                    "write meanwhile needs the file opened read-write from the start",
                    field="access",
                    hint="use access='read_write' for a connector that reads and writes "
                    "at the same time",
                )
            self._db.close()
            self._db = None
        read_only = not config.in_memory and (
            config.access == "read_only" or (config.access == "auto" and not write)
        )
        database = str(config.path)
        if not config.in_memory:
            path = self._file()
            if not path.exists() and not write:
                raise NotFound(
                    f"no DuckDB file {self.target}",
                    field="path",
                    hint="check the path; a write creates the file",
                )
            if not path.parent.is_dir():
                raise NotFound(
                    f"no directory {path.parent} for the DuckDB file {self.target}",
                    field="path",
                )
            database = str(path)
        settings = config.duckdb_settings()
        try:
            self._db = duckdb.connect(database, read_only=read_only, config=settings)
        except duckdb.ConnectionException:
            if not (read_only and config.access == "auto"):
                raise
            # Another connector of this process has the file open read-write, so this
            # process holds its lock already: share that database instead.
            self._db = duckdb.connect(database, read_only=False, config=settings)
            read_only = False
        self._read_only = read_only
        return self._db

    @contextlib.contextmanager
    def _cursor(self, *, write: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor (a connection of its own to the database), closed afterwards."""
        with self._lock:
            cur = self._open(write=write).cursor()
            self._active += 1
        try:
            yield cur
        finally:
            with self._lock:
                self._active -= 1
            cur.close()

    def release(self) -> None:
        with self._lock:
            db, self._db = self._db, None
        if db is not None:
            db.close()

    # --- check ---------------------------------------------------------------------------------

    def check_connection(self) -> str:
        from headwater_duckdb import _sql

        with self._cursor() as cur:
            row = _sql.one(cur, "SELECT version()")
        assert row is not None
        mode = "read-only" if self._read_only else "read-write"
        return f"DuckDB {row[0]} at {self.target} ({mode})"

    # --- catalog -------------------------------------------------------------------------------

    def _relation(self, cur: duckdb.DuckDBPyConnection, stream: str) -> Relation | None:
        from headwater_duckdb import _sql

        schema, name = _sql.split_name(stream)
        row = _sql.one(cur, _sql.FIND_RELATION, {"schema": schema, "name": name})
        if row is None:
            return None
        found_schema, found_name, kind, estimate, database = row
        names = {"schema": found_schema, "name": found_name}
        columns = tuple(
            _sql.Column(str(c[0]), str(c[1]), bool(c[2]), c[3])
            for c in cur.execute(_sql.COLUMNS, names).fetchall()
        )
        key = _sql.one(cur, _sql.PRIMARY_KEY, names)
        return _sql.Relation(
            database=database,
            schema=found_schema,
            name=found_name,
            kind=kind,
            columns=columns,
            primary_key=tuple(key[0]) if key else (),
            row_estimate=int(estimate) if estimate is not None else None,
        )

    def _missing(self, stream: str) -> NotFound:
        return NotFound(
            f"no table or view {stream!r} in {self.target}",
            field="stream",
            hint='`headwater ls` lists tables; quote names with dots or spaces: main."my table"',
        )

    def _query_columns(self, cur: duckdb.DuckDBPyConnection, query: str) -> list[Column]:
        """The result columns of a query stream, checked to be one SELECT first."""
        from headwater_duckdb import _sql

        text = _sql.query_text(query)
        _sql.check_statements(cur.extract_statements(text))
        # A relation over a SELECT is only planned here, never run.
        relation = cur.sql(text)
        assert relation is not None
        names = list(relation.columns)
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise ConfigError(f"the query returns two columns named {dup!r}; alias one of them")
        return [_sql.Column(str(n), str(t)) for n, t in zip(names, relation.types, strict=True)]

    def _source(self, cur: duckdb.DuckDBPyConnection, stream: str) -> Relation | QuerySource:
        from headwater_duckdb import _sql

        if _sql.is_query(stream):
            columns = self._query_columns(cur, stream)
            return _sql.QuerySource(_sql.query_text(stream), tuple(columns))
        relation = self._relation(cur, stream)
        if relation is None:
            raise self._missing(stream)
        return relation

    def list(self, path: str | None = None) -> Iterator[Item]:
        """Schemas (when ``path`` is None) and every table and view, with row estimates."""
        from headwater_duckdb import _sql

        try:
            with self._cursor() as cur:
                schemas = [r[0] for r in cur.execute(_sql.SCHEMAS).fetchall()]
                if path is not None and path.lower() not in {s.lower() for s in schemas}:
                    raise NotFound(f"no schema {path!r} in {self.target}", field="path")
                rows = cur.execute(_sql.RELATIONS).fetchall()
        except Exception as exc:
            raise self.translate_error(exc) from exc
        if path is None:
            for schema in schemas:
                tables = sum(1 for r in rows if r[0] == schema)
                yield Item(_sql.quote_ident(schema), "schema", extra={"tables": tables})
        for schema, name, kind, estimate, _database in rows:
            if path is not None and schema.lower() != path.lower():
                continue
            yield Item(
                _sql.display_name(schema, name),
                kind,
                extra={"schema": schema, "table": name, "row_estimate": estimate},
            )

    def metadata(self, item: str) -> dict[str, Any]:
        """Columns (DuckDB type, nullability, default), primary key and row estimate."""
        from headwater_duckdb import _sql

        try:
            with self._cursor() as cur:
                if _sql.is_query(item):
                    columns = self._query_columns(cur, item)
                    return {
                        "name": item,
                        "kind": "query",
                        "columns": [
                            {"name": c.name, "type": c.type, "nullable": True} for c in columns
                        ],
                        "primary_key": [],
                    }
                relation = self._relation(cur, item)
        except Exception as exc:
            raise self.translate_error(exc) from exc
        if relation is None:
            raise self._missing(item)
        return {
            "name": relation.display,
            "schema": relation.schema,
            "table": relation.name,
            "kind": relation.kind,
            "columns": [
                {"name": c.name, "type": c.type, "nullable": c.nullable, "default": c.default}
                for c in relation.columns
            ],
            "primary_key": list(relation.primary_key),
            "row_estimate": relation.row_estimate,
        }

    def estimate(self, stream: str, **options: Any) -> Estimate:
        """
        Rows of a table, counted (DuckDB keeps a count per row group, so this is cheap);
        views and queries: unknown.
        """
        from headwater_duckdb import _sql
        from headwater_duckdb._plan import check_options

        check_options(options)
        if _sql.is_query(stream):
            return Estimate()
        try:
            with self._cursor() as cur:
                relation = self._relation(cur, stream)
                if relation is None:
                    raise self._missing(stream)
                if relation.kind != "table":
                    return Estimate()
                row = _sql.one(cur, f"SELECT count(*) FROM {relation.ident}")  # noqa: S608 - identifiers quoted (quote_ident)
        except Exception as exc:
            raise self.translate_error(exc) from exc
        assert row is not None
        return Estimate(rows=int(row[0]), exact=True)

    # --- read ----------------------------------------------------------------------------------

    def read(
        self,
        stream: str,
        state: State | None = None,
        *,
        batch_size: int | None = None,
        **options: Any,
    ) -> Iterator[Batch]:
        """
        Arrow record batches of a table, view or query, each with the state after it (see
        the class docstring for the options). Memory stays bounded by the batch size.
        """
        from headwater_duckdb import _sql
        from headwater_duckdb._plan import build_plan, check_options

        check_options(options)
        size = batch_size or self.config.batch_size
        if size < 1:
            raise ConfigError("batch_size must be at least 1", field="batch_size")
        try:
            with self._cursor() as cur:
                # Read-only, and rolled back: a query stream cannot write through it.
                _sql.run(cur, "BEGIN TRANSACTION READ ONLY")
                try:
                    plan = build_plan(stream, self._source(cur, stream), state, options)
                    yield from _batches(cur, plan, size)
                finally:
                    with contextlib.suppress(Exception):
                        _sql.run(cur, "ROLLBACK")
        except Exception as exc:
            raise self.translate_error(exc) from exc

    # --- write ---------------------------------------------------------------------------------

    def write(
        self,
        stream: str,
        batches: Iterable[Batch | builtins.list[dict[str, Any]]],
        **options: Any,
    ) -> WriteResult:
        """
        Write records into a table, all in one transaction: a failure leaves the table
        (and the stored state) as they were.

        ``batches`` are ``pyarrow.RecordBatch`` or ``pyarrow.Table`` objects (scanned by
        DuckDB as they are), `Batch` objects, or lists of dicts (converted to Arrow a
        batch at a time). Options:

        * ``mode``: ``"append"`` (default) or ``"replace"`` (the table is emptied first,
          in the same transaction);
        * ``upsert_on``: column(s) with a PRIMARY KEY or UNIQUE constraint; a row whose
          key exists updates it (the last row of a key wins);
        * ``create=True``: create a missing table from the batches' types (exact; see the
          README's type table), with ``primary_key`` when given;
        * ``schema``: column → DuckDB type name (or Python type) to create a missing table
          with;
        * ``state_key`` and ``state``: store that JSON state in ``headwater_state`` in
          the same commit (see `written_state`).
        """
        from headwater_duckdb import _sql, _write

        spec = _write.WriteSpec.from_options(stream, options)
        if _sql.is_query(stream):
            raise ConfigError("write into a table, not a query", field="stream")
        try:
            with self._cursor(write=True) as cur:
                _sql.run(cur, "BEGIN TRANSACTION")
                try:
                    written = self._write(cur, spec, batches)
                    _sql.run(cur, "COMMIT")
                except BaseException:
                    with contextlib.suppress(Exception):
                        _sql.run(cur, "ROLLBACK")
                    raise
        except Exception as exc:
            # The batches come from a read that is now pointless: end it now (its cursor,
            # its transaction) rather than whenever the garbage collector gets to it.
            close = getattr(batches, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
            raise self.translate_error(exc) from exc
        return WriteResult(stream, written)

    def _write(
        self, cur: duckdb.DuckDBPyConnection, spec: WriteSpec, batches: Iterable[Any]
    ) -> int:
        """The statements of one write, in the caller's transaction; returns the rows written."""
        from headwater_duckdb import _sql, _write

        writer = _write.Writer(cur, spec)
        pieces = _write.pieces(batches)
        relation = self._relation(cur, spec.stream)
        held: builtins.list[_write.Piece] = []
        if relation is None:
            schema, name = _sql.split_name(spec.stream)
            row = _sql.one(cur, "SELECT current_database(), current_schema()")
            assert row is not None
            if schema is None:
                schema = str(row[1])
            if spec.create and not spec.schema:
                held = _lookahead(pieces)
            writer.create(str(row[0]), schema, name, held, spec.stream)
            relation = self._relation(cur, spec.stream)
            if relation is None:  # pragma: no cover - created just above
                raise self._missing(spec.stream)
        elif relation.kind != "table":
            raise ConfigError(f"{relation.display} is a view; write into a table", field="stream")
        writer.before(relation)
        writer.insert_all(relation, itertools.chain(held, pieces))
        writer.store_state(relation)
        return writer.written

    # --- state stored with writes --------------------------------------------------------------

    def written_state(self, stream: str, key: str) -> State | None:
        """
        The state last committed by ``write(stream, ..., state_key=key, state=...)``, from
        ``headwater_state`` in the table's schema; None when there is none (no such key,
        no state table, no table, or no file yet).
        """
        from headwater_duckdb._write import read_state

        if not self.config.in_memory and not self._file().exists():
            return None
        try:
            with self._cursor() as cur:
                relation = self._relation(cur, stream)
                if relation is None:
                    return None
                return read_state(cur, relation, key)
        except Exception as exc:
            raise self.translate_error(exc) from exc


# --- helpers ------------------------------------------------------------------------------------


def _batches(cur: duckdb.DuckDBPyConnection, plan: ReadPlan, size: int) -> Iterator[Batch]:
    """The plan's Arrow batches, at most ``size`` rows each, with their states."""
    import pyarrow as pa

    from headwater_duckdb._types import mark_json

    relation = cur.sql(plan.select, params=list(plan.params))
    assert relation is not None
    reader = relation.to_arrow_reader(size)
    width = len(plan.names)
    keys = plan.key_count
    rows = plan.rows_before
    schema: Any = None
    for record_batch in reader:
        if schema is None:
            schema = pa.schema([record_batch.schema.field(i) for i in range(width)])
        for offset in range(0, record_batch.num_rows, size):
            piece = record_batch.slice(offset, size)
            count = piece.num_rows
            if not count:
                continue
            last = [piece.column(width + i)[count - 1].as_py() for i in range(keys)] or None
            data = pa.RecordBatch.from_arrays(piece.columns[:width], schema=schema)
            rows += count
            yield Batch(plan.stream, mark_json(data, plan.json_positions), plan.state(last, rows))


def _lookahead(pieces: Iterator[Any]) -> builtins.list[Any]:
    """
    The first batches of a write that creates its table: up to the first in which every
    column seen so far has a non-NULL type (at most `LOOKAHEAD_BATCHES`).
    """
    import pyarrow as pa

    from headwater_duckdb._write import LOOKAHEAD_BATCHES

    held: builtins.list[Any] = []
    untyped: set[str] = set()
    typed: set[str] = set()
    for piece in pieces:
        held.append(piece)
        for field in piece.table.schema:
            (untyped if pa.types.is_null(field.type) else typed).add(field.name)
        if not (untyped - typed) or len(held) >= LOOKAHEAD_BATCHES:
            break
    return held

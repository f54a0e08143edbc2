"""
The ``postgres`` connector: tables and queries in PostgreSQL, through psycopg 3.

* Reads run one ``SELECT ... ORDER BY key`` per read through a binary server-side
  cursor (measured fastest of the psycopg ways, see the README), fetched in batches
  sized by rows and estimated bytes; each batch carries the key of its last row, so a
  resumed read adds ``WHERE (key) > (last)`` and yields exactly the rest (keyset
  pagination, not OFFSET).
* Writes are one binary ``COPY ... FROM STDIN`` inside one transaction per ``write``
  call: a failure leaves the table as it was. ``upsert_on`` stages the rows in a
  temporary table and merges them with ``INSERT ... ON CONFLICT``.
* Connections come from a psycopg_pool pool (sync) or async pool (async twins), opened
  on first use; the password is resolved for every new connection.
* psycopg is imported only when a connection is made: this module imports pydantic and
  headwater, nothing more, at import time.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import contextlib
import logging
import threading
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Sequence,
)
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from headwater import (
    Batch,
    Capability,
    ConfigError,
    Connector,
    Estimate,
    HeadwaterError,
    Item,
    NotFound,
    Partition,
    State,
    WriteResult,
)
from headwater.toolkit import RedactingFilter, forget_after_fork
from headwater_postgres._config import PostgresConfig

T = TypeVar("T")

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql
    from psycopg.adapt import AdaptersMap
    from psycopg_pool import AsyncConnectionPool, ConnectionPool

    from headwater import Registry
    from headwater.toolkit import CircuitBreaker
    from headwater_postgres._plan import ReadPlan
    from headwater_postgres._service import ExecuteResult
    from headwater_postgres._sql import Column, QuerySource, Relation
    from headwater_postgres._write import RowWriter

__all__ = ["PostgresConfig", "PostgresConnector"]

logger = logging.getLogger("headwater.postgres")
logger.addFilter(RedactingFilter())

#: The server-side cursor a read fetches from (one read at a time per pooled connection).
_CURSOR = "headwater_read"
_WRITE_OPTIONS = frozenset(
    {"schema", "primary_key", "upsert_on", "mode", "text_values", "state_key", "state"}
)


class PostgresConnector(Connector[PostgresConfig]):
    """
    PostgreSQL tables, views and queries.

    ``read(stream)`` takes a table name (``schema.table``; quoted parts keep their case)
    or a SQL query (a stream starting with SELECT / WITH / VALUES / TABLE). Read options:

    * ``columns``: column names to read (the key columns are always included);
    * ``cursor_field``: incremental reads, ordered by this column (then the primary
      key); the state resumes past the last value seen;
    * ``key``: the column(s) to page on for a query or a table without a primary key;
    * ``format``: ``"dicts"`` (default) or ``"arrow"`` (``pyarrow.RecordBatch`` batches
      from the ADBC driver; needs ``headwater-postgres[arrow]``);
    * ``batch_bytes``: aim for batches of about this many bytes.
    """

    id = "postgres"
    Config = PostgresConfig
    summary = "PostgreSQL tables and queries: resumable reads, COPY writes, Arrow"
    capabilities = frozenset(
        {
            Capability.CHECK,
            Capability.LIST,
            Capability.READ,
            Capability.RESUME,
            Capability.METADATA,
            Capability.WRITE,
            Capability.PARTITIONS,
            Capability.ARROW,
            Capability.UNORDERED,
            Capability.ATOMIC_STATE,
        }
    )
    #: ``format="arrow"`` (through ADBC), ``"jsonl"`` (JSON made by the server),
    #: ``"pgcopy"`` (COPY text, which ``write`` takes as it is: PostgreSQL to PostgreSQL)
    #: and ``"csv"`` (the same COPY text batches: every value in its PostgreSQL text form,
    #: which a CSV file holds exactly and ``write`` parses back by column type).
    read_formats = frozenset({"arrow", "jsonl", "pgcopy", "csv"})
    write_formats = frozenset({"pgcopy"})

    def __init__(
        self, config: PostgresConfig | dict[str, Any], *, registry: Registry | None = None
    ) -> None:
        super().__init__(config, registry=registry)
        self._lock = threading.Lock()
        self._pool: ConnectionPool[Any] | None = None
        self._apool: AsyncConnectionPool[Any] | None = None
        self._apool_loop: asyncio.AbstractEventLoop | None = None
        self._alock: asyncio.Lock | None = None
        self._alock_loop: asyncio.AbstractEventLoop | None = None
        self._adapters: AdaptersMap | None = None
        self._pending: set[Any] = set()
        self._policy = self.config.retry.policy()
        # In a fork's child the pools are dropped (see headwater.toolkit.forget_after_fork).
        forget_after_fork(self, type(self)._forget_pools_after_fork)

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> PostgresConnector:
        """``postgresql://user@host:5432/db?sslmode=verify-full`` plus config overrides."""
        return cls({"url": url, **overrides})

    # --- connection parameters ------------------------------------------------------------

    @property
    def target(self) -> str:
        """``host:port/dbname`` for messages."""
        return self.config.display_target()

    def translate_error(self, exc: BaseException) -> HeadwaterError:
        if isinstance(exc, HeadwaterError):
            return exc
        from headwater_postgres._errors import translate

        return translate(exc, target=self.target)

    def _context(self) -> AdaptersMap:
        if self._adapters is None:
            from headwater_postgres._values import build_adapters

            self._adapters = build_adapters()
        return self._adapters

    def _conninfo(self) -> str:
        from psycopg.conninfo import make_conninfo

        try:
            return make_conninfo(self.config.conninfo(), **self.config.connect_kwargs())
        except Exception as exc:
            raise ConfigError(
                f"postgres: invalid connection parameters: {exc}", field="url"
            ) from None

    def _connect_args(self) -> dict[str, Any]:
        """Keyword arguments of every new connection; the password resolved now."""
        args: dict[str, Any] = {"autocommit": True, "context": self._context()}
        if self.config.password is not None:
            args["password"] = self.secret("password")
        return args

    def _direct(self) -> psycopg.Connection[Any]:
        import psycopg

        return psycopg.Connection.connect(self._conninfo(), **self._connect_args())

    async def _adirect(self) -> psycopg.AsyncConnection[Any]:
        import psycopg

        return await psycopg.AsyncConnection.connect(self._conninfo(), **self._connect_args())

    def _pool_options(self) -> dict[str, Any]:
        c = self.config
        return {
            "min_size": c.pool_min_size,
            "max_size": c.pool_max_size,
            "max_idle": c.pool_max_idle,
            "max_lifetime": c.pool_max_lifetime,
            "timeout": c.pool_timeout,
            "name": f"headwater-postgres {self.target}",
            "open": False,
        }

    def _forget_pools_after_fork(self) -> builtins.list[Any]:
        """
        In the child of ``os.fork()``: drop the parent's pools (returned, to be kept
        unclosed: see `_service._INHERITED`) so the first use opens the child's own.
        The locks are new too: another thread of the parent may have held one.
        """
        inherited = [p for p in (self._pool, self._apool) if p is not None]
        self._lock = threading.Lock()
        self._pool = None
        self._apool = self._apool_loop = None
        self._alock = self._alock_loop = None
        self._pending = set()
        return inherited

    # --- pools ----------------------------------------------------------------------------

    def _get_pool(self) -> ConnectionPool[Any]:
        if self._closed:
            raise ConfigError("this postgres connector is closed")
        with self._lock:
            if self._pool is None:
                from psycopg_pool import ConnectionPool

                # One direct connection first: a wrong password or host fails now with
                # the server's reason, instead of as a pool timeout 30 s later; a server
                # that is restarting is waited for (config retry).
                self._retrying(lambda: self._direct().close())
                # check: a connection that broke while idle (backend terminated, server
                # restarted, network cut) is replaced on checkout, never handed out.
                pool: ConnectionPool[Any] = ConnectionPool(
                    self._conninfo(),
                    kwargs=self._connect_args,
                    check=ConnectionPool.check_connection,
                    **self._pool_options(),
                )
                pool.open(wait=False)
                self._pool = pool
            return self._pool

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        from psycopg_pool import PoolTimeout

        pool = self._get_pool()
        try:
            cm = pool.connection()
            conn = cm.__enter__()
        except PoolTimeout as exc:
            raise self._diagnose(exc) from exc
        # Errors inside the block are the caller's to translate; the pool only needs to
        # see them to discard a broken connection.
        try:
            yield conn
        except BaseException as exc:
            if not cm.__exit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            cm.__exit__(None, None, None)

    def _diagnose(self, exc: Exception) -> HeadwaterError:
        """Why the pool gave no connection: the server's reason if it refuses us now."""
        try:
            self._direct().close()
        except Exception as direct:
            return self.translate_error(direct)
        return self.translate_error(exc)

    async def _aget_pool(self) -> AsyncConnectionPool[Any]:
        if self._closed:
            raise ConfigError("this postgres connector is closed")
        loop = asyncio.get_running_loop()
        if self._apool is not None and self._apool_loop is loop:
            return self._apool
        if self._alock is None or self._alock_loop is not loop:
            # An async pool belongs to the loop that made it; a new loop gets its own.
            # No await between the test and the assignment: tasks of one loop share it.
            self._alock, self._alock_loop = asyncio.Lock(), loop
        async with self._alock:
            if self._apool is None or self._apool_loop is not loop:
                from psycopg_pool import AsyncConnectionPool

                old, old_loop = self._apool, self._apool_loop
                await (await self._adirect()).close()
                pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                    self._conninfo(),
                    kwargs=self._connect_args,
                    check=AsyncConnectionPool.check_connection,
                    **self._pool_options(),
                )
                await pool.open(wait=False)
                self._apool, self._apool_loop = pool, loop
                if old is not None:
                    self._abandon(old, old_loop)
            return self._apool

    @contextlib.asynccontextmanager
    async def _aconnection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        from psycopg_pool import PoolTimeout

        pool = await self._aget_pool()
        try:
            cm = pool.connection()
            conn = await cm.__aenter__()
        except PoolTimeout as exc:
            raise await self._adiagnose(exc) from exc
        try:
            yield conn
        except BaseException as exc:
            if not await cm.__aexit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            await cm.__aexit__(None, None, None)

    async def _adiagnose(self, exc: Exception) -> HeadwaterError:
        try:
            await (await self._adirect()).close()
        except Exception as direct:
            return self.translate_error(direct)
        return self.translate_error(exc)

    def _abandon(
        self, pool: AsyncConnectionPool[Any], loop: asyncio.AbstractEventLoop | None
    ) -> None:
        """Close an async pool from outside its loop (best effort; prefer `aclose`)."""
        if loop is None or loop.is_closed():
            # asyncio.run() ended and took the pool's workers with it; its idle
            # connections are still open. Closing their sockets needs no loop.
            for conn in list(getattr(pool, "_pool", ())):
                with contextlib.suppress(Exception):
                    conn.pgconn.finish()
            return
        if loop.is_running():
            loop.call_soon_threadsafe(self._schedule_close, pool)
            return
        try:
            loop.run_until_complete(pool.close())
        except RuntimeError:
            # Another loop runs in this thread: nothing can drive the pool's own loop.
            logger.debug("could not close an async pool of a stopped event loop")

    def _schedule_close(self, pool: AsyncConnectionPool[Any]) -> None:
        task = asyncio.ensure_future(pool.close())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def pool_stats(self) -> dict[str, dict[str, int]]:
        """
        Statistics of the open pools (``sync`` / ``async``): psycopg_pool's counters
        (``pool_size``, ``pool_available``, ``requests_waiting``, ``requests_num``,
        ``connections_num``, ``connections_errors``, ...).
        """
        stats: dict[str, dict[str, int]] = {}
        if self._pool is not None:
            stats["sync"] = self._pool.get_stats()
        if self._apool is not None:
            stats["async"] = self._apool.get_stats()
        return stats

    def stats(self) -> dict[str, dict[str, int]]:
        """
        The open pools (``sync`` / ``async``; none before first use) in the shape of every
        headwater connector's ``stats()``: ``size``, ``in_use``, ``idle``, ``waiting``,
        ``opened``, ``closed``, ``errors``, plus ``lost`` (broken connections replaced),
        ``min_size``, ``max_size`` and ``requests``. JSON-ready, for health endpoints.
        `pool_stats` gives psycopg_pool's own counters.
        """
        from headwater_postgres._service import live_waiting, pool_stats

        stats: dict[str, dict[str, int]] = {}
        for name, pool in (("sync", self._pool), ("async", self._apool)):
            if pool is not None:
                stats[name] = pool_stats(pool.get_stats(), waiting=live_waiting(pool))
        return stats

    def release(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
        apool, self._apool = self._apool, None
        if apool is not None:
            self._abandon(apool, self._apool_loop)

    async def arelease(self) -> None:
        apool, self._apool = self._apool, None
        if apool is not None:
            if self._apool_loop is asyncio.get_running_loop():
                await apool.close()
            else:
                self._abandon(apool, self._apool_loop)
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.close)

    # --- check ---------------------------------------------------------------------------

    _CHECK_SQL = "SELECT current_setting('server_version'), current_user, current_database()"

    # --- resilience ------------------------------------------------------------------------

    def _breaker(self) -> CircuitBreaker:
        """The process-wide breaker of this server and database (config ``breaker``)."""
        return self.config.breaker.breaker(f"postgresql://{self.target}")

    def _retrying(self, operation: Callable[[], T]) -> T:
        """
        ``operation`` (a connect, or a catalog call that changes nothing), tried again
        while it fails transiently (config ``retry``: a refused or dropped connection, a
        server starting or shutting down), through the server's breaker.
        """

        def attempt() -> T:
            try:
                return operation()
            except HeadwaterError:
                raise  # already ours: `from` itself would make it its own cause
            except Exception as exc:
                raise self.translate_error(exc) from exc

        breaker = self._breaker()
        return self._policy.call(lambda: breaker.call(attempt))

    async def _aretrying(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Async `_retrying`."""

        async def attempt() -> T:
            try:
                return await operation()
            except HeadwaterError:
                raise  # already ours: `from` itself would make it its own cause
            except Exception as exc:
                raise self.translate_error(exc) from exc

        breaker = self._breaker()
        return await self._policy.acall(lambda: breaker.acall(attempt))

    def check_connection(self) -> str:
        def check() -> Any:
            with self._direct() as conn:
                return conn.execute(self._CHECK_SQL).fetchone()

        row = self._retrying(check)
        assert row is not None
        return f"PostgreSQL {row[0]} at {self.target} as {row[1]}"

    async def acheck_connection(self) -> str:
        async def check() -> Any:
            conn = await self._adirect()
            async with conn:
                return await (await conn.execute(self._CHECK_SQL)).fetchone()

        row = await self._aretrying(check)
        assert row is not None
        return f"PostgreSQL {row[0]} at {self.target} as {row[1]}"

    # --- catalog -------------------------------------------------------------------------

    def _relation(self, conn: psycopg.Connection[Any], stream: str) -> Relation | None:
        from headwater_postgres._sql import RELATION_QUERY, relation_from_row, split_name

        schema, name = split_name(stream)
        row = conn.execute(RELATION_QUERY, {"schema": schema, "name": name}).fetchone()
        return relation_from_row(row) if row else None

    async def _arelation(self, conn: psycopg.AsyncConnection[Any], stream: str) -> Relation | None:
        from headwater_postgres._sql import RELATION_QUERY, relation_from_row, split_name

        schema, name = split_name(stream)
        cur = await conn.execute(RELATION_QUERY, {"schema": schema, "name": name})
        row = await cur.fetchone()
        return relation_from_row(row) if row else None

    def _missing(self, stream: str) -> NotFound:
        return NotFound(
            f"no table or view {stream!r} in {self.target}",
            field="stream",
            hint='`headwater ls` lists tables; quote mixed-case names: schema."Table"',
        )

    def _query_columns(self, conn: psycopg.Connection[Any], query: str) -> list[Column]:
        # Checked as one statement and described read-only, rolled back (`_query`).
        from headwater_postgres import _query

        timeout = self.config.statement_timeout
        return _query.describe(conn, _query.query_text(query), statement_timeout=timeout)

    async def _aquery_columns(self, conn: psycopg.AsyncConnection[Any], query: str) -> list[Column]:
        from headwater_postgres import _query

        timeout = self.config.statement_timeout
        return await _query.adescribe(conn, _query.query_text(query), statement_timeout=timeout)

    def list(self, path: str | None = None) -> Iterator[Item]:
        """
        Schemas (when ``path`` is None) and every table, view and materialized view, with
        row estimates and sizes: two catalog queries for the whole database.
        ``path`` = a schema name lists that schema only.
        """
        from headwater_postgres._sql import LIST_QUERY, SCHEMA_EXISTS, SCHEMAS_QUERY

        def catalog() -> tuple[builtins.list[Any], builtins.list[Any]]:
            with self._connection() as conn:
                schemas: builtins.list[Any] = []
                if path is None:
                    schemas = conn.execute(SCHEMAS_QUERY).fetchall()
                elif not conn.execute(SCHEMA_EXISTS, {"schema": path}).fetchone():
                    raise NotFound(f"no schema {path!r} in {self.target}", field="path")
                return schemas, conn.execute(LIST_QUERY, {"schema": path}).fetchall()

        yield from _items(*self._retrying(catalog))

    async def alist(self, path: str | None = None) -> AsyncIterator[Item]:
        """Async twin of `list`."""
        from headwater_postgres._sql import LIST_QUERY, SCHEMA_EXISTS, SCHEMAS_QUERY

        async def catalog() -> tuple[builtins.list[Any], builtins.list[Any]]:
            async with self._aconnection() as conn:
                schemas: builtins.list[Any] = []
                if path is None:
                    schemas = await (await conn.execute(SCHEMAS_QUERY)).fetchall()
                else:
                    cur = await conn.execute(SCHEMA_EXISTS, {"schema": path})
                    if not await cur.fetchone():
                        raise NotFound(f"no schema {path!r} in {self.target}", field="path")
                return schemas, await (await conn.execute(LIST_QUERY, {"schema": path})).fetchall()

        for item in _items(*await self._aretrying(catalog)):
            yield item

    def metadata(self, item: str) -> dict[str, Any]:
        """Columns (type, nullability, default), primary key, row estimate and size."""
        from headwater_postgres._sql import is_query

        def lookup() -> dict[str, Any]:
            with self._connection() as conn:
                if is_query(item):
                    return _query_metadata(item, self._query_columns(conn, item))
                relation = self._relation(conn, item)
            if relation is None:
                raise self._missing(item)
            return _metadata(relation)

        return self._retrying(lookup)

    async def ametadata(self, item: str) -> dict[str, Any]:
        """Async twin of `metadata`."""
        from headwater_postgres._sql import is_query

        async def lookup() -> dict[str, Any]:
            async with self._aconnection() as conn:
                if is_query(item):
                    return _query_metadata(item, await self._aquery_columns(conn, item))
                relation = await self._arelation(conn, item)
            if relation is None:
                raise self._missing(item)
            return _metadata(relation)

        return await self._aretrying(lookup)

    def json_fields(self, stream: str) -> frozenset[str]:
        """The json and jsonb columns of table ``stream`` (none if it does not exist yet)."""
        from headwater_postgres._sql import is_query

        if is_query(stream):
            return frozenset()

        def lookup() -> Relation | None:
            with self._connection() as conn:
                return self._relation(conn, stream)

        return _json_columns(self._retrying(lookup))

    async def ajson_fields(self, stream: str) -> frozenset[str]:
        """Async twin of `json_fields`."""
        from headwater_postgres._sql import is_query

        if is_query(stream):
            return frozenset()

        async def lookup() -> Relation | None:
            async with self._aconnection() as conn:
                return await self._arelation(conn, stream)

        return _json_columns(await self._aretrying(lookup))

    # --- read ----------------------------------------------------------------------------

    def _batch_bytes(self, value: Any) -> int:
        """The ``batch_bytes`` read option, checked as the config field of that name is."""
        if value is None:
            return self.config.batch_bytes
        from pydantic import TypeAdapter, ValidationError

        field = type(self.config).model_fields["batch_bytes"]
        try:
            checked: int = TypeAdapter(Annotated[int, field]).validate_python(value)
        except ValidationError as exc:
            problem = exc.errors(include_input=False, include_url=False)[0]["msg"]
        else:
            return checked
        raise ConfigError(f"read option batch_bytes: {problem}", field="batch_bytes")

    def _plan(
        self,
        stream: str,
        source: Relation | QuerySource | None,
        state: State | None,
        batch_size: int | None,
        options: dict[str, Any],
        upper: Sequence[Any] | None = None,
    ) -> ReadPlan:
        from headwater_postgres._plan import as_names, build_plan

        if source is None:
            raise self._missing(stream)
        return build_plan(
            stream,
            source,
            state,
            batch_size=batch_size or self.config.batch_size,
            batch_bytes=self._batch_bytes(options.get("batch_bytes")),
            columns=as_names(options.get("columns")),
            cursor_field=options.get("cursor_field"),
            key=as_names(options.get("key")),
            upper=upper,
            ordered=options.get("ordered", True),
            jsonl=options.get("format") == "jsonl",
        )

    def read(
        self,
        stream: str,
        state: State | None = None,
        *,
        batch_size: int | None = None,
        **options: Any,
    ) -> Iterator[Batch]:
        """
        Batches of rows of a table or query, each with the state after it (see the class
        docstring for the options). Memory stays bounded by the batch size.
        """
        from headwater_postgres._plan import check_options

        upper = options.pop("_upper", None)
        check_options(options)
        arrow = options.get("format") == "arrow"
        try:
            with self._connection() as conn:
                plan = self._plan(
                    stream, self._source(conn, stream), state, batch_size, options, upper
                )
                fmt = options.get("format")
                if fmt in ("pgcopy", "csv") or (fmt == "jsonl" and plan.json_items is not None):
                    jsonl = fmt == "jsonl"
                    # COPY text goes into another database, whose one COPY is the limit:
                    # a second source process would only take CPU from it (0.96x -> 0.75x
                    # of psql | psql on 2 cores), so only JSON Lines reads in parallel.
                    ranges = self._page_ranges(conn, plan) if jsonl else None
                    if ranges:
                        yield from self._read_copy_parallel(conn, plan, ranges, jsonl=jsonl)
                    else:
                        yield from self._read_copy(
                            conn, plan, plan.copy_sql(jsonl=jsonl), jsonl=jsonl
                        )
                    return
                if not arrow:
                    # format="jsonl" for a table whose JSON the server cannot make exactly
                    # as a dict read's: dict batches, which a JSON Lines sink encodes.
                    yield from self._read_rows(conn, plan)
                    return
                as_text = self._arrays_as_text(conn, plan)
                select = plan.arrow_select(as_text).as_string(conn)
            # The ADBC driver has its own connection; ours is back in the pool by now.
            from headwater_postgres._arrow import read_arrow

            yield from read_arrow(self._adbc_uri(), select, plan, as_text)
        except HeadwaterError:
            raise  # already ours: `from` itself would make it its own cause
        except Exception as exc:
            raise self.translate_error(exc) from exc

    @staticmethod
    def _arrays_as_text(conn: psycopg.Connection[Any], plan: ReadPlan) -> builtins.list[str]:
        """
        The array columns of an Arrow read that hold an array a list cannot hold (more
        dimensions, another lower bound): read as PostgreSQL's text of the array, which
        `write` gives back to the server, for the whole read, so its schema is one.
        """
        from headwater_postgres._query import read_transaction

        probe = plan.arrow_probe()
        if probe is None:
            return []
        with read_transaction(conn):
            row = conn.execute(probe).fetchone()
        arrays = [c.name for c in plan.columns if c.type.endswith("[]")]
        return [name for name, held in zip(arrays, row or (), strict=True) if held]

    def _source(self, conn: psycopg.Connection[Any], stream: str) -> Relation | QuerySource | None:
        from headwater_postgres._query import query_text
        from headwater_postgres._sql import QuerySource, is_query

        if is_query(stream):
            return QuerySource(query_text(stream), tuple(self._query_columns(conn, stream)))
        return self._relation(conn, stream)

    async def _asource(
        self, conn: psycopg.AsyncConnection[Any], stream: str
    ) -> Relation | QuerySource | None:
        from headwater_postgres._query import query_text
        from headwater_postgres._sql import QuerySource, is_query

        if is_query(stream):
            return QuerySource(query_text(stream), tuple(await self._aquery_columns(conn, stream)))
        return await self._arelation(conn, stream)

    @staticmethod
    def _read_rows(conn: psycopg.Connection[Any], plan: ReadPlan) -> Iterator[Batch]:
        from headwater_postgres._plan import BatchCutter
        from headwater_postgres._query import read_transaction
        from headwater_postgres._values import fetch_rows

        cutter = BatchCutter(plan)
        # A server-side cursor fetched in binary: psycopg builds each batch of rows in
        # C (iterating binary COPY rows runs Python code per row; README, "Why a
        # server-side cursor"), and the server keeps the rest, so memory stays bounded
        # by the batch.
        # The cursor lives in a transaction (pooled connections are in autocommit),
        # planned for reading every row rather than for a fast first row.
        with read_transaction(conn), conn.cursor(name=_CURSOR, binary=True) as cur:
            conn.execute("SET LOCAL cursor_tuple_fraction = 1")
            cur.execute(plan.select)
            while rows := fetch_rows(cur, cutter.size):
                yield cutter.batch(rows)

    @staticmethod
    def _read_copy(
        conn: psycopg.Connection[Any], plan: ReadPlan, statement: sql.Composed, *, jsonl: bool
    ) -> Iterator[Batch]:
        """
        Stream ``COPY (...) TO STDOUT`` rows into batches as they are: server-made JSON
        Lines (``format="jsonl"``, `_jsonl`) or COPY text (``format="pgcopy"``, which a
        PostgreSQL destination writes back with COPY: no value is built in Python).
        The session settings fix the text forms (dates, intervals, time zone, floats).
        """
        from headwater_postgres._jsonl import SETTINGS
        from headwater_postgres._plan import BatchCutter
        from headwater_postgres._query import read_transaction

        cutter = BatchCutter(plan)
        make_batch = cutter.jsonl_batch if jsonl else cutter.copy_text_batch
        with read_transaction(conn):
            for setting in SETTINGS:
                conn.execute(setting)
            for rows in _copy_rows(conn, statement, cutter.size, plan.batch_bytes):
                yield make_batch(rows)

    def _page_ranges(
        self, conn: psycopg.Connection[Any], plan: ReadPlan
    ) -> builtins.list[tuple[int, int | None]] | None:
        """
        Heap page ranges to read an unordered table on two connections at once (one
        server process each), or None: an ordered read, a query, or a table under
        `PARALLEL_MIN_PAGES` pages.
        """
        parts = plan.copy_parts
        if plan.ordered or parts is None or parts.table_oid is None:
            return None
        row = conn.execute(
            "SELECT pg_relation_size(%s::oid) / current_setting('block_size')::int",
            (parts.table_oid,),
        ).fetchone()
        pages = int(row[0]) if row else 0
        if pages < PARALLEL_MIN_PAGES:
            return None
        # The last range is open-ended: pages added while reading are not outside all.
        return [(0, pages // 2), (pages // 2, None)]

    def _read_copy_parallel(
        self,
        conn: psycopg.Connection[Any],
        plan: ReadPlan,
        ranges: builtins.list[tuple[int, int | None]],
        *,
        jsonl: bool,
    ) -> Iterator[Batch]:
        """
        An unordered read of a table as one COPY per page range, each on its own
        connection and thread, all in one snapshot (exported by the first, imported by the
        others, as pg_dump's parallel mode does), so together they see every row once.

        libpq waits for data without the GIL, so the servers and the threads overlap: two
        streams read a 1M-row table's JSON in 1.15 s against 2.45 s for one (client loop
        alone, 2 cores).
        Batches come in whatever order the streams deliver them; their states cannot be
        resumed from (an unordered read's never can).
        """
        import queue
        import threading

        from psycopg import sql

        from headwater_postgres._jsonl import SETTINGS
        from headwater_postgres._plan import BatchCutter
        from headwater_postgres._query import read_transaction

        cutter = BatchCutter(plan)
        make_batch = cutter.jsonl_batch if jsonl else cutter.copy_text_batch
        channel: queue.Queue[Any] = queue.Queue(maxsize=2 * len(ranges))
        stop = threading.Event()
        snapshot: list[str] = []
        exported = threading.Event()
        imported = threading.Barrier(len(ranges))
        done = object()

        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    channel.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def stream(index: int, connection: psycopg.Connection[Any]) -> None:
            try:
                with read_transaction(connection, isolation="REPEATABLE READ"):
                    if index == 0:
                        found = connection.execute("SELECT pg_export_snapshot()").fetchone()
                        assert found is not None
                        snapshot.append(found[0])
                        exported.set()
                    else:
                        exported.wait()
                        if not snapshot:
                            return
                        connection.execute(
                            sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot[0]))
                        )
                    # The exporting transaction must live until every other has imported.
                    imported.wait()
                    for setting in SETTINGS:
                        connection.execute(setting)
                    statement = plan.copy_sql(jsonl=jsonl, pages=ranges[index])
                    for rows in _copy_rows(
                        connection, statement, cutter.size, plan.batch_bytes, parallel=True
                    ):
                        if not put(rows):
                            return
                put(done)
            except BaseException as exc:
                exported.set()
                imported.abort()
                put(exc)

        def other(index: int) -> None:
            try:
                with self._connection() as connection:
                    stream(index, connection)
            except BaseException as exc:
                exported.set()
                imported.abort()
                put(exc)

        threads = [threading.Thread(target=stream, args=(0, conn), name="headwater-copy-0")]
        threads += [
            threading.Thread(target=other, args=(i,), name=f"headwater-copy-{i}")
            for i in range(1, len(ranges))
        ]
        for thread in threads:
            thread.start()
        try:
            finished = 0
            while finished < len(threads):
                item = channel.get()
                if item is done:
                    finished += 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield make_batch(item)
        finally:
            stop.set()
            for thread in threads:
                thread.join()

    async def aread(
        self,
        stream: str,
        state: State | None = None,
        *,
        batch_size: int | None = None,
        **options: Any,
    ) -> AsyncIterator[Batch]:
        """
        Async twin of `read`, on psycopg's async connection (Arrow and server-made JSON
        Lines reads run the sync read in a thread).
        """
        from headwater_postgres._plan import BatchCutter, check_options
        from headwater_postgres._query import aread_transaction
        from headwater_postgres._values import afetch_rows

        if options.get("format") in ("arrow", "jsonl", "pgcopy", "csv"):
            async for batch in super().aread(stream, state, batch_size=batch_size, **options):
                yield batch
            return
        upper = options.pop("_upper", None)
        check_options(options)
        try:
            async with self._aconnection() as conn:
                source = await self._asource(conn, stream)
                plan = self._plan(stream, source, state, batch_size, options, upper)
                cutter = BatchCutter(plan)
                async with aread_transaction(conn), conn.cursor(name=_CURSOR, binary=True) as cur:
                    await conn.execute("SET LOCAL cursor_tuple_fraction = 1")
                    await cur.execute(plan.select)
                    while rows := await afetch_rows(cur, cutter.size):
                        yield cutter.batch(rows)
        except HeadwaterError:
            raise  # already ours: `from` itself would make it its own cause
        except Exception as exc:
            raise self.translate_error(exc) from exc

    def _adbc_uri(self) -> str:
        """A libpq conninfo for the ADBC driver, which takes no separate password."""
        from psycopg.conninfo import make_conninfo

        extra = {}
        if self.config.password is not None:
            extra["password"] = self.secret("password")
        # The driver reads in a transaction of its own: make every one of them read-only.
        options = self.config.connect_kwargs().get("options") or ""
        extra["options"] = f"{options} -c default_transaction_read_only=on".strip()
        return make_conninfo(self._conninfo(), **extra)

    # --- partitions ----------------------------------------------------------------------

    def partitions(
        self, stream: str, count: int, *, key: str | None = None
    ) -> builtins.list[Partition]:
        """
        Split a table into at most ``count`` key ranges that read independently.

        The key is ``key`` or the table's single-column primary key. Integer keys are cut
        into equal-width ranges from min/max; other keys at quantiles (a full scan).
        """
        from headwater_postgres._partitions import bounds_query, partitions_from

        if count < 1:
            raise ConfigError("partition count must be at least 1", field="count")
        try:
            with self._connection() as conn:
                relation = self._relation(conn, stream)
                if relation is None:
                    raise self._missing(stream)
                query, column = bounds_query(relation, count, key)
                row = conn.execute(query).fetchone()
        except HeadwaterError:
            raise  # already ours: `from` itself would make it its own cause
        except Exception as exc:
            raise self.translate_error(exc) from exc
        return partitions_from(stream, count, column, row)

    def read_partition(
        self, partition: Partition, *, batch_size: int | None = None, state: State | None = None
    ) -> Iterator[Batch]:
        """
        Read one partition from `partitions`; batches carry ordinary resumable states
        (pass the last one back as ``state`` to resume the partition).
        """
        key = partition.bounds["key"]
        start = state
        if start is None and partition.bounds.get("lower") is not None:
            start = {"stream": partition.stream, "key": key, "last": partition.bounds["lower"]}
        yield from self.read(
            partition.stream,
            start,
            batch_size=batch_size,
            key=key,
            _upper=partition.bounds.get("upper"),
        )

    async def aread_partition(
        self, partition: Partition, *, batch_size: int | None = None, state: State | None = None
    ) -> AsyncIterator[Batch]:
        """Async twin of `read_partition`."""
        key = partition.bounds["key"]
        start = state
        if start is None and partition.bounds.get("lower") is not None:
            start = {"stream": partition.stream, "key": key, "last": partition.bounds["lower"]}
        async for batch in self.aread(
            partition.stream,
            start,
            batch_size=batch_size,
            key=key,
            _upper=partition.bounds.get("upper"),
        ):
            yield batch

    # --- write ---------------------------------------------------------------------------

    def write(
        self,
        stream: str,
        batches: Iterable[Batch | builtins.list[dict[str, Any]]],
        **options: Any,
    ) -> WriteResult:
        """
        Write records into a table with COPY, all in one transaction.

        ``batches`` are lists of dicts, `Batch` objects, ``pyarrow.RecordBatch`` or
        ``pyarrow.Table``. Options: ``schema`` (column → Python type or PostgreSQL type
        name) creates the table when it does not exist (without it, a missing table is
        created with column types inferred from the first batch: see the README);
        ``primary_key`` declares the created table's key; ``upsert_on`` (column or columns
        with a unique index) updates rows whose key exists instead of failing;
        ``mode="replace"`` empties the table first (in the same transaction);
        ``text_values=True`` says every value is its column type's PostgreSQL text form
        (a CSV file's strings), parsed by the server;
        ``state_key`` and ``state`` store that JSON state in ``headwater_state`` in the
        same commit (see `written_state`). A failure rolls everything back.
        """
        from headwater_postgres import _write

        batches, options = _write.text_batches_as_text_values(batches, options)
        spec = _write.WriteSpec.from_options(stream, options, _WRITE_OPTIONS)
        writer: _write.RowWriter | None = None
        try:
            with self._connection() as conn, conn.transaction():
                relation = self._relation(conn, stream)
                split = None
                if relation is None:
                    if spec.schema is None:
                        # No declared schema: the column types come from the first records.
                        split = _write.split_first(batches)
                    current = conn.execute(_write.CURRENT_SCHEMA).fetchone()
                    conn.execute(spec.create_sql(current, split[0] if split else None))
                    relation = self._relation(conn, stream)
                    if relation is None:  # pragma: no cover - created just above
                        raise self._missing(stream)
                writer = _write.RowWriter(spec, relation)
                for statement in writer.before():
                    conn.execute(statement)
                first, rest = split or _write.split_first(batches)
                if first is not None:
                    writer.start(first)
                    self._copy(conn, writer, first, rest)
                    for statement in writer.after():
                        conn.execute(statement)
                if spec.state_key is not None:
                    assert spec.state is not None  # WriteSpec checks both or neither
                    if conn.execute(*_write.state_exists_query(relation.schema)).fetchone() is None:
                        conn.execute(_write.create_state_sql(relation.schema))
                    # Read now, after the last batch: the caller fills it in as they pass.
                    conn.execute(*_write.store_state_query(relation, spec.state_key, spec.state))
        except Exception as exc:
            raise self._write_failure(exc, writer) from exc
        return WriteResult(stream, writer.written)

    @staticmethod
    def _copy(
        conn: psycopg.Connection[Any], writer: RowWriter, first: Any, rest: Iterator[Any]
    ) -> None:
        """COPY every batch: binary while it can be, then text to the end (see `_write`)."""
        from psycopg.copy import QueuedLibpqWriter

        from headwater.formats import CopyText
        from headwater_postgres._jsonl import SETTINGS

        if isinstance(first, CopyText):
            # The text forms were written under these settings (see `_read_copy`).
            for setting in SETTINGS:
                conn.execute(setting)
        pending = writer.prepare(first)
        with conn.cursor() as cur:
            while pending is not None:
                # A worker thread sends while this one formats rows, so waiting for the
                # server (indexes, WAL) overlaps with our work instead of alternating.
                # Not for COPY text passed through: there is no formatting to overlap, and
                # psycopg's queue would hold up to 1,024 pieces of 128 KiB while the
                # destination is slower than the source (memory grew with the row count).
                queued = None if pending.data is not None else QueuedLibpqWriter(cur)
                with cur.copy(writer.copy_sql, writer=queued) as copy:
                    writer.begin(copy)
                    text = pending.text
                    while pending is not None and pending.text == text:
                        if pending.data is not None:
                            copy.write(pending.data)
                        else:
                            # deque(map(...), 0): the per-row loop runs in C.
                            collections.deque(map(copy.write_row, pending.rows), 0)
                        writer.wrote(pending)
                        pending = writer.prepare(next(rest, None))

    def _write_failure(self, exc: Exception, writer: RowWriter | None) -> HeadwaterError:
        """A write's failure, naming the record and column when it is about one value."""
        if writer is not None:
            found = writer.failure(exc, self._context(), self.target)
            if found is not None:
                return found
        return self.translate_error(exc)

    async def awrite(
        self,
        stream: str,
        batches: Iterable[Batch | builtins.list[dict[str, Any]]]
        | AsyncIterable[Batch | builtins.list[dict[str, Any]]],
        **options: Any,
    ) -> WriteResult:
        """Async twin of `write` (accepts a sync or an async iterable of batches)."""
        from headwater_postgres import _write

        batches, options = await _write.atext_batches_as_text_values(batches, options)
        spec = _write.WriteSpec.from_options(stream, options, _WRITE_OPTIONS)
        writer: _write.RowWriter | None = None
        try:
            async with self._aconnection() as conn, conn.transaction():
                relation = await self._arelation(conn, stream)
                split = None
                if relation is None:
                    if spec.schema is None:
                        split = await _write.asplit_first(batches)
                    current = await (await conn.execute(_write.CURRENT_SCHEMA)).fetchone()
                    await conn.execute(spec.create_sql(current, split[0] if split else None))
                    relation = await self._arelation(conn, stream)
                    if relation is None:  # pragma: no cover - created just above
                        raise self._missing(stream)
                writer = _write.RowWriter(spec, relation)
                for statement in writer.before():
                    await conn.execute(statement)
                first, rest = split or await _write.asplit_first(batches)
                if first is not None:
                    writer.start(first)
                    await self._acopy(conn, writer, first, rest)
                    for statement in writer.after():
                        await conn.execute(statement)
                if spec.state_key is not None:
                    assert spec.state is not None  # WriteSpec checks both or neither
                    exists = await conn.execute(*_write.state_exists_query(relation.schema))
                    if await exists.fetchone() is None:
                        await conn.execute(_write.create_state_sql(relation.schema))
                    await conn.execute(
                        *_write.store_state_query(relation, spec.state_key, spec.state)
                    )
        except Exception as exc:
            raise self._write_failure(exc, writer) from exc
        return WriteResult(stream, writer.written)

    @staticmethod
    async def _acopy(
        conn: psycopg.AsyncConnection[Any],
        writer: RowWriter,
        first: Any,
        rest: AsyncIterator[Any],
    ) -> None:
        """Async `_copy`."""
        from headwater.formats import CopyText
        from headwater_postgres._jsonl import SETTINGS

        if isinstance(first, CopyText):
            for setting in SETTINGS:
                await conn.execute(setting)
        pending = writer.prepare(first)
        async with conn.cursor() as cur:
            while pending is not None:
                async with cur.copy(writer.copy_sql) as copy:
                    writer.begin(copy)
                    text = pending.text
                    while pending is not None and pending.text == text:
                        if pending.data is not None:
                            await copy.write(pending.data)
                        for values in pending.rows:
                            await copy.write_row(values)
                        writer.wrote(pending)
                        pending = writer.prepare(await anext(rest, None))

    # --- execute: DDL and DML the caller writes -----------------------------------------------

    def execute(self, sql: str | Any, params: Any = None) -> ExecuteResult:
        """
        Run one SQL statement (DDL or DML) in a transaction of its own and commit it.

        ``params`` (a sequence for ``%s`` placeholders, a mapping for ``%(name)s``) are
        always sent to the server as bound parameters, never formatted into the text; the
        statement goes with the extended protocol, which takes exactly one statement, so
        ``"...; DROP TABLE t"`` is refused. Reads stay with `read`, which never writes.
        Returns the rows affected (-1 for DDL) and the server's command tag.
        """
        from headwater_postgres._service import ExecuteResult, check_params, check_sql

        check_sql(sql)
        check_params(params)
        try:
            with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
                # prepare=False: one-off statements, not worth a server-side plan each.
                cur.execute(sql, params, prepare=False, binary=True)
                return ExecuteResult(cur.rowcount, cur.statusmessage)
        except Exception as exc:
            raise self._execute_error(exc) from exc

    def executemany(self, sql: str | Any, seq_of_params: Iterable[Any]) -> ExecuteResult:
        """
        Run one statement for every parameter set, all in one transaction (committed
        together, or rolled back together on the first failure). psycopg pipelines the
        statements: one round trip for the lot, not one per set.
        ``rowcount`` sums the rows of every set; ``statements`` counts the sets.
        """
        from headwater_postgres._service import ExecuteResult, check_params, check_sql

        check_sql(sql)
        sets = builtins.list(seq_of_params)
        for params in sets:
            check_params(params)
        if not sets:
            return ExecuteResult(0, None, 0)
        try:
            with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
                cur.executemany(sql, sets)
                return ExecuteResult(cur.rowcount, cur.statusmessage, len(sets))
        except Exception as exc:
            raise self._execute_error(exc) from exc

    async def aexecute(self, sql: str | Any, params: Any = None) -> ExecuteResult:
        """Async twin of `execute`, on psycopg's async connection."""
        from headwater_postgres._service import ExecuteResult, check_params, check_sql

        check_sql(sql)
        check_params(params)
        try:
            async with self._aconnection() as conn, conn.transaction(), conn.cursor() as cur:
                await cur.execute(sql, params, prepare=False, binary=True)
                return ExecuteResult(cur.rowcount, cur.statusmessage)
        except Exception as exc:
            raise self._execute_error(exc) from exc

    async def aexecutemany(self, sql: str | Any, seq_of_params: Iterable[Any]) -> ExecuteResult:
        """Async twin of `executemany`."""
        from headwater_postgres._service import ExecuteResult, check_params, check_sql

        check_sql(sql)
        sets = builtins.list(seq_of_params)
        for params in sets:
            check_params(params)
        if not sets:
            return ExecuteResult(0, None, 0)
        try:
            async with self._aconnection() as conn, conn.transaction(), conn.cursor() as cur:
                await cur.executemany(sql, sets)
                return ExecuteResult(cur.rowcount, cur.statusmessage, len(sets))
        except Exception as exc:
            raise self._execute_error(exc) from exc

    def _execute_error(self, exc: Exception) -> HeadwaterError:
        from headwater_postgres._service import execute_error

        return execute_error(exc, target=self.target)

    # --- state stored with writes ------------------------------------------------------------

    def written_state(self, stream: str, key: str) -> State | None:
        """
        The state last committed by ``write(stream, ..., state_key=key, state=...)``, from
        ``headwater_state`` in the table's schema; None when there is none (no such key
        for this table, no state table, or no table).
        """
        from headwater_postgres import _write

        try:
            with self._connection() as conn:
                relation = self._relation(conn, stream)
                if relation is None:
                    return None
                if conn.execute(*_write.state_exists_query(relation.schema)).fetchone() is None:
                    return None
                row = conn.execute(*_write.read_state_query(relation, key)).fetchone()
        except HeadwaterError:
            raise  # already ours: `from` itself would make it its own cause
        except Exception as exc:
            raise self.translate_error(exc) from exc
        return _write.state_from(row)

    async def awritten_state(self, stream: str, key: str) -> State | None:
        """Async twin of `written_state`."""
        from headwater_postgres import _write

        try:
            async with self._aconnection() as conn:
                relation = await self._arelation(conn, stream)
                if relation is None:
                    return None
                exists = await conn.execute(*_write.state_exists_query(relation.schema))
                if await exists.fetchone() is None:
                    return None
                cur = await conn.execute(*_write.read_state_query(relation, key))
                row = await cur.fetchone()
        except HeadwaterError:
            raise  # already ours: `from` itself would make it its own cause
        except Exception as exc:
            raise self.translate_error(exc) from exc
        return _write.state_from(row)

    # --- estimate ----------------------------------------------------------------------------

    def estimate(self, stream: str, **options: Any) -> Estimate:
        """
        The size of a table from the catalog: rows from ``reltuples`` (scaled to the
        table's current size, as the planner does) and bytes from
        ``pg_total_relation_size``, both estimates. A table never analyzed has no
        statistic: it is counted (``exact=True``) when it is small, else its rows are
        unknown. Views, foreign tables and queries: unknown.
        """
        from headwater_postgres import _sql
        from headwater_postgres._plan import check_options

        check_options(options)
        if _sql.is_query(stream):
            return Estimate()
        try:
            with self._connection() as conn:
                relation = self._relation(conn, stream)
                if relation is None:
                    raise self._missing(stream)
                leaves = conn.execute(_sql.ESTIMATE_QUERY, {"oid": relation.oid}).fetchall()
                guess = _sql.estimate_from(leaves)
                if guess.count_needed:
                    row = conn.execute(_sql.count_sql(relation)).fetchone()
                    assert row is not None
                    return Estimate(rows=row[0], bytes=guess.bytes, exact=True)
        except HeadwaterError:
            raise  # already ours: `from` itself would make it its own cause
        except Exception as exc:
            raise self.translate_error(exc) from exc
        return Estimate(rows=guess.rows, bytes=guess.bytes)

    async def aestimate(self, stream: str, **options: Any) -> Estimate:
        """Async twin of `estimate`."""
        from headwater_postgres import _sql
        from headwater_postgres._plan import check_options

        check_options(options)
        if _sql.is_query(stream):
            return Estimate()
        try:
            async with self._aconnection() as conn:
                relation = await self._arelation(conn, stream)
                if relation is None:
                    raise self._missing(stream)
                cur = await conn.execute(_sql.ESTIMATE_QUERY, {"oid": relation.oid})
                guess = _sql.estimate_from(await cur.fetchall())
                if guess.count_needed:
                    row = await (await conn.execute(_sql.count_sql(relation))).fetchone()
                    assert row is not None
                    return Estimate(rows=row[0], bytes=guess.bytes, exact=True)
        except HeadwaterError:
            raise  # already ours: `from` itself would make it its own cause
        except Exception as exc:
            raise self.translate_error(exc) from exc
        return Estimate(rows=guess.rows, bytes=guess.bytes)


# --- pure helpers ---------------------------------------------------------------------

#: Tables of at least this many heap pages (8 KiB each: 16 MiB) are read on two
#: connections when the order does not matter (`PostgresConnector._page_ranges`).
PARALLEL_MIN_PAGES = 2048


def _copy_rows(
    conn: psycopg.Connection[Any],
    statement: sql.Composed,
    max_rows: int,
    max_bytes: int,
    *,
    parallel: bool = False,
) -> Iterator[list[memoryview]]:
    """
    The rows of ``COPY ... TO STDOUT``, in lists of at most ``max_rows`` rows / about
    ``max_bytes`` bytes.

    Read with libpq's own call per row (``get_copy_data``): psycopg's ``Copy`` iterator
    costs a Python generator round per row, which made the client, not the server, the
    limit (3.1 s against 2.1 s for 1M rows). A consumer that stops early cancels the COPY,
    so the connection goes back to the pool usable (its transaction rolls back).
    """
    import selectors

    from psycopg import errors, pq

    pgconn = conn.pgconn
    # The extended protocol runs one statement only, whatever the text holds.
    pgconn.send_query_params(statement.as_bytes(conn), None)
    result = pgconn.get_result()
    if result is None or result.status != pq.ExecStatus.COPY_OUT:
        _drain(pgconn)
        raise errors.error_from_result(result, encoding=conn.info.encoding)  # type: ignore[arg-type]
    get = pgconn.get_copy_data
    done = False
    # A blocking get_copy_data waits for the socket holding the GIL. One stream does
    # best with it (fewer calls: pg -> pg ran 2 % faster); streams of a parallel read
    # take rows without blocking and wait in a selector, without the GIL, so the other
    # streams and the sink's writer run meanwhile.
    readable = selectors.DefaultSelector()
    if parallel:
        readable.register(pgconn.socket, selectors.EVENT_READ)
    wait = 1 if parallel else 0
    try:
        # memoryviews over the buffers libpq hands out (each owns its buffer).
        rows: list[memoryview] = []
        size = 0
        while True:
            nbytes, data = get(wait)
            if nbytes == 0:  # only without blocking: no whole row buffered yet
                readable.select()
                pgconn.consume_input()
                continue
            if nbytes < 0:
                break
            rows.append(data)
            size += nbytes
            if len(rows) >= max_rows or size >= max_bytes:
                yield rows
                rows, size = [], 0
        result = pgconn.get_result()
        _drain(pgconn)
        if result is None or result.status != pq.ExecStatus.COMMAND_OK:
            raise errors.error_from_result(result, encoding=conn.info.encoding)  # type: ignore[arg-type]
        done = True
        if rows:
            yield rows
    finally:
        readable.close()
        if not done:
            conn.cancel_safe()
            while get(0)[0] >= 0:
                pass
            _drain(pgconn)


def _drain(pgconn: Any) -> None:
    """Consume the results libpq still holds, so the connection is idle again."""
    while pgconn.get_result() is not None:
        pass


def _items(schemas: Sequence[Any], rows: Sequence[Any]) -> Iterator[Item]:
    from headwater_postgres._sql import KINDS, display_name, quote_ident

    for name, tables in schemas:
        yield Item(quote_ident(name), "schema", extra={"tables": tables})
    for _oid, schema, name, kind, estimate, size in rows:
        yield Item(
            display_name(schema, name),
            KINDS.get(kind, "table"),  # type: ignore[arg-type]
            size=size,
            extra={"schema": schema, "table": name, "row_estimate": estimate},
        )


def _json_columns(relation: Relation | None) -> frozenset[str]:
    if relation is None:
        return frozenset()
    from psycopg import postgres

    oids = {info.oid for info in map(postgres.types.get, ("json", "jsonb")) if info is not None}
    return frozenset(c.name for c in relation.columns if (c.base_oid or c.type_oid) in oids)


def _metadata(relation: Relation) -> dict[str, Any]:
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
        "size": relation.size,
    }


def _query_metadata(query: str, columns: Sequence[Column]) -> dict[str, Any]:
    return {
        "name": query,
        "kind": "query",
        "columns": [{"name": c.name, "type": c.type, "nullable": True} for c in columns],
        "primary_key": [],
    }

"""
The ``postgres`` connector: tables and queries in PostgreSQL, through psycopg 3.

* Reads run one ``SELECT ... ORDER BY key`` per read, a table's streamed in binary
  chunks (`_query.RowStream`: the server runs ahead of the client's decoding), a
  query's through a binary server-side cursor (see the README), in batches sized by
  rows and estimated bytes; each batch carries the key of its last row, so a resumed
  read adds ``WHERE (key) > (last)`` and yields exactly the rest (keyset pagination,
  not OFFSET).
* Writes are one binary ``COPY ... FROM STDIN`` inside one transaction per ``write``
  call: a failure leaves the table as it was. ``upsert_on`` stages the rows in a
  temporary table and merges them with ``INSERT ... ON CONFLICT``.
* Connections come from a psycopg_pool pool (sync) or async pool (async twins), opened
  on first use; the password is resolved for every new connection.
* Every operation is written once, as a flow (`_flows`): the sync method and its async
  twin are short drivers of the same generator, with psycopg's blocking or async API.
* psycopg is imported only when a connection is made: this module imports pydantic and
  headwater, nothing more, at import time.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import importlib.util
import logging
import threading
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
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
from headwater.toolkit import RedactingFilter, check_part, forget_after_fork
from headwater_postgres._config import PostgresConfig
from headwater_postgres._flows import (
    DIRECT,
    POOL,
    PULL,
    Blocking,
    Client,
    Flow,
    Retried,
    adrive,
    adrive_items,
    call,
    direct,
    drive,
    drive_items,
    execute,
    fetchall,
    fetchone,
    items_of,
    lend,
    lent,
    one,
    source_of,
    within,
)

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
    from headwater_postgres._write import Pieces, RowWriter, WriteSpec

__all__ = ["PostgresConfig", "PostgresConnector"]

logger = logging.getLogger("headwater.postgres")
logger.addFilter(RedactingFilter())

#: The server-side cursor a read fetches from (one read at a time per pooled connection).
_CURSOR = "headwater_read"
_WRITE_OPTIONS = frozenset(
    {"schema", "primary_key", "upsert_on", "mode", "text_values", "state_key", "state"}
)


def arrow_installed() -> bool:
    """Whether the ADBC PostgreSQL driver and its manager can be imported (not importing them)."""
    try:
        return all(
            importlib.util.find_spec(name) is not None
            for name in ("adbc_driver_postgresql", "adbc_driver_manager", "pyarrow")
        )
    except (ImportError, ValueError):  # a parent that fails to import; a None in sys.modules
        return False


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
            Capability.PART_WRITES,
        }
    )
    #: ``format="arrow"`` (through ADBC), ``"jsonl"`` (JSON made by the server),
    #: ``"pgcopy"`` (COPY text, which ``write`` takes as it is: PostgreSQL to PostgreSQL)
    #: and ``"csv"`` (the same COPY text batches: every value in its PostgreSQL text form,
    #: which a CSV file holds exactly and ``write`` parses back by column type).
    #: "arrow" only where the ADBC driver is installed (``headwater-postgres[arrow]``):
    #: `headwater.copy` asks a source for a format it names, and would otherwise ask
    #: for Arrow where reading it can only fail.
    read_formats = frozenset(
        {"jsonl", "pgcopy", "csv"} | ({"arrow"} if arrow_installed() else set())
    )
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

    # --- drivers: how each side performs a flow's steps (see `_flows`) ---------------------

    def _sync(self, source: Iterable[Any] = ()) -> Client:
        """What the sync driver connects with, and the batches a write pulls."""
        return Client(self._direct, self._get_pool, iter(source))

    def _async(self, source: Iterable[Any] | AsyncIterable[Any] = ()) -> Client:
        """What the async driver connects with, and the batches a write pulls."""
        return Client(self._adirect, self._aget_pool, source_of(source))

    # --- pools ----------------------------------------------------------------------------

    def _get_pool(self) -> ConnectionPool[Any]:
        if self._closed:
            raise ConfigError("this postgres connector is closed")
        with self._lock:
            if self._pool is None:
                from psycopg_pool import ConnectionPool

                self._pool = drive(self._new_pool(ConnectionPool), self._sync())
            return self._pool

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
                pool = await adrive(self._new_pool(AsyncConnectionPool), self._async())
                self._apool, self._apool_loop = pool, loop
                if old is not None:
                    self._abandon(old, old_loop)
            return self._apool

    def _new_pool(self, pool_class: Any) -> Flow[Any]:
        """
        A new pool of ``pool_class`` (psycopg_pool's sync or async one), opening in the
        background. One direct connection first: a wrong password or host fails now with
        the server's reason, instead of as a pool timeout 30 s later; a server that is
        restarting is waited for (config retry).
        """
        yield from self._retrying(self._probe)
        # check: a connection that broke while idle (backend terminated, server
        # restarted, network cut) is replaced on checkout, never handed out.
        pool = pool_class(
            self._conninfo(),
            kwargs=self._connect_args,
            check=pool_class.check_connection,
            **self._pool_options(),
        )
        yield call(pool, "open", wait=False)
        return pool

    @staticmethod
    def _probe() -> Flow[None]:
        """One direct connection, closed at once: whether the server takes us now."""
        conn = yield DIRECT
        yield call(conn, "close")

    def _pooled(self, body: Callable[[Any], Flow[T]]) -> Flow[T]:
        """
        ``body`` on a connection of the pool. The pool sees what the body raises, so a
        connection that broke is discarded; errors are the caller's to translate.
        """
        from psycopg_pool import PoolTimeout

        pool = yield POOL
        try:
            return (yield from within(pool.connection(), body))
        except PoolTimeout as exc:
            raise (yield from self._diagnose(exc)) from exc

    def _diagnose(self, exc: Exception) -> Flow[HeadwaterError]:
        """Why the pool gave no connection: the server's reason if it refuses us now."""
        try:
            yield from self._probe()
        except Exception as direct:
            return self.translate_error(direct)
        return self.translate_error(exc)

    def _connection(self) -> contextlib.AbstractContextManager[psycopg.Connection[Any]]:
        """A pooled connection for sync code (the parallel read's other streams)."""
        return lent(self._pooled(lend), self._sync())

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

    # --- resilience ------------------------------------------------------------------------

    def _breaker(self) -> CircuitBreaker:
        """The process-wide breaker of this server and database (config ``breaker``)."""
        return self.config.breaker.breaker(f"postgresql://{self.target}")

    def _retrying(self, attempt: Callable[[], Flow[T]]) -> Flow[T]:
        """
        ``attempt()`` (a connect, or a catalog call that changes nothing), tried again
        while it fails transiently (config ``retry``: a refused or dropped connection, a
        server starting or shutting down), through the server's breaker.
        """
        result: T = yield Retried(
            lambda: self._translated(attempt()), self._policy, self._breaker()
        )
        return result

    def _translated(self, flow: Flow[T]) -> Flow[T]:
        """``flow``, what the driver raises in it said as a headwater error."""
        try:
            return (yield from flow)
        except HeadwaterError:
            raise  # already ours: `from` itself would make it its own cause
        except Exception as exc:
            raise self.translate_error(exc) from exc

    # --- check ---------------------------------------------------------------------------

    _CHECK_SQL = "SELECT current_setting('server_version'), current_user, current_database()"

    def check_connection(self) -> str:
        return drive(self._check(), self._sync())

    async def acheck_connection(self) -> str:
        return await adrive(self._check(), self._async())

    def _check(self) -> Flow[str]:
        """One query on a new connection (not the pool's), retried."""
        row = yield from self._retrying(
            lambda: direct(lambda conn: one(fetchone(conn, self._CHECK_SQL)))
        )
        assert row is not None
        return f"PostgreSQL {row[0]} at {self.target} as {row[1]}"

    # --- catalog -------------------------------------------------------------------------

    def _relation(self, conn: Any, stream: str) -> Flow[Relation | None]:
        from headwater_postgres._sql import RELATION_QUERY, relation_from_row, split_name

        schema, name = split_name(stream)
        row = yield fetchone(conn, RELATION_QUERY, {"schema": schema, "name": name})
        return relation_from_row(row) if row else None

    def _missing(self, stream: str) -> NotFound:
        return NotFound(
            f"no table or view {stream!r} in {self.target}",
            field="stream",
            hint='`headwater ls` lists tables; quote mixed-case names: schema."Table"',
        )

    def _query_columns(self, conn: Any, query: str) -> Flow[builtins.list[Column]]:
        # Checked as one statement and described read-only, rolled back (`_query`).
        from headwater_postgres import _query

        timeout = self.config.statement_timeout
        return (
            yield from _query.describe(conn, _query.query_text(query), statement_timeout=timeout)
        )

    def list(self, path: str | None = None) -> Iterator[Item]:
        """
        Schemas (when ``path`` is None) and every table, view and materialized view, with
        row estimates and sizes: two catalog queries for the whole database.
        ``path`` = a schema name lists that schema only.
        """
        yield from _items(*drive(self._catalog(path), self._sync()))

    async def alist(self, path: str | None = None) -> AsyncIterator[Item]:
        """Async twin of `list`."""
        for item in _items(*await adrive(self._catalog(path), self._async())):
            yield item

    def _catalog(self, path: str | None) -> Flow[tuple[builtins.list[Any], builtins.list[Any]]]:
        """The rows `list` makes its items of: schemas (when ``path`` is None), relations."""
        from headwater_postgres._sql import LIST_QUERY, SCHEMA_EXISTS, SCHEMAS_QUERY

        def catalog(conn: Any) -> Flow[tuple[builtins.list[Any], builtins.list[Any]]]:
            schemas: builtins.list[Any] = []
            if path is None:
                schemas = yield fetchall(conn, SCHEMAS_QUERY)
            elif not (yield fetchone(conn, SCHEMA_EXISTS, {"schema": path})):
                raise NotFound(f"no schema {path!r} in {self.target}", field="path")
            return schemas, (yield fetchall(conn, LIST_QUERY, {"schema": path}))

        return (yield from self._retrying(lambda: self._pooled(catalog)))

    def metadata(self, item: str) -> dict[str, Any]:
        """Columns (type, nullability, default), primary key, row estimate and size."""
        return drive(self._metadata(item), self._sync())

    async def ametadata(self, item: str) -> dict[str, Any]:
        """Async twin of `metadata`."""
        return await adrive(self._metadata(item), self._async())

    def _metadata(self, item: str) -> Flow[dict[str, Any]]:
        from headwater_postgres._sql import is_query

        def lookup(conn: Any) -> Flow[dict[str, Any]]:
            if is_query(item):
                return _query_metadata(item, (yield from self._query_columns(conn, item)))
            relation = yield from self._relation(conn, item)
            if relation is None:
                raise self._missing(item)
            return _metadata(relation)

        return (yield from self._retrying(lambda: self._pooled(lookup)))

    def json_fields(self, stream: str) -> frozenset[str]:
        """The json and jsonb columns of table ``stream`` (none if it does not exist yet)."""
        return drive(self._json_fields(stream), self._sync())

    async def ajson_fields(self, stream: str) -> frozenset[str]:
        """Async twin of `json_fields`."""
        return await adrive(self._json_fields(stream), self._async())

    def _json_fields(self, stream: str) -> Flow[frozenset[str]]:
        from headwater_postgres._sql import is_query

        if is_query(stream):
            return frozenset()
        lookup = functools.partial(self._relation, stream=stream)
        return _json_columns((yield from self._retrying(lambda: self._pooled(lookup))))

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
        yield from drive_items(self._read(stream, state, batch_size, options), self._sync())

    async def aread(
        self,
        stream: str,
        state: State | None = None,
        *,
        batch_size: int | None = None,
        **options: Any,
    ) -> AsyncIterator[Batch]:
        """
        Async twin of `read`, on psycopg's async connection (Arrow, COPY text and
        server-made JSON Lines reads run the sync read in a worker thread).
        """
        if options.get("format") in ("arrow", "jsonl", "pgcopy", "csv"):
            async for batch in super().aread(stream, state, batch_size=batch_size, **options):
                yield batch
            return
        flow = self._read(stream, state, batch_size, options)
        async with contextlib.aclosing(adrive_items(flow, self._async())) as batches:
            async for batch in batches:
                yield batch

    def _read(
        self, stream: str, state: State | None, batch_size: int | None, options: dict[str, Any]
    ) -> Flow[None]:
        """
        The batches of a read: planned on a pooled connection (the source's columns, the
        key to page on, where the state resumes), then read in the format asked for.
        """
        from headwater_postgres._plan import check_options

        upper = options.pop("_upper", None)
        check_options(options)

        def planned(conn: Any) -> Flow[tuple[str, ReadPlan, builtins.list[str]] | None]:
            source = yield from self._source(conn, stream)
            plan = self._plan(stream, source, state, batch_size, options, upper)
            return (yield from self._read_on(conn, plan, options.get("format")))

        def reading() -> Flow[None]:
            arrow = yield from self._pooled(planned)
            if arrow is not None:
                # The ADBC driver has its own connection; ours is back in the pool by now.
                from headwater_postgres._arrow import read_arrow

                yield from items_of(read_arrow(self._adbc_uri(), *arrow))

        yield from self._translated(reading())

    def _read_on(
        self, conn: Any, plan: ReadPlan, fmt: str | None
    ) -> Flow[tuple[str, ReadPlan, builtins.list[str]] | None]:
        """
        Yield the batches of ``plan`` read on ``conn``; for an Arrow read, return what the
        ADBC driver reads instead (the statement, the plan, the arrays read as text).
        COPY text and Arrow reads need the sync connection (`aread` runs them in a thread).
        """
        if fmt in ("pgcopy", "csv") or (fmt == "jsonl" and plan.json_items is not None):
            jsonl = fmt == "jsonl"
            # COPY text goes into another database, whose one COPY is the limit:
            # a second source process would only take CPU from it (0.96x -> 0.75x
            # of psql | psql on 2 cores), so only JSON Lines reads in parallel.
            ranges = (yield from self._page_ranges(conn, plan)) if jsonl else None
            if ranges:
                batches = self._read_copy_parallel(conn, plan, ranges, jsonl=jsonl)
            else:
                batches = self._read_copy(conn, plan, plan.copy_sql(jsonl=jsonl), jsonl=jsonl)
            yield from items_of(batches)
            return None
        if fmt != "arrow":
            # format="jsonl" for a table whose JSON the server cannot make exactly
            # as a dict read's: dict batches, which a JSON Lines sink encodes.
            yield from self._read_rows(conn, plan)
            return None
        as_text: builtins.list[str] = yield Blocking(self._arrays_as_text, (conn, plan))
        return plan.arrow_select(as_text).as_string(conn), plan, as_text

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

    def _source(self, conn: Any, stream: str) -> Flow[Relation | QuerySource | None]:
        from headwater_postgres._query import query_text
        from headwater_postgres._sql import QuerySource, is_query

        if is_query(stream):
            text = query_text(stream)
            return QuerySource(text, tuple((yield from self._query_columns(conn, stream))))
        return (yield from self._relation(conn, stream))

    @staticmethod
    def _read_rows(conn: Any, plan: ReadPlan) -> Flow[None]:
        from headwater_postgres._plan import BatchCutter
        from headwater_postgres._query import RowStream, chunked_rows, read_only
        from headwater_postgres._values import fetch_rows

        cutter = BatchCutter(plan)

        def stream(rows: RowStream) -> Flow[None]:
            yield from rows.start()
            while chunk := (yield from rows.rows()):
                yield cutter.batch(chunk)

        def fetch(cur: Any) -> Flow[None]:
            yield execute(conn, "SET LOCAL cursor_tuple_fraction = 1")
            yield call(cur, "execute", plan.select)
            while rows := (yield from fetch_rows(cur, cutter.size)):
                yield cutter.batch(rows)

        def body() -> Flow[None]:
            # A table's rows are streamed in chunks of a batch (its row width, so the
            # batch size, known from statistics): the server runs ahead of the client's
            # decoding (`RowStream`; README, "Why streamed rows"). A server-side cursor
            # fetched in binary serves the rest: a query stream (its first batch
            # measures the width), a read under a statement_timeout (which then bounds
            # each FETCH, not the whole read) and libpq before 17. psycopg builds each
            # batch of rows in C either way, and memory stays bounded by a batch or two.
            # The cursor is planned for reading every row rather than for a fast first row.
            if not plan.measure_width and chunked_rows():
                timeout = yield fetchone(conn, "SHOW statement_timeout")
                if timeout is not None and timeout[0] == "0":
                    return (yield from within(RowStream(conn, plan.select, cutter.size), stream))
            return (yield from within(conn.cursor(name=_CURSOR, binary=True), fetch))

        # In a read-only transaction (pooled connections are in autocommit).
        yield from read_only(conn, body)

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
        self, conn: Any, plan: ReadPlan
    ) -> Flow[builtins.list[tuple[int, int | None]] | None]:
        """
        Heap page ranges to read an unordered table on two connections at once (one
        server process each), or None: an ordered read, a query, or a table under
        `PARALLEL_MIN_PAGES` pages.
        """
        parts = plan.copy_parts
        if plan.ordered or parts is None or parts.table_oid is None:
            return None
        row = yield fetchone(
            conn,
            "SELECT pg_relation_size(%s::oid) / current_setting('block_size')::int",
            (parts.table_oid,),
        )
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
        self, stream: str, count: int, *, key: str | None = None, **options: Any
    ) -> builtins.list[Partition]:
        """
        Split a table, or a query stream, into at most ``count`` key ranges that read
        independently and together hold every row once.

        The key is ``key`` or the table's single-column primary key; a query stream has
        none, so ``key`` names a column of its result (the query then runs as a subquery
        with the range's predicate; NULL keys are in the last range). Integer keys are
        cut into equal-width ranges from min/max; other keys at quantiles (a full scan).
        """
        from headwater_postgres._partitions import bounds_query, partitions_from
        from headwater_postgres._query import read_only
        from headwater_postgres._sql import Relation

        if options:
            raise ConfigError(
                f"unknown partition option(s): {', '.join(sorted(options))} (known: key)",
                field=next(iter(sorted(options))),
            )
        if count < 1:
            raise ConfigError("partition count must be at least 1", field="count")

        def bounds(conn: Any) -> Flow[tuple[Column, Any]]:
            source = yield from self._source(conn, stream)
            if source is None:
                raise self._missing(stream)
            query, column = bounds_query(source, count, key)
            if isinstance(source, Relation):
                return column, (yield fetchone(conn, query))

            def cut_points() -> Flow[Any]:
                # The user's query runs as every read of it does: read-only, rolled
                # back, one statement by the extended protocol (`_query`).
                cur = conn.cursor(binary=True)
                yield call(cur, "execute", query, binary=True)
                return (yield call(cur, "fetchone"))

            return column, (yield from read_only(conn, cut_points))

        column, row = drive(self._translated(self._pooled(bounds)), self._sync())
        return partitions_from(stream, count, column, row)

    def read_partition(
        self,
        partition: Partition,
        *,
        batch_size: int | None = None,
        state: State | None = None,
        **options: Any,
    ) -> Iterator[Batch]:
        """
        Read one partition from `partitions`; batches carry ordinary resumable states
        (pass the last one back as ``state`` to resume the partition). ``options`` are
        `read`'s (``format="arrow"``), except the key, which is the partition's.
        """
        start, bounded = _partition_read(partition, state, options)
        yield from self.read(partition.stream, start, batch_size=batch_size, **bounded)

    async def aread_partition(
        self,
        partition: Partition,
        *,
        batch_size: int | None = None,
        state: State | None = None,
        **options: Any,
    ) -> AsyncIterator[Batch]:
        """Async twin of `read_partition`."""
        start, bounded = _partition_read(partition, state, options)
        batches = self.aread(partition.stream, start, batch_size=batch_size, **bounded)
        async with contextlib.aclosing(batches) as it:  # type: ignore[type-var]
            async for batch in it:
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
        # A worker thread sends while this one formats rows (see `_write.copy`).
        from psycopg.copy import QueuedLibpqWriter

        return drive(self._write(stream, options, QueuedLibpqWriter), self._sync(batches))

    async def awrite(
        self,
        stream: str,
        batches: Iterable[Batch | builtins.list[dict[str, Any]]]
        | AsyncIterable[Batch | builtins.list[dict[str, Any]]],
        **options: Any,
    ) -> WriteResult:
        """Async twin of `write` (accepts a sync or an async iterable of batches)."""
        return await adrive(self._write(stream, options, None), self._async(batches))

    def _write(
        self, stream: str, options: dict[str, Any], queue: Callable[[Any], Any] | None
    ) -> Flow[WriteResult]:
        """
        The flow of a write, its batches `PULL` ed from the driver: on one pooled
        connection, in one transaction, create the table if it is missing, COPY the
        records (into a staging table merged by an upsert when ``upsert_on``), then store
        the state: it commits with the data or not at all. ``queue``: see `_write.copy`.
        """
        from headwater_postgres import _write

        first = yield PULL
        options = _write.text_values_option(first, options)
        spec = _write.WriteSpec.from_options(stream, options, _WRITE_OPTIONS)
        pieces = _write.Pieces(first)
        writers: builtins.list[RowWriter] = []

        def transaction(conn: Any) -> Flow[int]:
            body = lambda _: self._write_in(conn, spec, pieces, queue, writers)  # noqa: E731
            return (yield from within(conn.transaction(), body))

        try:
            written = yield from self._pooled(transaction)
        except Exception as exc:
            failure = self._write_failure(exc, writers[0] if writers else None)
            if failure is exc:
                raise  # already ours: `from` itself would make it its own cause
            raise failure from exc
        return WriteResult(stream, written)

    def _write_in(
        self,
        conn: Any,
        spec: WriteSpec,
        pieces: Pieces,
        queue: Callable[[Any], Any] | None,
        writers: builtins.list[RowWriter],
    ) -> Flow[int]:
        """The statements of `_write` in its transaction; how many records were written."""
        from headwater_postgres import _write

        relation = yield from self._relation(conn, spec.stream)
        if relation is None:
            # No declared schema: the column types come from the first records.
            sample = (yield from pieces.first()) if spec.schema is None else None
            current = yield fetchone(conn, _write.CURRENT_SCHEMA)
            yield execute(conn, spec.create_sql(current, sample))
            relation = yield from self._relation(conn, spec.stream)
            if relation is None:  # pragma: no cover - created just above
                raise self._missing(spec.stream)
        writer = _write.RowWriter(spec, relation)
        writers.append(writer)
        for statement in writer.before():
            yield execute(conn, statement)
        first = yield from pieces.first()
        if first is not None:
            writer.start(first)
            yield from _write.copy(conn, writer, first, pieces, queue)
            for statement in writer.after():
                yield execute(conn, statement)
        if spec.state_key is not None:
            assert spec.state is not None  # WriteSpec checks both or neither
            if (yield fetchone(conn, *_write.state_exists_query(relation.schema))) is None:
                yield execute(conn, _write.create_state_sql(relation.schema))
            # Read now, after the last batch: the caller fills it in as they pass.
            yield execute(conn, *_write.store_state_query(relation, spec.state_key, spec.state))
        return writer.written

    def _write_failure(self, exc: Exception, writer: RowWriter | None) -> HeadwaterError:
        """A write's failure, naming the record and column when it is about one value."""
        if writer is not None:
            found = writer.failure(exc, self._context(), self.target)
            if found is not None:
                return found
        return self.translate_error(exc)

    # --- part writes: an engine's exactly-once write (see `_parts`) ------------------------

    def write_part(
        self,
        stream: str,
        batches: Iterable[Batch | builtins.list[dict[str, Any]]],
        *,
        job: str,
        index: int,
        **options: Any,
    ) -> WriteResult:
        """
        Stage part ``index`` of ``job`` in its own table ``hw_part_<job>_<index>`` next to
        ``stream``: TRUNCATE and COPY in one transaction, so writing the part again
        replaces it. ``options`` are `write`'s; the stage takes ``schema`` and
        ``text_values``, `commit_parts` the rest (``state_key`` is refused).
        """
        from headwater_postgres import _parts

        check_part(job, index)
        _parts.check_options(options)
        records = _parts.non_empty(batches)
        prepare = _parts.prepare_stage(self, stream, job, index, records is None)
        stage = drive(prepare, self._sync())
        if records is None:
            return WriteResult(stream, 0)
        staged = self.write(stage, records, mode="replace", **_parts.part_options(options))
        return WriteResult(stream, staged.records)

    async def awrite_part(
        self,
        stream: str,
        batches: Iterable[Batch | builtins.list[dict[str, Any]]],
        *,
        job: str,
        index: int,
        **options: Any,
    ) -> WriteResult:
        """Async twin of `write_part`."""
        from headwater_postgres import _parts

        check_part(job, index)
        _parts.check_options(options)
        records = _parts.non_empty(batches)
        prepare = _parts.prepare_stage(self, stream, job, index, records is None)
        stage = await adrive(prepare, self._async())
        if records is None:
            return WriteResult(stream, 0)
        staged = await self.awrite(stage, records, mode="replace", **_parts.part_options(options))
        return WriteResult(stream, staged.records)

    def commit_parts(
        self, stream: str, *, job: str, parts: Mapping[int, int], **options: Any
    ) -> WriteResult:
        """
        Insert the staged parts of ``job`` into ``stream`` and drop them, in one
        transaction (see `_parts`): ``mode="replace"`` empties the table first,
        ``upsert_on`` updates existing keys; a missing table is created like the parts.
        """
        from headwater_postgres import _parts

        return drive(_parts.commit(self, stream, job, parts, options), self._sync())

    async def acommit_parts(
        self, stream: str, *, job: str, parts: Mapping[int, int], **options: Any
    ) -> WriteResult:
        """Async twin of `commit_parts`."""
        from headwater_postgres import _parts

        return await adrive(_parts.commit(self, stream, job, parts, options), self._async())

    def abort_parts(self, stream: str, *, job: str) -> None:
        """Drop every staged part of ``job`` (none is fine)."""
        from headwater_postgres import _parts

        drive(_parts.abort(self, stream, job), self._sync())

    async def aabort_parts(self, stream: str, *, job: str) -> None:
        """Async twin of `abort_parts`."""
        from headwater_postgres import _parts

        await adrive(_parts.abort(self, stream, job), self._async())

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
        return drive(self._execute(sql, [params]), self._sync())

    def executemany(self, sql: str | Any, seq_of_params: Iterable[Any]) -> ExecuteResult:
        """
        Run one statement for every parameter set, all in one transaction (committed
        together, or rolled back together on the first failure). psycopg pipelines the
        statements: one round trip for the lot, not one per set.
        ``rowcount`` sums the rows of every set; ``statements`` counts the sets.
        """
        return drive(self._execute(sql, seq_of_params, many=True), self._sync())

    async def aexecute(self, sql: str | Any, params: Any = None) -> ExecuteResult:
        """Async twin of `execute`, on psycopg's async connection."""
        return await adrive(self._execute(sql, [params]), self._async())

    async def aexecutemany(self, sql: str | Any, seq_of_params: Iterable[Any]) -> ExecuteResult:
        """Async twin of `executemany`."""
        return await adrive(self._execute(sql, seq_of_params, many=True), self._async())

    def _execute(
        self, statement: str | Any, sets: Iterable[Any], *, many: bool = False
    ) -> Flow[ExecuteResult]:
        """
        ``statement`` once for each of the parameter ``sets`` (``many``: all of them in
        one call, or one set), in a transaction of its own, committed.
        """
        from headwater_postgres._service import ExecuteResult, check_params, check_sql

        check_sql(statement)
        sets = builtins.list(sets)
        for params in sets:
            check_params(params)
        if many and not sets:
            return ExecuteResult(0, None, 0)

        def run(cur: Any) -> Flow[ExecuteResult]:
            if many:
                yield call(cur, "executemany", statement, sets)
                return ExecuteResult(cur.rowcount, cur.statusmessage, len(sets))
            # prepare=False: one-off statements, not worth a server-side plan each.
            yield call(cur, "execute", statement, sets[0], prepare=False, binary=True)
            return ExecuteResult(cur.rowcount, cur.statusmessage)

        def transaction(conn: Any) -> Flow[ExecuteResult]:
            return (yield from within(conn.transaction(), lambda _: within(conn.cursor(), run)))

        try:
            return (yield from self._pooled(transaction))
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
        return drive(self._written_state(stream, key), self._sync())

    async def awritten_state(self, stream: str, key: str) -> State | None:
        """Async twin of `written_state`."""
        return await adrive(self._written_state(stream, key), self._async())

    def _written_state(self, stream: str, key: str) -> Flow[State | None]:
        from headwater_postgres import _write

        def lookup(conn: Any) -> Flow[Any]:
            relation = yield from self._relation(conn, stream)
            if relation is None:
                return None
            if (yield fetchone(conn, *_write.state_exists_query(relation.schema))) is None:
                return None
            return (yield fetchone(conn, *_write.read_state_query(relation, key)))

        return _write.state_from((yield from self._translated(self._pooled(lookup))))

    # --- estimate ----------------------------------------------------------------------------

    def estimate(self, stream: str, **options: Any) -> Estimate:
        """
        The size of a table from the catalog: rows from ``reltuples`` (scaled to the
        table's current size, as the planner does) and bytes from
        ``pg_total_relation_size``, both estimates. A table never analyzed has no
        statistic: it is counted (``exact=True``) when it is small, else its rows are
        unknown. Views, foreign tables and queries: unknown.
        """
        return drive(self._estimate(stream, options), self._sync())

    async def aestimate(self, stream: str, **options: Any) -> Estimate:
        """Async twin of `estimate`."""
        return await adrive(self._estimate(stream, options), self._async())

    def _estimate(self, stream: str, options: dict[str, Any]) -> Flow[Estimate]:
        from headwater_postgres import _sql
        from headwater_postgres._plan import check_options

        check_options(options)
        if _sql.is_query(stream):
            return Estimate()

        def estimate(conn: Any) -> Flow[Estimate]:
            relation = yield from self._relation(conn, stream)
            if relation is None:
                raise self._missing(stream)
            leaves = yield fetchall(conn, _sql.ESTIMATE_QUERY, {"oid": relation.oid})
            guess = _sql.estimate_from(leaves)
            if not guess.count_needed:
                return Estimate(rows=guess.rows, bytes=guess.bytes)
            row = yield fetchone(conn, _sql.count_sql(relation))
            assert row is not None
            return Estimate(rows=row[0], bytes=guess.bytes, exact=True)

        return (yield from self._translated(self._pooled(estimate)))


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


def _partition_read(
    partition: Partition, state: State | None, options: dict[str, Any]
) -> tuple[State | None, dict[str, Any]]:
    """
    Where a read of ``partition`` starts (``state``, else its lower bound) and its read
    options: ``options`` with the partition's key and upper bound.
    """
    taken = {"key", "_upper"} & set(options)
    if taken:
        raise ConfigError(
            f"a partition's read takes its key and bounds from the partition, not {sorted(taken)}",
            field=sorted(taken)[0],
        )
    key = partition.bounds["key"]
    start = state
    if start is None and partition.bounds.get("lower") is not None:
        start = {"stream": partition.stream, "key": key, "last": partition.bounds["lower"]}
    return start, {**options, "key": key, "_upper": partition.bounds.get("upper")}

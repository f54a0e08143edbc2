"""
The one way a read touches the server: read-only, one statement per call, rolled back.

A stream that is a SQL query is the user's text, so everything that runs it (read,
describe, metadata, the COPY and Arrow reads) goes through here:

* the text is first checked by the server's own parser, as a prepared statement sent
  with the extended protocol: that protocol takes exactly one statement, so
  ``select 1) q; DROP TABLE t; select (1`` is refused before anything runs, and a text
  that is valid only once wrapped in ``SELECT ... FROM (...)`` is refused too;
* a describe runs inside a ``READ ONLY`` transaction that is always rolled back, under
  a ``statement_timeout``;
* a read's transaction is ``READ ONLY`` and rolled back as well (nothing a read does is
  worth committing), so a data-modifying ``WITH`` fails instead of writing.

Writing is what ``write`` is for. Table reads use the same read-only transaction: a read
never needs more.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

from psycopg import sql

from headwater import ConfigError
from headwater_postgres._flows import (
    Client,
    Flow,
    adrive,
    call,
    drive,
    execute,
    fetchall,
    lend,
    lent,
    within,
)

if TYPE_CHECKING:
    import psycopg

    from headwater_postgres._sql import Column

R = TypeVar("R")

#: Seconds a describe may take at most (the configured statement_timeout when lower).
#: A describe only parses and plans, but parsing waits for locks on the tables it names.
DESCRIBE_TIMEOUT: Final = 30.0

#: Prefix of the prepared statement that checks a query's text (dropped right after;
#: PREPARE outlives a rollback, so each check has its own name and a leftover of a
#: cancelled one never blocks the next).
_CHECK_PREFIX: Final = "headwater_query_check_"

_KINDS: Final = "one SELECT, WITH, VALUES or TABLE statement"
_HINT: Final = "a query stream only reads; write with `headwater write` / connector.write()"

#: A query stream: starts with one of these keywords (optionally after an opening bracket).
_FIRST_WORD: Final = re.compile(r"^\s*\(*\s*(select|with|values|table)\b", re.IGNORECASE)


def query_text(stream: str) -> str:
    """
    The query of a stream, as it is wrapped in ``SELECT ... FROM (...)``: trailing
    semicolons and blanks dropped (``select 1;`` is one statement, but not inside brackets).
    """
    text = stream.strip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    if not _FIRST_WORD.match(text):
        raise ConfigError(f"a query stream must be {_KINDS}", field="stream", hint=_HINT)
    return text


def subquery(query: str) -> sql.Composed:
    """``(\\n query \\n)``: on lines of its own, so a trailing ``--`` comment stays inside."""
    return sql.SQL("(\n{}\n)").format(sql.SQL(query))


def _check_sql(query: str) -> tuple[sql.Composed, sql.Composed]:
    """``PREPARE`` of the bare text (parsed, never run) and its ``DEALLOCATE``."""
    name = sql.Identifier(_CHECK_PREFIX + uuid.uuid4().hex)
    return (
        sql.SQL("PREPARE {} AS\n{}").format(name, sql.SQL(query)),
        sql.SQL("DEALLOCATE {}").format(name),
    )


def describe_sql(query: str) -> sql.Composed:
    return sql.SQL("SELECT * FROM {} AS q LIMIT 0").format(subquery(query))


def _timeout_ms(configured: float | None) -> int:
    seconds = DESCRIBE_TIMEOUT if configured is None else min(configured, DESCRIBE_TIMEOUT)
    return max(1, round(seconds * 1000))


def _read_only(timeout_ms: int | None) -> list[sql.Composed]:
    statements = [sql.SQL("SET TRANSACTION READ ONLY").format()]
    if timeout_ms is not None:
        statements.append(
            sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(timeout_ms))
        )
    return statements


def refusal(exc: BaseException) -> ConfigError | None:
    """
    A clear error for a query the server refused because of what it is (several
    statements, or a write in a read-only transaction); None for any other failure.
    """
    sqlstate = getattr(exc, "sqlstate", None)
    diag = getattr(exc, "diag", None)
    primary = str(getattr(diag, "message_primary", None) or exc).strip()
    if sqlstate == "42601" and "multiple commands" in primary:
        return ConfigError(
            f"a query stream must be {_KINDS}; this text holds several", field="stream", hint=_HINT
        )
    if sqlstate == "25006" or (sqlstate == "0A000" and "data-modifying" in primary):
        return ConfigError(
            f"a query stream must be {_KINDS} that only reads; the server refused: {primary}",
            field="stream",
            hint=_HINT,
        )
    return None


def read_only(
    conn: Any,
    body: Callable[[], Flow[R]],
    *,
    timeout_ms: int | None = None,
    isolation: str | None = None,
) -> Flow[R]:
    """
    ``body`` in a ``READ ONLY`` transaction that is rolled back however it ends.
    ``isolation`` (e.g. ``REPEATABLE READ``) is set first, as PostgreSQL requires.
    """

    def inside(_: Any) -> Flow[R]:
        if isolation is not None:
            level = sql.SQL("SET TRANSACTION ISOLATION LEVEL {}").format(sql.SQL(isolation))
            yield execute(conn, level)
        for statement in _read_only(timeout_ms):
            yield execute(conn, statement)
        return (yield from body())

    return (yield from within(conn.transaction(force_rollback=True), inside))


def chunked_rows() -> bool:
    """Whether libpq returns a statement's rows in chunks (libpq 17 and later): `RowStream`."""
    from psycopg import capabilities

    return capabilities.has_stream_chunked()


class RowStream:
    """
    The rows of one statement (sent with the extended protocol, rows in binary) as the
    server sends them, in chunks of ``size`` rows: libpq's chunked rows mode.

    The server runs the statement to its end without waiting for the client, which
    decodes one chunk while the next ones arrive (the socket's buffers hold what the
    client has not read yet, so memory stays bounded by a chunk or two). A server-side
    cursor makes the server wait for each ``FETCH`` instead: it produces nothing while
    the client decodes.

    A scope (``with`` or ``async with``, through `Within`): one whose statement is still
    running when it ends (a consumer that stopped early, an error) cancels it and reads
    what is left, so the connection is idle for its transaction's rollback.
    """

    __slots__ = ("_conn", "_error", "_running", "_size", "_statement", "_tx")

    def __init__(self, conn: Any, statement: sql.Composable, size: int) -> None:
        from psycopg.adapt import Transformer

        self._conn = conn
        self._statement = statement
        self._size = size
        self._tx = Transformer(conn)
        self._running = False
        self._error: Any = None

    def start(self) -> Flow[None]:
        """Send the statement."""
        from psycopg.generators import send
        from psycopg.pq import Format

        conn = self._conn
        pgconn = conn.pgconn
        statement = self._statement.as_bytes(conn)
        pgconn.send_query_params(statement, None, result_format=Format.BINARY)
        self._running = True
        pgconn.set_chunked_rows_mode(self._size)
        yield call(conn, "wait", send(pgconn))

    def rows(self) -> Flow[list[tuple[Any, ...]]]:
        """The next chunk's rows (`_values.load_rows`); an empty list after the last."""
        from psycopg import errors
        from psycopg.generators import fetch
        from psycopg.pq import ExecStatus

        from headwater_postgres._values import load_rows

        conn = self._conn
        while self._running:
            try:
                result = yield call(conn, "wait", fetch(conn.pgconn))
            except Exception:
                self._running = False  # the connection broke: nothing left to read
                if self._error is None:
                    raise
                break  # the server's error (a terminated backend) says more
            if result is None:  # the statement is done: the connection is idle
                self._running = False
            elif result.status == ExecStatus.TUPLES_CHUNK or (
                result.status == ExecStatus.TUPLES_OK and result.ntuples
            ):
                return load_rows(self._tx, result, conn)
            elif result.status not in (ExecStatus.TUPLES_OK, ExecStatus.COMMAND_OK):
                # An error ends the statement; read on to the end before raising it.
                self._error = self._error or result
        if self._error is not None:
            error, self._error = self._error, None
            raise errors.error_from_result(error, encoding=conn.info.encoding)
        return []

    def _stop(self) -> Flow[None]:
        """Cancel a statement still running and read what is left of it."""
        from psycopg.generators import fetch

        if not self._running:
            return
        self._running = False
        conn = self._conn
        with contextlib.suppress(Exception):
            yield call(conn, "cancel_safe")
        with contextlib.suppress(Exception):  # a broken connection: the pool discards it
            while (yield call(conn, "wait", fetch(conn.pgconn))) is not None:
                pass

    def __enter__(self) -> RowStream:
        return self

    def __exit__(self, *exc: object) -> None:
        drive(self._stop(), Client())

    async def __aenter__(self) -> RowStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await adrive(self._stop(), Client())


def read_transaction(
    conn: psycopg.Connection[Any], *, timeout_ms: int | None = None, isolation: str | None = None
) -> contextlib.AbstractContextManager[Any]:
    """`read_only` as a context manager, for the reads only the sync connection runs."""
    flow = read_only(conn, lambda: lend(conn), timeout_ms=timeout_ms, isolation=isolation)
    return lent(flow, Client())


def describe(conn: Any, query: str, *, statement_timeout: float | None) -> Flow[list[Column]]:
    """
    The result columns of ``query``: checked as one statement by the server's parser,
    then described with ``LIMIT 0``, both read-only, rolled back, under a timeout.
    Every statement goes with the extended protocol (``binary=True``: psycopg sends
    parameterless text with the simple protocol, which runs several statements).
    """
    from headwater_postgres._sql import TYPE_NAMES

    def run() -> Flow[tuple[list[Any], list[Any]]]:
        cur = conn.cursor(binary=True)
        prepare, deallocate = _check_sql(query)
        yield call(cur, "execute", prepare, binary=True)
        yield call(cur, "execute", deallocate, binary=True)
        yield call(cur, "execute", describe_sql(query), binary=True)
        description = list(cur.description or ())
        oids = [d.type_code for d in description]
        return description, (yield fetchall(conn, TYPE_NAMES, {"oids": oids}))

    try:
        timeout = _timeout_ms(statement_timeout)
        description, rows = yield from read_only(conn, run, timeout_ms=timeout)
    except Exception as exc:
        refused = refusal(exc)
        if refused is not None:
            raise refused from None
        raise
    return columns_from(description, {r[0]: (r[1], r[2]) for r in rows})


def columns_from(description: Sequence[Any], info: dict[int, tuple[str, int]]) -> list[Column]:
    """Columns of a query's result from its description and the catalog's type names."""
    from headwater_postgres._sql import Column

    names = [d.name for d in description]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ConfigError(f"the query returns two columns named {dup!r}; alias one of them")
    return [
        Column(
            name=d.name,
            type_oid=d.type_code,
            base_oid=info.get(d.type_code, ("text", 0))[1],
            type=info.get(d.type_code, ("text", 0))[0],
            nullable=True,
        )
        for d in description
    ]

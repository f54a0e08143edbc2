"""
What a long-running service needs beside reads and writes (pure logic, no psycopg import):

* `ExecuteResult` and the error translation of ``execute`` / ``executemany``: DDL and
  DML the caller writes, parameters always bound by the driver;
* `pool_stats`: a pool's counters in the shape every headwater connector's ``stats()``
  uses (``size``, ``in_use``, ``idle``, ``waiting``, ``opened``, ``closed``, ``errors``).

Fork safety (a connector made before ``os.fork()`` drops its pools in the child, which
opens its own on first use: a libpq connection shared by two processes interleaves their
protocol messages on one socket) is core's `headwater.toolkit.forget_after_fork`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Final

from headwater import ConfigError, HeadwaterError

if TYPE_CHECKING:
    pass


@dataclasses.dataclass(frozen=True)
class ExecuteResult:
    """
    What ``execute`` / ``executemany`` did, committed.

    ``rowcount`` is the rows the statement(s) inserted, updated, deleted or selected
    (summed over every parameter set of ``executemany``), or -1 when the statement
    reports none (DDL such as ``CREATE TABLE``). ``status`` is the server's command tag of
    the last statement (``"INSERT 0 3"``, ``"CREATE TABLE"``). ``statements`` is how
    many times the statement ran (the number of parameter sets).
    """

    rowcount: int
    status: str | None
    statements: int = 1


_EXECUTE_HINT: Final = (
    "execute() runs one statement per call, with its values as parameters "
    "(%s or %(name)s placeholders)"
)


def check_sql(statement: Any) -> None:
    """``execute`` takes the SQL text (or a psycopg ``sql.Composable``), never None."""
    from psycopg import sql

    if isinstance(statement, str):
        if not statement.strip():
            raise ConfigError("execute() needs a SQL statement; got an empty text", field="sql")
        return
    if not isinstance(statement, sql.Composable):
        raise ConfigError(
            f"execute() takes the SQL as a str or psycopg.sql.Composable, not "
            f"{type(statement).__name__}",
            field="sql",
            hint=_EXECUTE_HINT,
        )


def check_params(params: Any) -> None:
    """Parameters are a sequence or a mapping: a str would be bound one character each."""
    from collections.abc import Mapping, Sequence

    if params is None or isinstance(params, Mapping):
        return
    if isinstance(params, str | bytes) or not isinstance(params, Sequence):
        raise ConfigError(
            f"execute() parameters must be a sequence (for %s) or a mapping (for %(name)s), "
            f"not {type(params).__name__}",
            field="params",
            hint=_EXECUTE_HINT,
        )


def execute_error(exc: BaseException, *, target: str) -> HeadwaterError:
    """
    A failure of ``execute`` said as headwater errors are: the cases that are about the
    call itself (several statements, parameters that do not fit, a statement that cannot
    run in a transaction) first, then the connector's usual translation. Only the
    server's primary message is kept: its DETAIL can quote the row's values.
    """
    import psycopg

    from headwater_postgres._errors import translate

    if isinstance(exc, HeadwaterError):
        return exc
    sqlstate = getattr(exc, "sqlstate", None)
    diag = getattr(exc, "diag", None)
    primary = " ".join(str(getattr(diag, "message_primary", None) or exc).split())
    if sqlstate == "42601" and "multiple commands" in primary:
        return ConfigError(
            f"{target}: execute() runs one statement; this text holds several",
            field="sql",
            hint="call execute() once per statement (each call is its own transaction)",
        )
    if sqlstate == "25001":
        return ConfigError(
            f"{target}: {primary}",
            field="sql",
            hint="execute() runs every statement in a transaction; run statements such as "
            "VACUUM or CREATE INDEX CONCURRENTLY with a client of their own",
        )
    if sqlstate is None and isinstance(exc, psycopg.ProgrammingError | psycopg.DataError):
        # Raised by psycopg before anything is sent: placeholders and parameters do not
        # match, or a value has no adapter. The message names counts and types only.
        return ConfigError(f"execute() parameters: {primary}", field="params", hint=_EXECUTE_HINT)
    error = translate(exc, target=target)
    if error.field in ("stream", "columns"):
        # The generic translation speaks of a read's stream; here the text is `sql`.
        error.field = "sql"
    return error


# --- pool statistics ----------------------------------------------------------------------


def live_waiting(pool: Any) -> int | None:
    """
    Requests waiting for a connection now. psycopg_pool's ``requests_waiting`` also counts
    requests that already gave up (timed out) until a connection is returned; its queue's
    entries tell them apart (read defensively: None when a release moves them).
    """
    waiting = getattr(pool, "_waiting", None)
    if waiting is None:
        return None
    try:
        return sum(
            1
            for client in list(waiting)
            if getattr(client, "conn", None) is None and getattr(client, "error", None) is None
        )
    except Exception:
        return None


def pool_stats(raw: dict[str, int], *, waiting: int | None = None) -> dict[str, int]:
    """
    psycopg_pool's ``get_stats()`` in the uniform shape, its own counters kept beside.

    ``opened`` counts the connections the pool made (attempts less failures); ``closed``
    is derived as opened less the current size (psycopg_pool does not count closings:
    expired, idle-shrunk, broken and bad returns all end up here); ``errors`` adds failed
    connection attempts and failed requests (timeouts, too many waiting); ``lost`` is
    connections found broken (on checkout, when ``check`` runs, or when returned).
    ``waiting`` is `live_waiting` when given.
    """
    size = raw.get("pool_size", 0)
    idle = raw.get("pool_available", 0)
    opened = max(0, raw.get("connections_num", 0) - raw.get("connections_errors", 0))
    return {
        "size": size,
        "in_use": max(0, size - idle),
        "idle": idle,
        "waiting": raw.get("requests_waiting", 0) if waiting is None else waiting,
        "opened": opened,
        "closed": max(0, opened - size),
        "errors": raw.get("connections_errors", 0) + raw.get("requests_errors", 0),
        "lost": raw.get("connections_lost", 0) + raw.get("returns_bad", 0),
        "min_size": raw.get("pool_min", 0),
        "max_size": raw.get("pool_max", 0),
        "requests": raw.get("requests_num", 0),
    }

"""Pools in a long-running service: stats(), broken connections replaced, fork safety."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from typing import Any

import pytest

from headwater_postgres import PostgresConnector

_PID = "SELECT pg_backend_pid() AS pid"
UNIFORM = {"size", "in_use", "idle", "waiting", "opened", "closed", "errors"}


def _rows(connector: PostgresConnector, stream: str, **options: Any) -> list[dict[str, Any]]:
    return [r for batch in connector.read(stream, **options) for r in batch.records]


async def _arows(connector: PostgresConnector, stream: str, **options: Any) -> list[dict[str, Any]]:
    return [r async for batch in connector.aread(stream, **options) for r in batch.records]


def _backend(connector: PostgresConnector) -> int:
    return int(_rows(connector, _PID, key="pid")[0]["pid"])


def _sessions(pg_admin: Any, app_name: str) -> set[int]:
    rows = pg_admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app_name,)
    ).fetchall()
    return {r[0] for r in rows}


def _terminate(pg_admin: Any, app_name: str) -> int:
    """End every session of this test's connector; wait until the server has."""
    pids = _sessions(pg_admin, app_name)
    for pid in pids:
        pg_admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    deadline = time.monotonic() + 10
    while _sessions(pg_admin, app_name) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _sessions(pg_admin, app_name)
    return len(pids)


def test_stats_uniform_shape(pg):
    """No pool before first use; then size, in use, idle and the counters, as ints."""
    assert pg.stats() == {}
    pg.execute("SELECT 1")
    stats = pg.stats()["sync"]
    assert UNIFORM <= set(stats)
    assert all(isinstance(v, int) for v in stats.values())
    assert stats["size"] >= 1
    assert stats["opened"] >= 1
    assert stats["in_use"] == 0
    assert stats["idle"] == stats["size"]
    reading = pg.read("SELECT generate_series(1, 10) AS n", key="n", batch_size=2)
    next(reading)  # a read in progress holds its connection
    assert pg.stats()["sync"]["in_use"] == 1
    reading.close()
    assert pg.stats()["sync"]["in_use"] == 0
    assert pg.pool_stats()["sync"]["requests_num"] >= 2  # psycopg_pool's own counters


def test_broken_connection_is_replaced_on_checkout(pg, pg_admin, app_name):
    """A pooled connection whose backend was terminated is not handed out again."""
    first = _backend(pg)
    assert _terminate(pg_admin, app_name) >= 1
    # Without the pool's check this read gets the dead connection and fails.
    second = _backend(pg)
    assert second != first
    stats = pg.stats()["sync"]
    assert stats["lost"] >= 1
    assert stats["closed"] >= 1
    # Twice in a row: the replacement is as good as any.
    assert _terminate(pg_admin, app_name) >= 1
    assert _rows(pg, "SELECT 1 AS one", key="one") == [{"one": 1}]


async def test_async_broken_connection_is_replaced(apg, pg_admin, app_name):
    """The async pool checks on checkout as well."""
    first = (await _arows(apg, _PID, key="pid"))[0]["pid"]
    await asyncio.to_thread(_terminate, pg_admin, app_name)
    second = (await _arows(apg, _PID, key="pid"))[0]["pid"]
    assert second != first
    assert apg.stats()["async"]["lost"] >= 1


def _child(connector: PostgresConnector, table: str, parent_pid: int, out: Any) -> None:
    """In the forked child: read with the parent's connector, sync and async."""
    try:
        child_pid = _backend(connector)
        rows = _rows(connector, table, key="id")
        arows = asyncio.run(_arows(connector, table, key="id"))
        connector.execute(f"INSERT INTO {table} VALUES (%s)", [100 + (child_pid != parent_pid)])
        out.put((child_pid, rows, arows))
    except BaseException as exc:  # the parent reports it
        out.put(repr(exc))
    finally:
        connector.close()


def test_fork_child_reconnects_and_parent_keeps_its_sessions(pg_dsn, pg_admin, pg_schema, app_name):
    """
    A connector used before os.fork(): the child opens its own connections on first use
    (a different backend), and the parent's sessions, sync and async, all survive it.
    """
    connector = PostgresConnector({"url": pg_dsn, "application_name": app_name})
    table = f'"{pg_schema}".t'
    try:
        connector.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)")
        connector.executemany(f"INSERT INTO {table} VALUES (%s)", [(1,), (2,), (3,)])
        parent_pid = _backend(connector)
        # An async pool too, whose loop asyncio.run has closed: a child must not close it.
        asyncio.run(_arows(connector, table, key="id"))
        before = _sessions(pg_admin, app_name)
        assert parent_pid in before
        assert len(before) >= 2

        context = multiprocessing.get_context("fork")
        out = context.Queue()
        child = context.Process(target=_child, args=(connector, table, parent_pid, out))
        child.start()
        result = out.get(timeout=60)
        child.join(60)
        assert child.exitcode == 0, result
        assert not isinstance(result, str), result
        child_pid, rows, arows = result
        expected = [{"id": 1}, {"id": 2}, {"id": 3}]
        assert rows == expected
        assert arows == expected
        assert child_pid != parent_pid
        assert child_pid not in before

        # No session of the parent was ended by the child, and its pool still serves.
        assert before <= _sessions(pg_admin, app_name)
        assert _backend(connector) == parent_pid
        assert _rows(connector, table, key="id") == [*expected, {"id": 101}]
    finally:
        connector.close()


def test_stats_waiting_and_errors(pg_dsn, app_name):
    """
    A request waiting for the only pooled connection shows in `waiting`; one that timed
    out waiting, in `errors`.
    """
    import threading

    from headwater import ConnectionFailed

    connector = PostgresConnector(
        {"url": pg_dsn, "application_name": app_name, "pool_max_size": 1, "pool_timeout": 2.0}
    )
    try:
        reading = connector.read("SELECT generate_series(1, 10) AS n", key="n", batch_size=2)
        next(reading)  # holds the only connection
        with pytest.raises(ConnectionFailed) as info:
            connector.execute("SELECT 1")
        assert info.value.field == "pool_timeout"
        assert connector.stats()["sync"]["errors"] >= 1

        waiter = threading.Thread(target=connector.execute, args=("SELECT pg_sleep(0)",))
        waiter.start()
        deadline = time.monotonic() + 5
        while connector.stats()["sync"]["waiting"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert connector.stats()["sync"]["waiting"] == 1
        reading.close()  # gives the connection back: the waiting request gets it
        waiter.join(10)
        assert not waiter.is_alive()
        assert connector.stats()["sync"]["waiting"] == 0
    finally:
        connector.close()

"""Faults and load: a terminated backend mid-read, and 100 concurrent reads through 5 connections."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from headwater import HeadwaterError
from headwater_postgres import PostgresConnector

from .pg_helpers import arows_of, rows_of


def _fill(admin, schema, rows, width):
    admin.execute(f'CREATE TABLE "{schema}".big (id bigint PRIMARY KEY, pad text)')
    admin.execute(
        f'INSERT INTO "{schema}".big SELECT g, repeat(md5(g::text), {width // 32}) '
        f"FROM generate_series(1, {rows}) g"
    )
    return f"{schema}.big"


def _terminate(admin, app_name) -> int:
    # The reading backend: streaming ('active') or holding its cursor between fetches
    # ('idle in transaction'); the pool's other connections are plain 'idle'.
    rows = admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = %s AND state IN ('active', 'idle in transaction') "
        "AND pid <> pg_backend_pid()",
        (app_name,),
    ).fetchall()
    return len(rows)


def test_terminated_backend_is_retryable_and_resume_is_exact(pg, pg_admin, pg_schema, app_name):
    """pg_terminate_backend mid-read: a retryable error; resuming yields exactly the rest."""
    # Many batches of ~320 KB: the read is still fetching when its backend is killed.
    table = _fill(pg_admin, pg_schema, 100_000, 320)
    seen: list[int] = []
    states = []

    def consume():
        for batch in pg.read(table, batch_size=1_000):
            seen.extend(r["id"] for r in batch.records)
            states.append(batch.state)
            if len(seen) == 2_000:
                assert 1 == _terminate(pg_admin, app_name)

    with pytest.raises(HeadwaterError) as info:
        consume()
    state = states[-1] if states else None
    error = info.value
    assert error.retryable
    assert "\n" not in error.message
    assert state is not None
    rest = [r["id"] for r in rows_of(pg.read(table, state, batch_size=10_000))]
    assert list(range(1, 100_001)) == seen + rest


def test_slow_consumer_past_idle_transaction_timeout_is_retryable(
    pg_dsn, pg_admin, pg_schema, app_name
):
    """
    A pause between batches beyond idle_in_transaction_session_timeout while a cursor
    holds the rest (a query stream's read): retry resumes.
    """
    table = _fill(pg_admin, pg_schema, 3_000, 64)
    query = f"SELECT id, pad FROM {table}"  # the test's own table
    config = {
        "url": pg_dsn,
        "application_name": app_name,
        "options": "-c idle_in_transaction_session_timeout=200",
    }
    seen: list[int] = []
    states = []

    def consume(connector):
        for batch in connector.read(query, key="id", batch_size=1_000):
            seen.extend(r["id"] for r in batch.records)
            states.append(batch.state)
            time.sleep(0.6)  # the consumer is busy; the server gives up on the session

    with PostgresConnector(config) as connector:
        with pytest.raises(HeadwaterError) as info:
            consume(connector)
        assert info.value.retryable
        assert "idle_in_transaction_session_timeout" in info.value.message
        rest = [r["id"] for r in rows_of(connector.read(query, states[-1], key="id"))]
    assert list(range(1, 3_001)) == seen + rest
    assert seen


def test_slow_consumer_of_a_streamed_table_read_gets_every_row(
    pg_dsn, pg_admin, pg_schema, app_name
):
    """
    A table's rows are streamed: the statement is running (or done, its rows on their
    way) while the consumer pauses, never idle in its transaction, so the same pauses
    end with every row, exactly.
    """
    table = _fill(pg_admin, pg_schema, 3_000, 64)
    config = {
        "url": pg_dsn,
        "application_name": app_name,
        "options": "-c idle_in_transaction_session_timeout=200",
    }
    seen: list[int] = []
    with PostgresConnector(config) as connector:
        for batch in connector.read(table, batch_size=1_000):
            seen.extend(r["id"] for r in batch.records)
            time.sleep(0.6)
        assert 3_000 == batch.state["rows"]
        assert [1, 2] == [r["id"] for r in rows_of(connector.read(table, batch_size=2))][:2]
    assert list(range(1, 3_001)) == seen


async def test_async_terminated_backend(apg, pg_admin, pg_schema, app_name):
    """The async read reports a killed backend as retryable and resumes exactly too."""
    table = _fill(pg_admin, pg_schema, 100_000, 320)
    seen: list[int] = []
    states = []

    async def consume():
        async for batch in apg.aread(table, batch_size=1_000):
            seen.extend(r["id"] for r in batch.records)
            states.append(batch.state)
            if len(seen) == 2_000:
                assert 1 == await asyncio.to_thread(_terminate, pg_admin, app_name)

    with pytest.raises(HeadwaterError) as info:
        await consume()
    state = states[-1]
    assert info.value.retryable
    rest = [r["id"] for r in await arows_of(apg.aread(table, state, batch_size=10_000))]
    assert list(range(1, 100_001)) == seen + rest


class _Watcher:
    """Samples pg_stat_activity for one application_name until stopped; keeps the maximum."""

    def __init__(self, dsn: str, app_name: str) -> None:
        import psycopg

        self.conn = psycopg.connect(dsn, autocommit=True)
        self.app_name = app_name
        self.most = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            (count,) = self.conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                (self.app_name,),
            ).fetchone()
            self.most = max(self.most, count)
            self.samples += 1
            time.sleep(0.002)

    def __enter__(self) -> _Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.conn.close()


def test_pool_under_thread_load(pg_dsn, pg_admin, pg_schema, app_name):
    """100 concurrent reads in threads through a pool of 5: all complete, never > 5 connections."""
    table = _fill(pg_admin, pg_schema, 3_000, 64)
    config = {"url": pg_dsn, "application_name": app_name, "pool_max_size": 5}
    with PostgresConnector(config) as connector, _Watcher(pg_dsn, app_name) as watcher:
        with ThreadPoolExecutor(max_workers=100) as executor:
            counts = list(
                executor.map(
                    lambda _: len(rows_of(connector.read(table, batch_size=500))), range(100)
                )
            )
        stats = connector.pool_stats()["sync"]
    assert [3_000] * 100 == counts
    assert 1 <= watcher.most <= 5
    assert watcher.samples > 0
    assert stats["pool_max"] == 5
    assert stats["requests_num"] >= 100


async def test_pool_under_async_load(pg_dsn, pg_admin, pg_schema, app_name):
    """100 concurrent asyncio reads through a pool of 5: all complete, never > 5 connections."""
    table = _fill(pg_admin, pg_schema, 3_000, 64)
    config = {"url": pg_dsn, "application_name": app_name, "pool_max_size": 5}
    connector = PostgresConnector(config)
    try:
        with _Watcher(pg_dsn, app_name) as watcher:
            results = await asyncio.gather(
                *(arows_of(connector.aread(table, batch_size=500)) for _ in range(100))
            )
        stats = connector.pool_stats()["async"]
    finally:
        await connector.aclose()
    assert [3_000] * 100 == [len(r) for r in results]
    assert 1 <= watcher.most <= 5
    assert stats["requests_num"] >= 100


def test_pool_options_reach_the_pool(pg_dsn, app_name):
    """pool_max_idle / pool_max_lifetime configure the psycopg_pool pool; stats are exposed."""
    config = {
        "url": pg_dsn,
        "application_name": app_name,
        "pool_max_size": 3,
        "pool_max_idle": 42.5,
        "pool_max_lifetime": 321.0,
    }
    with PostgresConnector(config) as connector:
        assert {} == connector.pool_stats()
        assert [{"one": 1}] == rows_of(connector.read("SELECT 1 AS one"))
        pool = connector._pool
        stats = connector.pool_stats()
    assert (42.5, 321.0, 3) == (pool.max_idle, pool.max_lifetime, pool.max_size)
    assert ["sync"] == list(stats)
    assert 3 == stats["sync"]["pool_max"]
    assert stats["sync"]["requests_num"] >= 1
    assert stats["sync"]["connections_num"] >= 1


async def test_async_pool_options_reach_the_pool(pg_dsn, app_name):
    """The async pool gets the same max_idle / max_lifetime, and its stats are exposed."""
    config = {
        "url": pg_dsn,
        "application_name": app_name,
        "pool_max_idle": 17.0,
        "pool_max_lifetime": 99.0,
    }
    connector = PostgresConnector(config)
    try:
        assert [{"one": 1}] == await arows_of(connector.aread("SELECT 1 AS one"))
        pool = connector._apool
        stats = connector.pool_stats()
    finally:
        await connector.aclose()
    assert (17.0, 99.0) == (pool.max_idle, pool.max_lifetime)
    assert ["async"] == list(stats)
    assert stats["async"]["requests_num"] >= 1

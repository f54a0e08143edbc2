"""
A table's dict read streams its statement (libpq's chunked rows, `_query.RowStream`):
the same records and states as the server-side cursor it replaced (which query streams,
reads under a statement_timeout and libpq before 17 still use), errors raised, and a
read stopped early leaving its connection idle for the next one.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from headwater import HeadwaterError
from headwater_postgres import PostgresConnector, _query

from .pg_helpers import arows_of, make_types_table, rows_of


def _same(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as compared: NaN (never equal to itself) as a marker."""
    return [
        {k: "NaN" if isinstance(v, float) and v != v else v for k, v in row.items()} for row in rows
    ]


@pytest.fixture
def streams(monkeypatch) -> list[Any]:
    """The `RowStream` s reads make (a read that makes none used the cursor)."""
    made: list[Any] = []

    class Counted(_query.RowStream):
        __slots__ = ()

        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            made.append(self)

    monkeypatch.setattr(_query, "RowStream", Counted)
    return made


def _tables(admin, schema: str) -> list[str]:
    edges = f'"{schema}".edges'
    admin.execute(
        f"CREATE TABLE {edges} (id int PRIMARY KEY, d date, ts timestamp, tz timestamptz, "
        "t time, j jsonb, big jsonb)"
    )
    admin.execute(
        f"INSERT INTO {edges} VALUES "
        "(1, '0044-03-15 BC', '0044-03-15 12:00:00.5 BC', 'infinity', '24:00', 'null', "
        "'12345678901234567890.5'), "
        "(2, '10000-01-01', '-infinity', '10000-01-01 00:00:00.25+00', '01:00', "
        """'{"a": [1, 2.50]}', NULL), """
        "(3, '2024-02-29', '2024-02-29 13:14:15', '2024-02-29 13:14:15+00', '00:00', "
        """'"x"', '[1e400]')"""
    )
    return [make_types_table(admin, schema), f"{schema}.edges"]


async def test_streamed_reads_equal_cursor_reads(
    pg, apg, pg_admin, pg_schema, streams, monkeypatch
):
    """Every type and every edge, batch by batch, sync and async: the same rows and states."""
    tables = _tables(pg_admin, pg_schema)
    streamed = [
        (_same(rows_of(pg.read(t, batch_size=2))), [b.state for b in pg.read(t, batch_size=2)])
        for t in tables
    ]
    astreamed = [_same(await arows_of(apg.aread(t, batch_size=2))) for t in tables]
    assert 2 * len(tables) + len(tables) == len(streams)
    monkeypatch.setattr(_query, "chunked_rows", lambda: False)  # libpq before 17
    cursor = [
        (_same(rows_of(pg.read(t, batch_size=2))), [b.state for b in pg.read(t, batch_size=2)])
        for t in tables
    ]
    assert 3 * len(tables) == len(streams)  # no stream made
    assert cursor == streamed
    assert [rows for rows, _ in cursor] == astreamed
    assert [3, 3] == [len(rows) for rows, _ in cursor]


def test_a_query_stream_and_a_statement_timeout_use_the_cursor(
    pg_dsn, pg, pg_admin, pg_schema, streams
):
    """A query stream measures its first batch; a statement_timeout bounds each FETCH."""
    table = make_types_table(pg_admin, pg_schema)
    rows_of(pg.read(f"SELECT * FROM {table}", key="id"))  # the test's table
    assert not streams
    with PostgresConnector({"url": pg_dsn, "statement_timeout": 30}) as connector:
        assert 3 == len(rows_of(connector.read(table)))
    assert not streams
    assert 3 == len(rows_of(pg.read(table)))
    assert 1 == len(streams)


def _big(admin, schema: str) -> str:
    """32 MB of rows: far more than the socket holds, so the server is still sending."""
    admin.execute(f'CREATE TABLE "{schema}".big (id bigint PRIMARY KEY, pad text)')
    admin.execute(
        f'INSERT INTO "{schema}".big SELECT g, repeat(md5(g::text), 10) '
        "FROM generate_series(1, 100000) g"
    )
    return f"{schema}.big"


def test_a_statement_timeout_bounds_each_batch_not_the_read(pg_dsn, pg_admin, pg_schema):
    """A consumer slower in all than statement_timeout: every row (the cursor's FETCHes)."""
    table = _big(pg_admin, pg_schema)
    seen = 0
    with PostgresConnector({"url": pg_dsn, "statement_timeout": 0.5}) as connector:
        for batch in connector.read(table, batch_size=10_000):
            seen += len(batch)
            time.sleep(0.1)  # 1 s in all
    assert 100_000 == seen


#: A read after another, on the connection it gave back.
_THREE = "SELECT generate_series(1, 3) AS n"


def _view(admin, schema: str) -> str:
    """A view whose row 2,500 fails (division by zero) on the server, mid-stream."""
    admin.execute(
        f'CREATE VIEW "{schema}".v AS SELECT g AS id, 1 / (g - 2500) AS q '
        "FROM generate_series(1, 5000) g"
    )
    return f"{schema}.v"


def test_a_server_error_mid_stream_fails_the_read(pg, pg_admin, pg_schema, streams):
    """The batches before the failing row, then the server's error; the pool is usable."""
    view = _view(pg_admin, pg_schema)
    seen: list[int] = []

    def consume() -> None:
        for batch in pg.read(view, batch_size=1_000):
            seen.extend(r["id"] for r in batch.records)

    with pytest.raises(HeadwaterError, match="division by zero"):
        consume()
    assert streams
    assert list(range(1, 2_001)) == seen
    assert pg.stats()["sync"]["in_use"] == 0
    assert [1, 2, 3] == [r["n"] for r in rows_of(pg.read(_THREE, key="n"))]


async def test_an_async_server_error_mid_stream_fails_the_read(apg, pg_admin, pg_schema):
    view = _view(pg_admin, pg_schema)
    seen: list[int] = []

    async def consume() -> None:
        async for batch in apg.aread(view, batch_size=1_000):
            seen.extend(r["id"] for r in batch.records)

    with pytest.raises(HeadwaterError, match="division by zero"):
        await consume()
    assert list(range(1, 2_001)) == seen
    assert [1, 2, 3] == [r["n"] for r in await arows_of(apg.aread(_THREE, key="n"))]


def _active(admin, app_name: str) -> list[Any]:
    return admin.execute(
        "SELECT state FROM pg_stat_activity WHERE application_name = %s "
        "AND state <> 'idle' AND pid <> pg_backend_pid()",
        (app_name,),
    ).fetchall()


def test_a_read_stopped_early_cancels_its_statement(pg, pg_admin, pg_schema, app_name, streams):
    """Closing the reader cancels the statement: the connection goes back idle, and works."""
    table = _big(pg_admin, pg_schema)
    reader = pg.read(table, batch_size=1_000)
    assert 1_000 == len(next(reader))
    assert streams
    reader.close()
    assert pg.stats()["sync"]["in_use"] == 0
    assert not _active(pg_admin, app_name)
    first = rows_of(pg.read(f"SELECT id FROM {table} WHERE id <= 3", key="id"))
    assert [1, 2, 3] == [r["id"] for r in first]


async def test_an_async_read_stopped_early_cancels_its_statement(
    apg, pg_admin, pg_schema, app_name
):
    table = _big(pg_admin, pg_schema)
    reader = apg.aread(table, batch_size=1_000)
    async for batch in reader:
        assert 1_000 == len(batch)
        break
    await reader.aclose()
    assert apg.stats()["async"]["in_use"] == 0
    assert not _active(pg_admin, app_name)
    first = await arows_of(apg.aread(f"SELECT id FROM {table} WHERE id <= 3", key="id"))
    assert [1, 2, 3] == [r["id"] for r in first]

"""
PostgreSQL: headwater-postgres against the raw driver ways and the peers, in one run.

Table: bigint id, two ints, two floats, ~20-char text, timestamptz, boolean, small jsonb
(1,000,000 rows; 2,000 with ``--quick``). Scenarios:

* dict records: psycopg binary COPY rows made into dicts (baseline), a psycopg
  server-side cursor with dict rows and one fetched in binary made into dicts, asyncpg,
  dlt ``sql_table`` (pyarrow and SQLAlchemy backends), and headwater ``read``;
* Arrow, cold and warm (`bench._harness.cold_and_warm`): raw ``COPY ... TO STDOUT``
  bytes (the ceiling), the ADBC driver through its DB-API module (baseline) and through
  the driver manager's own API, and headwater ``read(format="arrow")``;
* write: psycopg binary COPY of the same dicts (baseline), asyncpg
  ``copy_records_to_table`` of them, and headwater ``write``;
* memory: headwater dict reads of 1M and 5M rows (peak RSS should be flat).

Every case imports its libraries before its clock starts (`bench._harness.imports`), so
the figures compare reading, not import times: at this machine's speed a 1M-row read
takes about a second, and 0.2 s of pyarrow/ADBC imports would otherwise be a fifth of it.

The server comes from ``HEADWATER_TEST_PG_DSN`` (default: the project's test server).
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
from collections.abc import Iterator
from typing import Any

from bench._harness import Case, Scenario, cold_and_warm, imports

DSN = os.environ.get("HEADWATER_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
SCHEMA = "headwater_bench"
COLUMNS = "id, a, b, x, y, s, ts, flag, j"

_DDL = """
CREATE TABLE {t} (
    id bigint PRIMARY KEY, a integer, b integer, x double precision, y double precision,
    s text, ts timestamptz, flag boolean, j jsonb
)
"""
_FILL = """
INSERT INTO {t}
SELECT g, g % 1000, (g * 7) % 100000, g / 3.0, random(),
       substr(md5(g::text), 1, 20), timestamptz '2024-01-01' + g * interval '1 second',
       g % 2 = 0, jsonb_build_object('k', g % 10, 'tag', 'v' || (g % 5))
  FROM generate_series(1, {n}) g
"""


#: What a headwater case imports before its clock starts (like the drivers of the others).
_HEADWATER = (
    "psycopg",
    "psycopg_pool",
    "headwater_postgres",
    "headwater_postgres._connector",
    "headwater_postgres._plan",
    "headwater_postgres._values",
)


def _select(table: str) -> str:
    """The read statement every case runs (table names are the benchmark's own)."""
    return f"SELECT {COLUMNS} FROM {table} ORDER BY id"  # noqa: S608


def _admin() -> Any:
    import psycopg

    return psycopg.connect(DSN, autocommit=True)


def make_table(
    name: str, rows: int, *, schema: str = SCHEMA, ddl: str = _DDL, fill: str = _FILL
) -> str:
    """
    ``schema.name`` created afresh from ``ddl`` and filled with ``rows`` rows by ``fill``
    (both formatted with ``t`` and ``n``), vacuumed and analyzed so the first case does
    not pay for hint bits and statistics. The benchmarks' own names only.
    """
    table = f"{schema}.{name}"
    with _admin() as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(ddl.format(t=table))
        if rows:
            conn.execute(fill.format(t=table, n=rows))
            conn.execute(f"VACUUM ANALYZE {table}")
    return table


def _make_table(name: str, rows: int) -> str:
    return make_table(name, rows)


# --- set-up / tear-down ------------------------------------------------------------------


def setup_read(quick: bool) -> dict[str, Any]:
    rows = 2_000 if quick else 1_000_000
    return {"dsn": DSN, "table": _make_table("t_read", rows), "rows": rows}


def setup_memory(quick: bool) -> dict[str, Any]:
    small, big = (1_000, 3_000) if quick else (1_000_000, 5_000_000)
    return {
        "dsn": DSN,
        "small": _make_table("t_small", small),
        "big": _make_table("t_big", big),
    }


def setup_write(quick: bool) -> dict[str, Any]:
    rows = 2_000 if quick else 1_000_000
    return {
        "dsn": DSN,
        "rows": rows,
        "raw_table": _make_table("w_raw", 0),
        "hw_table": _make_table("w_hw", 0),
    }


LIST_SCHEMA = "headwater_bench_list"


def setup_list(quick: bool) -> dict[str, Any]:
    """A schema of many small tables (5,000; 50 with --quick), each with a primary key."""
    count = 50 if quick else 5_000
    with _admin() as conn:
        _drop_list_schema(conn)
        conn.execute(f"CREATE SCHEMA {LIST_SCHEMA}")
        # 250 tables a transaction: one transaction creating all of them would need more
        # locks than the server's default lock table holds.
        for first in range(1, count + 1, 250):
            last = min(count, first + 249)
            conn.execute(
                f"DO $$ BEGIN FOR i IN {first}..{last} LOOP EXECUTE format("
                f"'CREATE TABLE %I.%I (id bigint PRIMARY KEY, v text)', '{LIST_SCHEMA}', "
                "'t' || i); END LOOP; END $$"
            )
        conn.execute(f"ANALYZE {LIST_SCHEMA}.t1")
    return {"dsn": DSN, "count": count}


def teardown_list(**_: Any) -> None:
    with _admin() as conn:
        _drop_list_schema(conn)


def _drop_list_schema(conn: Any) -> None:
    """Drop the many-tables schema 250 tables a transaction (see `setup_list`)."""
    from psycopg import sql

    while names := [
        row[0]
        for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s LIMIT 250", (LIST_SCHEMA,)
        )
    ]:
        tables = [sql.Identifier(LIST_SCHEMA, name) for name in names]
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.SQL(", ").join(tables)))
    conn.execute(f"DROP SCHEMA IF EXISTS {LIST_SCHEMA} CASCADE")


def teardown(**_: Any) -> None:
    with _admin() as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


# --- dict records ------------------------------------------------------------------------

_OIDS = [20, 23, 23, 701, 701, 25, 1184, 16, 3802]
_NAMES = COLUMNS.split(", ")


@imports("psycopg")
def psycopg_copy_dicts(dsn: str, table: str, **_: Any) -> int:
    """The fastest plain psycopg way to dicts: binary COPY rows + dict(zip(...))."""
    import psycopg

    count = 0
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        query = f"COPY ({_select(table)}) TO STDOUT (FORMAT BINARY)"
        with cur.copy(query) as copy:  # type: ignore[call-overload]
            copy.set_types(_OIDS)
            for row in copy.rows():
                record = dict(zip(_NAMES, row, strict=True))
                count += record is not None
    return count


@imports("psycopg")
def psycopg_binary_cursor_dicts(dsn: str, table: str, **_: Any) -> int:
    """A psycopg server-side cursor in binary, fetchmany batches + dict(zip(...))."""
    import psycopg

    count = 0
    with psycopg.connect(dsn) as conn, conn.cursor("bench", binary=True) as cur:
        cur.execute(_select(table))
        while rows := cur.fetchmany(10_000):
            for row in rows:
                record = dict(zip(_NAMES, row, strict=True))
                count += record is not None
    return count


@imports("psycopg", "psycopg.rows")
def psycopg_cursor_dicts(dsn: str, table: str, **_: Any) -> int:
    """A psycopg server-side cursor with dict rows (the usual way)."""
    import psycopg
    from psycopg.rows import dict_row

    count = 0
    with psycopg.connect(dsn) as conn, conn.cursor("bench", row_factory=dict_row) as cur:
        cur.itersize = 10_000
        cur.execute(_select(table))
        for _row in cur:
            count += 1
    return count


@imports(*_HEADWATER)
def headwater_dicts(dsn: str, table: str, **_: Any) -> int:
    """headwater-postgres read(): dict records with resumable states."""
    from headwater_postgres import PostgresConnector

    count = 0
    with PostgresConnector({"url": dsn}) as connector:
        for batch in connector.read(table):
            count += len(batch)
    return count


@imports("asyncpg")
def asyncpg_records(dsn: str, table: str, **_: Any) -> int:
    """asyncpg cursor, records made into dicts (jsonb stays text)."""
    import asyncio

    import asyncpg

    async def run() -> int:
        conn = await asyncpg.connect(dsn)
        count = 0
        try:
            async with conn.transaction():
                async for record in conn.cursor(_select(table), prefetch=10_000):
                    count += dict(record) is not None
        finally:
            await conn.close()
        return count

    return asyncio.run(run())


def _dlt(dsn: str, table: str, backend: str) -> int:
    from dlt.sources.sql_database import sql_table

    schema, name = table.split(".")
    url = dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    resource = sql_table(
        credentials=url, table=name, schema=schema, backend=backend, chunk_size=10_000
    )
    count = 0
    for item in resource:
        count += item.num_rows if hasattr(item, "num_rows") else 1
    return count


@imports("dlt.sources.sql_database", "pyarrow", "sqlalchemy", "psycopg")
def dlt_pyarrow(dsn: str, table: str, **_: Any) -> int:
    """dlt sql_table extract, pyarrow backend."""
    return _dlt(dsn, table, "pyarrow")


@imports("dlt.sources.sql_database", "sqlalchemy", "psycopg")
def dlt_sqlalchemy(dsn: str, table: str, **_: Any) -> int:
    """dlt sql_table extract, SQLAlchemy backend (dict rows)."""
    return _dlt(dsn, table, "sqlalchemy")


# --- Arrow ---------------------------------------------------------------------------------


@imports("psycopg")
def raw_copy_bytes(dsn: str, table: str, rows: int, **_: Any) -> int:
    """COPY ... TO STDOUT bytes, discarded: the ceiling for any Python reader."""
    import psycopg

    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        query = f"COPY ({_select(table)}) TO STDOUT (FORMAT BINARY)"
        with cur.copy(query) as copy:  # type: ignore[call-overload]
            for _block in copy:
                pass
    return rows


@imports("adbc_driver_postgresql.dbapi", "pyarrow")
def adbc_arrow(dsn: str, table: str, **_: Any) -> int:
    """The ADBC PostgreSQL driver's Arrow stream."""
    import adbc_driver_postgresql.dbapi as adbc

    count = 0
    with adbc.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(_select(table))
        for batch in cur.fetch_record_batch():
            count += batch.num_rows
    return count


@imports("adbc_driver_manager", "adbc_driver_postgresql", "pyarrow")
def adbc_manager_arrow(dsn: str, table: str, **_: Any) -> int:
    """
    The same stream through the driver manager's own API, as headwater reads it: the
    DB-API module imports pandas and polars where they are installed (half a second of a
    cold start), this one does not.
    """
    import adbc_driver_manager
    import adbc_driver_postgresql
    import pyarrow as pa

    count = 0
    with (
        adbc_driver_postgresql.connect(dsn) as database,
        adbc_driver_manager.AdbcConnection(database) as conn,
        adbc_driver_manager.AdbcStatement(conn) as statement,
    ):
        statement.set_sql_query(_select(table))
        stream, _rows = statement.execute_query()
        reader = pa.RecordBatchReader._import_from_c(stream.address)
        try:
            for batch in reader:
                count += batch.num_rows
        finally:
            reader.close()
    return count


@imports(*_HEADWATER, "headwater_postgres._arrow", "adbc_driver_manager", "pyarrow")
def headwater_arrow(dsn: str, table: str, **_: Any) -> int:
    """headwater-postgres read(format="arrow")."""
    from headwater_postgres import PostgresConnector

    count = 0
    with PostgresConnector({"url": dsn}) as connector:
        for batch in connector.read(table, format="arrow"):
            count += len(batch)
    return count


# --- list ------------------------------------------------------------------------------------

#: What a catalog browser asks for, in one query: every relation with kind, row estimate
#: and total size (pg_total_relation_size is most of the cost, on either side).
_RAW_LIST = """
SELECT n.nspname, c.relname, c.relkind, c.reltuples::bigint,
       CASE WHEN c.relkind IN ('r', 'm', 'p') THEN pg_total_relation_size(c.oid) END
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
ORDER BY 1, 2
"""


@imports("psycopg")
def psycopg_catalog_list(dsn: str, count: int, **_: Any) -> int:
    """One catalog query over every relation: the least a lister can do."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        rows = conn.execute(_RAW_LIST).fetchall()
    listed = sum(1 for row in rows if row[0] == LIST_SCHEMA)
    assert listed == count
    return listed


@imports(*_HEADWATER)
def headwater_list(dsn: str, count: int, **_: Any) -> int:
    """headwater-postgres list(): the schemas, then every relation with kind, rows and size."""
    from headwater_postgres import PostgresConnector

    with PostgresConnector({"url": dsn}) as connector:
        items = list(connector.list())
    listed = sum(1 for item in items if item.name.startswith(f"{LIST_SCHEMA}."))
    assert listed == count
    return listed


# --- memory ----------------------------------------------------------------------------------


@imports(*_HEADWATER)
def headwater_dicts_small(dsn: str, small: str, **_: Any) -> int:
    return headwater_dicts(dsn, small)


@imports(*_HEADWATER)
def headwater_dicts_big(dsn: str, big: str, **_: Any) -> int:
    return headwater_dicts(dsn, big)


# --- write -----------------------------------------------------------------------------------


def _records(rows: int) -> Iterator[dict[str, Any]]:
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    second = dt.timedelta(seconds=1)
    for i in range(1, rows + 1):
        yield {
            "id": i,
            "a": i % 1000,
            "b": (i * 7) % 100_000,
            "x": i / 3.0,
            "y": 0.5,
            "s": f"row-{i:016d}",
            "ts": start + i * second,
            "flag": i % 2 == 0,
            "j": {"k": i % 10, "tag": "v"},
        }


def _batches(rows: int) -> Iterator[list[dict[str, Any]]]:
    """The input of both write cases: batches of 10,000 dicts, as a reader hands them over."""
    records = _records(rows)
    while batch := list(itertools.islice(records, 10_000)):
        yield batch


@imports("psycopg")
def psycopg_copy_write(dsn: str, rows: int, raw_table: str, **_: Any) -> int:
    """psycopg binary COPY of the same batches of dicts, in one transaction."""
    import psycopg

    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        # Runs are repeated: start from an empty table each time (milliseconds).
        cur.execute(f"TRUNCATE {raw_table}")
        with cur.copy(f"COPY {raw_table} ({COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:  # type: ignore[call-overload]
            copy.set_types(_OIDS)
            for batch in _batches(rows):
                for r in batch:
                    copy.write_row(
                        (
                            r["id"],
                            r["a"],
                            r["b"],
                            r["x"],
                            r["y"],
                            r["s"],
                            r["ts"],
                            r["flag"],
                            r["j"],
                        )
                    )
        conn.commit()
    return rows


@imports("asyncpg", "json")
def asyncpg_copy_write(dsn: str, rows: int, raw_table: str, **_: Any) -> int:
    """
    asyncpg ``copy_records_to_table`` (binary COPY) of the same batches of dicts, made
    into tuples; jsonb through a codec of ``json.dumps`` (asyncpg's documented way), in
    the binary form its COPY needs (a version byte, then the text).
    """
    import asyncio
    import json

    import asyncpg

    names = COLUMNS.split(", ")

    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.set_type_codec(
                "jsonb",
                encoder=lambda value: b"\x01" + json.dumps(value).encode(),
                decoder=lambda data: json.loads(data[1:]),
                schema="pg_catalog",
                format="binary",
            )
            schema, _, table = raw_table.partition(".")
            async with conn.transaction():
                await conn.execute(f"TRUNCATE {raw_table}")
                for batch in _batches(rows):
                    records = [tuple(r[n] for n in names) for r in batch]
                    await conn.copy_records_to_table(
                        table, records=records, columns=names, schema_name=schema
                    )
        finally:
            await conn.close()

    asyncio.run(run())
    return rows


@imports(*_HEADWATER, "headwater_postgres._write")
def headwater_write(dsn: str, rows: int, hw_table: str, **_: Any) -> int:
    """headwater-postgres write(): binary COPY in one transaction, batches of 10,000."""
    from headwater_postgres import PostgresConnector

    with PostgresConnector({"url": dsn}) as connector:
        # Runs are repeated: mode="replace" empties the table in the same transaction,
        # as the TRUNCATE in the psycopg case does.
        return connector.write(hw_table, _batches(rows), mode="replace").records


# --- scenarios -------------------------------------------------------------------------------

_HERE = "bench.bench_postgres"


def scenarios(quick: bool) -> list[Scenario]:
    """The PostgreSQL scenarios (see the module docstring)."""
    # Best of three: the machines are shared, and single runs swing by a third.
    repeat = 1 if quick else 3
    found = [
        Scenario(
            name="postgres read: dict records",
            cases=[
                Case("psycopg binary COPY -> dicts", f"{_HERE}:psycopg_copy_dicts"),
                Case("psycopg cursor dict_row", f"{_HERE}:psycopg_cursor_dicts"),
                Case("psycopg binary cursor -> dicts", f"{_HERE}:psycopg_binary_cursor_dicts"),
                Case("asyncpg cursor (jsonb as text)", f"{_HERE}:asyncpg_records"),
                Case("dlt sql_table pyarrow", f"{_HERE}:dlt_pyarrow"),
                Case("dlt sql_table sqlalchemy", f"{_HERE}:dlt_sqlalchemy"),
                Case("headwater read (dicts)", f"{_HERE}:headwater_dicts"),
            ],
            baseline="psycopg binary COPY -> dicts",
            setup=f"{_HERE}:setup_read",
            teardown=f"{_HERE}:teardown",
            goal=1.0,
            repeat=repeat,
        ),
        *cold_and_warm(
            Scenario(
                name="postgres read: Arrow",
                cases=[
                    Case("raw COPY bytes (ceiling)", f"{_HERE}:raw_copy_bytes"),
                    Case("ADBC Arrow stream", f"{_HERE}:adbc_arrow"),
                    Case("ADBC Arrow stream (manager API)", f"{_HERE}:adbc_manager_arrow"),
                    Case("headwater read (arrow)", f"{_HERE}:headwater_arrow"),
                ],
                baseline="ADBC Arrow stream",
                setup=f"{_HERE}:setup_read",
                teardown=f"{_HERE}:teardown",
                goal=1.0,
                repeat=repeat,
            ),
            cold_goal=0.9,
        ),
        Scenario(
            name="postgres write",
            cases=[
                Case("psycopg binary COPY write", f"{_HERE}:psycopg_copy_write"),
                Case("asyncpg copy_records_to_table", f"{_HERE}:asyncpg_copy_write"),
                Case("headwater write", f"{_HERE}:headwater_write"),
            ],
            baseline="psycopg binary COPY write",
            setup=f"{_HERE}:setup_write",
            teardown=f"{_HERE}:teardown",
            goal=0.9,
            repeat=repeat,
        ),
    ]
    found.append(
        Scenario(
            name=f"postgres list: {'50' if quick else '5,000'} tables",
            cases=[
                Case("psycopg one catalog query", f"{_HERE}:psycopg_catalog_list"),
                Case("headwater list()", f"{_HERE}:headwater_list"),
            ],
            baseline="psycopg one catalog query",
            setup=f"{_HERE}:setup_list",
            teardown=f"{_HERE}:teardown_list",
            unit="tables",
            repeat=repeat,
        )
    )
    small, big = ("1k", "3k") if quick else ("1M", "5M")
    found.append(
        Scenario(
            name=f"postgres read: memory, {small} vs {big} rows (peak RSS should be flat)",
            cases=[
                Case(f"headwater dicts, {small} rows", f"{_HERE}:headwater_dicts_small"),
                Case(f"headwater dicts, {big} rows", f"{_HERE}:headwater_dicts_big"),
            ],
            baseline=f"headwater dicts, {small} rows",
            setup=f"{_HERE}:setup_memory",
            teardown=f"{_HERE}:teardown",
        )
    )
    return found

"""
DataFrames and DuckDB from PostgreSQL: headwater's Arrow hand-off against the ways people
do it by hand, in one run.

Table: the copy benchmarks' 1,000,000 rows x 10 columns (bigint, int, float, numeric,
text with NULLs, timestamptz, boolean, jsonb, date, uuid; 2,000 rows with ``--quick``).
Every case reads ``ORDER BY id`` (what a headwater read gives). Scenarios:

* to pandas: ADBC ``fetch_arrow_table().to_pandas(types_mapper=pandas.ArrowDtype)``
  (baseline: the same frame headwater builds), ADBC ``to_pandas()`` with NumPy dtypes,
  ``pandas.read_sql`` over SQLAlchemy and psycopg, and ``headwater.to_pandas`` warm
  (libraries imported before the clock) and cold;
* into a DuckDB table: ADBC ``fetch_record_batch()`` scanned by DuckDB into a new table
  of a new file (baseline, the raw ceiling), ``headwater.copy`` into ``duckdb:///FILE``
  (``create=True``) warm and cold, and dlt's ``sql_table`` (pyarrow backend) run by a
  pipeline into a DuckDB destination (the peer; goal: headwater >= 3x it).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from bench._harness import Case, Done, Scenario, imports
from bench.bench_copy import _DDL, _FILL
from bench.bench_postgres import _admin, make_table

DSN = os.environ.get("HEADWATER_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
SCHEMA = "headwater_bench_frames"

_ARROW = ("pyarrow", "adbc_driver_postgresql.dbapi")
_PANDAS = ("pandas",)
_HEADWATER = (
    "headwater",
    "headwater._frames",
    "headwater._copy",
    "headwater._plugins",
    "headwater.formats",
    "psycopg",
    "psycopg_pool",
    "headwater_postgres",
    "headwater_postgres._connector",
    "headwater_postgres._plan",
    "headwater_postgres._sql",
    "headwater_postgres._arrow",
    *_ARROW,
)


def _select(table: str) -> str:
    return f"SELECT * FROM {table} ORDER BY id"  # noqa: S608 - the benchmark's own table


def setup(quick: bool) -> dict[str, Any]:
    rows = 2_000 if quick else 1_000_000
    table = make_table("t", rows, schema=SCHEMA, ddl=_DDL, fill=_FILL)
    return {"dsn": DSN, "table": table, "rows": rows, "out": tempfile.mkdtemp(prefix="hw-frames-")}


def teardown(out: str, **_: Any) -> None:
    shutil.rmtree(out, ignore_errors=True)
    with _admin() as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


def _expect(rows: int, got: int) -> int:
    if got != rows:
        raise AssertionError(f"expected {rows} rows, got {got}")
    return got


# --- to pandas ---------------------------------------------------------------------------------


@imports(*_ARROW, *_PANDAS)
def adbc_pandas_arrow(dsn: str, table: str, rows: int, **_: Any) -> int:
    """ADBC fetch_arrow_table().to_pandas(types_mapper=pandas.ArrowDtype)."""
    import adbc_driver_postgresql.dbapi as adbc
    import pandas as pd

    with adbc.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(_select(table))
        frame = cur.fetch_arrow_table().to_pandas(types_mapper=pd.ArrowDtype)
    return _expect(rows, len(frame))


@imports(*_ARROW, *_PANDAS)
def adbc_pandas_numpy(dsn: str, table: str, rows: int, **_: Any) -> int:
    """ADBC fetch_arrow_table().to_pandas() (NumPy dtypes, text as Python objects)."""
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(_select(table))
        frame = cur.fetch_arrow_table().to_pandas()
    return _expect(rows, len(frame))


@imports("sqlalchemy", "psycopg", *_PANDAS)
def pandas_read_sql(dsn: str, table: str, rows: int, **_: Any) -> int:
    """pandas.read_sql over a SQLAlchemy engine with psycopg."""
    import pandas as pd
    import sqlalchemy

    engine = sqlalchemy.create_engine(dsn.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            frame = pd.read_sql(_select(table), conn)
    finally:
        engine.dispose()
    return _expect(rows, len(frame))


def _headwater_pandas(dsn: str, table: str, rows: int) -> int:
    import headwater
    from headwater_postgres import PostgresConnector

    with PostgresConnector({"url": dsn}) as connector:
        frame = headwater.to_pandas(connector, table)
    return _expect(rows, len(frame))


@imports(*_HEADWATER, *_PANDAS)
def headwater_to_pandas_warm(dsn: str, table: str, rows: int, **_: Any) -> int:
    """headwater.to_pandas(<postgres>, table), libraries imported first."""
    return _headwater_pandas(dsn, table, rows)


def headwater_to_pandas_cold(dsn: str, table: str, rows: int, **_: Any) -> int:
    """headwater.to_pandas(<postgres>, table), imports on the clock."""
    return _headwater_pandas(dsn, table, rows)


# --- into DuckDB ---------------------------------------------------------------------------------


def _fresh(out: str, name: str) -> Path:
    return Path(out, f"{name}-{uuid.uuid4().hex[:8]}.db")


def _done(rows: int, path: Path) -> Done:
    import duckdb

    with duckdb.connect(str(path), read_only=True) as conn:
        found = conn.execute("SELECT count(*) FROM t").fetchone()
    _expect(rows, found[0] if found else 0)
    return Done(rows, cleanup=lambda: path.unlink(missing_ok=True))


@imports(*_ARROW, "duckdb")
def adbc_duckdb(dsn: str, table: str, rows: int, out: str, **_: Any) -> Done:
    """ADBC fetch_record_batch() scanned by DuckDB into a new table (CREATE TABLE AS)."""
    import adbc_driver_postgresql.dbapi as adbc
    import duckdb

    path = _fresh(out, "adbc")
    with adbc.connect(dsn) as conn, conn.cursor() as cur, duckdb.connect(str(path)) as db:
        cur.execute(_select(table))
        reader = cur.fetch_record_batch()
        db.register("source", reader)
        db.execute("CREATE TABLE t AS SELECT * FROM source")
    return _done(rows, path)


def _headwater_copy_duckdb(dsn: str, table: str, rows: int, out: str) -> Done:
    import headwater
    from headwater_postgres import PostgresConnector

    path = _fresh(out, "headwater")
    with PostgresConnector({"url": dsn}) as connector:
        copied = headwater.copy(
            connector, table, f"duckdb:///{path}", "t", write_options={"create": True}
        )
    _expect(rows, copied.records)
    return _done(rows, path)


@imports(*_HEADWATER, "duckdb", "headwater_duckdb", "headwater_duckdb._connector")
def headwater_copy_duckdb(dsn: str, table: str, rows: int, out: str, **_: Any) -> Done:
    """headwater.copy(<postgres>, table, "duckdb:///FILE", "t", create=True), warm."""
    return _headwater_copy_duckdb(dsn, table, rows, out)


def headwater_copy_duckdb_cold(dsn: str, table: str, rows: int, out: str, **_: Any) -> Done:
    """The same copy with every import on the clock (a fresh process's first use)."""
    return _headwater_copy_duckdb(dsn, table, rows, out)


@imports("dlt", "dlt.sources.sql_database", "pyarrow", "sqlalchemy", "psycopg", "duckdb")
def dlt_duckdb(dsn: str, table: str, rows: int, out: str, **_: Any) -> Done:
    """dlt's sql_table (pyarrow backend) into a DuckDB destination, one pipeline run."""
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    import dlt
    from dlt.sources.sql_database import sql_table

    path = _fresh(out, "dlt")
    schema, name = table.split(".")
    resource = sql_table(
        credentials=dsn.replace("postgresql://", "postgresql+psycopg://", 1),
        table=name, schema=schema, backend="pyarrow", chunk_size=10_000,
    )  # fmt: skip
    pipeline = dlt.pipeline(
        pipeline_name=f"bench_{uuid.uuid4().hex[:8]}",
        pipelines_dir=str(Path(out, "dlt-pipelines")),
        destination=dlt.destinations.duckdb(str(path)),
        dataset_name="bench",
    )
    pipeline.run(resource, table_name="t")
    import duckdb

    with duckdb.connect(str(path), read_only=True) as conn:
        found = conn.execute("SELECT count(*) FROM bench.t").fetchone()
    _expect(rows, found[0] if found else 0)
    return Done(rows, cleanup=lambda: path.unlink(missing_ok=True))


# --- scenarios -------------------------------------------------------------------------------

_HERE = "bench.bench_frames"


def scenarios(quick: bool) -> list[Scenario]:
    """The DataFrame and DuckDB hand-off scenarios (see the module docstring)."""
    repeat = 1 if quick else 3
    size = "2k" if quick else "1M"
    baseline = "ADBC -> to_pandas(ArrowDtype)"
    return [
        Scenario(
            name=f"frames: postgres {size} rows x 10 columns -> pandas",
            cases=[
                Case(baseline, f"{_HERE}:adbc_pandas_arrow"),
                Case("ADBC -> to_pandas() (NumPy dtypes)", f"{_HERE}:adbc_pandas_numpy"),
                Case("pandas.read_sql (SQLAlchemy+psycopg)", f"{_HERE}:pandas_read_sql"),
                Case("headwater.to_pandas (warm)", f"{_HERE}:headwater_to_pandas_warm"),
                Case("headwater.to_pandas (cold)", f"{_HERE}:headwater_to_pandas_cold"),
            ],
            baseline=baseline,
            setup=f"{_HERE}:setup",
            teardown=f"{_HERE}:teardown",
            goal=0.9,
            repeat=repeat,
        ),
        Scenario(
            name=f"frames: postgres {size} rows x 10 columns -> DuckDB table",
            cases=[
                Case("ADBC batches -> DuckDB scan", f"{_HERE}:adbc_duckdb"),
                Case("headwater.copy -> duckdb:// (warm)", f"{_HERE}:headwater_copy_duckdb"),
                Case("headwater.copy -> duckdb:// (cold)", f"{_HERE}:headwater_copy_duckdb_cold"),
                Case("dlt sql_table(pyarrow) -> duckdb", f"{_HERE}:dlt_duckdb"),
            ],
            baseline="ADBC batches -> DuckDB scan",
            setup=f"{_HERE}:setup",
            teardown=f"{_HERE}:teardown",
            goal=0.9,
            repeat=repeat,
        ),
    ]

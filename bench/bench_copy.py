"""
Copy: headwater's data path against the raw tools, in one run (issue 14).

The data path is ``headwater read SOURCE STREAM -o FILE`` and ``headwater copy SRC STREAM
DEST DEST_STREAM`` on the command line and ``headwater.copy(...)`` in Python. Table:
1,000,000 rows (2,000 with ``--quick``) of ten columns: bigint key, integer, double,
numeric(12,2), ~20-char text (NULL every tenth row), timestamptz, boolean, small jsonb,
date, uuid. Units are records. Scenarios:

* **JSON Lines**: ``psql -c "\\copy (select row_to_json(t) from t) to 'FILE'"`` (baseline)
  against ``headwater read <pg> t -o t.jsonl`` and ``headwater.copy`` into a ``.jsonl``;
* **Parquet**: the ADBC driver's Arrow (``fetch_record_batch()`` into a
  ``pyarrow.parquet.ParquetWriter``, the baseline: in trials it was faster, and smaller,
  than ``fetch_arrow_table()`` then ``pyarrow.parquet.write_table``, which is measured
  too) against ``headwater read <pg> t -o t.parquet`` with and without ``-R format=arrow``
  and ``headwater.copy`` into a ``.parquet`` (both read formats). Both sides write
  pyarrow's defaults (snappy);
* **Postgres to Postgres**: ``psql -c "\\copy (select * from t) to stdout" | psql -c
  "\\copy t2 from stdin"`` (baseline; also in binary COPY) against ``headwater copy <pg> t
  <pg> t2`` and ``headwater.copy``. ``t2`` has ``t``'s columns and key; it is emptied
  (TRUNCATE, then CHECKPOINT so no case pays for the last one's dirty pages) after every
  case, off the clock;
* **memory**: ``headwater read -o t.jsonl`` and ``headwater copy`` of 1M and of 5M rows
  (1k and 3k with ``--quick``): the peak RSS should be flat.

Cold and warm. The command-line cases (``headwater``, ``psql``) are whole processes, timed
from start to exit: interpreter start, imports, plugin discovery and the work, which is what
a user runs, so they are cold by nature. The Python cases come twice: *cold* imports inside
the clock (the first use in a fresh process) and *warm* imports before it (the harness's
usual `imports`), on both sides alike. The command-line cases' ratios are taken against the
cold raw case where the raw side is Python (ADBC), the warm ones against the warm.

Peak RSS of a command-line case is its processes' own, not the worker's that waits for
them (`Done.peak_rss`): for each process, its ``ru_maxrss`` from ``wait4`` when that
exceeds the worker's peak at the spawn (a spawned child inherits the spawner's high-water
mark, so a figure at or below it is not the child's), else the largest ``VmHWM`` read from
``/proc/PID/status`` every 10 ms while it ran. A pipeline reports the sum of its two
processes' peaks. The Python cases report the worker process's peak, as elsewhere.

What each side does is its own: neither side orders its read (headwater reads in key
order only when it keeps a state or has a limit); headwater writes files next to the
output and renames them, fsyncing them (psql and ``write_table`` do not); psql's JSON has
numerics as JSON numbers, headwater's as strings (exact). headwater's JSON Lines are made
by the server (``read(format="jsonl")``) and its PostgreSQL-to-PostgreSQL copy passes COPY
text through (``format="pgcopy"``), as ``headwater.copy`` chooses by itself. Output files
go to a temporary directory and are deleted after each case, off the clock.

The server comes from ``HEADWATER_TEST_PG_DSN`` (default: the project's test server).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._harness import Case, Done, Scenario, imports, run_commands
from bench.bench_postgres import _admin, make_table

DSN = os.environ.get("HEADWATER_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
SCHEMA = "headwater_bench_copy"

_DDL = """
CREATE TABLE {t} (
    id bigint PRIMARY KEY, n integer, x double precision, amount numeric(12,2), s text,
    ts timestamptz, flag boolean, j jsonb, d date, u uuid
)
"""
_FILL = """
INSERT INTO {t}
SELECT g, g % 100000, g / 3.0, (g % 10000000) / 100.0,
       CASE WHEN g % 10 <> 0 THEN substr(md5(g::text), 1, 20) END,
       timestamptz '2024-01-01' + g * interval '1 second', g % 2 = 0,
       jsonb_build_object('k', g % 10, 'tag', 'v' || (g % 5)),
       date '2000-01-01' + (g % 10000), md5(g::text)::uuid
  FROM generate_series(1, {n}) g
"""

#: What a warm headwater case imports before its clock starts.
_HEADWATER = (
    "headwater",
    "headwater._copy",
    "headwater._plugins",
    "headwater._sinks",
    "headwater.formats",
    "orjson",
    "psycopg",
    "psycopg_pool",
    "headwater_postgres",
    "headwater_postgres._connector",
    "headwater_postgres._plan",
    "headwater_postgres._sql",
    "headwater_postgres._values",
)
_ARROW = ("pyarrow", "pyarrow.parquet", "adbc_driver_postgresql.dbapi")


# --- set-up / tear-down ------------------------------------------------------------------


def _make_table(name: str, rows: int) -> str:
    return make_table(name, rows, schema=SCHEMA, ddl=_DDL, fill=_FILL)


def _outdir() -> str:
    return tempfile.mkdtemp(prefix="hw-bench-copy-")


def setup_read(quick: bool) -> dict[str, Any]:
    rows = 2_000 if quick else 1_000_000
    return {"dsn": DSN, "table": _make_table("t", rows), "rows": rows, "out": _outdir()}


def setup_pg(quick: bool) -> dict[str, Any]:
    found = setup_read(quick)
    found["dest"] = _make_table("t2", 0)
    return found


def setup_memory(quick: bool) -> dict[str, Any]:
    small, big = (1_000, 3_000) if quick else (1_000_000, 5_000_000)
    return {
        "dsn": DSN,
        "small": _make_table("t_small", small),
        "big": _make_table("t_big", big),
        "small_rows": small,
        "big_rows": big,
        "dest": _make_table("t2", 0),
        "out": _outdir(),
    }


def teardown(out: str, **_: Any) -> None:
    shutil.rmtree(out, ignore_errors=True)
    with _admin() as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


# --- commands ------------------------------------------------------------------------------


def _headwater() -> list[str]:
    """The ``headwater`` command of this interpreter's environment."""
    script = Path(sys.executable).with_name("headwater")
    return [str(script)] if script.exists() else [sys.executable, "-m", "headwater"]


def _psql(dsn: str, command: str) -> list[str]:
    psql = shutil.which("psql")
    if psql is None:
        raise ImportError("psql is not installed")  # the worker reports it as unavailable
    return [psql, "-X", "-v", "ON_ERROR_STOP=1", dsn, "-c", command]


def _count(pattern: str, text: str) -> int:
    """The record count a command printed (psql's ``COPY n``, headwater's ``copied n``)."""
    found = re.findall(pattern, text)
    if not found:
        raise RuntimeError(f"no record count ({pattern!r}) in the output: {text[-200:]!r}")
    return int(found[-1])


def _expect(rows: int, got: int, what: str) -> int:
    if rows != got:
        raise RuntimeError(f"{what}: {got} records, expected {rows}")
    return got


# --- checks and cleanups (off the clock) -----------------------------------------------------


def _lines(path: Path) -> int:
    count = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            count += block.count(b"\n")
    return count


def _file_done(rows: int, path: Path, counted: int, peak_rss: int | None = None) -> Done:
    """The case's result; the cleanup checks the file holds every record, then deletes it."""

    def cleanup() -> None:
        try:
            if path.suffix == ".parquet":
                import pyarrow.parquet as pq

                _expect(rows, pq.ParquetFile(path).metadata.num_rows, str(path.name))
            else:
                _expect(rows, _lines(path), str(path.name))
        finally:
            path.unlink(missing_ok=True)

    return Done(_expect(rows, counted, path.name), cleanup=cleanup, peak_rss=peak_rss)


def _empty(dsn: str, dest: str) -> None:
    """Empty the destination table and flush the server's dirty pages (off the clock)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {dest}")
        conn.execute("CHECKPOINT")


def _table_done(dsn: str, dest: str, rows: int, counted: int, peak_rss: int | None) -> Done:
    def cleanup() -> None:
        import psycopg

        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                row = conn.execute(f"SELECT count(*) FROM {dest}").fetchone()  # noqa: S608
            _expect(rows, row[0] if row else 0, dest)
        finally:
            _empty(dsn, dest)

    return Done(_expect(rows, counted, dest), cleanup=cleanup, peak_rss=peak_rss)


def _into_table(dsn: str, dest: str, work: Callable[[], Done]) -> Done:
    """Run a case that writes ``dest``; a failed one leaves the table empty for the next."""
    try:
        return work()
    except BaseException:
        with contextlib.suppress(Exception):
            _empty(dsn, dest)
        raise


# --- JSON Lines ------------------------------------------------------------------------------


def psql_jsonl(dsn: str, table: str, rows: int, out: str, **_: Any) -> Done:
    """``psql -c "\\copy (select row_to_json(t) from t) to 'FILE'"``: one psql process."""
    path = Path(out, "psql.jsonl")
    query = f"\\copy (select row_to_json(t) from {table} t) to '{path}'"  # noqa: S608
    ran = run_commands(_psql(dsn, query))
    return _file_done(rows, path, _count(r"COPY (\d+)", ran.out), ran.peak_rss)


def _cli_read(dsn: str, table: str, rows: int, path: Path, *options: str) -> Done:
    ran = run_commands([*_headwater(), "read", dsn, table, "-o", str(path), *options])
    return _file_done(rows, path, _count(r"copied (\d+) records", ran.err), ran.peak_rss)


def headwater_cli_jsonl(dsn: str, table: str, rows: int, out: str, **_: Any) -> Done:
    """``headwater read <pg> t -o t.jsonl``: one headwater process."""
    return _cli_read(dsn, table, rows, Path(out, "cli.jsonl"))


def _copy_file(dsn: str, table: str, rows: int, path: Path, **options: Any) -> Done:
    import headwater

    result = headwater.copy(dsn, table, path, **options)
    return _file_done(rows, path, result.records)


def headwater_copy_jsonl_cold(dsn: str, table: str, rows: int, out: str, **_: Any) -> Done:
    """``headwater.copy(<pg>, t, "t.jsonl")`` with its imports on the clock."""
    return _copy_file(dsn, table, rows, Path(out, "copy-cold.jsonl"))


@imports(*_HEADWATER)
def headwater_copy_jsonl_warm(dsn: str, table: str, rows: int, out: str, **_: Any) -> Done:
    """``headwater.copy(<pg>, t, "t.jsonl")`` with its libraries imported first."""
    return _copy_file(dsn, table, rows, Path(out, "copy-warm.jsonl"))


# --- Parquet ---------------------------------------------------------------------------------


def _adbc_table(dsn: str, table: str, rows: int, path: Path) -> Done:
    import adbc_driver_postgresql.dbapi as adbc
    import pyarrow.parquet as pq

    with adbc.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT * FROM {table}")  # noqa: S608
        data = cur.fetch_arrow_table()
    pq.write_table(data, path)
    return _file_done(rows, path, data.num_rows)


def _adbc_batches(dsn: str, table: str, rows: int, path: Path) -> Done:
    import adbc_driver_postgresql.dbapi as adbc
    import pyarrow.parquet as pq

    count = 0
    with adbc.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT * FROM {table}")  # noqa: S608
        reader = cur.fetch_record_batch()
        with pq.ParquetWriter(path, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
                count += batch.num_rows
    return _file_done(rows, path, count)


def adbc_table_cold(dsn: str, table: str, rows: int, out: str, **_: Any) -> Done:
    """ADBC ``fetch_arrow_table()`` then ``pyarrow.parquet.write_table``, imports on the clock."""
    return _adbc_table(dsn, table, rows, Path(out, "adbc-table-cold.parquet"))


def adbc_batches_cold(dsn: str, table: str, rows: int, out: str, **_: Any) -> Done:
    """ADBC ``fetch_record_batch()`` into a ``ParquetWriter``, imports on the clock."""
    return _adbc_batches(dsn, table, rows, Path(out, "adbc-batches-cold.parquet"))


@imports(*_ARROW)
def adbc_batches_warm(dsn: str, table: str, rows: int, out: str, **_: Any) -> Done:
    """ADBC ``fetch_record_batch()`` into a ``ParquetWriter``, imports first."""
    return _adbc_batches(dsn, table, rows, Path(out, "adbc-batches-warm.parquet"))


def headwater_cli_parquet(dsn: str, table: str, rows: int, out: str, **_: Any) -> Done:
    """``headwater read <pg> t -o t.parquet``: one headwater process."""
    return _cli_read(dsn, table, rows, Path(out, "cli.parquet"))


def headwater_cli_parquet_arrow(dsn: str, table: str, rows: int, out: str, **_: Any) -> Done:
    """``headwater read <pg> t -o t.parquet -R format=arrow``: one headwater process."""
    return _cli_read(dsn, table, rows, Path(out, "cli-arrow.parquet"), "-R", "format=arrow")


def headwater_copy_parquet_cold(dsn: str, table: str, rows: int, out: str, **_: Any) -> Done:
    """``headwater.copy(<pg>, t, "t.parquet")`` with its imports on the clock."""
    return _copy_file(dsn, table, rows, Path(out, "copy-cold.parquet"))


@imports(*_HEADWATER, *_ARROW)
def headwater_copy_parquet_warm(dsn: str, table: str, rows: int, out: str, **_: Any) -> Done:
    """``headwater.copy(<pg>, t, "t.parquet")`` with its libraries imported first."""
    return _copy_file(dsn, table, rows, Path(out, "copy-warm.parquet"))


def headwater_copy_parquet_arrow_cold(dsn: str, table: str, rows: int, out: str, **_: Any) -> Done:
    """``headwater.copy(..., read_options={"format": "arrow"})``, imports on the clock."""
    path = Path(out, "copy-arrow-cold.parquet")
    return _copy_file(dsn, table, rows, path, read_options={"format": "arrow"})


@imports(*_HEADWATER, *_ARROW, "headwater_postgres._arrow")
def headwater_copy_parquet_arrow_warm(dsn: str, table: str, rows: int, out: str, **_: Any) -> Done:
    """``headwater.copy(..., read_options={"format": "arrow"})``, libraries imported first."""
    path = Path(out, "copy-arrow-warm.parquet")
    return _copy_file(dsn, table, rows, path, read_options={"format": "arrow"})


# --- Postgres to Postgres -----------------------------------------------------------------


def _psql_pipe(dsn: str, table: str, dest: str, rows: int, options: str = "") -> Done:
    def work() -> Done:
        ran = run_commands(
            _psql(dsn, f"\\copy (select * from {table}) to stdout{options}"),  # noqa: S608
            _psql(dsn, f"\\copy {dest} from stdin{options}"),
        )
        return _table_done(dsn, dest, rows, _count(r"COPY (\d+)", ran.out), ran.peak_rss)

    return _into_table(dsn, dest, work)


def psql_pipe_text(dsn: str, table: str, dest: str, rows: int, **_: Any) -> Done:
    """``psql -c "\\copy (select * from t) to stdout" | psql -c "\\copy t2 from stdin"``."""
    return _psql_pipe(dsn, table, dest, rows)


def psql_pipe_binary(dsn: str, table: str, dest: str, rows: int, **_: Any) -> Done:
    """The same pipeline in binary COPY (``with (format binary)`` on both ends)."""
    return _psql_pipe(dsn, table, dest, rows, " with (format binary)")


def _cli_copy(dsn: str, table: str, dest: str, rows: int) -> Done:
    def work() -> Done:
        ran = run_commands([*_headwater(), "copy", dsn, table, dsn, dest])
        counted = _count(r"copied (\d+) records", ran.err)
        return _table_done(dsn, dest, rows, counted, ran.peak_rss)

    return _into_table(dsn, dest, work)


def headwater_cli_copy(dsn: str, table: str, dest: str, rows: int, **_: Any) -> Done:
    """``headwater copy <pg> t <pg> t2``: one headwater process."""
    return _cli_copy(dsn, table, dest, rows)


def _copy_table(dsn: str, table: str, dest: str, rows: int) -> Done:
    def work() -> Done:
        import headwater

        result = headwater.copy(dsn, table, dsn, dest)
        return _table_done(dsn, dest, rows, result.records, None)

    return _into_table(dsn, dest, work)


def headwater_copy_pg_cold(dsn: str, table: str, dest: str, rows: int, **_: Any) -> Done:
    """``headwater.copy(<pg>, t, <pg>, t2)`` with its imports on the clock."""
    return _copy_table(dsn, table, dest, rows)


@imports(*_HEADWATER, "headwater_postgres._write")
def headwater_copy_pg_warm(dsn: str, table: str, dest: str, rows: int, **_: Any) -> Done:
    """``headwater.copy(<pg>, t, <pg>, t2)`` with its libraries imported first."""
    return _copy_table(dsn, table, dest, rows)


# --- memory ----------------------------------------------------------------------------------


def memory_jsonl_small(dsn: str, small: str, small_rows: int, out: str, **_: Any) -> Done:
    return _cli_read(dsn, small, small_rows, Path(out, "small.jsonl"))


def memory_jsonl_big(dsn: str, big: str, big_rows: int, out: str, **_: Any) -> Done:
    return _cli_read(dsn, big, big_rows, Path(out, "big.jsonl"))


def memory_copy_small(dsn: str, small: str, small_rows: int, dest: str, **_: Any) -> Done:
    return _cli_copy(dsn, small, dest, small_rows)


def memory_copy_big(dsn: str, big: str, big_rows: int, dest: str, **_: Any) -> Done:
    return _cli_copy(dsn, big, dest, big_rows)


# --- scenarios -------------------------------------------------------------------------------

_HERE = "bench.bench_copy"


def scenarios(quick: bool) -> list[Scenario]:
    """The copy scenarios (see the module docstring)."""
    repeat = 1 if quick else 3
    size = "2k" if quick else "1M"
    small, big = ("1k", "3k") if quick else ("1M", "5M")
    psql_jsonl_label = "psql \\copy row_to_json (process)"
    adbc_cold = "ADBC batch stream + writer (cold)"
    adbc_warm = "ADBC batch stream + writer (warm)"
    psql_text = "psql | psql, text (processes)"
    cli_jsonl_small = f"headwater read -o jsonl, {small} (CLI)"
    cli_copy_small = f"headwater copy pg->pg, {small} (CLI)"
    return [
        Scenario(
            name=f"copy: postgres -> JSON Lines, {size} rows x 10 columns",
            cases=[
                Case(psql_jsonl_label, f"{_HERE}:psql_jsonl"),
                Case("headwater read -o t.jsonl (CLI)", f"{_HERE}:headwater_cli_jsonl"),
                Case("headwater.copy -> jsonl (cold)", f"{_HERE}:headwater_copy_jsonl_cold"),
                Case("headwater.copy -> jsonl (warm)", f"{_HERE}:headwater_copy_jsonl_warm"),
            ],
            baseline=psql_jsonl_label,
            setup=f"{_HERE}:setup_read",
            teardown=f"{_HERE}:teardown",
            goal=1.0,
            repeat=repeat,
        ),
        Scenario(
            name=f"copy: postgres -> Parquet, {size} rows x 10 columns",
            cases=[
                Case(adbc_cold, f"{_HERE}:adbc_batches_cold"),
                Case("ADBC table + write_table (cold)", f"{_HERE}:adbc_table_cold"),
                Case(adbc_warm, f"{_HERE}:adbc_batches_warm"),
                Case("headwater read -o t.parquet (CLI)", f"{_HERE}:headwater_cli_parquet"),
                Case(
                    "headwater read + format=arrow (CLI)",
                    f"{_HERE}:headwater_cli_parquet_arrow",
                ),
                Case("headwater.copy -> parquet (cold)", f"{_HERE}:headwater_copy_parquet_cold"),
                Case(
                    "headwater.copy -> parquet (warm)",
                    f"{_HERE}:headwater_copy_parquet_warm",
                    versus=adbc_warm,
                ),
                Case(
                    "headwater.copy arrow -> pq (cold)",
                    f"{_HERE}:headwater_copy_parquet_arrow_cold",
                ),
                Case(
                    "headwater.copy arrow -> pq (warm)",
                    f"{_HERE}:headwater_copy_parquet_arrow_warm",
                    versus=adbc_warm,
                ),
            ],
            baseline=adbc_cold,
            setup=f"{_HERE}:setup_read",
            teardown=f"{_HERE}:teardown",
            goal=0.8,
            repeat=repeat,
        ),
        Scenario(
            name=f"copy: postgres -> postgres, {size} rows x 10 columns",
            cases=[
                Case(psql_text, f"{_HERE}:psql_pipe_text"),
                Case("psql | psql, binary (processes)", f"{_HERE}:psql_pipe_binary"),
                Case("headwater copy pg t pg t2 (CLI)", f"{_HERE}:headwater_cli_copy"),
                Case("headwater.copy pg -> pg (cold)", f"{_HERE}:headwater_copy_pg_cold"),
                Case("headwater.copy pg -> pg (warm)", f"{_HERE}:headwater_copy_pg_warm"),
            ],
            baseline=psql_text,
            setup=f"{_HERE}:setup_pg",
            teardown=f"{_HERE}:teardown",
            goal=0.8,
            repeat=repeat,
        ),
        Scenario(
            name=f"copy: memory, {small} vs {big} rows (peak RSS should be flat)",
            cases=[
                Case(cli_jsonl_small, f"{_HERE}:memory_jsonl_small"),
                Case(f"headwater read -o jsonl, {big} (CLI)", f"{_HERE}:memory_jsonl_big"),
                Case(cli_copy_small, f"{_HERE}:memory_copy_small", versus=cli_copy_small),
                Case(
                    f"headwater copy pg->pg, {big} (CLI)",
                    f"{_HERE}:memory_copy_big",
                    versus=cli_copy_small,
                ),
            ],
            baseline=cli_jsonl_small,
            setup=f"{_HERE}:setup_memory",
            teardown=f"{_HERE}:teardown",
            repeat=repeat,
        ),
    ]

"""
One writer process per file: a second one gets a clear error and the file stays whole;
readers opened read-only share the file (DuckDB's file lock, real processes).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from headwater import CheckResult, ConfigError
from headwater_duckdb import DuckDBConnector
from headwater_duckdb._errors import FileLocked

from .duck_helpers import make_db

pytestmark = pytest.mark.timeout(60)


@contextmanager
def _holder(path: Path, *, read_only: bool) -> Iterator[subprocess.Popen[str]]:
    """Another process with ``path`` open (read-only or not) until the block ends."""
    code = textwrap.dedent(
        f"""
        import sys, duckdb
        con = duckdb.connect({str(path)!r}, read_only={read_only!r})
        print(con.execute("SELECT count(*) FROM t").fetchall()[0][0], flush=True)
        sys.stdin.read()
        con.close()
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        try:
            line = process.stdout.readline()
            assert line.strip().isdigit(), process.stderr.read() if process.stderr else line
            yield process
        finally:
            process.stdin.close()
            process.wait(timeout=30)


@pytest.fixture
def table_file(db_path: Path) -> Path:
    make_db(
        db_path,
        "CREATE TABLE t (id INTEGER PRIMARY KEY)",
        "INSERT INTO t SELECT * FROM range(100)",
    )
    return db_path


def test_second_writer_gets_a_clear_error(table_file):
    """While another process writes to the file, a write here fails clearly; nothing breaks."""
    with _holder(table_file, read_only=False) as other:
        duck = DuckDBConnector({"path": str(table_file)})
        try:
            with pytest.raises(FileLocked) as failure:
                duck.write("t", [[{"id": 1000}]])
            assert f"(PID {other.pid})" in failure.value.message
            assert "field" not in failure.value.message
            assert "path" == failure.value.field
            assert "Concurrency" in (failure.value.hint or "")
            check = duck.check()
            assert isinstance(check, CheckResult)
            assert not check.ok
            assert "network" == check.category
        finally:
            duck.close()
    with DuckDBConnector({"path": str(table_file)}) as duck:
        assert list(range(100)) == [r["id"] for b in duck.read("t") for r in b.rows()]
        duck.write("t", [[{"id": 1000}]])
        assert 101 == sum(len(b) for b in duck.read("t"))


def test_readers_share_the_file_read_only(table_file):
    """access='auto' reads read-only, beside another reading process; writing waits for it."""
    with _holder(table_file, read_only=True):
        duck = DuckDBConnector({"path": str(table_file)})
        try:
            assert 100 == sum(len(b) for b in duck.read("t"))
            assert "read-only" in duck.check().message
            with pytest.raises(FileLocked):
                duck.write("t", [[{"id": 1000}]])
        finally:
            duck.close()


def test_no_write_while_a_read_only_read_is_open(table_file):
    """One connector cannot turn its read-only file read-write under a read in progress."""
    with DuckDBConnector({"path": str(table_file)}) as duck:
        reading = duck.read("t", batch_size=10)
        next(reading)
        with pytest.raises(ConfigError, match="read in progress") as failure:
            duck.write("t", [[{"id": 1000}]])
        assert "access='read_write'" in (failure.value.hint or "")
        reading.close()
        duck.write("t", [[{"id": 1000}]])
        assert 101 == sum(len(b) for b in duck.read("t"))

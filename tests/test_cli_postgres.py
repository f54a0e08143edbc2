"""The CLI against a real PostgreSQL: Arrow batches straight to Parquet, resumable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def parquet_read(pg_dsn, pg_admin, pg_schema):
    """
    A 1,000-row table, and ``read(out, state, *options)``: one `headwater read --format
    parquet -R format=arrow --state STATE -o OUT` run of it, returning the Parquet table.
    """
    pq = pytest.importorskip("pyarrow.parquet")
    pytest.importorskip("adbc_driver_postgresql")
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".t (id bigint PRIMARY KEY, name text)')
    pg_admin.execute(
        f"INSERT INTO \"{pg_schema}\".t SELECT g, 'n' || g FROM generate_series(1, 1000) g"  # noqa: S608 - schema name is ours
    )

    def read(out: Path, state: Path, *options: str) -> Any:
        proc = subprocess.run(
            [
                sys.executable, "-m", "headwater", "read", pg_dsn, f"{pg_schema}.t",
                "--format", "parquet", "-o", str(out), "-R", "format=arrow",
                "--state", str(state), *options,
            ],
            capture_output=True, text=True, timeout=120, check=False, env=dict(os.environ),
        )  # fmt: skip
        assert 0 == proc.returncode, proc.stderr
        return pq.read_table(out)

    return read


def test_read_arrow_to_parquet_with_state(tmp_path, parquet_read):
    """`read --format parquet -R format=arrow --limit N --state` writes N rows and a resumable state."""
    state = tmp_path / "t.state"
    table = parquet_read(tmp_path / "t.parquet", state, "--limit", "700")
    assert list(range(1, 701)) == table.column("id").to_pylist()
    assert [700] == json.loads(state.read_text())["source"]["last"]


def test_arrow_parquet_resume_writes_exactly_the_rest(tmp_path, parquet_read):
    """A second `read --format parquet -R format=arrow --state` run writes exactly the remaining rows."""
    state = tmp_path / "s.json"
    first = parquet_read(tmp_path / "first.parquet", state, "--limit", "300")
    rest = parquet_read(tmp_path / "rest.parquet", state)
    assert list(range(1, 301)) == first.column("id").to_pylist()
    assert list(range(301, 1001)) == rest.column("id").to_pylist()
    assert [f"n{i}" for i in range(301, 1001)] == rest.column("name").to_pylist()
    assert [1000] == json.loads(state.read_text())["source"]["last"]

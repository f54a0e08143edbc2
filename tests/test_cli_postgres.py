"""The CLI against a real PostgreSQL: Arrow batches straight to Parquet, resumable."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(120)


def test_read_arrow_to_parquet_with_state(tmp_path, pg_dsn, pg_admin, pg_schema):
    """`read --format parquet -R format=arrow --limit N --state` writes N rows and a resumable state."""
    pq = pytest.importorskip("pyarrow.parquet")
    pytest.importorskip("adbc_driver_postgresql")
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".t (id bigint PRIMARY KEY, name text)')
    pg_admin.execute(
        f"INSERT INTO \"{pg_schema}\".t SELECT g, 'n' || g FROM generate_series(1, 1000) g"  # noqa: S608 - schema name is ours
    )
    out, state = tmp_path / "t.parquet", tmp_path / "t.state"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "headwater",
            "read",
            pg_dsn,
            f"{pg_schema}.t",
            "--format",
            "parquet",
            "-o",
            str(out),
            "-R",
            "format=arrow",
            "--limit",
            "700",
            "--state",
            str(state),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=dict(os.environ),
    )
    assert 0 == proc.returncode, proc.stderr
    table = pq.read_table(out)
    assert list(range(1, 701)) == table.column("id").to_pylist()
    assert [700] == json.loads(state.read_text())["last"]


def test_arrow_parquet_resume_writes_exactly_the_rest(tmp_path, pg_dsn, pg_admin, pg_schema):
    """A second `read --format parquet -R format=arrow --state` run writes exactly the remaining rows."""
    pq = pytest.importorskip("pyarrow.parquet")
    pytest.importorskip("adbc_driver_postgresql")
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".t (id bigint PRIMARY KEY, name text)')
    pg_admin.execute(
        f"INSERT INTO \"{pg_schema}\".t SELECT g, 'n' || g FROM generate_series(1, 1000) g"  # noqa: S608 - schema name is ours
    )
    state = tmp_path / "s.json"

    def run(out, *extra):
        proc = subprocess.run(
            [
                sys.executable, "-m", "headwater", "read", pg_dsn, f"{pg_schema}.t",
                "--format", "parquet", "-o", str(out), "-R", "format=arrow",
                "--state", str(state), *extra,
            ],
            capture_output=True, text=True, timeout=120, check=False, env=dict(os.environ),
        )  # fmt: skip
        assert 0 == proc.returncode, proc.stderr
        return pq.read_table(out)

    first = run(tmp_path / "first.parquet", "--limit", "300")
    rest = run(tmp_path / "rest.parquet")
    assert list(range(1, 301)) == first.column("id").to_pylist()
    assert list(range(301, 1001)) == rest.column("id").to_pylist()
    assert [f"n{i}" for i in range(301, 1001)] == rest.column("name").to_pylist()
    assert [1000] == json.loads(state.read_text())["last"]

"""
A key column that can hold NULL: rows with a NULL key are read exactly once on resume,
and a state that stopped at a NULL key is refused (its rows cannot be told apart).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from headwater import ConfigError

from .pg_helpers import rows_of

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def nullable(pg_admin: Any, pg_schema: str) -> str:
    """Keys 1, 2, NULL, NULL, NULL in a column without NOT NULL (no primary key)."""
    table = f'"{pg_schema}".nk'
    pg_admin.execute(f"CREATE TABLE {table} (k int, v text)")
    pg_admin.execute(
        f"INSERT INTO {table} VALUES (1, 'a'), (2, 'b'), (NULL, 'c'), (NULL, 'd'), (NULL, 'e')"
    )
    return table


def _first(pg: Any, stream: str, n: int, **options: Any) -> tuple[list[dict[str, Any]], Any]:
    """The first ``n`` rows of a read in batches of one, and the state after them."""
    rows: list[dict[str, Any]] = []
    state = None
    for batch in pg.read(stream, batch_size=1, key="k", **options):
        rows += batch.records
        state = batch.state
        if len(rows) == n:
            break
    return rows, state


@pytest.mark.parametrize("query", [False, True])
def test_resume_after_a_value_reads_the_null_keys_once(pg, nullable, query):
    """Stopped at k=2, the resume gives exactly the three rows whose k is NULL."""
    stream = f"select k, v from {nullable}" if query else nullable
    first, state = _first(pg, stream, 2)
    assert ["a", "b"] == [r["v"] for r in first]
    assert [2] == state["last"]
    rest = rows_of(pg.read(stream, state, key="k"))
    assert ["c", "d", "e"] == sorted(r["v"] for r in rest)


@pytest.mark.parametrize("fmt", ["jsonl", "pgcopy"])
def test_resume_after_a_value_copy_formats(pg, nullable, fmt):
    """The COPY reads share the condition: the NULL-keyed rows come once."""
    _first_rows, state = _first(pg, nullable, 2)
    rest = list(pg.read(nullable, state, key="k", format=fmt))
    assert 3 == sum(len(b.records) for b in rest)


def test_a_state_at_a_null_key_is_refused(pg, nullable):
    """Stopped after the first NULL key: the resume refuses instead of losing two rows."""
    first, state = _first(pg, nullable, 3)
    assert 3 == len(first)
    assert [None] == state["last"]
    with pytest.raises(ConfigError, match="NULL") as caught:
        rows_of(pg.read(nullable, state, key="k"))
    assert "key" == caught.value.field


def test_composite_key_with_a_nullable_column(pg, pg_admin, pg_schema):
    """Key (a, b), b nullable: every row once across a stop at each row."""
    table = f'"{pg_schema}".ck'
    pg_admin.execute(f"CREATE TABLE {table} (a int NOT NULL, b int, v int)")
    pg_admin.execute(
        f"INSERT INTO {table} VALUES (1, 1, 1), (1, NULL, 2), (2, 1, 3), (2, 2, 4), (3, NULL, 5)"
    )
    for stop in (1, 3, 4):
        rows: list[dict[str, Any]] = []
        state = None
        for batch in pg.read(table, batch_size=1, key=["a", "b"]):
            rows += batch.records
            state = batch.state
            if len(rows) == stop:
                break
        rows += rows_of(pg.read(table, state, key=["a", "b"]))
        assert [1, 2, 3, 4, 5] == sorted(r["v"] for r in rows), stop


def _cli(pg_dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headwater", "read", pg_dsn, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=dict(os.environ),
    )


def test_cli_limit_and_state_reads_every_row_once(pg_dsn, nullable, tmp_path):
    """`read --limit 2 --state` then a resume: five rows in all, exit 0 both times."""
    state = tmp_path / "s.json"
    common = [nullable, "-R", "key=k", "--format", "jsonl", "--state", str(state)]
    first = _cli(pg_dsn, *common, "-o", str(tmp_path / "a.jsonl"), "--limit", "2")
    assert 0 == first.returncode, first.stderr
    rest = _cli(pg_dsn, *common, "-o", str(tmp_path / "b.jsonl"))
    assert 0 == rest.returncode, rest.stderr
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    lines += (tmp_path / "b.jsonl").read_text().splitlines()
    assert ["a", "b", "c", "d", "e"] == sorted(json.loads(line)["v"] for line in lines)


def test_cli_limit_at_a_null_key_then_resume_fails(pg_dsn, nullable, tmp_path):
    """Stopped by --limit 3 at a NULL key: the resume exits non-zero, naming the key."""
    state = tmp_path / "s.json"
    common = [nullable, "-R", "key=k", "--format", "jsonl", "--state", str(state)]
    first = _cli(pg_dsn, *common, "-o", str(tmp_path / "a.jsonl"), "--limit", "3")
    assert 0 == first.returncode, first.stderr
    rest = _cli(pg_dsn, *common, "-o", str(tmp_path / "b.jsonl"))
    assert 0 != rest.returncode
    assert "NULL" in rest.stderr
    assert "Traceback" not in rest.stderr


def test_partitions_on_a_nullable_key_read_every_row_once(pg, pg_admin, pg_schema):
    """Range partitions on a nullable key: the NULL-keyed rows come once, in the last range."""
    table = f'"{pg_schema}".pk'
    pg_admin.execute(f"CREATE TABLE {table} (k int, v int)")
    pg_admin.execute(
        f"INSERT INTO {table} SELECT CASE WHEN g % 5 = 0 THEN NULL ELSE g END, g "
        "FROM generate_series(1, 100) g"
    )
    rows = [
        row for part in pg.partitions(table, 4, key="k") for row in rows_of(pg.read_partition(part))
    ]
    assert list(range(1, 101)) == sorted(r["v"] for r in rows)

"""A query stream only reads: one statement, read-only, rolled back, never run outside a read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from headwater import ConfigError, HeadwaterError
from headwater_postgres import PostgresConnector

from .pg_helpers import arows_of, rows_of


def _injection(table: str) -> str:
    """Closes the describe's ``(...)`` wrapper and slips a DROP TABLE between statements."""
    return f"select 1 as a) q; DROP TABLE {table}; select * from (select 1 as a"


@pytest.fixture
def victim(pg_admin: Any, pg_schema: str) -> str:
    table = f'"{pg_schema}".victim'
    pg_admin.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)")
    pg_admin.execute(f"INSERT INTO {table} VALUES (1), (2)")
    return table


def _still_there(pg_admin: Any, table: str) -> None:
    assert pg_admin.execute(f"SELECT count(*) FROM {table}").fetchone() == (2,)


ENTRY_POINTS: dict[str, Callable[[PostgresConnector, str], Any]] = {
    "read": lambda c, q: rows_of(c.read(q)),
    "read_key": lambda c, q: rows_of(c.read(q, key="a")),
    "read_jsonl": lambda c, q: rows_of(c.read(q, format="jsonl")),
    "read_pgcopy": lambda c, q: rows_of(c.read(q, format="pgcopy")),
    "read_csv": lambda c, q: rows_of(c.read(q, format="csv")),
    "read_unordered_jsonl": lambda c, q: rows_of(c.read(q, format="jsonl", ordered=False)),
    "read_arrow": lambda c, q: list(c.read(q, format="arrow")),
    "metadata": lambda c, q: c.metadata(q),
    "estimate": lambda c, q: c.estimate(q),
    "partitions": lambda c, q: c.partitions(q, 2, key="a"),
    "list": lambda c, q: list(c.list(q)),
    "written_state": lambda c, q: c.written_state(q, "k"),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_injection_drops_nothing(pg, pg_admin, victim, entry):
    """No entry point runs a second statement hidden in a query stream."""
    try:
        ENTRY_POINTS[entry](pg, _injection(victim))
    except HeadwaterError:
        pass  # refusing is right; what matters is that nothing ran
    _still_there(pg_admin, victim)


async def test_injection_drops_nothing_async(apg, pg_admin, victim):
    for call in (
        lambda: apg.ametadata(_injection(victim)),
        lambda: arows_of(apg.aread(_injection(victim))),
    ):
        with pytest.raises(ConfigError):
            await call()
    _still_there(pg_admin, victim)


def test_injection_is_refused_as_a_config_error(pg, pg_admin, victim):
    for call in (
        lambda: rows_of(pg.read(_injection(victim))),
        lambda: pg.metadata(_injection(victim)),
    ):
        with pytest.raises(ConfigError) as caught:
            call()
        assert "stream" == caught.value.field
    _still_there(pg_admin, victim)


def test_several_statements_are_refused_clearly(pg, pg_admin, victim):
    """Two statements are refused as such, before either runs."""
    with pytest.raises(ConfigError, match="one SELECT, WITH, VALUES or TABLE statement"):
        pg.metadata(f"select 1; DROP TABLE {victim}")
    with pytest.raises(ConfigError, match="one SELECT, WITH, VALUES or TABLE statement"):
        rows_of(pg.read(f"select 1; DROP TABLE {victim}"))
    _still_there(pg_admin, victim)


@pytest.mark.parametrize("call", ["read", "metadata"])
def test_a_writing_query_is_refused(pg, pg_admin, victim, call):
    """A data-modifying WITH never writes: refused, the rows stay."""
    query = f"with d as (delete from {victim} returning id) select * from d"
    run = (lambda: rows_of(pg.read(query))) if call == "read" else (lambda: pg.metadata(query))
    with pytest.raises(ConfigError, match="only reads"):
        run()
    _still_there(pg_admin, victim)


def test_a_writing_function_is_refused_in_the_read(pg, pg_admin, pg_schema, victim):
    """A SELECT that calls a writing function fails: the read's transaction is read-only."""
    fn = f'"{pg_schema}".wipe'
    pg_admin.execute(
        f"CREATE FUNCTION {fn}() RETURNS int LANGUAGE sql AS 'DELETE FROM {victim}; SELECT 1'"
    )
    for fmt in ("dicts", "jsonl", "pgcopy", "csv", "arrow"):
        with pytest.raises(HeadwaterError):
            rows_of(pg.read(f"select {fn}() as a", format=fmt))
        _still_there(pg_admin, victim)


def test_describing_does_not_run_the_query(pg, pg_admin, pg_schema):
    """metadata of a query parses it and reads none of its rows (no function is called)."""
    log = f'"{pg_schema}".calls'
    pg_admin.execute(f"CREATE TABLE {log} (n int)")
    fn = f'"{pg_schema}".noisy'
    pg_admin.execute(
        f"CREATE FUNCTION {fn}() RETURNS int LANGUAGE plpgsql AS "
        f"'BEGIN INSERT INTO {log} VALUES (1); RETURN 1; END'"
    )
    meta = pg.metadata(f"select {fn}() as a")
    assert ["a"] == [c["name"] for c in meta["columns"]]
    assert (0,) == pg_admin.execute(f"SELECT count(*) FROM {log}").fetchone()


def test_describe_has_a_statement_timeout(pg_dsn, pg_admin, pg_schema):
    """A describe waiting on a lock gives up after the statement timeout."""
    table = f'"{pg_schema}".locked'
    pg_admin.execute(f"CREATE TABLE {table} (a int)")
    import psycopg

    with psycopg.connect(pg_dsn) as locker:
        locker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        connector = PostgresConnector({"url": pg_dsn, "statement_timeout": 0.5})
        try:
            with pytest.raises(HeadwaterError) as caught:
                connector.metadata(f"select a from {table}")
            assert "statement_timeout" == caught.value.field
        finally:
            connector.close()


@pytest.mark.parametrize(
    "query",
    [
        "select id as a from {t};",
        "select id as a from {t} -- a trailing comment",
        "  (select id as a from {t})  ",
        "with x as (select id as a from {t}) select * from x",
        "table {t}",
    ],
)
@pytest.mark.parametrize("fmt", ["dicts", "jsonl", "pgcopy"])
def test_ordinary_queries_still_read(pg, victim, query, fmt):
    """Single statements read as before, with a trailing ; or -- comment too."""
    text = query.format(t=victim)
    key = "id" if text.startswith("table") else "a"
    batches = list(pg.read(text, key=key, format=fmt))
    assert 2 == sum(len(b.records) for b in batches)
    assert batches[-1].state is not None
    assert batches[-1].state["last"] is not None


def test_text_valid_only_inside_the_wrapper_is_refused(pg):
    """``select 1 as a) q, (select 2 as b`` is no statement of its own: refused."""
    with pytest.raises(ConfigError):
        pg.metadata("select 1 as a) q, (select 2 as b")


def test_reads_leave_no_prepared_statement(pg, victim):
    """The parse check's prepared statement is dropped (pooled connections stay clean)."""
    for _ in range(3):
        pg.metadata(f"select id from {victim}")
    with pg._connection() as conn:
        rows = conn.execute("SELECT name FROM pg_prepared_statements").fetchall()
    assert not [r for r in rows if r[0].startswith("headwater")]


def test_cli_read_of_the_injection_leaves_the_table(pg_dsn, pg_admin, victim):
    """`headwater read <pg> "<injection>"` fails in one line and drops nothing."""
    import os
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "headwater", "read", pg_dsn, _injection(victim)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=dict(os.environ),
    )
    assert 0 != proc.returncode
    assert "Traceback" not in proc.stderr
    _still_there(pg_admin, victim)

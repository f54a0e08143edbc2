"""execute / executemany (and their async twins): DDL and DML, bound parameters, one transaction."""

from __future__ import annotations

import pytest

from headwater import ConfigError, ConnectorError, NotFound
from headwater_postgres import ExecuteResult


def test_execute_ddl_and_dml_return_counts(pg, pg_admin, pg_schema):
    """DDL reports no rows (-1); DML reports the rows it touched; both are committed."""
    t = f'"{pg_schema}".t'
    created = pg.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, name text)")
    assert created == ExecuteResult(-1, "CREATE TABLE")
    inserted = pg.executemany(f"INSERT INTO {t} VALUES (%s, %s)", [(1, "a"), (2, "b"), (3, "c")])
    assert (inserted.rowcount, inserted.statements) == (3, 3)
    updated = pg.execute(
        f"UPDATE {t} SET name = %(name)s WHERE id >= %(low)s", {"name": "z", "low": 2}
    )
    assert (updated.rowcount, updated.status) == (2, "UPDATE 2")
    # Seen from another session: committed.
    rows = pg_admin.execute(f"SELECT id, name FROM {t} ORDER BY id").fetchall()
    assert rows == [(1, "a"), (2, "z"), (3, "z")]


def test_parameters_are_bound_never_formatted(pg, pg_admin, pg_schema):
    """A value that would be SQL if formatted into the text is stored as it is."""
    t = f'"{pg_schema}".t'
    pg.execute(f"CREATE TABLE {t} (v text)")
    evil = "x'); DROP TABLE t; --"
    pg.execute(f"INSERT INTO {t} VALUES (%s)", [evil])
    # A % in a statement without parameters is just a character.
    pg.execute(f"INSERT INTO {t} SELECT '100%'")
    assert pg_admin.execute(f"SELECT v FROM {t} ORDER BY v").fetchall() == [("100%",), (evil,)]


def test_several_statements_are_refused(pg, pg_admin, pg_schema):
    """One statement per call (extended protocol): a second one never runs."""
    t = f'"{pg_schema}".t'
    pg.execute(f"CREATE TABLE {t} (v int)")
    with pytest.raises(ConfigError) as info:
        pg.execute(f"INSERT INTO {t} VALUES (1); DROP TABLE {t}")
    assert info.value.field == "sql"
    assert "one statement" in str(info.value)
    assert pg_admin.execute(f"SELECT count(*) FROM {t}").fetchone() == (0,)


def test_executemany_is_one_transaction(pg, pg_admin, pg_schema):
    """A failing parameter set rolls back the sets before it."""
    t = f'"{pg_schema}".t'
    pg.execute(f"CREATE TABLE {t} (id int PRIMARY KEY)")
    with pytest.raises(ConnectorError) as info:
        pg.executemany(f"INSERT INTO {t} VALUES (%s)", [(1,), (2,), (1,)])
    assert "constraint violated" in str(info.value)
    assert pg_admin.execute(f"SELECT count(*) FROM {t}").fetchone() == (0,)


def test_execute_errors_are_translated(pg, pg_schema):
    """Wrong parameters, missing tables and non-transactional statements: clear errors."""
    with pytest.raises(ConfigError) as info:
        pg.execute("SELECT %s", (1, 2))
    assert info.value.field == "params"
    with pytest.raises(ConfigError) as info:
        pg.execute("SELECT %s", "ab")  # a str would be bound one character per placeholder
    assert info.value.field == "params"
    with pytest.raises(ConfigError) as info:
        pg.execute("SELECT %s", (object(),))
    assert info.value.field == "params"
    with pytest.raises(NotFound) as info:
        pg.execute(f'DELETE FROM "{pg_schema}".missing')
    assert info.value.field == "sql"
    with pytest.raises(ConfigError) as info:
        pg.execute(f'VACUUM "{pg_schema}".missing')
    assert "transaction" in str(info.value)
    with pytest.raises(ConfigError):
        pg.execute("   ")


def test_execute_error_holds_no_secret_nor_row_values(pg_dsn, pg_admin, pg_schema):
    """
    The error of a failed statement keeps the server's primary message only: its DETAIL
    (which quotes the conflicting key's value) and the password are in no message.
    """
    from headwater_postgres import PostgresConnector

    secret = "s3cr3t-passw0rd-value"
    connector = PostgresConnector({"url": pg_dsn, "password": secret})
    try:
        t = f'"{pg_schema}".t'
        connector.execute(f"CREATE TABLE {t} (k text PRIMARY KEY)")
        connector.execute(f"INSERT INTO {t} VALUES (%s)", ["private-key-value"])
        with pytest.raises(ConnectorError) as info:
            connector.execute(f"INSERT INTO {t} VALUES (%s)", ["private-key-value"])
        text = f"{info.value} {info.value.hint} {info.value!r}"
        assert "private-key-value" not in text
        assert secret not in text
    finally:
        connector.close()


def test_executemany_of_nothing_runs_nothing(pg):
    """No parameter sets: no statement, no connection needed."""
    assert pg.executemany("INSERT INTO nowhere VALUES (%s)", []) == ExecuteResult(0, None, 0)


def test_reads_stay_read_only(pg, pg_admin, pg_schema):
    """execute does not make read() write: a data-modifying query stream is still refused."""
    t = f'"{pg_schema}".t'
    pg.execute(f"CREATE TABLE {t} (v int)")
    with pytest.raises(ConfigError):
        list(
            pg.read(f"WITH x AS (INSERT INTO {t} VALUES (1) RETURNING v) SELECT v FROM x", key="v")
        )
    assert pg_admin.execute(f"SELECT count(*) FROM {t}").fetchone() == (0,)


async def test_async_execute_and_executemany(apg, pg_admin, pg_schema):
    """The async twins do what the sync ones do, on the async pool."""
    t = f'"{pg_schema}".t'
    assert (await apg.aexecute(f"CREATE TABLE {t} (id int, v jsonb)")).rowcount == -1
    many = await apg.aexecutemany(
        f"INSERT INTO {t} VALUES (%s, %s::jsonb)", [(1, '{"a": 1}'), (2, "[1, 2]")]
    )
    assert (many.rowcount, many.statements) == (2, 2)
    deleted = await apg.aexecute(f"DELETE FROM {t} WHERE id = %s", [1])
    assert deleted.rowcount == 1
    assert pg_admin.execute(f"SELECT id FROM {t}").fetchall() == [(2,)]
    with pytest.raises(ConfigError) as info:
        await apg.aexecute("SELECT 1; SELECT 2")
    assert info.value.field == "sql"
    assert "async" in apg.stats()


def test_composed_sql_is_taken_and_other_types_refused(pg, pg_admin, pg_schema):
    """psycopg.sql objects compose identifiers safely; bytes or None are not SQL text."""
    from psycopg import sql

    name = 'odd "name"'
    statement = sql.SQL("CREATE TABLE {} (v int)").format(sql.Identifier(pg_schema, name))
    assert pg.execute(statement).status == "CREATE TABLE"
    found = pg_admin.execute(
        "SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename = %s",
        (pg_schema, name),
    ).fetchone()
    assert found == (1,)
    for wrong in (b"SELECT 1", None):
        with pytest.raises(ConfigError) as info:
            pg.execute(wrong)
        assert info.value.field == "sql"

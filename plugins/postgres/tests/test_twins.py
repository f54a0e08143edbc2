"""
Sync and async written once (`_flows`): each operation run through both drivers on the
real server gives the same result — reads with their states, writes with staging, upsert
and state, the catalog, execute, estimates, partitions and check.
"""

from __future__ import annotations

from typing import Any

import pytest

from headwater import ConnectorError, HeadwaterError, NotFound

from .pg_helpers import arows_of, make_types_table, rows_of


def _same(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as compared: NaN (never equal to itself) as a marker."""
    return [
        {k: "NaN" if isinstance(v, float) and v != v else v for k, v in row.items()} for row in rows
    ]


def _states(batches: Any) -> list[Any]:
    return [batch.state for batch in batches]


async def _astates(batches: Any) -> list[Any]:
    return [batch.state async for batch in batches]


async def test_reads_give_the_same_rows_and_states(pg, apg, pg_admin, pg_schema):
    """Every type, batch by batch: the same rows and the same states on both sides."""
    table = make_types_table(pg_admin, pg_schema)
    rows = _same(rows_of(pg.read(table, batch_size=2)))
    assert rows == _same(await arows_of(apg.aread(table, batch_size=2)))
    assert 3 == len(rows)
    assert _states(pg.read(table, batch_size=2)) == await _astates(apg.aread(table, batch_size=2))


async def test_a_resumed_read_starts_at_the_same_row(pg, apg, pg_admin, pg_schema):
    """A state from one side resumes the other right after it."""
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".r (id int PRIMARY KEY, v text)')
    pg_admin.execute(
        f"INSERT INTO \"{pg_schema}\".r SELECT g, 'v' || g FROM generate_series(1, 250) g"
    )
    table = f"{pg_schema}.r"
    state = next(iter(pg.read(table, batch_size=100))).state
    resumed = await arows_of(apg.aread(table, state, batch_size=100))
    assert [r["id"] for r in resumed] == list(range(101, 251))
    astate = [b.state async for b in apg.aread(table, batch_size=100)][1]
    assert [r["id"] for r in rows_of(pg.read(table, astate))] == list(range(201, 251))


async def test_writes_with_upsert_and_state_land_the_same(pg, apg, pg_admin, pg_schema):
    """Create, append, upsert (last row of a key wins) and a state, each side into its table."""
    records = [{"id": i, "v": f"v{i}"} for i in range(1, 6)]
    updates = [{"id": 2, "v": "two"}, {"id": 9, "v": "nine"}, {"id": 2, "v": "deux"}]
    for name in ("s", "a"):
        pg_admin.execute(f'CREATE TABLE "{pg_schema}".{name} (id int PRIMARY KEY, v text)')
    state = {"source": {"at": 7}}
    sync_table, async_table = f"{pg_schema}.s", f"{pg_schema}.a"
    first = pg.write(sync_table, [records])
    afirst = await apg.awrite(async_table, [records])
    # One state table per schema, keyed by the copy: a key of each side's own.
    second = pg.write(sync_table, [updates], upsert_on=["id"], state_key="ks", state=state)
    asecond = await apg.awrite(
        async_table, [updates], upsert_on=["id"], state_key="ka", state=state
    )
    assert (first.records, second.records) == (afirst.records, asecond.records)
    ordered = "SELECT id, v FROM {} ORDER BY id"
    got = pg_admin.execute(ordered.format(f'"{pg_schema}".s')).fetchall()
    assert got == pg_admin.execute(ordered.format(f'"{pg_schema}".a')).fetchall()
    assert (2, "deux") in got
    assert pg.written_state(sync_table, "ks") == await apg.awritten_state(async_table, "ka")
    assert pg.written_state(sync_table, "ks") == state


async def test_a_failing_write_changes_nothing_on_either_side(pg, apg, pg_admin, pg_schema):
    """A value the column cannot hold: the same error, and neither table changed."""
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".f (id int PRIMARY KEY, n smallint)')
    table = f"{pg_schema}.f"
    bad = [[{"id": 1, "n": 1}], [{"id": 2, "n": 70_000}]]
    with pytest.raises(HeadwaterError) as sync_failure:
        pg.write(table, bad)
    with pytest.raises(HeadwaterError) as async_failure:
        await apg.awrite(table, bad)
    assert type(sync_failure.value) is type(async_failure.value)
    assert sync_failure.value.field == async_failure.value.field
    assert str(sync_failure.value) == str(async_failure.value)
    assert [] == pg_admin.execute(f'SELECT * FROM "{pg_schema}".f').fetchall()


async def test_the_catalog_answers_the_same(pg, apg, pg_admin, pg_schema):
    """list, metadata, json_fields and estimate of the same table."""
    table = make_types_table(pg_admin, pg_schema)
    pg_admin.execute(f'ANALYZE "{pg_schema}".types')
    listed = sorted(item.name for item in pg.list(pg_schema))
    assert listed == sorted([item.name async for item in apg.alist(pg_schema)])
    assert pg.metadata(table) == await apg.ametadata(table)
    assert pg.json_fields(table) == await apg.ajson_fields(table)
    assert {"js", "jsb"} == set(pg.json_fields(table))
    assert pg.estimate(table) == await apg.aestimate(table)
    with pytest.raises(NotFound):
        pg.metadata(f"{pg_schema}.missing")
    with pytest.raises(NotFound):
        await apg.ametadata(f"{pg_schema}.missing")


async def test_execute_and_executemany_report_the_same(pg, apg, pg_admin, pg_schema):
    """Row counts and command tags of execute/executemany, on both sides."""
    for name in ("es", "ea"):
        pg_admin.execute(f'CREATE TABLE "{pg_schema}".{name} (id int, v text)')
    rows = [(1, "a"), (2, "b"), (3, "c")]
    many = pg.executemany(f'INSERT INTO "{pg_schema}".es VALUES (%s, %s)', rows)
    amany = await apg.aexecutemany(f'INSERT INTO "{pg_schema}".ea VALUES (%s, %s)', rows)
    assert (3, 3) == (many.rowcount, many.statements)
    assert (many.rowcount, many.status, many.statements) == (
        amany.rowcount,
        amany.status,
        amany.statements,
    )
    one = pg.execute(f"UPDATE \"{pg_schema}\".es SET v = 'x' WHERE id > %s", (1,))
    aone = await apg.aexecute(f"UPDATE \"{pg_schema}\".ea SET v = 'x' WHERE id > %s", (1,))
    assert (2, "UPDATE 2") == (one.rowcount, one.status)
    assert (one.rowcount, one.status) == (aone.rowcount, aone.status)
    ordered = "SELECT id, v FROM {} ORDER BY id"
    assert pg_admin.execute(ordered.format(f'"{pg_schema}".es')).fetchall() == (
        pg_admin.execute(ordered.format(f'"{pg_schema}".ea')).fetchall()
    )


async def test_partitions_read_the_same_on_both_sides(pg, apg, pg_admin, pg_schema):
    """Each key range read sync and async gives the same rows; together, the table once."""
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".p (id bigint PRIMARY KEY, v text)')
    pg_admin.execute(
        f"INSERT INTO \"{pg_schema}\".p SELECT g, 'v' || g FROM generate_series(1, 1000) g"
    )
    table = f"{pg_schema}.p"
    parts = pg.partitions(table, 4)
    seen: list[int] = []
    for part in parts:
        rows = rows_of(pg.read_partition(part))
        assert rows == await arows_of(apg.aread_partition(part))
        seen.extend(r["id"] for r in rows)
    assert sorted(seen) == list(range(1, 1001))


async def test_check_and_a_dead_server_fail_the_same(pg, apg, unused_tcp_port):
    """check against the live server, then one nobody listens on: the same outcome."""
    assert pg.check().ok
    assert (await apg.acheck()).ok
    from headwater_postgres import PostgresConnector

    config = {
        "host": "127.0.0.1",
        "port": unused_tcp_port,
        "dbname": "test",
        "user": "postgres",
        "connect_timeout": 2,
        "retry": {"attempts": 1},
    }
    with PostgresConnector(config) as dead:
        result = dead.check()
        with pytest.raises(ConnectorError) as sync_failure:
            dead.metadata("public.t")
    async with PostgresConnector(config) as adead:
        aresult = await adead.acheck()
        with pytest.raises(ConnectorError) as async_failure:
            await adead.ametadata("public.t")
    assert (result.ok, result.category) == (aresult.ok, aresult.category)
    assert not result.ok
    assert type(sync_failure.value) is type(async_failure.value)

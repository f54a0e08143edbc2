"""Part writes (Capability.PART_WRITES): staged per (job, index), replaced on retry, one commit."""

from __future__ import annotations

from typing import Any

import pytest

from headwater import Capability, ConfigError, IntegrityError, NotFound

JOB = "0123456789abcdef"


def _stages(admin: Any, schema: str) -> list[str]:
    rows = admin.execute(
        "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND relname LIKE 'hw_part_%%' ORDER BY relname",
        (schema,),
    ).fetchall()
    return [row[0] for row in rows]


def _rows(admin: Any, table: str) -> list[tuple[Any, ...]]:
    return admin.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()


def test_postgres_declares_part_writes(pg: Any) -> None:
    """The capability is declared, so engines know they may write to postgres."""
    assert Capability.PART_WRITES in pg.capabilities


def test_a_part_written_again_replaces_the_first_attempt(pg: Any, pg_admin: Any, pg_schema: str):
    """Part 1 written twice (a retried task): the commit holds its records once."""
    table = f"{pg_schema}.dest"
    pg_admin.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, name text)")
    first = [{"id": i, "name": f"n{i}"} for i in range(50)]
    second = [{"id": i, "name": f"n{i}"} for i in range(50, 120)]
    assert 50 == pg.write_part(table, [first], job=JOB, index=0).records
    assert 30 == pg.write_part(table, [second[:30]], job=JOB, index=1).records  # then a retry:
    assert 70 == pg.write_part(table, [second[:30], second[30:]], job=JOB, index=1).records
    assert [] == _rows(pg_admin, table)  # nothing visible before the commit
    assert [f"hw_part_{JOB}_0", f"hw_part_{JOB}_1"] == _stages(pg_admin, pg_schema)

    result = pg.commit_parts(table, job=JOB, parts={0: 50, 1: 70})
    assert 120 == result.records
    assert [(i, f"n{i}") for i in range(120)] == _rows(pg_admin, table)
    assert [] == _stages(pg_admin, pg_schema)


def test_a_part_missing_or_short_commits_nothing(pg: Any, pg_admin: Any, pg_schema: str) -> None:
    """A part not staged, or holding another count: IntegrityError naming it, table unchanged."""
    table = f"{pg_schema}.dest"
    pg_admin.execute(f"CREATE TABLE {table} (id bigint, name text)")
    pg_admin.execute(f"INSERT INTO {table} VALUES (-1, 'before')")
    pg.write_part(table, [[{"id": 1, "name": "a"}]], job=JOB, index=0)
    with pytest.raises(IntegrityError) as caught:
        pg.commit_parts(table, job=JOB, parts={0: 1, 1: 5})
    assert "part 1 of write job" in caught.value.message
    assert "not staged" in caught.value.message
    with pytest.raises(IntegrityError) as short:
        pg.commit_parts(table, job=JOB, parts={0: 2})
    assert "holds 1 records, not the 2" in short.value.message
    assert [(-1, "before")] == _rows(pg_admin, table)
    assert [f"hw_part_{JOB}_0"] == _stages(pg_admin, pg_schema)
    pg.abort_parts(table, job=JOB)
    pg.abort_parts(table, job=JOB)  # twice: nothing left is fine
    assert [] == _stages(pg_admin, pg_schema)


def test_upsert_replace_and_a_created_table(pg: Any, pg_admin: Any, pg_schema: str) -> None:
    """A missing table is created like the parts; upsert_on keeps a key's last record."""
    table = f"{pg_schema}.made"
    options: dict[str, Any] = {"upsert_on": "id", "primary_key": "id"}
    pg.write_part(table, [[{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]], job=JOB, index=0, **options)
    pg.write_part(table, [[{"id": 2, "v": "B"}, {"id": 3, "v": "c"}]], job=JOB, index=1, **options)
    pg.write_part(table, [], job=JOB, index=2, **options)  # an empty part stages nothing
    assert 3 == pg.commit_parts(table, job=JOB, parts={0: 2, 1: 2, 2: 0}, **options).records
    assert [(1, "a"), (2, "B"), (3, "c")] == _rows(pg_admin, table)
    key = pg_admin.execute(
        "SELECT count(*) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'",
        (table,),
    ).fetchone()
    assert (1,) == key

    job = "fedcba9876543210"
    pg.write_part(table, [[{"id": 9, "v": "z"}]], job=job, index=0)
    assert 1 == pg.commit_parts(table, job=job, parts={0: 1}, mode="replace").records
    assert [(9, "z")] == _rows(pg_admin, table)


def test_no_records_and_no_table_is_not_found(pg: Any, pg_schema: str) -> None:
    """Nothing to create the table from: NotFound, as write says it."""
    table = f"{pg_schema}.nothing"
    assert 0 == pg.write_part(table, [[]], job=JOB, index=0).records
    with pytest.raises(NotFound):
        pg.commit_parts(table, job=JOB, parts={0: 0})


@pytest.mark.parametrize(
    ("job", "index", "field"), [("Bad-Job!", 0, "job"), ("short", 0, "job"), (JOB, -1, "index")]
)
def test_job_and_index_are_checked(pg: Any, pg_schema: str, job: str, index: int, field: str):
    """A job id or index that could not name a table is refused before any SQL."""
    with pytest.raises(ConfigError) as caught:
        pg.write_part(f"{pg_schema}.t", [[{"id": 1}]], job=job, index=index)
    assert field == caught.value.field


def test_state_cannot_ride_on_parts(pg: Any, pg_schema: str) -> None:
    """state_key/state belong to one write: a part write refuses them, naming the option."""
    with pytest.raises(ConfigError) as caught:
        pg.write_part(f"{pg_schema}.t", [[{"id": 1}]], job=JOB, index=0, state_key="k", state={})
    assert "state" in caught.value.message


async def test_async_twins_stage_and_commit(apg: Any, pg_admin: Any, pg_schema: str) -> None:
    """awrite_part / acommit_parts / aabort_parts on psycopg's async side."""
    table = f"{pg_schema}.dest"
    pg_admin.execute(f"CREATE TABLE {table} (id bigint, name text)")
    await apg.awrite_part(table, [[{"id": 1, "name": "x"}]], job=JOB, index=0)
    await apg.awrite_part(table, [[{"id": 1, "name": "x"}]], job=JOB, index=0)
    assert 1 == (await apg.acommit_parts(table, job=JOB, parts={0: 1})).records
    await apg.awrite_part(table, [[{"id": 2, "name": "y"}]], job="aaaaaaaaaaaaaaaa", index=3)
    await apg.aabort_parts(table, job="aaaaaaaaaaaaaaaa")
    assert [(1, "x")] == _rows(pg_admin, table)
    assert [] == _stages(pg_admin, pg_schema)

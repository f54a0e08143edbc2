"""Atomic state: write(..., state_key=, state=) commits the state with the rows, or neither."""

from __future__ import annotations

import pytest

from headwater import Capability, ConfigError, ConnectorError


def _table(admin, schema: str) -> str:
    admin.execute(f'CREATE TABLE "{schema}".t (id int PRIMARY KEY)')
    return f"{schema}.t"


def _ids(admin, schema: str) -> list[int]:
    return [r[0] for r in admin.execute(f'SELECT id FROM "{schema}".t ORDER BY id')]


def test_declares_atomic_state(pg):
    """The connector declares Capability.ATOMIC_STATE."""
    assert Capability.ATOMIC_STATE in pg.capabilities


def test_write_commits_rows_and_state(pg, pg_admin, pg_schema):
    """A write with a state commits both; written_state returns it; a second write updates it."""
    table = _table(pg_admin, pg_schema)
    state = {"source": {"last": [2]}, "records": 2}
    pg.write(table, [[{"id": 1}, {"id": 2}]], state_key="copy-1", state=state)
    assert [1, 2] == _ids(pg_admin, pg_schema)
    assert state == pg.written_state(table, "copy-1")
    row = pg_admin.execute(
        f'SELECT key, stream, state, updated_at IS NOT NULL FROM "{pg_schema}".headwater_state'
    ).fetchone()
    assert ("copy-1", f"{pg_schema}.t", state, True) == row
    pg.write(table, [[{"id": 3}]], state_key="copy-1", state={"records": 3})
    assert {"records": 3} == pg.written_state(table, "copy-1")
    assert (
        1 == pg_admin.execute(f'SELECT count(*) FROM "{pg_schema}".headwater_state').fetchone()[0]
    )


def test_state_is_read_when_the_write_commits(pg, pg_admin, pg_schema):
    """The state dict is read after the last batch: what the caller filled in as they passed."""
    table = _table(pg_admin, pg_schema)
    state: dict = {"format": 1}

    def batches():
        for n in range(1, 4):
            yield [{"id": n}]
            state.update(source={"last": [n]}, records=n)

    pg.write(table, batches(), state_key="k", state=state)
    assert {"format": 1, "source": {"last": [3]}, "records": 3} == pg.written_state(table, "k")


def test_failed_write_commits_neither(pg, pg_admin, pg_schema):
    """Batches raising mid-way commit no rows and no state: the previous state stays."""
    table = _table(pg_admin, pg_schema)
    pg.write(table, [[{"id": 1}]], state_key="k", state={"records": 1})

    def batches():
        yield [{"id": 2}, {"id": 3}]
        raise RuntimeError("source broke")

    with pytest.raises(ConnectorError):
        pg.write(table, batches(), state_key="k", state={"records": 3})
    assert [1] == _ids(pg_admin, pg_schema)
    assert {"records": 1} == pg.written_state(table, "k")


def test_state_table_created_in_the_failed_transaction_is_gone(pg, pg_admin, pg_schema):
    """A first write with a state that fails leaves no state table behind."""
    table = _table(pg_admin, pg_schema)
    with pytest.raises(ConnectorError):
        pg.write(table, [[{"id": 1}, {"id": 1}]], state_key="k", state={"records": 2})
    assert pg.written_state(table, "k") is None
    assert (
        pg_admin.execute(f"SELECT to_regclass('\"{pg_schema}\".headwater_state')").fetchone()[0]
        is None
    )


def test_empty_write_still_commits_its_state(pg, pg_admin, pg_schema):
    """A write of no records stores its state (a copy of an empty stream is done)."""
    table = _table(pg_admin, pg_schema)
    assert 0 == pg.write(table, [[]], state_key="k", state={"records": 0}).records
    assert {"records": 0} == pg.written_state(table, "k")


def test_written_state_unknown_is_none(pg, pg_admin, pg_schema):
    """Unknown key, no state table, no table, another table's key: all None."""
    table = _table(pg_admin, pg_schema)
    assert pg.written_state(table, "nothing") is None  # no headwater_state yet
    pg.write(table, [[{"id": 1}]], state_key="k", state={"records": 1})
    assert pg.written_state(table, "other") is None
    assert pg.written_state(f"{pg_schema}.missing", "k") is None
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".u (id int)')
    assert pg.written_state(f"{pg_schema}.u", "k") is None


def test_state_key_and_state_go_together(pg, pg_admin, pg_schema):
    """state_key without state (or state without state_key) is a ConfigError naming the other."""
    table = _table(pg_admin, pg_schema)
    with pytest.raises(ConfigError) as missing_state:
        pg.write(table, [[{"id": 1}]], state_key="k")
    assert "state" == missing_state.value.field
    with pytest.raises(ConfigError) as missing_key:
        pg.write(table, [[{"id": 1}]], state={"records": 1})
    assert "state_key" == missing_key.value.field
    with pytest.raises(ConfigError) as not_json:
        pg.write(table, [[{"id": 1}]], state_key="k", state={"bad": {1, 2}})
    assert "state" == not_json.value.field
    assert [] == _ids(pg_admin, pg_schema)


def test_state_with_upsert_and_created_table(pg, pg_admin, pg_schema):
    """The state goes to the schema of a table the same write creates, with an upsert."""
    table = f"{pg_schema}.made"
    rows = [{"id": 1, "v": "a"}, {"id": 1, "v": "b"}]
    pg.write(
        table,
        [rows],
        schema={"id": int, "v": str},
        primary_key="id",
        upsert_on="id",
        state_key="k",
        state={"records": 2},
    )
    assert [(1, "b")] == pg_admin.execute(f'SELECT id, v FROM "{pg_schema}".made').fetchall()
    assert {"records": 2} == pg.written_state(table, "k")


async def test_async_state_twin(apg, pg_admin, pg_schema):
    """awrite stores the state atomically and awritten_state reads it; a failure keeps the old one."""
    table = _table(pg_admin, pg_schema)
    assert await apg.awritten_state(table, "k") is None

    async def good():
        yield [{"id": 1}]

    await apg.awrite(table, good(), state_key="k", state={"records": 1})
    assert {"records": 1} == await apg.awritten_state(table, "k")

    async def bad():
        yield [{"id": 2}]
        raise RuntimeError("source broke")

    with pytest.raises(ConnectorError):
        await apg.awrite(table, bad(), state_key="k", state={"records": 2})
    assert {"records": 1} == await apg.awritten_state(table, "k")
    assert [1] == _ids(pg_admin, pg_schema)

"""Writing with binary COPY: creation from a schema, round trips, upserts, atomicity."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest

from headwater import Batch, ConfigError, ConnectorError, NotFound

from .pg_helpers import make_types_table, rows_of


def _count(admin, table: str) -> int:
    return admin.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_create_from_declared_schema(pg, pg_admin, pg_schema):
    """A missing table is created from the declared Python types, then filled."""
    schema: dict[str, Any] = {
        "id": int,
        "price": Decimal,
        "ratio": float,
        "name": str,
        "ok": bool,
        "at": dt.datetime,
        "day": dt.date,
        "span": dt.timedelta,
        "ref": uuid.UUID,
        "raw": bytes,
        "doc": dict,
        "tags": list[str],
        "code": "varchar(8)",
    }
    rows = [
        {
            "id": 1,
            "price": Decimal("9.99"),
            "ratio": 0.5,
            "name": "ünï",
            "ok": True,
            "at": dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC),
            "day": dt.date(2024, 5, 1),
            "span": dt.timedelta(days=1, seconds=2),
            "ref": uuid.UUID(int=5),
            "raw": b"\x00\x01",
            "doc": {"k": [1, "two"]},
            "tags": ["a", "b"],
            "code": "X1",
        },
        dict.fromkeys(schema) | {"id": 2},
    ]
    result = pg.write(f"{pg_schema}.created", [rows], schema=schema, primary_key="id")
    assert 2 == result.records
    meta = pg.metadata(f"{pg_schema}.created")
    types = {c["name"]: c["type"] for c in meta["columns"]}
    assert {
        "id": "bigint",
        "price": "numeric",
        "ratio": "double precision",
        "name": "text",
        "ok": "boolean",
        "at": "timestamp with time zone",
        "day": "date",
        "span": "interval",
        "ref": "uuid",
        "raw": "bytea",
        "doc": "jsonb",
        "tags": "text[]",
        "code": "character varying(8)",
    } == types
    assert ["id"] == meta["primary_key"]
    back = rows_of(pg.read(f"{pg_schema}.created"))
    expected = dict(rows[0], span="P1DT2S")
    assert expected == back[0]
    assert rows[1] == back[1]


def test_round_trip_of_every_mapped_type(pg, pg_admin, pg_schema):
    """Rows read from the all-types table write back into a copy of it unchanged."""
    source = make_types_table(pg_admin, pg_schema)
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".copy (LIKE "{pg_schema}".types)')
    original = rows_of(pg.read(source))
    assert 3 == pg.write(f"{pg_schema}.copy", pg.read(source)).records
    copied = rows_of(pg.read(f"{pg_schema}.copy", key="id"))
    nan_free = [{k: v for k, v in r.items() if k != "real_"} for r in original]
    assert nan_free == [{k: v for k, v in r.items() if k != "real_"} for r in copied]


def test_round_trip_binary_only_types(pg, pg_admin, pg_schema):
    """A table of natively written types takes read output back through binary COPY."""
    pg_admin.execute(
        f'CREATE TABLE "{pg_schema}".src (id bigint PRIMARY KEY, iv interval, u uuid, '
        "tstz timestamptz, n numeric, j jsonb, a int[])"
    )
    pg_admin.execute(
        f"INSERT INTO \"{pg_schema}\".src VALUES (1, '1 mon 2 days 00:00:01.5', "
        "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-01-01 10:00+05', 1.25, "
        "'{\"x\": \"y\"}', '{1,2}')"
    )
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".dst (LIKE "{pg_schema}".src)')
    rows = rows_of(pg.read(f"{pg_schema}.src"))
    # The strings a JSON file would hold: ISO timestamps, interval text, UUID text.
    as_text = [dict(r, u=str(r["u"]), tstz=r["tstz"].isoformat(), n=str(r["n"])) for r in rows]
    pg.write(f"{pg_schema}.dst", [as_text])
    assert rows == rows_of(pg.read(f"{pg_schema}.dst", key="id"))
    pg_admin.execute("SET intervalstyle = postgres")
    assert (
        "1 mon 2 days 00:00:01.5"
        == pg_admin.execute(f'SELECT iv::text FROM "{pg_schema}".dst').fetchone()[0]
    )


def test_missing_table_without_schema_or_records_is_not_found(pg, pg_schema):
    """
    Writing no records to a missing table without a schema fails as not_found: there is
    nothing to infer its columns from (with records, see test_service's inference tests).
    """
    with pytest.raises(NotFound):
        pg.write(f"{pg_schema}.nothing", [[]])


def test_atomic_write_leaves_table_unchanged(pg, pg_admin, pg_schema):
    """A batch with a bad row fails and the table keeps exactly its old rows."""
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".t (id int PRIMARY KEY, n int NOT NULL)')
    pg_admin.execute(f'INSERT INTO "{pg_schema}".t VALUES (1, 1), (2, 2)')
    good = [{"id": i, "n": i} for i in range(10, 2010)]
    bad = [{"id": 5000, "n": None}]
    with pytest.raises(ConnectorError):
        pg.write(f"{pg_schema}.t", [good, good[:0], bad])
    assert [(1, 1), (2, 2)] == pg_admin.execute(
        f'SELECT id, n FROM "{pg_schema}".t ORDER BY id'
    ).fetchall()


def test_atomic_write_on_unknown_field_mid_stream(pg, pg_admin, pg_schema):
    """A later record with an unknown field aborts the whole write."""
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".t (id int PRIMARY KEY)')
    with pytest.raises(ConfigError):
        pg.write(f"{pg_schema}.t", [[{"id": 1}], [{"id": 2, "surprise": 1}]])
    assert 0 == _count(pg_admin, f'"{pg_schema}".t')


def test_atomic_write_when_source_raises(pg, pg_admin, pg_schema):
    """If the batch source raises midway, nothing is committed."""
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".t (id int PRIMARY KEY)')

    def batches():
        yield [{"id": 1}, {"id": 2}]
        raise RuntimeError("source broke")

    with pytest.raises(ConnectorError):
        pg.write(f"{pg_schema}.t", batches())
    assert 0 == _count(pg_admin, f'"{pg_schema}".t')


def test_upsert_on_key(pg, pg_admin, pg_schema):
    """upsert_on updates existing keys and inserts new ones; the last duplicate wins."""
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".t (id int PRIMARY KEY, v text, keep text)')
    pg_admin.execute(f"INSERT INTO \"{pg_schema}\".t VALUES (1, 'old', 'k1'), (2, 'old', 'k2')")
    result = pg.write(
        f"{pg_schema}.t",
        [[{"id": 2, "v": "new"}, {"id": 3, "v": "first"}], [{"id": 3, "v": "second"}]],
        upsert_on="id",
    )
    assert 3 == result.records
    assert [(1, "old", "k1"), (2, "new", "k2"), (3, "second", None)] == pg_admin.execute(
        f'SELECT id, v, keep FROM "{pg_schema}".t ORDER BY id'
    ).fetchall()


async def test_async_upsert_equals_sync(pg, apg, pg_admin, pg_schema):
    """awrite with upsert_on=[...] updates existing keys and inserts new ones, like write."""
    for name in ("s", "a"):
        pg_admin.execute(
            f'CREATE TABLE "{pg_schema}".{name} (a int, b text, v text, keep text, PRIMARY KEY (a, b))'
        )
        pg_admin.execute(
            f"INSERT INTO \"{pg_schema}\".{name} VALUES (1, 'x', 'old', 'k1'), (2, 'x', 'old', 'k2')"
        )
    first = [{"a": 2, "b": "x", "v": "new"}, {"a": 2, "b": "y", "v": "first"}]
    second = [{"a": 2, "b": "y", "v": "second"}]

    async def batches():
        yield first
        yield second

    synced = pg.write(f"{pg_schema}.s", [first, second], upsert_on=["a", "b"])
    awaited = await apg.awrite(f"{pg_schema}.a", batches(), upsert_on=["a", "b"])
    assert (3, 3) == (synced.records, awaited.records)
    expected = [(1, "x", "old", "k1"), (2, "x", "new", "k2"), (2, "y", "second", None)]

    def contents(name):
        return pg_admin.execute(
            f'SELECT a, b, v, keep FROM "{pg_schema}".{name} ORDER BY a, b'
        ).fetchall()

    assert expected == contents("a")
    assert contents("s") == contents("a")


def test_replace_mode(pg, pg_admin, pg_schema):
    """mode='replace' empties the table in the same transaction."""
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".t (id int PRIMARY KEY)')
    pg_admin.execute(f'INSERT INTO "{pg_schema}".t VALUES (1), (2)')
    pg.write(f"{pg_schema}.t", [[{"id": 9}]], mode="replace")
    assert [(9,)] == pg_admin.execute(f'SELECT id FROM "{pg_schema}".t').fetchall()


def test_write_accepts_batches_and_arrow(pg, pg_admin, pg_schema):
    """Batch objects (dicts or Arrow) are written like lists of dicts."""
    pa = pytest.importorskip("pyarrow")
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".t (id bigint PRIMARY KEY, s text)')
    arrow = pa.RecordBatch.from_pylist([{"id": 1, "s": "a"}, {"id": 2, "s": None}])
    batches = [Batch("x", arrow, {}), Batch("x", [{"id": 3, "s": "c"}], {})]
    assert 3 == pg.write(f"{pg_schema}.t", batches).records
    assert [(1, "a"), (2, None), (3, "c")] == pg_admin.execute(
        f'SELECT id, s FROM "{pg_schema}".t ORDER BY id'
    ).fetchall()


def test_bad_declared_type_refused(pg, pg_schema):
    """A declared type that is not a type name (SQL smuggling) is refused before any I/O."""
    with pytest.raises(ConfigError):
        pg.write(f"{pg_schema}.t", [[{"a": 1}]], schema={"a": "int); DROP TABLE x; --"})


async def test_async_write_atomic_and_equal(apg, pg_admin, pg_schema):
    """awrite writes like write, from an async iterable, and rolls back on failure."""
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".t (id int PRIMARY KEY, n int NOT NULL)')

    async def batches(bad: bool):
        yield [{"id": i, "n": i} for i in range(1, 1500)]
        yield [{"id": 2000, "n": None if bad else 0}]

    with pytest.raises(ConnectorError):
        await apg.awrite(f"{pg_schema}.t", batches(bad=True))
    assert 0 == _count(pg_admin, f'"{pg_schema}".t')
    result = await apg.awrite(f"{pg_schema}.t", batches(bad=False))
    assert 1500 == result.records
    assert 1500 == _count(pg_admin, f'"{pg_schema}".t')
    created = await apg.awrite(
        f"{pg_schema}.made", [[{"k": "x", "v": 1.5}]], schema={"k": str, "v": float}
    )
    assert 1 == created.records


async def test_async_round_trip_of_every_mapped_type(apg, pg_admin, pg_schema):
    """awrite of rows read by aread (all mapped types, NULLs, unicode) copies them unchanged."""
    source = make_types_table(pg_admin, pg_schema)
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".copy (LIKE "{pg_schema}".types)')
    original = [r async for b in apg.aread(source) for r in b.rows()]
    result = await apg.awrite(f"{pg_schema}.copy", apg.aread(source))
    assert 3 == result.records
    copied = [r async for b in apg.aread(f"{pg_schema}.copy", key="id") for r in b.rows()]

    def without_nan(rows):
        return [{k: v for k, v in r.items() if k != "real_"} for r in rows]

    assert without_nan(original) == without_nan(copied)


def test_unserializable_json_value_rolls_back(pg, pg_admin, pg_schema):
    """A jsonb value that is not JSON (a set) fails the write; nothing is committed."""
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".t (id int PRIMARY KEY, doc jsonb)')
    with pytest.raises(ConnectorError):
        pg.write(f"{pg_schema}.t", [[{"id": 1, "doc": {"ok": "ü✓"}}, {"id": 2, "doc": {1, 2}}]])
    assert 0 == _count(pg_admin, f'"{pg_schema}".t')
    pg.write(f"{pg_schema}.t", [[{"id": 1, "doc": {"ok": "ü✓", "n": [1.5, None]}}]])
    assert {"ok": "ü✓", "n": [1.5, None]} == pg_admin.execute(
        f'SELECT doc FROM "{pg_schema}".t'
    ).fetchone()[0]

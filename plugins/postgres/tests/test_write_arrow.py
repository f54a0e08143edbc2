"""Writing Arrow: RecordBatch, Table and Batch-of-Arrow input, json text kept as it is."""

from __future__ import annotations

from typing import Any

import pytest

from headwater import Batch, ConfigError

from .pg_helpers import make_types_table

pa = pytest.importorskip("pyarrow")
pytest.importorskip("adbc_driver_postgresql")

#: The types table's columns but `grid`: the ADBC driver reads a two-dimensional array
#: as a flat list, so no writer could give its shape back.
COLUMNS = [
    "id", "small", "int", "big", "real_", "dbl", "num", "flag", "txt", "vc", "ch", "bin",
    "js", "jsb", "d", "tm", "ts", "tstz", "iv", "u", "ints", "texts", "addr", "mood",
]  # fmt: skip
#: Those a binary COPY writes (no enum, no inet).
BINARY_COLUMNS = COLUMNS[:-2]


def _as_text(admin, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    admin.execute("SET TimeZone = 'UTC'")
    select = ", ".join(f"{c}::text" for c in columns)
    return admin.execute(f"SELECT {select} FROM {table} ORDER BY id").fetchall()


@pytest.mark.parametrize("columns", [COLUMNS, BINARY_COLUMNS], ids=["text-copy", "binary-copy"])
def test_arrow_read_writes_back_unchanged(pg, pg_admin, pg_schema, columns):
    """Arrow batches of every mapped type write into a copy of the table unchanged (::text)."""
    source = make_types_table(pg_admin, pg_schema)
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".copy (LIKE "{pg_schema}".types)')
    batches = list(pg.read(source, format="arrow", columns=columns, batch_size=2))
    assert all(isinstance(b.records, pa.RecordBatch) for b in batches)
    assert 3 == pg.write(f"{pg_schema}.copy", batches).records
    original = _as_text(pg_admin, f'"{pg_schema}".types', columns)
    assert original == _as_text(pg_admin, f'"{pg_schema}".copy', columns)


def test_arrow_json_text_is_not_encoded_again(pg, pg_admin, pg_schema):
    """A json/jsonb string column of an Arrow batch is the document, not a JSON string."""
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".j (id int PRIMARY KEY, doc jsonb, raw json)')
    pg_admin.execute(
        f'INSERT INTO "{pg_schema}".j VALUES (1, \'{{"a": 1}}\', \'[1,  "x"]\'), '
        f"(2, '\"text\"', 'null'), (3, NULL, NULL)"
    )
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".k (LIKE "{pg_schema}".j)')
    pg.write(f"{pg_schema}.k", pg.read(f"{pg_schema}.j", format="arrow"))
    assert [
        (1, '{"a": 1}', '[1,  "x"]'),
        (2, '"text"', "null"),
        (3, None, None),
    ] == pg_admin.execute(
        f'SELECT id, doc::text, raw::text FROM "{pg_schema}".k ORDER BY id'
    ).fetchall()


def test_record_batch_table_and_batch_input(pg, pg_admin, pg_schema):
    """RecordBatch, multi-chunk Table and Batch(RecordBatch) are written; missing columns are NULL."""
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".t (id bigint PRIMARY KEY, s text, doc jsonb)')
    first = pa.RecordBatch.from_pylist([{"id": 1, "s": "a", "doc": '{"k": [1]}'}])
    schema = pa.schema([("id", pa.int64()), ("s", pa.string()), ("doc", pa.string())])
    table = pa.Table.from_batches(
        [
            pa.RecordBatch.from_pylist([{"id": 2, "s": None, "doc": None}], schema=schema),
            pa.RecordBatch.from_pylist([{"id": 3, "s": "c", "doc": "2"}], schema=schema),
        ]
    )
    assert 2 == table.column("id").num_chunks
    wrapped = Batch("x", pa.RecordBatch.from_pylist([{"id": 4}]), {})
    dicts = [{"id": 5, "s": "e", "doc": {"k": "dict"}}]
    assert 5 == pg.write(f"{pg_schema}.t", [first, table, wrapped, dicts]).records
    assert [
        (1, "a", '{"k": [1]}'),
        (2, None, None),
        (3, "c", "2"),
        (4, None, None),
        (5, "e", '{"k": "dict"}'),
    ] == pg_admin.execute(f'SELECT id, s, doc::text FROM "{pg_schema}".t ORDER BY id').fetchall()


def test_arrow_upsert_and_replace(pg, pg_admin, pg_schema):
    """upsert_on and mode='replace' work on Arrow input as on dicts, in one transaction."""
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".t (id bigint PRIMARY KEY, v text)')
    pg_admin.execute(f"INSERT INTO \"{pg_schema}\".t VALUES (1, 'old'), (2, 'old')")
    update = pa.table({"id": [2, 3], "v": ["new", "added"]})
    assert 2 == pg.write(f"{pg_schema}.t", [update], upsert_on="id").records
    assert [(1, "old"), (2, "new"), (3, "added")] == pg_admin.execute(
        f'SELECT id, v FROM "{pg_schema}".t ORDER BY id'
    ).fetchall()
    pg.write(f"{pg_schema}.t", [pa.table({"id": [9], "v": ["only"]})], mode="replace")
    assert [(9, "only")] == pg_admin.execute(f'SELECT id, v FROM "{pg_schema}".t').fetchall()


def test_arrow_column_the_table_lacks_is_refused(pg, pg_admin, pg_schema):
    """An Arrow column the table does not have fails the write; nothing is written."""
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".t (id bigint PRIMARY KEY)')
    good = pa.table({"id": [1]})
    with pytest.raises(ConfigError):
        pg.write(f"{pg_schema}.t", [good, pa.table({"id": [2], "extra": ["x"]})])
    assert 0 == pg_admin.execute(f'SELECT count(*) FROM "{pg_schema}".t').fetchone()[0]


async def test_async_arrow_write(apg, pg_admin, pg_schema):
    """awrite takes the async Arrow read of a table and writes it back unchanged."""
    source = make_types_table(pg_admin, pg_schema)
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".copy (LIKE "{pg_schema}".types)')
    batches = apg.aread(source, format="arrow", columns=COLUMNS)
    assert 3 == (await apg.awrite(f"{pg_schema}.copy", batches)).records
    assert _as_text(pg_admin, f'"{pg_schema}".types', COLUMNS) == _as_text(
        pg_admin, f'"{pg_schema}".copy', COLUMNS
    )

"""read(format="jsonl"): JSON Lines made by the server, equal to the dict read's JSON."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import pytest

from headwater import ConfigError, HeadwaterError
from headwater.formats import EncodedLines, JsonLinesEncoder

from .pg_helpers import make_types_table, rows_of

#: The types table's columns but the json one, which JSON Lines takes from dict reads
#: (see test_json_column_goes_through_jsonl_only_as_written).
NOT_JSON = [
    "id", "small", "int", "big", "real_", "dbl", "num", "flag", "txt", "vc", "ch", "bin",
    "jsb", "d", "tm", "ts", "tstz", "iv", "u", "ints", "texts", "grid", "addr", "mood",
]  # fmt: skip


def _parsed(data: bytes) -> list[Any]:
    return [json.loads(line) for line in data.splitlines()]


def _same(a: Any, b: Any) -> bool:
    """Equal values; NaN equals NaN, and ISO times equal when they name the same instant."""
    if isinstance(a, str) and isinstance(b, str) and a != b:
        # The server trims a fraction's trailing zeros ("13:14:15.5"), Python writes
        # six digits ("13:14:15.500000"): the same time, in the format both read.
        for parse in (dt.time.fromisoformat, dt.datetime.fromisoformat):
            try:
                return parse(a) == parse(b)
            except ValueError:
                continue
        return False
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def test_server_json_equals_the_dict_reads_json(pg, pg_admin, pg_schema):
    """Every mapped type (NULLs, NaN, -Infinity, -0, arrays, enum, inet) as the dict path writes it."""
    table = make_types_table(pg_admin, pg_schema)
    pg_admin.execute(
        f'INSERT INTO "{pg_schema}".types (id, dbl, real_) VALUES (4, 2166, 0.1), (5, 1e16, -0)'
    )
    from_dicts = _parsed(JsonLinesEncoder().encode(rows_of(pg.read(table, columns=NOT_JSON))))
    batches = list(pg.read(table, format="jsonl", batch_size=2, columns=NOT_JSON))
    assert all(isinstance(b.records, EncodedLines) for b in batches)
    from_server = _parsed(b"".join(b.records.data for b in batches))  # type: ignore[union-attr]
    assert len(from_dicts) == len(from_server)
    for expected, got in zip(from_dicts, from_server, strict=True):
        assert _same(expected, got), (expected, got)


def test_jsonl_batches_resume_exactly(pg, pg_admin, pg_schema):
    """Resuming from each server-made batch's state yields exactly the records after it."""
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".t (id int PRIMARY KEY, v text)')
    pg_admin.execute(
        f"""INSERT INTO "{pg_schema}".t SELECT g, 'v' || g FROM generate_series(1, 50) g"""
    )
    stream = f"{pg_schema}.t"
    batches = list(pg.read(stream, format="jsonl", batch_size=7))
    assert 50 == sum(len(b) for b in batches)
    for index, batch in enumerate(batches):
        rest = rows_of(pg.read(stream, batch.state, format="jsonl"))
        assert list(range(7 * (index + 1) + 1, 51)) == [r["id"] for r in rest]
    assert [{"id": 1, "v": "v1"}] == batches[0].rows()[:1]


def test_stopping_early_leaves_the_connection_usable(pg, pg_admin, pg_schema):
    """Closing a server-made read mid-COPY cancels it; the pooled connection works after."""
    pg_admin.execute(
        f'CREATE TABLE "{pg_schema}".big AS SELECT g AS id FROM generate_series(1, 200000) g'
    )
    stream = f"{pg_schema}.big"
    reader = pg.read(stream, format="jsonl", batch_size=100)
    assert 100 == len(next(reader))
    reader.close()
    again = rows_of(pg.read(f"select id from {stream} where id <= 5", format="jsonl"))
    assert [1, 2, 3, 4, 5] == sorted(r["id"] for r in again)


def test_unordered_read_has_every_row_and_refuses_to_resume(pg, pg_admin, pg_schema):
    """ordered=False reads every row (in any order); its states say they cannot resume."""
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".u (id int PRIMARY KEY)')
    pg_admin.execute(f'INSERT INTO "{pg_schema}".u SELECT generate_series(1, 30)')
    stream = f"{pg_schema}.u"
    for fmt in ("dicts", "jsonl"):
        batches = list(pg.read(stream, ordered=False, batch_size=8, format=fmt))
        assert list(range(1, 31)) == sorted(r["id"] for r in rows_of(batches))
        with pytest.raises(ConfigError, match="unordered"):
            list(pg.read(stream, batches[0].state))


def _same_in_sql(pg_admin, schema: str, a: str, b: str, column: str) -> int:
    """Rows of tables ``a`` and ``b`` whose ``column`` differs as text (or is missing)."""
    row = pg_admin.execute(
        f'SELECT count(*) FROM "{schema}".{a} FULL JOIN "{schema}".{b} USING (id) '
        f"WHERE {a}.id IS NULL OR {b}.id IS NULL "
        f"OR {a}.{column}::text IS DISTINCT FROM {b}.{column}::text"
    ).fetchone()
    return int(row[0])


def test_json_documents_go_through_jsonl_as_written(tmp_path, pg, pg_admin, pg_schema):
    """
    json documents (duplicate keys, key order, spacing, digits) and jsonb numbers a float
    would change (2.50, 20 digits) are carried as written: the file holds their text, and
    a copy of the file into a table with those columns gives the same text back.
    """
    import headwater

    pg_admin.execute(f'CREATE TABLE "{pg_schema}".j (id int PRIMARY KEY, doc json, b jsonb)')
    docs = [
        ('{"a":1, "a":2}', '{"x": 2.50}'),
        ('{"b": 1,\t"a": [true, null]}', "12345678901234567890.123"),
        ("1e400", '{"n": -0.0, "big": 1e40}'),
        ('"\\u0000 ✓"', "[]"),
        (None, None),
    ]
    for n, (doc, b) in enumerate(docs, 1):
        pg_admin.execute(f'INSERT INTO "{pg_schema}".j VALUES (%s, %s, %s)', (n, doc, b))
    out = tmp_path / "out.jsonl"
    headwater.copy(pg, f"{pg_schema}.j", out)
    text = out.read_text("utf-8")
    for doc, _b in docs[:4]:
        assert doc in text
    assert '"b":{"x": 2.50}' in text
    assert "12345678901234567890.123" in text
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".back (LIKE "{pg_schema}".j)')
    assert 5 == headwater.copy(out, None, pg, f"{pg_schema}.back").records
    assert 0 == _same_in_sql(pg_admin, pg_schema, "j", "back", "doc")
    assert 0 == _same_in_sql(pg_admin, pg_schema, "j", "back", "b")


@pytest.mark.parametrize(
    ("column", "doc"),
    [("json", "null"), ("json", '{\n "a": 1\n}'), ("json", ' {"a": 1}'), ("jsonb", "null")],
    ids=["json-null", "json-line-break", "json-space-around", "jsonb-null"],
)
def test_a_document_a_line_cannot_carry_is_refused(tmp_path, pg, pg_admin, pg_schema, column, doc):
    """The document null (JSON Lines has one null), and line breaks: refused, naming the column."""
    import headwater

    pg_admin.execute(f'CREATE TABLE "{pg_schema}".j (id int PRIMARY KEY, doc {column})')
    pg_admin.execute(f'INSERT INTO "{pg_schema}".j VALUES (1, %s), (2, NULL)', (doc,))
    with pytest.raises(HeadwaterError, match=f"column 'doc' \\({column}\\) holds"):
        list(pg.read(f"{pg_schema}.j", format="jsonl"))
    with pytest.raises(HeadwaterError, match="'doc'"):
        headwater.copy(pg, f"{pg_schema}.j", tmp_path / "refused.jsonl")
    assert not (tmp_path / "refused.jsonl").exists()
    # The same document through dicts (a table the server cannot write JSON for: a
    # float[] column) is refused by the JSON Lines encoder alike.
    pg_admin.execute(f'ALTER TABLE "{pg_schema}".j ADD COLUMN f float8[]')
    with pytest.raises(HeadwaterError, match="'doc'"):
        headwater.copy(pg, f"{pg_schema}.j", tmp_path / "refused.jsonl")
    assert not (tmp_path / "refused.jsonl").exists()


def test_copy_to_jsonl_uses_the_server_and_matches_a_dict_copy(tmp_path, pg, pg_admin, pg_schema):
    """headwater.copy into .jsonl asks for server-made lines; the file equals the dict path's values."""
    import headwater

    table = make_types_table(pg_admin, pg_schema)
    fast, slow = tmp_path / "fast.jsonl", tmp_path / "slow.jsonl"
    headwater.copy(pg, table, fast, read_options={"columns": NOT_JSON})
    headwater.copy(pg, table, slow, read_options={"format": "dicts", "columns": NOT_JSON})
    a, b = _parsed(fast.read_bytes()), _parsed(slow.read_bytes())
    key = lambda r: r["id"]  # noqa: E731 - the unordered read may differ in order
    assert all(_same(x, y) for x, y in zip(sorted(a, key=key), sorted(b, key=key), strict=True))


def test_copy_text_batches_write_back_every_type_exactly(pg, pg_admin, pg_schema):
    """format="pgcopy" rows written into a copy of the table are equal in SQL (::text)."""
    table = make_types_table(pg_admin, pg_schema)
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".back (LIKE "{pg_schema}".types)')
    batches = list(pg.read(table, format="pgcopy", batch_size=2))
    assert all(b.text for b in batches)
    assert 3 == pg.write(f"{pg_schema}.back", batches).records
    different = pg_admin.execute(
        f'SELECT count(*) FROM "{pg_schema}".types  src FULL JOIN "{pg_schema}".back dst '
        "ON src.id = dst.id WHERE src::text IS DISTINCT FROM dst::text"
    ).fetchone()
    assert (0,) == different


def test_copy_between_postgres_tables_uses_copy_text(pg, pg_admin, pg_schema, tmp_path):
    """headwater.copy between two PostgreSQL tables is exact and resumes from its state."""
    import headwater

    table = make_types_table(pg_admin, pg_schema)
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".dest (LIKE "{pg_schema}".types)')
    state = tmp_path / "s.json"
    assert (
        2 == headwater.copy(pg, table, pg, f"{pg_schema}.dest", state_file=state, limit=2).records
    )
    assert 1 == headwater.copy(pg, table, pg, f"{pg_schema}.dest", state_file=state).records
    different = pg_admin.execute(
        f'SELECT count(*) FROM "{pg_schema}".types  src FULL JOIN "{pg_schema}".dest dst '
        "ON src.id = dst.id WHERE src::text IS DISTINCT FROM dst::text"
    ).fetchone()
    assert (0,) == different


@pytest.mark.parametrize("fmt", ["jsonl", "pgcopy"])
def test_unordered_big_table_read_on_two_connections_has_every_row_once(
    pg, pg_admin, pg_schema, fmt
):  # pgcopy reads one stream; it is checked the same way
    """A table over the parallel threshold is read in page ranges: every row exactly once."""
    from headwater_postgres import _connector

    pg_admin.execute(
        f'CREATE TABLE "{pg_schema}".wide AS SELECT g AS id, repeat(md5(g::text), 8) AS pad '
        "FROM generate_series(1, 60000) g"
    )
    pages = pg_admin.execute(f"SELECT pg_relation_size('\"{pg_schema}\".wide') / 8192").fetchone()[
        0
    ]
    assert pages >= _connector.PARALLEL_MIN_PAGES / 4  # a real multi-page table
    original = _connector.PARALLEL_MIN_PAGES
    _connector.PARALLEL_MIN_PAGES = 8
    try:
        stream = f"{pg_schema}.wide"
        ids = [
            r["id"] for r in rows_of(pg.read(stream, format=fmt, ordered=False, batch_size=1000))
        ]
        assert 60000 == len(ids)
        assert list(range(1, 60001)) == sorted(int(i) for i in ids)
        # Stopping early cancels both streams; the pool's connections stay usable.
        reader = pg.read(stream, format=fmt, ordered=False, batch_size=100)
        assert 100 == len(next(reader))
        reader.close()
        assert 3 == len(rows_of(pg.read(f"select id from {stream} where id <= 3", format=fmt)))
    finally:
        _connector.PARALLEL_MIN_PAGES = original

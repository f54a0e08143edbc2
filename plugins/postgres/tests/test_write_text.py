"""Writing values given as text (CSV files, JSON strings): text_values, str fallback, errors."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from typing import Any

import pytest

from headwater import ConfigError, ConnectorError
from headwater.formats import CsvEncoder, make_decoder

from .pg_helpers import make_types_table, rows_of

COLUMNS = ["id", "i", "b", "n", "f", "d", "ts", "u", "j", "a", "by", "s"]

DDL = """
CREATE TABLE {t} (
    id int PRIMARY KEY, i int, b bigint, n numeric(12,2), f boolean, d date,
    ts timestamptz, u uuid, j jsonb, a int[], by bytea, s text
)
"""

#: Records as a CSV file gives them: every value a str, NULL as None.
CSV_RECORDS: list[dict[str, Any]] = [
    {
        "id": "1",
        "i": "42",
        "b": "9007199254740993",
        "n": "12.5",
        "f": "true",
        "d": "2024-02-29",
        "ts": "2024-02-29 13:14:15.123456+02",
        "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "j": '{"a": 1, "b": [true, null], "ü": "✓"}',
        "a": "{1,NULL,3}",
        "by": "\\x00ff10",
        "s": "héllo",
    },
    dict.fromkeys(COLUMNS) | {"id": "2", "s": ""},
    {
        "id": "3",
        "i": "-2147483648",
        "b": "0",
        "n": "-0.5",
        "f": "f",
        "d": "infinity",
        "ts": "infinity",
        "u": "{00000000-0000-0000-0000-000000000000}",
        "j": '"just a string"',
        "a": "[4, null]",
        "by": base64.b64encode(b"\x00\x01\xff").decode(),
        "s": "tab\tnew\nline \\N back\\slash",
    },
]

#: The same rows as the server prints them (`::text`, TimeZone UTC).
EXPECTED = [
    (
        "1",
        "42",
        "9007199254740993",
        "12.50",
        "true",
        "2024-02-29",
        "2024-02-29 11:14:15.123456+00",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        '{"a": 1, "b": [true, null], "ü": "✓"}',
        "{1,NULL,3}",
        "\\x00ff10",
        "héllo",
    ),
    ("2", None, None, None, None, None, None, None, None, None, None, ""),
    (
        "3",
        "-2147483648",
        "0",
        "-0.50",
        "false",
        "infinity",
        "infinity",
        "00000000-0000-0000-0000-000000000000",
        '"just a string"',
        "{4,NULL}",
        "\\x0001ff",
        "tab\tnew\nline \\N back\\slash",
    ),
]


def _table(admin, schema: str, name: str = "t") -> str:
    admin.execute(DDL.format(t=f'"{schema}".{name}'))
    return f"{schema}.{name}"


def _as_text(admin, table: str, columns: list[str] = COLUMNS) -> list[tuple[Any, ...]]:
    admin.execute("SET TimeZone = 'UTC'")
    select = ", ".join(f"{c}::text" for c in columns)
    return admin.execute(f"SELECT {select} FROM {table} ORDER BY id").fetchall()


def test_text_values_write_every_type(pg, pg_admin, pg_schema):
    """text_values=True: the server parses each str by column type; '' stays '', None is NULL."""
    table = _table(pg_admin, pg_schema)
    result = pg.write(table, [CSV_RECORDS[:2], CSV_RECORDS[2:]], text_values=True)
    assert 3 == result.records
    assert EXPECTED == _as_text(pg_admin, f'"{pg_schema}".t')
    # The empty string and NULL stay apart: '' in a text column, NULL everywhere else.
    assert [(1, False, False), (2, True, True), (3, False, False)] == pg_admin.execute(
        f"SELECT id, s = '', i IS NULL FROM \"{pg_schema}\".t ORDER BY id"
    ).fetchall()


async def test_async_text_values_equal_sync(apg, pg_admin, pg_schema):
    """awrite(text_values=True) from an async iterable writes the same rows."""
    table = _table(pg_admin, pg_schema)

    async def batches():
        yield CSV_RECORDS[:1]
        yield CSV_RECORDS[1:]

    assert 3 == (await apg.awrite(table, batches(), text_values=True)).records
    assert EXPECTED == _as_text(pg_admin, f'"{pg_schema}".t')


def test_strings_without_text_values_do_not_crash(pg, pg_admin, pg_schema):
    """Without text_values, str values in int/bool/date/uuid/array columns are parsed by the server."""
    table = _table(pg_admin, pg_schema)
    # Without text_values a str in a jsonb column is a JSON string: give the document itself.
    records = [
        dict(CSV_RECORDS[0], j={"a": 1, "b": [True, None], "ü": "✓"}),
        CSV_RECORDS[1],
        dict(CSV_RECORDS[2], j="just a string"),
    ]
    assert 3 == pg.write(table, [records]).records
    assert EXPECTED == _as_text(pg_admin, f'"{pg_schema}".t')


def test_str_batch_after_native_batch(pg, pg_admin, pg_schema):
    """A later batch of strings after a batch of native values is written too, exactly."""
    table = _table(pg_admin, pg_schema)
    native = {
        "id": 1,
        "i": 42,
        "b": 9007199254740993,
        "n": 12.5,
        "f": True,
        "d": dt.date(2024, 2, 29),
        "ts": dt.datetime(2024, 2, 29, 11, 14, 15, 123456, tzinfo=dt.UTC),
        "u": uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        "j": {"a": 1, "b": [True, None], "ü": "✓"},
        "a": [1, None, 3],
        "by": b"\x00\xff\x10",
        "s": "héllo",
    }
    later = [dict(CSV_RECORDS[1]), dict(CSV_RECORDS[2], j="just a string")]
    assert 3 == pg.write(table, [[native], later, []]).records
    assert EXPECTED == _as_text(pg_admin, f'"{pg_schema}".t')


def test_boolean_strings_are_not_truthy(pg, pg_admin, pg_schema):
    """'false' and 'f' in a boolean column are FALSE (the binary dumper would write TRUE)."""
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".b (id int, f boolean)')
    pg.write(
        f"{pg_schema}.b", [[{"id": 1, "f": True}], [{"id": 2, "f": "false"}, {"id": 3, "f": "f"}]]
    )
    assert [(1, True), (2, False), (3, False)] == pg_admin.execute(
        f'SELECT id, f FROM "{pg_schema}".b ORDER BY id'
    ).fetchall()


@pytest.mark.parametrize(("column", "value"), [("small", 70_000), ("i", 2**40), ("r", 1e300)])
def test_out_of_range_numbers_fail_instead_of_wrapping(pg, pg_admin, pg_schema, column, value):
    """A number beyond the column type's range fails naming it (binary would wrap it silently)."""
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".o (small smallint, i int, r real)')
    with pytest.raises(ConnectorError) as caught:
        pg.write(f"{pg_schema}.o", [[{column: 1}, {column: value}]])
    assert f"column '{column}'" in str(caught.value)
    assert "record 2" in str(caught.value)
    assert 0 == pg_admin.execute(f'SELECT count(*) FROM "{pg_schema}".o').fetchone()[0]


@pytest.mark.parametrize("text_values", [True, False])
def test_bad_value_is_one_error_naming_column_and_record(pg, pg_admin, pg_schema, text_values):
    """'abc' for an integer fails with the column, its type and the record; nothing is written."""
    table = _table(pg_admin, pg_schema)
    pg_admin.execute(f"INSERT INTO \"{pg_schema}\".t (id, s) VALUES (10000, 'kept')")
    good = [{"id": str(n), "i": str(n)} for n in range(1, 2001)]
    bad = [{"id": "5000", "i": "7"}, {"id": "5001", "i": "abc"}]
    with pytest.raises(ConnectorError) as caught:
        pg.write(table, [good, bad], text_values=text_values)
    message = str(caught.value)
    assert "record 2002" in message
    assert "column 'i' (integer)" in message
    assert 'invalid input syntax for type integer: "abc"' in message
    assert [(10000, "kept")] == pg_admin.execute(f'SELECT id, s FROM "{pg_schema}".t').fetchall()


def test_bad_base64_bytea_names_column(pg, pg_admin, pg_schema):
    """A bytea str that is neither \\x hex nor base64 fails naming the record and column."""
    table = _table(pg_admin, pg_schema)
    with pytest.raises(ConnectorError) as caught:
        pg.write(
            table, [[{"id": "1", "by": "AAH/"}, {"id": "2", "by": "not base64!"}]], text_values=True
        )
    assert "record 2" in str(caught.value)
    assert "column 'by' (bytea)" in str(caught.value)
    assert 0 == pg_admin.execute(f'SELECT count(*) FROM "{pg_schema}".t').fetchone()[0]


def test_unwritable_python_value_names_column(pg, pg_admin, pg_schema):
    """A value no dumper takes (a dict for an int) fails naming record, column and Python type."""
    table = _table(pg_admin, pg_schema)
    with pytest.raises(ConnectorError) as caught:
        pg.write(table, [[{"id": 1, "i": 1}, {"id": 2, "i": {"x": 1}}]])
    message = str(caught.value)
    assert "record 2" in message
    assert "column 'i' (integer)" in message
    assert "dict" in message


def test_text_values_must_be_a_bool(pg, pg_schema):
    """text_values='yes' is refused before any I/O."""
    with pytest.raises(ConfigError) as caught:
        pg.write(f"{pg_schema}.t", [[{"a": "1"}]], text_values="yes")
    assert "text_values" == caught.value.field


def test_char_n_columns_are_written(pg, pg_admin, pg_schema):
    """char(n) (bpchar) columns take str values, padded by the server; too long fails by name."""
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".c (id int, code char(3), tags char(2)[])')
    rows = [{"id": 1, "code": "ab", "tags": ["x", "yz"]}, {"id": 2, "code": None, "tags": None}]
    assert 2 == pg.write(f"{pg_schema}.c", [rows]).records
    assert [(1, "ab ", 3, True, '{"x ",yz}'), (2, None, None, None, None)] == pg_admin.execute(
        f"SELECT id, code, octet_length(code), code = 'ab', tags::text "
        f'FROM "{pg_schema}".c ORDER BY id'
    ).fetchall()
    assert [{"id": 1, "code": "ab ", "tags": ["x ", "yz"]}] == rows_of(
        pg.read(f"{pg_schema}.c", key="id", batch_size=1)
    )[:1]
    with pytest.raises(ConnectorError) as caught:
        pg.write(f"{pg_schema}.c", [[{"id": 3, "code": "abcd"}]])
    assert "column 'code' (character(3))" in str(caught.value)


def test_csv_file_round_trip_with_text_values(pg, pg_admin, pg_schema):
    """Rows read as dicts, written to CSV by headwater and read back, write back unchanged."""
    source = make_types_table(pg_admin, pg_schema)
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".copy (LIKE "{pg_schema}".types)')
    # json/jsonb are left out: a CSV cell holds a JSON string value without its quotes
    # and a JSON null as NULL (the CSV format's limits, not the write's).
    columns = [
        "id", "small", "int", "big", "real_", "dbl", "num", "flag", "txt", "vc", "ch", "bin",
        "d", "tm", "ts", "tstz", "iv", "u", "ints", "texts", "grid", "addr", "mood",
    ]  # fmt: skip
    encoder = CsvEncoder()
    data = b"".join(encoder.encode(b) for b in pg.read(source, columns=columns)) + encoder.finish()
    decoder = make_decoder("csv", "out.csv")
    records = [record for record, _end in decoder.feed(data)]
    records += [record for record, _end in decoder.finish()]
    assert all(isinstance(v, str) for r in records for v in r.values() if v is not None)
    assert 3 == pg.write(f"{pg_schema}.copy", [records], text_values=True).records
    assert _as_text(pg_admin, f'"{pg_schema}".types', columns) == _as_text(
        pg_admin, f'"{pg_schema}".copy', columns
    )


def test_copy_format_decision():
    """Native values keep the binary COPY; a value it cannot write exactly switches to text for good."""
    from headwater_postgres._sql import Column, Relation
    from headwater_postgres._write import RowWriter, WriteSpec

    columns = (
        Column("i", 23, 0, "integer", True),
        Column("f", 16, 0, "boolean", True),
        Column("ts", 1184, 0, "timestamp with time zone", True),
    )
    relation = Relation(1, "s", "t", "table", None, None, columns, ())
    native = [{"i": 1, "f": True, "ts": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)}]
    iso = [{"i": 2, "f": False, "ts": "2024-01-01T00:00:00+00:00"}]  # parsed on the client

    def formats(*batches):
        writer = RowWriter(WriteSpec("s.t"), relation)
        writer.start(batches[0])
        return [writer.prepare(batch).text for batch in batches]

    assert [False, False, True, True] == formats(native, iso, [{"i": "3"}], native)
    assert [False, True] == formats(native, [{"ts": "2024-01-01T00:00:00"}])  # naive: server's TZ
    assert [False, True] == formats(native, [{"i": 2**31}])  # beyond int4: the server says so
    assert [False, True] == formats(native, [{"f": 1}])  # not a bool: parsed by the server
    assert [True] == formats([{"i": "1"}])


def test_record_with_other_keys_of_same_count_is_refused(pg, pg_admin, pg_schema):
    """A later record with as many fields as the first but another name fails naming it."""
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".k (id int, s text, x text)')
    with pytest.raises(ConfigError) as caught:
        pg.write(f"{pg_schema}.k", [[{"id": 1, "s": "a"}], [{"id": 2, "x": "b"}]])
    assert "'x'" in str(caught.value)
    assert 0 == pg_admin.execute(f'SELECT count(*) FROM "{pg_schema}".k').fetchone()[0]

"""Values at the edges of what Python and Arrow hold: read as documented, never wrapped."""

from __future__ import annotations

import datetime as dt

import pytest

from headwater import ConnectorError, HeadwaterError

from .pg_helpers import rows_of

pa = pytest.importorskip("pyarrow")
pytest.importorskip("adbc_driver_postgresql")


def _table(admin, schema: str, ddl: str, rows: str, name: str = "t") -> str:
    admin.execute(f'CREATE TABLE "{schema}".{name} ({ddl})')
    admin.execute(f'INSERT INTO "{schema}".{name} VALUES {rows}')
    return f"{schema}.{name}"


def test_dict_read_gives_text_for_dates_python_cannot_hold(pg, pg_admin, pg_schema):
    """BC, year 10000, ±infinity and 24:00 read as the server's text; the rest as Python values."""
    table = _table(
        pg_admin,
        pg_schema,
        "id int PRIMARY KEY, d date, ts timestamp, tz timestamptz, t time",
        "(1, '0044-03-15 BC', '0044-03-15 12:00:00.5 BC', 'infinity', '24:00'), "
        "(2, '10000-01-01', '-infinity', '10000-01-01 00:00:00.25+00', '01:00'), "
        "(3, '2024-02-29', '2024-02-29 13:14:15', '2024-02-29 13:14:15+00', '00:00')",
    )
    rows = rows_of(pg.read(table, batch_size=2))
    assert ["0044-03-15 BC", "0044-03-15 12:00:00.5 BC", "infinity", "24:00:00"] == list(
        rows[0].values()
    )[1:]
    assert ["10000-01-01", "-infinity", "10000-01-01 00:00:00.25+00", dt.time(1)] == list(
        rows[1].values()
    )[1:]
    assert dt.date(2024, 2, 29) == rows[2]["d"]
    assert dt.datetime(2024, 2, 29, 13, 14, 15, tzinfo=dt.UTC) == rows[2]["tz"]


def test_a_server_error_during_a_dict_read_is_raised(pg):
    """A data error the server raises mid-read fails the read (it is no value to load again)."""
    query = "select g, 1 / (g - 3) AS q from generate_series(1, 5) g"
    with pytest.raises(HeadwaterError, match="division by zero"):
        rows_of(pg.read(query, batch_size=1, key="g"))


def test_arrow_read_corrects_what_the_driver_gets_wrong(pg, pg_admin, pg_schema):
    """oid as uint32, ±infinity as the type's extremes, interval as ISO 8601 text."""
    table = _table(
        pg_admin,
        pg_schema,
        "id int PRIMARY KEY, o oid, d date, ts timestamptz, i interval",
        "(1, 4294967295, 'infinity', '-infinity', '1 mon 2 days 3.5 sec'), "
        "(2, 0, '-infinity', 'infinity', NULL), (3, NULL, '2024-02-29', NULL, '-1 day')",
    )
    (batch,) = list(pg.read(table, format="arrow"))
    records = batch.records
    assert pa.uint32() == records.schema.field("o").type
    assert [4294967295, 0, None] == records.column("o").to_pylist()
    assert [2**31 - 1, -(2**31), 19782] == records.column("d").view(pa.int32()).to_pylist()
    assert [-(2**63), 2**63 - 1, None] == records.column("ts").view(pa.int64()).to_pylist()
    interval = records.schema.field("i")
    assert pa.string() == interval.type
    assert b"interval" == interval.metadata[b"headwater.type"]
    assert ["P1M2DT3.5S", None, "P-1D"] == records.column("i").to_pylist()


def test_arrow_values_python_cannot_hold_write_back_exactly(pg, pg_admin, pg_schema, tmp_path):
    """Arrow batches (and a Parquet file of them) write infinity, BC and 24:00 back as they were."""
    import pyarrow.parquet as pq

    table = _table(
        pg_admin,
        pg_schema,
        "id int PRIMARY KEY, d date, ts timestamp, t time, i interval",
        "(1, 'infinity', '0044-03-15 12:00:00.5 BC', '24:00', '1 year -2 days'), "
        "(2, '-infinity', 'infinity', '23:59:59.999999', NULL), (3, '0044-03-15 BC', NULL, NULL, NULL)",
    )
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".copy (LIKE "{pg_schema}".t)')
    batches = list(pg.read(table, format="arrow"))
    pq.write_table(pa.Table.from_batches([b.records for b in batches]), tmp_path / "t.parquet")
    pg.write(f"{pg_schema}.copy", [pq.read_table(tmp_path / "t.parquet")])
    select = 'SELECT id, d::text, ts::text, t::text, i::text FROM "{}".{} ORDER BY id'
    original = pg_admin.execute(select.format(pg_schema, "t")).fetchall()
    assert original == pg_admin.execute(select.format(pg_schema, "copy")).fetchall()


def test_arrow_refuses_a_timestamp_the_driver_wraps(pg, pg_admin, pg_schema):
    """Past year 292277 the driver's timestamp wraps: the read fails naming the column."""
    table = _table(
        pg_admin, pg_schema, "id int PRIMARY KEY, far timestamp", "(1, '294276-12-31 23:59:59')"
    )
    with pytest.raises(ConnectorError, match=r"'far' \(timestamp\).*292277"):
        list(pg.read(table, format="arrow"))


@pytest.mark.parametrize("fmt", ["dicts", "jsonl", "csv"])
def test_arrays_a_list_cannot_hold_read_as_their_text(pg, pg_admin, pg_schema, fmt):
    """A lower bound other than 1 (in any dimension) reads as the array's text; the rest as lists."""
    table = _table(
        pg_admin,
        pg_schema,
        "id int PRIMARY KEY, arr int[]",
        "(1, '[0:1]={7,8}'), (2, '{{1,2},{3,4}}'), (3, '{{1,2},{3,4}}'::int[] || "
        "'[2:2][1:2]={{5,6}}'::int[]), (4, '[1:1][0:1]={{1,2}}'), (5, '{}'), (6, NULL)",
    )
    rows = rows_of(pg.read(table, format=fmt))
    values = [r["arr"] for r in rows]
    if fmt == "csv":
        assert ["[0:1]={7,8}", "{{1,2},{3,4}}"] == values[:2]
        return
    assert ["[0:1]={7,8}", [[1, 2], [3, 4]]] == values[:2]
    assert "[1:1][0:1]={{1,2}}" == values[3]
    assert [[], None] == values[4:]


def test_arrow_reads_arrays_a_list_cannot_hold_as_their_text(pg, pg_admin, pg_schema):
    """
    More than one dimension (the driver would flatten it) or a bound other than 1 (it
    would shift it): the column is read as PostgreSQL's text of each array, marked, and
    written back exactly; a table of plain arrays keeps Arrow lists.
    """
    pa = pytest.importorskip("pyarrow")
    pytest.importorskip("adbc_driver_postgresql")
    values = ["'{{1,2},{3,4}}'", "'{5}'", "'[0:1]={7,8}'", "NULL"]
    rows = ", ".join(f"({n}, {v})" for n, v in enumerate(values, 1))
    table = _table(pg_admin, pg_schema, "id int PRIMARY KEY, arr int[]", rows)
    (batch,) = list(pg.read(table, format="arrow"))
    field = batch.records.schema.field("arr")
    assert pa.string() == field.type
    assert b"postgres_text" == field.metadata[b"headwater.type"]
    assert b"integer[]" == field.metadata[b"headwater.postgres_type"]
    assert ["{{1,2},{3,4}}", "{5}", "[0:1]={7,8}", None] == batch.records.column("arr").to_pylist()
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".back (LIKE "{pg_schema}".t)')
    pg.write(f"{pg_schema}.back", [batch])
    differ = pg_admin.execute(
        f'SELECT count(*) FROM "{pg_schema}".t FULL JOIN "{pg_schema}".back b USING (id) '
        "WHERE t.arr::text IS DISTINCT FROM b.arr::text OR b.id IS NULL OR t.id IS NULL"
    ).fetchone()[0]
    assert 0 == differ
    plain = _table(pg_admin, pg_schema, "id int PRIMARY KEY, arr int[]", "(1, '{1,2}')", "p")
    (batch,) = list(pg.read(plain, format="arrow"))
    assert pa.types.is_list(batch.records.schema.field("arr").type)


def test_arrow_refuses_an_array_arriving_after_the_probe(pg, pg_admin, pg_schema, monkeypatch):
    """A value the probe did not see (written meanwhile) fails the read, never flattened."""
    pytest.importorskip("adbc_driver_postgresql")
    from headwater_postgres import PostgresConnector

    monkeypatch.setattr(PostgresConnector, "_arrays_as_text", staticmethod(lambda conn, plan: []))
    for n, value in enumerate(["'{{1,2},{3,4}}'", "'[0:1]={7,8}'"]):
        table = _table(
            pg_admin, pg_schema, "id int PRIMARY KEY, arr int[]", f"(1, {value})", name=f"t{n}"
        )
        with pytest.raises(HeadwaterError, match=r"column 'arr' \(integer\[\]\)"):
            list(pg.read(table, format="arrow"))

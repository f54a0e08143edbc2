"""Reads and writes against real DuckDB files: round trips, resumption, modes, exactness."""

from __future__ import annotations

import datetime
import decimal
import uuid
from pathlib import Path

import pyarrow as pa
import pytest

import headwater
from headwater import Batch, ConfigError, NotFound
from headwater.formats import JSON_FIELD_METADATA
from headwater_duckdb import DuckDBConnector

from .duck_helpers import make_db

UTC = datetime.UTC


def _rows(connector, stream, state=None, **options):
    return [r for b in connector.read(stream, state, **options) for r in b.rows()]


def _table(path: Path, sql: str) -> list[tuple]:
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _typed_table() -> pa.Table:
    """Arrow columns of many types, NULLs and edge values included."""
    return pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "i8": pa.array([-128, None, 127], pa.int8()),
            "u64": pa.array([0, 2**64 - 1, None], pa.uint64()),
            "f": pa.array([1.5, float("inf"), None], pa.float64()),
            "dec": pa.array(
                [decimal.Decimal("12345678901234567890.123456789012345678"), None, 0],
                pa.decimal128(38, 18),
            ),
            "s": pa.array(['ü, "quoted"\nline', "", None], pa.string()),
            "b": pa.array([b"\x00\xff", None, b""], pa.binary()),
            "flag": pa.array([True, False, None]),
            "day": pa.array([datetime.date(1, 1, 1), datetime.date(9999, 12, 31), None]),
            "at": pa.array(
                [datetime.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), None, None],
                pa.timestamp("us", tz="UTC"),
            ),
            "ns": pa.array([1_700_000_000_123_456_789, None, 0], pa.timestamp("ns")),
            "t": pa.array([datetime.time(23, 59, 59, 999999), None, None], pa.time64("us")),
            "iv": pa.array(
                [pa.MonthDayNano([14, -3, 5_000]), None, pa.MonthDayNano([0, 0, 0])],
                pa.month_day_nano_interval(),
            ),
            "lst": pa.array([[1, None, 3], [], None], pa.list_(pa.int32())),
            "st": pa.array([{"a": 1, "b": "x"}, None, {"a": None, "b": None}]),
        }
    )


def test_arrow_round_trip_is_exact(duck, db_path):
    """An Arrow table written with create=True reads back equal, type for type."""
    table = _typed_table()
    assert 3 == duck.write("main.typed", [table], create=True, primary_key="id").records
    batches = list(duck.read("main.typed"))
    assert all(b.is_arrow for b in batches)
    got = pa.Table.from_batches([b.records for b in batches])
    assert table.schema.names == got.schema.names
    for name in table.schema.names:
        expected, actual = table.column(name), got.column(name)
        if pa.types.is_timestamp(expected.type) and expected.type.tz:
            # The same instants, given in the session's time zone (here UTC).
            assert (expected.type.unit, "Etc/UTC") == (actual.type.unit, actual.type.tz)
        else:
            assert expected.type == actual.type, name
        # Nanosecond timestamps have no Python value: compare them as integers.
        if pa.types.is_timestamp(expected.type) and expected.type.unit == "ns":
            expected, actual = expected.cast(pa.int64()), actual.cast(pa.int64())
        assert expected.to_pylist() == actual.to_pylist(), name


def test_dict_records_create_exact_columns(duck):
    """Dicts become Arrow per batch; the new table's types hold every batch exactly."""
    first = [
        {"id": 1, "amount": decimal.Decimal("1.50"), "doc": {"k": [1, 2]}, "note": None},
        {"id": 2, "amount": decimal.Decimal("2.25"), "doc": None, "note": None},
    ]
    # A larger decimal (more digits) and the NULL-only column's type arrive later.
    second = [{"id": 3, "amount": decimal.Decimal("123456789.75"), "doc": [], "note": "n"}]
    duck.write("items", [first, second], create=True, primary_key="id")
    meta = duck.metadata("items")
    types = {c["name"]: c["type"] for c in meta["columns"]}
    assert {"id": "BIGINT", "amount": "DECIMAL(38,2)", "doc": "JSON", "note": "VARCHAR"} == types
    rows = _rows(duck, "items")
    assert [decimal.Decimal("1.50"), decimal.Decimal("2.25"), decimal.Decimal("123456789.75")] == [
        r["amount"] for r in rows
    ]
    assert [{"k": [1, 2]}, None, []] == [r["doc"] for r in rows]
    batch = next(iter(duck.read("items")))
    assert JSON_FIELD_METADATA == dict(batch.records.schema.field("doc").metadata)


def test_lossy_arrow_exports_are_read_as_text(db_path):
    """UHUGEINT, TIMETZ, BIT and BIGNUM come back as DuckDB's exact text, not changed."""
    make_db(
        db_path,
        "CREATE TABLE odd (id INTEGER PRIMARY KEY, u UHUGEINT, tz TIMETZ, bits BIT, big BIGNUM)",
        "INSERT INTO odd VALUES (1, 340282366920938463463374607431768211455, '12:30:00+02:30', "
        "'0101', 123456789012345678901234567890123456789012345)",
    )
    with DuckDBConnector({"path": str(db_path)}) as duck:
        rows = _rows(duck, "odd")
    assert [
        {
            "id": 1,
            "u": "340282366920938463463374607431768211455",
            "tz": "12:30:00+02:30",
            "bits": "0101",
            "big": "123456789012345678901234567890123456789012345",
        }
    ] == rows


def test_resume_by_composite_key_and_from_a_query(duck):
    """States resume exactly: a two-column primary key, and a query paged on key=."""
    rows = [{"a": i % 3, "b": f"k{i:03d}", "v": i} for i in range(50)]
    duck.write("pairs", [rows], create=True, primary_key=["a", "b"])
    for stream, options in (
        ("pairs", {}),
        ("SELECT a, b, v FROM pairs WHERE v % 2 = 0", {"key": ["a", "b"]}),
    ):
        batches = list(duck.read(stream, batch_size=7, **options))
        everything = [r for b in batches for r in b.rows()]
        assert everything == sorted(everything, key=lambda r: (r["a"], r["b"]))
        seen = 0
        for batch in batches:
            seen += len(batch)
            assert everything[seen:] == _rows(duck, stream, batch.state, **options)


def test_cursor_field_reads_incrementally(duck):
    """cursor_field: a second read from the last state gives only rows added since."""
    start = datetime.datetime(2026, 1, 1, tzinfo=UTC)
    rows = [{"id": i, "at": start + datetime.timedelta(minutes=i % 5)} for i in range(20)]
    duck.write("events", [rows], create=True, primary_key="id")
    batches = list(duck.read("events", cursor_field="at"))
    assert 20 == sum(len(b) for b in batches)
    later = [{"id": 100, "at": start + datetime.timedelta(hours=1)}]
    duck.write("events", [later])
    assert [100] == [r["id"] for r in _rows(duck, "events", batches[-1].state, cursor_field="at")]


def test_state_after_a_null_key_is_refused(duck):
    """A read that stopped on a NULL key cannot say which rows sharing it were read."""
    duck.write("nk", [[{"k": None, "v": 1}, {"k": None, "v": 2}]], create=True)
    batches = list(duck.read("nk", key="k", batch_size=1))
    assert [None] == batches[0].state["last"]
    with pytest.raises(ConfigError, match="NULL"):
        list(duck.read("nk", batches[0].state, key="k"))


def test_unordered_states_are_refused(duck):
    """ordered=False reads every row; its states cannot be resumed from."""
    duck.write("u", [[{"id": i} for i in range(10)]], create=True, primary_key="id")
    batches = list(duck.read("u", ordered=False, batch_size=3))
    assert list(range(10)) == sorted(r["id"] for b in batches for r in b.rows())
    with pytest.raises(ConfigError, match="unordered"):
        list(duck.read("u", batches[0].state))


def test_write_modes(duck):
    """append adds, replace swaps the rows in one transaction, upsert updates (last wins)."""
    duck.write("m", [[{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]], create=True, primary_key="id")
    duck.write("m", [[{"id": 3, "v": "c"}]])
    assert [1, 2, 3] == [r["id"] for r in _rows(duck, "m")]
    duck.write(
        "m", [[{"id": 2, "v": "B"}, {"id": 4, "v": "d"}, {"id": 2, "v": "BB"}]], upsert_on="id"
    )
    assert {1: "a", 2: "BB", 3: "c", 4: "d"} == {r["id"]: r["v"] for r in _rows(duck, "m")}
    duck.write("m", [[{"id": 9, "v": "z"}]], mode="replace")
    assert [{"id": 9, "v": "z"}] == _rows(duck, "m")


def test_a_failing_write_changes_nothing(duck, db_path):
    """A batch that cannot be written exactly rolls back the whole call, state included."""
    duck.write("t", [[{"id": 1, "v": 1}]], create=True, primary_key="id")
    state = {"source": "after-2"}
    with pytest.raises(ConfigError) as failure:
        duck.write(
            "t",
            [[{"id": 2, "v": 2}], [{"id": 3, "v": 3.5}]],
            mode="replace",
            state_key="s",
            state=state,
        )
    assert "v" == failure.value.field
    assert "DOUBLE" in failure.value.message
    assert "BIGINT" in failure.value.message
    assert [{"id": 1, "v": 1}] == _rows(duck, "t")
    assert duck.written_state("t", "s") is None


@pytest.mark.parametrize(
    ("column", "match"),
    [
        (pa.array([decimal.Decimal("1" * 45)], pa.decimal256(50, 0)), "38"),
        (pa.array([1_001], pa.duration("ns")), "nanoseconds"),
        (pa.array([pa.MonthDayNano([0, 0, 1])], pa.month_day_nano_interval()), "nanoseconds"),
        (pa.array([0x3C00], pa.uint16()).view(pa.float16()), "cannot store"),
        (pa.array([[0, 1_000, 1_001]], pa.list_(pa.duration("ns"))), "nanoseconds"),
        (pa.array([{"d": 7}], pa.struct([("d", pa.duration("ns"))])), "nanoseconds"),
    ],
    ids=["decimal256", "duration-ns", "interval-ns", "float16", "list-ns", "struct-ns"],
)
def test_values_duckdb_cannot_hold_are_errors_naming_the_column(duck, column, match):
    """A value DuckDB would change is refused with the column named, nothing written."""
    table = pa.table({"id": [1], "odd": column})
    with pytest.raises(ConfigError, match=match) as failure:
        duck.write("odd", [table], create=True)
    assert "odd" == failure.value.field
    with pytest.raises(NotFound):
        duck.metadata("odd")


def test_text_batches_are_parsed_by_column_type(duck):
    """CSV-like text batches fill typed columns; '1.5' into an integer is an error."""
    duck.write("typed", [], schema={"id": "INTEGER", "at": "DATE", "x": "DECIMAL(5,2)"})
    text = [{"id": "7", "at": "2026-03-04", "x": "1.25"}]
    duck.write("typed", [Batch("f.csv", text, {}, text=True)])
    assert [{"id": 7, "at": datetime.date(2026, 3, 4), "x": decimal.Decimal("1.25")}] == _rows(
        duck, "typed"
    )
    with pytest.raises(ConfigError, match="not an integer"):
        duck.write("typed", [Batch("f.csv", [{"id": "1.5"}], {}, text=True)])
    for x in ("1.255", "12345.5", "1e2"):
        with pytest.raises(ConfigError, match="without rounding") as failure:
            duck.write("typed", [Batch("f.csv", [{"id": "8", "x": x}], {}, text=True)])
        assert "x" == failure.value.field
    duck.write("typed", [Batch("f.csv", [{"id": "9", "x": "-0.5"}], {}, text=True)])
    assert [decimal.Decimal("1.25"), decimal.Decimal("-0.50")] == [
        r["x"] for r in _rows(duck, "typed")
    ]
    # A bytea's text (\\x00ff) is not DuckDB's (\\x00 per byte): refused, not misread.
    duck.write("blobs", [], schema={"b": "BLOB"})
    with pytest.raises(ConfigError, match="text form") as failure:
        duck.write("blobs", [Batch("f.csv", [{"b": "\\x00ff"}], {}, text=True)])
    assert "b" == failure.value.field


def test_state_is_committed_with_the_rows(duck):
    """written_state gives the state of the last committed write, per table and key."""
    duck.write("s", [[{"id": 1}]], create=True, state_key="k1", state={"n": 1})
    duck.write("s", [[{"id": 2}]], state_key="k1", state={"n": 2, "at": "x"})
    assert {"n": 2, "at": "x"} == duck.written_state("s", "k1")
    assert duck.written_state("s", "other") is None
    assert duck.written_state("no_table", "k1") is None


def test_missing_table_without_create_is_not_found(duck):
    """A write into a missing table says how to create it instead of guessing."""
    with pytest.raises(NotFound) as failure:
        duck.write("nope", [[{"id": 1}]])
    assert "create=True" in (failure.value.hint or "")


def test_query_streams_only_read(duck):
    """Only one SELECT/WITH/VALUES/TABLE statement runs, read-only."""
    duck.write("q", [[{"id": 1}]], create=True)
    duck.close()
    import duckdb

    # A sequence: nextval() would change it; a read-only transaction refuses.
    con = duckdb.connect(str(duck.config.path))
    con.execute("CREATE SEQUENCE seq").fetchall()
    con.close()
    reader = DuckDBConnector({"path": str(duck.config.path)})
    try:
        for text in ("SELECT 1; DELETE FROM q", "DELETE FROM q", "FROM q"):
            with pytest.raises(ConfigError):
                list(reader.read(text))
        with pytest.raises(headwater.HeadwaterError):
            list(reader.read("SELECT nextval('seq') AS n"))
        assert [{"n": 1}] == _rows(reader, "WITH x AS (SELECT 1 AS n) SELECT n FROM x;")
        assert [{"id": 1}] == _rows(reader, "TABLE q")
    finally:
        reader.close()


def test_quoted_names_and_views(duck, db_path):
    """Names with dots, spaces and quotes are quoted everywhere; views read and list."""
    name = 'main."odd ""name"".x"'
    duck.write(name, [[{"id": 1, "we ird": "v"}]], create=True, primary_key="id")
    duck.close()
    make_db(db_path, 'CREATE VIEW v AS SELECT * FROM main."odd ""name"".x"')
    with DuckDBConnector({"path": str(db_path)}) as reader:
        assert [{"id": 1, "we ird": "v"}] == _rows(reader, name)
        assert [{"id": 1, "we ird": "v"}] == _rows(reader, "v")
        kinds = {item.name: item.kind for item in reader.list("main")}
        assert {'main."odd ""name"".x"': "table", "main.v": "view"} == kinds


def test_in_memory_database(tmp_path):
    """duckdb:///:memory: holds what this connector wrote, for as long as it is open."""
    registry = headwater.get_registry()
    with registry.connect("duckdb:///:memory:") as memory:
        memory.write("t", [[{"id": 1, "u": uuid.UUID(int=5)}]], create=True)
        assert [{"id": 1, "u": str(uuid.UUID(int=5))}] == _rows(memory, "t")


def test_urls(tmp_path, monkeypatch):
    """duckdb:///relative.db, duckdb:////absolute.db and query parameters."""
    monkeypatch.chdir(tmp_path)
    relative = DuckDBConnector.from_url("duckdb:///rel.db?access=read_only&batch_size=5")
    assert (Path("rel.db"), "read_only", 5) == (
        relative.config.path,
        relative.config.access,
        relative.config.batch_size,
    )
    absolute = DuckDBConnector.from_url(f"duckdb:///{tmp_path}/abs.db")
    assert tmp_path / "abs.db" == absolute.config.path
    with pytest.raises(ConfigError):
        DuckDBConnector.from_url("duckdb://host/x.db")
    check = relative.check()
    assert not check.ok
    assert ("not_found", "path") == (check.category, check.field)
    with pytest.raises(ConfigError, match="read-only"):
        relative.write("t", [[{"id": 1}]], create=True)


def test_narrower_numbers_pass_only_when_every_value_fits(duck):
    """BIGINT records into INTEGER / DECIMAL columns: exact values pass, others name the column."""
    duck.write("n", [], schema={"i": "INTEGER", "d": "DECIMAL(4,1)"})
    duck.write("n", [[{"i": 2**31 - 1, "d": decimal.Decimal("123.4")}]])
    with pytest.raises(ConfigError, match="2147483648") as failure:
        duck.write("n", [[{"i": 2**31, "d": None}]])
    assert "i" == failure.value.field
    with pytest.raises(ConfigError, match=r"1\.25") as failure:
        duck.write("n", [[{"i": 1, "d": decimal.Decimal("1.25")}]])
    assert "d" == failure.value.field
    assert [{"i": 2**31 - 1, "d": decimal.Decimal("123.4")}] == _rows(duck, "n")


def test_connectors_of_one_process_share_a_file(db_path):
    """A reading connector beside a writing one in the same process shares its database."""
    with DuckDBConnector({"path": str(db_path)}) as writer:
        writer.write("t", [[{"id": 1}]], create=True)
        with DuckDBConnector({"path": str(db_path)}) as reader:
            assert [{"id": 1}] == _rows(reader, "t")
            writer.write("t", [[{"id": 2}]])
            assert [{"id": 1}, {"id": 2}] == _rows(reader, "t")
        with DuckDBConnector({"path": str(db_path), "threads": 1}) as other:
            check = other.check()
            assert not check.ok
            assert ("config", "access") == (check.category, check.field)


def test_duplicate_keys_say_so_and_write_nothing(duck):
    """Appending a key the table holds fails with DuckDB's reason and an upsert hint."""
    duck.write("k", [[{"id": 1, "v": "a"}]], create=True, primary_key="id")
    with pytest.raises(headwater.ConnectorError, match=r"(?i)duplicate key") as failure:
        duck.write("k", [[{"id": 2, "v": "b"}], [{"id": 1, "v": "c"}]])
    assert "upsert_on" in (failure.value.hint or "")
    assert [{"id": 1, "v": "a"}] == _rows(duck, "k")


@pytest.mark.parametrize(
    ("duck_type", "values"),
    [
        ("DOUBLE", "0.1 + 0.2, 1e-320, -0.0 - 1, 'NaN', 'inf', 3"),
        ("DECIMAL(20,10)", "0.0000000001, 1234567890.5, -2"),
        ("TIMESTAMPTZ", "'2026-01-01 01:02:03.000004+05:30', '1970-01-01 00:00:00+00', now()"),
        ("VARCHAR", "'ü', 'a''b', 'x y', '', 'Z'"),
        ("BLOB", "'\\xAA\\x00'::BLOB, ''::BLOB, 'a'::BLOB"),
        ("UUID", "'00000000-0000-0000-0000-000000000001', uuid(), uuid()"),
    ],
    ids=["double", "decimal", "timestamptz", "varchar", "blob", "uuid"],
)
def test_every_key_type_resumes_exactly(db_path, duck_type, values):
    """A key of any type round-trips through the state's text: resuming gives exactly the rest."""
    items = ", ".join(f"({v})" for v in values.split(", "))
    make_db(db_path, f"CREATE TABLE k (k {duck_type})", f"INSERT INTO k VALUES {items}")
    with DuckDBConnector({"path": str(db_path)}) as duck:
        batches = list(duck.read("k", key="k", batch_size=1))
        # repr: NaN is not equal to itself.
        everything = [repr(r) for b in batches for r in b.rows()]
        assert len(everything) >= 3
        for index, batch in enumerate(batches):
            rest = [repr(r) for r in _rows(duck, "k", batch.state, key="k")]
            assert everything[index + 1 :] == rest


def test_query_streams_reach_nothing_but_the_database(duck, tmp_path):
    """By default a query cannot read other files; external_access=true allows it."""
    duck.write("t", [[{"id": 1}]], create=True)
    duck.close()
    other = tmp_path / "other.csv"
    other.write_text("secret\nvalue\n")
    query = f"SELECT * FROM read_csv('{other}')"
    with DuckDBConnector({"path": str(duck.config.path)}) as reader:
        with pytest.raises(headwater.PermissionDenied) as failure:
            list(reader.read(query))
        assert "external_access" == failure.value.field
    open_reader = DuckDBConnector({"path": str(duck.config.path), "external_access": True})
    with open_reader:
        assert [{"secret": "value"}] == _rows(open_reader, query)


@pytest.mark.parametrize(
    ("column_type", "good", "bad"),
    [
        ("DATE", ["2026-03-04", "infinity"], ["2026-03-04 10:00", "2026-03-04T00:00:00Z"]),
        ("TIMESTAMP", ["2026-03-04 05:06:07.123456", "2026-03-04"], ["2026-03-04 05:06:07+02"]),
        ("TIMESTAMP", ["2026-03-04T05:06:07"], ["2026-03-04 05:06:07.1234567"]),
        (
            "TIMESTAMPTZ",
            ["2026-03-04 05:06:07.5+05:30", "2026-03-04T05:06:07Z"],
            ["2026-03-04 05:06"],
        ),
        ("TIME", ["23:59:59.999999"], ["12:00:00+02", "12:00:00.0000001"]),
    ],
)
def test_temporal_text_is_taken_only_whole(duck, column_type, good, bad):
    """DuckDB's casts cut a date's time, a timestamp's offset or digits: such text is refused."""
    duck.write("tt", [], schema={"v": column_type})
    for text in (True, False):
        duck.write("tt", [Batch("f.csv", [{"v": v} for v in good], {}, text=text)])
        for value in bad:
            with pytest.raises(ConfigError, match="cutting") as failure:
                duck.write("tt", [Batch("f.csv", [{"v": value}], {}, text=text)])
            assert "v" == failure.value.field
    assert 2 * len(good) == sum(len(b) for b in duck.read("tt", format="arrow"))


def test_copy_between_tables_of_one_file(db_path, tmp_path):
    """One file as source and destination (two connectors, one process), resumably."""
    with DuckDBConnector({"path": str(db_path)}) as setup:
        setup.write(
            "a", [[{"id": i, "v": f"v{i}"} for i in range(30)]], create=True, primary_key="id"
        )
    state = tmp_path / "copy.state"
    url = f"duckdb:///{db_path}"
    options = {"create": True, "primary_key": "id"}
    first = headwater.copy(url, "a", url, "b", state_file=state, limit=10, write_options=options)
    rest = headwater.copy(url, "a", url, "b", state_file=state)
    assert (10, 20) == (first.records, rest.records)
    with DuckDBConnector({"path": str(db_path)}) as duck:
        assert _rows(duck, "a") == _rows(duck, "b")


def test_cursor_field_skips_null_cursors_whatever_the_key_order(duck):
    """Rows whose cursor is NULL are skipped, also when key= lists the cursor second."""
    start = datetime.datetime(2026, 1, 1, tzinfo=UTC)
    rows = [{"id": i, "at": None if i % 2 else start} for i in range(6)]
    duck.write("c", [rows], create=True, primary_key="id")
    for options in ({"cursor_field": "at"}, {"cursor_field": "at", "key": ["id", "at"]}):
        assert [0, 2, 4] == [r["id"] for r in _rows(duck, "c", **options)]


# --- Arrow batches of one schema: one statement --------------------------------------------------


def _counting_inserts(monkeypatch) -> list[str]:
    """The INSERT statements of writes (the state's own excluded)."""
    from headwater_duckdb import _write

    statements: list[str] = []
    original = _write.run

    def run(cur, statement, *args):
        if statement.startswith("INSERT INTO") and "headwater_state" not in statement:
            statements.append(statement)
        return original(cur, statement, *args)

    monkeypatch.setattr(_write, "run", run)
    return statements


def _arrow_batches(count: int, rows: int = 100, start: int = 0) -> list[pa.RecordBatch]:
    return [
        pa.record_batch(
            {
                "id": pa.array(range(start + i * rows, start + (i + 1) * rows), pa.int64()),
                "v": pa.array([f"v{n}" for n in range(rows)], pa.string()),
            }
        )
        for i in range(count)
    ]


def test_arrow_batches_of_one_schema_go_through_one_insert(duck, monkeypatch):
    """50 batches: one INSERT scanning them as a stream; a schema change starts another."""
    inserts = _counting_inserts(monkeypatch)
    batches = _arrow_batches(50)
    duck.write("s", batches, create=True, primary_key="id")
    assert 1 == len(inserts)
    wider = [
        b.cast(pa.schema({"id": pa.int32(), "v": pa.string()}))
        for b in _arrow_batches(3, start=5_000)
    ]
    result = duck.write(
        "s", [*_arrow_batches(2, start=9_000), *wider, *_arrow_batches(2, start=7_000)]
    )
    assert 3 == len(inserts) - 1
    assert 7 * 100 == result.records
    written = (*batches, *_arrow_batches(2, start=9_000), *wider, *_arrow_batches(2, start=7_000))
    expected = sorted((r for b in written for r in b.to_pylist()), key=lambda r: r["id"])
    assert expected == sorted(_rows(duck, "s"), key=lambda r: r["id"])


def test_a_failure_inside_the_stream_is_raised_as_it_is_and_nothing_is_written(duck):
    """The source's own error after 30 streamed batches: that error, no row, no state."""
    duck.write("f", _arrow_batches(1), create=True, primary_key="id")

    def failing():
        yield from _arrow_batches(30, start=1_000)
        raise headwater.ConnectorError("the source went away")

    with pytest.raises(headwater.ConnectorError, match="the source went away"):
        duck.write("f", failing(), state_key="k", state={"at": 1})
    assert 100 == len(_rows(duck, "f"))
    assert duck.written_state("f", "k") is None


def test_a_refused_value_inside_the_stream_names_its_column(duck):
    """A batch prepare_arrow refuses (nanoseconds) in the middle of a stream: ConfigError naming it."""
    first = pa.record_batch(
        {"id": pa.array([1], pa.int64()), "d": pa.array([1_000], pa.duration("ns"))}
    )
    bad = pa.record_batch(
        {"id": pa.array([2], pa.int64()), "d": pa.array([1_001], pa.duration("ns"))}
    )
    with pytest.raises(ConfigError, match="nanoseconds") as failure:
        duck.write("n", [first, first, bad, first], create=True)
    assert "d" == failure.value.field
    with pytest.raises(NotFound):  # the table was created in the rolled-back transaction
        _rows(duck, "n")

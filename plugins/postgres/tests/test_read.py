"""Reading tables and queries: value mapping, batches, resumption, incremental reads."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal

import pytest

from headwater import ConfigError, NotFound
from headwater.formats import JsonText
from headwater_postgres._values import json_dumps

from .pg_helpers import arows_of, make_types_table, rows_of

UTC = dt.UTC


def test_value_mapping(pg, pg_admin, pg_schema):
    """Every mapped type, NULLs and unicode become the documented Python values."""
    table = make_types_table(pg_admin, pg_schema)
    rows = {r["id"]: r for r in rows_of(pg.read(table))}
    first = rows[1]
    assert {
        "id": 1,
        "small": 1,
        "int": 2,
        "big": 9007199254740993,
        "real_": 1.5,
        "dbl": 2.25,
        "num": Decimal("12345678901234.123456"),
        "flag": True,
        "txt": "héllo wörld ✓ 日本",
        "vc": "varchar",
        "ch": "abc",
        "bin": b"\x00\xff\x10",
        "js": '{"a": [1, 2]}',  # json: the document as written (JsonText)
        "jsb": {"b": {"c": None}, "ü": "✓"},
        "d": dt.date(2024, 2, 29),
        "tm": dt.time(13, 14, 15, 500000),
        "ts": dt.datetime(2024, 2, 29, 13, 14, 15, 123456),
        "tstz": dt.datetime(2024, 2, 29, 11, 14, 15, 123456, tzinfo=UTC),
        "iv": "P1Y2M3DT4H5M6.5S",
        "u": uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        "ints": [1, None, 3],
        "texts": ["x", "y z"],
        "grid": [[1, 2], [3, 4]],
        "addr": "192.168.0.1/32",
        "mood": "happy",
    } == first
    assert all(v is None for k, v in rows[2].items() if k != "id")
    third = rows[3]
    assert third["real_"] != third["real_"]  # NaN
    assert float("-inf") == third["dbl"]
    assert "P-1DT-1S" == third["iv"]
    assert [] == third["ints"]
    assert "sad" == third["mood"]
    assert "null" == third["js"]  # the document null, not SQL NULL
    assert isinstance(third["js"], JsonText)
    assert [] == third["jsb"]


#: JSON documents a fast parser could get wrong: integers beyond 64 bits, numbers that
#: overflow a double (jsonb stores 1e400 as a 401-digit integer), a lone surrogate
#: escape, duplicate keys (json keeps them), spacing.
TRICKY_JSON = [
    '{"big": 123456789012345678901234567890, "neg": -9999999999999999999}',
    "[18446744073709551615, -9223372036854775808, 0.1, 5e-324, 1.5e300]",
    '{"inf": 1e400}',
    '"\\ud800 lone"',
    '{"a": 1, "a": 2}',
    '  {"spaced" :  [ 1 , 2 ] }  ',
    '"1234567890123456789012345 in a string"',
]


@pytest.mark.parametrize("column", ["json", "jsonb"])
def test_json_values_are_exact(pg, pg_admin, pg_schema, column):
    """
    jsonb becomes the parsed document with every number exact (a float where it writes
    the same digits again, a Decimal otherwise: json_dumps gives the server's text back);
    json is its text as written (JsonText), duplicate keys and spacing included.
    """
    table = f'"{pg_schema}".tricky_{column}'
    pg_admin.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, doc {column})")
    for i, doc in enumerate([*TRICKY_JSON, '{"x": 2.50, "y": 0.1}', "null"]):
        if column == "jsonb" and "ud800" in doc:
            continue  # jsonb refuses a lone surrogate; json keeps the text as written
        pg_admin.execute(f"INSERT INTO {table} VALUES (%s, %s::{column})", (i, doc))
    server_text = dict(pg_admin.execute(f"SELECT id, doc::text FROM {table}").fetchall())
    got = {r["id"]: r["doc"] for r in rows_of(pg.read(f"{pg_schema}.tricky_{column}"))}
    if column == "json":
        assert server_text == got
        assert all(isinstance(v, JsonText) for v in got.values())
        return
    assert server_text == {i: v if type(v) is JsonText else json_dumps(v) for i, v in got.items()}
    assert 123456789012345678901234567890 == got[0]["big"]
    assert Decimal("2.50") == got[7]["x"]
    assert isinstance(got[7]["x"], Decimal)
    assert 0.1 == got[7]["y"]
    assert isinstance(got[7]["y"], float)
    assert got[8] == "null"
    assert isinstance(got[8], JsonText)


async def test_async_read_equals_sync(pg, apg, pg_admin, pg_schema):
    """aread yields the same records and states as read."""
    table = make_types_table(pg_admin, pg_schema)
    sync_batches = list(pg.read(table, batch_size=2))
    async_batches = [b async for b in apg.aread(table, batch_size=2)]
    assert [b.state for b in sync_batches] == [b.state for b in async_batches]
    assert json.dumps(rows_of(sync_batches), default=str) == json.dumps(
        rows_of(async_batches), default=str
    )


def _numbers(admin, schema, count, name="numbers"):
    admin.execute(
        f'CREATE TABLE "{schema}"."{name}" (id bigint PRIMARY KEY, label text, '
        "updated_at timestamptz NOT NULL)"
    )
    admin.execute(
        f'INSERT INTO "{schema}"."{name}" SELECT g, \'row \' || g, '
        "timestamptz '2024-01-01' + (g % 100) * interval '1 minute' "
        f"FROM generate_series(1, {count}) g"
    )
    admin.execute(f'ANALYZE "{schema}"."{name}"')
    return f"{schema}.{name}"


def test_resume_100k_rows_exactly(pg, pg_admin, pg_schema):
    """Half a 100k-row read, then a resumed read: the union is the table, no duplicates."""
    table = _numbers(pg_admin, pg_schema, 100_000)
    seen: list[int] = []
    state = None
    reader = pg.read(table, batch_size=7_000)
    for batch in reader:
        seen.extend(r["id"] for r in batch.records)
        state = batch.state
        if len(seen) >= 50_000:
            break
    reader.close()
    assert state is not None
    resumed = [r["id"] for r in rows_of(pg.read(table, state, batch_size=7_000))]
    assert list(range(1, 100_001)) == sorted(seen + resumed)
    assert len(seen) + len(resumed) == len(set(seen) | set(resumed))
    assert 100_000 == state["rows"] + len(resumed)


async def test_async_resume(apg, pg_admin, pg_schema):
    """The async twin resumes from a state exactly like read."""
    table = _numbers(pg_admin, pg_schema, 2_000)
    first = []
    state = None
    reader = apg.aread(table, batch_size=300)
    async for batch in reader:
        first.extend(r["id"] for r in batch.records)
        state = batch.state
        if len(first) >= 900:
            break
    await reader.aclose()
    rest = [r["id"] for r in await arows_of(apg.aread(table, state, batch_size=300))]
    assert list(range(1, 2_001)) == first + rest


def test_incremental_cursor_field(pg, pg_admin, pg_schema):
    """cursor_field reads only rows past the saved state, ties broken by the primary key."""
    table = _numbers(pg_admin, pg_schema, 1_000)
    batches = list(pg.read(table, cursor_field="updated_at", batch_size=128))
    assert 1_000 == sum(len(b) for b in batches)
    state = batches[-1].state
    assert ["updated_at", "id"] == state["key"]
    assert [] == rows_of(pg.read(table, state, cursor_field="updated_at"))
    pg_admin.execute(
        f"UPDATE \"{pg_schema}\".numbers SET updated_at = timestamptz '2025-01-01', "
        "label = 'changed' WHERE id IN (5, 500)"
    )
    pg_admin.execute(
        f"INSERT INTO \"{pg_schema}\".numbers VALUES (1001, 'new', timestamptz '2025-01-02')"
    )
    changed = rows_of(pg.read(table, state, cursor_field="updated_at"))
    assert [(5, "changed"), (500, "changed"), (1001, "new")] == [
        (r["id"], r["label"]) for r in changed
    ]


def test_incremental_state_from_middle_of_ties(pg, pg_admin, pg_schema):
    """A state taken between rows with equal cursor values neither skips nor repeats rows."""
    table = _numbers(pg_admin, pg_schema, 1_000)
    everything = [r["id"] for r in rows_of(pg.read(table, cursor_field="updated_at"))]
    batches = list(pg.read(table, cursor_field="updated_at", batch_size=7))
    mid = batches[3].state
    rest = [r["id"] for r in rows_of(pg.read(table, mid, cursor_field="updated_at"))]
    assert everything[28:] == rest


def test_batches_by_rows_and_bytes(pg, pg_admin, pg_schema):
    """Batches hold at most batch_size rows, and fewer when rows are wide (batch_bytes)."""
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".wide (id int PRIMARY KEY, blob text)')
    pg_admin.execute(
        f'INSERT INTO "{pg_schema}".wide SELECT g, (SELECT string_agg(md5(random()::text '
        "|| g || i), '') FROM generate_series(1, 100) i) FROM generate_series(1, 300) g"
    )
    pg_admin.execute(f'ANALYZE "{pg_schema}".wide')
    by_rows = [len(b) for b in pg.read(f"{pg_schema}.wide", batch_size=50)]
    assert [50] * 6 == by_rows
    by_bytes = [len(b) for b in pg.read(f"{pg_schema}.wide", batch_size=50, batch_bytes=65536)]
    assert 300 == sum(by_bytes)
    assert max(by_bytes) < 50
    # A query stream over the same rows: sized by the planner's row width estimate.
    query = f'SELECT id, blob FROM "{pg_schema}".wide'
    from_query = [len(b) for b in pg.read(query, key=["id"], batch_size=50, batch_bytes=65536)]
    assert 300 == sum(from_query)
    assert max(from_query) < 50


def test_columns_option_keeps_key(pg, pg_admin, pg_schema):
    """columns= reads only those columns plus the key the state needs."""
    table = _numbers(pg_admin, pg_schema, 10)
    rows = rows_of(pg.read(table, columns=["label"]))
    assert {"label", "id"} == set(rows[0])
    with pytest.raises(ConfigError):
        list(pg.read(table, columns=["nope"]))


def test_query_stream_with_key_resumes(pg, pg_admin, pg_schema):
    """A SQL query stream pages on key= and resumes from its state."""
    _numbers(pg_admin, pg_schema, 500)
    query = f"SELECT id, label FROM {pg_schema}.numbers WHERE id % 2 = 0"
    batches = list(pg.read(query, key="id", batch_size=100))
    assert list(range(2, 501, 2)) == [r["id"] for r in rows_of(batches)]
    # A query's first batch is a small probe that measures its row width.
    assert [10, 100, 100, 40] == [len(b) for b in batches]
    rest = [r["id"] for r in rows_of(pg.read(query, batches[1].state, key="id"))]
    assert list(range(222, 501, 2)) == rest


def test_query_without_key_cannot_resume(pg, pg_admin, pg_schema):
    """A query read without a key has a non-resumable state, and resuming it is refused."""
    batches = list(pg.read("SELECT g FROM generate_series(1, 5) g"))
    assert [1, 2, 3, 4, 5] == [r["g"] for r in rows_of(batches)]
    assert None is batches[-1].state["last"]
    with pytest.raises(ConfigError) as info:
        list(pg.read("SELECT g FROM generate_series(1, 5) g", batches[-1].state))
    assert "state" == info.value.field


def test_state_of_another_stream_refused(pg, pg_admin, pg_schema):
    """A state saved for one stream is refused for another."""
    table = _numbers(pg_admin, pg_schema, 10)
    state = next(iter(pg.read(table, batch_size=5))).state
    _numbers(pg_admin, pg_schema, 10, name="other")
    with pytest.raises(ConfigError):
        list(pg.read(f"{pg_schema}.other", state))


def test_mixed_case_and_search_path_names(pg, pg_admin, pg_schema):
    """Quoted mixed-case names keep their case; unqualified names follow the search path."""
    pg_admin.execute(f'CREATE TABLE "{pg_schema}"."MixedCase" (id int PRIMARY KEY)')
    pg_admin.execute(f'INSERT INTO "{pg_schema}"."MixedCase" VALUES (7)')
    assert [{"id": 7}] == rows_of(pg.read(f'{pg_schema}."MixedCase"'))
    with pytest.raises(NotFound):
        list(pg.read(f"{pg_schema}.MixedCase"))
    pg_admin.execute(f'CREATE TABLE public."hw_sp_{pg_schema}" (id int PRIMARY KEY)')
    try:
        assert [] == rows_of(pg.read(f'"hw_sp_{pg_schema}"'))
    finally:
        pg_admin.execute(f'DROP TABLE public."hw_sp_{pg_schema}"')


def test_view_without_key_reads_once(pg, pg_admin, pg_schema):
    """A view has no primary key: it reads fully, and key= makes it resumable."""
    table = _numbers(pg_admin, pg_schema, 30)
    pg_admin.execute(f'CREATE VIEW "{pg_schema}".v AS SELECT id, label FROM {table}')
    assert 30 == len(rows_of(pg.read(f"{pg_schema}.v")))
    batches = list(pg.read(f"{pg_schema}.v", key="id", batch_size=10))
    assert [10, 20, 30] == [b.state["last"][0] for b in batches]
    rest = rows_of(pg.read(f"{pg_schema}.v", batches[0].state, key="id"))
    assert list(range(11, 31)) == [r["id"] for r in rest]


def test_unknown_option_refused(pg, pg_admin, pg_schema):
    """A misspelt read option is an error, not silently ignored."""
    table = _numbers(pg_admin, pg_schema, 3)
    with pytest.raises(ConfigError):
        list(pg.read(table, cursor_feild="updated_at"))

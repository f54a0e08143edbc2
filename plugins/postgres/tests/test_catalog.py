"""list(), metadata(), partitions() and hostile names."""

from __future__ import annotations

import pytest

from headwater import ConfigError, NotFound

from .pg_helpers import arows_of, make_types_table, rows_of

HOSTILE = 'x"; DROP TABLE y; --'


@pytest.fixture
def catalog(pg_admin, pg_schema):
    """A schema with a table, a view, a materialized view and 300 small tables."""
    s = pg_schema
    pg_admin.execute(f'CREATE TABLE "{s}".orders (id int PRIMARY KEY, total numeric NOT NULL)')
    pg_admin.execute(f'INSERT INTO "{s}".orders SELECT g, g FROM generate_series(1, 1000) g')
    pg_admin.execute(f'ANALYZE "{s}".orders')
    pg_admin.execute(f'CREATE VIEW "{s}".big_orders AS SELECT * FROM "{s}".orders WHERE total > 10')
    pg_admin.execute(
        f'CREATE MATERIALIZED VIEW "{s}".totals AS SELECT sum(total) FROM "{s}".orders'
    )
    pg_admin.execute(
        "DO $$ BEGIN FOR i IN 1..300 LOOP "
        f"EXECUTE format('CREATE TABLE %I.%I (id int)', '{s}', 't' || i); END LOOP; END $$"
    )
    return s


def test_list_schema(pg, catalog):
    """list(schema) gives every relation once, with kinds, sizes and row estimates."""
    items = {i.name: i for i in pg.list(catalog)}
    assert 303 == len(items)
    orders = items[f"{catalog}.orders"]
    assert ("table", 1000) == (orders.kind, orders.extra["row_estimate"])
    assert orders.size is not None
    assert orders.size > 0
    assert "view" == items[f"{catalog}.big_orders"].kind
    assert None is items[f"{catalog}.big_orders"].size
    assert "materialized_view" == items[f"{catalog}.totals"].kind


async def test_alist_equals_list(pg, apg, catalog):
    """alist gives the same items as list."""
    assert [i.name for i in pg.list(catalog)] == [i.name async for i in apg.alist(catalog)]


def test_list_root_has_schemas_and_tables(pg, catalog):
    """list() shows schemas and every relation in the database."""
    items = list(pg.list())
    assert any(i.kind == "schema" and i.name == catalog for i in items)
    assert f"{catalog}.t300" in {i.name for i in items}


def test_list_missing_schema(pg):
    """Listing a schema that does not exist is not_found (hostile names included)."""
    for name in ("hw_no_such_schema", HOSTILE):
        with pytest.raises(NotFound):
            list(pg.list(name))


def test_metadata(pg, catalog):
    """metadata gives columns with types and nullability, the primary key and estimates."""
    meta = pg.metadata(f"{catalog}.orders")
    assert [
        {"name": "id", "type": "integer", "nullable": False, "default": None},
        {"name": "total", "type": "numeric", "nullable": False, "default": None},
    ] == meta["columns"]
    assert (["id"], 1000, "table") == (meta["primary_key"], meta["row_estimate"], meta["kind"])
    assert meta["size"] > 0


async def test_ametadata_equals_metadata(pg, apg, catalog):
    """ametadata equals metadata, for tables and for queries."""
    for item in (f"{catalog}.orders", f"SELECT id, total * 2 AS double FROM {catalog}.orders"):
        assert pg.metadata(item) == await apg.ametadata(item)


def test_query_metadata(pg, catalog):
    """A query's metadata lists its result columns and types."""
    meta = pg.metadata(f"SELECT id, total::float8 AS f FROM {catalog}.orders")
    assert [("id", "integer"), ("f", "double precision")] == [
        (c["name"], c["type"]) for c in meta["columns"]
    ]


def test_hostile_names_are_missing_names(pg, pg_admin, pg_schema):
    """An injection-shaped name is a missing table in read, metadata and write; y survives."""
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".y (id int)')
    pg_admin.execute(f"SET search_path = {pg_schema}")
    for name in (HOSTILE, f"{pg_schema}.{HOSTILE}", f'{pg_schema}."y"; DROP TABLE y; --'):
        with pytest.raises(NotFound):
            list(pg.read(name))
        with pytest.raises(NotFound):
            pg.metadata(name)
        # No records: nothing to create the table from (records would create a table
        # literally named so, as test_hostile_name_created_literally shows).
        with pytest.raises(NotFound):
            pg.write(name, [[]])
    assert 0 == pg_admin.execute(f'SELECT count(*) FROM "{pg_schema}".y').fetchone()[0]


async def test_async_hostile_names_are_missing_names(apg, pg_admin, pg_schema):
    """An injection-shaped name is missing in aread, alist, ametadata and awrite; y survives."""
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".y (id int)')
    for name in (HOSTILE, f"{pg_schema}.{HOSTILE}", f'{pg_schema}."y"; DROP TABLE y; --'):
        with pytest.raises(NotFound):
            await arows_of(apg.aread(name))
        with pytest.raises(NotFound):
            [i async for i in apg.alist(name)]
        with pytest.raises(NotFound):
            await apg.ametadata(name)
        with pytest.raises(NotFound):
            await apg.awrite(name, [[]])
    assert 0 == pg_admin.execute(f'SELECT count(*) FROM "{pg_schema}".y').fetchone()[0]


def test_hostile_name_created_literally(pg, pg_admin, pg_schema):
    """With a schema, a hostile name becomes a table literally named so, and reads back."""
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".y (id int)')
    name = f'{pg_schema}."{HOSTILE.replace(chr(34), chr(34) * 2)}"'
    assert 1 == pg.write(name, [[{"id": 1}]], schema={"id": int}).records
    assert [{"id": 1}] == rows_of(pg.read(name, key="id"))
    tables = {i.name for i in pg.list(pg_schema)}
    assert {f"{pg_schema}.y", name} == tables
    assert 0 == pg_admin.execute(f'SELECT count(*) FROM "{pg_schema}".y').fetchone()[0]


def test_hostile_column_names(pg, pg_admin, pg_schema):
    """Hostile column names are quoted in reads, keys and writes."""
    col = 'c"); DROP TABLE y; --'
    quoted = col.replace('"', '""')
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".y (id int)')
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".h ("{quoted}" int PRIMARY KEY)')
    pg.write(f"{pg_schema}.h", [[{col: 1}, {col: 2}]])
    batches = list(pg.read(f"{pg_schema}.h", batch_size=1))
    assert [{col: 2}] == rows_of(pg.read(f"{pg_schema}.h", batches[0].state))
    pg.write(f"{pg_schema}.h", [[{col: 2}]], upsert_on=col)
    assert 2 == len(list(pg.partitions(f"{pg_schema}.h", 2)))
    assert 0 == pg_admin.execute(f'SELECT count(*) FROM "{pg_schema}".y').fetchone()[0]


def test_partitions_cover_table_exactly(pg, pg_admin, pg_schema):
    """N key ranges read independently cover every row exactly once."""
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".p (id bigint PRIMARY KEY, v text)')
    pg_admin.execute(
        f'INSERT INTO "{pg_schema}".p SELECT g * 3, g::text FROM generate_series(1, 10000) g'
    )
    parts = pg.partitions(f"{pg_schema}.p", 4)
    assert 4 == len(parts)
    chunks = [[r["id"] for r in rows_of(pg.read_partition(p))] for p in parts]
    assert all(chunks)
    assert [g * 3 for g in range(1, 10_001)] == [i for c in chunks for i in c]


def test_partitions_on_text_key(pg, pg_admin, pg_schema):
    """A non-integer key is cut at quantiles; the ranges still cover the table exactly."""
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".p (k text PRIMARY KEY)')
    pg_admin.execute(
        f'INSERT INTO "{pg_schema}".p SELECT md5(g::text) FROM generate_series(1, 2000) g'
    )
    parts = pg.partitions(f"{pg_schema}.p", 3)
    assert 3 == len(parts)
    keys = [r["k"] for p in parts for r in rows_of(pg.read_partition(p))]
    assert 2000 == len(keys) == len(set(keys))


def test_partition_resumes_from_its_state(pg, pg_admin, pg_schema):
    """A partition's batch state resumes that partition only."""
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".p (id int PRIMARY KEY)')
    pg_admin.execute(f'INSERT INTO "{pg_schema}".p SELECT g FROM generate_series(1, 100) g')
    first, second = pg.partitions(f"{pg_schema}.p", 2)
    batches = list(pg.read_partition(first, batch_size=10))
    rest = [r["id"] for r in rows_of(pg.read_partition(first, state=batches[1].state))]
    assert list(range(21, 51)) == rest
    import json
    import pickle

    assert second == pickle.loads(pickle.dumps(second))
    assert json.loads(json.dumps(second.bounds)) == second.bounds


async def test_async_partitions(apg, pg_admin, pg_schema):
    """aread_partition reads the same ranges as read_partition."""
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".p (id int PRIMARY KEY)')
    pg_admin.execute(f'INSERT INTO "{pg_schema}".p SELECT g FROM generate_series(1, 100) g')
    parts = await apg.apartitions(f"{pg_schema}.p", 3)
    ids = [r["id"] for p in parts for r in await arows_of(apg.aread_partition(p))]
    assert list(range(1, 101)) == ids


def test_partitions_need_a_key(pg, pg_admin, pg_schema):
    """A table without a single-column key cannot be partitioned without key=."""
    make_types_table(pg_admin, pg_schema)
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".nokey (a int)')
    with pytest.raises(ConfigError):
        pg.partitions(f"{pg_schema}.nokey", 2)
    assert 1 == len(pg.partitions(f"{pg_schema}.nokey", 2, key="a"))


def test_list_does_not_wait_behind_a_lock_on_some_table(pg, pg_dsn, catalog):
    """
    Another session holding ACCESS EXCLUSIVE on a table (an ALTER or DROP in progress):
    the listing answers at once, that table without a size (sizing it would wait).
    """
    import concurrent.futures

    import psycopg

    with psycopg.connect(pg_dsn) as locker:
        locker.execute(f'LOCK TABLE "{catalog}".orders IN ACCESS EXCLUSIVE MODE')
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            listing = pool.submit(lambda: {i.name: i for i in pg.list()})
            items = listing.result(timeout=20)  # waited for the lock's whole life before
        locker.rollback()
    assert items[f"{catalog}.orders"].size is None
    assert items[f"{catalog}.totals"].size > 0  # the others are sized


# --- partitions of a query stream (key= names a column of its result) ---------------------


@pytest.fixture
def orders_query(pg_admin, pg_schema):
    """
    A query joining two tables whose partition column ``bucket`` repeats values and is
    NULL in every seventh row, and whose rows repeat (a multiset, not a set).
    """
    s = pg_schema
    pg_admin.execute(f'CREATE TABLE "{s}".c (id int PRIMARY KEY, region text)')
    pg_admin.execute(f"INSERT INTO \"{s}\".c SELECT g, 'r' || (g % 3) FROM generate_series(1, 9) g")
    pg_admin.execute(f'CREATE TABLE "{s}".o (id int PRIMARY KEY, c_id int, amount int)')
    pg_admin.execute(
        f'INSERT INTO "{s}".o SELECT g, g % 9 + 1, g % 40 FROM generate_series(1, 3000) g'
    )
    return (
        "SELECT CASE WHEN o.id % 7 = 0 THEN NULL ELSE o.id / 3 END AS bucket,"
        " c.region, o.amount, md5((o.id / 2)::text) AS tag"
        f' FROM "{s}".o JOIN "{s}".c ON c.id = o.c_id WHERE o.amount < 35'
    )


def _multiset(rows):
    import collections
    import json

    return collections.Counter(json.dumps(r, sort_keys=True, default=str) for r in rows)


def _arrow_rows(batches):
    return [row for batch in batches for row in batch.records.to_pylist()]


@pytest.mark.parametrize(("key", "count"), [("bucket", 4), ("tag", 3), ("bucket", 1)])
def test_query_partitions_hold_the_single_read(pg, orders_query, key, count):
    """The partitions of a query stream together hold its rows exactly (NULL keys once)."""
    single = rows_of(pg.read(orders_query))
    parts = pg.partitions(orders_query, count, key=key)
    assert count == len(parts)
    chunks = [rows_of(pg.read_partition(p)) for p in parts]
    assert all(chunks)
    assert _multiset(single) == _multiset(row for chunk in chunks for row in chunk)
    nulls = [i for i, chunk in enumerate(chunks) if any(r[key] is None for r in chunk)]
    assert ([count - 1] if key == "bucket" else []) == nulls


def test_query_partitions_read_as_arrow(pg, orders_query):
    """format="arrow" reads of a query's partitions hold the same rows as the dict read."""
    from headwater_postgres._connector import arrow_installed

    if not arrow_installed():
        pytest.skip("the ADBC driver (headwater-postgres[arrow]) is not installed")
    single = rows_of(pg.read(orders_query))
    parts = pg.partitions(orders_query, 3, key="bucket")
    got = [row for p in parts for row in _arrow_rows(pg.read_partition(p, format="arrow"))]
    assert _multiset(single) == _multiset(got)


def test_query_partition_resumes_from_its_state(pg):
    """A query partition's batch state resumes that partition right after the batch."""
    query = "SELECT g AS n, g * 2 AS twice FROM generate_series(1, 100) g WHERE g % 3 <> 0"
    first, _second = pg.partitions(query, 2, key="n")
    batches = list(pg.read_partition(first, batch_size=5))
    rest = rows_of(pg.read_partition(first, state=batches[1].state))
    read = [r["n"] for b in batches for r in b.records]
    assert read[10:] == [r["n"] for r in rest]


async def test_async_query_partitions(pg, apg, orders_query):
    """apartitions / aread_partition of a query stream hold what the sync read holds."""
    single = rows_of(pg.read(orders_query))
    parts = await apg.apartitions(orders_query, 3, key="bucket")
    got = [row for p in parts for row in await arows_of(apg.aread_partition(p))]
    assert _multiset(single) == _multiset(got)


def test_query_partitions_need_a_column_of_the_result(pg, orders_query):
    """A query has no primary key: key= is required and must name a result column."""
    with pytest.raises(ConfigError) as missing:
        pg.partitions(orders_query, 2)
    assert "key" == missing.value.field
    with pytest.raises(ConfigError) as unknown:
        pg.partitions(orders_query, 2, key="id")
    assert "'id'" in str(unknown.value)
    assert "'bucket'" in str(unknown.value)


def test_query_partitions_ship(pg, orders_query):
    """A query's partitions survive pickle and JSON (they go to other processes)."""
    import json
    import pickle

    parts = pg.partitions(orders_query, 3, key="bucket")
    assert parts == [pickle.loads(pickle.dumps(p)) for p in parts]
    assert [p.bounds for p in parts] == [json.loads(json.dumps(p.bounds)) for p in parts]

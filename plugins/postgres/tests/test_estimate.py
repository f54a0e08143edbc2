"""estimate(): catalog statistics for tables, a count for small unanalyzed ones, None else."""

from __future__ import annotations

import pytest

from headwater import Estimate, NotFound
from headwater_postgres import _sql


def _fill(admin, table: str, rows: int) -> None:
    # No autovacuum: an ANALYZE it ran mid-test would change the statistics under test.
    admin.execute(
        f"CREATE TABLE {table} (id bigint PRIMARY KEY, pad text) WITH (autovacuum_enabled = off)"
    )
    admin.execute(
        f"INSERT INTO {table} SELECT g, repeat('x', 100) FROM generate_series(1, {rows}) g"
    )


def _total_size(admin, table: str) -> int:
    return admin.execute(f"SELECT pg_total_relation_size('{table}')").fetchone()[0]


def test_never_analyzed_small_table_is_counted(pg, pg_admin, pg_schema):
    """A table without statistics (reltuples -1) is counted: exact rows, its total size."""
    table = f'"{pg_schema}"."Odd Name"'
    _fill(pg_admin, table, 1234)
    assert (
        -1
        == pg_admin.execute(
            f"SELECT reltuples FROM pg_class WHERE oid = '{table}'::regclass"
        ).fetchone()[0]
    )
    estimate = pg.estimate(f'{pg_schema}."Odd Name"')
    assert Estimate(rows=1234, bytes=_total_size(pg_admin, table), exact=True) == estimate


def test_analyzed_table_uses_the_catalog(pg, pg_admin, pg_schema):
    """After ANALYZE the rows come from reltuples, scaled to the current size: not exact."""
    table = f'"{pg_schema}".t'
    _fill(pg_admin, table, 5000)
    pg_admin.execute(f"ANALYZE {table}")
    estimate = pg.estimate(f"{pg_schema}.t")
    assert (5000, _total_size(pg_admin, table), False) == (
        estimate.rows,
        estimate.bytes,
        estimate.exact,
    )
    # Twice the rows since ANALYZE: the estimate follows the heap's growth.
    pg_admin.execute(
        f"INSERT INTO {table} SELECT g, repeat('x', 100) FROM generate_series(5001, 10000) g"
    )
    grown = pg.estimate(f"{pg_schema}.t")
    assert grown.rows is not None
    assert 9000 <= grown.rows <= 11000
    assert grown.exact is False


def test_big_unanalyzed_table_has_unknown_rows(pg, pg_admin, pg_schema, monkeypatch):
    """Without statistics and above the count limit, rows are unknown (no full count)."""
    table = f'"{pg_schema}".t'
    _fill(pg_admin, table, 100)
    monkeypatch.setattr(_sql, "COUNT_LIMIT_BYTES", 1)
    estimate = pg.estimate(f"{pg_schema}.t")
    assert Estimate(rows=None, bytes=_total_size(pg_admin, table), exact=False) == estimate


def test_partitioned_table_sums_its_partitions(pg, pg_admin, pg_schema):
    """A partitioned table's estimate covers its leaf partitions."""
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".p (id int) PARTITION BY RANGE (id)')
    pg_admin.execute(
        f'CREATE TABLE "{pg_schema}".p1 PARTITION OF "{pg_schema}".p FOR VALUES FROM (0) TO (100)'
        " WITH (autovacuum_enabled = off)"
    )
    pg_admin.execute(
        f'CREATE TABLE "{pg_schema}".p2 PARTITION OF "{pg_schema}".p FOR VALUES FROM (100) TO (300)'
        " WITH (autovacuum_enabled = off)"
    )
    pg_admin.execute(f'INSERT INTO "{pg_schema}".p SELECT generate_series(0, 249)')
    estimate = pg.estimate(f"{pg_schema}.p")
    sizes = _total_size(pg_admin, f'"{pg_schema}".p1') + _total_size(pg_admin, f'"{pg_schema}".p2')
    assert Estimate(rows=250, bytes=sizes, exact=True) == estimate
    pg_admin.execute(f'ANALYZE "{pg_schema}".p')
    assert (250, False) == (pg.estimate(f"{pg_schema}.p").rows, pg.estimate(f"{pg_schema}.p").exact)


def test_queries_and_views_are_unknown(pg, pg_admin, pg_schema):
    """A query stream or a view has no cheap size: Estimate()."""
    pg_admin.execute(f'CREATE VIEW "{pg_schema}".v AS SELECT 1 AS a')
    assert Estimate() == pg.estimate("SELECT g FROM generate_series(1, 10) g")
    assert Estimate() == pg.estimate(f"{pg_schema}.v")


def test_missing_table_is_not_found(pg, pg_schema):
    """estimate() of a table that does not exist is NotFound."""
    with pytest.raises(NotFound):
        pg.estimate(f"{pg_schema}.nothing")


async def test_async_estimate_equals_sync(pg, apg, pg_admin, pg_schema):
    """aestimate gives what estimate gives."""
    table = f'"{pg_schema}".t'
    _fill(pg_admin, table, 300)
    assert pg.estimate(f"{pg_schema}.t") == await apg.aestimate(f"{pg_schema}.t")
    assert Estimate(
        rows=300, bytes=_total_size(pg_admin, table), exact=True
    ) == await apg.aestimate(f"{pg_schema}.t")
    assert Estimate() == await apg.aestimate("SELECT 1 AS a")

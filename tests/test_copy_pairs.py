"""
`headwater.copy` between the first-party connectors, against real services: PostgreSQL,
Azurite and a loopback REST API. Each copy is compared with its source record for record.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import headwater
from headwater._builtin.files_connector import FilesConnector

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture
def pg(pg_dsn: str) -> Any:
    postgres = pytest.importorskip("headwater_postgres")
    connector = postgres.PostgresConnector({"url": pg_dsn})
    yield connector
    connector.close()


@pytest.fixture
def orders(pg_admin: Any, pg_schema: str) -> str:
    """A 2,500-row table of mixed types (NULLs, empty strings, unicode, JSON)."""
    pg_admin.execute(
        f'CREATE TABLE "{pg_schema}".orders (id bigint PRIMARY KEY, name text, '
        "amount numeric(12,2), at timestamptz, paid boolean, tags jsonb)"
    )
    pg_admin.execute(
        f"""INSERT INTO "{pg_schema}".orders
        SELECT g, CASE WHEN g % 7 = 0 THEN '' WHEN g % 11 = 0 THEN NULL ELSE 'n ü ' || g END,
               g * 1.25, timestamptz '2026-01-01' + g * interval '1 minute', g % 2 = 0,
               CASE WHEN g % 5 = 0 THEN NULL ELSE jsonb_build_object('k', g, 'l', '[1, 2]'::jsonb) END
          FROM generate_series(1, 2500) g"""  # noqa: S608 - the test's own schema
    )
    return f"{pg_schema}.orders"


def _table(pg_admin: Any, table: str) -> list[tuple[Any, ...]]:
    schema, name = table.split(".")
    return pg_admin.execute(
        f'SELECT id, name, amount::text, at, paid, tags::text FROM "{schema}"."{name}" ORDER BY id'  # noqa: S608 - the test's own schema
    ).fetchall()


def _empty_copy_of(pg_admin: Any, table: str, name: str) -> str:
    schema, source = table.split(".")
    pg_admin.execute(f'CREATE TABLE "{schema}"."{name}" (LIKE "{schema}"."{source}")')
    return f"{schema}.{name}"


def test_postgres_to_postgres(pg, pg_admin, orders, tmp_path):
    """Postgres → Postgres with a state: exact, and a second run copies only what is new."""
    target = _empty_copy_of(pg_admin, orders, "orders_copy")
    state = tmp_path / "copy.state"
    first = headwater.copy(pg, orders, pg, target, state_file=state, limit=1000)
    assert 1000 == first.records
    second = headwater.copy(pg, orders, pg, target, state_file=state)
    assert 1500 == second.records
    assert _table(pg_admin, orders) == _table(pg_admin, target)
    assert 0 == headwater.copy(pg, orders, pg, target, state_file=state).records


@pytest.mark.parametrize("name", ["orders.jsonl", "orders.csv", "orders.parquet", "o.jsonl.gz"])
def test_postgres_to_file_and_back(pg, pg_admin, orders, tmp_path, name):
    """Postgres → a file → Postgres gives the table back, value for value."""
    if name.endswith(".parquet"):
        pytest.importorskip("pyarrow.parquet")
    out = tmp_path / name
    assert 2500 == headwater.copy(pg, orders, out).records
    target = _empty_copy_of(pg_admin, orders, "orders_back")
    assert 2500 == headwater.copy(out, None, pg, target).records
    assert _table(pg_admin, orders) == _table(pg_admin, target)


def test_files_to_postgres_from_csv_of_text(pg, pg_admin, pg_schema, tmp_path):
    """A CSV (strings) loads into typed columns: ints, numerics, timestamps, booleans, NULLs, JSON."""
    pg_admin.execute(
        f'CREATE TABLE "{pg_schema}".typed (id int, amount numeric(10,2), at timestamptz, '
        "ok boolean, doc jsonb, note text)"
    )
    csv_file = tmp_path / "typed.csv"
    csv_file.write_text(
        "id,amount,at,ok,doc,note\n"
        '1,12.50,2026-01-02T03:04:05+00:00,true,"{""a"": [1, 2]}",""\n'
        "2,,,false,,\n"
        '3,-0.01,2026-12-31T23:59:59.5+00:00,false,"""s""",x\n'
    )
    assert 3 == headwater.copy(csv_file, None, pg, f"{pg_schema}.typed").records
    rows = pg_admin.execute(
        f'SELECT id, amount::text, at::text, ok, doc::text, note FROM "{pg_schema}".typed ORDER BY id'  # noqa: S608 - the test's own schema
    ).fetchall()
    assert [
        (1, "12.50", "2026-01-02 03:04:05+00", True, '{"a": [1, 2]}', ""),
        (2, None, None, False, None, None),
        (3, "-0.01", "2026-12-31 23:59:59.5+00", False, '"s"', "x"),
    ] == rows


def test_rest_to_postgres(pg, pg_admin, pg_schema, http_api, monkeypatch):
    """A paginated REST stream lands in a table, every record once."""
    from tests.fix_http import API_KEY

    rest = pytest.importorskip("headwater_rest")
    monkeypatch.setenv("HW_TEST_API_KEY", API_KEY)
    api = rest.RestConnector(
        {
            "base_url": http_api.url,
            "auth": {"type": "api_key", "key": "env:HW_TEST_API_KEY"},
            "streams": {
                "items": {
                    "path": "/offset",
                    "params": {"n": 137},
                    "records": "items",
                    "pagination": {"type": "offset", "limit": 10},
                }
            },
        }
    )
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".items (id int, name text, updated int)')
    try:
        assert 137 == headwater.copy(api, "items", pg, f"{pg_schema}.items").records
    finally:
        api.close()
    rows = pg_admin.execute(
        f'SELECT id, name, updated FROM "{pg_schema}".items ORDER BY id'  # noqa: S608
    ).fetchall()
    assert [(i, f"item-{i}", i) for i in range(1, 138)] == rows


@pytest.mark.parametrize("name", ["out/orders.jsonl", "out/orders.csv", "out/orders.parquet"])
def test_postgres_to_blob_and_back(pg, pg_admin, orders, azurite, name):
    """Postgres → a blob (JSON Lines, CSV, Parquet) → Postgres gives the table back."""
    import uuid

    blob = pytest.importorskip("headwater_azure_blob")
    service = azurite.service_client()
    container = service.create_container(f"copy-{uuid.uuid4().hex[:12]}")
    connector = blob.AzureBlobConnector(
        {
            "account_url": azurite.blob_url,
            "account_key": azurite.account_key,
            "container": container.container_name,
        }
    )
    try:
        assert 2500 == headwater.copy(pg, orders, connector, name).records
        target = _empty_copy_of(pg_admin, orders, "orders_from_blob")
        assert 2500 == headwater.copy(connector, name, pg, target).records
    finally:
        connector.close()
        container.delete_container()
        service.close()
    assert _table(pg_admin, orders) == _table(pg_admin, target)


def test_files_to_files_through_the_cli_shape(tmp_path):
    """A files source into another files connector stream keeps every record."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "e.jsonl").write_text("".join(json.dumps({"i": i}) + "\n" for i in range(10)))
    dest = FilesConnector({"root": tmp_path / "dest"})
    (tmp_path / "dest").mkdir()
    assert 10 == headwater.copy(FilesConnector({"root": src}), "e.jsonl", dest, "e.csv").records
    assert [str(i) for i in range(10)] == [r["i"] for b in dest.read("e.csv") for r in b.rows()]
    assert Path(tmp_path / "dest" / "e.csv").exists()


# --- into DuckDB ------------------------------------------------------------------------------


def _duck_rows(duck: Any, table: str) -> list[dict[str, Any]]:
    """A DuckDB table's records (JSON columns come back parsed: they are marked as JSON)."""
    return [r for b in duck.read(table) for r in b.rows()]


def test_rest_to_duckdb(http_api, monkeypatch, tmp_path):
    """A paginated REST stream lands in a new DuckDB table, every record once."""
    from tests.fix_http import API_KEY

    rest = pytest.importorskip("headwater_rest")
    duckdb_plugin = pytest.importorskip("headwater_duckdb")
    monkeypatch.setenv("HW_TEST_API_KEY", API_KEY)
    api = rest.RestConnector(
        {
            "base_url": http_api.url,
            "auth": {"type": "api_key", "key": "env:HW_TEST_API_KEY"},
            "streams": {
                "items": {
                    "path": "/offset",
                    "params": {"n": 137},
                    "records": "items",
                    "pagination": {"type": "offset", "limit": 10},
                }
            },
        }
    )
    duck = duckdb_plugin.DuckDBConnector({"path": str(tmp_path / "local.db")})
    try:
        options = {"create": True, "primary_key": "id"}
        assert 137 == headwater.copy(api, "items", duck, "items", write_options=options).records
        expected = [r for b in api.read("items") for r in b.rows()]
        assert expected == _duck_rows(duck, "items")
    finally:
        api.close()
        duck.close()


def test_postgres_to_parquet_blob_to_duckdb(pg, orders, azurite, tmp_path):
    """Postgres → a Parquet blob → DuckDB (Arrow all the way from the blob) equals the table."""
    import uuid

    blob = pytest.importorskip("headwater_azure_blob")
    duckdb_plugin = pytest.importorskip("headwater_duckdb")
    service = azurite.service_client()
    container = service.create_container(f"copy-{uuid.uuid4().hex[:12]}")
    connector = blob.AzureBlobConnector(
        {
            "account_url": azurite.blob_url,
            "account_key": azurite.account_key,
            "container": container.container_name,
        }
    )
    duck = duckdb_plugin.DuckDBConnector({"path": str(tmp_path / "local.db")})
    try:
        assert 2500 == headwater.copy(pg, orders, connector, "orders.parquet").records
        assert all(b.is_arrow for b in connector.read("orders.parquet"))
        options = {"create": True, "primary_key": "id"}
        copied = headwater.copy(connector, "orders.parquet", duck, "orders", write_options=options)
        assert 2500 == copied.records
        assert [r for b in pg.read(orders) for r in b.rows()] == _duck_rows(duck, "orders")
    finally:
        connector.close()
        duck.close()
        container.delete_container()
        service.close()

"""
`headwater.record_batch_reader`, `to_arrow`, `to_pandas` and `to_polars` over every
first-party connector, against real services: PostgreSQL (Arrow and dict batches),
Azurite, a loopback REST API and DuckDB files. Each result is compared value for value
with the source, read without headwater (psycopg, the bytes uploaded, the records
served, DuckDB's own query).
"""

from __future__ import annotations

import datetime as dt
import decimal
import gc
import http.server
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import headwater
from headwater.formats import arrow_rows
from tests.fix_services import service_unavailable

pa = pytest.importorskip("pyarrow")
pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _records_of(frame: Any) -> list[dict[str, Any]]:
    """A pandas (Arrow dtypes) or polars frame's rows as Python values."""
    if hasattr(frame, "to_dicts"):
        return frame.to_dicts()  # type: ignore[no-any-return]
    return pa.Table.from_pandas(frame, preserve_index=False).to_pylist()  # type: ignore[no-any-return]


def _json_parsed(rows: list[dict[str, Any]], *columns: str) -> list[dict[str, Any]]:
    """``rows`` with the JSON text of ``columns`` parsed (as a DataFrame holds it)."""
    return [
        {k: json.loads(v) if k in columns and v is not None else v for k, v in row.items()}
        for row in rows
    ]


# --- PostgreSQL -------------------------------------------------------------------------------


@pytest.fixture
def pg(pg_dsn: str) -> Iterator[Any]:
    postgres = pytest.importorskip("headwater_postgres")
    connector = postgres.PostgresConnector({"url": pg_dsn, "batch_size": 100})
    yield connector
    connector.close()


@pytest.fixture
def people(pg_admin: Any, pg_schema: str) -> str:
    """1,000 rows; ``nick`` and ``doc`` are NULL in the whole first batch (ids 1-100)."""
    pg_admin.execute(
        f'CREATE TABLE "{pg_schema}".people (id bigint PRIMARY KEY, name text, nick text, '
        "score double precision, born date, seen timestamptz, ok boolean, doc jsonb)"
    )
    pg_admin.execute(
        f"""INSERT INTO "{pg_schema}".people
        SELECT g, CASE WHEN g % 7 = 0 THEN '' WHEN g % 11 = 0 THEN NULL ELSE 'n ü ' || g END,
               CASE WHEN g > 100 AND g % 3 = 0 THEN 'nick' || g END,
               CASE WHEN g % 13 = 0 THEN NULL ELSE g / 8.0 END,
               date '2000-01-01' + g, timestamptz '2026-01-01 00:00+00' + g * interval '1 second',
               g % 2 = 0,
               CASE WHEN g > 100 AND g % 5 = 0 THEN jsonb_build_object('k', g, 'l', jsonb_build_array(1, 'x')) END
          FROM generate_series(1, 1000) g"""  # noqa: S608 - the test's own schema
    )
    return f"{pg_schema}.people"


def _pg_rows(pg_admin: Any, table: str) -> list[dict[str, Any]]:
    """The table as psycopg reads it (jsonb parsed), ordered by id."""
    from psycopg.rows import dict_row

    schema, name = table.split(".")
    with pg_admin.cursor(row_factory=dict_row) as cur:
        cur.execute(f'SELECT * FROM "{schema}"."{name}" ORDER BY id')  # noqa: S608
        return cur.fetchall()  # type: ignore[no-any-return]


def _arrow_pg(pg: Any) -> None:
    """Skip when the postgres connector's Arrow path (the ADBC driver) is not installed."""
    pytest.importorskip("adbc_driver_postgresql")


@pytest.mark.parametrize("fmt", ["arrow", "dicts"])
def test_postgres_to_arrow_and_frames(pg, pg_admin, people, fmt):
    """Postgres → Arrow / pandas / polars, Arrow and dict batches: every value as psycopg reads it."""
    if fmt == "arrow":
        _arrow_pg(pg)
    expected = _pg_rows(pg_admin, people)
    options = {"format": fmt}
    table = headwater.to_arrow(pg, people, read_options=options)
    assert 10 == len(table.to_batches())  # the connector's batches, not one re-made table
    assert pa.string() == table.schema.field("nick").type
    assert pa.date32() == table.schema.field("born").type
    if fmt == "dicts":
        assert expected == arrow_rows(table)  # the JSON column is marked, so parsed back
    else:
        assert expected == _json_parsed(table.to_pylist(), "doc")  # jsonb as its text
    frame = headwater.to_pandas(pg, people, read_options=options)
    assert expected == _json_parsed(_records_of(frame), "doc")
    polars_frame = headwater.to_polars(pg, people, read_options=options)
    assert expected == _json_parsed(_records_of(polars_frame), "doc")


@pytest.mark.parametrize("fmt", ["arrow", "dicts"])
def test_postgres_reader_and_duckdb(pg, pg_admin, people, fmt):
    """The reader of a Postgres table: its schema before any batch is read, then SQL in DuckDB."""
    duckdb = pytest.importorskip("duckdb")
    if fmt == "arrow":
        _arrow_pg(pg)
    expected = _pg_rows(pg_admin, people)
    reader = headwater.record_batch_reader(pg, people, read_options={"format": fmt})
    assert ["id", "name", "nick", "score", "born", "seen", "ok", "doc"] == reader.schema.names
    assert pa.string() == reader.schema.field("nick").type  # all NULL in the first batch
    found = duckdb.sql(
        "SELECT count(*), sum(id), count(nick), count(doc), min(born), max(seen) FROM reader"
    ).fetchall()
    assert [
        (
            1000,
            sum(r["id"] for r in expected),
            sum(r["nick"] is not None for r in expected),
            sum(r["doc"] is not None for r in expected),
            min(r["born"] for r in expected),
            max(r["seen"] for r in expected),
        )
    ] == found


def test_postgres_numeric_and_json_in_dicts(pg, pg_admin, pg_schema):
    """Dict batches: numerics exact as they grow; json documents, the document null and NULL apart."""
    from headwater.formats import JSON_NULL, JsonText

    pg_admin.execute(
        f'CREATE TABLE "{pg_schema}".m (id int PRIMARY KEY, amount numeric(20,3), j json)'
    )
    pg_admin.execute(
        f"""INSERT INTO "{pg_schema}".m
        SELECT g, CASE WHEN g = 1 THEN NULL ELSE g * 1000.125 END,
               CASE WHEN g % 3 = 0 THEN 'null' WHEN g % 3 = 1 THEN '[1, {{"a": 2}}]' END::json
          FROM generate_series(1, 300) g"""  # noqa: S608
    )
    stream = f"{pg_schema}.m"
    dicts = {"format": "dicts"}
    from_reader = headwater.record_batch_reader(pg, stream, read_options=dicts).read_all()
    table = headwater.to_arrow(pg, stream, read_options=dicts)
    source = [r for b in pg.read(stream) for r in b.rows()]
    # a json column's text is its document; Arrow marks the column and arrow_rows parses it
    expected = [
        {**r, "j": JSON_NULL if r["j"] == "null" else json.loads(r["j"])}
        if type(r["j"]) is JsonText
        else r
        for r in source
    ]
    assert expected == arrow_rows(table)
    assert decimal.Decimal("300037.500") == arrow_rows(table)[-1]["amount"]
    # the reader states its schema before the later batches: decimals as their exact text
    assert pa.string() == from_reader.schema.field("amount").type
    assert [
        {**r, "amount": None if r["amount"] is None else str(r["amount"])} for r in expected
    ] == arrow_rows(from_reader)


def test_postgres_by_url_and_limit(pg_dsn, pg_admin, people):
    """A URL as the source (connector opened and closed here) and a limit."""
    expected = _pg_rows(pg_admin, people)[:150]
    table = headwater.to_arrow(pg_dsn, people, limit=150, read_options={"format": "dicts"})
    assert expected == arrow_rows(table)


# --- Azure Blob on Azurite -------------------------------------------------------------------------


@pytest.fixture
def blobs(azurite: Any) -> Iterator[Any]:
    blob = pytest.importorskip("headwater_azure_blob")
    service = azurite.service_client()
    container = service.create_container(f"frames-{uuid.uuid4().hex[:12]}")
    connector = blob.AzureBlobConnector(
        {
            "account_url": azurite.blob_url,
            "account_key": azurite.account_key,
            "container": container.container_name,
            "batch_size": 50,
        }
    )
    try:
        yield connector, container
    finally:
        connector.close()
        container.delete_container()
        service.close()


def _events(n: int) -> list[dict[str, Any]]:
    """Records whose first 50 have ``v`` NULL and no ``late``; ``late`` appears at 120."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        record: dict[str, Any] = {"i": i, "v": None if i < 50 else i / 4, "s": f"s{i}"}
        if i >= 120:
            record["late"] = {"n": i} if i % 2 else None
        out.append(record)
    return out


def _filled(records: list[dict[str, Any]], columns: list[str]) -> list[dict[str, Any]]:
    return [{c: r.get(c) for c in columns} for r in records]


def test_blob_jsonl_and_parquet(blobs):
    """Azurite blobs: JSON Lines (dicts, a column appearing late) and Parquet (Arrow)."""
    import pyarrow.parquet as pq

    connector, container = blobs
    records = _events(300)
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    container.upload_blob("events.jsonl", data)
    expected = _filled(records, ["i", "v", "s", "late"])
    table = headwater.to_arrow(connector, "events.jsonl")
    assert expected == arrow_rows(table)
    assert pa.float64() == table.schema.field("v").type
    frame = headwater.to_pandas(connector, "events.jsonl")
    assert expected == _json_parsed(_records_of(frame), "late")
    assert expected == _json_parsed(
        _records_of(headwater.to_polars(connector, "events.jsonl")), "late"
    )
    reader = headwater.record_batch_reader(connector, "events.jsonl", infer_rows=1000)
    assert ["i", "v", "s", "late"] == reader.schema.names
    assert expected == arrow_rows(reader.read_all())

    source = pa.table({"k": pa.array([1, None, 3], pa.int16()), "t": ["a", None, ""]})
    sink = pa.BufferOutputStream()
    pq.write_table(source, sink)
    container.upload_blob("t.parquet", sink.getvalue().to_pybytes())
    reader = headwater.record_batch_reader(connector, "t.parquet")
    assert source.schema == reader.schema
    assert source == reader.read_all()
    assert source.to_pylist() == _records_of(headwater.to_polars(connector, "t.parquet"))


# --- REST on loopback --------------------------------------------------------------------------


class _EventsApi:
    """A loopback JSON API: ``/events?offset=&limit=`` over `_events` (500), requests counted."""

    def __init__(self) -> None:
        self.records = _events(500)
        self.requests = 0
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                start = int(query.get("offset", ["0"])[0])
                limit = int(query.get("limit", ["10"])[0])
                api.requests += 1
                body = json.dumps({"items": api.records[start : start + limit]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        try:
            self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        except OSError as exc:
            service_unavailable(f"cannot listen on 127.0.0.1: {exc}")
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def events_api() -> Iterator[Any]:
    rest = pytest.importorskip("headwater_rest")
    api = _EventsApi()
    connector = rest.RestConnector(
        {
            "base_url": api.url,
            "streams": {
                "events": {
                    "path": "/events",
                    "records": "items",
                    "pagination": {"type": "offset", "limit": 20},
                }
            },
        }
    )
    try:
        yield api, connector
    finally:
        connector.close()
        api.close()


def test_rest_dicts_to_frames(events_api):
    """A REST stream of dicts: NULLs in the first pages and a late column, exact everywhere."""
    api, connector = events_api
    expected = _filled(api.records, ["i", "v", "s", "late"])
    table = headwater.to_arrow(connector, "events")
    assert expected == arrow_rows(table)
    assert expected == _json_parsed(_records_of(headwater.to_pandas(connector, "events")), "late")
    assert expected == _json_parsed(_records_of(headwater.to_polars(connector, "events")), "late")


def test_rest_reader_is_consumed_lazily_by_duckdb(events_api):
    """DuckDB's LIMIT over the reader stops the requests early; a full scan sees every record."""
    duckdb = pytest.importorskip("duckdb")
    api, connector = events_api
    reader = headwater.record_batch_reader(connector, "events", infer_rows=60)
    assert pa.float64() == reader.schema.field("v").type  # read ahead past 50 NULLs
    before = api.requests
    assert 5 == len(duckdb.sql("SELECT i FROM reader LIMIT 5").fetchall())
    assert api.requests < 25  # 25 pages make the stream
    assert 3 == before  # the look-ahead: the pages holding the first 60 records
    del reader
    gc.collect()
    reader = headwater.record_batch_reader(connector, "events", infer_rows=1000)
    assert "late" in reader.schema.names  # first seen in the 7th page
    found = duckdb.sql("SELECT count(*), sum(i), count(late) FROM reader").fetchall()
    late = sum(1 for r in api.records if r.get("late") is not None)
    assert [(500, sum(range(500)), late)] == found


def test_rest_fixture_api(http_api, monkeypatch):
    """The shared loopback API (auth, offset pages): the records as served."""
    from tests.fix_http import API_KEY, record

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
    try:
        expected = [record(i) for i in range(1, 138)]
        assert expected == headwater.to_arrow(api, "items").to_pylist()
        assert expected == headwater.record_batch_reader(api, "items").read_all().to_pylist()
    finally:
        api.close()


# --- DuckDB ------------------------------------------------------------------------------------


def test_duckdb_connector_to_frames(tmp_path: Path):
    """A DuckDB file's table (Arrow batches) by URL and by connector: DuckDB's own values."""
    duckdb = pytest.importorskip("duckdb")
    duckdb_plugin = pytest.importorskip("headwater_duckdb")
    path = tmp_path / "local.db"
    with duckdb.connect(str(path)) as conn:
        conn.execute(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, amount DECIMAL(18,3), name VARCHAR, "
            "seen TIMESTAMPTZ, tags VARCHAR[])"
        )
        conn.execute(
            "INSERT INTO t SELECT g, CASE WHEN g > 2000 THEN g * 1.5 END, "
            "CASE WHEN g % 4 = 0 THEN NULL ELSE 'n' || g END, "
            "TIMESTAMPTZ '2026-01-01 00:00:00+00' + g * INTERVAL 1 MINUTE, "
            "CASE WHEN g % 3 = 0 THEN ['a', NULL] END FROM range(1, 5001) r(g)"
        )
        expected = conn.sql("SELECT * FROM t ORDER BY id").to_arrow_table()
    expected_rows = expected.to_pylist()
    connector = duckdb_plugin.DuckDBConnector({"path": str(path), "batch_size": 1000})
    try:
        table = headwater.to_arrow(connector, "t")
        assert expected_rows == table.to_pylist()
        assert pa.decimal128(18, 3) == table.schema.field("amount").type
        reader = headwater.record_batch_reader(connector, "t")
        assert pa.decimal128(18, 3) == reader.schema.field("amount").type
        assert expected_rows == reader.read_all().to_pylist()
        frame = headwater.to_pandas(connector, "t")
        assert expected_rows == _records_of(frame)
        assert expected_rows == _records_of(headwater.to_polars(connector, "t"))
    finally:
        connector.close()
    by_url = headwater.to_arrow(f"duckdb:///{path}", "t", limit=10)
    assert expected_rows[:10] == by_url.to_pylist()
    assert dt.datetime(2026, 1, 1, 0, 1, tzinfo=dt.UTC) == by_url.column("seen")[0].as_py()

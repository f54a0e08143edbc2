"""
`headwater.copy` into and out of DuckDB against the real PostgreSQL server, compared
record for record: the library call, a resumed copy, the command line, and PostgreSQL's
type families (each exact, or an error naming the column; none silently changed).
"""

from __future__ import annotations

import datetime
import decimal
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

import headwater
from headwater import ConfigError
from headwater_duckdb import DuckDBConnector

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROWS = 2500


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
        "amount numeric(12,2), at timestamptz, paid boolean, tags jsonb, day date, "
        "ref uuid, raw bytea, ratio double precision)"
    )
    pg_admin.execute(
        f"""INSERT INTO "{pg_schema}".orders
        SELECT g, CASE WHEN g % 7 = 0 THEN '' WHEN g % 11 = 0 THEN NULL ELSE 'n ü ' || g END,
               g * 1.25, timestamptz '2026-01-01' + g * interval '1 minute', g % 2 = 0,
               CASE WHEN g % 5 = 0 THEN NULL ELSE jsonb_build_object('k', g, 'l', '[1, 2]'::jsonb) END,
               date '2000-02-28' + g, md5(g::text)::uuid, decode(md5(g::text), 'hex'),
               CASE WHEN g % 13 = 0 THEN 'NaN'::float8 ELSE g / 3.0 END
          FROM generate_series(1, {ROWS}) g"""
    )
    return f"{pg_schema}.orders"


def _normal(record: dict[str, Any]) -> dict[str, Any]:
    """A record in one comparable form: JSON as parsed documents, NaN as a marker."""
    out = dict(record)
    if isinstance(out.get("tags"), str):
        out["tags"] = json.loads(out["tags"])
    ratio = out.get("ratio")
    if isinstance(ratio, float) and ratio != ratio:
        out["ratio"] = "NaN"
    if isinstance(out.get("ref"), uuid.UUID):
        out["ref"] = str(out["ref"])
    return out


def _postgres_rows(pg: Any, table: str) -> list[dict[str, Any]]:
    return [_normal(r) for b in pg.read(table) for r in b.rows()]


def _duck_rows(path: Path, table: str = "orders") -> list[dict[str, Any]]:
    with DuckDBConnector({"path": str(path)}) as duck:
        return [_normal(r) for b in duck.read(table) for r in b.rows()]


def test_postgres_to_duckdb_record_for_record(pg, orders, tmp_path):
    """Postgres → a new DuckDB table (created from the Arrow types): equal, typed exactly."""
    path = tmp_path / "local.db"
    with DuckDBConnector({"path": str(path)}) as duck:
        result = headwater.copy(
            pg, orders, duck, "orders", write_options={"create": True, "primary_key": "id"}
        )
        assert ROWS == result.records
        types = {c["name"]: c["type"] for c in duck.metadata("orders")["columns"]}
    assert {
        "id": "BIGINT",
        "name": "VARCHAR",
        "amount": "DECIMAL(12,2)",
        "at": "TIMESTAMP WITH TIME ZONE",
        "paid": "BOOLEAN",
        "tags": "JSON",
        "day": "DATE",
        "ref": "UUID",
        "raw": "BLOB",
        "ratio": "DOUBLE",
    } == types
    assert _postgres_rows(pg, orders) == _duck_rows(path)


def test_resumed_copy_into_duckdb_is_exact(pg, orders, tmp_path):
    """A copy stopped at a limit and resumed from its state holds every record once."""
    path, state = tmp_path / "local.db", tmp_path / "copy.state"
    options = {"create": True, "primary_key": "id"}
    with DuckDBConnector({"path": str(path)}) as duck:
        first = headwater.copy(
            pg, orders, duck, "orders", state_file=state, limit=1000, write_options=options
        )
        assert 1000 == first.records
        saved = json.loads(state.read_text())
        # The destination holds the same state as the file, committed with the rows.
        assert saved["source"] == duck.written_state("orders", saved["key"])["source"]
        second = headwater.copy(pg, orders, duck, "orders", state_file=state)
        assert ROWS - 1000 == second.records
        assert 0 == headwater.copy(pg, orders, duck, "orders", state_file=state).records
    assert _postgres_rows(pg, orders) == _duck_rows(path)


def test_duckdb_back_to_postgres(pg, pg_admin, orders, tmp_path):
    """DuckDB's Arrow batches written into PostgreSQL give the original table back."""
    path = tmp_path / "local.db"
    with DuckDBConnector({"path": str(path)}) as duck:
        headwater.copy(pg, orders, duck, "orders", write_options={"create": True})
        schema, _ = orders.split(".")
        pg_admin.execute(f'CREATE TABLE "{schema}".back (LIKE "{schema}".orders)')
        assert ROWS == headwater.copy(duck, "orders", pg, f"{schema}.back").records
    columns = "id, name, amount::text, at, paid, tags::text, day, ref, raw, ratio::text"
    assert (
        pg_admin.execute(f'SELECT {columns} FROM "{schema}".orders ORDER BY id').fetchall()
        == pg_admin.execute(f'SELECT {columns} FROM "{schema}".back ORDER BY id').fetchall()
    )


def test_command_line_copy_with_state(pg_dsn, pg, orders, tmp_path):
    """`headwater copy postgresql://… TABLE duckdb:///local.db TABLE --state` twice."""
    path, state = tmp_path / "local.db", tmp_path / "cli.state"
    command = [
        sys.executable, "-m", "headwater", "copy", pg_dsn, orders, f"duckdb:///{path}",
        "orders", "--state", str(state), "-W", "create=true", "-W", "primary_key=id",
    ]  # fmt: skip
    first = subprocess.run(
        [*command, "--limit", "700"], capture_output=True, text=True, check=False
    )
    assert 0 == first.returncode, first.stderr
    rest = subprocess.run(command, capture_output=True, text=True, check=False)
    assert 0 == rest.returncode, rest.stderr
    assert _postgres_rows(pg, orders) == _duck_rows(path)


# --- PostgreSQL type families -----------------------------------------------------------------

#: (PostgreSQL type, SQL values, the DuckDB column type, or None where the copy must
#: fail naming the column).
FAMILIES = [
    ("smallint", "-32768, 32767, NULL", "SMALLINT"),
    ("integer", "-2147483648, 2147483647", "INTEGER"),
    ("bigint", "-9223372036854775808, 9223372036854775807", "BIGINT"),
    ("numeric(38,6)", "'12345678901234567890123456789012.123456', '-0.000001'", "DECIMAL(38,6)"),
    ("numeric(50,0)", "'12345678901234567890123456789012345678901234567890'", None),
    # PostgreSQL allows NaN in a constrained numeric; DuckDB's DECIMAL has no NaN.
    ("numeric(12,2)", "'1.25', 'NaN'", None),
    ("real", "1.5, '-Infinity', 'NaN'", "FLOAT"),
    ("double precision", "1e308, 5e-324, 'Infinity'", "DOUBLE"),
    ("text", "'', 'ü \"q\" \\n', NULL", "VARCHAR"),
    ("boolean", "true, false, NULL", "BOOLEAN"),
    ("date", "'0001-01-01', '9999-12-31'", "DATE"),
    ("timestamp", "'2026-01-02 03:04:05.678901', '1970-01-01'", "TIMESTAMP"),
    ("timestamptz", "'2026-01-02 03:04:05.678901+02'", "TIMESTAMP WITH TIME ZONE"),
    ("time", "'23:59:59.999999', '00:00'", "TIME"),
    ("uuid", "'00000000-0000-0000-0000-000000000001'", "UUID"),
    ("bytea", "'\\x00ff'::bytea, ''::bytea", "BLOB"),
    ("jsonb", "'{\"a\": [1, 2.5, null]}', '[]', '3'", "JSON"),
    # The copy reads PostgreSQL as Arrow (DuckDB writes it natively); these arrive as
    # their exact text (VARCHAR; NaN spelt as PostgreSQL spells it) or as lists.
    ("numeric", "'1.5', '2.25', 'NaN'", "VARCHAR"),
    ("interval", "'1 mon 2 days 3 sec', '-1 year'", "VARCHAR"),
    ("integer[]", "'{1,2,NULL}', '{}'", "INTEGER[]"),
    ("int4range", "'[1,5)', 'empty'", "VARCHAR"),
    ("inet", "'10.0.0.1/8'", "VARCHAR"),
]


@pytest.mark.parametrize(("pg_type", "values", "duck_type"), FAMILIES, ids=[f[0] for f in FAMILIES])
def test_postgres_type_families(pg, pg_admin, pg_schema, tmp_path, pg_type, values, duck_type):
    """Each family lands exactly (values compared as PostgreSQL reads them) or fails by name."""
    table = f"{pg_schema}.family"
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".family (id serial PRIMARY KEY, v {pg_type})')
    rows = ", ".join(f"({v})" for v in _split(values))
    pg_admin.execute(f'INSERT INTO "{pg_schema}".family (v) VALUES {rows}')
    path = tmp_path / "families.db"
    with DuckDBConnector({"path": str(path)}) as duck:
        options = {"create": True, "primary_key": "id"}
        if duck_type is None:
            with pytest.raises(ConfigError) as failure:
                headwater.copy(pg, table, duck, "family", write_options=options)
            assert "v" == failure.value.field
            assert duck.written_state("family", "x") is None
            return
        headwater.copy(pg, table, duck, "family", write_options=options)
        types = {c["name"]: c["type"] for c in duck.metadata("family")["columns"]}
        got = [r["v"] for b in duck.read("family") for r in b.rows()]
    assert duck_type == types["v"]
    expected = [_comparable(r["v"]) for b in pg.read(table) for r in b.rows()]
    got = [_comparable(v) for v in got]
    assert expected == got


def _split(values: str) -> list[str]:
    """The comma-separated SQL values of a `FAMILIES` row (commas inside quotes kept)."""
    out, current, quoted = [], "", False
    for char in values:
        if char == "'":
            quoted = not quoted
        if char == "," and not quoted:
            out.append(current.strip())
            current = ""
        else:
            current += char
    out.append(current.strip())
    return out


def _comparable(value: Any) -> Any:
    """NaN equal to NaN; UUIDs and decimals as text; aware datetimes in UTC."""
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return value.astimezone(datetime.UTC)
    if isinstance(value, decimal.Decimal):
        # Every digit compared (the column's type is asserted on its own).
        return str(value)
    return value


async def test_async_copy_resumes_like_the_sync_one(pg, orders, tmp_path):
    """acopy (awritten_state, awrite from an async stream) stops and resumes exactly too."""
    path, state = tmp_path / "local.db", tmp_path / "copy.state"
    options = {"create": True, "primary_key": "id"}
    async with DuckDBConnector({"path": str(path)}) as duck:
        first = await headwater.acopy(
            pg, orders, duck, "orders", state_file=state, limit=600, write_options=options
        )
        rest = await headwater.acopy(pg, orders, duck, "orders", state_file=state)
    assert (600, ROWS - 600) == (first.records, rest.records)
    assert _postgres_rows(pg, orders) == _duck_rows(path)


def test_without_the_adbc_driver_the_copy_goes_through_dicts(pg, orders, tmp_path, monkeypatch):
    """headwater-postgres without its [arrow] extra names no Arrow read: the copy still lands exactly."""
    from headwater_postgres import _connector

    monkeypatch.setitem(sys.modules, "adbc_driver_postgresql", None)
    assert not _connector.arrow_installed()
    monkeypatch.setattr(type(pg), "read_formats", frozenset({"jsonl", "pgcopy", "csv"}))
    path = tmp_path / "dicts.db"
    with DuckDBConnector({"path": str(path)}) as duck:
        options = {"create": True, "primary_key": "id"}
        copied = headwater.copy(pg, orders, duck, "orders", write_options=options)
        assert ROWS == copied.records
        types = {c["name"]: c["type"] for c in duck.metadata("orders")["columns"]}
    assert "DECIMAL(38,2)" == types["amount"]  # the dict path's type: no Arrow was read
    assert _postgres_rows(pg, orders) == _duck_rows(path)

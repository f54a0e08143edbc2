"""The Arrow fast path (headwater-postgres[arrow]): record batches with the same states."""

from __future__ import annotations

import os

import pytest

from headwater import Batch

from .pg_helpers import arows_of, rows_of

pa = pytest.importorskip("pyarrow")
pytest.importorskip("adbc_driver_postgresql")


def _table(admin, schema):
    admin.execute(
        f'CREATE TABLE "{schema}".a (id bigint PRIMARY KEY, name text, score float8, '
        "at timestamptz, ok boolean)"
    )
    admin.execute(
        f"INSERT INTO \"{schema}\".a SELECT g, 'név ' || g, g / 4.0, "
        "timestamptz '2024-01-01 00:00+00' + g * interval '1 second', g % 2 = 0 "
        "FROM generate_series(1, 5000) g"
    )
    return f"{schema}.a"


def test_arrow_batches_match_dict_read(pg, pg_admin, pg_schema):
    """Arrow batches hold the same rows and states as the dict read."""
    table = _table(pg_admin, pg_schema)
    arrow = list(pg.read(table, format="arrow", batch_size=1_000))
    dicts = list(pg.read(table, batch_size=1_000))
    assert all(isinstance(b, Batch) and b.is_arrow for b in arrow)
    assert isinstance(arrow[0].records, pa.RecordBatch)
    assert [b.state for b in dicts] == [b.state for b in arrow]
    assert rows_of(dicts) == rows_of(arrow)


def test_arrow_resume_from_dict_state(pg, pg_admin, pg_schema):
    """A state saved by a dict read resumes an Arrow read exactly, and vice versa."""
    table = _table(pg_admin, pg_schema)
    state = list(pg.read(table, batch_size=1_200))[1].state
    ids = [r["id"] for r in rows_of(pg.read(table, state, format="arrow"))]
    assert list(range(2_401, 5_001)) == ids
    arrow_state = next(iter(pg.read(table, format="arrow", batch_size=700))).state
    assert list(range(701, 5_001)) == [r["id"] for r in rows_of(pg.read(table, arrow_state))]


async def test_async_arrow(apg, pg_admin, pg_schema):
    """aread with format='arrow' yields the same rows."""
    table = _table(pg_admin, pg_schema)
    rows = await arows_of(apg.aread(table, format="arrow", batch_size=2_000))
    assert list(range(1, 5_001)) == [r["id"] for r in rows]


def test_arrow_with_password_and_cursor(pg_tls_server, monkeypatch):
    """The ADBC connection gets the resolved password and the TLS settings."""
    from headwater_postgres import PostgresConnector

    monkeypatch.setenv("HW_TEST_PG_PASSWORD", pg_tls_server.password)
    config = {
        "host": pg_tls_server.cert_host,
        "port": pg_tls_server.port,
        "dbname": "postgres",
        "user": pg_tls_server.password_user,
        "password": "env:HW_TEST_PG_PASSWORD",
        "sslmode": "verify-full",
        "sslrootcert": str(pg_tls_server.ca),
    }
    with PostgresConnector(config) as connector:
        rows = rows_of(
            connector.read("SELECT g AS id FROM generate_series(1, 10) g", key="id", format="arrow")
        )
    assert list(range(1, 11)) == [r["id"] for r in rows]


def test_arrow_marks_json_and_spells_numeric_as_postgres_does(pg, pg_admin, pg_schema):
    """jsonb carries the JSON mark (rows give documents), json stays its text; numeric NaN/±Infinity as the server writes them."""
    pg_admin.execute(
        f'CREATE DOMAIN "{pg_schema}".doc AS jsonb; CREATE TABLE "{pg_schema}".m '
        f'(id int PRIMARY KEY, b jsonb, j json, d "{pg_schema}".doc, n numeric, t text)'
    )
    pg_admin.execute(
        f"""INSERT INTO "{pg_schema}".m VALUES
        (1, '{{"a": [1]}}', '{{"k": 2}}', '[3]', 'NaN', '{{"not": "json"}}'),
        (2, 'null', '"s"', NULL, 'Infinity', 'x'),
        (3, NULL, NULL, '{{}}', '-Infinity', NULL),
        (4, '1', '2', '3', '-12.50', 'y')"""
    )
    table = f"{pg_schema}.m"
    (batch,) = pg.read(table, format="arrow")
    marks = {f.name: (f.metadata or {}).get(b"headwater.type") for f in batch.records.schema}
    assert {"b": b"json", "d": b"json", "j": None, "t": None} == {
        k: v for k, v in marks.items() if k in "bjdt"
    }
    # Selected as stored, given as the server's text of each document in a plain string
    # column (the driver's JSON extension type unwrapped), as with the cast to text.
    import pyarrow as pa

    texts = pg_admin.execute(f'SELECT b::text, j::text, d::text FROM "{pg_schema}".m ORDER BY id')
    assert [tuple(row) for row in texts] == list(
        zip(*(batch.records.column(name).to_pylist() for name in "bjd"), strict=True)
    )
    assert {batch.records.schema.field(name).type for name in "bjd"} == {pa.string()}
    numerics = batch.records.column("n").storage.to_pylist()
    assert ["NaN", "Infinity", "-Infinity", "-12.50"] == numerics
    server = [r[0] for r in pg_admin.execute(f'SELECT n::text FROM "{pg_schema}".m ORDER BY id')]
    assert server == numerics
    documents = ["id", "b", "j", "d", "t"]
    assert [{k: r[k] for k in documents} for r in rows_of(pg.read(table))] == [
        {k: r[k] for k in documents} for r in rows_of([batch])
    ]


def test_arrow_types_created_after_a_kept_driver_database(pg, pg_admin, pg_schema, monkeypatch):
    """
    A read of built-in types keeps the driver's database (its type catalog) for the next
    one; a read of a type created since (an enum, a composite) does not use it and reads
    the type right.
    """
    from headwater_postgres import _arrow

    opened = _arrow._DATABASES.opened
    builtin: list[bool] = []

    def spy(uri, only_builtin):
        builtin.append(only_builtin)
        return opened(uri, only_builtin)

    monkeypatch.setattr(_arrow._DATABASES, "opened", spy)
    table = _table(pg_admin, pg_schema)
    rows_of(pg.read(table, format="arrow", batch_size=2_000))
    kept = dict(_arrow._DATABASES._kept)
    assert kept
    rows_of(pg.read(table, format="arrow", batch_size=2_000))
    assert [d for _, d in _arrow._DATABASES._kept.values()] == [d for _, d in kept.values()]
    pg_admin.execute(
        f"CREATE TYPE \"{pg_schema}\".mood AS ENUM ('happy', 'sad'); "
        f'CREATE TYPE "{pg_schema}".pair AS (x int, y text); '
        f'CREATE TABLE "{pg_schema}".late (id int PRIMARY KEY, m "{pg_schema}".mood, '
        f'p "{pg_schema}".pair)'
    )
    pg_admin.execute(
        f"INSERT INTO \"{pg_schema}\".late VALUES (1, 'sad', ROW(1, 'a')), (2, NULL, NULL)"
    )
    late = f"{pg_schema}.late"
    assert rows_of(pg.read(late)) == rows_of(pg.read(late, format="arrow"))
    assert [True, True, False] == builtin


def test_arrow_reads_in_threads_share_the_driver_database(pg, pg_admin, pg_schema):
    """Reads in several threads at once (the kept driver database is shared) all complete."""
    from concurrent.futures import ThreadPoolExecutor

    table = _table(pg_admin, pg_schema)

    def ids(_: int) -> list[int]:
        return [r["id"] for r in rows_of(pg.read(table, format="arrow", batch_size=1_500))]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(ids, range(8)))
    assert all(result == list(range(1, 5_001)) for result in results)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_starts_without_the_parents_kept_driver_databases() -> None:
    """The child of a fork drops the kept handles (kept unclosed); the parent keeps them."""
    from headwater_postgres import _arrow

    databases = _arrow._DATABASES
    marker = object()
    databases._kept["postgresql://fork-probe"] = (0.0, marker)
    try:
        pid = os.fork()
        if pid == 0:  # the child: nothing kept, the parent's handle among the inherited
            os._exit(0 if not databases._kept else 1)
        _, status = os.waitpid(pid, 0)
        assert 0 == os.waitstatus_to_exitcode(status)
        assert databases._kept["postgresql://fork-probe"][1] is marker
    finally:
        databases._kept.pop("postgresql://fork-probe", None)


def test_a_json_column_the_driver_gives_as_bytes_fails_naming_it() -> None:
    """An ADBC driver before 1.2 gave jsonb's binary COPY bytes: refused, not passed on."""
    import pyarrow as pa

    from headwater import ConnectorError
    from headwater_postgres._arrow import _check_json_fields
    from headwater_postgres._sql import Column

    columns = [Column("id", 23, 0, "integer", False), Column("doc", 3802, 0, "jsonb", True)]
    plan = type("Plan", (), {"columns": columns})()
    _check_json_fields(pa.schema([("id", pa.int32()), ("doc", pa.string())]), plan)
    _check_json_fields(pa.schema([("id", pa.int32()), ("doc", pa.json_())]), plan)
    with pytest.raises(ConnectorError, match=r"'doc' \(jsonb\).*binary") as caught:
        _check_json_fields(pa.schema([("id", pa.int32()), ("doc", pa.binary())]), plan)
    assert "adbc-driver-postgresql>=1.2" in (caught.value.hint or "")

"""
The type matrix: every built-in PostgreSQL type family, with edge values and a NULL row,
through every path headwater offers, compared by PostgreSQL itself.

Each case reads a source table, writes it back into ``CREATE TABLE ... (LIKE source)``
and compares ``src.v::text IS DISTINCT FROM dst.v::text`` row by row (FULL JOIN on id).
One case per (type, path, placement): a regression names its type and its path. The
placement ``enum`` adds an enum column beside the value, which makes ``write`` use a text
COPY; ``alone`` lets it use a binary one where it can.

A case ends in one of three ways:

* ``exact``: every value came back as it was;
* ``error``: the path refused with a `headwater.HeadwaterError` naming the column (it
  must be listed in `EXPECTED_ERRORS`, with the reason, or the case fails);
* ``changed``: it succeeded with different data: the case always fails.

The counts per path are printed in the terminal summary (``type matrix``, see
conftest.py), with ADBC's own read + ingest beside them as a peer (never asserted).
"""

from __future__ import annotations

import collections
import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import headwater
from headwater import HeadwaterError
from headwater_postgres import PostgresConnector

pa = pytest.importorskip("pyarrow")
pytest.importorskip("pyarrow.parquet")


@dataclasses.dataclass(frozen=True)
class Family:
    """One type family: its column type and the SQL expressions of its values."""

    name: str
    type: str
    values: tuple[str, ...]
    #: Not one of the issue's 42 families (counted apart in the summary).
    extra: bool = False


_ALL_BYTES = (
    "(SELECT string_agg(set_byte('\\x00'::bytea, 0, i), ''::bytea) FROM generate_series(0, 255) i)"
)

#: The 42 families of issue 24 and fourteen more (``extra``: numeric scales, which one Arrow
#: decimal type cannot hold together, a numeric(p,s), arrays of dates, times, jsonb,
#: numeric, bytea, interval and uuid, a daterange, tsquery and macaddr8, and the JSON
#: document null in a json and a jsonb column, which JSON Lines cannot tell from NULL). Values are SQL expressions (cast to the column type by
#: the INSERT); every table also gets a NULL row.
FAMILIES: tuple[Family, ...] = (
    Family("int2", "smallint", ("-32768", "32767", "0")),
    Family("int4", "integer", ("-2147483648", "2147483647", "0")),
    Family("int8", "bigint", ("'-9223372036854775808'", "'9223372036854775807'", "9007199254740993")),
    Family(
        "numeric",
        "numeric",
        (
            "'12345678901234567890123456789012345678901234567890.5'",
            "'-0.00000000000000000000000000000000000000000000000001'",
            "'NaN'", "'Infinity'", "'-Infinity'", "'1.50'", "'0'", "'-0.000'",
        ),
    ),
    Family(
        "numeric_scales",
        "numeric",
        ("'1.50'", "'2.125'", "'-0.000'", "'12345678901234567890123456789012345678901234567890.5'"),
        extra=True,
    ),
    Family("numeric_fixed", "numeric(12,2)", ("'1.50'", "'-9999999999.99'", "'0'"), extra=True),
    Family("float4", "real", ("'NaN'", "'Infinity'", "'-Infinity'", "'-0'", "'1.4e-45'", "'3.4028235e38'", "'0.1'")),
    Family(
        "float8",
        "double precision",
        ("'NaN'", "'Infinity'", "'-Infinity'", "'-0'", "'5e-324'", "'1.7976931348623157e308'", "'0.1'", "'2166'"),
    ),
    Family(
        "text",
        "text",
        (
            "E'tab\\there \"double\" ''single'' back\\\\slash\\nnew line\\r\\n😀 ✓ 日本'",
            "''", "E'\\\\N'", "'NULL'", "' '", "repeat('x', 1000000)", "'a,b;c|d'",
        ),
    ),
    Family("varchar", "varchar(40)", ("'héllo'", "''", "' trailing '", "E'\\\\x00ff'")),
    Family("bpchar", "char(5)", ("'ab'", "''", "'abcde'", "'  x'")),
    Family("char", '"char"', ("'a'", "'Z'", "''", "' '")),
    Family("name", "name", ("'a_name'", "'ünicode ✓'", "''")),
    Family("bytea", "bytea", (_ALL_BYTES, "'\\x'", "'\\x00ff'", "convert_to('AAH/', 'UTF8')")),
    Family("bool", "boolean", ("true", "false")),
    Family(
        "date",
        "date",
        ("'0001-01-01'", "'9999-12-31'", "'0044-03-15 BC'", "'infinity'", "'-infinity'", "'2024-02-29'", "'10000-01-01'", "'4713-01-01 BC'"),
    ),
    Family(
        "timestamp",
        "timestamp",
        (
            "'0001-01-01 00:00:00'", "'9999-12-31 23:59:59.999999'", "'0044-03-15 12:00:00.5 BC'",
            "'infinity'", "'-infinity'", "'2024-02-29 13:14:15.123456'", "'10000-01-01 00:00:00'",
        ),
    ),
    Family(
        "timestamptz",
        "timestamptz",
        (
            "'0001-01-01 00:00:00+00'", "'9999-12-31 23:59:59.999999+00'", "'0044-03-15 12:00:00+00 BC'",
            "'infinity'", "'-infinity'", "'2024-02-29 13:14:15.123456+05:30'", "'10000-01-01 00:00:00+00'",
        ),
    ),
    Family("time", "time", ("'00:00'", "'23:59:59.999999'", "'24:00:00'", "'13:14:15.5'")),
    Family("timetz", "timetz", ("'00:00+00'", "'24:00:00-15:59'", "'13:14:15.5+05:30'")),
    Family(
        "interval",
        "interval",
        (
            "'1 year 2 mons 3 days 04:05:06.5'", "'-1 days -00:00:01'", "'178000000 years'",
            "'0'", "'1 mon -1 day'", "'0.000001 sec'", "'-2147483648 days'",
        ),
    ),
    Family(
        "uuid",
        "uuid",
        ("'00000000-0000-0000-0000-000000000000'", "'ffffffff-ffff-ffff-ffff-ffffffffffff'", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"),
    ),
    Family(
        "json",
        "json",
        (
            "'{\"a\": 1, \"a\": 2}'", "'{\"b\": 1, \"a\": [true, null]}'",
            "'12345678901234567890.123'", "'1e400'", "'{\"x\": 2.50}'", "'\"\\u0000 ✓\"'",
            "'[]'", "'\"just a string\"'", "'{\"a\":\t1}'",
        ),
    ),
    # The document null apart: JSON Lines has one null, for it and for NULL (refused there).
    Family("json_null", "json", ("'null'", "'{\"a\": 1}'"), extra=True),
    Family(
        "jsonb",
        "jsonb",
        (
            "'{\"b\": 1, \"a\": [true, null]}'", "'12345678901234567890.123'", "'{\"x\": 2.50}'",
            "'[]'", "'\"just a string\"'", "'{\"n\": -0.0, \"big\": 1e40}'",
        ),
    ),
    Family("jsonb_null", "jsonb", ("'null'", "'{\"a\": 1}'"), extra=True),
    Family("int_array", "integer[]", ("'{1,NULL,3}'", "'{}'", "'{NULL}'")),
    Family("int_2d", "integer[]", ("'{{1,2},{3,4}}'", "'{5}'", "'{{NULL,6}}'")),
    Family("int_bounds", "integer[]", ("'[0:1]={7,8}'", "'[-2:-1]={1,2}'", "'{1}'")),
    Family("text_array", "text[]", ("$${\"a b\",\"c,d\",NULL,\"NULL\",\"\",\"\\\\\",\"q\\\"\"}$$", "'{}'")),
    Family("float_array", "double precision[]", ("'{NaN,Infinity,-0,0.1,5e-324}'", "'{NULL}'")),
    Family(
        "date_array",
        "date[]",
        ("'{infinity,-infinity,\"0044-03-15 BC\",2024-02-29,10000-01-01,NULL}'", "'{}'"),
        extra=True,
    ),
    Family("time_array", "time[]", ("'{24:00,00:00,13:14:15.5}'",), extra=True),
    Family("jsonb_array", "jsonb[]", ("$${\"{\\\"x\\\": 2.50}\",\"null\",NULL,\"1\"}$$",), extra=True),
    Family("numeric_array", "numeric[]", ("'{1.50,NaN,-Infinity,NULL,12345678901234567890.5}'",), extra=True),
    Family("bytea_array", "bytea[]", ("ARRAY['\\x00ff'::bytea, NULL, '\\x']",), extra=True),
    Family("interval_array", "interval[]", ("'{\"1 mon 2 days\",NULL,\"-1 sec\"}'",), extra=True),
    Family("uuid_array", "uuid[]", ("'{00000000-0000-0000-0000-000000000000,NULL}'",), extra=True),
    Family("daterange", "daterange", ("'[2024-01-01,infinity)'", "'empty'", "'(,2024-01-01]'"), extra=True),
    Family("tsquery", "tsquery", ("'fat & (rat | cat)'", "''"), extra=True),
    Family("macaddr8", "macaddr8", ("'08:00:2b:01:02:03:04:05'",), extra=True),
    Family("inet", "inet", ("'192.168.0.1'", "'::1'", "'10.0.0.0/8'", "'2001:db8::1/64'")),
    Family("cidr", "cidr", ("'10.0.0.0/8'", "'2001:db8::/32'")),
    Family("macaddr", "macaddr", ("'08:00:2b:01:02:03'", "'ff:ff:ff:ff:ff:ff'")),
    Family("money", "money", ("'1234.56'", "'-0.01'", "'0'", "'92233720368547758.07'")),
    Family("bit", "bit(4)", ("B'1010'", "B'0000'")),
    Family("varbit", "varbit", ("B''", "B'1'", "B'101010101'")),
    Family("tsvector", "tsvector", ("'a fat cat'", "$$'quo''te' x:1A$$", "''")),
    Family("enum", "{schema}.mood", ("'happy'", "'sad'")),
    Family("composite", "{schema}.pair", ("ROW(1, 'x y')", "ROW(NULL, '')", "ROW(2, 'quote\"comma,')")),
    Family("range", "int4range", ("'[1,10)'", "'empty'", "'(,5]'")),
    Family("xml", "xml", ("'<a b=\"1\">x &amp; y</a>'", "'text only'", "''")),
    Family("oid", "oid", ("0", "'4294967295'", "12345")),
    Family("point", "point", ("'(1.5,-2)'", "'(0,-0)'", "'(1e300,NaN)'")),
    Family("polygon", "polygon", ("'((0,0),(1,0),(1,1))'",)),
    Family("domain", "{schema}.posint", ("1", "2147483647")),
)  # fmt: skip

PLACEMENTS = ("alone", "enum")
#: headwater's paths; "adbc" is the peer (read + ingest by ADBC itself), only counted.
PATHS = ("dicts", "arrow", "jsonl", "csv", "parquet_rows", "parquet_arrow", "pgcopy", "adbc")

#: (family, path) → why that path refuses it (with a clear error naming the column).
_BOUNDS = "a Parquet column of lists has no lower bound, and the dict read gives such an "
"array as its text, which a column of lists cannot hold either: refused, not shifted to 1"
EXPECTED_ERRORS: dict[tuple[str, str], str] = {
    ("int_bounds", "parquet_rows"): _BOUNDS,
    ("json_null", "jsonl"): "JSON Lines has one null, for the document null and NULL: refused",
    ("jsonb_null", "jsonl"): "JSON Lines has one null, for the document null and NULL: refused",
    ("jsonb_array", "jsonl"): "the document null beside NULL elements: refused",
    ("jsonb_array", "parquet_rows"): "the document null beside NULL elements: refused",
    ("numeric_array", "parquet_rows"): "NaN inside a list has no JSON form: refused",
}

#: (family, path) → why the path still changes values (a known defect, kept visible: the
#: case is an expected failure, and fails when it passes, so the entry must go).
KNOWN_CHANGES: dict[tuple[str, str], str] = {}

#: Outcomes of this run, for the terminal summary: path → placement → outcome → families.
RESULTS: dict[str, dict[str, dict[str, list[str]]]] = collections.defaultdict(
    lambda: collections.defaultdict(lambda: collections.defaultdict(list))
)


@dataclasses.dataclass
class Matrix:
    schema: str
    admin: Any
    pg: PostgresConnector
    dsn: str


@pytest.fixture(scope="module")
def matrix(pg_dsn: str) -> Iterator[Matrix]:
    """One schema holding every source table (made once for the module)."""
    import psycopg

    schema = f"hw_matrix_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            admin.execute(f"CREATE TYPE \"{schema}\".mood AS ENUM ('happy', 'sad')")
            admin.execute(f'CREATE TYPE "{schema}".pair AS (a int, b text)')
            admin.execute(f'CREATE DOMAIN "{schema}".posint AS integer CHECK (VALUE > 0)')
            for family in FAMILIES:
                column_type = family.type.format(schema=f'"{schema}"')
                for placement in PLACEMENTS:
                    table = f'"{schema}"."{family.name}_{placement}"'
                    extra = f', e "{schema}".mood' if placement == "enum" else ""
                    admin.execute(
                        f"CREATE TABLE {table} (id int PRIMARY KEY{extra}, "
                        f'"v_{family.name}" {column_type})'
                    )
                    rows = [*family.values, "NULL"]
                    enum = ", 'happy'" if extra else ""
                    values = ", ".join(f"({n}{enum}, {value})" for n, value in enumerate(rows, 1))
                    admin.execute(f"INSERT INTO {table} VALUES {values}")
            connector = PostgresConnector({"url": pg_dsn, "application_name": "hw-matrix"})
            try:
                yield Matrix(schema, admin, connector, pg_dsn)
            finally:
                connector.close()
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _run(m: Matrix, path: str, source: str, dest: str, tmp: Path) -> None:
    pg = m.pg
    if path == "dicts":
        pg.write(dest, pg.read(source))
    elif path == "arrow":
        pg.write(dest, pg.read(source, format="arrow"))
    elif path in ("jsonl", "csv", "parquet_rows", "parquet_arrow"):
        suffix = {"jsonl": "jsonl", "csv": "csv"}.get(path, "parquet")
        file = tmp / f"data.{suffix}"
        options = {"format": "dicts"} if path == "parquet_rows" else None
        headwater.copy(pg, source, file, read_options=options)
        headwater.copy(file, None, pg, dest)
    elif path == "pgcopy":
        headwater.copy(pg, source, pg, dest)
    elif path == "adbc":
        import adbc_driver_postgresql.dbapi as adbc

        schema, table = dest.split(".")
        with adbc.connect(m.dsn) as conn:
            with conn.cursor() as cur:
                cur.execute(f'SELECT * FROM "{schema}"."{source.split(".")[1]}" ORDER BY id')
                data = cur.fetch_arrow_table()
            with conn.cursor() as cur:
                cur.adbc_ingest(table, data, mode="append", db_schema_name=schema)
            conn.commit()
    else:  # pragma: no cover
        raise AssertionError(path)


def _differences(m: Matrix, source: str, dest: str, column: str) -> int:
    """Rows missing on either side or whose value's text differs."""
    s, d = (f'"{m.schema}"."{t.split(".")[1]}"' for t in (source, dest))
    row = m.admin.execute(
        f"SELECT count(*) FROM {s} FULL JOIN {d} USING (id) "
        f'WHERE {s}.id IS NULL OR {d}.id IS NULL OR {s}."{column}"::text IS DISTINCT FROM '
        f'{d}."{column}"::text'
    ).fetchone()
    return int(row[0])


def _outcome(m: Matrix, family: Family, path: str, placement: str, tmp: Path) -> tuple[str, str]:
    source = f"{m.schema}.{family.name}_{placement}"
    dest = f"{m.schema}.{family.name}_{placement}_{path}"
    column = f"v_{family.name}"
    m.admin.execute(
        f'CREATE TABLE "{m.schema}"."{family.name}_{placement}_{path}" '
        f'(LIKE "{m.schema}"."{family.name}_{placement}")'
    )
    try:
        try:
            _run(m, path, source, dest, tmp)
        except HeadwaterError as exc:
            return "error", str(exc)
        except Exception as exc:  # not a clear error: a crash (the peer's errors are plain)
            return "error" if path == "adbc" else "crash", f"{type(exc).__name__}: {exc}"
        changed = _differences(m, source, dest, column)
        if placement == "enum":
            changed += _differences(m, source, dest, "e")
        return ("changed", f"{changed} row(s) differ") if changed else ("exact", "")
    finally:
        m.admin.execute(f'DROP TABLE "{m.schema}"."{family.name}_{placement}_{path}"')


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("family", FAMILIES, ids=[f.name for f in FAMILIES])
def test_type_matrix(matrix: Matrix, family: Family, path: str, placement: str, tmp_path: Path):
    """The values of one type come back exactly through one path (or a listed, clear error)."""
    outcome, detail = _outcome(matrix, family, path, placement, tmp_path)
    RESULTS[path][placement][outcome].append(family.name)
    if path == "adbc":
        return  # the peer: counted, not judged
    known = KNOWN_CHANGES.get((family.name, path))
    if known is not None:
        assert outcome != "exact", f"{family.name} via {path} is exact now: drop KNOWN_CHANGES"
        pytest.xfail(known)
    assert outcome not in ("changed", "crash"), f"{family.name} via {path} ({placement}): {detail}"
    if outcome == "exact":
        assert (family.name, path) not in EXPECTED_ERRORS, f"{family.name} via {path} is exact now"
    if outcome == "error":
        reason = EXPECTED_ERRORS.get((family.name, path))
        assert reason is not None, f"{family.name} through {path} ({placement}): {detail}"
        assert f"v_{family.name}" in detail, f"the error does not name the column: {detail}"


def summary_lines() -> list[str]:
    """The counts per path and placement (for the terminal summary)."""
    if not RESULTS:
        return []
    issue = {f.name for f in FAMILIES if not f.extra}
    lines = [
        f"{'path':<14} {'placement':<9} {'exact':>5} {'error':>5} {'changed':>7} {'crash':>5}  of"
        f"  exact of the issue's {len(issue)}"
    ]
    for path in PATHS:
        for placement in PLACEMENTS:
            counts = RESULTS[path][placement]
            total = sum(map(len, counts.values()))
            if not total:
                continue
            ran = issue & {name for names in counts.values() for name in names}
            lines.append(
                f"{path:<14} {placement:<9} {len(counts['exact']):>5} {len(counts['error']):>5} "
                f"{len(counts['changed']):>7} {len(counts['crash']):>5}  {total:<3} "
                f"{len(issue & set(counts['exact']))}/{len(ran)}"
                + (f"  changed: {', '.join(counts['changed'])}" if counts["changed"] else "")
                + (f"  crash: {', '.join(counts['crash'])}" if counts["crash"] else "")
                + (f"  error: {', '.join(counts['error'])}" if counts["error"] else "")
            )
    return lines

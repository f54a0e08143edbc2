"""write() without a schema: the table is created with column types inferred from the records."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest

from headwater import Batch, ConfigError
from headwater_postgres._infer import infer_dict_columns


def _types(pg_admin, schema: str, table: str) -> dict[str, str]:
    rows = pg_admin.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum",
        (f'"{schema}"."{table}"',),
    ).fetchall()
    return dict(rows)


RECORDS = [
    {
        "i": 1,
        "f": 1.5,
        "n": Decimal("12.345"),
        "s": "text",
        "b": True,
        "ts": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "d": dt.date(2026, 1, 2),
        "j": {"a": [1, 2]},
        "l": [1, "two"],
        "bytes": b"\x00\xff",
        "u": uuid.UUID(int=7),
    },
    # NULLs take any type; an int among floats that a double holds exactly widens.
    {"i": None, "f": 2, "n": None, "s": None, "b": None, "ts": None, "d": None, "j": None},
]

EXPECTED = {
    "i": "bigint",
    "f": "double precision",
    "n": "numeric",
    "s": "text",
    "b": "boolean",
    "ts": "timestamp with time zone",
    "d": "date",
    "j": "jsonb",
    "l": "jsonb",
    "bytes": "bytea",
    "u": "uuid",
}


def test_write_creates_table_with_inferred_types(pg, pg_admin, pg_schema):
    """Every documented Python type becomes its column type, and the values round-trip."""
    result = pg.write(f"{pg_schema}.t", [RECORDS])
    assert result.records == 2
    assert _types(pg_admin, pg_schema, "t") == EXPECTED
    back = [batch.records for batch in pg.read(f"{pg_schema}.t", key="i")]
    rows = [r for records in back for r in records]
    assert rows[0] == RECORDS[0]
    assert rows[1]["f"] == 2.0
    assert rows[1]["l"] is None


async def test_async_write_infers_too(apg, pg_admin, pg_schema):
    """awrite creates the table the same way (from an async iterable of batches)."""

    async def batches():
        yield Batch("src", [{"id": 1, "at": dt.datetime(2026, 1, 1), "big": 2**70}], {})
        yield [{"id": 2, "at": None, "big": 1}]

    result = await apg.awrite(f"{pg_schema}.t", batches(), primary_key="id")
    assert result.records == 2
    assert _types(pg_admin, pg_schema, "t") == {
        "id": "bigint",
        "at": "timestamp without time zone",
        "big": "numeric",  # beyond 64 bits: numeric, not an overflowing bigint
    }
    key = pg_admin.execute(
        "SELECT count(*) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'",
        (f'"{pg_schema}".t',),
    ).fetchone()
    assert key == (1,)
    assert pg_admin.execute(f'SELECT big FROM "{pg_schema}".t ORDER BY id').fetchall() == [
        (Decimal(2**70),),
        (Decimal(1),),
    ]


def test_conflicting_types_name_the_column_and_records(pg, pg_admin, pg_schema):
    """Two kinds in one column fail before anything is created; the error says where."""
    records = [{"id": 1, "v": 1}, {"id": 2, "v": None}, {"id": 3, "v": "one"}]
    with pytest.raises(ConfigError) as info:
        pg.write(f"{pg_schema}.t", [records])
    message = str(info.value)
    assert "'v'" in message
    assert "record 1" in message
    assert "record 3" in message
    assert info.value.field == "schema"
    assert "schema=" in (info.value.hint or "")
    exists = pg_admin.execute("SELECT to_regclass(%s)", (f'"{pg_schema}".t',)).fetchone()
    assert exists == (None,)


def test_all_null_column_asks_for_a_schema(pg, pg_schema):
    """A column with no value but NULL has no type to give."""
    with pytest.raises(ConfigError) as info:
        pg.write(f"{pg_schema}.t", [[{"id": 1, "v": None}]])
    assert "'v'" in str(info.value)
    assert "NULL" in str(info.value)


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ([1, 2.5], None),  # widened to double precision: 1 is exact as a double
        ([2**53 + 1, 2.5], "int"),  # would not be exact
        ([1, Decimal("2.5")], None),  # numeric
        ([1.5, Decimal("2.5")], "float"),
        ([True, 1], "bool"),  # a bool is not an int here
        ([dt.date(2026, 1, 1), dt.datetime(2026, 1, 1)], "date"),
        ([dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 1, tzinfo=dt.UTC)], "time zone"),
        ([{"a": 1}, [1]], None),  # both jsonb
        ([object()], "object"),
    ],
)
def test_inference_rules(values, error):
    """Which kinds share a column (pure logic)."""
    records = [{"v": v} for v in values]
    if error is None:
        infer_dict_columns(records)
    else:
        with pytest.raises(ConfigError, match=error):
            infer_dict_columns(records)


def test_arrow_input_uses_the_arrow_schema(pg, pg_admin, pg_schema):
    """From Arrow, the types are the schema's (int32 stays integer, decimals keep scale)."""
    pa = pytest.importorskip("pyarrow")
    table = pa.table(
        {
            "a": pa.array([1, None], pa.int32()),
            "b": pa.array([Decimal("1.25"), None], pa.decimal128(10, 2)),
            "c": pa.array(["x", "y"], pa.large_string()),
            "d": pa.array([dt.datetime(2026, 1, 1), None], pa.timestamp("us", tz="UTC")),
            "e": pa.array([[1, 2], None], pa.list_(pa.int64())),
            "f": pa.array([{"k": 1}, None], pa.struct([("k", pa.int64())])),
            "g": pa.array([1.5, 2.5], pa.float32()),
        }
    )
    pg.write(f"{pg_schema}.t", [table])
    assert _types(pg_admin, pg_schema, "t") == {
        "a": "integer",
        "b": "numeric(10,2)",
        "c": "text",
        "d": "timestamp with time zone",
        "e": "bigint[]",
        "f": "jsonb",
        "g": "real",
    }
    row = pg_admin.execute(f'SELECT a, b, e, f FROM "{pg_schema}".t WHERE a = 1').fetchone()
    assert row == (1, Decimal("1.25"), [1, 2], {"k": 1})


def test_existing_table_and_declared_schema_are_unchanged(pg, pg_admin, pg_schema):
    """Inference only runs when write creates the table and no schema is declared."""
    pg.write(f"{pg_schema}.t", [[{"v": 1}]], schema={"v": "smallint"})
    pg.write(f"{pg_schema}.t", [[{"v": 2}]])
    assert _types(pg_admin, pg_schema, "t") == {"v": "smallint"}


def test_inferred_table_with_hostile_names_is_created_literally(pg, pg_admin, pg_schema):
    """Table and column names from the records are identifiers, never SQL."""
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".y (id int)')
    hostile = 'x"; DROP TABLE y; --'
    name = f'{pg_schema}."{hostile.replace(chr(34), chr(34) * 2)}"'
    pg.write(name, [[{'c"); DROP TABLE y; --': 1}]])
    assert _types(pg_admin, pg_schema, hostile.replace('"', '""')) == {
        'c"); DROP TABLE y; --': "bigint"
    }
    assert pg_admin.execute(f'SELECT count(*) FROM "{pg_schema}".y').fetchone() == (0,)

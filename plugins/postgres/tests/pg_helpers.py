"""Helpers shared by the postgres plugin's tests (not collected: no test_ prefix)."""

from __future__ import annotations

from typing import Any

#: Columns of the table holding every mapped type.
TYPES_DDL = """
CREATE TABLE {t} (
    id bigint PRIMARY KEY,
    small smallint, int integer, big bigint,
    real_ real, dbl double precision, num numeric(20, 6),
    flag boolean, txt text, vc varchar(40), ch char(3),
    bin bytea, js json, jsb jsonb,
    d date, tm time, ts timestamp, tstz timestamptz, iv interval,
    u uuid, ints integer[], texts text[], grid integer[][],
    addr inet, mood {mood}
)
"""


def make_types_table(admin: Any, schema: str, name: str = "types") -> str:
    """Create and fill a table with every mapped type, NULLs and unicode; return its name."""
    table = f'"{schema}"."{name}"'
    admin.execute(f"CREATE TYPE \"{schema}\".mood AS ENUM ('happy', 'sad')")
    admin.execute(TYPES_DDL.format(t=table, mood=f'"{schema}".mood'))
    admin.execute(
        f"""
        INSERT INTO {table} VALUES
        (1, 1, 2, 9007199254740993, 1.5, 2.25, 12345678901234.123456,
         true, 'héllo wörld ✓ 日本', 'varchar', 'abc',
         '\\x00ff10', '{{"a": [1, 2]}}', '{{"b": {{"c": null}}, "ü": "✓"}}',
         '2024-02-29', '13:14:15.5', '2024-02-29 13:14:15.123456',
         '2024-02-29 13:14:15.123456+02', '1 year 2 mons 3 days 04:05:06.5',
         'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{{1,NULL,3}}', '{{"x","y z"}}',
         '{{{{1,2}},{{3,4}}}}', '192.168.0.1', 'happy'),
        (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
        (3, -32768, -2147483648, -9223372036854775808, 'NaN', '-Infinity', -0.000001,
         false, '', '', '', '', 'null', '[]', '0001-01-01', '00:00:00', '1970-01-01 00:00:00',
         '1970-01-01 00:00:00+00', '-1 days -00:00:01', '00000000-0000-0000-0000-000000000000',
         '{{}}', '{{}}', '{{}}', '::1', 'sad')
        """
    )
    return f"{schema}.{name}"


def rows_of(batches: Any) -> list[dict[str, Any]]:
    """Every record of an iterable of batches."""
    return [row for batch in batches for row in batch.rows()]


async def arows_of(batches: Any) -> list[dict[str, Any]]:
    """Every record of an async iterable of batches."""
    return [row async for batch in batches for row in batch.rows()]

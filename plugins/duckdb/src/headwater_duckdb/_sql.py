"""
SQL text the connector sends (pure logic): identifiers, stream names, catalog queries and
the checks a query stream goes through.

Every identifier is quoted (`quote_ident`); values travel as parameters. DuckDB resolves
names without regard to case, quoted or not, so the catalog is searched the same way and
the names it holds are used from then on.

A stream that is a SQL query is the user's text: it must be exactly one statement of
kind SELECT (DuckDB's parser says so, `extract_statements`), starting with SELECT, WITH,
VALUES or TABLE, and it runs inside a ``READ ONLY`` transaction that is rolled back, so
nothing it could call writes.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any, Final

from headwater import ConfigError

#: The table, in the target table's schema, holding states written with the data.
STATE_TABLE: Final = "headwater_state"

_KINDS: Final = "one SELECT, WITH, VALUES or TABLE statement"
_HINT: Final = "a query stream only reads; write with `headwater write` / connector.write()"

#: A query stream: starts with one of these keywords (optionally after an opening bracket).
_FIRST_WORD: Final = re.compile(r"^\s*\(*\s*(select|with|values|table)\b", re.IGNORECASE)


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier (inner double quotes doubled)."""
    if "\x00" in name:
        raise ConfigError("an identifier cannot hold a NUL character", field="stream")
    return '"' + name.replace('"', '""') + '"'


def qualified(database: str, schema: str, name: str) -> str:
    """
    ``"database"."schema"."name"``: fully qualified, since a schema that shares the
    database's name (``sales.db`` holding schema ``sales``) makes ``sales.t`` ambiguous.
    """
    return f"{quote_ident(database)}.{quote_ident(schema)}.{quote_ident(name)}"


def is_query(stream: str) -> bool:
    """Whether ``stream`` is SQL text rather than a table name."""
    return bool(_FIRST_WORD.match(stream))


_PART: Final = re.compile(r'\s*(?:"((?:[^"]|"")*)"|([^".\s]+))\s*')


def split_name(stream: str) -> tuple[str | None, str]:
    """
    ``(schema, name)`` of ``table``, ``schema.table`` or quoted parts (``main."a.b"``);
    the schema is None when not given.
    """
    parts: list[str] = []
    position = 0
    while True:
        match = _PART.match(stream, position)
        if match is None or match.end() == position:
            raise ConfigError(
                f"{stream!r} is not a table name (schema.table; quote parts with dots, "
                'spaces or quotes: main."my table") nor a query',
                field="stream",
            )
        quoted, bare = match.groups()
        parts.append(quoted.replace('""', '"') if quoted is not None else bare)
        position = match.end()
        if position == len(stream):
            break
        if stream[position] != ".":
            raise ConfigError(f"{stream!r} is not a table name", field="stream")
        position += 1
    if len(parts) > 2:
        raise ConfigError(
            f"{stream!r}: name a table as schema.table (the database is the file)",
            field="stream",
        )
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def display_name(schema: str, name: str) -> str:
    """How `list` names a table: ``schema.table``, parts quoted only where needed."""

    def part(text: str) -> str:
        return text if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", text) else quote_ident(text)

    return f"{part(schema)}.{part(name)}"


# --- the catalog ---------------------------------------------------------------------------------

#: Tables and views of the current database: (schema, name, kind, estimated rows).
RELATIONS: Final = """
SELECT schema_name, table_name, 'table' AS kind, estimated_size, database_name
  FROM duckdb_tables() WHERE database_name = current_database() AND NOT temporary
UNION ALL
SELECT schema_name, view_name, 'view', NULL, database_name
  FROM duckdb_views() WHERE database_name = current_database() AND NOT internal
   AND NOT temporary
ORDER BY 1, 2
"""

#: One table or view by name, case-insensitively as DuckDB resolves names.
FIND_RELATION: Final = f"""
SELECT * FROM ({RELATIONS}) r
 WHERE lower(r.table_name) = lower($name)
   AND lower(r.schema_name) = lower(coalesce($schema, current_schema()))
"""  # noqa: S608 - a constant of this module, no input

SCHEMAS: Final = """
SELECT schema_name FROM duckdb_schemas()
 WHERE database_name = current_database()
   AND schema_name NOT IN ('information_schema', 'pg_catalog') ORDER BY 1
"""

COLUMNS: Final = """
SELECT column_name, data_type, is_nullable, column_default FROM duckdb_columns()
 WHERE database_name = current_database() AND schema_name = $schema AND table_name = $name
 ORDER BY column_index
"""

PRIMARY_KEY: Final = """
SELECT constraint_column_names FROM duckdb_constraints()
 WHERE database_name = current_database() AND schema_name = $schema AND table_name = $name
   AND constraint_type = 'PRIMARY KEY'
"""

UNIQUE_KEYS: Final = """
SELECT constraint_column_names FROM duckdb_constraints()
 WHERE database_name = current_database() AND schema_name = $schema AND table_name = $name
   AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')
"""


@dataclasses.dataclass(frozen=True, slots=True)
class Column:
    """A column of a table, view or query result."""

    name: str
    #: DuckDB's name of the type (``INTEGER``, ``DECIMAL(12,2)``, ``TIMESTAMP WITH TIME ZONE``).
    type: str
    nullable: bool = True
    default: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Relation:
    """A table or view found in the catalog."""

    database: str
    schema: str
    name: str
    kind: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    row_estimate: int | None

    @property
    def ident(self) -> str:
        return qualified(self.database, self.schema, self.name)

    @property
    def display(self) -> str:
        return display_name(self.schema, self.name)


@dataclasses.dataclass(frozen=True, slots=True)
class QuerySource:
    """A query stream: its text (checked) and the columns of its result."""

    query: str
    columns: tuple[Column, ...]


# --- query streams -------------------------------------------------------------------------------


def query_text(stream: str) -> str:
    """
    The query of a stream, as it is wrapped in ``SELECT ... FROM (...)``: trailing
    semicolons and blanks dropped (``select 1;`` is one statement, but not inside brackets).
    """
    text = stream.strip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    if not _FIRST_WORD.match(text):
        raise ConfigError(f"a query stream must be {_KINDS}", field="stream", hint=_HINT)
    return text


def check_statements(statements: Sequence[Any]) -> None:
    """Refuse what DuckDB's parser found in a query stream unless it is one SELECT."""
    if len(statements) != 1:
        raise ConfigError(
            f"a query stream must be {_KINDS}; this text holds {len(statements)}",
            field="stream",
            hint=_HINT,
        )
    kind = str(getattr(statements[0], "type", "")).rsplit(".", 1)[-1]
    if kind != "SELECT":
        raise ConfigError(
            f"a query stream must be {_KINDS} that only reads; this one is {kind}",
            field="stream",
            hint=_HINT,
        )


def subquery(query: str) -> str:
    """``(\\n query \\n)``: on lines of its own, so a trailing ``--`` comment stays inside."""
    return f"(\n{query}\n)"


def run(cur: Any, statement: str, params: Any = None) -> list[Any]:
    """
    Run a statement to its end and return its rows: DuckDB keeps a statement's result
    pending until it is fetched, and refuses other work on the cursor meanwhile.
    """
    rows: list[Any] = cur.execute(statement, params).fetchall()
    return rows


def one(cur: Any, statement: str, params: Any = None) -> Any:
    """The first row of a statement run to its end (see `run`), or None."""
    rows = run(cur, statement, params)
    return rows[0] if rows else None

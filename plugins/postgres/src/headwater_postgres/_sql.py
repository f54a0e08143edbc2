"""
SQL the connector sends, built only with `psycopg.sql` (imports psycopg: load it lazily).

User input never becomes SQL text. Table names are looked up in the catalog with bind
parameters, and only names the catalog returned are composed, as `sql.Identifier`; a
name such as ``x"; DROP TABLE y; --`` is therefore just a table that does not exist.
Values in a state are bound as parameters and cast to the key column's type.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any, Final

from psycopg import sql

from headwater import ConfigError

#: A stream that is a query rather than a table name.
_QUERY: Final = re.compile(r"^\s*\(?\s*(select|with|values|table)\b", re.IGNORECASE | re.DOTALL)
_UNQUOTED: Final = re.compile(r"[A-Za-z_\x80-\uffff][A-Za-z0-9_$\x80-\uffff]*")


def is_query(stream: str) -> bool:
    """A stream starting with SELECT / WITH / VALUES / TABLE is read as a SQL query."""
    return bool(_QUERY.match(stream)) and any(ch.isspace() for ch in stream.strip())


def split_name(stream: str) -> tuple[str | None, str]:
    """
    ``schema.table`` → (schema, table), PostgreSQL's identifier rules.

    Unquoted parts fold to lower case, ``"Quoted"`` parts keep theirs (``""`` is a quote).
    Text that is not one or two well-formed parts is taken whole as a table name, which
    the catalog will not find: a hostile name is a missing name, never SQL.
    """
    parts: list[str] = []
    pos = 0
    text = stream.strip()
    while pos <= len(text):
        if text.startswith('"', pos):
            end = pos + 1
            buf = []
            while True:
                nxt = text.find('"', end)
                if nxt == -1:
                    return None, stream
                buf.append(text[end:nxt])
                if text.startswith('"', nxt + 1):
                    buf.append('"')
                    end = nxt + 2
                    continue
                pos = nxt + 1
                break
            parts.append("".join(buf))
        else:
            match = _UNQUOTED.match(text, pos)
            if not match:
                return None, stream
            parts.append(match.group(0).lower())
            pos = match.end()
        if pos == len(text):
            break
        if text[pos] != ".":
            return None, stream
        pos += 1
    if len(parts) == 1:
        return None, parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    return None, stream


def quote_ident(name: str) -> str:
    """Quote an identifier only where PostgreSQL needs it (for display names)."""
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'


def display_name(schema: str, name: str) -> str:
    """``schema.table`` as `split_name` reads it back."""
    return f"{quote_ident(schema)}.{quote_ident(name)}"


@dataclasses.dataclass(frozen=True, slots=True)
class Column:
    """A column as the catalog describes it."""

    name: str
    type_oid: int
    #: The base type of a domain (0 when the column is not a domain).
    base_oid: int
    #: ``format_type`` text, e.g. ``numeric(12,2)``; from the server, safe to compose.
    type: str
    nullable: bool
    default: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Relation:
    """A table, view, materialized view or foreign table, with what reads need."""

    oid: int
    schema: str
    name: str
    kind: str
    row_estimate: int | None
    size: int | None
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]

    @property
    def ident(self) -> sql.Identifier:
        """The quoted, schema-qualified name."""
        return sql.Identifier(self.schema, self.name)

    @property
    def display(self) -> str:
        return display_name(self.schema, self.name)

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    def avg_row_bytes(self) -> int | None:
        if self.size and self.row_estimate and self.row_estimate > 0:
            return max(1, self.size // self.row_estimate)
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class QuerySource:
    """A SQL query read as a stream, and its result columns."""

    query: str
    columns: tuple[Column, ...]


KINDS: Final = {
    "r": "table",
    "p": "table",
    "v": "view",
    "m": "materialized_view",
    "f": "table",
}

_RELATION_COLUMNS: Final = """
    c.oid::bigint, n.nspname::text, c.relname::text, c.relkind::text,
    CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint END,
    CASE WHEN c.relkind IN ('r', 'm', 'p') THEN pg_total_relation_size(c.oid) END
"""

RELATION_QUERY: Final = sql.SQL(
    """
SELECT {relation},
    (SELECT json_agg(json_build_object(
         'name', a.attname, 'type_oid', a.atttypid::bigint,
         'base_oid', CASE WHEN t.typtype = 'd' THEN t.typbasetype::bigint ELSE 0 END,
         'type', format_type(a.atttypid, a.atttypmod), 'nullable', NOT a.attnotnull,
         'default', pg_get_expr(d.adbin, d.adrelid)) ORDER BY a.attnum)
       FROM pg_attribute a
       JOIN pg_type t ON t.oid = a.atttypid
       LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
    (SELECT array_agg(a.attname::text ORDER BY k.ord)
       FROM pg_index i
       CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
      WHERE i.indrelid = c.oid AND i.indisprimary)
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f')
   AND c.relname = %(name)s
   AND (n.nspname = %(schema)s
        OR (%(schema)s::text IS NULL AND n.nspname = ANY (current_schemas(false))))
 ORDER BY array_position(current_schemas(false), n.nspname::name) NULLS LAST
 LIMIT 1
"""
).format(relation=sql.SQL(_RELATION_COLUMNS))

#: As `_RELATION_COLUMNS`, but no size (NULL: unknown) for a relation another session
#: holds or awaits an ACCESS EXCLUSIVE lock on: pg_total_relation_size locks the relation,
#: and a listing of the whole database must not wait behind some table's DROP or ALTER
#: (it did, for as long as that session kept its lock).
_LIST_COLUMNS: Final = """
    c.oid::bigint, n.nspname::text, c.relname::text, c.relkind::text,
    CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint END,
    CASE WHEN c.relkind IN ('r', 'm', 'p') AND x.relation IS NULL
         THEN pg_total_relation_size(c.oid) END
"""

#: Every user relation in one query (with sizes), for list(): no query per table.
LIST_QUERY: Final = sql.SQL(
    """
SELECT {relation}
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN (SELECT DISTINCT l.relation FROM pg_locks l
              WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock'
                AND l.database = (SELECT oid FROM pg_database
                                   WHERE datname = current_database())) x
         ON x.relation = c.oid
 WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f')
   AND NOT c.relispartition
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'
   AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s)
 ORDER BY n.nspname, c.relname
"""
).format(relation=sql.SQL(_LIST_COLUMNS))

SCHEMAS_QUERY: Final = sql.SQL(
    """
SELECT n.nspname::text, count(c.oid)
  FROM pg_namespace n
  LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'
 GROUP BY n.nspname
 ORDER BY n.nspname
"""
)

SCHEMA_EXISTS: Final = sql.SQL("SELECT 1 FROM pg_namespace WHERE nspname = %(schema)s")

TYPE_NAMES: Final = sql.SQL(
    "SELECT t.oid::bigint, format_type(t.oid, NULL), "
    "CASE WHEN t.typtype = 'd' THEN t.typbasetype::bigint ELSE 0 END "
    "FROM pg_type t WHERE t.oid = ANY(%(oids)s::oid[])"
)


def relation_from_row(row: Sequence[Any]) -> Relation:
    """Build a `Relation` from a `RELATION_QUERY` row."""
    oid, schema, name, kind, estimate, size, columns, pk = row
    return Relation(
        oid=oid,
        schema=schema,
        name=name,
        kind=KINDS.get(kind, "table"),
        row_estimate=estimate,
        size=size,
        columns=tuple(
            Column(
                name=c["name"],
                type_oid=int(c["type_oid"]),
                base_oid=int(c["base_oid"]),
                type=c["type"],
                nullable=bool(c["nullable"]),
                default=c["default"],
            )
            for c in (columns or [])
        ),
        primary_key=tuple(pk or ()),
    )


def select_list(columns: Sequence[Column], *, source: str | None = None) -> sql.Composed:
    """
    Column expressions for a read: native types as they are, others cast to text, and
    json/jsonb as text too: their values are parsed a batch at a time, in one parser call
    per column and batch (`_values.json_column`), not one Python call per value.
    """
    from headwater_postgres._values import JSON_OIDS, load_oid

    parts: list[sql.Composable] = []
    for col in columns:
        ident = sql.Identifier(source, col.name) if source else sql.Identifier(col.name)
        _oid, cast = load_oid(col.type_oid, col.base_oid)
        if (col.base_oid or col.type_oid) in JSON_OIDS:
            parts.append(sql.SQL("{}::text AS {}").format(ident, sql.Identifier(col.name)))
        elif cast:
            is_array = col.type.endswith("[]")
            parts.append(
                sql.SQL("{}::{} AS {}").format(
                    ident, sql.SQL("text[]" if is_array else "text"), sql.Identifier(col.name)
                )
            )
        else:
            parts.append(ident)
    return sql.SQL(", ").join(parts)


def key_condition(
    key: Sequence[Column], last: Sequence[Any], *, source: str | None = None, op: str = ">"
) -> sql.Composed:
    """
    ``(k1, k2) > (CAST('v1' AS t1), ...)``: a row comparison an index on the key serves.

    Values are inlined as quoted literals (COPY takes no bind parameters) and cast to
    the column's catalog type, so a state's text form compares correctly.
    """
    if op not in (">", "<="):
        raise ValueError(op)
    if len(key) != len(last):
        raise ConfigError("the state's key does not match the stream's key", field="state")
    idents = [sql.Identifier(source, c.name) if source else sql.Identifier(c.name) for c in key]
    values = [
        sql.SQL("CAST({} AS {})").format(sql.Literal(v), sql.SQL(c.type))
        for c, v in zip(key, last, strict=True)
    ]
    if op == ">" and any(c.nullable for c in key):
        return _after_with_nulls(key, idents, values)
    return sql.SQL("({}) {} ({})").format(
        sql.SQL(", ").join(idents), sql.SQL(op), sql.SQL(", ").join(values)
    )


def _after_with_nulls(
    key: Sequence[Column], idents: Sequence[sql.Composable], values: Sequence[sql.Composable]
) -> sql.Composed:
    """
    The rows after ``last`` in ``ORDER BY key`` (ascending: NULLs last) when a key column
    can hold NULL: a row comparison is NULL for them, so the rows with a NULL key would
    never be read on resume. Spelled out lexicographically instead: equal so far (NULL
    equal to NULL), then greater, a NULL being greater than any value. ``last`` holds
    no NULL here (`_plan` refuses such a state: the rows sharing it cannot be told apart).
    """
    terms: list[sql.Composable] = []
    for i, column in enumerate(key):
        same = [
            sql.SQL("{} IS NOT DISTINCT FROM {}").format(idents[j], values[j]) for j in range(i)
        ]
        greater = sql.SQL("{} > {}").format(idents[i], values[i])
        if column.nullable:
            greater = sql.SQL("({} OR {} IS NULL)").format(greater, idents[i])
        terms.append(sql.SQL("({})").format(sql.SQL(" AND ").join([*same, greater])))
    return sql.SQL("({})").format(sql.SQL(" OR ").join(terms))


def order_by(key: Sequence[Column], *, source: str | None = None) -> sql.Composed:
    idents = [sql.Identifier(source, c.name) if source else sql.Identifier(c.name) for c in key]
    return sql.SQL(", ").join(idents)


# --- estimates -------------------------------------------------------------------------------

#: The storage of a relation for `estimate`: itself, or a partitioned table's leaves.
ESTIMATE_QUERY: Final = sql.SQL(
    """
SELECT c.relkind::text, c.reltuples::float8, c.relpages::bigint,
       CASE WHEN c.relkind IN ('r', 'm') THEN pg_relation_size(c.oid) END,
       CASE WHEN c.relkind IN ('r', 'm') THEN pg_total_relation_size(c.oid) END,
       current_setting('block_size')::bigint
  FROM pg_class c
 WHERE c.relkind <> 'p'
   AND c.oid IN (SELECT %(oid)s::oid
                 UNION ALL
                 SELECT t.relid FROM pg_partition_tree(%(oid)s::oid) t WHERE t.isleaf)
"""
)

#: A table without statistics is counted when its heap is smaller than this.
COUNT_LIMIT_BYTES: Final = 64 * 1024 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class SizeGuess:
    """What the catalog says about a relation's size."""

    rows: int | None
    bytes: int | None
    #: No statistic, and small enough that ``count(*)`` is cheap: count it.
    count_needed: bool = False


def estimate_from(leaves: Sequence[Sequence[Any]]) -> SizeGuess:
    """
    Rows and bytes from `ESTIMATE_QUERY` rows. Rows scale ``reltuples`` by the heap's
    current size over its size when last analyzed (``relpages``), as the planner does, so
    a table that grew since is not under-counted. ``reltuples`` of -1 (never analyzed)
    or 0 (analyzed empty, maybe filled since) is no statistic.
    """
    if not leaves or any(kind not in ("r", "m") for kind, *_ in leaves):
        return SizeGuess(None, None)  # views and foreign tables: nothing cheap to say
    total = sum(int(leaf[4] or 0) for leaf in leaves)
    heap = sum(int(leaf[3] or 0) for leaf in leaves)
    rows = 0.0
    for _kind, reltuples, relpages, main, _total, block_size in leaves:
        if reltuples <= 0:
            return SizeGuess(None, total, count_needed=heap < COUNT_LIMIT_BYTES)
        pages = (main or 0) / block_size
        rows += reltuples * pages / relpages if relpages > 0 else reltuples
    return SizeGuess(round(rows), total)


def count_sql(relation: Relation) -> sql.Composed:
    """``SELECT count(*)`` of a relation (quoted)."""
    return sql.SQL("SELECT count(*) FROM {}").format(relation.ident)

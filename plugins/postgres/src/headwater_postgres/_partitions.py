"""
Splitting a table, or a query on a column of its result, into key ranges (pure logic +
the one bounds query).

A partition's bounds are ``{"key": [col], "lower": [v] | None, "upper": [v] | None}``:
rows with ``lower < key <= upper``. The first range has no lower bound and the last no
upper bound, so together they cover every row, including rows added after the split.
Bounds are in the same JSON text form as read states.

A query's columns can hold NULL (nothing in a result says otherwise): a NULL key is in
the last range only, whose lower bound the read spells out as "greater, or NULL"
(`headwater_postgres._sql.key_condition`, as a resumed read of a nullable key does),
while every upper bound (``key <= upper``) leaves NULL out. One range has no bounds and
holds them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import sql

from headwater import ConfigError, Partition
from headwater_postgres._query import subquery
from headwater_postgres._sql import Column, QuerySource, Relation
from headwater_postgres._values import to_state_value

_INTEGER_OIDS = frozenset({20, 21, 23})


def _key_column(relation: Relation, key: str | None) -> Column:
    name = key
    if name is None:
        if len(relation.primary_key) != 1:
            raise ConfigError(
                f"{relation.display} has no single-column primary key to partition on",
                field="key",
                hint="pass key='column' (an indexed, unique column is best)",
            )
        name = relation.primary_key[0]
    column = relation.column(name)
    if column is None:
        raise ConfigError(f"{relation.display} has no column {name!r}", field="key")
    return column


def _query_key_column(source: QuerySource, key: str | None) -> Column:
    if key is None:
        raise ConfigError(
            "a query stream has no primary key to partition on",
            field="key",
            hint="pass key='column', a column of the query's result (unique is best: a "
            "partition resumes after the last key it read)",
        )
    column = next((c for c in source.columns if c.name == key), None)
    if column is None:
        names = ", ".join(repr(c.name) for c in source.columns)
        raise ConfigError(
            f"the query returns no column {key!r} to partition on (it returns {names})",
            field="key",
        )
    return column


def bounds_query(
    source: Relation | QuerySource, count: int, key: str | None
) -> tuple[sql.Composed, Column]:
    """
    The query giving the cut points, and the key column. A query stream is wrapped as a
    subquery (``key=`` must name a column of its result); its text has been checked as
    one read-only statement (`headwater_postgres._query.describe`) and this query runs in
    a read-only transaction like every other that runs it.
    """
    if isinstance(source, Relation):
        column = _key_column(source, key)
        ident = sql.Identifier(column.name)
        table: sql.Composable = source.ident
    else:
        column = _query_key_column(source, key)
        ident = sql.Identifier("q", column.name)
        table = sql.SQL("{} AS {}").format(subquery(source.query), sql.Identifier("q"))
    if (column.base_oid or column.type_oid) in _INTEGER_OIDS:
        query = sql.SQL("SELECT min({k})::bigint, max({k})::bigint FROM {t}").format(
            k=ident, t=table
        )
    else:
        fractions = [i / count for i in range(1, count)] or [0.5]
        query = sql.SQL(
            "SELECT percentile_disc({f}::float8[]) WITHIN GROUP (ORDER BY {k}) FROM {t}"
        ).format(f=sql.Literal(fractions), k=ident, t=table)
    return query, column


def partitions_from(
    stream: str, count: int, column: Column, row: Sequence[Any] | None
) -> list[Partition]:
    """Partitions from the bounds query's row."""
    uppers: list[Any]
    if row is None or row[0] is None:
        uppers = []
    elif len(row) == 2:
        low, high = int(row[0]), int(row[1])
        span = high - low + 1
        parts = max(1, min(count, span))
        uppers = [low + span * (i + 1) // parts - 1 for i in range(parts - 1)]
    else:
        uppers = sorted({v for v in row[0] if v is not None}) if count > 1 else []
    cuts = [to_state_value(v) for v in uppers]
    n = len(cuts) + 1
    partitions = []
    for i in range(n):
        lower = [cuts[i - 1]] if i > 0 else None
        upper = [cuts[i]] if i < n - 1 else None
        bounds = {"key": [column.name], "lower": lower, "upper": upper}
        partitions.append(Partition(stream, i, n, bounds))
    return partitions

"""
Read plans: what one ``read`` sends and how it cuts batches and states (pure logic).

A plan is built from the catalog's description of a table (or of a query's result) and
the caller's options; the sync and async drivers then only run ``plan.select`` (through
a binary server-side cursor) and feed the fetched rows to `BatchCutter`. Keeping this
apart from I/O is what lets the two twins share every rule about keys, states and batch
sizes.

State format (JSON)::

    {"stream": "public.orders", "key": ["id"], "last": [1234], "rows": 5000}

``last`` holds the key of the last row delivered, in PostgreSQL's text form; resuming
adds ``WHERE (key) > (last)`` to the same ordered query (keyset pagination, no OFFSET).
A read without a key (a view or query with no ``key``/``cursor_field``) has
``"last": null`` and cannot be resumed.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import deque
from collections.abc import Collection, Sequence
from itertools import repeat
from operator import itemgetter, setitem
from typing import Any

from psycopg import sql

from headwater import Batch, ConfigError, State
from headwater.toolkit import gc_paused
from headwater_postgres._query import subquery
from headwater_postgres._sql import (
    Column,
    QuerySource,
    Relation,
    key_condition,
    order_by,
    select_list,
)
from headwater_postgres._values import (
    JSON_OID,
    JSONB_OID,
    JsonText,
    json_column,
    to_state_value,
)

#: Rows fetched first from a query stream, whose row width no statistics tell: its
#: later batches are sized from what these rows measured (see `BatchCutter`). Few, so
#: that even the probe stays small when rows are huge.
PROBE_ROWS = 10

#: Read options `read` accepts besides state and batch_size.
READ_OPTIONS = frozenset({"columns", "cursor_field", "key", "format", "batch_bytes", "ordered"})


@dataclasses.dataclass(frozen=True, slots=True)
class _CopyParts:
    """The pieces a COPY of the read is built from (`ReadPlan.copy_sql`)."""

    select_items: sql.Composable
    source: sql.Composable
    where: tuple[sql.Composable, ...]
    order: sql.Composable | None
    #: The table's oid, or None for a query.
    table_oid: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class ReadPlan:
    """One read: the statement, the types to load, and how to cut batches."""

    stream: str
    #: ``SELECT ...`` with every value inlined as a quoted literal.
    select: sql.Composed
    names: tuple[str, ...]
    #: Positions of the jsonb columns, which arrive as text (see `select_list`) and are
    #: parsed a batch at a time.
    json_positions: tuple[int, ...]
    #: Positions of the key columns in a row; empty when the read cannot resume.
    key_positions: tuple[int, ...]
    key_names: tuple[str, ...]
    rows_per_batch: int
    rows_before: int
    #: Aim for batches of at most this many bytes.
    batch_bytes: int
    #: True for a query, whose row width no statistics give: measure it on the first rows.
    measure_width: bool
    #: The columns read, as the catalog describes them (for the Arrow statement).
    columns: tuple[Column, ...] = ()
    #: The alias of a query source in the statements (None for a table).
    alias: str | None = None
    #: One row's JSON text for ``format="jsonl"`` (`_jsonl`); None when not asked for,
    #: or when a column's JSON cannot be built in SQL.
    json_items: sql.Composable | None = None
    #: (column position, position of its `bounds_text`) of each array column of a dict
    #: read: the text replaces the list where one is given.
    array_text_positions: tuple[tuple[int, int], ...] = ()
    #: Positions of the json columns: their text is the value (`JsonText`), since json,
    #: unlike jsonb, keeps the document as written (key order, duplicate keys, spaces,
    #: the digits of each number), which no parsed value holds.
    json_text_positions: tuple[int, ...] = ()
    #: False for ``ordered=False``: no ORDER BY, and states that cannot be resumed from.
    ordered: bool = True
    copy_parts: _CopyParts | None = None

    def copy_sql(self, *, jsonl: bool, pages: tuple[int, int | None] | None = None) -> sql.Composed:
        """
        ``COPY (SELECT ...) TO STDOUT`` of this read: server-made JSON (``jsonl``) or the
        columns as COPY text; ``pages`` = (first, end) limits it to those heap pages of
        the table (a TID range scan), for reading one table on several connections.
        """
        from headwater_postgres._jsonl import COPY_OPTIONS

        parts = self.copy_parts
        assert parts is not None
        items = self.json_items if jsonl else parts.select_items
        assert items is not None
        conditions = list(parts.where)
        if pages is not None:
            first, end = pages
            conditions.append(sql.SQL("ctid >= {}::tid").format(sql.Literal(f"({first},0)")))
            if end is not None:
                conditions.append(sql.SQL("ctid < {}::tid").format(sql.Literal(f"({end},0)")))
        query = sql.SQL("SELECT {} FROM {}").format(items, parts.source)
        if conditions:
            query = sql.SQL("{} WHERE {}").format(query, sql.SQL(" AND ").join(conditions))
        if parts.order is not None:
            query = sql.SQL("{} ORDER BY {}").format(query, parts.order)
        options = COPY_OPTIONS if jsonl else sql.SQL("")
        return sql.SQL("COPY ({}) TO STDOUT {}").format(query, options)

    def arrow_probe(self) -> sql.Composed | None:
        """
        ``SELECT`` of one boolean per array column of the read: whether a row it reads
        holds an array an Arrow list cannot hold (`LIST_CANNOT_HOLD`); None without
        array columns. One scan of what the read covers, before an Arrow read.
        """
        arrays = [c for c in self.columns if c.type.endswith("[]")]
        parts = self.copy_parts
        if not arrays or parts is None:
            return None
        items = sql.SQL(", ").join(
            sql.SQL("coalesce(bool_or(" + LIST_CANNOT_HOLD + "), false)").format(
                _ident(c, self.alias)
            )
            for c in arrays
        )
        query = sql.SQL("SELECT {} FROM {}").format(items, parts.source)
        if parts.where:
            query = sql.SQL("{} WHERE {}").format(query, sql.SQL(" AND ").join(parts.where))
        return query

    def arrow_select(self, as_text: Collection[str] = ()) -> sql.Composed:
        """
        The statement of ``format="arrow"``: the array columns named in ``as_text`` as
        PostgreSQL's text of the array, every other array behind `array_guard` (a value
        the ADBC driver would flatten, or shift to a lower bound of 1, fails the read).
        """
        parts = self.copy_parts
        assert parts is not None
        items = _read_items(self.columns, self.alias, arrow=True, as_text=as_text)
        query = sql.SQL("SELECT {} FROM {}").format(items, parts.source)
        if parts.where:
            query = sql.SQL("{} WHERE {}").format(query, sql.SQL(" AND ").join(parts.where))
        if parts.order is not None:
            query = sql.SQL("{} ORDER BY {}").format(query, parts.order)
        return query

    @property
    def resumable(self) -> bool:
        return bool(self.key_positions) and self.ordered

    def state(self, last_key: Sequence[Any] | None, rows: int) -> State:
        if not self.ordered:
            last_key = None
        state: State = {
            "stream": self.stream,
            "key": list(self.key_names),
            "last": None if last_key is None else [to_state_value(v) for v in last_key],
            "rows": rows,
        }
        if not self.ordered:
            state["unordered"] = True
        return state


class BatchCutter:
    """Turns a stream of row tuples into `Batch` es of dicts with their states."""

    def __init__(self, plan: ReadPlan) -> None:
        self.plan = plan
        self.rows = plan.rows_before
        self._names = plan.names
        self._measuring = plan.measure_width
        #: How many rows to fetch next: a probe first when the width is unknown.
        self.size = min(plan.rows_per_batch, PROBE_ROWS) if self._measuring else plan.rows_per_batch

    def batch(self, rows: list[tuple[Any, ...]]) -> Batch:
        """Dicts for ``rows`` and the state right after the last of them."""
        plan = self.plan
        if self._measuring:
            self._measuring = False
            width = measured_width(rows)
            self.size = max(1, min(plan.rows_per_batch, plan.batch_bytes // width))
        self.rows += len(rows)
        last = rows[-1]
        key = [last[i] for i in plan.key_positions] if plan.key_positions else None
        with gc_paused():
            records = self._records(rows)
        return Batch(plan.stream, records, plan.state(key, self.rows))

    def _records(self, rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
        plan = self.plan
        # map/zip keep the per-row work in C: this loop is the hot path of a read.
        records = list(map(dict, map(zip, repeat(self._names), rows)))
        for position in plan.json_positions:
            name = self._names[position]
            values = json_column(list(map(itemgetter(position), rows)))
            if len(values) != len(records):
                raise AssertionError("a JSON column parsed into another number of values")
            deque(map(setitem, records, repeat(name), values), 0)
        for position, text_position in plan.array_text_positions:
            texts = list(map(itemgetter(text_position), rows))
            if texts.count(None) < len(texts):  # some array a list cannot hold
                name = self._names[position]
                for record, text in zip(records, texts, strict=True):
                    if text is not None:
                        record[name] = text
        for position in plan.json_text_positions:
            name = self._names[position]
            for record in records:
                text = record[name]
                if text is not None:
                    record[name] = JsonText(text)
        return records

    def jsonl_batch(self, rows: list[memoryview]) -> Batch:
        """COPY rows of server-made JSON (each ending in a newline) and the state after them."""
        from headwater.formats import EncodedLines
        from headwater.toolkit import loads_json

        plan = self.plan
        self.rows += len(rows)
        key = None
        if plan.key_names and plan.ordered:
            last = loads_json(rows[-1])
            key = [last[name] for name in plan.key_names]
        data = b"".join(rows)
        return Batch(plan.stream, EncodedLines(data, len(rows)), plan.state(key, self.rows))

    def copy_text_batch(self, rows: list[memoryview]) -> Batch:
        """COPY text rows (each ending in a newline) and the state after them."""
        from headwater.formats import CopyText, copy_text_field

        plan = self.plan
        self.rows += len(rows)
        key = None
        if plan.key_positions and plan.ordered:
            fields = bytes(rows[-1]).rstrip(b"\n").split(b"\t")
            key = [copy_text_field(fields[i].decode("utf-8")) for i in plan.key_positions]
        records = CopyText(b"".join(rows), len(rows), plan.names)
        return Batch(plan.stream, records, plan.state(key, self.rows), text=True)

    def arrow_state(self, key: Sequence[Any] | None, count: int) -> State:
        self.rows += count
        return self.plan.state(key, self.rows)


def measured_width(rows: Sequence[Sequence[Any]]) -> int:
    """Average bytes per row, roughly: the length of text and binary values, 8 for others."""
    total = 0
    for row in rows:
        for value in row:
            total += len(value) if isinstance(value, str | bytes | bytearray | memoryview) else 8
    return max(1, total // max(1, len(rows)))


def _key_columns(
    columns: Sequence[Column],
    primary_key: Sequence[str],
    *,
    key: Sequence[str] | None,
    cursor_field: str | None,
    stream: str,
) -> list[Column]:
    by_name = {c.name: c for c in columns}
    names: list[str]
    if key:
        names = list(key)
    elif cursor_field:
        # The cursor first, then the primary key to break ties, so equal cursor
        # values never make a resumed read skip or repeat rows.
        names = [cursor_field, *[k for k in primary_key if k != cursor_field]]
    else:
        names = list(primary_key)
    if cursor_field and key and cursor_field not in key:
        names = [cursor_field, *names]
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ConfigError(
            f"{stream}: no column {missing[0]!r} (key / cursor_field)", field="cursor_field"
        )
    return [by_name[n] for n in names]


def build_plan(
    stream: str,
    source: Relation | QuerySource,
    state: State | None,
    *,
    batch_size: int,
    batch_bytes: int,
    columns: Sequence[str] | None = None,
    cursor_field: str | None = None,
    key: Sequence[str] | None = None,
    upper: Sequence[Any] | None = None,
    ordered: bool = True,
    jsonl: bool = False,
) -> ReadPlan:
    """
    The plan for reading ``source`` (a catalog `Relation`, or a `QuerySource`).

    ``upper`` bounds the key from above (inclusive): partitions use it. ``ordered=False``
    drops the ORDER BY (a sequential scan; the states cannot be resumed from). ``jsonl``
    adds the COPY statement that has the server write each row's JSON (`_jsonl`).
    """
    if isinstance(source, Relation):
        all_columns: Sequence[Column] = source.columns
        primary_key: Sequence[str] = source.primary_key
        from_clause: sql.Composable = source.ident
        alias = None
        width = source.avg_row_bytes()
    else:
        all_columns = source.columns
        primary_key = ()
        # On lines of its own: a query's trailing ``--`` comment must not eat the bracket.
        from_clause = sql.SQL("{} AS {}").format(subquery(source.query), sql.Identifier("q"))
        alias = "q"
        width = None
    keys = _key_columns(all_columns, primary_key, key=key, cursor_field=cursor_field, stream=stream)

    if columns:
        by_name = {c.name: c for c in all_columns}
        unknown = [c for c in columns if c not in by_name]
        if unknown:
            raise ConfigError(f"{stream}: no column {unknown[0]!r}", field="columns")
        chosen = [by_name[c] for c in columns]
        # The key travels with every row: the state is read from it.
        chosen += [k for k in keys if k.name not in columns]
    else:
        chosen = list(all_columns)
    names = tuple(c.name for c in chosen)
    positions = tuple(names.index(k.name) for k in keys)

    conditions: list[sql.Composable] = []
    rows_before = 0
    if cursor_field:
        conditions.append(
            sql.SQL("{} IS NOT NULL").format(
                sql.Identifier(alias, cursor_field) if alias else sql.Identifier(cursor_field)
            )
        )
    if state:
        rows_before = _check_state(state, stream, keys)
        conditions.append(key_condition(keys, state["last"], source=alias))
    if upper is not None:
        conditions.append(key_condition(keys, upper, source=alias, op="<="))

    def statement(items: sql.Composable) -> sql.Composed:
        query = sql.SQL("SELECT {} FROM {}").format(items, from_clause)
        if conditions:
            query = sql.SQL("{} WHERE {}").format(query, sql.SQL(" AND ").join(conditions))
        if keys and ordered:
            query = sql.SQL("{} ORDER BY {}").format(query, order_by(keys, source=alias))
        return query

    query_sql = statement(_read_items(chosen, alias, arrow=False))
    json_items = None
    if jsonl:
        from headwater_postgres import _jsonl

        expression = _jsonl.json_expression(chosen, source=alias)
        if expression is not None and (not ordered or _jsonl.keys_supported(keys)):
            json_items = expression

    rows_per_batch = batch_size
    if width:
        rows_per_batch = max(1, min(batch_size, batch_bytes // width))
    return ReadPlan(
        stream=stream,
        select=query_sql,
        columns=tuple(chosen),
        alias=alias,
        names=names,
        json_positions=tuple(
            i for i, c in enumerate(chosen) if (c.base_oid or c.type_oid) == JSONB_OID
        ),
        array_text_positions=tuple(
            zip(
                [i for i, c in enumerate(chosen) if c.type.endswith("[]")],
                itertools.count(len(chosen)),
                strict=False,
            )
        ),
        json_text_positions=tuple(
            i for i, c in enumerate(chosen) if (c.base_oid or c.type_oid) == JSON_OID
        ),
        key_positions=positions,
        key_names=tuple(k.name for k in keys),
        rows_per_batch=rows_per_batch,
        rows_before=rows_before,
        batch_bytes=batch_bytes,
        measure_width=not isinstance(source, Relation),
        json_items=json_items,
        ordered=ordered,
        copy_parts=_CopyParts(
            select_items=select_list(chosen, source=alias),
            source=from_clause,
            where=tuple(conditions),
            order=order_by(keys, source=alias) if keys and ordered else None,
            table_oid=source.oid if isinstance(source, Relation) else None,
        ),
    )


def array_guard(col: Column, ident: sql.Composable, *, arrow: bool) -> sql.Composable:
    """
    ``ident`` of an array column, failing the read on a value the reader would change
    (instead of changing it): a lower bound other than 1 (``'[0:1]={7,8}'``), which a
    list cannot hold, and for Arrow any array of more than one dimension, which the
    ADBC driver flattens (``{{1,2},{3,4}}`` → ``[1,2,3,4]``). The error is a cast of a
    message (with the start of the value) to the column's type, made per row so the
    planner cannot fold it; PostgreSQL prints any non-1 lower bound as ``[m:n]=``.
    """
    if arrow:
        condition = LIST_CANNOT_HOLD
        cannot = "a multi-dimensional array or one whose lower bound is not 1, which Arrow"
        fix = 'read it with format="dicts" or "jsonl" (more dimensions, bounds as text) or "csv"'
    else:
        condition = BOUNDS_CONDITION
        cannot = "an array whose lower bound is not 1, which a list"
        fix = 'read it with format="csv" or "pgcopy" (PostgreSQL\'s text form keeps bounds)'
    message = (
        f"headwater: column {col.name!r} ({col.type}) holds {cannot} cannot hold; {fix}. Value: "
    )
    return sql.SQL(
        "CASE WHEN " + condition + " THEN ({1} || left({0}::text, 40))::{2} ELSE {0} END"
    ).format(ident, sql.Literal(message), sql.SQL(col.type))


#: True for an array an Arrow list cannot hold as the ADBC driver reads it: more than one
#: dimension (flattened) or a lower bound other than 1 (shifted to 0).
LIST_CANNOT_HOLD = "array_ndims({0}) > 1 OR array_lower({0}, 1) <> 1"


def _ident(col: Column, alias: str | None) -> sql.Identifier:
    return sql.Identifier(alias, col.name) if alias else sql.Identifier(col.name)


#: True for an array value with a lower bound other than 1, in any dimension (PostgreSQL
#: prints the bounds, "[0:1]=", exactly then); a list cannot hold it.
BOUNDS_CONDITION = "array_lower({0}, 1) <> 1 OR array_ndims({0}) > 1 AND left({0}::text, 1) = '['"


def bounds_text(ident: sql.Composable) -> sql.Composed:
    """The array's text where a list cannot hold it (`BOUNDS_CONDITION`), else NULL."""
    return sql.SQL("CASE WHEN " + BOUNDS_CONDITION + " THEN {0}::text END").format(ident)


def _read_items(
    columns: Sequence[Column], alias: str | None, *, arrow: bool, as_text: Collection[str] = ()
) -> sql.Composed:
    """
    `select_list`, Arrow's array columns behind `array_guard`; for a dict read, after
    the columns, one more per array column: its text where a list cannot hold the value
    (`bounds_text`), which `BatchCutter` puts in the record instead.
    """
    from headwater_postgres._values import JSON_OIDS

    parts: list[sql.Composable] = []
    texts: list[sql.Composable] = []
    for col in columns:
        if arrow and (col.base_oid or col.type_oid) in JSON_OIDS:
            # As stored: the driver reads json/jsonb itself (`_arrow` unwraps its JSON
            # extension type to strings), and the server skips a cast to text per value
            # (~6 % of its CPU on the bench's table, where the server bounds the read).
            parts.append(_ident(col, alias))
            continue
        if not col.type.endswith("[]"):
            parts.append(select_list([col], source=alias))
            continue
        ident = _ident(col, alias)
        if col.name in as_text:
            parts.append(sql.SQL("{}::text AS {}").format(ident, sql.Identifier(col.name)))
            continue
        if not arrow:
            parts.append(select_list([col], source=alias))
            texts.append(bounds_text(ident))
            continue
        from headwater_postgres._values import load_oid

        _oid, cast = load_oid(col.type_oid, col.base_oid)
        parts.append(
            sql.SQL("({})::text[] AS {}" if cast else "{} AS {}").format(
                array_guard(col, ident, arrow=True), sql.Identifier(col.name)
            )
        )
    return sql.SQL(", ").join([*parts, *texts])


def _check_state(state: State, stream: str, keys: Sequence[Column]) -> int:
    from headwater.toolkit import check_keyset_state

    return check_keyset_state(state, stream, [k.name for k in keys], connector="postgres")


def check_options(options: dict[str, Any]) -> None:
    """Refuse unknown read options (typos must not be ignored)."""
    unknown = sorted(set(options) - READ_OPTIONS)
    if unknown:
        raise ConfigError(
            f"postgres: unknown read option(s): {', '.join(unknown)} "
            f"(known: {', '.join(sorted(READ_OPTIONS))})"
        )
    fmt = options.get("format", "dicts")
    if fmt not in ("dicts", "arrow", "jsonl", "pgcopy", "csv"):
        raise ConfigError(
            "read format must be 'dicts', 'arrow', 'jsonl', 'pgcopy' or 'csv'", field="format"
        )
    if not isinstance(options.get("ordered", True), bool):
        raise ConfigError("read option ordered must be true or false", field="ordered")


def as_names(value: str | Sequence[str] | None) -> list[str] | None:
    """A column name or a list of them → a list (or None)."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    return list(value)

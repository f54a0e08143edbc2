"""
Read plans: the statement one ``read`` runs and how its batches and states are cut (pure
logic).

State format (JSON)::

    {"stream": "main.orders", "key": ["id"], "last": ["1234"], "rows": 65536}

``last`` holds DuckDB's text form of the key of the last row delivered (read alongside the
row as ``CAST(key AS VARCHAR)``), so any key type round-trips exactly: resuming casts it
back to the column's type and adds ``WHERE ROW(key) > ROW(last)`` to the same ordered
query (keyset pagination, no OFFSET). Keys are compared as rows because DuckDB orders a
NULL inside a row after every value, as ``ORDER BY ... NULLS LAST`` does, so the filter
and the order agree even where a key column holds NULLs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Final

from headwater import ConfigError, State
from headwater.toolkit import check_keyset_state
from headwater_duckdb._sql import Column, QuerySource, Relation, quote_ident, subquery
from headwater_duckdb._types import is_json_type, read_item

#: Read options `read` accepts besides state and batch_size.
READ_OPTIONS: Final = frozenset({"columns", "cursor_field", "key", "format", "ordered"})

#: Names of the key columns read as text beside each row (dropped from the batches).
KEY_PREFIX: Final = "__headwater_key_"


@dataclasses.dataclass(frozen=True, slots=True)
class ReadPlan:
    """One read: the statement, its parameters, and where the keys are in a row."""

    stream: str
    select: str
    params: tuple[Any, ...]
    #: Data columns (the first ones of each Arrow batch; the key texts follow them).
    names: tuple[str, ...]
    key_names: tuple[str, ...]
    json_positions: tuple[int, ...]
    rows_before: int
    ordered: bool

    @property
    def key_count(self) -> int:
        return len(self.key_names) if self.ordered else 0

    def state(self, last: Sequence[str | None] | None, rows: int) -> State:
        state: State = {
            "stream": self.stream,
            "key": list(self.key_names),
            "last": None if last is None or not self.ordered else list(last),
            "rows": rows,
        }
        if not self.ordered:
            state["unordered"] = True
        return state


def as_names(value: Any, field: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(f"{field} must be a column name or a list of them", field=field)


def check_options(options: dict[str, Any]) -> None:
    """Refuse unknown read options (typos must not be ignored)."""
    unknown = sorted(set(options) - READ_OPTIONS)
    if unknown:
        raise ConfigError(
            f"duckdb: unknown read option(s): {', '.join(unknown)} "
            f"(known: {', '.join(sorted(READ_OPTIONS))})"
        )
    if options.get("format", "arrow") not in ("arrow", None):
        raise ConfigError(
            "duckdb reads give Arrow record batches: format must be 'arrow' "
            "(Batch.rows() gives dicts)",
            field="format",
        )
    if not isinstance(options.get("ordered", True), bool):
        raise ConfigError("ordered must be true or false", field="ordered")


def _by_name(
    columns: Sequence[Column], names: Sequence[str], stream: str, field: str
) -> list[Column]:
    found = {c.name: c for c in columns}
    lower = {c.name.lower(): c for c in columns}
    out = []
    for name in names:
        column = found.get(name) or lower.get(name.lower())
        if column is None:
            raise ConfigError(f"{stream}: no column {name!r} ({field})", field=field)
        out.append(column)
    return out


def build_plan(
    stream: str,
    source: Relation | QuerySource,
    state: State | None,
    options: dict[str, Any],
) -> ReadPlan:
    """The plan for reading ``source`` with the read ``options`` (see `READ_OPTIONS`)."""
    if isinstance(source, Relation):
        all_columns: Sequence[Column] = source.columns
        primary_key: Sequence[str] = source.primary_key
        from_clause = source.ident
    else:
        all_columns = source.columns
        primary_key = ()
        from_clause = f"{subquery(source.query)} AS q"
    cursor_field = options.get("cursor_field")
    if cursor_field is not None and not isinstance(cursor_field, str):
        raise ConfigError("cursor_field must be a column name", field="cursor_field")
    key = as_names(options.get("key"), "key")
    if key:
        names = list(key)
        if cursor_field and cursor_field not in key:
            names = [cursor_field, *names]
    elif cursor_field:
        # The cursor first, then the primary key to break ties, so equal cursor values
        # never make a resumed read skip or repeat rows.
        names = [cursor_field, *[k for k in primary_key if k != cursor_field]]
    else:
        names = list(primary_key)
    keys = _by_name(all_columns, names, stream, "key")
    wanted = as_names(options.get("columns"), "columns")
    if wanted:
        chosen = _by_name(all_columns, wanted, stream, "columns")
        # The key travels with every row: the state is read from it.
        chosen += [k for k in keys if k not in chosen]
    else:
        chosen = list(all_columns)
    ordered = bool(options.get("ordered", True))

    items = [read_item(c) for c in chosen]
    if ordered:
        items += [
            f"CAST({quote_ident(k.name)} AS VARCHAR) AS {quote_ident(KEY_PREFIX + str(i))}"
            for i, k in enumerate(keys)
        ]
    conditions: list[str] = []
    params: list[Any] = []
    rows_before = 0
    if cursor_field:
        (cursor,) = _by_name(all_columns, [cursor_field], stream, "cursor_field")
        conditions.append(f"{quote_ident(cursor.name)} IS NOT NULL")
    if state:
        rows_before = _check_state(state, stream, keys)
        left = ", ".join(quote_ident(k.name) for k in keys)
        right = ", ".join(f"CAST(? AS {k.type})" for k in keys)
        conditions.append(f"ROW({left}) > ROW({right})")
        params.extend(state["last"])
    select = f"SELECT {', '.join(items)} FROM {from_clause}"  # noqa: S608 - identifiers quoted (quote_ident)
    if conditions:
        select += " WHERE " + " AND ".join(conditions)
    if keys and ordered:
        select += " ORDER BY " + ", ".join(f"{quote_ident(k.name)} ASC NULLS LAST" for k in keys)
    return ReadPlan(
        stream=stream,
        select=select,
        params=tuple(params),
        names=tuple(c.name for c in chosen),
        key_names=tuple(k.name for k in keys),
        json_positions=tuple(i for i, c in enumerate(chosen) if is_json_type(c.type)),
        rows_before=rows_before,
        ordered=ordered,
    )


def _check_state(state: State, stream: str, keys: Sequence[Column]) -> int:
    # The state keeps DuckDB's text of each key value (any key type resumes exactly).
    return check_keyset_state(
        state,
        stream,
        [k.name for k in keys],
        connector="duckdb",
        value_ok=lambda value: isinstance(value, str),
    )

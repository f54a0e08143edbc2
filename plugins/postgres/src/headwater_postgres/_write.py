"""
Writes: the statements one ``write`` call runs, and rows → COPY values (pure logic).

The sync and async ``write`` run the same sequence inside one transaction::

    [CREATE TABLE ...]                    when the table is missing and a schema is given
    [TRUNCATE ...]                        mode="replace"
    [CREATE TEMP TABLE stage ...]         upsert_on: rows go to a stage first
    COPY target-or-stage (cols) FROM STDIN (FORMAT BINARY)
    [INSERT INTO target SELECT DISTINCT ON (key) ... FROM stage ON CONFLICT (key) DO UPDATE]

The columns written are those of the first record (missing keys in later records are
NULL; keys the table does not have are an error, raised before anything commits).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Sequence
from operator import itemgetter
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from headwater import Batch, ConfigError
from headwater_postgres._sql import Relation, split_name
from headwater_postgres._values import binary_writable, coercer, pg_type_for

CURRENT_SCHEMA = sql.SQL("SELECT current_schema()")

_JSON_OIDS = frozenset({114, 3802})

Records = Batch | list[dict[str, Any]]


def _names(value: Any, field: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value) and value:
        return list(value)
    raise ConfigError(f"{field} must be a column name or a list of them", field=field)


@dataclasses.dataclass(frozen=True)
class WriteSpec:
    """The options of one ``write`` call, validated."""

    stream: str
    schema: dict[str, Any] | None = None
    primary_key: list[str] | None = None
    upsert_on: list[str] | None = None
    mode: str = "append"

    @classmethod
    def from_options(
        cls, stream: str, options: dict[str, Any], allowed: frozenset[str]
    ) -> WriteSpec:
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise ConfigError(
                f"postgres: unknown write option(s): {', '.join(unknown)} "
                f"(known: {', '.join(sorted(allowed))})"
            )
        mode = options.get("mode", "append")
        if mode not in ("append", "replace"):
            raise ConfigError(
                f"write mode must be 'append' or 'replace', not {mode!r}", field="mode"
            )
        schema = options.get("schema")
        if schema is not None and (not isinstance(schema, dict) or not schema):
            raise ConfigError("schema must map column names to types", field="schema")
        if schema is not None:
            # Validate every declared type now, before any connection is made.
            for column, declared in schema.items():
                pg_type_for(declared, column)
        primary_key = _names(options.get("primary_key"), "primary_key")
        if primary_key and schema and any(k not in schema for k in primary_key):
            raise ConfigError("primary_key names a column the schema lacks", field="primary_key")
        return cls(
            stream=stream,
            schema=dict(schema) if schema else None,
            primary_key=primary_key,
            upsert_on=_names(options.get("upsert_on"), "upsert_on"),
            mode=mode,
        )

    def create_sql(self, current_schema_row: Sequence[Any] | None) -> sql.Composed:
        """``CREATE TABLE`` from the declared schema; NotFound-style error without one."""
        if not self.schema:
            from headwater import NotFound

            raise NotFound(
                f"no table {self.stream!r}",
                field="stream",
                hint="create it first, or pass schema={column: type} to create it",
            )
        schema_name, name = split_name(self.stream)
        if schema_name is None:
            schema_name = current_schema_row[0] if current_schema_row else None
        if schema_name is None:
            raise ConfigError("no current schema to create the table in; qualify the name")
        columns: list[sql.Composable] = [
            sql.SQL("{} {}").format(sql.Identifier(col), sql.SQL(pg_type_for(declared, col)))
            for col, declared in self.schema.items()
        ]
        if self.primary_key:
            columns.append(
                sql.SQL("PRIMARY KEY ({})").format(
                    sql.SQL(", ").join(map(sql.Identifier, self.primary_key))
                )
            )
        return sql.SQL("CREATE TABLE {} ({})").format(
            sql.Identifier(schema_name, name), sql.SQL(", ").join(columns)
        )


class RowWriter:
    """Turns records into COPY rows for one relation; see the module docstring."""

    def __init__(self, spec: WriteSpec, relation: Relation) -> None:
        self.spec = spec
        self.relation = relation
        self.columns: list[str] = []
        self._stage = sql.Identifier(f"headwater_stage_{uuid.uuid4().hex[:12]}")
        self._binary = True
        self._oids: list[int] = []

    # --- statements -------------------------------------------------------------------

    def before(self) -> list[sql.Composed]:
        statements = []
        if self.spec.mode == "replace":
            statements.append(sql.SQL("TRUNCATE {}").format(self.relation.ident))
        if self.spec.upsert_on:
            statements.append(
                sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
                    self._stage, self.relation.ident
                )
            )
        return statements

    @property
    def copy_sql(self) -> sql.Composed:
        target = self._stage if self.spec.upsert_on else self.relation.ident
        fmt = sql.SQL(" (FORMAT BINARY)" if self._binary else "")
        return sql.SQL("COPY {} ({}) FROM STDIN{}").format(
            target, sql.SQL(", ").join(map(sql.Identifier, self.columns)), fmt
        )

    def after(self) -> list[sql.Composed]:
        keys = self.spec.upsert_on
        if not keys or not self.columns:
            return []
        cols = sql.SQL(", ").join(map(sql.Identifier, self.columns))
        key_list = sql.SQL(", ").join(map(sql.Identifier, keys))
        others = [c for c in self.columns if c not in keys]
        action: sql.Composable
        if others:
            action = sql.SQL("DO UPDATE SET {}").format(
                sql.SQL(", ").join(
                    sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c))
                    for c in others
                )
            )
        else:
            action = sql.SQL("DO NOTHING")
        # DISTINCT ON keeps the last record per key (ctid follows insertion order in a
        # fresh temp table): the same key twice in one write is an update, not an error.
        return [
            sql.SQL(
                "INSERT INTO {target} ({cols}) SELECT DISTINCT ON ({keys}) {cols} FROM {stage} "
                "ORDER BY {keys}, ctid DESC ON CONFLICT ({keys}) {action}"
            ).format(
                target=self.relation.ident,
                cols=cols,
                keys=key_list,
                stage=self._stage,
                action=action,
            )
        ]

    # --- rows ---------------------------------------------------------------------------

    def start(self, first: list[dict[str, Any]]) -> None:
        """Fix the columns from the first records; check them against the table."""
        seen: dict[str, None] = {}
        for record in first:
            if not isinstance(record, dict):
                raise ConfigError(f"records must be dicts, got {type(record).__name__}")
            seen.update(dict.fromkeys(record))
        by_name = {c.name: c for c in self.relation.columns}
        unknown = [c for c in seen if c not in by_name]
        if unknown:
            raise ConfigError(
                f"{self.relation.display} has no column {unknown[0]!r}", field="records"
            )
        for key in self.spec.upsert_on or ():
            if key not in seen:
                raise ConfigError(
                    f"upsert_on column {key!r} is not in the records", field="upsert_on"
                )
        if not seen:
            raise ConfigError("the records have no fields", field="records")
        self.columns = list(seen)
        columns = [by_name[c] for c in self.columns]
        self._oids = [c.base_oid or c.type_oid for c in columns]
        self._binary = binary_writable(self._oids)

    def prepare(self, copy: Any) -> None:
        """Tell a binary COPY the column types (it carries none itself)."""
        if self._binary:
            copy.set_types(self._oids)

    def values(self, rows: list[dict[str, Any]]) -> Iterator[Sequence[Any]]:
        """
        One tuple per record, in column order, with per-type conversions applied.

        The common case (every record has exactly the columns, values of the natural
        Python types) runs as C-level passes over the batch, and the tuples are made one
        at a time as COPY consumes them: no Python code per row, and no second copy of
        the batch alive (which would cost more in garbage-collector passes than in work).
        """
        cols = self.columns
        width = len(cols)
        getter = itemgetter(*cols)
        fixes = self._fixes()
        try:
            if set(map(len, rows)) != {width}:
                raise KeyError
            needed = [
                (i, fix)
                for i, native, fix in fixes
                if not set(map(type, map(itemgetter(cols[i]), rows))) <= native
            ]
        except (KeyError, TypeError):
            return self._converted(map(self._slow_row, rows), fixes)
        if needed:
            return self._converted(map(getter, rows), [(i, (), fix) for i, fix in needed])
        if width == 1:
            return zip(map(getter, rows))
        return map(getter, rows)

    @staticmethod
    def _converted(
        tuples: Iterable[Any], fixes: list[tuple[int, Any, Callable[[Any], Any]]]
    ) -> Iterator[Sequence[Any]]:
        for values in tuples:
            row = list(values) if isinstance(values, tuple) else [values]
            for i, _native, fix in fixes:
                value = row[i]
                if value is not None:
                    row[i] = fix(value)
            yield row

    def _slow_row(self, row: dict[str, Any]) -> tuple[Any, ...]:
        if not isinstance(row, dict):
            raise ConfigError(f"records must be dicts, got {type(row).__name__}")
        extra = row.keys() - set(self.columns)
        if extra:
            raise ConfigError(
                f"a record has field(s) {sorted(extra)} that the first records did not have "
                f"(columns: {self.columns})",
                field="records",
            )
        return tuple(row.get(c) for c in self.columns)

    def _fixes(self) -> list[tuple[int, frozenset[type], Callable[[Any], Any]]]:
        fixes: list[tuple[int, frozenset[type], Callable[[Any], Any]]] = []
        for i, oid in enumerate(self._oids):
            if self._binary:
                found = coercer(oid)
                if found is not None:
                    fixes.append((i, *found))
            elif oid in _JSON_OIDS:
                # A text COPY dumps by Python type: JSON values need the Jsonb wrapper.
                fixes.append((i, frozenset({type(None)}), Jsonb))
        return fixes


def records_of(batch: Records) -> list[dict[str, Any]]:
    if isinstance(batch, Batch):
        return batch.rows()
    if isinstance(batch, list):
        return batch
    raise ConfigError(f"write takes batches (lists of dicts), got {type(batch).__name__}")


def split_first(
    batches: Iterable[Records],
) -> tuple[list[dict[str, Any]], Iterator[list[dict[str, Any]]]]:
    """The first non-empty batch's records, and an iterator over the batches after it."""
    it = iter(batches)
    first: list[dict[str, Any]] = []
    for batch in it:
        first = records_of(batch)
        if first:
            break
    return first, map(records_of, it)


async def asplit_first(
    batches: Iterable[Records] | AsyncIterable[Records],
) -> tuple[list[dict[str, Any]], AsyncIterator[list[dict[str, Any]]]]:
    """Async `split_first`."""
    if not isinstance(batches, AsyncIterable):
        first, rest = split_first(batches)

        async def sync_rest() -> AsyncIterator[list[dict[str, Any]]]:
            for records in rest:
                yield records

        return first, sync_rest()
    ait = aiter(batches)
    first = []
    async for batch in ait:
        first = records_of(batch)
        if first:
            break

    async def async_rest() -> AsyncIterator[list[dict[str, Any]]]:
        async for batch in ait:
            yield records_of(batch)

    return first, async_rest()

"""
Part writes (`Capability.PART_WRITES`): an engine writes a table in parts, each exactly once
however often the engine retries its task.

Part ``i`` of job ``J`` is staged in its own table ``hw_part_J_i``, in the destination's
schema, by an ordinary `write` with ``mode="replace"``: TRUNCATE and COPY in one
transaction, so a retried part replaces what an earlier attempt staged and an attempt
that dies leaves nothing (its transaction rolls back). The stage is made ``LIKE`` the
destination when it exists; otherwise from the records' types (or the ``schema`` option),
as `write` creates a table. The commit is one transaction::

    [CREATE TABLE dest (LIKE first part INCLUDING DEFAULTS) [, PRIMARY KEY]]  dest missing
    SELECT count(*) FROM each named part      each must hold what its write_part staged
    [TRUNCATE dest]                           mode="replace"
    INSERT INTO dest SELECT ... FROM part     one per part, in index order; with upsert_on
                                              one INSERT ... ON CONFLICT over all parts,
                                              the last record of a key winning
    DROP TABLE every part of the job          also parts the caller did not name

`abort_parts` drops the job's parts. Nothing here touches the network itself: these are
flows (`_flows`), driven by the connector's sync and async methods.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

from psycopg import sql

from headwater import ConfigError, IntegrityError, NotFound, WriteResult
from headwater.toolkit import check_part
from headwater_postgres._flows import Flow, execute, fetchall, fetchone, within
from headwater_postgres._sql import Relation, split_name

if TYPE_CHECKING:
    from headwater_postgres._connector import PostgresConnector

#: Options a part's staging write uses; the commit uses ``COMMIT_OPTIONS``.
PART_OPTIONS: Final = frozenset({"schema", "text_values"})
COMMIT_OPTIONS: Final = frozenset({"schema", "primary_key", "upsert_on", "mode"})

_CURRENT_SCHEMA: Final = sql.SQL("SELECT current_schema()")
_STAGED: Final = sql.SQL(
    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = %s AND c.relkind = 'r' AND c.relname ~ %s"
)
#: The destination's columns an INSERT may name (not generated, not identity ALWAYS).
_INSERTABLE: Final = sql.SQL(
    "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 "
    "AND NOT attisdropped AND attgenerated = '' AND attidentity <> 'a' ORDER BY attnum"
)


def stage_name(job: str, index: int) -> str:
    """The table part ``index`` of ``job`` is staged in (in the destination's schema)."""
    return f"hw_part_{job}_{index}"


def _quoted(schema: str, name: str) -> str:
    """``"schema"."name"``, a stream name `split_name` reads back as these two parts."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in (schema, name))


def _stage_pattern(job: str) -> str:
    return f"^hw_part_{re.escape(job)}_([0-9]+)$"


def check_options(options: Mapping[str, Any]) -> None:
    """Refuse options a part write cannot honour (the state rides on one write only)."""
    unknown = sorted(set(options) - PART_OPTIONS - COMMIT_OPTIONS)
    if unknown:
        raise ConfigError(
            f"postgres: unknown part-write option(s): {', '.join(unknown)} "
            f"(known: {', '.join(sorted(PART_OPTIONS | COMMIT_OPTIONS))})",
            field=unknown[0],
        )


def part_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options a part's staging write takes."""
    return {key: value for key, value in options.items() if key in PART_OPTIONS}


def _destination_schema(conn: Any, stream: str) -> Flow[str]:
    schema, _name = split_name(stream)
    if schema is not None:
        return schema
    row = yield fetchone(conn, _CURRENT_SCHEMA)
    if not row or row[0] is None:
        raise ConfigError("no current schema for the parts; qualify the table name")
    return str(row[0])


def _staged(conn: Any, schema: str, job: str) -> Flow[dict[int, str]]:
    """The job's staged parts: index -> table name."""
    rows = yield fetchall(conn, _STAGED, (schema, _stage_pattern(job)))
    found: dict[int, str] = {}
    for (name,) in rows:
        match = re.fullmatch(_stage_pattern(job), name)
        if match is not None:
            found[int(match.group(1))] = name
    return found


def _drop(conn: Any, schema: str, names: Iterable[str]) -> Flow[None]:
    idents = [sql.Identifier(schema, name) for name in sorted(names)]
    if idents:
        yield execute(conn, sql.SQL("DROP TABLE IF EXISTS {}").format(sql.SQL(", ").join(idents)))


def non_empty(batches: Iterable[Any]) -> Iterator[Any] | None:
    """``batches`` from the first one holding records on, or None when none holds any."""
    it = iter(batches)
    for batch in it:
        if len(batch):
            return itertools.chain([batch], it)
    return None


def prepare_stage(
    connector: PostgresConnector, stream: str, job: str, index: int, empty: bool
) -> Flow[str]:
    """
    The stage's quoted name, the stage made ``LIKE`` the destination when that exists
    (else `write` creates it from the records); an ``empty`` part drops any stage an
    earlier attempt left, since this attempt stages nothing.
    """

    def body(conn: Any) -> Flow[str]:
        schema = yield from _destination_schema(conn, stream)
        name = stage_name(job, index)
        stage = sql.Identifier(schema, name)
        if empty:
            yield from _drop(conn, schema, [name])
        else:
            relation = yield from connector._relation(conn, stream)
            if relation is not None:
                yield execute(
                    conn,
                    sql.SQL("CREATE TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS)").format(
                        stage, relation.ident
                    ),
                )
        return _quoted(schema, name)

    def transaction(conn: Any) -> Flow[str]:
        return (yield from within(conn.transaction(), lambda _: body(conn)))

    return (yield from connector._translated(connector._pooled(transaction)))


def commit(
    connector: PostgresConnector,
    stream: str,
    job: str,
    parts: Mapping[int, int],
    options: Mapping[str, Any],
) -> Flow[WriteResult]:
    """The commit of the module docstring, in one transaction."""
    check_part(job, parts=parts)
    check_options(options)
    from headwater_postgres._write import WriteSpec

    chosen = {key: value for key, value in options.items() if key in COMMIT_OPTIONS}
    spec = WriteSpec.from_options(stream, chosen, COMMIT_OPTIONS)

    def body(conn: Any) -> Flow[int]:
        schema = yield from _destination_schema(conn, stream)
        staged = yield from _staged(conn, schema, job)
        named: list[str] = []
        for index in sorted(parts):
            expected = parts[index]
            name = staged.get(index)
            if name is None:
                if expected == 0:
                    continue
                raise IntegrityError(
                    f"part {index} of write job {job} into {stream!r} is not staged "
                    f"({expected} records were): nothing was committed",
                    field="parts",
                )
            row = yield fetchone(
                conn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))
            )
            found = int(row[0]) if row else 0
            if found != expected:
                raise IntegrityError(
                    f"part {index} of write job {job} into {stream!r} holds {found} records, "
                    f"not the {expected} its write staged: nothing was committed",
                    field="parts",
                )
            named.append(name)
        relation = yield from connector._relation(conn, stream)
        if relation is None:
            relation = yield from _create(conn, connector, spec, schema, named)
        if spec.mode == "replace":
            yield execute(conn, sql.SQL("TRUNCATE {}").format(relation.ident))
        written = 0
        if named:
            written = yield from _insert(conn, connector, spec, relation, schema, named)
        yield from _drop(conn, schema, staged.values())
        return written

    def transaction(conn: Any) -> Flow[int]:
        return (yield from within(conn.transaction(), lambda _: body(conn)))

    written = yield from connector._translated(connector._pooled(transaction))
    return WriteResult(stream, written)


def _create(
    conn: Any, connector: PostgresConnector, spec: Any, schema: str, named: list[str]
) -> Flow[Relation]:
    """The missing destination: from the ``schema`` option, or ``LIKE`` the first part."""
    if spec.schema is not None:
        yield execute(conn, spec.create_sql((schema,)))
    elif named:
        target = sql.Identifier(*_parts_of(spec.stream, schema))
        yield execute(
            conn,
            sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS)").format(
                target, sql.Identifier(schema, named[0])
            ),
        )
        if spec.primary_key:
            keys = sql.SQL(", ").join(map(sql.Identifier, spec.primary_key))
            yield execute(conn, sql.SQL("ALTER TABLE {} ADD PRIMARY KEY ({})").format(target, keys))
    else:
        raise NotFound(
            f"no table {spec.stream!r} and no records to create it from",
            field="stream",
            hint="create it first, or pass schema={column: type} to create it",
        )
    relation = yield from connector._relation(conn, spec.stream)
    if relation is None:  # pragma: no cover - created just above
        raise connector._missing(spec.stream)
    return relation


def _parts_of(stream: str, schema: str) -> tuple[str, str]:
    _schema, name = split_name(stream)
    return schema, name


def _insert(
    conn: Any,
    connector: PostgresConnector,
    spec: Any,
    relation: Relation,
    schema: str,
    named: list[str],
) -> Flow[int]:
    """Insert the named parts into the destination; the records inserted or upserted."""
    rows = yield fetchall(conn, _INSERTABLE, (relation.oid,))
    insertable = [row[0] for row in rows]
    first = yield from connector._relation(conn, _quoted(schema, named[0]))
    if first is None:  # pragma: no cover - counted just above, in this transaction
        raise connector._missing(named[0])
    staged = {column.name for column in first.columns}
    columns = [name for name in insertable if name in staged]
    missing = sorted(staged - set(insertable))
    if missing:
        raise ConfigError(
            f"the parts hold column {missing[0]!r}, which {relation.display} cannot take",
            field="columns",
        )
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    count: Callable[[Any], int] = lambda cur: int(cur.rowcount)  # noqa: E731
    keys = spec.upsert_on
    if not keys:
        written = 0
        for name in named:
            statement = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
                relation.ident, cols, cols, sql.Identifier(schema, name)
            )
            written += count((yield execute(conn, statement)))
        return written
    # The last record of a key wins, as in one write of all the parts in order.
    order_part, order_row = sql.Identifier("headwater_part_"), sql.Identifier("headwater_row_")
    union = sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT {}, {} AS {}, ctid AS {} FROM {}").format(
            cols, sql.Literal(position), order_part, order_row, sql.Identifier(schema, name)
        )
        for position, name in enumerate(named)
    )
    key_list = sql.SQL(", ").join(map(sql.Identifier, keys))
    others = [c for c in columns if c not in keys]
    action: sql.Composable = sql.SQL("DO NOTHING")
    if others:
        action = sql.SQL("DO UPDATE SET {}").format(
            sql.SQL(", ").join(
                sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c))
                for c in others
            )
        )
    statement = sql.SQL(
        "INSERT INTO {target} ({cols}) SELECT DISTINCT ON ({keys}) {cols} FROM ({union}) AS parts "
        "ORDER BY {keys}, {part} DESC, {row} DESC ON CONFLICT ({keys}) {action}"
    ).format(
        target=relation.ident,
        cols=cols,
        keys=key_list,
        union=union,
        part=order_part,
        row=order_row,
        action=action,
    )
    return count((yield execute(conn, statement)))


def abort(connector: PostgresConnector, stream: str, job: str) -> Flow[None]:
    """Drop every staged part of ``job`` (none is fine)."""
    check_part(job)

    def body(conn: Any) -> Flow[None]:
        schema = yield from _destination_schema(conn, stream)
        staged = yield from _staged(conn, schema, job)
        yield from _drop(conn, schema, staged.values())

    def transaction(conn: Any) -> Flow[None]:
        return (yield from within(conn.transaction(), lambda _: body(conn)))

    yield from connector._translated(connector._pooled(transaction))

"""
The hand-off to Arrow, pandas, polars and DuckDB: any connector's stream as a
``pyarrow.RecordBatchReader`` (`record_batch_reader`), or in one call as a
``pyarrow.Table`` (`to_arrow`), a pandas DataFrame with Arrow-backed dtypes
(`to_pandas`) or a polars DataFrame (`to_polars`).

How batches become Arrow:

* a connector that reads Arrow natively (``"arrow"`` in its ``read_formats``: PostgreSQL
  through ADBC, DuckDB, Parquet files) is asked for Arrow, and its record batches are
  passed on untouched; the first batch's schema is the stream's (PostgreSQL without its
  ``[arrow]`` extra falls back to dict batches);
* dict batches are converted by the format layer (`headwater.formats.arrow_from_records`:
  objects and lists become JSON text marked with `headwater.formats.JSON_FIELD_METADATA`,
  so `headwater.formats.arrow_rows` gives them back as they were), then brought to **one
  schema for the whole stream**: columns missing from a batch are NULL there, types
  widen only where no value changes (`headwater.formats.unify_arrow_schemas`, as the
  Parquet sink does), a column that was all NULL takes the type its values have later.

`to_arrow` (and the DataFrames built on it) holds the whole stream anyway, so the schema
may grow while it reads: a column that first appears in the millionth record is there,
NULL before it. A `record_batch_reader` must state its schema before its first batch:
with dict batches it reads ahead the batches holding the first ``infer_rows`` records
(10,000 unless told) and takes the schema they make together, so a column all NULL in
the first batch, or first seen a few batches on, is typed by its values. A batch that
does not fit that schema afterwards (a new column, a value of another type) is an error
naming the column, never a silently dropped value; give ``schema=`` for such streams.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from headwater._connector import Batch, Connector, State
from headwater._copy import SourceLike, _file_source, open_source
from headwater.errors import ConfigError
from headwater.formats import (
    JSON_FIELD_METADATA,
    JsonText,
    arrow_from_records,
    cast_arrow_table,
    dumps_document,
    unify_arrow_schemas,
)

if TYPE_CHECKING:
    import pandas
    import polars
    import pyarrow

    from headwater._plugins import Registry

#: Records a `record_batch_reader` of dict batches reads ahead at most to settle its schema.
DEFAULT_INFER_ROWS = 10_000

_JSON_KEY = next(iter(JSON_FIELD_METADATA))


T = TypeVar("T")


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError:
        raise ConfigError(
            "the Arrow hand-off needs pyarrow", hint="pip install 'headwater[arrow]'"
        ) from None
    return pyarrow


# --- the read ------------------------------------------------------------------------------


class _Read:
    """
    One open read of a stream: the connector (closed at the end when opened here), the
    read options (Arrow asked for where the connector has it) and the row limit.
    """

    def __init__(
        self,
        source: SourceLike,
        stream: str | None,
        *,
        state: State | None,
        limit: int | None,
        batch_size: int | None,
        read_options: dict[str, Any] | None,
        registry: Registry | None,
    ) -> None:
        if limit is not None and limit < 1:
            raise ConfigError("limit must be at least 1", field="limit")
        self.owned: Connector[Any] | None = None
        if isinstance(source, Connector):
            self.connector = source
        elif isinstance(source, os.PathLike) or (isinstance(source, str) and stream is None):
            self.connector, stream = _file_source(source)
            self.owned = self.connector
        else:
            self.connector = self.owned = open_source(source, registry=registry)
        if not stream:
            self.close()
            raise ConfigError("the Arrow hand-off needs the stream to read", field="stream")
        self.stream = stream
        self.state = state
        self.limit = limit
        self.batch_size = batch_size
        self.options = dict(read_options or {})
        #: Arrow was asked for on the caller's behalf (not in ``read_options``).
        self.arrow_default = "format" not in self.options and (
            "arrow" in self.connector.read_formats
        )
        if self.arrow_default:
            self.options["format"] = "arrow"

    def batches(self) -> Iterator[Batch]:
        """The stream's batches, cut at the limit; the read is closed however it ends."""
        taken = 0
        batches = self._open()
        try:
            for batch in batches:
                if self.limit is not None and taken + len(batch) >= self.limit:
                    yield _head(batch, self.limit - taken)
                    return
                taken += len(batch)
                yield batch
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()

    def _open(self) -> Iterator[Batch]:
        read = self.connector.read(
            self.stream, self.state, batch_size=self.batch_size, **self.options
        )
        if not self.arrow_default:
            return read
        # Arrow by default; a connector whose Arrow path needs an extra that is missing
        # (PostgreSQL's ADBC driver) says so on the first batch: read dicts instead.
        try:
            first = next(read, None)
        except ConfigError as exc:
            if exc.field != "format":
                raise
            self.options.pop("format")
            self.arrow_default = False
            return self.connector.read(
                self.stream, self.state, batch_size=self.batch_size, **self.options
            )
        return _chain(first, read)

    def close(self) -> None:
        if self.owned is not None:
            self.owned.close()
            self.owned = None


def _chain(first: Batch | None, rest: Iterator[Batch]) -> Iterator[Batch]:
    try:
        if first is not None:
            yield first
            yield from rest
    finally:
        close = getattr(rest, "close", None)
        if close is not None:
            close()


def _head(batch: Batch, count: int) -> Batch:
    records = batch.records
    head = records[:count] if isinstance(records, list) else records.slice(0, count)
    return Batch(batch.stream, head, batch.state, text=batch.text)


# --- one schema ------------------------------------------------------------------------------


def _is_json(field: Any) -> bool:
    return bool(field.metadata) and field.metadata.get(_JSON_KEY) == JSON_FIELD_METADATA[_JSON_KEY]


def _table(batch: Batch) -> Any:
    """A batch's records as a ``pyarrow.Table`` (dicts as the format layer makes them)."""
    pa = _pyarrow()
    records = batch.records
    if isinstance(records, pa.RecordBatch):
        return pa.Table.from_batches([records])
    if isinstance(records, pa.Table):
        return records
    return arrow_from_records(batch.rows())


def _arrow_of(batch: Batch) -> Any:
    """A batch's Arrow record batch as it came, or its records as a ``pyarrow.Table``."""
    records = batch.records
    if type(records).__name__ == "RecordBatch" and type(records).__module__.startswith("pyarrow"):
        return records
    return _table(batch)


def unify(schemas: list[Any]) -> Any:
    """
    One schema for ``schemas`` (`headwater.formats.unify_arrow_schemas`), with every
    column that is JSON text in any of them marked as JSON in the result.
    """
    pa = _pyarrow()
    unified = unify_arrow_schemas(_decimals_as_text(schemas))
    marked = {f.name for s in schemas for f in s if _is_json(f)}
    if not marked:
        return unified
    fields = [
        f.with_metadata({**(f.metadata or {}), **JSON_FIELD_METADATA})
        if f.name in marked and not _is_json(f)
        else f
        for f in unified
    ]
    return pa.schema(fields, metadata=unified.metadata)


def _decimals_as_text(schemas: list[Any]) -> list[Any]:
    """
    ``schemas`` with a column that is decimal in some and text in others, or decimal of
    different scales, made text in all: the numbers' text keeps every digit (as the
    format layer keeps a batch's decimals of mixed scales), where a widened decimal type
    would add zeros to some of them.
    """
    pa = _pyarrow()
    kinds: dict[str, set[Any]] = {}
    for schema in schemas:
        for field in schema:
            kinds.setdefault(field.name, set()).add(field.type)
    text = {
        name
        for name, types in kinds.items()
        if any(pa.types.is_decimal(t) for t in types)
        and (
            len({t.scale for t in types if pa.types.is_decimal(t)}) > 1
            or any(pa.types.is_string(t) or pa.types.is_large_string(t) for t in types)
        )
    }
    if not text:
        return schemas
    return [
        pa.schema(
            [f.with_type(pa.string()) if f.name in text else f for f in schema],
            metadata=schema.metadata,
        )
        for schema in schemas
    ]


def _misfit(table: Any, schema: Any) -> str | None:
    """The first column of ``table`` that ``schema`` cannot hold as it is, or None."""
    pa = _pyarrow()
    for field in table.schema:
        if field.name not in schema.names:
            return str(field.name)
        target = schema.field(field.name)
        if _is_json(target):
            continue  # any value is written as JSON text (`conform`)
        if _is_json(field):
            return str(field.name)
        if field.type.equals(target.type) or pa.types.is_null(field.type):
            continue
        if pa.types.is_decimal(field.type) and pa.types.is_string(target.type):
            continue  # the numbers' text, every digit
        try:
            unified = pa.unify_schemas(
                [pa.schema([target]), pa.schema([field])], promote_options="permissive"
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return str(field.name)
        if not unified.field(0).type.equals(target.type):
            return str(field.name)  # the schema's type would have to widen
    return None


def conform(table: Any, schema: Any) -> Any:
    """
    ``table`` in ``schema``: columns in its order, the missing ones NULL, types cast where
    no value changes, and a column that is JSON in ``schema`` but plain values in
    ``table`` (a batch before the column held its first object) written as JSON text.

    Raises:
        ConfigError: a value the schema's type cannot hold, naming the column.
    """
    pa = _pyarrow()
    if table.schema.equals(schema, check_metadata=True):
        return table
    for index, field in enumerate(table.schema):
        target = schema.field(field.name) if field.name in schema.names else None
        if target is not None and _is_json(target) and not _is_json(field):
            values = [
                None if v is None else v if type(v) is JsonText else dumps_document(v)
                for v in table.column(index).to_pylist()
            ]
            table = table.set_column(index, target, pa.array(values, type=pa.string()))
    cast = cast_arrow_table(table, schema)
    if not cast.schema.equals(schema, check_metadata=True):
        cast = cast.cast(schema)  # metadata only: the types already match
    return cast


def _unfit(column: str, schema_source: str) -> ConfigError:
    return ConfigError(
        f"column {column!r} does not fit the reader's schema ({schema_source}): it appears, "
        "or holds values of another type, only after the reader's first batches",
        field=column,
        hint="pass schema=... (a pyarrow.Schema), a larger infer_rows=, or use to_arrow() / "
        "to_pandas() / to_polars(), which widen the schema as they read",
    )


# --- the reader -------------------------------------------------------------------------------


def record_batch_reader(
    source: SourceLike,
    stream: str | None = None,
    *,
    state: State | None = None,
    limit: int | None = None,
    batch_size: int | None = None,
    read_options: dict[str, Any] | None = None,
    schema: pyarrow.Schema | None = None,
    infer_rows: int = DEFAULT_INFER_ROWS,
    registry: Registry | None = None,
) -> pyarrow.RecordBatchReader:
    """
    ``stream`` of ``source`` as a ``pyarrow.RecordBatchReader``: batches are read from the
    connector only as the reader is consumed, so memory stays bounded whatever the
    stream's size. DuckDB, polars and DataFusion read it lazily::

        reader = headwater.record_batch_reader("warehouse", "public.orders")
        duckdb.sql("SELECT status, count(*) FROM reader GROUP BY status")

    Arrow batches of a connector that reads Arrow natively are passed on untouched; dict
    batches are converted with one schema for the whole stream (see the module
    docstring of ``headwater._frames``: objects and lists are JSON text, marked as JSON
    in the field metadata).

    Args:
        source: a connector, a saved source name or URL, or a local file (a path; then
            ``stream`` is ``None``), as for `headwater.copy`.
        stream: what to read from ``source``.
        state: resume after the batch this state came from.
        limit: at most this many records.
        batch_size, read_options: passed to the connector's ``read``
            (``read_options={"format": "dicts"}`` asks a connector that reads Arrow for
            its dict batches instead).
        schema: the reader's schema; every batch is brought to it (a column it lacks is
            an error naming the column). Without it: the connector's (Arrow), or what
            the first ``infer_rows`` records say together (dicts; the batches holding
            them are read ahead and kept until the reader hands them on).
        registry: the plugin registry for names and URLs (the process default otherwise).

    The read (and a connector opened here) is closed when the reader is exhausted or
    garbage-collected.

    Raises:
        ConfigError: pyarrow is missing, or a batch does not fit the schema (naming the
            column).
    """
    pa = _pyarrow()
    if infer_rows < 1:
        raise ConfigError("infer_rows must be at least 1", field="infer_rows")
    read = _Read(
        source, stream, state=state, limit=limit, batch_size=batch_size,
        read_options=read_options, registry=registry,
    )  # fmt: skip
    try:
        batches = _reader_batches(read, schema, infer_rows)
        reader_schema = next(batches)
    except BaseException:
        read.close()
        raise
    return pa.RecordBatchReader.from_batches(reader_schema, batches)


def _reader_batches(read: _Read, given: Any, infer_rows: int) -> Iterator[Any]:
    """The reader's schema first, then its record batches; the read is closed at the end."""
    pa = _pyarrow()
    try:
        batches = read.batches()
        try:
            ahead: list[Any] = []
            schema = given
            origin = "given"
            if schema is None:
                schema, origin = _settle(batches, ahead, infer_rows)
            yield schema
            for data in itertools.chain(ahead, map(_arrow_of, batches)):
                if isinstance(data, pa.RecordBatch):
                    if data.schema.equals(schema):
                        yield data  # Arrow, untouched
                        continue
                    data = pa.Table.from_batches([data])
                yield from _fitted(data, schema, origin)
        finally:
            batches.close()  # type: ignore[attr-defined]
    finally:
        read.close()


def _settle(batches: Iterator[Batch], ahead: list[Any], infer_rows: int) -> tuple[Any, str]:
    """
    The reader's schema from the first batches (kept in ``ahead``): an Arrow batch's own,
    or that of the dict batches holding the first ``infer_rows`` records, unified.
    """
    pa = _pyarrow()
    rows = 0
    schema = None
    for batch in batches:
        table = _arrow_of(batch)
        ahead.append(table)
        if isinstance(table, pa.RecordBatch):
            return table.schema, "the connector's"
        schema = table.schema if schema is None else unify([schema, table.schema])
        rows += table.num_rows
        if rows >= infer_rows:
            break
    if schema is None:
        return pa.schema([]), "an empty stream's"
    return _roomy(schema), f"inferred from the first {rows} records"


def _roomy(schema: Any) -> Any:
    """
    An inferred schema with room for the batches still to come: a decimal column as the
    numbers' text (every digit kept), since a later batch may hold more digits after the
    point than the first ones, which one Arrow decimal type could not hold unchanged (the
    format layer does the same within a batch).
    """
    pa = _pyarrow()
    fields = [
        field.with_type(pa.string()) if pa.types.is_decimal(field.type) else field
        for field in schema
    ]
    return pa.schema(fields, metadata=schema.metadata)


def _fitted(table: Any, schema: Any, origin: str) -> Iterator[Any]:
    column = _misfit(table, schema)
    if column is not None:
        raise _unfit(column, origin)
    try:
        yield from conform(table, schema).to_batches()
    except ConfigError as exc:
        raise _unfit(exc.field or "?", origin) from None


# --- whole streams ------------------------------------------------------------------------------


def to_arrow(
    source: SourceLike,
    stream: str | None = None,
    *,
    state: State | None = None,
    limit: int | None = None,
    batch_size: int | None = None,
    read_options: dict[str, Any] | None = None,
    schema: pyarrow.Schema | None = None,
    registry: Registry | None = None,
) -> pyarrow.Table:
    """
    ``stream`` of ``source`` as one ``pyarrow.Table``. Arrow batches are kept as they
    came (no copy); dict batches are brought to one schema that grows as the stream
    goes: a column all NULL at first takes the type of its later values, a column that
    appears late is NULL in the records before it. Arguments as for
    `record_batch_reader` (a ``schema`` given is the table's, fixed).

    Raises:
        ConfigError: pyarrow is missing, or a column's values have no common Arrow type
            (naming the column).
    """
    pa = _pyarrow()
    read = _Read(
        source, stream, state=state, limit=limit, batch_size=batch_size,
        read_options=read_options, registry=registry,
    )  # fmt: skip
    try:
        batches = read.batches()
        try:
            tables = [_table(batch) for batch in batches]
        finally:
            batches.close()  # type: ignore[attr-defined]
    finally:
        read.close()
    if schema is not None:
        for table in tables:
            column = _misfit(table, schema)
            if column is not None:
                raise _unfit(column, "given")
    else:
        distinct: dict[Any, None] = {}
        for table in tables:
            distinct.setdefault(table.schema, None)
        schemas = list(distinct)
        schema = (
            pa.schema([]) if not schemas else schemas[0] if len(schemas) == 1 else unify(schemas)
        )
    return pa.Table.from_batches(
        [b for table in tables for b in conform(table, schema).to_batches()], schema=schema
    )


def to_pandas(
    source: SourceLike,
    stream: str | None = None,
    *,
    state: State | None = None,
    limit: int | None = None,
    batch_size: int | None = None,
    read_options: dict[str, Any] | None = None,
    schema: pyarrow.Schema | None = None,
    registry: Registry | None = None,
) -> pandas.DataFrame:
    """
    ``stream`` of ``source`` as a pandas DataFrame with Arrow-backed dtypes
    (``pandas.ArrowDtype``): values keep their Arrow types (exact decimals, timestamps
    with their time zone, NULL apart from NaN), and the columns share the Arrow buffers
    of `to_arrow` instead of copying them into NumPy. JSON columns hold JSON text.
    Arguments as for `to_arrow`. Needs ``pip install 'headwater[pandas]'``.
    """
    try:
        import pandas as pd
    except ImportError:
        raise ConfigError(
            "to_pandas needs pandas", hint="pip install 'headwater[pandas]'"
        ) from None
    table = to_arrow(
        source, stream, state=state, limit=limit, batch_size=batch_size,
        read_options=read_options, schema=schema, registry=registry,
    )  # fmt: skip
    return table.to_pandas(types_mapper=pd.ArrowDtype)


def to_polars(
    source: SourceLike,
    stream: str | None = None,
    *,
    state: State | None = None,
    limit: int | None = None,
    batch_size: int | None = None,
    read_options: dict[str, Any] | None = None,
    schema: pyarrow.Schema | None = None,
    registry: Registry | None = None,
) -> polars.DataFrame:
    """
    ``stream`` of ``source`` as a polars DataFrame (from `to_arrow`, mostly without a
    copy). JSON columns hold JSON text. Arguments as for `to_arrow`. Needs
    ``pip install 'headwater[polars]'``.
    """
    try:
        import polars as pl
    except ImportError:
        raise ConfigError(
            "to_polars needs polars", hint="pip install 'headwater[polars]'"
        ) from None
    table = to_arrow(
        source, stream, state=state, limit=limit, batch_size=batch_size,
        read_options=read_options, schema=schema, registry=registry,
    )  # fmt: skip
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _in_thread(function: Callable[..., T]) -> Callable[..., Coroutine[Any, Any, T]]:
    """The async twin of ``function``: the whole read runs on a worker thread."""

    @functools.wraps(function)
    async def twin(*args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(function, *args, **kwargs)

    twin.__name__ = twin.__qualname__ = f"a{function.__name__}"
    twin.__doc__ = (
        f"Async twin of `{function.__name__}`, same arguments: the read and the conversion "
        "run on a worker thread, off the event loop (the table is built in memory either "
        "way, so nothing is gained by interleaving them with other tasks)."
    )
    return twin


ato_arrow = _in_thread(to_arrow)
ato_pandas = _in_thread(to_pandas)
ato_polars = _in_thread(to_polars)


__all__ = [
    "DEFAULT_INFER_ROWS",
    "ato_arrow",
    "ato_pandas",
    "ato_polars",
    "conform",
    "record_batch_reader",
    "to_arrow",
    "to_pandas",
    "to_polars",
    "unify",
]

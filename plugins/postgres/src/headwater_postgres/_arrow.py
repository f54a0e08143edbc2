"""
The Arrow fast path: record batches from the ADBC PostgreSQL driver (optional extra).

The ADBC driver reads the server's binary COPY output straight into Arrow buffers in C,
so no Python object is built per value. The statement is the read plan's (same key
order, same resumption condition), and each batch's state is taken from its last row,
so Arrow and dict reads of a stream share states. Arrow types are the driver's mapping
(e.g. numeric → string, json/jsonb → string: the server's text of each document, which
the driver reads as Arrow's JSON extension type, unwrapped to its strings), not the dict
mapping, checked and corrected where the driver's would change a value (`_Corrections`):

* oid: uint32 (the driver gives int32, so 4294967295 arrived as -1);
* date / timestamp / timestamptz: ±infinity as the type's extreme values (date32
  2**31-1 / -2**31 days, timestamp 2**63-1 / -2**63 µs), which `write` turns back into
  ±infinity (the driver shifts the server's 2000-based values to 1970 and so wraps
  them); a timestamp past year 292277 wraps too and is refused, naming the column;
* interval: its ISO 8601 duration as a string (field metadata ``headwater.type:
  interval``), which Parquet stores and `write` reads (Arrow's month_day_nano has no
  Parquet type);
* arrays of more than one dimension or with a lower bound other than 1, which the
  driver flattens or shifts: where a probe of the rows to read finds one, the column
  is read as PostgreSQL's text of each array, a string marked with
  `ARRAY_TEXT_METADATA` (``write`` hands it back to the server); one arriving after the
  probe fails the read (`_plan.array_guard`), never flattened.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Collection, Iterator
from typing import Any

from headwater import Batch, ConfigError, ConnectorError
from headwater.formats import JSON_FIELD_METADATA
from headwater.toolkit import forget_after_fork
from headwater_postgres._plan import BatchCutter, ReadPlan
from headwater_postgres._values import IntervalParts

#: Days and microseconds from 1970-01-01 (Arrow's epoch) to 2000-01-01 (PostgreSQL's).
DATE_SHIFT = 10_957
TIMESTAMP_SHIFT = 946_684_800_000_000
#: The earliest date PostgreSQL holds (4714-11-24 BC), in days and µs since 1970: any
#: value below is one the driver wrapped.
_PG_MIN_DAYS = -2_440_588
_PG_MIN_MICROS = _PG_MIN_DAYS * 86_400_000_000
_POSTGRES_TYPE = b"POSTGRESQL:type"
INTERVAL_METADATA = {b"headwater.type": b"interval"}
#: An array column read as PostgreSQL's text of each array (which `write` hands to the
#: server), with the column's type under `_PG_TYPE`: more dimensions or other bounds
#: than an Arrow list holds.
ARRAY_TEXT_METADATA = {b"headwater.type": b"postgres_text"}
_PG_TYPE = b"headwater.postgres_type"
#: jsonb (a domain over it counts by its base type): its text is the server's canonical
#: form, so the column is marked as JSON (`JSON_FIELD_METADATA`) and read back as the
#: documents a dict read gives. A json column stays plain text: it keeps the document as
#: written (key order, duplicate keys, digits), as the dict read's `JsonText` does.
JSONB_OIDS = frozenset({3802})


def _checked(field: Any, column: Any) -> tuple[Any, Any]:
    import pyarrow as pa

    kind = field.type
    pg_type = (field.metadata or {}).get(_POSTGRES_TYPE, b"").decode()
    if _is_json(kind):
        # The driver's JSON extension type over the server's text of each document: the
        # strings themselves, as every Arrow source of headwater gives JSON (marked below
        # for jsonb, `_marked_fields`).
        return field.with_type(kind.storage_type), column.storage
    if pa.types.is_date32(kind):
        return field, _infinities(field, column, pa.int32(), 32, DATE_SHIFT, _PG_MIN_DAYS, pg_type)
    if pa.types.is_timestamp(kind) and kind.unit == "us":
        shift, low = TIMESTAMP_SHIFT, _PG_MIN_MICROS
        return field, _infinities(field, column, pa.int64(), 64, shift, low, pg_type)
    if pa.types.is_interval(kind):
        texts = [
            None if v is None else IntervalParts.from_month_day_nano(v).iso()
            for v in column.to_pylist()
        ]
        metadata = {**(field.metadata or {}), **INTERVAL_METADATA}
        return pa.field(field.name, pa.string(), field.nullable, metadata), pa.array(
            texts, pa.string()
        )
    if isinstance(kind, pa.OpaqueType) and kind.type_name == "numeric":
        return field, _numeric_text(column)
    if pa.types.is_int32(kind) and pg_type == "oid":
        return field.with_type(pa.uint32()), column.view(pa.uint32())
    if pa.types.is_list(kind) and pa.types.is_interval(kind.value_type):
        whole = pa.concat_arrays([column])  # offset 0: values and offsets line up
        _, texts = _checked(pa.field(field.name, kind.value_type), whole.values)
        strings = pa.ListArray.from_arrays(whole.offsets, texts, mask=whole.is_null())
        metadata = {**(field.metadata or {}), **INTERVAL_METADATA}
        return pa.field(field.name, strings.type, field.nullable, metadata), strings
    if pa.types.is_list(kind) and (
        pa.types.is_date32(kind.value_type)
        or (pa.types.is_timestamp(kind.value_type) and kind.value_type.unit == "us")
    ):
        # date[] / timestamp[]: the same correction on the elements.
        whole = pa.concat_arrays([column])  # offset 0: values and offsets line up
        _, values = _checked(
            pa.field(field.name, kind.value_type, True, field.metadata), whole.values
        )
        if values is whole.values:
            return field, column
        return field, pa.ListArray.from_arrays(
            whole.offsets, values, type=kind, mask=whole.is_null()
        )
    return field, column


def _is_json(kind: Any) -> bool:
    """Whether ``kind`` is Arrow's canonical JSON extension type (``arrow.json``)."""
    import pyarrow as pa

    return isinstance(kind, pa.BaseExtensionType) and kind.extension_name == "arrow.json"


def _numeric_text(column: Any) -> Any:
    """
    A numeric column (the driver's text of each value, in an opaque type) with NaN and
    ±Infinity spelt as PostgreSQL spells them (the driver writes nan, inf, -inf).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    storage = column.storage
    # Digits, signs and points hold no "n": one pass tells whether anything needs a fix.
    if not pc.any(pc.match_substring(storage, "n")).as_py():
        return column
    for driver, postgres in (("nan", "NaN"), ("-inf", "-Infinity"), ("inf", "Infinity")):
        storage = pc.replace_substring_regex(storage, f"^{driver}$", postgres)
    return pa.ExtensionArray.from_storage(column.type, storage)


def _smallest(values: Any) -> int | None:
    """
    A lower bound of an int32/int64 array's values, or None for an empty one: the least
    of its data buffer, null slots included (whatever they hold can only lower it, and
    `_infinities` then takes the exact path). numpy, which pyarrow has loaded already,
    rather than ``pyarrow.compute``, whose import is 0.15 s of a cold Arrow read.
    """
    try:
        import numpy as np
    except ImportError:  # pyarrow without numpy
        import pyarrow.compute as pc

        smallest: int | None = pc.min(values).as_py()
        return smallest
    data = values.buffers()[1]
    if not len(values) or data is None:
        return None
    width = values.type.bit_width // 8
    array = np.frombuffer(data, np.dtype(f"=i{width}"), len(values), values.offset * width)
    return int(array.min())


def _infinities(
    field: Any, column: Any, ints: Any, bits: int, shift: int, low: int, pg_type: str
) -> Any:
    """A date32 / timestamp[us] column with the driver's wrapped infinities corrected."""
    import pyarrow as pa

    values = column.view(ints)
    smallest = _smallest(values)
    if smallest is None or smallest >= low:
        return column  # the common case: one pass, nothing to correct
    import pyarrow.compute as pc

    top, bottom = 2 ** (bits - 1) - 1, -(2 ** (bits - 1))
    # The server's infinity (the largest integer) plus the shift wraps to bottom+shift-1;
    # -infinity (the smallest) plus the shift is bottom+shift.
    positive = pc.equal(values, pa.scalar(bottom + shift - 1, ints))
    negative = pc.equal(values, pa.scalar(bottom + shift, ints))
    wrapped = pc.and_(pc.less(values, pa.scalar(low, ints)), pc.invert(pc.or_(positive, negative)))
    if pc.any(wrapped).as_py():
        raise ConnectorError(
            f"column {field.name!r} ({pg_type or field.type}) holds a timestamp after year "
            "292277, which Arrow's timestamp cannot hold (the ADBC driver would wrap it)",
            field=field.name,
            hint='read it with format="dicts", "jsonl" or "csv", which carry it as text',
        )
    corrected = pc.if_else(
        positive, pa.scalar(top, ints), pc.if_else(negative, pa.scalar(bottom, ints), values)
    )
    return corrected.view(column.type)


#: Type OIDs below this are PostgreSQL's own (``FirstNormalObjectId``): fixed for a server,
#: never created, altered or dropped by a user.
_FIRST_USER_OID = 16_384
#: How long a cached driver database (`_Databases`) is used for, in seconds.
_DATABASE_TTL = 300.0


class _Databases:
    """
    The ADBC driver's database handles of this process, by URI, for reads whose columns
    are all of PostgreSQL's built-in types.

    Creating one connects and reads the server's whole type catalog (``pg_type`` and
    every relation's ``pg_attribute``; 35-135 ms a read on the benchmark's server, more
    on a large catalog), which the driver keeps to map result types. The built-in types
    in it never change, so a read of built-in types only takes one kept from an earlier
    read (at most `_DATABASE_TTL` old); a read of any other type (an enum, a domain,
    a composite, an extension's type, which may have been created since) creates its
    own, as every read did before (its statement reads most such columns as text or
    their base type anyway; the rule keeps the driver from ever meeting a type its kept
    catalog lacks). A handle holds no connection between reads; the
    driver counts its connections without a lock, so opening and closing them is
    serialized here (`opened`).
    """

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._kept: dict[str, tuple[float, Any]] = {}

    def forget(self) -> list[Any]:
        """
        In a fork's child: drop every handle, returned to be kept unclosed (see
        `headwater.toolkit.forget_after_fork`); the lock is new, the parent's may be held.
        """
        import threading

        inherited = [database for _, database in self._kept.values()]
        self._lock = threading.Lock()
        self._kept = {}
        return inherited

    @contextlib.contextmanager
    def opened(self, uri: str, builtin: bool) -> Iterator[Any]:
        """An open ``AdbcConnection`` to ``uri``, closed on leaving."""
        import adbc_driver_manager  # type: ignore[import-untyped,import-not-found,unused-ignore]
        import adbc_driver_postgresql  # type: ignore[import-untyped,import-not-found,unused-ignore]

        if not builtin:
            with (
                adbc_driver_postgresql.connect(uri) as database,
                adbc_driver_manager.AdbcConnection(database) as conn,
            ):
                yield conn
            return
        lock = self._lock
        with lock:
            now = time.monotonic()
            created, database = self._kept.get(uri, (0.0, None))
            if database is None or now - created > _DATABASE_TTL:
                database = adbc_driver_postgresql.connect(uri)
                self._kept.pop(uri, None)
                while len(self._kept) >= 4:  # the oldest goes (closed when unused)
                    self._kept.pop(next(iter(self._kept)))
                self._kept[uri] = (now, database)
            conn = adbc_driver_manager.AdbcConnection(database)
        try:
            yield conn
        finally:
            with lock:
                conn.close()


_DATABASES = _Databases()
forget_after_fork(_DATABASES, _Databases.forget)


class _Corrections:
    """
    The driver's values corrected as the module docstring says, and the fields marked
    (`_marked_fields`), for the batches of one schema: the columns to check and the
    output schema are worked out once per read, not per batch.
    """

    def __init__(
        self, schema: Any, plan: ReadPlan, as_text: Collection[str], json_names: Collection[str]
    ) -> None:
        self.source = schema
        _check_json_fields(schema, plan)
        self._marks = (plan, as_text, json_names) if as_text or json_names else None
        #: The columns whose values or type `_checked` may change.
        self._checked = [i for i, field in enumerate(schema) if _may_change(field)]
        #: The output schema, known after the first batch (a checked field's new type).
        self._schema: Any = None
        self._same = not self._checked and self._marks is None

    def apply(self, batch: Any) -> Any:
        """``batch`` with its values corrected and its fields marked."""
        import pyarrow as pa

        if self._same:
            return batch
        columns = batch.columns
        fields = None if self._schema is not None else list(self.source)
        for i in self._checked:
            field, columns[i] = _checked(self.source.field(i), columns[i])
            if fields is not None:
                fields[i] = field
        if fields is not None:
            if self._marks is not None:
                fields = _marked_fields(fields, *self._marks)
            self._schema = pa.schema(fields, self.source.metadata)
        return pa.RecordBatch.from_arrays(columns, schema=self._schema)


def _check_json_fields(schema: Any, plan: ReadPlan) -> None:
    """
    The json/jsonb columns (selected as stored) arrive as text: an ADBC driver before
    1.2 gave the server's binary COPY bytes (jsonb's with a version byte in front).
    """
    import pyarrow as pa

    from headwater_postgres._values import JSON_OIDS

    for col in plan.columns:
        if (col.base_oid or col.type_oid) not in JSON_OIDS or col.name not in schema.names:
            continue
        kind = schema.field(col.name).type
        if not (_is_json(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise ConnectorError(
                f"column {col.name!r} ({col.type}) arrived from the ADBC driver as {kind}, "
                "not as the document's text",
                hint="upgrade the driver: pip install 'adbc-driver-postgresql>=1.2'",
            )


def _may_change(field: Any) -> bool:
    """Whether `_checked` may change a column of ``field``'s type (or its field)."""
    import pyarrow as pa

    kind = field.type
    if pa.types.is_list(kind):
        kind = kind.value_type
    pg_type = (field.metadata or {}).get(_POSTGRES_TYPE, b"")
    return bool(
        _is_json(field.type)
        or pa.types.is_date32(kind)
        or (pa.types.is_timestamp(kind) and kind.unit == "us")
        or pa.types.is_interval(kind)
        or (isinstance(kind, pa.OpaqueType) and kind.type_name == "numeric")
        or (pa.types.is_int32(kind) and pg_type == b"oid")
    )


def read_arrow(
    uri: str, select: str, plan: ReadPlan, as_text: Collection[str] = ()
) -> Iterator[Batch]:
    """
    Batches of ``pyarrow.RecordBatch`` for ``select``, cut to the plan's batch size;
    the columns in ``as_text`` (arrays read as their text) are marked as such.
    """
    try:
        # The driver manager's own API, not its DB-API module: that one imports pandas and
        # polars where they are installed (0.45 s of a cold read), for nothing used here.
        import adbc_driver_manager  # type: ignore[import-untyped,import-not-found,unused-ignore]
        import adbc_driver_postgresql  # type: ignore[import-untyped,import-not-found,unused-ignore]  # noqa: F401
        import pyarrow as pa
    except ImportError:
        raise ConfigError(
            "format='arrow' needs the ADBC driver: pip install 'headwater-postgres[arrow]'",
            field="format",
        ) from None
    cutter = BatchCutter(plan)
    size = plan.rows_per_batch
    json_names = frozenset(c.name for c in plan.columns if JSONB_OIDS & {c.type_oid, c.base_oid})
    builtin = all(max(c.type_oid, c.base_oid) < _FIRST_USER_OID for c in plan.columns)
    keys = plan.key_positions
    corrections: _Corrections | None = None
    with (
        _DATABASES.opened(uri, builtin) as conn,
        adbc_driver_manager.AdbcStatement(conn) as statement,
    ):
        statement.set_sql_query(select)
        stream, _rows = statement.execute_query()
        reader: Any = pa.RecordBatchReader._import_from_c(stream.address)
        # The stream goes before its statement, however the consumer stops.
        try:
            for record_batch in reader:
                rows = record_batch.num_rows
                if not rows:
                    continue
                # Corrected once per driver batch (a few per read), then cut: slices
                # share the corrected buffers and the marked schema.
                if corrections is None or not corrections.source.equals(
                    record_batch.schema, check_metadata=True
                ):
                    corrections = _Corrections(record_batch.schema, plan, as_text, json_names)
                whole = corrections.apply(record_batch)
                for offset in range(0, rows, size):
                    piece = whole.slice(offset, size) if rows > size else whole
                    n = piece.num_rows
                    key = [piece.column(i)[n - 1].as_py() for i in keys] if keys else None
                    yield Batch(plan.stream, piece, cutter.arrow_state(key, n))
        finally:
            reader.close()


def _marked_fields(
    fields: list[Any], plan: ReadPlan, as_text: Collection[str], json_names: Collection[str]
) -> list[Any]:
    """
    ``fields`` with the arrays read as text marked (`ARRAY_TEXT_METADATA` + their type)
    and the jsonb columns marked as JSON text (`JSON_FIELD_METADATA`), as every
    other Arrow source of headwater marks them.
    """
    types = {c.name: c.type for c in plan.columns}

    def marked(field: Any) -> Any:
        if field.name in as_text:
            extra = {**ARRAY_TEXT_METADATA, _PG_TYPE: types[field.name].encode()}
        elif field.name in json_names:
            extra = JSON_FIELD_METADATA
        else:
            return field
        return field.with_metadata({**(field.metadata or {}), **extra})

    return [marked(field) for field in fields]

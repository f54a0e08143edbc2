"""
Parquet blobs written as a stream, sans I/O: `ParquetEncoder` takes batches (dicts or
Arrow) and returns the bytes of the file as ``pyarrow.parquet.ParquetWriter`` produces
them, so they go straight into the block upload and memory stays at about one row group.

The file's schema is fixed when its first row group is written: it is the unification
(``pyarrow.unify_schemas(..., promote_options="permissive")``) of the batches buffered
for that row group, so a column that is NULL in the first batches and an integer later,
or integers that turn into floats, make one column. A later batch is cast into that
schema where no value changes (columns it lacks are NULL); a column the schema lacks, or
values that do not fit, fail with an error naming the column.
"""

from __future__ import annotations

import io
from typing import Any, Final

from headwater import Batch, ConfigError
from headwater.formats import (
    arrow_from_records,
    cast_arrow_table,
    records_of,
    unify_arrow_schemas,
)

#: Arrow bytes buffered before a row group is written (with ``row_group_size`` rows,
#: whichever comes first): what a write holds in memory beyond its upload blocks.
ROW_GROUP_BYTES: Final = 32 << 20
#: Rows per row group at the most (pyarrow's default).
ROW_GROUP_ROWS: Final = 1 << 20


class _Spool(io.RawIOBase):
    """The file the writer writes into: it only collects the bytes until they are drained."""

    def __init__(self) -> None:
        super().__init__()
        self._chunks: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._chunks.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def drain(self) -> bytes:
        """The bytes written since the last drain."""
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


class ParquetEncoder:
    """Batches → the bytes of one Parquet file, as they are produced; counts the records."""

    fmt = "parquet"

    def __init__(
        self,
        *,
        compression_codec: str = "snappy",
        row_group_size: int = ROW_GROUP_ROWS,
        row_group_bytes: int = ROW_GROUP_BYTES,
    ) -> None:
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ConfigError(
                "Parquet blobs need pyarrow",
                field="format",
                hint="pip install 'headwater-azure-blob[parquet]'",
            ) from None
        if not isinstance(row_group_size, int) or row_group_size < 1:
            raise ConfigError("row_group_size must be a positive integer", field="row_group_size")
        self.count = 0
        self.codec = compression_codec
        self.row_group_size = row_group_size
        self.row_group_bytes = row_group_bytes
        self._spool = _Spool()
        self._writer: Any = None
        self._schema: Any = None
        self._written = 0
        self._pending: list[Any] = []
        self._pending_rows = 0
        self._pending_bytes = 0
        self._schemas: list[Any] = []

    def encode(self, batch: Batch | list[dict[str, Any]] | Any) -> bytes:
        """The bytes of the file produced so far (empty while a row group fills)."""
        table = self._table(batch)
        if table is None:
            return b""
        self.count += table.num_rows
        if self._writer is not None:
            table = _conform(table, self._schema, self._written)
        else:
            self._schemas.append(table.schema)
        if table.num_rows:
            self._pending.append(table)
            self._pending_rows += table.num_rows
            self._pending_bytes += table.nbytes
        if self._pending_rows >= self.row_group_size or self._pending_bytes >= self.row_group_bytes:
            self._flush()
        return self._spool.drain()

    def finish(self) -> bytes:
        """The rest of the file: the last row group and the footer."""
        import pyarrow as pa

        self._flush()
        if self._writer is None:
            # No records: the file still says what the columns were, if anyone said.
            self._open(unify_arrow_schemas(self._schemas) if self._schemas else pa.schema([]))
        self._writer.close()
        return self._spool.drain()

    def _flush(self) -> None:
        import pyarrow as pa

        if not self._pending:
            return
        if self._writer is None:
            schema = unify_arrow_schemas(self._schemas)
            self._open(schema)
            self._pending = [_conform(t, schema, 0) for t in self._pending]
        table = pa.concat_tables(self._pending)
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0
        self._writer.write_table(table, row_group_size=self.row_group_size)
        self._written += table.num_rows

    def _open(self, schema: Any) -> None:
        import pyarrow.parquet as pq

        self._schema = schema
        self._schemas = []
        try:
            self._writer = pq.ParquetWriter(self._spool, schema, compression=self.codec)
        except (ValueError, TypeError, OSError) as exc:
            raise ConfigError(
                f"cannot write Parquet: {str(exc).splitlines()[0]}", field="compression_codec"
            ) from None

    @staticmethod
    def _table(batch: Any) -> Any:
        import pyarrow as pa

        records = batch.records if isinstance(batch, Batch) else batch
        if isinstance(records, pa.RecordBatch):
            return pa.Table.from_batches([records])
        if isinstance(records, pa.Table):
            return records
        rows = records_of(records)
        return arrow_from_records(rows) if rows else None


def _conform(table: Any, schema: Any, written: int) -> Any:
    """
    ``table`` in ``schema`` (columns in its order, missing ones NULL), values unchanged.

    Raises:
        ConfigError: a column the schema lacks, or values the schema's type cannot hold.
    """
    extra = [name for name in table.column_names if name not in schema.names]
    if extra:
        raise ConfigError(
            f"column {extra[0]!r} first appears after the Parquet blob's schema was fixed "
            f"by its first row group ({written} rows)",
            field=extra[0],
            hint="give every column in the first batches (NULL will do), or write JSON Lines",
        )
    return cast_arrow_table(table, schema)

"""
File sinks: how `headwater.copy` puts records into a local file, and resumes there exactly.

The protocol (`FileSink`), driven by the copy:

``open(committed)``
    ``committed`` is the sink's part of the last committed copy state (``None`` for a
    fresh copy). Whatever was written after that commit is cut away here, because the
    source will deliver those records again.
``write(batch)``
    Encode and write; nothing is promised durable yet.
``checkpoint() -> position``
    Make everything written so far durable (flushed and fsynced; for Parquet and Arrow a
    closed part file) and return the sink position to commit *together with* the source
    state of the last batch written. The copy commits the state only after this returns.
``finish() -> position``
    Complete the output in its staging place, durable, and return a position marked
    ``finishing``; the copy commits it, then calls ``publish()``.
``publish() -> position``
    Move the complete output into place (an atomic rename). Safe to repeat: a copy that
    resumes from a ``finishing`` position publishes first.
``abort()``
    Stop after an error: committed data stays for a resume; a copy without a state
    removes its temporary files.

Where data goes:

* A **fresh** copy writes into a staging file beside the target (``.NAME.headwater-partial``;
  a directory of part files for Parquet and Arrow) and renames it over the target only
  when complete: an existing output is never truncated or replaced by a partial one.
* A copy **continuing** an earlier, completed one (the state file says the target holds
  its output) appends: JSON Lines and CSV at the end of the file (a crash leaves a tail
  that the resume cuts back to the committed length), compressed files as a new
  gzip/zstd/bz2/xz member (a concatenation every reader accepts); Parquet and Arrow,
  which cannot be appended to, are rebuilt from the earlier output plus the new parts
  into a new file that replaces the old one atomically.
* Without a state the staging file has a unique name and is removed on failure.

Parquet and Arrow schemas are unified across batches: a column that was all NULL takes
the type that appears later, integers and decimals widen, new columns are added as NULL
for earlier rows. Two types with no common type are an error naming the column.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from headwater._files import create_temporary, fsync_directory, temporary_prefix
from headwater.errors import ConfigError
from headwater.formats import (
    CsvEncoder,
    FileFormat,
    JsonLinesEncoder,
    arrow_from_records,
    cast_arrow_table,
    compressor,
    unify_arrow_schemas,
)

#: The sink part of a copy state: JSON-serializable.
Position = dict[str, Any]


def _beside(path: Path, kind: str) -> Path:
    """
    The working file or directory ``kind`` of a copy into ``path``, in the same directory:
    always the same for the same target (a resume finds it again), and short enough for
    a target whose name is near the file system's limit.
    """
    name = path.name
    if len(name.encode()) > 64:
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        name = f"{name[:32]}~{digest}"
    return path.with_name(f".{name}.{kind}")


def arrow_file_schema(path: Path, file_format: FileFormat) -> Any:
    """The schema of a Parquet or Arrow IPC file (from its footer, no data read)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if file_format.fmt == "parquet":
        return pq.read_schema(path)
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).schema


def _fsync(handle: Any) -> None:
    handle.flush()
    os.fsync(handle.fileno())


class _Pipeline:
    """
    Runs a sink's writes on one worker thread, in order, at most ``depth`` calls behind
    the caller: writing (and compressing: zlib, bz2, lzma and zstd release the GIL) then
    overlaps with reading the next batch instead of alternating with it. Page-cache
    writes of a large output were a quarter of a PostgreSQL → JSON Lines copy's time.
    """

    def __init__(self, depth: int = 2) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(1, thread_name_prefix="headwater-sink")
        self._pending: collections.deque[Any] = collections.deque()
        self._depth = depth

    def submit(self, function: Any, *args: Any) -> None:
        while len(self._pending) >= self._depth:
            self._pending.popleft().result()  # re-raises the worker's error here
        self._pending.append(self._pool.submit(function, *args))

    def wait(self) -> None:
        """Until every submitted call has run; the first failure is raised."""
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)

    def abandon(self) -> None:
        """After a failure elsewhere: let the worker finish, ignore what it raises."""
        with contextlib.suppress(Exception):
            self.close()


class FileSink:
    """Base of the file sinks; see the module docstring for the protocol."""

    #: Whether a copy checkpoints after every batch whatever its ``checkpoint_seconds``
    #: (a sink whose checkpoint is only a flush: nothing is gained by waiting).
    checkpoint_every_batch = False

    def __init__(
        self,
        path: str | os.PathLike[str],
        file_format: FileFormat,
        *,
        resumable: bool,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(path).absolute()
        self.format = file_format
        self.resumable = resumable
        self.options = dict(options or {})
        self.records = 0

    def _position(self, **fields: Any) -> Position:
        return {
            "path": str(self.path),
            "format": self.format.fmt,
            "compression": self.format.compression,
            **fields,
        }

    def continues(self, committed: Position | None) -> bool:
        """Whether ``committed`` belongs to this sink's target (else the copy starts afresh)."""
        return (
            committed is not None
            and committed.get("path") == str(self.path)
            and committed.get("format") == self.format.fmt
        )

    # Subclasses implement these.
    def open(self, committed: Position | None) -> None:
        raise NotImplementedError

    def write(self, batch: Any) -> None:
        raise NotImplementedError

    def checkpoint(self) -> Position:
        raise NotImplementedError

    def finish(self) -> Position:
        raise NotImplementedError

    def publish(self) -> Position:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


def make_sink(
    path: str | os.PathLike[str],
    file_format: FileFormat,
    *,
    resumable: bool,
    options: dict[str, Any] | None = None,
) -> FileSink:
    """The sink for ``file_format`` writing to ``path``."""
    if file_format.columnar:
        return ColumnarSink(path, file_format, resumable=resumable, options=options)
    return LineSink(path, file_format, resumable=resumable, options=options)


# --- JSON Lines and CSV ----------------------------------------------------------------------


class LineSink(FileSink):
    """JSON Lines or CSV, optionally compressed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        unknown = set(self.options) - {"columns", "delimiter", "encoding", "null_string"}
        if unknown or (self.format.fmt == "jsonl" and set(self.options) - {"encoding"}):
            bad = sorted(unknown or set(self.options) - {"encoding"})
            raise ConfigError(
                f"{self.format.fmt} output: unknown option(s) {', '.join(bad)}", field=bad[0]
            )
        self._handle: Any = None
        self._file: Path | None = None
        self._staged = True
        self._codec = compressor(self.format.compression)
        self._encoder: CsvEncoder | JsonLinesEncoder | None = None
        self._pipeline = _Pipeline()

    def _make_encoder(self, columns: list[str] | None, header: bool) -> None:
        encoding = self.options.get("encoding", "utf-8")
        if self.format.fmt == "jsonl":
            self._encoder = JsonLinesEncoder(encoding=encoding)
            return
        self._encoder = CsvEncoder(
            columns=columns if columns is not None else self.options.get("columns"),
            encoding=encoding,
            delimiter=self.options.get("delimiter") or self.format.delimiter or ",",
            null_string=self.options.get("null_string", ""),
            header=header,
        )

    def _staging_name(self) -> Path:
        return _beside(self.path, "headwater-partial")

    def open(self, committed: Position | None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.continues(committed):
            self._fresh()
            return
        assert committed is not None
        if committed.get("finishing"):
            committed = self._complete_publish(committed)
        staged = committed.get("staging") is not None
        target = self.path.with_name(committed["staging"]) if staged else self.path
        length = committed.get("bytes", 0)
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            # A state file is a file a person can edit: never truncate to a made-up size.
            raise ConfigError(
                "the state's sink position (bytes) must be a whole number >= 0",
                field="state",
                hint="start the copy again without the state file (or with a new one)",
            )
        try:
            handle = open(target, "r+b")  # noqa: SIM115 - kept open across calls
        except FileNotFoundError:
            raise ConfigError(
                f"the state says {target} holds {length} bytes of this copy, but it is gone",
                field="state",
                hint="start the copy again without the state file (or with a new one)",
            ) from None
        size = os.fstat(handle.fileno()).st_size
        if size < length:
            handle.close()
            raise ConfigError(
                f"{target} is shorter ({size} bytes) than the state says it was when saved "
                f"({length} bytes): something else changed it",
                field="state",
                hint="start the copy again without the state file (or with a new one)",
            )
        # Cut what was written after the last commit: the source delivers it again.
        handle.truncate(length)
        handle.seek(length)
        self._handle, self._file, self._staged = handle, target, staged
        self._make_encoder(committed.get("columns"), header=length == 0)

    def _fresh(self) -> None:
        if self.resumable:
            target = self._staging_name()
            handle = open(target, "wb")  # noqa: SIM115 - kept open across calls
        else:
            fd, name = create_temporary(self.path, ".headwater-partial")
            handle = os.fdopen(fd, "wb")
            target = Path(name)
        self._handle, self._file, self._staged = handle, target, True
        self._make_encoder(None, header=True)

    def write(self, batch: Any) -> None:
        assert self._encoder is not None
        data = self._encoder.encode(batch)
        if data:
            self._pipeline.submit(self._write_now, data)

    def _write_now(self, data: bytes) -> None:
        self._handle.write(self._codec.process(data))

    def _end_member(self) -> None:
        # A compressed stream is only readable up to its last complete member, so a
        # durable point ends one (the next write starts a new member).
        if self.format.compression is not None:
            self._handle.write(self._codec.flush())
            self._codec = compressor(self.format.compression)

    def _durable(self) -> None:
        """Everything written so far, on disk (in the caller's thread, after the worker's)."""
        self._pipeline.submit(self._end_member)
        self._pipeline.wait()
        _fsync(self._handle)

    def checkpoint(self) -> Position:
        self._durable()
        return self._current(finishing=False)

    def _current(self, *, finishing: bool) -> Position:
        assert self._file is not None
        assert self._encoder is not None
        columns = self._encoder.columns if isinstance(self._encoder, CsvEncoder) else None
        return self._position(
            staging=self._file.name if self._staged else None,
            bytes=self._handle.tell(),
            columns=columns,
            finishing=finishing,
        )

    def finish(self) -> Position:
        assert self._encoder is not None
        tail = self._encoder.finish()
        if tail:
            self._pipeline.submit(self._write_now, tail)
        self._durable()
        return self._current(finishing=self._staged)

    def publish(self) -> Position:
        position = self._current(finishing=True)
        self._pipeline.close()
        self._handle.close()
        self._handle = None
        return self._complete_publish(position)

    def _complete_publish(self, position: Position) -> Position:
        staging = position.get("staging")
        if staging is not None:
            source = self.path.with_name(staging)
            if source.exists():
                os.replace(source, self.path)
                fsync_directory(self.path.parent)
            elif not self.path.exists():
                raise ConfigError(
                    f"neither {source} nor {self.path} exists: the output of the "
                    "interrupted copy is gone",
                    field="state",
                    hint="start the copy again without the state file (or with a new one)",
                )
        return {**position, "staging": None, "finishing": False}

    def abort(self) -> None:
        self._pipeline.abandon()
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
            self._handle = None
        if not self.resumable and self._file is not None and self._staged:
            with contextlib.suppress(FileNotFoundError):
                self._file.unlink()


# --- Parquet and Arrow IPC --------------------------------------------------------------------


class ColumnarSink(FileSink):
    """Parquet or Arrow IPC: part files in a staging directory, one file when complete."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        unknown = set(self.options) - {"compression_codec", "row_group_size"}
        if unknown:
            bad = sorted(unknown)
            raise ConfigError(
                f"{self.format.fmt} output: unknown option(s) {', '.join(bad)}", field=bad[0]
            )
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ConfigError(
                f"{self.format.fmt} output needs pyarrow", hint="pip install 'headwater[arrow]'"
            ) from None
        self._dir: Path | None = None
        self._parts: list[str] = []
        self._closed: list[str] = []
        self._writer: Any = None
        self._schema: Any = None
        self._current: Path | None = None
        self._append = False
        self._ext = ".parquet" if self.format.fmt == "parquet" else ".arrow"
        self._finished: Position | None = None

    def _staging_dir(self) -> Path:
        return _beside(self.path, "headwater-parts")

    def _merge_name(self) -> Path:
        return _beside(self.path, "headwater-merge")

    def open(self, committed: Position | None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.continues(committed):
            if self.resumable:
                self._dir = self._staging_dir()
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir.mkdir()
            else:
                self._dir = Path(
                    tempfile.mkdtemp(
                        prefix=temporary_prefix(self.path),
                        suffix=".headwater-parts",
                        dir=self.path.parent,
                    )
                )
            self._append = False
            return
        assert committed is not None
        if committed.get("finishing"):
            committed = self._complete_publish(committed)
        self._dir = self._staging_dir()
        self._append = bool(committed.get("append"))
        self._parts = list(committed.get("parts") or [])
        self._closed = list(self._parts)
        self._dir.mkdir(exist_ok=True)
        # Part files written after the last commit are not covered by it, and a merge
        # that was interrupted before its result was committed will be made again.
        for entry in self._dir.iterdir():
            if entry.name not in self._parts:
                entry.unlink()
        for leftover in (
            self._merge_name(),
            self._merge_name().with_name(self._merge_name().name + ".tmp"),
        ):
            leftover.unlink(missing_ok=True)
        missing = [p for p in self._parts if not (self._dir / p).exists()]
        if missing:
            raise ConfigError(
                f"the state lists part {missing[0]} in {self._dir}, but it is gone",
                field="state",
                hint="start the copy again without the state file (or with a new one)",
            )

    # --- writing ----------------------------------------------------------------------

    def _table(self, batch: Any) -> Any:
        import pyarrow as pa

        records = getattr(batch, "records", batch)
        if isinstance(records, pa.RecordBatch):
            return pa.Table.from_batches([records])
        if isinstance(records, pa.Table):
            return records
        return arrow_from_records(records)

    def write(self, batch: Any) -> None:
        table = self._table(batch)
        if table.num_rows == 0 and self._writer is not None:
            return
        if self._writer is not None and not table.schema.equals(self._schema):
            unified = unify_arrow_schemas([self._schema, table.schema])
            if not unified.equals(self._schema):
                # The file's schema cannot change once written: close this part; the
                # parts are brought to the unified schema when they are joined.
                self._close_part()
        if self._writer is None:
            self._schema = (
                table.schema
                if self._schema is None
                else unify_arrow_schemas([self._schema, table.schema])
            )
            self._open_part()
        self._writer.write_table(cast_arrow_table(table, self._schema))
        self.records += table.num_rows

    def _open_part(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        assert self._dir is not None
        name = f"part-{len(self._closed):06d}{self._ext}"
        self._current = self._dir / (name + ".tmp")
        if self.format.fmt == "parquet":
            self._writer = pq.ParquetWriter(
                self._current,
                self._schema,
                compression=self.options.get("compression_codec", "snappy"),
            )
        else:
            self._writer = pa.ipc.new_file(str(self._current), self._schema)

    def _close_part(self) -> None:
        if self._writer is None:
            return
        assert self._current is not None
        self._writer.close()
        self._writer = None
        with open(self._current, "rb+") as handle:
            os.fsync(handle.fileno())
        final = self._current.with_name(self._current.name.removesuffix(".tmp"))
        os.replace(self._current, final)
        self._closed.append(final.name)
        self._current = None

    def checkpoint(self) -> Position:
        self._close_part()
        assert self._dir is not None
        fsync_directory(self._dir)
        self._parts = list(self._closed)
        return self._position(parts=self._parts, append=self._append, finishing=False)

    def finish(self) -> Position:
        import pyarrow as pa

        self.checkpoint()
        assert self._dir is not None
        existing = self._append and self.path.exists()
        if not self._parts and not existing:
            # No records at all: an empty file still says what the stream was.
            self._schema = self._schema if self._schema is not None else pa.schema([])
            self._open_part()
            self.checkpoint()
        parts = [self._dir / p for p in self._parts]
        inputs = ([self.path] if existing else []) + parts
        merged: str | None
        if not parts:
            merged = None  # nothing new: the output stays as it is
        elif len(inputs) == 1:
            merged = parts[0].name  # one part: renamed into place, not rewritten
        else:
            merged = self._merge_name().name
            self._merge(inputs, self._merge_name())
        self._finished = self._position(
            parts=self._parts, append=self._append, finishing=True, merged=merged
        )
        return self._finished

    def _merge(self, inputs: list[Path], out: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schemas = [arrow_file_schema(p, self.format) for p in inputs]
        schema = unify_arrow_schemas(schemas)
        tmp = out.with_name(out.name + ".tmp")
        if self.format.fmt == "parquet":
            writer: Any = pq.ParquetWriter(
                tmp, schema, compression=self.options.get("compression_codec", "snappy")
            )
            with writer:
                for path in inputs:
                    source = pq.ParquetFile(path)
                    for group in range(source.num_row_groups):
                        writer.write_table(cast_arrow_table(source.read_row_group(group), schema))
        else:
            with pa.ipc.new_file(str(tmp), schema) as ipc:
                for path in inputs:
                    with pa.memory_map(str(path)) as source:
                        reader = pa.ipc.open_file(source)
                        for index in range(reader.num_record_batches):
                            table = pa.Table.from_batches([reader.get_batch(index)])
                            ipc.write_table(cast_arrow_table(table, schema))
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, out)
        fsync_directory(out.parent)

    def publish(self) -> Position:
        assert self._finished is not None, "publish() before finish()"
        return self._complete_publish(self._finished)

    def _complete_publish(self, position: Position) -> Position:
        staging = self._staging_dir() if self.resumable else self._dir
        assert staging is not None
        merged = position.get("merged")
        if merged is not None:
            # A single part is renamed from the staging directory, a merge from beside
            # the target; either may already have been moved by an interrupted publish.
            source = staging / merged if merged.startswith("part-") else self.path.with_name(merged)
            if source.exists():
                os.replace(source, self.path)
                fsync_directory(self.path.parent)
            elif not self.path.exists():
                raise ConfigError(
                    f"the output of the interrupted copy is gone (neither {source} nor "
                    f"{self.path} exists)",
                    field="state",
                    hint="start the copy again without the state file (or with a new one)",
                )
        shutil.rmtree(staging, ignore_errors=True)
        self._parts, self._closed = [], []
        return self._position(parts=[], append=True, finishing=False)

    def abort(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
            if self._current is not None:
                with contextlib.suppress(FileNotFoundError):
                    self._current.unlink()
        if not self.resumable and self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)


class StreamSink(FileSink):
    """
    JSON Lines or CSV to a writable binary stream (stdout, a pipe, a socket's file). A
    pipe cannot be made durable or cut back: a checkpoint flushes it, the reader at the
    other end owns what it got, so a copy checkpoints after every batch.
    """

    checkpoint_every_batch = True

    def __init__(self, out: Any, fmt: str, *, options: dict[str, Any] | None = None) -> None:
        if fmt not in ("jsonl", "csv"):
            raise ConfigError(
                f"a binary stream takes JSON Lines or CSV, not {fmt}",
                field="format",
                hint="copy into a file for Parquet or Arrow",
            )
        super().__init__("-", FileFormat(fmt), resumable=False, options=options)
        self.path = Path("-")
        self._out = out
        self._encoder: CsvEncoder | JsonLinesEncoder
        if fmt == "jsonl":
            self._encoder = JsonLinesEncoder()
        else:
            self._encoder = CsvEncoder(
                columns=self.options.get("columns"),
                delimiter=self.options.get("delimiter", ","),
                null_string=self.options.get("null_string", ""),
            )

    def continues(self, committed: Position | None) -> bool:
        return False

    def open(self, committed: Position | None) -> None:
        pass

    def write(self, batch: Any) -> None:
        data = self._encoder.encode(batch)
        if data:
            self._out.write(data)

    def checkpoint(self) -> Position:
        self._out.flush()
        return {"path": "-"}

    def finish(self) -> Position:
        tail = self._encoder.finish()
        if tail:
            self._out.write(tail)
        return self.checkpoint()

    def publish(self) -> Position:
        return {"path": "-"}

    def abort(self) -> None:
        pass

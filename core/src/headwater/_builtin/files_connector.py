"""
The ``files`` connector: JSON Lines, CSV, Parquet and Arrow files in a local directory.

It needs no server (JSON Lines and CSV need nothing beyond the standard library; Parquet
and Arrow need pyarrow), which makes it the embedded default (the demo runs on it) and
the reference plugin authors read first. Every stream is a file under ``root``; its name
is the path relative to ``root`` with ``/`` separators (``sales/2024.csv``). Formats and
compression (``.gz``, ``.zst``, ``.bz2``, ``.xz``) come from the name, through the format
layer shared with every other connector (`headwater.formats`).

Resumable state is the byte offset just after the last record of a batch, so resuming
seeks straight there (no re-reading), and a file that grew since (an append-only log)
yields only the new records. A state whose offset is past the end of the file means
the file was replaced; that is refused rather than silently re-read. In a compressed
file the offset counts decompressed bytes: a resume decompresses from the start and
skips to it, and never yields a record twice. Parquet and Arrow states count rows.

Read options: ``file_format`` (a format for a name without a known suffix) and
``json_text`` (fields of a JSON Lines file given as their JSON text, `JsonText`, exactly
as written: `headwater.copy` asks for its destination's JSON columns).
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, field_validator

from headwater._connector import (
    Batch,
    Capability,
    Connector,
    ConnectorConfig,
    Estimate,
    FetchResult,
    Item,
    Partition,
    State,
    WriteResult,
    read_ahead,
)
from headwater._files import atomic_file, safe_destination
from headwater._sinks import FileSink, arrow_file_schema, make_sink
from headwater.errors import (
    AlreadyExists,
    ConfigError,
    HeadwaterError,
    NotFound,
    PermissionDenied,
    UnsafePath,
)
from headwater.formats import (
    CsvRecordEnds,
    FileFormat,
    byte_ranges,
    byte_targets,
    decode_batches,
    decode_stream,
    decompressed,
    detect,
    make_decoder,
    unit_ranges,
)

#: Bytes read per chunk from a file.
_CHUNK = 1 << 20


class FilesConfig(ConnectorConfig):
    """Configuration of the ``files`` connector."""

    root: Path = Field(description="Directory holding the files (the streams).")
    batch_size: int = Field(
        default=1000,
        ge=1,
        le=1_000_000,
        description="Records per batch unless read() is given one.",
    )
    delimiter: str | None = Field(
        default=None,
        min_length=1,
        max_length=1,
        description="CSV field delimiter (default: ',' and a tab for .tsv files).",
    )
    encoding: str = Field(default="utf-8", description="Text encoding of JSON Lines and CSV.")
    null_string: str = Field(
        default="",
        description="CSV: the unquoted text that means NULL (the same text quoted is a "
        "string). The default, the empty field, is PostgreSQL's CSV convention.",
    )

    @field_validator("root")
    @classmethod
    def _absolute_root(cls, value: Path) -> Path:
        # A saved source must mean the same directory whatever the working directory
        # of the process that later uses it.
        return value.expanduser().absolute()

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        return value


def _known(name: str) -> FileFormat | None:
    try:
        return detect(name)
    except ConfigError:
        return None


def _state_count(state: State, key: str, stream: str, default: int | None = 0) -> int:
    """
    A position from a saved state: a whole number >= 0, or a clear error (a state file
    is a file a person can edit; a negative offset must not reach ``seek``).
    """
    value = state.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(
            f"state is not a files-connector state for stream {stream!r}: {key} must be a "
            "whole number >= 0",
            field="state",
            hint="start again without the state file (or with a new one)",
        )
    return value


class FilesConnector(Connector[FilesConfig]):
    """JSON Lines, CSV, Parquet and Arrow files in a local directory."""

    id = "files"
    Config = FilesConfig
    summary = "JSON Lines, CSV, Parquet and Arrow files in a local directory (the embedded default)"
    capabilities = frozenset(
        {
            Capability.CHECK,
            Capability.LIST,
            Capability.READ,
            Capability.RESUME,
            Capability.FETCH,
            Capability.METADATA,
            Capability.WRITE,
            Capability.UPLOAD,
            Capability.ARROW,
            Capability.JSON_TEXT,
            Capability.PARTITIONS,
            Capability.PART_WRITES,
        }
    )

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> FilesConnector:
        """``file:///data/exports`` → a connector rooted there."""
        parts = urlsplit(url)
        if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost"):
            raise ConfigError(
                f"not a local file URL: {url!r}", field="root", hint="use file:///absolute/path"
            )
        return cls({"root": unquote(parts.path), **overrides})

    # --- helpers --------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        # Resolved, so names computed relative to it match safe_destination's resolved
        # paths even when the root is reached through a symlink.
        return self.config.root.expanduser().resolve()

    def _path(self, name: str, *, must_exist: bool = True) -> Path:
        try:
            path = safe_destination(self.root, name)
        except UnsafePath as exc:
            raise ConfigError(
                f"stream name {name!r} is not a path under root: {exc.message}"
            ) from None
        if must_exist and not path.is_file():
            raise NotFound(f"no file {name!r} under {self.root}", field="stream")
        return path

    @staticmethod
    def _format(path: Path, fmt: str | None = None) -> FileFormat:
        try:
            return detect(path.name, fmt)
        except ConfigError as exc:
            raise ConfigError(exc.message, field="stream", hint=exc.hint) from None

    def _delimiter(self, file_format: FileFormat) -> str:
        return self.config.delimiter or file_format.delimiter or ","

    def local_path(self, stream: str) -> Path | None:
        """The file that holds ``stream`` (it need not exist yet)."""
        return self._path(stream, must_exist=False)

    # --- operations -----------------------------------------------------------------------

    def check_connection(self) -> str:
        root = self.root
        if not root.exists():
            raise NotFound(
                f"root directory {str(root)!r} does not exist",
                field="root",
                hint="create it or point root at an existing directory",
            )
        if not root.is_dir():
            raise ConfigError(f"root {str(root)!r} is not a directory", field="root")
        if not os.access(root, os.R_OK | os.X_OK):
            raise PermissionDenied(f"cannot read directory {str(root)!r}", field="root")
        streams = sum(1 for p in root.rglob("*") if p.is_file() and _known(p.name))
        return f"{streams} stream{'s' if streams != 1 else ''} under {root}"

    def list(self, path: str | None = None) -> Iterator[Item]:
        directory = self.root if not path else self._path(path.rstrip("/"), must_exist=False)
        if not directory.is_dir():
            raise NotFound(f"no directory {path!r} under {self.root}", field="path")
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            rel = Path(entry.path).relative_to(self.root).as_posix()
            stat = entry.stat()
            modified = datetime.fromtimestamp(stat.st_mtime, tz=UTC)
            if entry.is_dir():
                yield Item(rel + "/", "directory", modified=modified)
            elif entry.is_file():
                known = _known(entry.name)
                kind: Literal["stream", "file"] = "stream" if known else "file"
                extra: dict[str, Any] = {}
                if known:
                    extra["format"] = known.fmt
                    if known.compression:
                        extra["compression"] = known.compression
                yield Item(rel, kind, size=stat.st_size, modified=modified, extra=extra)

    def metadata(self, item: str) -> dict[str, Any]:
        path = self._path(item)
        stat = path.stat()
        known = _known(path.name)
        meta: dict[str, Any] = {
            "name": item,
            "size": stat.st_size,
            "modified": datetime.fromtimestamp(stat.st_mtime, tz=UTC).isoformat(),
            "format": known.fmt if known else None,
        }
        if known is None:
            return meta
        if known.compression:
            meta["compression"] = known.compression
        if known.fmt == "csv":
            meta["columns"] = self._csv_header(path, known) or []
        elif known.fmt == "jsonl":
            first = next(self.read(item, batch_size=1), None)
            meta["columns"] = list(first.rows()[0]) if first and len(first) else []
        else:
            schema = arrow_file_schema(path, known)
            meta["columns"] = schema.names
            meta["schema"] = {f.name: str(f.type) for f in schema}
        return meta

    def estimate(self, stream: str, **options: Any) -> Estimate:
        """Rows of Parquet and Arrow files (from their footer); bytes of the others."""
        path = self._path(stream)
        file_format = self._format(path, options.get("file_format"))
        if file_format.fmt == "parquet":
            import pyarrow.parquet as pq

            return Estimate(rows=pq.ParquetFile(path).metadata.num_rows, exact=True)
        size = path.stat().st_size
        return Estimate(bytes=size, exact=file_format.compression is None)

    def read(
        self,
        stream: str,
        state: State | None = None,
        *,
        batch_size: int | None = None,
        **options: Any,
    ) -> Iterator[Batch]:
        unknown = set(options) - {"file_format", "json_text"}
        if unknown:
            raise ConfigError(
                f"files: unknown read option(s): {', '.join(sorted(unknown))} "
                "(known: file_format, json_text)"
            )
        json_text = _json_text_option(options.get("json_text"))
        path = self._path(stream)
        file_format = self._format(path, options.get("file_format"))
        size = batch_size or self.config.batch_size
        if state and state.get("stream") != stream:
            raise ConfigError(
                f"state is not a files-connector state for stream {stream!r}", field="state"
            )
        rows_before = _state_count(state, "rows", stream) if state else 0
        if file_format.columnar:
            yield from self._read_columnar(path, file_format, stream, state, size, rows_before)
            return
        offset = 0
        if state:
            offset = _state_count(state, "offset", stream, default=None)
            if file_format.compression is None and offset > path.stat().st_size:
                raise ConfigError(
                    f"state offset {offset} is past the end of {stream!r}; the file was "
                    "replaced or truncated since the state was saved",
                    field="state",
                    hint="start again without a state",
                )
        yield from self._read_lines(
            path, file_format, stream, state, offset, size, rows_before, json_text
        )

    def _read_lines(
        self,
        path: Path,
        file_format: FileFormat,
        stream: str,
        state: State | None,
        offset: int,
        size: int,
        rows_before: int,
        json_text: frozenset[str],
        stop: int | None = None,
    ) -> Iterator[Batch]:
        """
        Records of a JSON Lines or CSV file from byte ``offset`` (decompressed) on, and
        only up to byte ``stop`` (a record boundary) of an uncompressed file when given.
        """
        header = None
        if file_format.fmt == "csv" and offset:
            header = (state or {}).get("header") or self._csv_header(path, file_format)
        decoder = make_decoder(
            file_format.fmt,
            stream,
            offset,
            encoding=self.config.encoding,
            delimiter=self._delimiter(file_format),
            header=header,
            null_string=self.config.null_string,
            json_text=json_text,
        )
        # CSV values are strings: the batches say so, for typed destinations.
        text = file_format.fmt == "csv"
        with path.open("rb") as handle, contextlib.ExitStack() as ahead:
            skip = 0
            if file_format.compression is None:
                handle.seek(offset)
            else:
                skip = offset
            chunks: Iterable[bytes] = iter(lambda: handle.read(_CHUNK), b"")
            if stop is not None:
                chunks = _chunks_until(handle, stop - offset)
            rows = rows_before
            compression = file_format.compression
            if compression is not None:
                # Decompression (zlib, bz2, lzma and zstd release the GIL) runs a piece
                # (at most formats.PIECE bytes) ahead on a thread of its own while this
                # one parses.
                # Closed (its thread joined) before the file it reads is, when a reader
                # stops early.
                chunks = ahead.enter_context(
                    contextlib.closing(
                        read_ahead(functools.partial(decompressed, chunks, compression))
                    )
                )
                compression = None
            for batch, position in decode_batches(decoder, chunks, size, compression, skip=skip):
                rows += len(batch)
                yield Batch(stream, batch, self._state(stream, position, rows, decoder), text)

    @staticmethod
    def _state(stream: str, offset: int, rows: int, decoder: Any) -> State:
        state: State = {"stream": stream, "offset": offset, "rows": rows}
        header = getattr(decoder, "header", None)
        if header is not None:
            state["header"] = header
        return state

    def _csv_header(self, path: Path, file_format: FileFormat) -> builtins.list[str] | None:
        decoder = make_decoder(
            "csv",
            path.name,
            0,
            encoding=self.config.encoding,
            delimiter=self._delimiter(file_format),
        )
        with path.open("rb") as handle:
            chunks = iter(lambda: handle.read(1 << 16), b"")
            for _record in decode_stream(decoder, chunks, file_format.compression):
                break
        header: builtins.list[str] | None = decoder.header  # type: ignore[union-attr]
        return header

    def _read_columnar(
        self,
        path: Path,
        file_format: FileFormat,
        stream: str,
        state: State | None,
        size: int,
        rows: int,
        start: int = 0,
        stop: int | None = None,
    ) -> Iterator[Batch]:
        skip = start
        if state:
            skip = _state_count(state, "row", stream, default=None)
        position = skip
        for record_batch in _arrow_batches(path, file_format, skip, size):
            if stop is not None:
                if position >= stop:
                    return
                record_batch = record_batch.slice(0, stop - position)
            position += record_batch.num_rows
            rows += record_batch.num_rows
            state_after: State = {"stream": stream, "row": position, "rows": rows}
            yield Batch(stream, record_batch, state_after)

    # --- partitions -------------------------------------------------------------------------

    def partitions(self, stream: str, count: int, **options: Any) -> builtins.list[Partition]:
        """
        Split a file into at most ``count`` partitions that together hold every record
        once: a Parquet file into ranges of whole row groups (an Arrow file: of whole
        record batches), an uncompressed JSON Lines or CSV file into byte ranges cut at
        record boundaries (after the first newline at or after each cut; in CSV, one
        outside quotes), a compressed file into one partition.
        """
        unknown = set(options) - {"file_format"}
        if unknown:
            raise ConfigError(
                f"files: unknown partition option(s): {', '.join(sorted(unknown))} "
                "(known: file_format)"
            )
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError("partition count must be at least 1", field="count")
        path = self._path(stream)
        given = options.get("file_format")
        file_format = self._format(path, given)
        extra: dict[str, Any] = {"file_format": given} if given else {}
        bounds: builtins.list[dict[str, Any]]
        if file_format.columnar:
            ranges = unit_ranges(_row_units(path, file_format), count)
            bounds = [{"rows": [lo, hi], **extra} for lo, hi in ranges]
        elif file_format.compression is not None or not self._splittable():
            bounds = [dict(extra)]
        else:
            size = path.stat().st_size
            wanted = byte_targets(size, count)
            with path.open("rb") as handle:
                if file_format.fmt == "csv":
                    ends = _csv_record_ends(handle, wanted, size, self._delimiter(file_format))
                else:
                    ends = [_line_end(handle, offset, size) for offset in wanted]
            bounds = [{"bytes": [lo, hi], **extra} for lo, hi in byte_ranges(size, ends)]
        n = len(bounds)
        return [Partition(stream, i, n, b) for i, b in enumerate(bounds)]

    def _splittable(self) -> bool:
        """Whether newlines and quotes are single bytes of their own in the file's encoding."""
        encoding = self.config.encoding
        return '\n"'.encode(encoding) == b'\n"'

    def read_partition(
        self,
        partition: Partition,
        *,
        batch_size: int | None = None,
        state: State | None = None,
        **options: Any,
    ) -> Iterator[Batch]:
        """
        The records of one partition from `partitions`; a batch's ``state`` resumes the
        partition right after that batch. Options as for `read` (``json_text``).
        """
        unknown = set(options) - {"file_format", "json_text"}
        if unknown:
            raise ConfigError(
                f"files: unknown read option(s): {', '.join(sorted(unknown))} "
                "(known: file_format, json_text)"
            )
        stream, bounds = partition.stream, partition.bounds
        fmt = bounds.get("file_format") or options.get("file_format")
        if "rows" not in bounds and "bytes" not in bounds:
            read_options = {**options, **({"file_format": fmt} if fmt else {})}
            yield from self.read(stream, state, batch_size=batch_size, **read_options)
            return
        path = self._path(stream)
        file_format = self._format(path, fmt)
        if state and state.get("stream") != stream:
            raise ConfigError(
                f"state is not a files-connector state for stream {stream!r}", field="state"
            )
        rows_before = _state_count(state, "rows", stream) if state else 0
        size = batch_size or self.config.batch_size
        key, position_key = ("rows", "row") if "rows" in bounds else ("bytes", "offset")
        lo, hi = bounds[key]
        position = _state_count(state, position_key, stream, default=None) if state else lo
        if not lo <= position <= hi:
            raise ConfigError(
                f"state is not a state of partition {partition.index} of {stream!r}: "
                f"{position_key} {position} is outside [{lo}, {hi}]",
                field="state",
            )
        if key == "rows":
            yield from self._read_columnar(
                path, file_format, stream, state, size, rows_before, start=lo, stop=hi
            )
            return
        if hi > path.stat().st_size:
            raise ConfigError(
                f"{stream!r} is shorter than when it was partitioned (it was replaced or "
                "truncated since)",
                field="partition",
                hint="make the partitions again",
            )
        json_text = _json_text_option(options.get("json_text"))
        yield from self._read_lines(
            path, file_format, stream, state, position, size, rows_before, json_text, stop=hi
        )

    def fetch(self, item: str, dest: str | Path, *, overwrite: bool = True) -> FetchResult:
        source = self._path(item)
        target = safe_destination(dest, item)
        if target.exists() and not overwrite:
            raise AlreadyExists(f"{target} exists", hint="pass overwrite=True (CLI: --overwrite)")
        digest = hashlib.sha256()
        size = 0
        with source.open("rb") as src, atomic_file(target) as out:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
        return FetchResult(target, size, f"sha256:{digest.hexdigest()}", verified=True)

    def upload(
        self, item: str, source: str | Path | IO[bytes], *, overwrite: bool = False
    ) -> FetchResult:
        """Copy a local file or binary stream to ``item`` under root (atomic, sha256)."""
        target = self._path(item, must_exist=False)
        if target.exists() and not overwrite:
            raise AlreadyExists(
                f"stream {item!r} exists", hint="pass overwrite=True (CLI: --overwrite)"
            )
        digest = hashlib.sha256()
        size = 0
        opened: IO[bytes] = (
            open(source, "rb")  # noqa: SIM115 - closed below
            if isinstance(source, str | os.PathLike)
            else source
        )
        try:
            with atomic_file(target) as out:
                while chunk := opened.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
        finally:
            if opened is not source:
                opened.close()
        return FetchResult(target, size, f"sha256:{digest.hexdigest()}", verified=True)

    def write(
        self,
        stream: str,
        batches: Iterable[Batch | builtins.list[dict[str, Any]]],
        *,
        mode: Literal["create", "append", "overwrite"] = "create",
        **options: Any,
    ) -> WriteResult:
        """
        Write records to the file ``stream`` (format and compression from its suffix).

        ``mode``: ``create`` (default) refuses an existing file; ``overwrite`` replaces it
        atomically; ``append`` adds records (a Parquet or Arrow file is rebuilt with them
        and replaced atomically), and on failure puts the file back as it was. Other
        options go to the format (CSV ``columns``, ``null_string``; Parquet
        ``compression_codec``).
        """
        if mode not in ("create", "append", "overwrite"):
            raise ConfigError(
                f"write mode must be create, append or overwrite, not {mode!r}", field="mode"
            )
        path = self._path(stream, must_exist=False)
        file_format = self._format(path)
        exists = path.exists()
        if exists and mode == "create":
            raise AlreadyExists(
                f"stream {stream!r} exists", hint="write with mode='append' or mode='overwrite'"
            )
        sink_options = dict(options)
        if not file_format.columnar:
            sink_options.setdefault("encoding", self.config.encoding)
            if file_format.fmt == "csv":
                sink_options.setdefault("delimiter", self._delimiter(file_format))
                sink_options.setdefault("null_string", self.config.null_string)
        sink = make_sink(path, file_format, resumable=False, options=sink_options)
        committed = None
        original = path.stat().st_size if exists else 0
        if mode == "append" and exists:
            committed = self._append_position(sink, path, file_format)
        count = 0
        try:
            sink.open(committed)
            for batch in batches:
                sink.write(batch)
                count += len(batch)
            sink.finish()
            sink.publish()
        except BaseException:
            sink.abort()
            if committed is not None and not file_format.columnar:
                # An append is all-or-nothing: cut the file back to where it was.
                with path.open("r+b") as out:
                    out.truncate(original)
            raise
        return WriteResult(stream, count)

    def write_part(
        self,
        stream: str,
        batches: Iterable[Batch | builtins.list[dict[str, Any]]],
        *,
        job: str,
        index: int,
        **options: Any,
    ) -> WriteResult:
        """
        Write part ``index`` of ``job`` as the hidden file ``.hwpart-<job>-<index>.<name>``
        beside ``stream``, replacing an earlier attempt's (see `files_parts`).
        """
        from headwater._builtin import files_parts

        return files_parts.write_part(self, stream, batches, job, index, options)

    def commit_parts(
        self, stream: str, *, job: str, parts: Mapping[int, int], **options: Any
    ) -> WriteResult:
        """
        Write ``stream`` from the parts of ``job`` in index order (one `write`, with its
        ``mode``), each part's records counted against ``parts``; then delete the parts.
        """
        from headwater._builtin import files_parts

        return files_parts.commit(self, stream, job, parts, options)

    def abort_parts(self, stream: str, *, job: str) -> None:
        """Delete every part of ``job`` written beside ``stream``."""
        from headwater._builtin import files_parts

        files_parts.abort(self, stream, job)

    def _append_position(self, sink: FileSink, path: Path, file_format: FileFormat) -> Any:
        base = {"path": str(sink.path), "format": file_format.fmt}
        if file_format.columnar:
            return {**base, "parts": [], "append": True}
        columns = self._csv_header(path, file_format) if file_format.fmt == "csv" else None
        return {
            **base,
            "compression": file_format.compression,
            "staging": None,
            "bytes": path.stat().st_size,
            "columns": columns,
        }


def _pyarrow(file_format: FileFormat) -> tuple[Any, Any]:
    """pyarrow and pyarrow.parquet, or the error naming the extra that brings them."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(
            f"{file_format.fmt} files need pyarrow", hint="pip install 'headwater[arrow]'"
        ) from None
    return pa, pq


def _arrow_batches(path: Path, file_format: FileFormat, skip: int, size: int) -> Iterator[Any]:
    """Record batches of at most ``size`` rows, starting after the first ``skip`` rows."""
    pa, pq = _pyarrow(file_format)
    try:
        if file_format.fmt == "parquet":
            source = pq.ParquetFile(path)
            groups = []
            seen = 0
            for index in range(source.num_row_groups):
                count = source.metadata.row_group(index).num_rows
                if seen + count > skip:
                    groups.append(index)
                else:
                    seen += count
            cut = skip - seen
            for record_batch in source.iter_batches(batch_size=size, row_groups=groups):
                if cut:
                    if record_batch.num_rows <= cut:
                        cut -= record_batch.num_rows
                        continue
                    record_batch, cut = record_batch.slice(cut), 0
                yield record_batch
            return
        with pa.memory_map(str(path)) as mapped:
            reader = pa.ipc.open_file(mapped)
            cut = skip
            for index in range(reader.num_record_batches):
                record_batch = reader.get_batch(index)
                if cut >= record_batch.num_rows:
                    cut -= record_batch.num_rows
                    continue
                record_batch, cut = record_batch.slice(cut), 0
                for start in range(0, record_batch.num_rows, size):
                    yield record_batch.slice(start, size)
    except HeadwaterError:
        raise
    except (OSError, pa.ArrowException) as exc:
        raise ConfigError(f"{path.name}: cannot read {file_format.fmt}: {exc}") from None


def _chunks_until(handle: IO[bytes], remaining: int) -> Iterator[bytes]:
    """The next ``remaining`` bytes of ``handle``, in chunks."""
    while remaining > 0:
        chunk = handle.read(min(_CHUNK, remaining))
        if not chunk:
            return
        remaining -= len(chunk)
        yield chunk


def _line_end(handle: IO[bytes], offset: int, size: int) -> int:
    """The byte after the first newline at or after ``offset`` (``size`` if none)."""
    handle.seek(offset)
    position = offset
    while chunk := handle.read(1 << 16):
        found = chunk.find(b"\n")
        if found >= 0:
            return position + found + 1
        position += len(chunk)
    return size


def _csv_record_ends(
    handle: IO[bytes], offsets: builtins.list[int], size: int, delimiter: str
) -> builtins.list[int]:
    """`CsvRecordEnds` of ``offsets`` over the file from its start (as far as needed)."""
    ends = CsvRecordEnds(offsets, delimiter)
    while not ends.done:
        chunk = handle.read(_CHUNK)
        if not chunk:
            break
        ends.feed(chunk)
    return ends.finish(size)


def _row_units(path: Path, file_format: FileFormat) -> builtins.list[int]:
    """Rows per row group of a Parquet file, per record batch of an Arrow file."""
    pa, pq = _pyarrow(file_format)
    try:
        if file_format.fmt == "parquet":
            metadata = pq.ParquetFile(path).metadata
            return [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
        with pa.memory_map(str(path)) as mapped:
            reader = pa.ipc.open_file(mapped)
            return [reader.get_batch(i).num_rows for i in range(reader.num_record_batches)]
    except (OSError, pa.ArrowException) as exc:
        raise ConfigError(f"{path.name}: cannot read {file_format.fmt}: {exc}") from None


def _json_text_option(value: Any) -> frozenset[str]:
    """The ``json_text`` read option: field names (a JSON Lines stream's; others ignore it)."""
    if value is None:
        return frozenset()
    if isinstance(value, str) or not all(isinstance(name, str) for name in value):
        raise ConfigError(
            "json_text must be a list of field names", field="json_text",
            hint='e.g. read("events.jsonl", json_text=["payload"])',
        )  # fmt: skip
    return frozenset(value)

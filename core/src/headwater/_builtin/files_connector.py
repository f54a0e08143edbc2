"""
The ``files`` connector: CSV and JSON Lines files in a local directory.

It needs no server and no dependency beyond the standard library, which makes it the
embedded default (the demo runs on it) and the reference plugin authors read first.
Every stream is a file under ``root``; its name is the path relative to ``root`` with
``/`` separators (``sales/2024.csv``).

Resumable state is the byte offset just after the last record of a batch, so resuming
seeks straight there (no re-reading), and a file that grew since (an append-only log)
yields only the new records. A state whose offset is past the end of the file means
the file was replaced; that is refused rather than silently re-read.
"""

from __future__ import annotations

import builtins
import csv
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
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
    FetchResult,
    Item,
    State,
    WriteResult,
)
from headwater._files import atomic_file, safe_destination
from headwater.errors import (
    AlreadyExists,
    ConfigError,
    NotFound,
    PermissionDenied,
    UnsafePath,
)

#: File suffixes read as streams, and the format each means.
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


class FilesConfig(ConnectorConfig):
    """Configuration of the ``files`` connector."""

    root: Path = Field(description="Directory holding the CSV / JSON Lines files (the streams).")
    batch_size: int = Field(
        default=1000,
        ge=1,
        le=1_000_000,
        description="Records per batch unless read() is given one.",
    )
    delimiter: str = Field(
        default=",", min_length=1, max_length=1, description="CSV field delimiter."
    )
    encoding: str = Field(default="utf-8", description="Text encoding of the files.")

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


class FilesConnector(Connector[FilesConfig]):
    """CSV and JSON Lines files in a local directory."""

    id = "files"
    Config = FilesConfig
    summary = "CSV and JSON Lines files in a local directory (the embedded default)"
    capabilities = frozenset(
        {
            Capability.CHECK,
            Capability.LIST,
            Capability.READ,
            Capability.RESUME,
            Capability.FETCH,
            Capability.METADATA,
            Capability.WRITE,
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
    def _format(path: Path) -> str:
        fmt = FORMATS.get(path.suffix.lower())
        if fmt is None:
            known = ", ".join(sorted(FORMATS))
            raise ConfigError(
                f"{path.name}: unsupported file type (known: {known})", field="stream"
            )
        return fmt

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
        streams = sum(1 for p in root.rglob("*") if p.suffix.lower() in FORMATS and p.is_file())
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
                fmt = FORMATS.get(Path(entry.name).suffix.lower())
                kind: Literal["stream", "file"] = "stream" if fmt else "file"
                extra = {"format": fmt} if fmt else {}
                yield Item(rel, kind, size=stat.st_size, modified=modified, extra=extra)

    def metadata(self, item: str) -> dict[str, Any]:
        path = self._path(item)
        stat = path.stat()
        meta: dict[str, Any] = {
            "name": item,
            "size": stat.st_size,
            "modified": datetime.fromtimestamp(stat.st_mtime, tz=UTC).isoformat(),
            "format": FORMATS.get(path.suffix.lower()),
        }
        if meta["format"] == "csv":
            with path.open("rb") as handle:
                counter = _ByteCounter(handle, self.config.encoding)
                meta["columns"] = next(csv.reader(counter, delimiter=self.config.delimiter), [])
        elif meta["format"] == "jsonl":
            first = next(self.read(item, batch_size=1), None)
            meta["columns"] = list(first.rows()[0]) if first and len(first) else []
        return meta

    def read(
        self,
        stream: str,
        state: State | None = None,
        *,
        batch_size: int | None = None,
        **options: Any,
    ) -> Iterator[Batch]:
        if options:
            raise ConfigError(f"files: unknown read option(s): {', '.join(sorted(options))}")
        path = self._path(stream)
        fmt = self._format(path)
        size = batch_size or self.config.batch_size
        offset = 0
        if state:
            if state.get("stream") != stream or not isinstance(state.get("offset"), int):
                raise ConfigError(
                    f"state is not a files-connector state for stream {stream!r}", field="state"
                )
            offset = state["offset"]
            if offset > path.stat().st_size:
                raise ConfigError(
                    f"state offset {offset} is past the end of {stream!r}; the file was "
                    "replaced or truncated since the state was saved",
                    field="state",
                    hint="start again without a state",
                )
        rows_before = int(state.get("rows", 0)) if state else 0
        with path.open("rb") as handle:
            records = (
                self._jsonl_records(handle, offset, stream)
                if fmt == "jsonl"
                else self._csv_records(handle, offset)
            )
            batch: builtins.list[dict[str, Any]] = []
            position = offset
            rows = rows_before
            for record, end in records:
                batch.append(record)
                position = end
                if len(batch) >= size:
                    rows += len(batch)
                    yield Batch(stream, batch, {"stream": stream, "offset": position, "rows": rows})
                    batch = []
            if batch:
                rows += len(batch)
                yield Batch(stream, batch, {"stream": stream, "offset": position, "rows": rows})

    def _jsonl_records(
        self, handle: IO[bytes], offset: int, stream: str
    ) -> Iterator[tuple[dict[str, Any], int]]:
        handle.seek(offset)
        position = offset
        encoding = self.config.encoding
        for line in handle:
            position += len(line)
            text = line.decode(encoding).strip()
            if not text:
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(
                    f"{stream}: invalid JSON at byte {position - len(line)}: {exc.msg}"
                ) from None
            if not isinstance(record, dict):
                raise ConfigError(
                    f"{stream}: line at byte {position - len(line)} is a JSON "
                    f"{type(record).__name__}, expected an object"
                )
            yield record, position

    def _csv_records(self, handle: IO[bytes], offset: int) -> Iterator[tuple[dict[str, Any], int]]:
        encoding = self.config.encoding
        counter = _ByteCounter(handle, encoding)
        reader = csv.reader(counter, delimiter=self.config.delimiter)
        header = next(reader, None)
        if header is None:
            return
        if offset > counter.position:
            # Resuming: skip straight to the saved offset. csv.reader pulls exactly the
            # lines one record needs, so the counter's position is a record boundary.
            handle.seek(offset)
            counter.position = offset
        width = len(header)
        for row in reader:
            if not row:
                continue
            record: dict[str, Any] = dict(zip(header, row, strict=False))
            if len(row) < width:
                record.update(dict.fromkeys(header[len(row) :]))
            elif len(row) > width:
                record["_extra"] = row[width:]
            yield record, counter.position

    def fetch(self, item: str, dest: str | Path, *, overwrite: bool = True) -> FetchResult:
        source = self._path(item)
        target = safe_destination(dest, item)
        if target.exists() and not overwrite:
            raise AlreadyExists(f"{target} exists", hint="pass overwrite=True (CLI: --overwrite)")
        digest = hashlib.sha256()
        size = 0
        with source.open("rb") as src, atomic_file(target) as out:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
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
        Write records to the file ``stream`` (format from its suffix).

        ``mode``: ``create`` (default) refuses an existing file; ``overwrite`` replaces it
        atomically; ``append`` adds records, and on failure truncates back to the
        original length so nothing is half-written.
        """
        if options:
            raise ConfigError(f"files: unknown write option(s): {', '.join(sorted(options))}")
        if mode not in ("create", "append", "overwrite"):
            raise ConfigError(
                f"write mode must be create, append or overwrite, not {mode!r}", field="mode"
            )
        path = self._path(stream, must_exist=False)
        fmt = self._format(path)
        exists = path.exists()
        if exists and mode == "create":
            raise AlreadyExists(
                f"stream {stream!r} exists", hint="write with mode='append' or mode='overwrite'"
            )
        records = (row for batch in batches for row in _rows(batch))
        if mode == "append" and exists:
            return WriteResult(stream, self._append(path, fmt, records))
        with atomic_file(path) as out:
            count = self._write_records(out, fmt, records, header=None)
        return WriteResult(stream, count)

    def _append(self, path: Path, fmt: str, records: Iterator[dict[str, Any]]) -> int:
        original = path.stat().st_size
        header = None
        if fmt == "csv" and original:
            with path.open("rb") as handle:
                header = next(
                    csv.reader(
                        _ByteCounter(handle, self.config.encoding), delimiter=self.config.delimiter
                    ),
                    None,
                )
        try:
            with path.open("ab") as out:
                count = self._write_records(out, fmt, records, header=header)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            # Put the file back as it was: an append is all-or-nothing.
            with path.open("r+b") as out:
                out.truncate(original)
            raise
        return count

    def _write_records(
        self,
        out: IO[bytes],
        fmt: str,
        records: Iterator[dict[str, Any]],
        header: builtins.list[str] | None,
    ) -> int:
        import io

        encoding = self.config.encoding
        count = 0
        if fmt == "jsonl":
            for record in records:
                out.write(json.dumps(record, ensure_ascii=False, default=str).encode(encoding))
                out.write(b"\n")
                count += 1
            return count
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=self.config.delimiter, lineterminator="\n")
        for record in records:
            if header is None:
                header = list(record)
                writer.writerow(header)
            unknown = set(record) - set(header)
            if unknown:
                raise ConfigError(
                    f"record {count + 1} has field(s) {sorted(unknown)} "
                    f"not in the CSV header {header}"
                )
            writer.writerow(["" if record.get(k) is None else record.get(k) for k in header])
            count += 1
            if buffer.tell() > 1 << 16:
                out.write(buffer.getvalue().encode(encoding))
                buffer.seek(0)
                buffer.truncate()
        out.write(buffer.getvalue().encode(encoding))
        return count


def _rows(batch: Batch | list[dict[str, Any]]) -> list[dict[str, Any]]:
    return batch.rows() if isinstance(batch, Batch) else batch


class _ByteCounter:
    """Line iterator over a binary file that tracks the byte offset of what it handed out."""

    def __init__(self, handle: IO[bytes], encoding: str) -> None:
        self.handle = handle
        self.encoding = encoding
        self.position = handle.tell()

    def __iter__(self) -> _ByteCounter:
        return self

    def __next__(self) -> str:
        line = self.handle.readline()
        if not line:
            raise StopIteration
        self.position += len(line)
        return line.decode(self.encoding)

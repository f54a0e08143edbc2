"""
Records in blobs, sans I/O: decoders that are *fed* bytes and encoders that *produce*
them, so the sync and the async connector share every line of format logic.

Decoders track the byte offset just after each record; that offset (with the blob name
and etag) is the resumable state, so a resumed read asks the service for the bytes from
there on and never re-reads what was already delivered.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any, Final

from headwater import Batch, ConfigError, State

#: (record, byte offset just after it)
Decoded = tuple[dict[str, Any], int]

_QUOTE: Final = ord('"')


class _Lines:
    """Cuts a byte stream into complete lines (``\n`` kept), lazily, without copying chunks."""

    def __init__(self) -> None:
        self.tail = b""

    def feed(self, data: bytes) -> Iterator[bytes]:
        start = 0
        if self.tail:
            newline = data.find(b"\n")
            if newline < 0:
                self.tail += data
                return
            yield self.tail + data[: newline + 1]
            self.tail = b""
            start = newline + 1
        while (newline := data.find(b"\n", start)) >= 0:
            yield data[start : newline + 1]
            start = newline + 1
        self.tail = data[start:]

    def rest(self) -> bytes:
        tail, self.tail = self.tail, b""
        return tail


class JsonLinesDecoder:
    """JSON Lines: one object per line; blank lines are skipped."""

    def __init__(self, name: str, offset: int, encoding: str) -> None:
        self.name = name
        self.position = offset
        self.encoding = encoding
        self._lines = _Lines()

    def feed(self, data: bytes) -> Iterator[Decoded]:
        """Decode the complete lines in ``data`` (plus what was left from before), lazily."""
        for line in self._lines.feed(data):
            decoded = self._line(line)
            if decoded is not None:
                yield decoded

    def finish(self) -> Iterator[Decoded]:
        """Decode a last line without a trailing newline."""
        tail = self._lines.rest()
        if tail:
            decoded = self._line(tail)
            if decoded is not None:
                yield decoded

    def _line(self, line: bytes) -> Decoded | None:
        start = self.position
        self.position += len(line)
        if not line.strip():
            return None
        try:
            record = json.loads(line.decode(self.encoding))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"{self.name}: invalid JSON at byte {start}: {type(exc).__name__}"
            ) from None
        if not isinstance(record, dict):
            raise ConfigError(
                f"{self.name}: the line at byte {start} is a JSON "
                f"{type(record).__name__}, expected an object"
            )
        return record, self.position


class CsvDecoder:
    """
    CSV with a header row. Record boundaries are found on bytes: a line ends a record
    when the quotes seen so far balance, so quoted fields may hold newlines.
    """

    #: Records parsed per csv.reader call: amortises its set-up, bounds what is held.
    _GROUP: Final = 256

    def __init__(
        self,
        name: str,
        offset: int,
        encoding: str,
        delimiter: str,
        header: list[str] | None,
    ) -> None:
        self.name = name
        self.position = offset
        self.encoding = encoding
        self.delimiter = delimiter
        self.header = header
        self._lines = _Lines()
        self._pending: list[bytes] = []
        self._quotes = 0

    def feed(self, data: bytes) -> Iterator[Decoded]:
        """Decode the complete records in ``data`` (plus what was left from before), lazily."""
        return self._records(self._lines.feed(data))

    def finish(self) -> Iterator[Decoded]:
        """Decode the last record (no trailing newline); refuse an unterminated quote."""
        tail = self._lines.rest()
        if tail:
            yield from self._records(iter([tail]))
        if self._pending:
            raise ConfigError(f"{self.name}: unterminated quoted field at the end of the blob")

    def _records(self, lines: Iterator[bytes]) -> Iterator[Decoded]:
        texts: list[str] = []
        ends: list[int] = []
        for line in lines:
            self._pending.append(line)
            self._quotes += line.count(_QUOTE)
            if self._quotes % 2:
                continue  # inside a quoted field: the record goes on
            raw = b"".join(self._pending)
            self._pending.clear()
            self._quotes = 0
            self.position += len(raw)
            try:
                texts.append(raw.decode(self.encoding))
            except UnicodeDecodeError:
                raise ConfigError(
                    f"{self.name}: bytes before offset {self.position} are not {self.encoding}"
                ) from None
            ends.append(self.position)
            if len(texts) >= self._GROUP:
                yield from self._parse(texts, ends)
                texts, ends = [], []
        yield from self._parse(texts, ends)

    def _parse(self, texts: list[str], ends: list[int]) -> Iterator[Decoded]:
        try:
            rows = list(csv.reader(texts, delimiter=self.delimiter, strict=True))
        except csv.Error as exc:
            raise ConfigError(
                f"{self.name}: malformed CSV near byte {ends[-1] if ends else self.position}: {exc}"
            ) from None
        for row, end in zip(rows, ends, strict=True):
            if not row:
                continue
            if self.header is None:
                self.header = row
                continue
            yield _row_to_record(self.header, row), end


def _row_to_record(header: list[str], row: list[str]) -> dict[str, Any]:
    width = len(header)
    record: dict[str, Any] = dict(zip(header, row, strict=False))
    if len(row) < width:
        record.update(dict.fromkeys(header[len(row) :]))
    elif len(row) > width:
        record["_extra"] = row[width:]
    return record


Decoder = JsonLinesDecoder | CsvDecoder


def make_decoder(
    fmt: str,
    name: str,
    offset: int,
    *,
    encoding: str,
    delimiter: str,
    header: list[str] | None,
) -> Decoder:
    """A decoder for ``fmt`` (jsonl or csv) starting at byte ``offset`` of blob ``name``."""
    if fmt == "jsonl":
        return JsonLinesDecoder(name, offset, encoding)
    return CsvDecoder(name, offset, encoding, delimiter, header)


class Batcher:
    """
    Groups decoded records of one blob into `Batch` objects with the state after each.

    State: ``{"stream", "blob", "etag", "offset", "rows"}`` (+ ``"header"`` for CSV, so a
    resumed read need not fetch the first line again).
    """

    def __init__(
        self, stream: str, blob: str, etag: str, size: int, rows: int, batch_size: int
    ) -> None:
        self.stream = stream
        self.blob = blob
        self.etag = etag
        self.rows = rows
        self.batch_size = batch_size
        self._records: list[dict[str, Any]] = []
        self._offset = 0

    def add(self, decoded: Iterable[Decoded], decoder: Decoder) -> Iterator[Batch]:
        """Add records; yield each batch as soon as it is full."""
        for record, end in decoded:
            self._records.append(record)
            self._offset = end
            if len(self._records) >= self.batch_size:
                yield self._emit(decoder)

    def flush(self, decoder: Decoder) -> list[Batch]:
        """The last, partial batch (if any)."""
        return [self._emit(decoder)] if self._records else []

    def _emit(self, decoder: Decoder) -> Batch:
        records, self._records = self._records, []
        self.rows += len(records)
        state: State = {
            "stream": self.stream,
            "blob": self.blob,
            "etag": self.etag,
            "offset": self._offset,
            "rows": self.rows,
        }
        if isinstance(decoder, CsvDecoder) and decoder.header is not None:
            state["header"] = decoder.header
        return Batch(self.stream, records, state)


def decode_blob_chunks(
    decoder: Decoder, batcher: Batcher, chunks: Iterable[bytes]
) -> Iterable[Batch]:
    """The sync driver: feed ``chunks`` and yield batches as they fill."""
    for chunk in chunks:
        yield from batcher.add(decoder.feed(chunk), decoder)
    yield from batcher.add(decoder.finish(), decoder)
    yield from batcher.flush(decoder)


class RecordEncoder:
    """Turns batches of dicts into JSON Lines or CSV bytes; counts the records."""

    def __init__(self, fmt: str, *, encoding: str, delimiter: str) -> None:
        if fmt not in ("jsonl", "csv"):
            raise ConfigError(
                f"write supports jsonl and csv records, not {fmt!r}",
                field="format",
                hint="upload a Parquet file with upload()",
            )
        self.fmt = fmt
        self.encoding = encoding
        self.delimiter = delimiter
        self.count = 0
        self._header: list[str] | None = None

    def encode(self, batch: Batch | list[dict[str, Any]]) -> bytes:
        """The bytes for one batch of records."""
        rows = batch.rows() if isinstance(batch, Batch) else batch
        if self.fmt == "jsonl":
            text = "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in rows)
            self.count += len(rows)
            return text.encode(self.encoding)
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=self.delimiter, lineterminator="\n")
        for row in rows:
            if self._header is None:
                self._header = list(row)
                writer.writerow(self._header)
            unknown = set(row) - set(self._header)
            if unknown:
                raise ConfigError(
                    f"record {self.count + 1} has field(s) {sorted(unknown)} "
                    f"not in the CSV header {self._header}"
                )
            writer.writerow(["" if row.get(k) is None else row.get(k) for k in self._header])
            self.count += 1
        return buffer.getvalue().encode(self.encoding)

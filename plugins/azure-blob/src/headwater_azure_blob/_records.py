"""
Records in blobs, sans I/O: what is particular to blobs around the shared format layer
(`headwater.formats`, which decodes and encodes JSON Lines and CSV and (de)compresses),
so the sync and the async connector share every line of it.

Reading one blob (`BlobReading`): the stored bytes are undone in two steps, the blob's
``Content-Encoding`` (gzip, zstd) and then the compression its suffix names
(``events.jsonl.gz``), decoded into records and grouped into batches (`Batcher`). The
offset in a state counts bytes after both steps. A blob stored as it is resumes with a
ranged GET from that offset; a compressed one is read again from its first byte and the
decoded bytes before the offset are skipped, so no record is ever yielded twice.

Writing (`RecordWriting`): batches are encoded (JSON Lines, CSV, Parquet) and compressed
by suffix into the bytes a block upload stages.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final

from headwater import Batch, ConfigError, IntegrityError, State
from headwater.formats import (
    Codec,
    CsvDecoder,
    CsvEncoder,
    Decoded,
    Decoder,
    FileFormat,
    JsonLinesEncoder,
    compressor,
    decompressor,
    make_decoder,
)

if TYPE_CHECKING:
    from headwater_azure_blob._parquet import ParquetEncoder
    from headwater_azure_blob._plan import BlobRef, Start


class Batcher:
    """
    Groups decoded records of one blob into `Batch` objects with the state after each.

    State: ``{"stream", "blob", "etag", "offset", "rows"}`` (+ ``"header"`` for CSV, so a
    resumed read need not fetch the first line again).
    """

    def __init__(self, stream: str, blob: str, etag: str, rows: int, batch_size: int) -> None:
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
        header = getattr(decoder, "header", None)
        if header is not None:
            state["header"] = header
        # CSV values are strings: the batch says so, for destinations with typed columns.
        return Batch(self.stream, records, state, text=isinstance(decoder, CsvDecoder))


#: Stored bytes of a compressed blob inflated per decompressor call.
_INFLATE_SLICE: Final = 64 * 1024


class _Chain:
    """Two codecs one after the other: the Content-Encoding, then the suffix's compression."""

    def __init__(self, first: Codec, second: Codec) -> None:
        self._first = first
        self._second = second

    def process(self, data: bytes) -> bytes:
        return self._second.process(self._first.process(data))

    def flush(self) -> bytes:
        return self._second.process(self._first.flush()) + self._second.flush()


class BlobReading:
    """
    The records of one text blob (JSON Lines, CSV) from its stored bytes, fed as they
    arrive: ``for chunk in ranged_gets(from_byte=reading.fetch_from): feed(chunk)``, then
    `finish`.

    When the read starts at the blob's first byte and the blob has a Content-MD5, the
    stored bytes are hashed on the way and checked before the last batch is released,
    so a corrupt blob fails (`IntegrityError`) instead of ending quietly.
    """

    def __init__(
        self,
        stream: str,
        ref: BlobRef,
        start: Start,
        found: FileFormat,
        *,
        rows: int,
        batch_size: int,
        encoding: str,
        delimiter: str,
        null_string: str,
    ) -> None:
        self.name = ref.name
        self.size = ref.size
        self._coding = ref.coding
        self._compression = found.compression
        compressed = ref.coding is not None or found.compression is not None
        self._compressed = compressed
        if not compressed and start.offset > ref.size:
            raise _past_the_end(start.offset, ref.name)
        #: The stored byte the ranged GETs start from.
        self.fetch_from = 0 if compressed else start.offset
        self._skip = start.offset if compressed else 0
        self._offset = start.offset
        self._codec: Codec = _Chain(decompressor(ref.coding), decompressor(found.compression))
        self._md5 = hashlib.md5(usedforsecurity=False) if ref.md5 and not self.fetch_from else None
        self._expected_md5 = ref.md5
        self.decoder = make_decoder(
            found.fmt,
            ref.name,
            start.offset,
            encoding=encoding,
            delimiter=delimiter,
            header=start.header if start.offset else None,
            null_string=null_string,
        )
        self.batcher = Batcher(stream, ref.name, ref.etag, rows, batch_size)

    @property
    def rows(self) -> int:
        """Rows of the stream read so far (before this blob, plus this blob's)."""
        return self.batcher.rows

    def feed(self, chunk: bytes) -> Iterator[Batch]:
        """Take the next stored bytes; yield the batches they complete."""
        if self._md5 is not None:
            self._md5.update(chunk)
        # Compressed data is inflated a slice at a time, so what one call holds in memory
        # is a slice times the compression ratio, not the whole chunk's.
        step = _INFLATE_SLICE if self._compressed else len(chunk)
        for start in range(0, len(chunk), max(step, 1)):
            data = self._skipped(self._undo(chunk[start : start + step], final=False))
            if data:
                yield from self.batcher.add(self.decoder.feed(data), self.decoder)

    def finish(self) -> Iterator[Batch]:
        """The records after the last stored byte, then the last partial batch."""
        data = self._skipped(self._undo(b"", final=True))
        if self._skip:
            raise _past_the_end(self._offset, self.name)
        self._check_md5()
        if data:
            yield from self.batcher.add(self.decoder.feed(data), self.decoder)
        yield from self.batcher.add(self.decoder.finish(), self.decoder)
        yield from self.batcher.flush(self.decoder)

    def _undo(self, chunk: bytes, *, final: bool) -> bytes:
        try:
            return self._codec.flush() if final else self._codec.process(chunk)
        except ConfigError:
            raise  # the format layer's own message (a truncated member, say)
        except Exception as exc:  # zlib.error, lzma.LZMAError, OSError, zstd.ZstdError
            what = " then ".join(
                f"{c} ({why})"
                for c, why in ((self._coding, "Content-Encoding"), (self._compression, "suffix"))
                if c is not None
            )
            raise IntegrityError(
                f"{self.name!r}: the stored bytes do not decode as {what}: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                hint="the blob is corrupt, or its name or Content-Encoding does not say "
                "how it is compressed",
            ) from None

    def _skipped(self, data: bytes) -> bytes:
        if self._skip and data:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return b""
            data, self._skip = data[self._skip :], 0
        return data

    def _check_md5(self) -> None:
        if self._md5 is None or self._expected_md5 is None:
            return
        digest = self._md5.digest()
        if digest != self._expected_md5:
            raise IntegrityError(
                f"{self.name!r}: Content-MD5 mismatch: the stored bytes read do not hash to "
                "the blob's Content-MD5",
                hint="the stored blob or its Content-MD5 property is corrupt; re-upload it",
            )


def _past_the_end(offset: int, name: str) -> ConfigError:
    return ConfigError(
        f"state offset {offset} is past the end of {name!r}",
        field="state",
        hint="start again without a state",
    )


class CsvHeaderProbe:
    """
    The header of an existing CSV blob (a continued write must not repeat it, and its
    records must fit it), from its first stored bytes: feed chunks until `feed` is true.
    """

    def __init__(
        self, name: str, found: FileFormat, coding: str | None, *, encoding: str, delimiter: str
    ) -> None:
        self._codec = _Chain(decompressor(coding), decompressor(found.compression))
        self._decoder = make_decoder("csv", name, 0, encoding=encoding, delimiter=delimiter)

    @property
    def header(self) -> list[str] | None:
        """The header, once found (``None`` for a blob without one: an empty blob)."""
        header: list[str] | None = getattr(self._decoder, "header", None)
        return header

    def feed(self, chunk: bytes) -> bool:
        """Take the next stored bytes; true once the header is known."""
        for _record in self._decoder.feed(self._codec.process(chunk)):
            break
        return self.header is not None

    def finish(self) -> None:
        """The blob ended: decode what is left (a header without a newline)."""
        for _record in self._decoder.feed(self._codec.flush()):
            break
        if self.header is None:
            for _record in self._decoder.finish():
                break


class RecordWriting:
    """
    Batches → the stored bytes of a blob: encoded by format and compressed by suffix.

    ``count`` is the number of records encoded. With ``csv_header`` (continuing a CSV
    blob) the header is not written again and every record must fit it.
    """

    def __init__(
        self,
        found: FileFormat,
        *,
        encoding: str,
        delimiter: str,
        null_string: str,
        columns: list[str] | None = None,
        continuing: bool = False,
        csv_header: list[str] | None = None,
        parquet_options: dict[str, Any] | None = None,
    ) -> None:
        self.fmt = found.fmt
        self._codec = compressor(found.compression)
        self._carried = 0
        self.encoder: JsonLinesEncoder | CsvEncoder | ParquetEncoder
        if found.fmt == "jsonl":
            self.encoder = JsonLinesEncoder(encoding=encoding)
        elif found.fmt == "csv":
            if continuing and csv_header is not None:
                columns = csv_header
            self.encoder = CsvEncoder(
                columns=columns,
                encoding=encoding,
                delimiter=delimiter,
                null_string=null_string,
                header=not (continuing and csv_header is not None),
            )
        else:
            from headwater_azure_blob._parquet import ParquetEncoder

            self.encoder = ParquetEncoder(**(parquet_options or {}))

    @property
    def count(self) -> int:
        """Records encoded so far (those carried over from a rewritten blob not counted)."""
        return self.encoder.count - self._carried

    def carry(self, batch: Any) -> bytes:
        """Encode a batch of the blob being rewritten (Parquet continued): not counted."""
        before = self.encoder.count
        data = self.encode(batch)
        self._carried += self.encoder.count - before
        return data

    def encode(self, batch: Any) -> bytes:
        """The stored bytes for one batch (may be empty while a compressor or Parquet buffers)."""
        return self._codec.process(self.encoder.encode(batch))

    def finish(self) -> bytes:
        """The stored bytes that end the blob."""
        return self._codec.process(self.encoder.finish()) + self._codec.flush()

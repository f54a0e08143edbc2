"""
Records in blobs, sans I/O: what is particular to blobs around the shared format layer
(`headwater.formats`, which decodes and encodes JSON Lines and CSV and (de)compresses),
so the sync and the async connector share every line of it.

Reading one blob (`BlobReading`): the stored bytes are undone in two steps, the blob's
``Content-Encoding`` (gzip, zstd) and then the compression its suffix names
(``events.jsonl.gz``), decoded into records and cut into batches by the format layer's
`BatchCutter`, the reading path every connector that reads files shares. The
offset in a state counts bytes after both steps. A blob stored as it is resumes with a
ranged GET from that offset; a compressed one is read again from its first byte and the
decoded bytes before the offset are skipped, so no record is ever yielded twice.

Writing (`RecordWriting`): batches are encoded (JSON Lines, CSV, Parquet) and compressed
by suffix into the bytes a block upload stages.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import queue
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final

from headwater import Batch, ConfigError, IntegrityError, State
from headwater.formats import (
    BatchCutter,
    CsvDecoder,
    CsvEncoder,
    Decompressor,
    FileFormat,
    JsonLinesEncoder,
    compressor,
    decompressor,
    make_decoder,
)
from headwater.toolkit import read_ahead

if TYPE_CHECKING:
    from headwater_azure_blob._parquet import ParquetEncoder
    from headwater_azure_blob._plan import BlobRef, Start


#: Decoded bytes of a compressed blob at most in one piece: smaller than the format
#: layer's default, since a read also holds two ranged GETs (the SDK's copies make each
#: about 3 MB) and stays within the contract's bound (16 MiB) with these.
_PIECE: Final = 1 << 19


class _Chain:
    """
    Two decompressors one after the other: the Content-Encoding, then the suffix's
    compression; each piece of the first is undone by the second in pieces, so no piece
    is larger than the second's.
    """

    def __init__(self, first: Decompressor, second: Decompressor) -> None:
        self._first = first
        self._second = second

    def pieces(self, data: bytes) -> Iterator[bytes]:
        for piece in self._first.pieces(data):
            yield from self._second.pieces(piece)

    def process(self, data: bytes) -> bytes:
        return b"".join(self.pieces(data))

    def flush(self) -> bytes:
        return self.process(self._first.flush()) + self._second.flush()


class Received:
    """
    The stored bytes of one ranged GET, as the SDK writes them (``readinto``): kept, or
    passed on as they arrive (``forward``: to the inflating thread of a compressed blob,
    which then works on them while the GET goes on).
    """

    def __init__(self, forward: Callable[[bytes], None] | None = None) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self._forward = forward

    def write(self, data: bytes) -> int:
        if data:
            if self._forward is None:
                self.chunks.append(bytes(data))
            else:
                self._forward(bytes(data))
        self.size += len(data)
        return len(data)


#: The piece after the last decoded piece of the stored bytes handed over (no other
#: piece is empty).
_USED_UP: Final = b""


class BlobReading:
    """
    The records of one text blob (JSON Lines, CSV) from its stored bytes, in order:
    each ranged GET's bytes (a `Received`) are handed over (`hand`), then their decoded
    pieces taken (`decoded`, until ``None``) and cut into batches (`batches`); after the
    last GET, `finish`; `close` in any case. `feed` does it all for bytes at hand.
    Batches are cut by the format layer's `BatchCutter`, as every connector that reads
    files cuts them.

    A compressed blob is inflated (and hashed) on a thread of its own, a piece ahead of
    the decoding (zlib, bz2, lzma and zstd release the GIL): `decoded` blocks until the
    next piece is ready, so a driver runs it as blocking work.

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
        self.stream = stream
        self.name = ref.name
        self.size = ref.size
        self.etag = ref.etag
        self._coding = ref.coding
        self._compression = found.compression
        compressed = ref.coding is not None or found.compression is not None
        #: Whether the stored bytes are inflated (on a thread of their own).
        self.compressed = compressed
        if not compressed and start.offset > ref.size:
            raise _past_the_end(start.offset, ref.name)
        #: The stored byte the ranged GETs start from.
        self.fetch_from = 0 if compressed else start.offset
        self._codec = _Chain(
            decompressor(ref.coding, _PIECE), decompressor(found.compression, _PIECE)
        )
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
        self._cutter = BatchCutter(self.decoder, batch_size, start.offset if compressed else 0)
        #: Rows of the stream read so far (before this blob, plus this blob's).
        self.rows = rows
        # CSV values are strings: the batches say so, for destinations with typed columns.
        self._text = isinstance(self.decoder, CsvDecoder)
        self._waiting: collections.deque[bytes] = collections.deque()  # stored as it is
        self._inbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._inflated: Generator[bytes, None, None] | None = None

    def receiver(self) -> Received:
        """Where the next GET writes its stored bytes (passed on as they arrive when compressed)."""
        return Received(self._inbox.put if self.compressed else None)

    def hand(self, received: Received) -> None:
        """The next GET (from `receiver`) has ended: its stored bytes are to decode."""
        if not self.compressed:
            for chunk in received.chunks:
                self._hash(chunk)
            self._waiting.extend(received.chunks)
            self._waiting.append(_USED_UP)
            return
        if self._inflated is None:
            self._inflated = read_ahead(self._inflate)
        self._inbox.put(_USED_UP)

    def decoded(self) -> bytes | None:
        """
        The next decoded piece of the stored bytes handed over, ``None`` once they are
        used up (blocking while a compressed blob's next piece is inflated).
        """
        piece = self._waiting.popleft() if self._inflated is None else next(self._inflated)
        return piece or None

    def batches(self, piece: bytes) -> Iterator[Batch]:
        """The batches that the decoded bytes ``piece`` complete."""
        return self._batches(self._cutter.feed(piece))

    def close(self) -> None:
        """Stop the inflating thread, if one runs (idempotent)."""
        if self._inflated is not None:
            self._inbox.put(None)  # it may wait for stored bytes
            try:
                self._inflated.close()
            except ValueError:
                # Still waited on by a worker thread of a cancelled async read: the
                # thread ends by itself once it has taken the None.
                pass

    def feed(self, chunk: bytes) -> Iterator[Batch]:
        """Take the next stored bytes; yield the batches they complete."""
        received = self.receiver()
        received.write(chunk)
        self.hand(received)
        while (piece := self.decoded()) is not None:
            yield from self.batches(piece)

    def _inflate(self) -> Iterator[bytes]:
        """On the inflating thread: each stored chunk's decoded pieces, `_USED_UP` after a GET's."""
        while (chunk := self._inbox.get()) is not None:
            if not chunk:
                yield _USED_UP
                continue
            self._hash(chunk)
            with self._decoding():
                yield from self._codec.pieces(chunk)  # each at most _PIECE bytes
            del chunk  # not held while waiting for the next GET

    def _hash(self, chunk: bytes) -> None:
        if self._md5 is not None:
            self._md5.update(chunk)

    def finish(self) -> Iterator[Batch]:
        """The records after the last stored byte, then the last partial batch."""
        self.close()  # every piece was taken: the thread has nothing left to do
        with self._decoding():
            tail = self._codec.flush()  # checks the stored bytes end where they may
        self._check_md5()
        if tail:
            yield from self.batches(tail)
        yield from self._batches(self._cutter.finish())

    def _batches(self, cut: Iterable[tuple[list[dict[str, Any]], int]]) -> Iterator[Batch]:
        for records, offset in cut:
            self.rows += len(records)
            state: State = {
                "stream": self.stream,
                "blob": self.name,
                "etag": self.etag,
                "offset": offset,
                "rows": self.rows,
            }
            header = getattr(self.decoder, "header", None)
            if header is not None:
                state["header"] = header
            yield Batch(self.stream, records, state, text=self._text)

    @contextlib.contextmanager
    def _decoding(self) -> Iterator[None]:
        """Stored bytes that do not decode: an `IntegrityError` naming the blob and codings."""
        try:
            yield
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
        for piece in self._codec.pieces(chunk):
            for _record in self._decoder.feed(piece):
                break
            if self.header is not None:
                return True
        return False

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

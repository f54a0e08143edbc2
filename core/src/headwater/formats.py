"""
Record formats, sans I/O: one layer for every connector and sink that reads or writes
files, so a fix lands once.

Decoders are *fed* bytes and yield ``(record, offset)`` pairs, the offset being the
position just after the record in the (decompressed) byte stream: that offset is what a
resumable state stores. Encoders take batches and *return* bytes. Neither does I/O, so a
sync and an async driver share every line of format logic (see the ``files`` connector,
the Azure Blob connector and `headwater.copy`'s file sinks).

Formats and their conventions:

* **JSON Lines** (``.jsonl``, ``.ndjson``): one object per line, UTF-8, blank lines
  skipped. Values Python's JSON cannot hold are written as: `decimal.Decimal` → string
  (exact digits), date/time → ISO 8601, `uuid.UUID` → string, bytes → base64,
  ``timedelta`` → seconds, sets/tuples → lists. Floats NaN and ±Infinity are written as
  ``NaN``/``Infinity`` (as Python's json does) so they come back unchanged.
* **CSV** (``.csv``, ``.tsv``): a header row covering every field. NULL is an *unquoted*
  empty field and the empty string a quoted one (``""``), as PostgreSQL's CSV mode and
  pyarrow read them; ``null_string`` chooses another unquoted NULL marker (``\\N``, say).
  Lists and objects are written as JSON text. Fields may be as large as memory allows.
* **Parquet** (``.parquet``) and **Arrow IPC** (``.arrow``, ``.feather``) need pyarrow;
  see `headwater.copy` for how the file sinks write them.

A UTF-8 byte-order mark at the start of a file is skipped on read (spreadsheets write
one) and never written. Compression comes from the suffix (``events.jsonl.gz``): gzip,
bz2 and xz from the standard library, zstd from it from Python 3.14 and from the
``backports.zstd`` package before (``pip install 'headwater[zstd]'``). Decompression
gives pieces of at most `PIECE` bytes, so what a reader holds does not grow with how
well a file compresses.
"""

from __future__ import annotations

import base64
import bz2
import codecs
import csv
import dataclasses
import datetime
import decimal
import functools
import io
import itertools
import json
import lzma
import math
import re
import sys
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, Final, Protocol, overload

from headwater._gc import gc_paused
from headwater._json import long_integer_offsets
from headwater.errors import ConfigError

if TYPE_CHECKING:
    from headwater._connector import Batch

__all__ = [
    "COMPRESSIONS",
    "FORMATS",
    "JSON_FIELD_METADATA",
    "JSON_NULL",
    "LINE_FORMATS",
    "PIECE",
    "BatchCutter",
    "Codec",
    "CopyText",
    "CsvDecoder",
    "CsvEncoder",
    "CsvRecordEnds",
    "Decoded",
    "Decoder",
    "Decompressor",
    "EncodedLines",
    "FileFormat",
    "JsonLinesDecoder",
    "JsonLinesEncoder",
    "arrow_from_records",
    "arrow_rows",
    "byte_ranges",
    "byte_targets",
    "cast_arrow_table",
    "compressor",
    "copy_text_field",
    "decode_batches",
    "decode_stream",
    "decompressed",
    "decompressor",
    "detect",
    "json_default",
    "make_decoder",
    "records_of",
    "unify_arrow_schemas",
    "unit_ranges",
]

#: Suffix → record format.
FORMATS: Final = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
}
#: Suffix → compression.
COMPRESSIONS: Final = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}
#: Formats that are streams of text records (the others are columnar and need pyarrow).
LINE_FORMATS: Final = frozenset({"jsonl", "csv"})

#: (record, offset just after it in the decompressed bytes)
Decoded = tuple[dict[str, Any], int]

_BOM: Final = codecs.BOM_UTF8
_QUOTE: Final = ord('"')

# csv's default field limit (128 KiB) is far below the largest value a database holds;
# the limit exists to stop runaway quotes, which our record splitter already bounds.
csv.field_size_limit(sys.maxsize)


@dataclasses.dataclass(frozen=True, slots=True)
class FileFormat:
    """A record format and an optional compression, as a file name implies them."""

    fmt: str
    compression: str | None = None
    #: CSV delimiter implied by the name (tab for ``.tsv``), else ``None``.
    delimiter: str | None = None

    @property
    def columnar(self) -> bool:
        """Parquet or Arrow IPC (need pyarrow, not line-oriented)."""
        return self.fmt not in LINE_FORMATS


def detect(name: str, fmt: str | None = None, compression: str | None = None) -> FileFormat:
    """
    The format (and compression) of file ``name`` from its suffixes; ``fmt`` and
    ``compression`` override what the name says.

    Raises:
        ConfigError: neither the name nor ``fmt`` gives a known format.
    """
    suffixes = [s.lower() for s in PurePath(name).suffixes]
    if compression is None and suffixes and suffixes[-1] in COMPRESSIONS:
        compression = COMPRESSIONS[suffixes.pop()]
    if compression is not None and compression not in COMPRESSIONS.values():
        known = ", ".join(sorted(COMPRESSIONS.values()))
        raise ConfigError(
            f"unknown compression {compression!r} (known: {known})", field="compression"
        )
    delimiter = "\t" if suffixes and suffixes[-1] == ".tsv" else None
    if fmt is None:
        fmt = FORMATS.get(suffixes[-1]) if suffixes else None
        if fmt is None:
            known = ", ".join(sorted(FORMATS))
            raise ConfigError(
                f"cannot tell the record format of {name!r} from its name (known suffixes: "
                f"{known}, optionally followed by {', '.join(sorted(COMPRESSIONS))})",
                field="format",
                hint="give the format explicitly (--format jsonl|csv|parquet|arrow)",
            )
    elif fmt not in set(FORMATS.values()):
        known = ", ".join(sorted(set(FORMATS.values())))
        raise ConfigError(f"unknown format {fmt!r} (known: {known})", field="format")
    if compression is not None and fmt not in LINE_FORMATS:
        raise ConfigError(
            f"{fmt} files compress their own pages; {compression} on top is not supported",
            field="compression",
        )
    return FileFormat(fmt, compression, delimiter)


# --- values ------------------------------------------------------------------------------


def json_default(value: Any) -> Any:
    """
    The JSON form of a value Python's json module cannot encode (see the module
    docstring); the one rule every JSON and CSV writer of headwater follows.
    """
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        # Exact: a float would lose digits of a NUMERIC.
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, PurePath):
        return str(value)
    raise TypeError(f"cannot write a {type(value).__name__} value as JSON")


class JsonText(str):
    """
    A str that already is JSON text: a json column's document as written (key order,
    duplicate keys, the digits of its numbers). Writers keep it a document: JSON Lines
    embeds it, CSV writes its text, Arrow stores it as a string marked as JSON; a
    database writer stores the text as it is. A plain str in a JSON column is a JSON
    string value.
    """

    __slots__ = ()


#: Raw tabs and newlines sit only between a JSON document's tokens: spaces keep it.
_JSON_SPACES: Final = str.maketrans("\t\n\r", "   ")


def dumps_document(value: Any, default: Any = json_default) -> str:
    """
    The JSON text of a document (an object, array or scalar) whose numbers may be
    ``decimal.Decimal``: written as JSON numbers with every digit (``2.50`` stays
    ``2.50``), where `json_default` writes a Decimal on its own as a string. This is how
    a JSON value read exactly (numbers a float would change kept as Decimal) goes back.
    """
    marks: list[str] = []
    token = uuid.uuid4().hex

    def walk(item: Any) -> Any:
        if isinstance(item, decimal.Decimal):
            if not item.is_finite():
                raise ValueError(f"{item} is not a JSON number")
            marks.append(f"{item:f}")  # positional, as PostgreSQL's numeric prints
            return f"{token}{len(marks) - 1}"
        if type(item) is JsonText:
            if item == "null":
                # Inside a list a null element is NULL: the document null would be one.
                raise ValueError("the JSON document null inside a list cannot be told from NULL")
            marks.append(item.translate(_JSON_SPACES))  # a document: embedded as it is
            return f"{token}{len(marks) - 1}"
        if isinstance(item, dict):
            return {key: walk(inner) for key, inner in item.items()}
        if isinstance(item, list):
            return [walk(inner) for inner in item]
        return item

    text = json.dumps(walk(value), default=default, ensure_ascii=False)
    if not marks:
        return text
    # The token is a fresh random hex string: no other string of the document holds it.
    return re.sub(f'"{token}(\\d+)"', lambda match: marks[int(match[1])], text)


@dataclasses.dataclass(frozen=True, slots=True)
class EncodedLines:
    """
    Records already encoded as JSON Lines (UTF-8, one object per line, each ending in
    ``\\n``), as a source that can encode them itself hands them over: a JSON Lines
    destination writes the bytes as they are, anything else parses them.
    """

    data: bytes
    #: How many records (lines) ``data`` holds.
    num_rows: int

    def __len__(self) -> int:
        return self.num_rows

    def slice(self, offset: int, length: int) -> EncodedLines:
        """``length`` records from record ``offset`` on (as ``pyarrow.RecordBatch.slice``)."""
        start = 0
        for _ in range(offset):
            start = self.data.index(b"\n", start) + 1
        end = start
        taken = 0
        while taken < length and end < len(self.data):
            end = self.data.index(b"\n", end) + 1
            taken += 1
        return EncodedLines(self.data[start:end], taken)

    def to_pylist(self) -> list[dict[str, Any]]:
        """The records as dicts."""
        decoder = JsonLinesDecoder("<encoded lines>")
        rows = [record for record, _end in decoder.feed(self.data)]
        rows.extend(record for record, _end in decoder.finish())
        return rows


@dataclasses.dataclass(frozen=True, slots=True)
class CopyText:
    """
    Rows in PostgreSQL's COPY text format (tab-separated fields, ``\\N`` for NULL,
    backslash escapes, each row ending in ``\\n``) with their column names: what one
    database streams to another of the same kind without a value built in Python.
    Anything else reads them as text records (`rows` of strings, `Batch.text`).
    """

    data: bytes
    num_rows: int
    columns: tuple[str, ...]

    def __len__(self) -> int:
        return self.num_rows

    def slice(self, offset: int, length: int) -> CopyText:
        """``length`` rows from row ``offset`` on."""
        lines = self.data.split(b"\n")[offset : offset + length]
        return CopyText(b"".join(line + b"\n" for line in lines), len(lines), self.columns)

    def to_pylist(self) -> list[dict[str, Any]]:
        """The rows as records of strings (None for NULL)."""
        rows = self.data.decode("utf-8").split("\n")[: self.num_rows]
        return [
            dict(zip(self.columns, map(copy_text_field, row.split("\t")), strict=True))
            for row in rows
        ]


_COPY_ESCAPES: Final = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def copy_text_field(field: str) -> str | None:
    """One field of PostgreSQL's COPY text format as its value (None for ``\\N``)."""
    if field == "\\N":
        return None
    if "\\" not in field:
        return field
    out = []
    i = 0
    while i < len(field):
        char = field[i]
        if char != "\\" or i + 1 == len(field):
            out.append(char)
            i += 1
            continue
        nxt = field[i + 1]
        if nxt in _COPY_ESCAPES:
            out.append(_COPY_ESCAPES[nxt])
            i += 2
        elif nxt in "01234567":
            digits = field[i + 1 : i + 4]
            octal = len(digits) - len(digits.lstrip("01234567"))
            out.append(chr(int(digits[:octal], 8)))
            i += 1 + octal
        elif nxt == "x" and i + 2 < len(field) and field[i + 2] in "0123456789abcdefABCDEF":
            hexa = field[i + 2 : i + 4]
            hexa = hexa if len(hexa) == 2 and hexa[1] in "0123456789abcdefABCDEF" else hexa[:1]
            out.append(chr(int(hexa, 16)))
            i += 2 + len(hexa)
        else:
            out.append(nxt)
            i += 2
    return "".join(out)


def records_of(batch: Batch | list[dict[str, Any]] | Any) -> list[dict[str, Any]]:
    """The records of a batch, a list of dicts or an Arrow record batch/table, as dicts."""
    if isinstance(batch, list):
        return batch
    rows = getattr(batch, "rows", None)
    if callable(rows):
        return rows()  # type: ignore[no-any-return]
    to_pylist = getattr(batch, "to_pylist", None)
    if callable(to_pylist):
        return to_pylist()  # type: ignore[no-any-return]
    raise ConfigError(
        f"expected batches of records (lists of dicts, Batch or Arrow), got {type(batch).__name__}"
    )


# --- compression -------------------------------------------------------------------------


class Codec(Protocol):
    """A streaming (de)compressor: bytes in, bytes out, then whatever is left."""

    def process(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


#: The most decompressed bytes one step of a `Decompressor` gives by default (one
#: `pieces` item): what a reader holds of a compressed stream at once, however well it
#: compresses (a gzip member inflates up to about 1,000 times its size, a zstd frame
#: 30,000 times); a reader holds a few. Not smaller: a decompressing thread takes the
#: GIL back for each block of output CPython's codecs grow (32 KiB, 64 KiB, 256 KiB,
#: 1 MiB, 4 MiB, ...) and each time may wait out the switch interval (5 ms) of a thread
#: that is parsing. The files connector's read of a 128 MiB .jsonl.gz was about 6 %
#: slower with 4 MiB pieces than with each 1 MiB read inflated whole (6 MiB there), and
#: as fast with 8 MiB.
PIECE: Final = 8 << 20


class Decompressor(Codec, Protocol):
    """
    A streaming decompressor. `pieces` is the bounded way: the bytes ``data`` decodes
    to, as pieces of at most its ``piece`` bytes (`PIECE` unless `decompressor` is told
    otherwise), each made only when the one before has been taken. `process` gives them
    all joined (as large as the ratio makes them); `flush` checks the stream ended where
    its format says it may, and gives what is left.
    """

    def pieces(self, data: bytes) -> Iterator[bytes]: ...


class _Identity:
    def process(self, data: bytes) -> bytes:
        return data

    def pieces(self, data: bytes) -> Iterator[bytes]:
        # Not decompressed: as large as the caller's chunks, which the caller bounds.
        if data:
            yield data

    def flush(self) -> bytes:
        return b""


#: zlib's decompression object, the one codec that hands back input it did not reach.
_ZlibDecompress: Final = type(zlib.decompressobj())


class _Members:
    """
    A decompressor over files of several members (``cat a.gz b.gz``), read as ``gzip -d``
    reads them; a file that ends inside a member is an error, not a short read. Every
    codec is asked for at most `PIECE` bytes a call (``max_length``), the rest of its
    input kept for the next call (zlib's ``unconsumed_tail``; bz2, lzma and zstd keep it
    themselves and say ``needs_input``).
    """

    def __init__(self, make: Any, name: str, piece: int) -> None:
        self._make = make
        self._codec = make()
        self._name = name
        self._piece = piece
        self._fed = False

    def process(self, data: bytes) -> bytes:
        return b"".join(self.pieces(data))

    def pieces(self, data: bytes) -> Iterator[bytes]:
        codec, piece = self._codec, self._piece
        while True:
            if data:
                self._fed = True
            out = codec.decompress(data, piece)
            if out:
                yield out
            if codec.eof:
                data = codec.unused_data
                self._codec = codec = self._make()
                self._fed = False
                if not data:
                    return
            elif isinstance(codec, _ZlibDecompress):
                # zlib keeps what it did not reach; a full piece may leave output
                # pending inside it, which an empty call gives.
                data = codec.unconsumed_tail
                if not data and len(out) < piece:
                    return
            elif codec.needs_input:
                return
            else:
                data = b""  # more output is ready without more input

    def flush(self) -> bytes:
        if self._fed and not self._codec.eof:
            raise ConfigError(
                f"the {self._name} data ends before its end marker (a truncated file?)",
                field="compression",
            )
        return b""


def _zstd() -> Any:
    """The zstd module: the standard library's from Python 3.14, its backport before."""
    try:
        if sys.version_info >= (3, 14):
            from compression import zstd
        else:
            from backports import zstd
    except ImportError:
        raise ConfigError(
            "zstd files need the backports.zstd package before Python 3.14",
            field="compression",
            hint="pip install 'headwater[zstd]'",
        ) from None
    return zstd


def decompressor(compression: str | None, piece: int = PIECE) -> Decompressor:
    """
    A streaming decompressor for ``compression`` (``None``: bytes pass through) whose
    `Decompressor.pieces` are at most ``piece`` bytes.
    """
    if compression is None:
        return _Identity()
    if compression == "gzip":
        return _Members(lambda: zlib.decompressobj(wbits=31), "gzip", piece)
    if compression == "bz2":
        return _Members(bz2.BZ2Decompressor, "bz2", piece)
    if compression == "xz":
        return _Members(lzma.LZMADecompressor, "xz", piece)
    if compression == "zstd":
        return _Members(_zstd().ZstdDecompressor, "zstd", piece)
    raise ConfigError(f"unknown compression {compression!r}", field="compression")


class _Compress:
    def __init__(self, codec: Any, finish: Any) -> None:
        self._codec = codec
        self._finish = finish

    def process(self, data: bytes) -> bytes:
        return bytes(self._codec.compress(data))

    def flush(self) -> bytes:
        return bytes(self._finish())


def compressor(compression: str | None) -> Codec:
    """A streaming compressor for ``compression`` (``None``: bytes pass through)."""
    if compression is None:
        return _Identity()
    if compression == "gzip":
        gz = zlib.compressobj(6, zlib.DEFLATED, 31)
        return _Compress(gz, gz.flush)
    if compression == "bz2":
        bz = bz2.BZ2Compressor()
        return _Compress(bz, bz.flush)
    if compression == "xz":
        xz = lzma.LZMACompressor()
        return _Compress(xz, xz.flush)
    if compression == "zstd":
        zs = _zstd().ZstdCompressor()
        return _Compress(zs, zs.flush)
    raise ConfigError(f"unknown compression {compression!r}", field="compression")


# --- decoders ----------------------------------------------------------------------------


class _Lines:
    """Cuts a byte stream into complete lines (``\\n`` kept), lazily, without copying chunks."""

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


class _BomSkipper:
    """Drops a UTF-8 byte-order mark at offset 0 (it counts in offsets, not in records)."""

    def __init__(self, offset: int, encoding: str) -> None:
        self._pending = offset == 0 and codecs.lookup(encoding).name in ("utf-8", "utf-8-sig")

    def strip(self, line: bytes) -> bytes:
        if not self._pending:
            return line
        self._pending = False
        return line[len(_BOM) :] if line.startswith(_BOM) else line


_RECODE_HINT: Final = "recode the file to UTF-8 (iconv -f UTF-16 -t UTF-8 in > out)"


def _line_encoding(name: str, fmt: str, encoding: str) -> str:
    """
    The encoding a line format's lines are decoded with: ``encoding``, or UTF-8 for
    ``utf-8-sig`` (the file's byte-order mark is dropped from its first line only;
    utf-8-sig would drop one from the start of every line it decodes). An encoding that
    does not write LF, CR and ``"`` as the single bytes ASCII does (UTF-16, UTF-32) is
    refused: lines and rows are found by those bytes, which there are also parts of
    other characters (U+010A ends in 0x0A in UTF-16-BE).
    """
    text_encoding = "utf-8" if codecs.lookup(encoding).name == "utf-8-sig" else encoding
    if any(char.encode(text_encoding) != char.encode() for char in '\n\r"'):
        raise ConfigError(
            f"{name}: {fmt} in {encoding} cannot be read: it does not write line feeds "
            "and quotes as the single bytes ASCII does, which lines are found by",
            field="encoding",
            hint=f"{_RECODE_HINT}, or give an ASCII-compatible encoding",
        )
    return text_encoding


def _utf16_check(name: str, first: bytes) -> None:
    """Refuse a first line that starts with a UTF-16 (or UTF-32) byte-order mark."""
    if first[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        raise ConfigError(
            f"{name}: the file starts with a UTF-16 or UTF-32 byte-order mark, and lines "
            "are read as text that writes line feeds as ASCII does",
            field="encoding",
            hint=_RECODE_HINT,
        )


class JsonLinesDecoder:
    """
    JSON Lines: one object per line; blank lines are skipped.

    The lines of a chunk are split in one C-level pass and parsed by one ``map`` of
    msgspec's decoder of one JSON object (UTF-8; it keeps integers of any size exact); a
    chunk it refuses goes to one ``map`` of ``orjson.loads`` where orjson gives exactly
    what ``json.loads`` gives (no run of 19 digits on the line), then line by line. Every
    line is parsed on its own, so a line that is not exactly one JSON object is an error
    naming its offset, never a misread.
    """

    def __init__(
        self,
        name: str,
        offset: int = 0,
        encoding: str = "utf-8",
        json_text: Iterable[str] = (),
    ) -> None:
        from headwater._json import loads_json

        self.name = name
        #: Top-level fields whose values are given as their JSON text (`JsonText`),
        #: exactly as written, for a destination that stores JSON documents.
        self.json_text = frozenset(json_text)
        self.position = offset
        self.encoding = encoding
        self._text_encoding = _line_encoding(name, "JSON Lines", encoding)
        self._tail = b""
        self._bom = _BomSkipper(offset, encoding)
        self._utf8 = codecs.lookup(self._text_encoding).name == "utf-8"
        self._loads = loads_json
        self._decode_line = _line_parser()
        # Lines before the next chunk, to name a bad line by number (unknown on a resume).
        self._lines: int | None = 0 if offset == 0 else None

    def feed(self, data: bytes) -> Iterator[Decoded]:
        """Decode the complete lines in ``data`` (plus what was left from before)."""
        return _pairs(*self.feed_lists(data))

    def finish(self) -> Iterator[Decoded]:
        """Decode a last line without a trailing newline."""
        return _pairs(*self.finish_lists())

    def feed_lists(self, data: bytes) -> tuple[Iterable[dict[str, Any]], Sequence[int]]:
        """
        `feed` as the records and their end offsets apart: a list of records where the
        chunk parsed in one go, else an iterator that raises at a bad line after the
        records before it (what `decode_batches` cuts batches from without a step per
        record). The offsets are worked out when asked for: a batch needs only its last.
        """
        lines = data.split(b"\n")
        tail = lines.pop()  # after the last newline: the start of a line yet to end
        if not lines:
            self._tail += tail
            return [], []
        consumed = len(data) - len(tail) + len(self._tail)
        joined = bool(self._tail)
        if joined:
            lines[0] = self._tail + lines[0]
        self._tail = tail
        return self._decode(lines, data, consumed, joined=joined)

    def finish_lists(self) -> tuple[Iterable[dict[str, Any]], Sequence[int]]:
        """`finish` as `feed_lists` gives it."""
        tail, self._tail = self._tail, b""
        if not tail:
            return [], []
        return self._decode([tail], tail, len(tail), joined=False, newline=False)

    def _decode(
        self, lines: list[bytes], data: bytes, consumed: int, *, joined: bool, newline: bool = True
    ) -> tuple[Iterable[dict[str, Any]], Sequence[int]]:
        """
        The records of ``lines``: the complete lines of ``data`` (the first one prefixed
        with the previous chunk's unfinished line when ``joined``), ``consumed`` bytes of
        the file in all, newlines included.
        """
        start = self.position
        self.position = start + consumed
        # Offsets count the bytes as they are in the file, byte-order mark included.
        base = start
        if start == 0:
            _utf16_check(self.name, lines[0])
            first = self._bom.strip(lines[0])
            base += len(lines[0]) - len(first)
            lines[0] = first
        # Blank lines are skipped; most chunks have none, found by one C-level pass
        # (lines of spaces make orjson fail, and are looked for then).
        keep = None if b"" not in lines else _non_blank(lines)
        number = self._lines
        if self._lines is not None:
            self._lines += len(lines)
        ends = _LineEnds(base, lines, newline)

        def exact(i: int) -> dict[str, Any]:
            begin = start if i == 0 else ends.line_end(i - 1)
            return self._parse_one(lines[i], begin, None if number is None else number + i + 1)

        parsed = self._parse_all(lines, keep, data, joined, exact)
        if parsed is not None:
            records, keep = parsed
            return records, ends.of(keep)
        # Otherwise line by line, lazily: the records before a bad line come before its error.
        keep = _non_blank(lines) if keep is None else keep
        return (exact(i) for i in keep), ends.of(keep)

    def _parse_all(
        self,
        lines: list[bytes],
        keep: list[int] | None,
        data: bytes,
        joined: bool,
        exact: Callable[[int], dict[str, Any]],
    ) -> tuple[list[dict[str, Any]], list[int] | None] | None:
        """
        The lines ``keep`` names (all when ``None``), parsed by orjson, with the lines
        they are; None where the exact path must judge them all (NaN, invalid JSON). A
        line that may hold an integer orjson would round (found in ``data``, the bytes
        the lines come from, and in the first line on its own when it was ``joined`` to
        the last chunk's unfinished line) is parsed on the exact path, alone: one such
        line does not slow the others.
        """
        if not self._utf8 or self.json_text:
            return None
        if self._decode_line is not None:
            if keep is None and any(map(bytes.isspace, lines)):
                keep = _non_blank(lines)  # lines of spaces (or a lone CR) are blank too
            texts = lines if keep is None else [lines[i] for i in keep]
            parsed = _msgspec_all(self._decode_line, texts)
            if parsed is not None:
                return parsed, keep
        if not _HAS_ORJSON:
            return None
        slow = set()
        line = counted = 0
        for at in long_integer_offsets(data):  # ascending
            line += data.count(b"\n", counted, at)
            counted = at
            slow.add(line)
        if joined and long_integer_offsets(lines[0]):
            slow.add(0)
        slow.discard(len(lines))  # in the unfinished line after the last newline
        records = self._orjson_all(lines, keep, slow)
        if records is None and keep is None:
            # A line of spaces (or a lone CR) is blank too: skip those, then try again.
            keep = _non_blank(lines)
            if len(keep) < len(lines):
                records = self._orjson_all(lines, keep, slow)
        if records is None:
            return None
        for slot, i in enumerate(range(len(lines)) if keep is None else keep) if slow else ():
            if i in slow:
                try:
                    records[slot] = exact(i)
                except ConfigError as exc:
                    return _Failed.at(records[:slot], exc), keep
        return records, keep

    @staticmethod
    def _orjson_all(
        lines: list[bytes], keep: list[int] | None, slow: set[int]
    ) -> list[dict[str, Any]] | None:
        """The lines parsed by orjson (``{}`` in place of those in ``slow``), None on a failure."""
        assert _orjson is not None
        texts = lines if keep is None else [lines[i] for i in keep]
        if slow:
            indexes = range(len(lines)) if keep is None else keep
            texts = [b"{}" if i in slow else text for i, text in zip(indexes, texts, strict=True)]
        # The cyclic collector is paused while orjson builds the chunk's records: they
        # hold no cycles and no code runs meanwhile, but with it on, its passes over the
        # new dicts (every 700 allocations) were an eighth of a .jsonl.gz file's read.
        try:
            with gc_paused():
                records = list(map(_orjson.loads, texts))
        except _orjson.JSONDecodeError:
            return None  # NaN, Infinity, a blank line or invalid JSON: the caller decides
        if not set(map(type, records)) <= {dict}:
            return None
        return records

    def _parse_one(self, line: bytes, start: int, number: int | None = None) -> dict[str, Any]:
        where = f"byte {start}" + (f" (line {number})" if number is not None else "")
        try:
            if self.json_text:
                record = object_with_json_text(line.decode(self._text_encoding), self.json_text)
            else:
                record = self._loads(line if self._utf8 else line.decode(self._text_encoding))
        except UnicodeDecodeError:
            raise ConfigError(
                f"{self.name}: the line at {where} is not {self.encoding} text",
                field="encoding",
                hint="give the file's encoding (the files connector's encoding, e.g. latin-1)",
            ) from None
        except ValueError as exc:
            raise ConfigError(
                f"{self.name}: invalid JSON at {where}: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200]}"
            ) from None
        if not isinstance(record, dict):
            raise ConfigError(
                f"{self.name}: the line at byte {start} is a JSON "
                f"{type(record).__name__}, expected an object"
            )
        return record


def _msgspec_all(
    decode_line: Callable[[bytes], Any], texts: list[bytes]
) -> list[dict[str, Any]] | None:
    """
    ``texts`` (lines, none blank) parsed by msgspec one line at a time, or None where the
    exact path must judge them: a line msgspec refuses (``NaN``, a lone surrogate, a
    number beyond a double, invalid JSON, more than one value, not an object). Each line
    is decoded on its own, not the chunk by msgspec's JSON Lines decoder: that one reads
    a newline as any whitespace, so an object open across two lines followed by a line
    of two values would give as many records as lines, at the wrong offsets. One
    ``map`` costs the same as one such call here. msgspec keeps integers of any size
    exact and rounds floats as ``json.loads`` does, so no line needs the long-integer
    check here.
    """
    try:
        with gc_paused():  # as in _orjson_all: the chunk's records hold no cycles
            return list(map(decode_line, texts))
    except ValueError:  # msgspec's DecodeError and ValidationError (a line not an object)
        return None


def _non_blank(lines: list[bytes]) -> list[int]:
    """The indexes of the lines that are not blank (empty or only whitespace)."""
    return [i for i, line in enumerate(lines) if line and not line.isspace()]


class _LineEnds:
    """
    The end offsets of a chunk's lines (each line's newline counted, except a last line
    without one), added up when asked for, in order: cutting batches needs only the
    offset after each batch's last record, not one per line.
    """

    __slots__ = ("_at", "_base", "_lines", "_newline", "_position")

    def __init__(self, base: int, lines: list[bytes], newline: bool) -> None:
        self._lines = lines
        self._base = base
        self._newline = newline
        self._at = 0  # the line _position is the start of
        self._position = base

    def line_end(self, i: int) -> int:
        """The offset just after line ``i``."""
        if i < self._at:
            self._at, self._position = 0, self._base
        count = i + 1 - self._at
        self._position += sum(map(len, self._lines[self._at : i + 1])) + count
        self._at = i + 1
        return self._position - (not self._newline and i == len(self._lines) - 1)

    def of(self, keep: list[int] | None) -> _RecordEnds:
        """The end offsets of the lines ``keep`` names (of every line when ``None``)."""
        return _RecordEnds(self, keep)


class _RecordEnds(Sequence[int]):
    """The end offset of each record of a chunk: of the line it was parsed from."""

    __slots__ = ("_ends", "_keep")

    def __init__(self, ends: _LineEnds, keep: list[int] | None) -> None:
        self._ends = ends
        self._keep = keep

    def __len__(self) -> int:
        return len(self._ends._lines) if self._keep is None else len(self._keep)

    @overload
    def __getitem__(self, index: int) -> int: ...

    @overload
    def __getitem__(self, index: slice) -> list[int]: ...

    def __getitem__(self, index: int | slice) -> int | list[int]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._ends.line_end(index if self._keep is None else self._keep[index])


_SPACE: Final = re.compile(r"[ \t\n\r]*")
#: json's scanner (C where available): parses one value at an index, giving its end.
_SCAN_VALUE: Final[Callable[[str, int], tuple[Any, int]]] = json.scanner.make_scanner(
    json.JSONDecoder()  # type: ignore[arg-type]  # typeshed declares it a class
)


def object_with_json_text(text: str, fields: frozenset[str]) -> Any:
    """
    One JSON text's value, as ``json.loads`` gives it, except that the values of the
    top-level object's ``fields`` are `JsonText` holding their text exactly as written
    (key order, duplicate keys, spacing and every digit), ``null`` being None (JSON
    Lines has one null, for a missing value). The text of a JSON value can only be cut
    out where it stands, so the object's members are scanned here, each value by json's
    own scanner.

    Raises:
        ValueError: invalid JSON (``json.JSONDecodeError``).
    """
    index = _skip_space(text, 0)
    if not text.startswith("{", index):
        return json.loads(text)  # not an object: the caller names what it is
    record: dict[str, Any] = {}
    index = _skip_space(text, index + 1)
    if text.startswith("}", index):
        index += 1
    else:
        while True:
            if not text.startswith('"', index):
                raise json.JSONDecodeError("Expecting property name in double quotes", text, index)
            key, index = json.decoder.scanstring(text, index + 1)  # type: ignore[attr-defined]
            index = _skip_space(text, index)
            if not text.startswith(":", index):
                raise json.JSONDecodeError("Expecting ':' delimiter", text, index)
            start = _skip_space(text, index + 1)
            try:
                value, index = _SCAN_VALUE(text, start)
            except StopIteration:
                raise json.JSONDecodeError("Expecting value", text, start) from None
            if key in fields and value is not None:
                value = JsonText(text[start:index])
            record[key] = value
            index = _skip_space(text, index)
            if text.startswith(",", index):
                index = _skip_space(text, index + 1)
                continue
            if not text.startswith("}", index):
                raise json.JSONDecodeError("Expecting ',' delimiter", text, index)
            index += 1
            break
    if _skip_space(text, index) != len(text):
        raise json.JSONDecodeError("Extra data", text, index)
    return record


def _skip_space(text: str, index: int) -> int:
    """The index of the first character at or after ``index`` that is not JSON whitespace."""
    match = _SPACE.match(text, index)
    assert match is not None  # the pattern matches the empty string too
    return match.end()


class CsvDecoder:
    """
    CSV with a header row, read by Python's csv module (strict; each row ends in LF or
    CRLF; quoted fields may hold LF, CR and CRLF). Record boundaries are where csv ends
    a row: it is handed the lines of the file and each row's end offset comes from the
    lines it read for the row, so a quote inside an unquoted field (``a"b``, which csv
    reads as a character of the value) moves no boundary. A record whose quoted field is
    still open after the last complete line is read again with the lines that follow.

    An unquoted field equal to ``null_string`` (by default the empty field) is ``None``;
    the same text quoted is a string. A CR outside quotes that is not followed by LF (an
    old Mac row ending, which csv's universal newlines would read as one) is an error
    naming its line, not a different set of rows.
    """

    #: Lines held before those of finished rows are dropped: bounds what a chunk keeps.
    _KEEP: Final = 1024

    def __init__(
        self,
        name: str,
        offset: int = 0,
        encoding: str = "utf-8",
        delimiter: str = ",",
        header: list[str] | None = None,
        null_string: str = "",
    ) -> None:
        self.name = name
        self.position = offset
        self.encoding = encoding
        self.delimiter = delimiter
        self.header = header
        self.null_string = null_string
        self._quoted_null = '"' + null_string.replace('"', '""') + '"'
        self._lines = _Lines()
        codec = codecs.lookup(encoding).name
        self._bom = codec in ("utf-8", "utf-8-sig")
        self._text_encoding = _line_encoding(name, "CSV", encoding)
        if header is not None:
            _check_header(name, header)
        # The lines of a record whose quoted field is still open (from the last feed).
        self._pending: list[bytes] = []
        # The record being read is named by its first line when reading from the start
        # (the number of that line), else by its byte offset.
        self._line = 1
        self._from_start = offset == 0

    def feed(self, data: bytes) -> Iterator[Decoded]:
        """Decode the complete records in ``data`` (plus what was left from before), lazily."""
        return self._records(self._lines.feed(data), final=False)

    def finish(self) -> Iterator[Decoded]:
        """Decode the last record (no trailing newline); refuse an unterminated quote."""
        tail = self._lines.rest()
        return self._records(iter([tail] if tail else []), final=True)

    def _records(self, lines: Iterator[bytes], *, final: bool) -> Iterator[Decoded]:
        pending = self._pending
        if pending:
            # A quoted field is open at the end of these lines: only a quote can close it.
            for line in lines:
                pending.append(line)
                if _QUOTE in line:
                    break
            else:
                if not final:
                    return
            lines = itertools.chain(pending, lines)
            self._pending = []
        read: list[bytes] = []  # the lines csv read, from the first of row ``done`` on
        texts: list[str] = []
        ended = [False]
        reader = csv.reader(
            self._texts(lines, read, texts, ended), delimiter=self.delimiter, strict=True
        )
        dropped = 0  # lines of the call before ``read[0]``
        done = 0  # lines of the call in rows given (or skipped)
        null = self.null_string
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                if ended[0]:  # the lines ran out inside a quoted field
                    if not final:
                        self._pending = read[done - dropped :]
                        return
                    raise self._unterminated() from None
                raise self._malformed(exc, read[done - dropped :], reader.line_num - done) from None
            count = reader.line_num - done
            first = done - dropped
            raws = read[first : first + count]
            size = len(raws[0]) if count == 1 else sum(map(len, raws))
            self.position += size
            self._line += count
            done += count
            end = self.position
            if self.header is None:
                if row:
                    self.header = _check_header(self.name, row)
            elif not row:
                if (
                    len(self.header) == 1
                    and null == ""
                    and "".join(texts[first : first + count]).strip("\r\n") == ""
                ):
                    # One column, NULL: PostgreSQL writes an empty line for it.
                    yield {self.header[0]: None}, end
            else:
                values: list[Any] = row
                if null in row:
                    text = texts[first] if count == 1 else "".join(texts[first : first + count])
                    quoted = (
                        _quoted_fields(text, self.delimiter) if self._quoted_null in text else None
                    )
                    values = [
                        None if v == null and (quoted is None or not quoted[i]) else v
                        for i, v in enumerate(row)
                    ]
                if len(values) > len(self.header) and "_extra" in self.header:
                    where = self._where(self._line - count, end - size)
                    raise ConfigError(
                        f"{self.name}: the record at {where} has more "
                        f"fields than the header ({len(values)} against "
                        f"{len(self.header)}), and the column the rest would go to, "
                        "'_extra', is one of the header's",
                        field="columns",
                    )
                yield _row_to_record(self.header, values), end
            if done - dropped > self._KEEP:
                del read[: done - dropped], texts[: done - dropped]
                dropped = done

    def _texts(
        self, lines: Iterable[bytes], read: list[bytes], texts: list[str], ended: list[bool]
    ) -> Iterator[str]:
        """The text of each line for csv, its bytes kept in ``read`` and text in ``texts``."""
        encoding = self._text_encoding
        for line in lines:
            raw = line
            if self.position == 0 and not read:  # the first line of the file
                _utf16_check(self.name, line)
                if self._bom and line.startswith(_BOM):
                    line = line[len(_BOM) :]
            try:
                text = line.decode(encoding)
            except UnicodeDecodeError:
                raise ConfigError(
                    f"{self.name}: the record at {self._where(self._line, self.position)} "
                    f"is not {self.encoding} text",
                    field="encoding",
                    hint="give the file's encoding (the files connector's encoding, e.g. latin-1)",
                ) from None
            read.append(raw)
            texts.append(text)
            yield text
        ended[0] = True

    def _where(self, line: int, start: int) -> str:
        """The record that began on ``line`` at byte ``start`` (the line when from the start)."""
        return f"line {line} (byte {start})" if self._from_start else f"byte {start}"

    def _unterminated(self) -> ConfigError:
        where = f"line {self._line}" if self._from_start else f"the record at byte {self.position}"
        return ConfigError(
            f"{self.name}: {where}: unterminated quoted field (the quote opened there "
            "is never closed), so the rows after it cannot be told apart",
            hint='close the quote, or double a quote that is part of the value ("")',
        )

    def _malformed(self, exc: csv.Error, raws: list[bytes], count: int) -> ConfigError:
        """The error for a record csv refuses: ``raws`` its lines, ``count`` of them read."""
        start = self.position
        before = max(count - 1, 0)  # lines of the record before the one csv refused
        where = self._where(self._line + before, start + sum(map(len, raws[:before])))
        if str(exc).startswith("new-line character seen in unquoted field"):
            return ConfigError(
                f"{self.name}: {where}: a carriage return (CR) outside quotes is not "
                "followed by a line feed (LF); rows end in LF or CRLF, so the rows cannot be "
                "told apart",
                hint="convert the file's line endings to LF or CRLF, or quote the field "
                "that holds the CR",
            )
        return ConfigError(f"{self.name}: malformed CSV at {where}: {exc}")


def _check_header(name: str, header: list[str]) -> list[str]:
    """``header``, refused when it names a column twice (a record would keep one value)."""
    if len(set(header)) < len(header):
        twice = next(column for i, column in enumerate(header) if column in header[:i])
        raise ConfigError(
            f"{name}: the CSV header names column {twice!r} twice, so a record could "
            "keep only one of its values",
            field="columns",
            hint="rename one of the columns in the file's first row",
        )
    return header


def _quoted_fields(text: str, delimiter: str) -> list[bool]:
    """
    Whether each field of one CSV record was quoted (csv.reader does not say), by csv's
    own rules: a quote opens a quoted field only at the start of a field; inside an
    unquoted field (``a"b``) it is a character of the value.
    """
    quoted = [False]
    state = 0  # 0: start of a field, 1: unquoted field, 2: quoted, 3: a quote in quoted
    for char in text:
        if state == 0:
            if char == '"':
                quoted[-1] = True
                state = 2
            elif char == delimiter:
                quoted.append(False)
            elif char not in "\r\n":
                state = 1
        elif state == 1:
            if char == delimiter:
                quoted.append(False)
                state = 0
        elif state == 2:
            if char == '"':
                state = 3
        elif char == '"':
            state = 2  # a doubled quote: still inside
        elif char == delimiter:
            quoted.append(False)
            state = 0
    return quoted


def _row_to_record(header: list[str], row: Sequence[Any]) -> dict[str, Any]:
    width = len(header)
    record: dict[str, Any] = dict(zip(header, row, strict=False))
    if len(row) < width:
        record.update(dict.fromkeys(header[len(row) :]))
    elif len(row) > width:
        record["_extra"] = list(row[width:])
    return record


Decoder = JsonLinesDecoder | CsvDecoder


def make_decoder(
    fmt: str,
    name: str,
    offset: int = 0,
    *,
    encoding: str = "utf-8",
    delimiter: str = ",",
    header: list[str] | None = None,
    null_string: str = "",
    json_text: Iterable[str] = (),
) -> Decoder:
    """
    A decoder for ``fmt`` (jsonl or csv) starting at (decompressed) byte ``offset``;
    ``json_text`` names JSON Lines fields given as their JSON text (`JsonText`).
    """
    if fmt == "jsonl":
        return JsonLinesDecoder(name, offset, encoding, json_text)
    if fmt == "csv":
        return CsvDecoder(name, offset, encoding, delimiter, header, null_string)
    raise ConfigError(f"{name}: {fmt} is not a line format", field="format")


def decode_stream(
    decoder: Decoder, chunks: Iterable[bytes], compression: str | None = None, skip: int = 0
) -> Iterator[Decoded]:
    """
    The sync driver: decompress ``chunks``, drop the first ``skip`` decompressed bytes
    (resuming inside a compressed file restarts from its beginning), feed the decoder.
    """
    for data in decompressed(chunks, compression):
        if skip:
            if len(data) <= skip:
                skip -= len(data)
                continue
            data, skip = data[skip:], 0
        yield from decoder.feed(data)
    yield from decoder.finish()


def decompressed(chunks: Iterable[bytes], compression: str | None) -> Iterator[bytes]:
    """
    ``chunks`` of a ``compression`` stream (see `decompressor`), decompressed, as pieces
    of at most `PIECE` bytes.
    """
    codec = decompressor(compression)
    for chunk in chunks:
        yield from codec.pieces(chunk)
    tail = codec.flush()
    if tail:
        yield tail


def decode_batches(
    decoder: Decoder,
    chunks: Iterable[bytes],
    size: int,
    compression: str | None = None,
    skip: int = 0,
) -> Iterator[tuple[list[dict[str, Any]], int]]:
    """
    `decode_stream` cut into batches: lists of ``size`` records (the last may be
    shorter), each with the (decompressed) byte offset after its last record, the
    position a read resumes from. A pull driver of `BatchCutter`, which says more.
    """
    cutter = BatchCutter(decoder, size, skip)
    for data in decompressed(chunks, compression):
        yield from cutter.feed(data)
    yield from cutter.finish()


#: Decompressed bytes decoded at once by `BatchCutter`.
_WINDOW: Final = 1 << 18


class BatchCutter:
    """
    Decoded records cut into batches, fed the decompressed bytes of one file as they
    come (a push driver: the Azure Blob connector's ranged GETs; `decode_batches` is
    the pull one): lists of ``size`` records, the last one shorter, each with the byte
    offset after its last record, the position a read resumes from. The first ``skip``
    bytes are dropped (a resume inside a compressed file reads it from its start); a
    file that ends before them is an error, not an empty read.

    A JSON Lines chunk that parses in one go is sliced into the batches as a list, with
    no step per record; a bad record raises after the full batches before it.
    `feed` and `finish` give generators: each is run to its end before the next call.
    """

    def __init__(self, decoder: Decoder, size: int, skip: int = 0) -> None:
        self.decoder = decoder
        self._size = size
        self._skip = skip
        self._resume = skip
        self._batch: list[dict[str, Any]] = []
        self._end = 0

    def feed(self, data: bytes) -> Iterator[tuple[list[dict[str, Any]], int]]:
        """The batches that the decompressed bytes ``data`` complete."""
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return
            data, self._skip = data[self._skip :], 0
        decoder = self.decoder
        # A window at a time: what is decoded at once (a chunk's lines and records, all
        # alive until they are cut) stays bounded whatever the size of the chunk.
        for start in range(0, len(data), _WINDOW):
            window = data[start : start + _WINDOW] if len(data) > _WINDOW else data
            if isinstance(decoder, JsonLinesDecoder):
                yield from self._cut(*decoder.feed_lists(window))
            else:
                yield from self._cut(*_apart(decoder.feed(window)))

    def finish(self) -> Iterator[tuple[list[dict[str, Any]], int]]:
        """The records after the last newline, then the last, partial batch."""
        if self._skip:
            raise ConfigError(
                f"state offset {self._resume} is past the end of {self.decoder.name!r} "
                f"(its decompressed data ends at byte {self._resume - self._skip})",
                field="state",
                hint="the file was replaced or truncated since the state was saved; "
                "start again without a state",
            )
        decoder = self.decoder
        if isinstance(decoder, JsonLinesDecoder):
            yield from self._cut(*decoder.finish_lists())
        else:
            yield from self._cut(*_apart(decoder.finish()))
        if self._batch:
            batch, self._batch = self._batch, []
            yield batch, self._end

    def _cut(
        self, records: Iterable[dict[str, Any]], ends: Sequence[int]
    ) -> Iterator[tuple[list[dict[str, Any]], int]]:
        if not isinstance(records, list):
            records = _until_failure(records, ends)
        size = self._size
        start = 0
        while start < len(records):
            taken = records[start : start + size - len(self._batch)]
            if self._batch:
                self._batch.extend(taken)
            else:
                self._batch = taken  # a slice: a list of its own
            start += len(taken)
            self._end = ends[start - 1]
            if len(self._batch) >= size:
                batch, self._batch = self._batch, []
                yield batch, self._end
        if isinstance(records, _Failed):
            raise records.failure


class _Failed(list):  # type: ignore[type-arg]
    """The records of a chunk before its bad record, and the error that record raised."""

    failure: BaseException

    @classmethod
    def at(cls, records: list[dict[str, Any]], failure: BaseException) -> _Failed:
        failed = cls(records)
        failed.failure = failure
        return failed


def _pairs(records: Iterable[dict[str, Any]], ends: Sequence[int]) -> Iterator[Decoded]:
    """(record, end) pairs, lazily: a bad record raises after the records before it."""
    if isinstance(records, _Failed):
        yield from zip(records, ends, strict=False)  # ends go on past the bad record
        raise records.failure
    yield from zip(records, ends, strict=True)


def _until_failure(records: Iterable[dict[str, Any]], ends: Sequence[int]) -> list[dict[str, Any]]:
    """``records`` as a list; a `_Failed` list when one of them raised."""
    out: list[dict[str, Any]] = []
    try:
        for record in records:
            out.append(record)
    except ConfigError as exc:
        return _Failed.at(out, exc)
    return out


def _apart(decoded: Iterable[Decoded]) -> tuple[Iterable[dict[str, Any]], list[int]]:
    """A decoder's (record, end) pairs as records and ends apart (lazily, keeping the order)."""
    ends: list[int] = []

    def records() -> Iterator[dict[str, Any]]:
        for record, end in decoded:
            ends.append(end)
            yield record

    return records(), ends


# --- cutting one file into partitions -------------------------------------------------


def unit_ranges(units: list[int], count: int) -> list[tuple[int, int]]:
    """
    Row ranges ``[lo, hi)`` made of whole consecutive units (Parquet row groups, Arrow
    record batches), at most ``count``, balanced by rows; at least one (``[0, 0)`` for
    no rows).
    """
    total = sum(units)
    ranges: list[tuple[int, int]] = []
    lo = seen = 0
    step = 1
    for rows in units:
        seen += rows
        if step < count and seen * count >= total * step and seen > lo:
            ranges.append((lo, seen))
            lo = seen
            while step < count and seen * count >= total * step:
                step += 1
    if seen > lo or not ranges:
        ranges.append((lo, seen))
    return ranges


def byte_targets(size: int, count: int) -> list[int]:
    """Where the ``count - 1`` cuts of a ``size``-byte file would fall, before moving
    each to the record boundary at or after it."""
    return [size * i // count for i in range(1, count)]


def byte_ranges(size: int, ends: list[int]) -> list[tuple[int, int]]:
    """The ranges between record boundaries ``ends`` (duplicates and edges dropped)."""
    cuts = sorted({0, size, *(end for end in ends if 0 < end < size)})
    return list(itertools.pairwise(cuts)) or [(0, size)]


class CsvRecordEnds:
    """
    Record boundaries of a CSV file from its first byte on, fed chunk by chunk: for each
    target offset (ascending), the byte after the first newline at or after it that is
    outside quotes (an even number of ``"`` before it; a doubled quote inside a quoted
    field counts twice). What a partition of one large CSV file is cut at.

    Counting quotes is what csv does only while every quote outside a quoted field opens
    one, at the start of a field (after the file's start, a ``delimiter``, a line feed or
    a closing quote). csv reads a quote inside an unquoted field (``a"b``) as a character
    of the value: from the first such quote on no boundary is given (each target left
    gets the file's size), so no cut can fall inside a quoted field after it.
    """

    def __init__(self, targets: list[int], delimiter: str = ",") -> None:
        self._targets = list(targets)
        self.ends: list[int] = []
        self._base = 0
        self._odd = False
        self._unsure = 0  # targets left when a quote inside an unquoted field was met
        last = delimiter.encode()[-1:]  # the byte just before a field's first one
        self._openers = frozenset({ord("\n"), _QUOTE, *last})
        # Pairs of quotes (a quoted field's opening and closing, or a doubled quote),
        # each opening one after a delimiter, a line feed or the last pair's quote.
        openers = re.escape(last + b'\n"')
        self._pairs = re.compile(b'(?:[^"]*+(?<=[' + openers + b'])"[^"]*+")*+')
        self._before = -1  # the byte before the chunk (-1: the file's start)
        self._head = b""  # the file's first bytes, to tell a byte-order mark

    @property
    def done(self) -> bool:
        """Whether every target has its boundary (or none can be told any more)."""
        return not self._targets

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes of the blob."""
        if not self._targets:
            self._base += len(chunk)
            return
        if len(self._head) < len(_BOM):
            self._head += chunk[: len(_BOM) - len(self._head)]
        limit = self._literal_quote(chunk)
        counted = start = 0
        while self._targets:
            start = max(self._targets[0] - self._base, start)
            found = chunk.find(b"\n", start)
            if found < 0 or found >= limit:
                break
            self._odd ^= bool(chunk.count(b'"', counted, found) & 1)
            counted = found
            if self._odd:
                start = found + 1
                continue
            self.ends.append(self._base + found + 1)
            self._targets.pop(0)
        if limit < len(chunk):
            self._unsure, self._targets = len(self._targets), []
        self._odd ^= bool(chunk.count(b'"', counted) & 1)
        self._base += len(chunk)
        if chunk:
            self._before = chunk[-1]

    def _literal_quote(self, chunk: bytes) -> int:
        """Where in ``chunk`` the first quote inside an unquoted field is (else its length)."""
        at = 0
        if self._odd:  # inside a quoted field: its next quote closes it (or is doubled)
            at = chunk.find(b'"') + 1
            if not at:
                return len(chunk)
        while (quote := chunk.find(b'"', at)) >= 0:
            # Outside quotes: this quote must open a field, then the pairs that follow.
            before = chunk[quote - 1] if quote else self._before
            at_start = self._base + quote
            first = at_start == 0 or (at_start == len(_BOM) and self._head == _BOM)
            if before not in self._openers and not first:
                return quote
            closing = chunk.find(b'"', quote + 1)
            if closing < 0:  # a quoted field open at the chunk's end
                return len(chunk)
            pairs = self._pairs.match(chunk, closing + 1)
            assert pairs is not None  # the pattern matches the empty string too
            at = pairs.end()
        return len(chunk)

    def finish(self, size: int) -> list[int]:
        """The boundaries found, ``size`` for each target with none after it."""
        return self.ends + [size] * (len(self._targets) + self._unsure)


# --- encoders ----------------------------------------------------------------------------


class JsonLinesEncoder:
    """
    Batches of records → JSON Lines bytes; counts the records.

    With orjson installed (the first-party plugins depend on it) a batch is encoded in
    one orjson call, about five times the stdlib's speed; a batch holding anything
    orjson would write differently from Python's json (NaN or infinite floats, which it
    writes as ``null``; integers beyond 64 bits; keys that are not strings) takes the
    stdlib path, so the output always reads back as the same values.
    """

    fmt = "jsonl"

    def __init__(self, *, encoding: str = "utf-8") -> None:
        self.encoding = encoding
        self.count = 0
        self._utf8 = codecs.lookup(encoding).name == "utf-8"
        self._fast = _orjson is not None and self._utf8
        self._dumps = json.JSONEncoder(
            ensure_ascii=False, default=json_default, separators=(",", ":")
        ).encode

    def encode(self, batch: Batch | list[dict[str, Any]] | Any) -> bytes:
        """The bytes for one batch of records."""
        encoded = getattr(batch, "records", batch)
        if isinstance(encoded, EncodedLines) and self._utf8:
            # Already JSON Lines in UTF-8: the bytes are the output.
            self.count += encoded.num_rows
            return encoded.data
        rows = records_of(batch)
        if not rows:
            return b""
        data = _orjson_lines(rows) if self._fast else None
        if data is None:
            try:
                data = ("\n".join(map(self._row, rows)) + "\n").encode(self.encoding)
            except TypeError as exc:
                raise ConfigError(f"cannot write a record as JSON: {exc}") from None
        self.count += len(rows)
        return data

    def _row(self, row: dict[str, Any]) -> str:
        """
        One record's line; a `JsonText` value is written as the document it holds, a
        document (object or array) with its Decimals as numbers (`dumps_document`).
        """
        if not isinstance(row, dict) or not any(
            type(value) in (JsonText, dict, list) for value in row.values()
        ):
            return self._dumps(row)
        parts = []
        for key, value in row.items():
            if type(value) is JsonText:
                text = _carried_document(key, value)
            elif type(value) in (dict, list):
                try:
                    text = dumps_document(value)
                except ValueError as exc:
                    raise ConfigError(f"field {key!r}: {exc}", field=key) from None
            else:
                text = self._dumps(value)
            parts.append(f"{self._dumps(key)}:{text}")
        return "{" + ",".join(parts) + "}"

    def finish(self) -> bytes:
        """Bytes that end the file (none for JSON Lines)."""
        return b""


def _carried_document(key: str, text: JsonText) -> str:
    """
    A `JsonText` as a JSON Lines value: the document exactly as written, which a reader
    that keeps a field's JSON text (`object_with_json_text`, what `headwater.copy` uses
    for a destination's JSON columns) gets back unchanged. Two documents cannot be
    carried: ``null``, which JSON Lines cannot tell from a missing value, and one with a
    line break between its tokens, which would end the line (or spaces around it, which
    a reader does not keep): refused, naming the field.
    """
    is_null = text == "null"
    if is_null or "\n" in text or "\r" in text or text != text.strip(" \t"):
        what = "the JSON document null" if is_null else "a line break or surrounding space"
        raise ConfigError(
            f"field {key!r} holds JSON text that a JSON Lines file cannot carry as written "
            f"({what}: {text[:40]!r})",
            field=key,
            hint="write CSV, Parquet or COPY text (PostgreSQL to PostgreSQL), which keep it",
        )
    return text


try:
    import orjson as _orjson
except ImportError:  # optional, as in headwater._json: the stdlib path is complete
    _orjson = None  # type: ignore[assignment,unused-ignore]
_HAS_ORJSON: Final[bool] = _orjson is not None


@functools.cache
def _line_parser() -> Callable[[bytes], Any] | None:
    """
    msgspec's decoder of one JSON object, or None without msgspec. Imported when a JSON
    Lines file is first read: its import is not paid by what reads none.
    """
    try:
        import msgspec.json
    except ImportError:  # a dependency; without it orjson or the stdlib read the same values
        return None
    # Typed: a line that is not an object fails (no check of each record after).
    decode: Callable[[bytes], Any] = msgspec.json.Decoder(dict).decode
    return decode


#: A raw newline between the records of one orjson array (orjson never writes one itself:
#: newlines in strings are escaped), so the array's bytes become lines with two replaces.
_NEWLINE: Final = _orjson.Fragment(b"\n") if _orjson is not None else None


def _orjson_lines(rows: list[dict[str, Any]]) -> bytes | None:
    """The JSON Lines of ``rows`` from one orjson call, or None where it would differ."""
    assert _orjson is not None
    try:
        values = list(itertools.chain.from_iterable(map(dict.values, rows)))
    except TypeError:
        return None  # not all dicts: the stdlib path says which
    if not _all_finite(values):
        return None
    # [r1, NL, r2, NL, ..., rN, NL, 0] dumps as b'[r1,\n,r2,\n,...,rN,\n,0]'; one replace
    # and one slice make it b'r1\nr2\n...rN\n'.
    items: list[Any] = list(itertools.chain.from_iterable(zip(rows, itertools.repeat(_NEWLINE))))
    items.append(0)
    try:
        out = _orjson.dumps(items, default=json_default)
    except (_orjson.JSONEncodeError, TypeError):
        return None
    return out.replace(b",\n,", b"\n")[1:-2]


def _all_finite(values: list[Any]) -> bool:
    """
    No NaN or infinite float among ``values`` or inside their lists, tuples and objects,
    and no value of a type orjson would hand to `json_default` with floats inside, and
    no Decimal inside a document (orjson would write it as a string).
    """
    nested_level = False
    while values:
        kinds = set(map(type, values))
        if float in kinds or not kinds <= _SCALARS:
            floats = list(filter(float.__instancecheck__, values))
            # A NaN or an infinity makes the sum non-finite; so can an overflow of finite
            # values, which only sends the batch down the (exact) stdlib path.
            if floats and not math.isfinite(sum(floats)):
                return False
        containers = kinds - _SCALARS
        if not containers:
            return True
        if not containers <= _CONTAINERS:
            return False  # a set or an object of its own: let the stdlib path judge
        nested: list[Any] = []
        if nested_level and decimal.Decimal in kinds:
            return False  # a number kept exact inside a document: written as a number
        if dict in containers:
            nested.extend(
                itertools.chain.from_iterable(
                    map(dict.values, filter(dict.__instancecheck__, values))
                )
            )
        for kind in (list, tuple):
            if kind in containers:
                nested.extend(itertools.chain.from_iterable(filter(kind.__instancecheck__, values)))
        values = nested
        nested_level = True
    return True


_CONTAINERS: Final = frozenset({dict, list, tuple})
#: Types that hold no float inside (anything else is looked into, if it is a container).
_SCALARS: Final = frozenset(
    {
        str,
        int,
        float,
        bool,
        type(None),
        decimal.Decimal,
        datetime.datetime,
        datetime.date,
        datetime.time,
        datetime.timedelta,
        uuid.UUID,
        bytes,
    }
)


class CsvEncoder:
    """
    Batches of records → CSV bytes with one header (see the module docstring for NULL).

    The header is ``columns`` when given; otherwise the fields of the first batch, in
    the order they first appear. A later record with a field outside the header is an
    error naming it (a CSV cannot grow a column once its header is written); a record
    lacking a field writes NULL there.
    """

    fmt = "csv"

    def __init__(
        self,
        *,
        columns: Sequence[str] | None = None,
        encoding: str = "utf-8",
        delimiter: str = ",",
        null_string: str = "",
        header: bool = True,
    ) -> None:
        self.encoding = encoding
        self.delimiter = delimiter
        self.null_string = null_string
        self.columns: list[str] | None = list(columns) if columns is not None else None
        self.count = 0
        self._write_header = header
        self._specials = frozenset({delimiter, '"', "\r", "\n"})

    def encode(self, batch: Batch | list[dict[str, Any]] | Any) -> bytes:
        """The bytes for one batch of records."""
        rows = records_of(batch)
        if not rows:
            return b""
        buffer = io.StringIO()
        if self.columns is None:
            seen: dict[str, None] = {}
            for row in rows:
                seen.update(dict.fromkeys(row))
            self.columns = list(seen)
        if self._write_header:
            csv.writer(buffer, delimiter=self.delimiter, lineterminator="\n").writerow(self.columns)
            self._write_header = False
        columns = self.columns
        known = set(columns)
        writer = csv.writer(buffer, delimiter=self.delimiter, lineterminator="\n")
        null = self.null_string
        for number, row in enumerate(rows, self.count + 1):
            if len(row) != len(columns) or row.keys() - known:
                unknown = sorted(row.keys() - known)
                if unknown:
                    raise ConfigError(
                        f"record {number} has field {unknown[0]!r}, which is not in the CSV "
                        f"header {columns}",
                        field="columns",
                        hint="declare every column up front (columns=[...]) or write JSON "
                        "Lines or Parquet, which allow new fields",
                    )
            values = [_csv_text(row.get(c)) for c in columns]
            if None in values or null in values or (len(values) == 1 and values[0] == ""):
                buffer.write(self._manual(values))
            else:
                writer.writerow(values)
        self.count += len(rows)
        return buffer.getvalue().encode(self.encoding)

    def _manual(self, values: list[str | None]) -> str:
        """A row holding NULLs or strings equal to the NULL marker, quoted by hand."""
        fields = []
        for value in values:
            if value is None:
                fields.append(self.null_string)
            elif value == self.null_string or self._specials.intersection(value):
                fields.append('"' + value.replace('"', '""') + '"')
            else:
                fields.append(value)
        return self.delimiter.join(fields) + "\n"

    def finish(self) -> bytes:
        """Bytes that end the file: the header alone when no record came."""
        if self._write_header and self.columns:
            self._write_header = False
            return (self.delimiter.join(self.columns) + "\n").encode(self.encoding)
        return b""


def _csv_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, dict | list):
        return dumps_document(value)
    converted = json_default(value)
    return converted if isinstance(converted, str) else json.dumps(converted)


# --- Arrow -------------------------------------------------------------------------------

#: Field metadata marking an Arrow string column whose values are JSON text.
JSON_FIELD_METADATA: Final = {b"headwater.type": b"json"}


#: The JSON document ``null`` in a JSON column, kept apart from SQL NULL (``None``).
JSON_NULL: Final = JsonText("null")


def arrow_rows(data: Any) -> list[dict[str, Any]]:
    """
    The records of a ``pyarrow.RecordBatch`` or ``Table`` as dicts (what `Batch.rows`
    gives). A column marked as JSON (`JSON_FIELD_METADATA`, as `arrow_from_records` and
    the sinks store objects and lists) comes back as the values it holds, not as their
    text, so JSON Lines → Parquet → JSON Lines keeps an object an object; the document
    ``null`` is `JSON_NULL`, apart from NULL.

    Raises:
        ConfigError: a value Python cannot hold (a timestamp with nanoseconds, a date
            after year 9999), naming the column and its type, where pyarrow would raise
            its own error or a conversion would change the value.
    """
    from headwater._json import loads_json

    schema = data.schema
    columns = []
    for index, name in enumerate(schema.names):
        field = schema.field(index)
        try:
            values = _microseconds(field, data.column(index)).to_pylist()
        except (ValueError, OverflowError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise ConfigError(
                f"column {name!r} ({field.type}) holds a value Python cannot hold: "
                f"{str(exc).splitlines()[0][:200]}",
                field=name,
                hint="copy it into Parquet or Arrow (they keep Arrow's types), or cast the "
                "column in the source",
            ) from None
        if field.metadata and field.metadata.get(b"headwater.type") == b"json":
            values = [
                None if v is None else JSON_NULL if v == "null" else loads_json(v) for v in values
            ]
        columns.append(values)
    if not columns:
        return [{} for _ in range(data.num_rows)]
    return [dict(zip(schema.names, row, strict=True)) for row in zip(*columns, strict=True)]


def _microseconds(field: Any, column: Any) -> Any:
    """
    A nanosecond timestamp, time or duration column cast to microseconds, Python's unit:
    a value with nanoseconds makes the (safe) cast fail, rather than pyarrow giving
    pandas' Timestamp where pandas is installed and an error where it is not.
    """
    import pyarrow as pa

    kind = field.type
    if getattr(kind, "unit", None) != "ns":
        return column
    if pa.types.is_timestamp(kind):
        return column.cast(pa.timestamp("us", kind.tz))
    if pa.types.is_duration(kind):
        return column.cast(pa.duration("us"))
    if pa.types.is_time64(kind):
        return column.cast(pa.time64("us"))
    return column


def arrow_from_records(rows: list[dict[str, Any]]) -> Any:
    """
    A ``pyarrow.Table`` from records: every field of every record becomes a column (a
    record lacking it has NULL there), types inferred per column. Objects and lists are
    stored as JSON text (marked with `JSON_FIELD_METADATA`), so a column whose values
    differ in shape from row to row keeps them exactly instead of failing or growing a
    struct of every key ever seen.

    Raises:
        ConfigError: a column's values have no common Arrow type (naming the column).
    """
    import pyarrow as pa

    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    arrays = []
    fields = []
    for name in names:
        values = [row.get(name) for row in rows]
        kinds = set(map(type, values))
        metadata = None
        if dict in kinds or list in kinds or JsonText in kinds:
            try:
                values = [
                    None if v is None else v if type(v) is JsonText else dumps_document(v)
                    for v in values
                ]
            except (TypeError, ValueError) as exc:  # NaN in a list of numerics, say
                raise ConfigError(
                    f"column {name!r} holds a list or object that JSON cannot hold ({exc})",
                    field=name,
                    hint="write JSON Lines or CSV, or cast the column in the source",
                ) from None
            metadata = JSON_FIELD_METADATA
        elif str in kinds and kinds & _TEMPORAL:
            # Dates a source could only give as text ("infinity", BC, year 10000) beside
            # ones Python holds: the column as ISO text, which a database parses back.
            values = [v.isoformat() if isinstance(v, _TEMPORAL_TYPES) else v for v in values]
        elif decimal.Decimal in kinds and not _one_decimal_type(values):
            # NaN and infinities have no Arrow decimal, and one Arrow decimal type has
            # one scale ("1.50" beside "2.125" would come back as "1.500"): the column
            # as the numbers' text, every digit kept.
            values = [str(v) if type(v) is decimal.Decimal else v for v in values]
        try:
            array = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            shown = ", ".join(sorted(k.__name__ for k in kinds))
            raise ConfigError(
                f"column {name!r} holds values of types that Arrow cannot store in one "
                f"column ({shown}): {str(exc).splitlines()[0]}",
                field=name,
                hint="write JSON Lines, or make the column's values one type",
            ) from None
        arrays.append(array)
        fields.append(pa.field(name, array.type, metadata=metadata))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


_TEMPORAL: Final = frozenset({datetime.date, datetime.datetime, datetime.time})
_TEMPORAL_TYPES: Final = (datetime.date, datetime.time)


def _one_decimal_type(values: list[Any]) -> bool:
    """Whether Arrow holds these Decimals exactly in one decimal type (finite, one scale)."""
    decimals = [v for v in values if type(v) is decimal.Decimal]
    if not all(v.is_finite() for v in decimals):
        return False
    exponents = {v.as_tuple().exponent for v in decimals}
    return len(exponents) <= 1 and all(len(v.as_tuple().digits) <= 76 for v in decimals)


def unify_arrow_schemas(schemas: list[Any]) -> Any:
    """
    One schema for all of ``schemas`` (permissive promotion: NULL-only columns take the
    other type, numbers widen, columns missing from some schemas are kept).

    Raises:
        ConfigError: a column has no common type, named with its types.
    """
    import pyarrow as pa

    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        detail = str(exc).splitlines()[0]
    names = list(dict.fromkeys(name for schema in schemas for name in schema.names))
    for name in names:
        fields = [s.field(name) for s in schemas if name in s.names]
        try:
            pa.unify_schemas([pa.schema([f]) for f in fields], promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            types = " and ".join(sorted({str(f.type) for f in fields}))
            raise ConfigError(
                f"column {name!r}: the batches hold {types} values, which have no common "
                "Arrow type for one column",
                field=name,
                hint="cast the column in the source (a query stream), or write JSON Lines",
            ) from None
    raise ConfigError(f"the batches' schemas do not unify: {detail}")


def cast_arrow_table(table: Any, schema: Any) -> Any:
    """
    ``table`` in ``schema``: columns in the schema's order, those it lacks added as NULL,
    values cast only where no value changes.

    Raises:
        ConfigError: a column's values cannot be held by the schema's type (naming it).
    """
    import pyarrow as pa

    if table.schema.equals(schema):
        return table
    columns = []
    for field in schema:
        if field.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        column = table.column(field.name)
        if not column.type.equals(field.type):
            try:
                column = column.cast(field.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                raise ConfigError(
                    f"column {field.name!r}: {column.type} values cannot be stored as "
                    f"{field.type} ({str(exc).splitlines()[0]})",
                    field=field.name,
                    hint="cast the column in the source (a query stream), or write JSON Lines",
                ) from None
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)

"""
JSON parsing for connectors: fast, and exactly what ``json.loads`` gives.

Parsing JSON is where an HTTP connector spends most of its time, and jsonb values are a
large share of a PostgreSQL dict read. `loads_json` parses with msgspec (a core
dependency) and falls back to the stdlib for every document msgspec refuses, so callers
never see a difference in values. msgspec keeps integers of any size exact (orjson turns
those beyond 64 bits into floats) and refuses, rather than changes, everything else
``json.loads`` reads differently: ``NaN``/``Infinity``, numbers that overflow a double,
lone surrogates, integers beyond its range. So no document needs scanning before
the parse: on a REST page that check cost a fifth of the parse, on a short document more
than the parse itself.
"""

from __future__ import annotations

import json
import json.scanner
from collections.abc import Callable
from typing import Any, Final

# Not in typeshed: the C implementation behind json's scanner (None without _json).
_make_scanner: Callable[[json.JSONDecoder], Callable[[str, int], tuple[Any, int]]] | None = getattr(
    json.scanner, "c_make_scanner", None
)

#: json's C scanner, called directly: faster than json.loads on small documents. It
#: parses one value at index 0; anything it does not consume exactly (surrounding
#: whitespace, invalid text) goes through json.loads for its checks and its errors.
_SCAN: Final = _make_scanner(json.JSONDecoder()) if _make_scanner is not None else None


def _first_decode(data: bytes | bytearray | memoryview | str) -> Any:
    """
    Import msgspec on the first parse (what parses no JSON does not pay its import) and
    put its decoder and error in `_decode`'s and `_DecodeError`'s place.
    """
    global _decode, _DecodeError
    import msgspec.json

    _DecodeError = msgspec.DecodeError
    _decode = msgspec.json.Decoder().decode
    return _decode(data)


_decode: Callable[[bytes | bytearray | memoryview | str], Any] = _first_decode
_DecodeError: type[Exception] = ValueError  # msgspec's DecodeError once imported (a subclass)

#: Every byte as "0" if it is a digit, " " otherwise: `long_integer_offsets` finds runs of
#: nineteen digits with C-level searches over the translated chunk.
_DIGITS_AS_ZEROS: Final = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
_NINETEEN_DIGITS: Final = b"0" * 19


def loads_json(data: bytes | bytearray | memoryview | str) -> Any:
    """
    Parse one JSON document (UTF-8 bytes, or text) into Python values.

    Raises:
        ValueError: invalid JSON (``json.JSONDecodeError``, as from ``json.loads``).
    """
    try:
        return _decode(data)
    except (_DecodeError, UnicodeEncodeError):  # the latter: text holding a lone surrogate
        pass  # the stdlib decides: NaN, 1e400, a lone surrogate, or invalid text
    # Bytes are decoded as json.loads decodes them: a BOM, UTF-16 and UTF-32 detected.
    text = data if isinstance(data, str) else _decoded(bytes(data))
    if _SCAN is not None:
        try:
            value, end = _SCAN(text, 0)
        except StopIteration:
            pass
        else:
            if end == len(text):
                return value
    return json.loads(text)


def _decoded(data: bytes) -> str:
    return data.decode(json.detect_encoding(data), "surrogatepass")


#: Bytes after which a JSON number token can start (its ``-`` included).
_NUMBER_STARTS: Final = frozenset(b":,[ \t\r\n")
_MINUS: Final = ord("-")


def long_integer_offsets(chunk: bytes) -> list[int]:
    """
    Where ``chunk`` (many documents) may hold an integer beyond 64 bits, which orjson
    would turn into a float: the offsets of runs of 19 digits where an integer token can
    start (after ``:``, ``,``, ``[``, whitespace or the chunk's start, or after a ``-``
    that itself stands there). Runs inside strings (after a quote, or a ``-`` inside a
    UUID-like value) or after a point (a float's decimals, which orjson reads exactly)
    do not count; each run is found with C-level searches, not a regex. A run that only
    looks like a number (after a space inside a string) is still found: the caller
    parses the documents holding an offset on the exact path, and only those.
    """
    zeros = chunk.translate(_DIGITS_AS_ZEROS)
    offsets = []
    found = zeros.find(_NINETEEN_DIGITS)
    while found >= 0:
        before = chunk[found - 1] if found else None
        if before == _MINUS:
            before = chunk[found - 2] if found > 1 else None
        if before is None or before in _NUMBER_STARTS:
            offsets.append(found)
        after = zeros.find(b" ", found)
        if after < 0:
            break
        found = zeros.find(_NINETEEN_DIGITS, after)
    return offsets

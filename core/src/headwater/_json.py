"""
JSON parsing for connectors: fast, and exactly what ``json.loads`` gives.

Parsing JSON is where an HTTP connector spends most of its time, and jsonb values are a
large share of a PostgreSQL dict read. `loads_json` uses orjson when it is installed
(about 2-3x the stdlib; the first-party connectors depend on it) and falls back to the
stdlib for every document orjson would refuse or could change, so callers never see a
difference in values: numbers beyond 64-bit integers or doubles, ``NaN``/``Infinity``,
lone surrogates.
"""

from __future__ import annotations

import json
import json.scanner
import re
from collections.abc import Callable
from typing import Any, Final

try:
    import orjson as _orjson
except ImportError:  # core does not require orjson; the stdlib path below is complete
    _orjson = None  # type: ignore[assignment,unused-ignore]

# Not in typeshed: the C implementation behind json's scanner (None without _json).
_make_scanner: Callable[[json.JSONDecoder], Callable[[str, int], tuple[Any, int]]] | None = getattr(
    json.scanner, "c_make_scanner", None
)

#: json's C scanner, called directly: faster than json.loads on small documents. It
#: parses one value at index 0; anything it does not consume exactly (surrounding
#: whitespace, invalid text) goes through json.loads for its checks and its errors.
_SCAN: Final = _make_scanner(json.JSONDecoder()) if _make_scanner is not None else None

#: orjson turns integers outside [-2**63, 2**64) into floats, losing digits, where json
#: keeps them exact. Any run of 19 digits may be such an integer, so such documents take
#: the stdlib path (a 19-digit integer may fit, but the check stays simple). The check
#: maps every digit to "0" and everything else to " ", then looks for nineteen "0"s: a
#: C-level pass over the bytes, ~15x faster than the regex ``[0-9]{19}`` on digit-heavy
#: API pages, where the regex cost more than the parse itself.
#: Short documents (a jsonb value) keep the regex, which needs no copy and is quick on them.
_DIGITS_AS_ZEROS: Final = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
_NINETEEN_DIGITS: Final = b"0" * 19
_LONG_DIGITS: Final = re.compile(rb"[0-9]{19}")
_SHORT: Final = 512


def _has_long_digit_run(data: bytes | bytearray | memoryview) -> bool:
    if len(data) < _SHORT:
        return _LONG_DIGITS.search(data) is not None
    whole = data if isinstance(data, bytes) else bytes(data)
    return _NINETEEN_DIGITS in whole.translate(_DIGITS_AS_ZEROS)


def loads_json(data: bytes | bytearray | memoryview | str) -> Any:
    """
    Parse one JSON document (UTF-8 bytes, or text) into Python values.

    Raises:
        ValueError: invalid JSON (``json.JSONDecodeError``, as from ``json.loads``).
    """
    if _orjson is not None:
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
        if not _has_long_digit_run(raw):
            try:
                return _orjson.loads(raw)
            except _orjson.JSONDecodeError:
                pass  # the stdlib decides: NaN, 1e400, a lone surrogate, or invalid text
    text = data if isinstance(data, str) else str(data, "utf-8")
    if _SCAN is not None:
        try:
            value, end = _SCAN(text, 0)
        except StopIteration:
            pass
        else:
            if end == len(text):
                return value
    return json.loads(text)


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
    do not count, unlike `_has_long_digit_run`'s whole-document rule; each run is found
    with C-level searches, not a regex. A run that only looks like a number (after a
    space inside a string) is still found: the caller parses the documents holding an
    offset on the exact path, and only those.
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

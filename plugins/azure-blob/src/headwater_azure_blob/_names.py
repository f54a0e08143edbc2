"""
Pure helpers for blob names: prefixes, globs, formats (from `headwater.formats`), content
codings. No I/O, shared by both twins.
"""

from __future__ import annotations

import re
from typing import Final

from headwater import ConfigError
from headwater.formats import COMPRESSIONS, FORMATS, FileFormat, detect

#: The record formats ``read`` and ``write`` handle (`headwater.formats` knows them all).
SUPPORTED: Final = ("csv", "jsonl", "parquet")
#: Content types set on write, by format, and by compression for compressed blobs (the
#: type describes the stored bytes: ``out.jsonl.gz`` is a gzip file).
CONTENT_TYPES: Final = {
    "jsonl": "application/x-ndjson",
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
    "gzip": "application/gzip",
    "zstd": "application/zstd",
    "bz2": "application/x-bzip2",
    "xz": "application/x-xz",
}
#: ``Content-Encoding`` values a blob may be stored with → the compression that decodes it.
CONTENT_ENCODINGS: Final = {"gzip": "gzip", "x-gzip": "gzip", "zstd": "zstd"}
_GLOB_CHARS: Final = frozenset("*?[")


def _known_suffixes() -> str:
    formats = sorted(s for s, fmt in FORMATS.items() if fmt in SUPPORTED)
    return f"{', '.join(formats)}, optionally followed by {', '.join(sorted(COMPRESSIONS))}"


def blob_format(name: str) -> FileFormat | None:
    """The record format (and compression) a blob name implies, or ``None``."""
    try:
        found = detect(name)
    except ConfigError:
        return None
    return found if found.fmt in SUPPORTED else None


def format_of(name: str) -> str | None:
    """The record format of a blob name by suffix (``events.jsonl.gz``: jsonl), or ``None``."""
    found = blob_format(name)
    return found.fmt if found is not None else None


def require_format(name: str, explicit: str | None = None) -> FileFormat:
    """
    The format and compression to use for ``name``: ``explicit`` overrides the format its
    suffix implies; the compression always comes from the suffix.
    """
    if explicit is not None and explicit not in SUPPORTED:
        raise ConfigError(
            f"unknown format {explicit!r} (known: {', '.join(SUPPORTED)})", field="format"
        )
    try:
        found: FileFormat | None = detect(name, explicit)
    except ConfigError as exc:
        if exc.field != "format":
            raise  # a compression that does not go with the format, say
        found = None
    if found is None or found.fmt not in SUPPORTED:
        raise ConfigError(
            f"{name!r}: cannot tell the record format from the name (known suffixes: "
            f"{_known_suffixes()})",
            field="format",
            hint="pass format='jsonl', 'csv' or 'parquet'",
        )
    return found


def content_type_for(found: FileFormat) -> str:
    """The Content-Type of a blob written in ``found``'s format and compression."""
    return CONTENT_TYPES[found.compression or found.fmt]


def content_codec(value: str | None, name: str) -> str | None:
    """
    The compression that undoes a blob's ``Content-Encoding`` (``None``: stored as is).

    Raises:
        ConfigError: a coding this connector cannot decode, named.
    """
    codings = [c.strip().lower() for c in (value or "").split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return None
    if len(codings) == 1 and codings[0] in CONTENT_ENCODINGS:
        return CONTENT_ENCODINGS[codings[0]]
    known = ", ".join(sorted(CONTENT_ENCODINGS))
    raise ConfigError(
        f"blob {name!r} is stored with Content-Encoding {value!r}, which this connector "
        f"cannot decode (it decodes {known})",
        field="content_encoding",
        hint="fetch() downloads the stored bytes as they are; decode them with a tool "
        "that knows this coding",
    )


def is_glob(pattern: str) -> bool:
    """Whether ``pattern`` holds glob characters (``*``, ``?``, ``[``)."""
    return any(ch in _GLOB_CHARS for ch in pattern)


def literal_prefix(pattern: str) -> str:
    """The part of a glob before its first wildcard: what to ask the service to list."""
    for index, ch in enumerate(pattern):
        if ch in _GLOB_CHARS:
            return pattern[:index]
    return pattern


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """
    Compile a blob glob: ``*`` and ``?`` stay inside one path segment, ``**`` crosses
    segments (``**/`` also matches no directory), ``[abc]``/``[!abc]`` are classes.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if pattern.startswith("**", i):
                i += 2
                if pattern.startswith("/", i):
                    out.append("(?:.*/)?")
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 2 if pattern.startswith("[!", i) else i + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1 : end]
                negate = body.startswith("!")
                body = body[1:] if negate else body
                escaped = body.replace("\\", "\\\\").replace("^", "\\^")
                out.append(f"[^/{escaped}]" if negate else f"[{escaped}]")
                i = end + 1
                continue
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def clean_relative(name: str, what: str = "item") -> str:
    """A relative blob name as the user gave it, checked for the obvious mistakes."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{what} name must be a non-empty string", field=what)
    if "\x00" in name:
        raise ConfigError(f"{what} name contains a NUL byte", field=what)
    return name


def directory(name: str | None) -> str:
    """A relative directory name ending in ``/`` (``""`` for the root)."""
    if not name:
        return ""
    name = name.lstrip("/")
    return name if not name or name.endswith("/") else name + "/"


def normalize_etag(value: object) -> str:
    """
    An etag in its quoted HTTP form: listings return ``0x8D...`` while property calls
    return ``"0x8D..."``; states and comparisons need one spelling.
    """
    text = str(value).strip()
    return text if text.startswith('"') else f'"{text}"'

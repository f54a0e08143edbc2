"""
Pure helpers for blob names: prefixes, globs, formats. No I/O, shared by both twins.
"""

from __future__ import annotations

import re
from typing import Final

from headwater import ConfigError

#: Suffix → record format understood by ``read``/``write``.
FORMATS: Final = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
#: Content types set on upload, by format.
CONTENT_TYPES: Final = {
    "jsonl": "application/x-ndjson",
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
}
_GLOB_CHARS: Final = frozenset("*?[")


def format_of(name: str) -> str | None:
    """The record format of a blob name by suffix, or ``None``."""
    dot = name.rfind(".")
    if dot < 0 or "/" in name[dot:]:
        return None
    return FORMATS.get(name[dot:].lower())


def require_format(name: str, explicit: str | None = None) -> str:
    """The format to use for ``name``: ``explicit`` when given, else by suffix, else an error."""
    if explicit is not None:
        if explicit not in CONTENT_TYPES:
            raise ConfigError(
                f"unknown format {explicit!r} (known: {', '.join(sorted(CONTENT_TYPES))})",
                field="format",
            )
        return explicit
    fmt = format_of(name)
    if fmt is None:
        known = ", ".join(sorted(FORMATS))
        raise ConfigError(
            f"{name!r}: cannot tell the record format from the name (known suffixes: {known})",
            field="format",
            hint="pass format='jsonl', 'csv' or 'parquet'",
        )
    return fmt


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

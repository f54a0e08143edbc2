"""
duckdb exceptions → headwater errors (imports duckdb: load it lazily).

DuckDB's messages hold no secret (the connector has none), but they can be long and hold
the SQL headwater built; each error here is one line saying what failed and what to do.
"""

from __future__ import annotations

import re
from typing import Final

import duckdb

from headwater import (
    ConfigError,
    ConnectionFailed,
    ConnectorError,
    HeadwaterError,
    NotFound,
    PermissionDenied,
)


class FileLocked(ConnectionFailed):
    """
    Another process holds the DuckDB file's lock: DuckDB allows one read-write process
    per file (and no reader beside it), or any number of read-only ones.
    """


_LOCK: Final = re.compile(r"Could not set lock on file", re.I)
_PID: Final = re.compile(r"\(PID (\d+)\)")
_OTHER_CONFIG: Final = re.compile(r"different configuration|already attached", re.I)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def translate(exc: BaseException, *, target: str) -> HeadwaterError:
    """The headwater error for a duckdb exception raised while using ``target``."""
    if isinstance(exc, HeadwaterError):
        return exc
    message = _first_line(exc)
    if isinstance(exc, duckdb.IOException) and _LOCK.search(str(exc)):
        pid = _PID.search(str(exc))
        holder = f"another process (PID {pid.group(1)})" if pid else "another process"
        return FileLocked(
            f"duckdb: {target} is locked by {holder}: DuckDB allows one process to open a "
            "file for writing, and none to read it meanwhile",
            field="path",
            hint="wait until the other process is done (or closes the file), or work on a "
            "copy of the file; see the headwater-duckdb README, 'Concurrency'",
        )
    if isinstance(exc, duckdb.ConnectionException) and _OTHER_CONFIG.search(str(exc)):
        return ConfigError(
            f"duckdb: {target} is already open in this process with other settings ({message})",
            field="access",
            hint="use one connector per file in a process, or give them the same access, "
            "threads and memory_limit",
        )
    if isinstance(exc, duckdb.CatalogException):
        return NotFound(f"duckdb: {message}", field="stream")
    if isinstance(exc, duckdb.PermissionException) and "disabled by configuration" in str(exc):
        return PermissionDenied(
            f"duckdb: {message}",
            field="external_access",
            hint="a query stream reads this database only; set external_access=true to let "
            "it read other files and URLs",
        )
    if isinstance(exc, duckdb.PermissionException):
        return PermissionDenied(f"duckdb: {message}", field="path")
    if isinstance(exc, duckdb.ParserException | duckdb.BinderException):
        return ConfigError(f"duckdb: {message}", field="stream")
    if isinstance(exc, duckdb.IOException):
        return ConnectorError(f"duckdb: {target}: {message}", field="path")
    if isinstance(exc, duckdb.ConstraintException):
        return ConnectorError(
            f"duckdb: {message}",
            hint="rows whose key exists already: write with upsert_on=[key columns]",
        )
    if isinstance(exc, duckdb.Error):
        return ConnectorError(f"duckdb: {message}")
    return ConnectorError(f"{type(exc).__name__}: {message}")

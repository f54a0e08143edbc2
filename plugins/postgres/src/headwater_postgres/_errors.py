"""
psycopg / psycopg_pool exceptions → headwater errors (imports psycopg: load it lazily).

Failures while connecting carry no SQLSTATE (libpq reports them as text), so they are
classified by libpq's message; failures after connecting are classified by SQLSTATE.
Every message is one line, starts with what failed, and never holds the password
(headwater's errors redact every resolved secret anyway).
"""

from __future__ import annotations

import re
from typing import Final

import psycopg

from headwater import (
    AuthFailed,
    ConfigError,
    ConnectionFailed,
    ConnectorError,
    HeadwaterError,
    NotFound,
    PermissionDenied,
    ServerError,
    TLSFailure,
)

# libpq connection failure texts, most specific first: (pattern, error class, field, hint)
_CONNECT_RULES: Final[list[tuple[re.Pattern[str], type[ConnectorError], str | None, str]]] = [
    (
        # An established connection that broke (backend terminated, server restart);
        # checked first because over TLS libpq words it "SSL SYSCALL error: EOF".
        re.compile(
            r"server closed the connection unexpectedly|consuming input failed|"
            r"SSL SYSCALL error|EOF detected|terminating connection",
            re.I,
        ),
        ServerError,
        None,
        "retry; a read resumes exactly from the last batch's state",
    ),
    (
        re.compile(
            r"password authentication failed|no password supplied|"
            r"authentication failed|password is required",
            re.I,
        ),
        AuthFailed,
        "password",
        "check the user and password (a secret reference resolves on every connection)",
    ),
    (
        re.compile(r'role "[^"]*" does not exist', re.I),
        AuthFailed,
        "user",
        "check the user name",
    ),
    (
        re.compile(r'database "[^"]*" does not exist', re.I),
        NotFound,
        "dbname",
        "check dbname (or the path of the URL)",
    ),
    (
        re.compile(
            r"no pg_hba\.conf entry|permission denied for database|"
            r"not permitted to log in",
            re.I,
        ),
        PermissionDenied,
        "user",
        "the server does not let this user connect from here (pg_hba.conf / CONNECT)",
    ),
    (
        # The server wants a client certificate (pg_hba ``cert``) and got none it accepts.
        re.compile(r"requires a valid client certificate|certificate authentication failed", re.I),
        TLSFailure,
        "sslcert",
        "give sslcert and sslkey: a client certificate signed by a CA the server trusts",
    ),
    (
        re.compile(r"certificate|SSL|TLS|sslmode|sslrootcert|handshake", re.I),
        TLSFailure,
        "sslmode",
        "check sslmode, sslrootcert and that the host name matches the server certificate",
    ),
    (
        re.compile(
            r"could not translate host name|failed to resolve host|"
            r"Name or service not known|nodename nor servname",
            re.I,
        ),
        ConnectionFailed,
        "host",
        "check the host name",
    ),
    (
        re.compile(r"Connection refused", re.I),
        ConnectionFailed,
        "port",
        "is the server running on that host and port, accepting TCP/IP connections?",
    ),
    (
        re.compile(
            r"timeout expired|timed out|No route to host|Network is unreachable|"
            r"Connection reset|could not connect",
            re.I,
        ),
        ConnectionFailed,
        "host",
        "check host, port and the network path (firewall, VPN)",
    ),
]

# SQLSTATE class / code → error class (checked after connecting)
_RETRYABLE_STATES: Final = {
    "57P01": "the server terminated the connection (administrator command)",
    "57P02": "the server is shutting down (crash recovery)",
    "57P03": "the server is not accepting connections yet",
    "40001": "serialization failure",
    "40P01": "deadlock detected",
    "53300": "too many connections",
    "55P03": "lock not available",
    # A read holds its cursor in a transaction; a consumer that pauses between batches
    # longer than the server's idle_in_transaction_session_timeout loses the session.
    "25P03": "the server ended the read's idle transaction (idle_in_transaction_session_timeout)",
}


def _primary(exc: BaseException) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    text = primary or str(exc)
    return re.sub(r"\s+", " ", text).strip()


def translate(exc: BaseException, *, target: str) -> HeadwaterError:
    """Map a psycopg / psycopg_pool exception to a headwater error."""
    if isinstance(exc, HeadwaterError):
        return exc
    try:
        from psycopg_pool import PoolTimeout
    except ImportError:  # pragma: no cover - psycopg_pool is a dependency
        PoolTimeout = ()  # type: ignore[assignment,misc]
    if isinstance(exc, PoolTimeout):
        return ConnectionFailed(
            f"no pooled connection to {target} became free in time ({_primary(exc)})",
            field="pool_timeout",
            hint="raise pool_max_size or pool_timeout, or do fewer operations at once",
        )
    if not isinstance(exc, psycopg.Error):
        if isinstance(exc, TimeoutError | ConnectionError | OSError):
            return ConnectionFailed(f"{target}: {type(exc).__name__}: {exc}", field="host")
        return ConnectorError(f"{type(exc).__name__}: {exc}")
    sqlstate = exc.sqlstate
    message = _primary(exc)
    if sqlstate is None:
        return _connect_error(exc, message, target)
    if sqlstate in _RETRYABLE_STATES:
        return ServerError(
            f"{target}: {_RETRYABLE_STATES[sqlstate]}: {message}",
            hint="retry; a read resumes exactly from the last batch's state",
        )
    from headwater_postgres._query import refusal

    refused = refusal(exc)
    if refused is not None:
        return refused
    if sqlstate == "57014":
        return ServerError(
            f"{target}: statement cancelled ({message})",
            retryable=False,
            field="statement_timeout",
            hint="raise statement_timeout, or read in smaller pieces",
        )
    if sqlstate.startswith("08"):
        return ConnectionFailed(f"{target}: connection lost: {message}", field="host")
    if sqlstate.startswith("28"):
        return AuthFailed(f"{target}: {message}", field="password")
    if sqlstate == "3D000":
        return NotFound(f"{target}: {message}", field="dbname")
    if sqlstate in ("42P01", "3F000", "42704"):
        return NotFound(f"{target}: {message}", field="stream")
    if sqlstate == "42703":
        return ConfigError(f"{target}: {message}", field="columns")
    if sqlstate == "42501":
        return PermissionDenied(f"{target}: {message}")
    if sqlstate.startswith("42"):
        return ConfigError(f"{target}: SQL error: {message}", field="stream")
    if sqlstate.startswith(("22", "23")):
        kind = "invalid data" if sqlstate.startswith("22") else "constraint violated"
        return ConnectorError(f"{target}: {kind}: {message}")
    if sqlstate.startswith(("53", "58", "XX")):
        return ServerError(f"{target}: server error: {message}")
    return ConnectorError(f"{target}: {message}")


def _connect_error(exc: psycopg.Error, message: str, target: str) -> HeadwaterError:
    # Strip libpq's 'connection failed: connection to server at "h", port p failed:'
    # prefix to keep one short line; the target says where.
    text = re.sub(r"^connection failed:\s*", "", message)
    text = re.sub(r'connection to server at "[^"]*"(?: \([^)]*\))?, port \d+ failed:\s*', "", text)
    text = re.sub(r"^(FATAL|ERROR):\s+", "", text).strip() or message
    # libpq appends its own hint ("Is the server running on that host...?"); ours is in .hint.
    text = text.split(" Is the server running")[0]
    for pattern, cls, field, hint in _CONNECT_RULES:
        if pattern.search(message):
            return cls(f"cannot connect to {target}: {text}", field=field, hint=hint)
    if isinstance(exc, psycopg.OperationalError):
        # An operational error with no SQLSTATE after connecting: the connection broke
        # (backend killed, network cut, server restart). Trying again may well work.
        return ServerError(
            f"{target}: connection lost: {text}",
            hint="retry; a read resumes exactly from the last batch's state",
        )
    return ConnectorError(f"{target}: {text}")

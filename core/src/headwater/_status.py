"""
What a failure of a network call means: which errors are worth another try, what an HTTP
status is as a headwater error, and how long a service asked callers to wait.

Shared by the retry policy (`headwater._retry`), the circuit breaker
(`headwater._breaker`) and every connector that talks to a service:

- `is_retryable` decides what is tried again: headwater errors say so through their
  ``retryable`` flag (`ConnectionFailed`, `RateLimited`, HTTP 502/503/504 as
  `ServerError`); builtin connect errors, timeouts and DNS failures are retried too.
  Nothing else is: a 400, 401, 403, 404 or any other 4xx fails at once, and so does a
  `CircuitOpen`. Plugins translate their driver's exceptions to headwater errors
  *inside* the retried function, so the policy sees ``RateLimited`` rather than an
  ``httpx.HTTPStatusError``.
- `error_for_status` maps an HTTP status to the headwater error a user should see.
- `parse_retry_after` reads a ``Retry-After`` header (seconds or an HTTP date).
"""

from __future__ import annotations

import errno
import math
import socket
import sys
from datetime import UTC, datetime
from typing import Final

from headwater._redact import redact
from headwater.errors import (
    AuthFailed,
    Category,
    CircuitOpen,
    ConnectionFailed,
    ConnectorError,
    HeadwaterError,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
)

__all__ = [
    "RETRYABLE_STATUS",
    "describe_failure",
    "error_for_status",
    "is_retryable",
    "parse_retry_after",
    "retry_after_of",
]

#: HTTP statuses worth another try: throttled, bad gateway, unavailable, gateway timeout.
RETRYABLE_STATUS: Final = frozenset({429, 502, 503, 504})

# errno values that mean "the network path failed", which some platforms and libraries
# raise as a bare OSError rather than as a ConnectionError subclass. getattr: not every
# platform defines every name.
_NETWORK_ERRNOS: Final = frozenset(
    code
    for code in (
        getattr(errno, name, None)
        for name in (
            "ECONNREFUSED",
            "ECONNRESET",
            "ECONNABORTED",
            "EPIPE",
            "ETIMEDOUT",
            "ENETDOWN",
            "ENETUNREACH",
            "ENETRESET",
            "EHOSTDOWN",
            "EHOSTUNREACH",
        )
    )
    if code is not None
)

# Longest text of a failure quoted in a log line or a CircuitOpen message.
_DESCRIBE_LIMIT: Final = 200


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """
    Read an HTTP ``Retry-After`` header value as a number of seconds to wait.

    Args:
        value: the header value: delta-seconds (``"120"``) or an HTTP-date
            (``"Wed, 21 Oct 2015 07:28:00 GMT"``; the obsolete RFC 850 and asctime forms
            are accepted too, as RFC 9110 asks of recipients).
        now: the current time, for the HTTP-date form; defaults to the system clock (UTC).

    Returns:
        The delay in seconds, never negative (a date in the past means "now", ``0.0``),
        or ``None`` when the value is missing or unparsable (including negative,
        infinite or NaN numbers), in which case the caller falls back to backoff.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        # RFC 9110 allows only non-negative integers; fractions are accepted because
        # some services send them, but nothing negative or non-finite.
        if not math.isfinite(seconds) or seconds < 0:
            return None
        return seconds
    from email.utils import parsedate_to_datetime  # only the date form needs it

    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        # HTTP dates are always GMT; the asctime form and "-0000" parse as naive.
        when = when.replace(tzinfo=UTC)
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


_HINTS: Final[dict[int, str]] = {
    401: "check the credentials (token, key or password) configured for this source",
    403: "the credentials were accepted but do not allow this operation",
    404: "check the name, path or URL",
    408: "the service timed out waiting for the request; try again",
    410: "the resource was removed; check the name, path or URL",
    429: "the service is throttling requests; lower the request rate or try again later",
}


def error_for_status(
    status: int,
    message: str,
    *,
    retry_after: float | None = None,
    field: str | None = None,
) -> HeadwaterError:
    """
    The headwater error for an HTTP error status (the caller raises it).

    ===========================  ===========================================  =========
    status                       error                                        retryable
    ===========================  ===========================================  =========
    401                          `AuthFailed`                                 no
    403                          `PermissionDenied`                           no
    404, 410                     `NotFound`                                   no
    408                          `ConnectionFailed` (the request timed out)   yes
    429                          `RateLimited` with ``retry_after``           yes
    502, 503, 504                `ServerError` with ``retry_after``           yes
    other 5xx                    `ServerError`                                no
    other 4xx                    `ConnectorError`, category ``config``        no
    anything else                `ConnectorError`, category ``server``        no
    ===========================  ===========================================  =========

    Args:
        status: the HTTP status code.
        message: one line for the user, e.g. ``"GET /v1/items returned 503"``.
        retry_after: the parsed ``Retry-After`` header (see `parse_retry_after`).
        field: the config field at fault, where known.
    """
    hint = _HINTS.get(status)
    if status == 401:
        return AuthFailed(message, field=field, hint=hint)
    if status == 403:
        return PermissionDenied(message, field=field, hint=hint)
    if status in (404, 410):
        return NotFound(message, field=field, hint=hint)
    if status == 408:
        return ConnectionFailed(message, field=field, hint=hint)
    if status == 429:
        return RateLimited(message, retry_after=retry_after, field=field, hint=hint)
    if 500 <= status <= 599:
        return ServerError(
            message,
            retry_after=retry_after,
            retryable=status in RETRYABLE_STATUS,
            field=field,
            hint="the service failed on its side; try again later",
        )
    err = ConnectorError(message, field=field, hint=hint)
    if 400 <= status <= 499:
        # A 4xx we have no class for is a request the service will never accept as
        # sent: a configuration problem on our side, not a server failure.
        err.category = Category.CONFIG  # type: ignore[misc]
        err.hint = "the service rejected the request; check the source's configuration"
    return err


def is_retryable(exc: BaseException) -> bool:
    """
    Whether calling again may succeed; the default ``retry_on`` of `RetryPolicy`.

    - A `HeadwaterError` answers with its ``retryable`` flag (an instance may override
      its class, e.g. ``ServerError(retryable=False)`` for HTTP 500). `CircuitOpen` is
      never retryable: the breaker has already decided.
    - ``TimeoutError`` (which ``socket.timeout`` and ``asyncio.TimeoutError`` are),
      ``ConnectionError`` (refused, reset, aborted, broken pipe) and
      ``socket.gaierror`` (DNS) are retryable.
    - Any other ``OSError`` is retryable only when its ``errno`` names a network failure
      (unreachable host or network, network down, connection reset, ...), which some
      platforms raise as a bare ``OSError``. File-system errors and TLS failures
      (``ssl.SSLError``, a certificate problem will not fix itself) are not.
    - Everything else is not: plugins map their driver's exceptions to headwater errors
      first, and an unknown exception is more likely a bug than a blip.
    """
    if isinstance(exc, CircuitOpen):
        return False
    if isinstance(exc, HeadwaterError):
        return bool(exc.retryable)
    # ssl is costly to import; if nothing imported it, no SSLError can exist.
    ssl = sys.modules.get("ssl")
    if ssl is not None and isinstance(exc, ssl.SSLError):
        return False
    if isinstance(exc, TimeoutError | ConnectionError | socket.gaierror):
        return True
    if isinstance(exc, OSError):
        return exc.errno in _NETWORK_ERRNOS
    return False


def retry_after_of(exc: BaseException) -> float | None:
    # RateLimited and ServerError carry the parsed Retry-After; other errors may too.
    value = getattr(exc, "retry_after", None)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return float(value)


def describe_failure(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > _DESCRIBE_LIMIT:
        text = text[: _DESCRIBE_LIMIT - 3] + "..."
    name = type(exc).__name__
    return redact(f"{name}: {text}" if text else name)

"""
Process-wide redaction of secret values.

Every secret headwater resolves is remembered here (in memory only) so that any text
headwater writes — log records, exception messages, reprs, CLI output — can be scrubbed
of it, even when a driver echoes the secret back in its own error text. URLs with a
password in their userinfo part are masked as well, resolved or not, and so are the
values of credential-named query parameters (`is_credential_name` of `headwater._naming`,
the one rule headwater uses wherever it must guess from a name; re-exported here).
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Final

from headwater._naming import is_credential_name as is_credential_name

MASK: Final = "***"

# Short values would mask ordinary words ("a", "no"); a secret that short is not a
# secret worth the false positives. Four characters is where keyring/env values start.
_MIN_LEN: Final = 4

_lock = threading.Lock()
_values: set[str] = set()
_pattern: re.Pattern[str] | None = None

# scheme://user:password@host -> scheme://user:***@host. The password runs to the first
# "@" (as libpq reads it) and may hold any character but whitespace: "/", "?" and "#"
# included, which urllib would take for the end of the host part. Masking a little too
# much of an odd URL in a message is the safe way to be wrong.
_URL_PASSWORD = re.compile(
    r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.\-]*://[^/\s:@]*:)(?P<pw>[^@\s]+)(?P<at>@)"
)
# Query parameters of URLs in text; masked when `is_credential_name` says so.
_URL_PARAM = re.compile(r"(?P<key>[?&;](?P<name>[^=&;\s#?]+)=)(?P<val>[^&;\s#]*)")


def register_secret(value: str) -> None:
    """Remember a resolved secret so every later redaction masks it."""
    global _pattern
    if not value or len(value) < _MIN_LEN:
        return
    with _lock:
        if value in _values:
            return
        _values.add(value)
        # Longest first, so a secret containing another is masked whole.
        ordered = sorted(_values, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(v) for v in ordered))


def redact(text: str) -> str:
    """Return ``text`` with every known secret, URL password and credential parameter masked."""
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    if "://" in text:
        text = _URL_PASSWORD.sub(lambda m: f"{m['pre']}{MASK}{m['at']}", text)
    if "=" in text:
        text = _URL_PARAM.sub(_mask_param, text)
    return text


def _mask_param(match: re.Match[str]) -> str:
    if match["val"] and is_credential_name(match["name"]):
        return f"{match['key']}{MASK}"
    return match[0]


def _forget_all() -> None:
    """Drop every remembered secret (tests only)."""
    global _pattern
    with _lock:
        _values.clear()
        _pattern = None


class RedactingFilter(logging.Filter):
    """
    A logging filter that masks secrets in records.

    headwater attaches it to its own loggers and the CLI attaches it to its handler, so
    records from drivers (psycopg, azure, httpx) are scrubbed too. Programs embedding
    headwater can add it to their own handlers: ``handler.addFilter(RedactingFilter())``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        if record.exc_info and record.exc_info[0] is not None:
            # Format the traceback now, scrubbed; handlers reuse exc_text when it is set.
            formatter = logging.Formatter()
            record.exc_text = redact(formatter.formatException(record.exc_info))
            record.exc_info = None
        return True


_FILTER: Final = RedactingFilter()


def get_logger(name: str) -> logging.Logger:
    """A logger with the redacting filter attached (filters do not inherit, so each gets one)."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger

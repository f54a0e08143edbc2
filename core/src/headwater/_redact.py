"""
Process-wide redaction of secret values.

Every secret headwater resolves is remembered here (in memory only) so that any text
headwater writes — log records, exception messages, reprs, CLI output — can be scrubbed
of it, even when a driver echoes the secret back in its own error text. URLs with a
password in their userinfo part are masked as well, resolved or not.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Final

MASK: Final = "***"

# Short values would mask ordinary words ("a", "no"); a secret that short is not a
# secret worth the false positives. Four characters is where keyring/env values start.
_MIN_LEN: Final = 4

_lock = threading.Lock()
_values: set[str] = set()
_pattern: re.Pattern[str] | None = None

# scheme://user:password@host -> scheme://user:***@host
_URL_PASSWORD = re.compile(
    r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.\-]*://[^/\s:@]*:)(?P<pw>[^@\s/]+)(?P<at>@)"
)
# Query parameters that carry credentials in URLs (Azure SAS "sig", OAuth tokens).
_URL_SECRET_PARAM = re.compile(
    r"(?P<key>[?&](?:sig|signature|access_token|token|api_key|apikey|key|password|client_secret)=)"
    r"(?P<val>[^&\s#]+)",
    re.IGNORECASE,
)


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
        text = _URL_SECRET_PARAM.sub(lambda m: f"{m['key']}{MASK}", text)
    return text


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

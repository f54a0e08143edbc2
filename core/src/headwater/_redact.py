"""
Process-wide redaction of secret values.

Every secret headwater resolves is remembered here (in memory only) so that any text
headwater writes — log records, exception messages, reprs, CLI output — can be scrubbed
of it, even when a driver echoes the secret back in its own error text. URLs with a
password in their userinfo part are masked as well, resolved or not, and so are the
values of credential-named query parameters (`is_credential_name`, the one rule headwater
uses wherever it must guess from a name).
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

# scheme://user:password@host -> scheme://user:***@host. The password runs to the first
# "@" (as libpq reads it) and may hold any character but whitespace: "/", "?" and "#"
# included, which urllib would take for the end of the host part. Masking a little too
# much of an odd URL in a message is the safe way to be wrong.
_URL_PASSWORD = re.compile(
    r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.\-]*://[^/\s:@]*:)(?P<pw>[^@\s]+)(?P<at>@)"
)
# Query parameters of URLs in text; masked when `is_credential_name` says so.
_URL_PARAM = re.compile(r"(?P<key>[?&;](?P<name>[^=&;\s#?]+)=)(?P<val>[^&;\s#]*)")

# --- which names carry credentials ---------------------------------------------------------

#: Anywhere in a name (``X-Auth-Token``, ``sslpassword``, ``AccessKey``).
_CREDENTIAL_PART: Final = re.compile(
    r"auth|token|secret|passw|passphrase|cookie|session|signature|credential"
    r"|apikey|appkey|accesskey|privatekey|masterkey",
    re.IGNORECASE,
)
#: Words of a name (``x-api-key`` → x, api, key) that make it a credential.
_CREDENTIAL_WORDS: Final = frozenset({"key", "sig", "pwd", "pw", "pass", "sas", "otp", "jwt"})
#: Whole names that are credentials in the APIs that use them (``?appid=`` of
#: OpenWeatherMap, Azure Functions' ``?code=``).
_CREDENTIAL_NAMES: Final = frozenset({"code", "appid"})
#: A "key" after one of these names a record or an ordering, not a secret.
_PLAIN_KEY_KINDS: Final = frozenset(
    {
        "sort", "partition", "primary", "foreign", "idempotency", "cache", "row", "order",
        "group", "public", "hash", "lookup", "search", "object", "range", "dedup", "dedupe",
        "unique", "natural", "shard", "routing", "index", "cursor", "page", "next", "start",
    }
)  # fmt: skip
#: A "token" after one of these names a place in a paged stream (``pageToken``,
#: ``next_token``, ``continuationToken``): an API makes it and puts it in next links, so
#: a state must keep it (a stripped one could not be given back from the config).
_PLAIN_TOKEN_KINDS: Final = frozenset(
    {"page", "next", "pagination", "continuation", "continue", "sync", "cursor", "resume",
     "delta", "skip"}
)  # fmt: skip
#: Words that merely start like a credential part ("auth").
_PLAIN_WORDS: Final = frozenset({"author", "authors", "authored", "authority"})
_WORD: Final = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")


def is_credential_name(name: str) -> bool:
    """
    Whether a header, query parameter or setting called ``name`` probably carries a
    credential: ``Authorization``, ``X-API-Key``, ``DD-APPLICATION-KEY``, ``X-Master-Key``,
    ``access_token``, ``sig``, ``sslpassword``, ``appid``, ``code``, ... but not
    ``sort_key``, ``primary_key``, a page token (``pageToken``, ``next_token``) or
    ``author``.

    A guess by name, wrong in the safe direction when unsure (an unknown ``*_key`` is a
    credential). Configs that know better say so explicitly (see the REST connector's
    ``{secret: ...}`` / ``{plain: ...}`` values).
    """
    words = [w.lower() for w in _WORD.findall(name)]
    plain = {
        index
        for index, word in enumerate(words)
        if word in _PLAIN_WORDS
        or (word == "token" and index > 0 and words[index - 1] in _PLAIN_TOKEN_KINDS)
    }
    # Without plain words the name is searched as written ("sslpassword" is one word).
    rest = "".join(w for i, w in enumerate(words) if i not in plain) if plain else name
    if _CREDENTIAL_PART.search(rest):
        return True
    if "".join(words) in _CREDENTIAL_NAMES:
        return True
    for index, word in enumerate(words):
        if word == "key":
            if index == 0 or words[index - 1] not in _PLAIN_KEY_KINDS:
                return True
        elif word in _CREDENTIAL_WORDS:
            return True
    return False


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

"""
The naming rules headwater applies in more than one place, each written once.

* A connector id (`is_connector_id`): lowercase letters, digits and single dashes
  (``azure-blob``). Discovery refuses a plugin that registers another, ``headwater
  new-plugin`` refuses to write one, and the contract suite fails a connector with one.
* Whether a name says it holds a secret. Two questions, two answers:
  `is_credential_name` guesses from any header, query parameter or setting name and errs
  on the safe side (redaction masks its value; an unknown ``*_key`` counts);
  `looks_like_secret` asks of a config field whose type the author chose, and only a name
  that *ends* with a secret word counts (``refresh_token``, not ``token_url``), so the
  contract suite can demand that such a field be typed `headwater.Secret`.
"""

from __future__ import annotations

import re
from typing import Final, TypeGuard

# --- connector ids -------------------------------------------------------------------------

_CONNECTOR_ID: Final = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
#: What a valid connector id is made of, for error messages.
CONNECTOR_ID_RULE: Final = "lowercase letters, digits and single dashes"


def is_connector_id(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a valid connector id (``postgres``, ``azure-blob``)."""
    return isinstance(value, str) and _CONNECTOR_ID.match(value) is not None


# --- names that carry credentials ----------------------------------------------------------

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


# Config field names that hold secrets: the name ends with a secret word (``password``,
# ``refresh_token``, ``api_key``); ``token_url`` or ``password_env`` only say where one is.
_SECRET_FIELD: Final = re.compile(
    r"(^|[_-])(password|passwd|passphrase|secret|token|credentials?|apikey|api[_-]?key"
    r"|access[_-]?key|account[_-]?key|private[_-]?key|connection[_-]?string|sas)$"
)


def looks_like_secret(name: str) -> bool:
    """Whether a config field name suggests it holds a secret (``password``, ``api_key``)."""
    return _SECRET_FIELD.search(name.rsplit(".", 1)[-1].lower()) is not None

"""
The leak scanner of the contract suite: which secrets a connector holds, and where in a
set of texts (reprs, errors, log records) any of them shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from headwater._connector import Connector


def forget_secrets() -> None:
    """
    Drop every secret redaction remembers. Redaction is process-wide: a value registered
    by an earlier test would mask a leak in this one, so each secret check starts the way
    a fresh process starts.
    """
    from headwater._redact import _forget_all

    _forget_all()


def resolved_secrets(connector: Connector[Any]) -> list[str]:
    """Every secret in the connector's config (nested models included), resolved."""
    from pydantic import BaseModel

    from headwater._secrets import Secret
    from headwater.errors import HeadwaterError

    found: list[str] = []

    def walk(value: Any, field: str) -> None:
        if isinstance(value, Secret):
            try:
                found.append(value.resolve(field, connector.registry.credential_resolvers()))
            except HeadwaterError:
                pass  # unresolvable: there is no value to leak
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name), f"{field}.{name}" if field else name)
        elif isinstance(value, Mapping):
            for key, item in value.items():
                walk(item, f"{field}.{key}")
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                walk(item, f"{field}[{index}]")

    walk(connector.config, "")
    return [value for value in found if value]


def exception_texts(exc: BaseException) -> list[str]:
    """The message and repr of an exception and every exception chained to it."""
    import traceback

    texts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts.append(repr(current))
        texts.extend(traceback.format_exception_only(type(current), current))
        current = current.__cause__ or current.__context__
    return texts


def find_leaks(texts: Mapping[str, str], secrets: Sequence[str]) -> list[str]:
    """The labels of ``texts`` (label -> text) in which any of ``secrets`` appears."""
    return [where for where, text in texts.items() for value in secrets if value in text]

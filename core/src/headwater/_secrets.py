"""
Secret values in connector configs: literals, references and callables, resolved late.

A config field typed `Secret` accepts

* a literal string (``"hunter2"``),
* a reference ``SCHEME:REST`` whose scheme has a registered resolver — core ships
  ``env:NAME``, ``file:PATH``, ``keyring:SERVICE/USERNAME`` and ``encrypted:NAME`` (the
  Fernet-encrypted store of `headwater._encrypted`, for servers without a keyring);
  plugins add more through the ``register_credential_resolvers`` hook,
* in Python, a callable returning the secret (called again for every new connection, so
  rotation works).

Parsing a config never resolves anything. A connector calls `Connector.secret` when it
connects; the value it gets back is registered with the redactor and never stored on
the config. `repr`/`str` of a `Secret` never show a literal's value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler, SecretStr
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from headwater._redact import MASK, register_secret
from headwater.errors import ConfigError, CredentialError

#: ``scheme:rest`` where scheme is a lowercase identifier (``azure-keyvault`` allowed).
_REFERENCE: Final = re.compile(r"^(?P<scheme>[a-z][a-z0-9+\-]*):(?P<rest>.+)$", re.DOTALL)


class CredentialResolver(Protocol):
    """
    Turns the part after ``scheme:`` into the secret value.

    Raise `headwater.CredentialError` naming where you looked when there is no value;
    never include the value in any message.
    """

    def __call__(self, reference: str, /) -> str: ...


SecretFactory = Callable[[], str]


class Secret:
    """
    A secret config value: a literal, a reference such as ``env:PGPASSWORD``, or a callable.

    Which strings count as references depends on the resolvers registered when the
    secret is *resolved*; `Secret.parse` only records the text. Use `Secret.literal` in
    Python for a literal that happens to look like ``scheme:...``.
    """

    __slots__ = ("_factory", "_literal", "_reference")

    def __init__(
        self,
        *,
        literal: str | None = None,
        reference: str | None = None,
        factory: SecretFactory | None = None,
    ) -> None:
        if sum(x is not None for x in (literal, reference, factory)) != 1:
            raise TypeError("Secret takes exactly one of literal=, reference=, factory=")
        self._literal = literal
        self._reference = reference
        self._factory = factory

    @classmethod
    def parse(cls, value: str | SecretFactory | Secret | SecretStr) -> Secret:
        """Build a `Secret` from what a user wrote: a string, a callable or a `SecretStr`."""
        if isinstance(value, Secret):
            return value
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            if _REFERENCE.match(value) and not value.startswith(("http:", "https:")):
                return cls(reference=value)
            return cls(literal=value)
        if callable(value):
            return cls(factory=value)
        raise TypeError(f"a secret must be a string or a callable, not {type(value).__name__}")

    @classmethod
    def literal_value(cls, value: str) -> Secret:
        """A literal secret, even if it looks like a reference."""
        return cls(literal=value)

    @property
    def is_literal(self) -> bool:
        """True for a literal value written into the config."""
        return self._literal is not None

    @property
    def is_callable(self) -> bool:
        """True for a Python callable."""
        return self._factory is not None

    @property
    def reference(self) -> str | None:
        """The reference text (``env:NAME``) — safe to show and to save — or ``None``."""
        return self._reference

    def display(self) -> str:
        """A sanitized view: the reference as written, ``***`` for a literal, ``<callable>``."""
        if self._reference is not None:
            return self._reference
        if self._factory is not None:
            return "<callable>"
        return MASK

    def resolve(
        self,
        field: str,
        resolvers: Mapping[str, CredentialResolver],
    ) -> str:
        """
        Resolve to the secret value and register it for redaction.

        Args:
            field: the config field, for error messages (``password``).
            resolvers: scheme → resolver, usually from the plugin registry.

        Raises:
            CredentialError: nothing found; the message names the field and where it looked.
        """
        if self._literal is not None:
            value = self._literal
        elif self._factory is not None:
            try:
                value = self._factory()
            except CredentialError:
                raise
            except Exception as exc:
                raise CredentialError(
                    f"the callable for secret field {field!r} raised {type(exc).__name__}",
                    field=field,
                ) from None
            if not isinstance(value, str):
                raise CredentialError(
                    f"the callable for secret field {field!r} returned "
                    f"{type(value).__name__}, expected str",
                    field=field,
                )
        else:
            assert self._reference is not None
            match = _REFERENCE.match(self._reference)
            assert match is not None
            scheme, rest = match["scheme"], match["rest"]
            resolver = resolvers.get(scheme)
            if resolver is None:
                # An unknown scheme is more likely a literal with a colon than a typo, but
                # guessing wrong would send a reference string as a password. Refuse.
                known = ", ".join(sorted(f"{s}:" for s in resolvers)) or "none"
                raise ConfigError(
                    f"secret field {field!r} uses unknown reference scheme {scheme + ':'!r} "
                    f"(known: {known})",
                    field=field,
                    hint="install the plugin providing that scheme, or pass the literal with "
                    "Secret.literal_value()",
                )
            try:
                value = resolver(rest)
            except CredentialError as exc:
                raise type(exc)(
                    f"secret field {field!r}: {exc.message}", field=field, hint=exc.hint
                ) from None
            except Exception as exc:
                raise CredentialError(
                    f"secret field {field!r}: resolver for {scheme}: failed ({type(exc).__name__})",
                    field=field,
                ) from None
        register_secret(value)
        return value

    def __repr__(self) -> str:
        return f"Secret({self.display()!r})"

    __str__ = display

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return (self._literal, self._reference, self._factory) == (
            other._literal,
            other._reference,
            other._factory,
        )

    def __hash__(self) -> int:
        return hash((self._literal, self._reference, id(self._factory)))

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source_type: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _validate_secret,
            serialization=core_schema.plain_serializer_function_ser_schema(
                _serialize_secret, info_arg=False
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "format": "password",
            "writeOnly": True,
            "x-headwater-secret": True,
            "description": "A secret: a literal, or a reference env:NAME, file:PATH, "
            "keyring:SERVICE/USERNAME, encrypted:NAME (or another scheme a plugin registers).",
        }


def _validate_secret(value: Any) -> Secret:
    try:
        return Secret.parse(value)
    except TypeError as exc:
        raise ValueError(str(exc)) from None


def _serialize_secret(value: Secret) -> str:
    # model_dump()/model_dump_json() must never leak a literal: dump the sanitized view.
    return value.display()

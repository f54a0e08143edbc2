"""
The exceptions headwater raises, and the categories a failed `check()` reports.

Every message is one readable line and never contains a secret: messages pass through
the process-wide redactor when the exception is built, so a secret resolved earlier in
the process is replaced by ``***`` even if a driver echoed it back.

Tree::

    HeadwaterError
    ├── ConfigError                 bad or missing configuration          (category config)
    ├── CredentialError             a secret could not be resolved        (category auth)
    │   └── KeyringUnavailable      no usable OS keyring backend
    ├── NotSupported                the connector lacks this operation
    ├── ConnectorError              a failure talking to the data source
    │   ├── ConnectionFailed        DNS, refused, reset, timeout          (network, retryable)
    │   ├── TLSFailure              certificate or handshake problem      (tls)
    │   ├── AuthFailed              credentials rejected                  (auth)
    │   ├── PermissionDenied        authenticated but not allowed         (permission)
    │   ├── NotFound                table, blob, path, stream missing     (not_found)
    │   ├── RateLimited             throttled; carries retry_after        (rate_limited, retryable)
    │   ├── ServerError             5xx or internal server failure        (server, retryable)
    │   ├── CircuitOpen             endpoint marked dead by the breaker   (network)
    │   ├── IntegrityError          checksum, size or etag mismatch
    │   ├── UnsafePath              an item would be written outside dest
    │   └── AlreadyExists           refusing to overwrite
    ├── PluginError                 plugin discovery and registration
    │   ├── PluginLoadError         import failed / hook raised (strict mode)
    │   ├── PluginIncompatible      targets another plugin API version
    │   ├── UnknownConnector        no plugin provides this id or URL scheme
    │   └── DuplicateConnector      two distributions claim one connector id
    └── SourceError                 named-source registry problems
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar

__all__ = [
    "AlreadyExists",
    "AuthFailed",
    "Category",
    "CircuitOpen",
    "ConfigError",
    "ConnectionFailed",
    "ConnectorError",
    "CredentialError",
    "DuplicateConnector",
    "HeadwaterError",
    "IntegrityError",
    "KeyringUnavailable",
    "NotFound",
    "NotSupported",
    "PermissionDenied",
    "PluginError",
    "PluginIncompatible",
    "PluginLoadError",
    "RateLimited",
    "ServerError",
    "SourceError",
    "TLSFailure",
    "UnknownConnector",
    "UnsafePath",
]


class Category(StrEnum):
    """What kind of failure a `CheckResult` or an error reports."""

    AUTH = "auth"
    PERMISSION = "permission"
    NETWORK = "network"
    TLS = "tls"
    CONFIG = "config"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    SERVER = "server"


def _one_line(text: str) -> str:
    # Driver messages often span lines (psycopg adds DETAIL/HINT lines); ours never do.
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


class HeadwaterError(Exception):
    """
    Base of every error headwater raises.

    Args:
        message: one line saying what went wrong; redacted before it is stored.
        field: the config field at fault, where known (``password``, ``container``).
        hint: what to do about it, one line.
    """

    #: The check category this error maps to; ``None`` when it is not a source failure.
    category: ClassVar[Category | None] = None
    #: Whether trying again later may succeed (the shared retry policy reads this).
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None) -> None:
        from headwater._redact import redact

        self.message = redact(_one_line(message))
        self.field = field
        self.hint = redact(_one_line(hint)) if hint else None
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments do not survive default pickling; partitions cross
        # process boundaries (Dask, Ray), so errors must too.
        # The instance dict carries subclass data (retry_after, per-instance retryable).
        return (_rebuild, (type(self), self.message, self.field, self.hint), dict(self.__dict__))


def _rebuild(
    cls: type[HeadwaterError], message: str, field: str | None, hint: str | None
) -> HeadwaterError:
    err = cls.__new__(cls)
    HeadwaterError.__init__(err, message, field=field, hint=hint)
    return err


class ConfigError(HeadwaterError):
    """The configuration is invalid or incomplete; ``field`` names the culprit."""

    category = Category.CONFIG


class CredentialError(HeadwaterError):
    """A secret could not be resolved; the message says where headwater looked, never the value."""

    category = Category.AUTH


class KeyringUnavailable(CredentialError):
    """No usable OS keyring backend (or it did not answer in time)."""


class NotSupported(HeadwaterError):
    """The connector does not offer this operation."""


class ConnectorError(HeadwaterError):
    """A failure while talking to a data source."""

    category = Category.SERVER


class ConnectionFailed(ConnectorError):
    """The service could not be reached: DNS, refused, reset, or timed out."""

    category = Category.NETWORK
    retryable = True


class TLSFailure(ConnectorError):
    """TLS handshake or certificate verification failed."""

    category = Category.TLS


class AuthFailed(ConnectorError):
    """The service rejected the credentials."""

    category = Category.AUTH


class PermissionDenied(ConnectorError):
    """Authenticated, but not allowed to do this."""

    category = Category.PERMISSION


class NotFound(ConnectorError):
    """The table, blob, stream or path does not exist."""

    category = Category.NOT_FOUND


class RateLimited(ConnectorError):
    """The service throttled us; ``retry_after`` is the delay it asked for, in seconds."""

    category = Category.RATE_LIMITED
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, field=field, hint=hint)
        self.retry_after = retry_after


class ServerError(ConnectorError):
    """The service failed on its side (HTTP 502/503/504, a terminated backend, ...)."""

    category = Category.SERVER
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        retryable: bool = True,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, field=field, hint=hint)
        self.retry_after = retry_after
        # An instance may opt out: HTTP 500 is a server failure but not worth retrying.
        self.retryable = retryable  # type: ignore[misc]


class CircuitOpen(ConnectorError):
    """The endpoint failed repeatedly; calls are refused until the breaker's cool-down ends."""

    category = Category.NETWORK


class IntegrityError(ConnectorError):
    """Downloaded or written data did not match its checksum, size or version."""


class UnsafePath(ConnectorError):
    """An item name would map to a local path outside the destination directory."""

    category = Category.CONFIG


class AlreadyExists(ConnectorError):
    """The target exists and overwriting was not asked for."""

    category = Category.CONFIG


class PluginError(HeadwaterError):
    """Plugin discovery, loading or registration failed."""


class PluginLoadError(PluginError):
    """A plugin failed to import or its hook raised (raised only in strict mode)."""


class PluginIncompatible(PluginError):
    """A plugin targets a plugin API version this core does not offer."""


class UnknownConnector(PluginError):
    """No installed plugin provides this connector id or handles this URL."""


class DuplicateConnector(PluginError):
    """Two plugins registered the same connector id; the message names both distributions."""


class SourceError(HeadwaterError):
    """A named source is missing, already exists, or its file cannot be read."""

    category = Category.CONFIG

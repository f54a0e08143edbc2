"""
The exceptions headwater raises, and the categories a failed `check()` reports.

Every message is one readable line and never contains a secret: messages pass through
the process-wide redactor when the exception is built, so a secret resolved earlier in
the process is replaced by ``***`` even if a driver echoed it back.

The exception chain is as clean: a headwater error's ``__cause__`` and ``__context__``
read as `RedactedError` copies of the driver's exceptions (type name, redacted message,
traceback), never as the driver's objects, whose messages, URLs and response objects may
hold a secret. ``traceback.format_exception``, ``logging.exception`` and a program that
walks the chain all see the copies, whichever way the error was raised (``from exc``,
``from None`` or inside an ``except`` block).

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


_CAUSE: Any = BaseException.__dict__["__cause__"]
_CONTEXT: Any = BaseException.__dict__["__context__"]


def _clean_chain(value: BaseException | None, seen: dict[int, BaseException]) -> Any:
    """``value`` as a chain may show it: headwater errors as they are, others copied."""
    if value is None or isinstance(value, HeadwaterError | RedactedError):
        return value
    if id(value) in seen:
        return seen[id(value)]
    copy = RedactedError(value)
    seen[id(value)] = copy
    # The copy's own chain is copied now (not when read), so no slot of it ever holds a
    # driver's exception. Setting __cause__ also sets __suppress_context__: restore it.
    suppress = value.__suppress_context__
    _CAUSE.__set__(copy, _clean_chain(_CAUSE.__get__(value), seen))
    _CONTEXT.__set__(copy, _clean_chain(_CONTEXT.__get__(value), seen))
    copy.__suppress_context__ = suppress
    return copy


def _chain_link(slot: Any, doc: str) -> Any:
    """
    A property in place of BaseException's ``__cause__`` / ``__context__``.

    The interpreter fills the slots of a raised exception directly (``raise ... from``,
    implicit chaining), past any Python code; every Python reader (the traceback module,
    logging, a program) goes through this property, which replaces a driver's exception
    in the slot by its redacted copy before handing it out.
    """

    def get(self: BaseException) -> BaseException | None:
        raw = slot.__get__(self)
        clean = _clean_chain(raw, {})
        if clean is not raw:
            suppress = self.__suppress_context__
            slot.__set__(self, clean)
            self.__suppress_context__ = suppress
        return clean  # type: ignore[no-any-return]

    def set_(self: BaseException, value: BaseException | None) -> None:
        suppress = self.__suppress_context__
        slot.__set__(self, _clean_chain(value, {}))
        # Assigning __cause__ means "show the cause, not the context", as it does natively.
        self.__suppress_context__ = True if slot is _CAUSE else suppress

    return property(get, set_, doc=doc)


class RedactedError(Exception):
    """
    A redacted copy of a driver's exception in the chain of a headwater error: the
    original's type name (``original_type``) and its message with every secret masked,
    with the original's traceback. Nothing else of the original is kept.
    """

    __cause__ = _chain_link(_CAUSE, "The cause, redacted.")
    __context__ = _chain_link(_CONTEXT, "The context, redacted.")

    def __init__(self, original: BaseException) -> None:
        from headwater._redact import redact

        kind = type(original)
        self.original_type = f"{kind.__module__}.{kind.__qualname__}"
        try:
            text = str(original)
        except Exception:  # a broken __str__ must not hide the error being reported
            text = "<message unavailable>"
        self.message = redact(text)
        super().__init__(self.message)
        self.__traceback__ = original.__traceback__

    def __str__(self) -> str:
        return f"{self.original_type}: {self.message}" if self.message else self.original_type

    def __repr__(self) -> str:
        return f"RedactedError({self.original_type}, {self.message!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_redacted, (self.original_type, self.message))


def _rebuild_redacted(original_type: str, message: str) -> RedactedError:
    err = RedactedError.__new__(RedactedError)
    Exception.__init__(err, message)
    err.original_type, err.message = original_type, message
    return err


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

    # The chain a program or a traceback sees holds redacted copies only (module docstring).
    __cause__ = _chain_link(_CAUSE, "The cause, as a redacted copy (`RedactedError`).")
    __context__ = _chain_link(_CONTEXT, "The context, as a redacted copy (`RedactedError`).")

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


def _scrub_chain(value: BaseException | None) -> None:
    """Read every link of ``value``'s chain through Python: headwater errors clean theirs."""
    seen: set[int] = set()
    pending = [value]
    while pending:
        exc = pending.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        pending += [exc.__cause__, exc.__context__]


def _install_excepthook() -> None:
    """
    Python 3.11 and 3.12 print an uncaught exception (of the program or of a thread) in
    C, reading the chain's slots directly, not through the properties above: until then a
    slot may still hold the driver's exception. The default hooks are wrapped to clean
    the chain first (a hook a program installed itself prints with the traceback module,
    which reads the properties).
    """
    import sys
    import threading

    if sys.excepthook is sys.__excepthook__:
        default = sys.__excepthook__

        def excepthook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
            try:
                _scrub_chain(value)
            finally:
                default(kind, value, tb)

        sys.excepthook = excepthook
    if threading.excepthook is threading.__excepthook__:
        thread_default = threading.__excepthook__

        def thread_excepthook(args: Any) -> None:
            try:
                _scrub_chain(args.exc_value)
            finally:
                thread_default(args)

        threading.excepthook = thread_excepthook


_install_excepthook()


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

"""
headwater: data-source connectors as plugins.

The public API is what this module exports; everything in underscored modules is
private. Plugin authors also import `headwater.hookspecs`, `headwater.errors` and
`headwater.testing` by path.
"""

from __future__ import annotations

from typing import Any

from headwater import errors
from headwater._connector import Batch
from headwater._connector import Capability
from headwater._connector import CheckResult
from headwater._connector import Connector
from headwater._connector import ConnectorConfig
from headwater._connector import FetchResult
from headwater._connector import Item
from headwater._connector import Partition
from headwater._connector import State
from headwater._connector import WriteResult
from headwater._files import atomic_file
from headwater._files import safe_destination
from headwater._plugins import ConnectorRef
from headwater._plugins import PluginInfo
from headwater._plugins import Registry
from headwater._plugins import connect
from headwater._plugins import get_plugin_manager
from headwater._plugins import get_registry
from headwater._plugins import set_registry
from headwater._redact import RedactingFilter
from headwater._redact import redact
from headwater._retry import CircuitBreaker
from headwater._retry import RetryPolicy
from headwater._secrets import CredentialResolver
from headwater._secrets import Secret
from headwater._sources import SourceRegistry
from headwater._version import API_VERSION
from headwater.errors import AlreadyExists
from headwater.errors import AuthFailed
from headwater.errors import Category
from headwater.errors import CircuitOpen
from headwater.errors import ConfigError
from headwater.errors import ConnectionFailed
from headwater.errors import ConnectorError
from headwater.errors import CredentialError
from headwater.errors import DuplicateConnector
from headwater.errors import HeadwaterError
from headwater.errors import IntegrityError
from headwater.errors import KeyringUnavailable
from headwater.errors import NotFound
from headwater.errors import NotSupported
from headwater.errors import PermissionDenied
from headwater.errors import PluginError
from headwater.errors import PluginIncompatible
from headwater.errors import PluginLoadError
from headwater.errors import RateLimited
from headwater.errors import ServerError
from headwater.errors import SourceError
from headwater.errors import TLSFailure
from headwater.errors import UnknownConnector
from headwater.errors import UnsafePath
from headwater.hookspecs import hookimpl
from headwater.hookspecs import hookspec

__all__ = [
    "API_VERSION",
    "AlreadyExists",
    "AuthFailed",
    "Batch",
    "Capability",
    "Category",
    "CheckResult",
    "CircuitBreaker",
    "CircuitOpen",
    "ConfigError",
    "ConnectionFailed",
    "Connector",
    "ConnectorConfig",
    "ConnectorError",
    "ConnectorRef",
    "CredentialError",
    "CredentialResolver",
    "DuplicateConnector",
    "FetchResult",
    "HeadwaterError",
    "IntegrityError",
    "Item",
    "KeyringUnavailable",
    "NotFound",
    "NotSupported",
    "Partition",
    "PermissionDenied",
    "PluginError",
    "PluginIncompatible",
    "PluginInfo",
    "PluginLoadError",
    "RateLimited",
    "RedactingFilter",
    "Registry",
    "RetryPolicy",
    "Secret",
    "ServerError",
    "SourceError",
    "SourceRegistry",
    "State",
    "TLSFailure",
    "UnknownConnector",
    "UnsafePath",
    "WriteResult",
    "atomic_file",
    "connect",
    "errors",
    "get_plugin_manager",
    "get_registry",
    "hookimpl",
    "hookspec",
    "redact",
    "safe_destination",
    "set_registry",
]

# Tracebacks and reprs should read `headwater.Connector`, not `headwater._connector.Connector`.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and _obj.__module__.startswith("headwater._"):
        _obj.__module__ = __name__
del _name, _obj


def __getattr__(name: str) -> Any:
    # Lazy, so that importing headwater does not read distribution metadata.
    if name == "__version__":
        from headwater._version import __version__

        return __version__
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""
headwater: data-source connectors as plugins.

The public API is what this module exports; everything in underscored modules is
private. Plugin authors also import `headwater.hookspecs`, `headwater.errors` and
`headwater.testing` by path.

Names are imported on first access (PEP 562), so ``import headwater`` stays cheap and
the CLI starts fast: ``headwater connectors`` must not pay for pydantic or any SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from headwater._connector import Batch as Batch
    from headwater._connector import atomic_state_options as atomic_state_options
    from headwater._connector import Capability as Capability
    from headwater._connector import CheckResult as CheckResult
    from headwater._connector import Connector as Connector
    from headwater._connector import ConnectorConfig as ConnectorConfig
    from headwater._connector import Estimate as Estimate
    from headwater._connector import FetchResult as FetchResult
    from headwater._connector import Item as Item
    from headwater._connector import Partition as Partition
    from headwater._connector import State as State
    from headwater._connector import WriteResult as WriteResult
    from headwater._connector import iterate_in_thread as iterate_in_thread
    from headwater._copy import CopyResult as CopyResult
    from headwater._encrypted import EncryptedSecrets as EncryptedSecrets
    from headwater._copy import acopy as acopy
    from headwater._copy import copy as copy
    from headwater._files import atomic_file as atomic_file
    from headwater._frames import record_batch_reader as record_batch_reader
    from headwater._frames import to_arrow as to_arrow
    from headwater._frames import to_pandas as to_pandas
    from headwater._frames import to_polars as to_polars
    from headwater._fork import forget_after_fork as forget_after_fork
    from headwater._files import safe_destination as safe_destination
    from headwater._json import loads_json as loads_json
    from headwater._keyset import check_keyset_state as check_keyset_state
    from headwater._net import is_loopback as is_loopback
    from headwater._plugins import ConnectorRef as ConnectorRef
    from headwater._plugins import PluginInfo as PluginInfo
    from headwater._plugins import Registry as Registry
    from headwater._plugins import connect as connect
    from headwater._plugins import get_plugin_manager as get_plugin_manager
    from headwater._plugins import get_registry as get_registry
    from headwater._plugins import set_registry as set_registry
    from headwater._redact import RedactingFilter as RedactingFilter
    from headwater._redact import redact as redact
    from headwater._redact import get_logger as get_logger
    from headwater._redact import register_secret as register_secret
    from headwater._redact import is_credential_name as is_credential_name
    from headwater._retry import CircuitBreaker as CircuitBreaker
    from headwater._retry import RetryPolicy as RetryPolicy
    from headwater._retry import parse_retry_after as parse_retry_after
    from headwater._retry import is_retryable as is_retryable
    from headwater._retry import error_for_status as error_for_status
    from headwater._retry import breaker_for as breaker_for
    from headwater._secrets import CredentialResolver as CredentialResolver
    from headwater._secrets import Secret as Secret
    from headwater._sources import Source as Source
    from headwater._sources import SourceRegistry as SourceRegistry
    from headwater._sources import default_sources_path as default_sources_path
    from headwater._store import MemorySourceStore as MemorySourceStore
    from headwater._store import SourceStore as SourceStore
    from headwater._store import TomlSourceStore as TomlSourceStore
    from headwater._version import API_VERSION as API_VERSION
    from headwater.errors import AlreadyExists as AlreadyExists
    from headwater.errors import AuthFailed as AuthFailed
    from headwater.errors import Category as Category
    from headwater.errors import CircuitOpen as CircuitOpen
    from headwater.errors import ConfigError as ConfigError
    from headwater.errors import ConnectionFailed as ConnectionFailed
    from headwater.errors import ConnectorError as ConnectorError
    from headwater.errors import CredentialError as CredentialError
    from headwater.errors import DuplicateConnector as DuplicateConnector
    from headwater.errors import HeadwaterError as HeadwaterError
    from headwater.errors import IntegrityError as IntegrityError
    from headwater.errors import KeyringUnavailable as KeyringUnavailable
    from headwater.errors import NotFound as NotFound
    from headwater.errors import NotSupported as NotSupported
    from headwater.errors import PermissionDenied as PermissionDenied
    from headwater.errors import PluginError as PluginError
    from headwater.errors import PluginIncompatible as PluginIncompatible
    from headwater.errors import PluginLoadError as PluginLoadError
    from headwater.errors import RateLimited as RateLimited
    from headwater.errors import ServerError as ServerError
    from headwater.errors import SourceError as SourceError
    from headwater.errors import TLSFailure as TLSFailure
    from headwater.errors import UnknownConnector as UnknownConnector
    from headwater.errors import UnsafePath as UnsafePath
    from headwater.hookspecs import hookimpl as hookimpl
    from headwater.hookspecs import hookspec as hookspec
    from headwater import errors as errors
    from headwater import formats as formats

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
    "CopyResult",
    "CredentialError",
    "CredentialResolver",
    "DuplicateConnector",
    "EncryptedSecrets",
    "Estimate",
    "FetchResult",
    "HeadwaterError",
    "IntegrityError",
    "Item",
    "KeyringUnavailable",
    "MemorySourceStore",
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
    "Source",
    "SourceError",
    "SourceRegistry",
    "SourceStore",
    "State",
    "TLSFailure",
    "TomlSourceStore",
    "UnknownConnector",
    "UnsafePath",
    "WriteResult",
    "acopy",
    "atomic_file",
    "atomic_state_options",
    "breaker_for",
    "check_keyset_state",
    "connect",
    "copy",
    "default_sources_path",
    "error_for_status",
    "errors",
    "forget_after_fork",
    "formats",
    "get_logger",
    "get_plugin_manager",
    "get_registry",
    "hookimpl",
    "hookspec",
    "is_credential_name",
    "is_loopback",
    "is_retryable",
    "iterate_in_thread",
    "loads_json",
    "parse_retry_after",
    "record_batch_reader",
    "redact",
    "register_secret",
    "safe_destination",
    "set_registry",
    "to_arrow",
    "to_pandas",
    "to_polars",
]

#: public name -> module defining it
_LAZY: dict[str, str] = {
    "Batch": "headwater._connector",
    "Capability": "headwater._connector",
    "CheckResult": "headwater._connector",
    "Connector": "headwater._connector",
    "ConnectorConfig": "headwater._connector",
    "Estimate": "headwater._connector",
    "FetchResult": "headwater._connector",
    "Item": "headwater._connector",
    "Partition": "headwater._connector",
    "State": "headwater._connector",
    "WriteResult": "headwater._connector",
    "CopyResult": "headwater._copy",
    "EncryptedSecrets": "headwater._encrypted",
    "acopy": "headwater._copy",
    "copy": "headwater._copy",
    "atomic_file": "headwater._files",
    "record_batch_reader": "headwater._frames",
    "to_arrow": "headwater._frames",
    "to_pandas": "headwater._frames",
    "to_polars": "headwater._frames",
    "iterate_in_thread": "headwater._connector",
    "atomic_state_options": "headwater._connector",
    "forget_after_fork": "headwater._fork",
    "check_keyset_state": "headwater._keyset",
    "safe_destination": "headwater._files",
    "loads_json": "headwater._json",
    "is_loopback": "headwater._net",
    "ConnectorRef": "headwater._plugins",
    "PluginInfo": "headwater._plugins",
    "Registry": "headwater._plugins",
    "connect": "headwater._plugins",
    "get_plugin_manager": "headwater._plugins",
    "get_registry": "headwater._plugins",
    "set_registry": "headwater._plugins",
    "RedactingFilter": "headwater._redact",
    "redact": "headwater._redact",
    "get_logger": "headwater._redact",
    "register_secret": "headwater._redact",
    "is_credential_name": "headwater._redact",
    "CircuitBreaker": "headwater._retry",
    "RetryPolicy": "headwater._retry",
    "parse_retry_after": "headwater._retry",
    "is_retryable": "headwater._retry",
    "error_for_status": "headwater._retry",
    "breaker_for": "headwater._retry",
    "CredentialResolver": "headwater._secrets",
    "Secret": "headwater._secrets",
    "Source": "headwater._sources",
    "SourceRegistry": "headwater._sources",
    "default_sources_path": "headwater._sources",
    "MemorySourceStore": "headwater._store",
    "SourceStore": "headwater._store",
    "TomlSourceStore": "headwater._store",
    "API_VERSION": "headwater._version",
    "AlreadyExists": "headwater.errors",
    "AuthFailed": "headwater.errors",
    "Category": "headwater.errors",
    "CircuitOpen": "headwater.errors",
    "ConfigError": "headwater.errors",
    "ConnectionFailed": "headwater.errors",
    "ConnectorError": "headwater.errors",
    "CredentialError": "headwater.errors",
    "DuplicateConnector": "headwater.errors",
    "HeadwaterError": "headwater.errors",
    "IntegrityError": "headwater.errors",
    "KeyringUnavailable": "headwater.errors",
    "NotFound": "headwater.errors",
    "NotSupported": "headwater.errors",
    "PermissionDenied": "headwater.errors",
    "PluginError": "headwater.errors",
    "PluginIncompatible": "headwater.errors",
    "PluginLoadError": "headwater.errors",
    "RateLimited": "headwater.errors",
    "ServerError": "headwater.errors",
    "SourceError": "headwater.errors",
    "TLSFailure": "headwater.errors",
    "UnknownConnector": "headwater.errors",
    "UnsafePath": "headwater.errors",
    "hookimpl": "headwater.hookspecs",
    "hookspec": "headwater.hookspecs",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from headwater._version import __version__

        return __version__
    if name in ("errors", "formats"):
        return importlib.import_module(f"headwater.{name}")
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    if isinstance(value, type) and value.__module__.startswith("headwater._"):
        # Tracebacks and reprs read `headwater.Connector`, not `headwater._connector...`.
        value.__module__ = __name__
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

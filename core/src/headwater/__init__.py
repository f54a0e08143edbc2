"""
headwater: data-source connectors as plugins.

This module is the API for *using* connectors: `connect`, `open_source`, `copy` / `acopy`,
`SourceRegistry` and its stores, `store_secret` / `delete_secret` (the keyring and the
encrypted store), the DataFrame hand-off (`to_arrow`, `to_pandas`, `to_polars`,
`record_batch_reader`, and the async `ato_*`), the batch and result types, the errors,
and the plugin registry with its health report (`diagnose`). What plugin authors build
connectors from is `headwater.toolkit`; `headwater.formats` holds the record formats,
`headwater.testing` the contract suite.
Everything in underscored modules is private.

Names are imported on first access (PEP 562, `headwater._lazy`), so ``import headwater``
stays cheap and the CLI starts fast: ``headwater connectors`` must not pay for pydantic
or any SDK. Names that moved to `headwater.toolkit` still resolve here, with a
DeprecationWarning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from headwater._lazy import lazy_exports

if TYPE_CHECKING:
    from headwater._connector import Batch as Batch
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
    from headwater._copy import CopyResult as CopyResult
    from headwater._copy import acopy as acopy
    from headwater._copy import copy as copy
    from headwater._copy import open_source as open_source
    from headwater._doctor import Diagnosis as Diagnosis
    from headwater._doctor import diagnose as diagnose
    from headwater._encrypted import EncryptedSecrets as EncryptedSecrets
    from headwater._frames import ato_arrow as ato_arrow
    from headwater._frames import ato_pandas as ato_pandas
    from headwater._frames import ato_polars as ato_polars
    from headwater._frames import record_batch_reader as record_batch_reader
    from headwater._frames import to_arrow as to_arrow
    from headwater._frames import to_pandas as to_pandas
    from headwater._frames import to_polars as to_polars
    from headwater._plugins import ConnectorRef as ConnectorRef
    from headwater._plugins import PluginInfo as PluginInfo
    from headwater._plugins import Registry as Registry
    from headwater._plugins import connect as connect
    from headwater._plugins import get_plugin_manager as get_plugin_manager
    from headwater._plugins import get_registry as get_registry
    from headwater._plugins import set_registry as set_registry
    from headwater._secret_store import delete_secret as delete_secret
    from headwater._secret_store import store_secret as store_secret
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

#: public name -> the module that defines it
_HOMES: dict[str, str] = {
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
    "acopy": "headwater._copy",
    "copy": "headwater._copy",
    "open_source": "headwater._copy",
    "Diagnosis": "headwater._doctor",
    "diagnose": "headwater._doctor",
    "EncryptedSecrets": "headwater._encrypted",
    "ato_arrow": "headwater._frames",
    "ato_pandas": "headwater._frames",
    "ato_polars": "headwater._frames",
    "record_batch_reader": "headwater._frames",
    "to_arrow": "headwater._frames",
    "to_pandas": "headwater._frames",
    "to_polars": "headwater._frames",
    "ConnectorRef": "headwater._plugins",
    "PluginInfo": "headwater._plugins",
    "Registry": "headwater._plugins",
    "connect": "headwater._plugins",
    "get_plugin_manager": "headwater._plugins",
    "get_registry": "headwater._plugins",
    "set_registry": "headwater._plugins",
    "delete_secret": "headwater._secret_store",
    "store_secret": "headwater._secret_store",
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
    "errors": "headwater.errors",
    "formats": "headwater.formats",
    "__version__": "headwater._version",
}

#: Author plumbing that was exported here before `headwater.toolkit` existed.
_MOVED_TO_TOOLKIT: tuple[str, ...] = (
    "CircuitBreaker",
    "CredentialResolver",
    "RedactingFilter",
    "RetryPolicy",
    "atomic_file",
    "atomic_state_options",
    "breaker_for",
    "check_keyset_state",
    "error_for_status",
    "forget_after_fork",
    "get_logger",
    "is_credential_name",
    "is_loopback",
    "is_retryable",
    "iterate_in_thread",
    "loads_json",
    "parse_retry_after",
    "redact",
    "register_secret",
    "safe_destination",
)

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    _HOMES,
    globals(),
    moved=dict.fromkeys(_MOVED_TO_TOOLKIT, "headwater.toolkit"),
)

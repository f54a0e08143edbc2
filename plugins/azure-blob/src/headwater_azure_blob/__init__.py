"""
headwater-azure-blob: the Azure Blob Storage connector for headwater.

``from headwater_azure_blob import AzureBlobConnector, AzureBlobConfig``. The names are
imported on first access (PEP 562): the entry point (``headwater_azure_blob.hooks``)
imports this package, and listing plugins must not pay for pydantic or the Azure SDK.
The SDK itself is imported only when a connection is made.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from headwater_azure_blob.__about__ import __version__

if TYPE_CHECKING:
    from headwater_azure_blob._config import AzureBlobConfig as AzureBlobConfig
    from headwater_azure_blob._connector import AzureBlobConnector as AzureBlobConnector
    from headwater_azure_blob._flows import UploadResult as UploadResult

__all__ = ["AzureBlobConfig", "AzureBlobConnector", "UploadResult", "__version__"]

_LAZY = {
    "AzureBlobConfig": "headwater_azure_blob._config",
    "AzureBlobConnector": "headwater_azure_blob._connector",
    "UploadResult": "headwater_azure_blob._flows",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

"""
headwater-azure-blob: the Azure Blob Storage connector for headwater.

``from headwater_azure_blob import AzureBlobConnector, AzureBlobConfig``. The names are
imported on first access (PEP 562): the entry point (``headwater_azure_blob.hooks``)
imports this package, and listing plugins must not pay for pydantic or the Azure SDK.
The SDK itself is imported only when a connection is made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from headwater.toolkit import lazy_exports
from headwater_azure_blob.__about__ import __version__ as __version__

if TYPE_CHECKING:
    from headwater_azure_blob._config import AzureBlobConfig as AzureBlobConfig
    from headwater_azure_blob._connector import AzureBlobConnector as AzureBlobConnector
    from headwater_azure_blob._flows import UploadResult as UploadResult

#: public name -> the module that defines it (imported on first access)
_HOMES = {
    "AzureBlobConfig": "headwater_azure_blob._config",
    "AzureBlobConnector": "headwater_azure_blob._connector",
    "UploadResult": "headwater_azure_blob._flows",
    "__version__": "headwater_azure_blob.__about__",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals())

"""
Hooks of the ``azure-blob`` connector.

Only hook implementations live here, and the connector is named by import path, so
listing plugins or connectors never imports the Azure SDK (nor pydantic).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from headwater import ConnectorRef, hookimpl

#: Hosts of Azure blob endpoints (public and sovereign clouds); kept here, not imported
#: from the config module, so answering ``connector_for_url`` stays import-free.
_BLOB_HOST: Final = re.compile(
    r"^https://[a-z0-9]{3,24}\.blob\.core\.(?:windows\.net|chinacloudapi\.cn"
    r"|usgovcloudapi\.net|cloudapi\.de)(?::\d+)?(?:[/?#]|$)",
    re.IGNORECASE,
)


@hookimpl
def register_connectors() -> Sequence[ConnectorRef]:
    """The ``azure-blob`` connector (immutable id)."""
    return [
        ConnectorRef(
            "azure-blob",
            "headwater_azure_blob._connector:AzureBlobConnector",
            summary="Azure Blob Storage: verified atomic downloads, block uploads, resumable reads",
        )
    ]


# tryfirst: a generic https:// connector (REST) must not win Azure blob endpoints.
@hookimpl(tryfirst=True)
def connector_for_url(url: str) -> str | None:
    """Claim ``az://CONTAINER/PATH`` and ``https://ACCOUNT.blob.core.windows.net/...``."""
    if url[:5].lower() == "az://" or _BLOB_HOST.match(url):
        return "azure-blob"
    return None

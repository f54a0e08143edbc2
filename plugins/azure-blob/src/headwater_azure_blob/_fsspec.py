"""
``AzureBlobConnector.filesystem()``: an fsspec filesystem for the configured source, on
adlfs (``pip install 'headwater-azure-blob[fsspec]'``).

The credential is the source's, resolved by headwater (secret references, ``env:``,
``keyring:``, ...), and handed to adlfs explicitly: as a connection string built from it
(account key, SAS, or the configured connection string), or as the identity credential
object. A connection string wins over everything adlfs would otherwise read from the
environment (``AZURE_STORAGE_*``), so the filesystem never silently uses other
credentials than the source's.

The filesystem is rooted at the source's container and prefix (fsspec's
``DirFileSystem``): paths are named as the connector names blobs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from headwater import ConfigError

if TYPE_CHECKING:
    from headwater_azure_blob._config import AzureBlobConfig


def build_filesystem(config: AzureBlobConfig, secret: Callable[[str], str]) -> Any:
    """The rooted adlfs filesystem of ``config``; ``secret`` resolves a secret field now."""
    try:
        from adlfs import AzureBlobFileSystem  # type: ignore[import-untyped]
        from fsspec.implementations.dirfs import DirFileSystem  # type: ignore[import-untyped]
    except ImportError:
        raise ConfigError(
            "filesystem() needs adlfs",
            hint="pip install 'headwater-azure-blob[fsspec]'",
        ) from None
    from headwater_azure_blob._clients import (
        _connection_string,
        _endpoint_credential,
        _malformed_connection_string,
        protect_sdk_logs,
        refuse_plain_http,
    )

    protect_sdk_logs()
    options: dict[str, Any] = {
        # Not in fsspec's instance cache: that cache is global and keyed by the
        # arguments, the credential among them; each call gets its own filesystem.
        "skip_instance_cache": True,
        "connection_timeout": math.ceil(config.connect_timeout),
        "read_timeout": math.ceil(config.read_timeout),
    }
    if config.connection_string is not None:
        from azure.storage.blob import BlobServiceClient

        value = _connection_string(secret)
        with _malformed_connection_string():
            # Parsed by the SDK (no request) for the endpoint it names.
            endpoint = BlobServiceClient.from_connection_string(value).url
        refuse_plain_http(endpoint, config)
        options["connection_string"] = value
    else:
        endpoint, credential = _endpoint_credential(config, secret, aio=True)
        refuse_plain_http(endpoint, config)
        endpoint = endpoint.rstrip("/")
        if isinstance(credential, dict):  # account key
            scheme = urlsplit(endpoint).scheme
            options["connection_string"] = (
                f"DefaultEndpointsProtocol={scheme};AccountName={credential['account_name']};"
                f"AccountKey={credential['account_key']};BlobEndpoint={endpoint};"
            )
        elif config.sas_token is not None:
            options["connection_string"] = (
                f"BlobEndpoint={endpoint};SharedAccessSignature={secret('sas_token').lstrip('?')}"
            )
        else:  # an identity: adlfs takes the (aio) credential object and the host
            parts = urlsplit(endpoint)
            options.update(
                account_name=config.resolved_account_name,
                account_host=(parts.netloc + parts.path).rstrip("/"),
                credential=credential,
            )
    filesystem = AzureBlobFileSystem(**options)
    if "connection_string" not in options and filesystem.connection_string is not None:
        # adlfs took AZURE_STORAGE_CONNECTION_STRING from the environment over the
        # identity given: connect again with the identity only.
        filesystem.connection_string = None
        filesystem.do_connect()
    root = f"{config.container}/{config.prefix}".rstrip("/")
    return DirFileSystem(root, filesystem, skip_instance_cache=True)

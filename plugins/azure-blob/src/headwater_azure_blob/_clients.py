"""
Building Azure SDK clients from a config: one function for both twins.

Everything here runs at connect time; the SDK is imported inside the functions so
importing the connector costs nothing.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from headwater import ConfigError
from headwater.toolkit import get_logger, is_loopback, register_secret
from headwater_azure_blob._config import AzureBlobConfig

if TYPE_CHECKING:
    from azure.storage.blob import BlobServiceClient
    from azure.storage.blob.aio import BlobServiceClient as AsyncBlobServiceClient

#: The SDK loggers that may log request details: give them the redacting filter too.
_AZURE_LOGGERS: Final = (
    "azure",
    "azure.core.pipeline.policies.http_logging_policy",
    "azure.storage.blob",
    "azure.storage.blob._shared.response_handlers",
    "azure.identity",
    # Transports: urllib3 logs full request URLs (a SAS signature among them) at DEBUG.
    "urllib3.connectionpool",
    "aiohttp.client",
)
#: Parts of a connection string that are credentials.
_CS_SECRETS: Final = re.compile(
    r"(?:^|;)\s*(?:AccountKey|SharedAccessSignature)\s*=\s*([^;]+)", re.I
)


def protect_sdk_logs() -> None:
    """Attach headwater's redacting filter to the Azure SDK's loggers."""
    for name in _AZURE_LOGGERS:
        get_logger(name)


def client_options(config: AzureBlobConfig, *, aio: bool) -> dict[str, Any]:
    """Keyword arguments for a (sync or aio) ``BlobServiceClient``."""
    options: dict[str, Any] = {
        "connection_timeout": config.connect_timeout,
        "read_timeout": config.read_timeout,
        "retry_policy": _retry_policy(config, aio=aio),
        "max_single_get_size": config.chunk_size,
        "max_chunk_get_size": config.chunk_size,
        "max_block_size": config.block_size,
        "max_single_put_size": config.block_size,
    }
    if config.api_version:
        options["api_version"] = config.api_version
    return options


def _retry_policy(config: AzureBlobConfig, *, aio: bool) -> Any:
    """The SDK's retry policy, built from the config's ``retry`` settings (see `_sdk_retry`)."""
    from headwater_azure_blob._sdk_retry import sdk_retry_policy

    return sdk_retry_policy(config.retry.policy(), aio=aio)


def build_sync_service(config: AzureBlobConfig, secret: Callable[[str], str]) -> BlobServiceClient:
    """The sync service client; ``secret`` resolves a secret field now (``Connector.secret``)."""
    from azure.storage.blob import BlobServiceClient

    service: BlobServiceClient = _build_service(BlobServiceClient, config, secret, aio=False)[0]
    return service


def build_async_service(
    config: AzureBlobConfig, secret: Callable[[str], str]
) -> tuple[AsyncBlobServiceClient, Any]:
    """The aio service client and the aio credential to close with it (``None`` if none)."""
    from azure.storage.blob.aio import BlobServiceClient as AsyncBlobServiceClient

    service, credential = _build_service(AsyncBlobServiceClient, config, secret, aio=True)
    return service, credential if config.identity is not None else None


def _build_service(
    client: Any, config: AzureBlobConfig, secret: Callable[[str], str], *, aio: bool
) -> tuple[Any, Any]:
    """A service client of class ``client`` (sync or aio) and its credential object."""
    protect_sdk_logs()
    options = client_options(config, aio=aio)
    if config.connection_string is not None:
        value = _connection_string(secret)
        with _malformed_connection_string():
            service = client.from_connection_string(value, **options)
        # Checked before any request: the aio client opens its session on first use, so
        # a refused client holds nothing to close.
        refuse_plain_http(service.url, config)
        return service, None
    endpoint, credential = _endpoint_credential(config, secret, aio=aio)
    refuse_plain_http(endpoint, config)
    return client(endpoint, credential=credential, **options), credential


def refuse_plain_http(endpoint: str, config: AzureBlobConfig) -> None:
    """
    Refuse an ``http://`` endpoint that is not on this machine: an account key signs
    requests but a SAS token (and the data) would cross the network in the clear.
    Loopback stays allowed, for Azurite.
    """
    parts = urlsplit(endpoint)
    if parts.scheme.lower() != "http" or is_loopback(parts.hostname):
        return
    if config.identity is not None:
        field = "identity"
    else:
        field = "connection_string" if config.connection_string is not None else "account_url"
    raise ConfigError(
        f"refusing to send credentials over plain http to {parts.hostname}",
        field=field,
        hint="use https (plain http is allowed only to localhost / 127.0.0.1, for Azurite)",
    )


def _connection_string(secret: Callable[[str], str]) -> str:
    value = secret("connection_string")
    # The whole string is registered for redaction; so are the credentials inside it,
    # which a driver could echo on their own.
    for match in _CS_SECRETS.finditer(value):
        register_secret(match.group(1).strip())
        _register_signature(match.group(1).strip())
    key = re.search(r"(?:^|;)\s*AccountKey\s*=\s*([^;]+)", value, re.I)
    if key is not None:
        _check_key(key.group(1).strip(), "connection_string", "its AccountKey")
    return value


def _check_key(key: str, field: str, what: str) -> str:
    """
    An account key is base64 (64 bytes, 88 characters): anything else is refused here,
    naming the field. The SDK would only fail when signing the first request, with an
    error that reads like an Azure AD token failure.
    """
    import base64
    import binascii

    try:
        decoded = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if not decoded:
        raise ConfigError(
            f"{what} is not a storage account key: not valid base64",
            field=field,
            hint="copy the key from the portal's Access keys (88 characters ending in ==), "
            "or use sas_token / identity",
        )
    return key


@contextlib.contextmanager
def _malformed_connection_string() -> Iterator[None]:
    try:
        yield
    except ValueError:
        raise ConfigError(
            "connection_string is malformed (expected "
            "'DefaultEndpointsProtocol=...;AccountName=...;AccountKey=...' or a BlobEndpoint)",
            field="connection_string",
        ) from None


def _endpoint_credential(
    config: AzureBlobConfig, secret: Callable[[str], str], *, aio: bool
) -> tuple[str, Any]:
    endpoint = config.endpoint
    assert endpoint is not None  # the config validator guarantees it without a connection string
    if config.account_key is not None:
        return endpoint, {
            "account_name": config.resolved_account_name,
            "account_key": _check_key(secret("account_key"), "account_key", "account_key"),
        }
    if config.sas_token is not None:
        from azure.core.credentials import AzureSasCredential

        token = secret("sas_token").lstrip("?")
        _register_signature(token)
        return endpoint, AzureSasCredential(token)
    return endpoint, _identity_credential(config, secret, aio=aio)


def _register_signature(token: str) -> None:
    """Register the SAS signature also as it appears percent-encoded in request URLs."""
    from urllib.parse import parse_qs, quote

    for signature in parse_qs(token).get("sig", []):
        for form in (signature, quote(signature, safe=""), quote(signature, safe="/")):
            register_secret(form)


def _identity_credential(
    config: AzureBlobConfig, secret: Callable[[str], str], *, aio: bool
) -> Any:
    import importlib

    try:
        # One name for either module: the sync and aio credentials share their names.
        identity: Any = importlib.import_module("azure.identity.aio" if aio else "azure.identity")
    except ImportError:
        raise ConfigError(
            f"identity={config.identity!r} needs azure-identity",
            field="identity",
            hint="pip install 'headwater-azure-blob[identity]'",
        ) from None
    kind = config.identity
    if kind == "managed_identity":
        return identity.ManagedIdentityCredential(client_id=config.client_id)
    if kind == "client_secret":
        return identity.ClientSecretCredential(
            config.tenant_id, config.client_id, secret("client_secret")
        )
    if kind == "azure_cli":
        return identity.AzureCliCredential()
    return identity.DefaultAzureCredential()


def endpoint_for_display(url: str) -> str:
    """A client URL without its query string (a SAS may be there)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")

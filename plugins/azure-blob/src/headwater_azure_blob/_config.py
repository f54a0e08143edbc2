"""
The configuration of the ``azure-blob`` connector, and how a URL becomes one.

Authentication is exactly one of: a connection string; an account key; a SAS token; an
azure-identity credential (the ``identity`` extra). Except with a connection string, the
account is named by ``account_url`` (any endpoint: Azure, a sovereign cloud, Azurite)
or by ``account_name`` (then ``https://NAME.blob.<endpoint_suffix>``).

Every secret accepts headwater's secret references (``env:``, ``file:``, ``keyring:``, a
callable in Python); nothing is resolved until a connection is made.
"""

from __future__ import annotations

import codecs
import os
import re
import warnings
from collections.abc import Mapping
from typing import Any, Final, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from headwater import ConfigError, ConnectorConfig, Secret
from headwater.toolkit import BreakerSettings, RetrySettings

#: Auth fields, exactly one of which must be set.
AUTH_FIELDS: Final = ("connection_string", "account_key", "sas_token", "identity")

#: Azure container names: 3-63 lowercase letters, digits and single hyphens, plus the
#: two special containers.
_CONTAINER: Final = re.compile(r"^(?:\$root|\$web|[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62})$")
_ACCOUNT: Final = re.compile(r"^[a-z0-9]{3,24}$")
#: ``ACCOUNT.blob.core.windows.net`` and the sovereign clouds' equivalents.
BLOB_HOST: Final = re.compile(
    r"^(?P<account>[a-z0-9]{3,24})\.blob\.(?P<suffix>core\.windows\.net|core\.chinacloudapi\.cn"
    r"|core\.usgovcloudapi\.net|core\.cloudapi\.de)$",
    re.IGNORECASE,
)
_SAS_TOKEN_ENV: Final = "AZURE_STORAGE_SAS_TOKEN"  # noqa: S105  an environment variable's name

IdentityKind = Literal["default", "managed_identity", "client_secret", "azure_cli"]

MiB: Final = 1024 * 1024


class BlobRetrySettings(RetrySettings):
    """
    The shared retry settings with the blob connector's defaults: four tries per request,
    and a jitter of a quarter second. They drive the SDK's retries of each request and the
    resumes of an interrupted download.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, title="RetrySettings")

    attempts: int = Field(
        default=4,
        ge=1,
        description="Tries per call, the first included; also how many times in a row an "
        "interrupted download is resumed without progress.",
    )
    jitter: float = Field(
        default=0.25, ge=0, description="Random extra back-off, up to this many seconds."
    )


#: Fields of earlier releases, what replaced them, and how their value maps.
_RENAMED: Final = {
    "retries": ("retry.attempts", "attempts"),
    "retry_backoff": ("retry.initial", "initial"),
}


class AzureBlobConfig(ConnectorConfig):
    """
    Configuration of the ``azure-blob`` connector.

    Example (Azurite)::

        {"account_url": "http://127.0.0.1:10000/devstoreaccount1",
         "account_key": "env:AZURE_STORAGE_KEY", "container": "data", "prefix": "exports/"}
    """

    # --- where ---------------------------------------------------------------------------
    account_url: str | None = Field(
        default=None,
        description="Blob endpoint of the storage account, e.g. "
        "https://ACCOUNT.blob.core.windows.net, a sovereign cloud's endpoint, or Azurite's "
        "http://127.0.0.1:10000/devstoreaccount1. No query string: put a SAS in sas_token.",
    )
    account_name: str | None = Field(
        default=None,
        description="Storage account name. Derived from account_url when omitted; without "
        "account_url the endpoint is https://ACCOUNT.blob.<endpoint_suffix>.",
    )
    endpoint_suffix: str = Field(
        default="core.windows.net",
        description="DNS suffix used with account_name alone (core.chinacloudapi.cn, "
        "core.usgovcloudapi.net, ...).",
    )
    container: str = Field(description="Blob container holding the data.")
    prefix: str = Field(
        default="",
        description="Root of this source inside the container (a virtual directory such as "
        "'exports/2024/'); every name the connector takes or returns is relative to it.",
    )

    # --- auth: exactly one ---------------------------------------------------------------
    connection_string: Secret | None = Field(
        default=None,
        description="Storage connection string (it holds the key or SAS, so it is a secret).",
    )
    account_key: Secret | None = Field(default=None, description="Storage account access key.")
    sas_token: Secret | None = Field(
        default=None, description="Shared access signature (with or without the leading '?')."
    )
    identity: IdentityKind | None = Field(
        default=None,
        description="Use an azure-identity credential (needs the 'identity' extra): "
        "'default' (DefaultAzureCredential), 'managed_identity', 'client_secret' (service "
        "principal: tenant_id, client_id, client_secret) or 'azure_cli'.",
    )
    tenant_id: str | None = Field(
        default=None, description="Microsoft Entra tenant of the service principal."
    )
    client_id: str | None = Field(
        default=None,
        description="Client id of the service principal or user-assigned managed identity.",
    )
    client_secret: Secret | None = Field(
        default=None, description="Secret of the service principal (identity='client_secret')."
    )

    # --- transfers ------------------------------------------------------------------------
    max_concurrency: int = Field(
        default=4, ge=1, le=32, description="Parallel connections per upload or download."
    )
    block_size: int = Field(
        default=8 * MiB,
        ge=64 * 1024,
        le=4000 * MiB,
        description="Upload block size in bytes; a source smaller than this is sent in "
        "one request up to 1 MiB, and as one block and a commit above.",
    )
    chunk_size: int = Field(
        default=4 * MiB,
        ge=64 * 1024,
        le=256 * MiB,
        description="Download range size in bytes (the unit of parallelism and of resume).",
    )
    list_page_size: int = Field(
        default=5000, ge=1, le=5000, description="Blobs per listing page (Azure's maximum: 5000)."
    )
    connect_timeout: float = Field(
        default=20.0, gt=0, description="Seconds to establish a connection."
    )
    read_timeout: float = Field(
        default=60.0, gt=0, description="Seconds to wait for data on an open connection."
    )
    retry: BlobRetrySettings = Field(
        default_factory=BlobRetrySettings,
        description="Retries of every request (the Azure SDK's retry policy is built from "
        "these), and resumes of an interrupted download that made no progress since the "
        "last one (progress starts the count again).",
    )
    breaker: BreakerSettings = Field(
        default_factory=BreakerSettings,
        description="Circuit breaker of the account's blob endpoint, shared in the process: "
        "after this many requests in a row fail transiently (SDK retries spent), requests "
        "fail at once until the reset timeout has passed.",
    )
    api_version: str | None = Field(
        default=None,
        description="Storage service API version to send (for emulators or older endpoints); "
        "the SDK's own when omitted.",
    )

    # --- records -----------------------------------------------------------------------
    batch_size: int = Field(
        default=1000,
        ge=1,
        le=1_000_000,
        description="Records per batch unless read() is given one.",
    )
    delimiter: str = Field(
        default=",",
        min_length=1,
        max_length=1,
        description="CSV field delimiter (when not set: ',', and a tab for .tsv blobs).",
    )
    encoding: str = Field(
        default="utf-8", description="Text encoding of CSV/JSON Lines blobs (ASCII-compatible)."
    )
    null_string: str = Field(
        default="",
        description="CSV: the unquoted text that means NULL (the same text quoted is a "
        "string). The default, the empty field, is PostgreSQL's CSV convention: NULL is an "
        'empty field, the empty string is "".',
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed_retry_fields(cls, data: Any) -> Any:
        """
        ``retries`` and ``retry_backoff``, the fields of earlier releases, are read as
        ``retry.attempts = retries + 1`` and ``retry.initial = retry_backoff``, with a
        `DeprecationWarning` naming the new field; one setting given in both forms is a
        `ConfigError`.
        """
        if not isinstance(data, Mapping) or not any(name in data for name in _RENAMED):
            return data
        data = dict(data)
        given = data.get("retry")
        if isinstance(given, BaseModel):
            retry = given.model_dump(exclude_unset=True)
        elif isinstance(given, Mapping):
            retry = dict(given)
        elif given is None:
            retry = {}
        else:
            return data  # not a mapping: the field's own validation reports it
        for old, (new, key) in _RENAMED.items():
            if old not in data:
                continue
            value = data.pop(old)
            if key in retry:
                raise ConfigError(
                    f"{old} and {new} are one setting given twice",
                    field=old,
                    hint=f"drop {old} (deprecated) and keep {new}",
                )
            retry[key] = _renamed_value(old, value)
            warnings.warn(
                f"azure-blob: the config field {old!r} is deprecated; use {new!r} instead"
                + (" (= retries + 1: the first try counts)" if old == "retries" else ""),
                DeprecationWarning,
                stacklevel=2,
            )
        data["retry"] = retry
        return data

    @field_validator("container")
    @classmethod
    def _container_name(cls, value: str) -> str:
        if not _CONTAINER.match(value):
            # The value is not repeated: a misplaced secret must not travel in the error.
            raise ValueError(
                f"not a valid container name ({len(value)} characters given; 3-63 lowercase "
                "letters, digits and single hyphens, starting and ending with a letter or digit)"
            )
        return value

    @field_validator("account_name")
    @classmethod
    def _account_name(cls, value: str | None) -> str | None:
        if value is not None and not _ACCOUNT.match(value):
            raise ValueError(f"{value!r} is not a valid storage account name")
        return value

    @field_validator("account_url")
    @classmethod
    def _account_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("account_url must be an http(s) URL with a host")
        if parts.query or parts.fragment:
            # A SAS in the URL would be stored and shown like any other config value.
            raise ValueError("account_url must not carry a query string; put a SAS in sas_token")
        if parts.username or parts.password:
            raise ValueError("account_url must not carry credentials")
        return value.rstrip("/")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.lstrip("/")
        return value if not value or value.endswith("/") else value + "/"

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        # Record boundaries are found on bytes ('\n', '"'), which needs ASCII compatibility.
        if '\n",'.encode(value, errors="replace") != b'\n",':
            raise ValueError(
                f"encoding {value!r} is not ASCII-compatible (use utf-8, latin-1, ...)"
            )
        return value

    @model_validator(mode="after")
    def _one_auth(self) -> AzureBlobConfig:
        given = [name for name in AUTH_FIELDS if getattr(self, name) is not None]
        if len(given) != 1:
            which = f"got {', '.join(given)}" if given else "got none"
            raise ValueError(
                f"give exactly one of connection_string, account_key, sas_token, identity ({which})"
            )
        if self.connection_string is not None:
            if self.account_url is not None or self.account_name is not None:
                raise ValueError(
                    "connection_string already names the account: drop account_url/account_name"
                )
        elif self.account_url is None and self.account_name is None:
            raise ValueError("account_url or account_name is required (unless connection_string)")
        if self.account_key is not None and self.resolved_account_name is None:
            raise ValueError(
                "account_key needs the account name: set account_name (it cannot be "
                "derived from this account_url)"
            )
        sp_fields = [f for f in ("tenant_id", "client_secret") if getattr(self, f) is not None]
        if self.identity != "client_secret" and sp_fields:
            raise ValueError(f"{', '.join(sp_fields)} only apply with identity='client_secret'")
        if self.identity == "client_secret" and not (
            self.tenant_id and self.client_id and self.client_secret is not None
        ):
            raise ValueError("identity='client_secret' needs tenant_id, client_id, client_secret")
        if self.client_id is not None and self.identity not in (
            "client_secret",
            "managed_identity",
        ):
            raise ValueError(
                "client_id only applies with identity='client_secret' or 'managed_identity'"
            )
        return self

    # --- derived values ----------------------------------------------------------------

    @property
    def auth_field(self) -> str:
        """The config field holding the credential in use (for error reports)."""
        return next(name for name in AUTH_FIELDS if getattr(self, name) is not None)

    @property
    def endpoint(self) -> str | None:
        """The account's blob endpoint (``None`` with a connection string, which holds it)."""
        if self.account_url is not None:
            return self.account_url
        if self.account_name is not None:
            return f"https://{self.account_name}.blob.{self.endpoint_suffix}"
        return None

    @property
    def resolved_account_name(self) -> str | None:
        """The account name: given, or read from the endpoint's host or (emulator) path."""
        if self.account_name is not None:
            return self.account_name
        if self.account_url is None:
            return None
        return account_from_url(self.account_url)


def _renamed_value(old: str, value: Any) -> float:
    """The ``retry`` value of deprecated field ``old`` (``retries`` counts retries only)."""
    number: float
    try:
        if isinstance(value, bool):
            raise ValueError
        number = int(value) if old == "retries" else float(value)
    except (TypeError, ValueError):
        number = -1
    if number < 0:
        new = _RENAMED[old][0]
        raise ConfigError(
            f"{old} must be a number >= 0",
            field=old,
            hint=f"{old} is deprecated: give {new} instead"
            + (" (retries + 1)" if old == "retries" else ""),
        )
    return number + 1 if old == "retries" else number


def account_from_url(url: str) -> str | None:
    """
    The account in a blob endpoint URL.

    ``https://NAME.blob.core.windows.net`` → ``NAME``; an IP or ``localhost`` endpoint
    (Azurite's ``http://127.0.0.1:10000/devstoreaccount1``) carries it as first path segment.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    match = BLOB_HOST.match(host)
    if match:
        return match["account"].lower()
    first = parts.path.strip("/").split("/", 1)[0]
    if first and (host == "localhost" or re.fullmatch(r"[\d.]+|\[?[0-9a-fA-F:]+\]?", host)):
        return first
    # Private-link and DNS-zone endpoints (acct.privatelink.blob..., acct.z12.blob...).
    label = host.split(".", 1)[0].lower()
    return label if ".blob." in host.lower() and _ACCOUNT.match(label) else None


def config_from_url(
    url: str, overrides: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """
    The config mapping for ``url`` (before validation), with ``overrides`` applied.

    ``az://CONTAINER/PATH`` takes the account from the overrides or from the environment
    (``AZURE_STORAGE_CONNECTION_STRING`` or ``AZURE_STORAGE_ACCOUNT``);
    ``https://ACCOUNT.blob.core.windows.net/CONTAINER/PATH[?SAS]`` names it itself.
    PATH becomes ``prefix``. Without explicit auth, the credential comes from the
    environment as a *reference* (``env:AZURE_STORAGE_KEY``, resolved at connect time),
    and falls back to ``identity='default'``.
    """
    env = os.environ if environ is None else environ
    parts = urlsplit(url)
    data: dict[str, Any] = {}
    scheme = parts.scheme.lower()
    if scheme == "az":
        container = parts.netloc
        path = parts.path
        if parts.query:
            raise ConfigError(
                "az:// URLs take no query string; pass credentials in the config",
                field="sas_token",
            )
    elif scheme == "https" and BLOB_HOST.match(parts.hostname or ""):
        data["account_url"] = f"https://{parts.netloc}"
        container, _, path = parts.path.lstrip("/").partition("/")
        if parts.query:
            # A SAS URL: the query is the token (a literal secret the caller handed us).
            data["sas_token"] = Secret.literal_value(parts.query)
    else:
        raise ConfigError(
            f"not an Azure blob URL: {_url_for_message(url)}",
            hint="use az://CONTAINER/PATH or https://ACCOUNT.blob.core.windows.net/CONTAINER/PATH",
        )
    if not container:
        raise ConfigError(f"no container in {_url_for_message(url)}", field="container")
    data["container"] = unquote(container)
    data["prefix"] = unquote(path.lstrip("/"))
    data.update(overrides)
    has_auth = any(data.get(name) is not None for name in AUTH_FIELDS)
    # A connection string names the account itself.
    has_account = any(
        data.get(name) is not None for name in ("account_url", "account_name", "connection_string")
    )
    if not has_account and not has_auth and env.get("AZURE_STORAGE_CONNECTION_STRING"):
        data["connection_string"] = "env:AZURE_STORAGE_CONNECTION_STRING"
        return data
    if not has_account:
        account = env.get("AZURE_STORAGE_ACCOUNT")
        if not account:
            raise ConfigError(
                f"no storage account for {_url_for_message(url)}",
                field="account_name",
                hint="set account_name/account_url in the config, or AZURE_STORAGE_ACCOUNT "
                "(or AZURE_STORAGE_CONNECTION_STRING) in the environment",
            )
        data["account_name"] = account
    if not has_auth:
        if env.get("AZURE_STORAGE_KEY"):
            data["account_key"] = "env:AZURE_STORAGE_KEY"
        elif env.get(_SAS_TOKEN_ENV):
            data["sas_token"] = f"env:{_SAS_TOKEN_ENV}"
        else:
            data["identity"] = "default"
    return data


def _url_for_message(url: str) -> str:
    """The URL without its query string (a SAS lives there)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"

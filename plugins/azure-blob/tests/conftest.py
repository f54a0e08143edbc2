"""
Fixtures for the azure-blob tests: a fresh container per test on the session's Azurite,
and `Twin`, which runs one test body against the sync or the async API.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from headwater import Batch, CheckResult, FetchResult, Item, WriteResult
from headwater.toolkit import reset_breakers
from headwater_azure_blob import AzureBlobConnector
from headwater_azure_blob._connector import UploadResult

#: The tests' retry settings: short waits (override ``attempts`` with ``{**QUICK_RETRY, ...}``).
QUICK_RETRY = {"initial": 0.05, "jitter": 0.05}


@pytest.fixture(autouse=True)
def _fresh_breakers() -> Iterator[None]:
    """Every test starts with closed breakers: one test's dead endpoint never refuses another's."""
    reset_breakers()
    yield
    reset_breakers()


class Twin:
    """One connector driven through its sync or its async API, with the same calls."""

    def __init__(self, mode: str, connector: AzureBlobConnector) -> None:
        self.mode = mode
        self.connector = connector

    @property
    def is_async(self) -> bool:
        return self.mode == "async"

    async def check(self) -> CheckResult:
        if self.is_async:
            return await self.connector.acheck()
        return self.connector.check()

    async def list(self, path: str | None = None, **options: Any) -> list[Item]:
        if self.is_async:
            return [item async for item in self.connector.alist(path, **options)]
        return list(self.connector.list(path, **options))

    async def read(self, stream: str, state: dict | None = None, **options: Any) -> list[Batch]:
        if self.is_async:
            return [b async for b in self.connector.aread(stream, state, **options)]
        return list(self.connector.read(stream, state, **options))

    async def fetch(self, item: str, dest: Path, **options: Any) -> FetchResult:
        if self.is_async:
            return await self.connector.afetch(item, dest, **options)
        return self.connector.fetch(item, dest, **options)

    async def metadata(self, item: str) -> dict[str, Any]:
        if self.is_async:
            return await self.connector.ametadata(item)
        return self.connector.metadata(item)

    async def write(self, stream: str, batches: Any, **options: Any) -> WriteResult:
        if self.is_async:
            return await self.connector.awrite(stream, batches, **options)
        return self.connector.write(stream, batches, **options)

    async def upload(self, blob: str, source: Any, **options: Any) -> UploadResult:
        if self.is_async:
            return await self.connector.aupload(blob, source, **options)
        return self.connector.upload(blob, source, **options)


@pytest.fixture(scope="session")
def blob_service(azurite: Any) -> Iterator[Any]:
    """A raw sync SDK client for arranging test data behind the connector's back."""
    service = azurite.service_client()
    yield service
    service.close()


@pytest.fixture
def container(blob_service: Any) -> Iterator[Any]:
    """A fresh, empty container (raw SDK ``ContainerClient``), deleted afterwards."""
    client = blob_service.get_container_client(f"t-{uuid.uuid4().hex[:16]}")
    client.create_container()
    yield client
    client.delete_container()


@pytest.fixture
def config(azurite: Any, container: Any) -> dict[str, Any]:
    """A connector config for the test's container (account key auth)."""
    return {
        "account_url": azurite.blob_url,
        "account_key": azurite.account_key,
        "container": container.container_name,
        "retry": QUICK_RETRY,
    }


@pytest.fixture
async def make_twin(mode: str, config: dict[str, Any]) -> AsyncIterator[Callable[..., Twin]]:
    """Build twins in the test's ``mode`` with config overrides; all closed at the end."""
    made: list[AzureBlobConnector] = []

    def make(**overrides: Any) -> Twin:
        connector = AzureBlobConnector({**config, **overrides})
        made.append(connector)
        return Twin(mode, connector)

    yield make
    for connector in made:
        await connector.aclose()


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    """Which API a `Twin` drives."""
    return str(request.param)


@pytest.fixture
def twin(mode: str, make_twin: Callable[..., Twin]) -> Twin:
    """The connector on the test's container, driven through the ``mode`` API."""
    return make_twin()


@pytest.fixture
def expired_sas(azurite: Any, container: Any) -> str:
    """A SAS of the test's container (read, list) that expired an hour ago, properly signed."""
    import datetime as dt

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    now = dt.datetime.now(dt.UTC)
    return generate_container_sas(
        azurite.account_name,
        container.container_name,
        account_key=azurite.account_key,
        permission=ContainerSasPermissions(read=True, list=True),
        start=now - dt.timedelta(hours=2),
        expiry=now - dt.timedelta(hours=1),
    )

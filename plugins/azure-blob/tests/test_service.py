"""Embedding in a service: stats() of the clients' HTTP pools, against Azurite."""

from __future__ import annotations

import asyncio

import pytest

from headwater_azure_blob import AzureBlobConnector

pytestmark = pytest.mark.integration


def test_sync_stats_count_connections_and_requests(config, container):
    """No pool before first use; then one kept-alive connection serving every request."""
    container.upload_blob("a.jsonl", b'{"a": 1}\n')
    connector = AzureBlobConnector(config)
    try:
        assert connector.stats() == {}
        connector.check()
        first = connector.stats()["sync"]
        for _ in range(3):
            connector.metadata("a.jsonl")
        stats = connector.stats()["sync"]
        assert stats["requests"] >= first["requests"] + 3
        # Keep-alive: the same connection served them all, and it is idle now.
        assert stats["opened"] == 1
        assert (stats["idle"], stats["in_use"], stats["size"]) == (1, 0, 1)
        assert stats["max_size"] >= 1
        assert "async" not in connector.stats()
    finally:
        connector.close()


async def test_async_stats_count_idle_connections(config, container):
    """Concurrent requests open connections that go back idle; nothing stays in use."""
    container.upload_blob("a.jsonl", b'{"a": 1}\n')
    connector = AzureBlobConnector(config)
    try:
        await connector.acheck()
        await asyncio.gather(*(connector.ametadata("a.jsonl") for _ in range(4)))
        stats = connector.stats()["async"]
        assert stats["idle"] >= 1
        assert stats["in_use"] == 0
        assert stats["size"] == stats["idle"]
        assert stats["max_size"] >= 4
        # What aiohttp does not count is left out rather than reported as 0.
        assert "opened" not in stats
        assert "closed" not in stats
    finally:
        await connector.aclose()
    assert connector.stats() == {}

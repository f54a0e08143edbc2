"""Embedding in a service: stats() of the clients' HTTP pools and fork safety, on Azurite."""

from __future__ import annotations

import asyncio
import multiprocessing
from typing import Any

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


def _child(connector: AzureBlobConnector, out: Any) -> None:
    """In the forked child: use the parent's connector, report what its client counted."""
    try:
        records = [r for batch in connector.read("a.jsonl") for r in batch.records]
        out.put((records, connector.stats()))
    except BaseException as exc:  # the parent reports it
        out.put(repr(exc))
    finally:
        connector.close()


def test_fork_child_makes_its_own_client(config, container):
    """
    A connector used before os.fork(): the child's first request opens a client of its
    own (its counters start at zero), and the parent's client still serves afterwards.
    """
    container.upload_blob("a.jsonl", b'{"a": 1}\n')
    connector = AzureBlobConnector(config)
    try:
        for _ in range(5):
            connector.metadata("a.jsonl")
        parent = connector.stats()["sync"]
        context = multiprocessing.get_context("fork")
        out = context.Queue()
        child = context.Process(target=_child, args=(connector, out))
        child.start()
        result = out.get(timeout=60)
        child.join(60)
        assert child.exitcode == 0, result
        assert not isinstance(result, str), result
        records, stats = result
        assert records == [{"a": 1}]
        # Not the parent's pool: that one had served 5+ requests on its connection.
        assert stats["sync"]["requests"] < parent["requests"]
        assert stats["sync"]["opened"] == 1
        connector.metadata("a.jsonl")
        after = connector.stats()["sync"]
        assert after["requests"] == parent["requests"] + 1
        assert after["opened"] == parent["opened"]
    finally:
        connector.close()

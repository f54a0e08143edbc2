"""Listing 10,000 blobs across pages and nested prefixes, sync and async."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COUNT = 10_000


def _name(i: int) -> str:
    return f"p{i % 10}/q{(i // 10) % 10}/b{i:05d}.txt"


async def _upload_all(azurite, container_name: str) -> None:
    from azure.storage.blob.aio import BlobServiceClient

    async with BlobServiceClient(
        azurite.blob_url,
        credential={"account_name": azurite.account_name, "account_key": azurite.account_key},
    ) as service:
        container = service.get_container_client(container_name)
        await container.create_container()
        limit = asyncio.Semaphore(16)

        async def put(i: int) -> None:
            async with limit:
                await container.upload_blob(_name(i), b"", overwrite=True)

        await asyncio.gather(*(put(i) for i in range(COUNT)))


@pytest.fixture(scope="module")
def big_container(azurite, blob_service):
    """A container holding 10,000 empty blobs under 10 x 10 nested prefixes."""
    name = f"big-{uuid.uuid4().hex[:12]}"
    asyncio.run(_upload_all(azurite, name))
    yield name
    blob_service.get_container_client(name).delete_container()


@pytest.fixture
def big(make_twin, big_container):
    """The connector on the big container, 1000 blobs per listing page."""
    return make_twin(container=big_container, list_page_size=1000)


def _requests(caplog) -> int:
    return sum(1 for r in caplog.records if r.getMessage().startswith("Request URL"))


async def test_list_recursive_follows_every_page(big, caplog):
    """A recursive listing returns all 10,000 blobs, in name order, over >= 10 pages."""
    caplog.set_level(logging.INFO, logger="azure.core.pipeline.policies.http_logging_policy")
    items = await big.list(recursive=True)
    assert sorted(_name(i) for i in range(COUNT)) == [i.name for i in items]
    assert {"blob"} == {i.kind for i in items}
    assert _requests(caplog) >= COUNT // 1000


async def test_list_hierarchy_walks_nested_prefixes(big):
    """Walking prefix by prefix finds the 10 x 10 directories and every blob once."""
    top = await big.list()
    assert [f"p{i}/" for i in range(10)] == sorted(i.name for i in top)
    found: list[str] = []
    for prefix in top:
        level = await big.list(prefix.name)
        assert {"prefix"} == {i.kind for i in level}
        assert 10 == len(level)
        for sub in level:
            found += [i.name for i in await big.list(sub.name) if i.kind == "blob"]
    assert sorted(_name(i) for i in range(COUNT)) == sorted(found)


async def test_hierarchical_listing_follows_pages(make_twin, big_container, caplog):
    """A delimiter listing spread over many small pages still returns every entry once."""
    caplog.set_level(logging.INFO, logger="azure.core.pipeline.policies.http_logging_policy")
    small_pages = make_twin(container=big_container, list_page_size=3)
    prefixes = await small_pages.list("p4/")
    assert [f"p4/q{i}/" for i in range(10)] == [i.name for i in prefixes]
    blobs = await small_pages.list("p4/q2/")
    assert sorted(_name(i) for i in range(COUNT) if _name(i).startswith("p4/q2/")) == [
        i.name for i in blobs
    ]
    # 10 prefixes and 100 blobs at 3 a page: at least 4 + 34 requests.
    assert _requests(caplog) >= 4 + 34


async def test_read_with_glob_lists_only_its_prefix(big, caplog):
    """A glob lists from its literal prefix: one page for p3/q4/, not the container."""
    caplog.set_level(logging.INFO, logger="azure.core.pipeline.policies.http_logging_policy")
    from headwater import NotFound

    # The blobs are empty, so there is nothing to read, but the matching is exercised.
    with pytest.raises(NotFound):
        await big.read("p3/q4/*.jsonl")
    assert 1 == _requests(caplog)

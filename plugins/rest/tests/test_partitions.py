"""
Partitions of REST streams on the loopback API: page ranges when the API gives a total,
parent records for child streams, the whole stream otherwise; together always the whole
read, record for record; resumable inside; shipped with references, never the key.
"""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from headwater import ConfigError, Partition, Registry
from headwater.toolkit import partitions as shipped_partitions
from headwater_rest import RestConnector
from tests.fix_http import API_KEY, HttpServer

N = 47

STREAMS: dict[str, dict[str, Any]] = {
    "offset": {
        "path": "/offset",
        "params": {"n": N, "total": 1},
        "records": "items",
        "pagination": {"type": "offset", "limit": 5, "total_path": "total"},
    },
    "offset_concurrent": {
        "path": "/offset",
        "params": {"n": N, "total": 1},
        "records": "items",
        "pagination": {"type": "offset", "limit": 4, "total_path": "total", "concurrency": 3},
    },
    "pages": {
        "path": "/pages",
        "params": {"n": N, "counts": 1},
        "records": "results",
        "pagination": {
            "type": "page",
            "size": 6,
            "size_param": "per_page",
            "total_pages_path": "total_pages",
        },
    },
    "cursor": {
        "path": "/cursor",
        "params": {"n": N, "limit": 10},
        "records": "data",
        "pagination": {"type": "cursor", "cursor_path": "meta.next_cursor"},
    },
    "orgs": {"path": "/orgs"},
    "repos": {
        "path": "/orgs/{org.id}/repos",
        "parent": {"stream": "orgs", "alias": "org", "fields": {"org": "id"}},
        "pagination": {"type": "page", "size": 5, "size_param": "per_page"},
    },
}


def _rows(batches: Any) -> list[dict[str, Any]]:
    return [row for batch in batches for row in batch.rows()]


class Side:
    """One connector's partitions and partition reads, through its sync or async API."""

    def __init__(self, mode: str, connector: RestConnector) -> None:
        self.mode = mode
        self.connector = connector

    def split(self, stream: str, n: int) -> list[Partition]:
        if self.mode == "async":
            return asyncio.run(self.connector.apartitions(stream, n))
        return self.connector.partitions(stream, n)

    def read(self, part: Partition, state: Any = None, batch_size: int | None = None) -> list[Any]:
        if self.mode == "async":

            async def run() -> list[Any]:
                got = self.connector.aread_partition(part, state=state, batch_size=batch_size)
                return [batch async for batch in got]

            return asyncio.run(run())
        return list(self.connector.read_partition(part, state=state, batch_size=batch_size))


@pytest.fixture
def make_side(
    mode: str, make_config: Callable[..., dict[str, Any]], registry: Registry
) -> Iterator[Callable[..., Side]]:
    made: list[RestConnector] = []

    def make(**overrides: Any) -> Side:
        connector = RestConnector(make_config(streams=STREAMS, **overrides), registry=registry)
        made.append(connector)
        return Side(mode, connector)

    yield make
    for connector in made:
        connector.close()


@pytest.mark.parametrize("stream", ["offset", "offset_concurrent", "pages", "cursor", "repos"])
def test_partitions_together_are_the_whole_read(
    make_side: Callable[..., Side], stream: str
) -> None:
    """For n = 1..5 the partitions, read in order, give the whole read record for record."""
    side = make_side()
    whole = _rows(side.connector.read(stream, batch_size=3))
    assert (17 if stream == "repos" else N) == len(whole)
    for n in range(1, 6):
        parts = side.split(stream, n)
        assert 1 <= len(parts) <= n, f"n={n}"
        union = [row for part in parts for row in _rows(side.read(part, batch_size=3))]
        assert whole == union, f"n={n}"


def test_the_splits_are_the_expected_kinds(make_side: Callable[..., Side]) -> None:
    """Page ranges with a total, parent runs for a child stream, one partition otherwise."""
    connector = make_side().connector
    offsets = [p.bounds for p in connector.partitions("offset", 4)]  # 10 pages of 5
    assert [0, 10, 25, 35] == [b["start"]["offset"] for b in offsets]
    assert [10, 25, 35, None] == [b["end"] and b["end"]["offset"] for b in offsets]
    pages = [p.bounds["start"]["page"] for p in connector.partitions("pages", 3)]  # 8 pages
    assert [1, 3, 6] == pages
    repos = connector.partitions("repos", 5)  # 3 orgs
    assert [["acme"], ["globex"], ["initech"]] == [
        [org["id"] for org in p.bounds["parents"]] for p in repos
    ]
    assert [{"kind": "whole"}] == [p.bounds for p in connector.partitions("cursor", 5)]


def test_the_async_split_equals_the_sync_split(
    make_config: Callable[..., dict[str, Any]], registry: Registry
) -> None:
    """apartitions gives what partitions gives, for every kind of stream and count."""
    with RestConnector(make_config(streams=STREAMS), registry=registry) as connector:
        for stream in ("offset", "pages", "cursor", "repos"):
            for n in (1, 3, 5):
                split = connector.partitions(stream, n)
                assert split == asyncio.run(connector.apartitions(stream, n))


@pytest.mark.parametrize("stream", ["offset", "offset_concurrent"])
def test_a_page_range_makes_the_requests_of_the_whole_read(
    make_side: Callable[..., Side], http_api: HttpServer, stream: str
) -> None:
    """The partitions' requests are those the whole read makes (besides the split's one)."""
    connector = make_side().connector
    list(connector.read(stream))
    whole = sorted(int(seen.query["offset"]) for seen in http_api.state.seen("/offset"))
    assert 10 <= len(whole)
    http_api.reset()
    parts = connector.partitions(stream, 3)
    assert 1 == len(http_api.state.seen("/offset"))
    http_api.reset()
    for part in parts:
        list(connector.read_partition(part))
    assert whole == sorted(int(seen.query["offset"]) for seen in http_api.state.seen("/offset"))


@pytest.mark.parametrize("stream", ["offset", "pages", "repos", "cursor"])
def test_a_partition_resumes_after_each_of_its_batches(
    make_side: Callable[..., Side], stream: str
) -> None:
    """From every batch's state, a partition yields exactly the records after that batch."""
    side = make_side()
    for part in side.split(stream, 3):
        batches = side.read(part, batch_size=2)
        rows = _rows(batches)
        seen = 0
        for batch in batches:
            seen += len(batch)
            assert rows[seen:] == _rows(side.read(part, batch.state, batch_size=2))


def test_a_state_of_another_partition_is_refused(make_side: Callable[..., Side]) -> None:
    """A page state outside the partition's pages is a ConfigError on the state."""
    connector = make_side().connector
    first, second = connector.partitions("offset", 2)
    state = next(iter(connector.read_partition(second))).state
    with pytest.raises(ConfigError) as caught:
        list(connector.read_partition(first, state=state))
    assert "state" == caught.value.field


def test_shipped_partitions_hold_the_reference_never_the_key(
    make_config: Callable[..., dict[str, Any]], registry: Registry
) -> None:
    """Every pickled partition (key given as env:) holds the reference, never the key."""
    with RestConnector(make_config(streams=STREAMS), registry=registry) as source:
        assert source.check().ok
        for stream in ("offset", "pages", "cursor", "repos"):
            for part in shipped_partitions(source, stream, 4):
                data = pickle.dumps(part)
                assert b"env:HW_TEST_API_KEY" in data
                assert API_KEY.encode() not in data
                assert API_KEY not in repr(part)


def test_a_literal_key_refuses_to_ship(
    make_config: Callable[..., dict[str, Any]], registry: Registry
) -> None:
    """A literal API key cannot ship: a ConfigError, never the key."""
    config = make_config(streams=STREAMS, auth={"type": "api_key", "key": API_KEY})
    with (
        RestConnector(config, registry=registry) as source,
        pytest.raises(ConfigError) as caught,
    ):
        shipped_partitions(source, "offset", 2)
    assert API_KEY not in str(caught.value)
    assert "auth.key" == caught.value.field


# --- Dask --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine_worker_env() -> dict[str, str]:
    """The Dask workers' environment (`tests.fix_engines`) holds the key."""
    return {"HW_TEST_API_KEY": API_KEY}


@pytest.mark.parametrize("stream", ["offset", "repos"])
@pytest.mark.engines
def test_rest_on_dask_equals_to_pandas(
    dask_client: Any, make_config: Callable[..., dict[str, Any]], stream: str
) -> None:
    """Page ranges and parent runs read on 2 workers equal to_pandas of the stream."""
    import pandas as pd

    import headwater.dask

    with RestConnector(make_config(streams=STREAMS)) as source:
        frame = headwater.dask.read(source, stream, npartitions=3)
        assert 3 == frame.npartitions
        got = frame.compute().reset_index(drop=True)
        expected = headwater.to_pandas(source, stream)
    assert (17 if stream == "repos" else N) == len(expected)
    pd.testing.assert_frame_equal(expected, got)

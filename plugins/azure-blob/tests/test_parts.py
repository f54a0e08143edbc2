"""
Part writes against Azurite (`Capability.PART_WRITES`): parts staged as uncommitted
blocks, a retried part replacing the earlier attempt, the commit in index order with
counts checked, the blob untouched until the commit, abort leaving no manifest.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from headwater import AlreadyExists, Capability, ConfigError, IntegrityError, NotSupported
from headwater_azure_blob import AzureBlobConnector

pytestmark = pytest.mark.integration

JOB = "job0123456789ab"
PAD = "x" * 1000


@pytest.fixture
def connector(config: dict[str, Any]) -> Iterator[AzureBlobConnector]:
    with AzureBlobConnector(config) as opened:
        yield opened


def _rows(first: int, count: int, pad: str = "") -> list[dict[str, Any]]:
    return [{"id": n, "name": f"row {n}{pad}"} for n in range(first, first + count)]


def _manifests(container: Any) -> list[str]:
    return [blob.name for blob in container.list_blobs() if ".hw-parts/" in blob.name]


def _text(container: Any, name: str) -> str:
    return container.get_blob_client(name).download_blob().readall().decode()


def test_capability_declared(connector: AzureBlobConnector) -> None:
    assert Capability.PART_WRITES in connector.capabilities


def test_a_part_written_twice_keeps_only_the_second(
    connector: AzureBlobConnector, container: Any
) -> None:
    connector.write_part("out.jsonl", [_rows(0, 3)], job=JOB, index=0)
    connector.write_part("out.jsonl", [_rows(100, 2)], job=JOB, index=0)
    staged = container.get_blob_client("out.jsonl").get_block_list("uncommitted")[1]
    assert 2 == len(staged)  # one block of each attempt
    result = connector.commit_parts("out.jsonl", job=JOB, parts={0: 2})
    assert 2 == result.records
    lines = [json.loads(line) for line in _text(container, "out.jsonl").splitlines()]
    assert _rows(100, 2) == lines
    assert [] == _manifests(container)
    # The first attempt's blocks, not named by the commit, are discarded by it.
    assert [] == container.get_blob_client("out.jsonl").get_block_list("uncommitted")[1]


def test_the_commit_joins_parts_in_index_order_across_blocks(
    config: dict[str, Any], container: Any
) -> None:
    """Parts written out of order, each over several small blocks: read back in index order."""
    with AzureBlobConnector({**config, "block_size": 65536}) as connector:
        for index in (2, 0, 1):
            connector.write_part(
                "out.jsonl",
                [_rows(index * 200, 100, PAD), _rows(index * 200 + 100, 100, PAD)],
                job=JOB,
                index=index,
            )
        connector.commit_parts("out.jsonl", job=JOB, parts={0: 200, 1: 200, 2: 200})
        back = [row for batch in connector.read("out.jsonl") for row in batch.rows()]
    assert _rows(0, 600, PAD) == back
    # 200 records of about 1 KB a part: 4 blocks of 64 KiB each at least.
    assert len(container.get_blob_client("out.jsonl").get_block_list("committed")[0]) >= 12


def test_csv_parts_have_one_header_from_the_first_non_empty_part(
    connector: AzureBlobConnector, container: Any
) -> None:
    connector.write_part("out.csv", [], job=JOB, index=0)
    connector.write_part("out.csv", [_rows(0, 2)], job=JOB, index=1)
    connector.write_part("out.csv", [_rows(2, 1)], job=JOB, index=2)
    connector.commit_parts("out.csv", job=JOB, parts={0: 0, 1: 2, 2: 1})
    assert "id,name\n0,row 0\n1,row 1\n2,row 2\n" == _text(container, "out.csv")


def test_csv_parts_without_records_and_columns_given_make_the_header_alone(
    connector: AzureBlobConnector, container: Any
) -> None:
    for index in (0, 1):
        connector.write_part("out.csv", [], job=JOB, index=index, columns=["id", "name"])
    connector.commit_parts("out.csv", job=JOB, parts={0: 0, 1: 0}, columns=["id", "name"])
    assert "id,name\n" == _text(container, "out.csv")


def test_csv_parts_with_other_columns_are_refused(
    connector: AzureBlobConnector, container: Any
) -> None:
    connector.write_part("out.csv", [[{"a": 1}]], job=JOB, index=0)
    connector.write_part("out.csv", [[{"b": 2}]], job=JOB, index=1)
    with pytest.raises(IntegrityError, match="columns"):
        connector.commit_parts("out.csv", job=JOB, parts={0: 1, 1: 1})
    assert not container.get_blob_client("out.csv").exists()


def test_a_count_that_differs_is_refused_and_nothing_is_written(
    connector: AzureBlobConnector, container: Any
) -> None:
    connector.write_part("out.jsonl", [_rows(0, 3)], job=JOB, index=0)
    with pytest.raises(IntegrityError, match="holds 3 records, not the 4"):
        connector.commit_parts("out.jsonl", job=JOB, parts={0: 4})
    with pytest.raises(IntegrityError, match=r"part 1 .* is not staged"):
        connector.commit_parts("out.jsonl", job=JOB, parts={0: 3, 1: 5})
    assert not container.get_blob_client("out.jsonl").exists()


def test_the_blob_keeps_its_old_content_until_the_commit(
    connector: AzureBlobConnector, container: Any
) -> None:
    container.upload_blob("out.jsonl", b'{"old": 1}\n')
    connector.write_part("out.jsonl", [_rows(0, 2)], job=JOB, index=0)
    assert '{"old": 1}\n' == _text(container, "out.jsonl")
    with pytest.raises(AlreadyExists, match="exists") as caught:
        connector.commit_parts("out.jsonl", job=JOB, parts={0: 2})
    assert caught.value.hint is not None
    assert "mode='overwrite'" in caught.value.hint
    assert '{"old": 1}\n' == _text(container, "out.jsonl")
    connector.commit_parts("out.jsonl", job=JOB, parts={0: 2}, mode="overwrite")
    lines = [json.loads(line) for line in _text(container, "out.jsonl").splitlines()]
    assert _rows(0, 2) == lines


def test_a_new_blob_does_not_exist_before_the_commit(
    connector: AzureBlobConnector, container: Any
) -> None:
    connector.write_part("out.jsonl", [_rows(0, 2)], job=JOB, index=0)
    assert not container.get_blob_client("out.jsonl").exists()


def test_abort_leaves_no_manifest_and_no_blob(
    connector: AzureBlobConnector, container: Any
) -> None:
    connector.write_part("out.jsonl", [_rows(0, 2)], job=JOB, index=0)
    connector.write_part("out.jsonl", [_rows(2, 2)], job=JOB, index=1)
    assert 2 == len(_manifests(container))
    connector.abort_parts("out.jsonl", job=JOB)
    assert [] == _manifests(container)
    assert not container.get_blob_client("out.jsonl").exists()
    connector.abort_parts("out.jsonl", job=JOB)  # nothing staged is fine


@pytest.mark.parametrize("name", ["out.jsonl.gz", "out.parquet", "out.csv.zst"])
def test_compressed_and_parquet_blobs_are_refused_naming_why(
    connector: AzureBlobConnector, container: Any, name: str
) -> None:
    with pytest.raises(NotSupported, match="in parts") as caught:
        connector.write_part(name, [_rows(0, 1)], job=JOB, index=0)
    assert caught.value.hint is not None
    assert "one write" in caught.value.hint
    assert [] == _manifests(container)


def test_unknown_options_and_modes_are_refused(connector: AzureBlobConnector) -> None:
    with pytest.raises(ConfigError, match="state_key"):
        connector.write_part("out.jsonl", [_rows(0, 1)], job=JOB, index=0, state_key="k")
    with pytest.raises(ConfigError, match="part index is at most 99999999"):
        connector.write_part("out.jsonl", [_rows(0, 1)], job=JOB, index=10**8)
    with pytest.raises(ConfigError, match="append"):
        connector.commit_parts("out.jsonl", job=JOB, parts={}, mode="append")


def test_async_twins_write_and_commit(connector: AzureBlobConnector, container: Any) -> None:
    async def run() -> None:
        await connector.awrite_part("out.jsonl", [_rows(0, 2)], job=JOB, index=0)
        await connector.acommit_parts("out.jsonl", job=JOB, parts={0: 2})

    asyncio.run(run())
    assert 2 == len(_text(container, "out.jsonl").splitlines())


def test_overwrite_replaces_a_blob_the_connector_wrote_in_blocks(
    config: dict[str, Any], container: Any
) -> None:
    """The old blob's committed blocks (ids of another length) are neither kept nor in the way."""
    with AzureBlobConnector({**config, "block_size": 65536}) as connector:
        connector.write("out.jsonl", [_rows(0, 300, PAD)])
        old_blocks = container.get_blob_client("out.jsonl").get_block_list("committed")[0]
        assert len(old_blocks) > 1
        connector.write_part("out.jsonl", [_rows(10, 2)], job=JOB, index=0)
        connector.commit_parts("out.jsonl", job=JOB, parts={0: 2}, mode="overwrite")
    lines = [json.loads(line) for line in _text(container, "out.jsonl").splitlines()]
    assert _rows(10, 2) == lines

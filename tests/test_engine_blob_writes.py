"""
Exactly-once writes from Dask and Ray into Azure Blob Storage (Azurite): the engines write a
JSON Lines or CSV blob in parts (headwater-azure-blob's `Capability.PART_WRITES`), the
account key resolved on the workers from a reference; the blob reads back equal to the input.
A worker killed mid-part runs on both engines (`tests.fix_engines.engine`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import headwater

# Ray 2.60's DataContext() warns about its own defaults of deprecated fields.
pytestmark = [
    pytest.mark.engines,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),
]

#: Set in the engines' worker processes only: the driver's config holds the reference.
WORKER_ENV = "HW_ENGINE_BLOB_KEY"
ROWS = 3000


@pytest.fixture(scope="module")
def engine_worker_env(azurite: Any) -> dict[str, str]:
    return {WORKER_ENV: azurite.account_key}


@pytest.fixture
def blob_target(azurite: Any) -> Iterator[tuple[dict[str, Any], Any]]:
    """(config with the key as an env: reference, a connector holding the key) on a container."""
    blob = pytest.importorskip("headwater_azure_blob")
    service = azurite.service_client()
    container = service.create_container(f"engines-{uuid.uuid4().hex[:12]}")
    config = {"account_url": azurite.blob_url, "container": container.container_name}
    reader = blob.AzureBlobConnector({**config, "account_key": azurite.account_key})
    try:
        yield {**config, "account_key": f"env:{WORKER_ENV}"}, reader
    finally:
        reader.close()
        container.delete_container()
        service.close()


def _records() -> list[dict[str, Any]]:
    return [{"id": i, "name": None if i % 7 == 0 else f"e{i}"} for i in range(ROWS)]


def _read_back(reader: Any, stream: str) -> list[dict[str, Any]]:
    rows = [row for batch in reader.read(stream) for row in batch.rows()]
    return sorted(rows, key=lambda row: row["id"])


def _no_manifests(reader: Any) -> list[str]:
    return [item.name for item in reader.list(recursive=True) if ".hw-parts/" in item.name]


@pytest.mark.parametrize("stream", ["out/copy.jsonl", "out/copy.csv"])
def test_an_engine_write_into_a_blob_reads_back_equal(
    engine: Any, blob_target: tuple[dict[str, Any], Any], stream: str
) -> None:
    """4 parts on 2 workers, the key resolved there: the blob holds each record once."""
    config, reader = blob_target
    data = engine.from_records(_records(), 4)
    with headwater.connect("azure-blob", config) as dest:
        result = engine.write(data, dest, stream)
    assert result is not None
    assert ROWS == result.records
    back = _read_back(reader, stream)
    if stream.endswith(".csv"):  # CSV reads back text, NULL as None
        expected = [{"id": str(r["id"]), "name": r["name"]} for r in _records()]
        back = sorted(back, key=lambda row: int(row["id"]))
        assert expected == back
    else:
        assert _records() == back
    assert [] == _no_manifests(reader)


@pytest.mark.parametrize("when", ["before_commit", "after_stage"])
def test_a_part_retried_after_its_worker_died_is_written_once(
    engine: Any, blob_target: tuple[dict[str, Any], Any], tmp_path: Path, when: str
) -> None:
    """
    A write task's worker dies (its blocks staged without a manifest, or the manifest
    written but never reported): the retry replaces the part, the blob holds each record once.
    """
    config, reader = blob_target
    pad = "x" * 1000  # about 750 KB a part: a dozen 64 KiB blocks each
    records = [{"id": i, "name": f"e{i}{pad}"} for i in range(ROWS)]
    marker = str(tmp_path / "killed")
    data = engine.from_records(records, 4)
    with headwater.connect("azure-blob", {**config, "block_size": 65536}) as dest:
        result = engine.write_killing_a_worker(
            data, dest, "out/copy.jsonl", when=when, marker=marker, batch_size=100
        )
    assert os.path.exists(marker), "no worker was killed"
    assert result is not None
    assert ROWS == result.records
    assert records == _read_back(reader, "out/copy.jsonl")
    assert [] == _no_manifests(reader)

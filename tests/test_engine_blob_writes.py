"""
Exactly-once writes from Dask and Ray into Azure Blob Storage (Azurite): the engines write a
JSON Lines or CSV blob in parts (headwater-azure-blob's `Capability.PART_WRITES`), the
account key resolved on the workers from a reference; the blob reads back equal to the input.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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
def test_dask_to_source_into_a_blob_reads_back_equal(
    dask_client: Any, blob_target: tuple[dict[str, Any], Any], stream: str
) -> None:
    """4 partitions on 2 workers, the key resolved there: the blob holds each record once."""
    import dask.dataframe as dd
    import pandas as pd

    import headwater.dask

    config, reader = blob_target
    frame = dd.from_pandas(pd.DataFrame(_records()), npartitions=4)
    with headwater.connect("azure-blob", config) as dest:
        result = headwater.dask.to_source(frame, dest, stream)
    assert ROWS == result.records
    back = _read_back(reader, stream)
    if stream.endswith(".csv"):  # CSV reads back text, NULL as None
        expected = [{"id": str(r["id"]), "name": r["name"]} for r in _records()]
        back = sorted(back, key=lambda row: int(row["id"]))
        assert expected == back
    else:
        assert _records() == back
    assert [] == _no_manifests(reader)


def test_ray_write_into_a_blob_reads_back_equal(
    ray_local: Any, blob_target: tuple[dict[str, Any], Any]
) -> None:
    """4 blocks written through the Datasink: the blob holds each record once."""
    import headwater.ray

    config, reader = blob_target
    dataset = ray_local.data.from_items(_records(), override_num_blocks=4)
    with headwater.connect("azure-blob", config) as dest:
        result = headwater.ray.write(dataset, dest, "out/copy.jsonl")
    assert ROWS == result.records
    assert _records() == _read_back(reader, "out/copy.jsonl")
    assert [] == _no_manifests(reader)


def _install_part_killer(marker: str, index: int, when: str) -> None:
    """On a worker: part ``index``'s write kills this worker mid-part or once staged, once."""
    import headwater._shipping as shipping

    original = shipping.write_part

    def killed_once() -> bool:  # True in the first process to create the marker
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        return True

    def write_part(write: Any, part: int, batches: Any) -> int:
        if part != index:
            return original(write, part, batches)
        if when == "mid_part":

            def dying() -> Iterator[Any]:
                for number, batch in enumerate(batches):
                    if number == 3 and killed_once():
                        os.kill(os.getpid(), signal.SIGKILL)  # blocks staged, no manifest
                    yield batch

            return original(write, part, dying())
        records = original(write, part, batches)
        if killed_once():
            os.kill(os.getpid(), signal.SIGKILL)  # manifest written, never reported
        return records

    shipping.write_part = write_part  # type: ignore[assignment]


@pytest.mark.parametrize("when", ["mid_part", "after_stage"])
def test_a_dask_part_retried_after_its_worker_died_is_written_once(
    dask_client: Any, blob_target: tuple[dict[str, Any], Any], tmp_path: Path, when: str
) -> None:
    """Part 2's worker dies (blocks staged, or manifest written): the retry replaces it."""
    import dask.dataframe as dd
    import pandas as pd

    import headwater.dask

    config, reader = blob_target
    pad = "x" * 1000  # about 750 KB a part: a dozen 64 KiB blocks each
    records = [{"id": i, "name": f"e{i}{pad}"} for i in range(ROWS)]
    frame = dd.from_pandas(pd.DataFrame(records), npartitions=4)
    marker = str(tmp_path / "killed")
    dask_client.wait_for_workers(2, timeout=60)  # one killed by an earlier test restarts
    dask_client.run(_install_part_killer, marker, 2, when)
    with headwater.connect("azure-blob", {**config, "block_size": 65536}) as dest:
        result = headwater.dask.to_source(frame, dest, "out/copy.jsonl", batch_size=100)
    assert os.path.exists(marker), "no worker was killed"
    assert ROWS == result.records
    assert records == _read_back(reader, "out/copy.jsonl")
    assert [] == _no_manifests(reader)


def _ray_kill_once(marker: str) -> None:
    """Kill the calling Ray worker, once across processes (the first to create ``marker``)."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize("when", ["mid_part", "after_stage"])
def test_a_ray_write_task_retried_after_its_worker_died_is_written_once(
    ray_local: Any, blob_target: tuple[dict[str, Any], Any], tmp_path: Path, when: str
) -> None:
    """Write task 1's worker dies (blocks staged, or manifest written): the retry replaces it."""
    import headwater.ray

    marker = str(tmp_path / "killed")

    class DyingSink(headwater.ray.HeadwaterDatasink):
        def write(self, blocks: Any, ctx: Any) -> Any:
            if ctx.task_idx != 1:
                return super().write(blocks, ctx)
            if when == "mid_part":

                def dying() -> Iterator[Any]:
                    yield from blocks
                    _ray_kill_once(marker)  # full blocks staged, the tail and manifest not

                return super().write(dying(), ctx)
            staged = super().write(blocks, ctx)
            _ray_kill_once(marker)  # manifest written, never reported
            return staged

    config, reader = blob_target
    pad = "x" * 1000  # about 750 KB a task: a dozen 64 KiB blocks each
    records = [{"id": i, "name": f"e{i}{pad}"} for i in range(ROWS)]
    dataset = ray_local.data.from_items(records, override_num_blocks=4)
    with headwater.connect("azure-blob", {**config, "block_size": 65536}) as dest:
        sink = DyingSink(dest, "out/copy.jsonl")
        dataset.write_datasink(sink)
    assert os.path.exists(marker), "no worker was killed"
    assert sink.result is not None
    assert ROWS == sink.result.records
    assert records == _read_back(reader, "out/copy.jsonl")
    assert [] == _no_manifests(reader)

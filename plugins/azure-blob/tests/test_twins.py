"""
The sync and the async API run one control flow (`headwater_azure_blob._flows`): the same
scenario through both sides gives the same requests and the same results. First the flows
under scripted drivers (no service), then the connector's twins against Azurite.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from headwater import ConnectionFailed, IntegrityError
from headwater.toolkit import RetryPolicy
from headwater_azure_blob import AzureBlobConnector
from headwater_azure_blob import _flows as flows
from headwater_azure_blob._plan import FetchPlan, WritePlan
from headwater_azure_blob._transfer import DownloadSink

KiB = 1024
MiB = 1024 * KiB


def _no_translation(context: str) -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()


# --- the flows under scripted drivers -------------------------------------------------------


class ScriptedBlob:
    """A blob's service side for a fetch: the first ``cuts`` GETs end half-way and fail."""

    def __init__(self, data: bytes, cuts: int) -> None:
        self.data = data
        self.cuts = cuts
        self.gets: list[tuple[int, int]] = []

    def perform(self, step: Any) -> None:
        (method, _, options), (then, (sink,), _) = step.calls
        assert ("download_blob", "readinto") == (method, then)
        start, length = options["offset"], options["length"]
        self.gets.append((start, length))
        chunk = self.data[start : start + length]
        if self.cuts:
            self.cuts -= 1
            sink.write(chunk[: len(chunk) // 2])
            raise ConnectionFailed("connection reset mid-body")
        sink.write(chunk)


def test_fetch_flow_resumes_a_cut_range_the_same_way_on_both_sides(tmp_path: Path) -> None:
    """An interrupted GET resumes at the missing byte on both sides; same GETs, same result."""
    data = os.urandom(100_000)
    md5 = hashlib.md5(data, usedforsecurity=False).digest()
    runs: list[tuple[Any, list[tuple[int, int]], bytes]] = []
    for side in ("sync", "async"):
        blob = ScriptedBlob(data, cuts=2)
        target = tmp_path / side
        with target.open("w+b") as handle:
            sink = DownloadSink(handle, len(data), checksum=True)
            plan = FetchPlan(
                "b.bin", len(data), "etag", md5, RetryPolicy(attempts=4, initial=0, jitter=0)
            )
            flow = flows.fetch(plan, sink, target, concurrency=1, errors=_no_translation)
            if side == "sync":
                result = flows.drive(flow, blob.perform)
            else:

                async def aperform(step: Any, blob: ScriptedBlob = blob) -> Any:
                    return blob.perform(step)

                result = asyncio.run(flows.adrive(flow, aperform))
            sink.close()
        runs.append(
            ((result.size, result.checksum, result.verified), blob.gets, target.read_bytes())
        )
    assert [(0, 100_000), (50_000, 50_000), (75_000, 25_000)] == runs[0][1]
    assert ((100_000, f"md5:{md5.hex()}", True), data) == (runs[0][0], runs[0][2])
    assert runs[0] == runs[1]


def test_fetch_flow_gives_up_without_progress_on_both_sides(tmp_path: Path) -> None:
    """GETs that fail before any byte arrives use up the resumes: ConnectionFailed both sides."""

    def perform(step: Any) -> None:
        raise ConnectionFailed("refused")

    messages = []
    for side in ("sync", "async"):
        with (tmp_path / side).open("w+b") as handle:
            sink = DownloadSink(handle, 10, checksum=False)
            plan = FetchPlan(
                "x.bin", 10, "etag", None, RetryPolicy(attempts=3, initial=0, jitter=0)
            )
            flow = flows.fetch(plan, sink, tmp_path / side, concurrency=1, errors=_no_translation)
            if side == "sync":
                with pytest.raises(ConnectionFailed) as info:
                    flows.drive(flow, perform)
            else:

                async def aperform(step: Any) -> Any:
                    return perform(step)

                with pytest.raises(ConnectionFailed) as info:
                    asyncio.run(flows.adrive(flow, aperform))
            sink.close()
        messages.append(info.value.message)
    assert "gave up after 3 interrupted attempts" in messages[0]
    assert messages[0] == messages[1]


class ScriptedContainer:
    """The service side of an upload: records every request, answers with an etag."""

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = iter(pieces)
        self.requests: list[tuple[str, int]] = []
        self.staged: dict[str, bytes] = {}
        self.committed: list[str] = []

    def read(self) -> bytes:
        return next(self._pieces, b"")

    def perform(self, step: Any) -> Any:
        ((method, args, kwargs),) = step.calls
        if method == "exists":
            self.requests.append(("exists", 0))
            return False
        if method == "upload_blob":
            self.requests.append(("upload_blob", len(args[0])))
        elif method == "stage_block":
            block_id, body = args
            data = body.getvalue() if isinstance(body, io.BytesIO) else body
            self.staged[block_id] = data
            self.requests.append(("stage_block", len(data)))
        else:
            self.committed = [block.id for block in kwargs["block_list"]]
            self.requests.append((method, len(self.committed)))
        return {"etag": '"0x1"'}

    def run(self, plan: WritePlan, *, stream_bodies: bool, block_size: int) -> Any:
        upload = flows.Upload(
            plan,
            block_size=block_size,
            concurrency=3,
            stream_bodies=stream_bodies,
            errors=_no_translation,
        )
        flow = flows.upload(upload, self.read)
        if not stream_bodies:
            return flows.drive(flow, self.perform, workers=3)

        async def aperform(step: Any) -> Any:
            return self.perform(step)

        return asyncio.run(flows.adrive(flow, aperform))


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ([100, 200], [("exists", 0), ("upload_blob", 300)]),
        ([MiB, MiB], [("exists", 0), ("stage_block", 2 * MiB), ("commit_block_list", 1)]),
        (
            [100 * KiB] * 7,
            [("exists", 0), ("stage_block", 188 * KiB)]
            + [("stage_block", 256 * KiB)] * 2
            + [("commit_block_list", 3)],
        ),
        ([], [("exists", 0), ("upload_blob", 0)]),
    ],
    ids=["one-request", "one-block", "multi-block", "empty"],
)
def test_upload_flow_makes_the_same_requests_on_both_sides(sizes, expected) -> None:
    """One request up to 1 MiB, one block above, blocks beyond: the same on both sides."""
    block_size = 256 * KiB if len(sizes) > 2 else 4 * MiB
    data = os.urandom(sum(sizes))
    pieces, offset = [], 0
    for size in sizes:
        pieces.append(data[offset : offset + size])
        offset += size
    seen = []
    for stream_bodies in (False, True):
        service = ScriptedContainer(pieces)
        plan = WritePlan("u.bin", "application/octet-stream", None, overwrite=False)
        result = service.run(plan, stream_bodies=stream_bodies, block_size=block_size)
        # Blocks are staged concurrently: sorted, then the last request (a put or the commit).
        requests = sorted(service.requests[:-1]) + service.requests[-1:]
        blocks = b"".join(service.staged[block_id] for block_id in service.committed)
        seen.append((requests, result.size, result.checksum, blocks))
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    committed = data if expected[-1][0] == "commit_block_list" else b""
    assert (expected, len(data), f"md5:{md5}", committed) == seen[0]
    assert seen[0] == seen[1]


def test_upload_flow_failure_of_a_staged_block_commits_nothing() -> None:
    """A block that fails to stage fails the upload on both sides; no commit is sent."""

    class Failing(ScriptedContainer):
        def perform(self, step: Any) -> Any:
            if step.calls[0][0] == "stage_block":
                raise IntegrityError("stage refused")
            return super().perform(step)

    for stream_bodies in (False, True):
        service = Failing([os.urandom(64 * KiB)] * 5)
        plan = WritePlan("f.bin", None, None, overwrite=True)
        with pytest.raises(IntegrityError):
            service.run(plan, stream_bodies=stream_bodies, block_size=64 * KiB)
        assert [] == [r for r in service.requests if r[0] == "commit_block_list"]


# --- the connector's twins against Azurite --------------------------------------------------


def _blob_facts(container: Any, name: str) -> tuple[bytes, bytes | None, int]:
    """A blob's bytes, its Content-MD5 and how many committed blocks it has."""
    blob = container.get_blob_client(name)
    props = blob.get_blob_properties()
    committed, _ = blob.get_block_list("committed")
    md5 = props.content_settings.content_md5
    return blob.download_blob().readall(), bytes(md5) if md5 else None, len(committed)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("size", "blocks"),
    [(300 * KiB, 0), (3 * MiB, 1), (2 * 8 * MiB + 1, 3)],
    ids=["one-request", "one-block", "multi-block"],
)
async def test_upload_twins_store_the_same_blob(config, container, size, blocks):
    """upload() and aupload() of the same data store the same bytes, MD5 and block count."""
    data = os.urandom(size)
    with AzureBlobConnector(config) as connector:
        sync = connector.upload("sync.bin", io.BytesIO(data))
        await connector.aupload("async.bin", io.BytesIO(data))
        asynchronous = await connector.aupload("async.bin", io.BytesIO(data), overwrite=True)
        await connector.aclose()
    md5 = hashlib.md5(data, usedforsecurity=False).digest()
    assert (data, md5, blocks) == _blob_facts(container, "sync.bin")
    assert _blob_facts(container, "sync.bin") == _blob_facts(container, "async.bin")
    assert (sync.size, sync.checksum) == (asynchronous.size, asynchronous.checksum)


@pytest.mark.integration
async def test_write_twins_store_the_same_blob(config, container):
    """write() and awrite() of the same records over several blocks store the same bytes."""
    records = [{"n": n, "text": "x" * 50} for n in range(5000)]
    overrides = {"block_size": 64 * KiB, "max_concurrency": 3}
    with AzureBlobConnector({**config, **overrides}) as connector:
        sync = connector.write("w/sync.jsonl", [records[:2500], records[2500:]])
        asynchronous = await connector.awrite("w/async.jsonl", [records[:2500], records[2500:]])
        await connector.aclose()
    assert sync.records == asynchronous.records == 5000
    facts = _blob_facts(container, "w/sync.jsonl")
    assert facts == _blob_facts(container, "w/async.jsonl")
    assert facts[2] > 1


@pytest.mark.integration
async def test_read_twins_give_the_same_batches_and_states(config, container):
    """read() and aread() of a glob over JSON Lines, CSV and Parquet: same batches, states."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    for day in ("01", "02"):
        lines = "".join(json.dumps({"d": day, "n": n}) + "\n" for n in range(7))
        container.upload_blob(f"t/{day}/a.jsonl", lines.encode())
    container.upload_blob("t/03/a.csv", b"d,n\n03,0\n03,1\n03,2\n")
    buffer = io.BytesIO()
    pq.write_table(pa.table({"n": list(range(9))}), buffer, row_group_size=4)
    container.upload_blob("t/04/a.parquet", buffer.getvalue())

    def shape(batches: list[Any]) -> list[tuple[Any, Any]]:
        return [(batch.rows(), batch.state) for batch in batches]

    with AzureBlobConnector(config) as connector:
        for stream in ("t/**", "t/01/a.jsonl"):
            sync = list(connector.read(stream, batch_size=3))
            asynchronous = [b async for b in connector.aread(stream, batch_size=3)]
            assert shape(sync) == shape(asynchronous)
            middle = sync[len(sync) // 2].state
            rest = list(connector.read(stream, middle, batch_size=3))
            arest = [b async for b in connector.aread(stream, middle, batch_size=3)]
            assert shape(sync[len(sync) // 2 + 1 :]) == shape(rest) == shape(arest)
        assert 7 + 7 + 3 + 9 == sum(len(b.rows()) for b in connector.read("t/**"))
        await connector.aclose()

"""
Writes against Azurite: Parquet streamed through the block upload, the state a copy
commits with the blob (`Capability.ATOMIC_STATE`), copies that resume or continue without
a record lost or repeated, and `estimate`.
"""

from __future__ import annotations

import asyncio
import base64
import bz2
import gzip
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

import headwater
from headwater import (
    AlreadyExists,
    Batch,
    Capability,
    ConfigError,
    Connector,
    ConnectorConfig,
    IntegrityError,
    NotFound,
)
from headwater_azure_blob import AzureBlobConnector

pytestmark = pytest.mark.integration

STATE_KEY = "headwater_state"


def _rows(batches) -> list[dict]:
    return [row for batch in batches for row in batch.rows()]


def _parquet(container, name: str) -> Any:
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    return pq.read_table(pa.BufferReader(container.download_blob(name).readall()))


def _jsonl_records(container, name: str) -> list[dict]:
    data = container.download_blob(name).readall()
    if name.endswith(".gz"):
        data = gzip.decompress(data)
    return [json.loads(line) for line in data.decode().splitlines()]


def _stored_state(container, name: str) -> dict:
    value = container.get_blob_client(name).get_blob_properties().metadata[STATE_KEY]
    return json.loads(base64.urlsafe_b64decode(value))


# --- Parquet -----------------------------------------------------------------------------------


async def test_write_parquet_from_dicts_and_arrow_with_unified_schema(twin, container):
    """Dict and Arrow batches make one Parquet blob; a column NULL at first takes the later type."""
    pa = pytest.importorskip("pyarrow")
    batches = [
        [{"id": 1, "score": None, "name": "a"}, {"id": 2, "score": None, "name": None}],
        pa.record_batch({"id": [3, 4], "score": [0.5, 1.5], "name": ["c", "d"]}),
        [{"id": 5, "score": 2, "name": "e"}],  # an int in a double column: no value changes
    ]
    result = await twin.write("pq/out.parquet", batches)
    assert 5 == result.records
    table = _parquet(container, "pq/out.parquet")
    assert ["int64", "double", "string"] == [str(f.type) for f in table.schema]
    assert [None, None, 0.5, 1.5, 2.0] == table.column("score").to_pylist()
    props = container.get_blob_client("pq/out.parquet").get_blob_properties()
    assert "application/vnd.apache.parquet" == props.content_settings.content_type
    back = await twin.read("pq/out.parquet")
    assert [1, 2, 3, 4, 5] == [r["id"] for r in _rows(back)]


async def test_write_parquet_conflicting_column_names_it_and_leaves_no_blob(twin, container):
    """Values with no common type fail naming the column; nothing is committed."""
    pytest.importorskip("pyarrow")
    batches = [[{"id": 1, "when": "today"}], [{"id": 2, "when": 3.5}]]
    with pytest.raises(ConfigError, match="'when'") as info:
        await twin.write("pq/bad.parquet", batches)
    assert "when" == info.value.field
    assert [] == list(container.list_blobs())


async def test_write_parquet_streams_row_groups_into_blocks(make_twin, container):
    """
    Row groups go out as staged blocks while batches still come: blocks are staged before
    the source is exhausted, so memory is a row group and a few blocks, not the blob.
    """
    pa = pytest.importorskip("pyarrow")
    twin = make_twin(block_size=64 * 1024, max_concurrency=2)
    blob = container.get_blob_client("pq/big.parquet")
    staged_midway: list[int] = []

    def batches() -> Iterator[Any]:
        for start in range(0, 200_000, 10_000):
            if start == 150_000:
                staged_midway.append(len(blob.get_block_list("uncommitted")[1]))
            words = [f"word-{n * 7919 % 100_003}" for n in range(start, start + 10_000)]
            yield pa.record_batch({"n": list(range(start, start + 10_000)), "w": words})

    result = await twin.write("pq/big.parquet", batches(), row_group_size=20_000)
    assert 200_000 == result.records
    assert staged_midway[0] >= 2, "no block was staged before the last batches came"
    pq = pytest.importorskip("pyarrow.parquet")
    data = container.download_blob("pq/big.parquet").readall()
    parquet = pq.ParquetFile(pa.BufferReader(data))
    assert (10, 200_000) == (parquet.num_row_groups, parquet.metadata.num_rows)
    assert list(range(200_000)) == parquet.read().column("n").to_pylist()
    assert len(blob.get_block_list("committed")[0]) > 2


# --- the state committed with the blob ----------------------------------------------------------


def test_capabilities_include_upload_and_atomic_state():
    """The connector declares what it implements: upload and state stored with a write."""
    caps = AzureBlobConnector.capabilities
    assert {Capability.UPLOAD, Capability.ATOMIC_STATE} <= caps


async def test_written_state_is_there_exactly_with_the_blob(twin, container):
    """write(state_key, state) stores the state as filled in by the end; written_state reads it."""
    state: dict[str, Any] = {"format": "headwater.copy/1"}

    def batches():
        for n in range(3):
            yield [{"n": n}]
            state.update(source={"offset": n + 1}, records=n + 1)  # filled in as consumed

    if twin.is_async:
        assert await twin.connector.awritten_state("st/a.jsonl", "k1") is None
    else:
        assert twin.connector.written_state("st/a.jsonl", "k1") is None
    await twin.write("st/a.jsonl", batches(), state_key="k1", state=state)
    expected = {"format": "headwater.copy/1", "source": {"offset": 3}, "records": 3}
    assert {"key": "k1", "state": expected} == _stored_state(container, "st/a.jsonl")
    value = container.get_blob_client("st/a.jsonl").get_blob_properties().metadata[STATE_KEY]
    assert value.isascii()
    if twin.is_async:
        assert expected == await twin.connector.awritten_state("st/a.jsonl", "k1")
        assert await twin.connector.awritten_state("st/a.jsonl", "other") is None
    else:
        assert expected == twin.connector.written_state("st/a.jsonl", "k1")
        assert twin.connector.written_state("st/a.jsonl", "other") is None


async def test_failed_write_with_state_leaves_neither_blob_nor_state(twin, container):
    """A source that breaks mid-way commits nothing: no blob, so no state either."""

    def batches():
        yield [{"a": 1}]
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError):
        await twin.write("st/b.jsonl", batches(), state_key="k", state={})
    assert [] == list(container.list_blobs())
    assert twin.connector.written_state("st/b.jsonl", "k") is None


async def test_state_over_the_metadata_limit_fails_clearly(twin, container):
    """A state too big for Azure's 8 KiB of metadata is a config error; nothing is committed."""
    state = {"source": {"cursor": "x" * 9000}}
    with pytest.raises(ConfigError, match="8192") as info:
        await twin.write("st/c.jsonl", [[{"a": 1}]], state_key="k", state=state)
    assert "state" == info.value.field
    assert [] == list(container.list_blobs())


async def test_continuing_a_blob_changed_meanwhile_is_refused(twin, container):
    """
    After written_state, a blob replaced by someone else (or committed to by another
    copy) is not continued: that would lose or repeat records.
    """
    await twin.write("st/d.jsonl", [[{"a": 1}]], state_key="k", state={"source": {"i": 1}})
    assert {"source": {"i": 1}} == twin.connector.written_state("st/d.jsonl", "k")
    container.upload_blob("st/d.jsonl", b'{"other": 1}\n', overwrite=True)
    with pytest.raises(IntegrityError, match="changed since"):
        await twin.write("st/d.jsonl", [[{"a": 2}]], state_key="k", state={"source": {"i": 2}})
    assert b'{"other": 1}\n' == container.download_blob("st/d.jsonl").readall()


async def test_two_continuations_from_one_state_cannot_both_commit(twin, make_twin, container):
    """Two writers that read the same state: the second commit fails instead of repeating records."""
    first = make_twin()
    await first.write("st/e.jsonl", [[{"a": 1}]], state_key="k", state={"source": 1})
    other = make_twin()
    for writer in (first, other):
        assert {"source": 1} == writer.connector.written_state("st/e.jsonl", "k")
    await first.write("st/e.jsonl", [[{"a": 2}]], state_key="k", state={"source": 2})
    with pytest.raises(IntegrityError):
        await other.write("st/e.jsonl", [[{"a": 2}]], state_key="k", state={"source": 2})
    assert [{"a": 1}, {"a": 2}] == _jsonl_records(container, "st/e.jsonl")


async def test_a_blob_without_the_key_is_not_continued(twin, container):
    """A blob written by someone else is refused (or replaced with overwrite), never appended to."""
    container.upload_blob("st/f.jsonl", b'{"theirs": 1}\n')
    with pytest.raises(AlreadyExists):
        await twin.write("st/f.jsonl", [[{"a": 1}]], state_key="k", state={"s": 1})
    await twin.write("st/f.jsonl", [[{"a": 1}]], state_key="k", state={"s": 1}, overwrite=True)
    assert [{"a": 1}] == _jsonl_records(container, "st/f.jsonl")


# --- headwater.copy into a blob ------------------------------------------------------------------


def _files(tmp_path, records: list[dict], name: str = "x.jsonl"):
    root = tmp_path / "src"
    root.mkdir(exist_ok=True)
    with (root / name).open("a", encoding="utf-8") as out:
        out.writelines(json.dumps(r) + "\n" for r in records)
    return headwater.connect("files", {"root": str(root)})


async def _copy(mode: str, *args: Any, **options: Any) -> headwater.CopyResult:
    if mode == "async":
        return await headwater.acopy(*args, **options)
    return await asyncio.to_thread(lambda: headwater.copy(*args, **options))


def _blob_records(container, twin, name: str) -> list[dict]:
    if name.endswith(".parquet"):
        return _parquet(container, name).to_pylist()
    if name.endswith(".csv.bz2"):
        text = bz2.decompress(container.download_blob(name).readall()).decode()
        lines = text.splitlines()
        return [dict(zip(lines[0].split(","), line.split(","), strict=True)) for line in lines[1:]]
    return _jsonl_records(container, name)


@pytest.mark.parametrize(
    "dest", ["out/x.jsonl", "out/x.jsonl.gz", "out/x.csv.bz2", "out/x.parquet"]
)
async def test_copy_continues_a_blob_without_repeating_a_record(
    mode, twin, container, tmp_path, dest
):
    """
    copy(files, x.jsonl, blob, state_file=S); records appended to the source; the same
    copy again: the blob holds every record once (the committed blocks are kept and the
    new ones follow; Parquet is rewritten with its old row groups first). A third run
    with nothing new leaves the blob untouched.
    """
    if dest.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    as_text = dest.endswith(".csv.bz2")
    first = [{"id": str(n) if as_text else n, "v": f"a{n}"} for n in range(100)]
    more = [{"id": str(n) if as_text else n, "v": f"b{n}"} for n in range(100, 150)]
    state_file = tmp_path / "copy.state"
    source = _files(tmp_path, first)
    done = await _copy(mode, source, "x.jsonl", twin.connector, dest, state_file=state_file)
    assert 100 == done.records
    assert first == _blob_records(container, twin, dest)
    key = json.loads(state_file.read_text())["key"]
    assert key == _stored_state(container, dest)["key"]
    _files(tmp_path, more)
    again = await _copy(mode, source, "x.jsonl", twin.connector, dest, state_file=state_file)
    assert 50 == again.records
    assert first + more == _blob_records(container, twin, dest)
    assert 150 == _stored_state(container, dest)["state"]["records"]
    etag = container.get_blob_client(dest).get_blob_properties().etag
    idle = await _copy(mode, source, "x.jsonl", twin.connector, dest, state_file=state_file)
    assert 0 == idle.records
    assert etag == container.get_blob_client(dest).get_blob_properties().etag
    if dest.endswith(".csv.bz2"):
        text = bz2.decompress(container.download_blob(dest).readall()).decode()
        assert 1 == text.count("id,v")
    # Blocks kept: no Content-MD5 (fetch checks size and etag); Parquet rewritten: hashed.
    md5 = container.get_blob_client(dest).get_blob_properties().content_settings.content_md5
    assert (md5 is not None) == dest.endswith(".parquet")


async def test_copy_trusts_the_blob_over_a_stale_state_file(mode, twin, container, tmp_path):
    """
    A crash after the blob's commit but before the state file was saved: the next run
    takes the position from the blob, so nothing is copied twice.
    """
    state_file = tmp_path / "copy.state"
    source = _files(tmp_path, [{"n": n} for n in range(10)])
    await _copy(mode, source, "x.jsonl", twin.connector, "out/y.jsonl", state_file=state_file)
    stale = state_file.read_text()
    _files(tmp_path, [{"n": n} for n in range(10, 15)])
    await _copy(mode, source, "x.jsonl", twin.connector, "out/y.jsonl", state_file=state_file)
    state_file.write_text(stale)  # as if the run died right after the commit
    rerun = await _copy(
        mode, source, "x.jsonl", twin.connector, "out/y.jsonl", state_file=state_file
    )
    assert 0 == rerun.records
    assert [{"n": n} for n in range(15)] == _jsonl_records(container, "out/y.jsonl")


class _FlakyConfig(ConnectorConfig):
    pass


class _Flaky(Connector[_FlakyConfig]):
    """A source of 40 records in batches of 10 whose first read breaks after two batches."""

    id = "flaky-test"
    Config = _FlakyConfig
    capabilities = frozenset({Capability.READ, Capability.RESUME})
    broken = True

    def read(self, stream, state=None, *, batch_size=None, **options):
        start = state["next"] if state else 0
        for begin in range(start, 40, 10):
            if self.broken and begin >= start + 20:
                self.broken = False
                raise ConnectionError("the source went away")
            yield Batch(stream, [{"n": n} for n in range(begin, begin + 10)], {"next": begin + 10})


async def test_an_interrupted_copy_commits_nothing_and_the_rerun_is_exact(
    mode, twin, container, tmp_path
):
    """The blob appears only with the complete copy; the rerun copies every record once."""
    state_file = tmp_path / "copy.state"
    source = _Flaky({})
    with pytest.raises((ConnectionError, headwater.HeadwaterError)):
        await _copy(mode, source, "s", twin.connector, "out/z.jsonl", state_file=state_file)
    assert [] == list(container.list_blobs())
    done = await _copy(mode, source, "s", twin.connector, "out/z.jsonl", state_file=state_file)
    assert 40 == done.records
    assert [{"n": n} for n in range(40)] == _jsonl_records(container, "out/z.jsonl")


async def test_copy_of_arrow_batches_into_parquet(mode, twin, container, tmp_path):
    """A Parquet source's Arrow batches land in a Parquet blob as they are (copy t out.parquet)."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    root = tmp_path / "src"
    root.mkdir()
    table = pa.table({"id": list(range(3000)), "name": [f"n{i}" for i in range(3000)]})
    pq.write_table(table, root / "t.parquet", row_group_size=1000)
    source = headwater.connect("files", {"root": str(root)})
    done = await _copy(mode, source, "t.parquet", twin.connector, "out/t.parquet")
    assert 3000 == done.records
    assert table.to_pylist() == _parquet(container, "out/t.parquet").to_pylist()


# --- upload (the base signature) and estimate -------------------------------------------------


async def test_upload_has_the_base_signature(twin, container):
    """upload(item, source, overwrite=...) as `Connector.upload` declares it."""
    await twin.upload("u/a.bin", io.BytesIO(b"one"))
    await twin.upload("u/a.bin", io.BytesIO(b"two"), overwrite=True)
    assert b"two" == container.download_blob("u/a.bin").readall()


async def test_estimate_sums_the_stored_bytes(twin, container):
    """estimate: the bytes of the named blob(s), exact unless one is compressed; rows unknown."""
    container.upload_blob("e/a.jsonl", b'{"a": 1}\n' * 10)
    container.upload_blob("e/b.jsonl", b'{"b": 2}\n' * 5)
    container.upload_blob("e/c.jsonl.gz", gzip.compress(b'{"c": 3}\n'))
    connector = twin.connector

    async def estimate(stream):
        if twin.is_async:
            return await connector.aestimate(stream)
        return connector.estimate(stream)

    one = await estimate("e/a.jsonl")
    assert (None, 90, True) == (one.rows, one.bytes, one.exact)
    both = await estimate("e/*.jsonl")
    assert (135, True) == (both.bytes, both.exact)
    compressed = await estimate("e/")
    sizes = 135 + container.get_blob_client("e/c.jsonl.gz").get_blob_properties().size
    assert (sizes, False) == (compressed.bytes, compressed.exact)
    with pytest.raises(NotFound):
        await estimate("e/none-*.csv")


@pytest.mark.parametrize("dest", ["out/e.csv.gz", "out/e.parquet"])
async def test_copy_of_an_empty_source_then_of_its_records(mode, twin, container, tmp_path, dest):
    """An empty first copy commits an empty blob with its state; the next run fills it once."""
    if dest.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    root = tmp_path / "src"
    root.mkdir()
    (root / "x.jsonl").write_text("")
    source = headwater.connect("files", {"root": str(root)})
    state_file = tmp_path / "copy.state"
    first = await _copy(mode, source, "x.jsonl", twin.connector, dest, state_file=state_file)
    assert 0 == first.records
    assert _stored_state(container, dest)["key"] == json.loads(state_file.read_text())["key"]
    records = [{"id": str(n), "v": f"v{n}"} for n in range(20)]
    _files(tmp_path, records)
    second = await _copy(mode, source, "x.jsonl", twin.connector, dest, state_file=state_file)
    assert 20 == second.records
    assert records == _rows(await twin.read(dest))
    if dest.endswith(".csv.gz"):
        assert 1 == gzip.decompress(container.download_blob(dest).readall()).count(b"id,v")

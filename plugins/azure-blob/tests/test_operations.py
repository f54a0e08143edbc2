"""Every operation against a real Azurite, through the sync and the async API (``mode``)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import warnings
from pathlib import Path

import pytest

from headwater import AlreadyExists, Category, ConfigError, NotFound
from headwater.formats import JsonLinesEncoder
from headwater_azure_blob import AzureBlobConnector

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


def _put(container, name: str, data: bytes, **options) -> None:
    container.upload_blob(name, data, overwrite=True, **options)


def _jsonl(records: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def _records_of(container, name: str) -> list[dict]:
    """The records of a JSON Lines blob, read with the SDK."""
    data = container.download_blob(name).readall().decode()
    return [json.loads(line) for line in data.splitlines()]


# --- check ------------------------------------------------------------------------------


async def test_check_ok(twin, container):
    """check() passes and names the container."""
    result = await twin.check()
    assert (True, None) == (result.ok, result.category)
    assert container.container_name in result.message


async def test_check_missing_container(make_twin):
    """A container that does not exist is not_found on field container."""
    result = await make_twin(container="no-such-container").check()
    assert (False, Category.NOT_FOUND, "container") == (result.ok, result.category, result.field)


async def test_check_unreachable(make_twin):
    """An endpoint nobody listens on is a network failure on field account_url."""
    from tests.fix_services import free_port

    twin = make_twin(
        account_url=f"http://127.0.0.1:{free_port()}/devstoreaccount1", retry={"attempts": 1}
    )
    result = await twin.check()
    assert (False, Category.NETWORK, "account_url") == (result.ok, result.category, result.field)


async def test_check_connection_string(make_twin, azurite, container):
    """A connection string works as the one credential."""
    twin = make_twin(
        account_url=None, account_key=None, connection_string=azurite.connection_string
    )
    assert (await twin.check()).ok


async def test_check_sas_token(make_twin, azurite, container):
    """A container SAS (read/list only) passes check() and can read."""
    import datetime as dt

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    _put(container, "a.jsonl", _jsonl([{"x": 1}]))
    sas = generate_container_sas(
        azurite.account_name,
        container.container_name,
        account_key=azurite.account_key,
        permission=ContainerSasPermissions(read=True, list=True),
        expiry=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
    )
    twin = make_twin(account_key=None, sas_token="?" + sas)
    assert (await twin.check()).ok
    assert [{"x": 1}] == (await twin.read("a.jsonl"))[0].rows()


# --- list -------------------------------------------------------------------------------


async def test_list_hierarchy(twin, container):
    """list() shows prefixes as directories and blobs with size, etag, md5, content type."""
    from azure.storage.blob import ContentSettings

    _put(container, "top.csv", b"a\n1\n", content_settings=ContentSettings(content_type="text/csv"))
    _put(container, "dir/inner.jsonl", b"{}\n")
    _put(container, "dir/sub/deep.bin", b"xyz")
    # Order within a level is the service's (Azurite lists prefixes first).
    root = sorted(await twin.list(), key=lambda i: i.name)
    assert [("dir/", "prefix"), ("top.csv", "blob")] == [(i.name, i.kind) for i in root]
    top = root[1]
    assert 4 == top.size
    assert top.modified is not None
    assert (
        base64.b64encode(hashlib.md5(b"a\n1\n", usedforsecurity=False).digest()).decode()
        == top.extra["content_md5"]
    )
    assert top.extra["etag"].startswith('"')
    assert "text/csv" == top.extra["content_type"]
    inner = await twin.list("dir")
    assert [("dir/inner.jsonl", "blob"), ("dir/sub/", "prefix")] == sorted(
        (i.name, i.kind) for i in inner
    )
    assert ["dir/inner.jsonl", "dir/sub/deep.bin", "top.csv"] == [
        i.name for i in await twin.list(recursive=True)
    ]


async def test_list_single_blob_and_missing(twin, container):
    """list(name) of one blob yields that blob; a path with nothing there is NotFound."""
    _put(container, "dir/one.txt", b"1")
    assert ["dir/one.txt"] == [i.name for i in await twin.list("dir/one.txt")]
    with pytest.raises(NotFound):
        await twin.list("nothing/here")


async def test_list_relative_to_prefix(make_twin, container):
    """With a prefix, names are relative to it and nothing outside it is listed."""
    _put(container, "root/a.txt", b"a")
    _put(container, "other/b.txt", b"b")
    twin = make_twin(prefix="root")
    assert ["a.txt"] == [i.name for i in await twin.list()]


# --- metadata ---------------------------------------------------------------------------


async def test_metadata(twin, container):
    """metadata() returns size, etag, content type, md5 and user metadata."""
    from azure.storage.blob import ContentSettings

    _put(
        container,
        "m.csv",
        b"a,b\n1,2\n",
        metadata={"owner": "qa"},
        content_settings=ContentSettings(content_type="text/csv"),
    )
    meta = await twin.metadata("m.csv")
    assert (8, "text/csv", {"owner": "qa"}, "csv") == (
        meta["size"],
        meta["content_type"],
        meta["metadata"],
        meta["format"],
    )
    assert container.get_blob_client("m.csv").get_blob_properties().etag.strip('"') == meta[
        "etag"
    ].strip('"')


async def test_metadata_missing(twin):
    """metadata() of a missing blob is NotFound."""
    with pytest.raises(NotFound):
        await twin.metadata("absent.bin")


# --- fetch ------------------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_fetch_verified(make_twin, container, tmp_path, concurrency):
    """fetch() downloads in ranges (in parallel too), verifies Content-MD5 and leaves no temp."""
    data = os.urandom(700_000)
    twin = make_twin(chunk_size=64 * 1024, block_size=128 * 1024, max_concurrency=concurrency)
    await twin.upload("deep/dir/file.bin", io.BytesIO(data))
    result = await twin.fetch("deep/dir/file.bin", tmp_path)
    assert tmp_path / "deep" / "dir" / "file.bin" == result.path
    assert data == result.path.read_bytes()
    assert (len(data), True, f"md5:{hashlib.md5(data, usedforsecurity=False).hexdigest()}") == (
        result.size,
        result.verified,
        result.checksum,
    )
    assert ["file.bin"] == os.listdir(tmp_path / "deep" / "dir")


async def test_fetch_without_md5(twin, container, tmp_path):
    """A blob without Content-MD5 is fetched (size checked) and reported unverified."""
    from azure.storage.blob import ContentSettings

    _put(container, "plain.bin", b"abc")
    container.get_blob_client("plain.bin").set_http_headers(ContentSettings(content_md5=None))
    result = await twin.fetch("plain.bin", tmp_path)
    assert (b"abc", False, None) == (result.path.read_bytes(), result.verified, result.checksum)


async def test_fetch_empty_blob(twin, container, tmp_path):
    """A zero-byte blob becomes a zero-byte file."""
    _put(container, "empty.txt", b"")
    result = await twin.fetch("empty.txt", tmp_path)
    assert (b"", 0) == (result.path.read_bytes(), result.size)


async def test_fetch_overwrite_protection(twin, container, tmp_path):
    """fetch(overwrite=False) refuses an existing file and leaves it as it was."""
    _put(container, "f.txt", b"new")
    (tmp_path / "f.txt").write_bytes(b"old")
    with pytest.raises(AlreadyExists):
        await twin.fetch("f.txt", tmp_path, overwrite=False)
    assert b"old" == (tmp_path / "f.txt").read_bytes()
    await twin.fetch("f.txt", tmp_path, overwrite=True)
    assert b"new" == (tmp_path / "f.txt").read_bytes()


async def test_fetch_missing_blob(twin, tmp_path):
    """fetch() of a missing blob is NotFound and writes nothing."""
    with pytest.raises(NotFound):
        await twin.fetch("ghost.bin", tmp_path)
    assert [] == os.listdir(tmp_path)


# --- write / upload ---------------------------------------------------------------------


async def test_write_jsonl_multi_block(make_twin, container):
    """write() streams records through staged blocks; the blob has MD5 and content type."""
    twin = make_twin(block_size=64 * 1024, max_concurrency=3)
    batches = [[{"i": i, "pad": "x" * 100} for i in range(j, j + 500)] for j in range(0, 3000, 500)]
    result = await twin.write("out/records.jsonl", batches)
    assert ("out/records.jsonl", 3000) == (result.stream, result.records)
    blob = container.get_blob_client("out/records.jsonl")
    data = blob.download_blob().readall()
    props = blob.get_blob_properties()
    assert JsonLinesEncoder().encode([r for b in batches for r in b]) == data
    assert len(blob.get_block_list()[0]) > 1
    assert hashlib.md5(data, usedforsecurity=False).digest() == bytes(
        props.content_settings.content_md5
    )
    assert "application/x-ndjson" == props.content_settings.content_type


async def test_write_csv_and_read_back(twin):
    """CSV written by write() reads back as the same records (strings)."""
    rows = [{"id": str(i), "note": f'line\n{i}, "q"'} for i in range(10)]
    await twin.write("t.csv", [rows[:5], rows[5:]])
    assert rows == [r for b in await twin.read("t.csv") for r in b.rows()]


async def test_write_overwrite_protection(twin, container):
    """write() refuses an existing blob by default; overwrite=True (or 'true') replaces it."""
    await twin.write("w.jsonl", [[{"v": 1}]])
    with pytest.raises(AlreadyExists) as info:
        await twin.write("w.jsonl", [[{"v": 2}]])
    assert "overwrite" in (info.value.hint or "")
    assert [{"v": 1}] == _records_of(container, "w.jsonl")
    await twin.write("w.jsonl", [[{"v": 3}]], overwrite="true")
    assert [{"v": 3}] == _records_of(container, "w.jsonl")
    await twin.write("w.jsonl", [[{"v": 4}]], mode="overwrite")
    assert [{"v": 4}] == _records_of(container, "w.jsonl")


async def test_upload_file_and_overwrite(make_twin, container, tmp_path):
    """upload() of a local file (multi-block) sets MD5; a second upload needs overwrite."""
    twin = make_twin(block_size=64 * 1024, max_concurrency=4)
    data = os.urandom(300_000)
    source = tmp_path / "src.parquet"
    source.write_bytes(data)
    result = await twin.upload("files/src.parquet", source)
    props = container.get_blob_client("files/src.parquet").get_blob_properties()
    assert (len(data), f"md5:{hashlib.md5(data, usedforsecurity=False).hexdigest()}") == (
        result.size,
        result.checksum,
    )
    assert hashlib.md5(data, usedforsecurity=False).digest() == bytes(
        props.content_settings.content_md5
    )
    assert "application/vnd.apache.parquet" == props.content_settings.content_type
    with pytest.raises(AlreadyExists):
        await twin.upload("files/src.parquet", io.BytesIO(b"other"))
    await twin.upload("files/src.parquet", io.BytesIO(b"other"), overwrite=True)
    assert b"other" == container.download_blob("files/src.parquet").readall()


async def test_upload_without_checksum(make_twin, container, tmp_path):
    """upload(checksum=False) stores no Content-MD5; fetch then verifies size only."""
    twin = make_twin(block_size=64 * 1024)
    data = os.urandom(200_000)
    result = await twin.upload("raw.bin", io.BytesIO(data), checksum=False)
    props = container.get_blob_client("raw.bin").get_blob_properties()
    assert (None, None) == (result.checksum, props.content_settings.content_md5)
    fetched = await twin.fetch("raw.bin", tmp_path)
    assert (data, False) == (fetched.path.read_bytes(), fetched.verified)


@pytest.mark.parametrize("size", [3 * MiB, 2 * 8 * MiB + 1], ids=["one-request", "blocks"])
async def test_upload_of_default_sized_blocks_warns_nothing(twin, container, size):
    """
    Default-sized blocks (8 MiB) go out without a warning: aiohttp warns on every request
    body over 1 MiB passed as bytes, which an application running with warnings as
    errors would see as a failed upload.
    """
    data = os.urandom(size)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = await twin.upload("big.bin", io.BytesIO(data))
    assert [] == [str(w.message) for w in caught]
    assert hashlib.md5(data, usedforsecurity=False).digest() == bytes(
        container.get_blob_client("big.bin").get_blob_properties().content_settings.content_md5
    )
    assert size == result.size


async def test_write_failure_leaves_no_blob(twin, container):
    """A record source that fails mid-way leaves no blob behind."""

    def batches():
        yield [{"a": 1}]
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError):
        await twin.write("broken.jsonl", batches())
    assert [] == list(container.list_blobs())


# --- read -------------------------------------------------------------------------------


async def test_read_glob_and_resume(twin, container):
    """read(glob) covers matching blobs in order; every state resumes exactly after it."""
    for day in ("01", "02", "03"):
        _put(container, f"logs/2024-{day}/a.jsonl", _jsonl([{"d": day, "n": n} for n in range(5)]))
    _put(container, "logs/2024-02/skip.csv", b"a\n1\n")
    batches = await twin.read("logs/*/a.jsonl", batch_size=2)
    records = [r for b in batches for r in b.rows()]
    assert [{"d": d, "n": n} for d in ("01", "02", "03") for n in range(5)] == records
    assert 15 == batches[-1].state["rows"]
    for index, batch in enumerate(batches):
        rest = await twin.read("logs/*/a.jsonl", batch.state, batch_size=2)
        expected = [r for b in batches[index + 1 :] for r in b.rows()]
        assert expected == [r for b in rest for r in b.rows()]


async def test_read_csv_resume_uses_saved_header(twin, container):
    """A CSV read resumed mid-blob yields dicts keyed by the header."""
    _put(container, "c.csv", b"k,v\n1,a\n2,b\n3,c\n")
    first = (await twin.read("c.csv", batch_size=1))[0]
    rest = await twin.read("c.csv", first.state, batch_size=1)
    assert [{"k": "2", "v": "b"}, {"k": "3", "v": "c"}] == [r for b in rest for r in b.rows()]


async def test_read_directory_and_missing(twin, container):
    """read('dir/') covers blobs with a known format below it; no match is NotFound."""
    _put(container, "d/x.jsonl", _jsonl([{"a": 1}]))
    _put(container, "d/y.bin", b"\x00")
    assert [{"a": 1}] == [r for b in await twin.read("d/") for r in b.rows()]
    with pytest.raises(NotFound):
        await twin.read("nope/*.jsonl")


async def test_read_changed_blob_refuses_state(twin, container):
    """A state for a blob that was replaced since is refused, not silently mixed."""
    _put(container, "v.jsonl", _jsonl([{"a": 1}, {"a": 2}]))
    state = (await twin.read("v.jsonl", batch_size=1))[0].state
    _put(container, "v.jsonl", _jsonl([{"a": 9}, {"a": 8}]))
    with pytest.raises(ConfigError) as info:
        await twin.read("v.jsonl", state)
    assert "state" == info.value.field


async def test_read_parquet_arrow_and_resume(twin, container):
    """Parquet blobs yield Arrow batches; the row state resumes across row groups."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"n": list(range(25)), "s": [f"r{i}" for i in range(25)]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=10)
    _put(container, "p/data.parquet", buffer.getvalue())
    batches = await twin.read("p/data.parquet", batch_size=4)
    assert all(b.is_arrow for b in batches)
    assert list(range(25)) == [r["n"] for b in batches for r in b.rows()]
    middle = batches[3].state
    rest = await twin.read("p/data.parquet", middle, batch_size=4)
    assert list(range(middle["row"], 25)) == [r["n"] for b in rest for r in b.rows()]


async def test_unknown_options_refused(twin):
    """Unknown read/write options are config errors, not silently ignored."""
    with pytest.raises(ConfigError):
        await twin.read("x.jsonl", colour="blue")
    with pytest.raises(ConfigError):
        await twin.write("x.jsonl", [[{"a": 1}]], colour="blue")


async def test_closed_connector_refuses(config):
    """A closed connector refuses further work; closing twice is harmless."""
    connector = AzureBlobConnector(config)
    assert connector.check().ok
    connector.close()
    connector.close()
    from headwater import ConnectorError

    with pytest.raises(ConnectorError):
        connector.metadata("x")


async def test_write_read_round_trip_path(twin, tmp_path: Path):
    """Records written to JSON Lines fetch back byte-identical to headwater's own encoding."""
    records = [{"k": i, "u": "ü"} for i in range(100)]
    await twin.write("rt/data.ndjson", [records])
    result = await twin.fetch("rt/data.ndjson", tmp_path)
    assert JsonLinesEncoder().encode(records) == result.path.read_bytes()
    assert records == [json.loads(line) for line in result.path.read_text().splitlines()]

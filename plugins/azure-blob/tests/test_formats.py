"""
Blobs as real producers leave them, against Azurite: a spreadsheet's CSV with a byte-order
mark, compressed JSON Lines by suffix, blobs stored with a Content-Encoding, NULL and ''
in CSV, compressed writes, and names longer than a local file system takes. The blobs are
made with the Azure SDK and the standard library's own writers, not with the connector.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import io
import json
import lzma
import os
import random
import tracemalloc

import pytest

from headwater import ConfigError, ConnectionFailed, IntegrityError, NotFound

pytestmark = pytest.mark.integration


def _settings(**options):
    from azure.storage.blob import ContentSettings

    return ContentSettings(**options)


def _rows(batches) -> list[dict]:
    return [row for batch in batches for row in batch.rows()]


def _events(count: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    return [
        {
            "id": n,
            "kind": rng.choice("abcde"),
            "value": rng.random(),
            "tag": f"t{rng.randrange(10**6)}",
        }
        for n in range(count)
    ]


def _jsonl(records: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def _zstd(data: bytes) -> bytes:
    zstandard = pytest.importorskip("zstandard")
    return zstandard.ZstdCompressor().compress(data)


COMPRESSORS = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress, ".zst": _zstd}


async def _fetch_or_error(twin, name, dest):
    try:
        return await twin.fetch(name, dest)
    except ConfigError as exc:
        return exc


async def _resumes_exactly(twin, stream: str, batches, **options) -> None:
    """Every batch's state resumes with exactly the records after it."""
    everything = _rows(batches)
    done = 0
    for batch in batches:
        done += len(batch)
        rest = await twin.read(stream, json.loads(json.dumps(batch.state)), **options)
        assert everything[done:] == _rows(rest), f"resuming after record {done}"


# --- reading what others wrote ------------------------------------------------------------


async def test_csv_with_a_utf8_bom_reads_clean_column_names(twin, container):
    """A CSV written by Python's csv with utf-8-sig (as spreadsheets do) reads `id`, not `\\ufeffid`."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["id", "name"])
    writer.writerows([[n, f"n{n}"] for n in range(5)])
    container.upload_blob("sheet.csv", text.getvalue().encode("utf-8-sig"))
    batches = await twin.read("sheet.csv", batch_size=2)
    assert [{"id": str(n), "name": f"n{n}"} for n in range(5)] == _rows(batches)
    assert ["id", "name"] == batches[0].state["header"]
    await _resumes_exactly(twin, "sheet.csv", batches, batch_size=2)


@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
async def test_compressed_blobs_read_by_suffix_and_resume_exactly(twin, container, suffix):
    """events.jsonl.gz/.bz2/.xz/.zst made by the standard tools read by suffix; states resume exactly."""
    records = _events(3000)
    container.upload_blob(f"logs/events.jsonl{suffix}", COMPRESSORS[suffix](_jsonl(records)))
    batches = await twin.read(f"logs/events.jsonl{suffix}", batch_size=700)
    assert records == _rows(batches)
    await _resumes_exactly(twin, f"logs/events.jsonl{suffix}", batches, batch_size=700)


async def test_directory_read_covers_compressed_blobs(twin, container):
    """A directory read takes compressed blobs as known formats, in name order."""
    container.upload_blob("d/a.jsonl.gz", gzip.compress(_jsonl([{"a": 1}])))
    container.upload_blob("d/b.csv.bz2", bz2.compress(b"b\n2\n"))
    container.upload_blob("d/c.bin.gz", gzip.compress(b"\x00"))
    assert [{"a": 1}, {"b": "2"}] == _rows(await twin.read("d/"))


def test_compressed_read_is_streamed_in_bounded_memory(config, container):
    """
    A 25 MB JSON Lines blob, gzipped, is read holding about what an uncompressed read
    holds, not its size: two ranged GETs of 1 MiB (the one decoded and the next, which
    downloads meanwhile; the SDK's copies make each about 3 MB), within the bound the
    contract suite sets every connector's read (16 MiB).
    """
    from headwater_azure_blob import AzureBlobConnector

    records = _events(330_000, seed=3)
    data = _jsonl(records)
    assert len(data) > 24_000_000
    container.upload_blob("big/events.jsonl.gz", gzip.compress(data, compresslevel=1))
    container.upload_blob("big/events.jsonl", data)
    del records
    peaks = {}
    with AzureBlobConnector(config) as connector:
        list(connector.read("big/events.jsonl", batch_size=1000))  # imports, pools
        for name in ("big/events.jsonl", "big/events.jsonl.gz"):
            tracemalloc.start()
            try:
                count = sum(len(b) for b in connector.read(name, batch_size=1000))
                peaks[name] = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert 330_000 == count
    plain, compressed = peaks["big/events.jsonl"], peaks["big/events.jsonl.gz"]
    assert compressed < 16 * 2**20, f"peak {compressed} bytes for {len(data)} decoded bytes"
    assert compressed < plain + 4_000_000, f"gzip read peak {compressed}, plain {plain}"


@pytest.mark.parametrize(("suffix", "coding"), [(".gz", None), (".zst", None), ("", "gzip")])
def test_a_blob_that_compresses_a_thousandfold_is_read_in_bounded_memory(
    config, container, suffix, coding
):
    """
    50 MB of JSON Lines that compress to about 100 KB (by suffix, or stored with a
    Content-Encoding) are read within the contract's bound (16 MiB), as a blob that
    compresses threefold is: decompression gives pieces of bounded size, however few
    stored bytes they come from.
    """
    from headwater_azure_blob import AzureBlobConnector

    pad = "x" * 1000
    data = "".join(f'{{"id": {i}, "pad": "{pad}"}}\n' for i in range(50_000)).encode()
    stored = COMPRESSORS[suffix or ".gz"](data)
    assert len(stored) < 2**20 < len(data) // 40  # one ranged GET, inflating 40x and more
    name = f"bomb/padded.jsonl{suffix}"
    options = {"content_settings": _settings(content_encoding=coding)} if coding else {}
    container.upload_blob(name, stored, **options)
    del data, stored
    with AzureBlobConnector(config) as connector:
        list(connector.read(name, batch_size=1000))  # imports, pools
        tracemalloc.start()
        try:
            count = 0
            for batch in connector.read(name, batch_size=1000):
                assert list(range(count, count + len(batch))) == [r["id"] for r in batch.rows()]
                count += len(batch)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert 50_000 == count
    assert peak < 16 * 2**20, f"peak {peak} bytes"


async def test_content_encoding_gzip_reads_decoded_and_fetches_the_stored_bytes(
    twin, container, tmp_path
):
    """
    A blob stored with Content-Encoding: gzip (set through the SDK) reads as its decoded
    records; fetch writes the stored bytes, checked against their size and Content-MD5.
    """
    records = _events(2000)
    stored = gzip.compress(_jsonl(records))
    md5 = hashlib.md5(stored, usedforsecurity=False).digest()
    container.upload_blob(
        "enc/events.jsonl",
        stored,
        content_settings=_settings(content_encoding="gzip", content_md5=bytearray(md5)),
    )
    batches = await twin.read("enc/events.jsonl", batch_size=600)
    assert records == _rows(batches)
    await _resumes_exactly(twin, "enc/events.jsonl", batches, batch_size=600)
    fetched = await twin.fetch("enc/events.jsonl", tmp_path)
    assert (stored, len(stored), True) == (
        fetched.path.read_bytes(),
        fetched.size,
        fetched.verified,
    )
    assert f"md5:{md5.hex()}" == fetched.checksum


async def test_unknown_content_encoding_is_a_config_error_naming_it(twin, container):
    """A Content-Encoding the connector cannot undo (br) is named, as a config error."""
    container.upload_blob(
        "enc/x.jsonl", b"\x1b\x00\x00", content_settings=_settings(content_encoding="br")
    )
    with pytest.raises(ConfigError, match="'br'") as info:
        await twin.read("enc/x.jsonl")
    assert "content_encoding" == info.value.field


async def test_undecodable_content_is_not_a_network_failure(twin, container):
    """Bytes that are not gzip under Content-Encoding: gzip fail as corrupt, not ConnectionFailed."""
    container.upload_blob(
        "enc/bad.jsonl",
        b'{"not": "gzip at all"}\n' * 100,
        content_settings=_settings(content_encoding="gzip"),
    )
    with pytest.raises(IntegrityError, match="gzip") as info:
        await twin.read("enc/bad.jsonl")
    assert not isinstance(info.value, ConnectionFailed)
    assert "enc/bad.jsonl" in info.value.message


async def test_read_checks_the_stored_bytes_against_content_md5(twin, container):
    """A read from the first byte fails when the stored bytes do not hash to the Content-MD5."""
    container.upload_blob("m/a.jsonl", _jsonl([{"a": 1}, {"a": 2}]))
    container.get_blob_client("m/a.jsonl").set_http_headers(
        _settings(content_md5=bytearray(hashlib.md5(b"other", usedforsecurity=False).digest()))
    )
    with pytest.raises(IntegrityError, match="Content-MD5"):
        await twin.read("m/a.jsonl")


# --- writing ------------------------------------------------------------------------------


async def test_csv_null_is_unquoted_and_empty_string_quoted(twin, container):
    """NULL and '' stay apart in a CSV blob, as PostgreSQL's CSV and pyarrow read them."""
    rows = [{"id": "1", "note": None}, {"id": "2", "note": ""}, {"id": "3", "note": "x"}]
    await twin.write("n/t.csv", [rows])
    assert b'id,note\n1,\n2,""\n3,x\n' == container.download_blob("n/t.csv").readall()
    assert rows == _rows(await twin.read("n/t.csv"))


@pytest.mark.parametrize("suffix", [".gz", ".zst"])
async def test_write_compresses_by_suffix(twin, container, suffix):
    """write('out.jsonl.gz') stores gzip bytes that the standard tools decode to the records."""
    records = _events(500)
    await twin.write(f"out/e.jsonl{suffix}", [records[:200], records[200:]])
    stored = container.download_blob(f"out/e.jsonl{suffix}").readall()
    if suffix == ".gz":
        decoded = gzip.decompress(stored)
    else:
        zstandard = pytest.importorskip("zstandard")
        decoded = zstandard.ZstdDecompressor().decompressobj().decompress(stored)
    assert records == [json.loads(line) for line in decoded.splitlines()]
    props = container.get_blob_client(f"out/e.jsonl{suffix}").get_blob_properties()
    assert props.content_settings.content_type in ("application/gzip", "application/zstd")
    assert records == _rows(await twin.read(f"out/e.jsonl{suffix}"))


# --- names a local file system cannot hold ------------------------------------------------------


async def test_fetch_of_a_name_too_long_for_the_file_system_fails_before_any_request(
    mode, make_twin, tmp_path
):
    """A segment over PC_NAME_MAX is one line naming the blob and the limit; nothing is asked."""
    from tests.fix_services import free_port

    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    nowhere = make_twin(
        account_url=f"http://127.0.0.1:{free_port()}/devstoreaccount1", retry={"attempts": 1}
    )  # any request would fail with ConnectionFailed
    name = "dir/" + "x" * (limit + 1) + ".csv"
    with pytest.raises(ConfigError) as info:
        await nowhere.fetch(name, tmp_path)
    assert name in info.value.message
    assert str(limit) in info.value.message
    assert "\n" not in str(info.value)
    assert [] == list(tmp_path.iterdir())


async def test_long_names_are_read_and_fetched_where_they_fit(twin, container, tmp_path):
    """read() takes any blob name; a name that fits the file system fetches, or fails in one line."""
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    long_name = "l/" + "y" * (limit + 40) + ".jsonl"
    container.upload_blob(long_name, _jsonl([{"a": 1}]))
    assert [{"a": 1}] == _rows(await twin.read(long_name))
    near = "l/" + "z" * (limit - 6) + ".jsonl"  # fits; its temporary file's name may not
    container.upload_blob(near, _jsonl([{"b": 2}]))
    outcome = await _fetch_or_error(twin, near, tmp_path)
    if isinstance(outcome, ConfigError):
        assert near in outcome.message
        assert "temporary file" in outcome.message
    else:
        assert _jsonl([{"b": 2}]) == outcome.path.read_bytes()
    with pytest.raises(NotFound):
        await twin.fetch("l/" + "q" * (limit - 6), tmp_path)

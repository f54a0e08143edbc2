"""
Azure Blob Storage: headwater-azure-blob against the raw azure-storage-blob calls, on Azurite.

Scenarios (full size / ``--quick``):

* upload a 256 MiB file (1 MiB) at concurrency 1 and 4: ``BlobClient.upload_blob`` vs
  ``AzureBlobConnector.upload`` / ``aupload`` (which also compute and set Content-MD5);
  beside them the raw SDK doing that work too (hashing as it reads, then setting the
  header), so the table separates what the checksum costs from what headwater costs;
* download it at concurrency 1 and 4: ``download_blob().readinto(file)`` vs ``fetch`` /
  ``afetch`` (temp file + rename, size/etag/Content-MD5 verified);
* fetch a 1 GiB blob (full size only) to show that peak RSS does not grow with blob size;
* list 10,000 blobs (200): ``ContainerClient.list_blobs`` vs ``list(recursive=True)``;
* read a 1 GiB ``.jsonl.gz`` blob (1 MiB) as records (issue 22): ``gzip -dc FILE | wc -l``
  on a local copy of the same file is the baseline the issue names; beside it the raw SDK
  streaming the blob through ``zlib`` and ``orjson.loads`` per line (what a hand-written
  Python reader does at best), ``read()`` of the blob, and ``read()`` of the local copy
  with the ``files`` connector (the same format layer without the network). Every case
  counts what it read and checks the count. ``gzip | wc`` only counts lines; the others
  make a Python dict of every record, which is what ``read`` delivers.

The async twins are compared with the same calls on the SDK's aio client (the "ratio
against" column), the sync methods with the sync client.

Both sides use the same block size, download chunk size and concurrency, and import
their libraries before the clock starts. Downloaded files and uploaded blobs are deleted
after the clock stops (deleting a file that fetch has fsynced costs more than deleting one
still in the page cache, which is not part of either side's download). The peak RSS
column is each worker process's own high-water mark (``VmHWM``, which unlike
``ru_maxrss`` does not inherit the harness's peak from before ``exec``). Azurite runs on
the same machine and shares its cores, so ratios matter, not absolute rates; with
``--separate-cores`` it runs on a CPU of its own and the cases on the others. Each
scenario gets a fresh Azurite (or uses ``HEADWATER_TEST_AZURITE_BLOB_URL``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench._harness import Case, Done, Scenario, service_affinity

try:
    # The worker imports this module before it starts the clock: importing the SDK and
    # the connector here keeps import time out of every case's figure, on both sides.
    import azure.storage.blob
    import azure.storage.blob.aio  # noqa: F401

    # The package's __init__ is lazy: name the module that holds the connector.
    import headwater_azure_blob._connector  # noqa: F401
except ImportError:  # reported per case when a case needs them
    pass

MiB = 1024 * 1024
BLOCK = 8 * MiB
CHUNK = 4 * MiB
ACCOUNT = "devstoreaccount1"

_azurite: Any = None


def scenarios(quick: bool) -> list[Scenario]:
    """The azure-blob scenarios; ``quick`` uses tiny sizes (CI smoke run)."""
    here = "bench.bench_azure_blob"
    # Azurite shares the machine's cores and the same case swings by a third between
    # runs: keep the fastest of six, one round led by each case of the largest scenario.
    repeat = 1 if quick else 6
    size_label = "1 MiB" if quick else "256 MiB"
    out: list[Scenario] = []
    for concurrency in (1, 4):
        kwargs = {"concurrency": concurrency}
        out.append(
            Scenario(
                f"azure-blob: upload {size_label}, concurrency {concurrency}",
                [
                    Case("raw upload_blob", f"{here}:raw_upload", kwargs),
                    Case("headwater upload()", f"{here}:hw_upload", kwargs),
                    Case("raw aio upload_blob", f"{here}:raw_aupload", kwargs),
                    Case(
                        "headwater aupload()",
                        f"{here}:hw_aupload",
                        kwargs,
                        versus="raw aio upload_blob",
                    ),
                    Case("raw upload_blob + Content-MD5", f"{here}:raw_upload_md5", kwargs),
                    Case(
                        "raw aio upload_blob + Content-MD5",
                        f"{here}:raw_aupload_md5",
                        kwargs,
                        versus="raw aio upload_blob",
                    ),
                    Case(
                        "headwater upload(checksum=False)",
                        f"{here}:hw_upload",
                        {**kwargs, "checksum": False},
                    ),
                    Case(
                        "headwater aupload(checksum=False)",
                        f"{here}:hw_aupload",
                        {**kwargs, "checksum": False},
                        versus="raw aio upload_blob",
                    ),
                ],
                baseline="raw upload_blob",
                setup=f"{here}:setup_upload",
                teardown=f"{here}:teardown",
                goal=0.9,
                unit="bytes",
                repeat=repeat,
            )
        )
    for concurrency in (1, 4):
        kwargs = {"concurrency": concurrency}
        out.append(
            Scenario(
                f"azure-blob: download {size_label}, concurrency {concurrency}",
                [
                    Case("raw download_blob().readinto", f"{here}:raw_download", kwargs),
                    Case("headwater fetch()", f"{here}:hw_fetch", kwargs),
                    Case("raw aio download_blob().readinto", f"{here}:raw_adownload", kwargs),
                    Case(
                        "headwater afetch()",
                        f"{here}:hw_afetch",
                        kwargs,
                        versus="raw aio download_blob().readinto",
                    ),
                ],
                baseline="raw download_blob().readinto",
                setup=f"{here}:setup_download",
                teardown=f"{here}:teardown",
                # Issue 19 asks concurrency 4 to match the raw SDK; concurrency 1 keeps the
                # first benchmarks' goal.
                goal=1.0 if concurrency == 4 else 0.9,
                unit="bytes",
                repeat=repeat,
            )
        )
    if not quick:
        kwargs = {"concurrency": 4}
        out.append(
            Scenario(
                "azure-blob: download 1 GiB, concurrency 4 (peak RSS)",
                [
                    Case("raw download_blob().readinto", f"{here}:raw_download", kwargs),
                    Case("headwater fetch()", f"{here}:hw_fetch", kwargs),
                ],
                baseline="raw download_blob().readinto",
                setup=f"{here}:setup_download_1g",
                teardown=f"{here}:teardown",
                goal=0.9,
                unit="bytes",
                repeat=repeat,
            )
        )
    out.append(
        Scenario(
            f"azure-blob: read a {'1 MiB' if quick else '1 GiB'} .jsonl.gz blob (records)",
            [
                Case("gzip -dc | wc -l", f"{here}:gzip_count"),
                Case("raw SDK + zlib + orjson", f"{here}:raw_read_jsonl_gz"),
                Case("headwater read()", f"{here}:hw_read_jsonl_gz"),
                Case("files read() (local copy)", f"{here}:files_read_jsonl_gz"),
            ],
            baseline="gzip -dc | wc -l",
            setup=f"{here}:setup_jsonl_gz",
            teardown=f"{here}:teardown",
            goal=0.8,
            unit="records",
            repeat=1 if quick else 3,
        )
    )
    count_label = "200" if quick else "10,000"
    out.append(
        Scenario(
            f"azure-blob: list {count_label} blobs",
            [
                Case("raw list_blobs", f"{here}:raw_list"),
                Case("headwater list(recursive=True)", f"{here}:hw_list"),
                Case("raw aio list_blobs", f"{here}:raw_alist"),
                Case(
                    "headwater alist(recursive=True)",
                    f"{here}:hw_alist",
                    versus="raw aio list_blobs",
                ),
            ],
            baseline="raw list_blobs",
            setup=f"{here}:setup_list",
            teardown=f"{here}:teardown",
            goal=1.0,  # issue 19
            unit="blobs",
            repeat=repeat,
        )
    )
    return out


# --- Azurite and data (run in the parent process) ------------------------------------------


def _endpoint() -> str:
    """
    The Azurite of the running scenario, started by its setup and stopped by its
    teardown, so each scenario starts from a fresh process and an empty store: Azurite
    slows down as it runs (the same upload took 2.0 s in a scenario's first round and
    3.0 s from its fourth), and nothing one scenario leaves carries into the next.
    ``HEADWATER_TEST_AZURITE_BLOB_URL`` names a running one instead.
    """
    global _azurite
    url = os.environ.get("HEADWATER_TEST_AZURITE_BLOB_URL")
    if url:
        return url
    if _azurite is None:
        from tests.fix_azurite import start_azurite

        with service_affinity():  # its own CPU with --separate-cores
            _azurite = start_azurite()
    return str(_azurite.blob_url)


@atexit.register
def _stop_azurite() -> None:
    global _azurite
    if _azurite is not None:
        _azurite.stop()
        _azurite = None


def _key() -> str:
    # Azurite's well-known development key (public, documented by Microsoft).
    return (
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
    )


def _service(url: str, **options: Any) -> Any:
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient(
        url, credential={"account_name": ACCOUNT, "account_key": _key()}, **options
    )


def _new_container(url: str) -> str:
    name = f"bench-{uuid.uuid4().hex[:12]}"
    _service(url).create_container(name)
    return name


def _random_file(directory: Path, size: int) -> Path:
    path = directory / "payload.bin"
    with path.open("wb") as handle:
        left = size
        while left:
            piece = os.urandom(min(left, 16 * MiB))
            handle.write(piece)
            left -= len(piece)
    return path


def setup_upload(quick: bool) -> dict[str, Any]:
    """A local random file and an empty container."""
    url = _endpoint()
    work = Path(tempfile.mkdtemp(prefix="hw-bench-az-"))
    size = MiB if quick else 256 * MiB
    path = _random_file(work, size)
    return {"url": url, "container": _new_container(url), "path": str(path), "work": str(work)}


def _setup_blob(size: int) -> dict[str, Any]:
    import hashlib

    from azure.storage.blob import ContentSettings

    url = _endpoint()
    work = Path(tempfile.mkdtemp(prefix="hw-bench-az-"))
    path = _random_file(work, size)
    md5 = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(16 * MiB):
            md5.update(chunk)
    container = _new_container(url)
    blob = _service(url, max_block_size=BLOCK, max_single_put_size=BLOCK).get_blob_client(
        container, "payload.bin"
    )
    with path.open("rb") as handle:
        # Content-MD5 set as headwater's own uploads set it, so fetch verifies it.
        blob.upload_blob(
            handle,
            length=size,
            max_concurrency=4,
            content_settings=ContentSettings(content_md5=bytearray(md5.digest())),
        )
    path.unlink()
    return {"url": url, "container": container, "blob": "payload.bin", "work": str(work)}


def setup_download(quick: bool) -> dict[str, Any]:
    """A blob with Content-MD5 to download."""
    return _setup_blob(MiB if quick else 256 * MiB)


def setup_download_1g(quick: bool) -> dict[str, Any]:
    """A 1 GiB blob with Content-MD5."""
    return _setup_blob(1024 * MiB)


_JSONL_GZ = "events.jsonl.gz"


def _write_jsonl_gz(path: Path, compressed: int) -> int:
    """
    JSON Lines records of ten fields (ints, a float, strings, a timestamp, a bool, an
    object, a date, a uuid), gzip level 6 (gzip's default), until the file holds
    ``compressed`` bytes; returns the record count.
    """
    import gzip

    records = 0
    with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) as out:
        while raw.tell() < compressed:
            lines = []
            for i in range(records, records + 10_000):
                h = format(i * 2654435761 % 2**64, "016x")
                lines.append(
                    f'{{"id":{i},"n":{i % 1000},"x":{i / 3!r},"amount":"{i // 100}.{i % 100:02d}",'
                    f'"s":"{h}","ts":"2024-01-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:'
                    f'{i % 60:02d}+00:00","flag":{"true" if i % 2 else "false"},'
                    f'"j":{{"k":{i % 7},"tag":"v{i % 13}"}},"d":"2000-01-{i % 28 + 1:02d}",'
                    f'"u":"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[1:4]}-{h}{h[:4]}"}}\n'
                )
            out.write("".join(lines).encode())
            records += len(lines)
    return records


def setup_jsonl_gz(quick: bool) -> dict[str, Any]:
    """A ``.jsonl.gz`` blob and a local copy of the same file."""
    url = _endpoint()
    work = Path(tempfile.mkdtemp(prefix="hw-bench-az-"))
    path = work / _JSONL_GZ
    records = _write_jsonl_gz(path, MiB if quick else 1024 * MiB)
    container = _new_container(url)
    blob = _service(url, max_block_size=BLOCK, max_single_put_size=BLOCK).get_blob_client(
        container, _JSONL_GZ
    )
    with path.open("rb") as handle:
        blob.upload_blob(handle, length=path.stat().st_size, max_concurrency=4)
    return {"url": url, "container": container, "work": str(work), "records": records}


def setup_list(quick: bool) -> dict[str, Any]:
    """A container with many small blobs under nested prefixes."""
    from azure.storage.blob.aio import BlobServiceClient

    url = _endpoint()
    container = _new_container(url)
    count = 200 if quick else 10_000

    async def fill() -> None:
        credential = {"account_name": ACCOUNT, "account_key": _key()}
        async with BlobServiceClient(url, credential=credential) as service:
            client = service.get_container_client(container)
            limit = asyncio.Semaphore(16)

            async def put(i: int) -> None:
                async with limit:
                    await client.upload_blob(f"p{i % 10}/q{(i // 10) % 10}/b{i:05d}", b"")

            await asyncio.gather(*(put(i) for i in range(count)))

    asyncio.run(fill())
    return {"url": url, "container": container, "count": count, "work": ""}


def teardown(url: str, container: str, work: str, **_: Any) -> None:
    """Delete the container and local files; stop the scenario's Azurite."""
    _service(url).delete_container(container)
    if work:
        shutil.rmtree(work, ignore_errors=True)
    _stop_azurite()


# --- the cases (each in a fresh process) -------------------------------------------------


def _connector(url: str, container: str, concurrency: int = 4) -> Any:
    from headwater_azure_blob import AzureBlobConnector

    return AzureBlobConnector(
        {
            "account_url": url,
            "account_key": _key(),
            "container": container,
            "max_concurrency": concurrency,
            "block_size": BLOCK,
            "chunk_size": CHUNK,
        }
    )


def raw_upload(url: str, container: str, path: str, concurrency: int, **_: Any) -> Done:
    """upload_blob from an open file, same block size and concurrency."""
    service = _service(url, max_block_size=BLOCK, max_single_put_size=BLOCK)
    size = os.path.getsize(path)
    name = f"raw-{uuid.uuid4().hex}"
    with open(path, "rb") as handle:
        service.get_blob_client(container, name).upload_blob(
            handle, length=size, max_concurrency=concurrency
        )
    return _uploaded(url, container, name, size)


def _aservice(url: str, **options: Any) -> Any:
    from azure.storage.blob.aio import BlobServiceClient

    return BlobServiceClient(
        url, credential={"account_name": ACCOUNT, "account_key": _key()}, **options
    )


def raw_aupload(url: str, container: str, path: str, concurrency: int, **_: Any) -> Done:
    """The aio client's upload_blob from an open file, same block size and concurrency."""
    size = os.path.getsize(path)
    name = f"rawa-{uuid.uuid4().hex}"

    async def run() -> None:
        async with _aservice(url, max_block_size=BLOCK, max_single_put_size=BLOCK) as service:
            with open(path, "rb") as handle:
                await service.get_blob_client(container, name).upload_blob(
                    handle, length=size, max_concurrency=concurrency
                )

    asyncio.run(run())
    return _uploaded(url, container, name, size)


class _HashingReader:
    """
    A file as the raw SDK reads it for an upload with Content-MD5: in order (not
    seekable, so the SDK reads blocks one after another instead of in parallel ranges),
    hashing each block as it is read.
    """

    def __init__(self, handle: Any, md5: Any) -> None:
        self._handle = handle
        self._md5 = md5

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._handle.read(size)
        self._md5.update(data)
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


def _content_md5(digest: bytes) -> Any:
    from azure.storage.blob import ContentSettings

    return ContentSettings(content_type="application/octet-stream", content_md5=bytearray(digest))


def raw_upload_md5(url: str, container: str, path: str, concurrency: int, **_: Any) -> Done:
    """
    What the raw SDK takes to leave a blob with Content-MD5 as headwater does: hash the
    blocks as upload_blob reads them, then set the header (one more request).
    """
    import hashlib

    service = _service(url, max_block_size=BLOCK, max_single_put_size=BLOCK)
    size = os.path.getsize(path)
    name = f"rawm-{uuid.uuid4().hex}"
    blob = service.get_blob_client(container, name)
    md5 = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        blob.upload_blob(_HashingReader(handle, md5), length=size, max_concurrency=concurrency)
    blob.set_http_headers(content_settings=_content_md5(md5.digest()))
    return _uploaded(url, container, name, size)


def raw_aupload_md5(url: str, container: str, path: str, concurrency: int, **_: Any) -> Done:
    """`raw_upload_md5` on the aio client."""
    import hashlib

    size = os.path.getsize(path)
    name = f"rawam-{uuid.uuid4().hex}"

    async def run() -> None:
        async with _aservice(url, max_block_size=BLOCK, max_single_put_size=BLOCK) as service:
            blob = service.get_blob_client(container, name)
            md5 = hashlib.md5(usedforsecurity=False)
            with open(path, "rb") as handle:
                await blob.upload_blob(
                    _HashingReader(handle, md5), length=size, max_concurrency=concurrency
                )
            await blob.set_http_headers(content_settings=_content_md5(md5.digest()))

    asyncio.run(run())
    return _uploaded(url, container, name, size)


def hw_upload(
    url: str, container: str, path: str, concurrency: int, checksum: bool = True, **_: Any
) -> Done:
    """AzureBlobConnector.upload (staged blocks, Content-MD5 computed and set by default)."""
    name = f"hw-{uuid.uuid4().hex}"
    with _connector(url, container, concurrency) as connector:
        size = int(connector.upload(name, path, checksum=checksum).size)
    return _uploaded(url, container, name, size)


def hw_aupload(
    url: str, container: str, path: str, concurrency: int, checksum: bool = True, **_: Any
) -> Done:
    """AzureBlobConnector.aupload (aio client)."""
    name = f"hwa-{uuid.uuid4().hex}"

    async def run() -> int:
        async with _connector(url, container, concurrency) as connector:
            return int((await connector.aupload(name, path, checksum=checksum)).size)

    size = asyncio.run(run())
    return _uploaded(url, container, name, size)


def _uploaded(url: str, container: str, name: str, size: int) -> Done:
    """
    Delete the uploaded blob after the clock stops, so a scenario's 36 uploads do not
    pile up 9 GiB in Azurite's store and on the disk.
    """

    def delete() -> None:
        _service(url).get_blob_client(container, name).delete_blob()

    return Done(size, cleanup=delete)


def raw_download(
    url: str, container: str, blob: str, work: str, concurrency: int, **_: Any
) -> Done:
    """download_blob().readinto an open file, same chunk size and concurrency."""
    service = _service(url, max_single_get_size=CHUNK, max_chunk_get_size=CHUNK)
    target = Path(work) / f"raw-{uuid.uuid4().hex}"
    with _removed_after(target):
        with target.open("wb") as handle:
            size = (
                service.get_blob_client(container, blob)
                .download_blob(max_concurrency=concurrency)
                .readinto(handle)
            )
        return Done(int(size), cleanup=lambda: _remove(target))


def raw_adownload(
    url: str, container: str, blob: str, work: str, concurrency: int, **_: Any
) -> Done:
    """The aio client's download_blob().readinto an open file, same chunk size and concurrency."""
    target = Path(work) / f"rawa-{uuid.uuid4().hex}"

    async def run() -> int:
        async with _aservice(url, max_single_get_size=CHUNK, max_chunk_get_size=CHUNK) as service:
            downloader = await service.get_blob_client(container, blob).download_blob(
                max_concurrency=concurrency
            )
            with target.open("wb") as handle:
                return int(await downloader.readinto(handle))

    with _removed_after(target):
        return Done(asyncio.run(run()), cleanup=lambda: _remove(target))


def hw_fetch(url: str, container: str, blob: str, work: str, concurrency: int, **_: Any) -> Done:
    """AzureBlobConnector.fetch: temp + rename, verified size/etag/Content-MD5."""
    dest = Path(work) / f"hw-{uuid.uuid4().hex}"
    with _removed_after(dest):
        with _connector(url, container, concurrency) as connector:
            result = connector.fetch(blob, dest)
        assert result.verified
        return Done(int(result.size), cleanup=lambda: _remove(dest))


def hw_afetch(url: str, container: str, blob: str, work: str, concurrency: int, **_: Any) -> Done:
    """AzureBlobConnector.afetch (aio client)."""
    dest = Path(work) / f"hwa-{uuid.uuid4().hex}"

    async def run() -> int:
        async with _connector(url, container, concurrency) as connector:
            result = await connector.afetch(blob, dest)
        assert result.verified
        return int(result.size)

    with _removed_after(dest):
        return Done(asyncio.run(run()), cleanup=lambda: _remove(dest))


@contextlib.contextmanager
def _removed_after(path: Path) -> Iterator[None]:
    """Remove ``path`` if the case fails; on success its `Done` removes it, off the clock."""
    try:
        yield
    except BaseException:
        _remove(path)
        raise


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def raw_list(url: str, container: str, count: int, **_: Any) -> int:
    """list_blobs over every page."""
    listed = sum(
        1 for _ in _service(url).get_container_client(container).list_blobs(results_per_page=5000)
    )
    assert listed == count
    return listed


def raw_alist(url: str, container: str, count: int, **_: Any) -> int:
    """The aio client's list_blobs over every page."""

    async def run() -> int:
        async with _aservice(url) as service:
            client = service.get_container_client(container)
            return sum([1 async for _ in client.list_blobs(results_per_page=5000)])

    listed = asyncio.run(run())
    assert listed == count
    return listed


def hw_list(url: str, container: str, count: int, **_: Any) -> int:
    """AzureBlobConnector.list(recursive=True)."""
    with _connector(url, container) as connector:
        listed = sum(1 for _ in connector.list(recursive=True))
    assert listed == count
    return listed


def hw_alist(url: str, container: str, count: int, **_: Any) -> int:
    """AzureBlobConnector.alist(recursive=True)."""

    async def run() -> int:
        async with _connector(url, container) as connector:
            return sum([1 async for _ in connector.alist(recursive=True)])

    listed = asyncio.run(run())
    assert listed == count
    return listed


# --- reading a compressed JSON Lines blob --------------------------------------------------


def _counted(records: int, got: int) -> Done:
    if got != records:
        raise RuntimeError(f"read {got} records, the file holds {records}")
    return Done(got)


def gzip_count(work: str, records: int, **_: Any) -> Done:
    """``gzip -dc FILE | wc -l`` on the local copy (the issue's baseline)."""
    from bench._harness import run_commands

    gzip, wc = shutil.which("gzip"), shutil.which("wc")
    if gzip is None or wc is None:
        raise ImportError("gzip and wc are needed")  # the worker reports it as unavailable
    ran = run_commands([gzip, "-dc", str(Path(work, _JSONL_GZ))], [wc, "-l"])
    done = _counted(records, int(ran.out.split()[0]))
    return Done(done.units, peak_rss=ran.peak_rss)


def raw_read_jsonl_gz(url: str, container: str, records: int, **_: Any) -> Done:
    """The SDK's download stream through zlib, ``orjson.loads`` per line."""
    import zlib

    import orjson

    blob = _service(url, max_chunk_get_size=CHUNK).get_blob_client(container, _JSONL_GZ)
    inflate = zlib.decompressobj(wbits=31)  # gzip header and trailer
    tail, count = b"", 0
    for chunk in blob.download_blob(max_concurrency=1).chunks():
        lines = (tail + inflate.decompress(chunk)).split(b"\n")
        tail = lines.pop()
        for line in lines:
            orjson.loads(line)
        count += len(lines)
    if not inflate.eof or tail:
        raise RuntimeError("the gzip stream ended early")
    return _counted(records, count)


def hw_read_jsonl_gz(url: str, container: str, records: int, **_: Any) -> Done:
    """AzureBlobConnector.read of the blob: records (dicts), decompressed by suffix."""
    with _connector(url, container) as connector:
        return _counted(records, sum(len(batch) for batch in connector.read(_JSONL_GZ)))


def files_read_jsonl_gz(work: str, records: int, **_: Any) -> Done:
    """The files connector's read of the local copy (format layer, no network)."""
    import headwater

    with headwater.connect("files", root=work) as connector:
        return _counted(records, sum(len(batch) for batch in connector.read(_JSONL_GZ)))

"""
An adversarial audit of ``fetch``/``afetch`` against a real Azurite, with blobs made by the
Azure SDK itself: names that could escape or collide, symlinks, destinations that are not
directories, a file that must keep its old content whatever fails (a wrong Content-MD5, a
blob replaced or deleted mid-download, a full file-size limit), odd sizes over parallel
ranges, Content-Encoding, and secrets in errors. Requests are steered, where a test needs
it, by a loopback HTTP proxy that runs a hook before forwarding each request.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import gzip
import hashlib
import logging
import os
import resource
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest

from headwater import (
    AlreadyExists,
    ConfigError,
    HeadwaterError,
    IntegrityError,
    NotFound,
    PermissionDenied,
    UnsafePath,
)
from headwater_azure_blob import AzureBlobConnector

pytestmark = pytest.mark.integration

CHUNK = 64 * 1024  # the smallest chunk_size the config takes: several ranges on small blobs


# --- helpers ------------------------------------------------------------------------------


def _settings(**options: Any) -> Any:
    from azure.storage.blob import ContentSettings

    return ContentSettings(**options)


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


def _entries(directory: Path) -> list[str]:
    """Every entry below ``directory`` (files, directories, links, hidden temporaries)."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def _one_line_naming(error: HeadwaterError, name: str) -> None:
    text = str(error)
    assert repr(name) in text, text
    assert "\n" not in text, text
    assert "\r" not in text, text
    assert "\n" not in (error.hint or "")


def _texts_of(error: BaseException) -> list[str]:
    """Every text an error carries along its chain (str, repr, hint)."""
    texts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current), str(getattr(current, "hint", "") or "")]
        current = current.__cause__ or current.__context__
    return texts


def _run_in_a_thread(run: Any, hung: str) -> None:
    """``asyncio.run(run())`` on a thread of its own, failing with ``hung`` if it never ends."""
    thread = threading.Thread(target=lambda: asyncio.run(run()), daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), hung


async def _settle_sdk_range_tasks() -> None:
    """
    Wait for the azure SDK's range tasks a failed or cancelled afetch leaves running (the
    async SDK does not cancel them) and take their outcome, then collect what finished:
    none may be finalised later, inside another test, with an exception nobody retrieved.
    Its log record's traceback runs ast.parse from the garbage collector, and CPython 3.11
    fails ("AST constructor recursion depth mismatch") when that collection interrupted
    another ast.parse, such as pytest's assertion rewriting.
    """
    tasks = [
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", "").endswith("process_chunk")
    ]
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()
    gc.collect()


@pytest.fixture(autouse=True)
async def _sdk_range_tasks_settled() -> AsyncIterator[None]:
    yield
    await _settle_sdk_range_tasks()


def _dead_endpoint_twin(make_twin: Callable[..., Any]) -> Any:
    """A twin whose every request fails (nothing listens): a refusal proves no request."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return make_twin(account_url=f"http://127.0.0.1:{port}/devstoreaccount1", retry={"attempts": 1})


@contextlib.contextmanager
def _file_size_limit(limit: int) -> Iterator[None]:
    """RLIMIT_FSIZE for this process: writes past ``limit`` bytes fail with EFBIG."""
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


class HookProxy:
    """
    A loopback HTTP/1.1 proxy in front of Azurite. Before forwarding a request it calls
    ``hook(method, path)``; the hook may change the blob through the SDK (the request
    then meets the new state), return ``"forbid"`` to answer 403 itself, ``"corrupt"`` to
    have one byte of the response's body flipped on its way back, or a number of seconds
    to hold the request back. Other responses are piped through untouched.
    """

    def __init__(self, upstream: int, hook: Callable[[str, str], Any]) -> None:
        self.upstream = upstream
        self.hook = hook
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream))
        with self._lock:
            self._sockets.update({client, upstream})
        corrupt = threading.Event()  # flip a byte of the next response's body
        threading.Thread(target=self._pipe, args=(upstream, client, corrupt), daemon=True).start()
        buffer = b""
        try:
            while data := client.recv(65536):
                buffer += data
                while (end := buffer.find(b"\r\n\r\n")) >= 0:
                    head = buffer[: end + 4]
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        key, _, value = line.partition(b":")
                        if key.strip().lower() == b"content-length":
                            length = int(value.strip())
                    if len(buffer) < end + 4 + length:
                        break
                    request, buffer = buffer[: end + 4 + length], buffer[end + 4 + length :]
                    method, path = head.split(b" ", 2)[:2]
                    action = self.hook(method.decode(), unquote(path.decode()))
                    if action == "forbid":
                        client.sendall(
                            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n"
                            b"x-ms-error-code: AuthorizationPermissionMismatch\r\n"
                            b"Connection: close\r\n\r\n"
                        )
                        return
                    if action == "corrupt":
                        corrupt.set()
                    if isinstance(action, int | float):
                        time.sleep(action)
                    upstream.sendall(request)
        except OSError:
            pass
        finally:
            _close(client)
            _close(upstream)

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket, corrupt: threading.Event) -> None:
        flip_at: int | None = None  # offset of the byte to flip, counted in `seen`
        seen = 0
        head = b""
        try:
            while data := source.recv(65536):
                if corrupt.is_set() and flip_at is None:
                    head += data
                    end = head.find(b"\r\n\r\n")
                    if end >= 0:
                        flip_at = seen - (len(head) - len(data)) + end + 4 + 100
                if flip_at is not None and seen <= flip_at < seen + len(data):
                    index = flip_at - seen
                    data = data[:index] + bytes([data[index] ^ 0xFF]) + data[index + 1 :]
                    corrupt.clear()
                    flip_at, head = None, b""
                seen += len(data)
                target.sendall(data)
        except OSError:
            pass
        finally:
            _close(target)

    def url(self, azurite: Any) -> str:
        return f"http://127.0.0.1:{self.port}/{azurite.account_name}"

    def close(self) -> None:
        self._server.close()
        with self._lock:
            for sock in self._sockets:
                _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


@pytest.fixture
def hook_proxy(azurite: Any) -> Iterator[Callable[[Callable[[str, str], Any]], HookProxy]]:
    made: list[HookProxy] = []

    def make(hook: Callable[[str, str], Any]) -> HookProxy:
        proxy = HookProxy(azurite.port, hook)
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.close()


def _on_blob_get(name: str, number: int, action: Callable[[], Any]) -> Callable[[str, str], Any]:
    """A hook running ``action`` before the ``number``-th GET of blob ``name``'s bytes."""
    count = 0
    lock = threading.Lock()

    def hook(method: str, path: str) -> Any:
        nonlocal count
        if method != "GET" or not urlsplit(path).path.endswith("/" + name):
            return None
        with lock:
            count += 1
            mine = count
        return action() if mine == number else None

    return hook


# --- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["a/./b", "./a", "a/.", ".", "..", "a/..", "a//b", "//a", "/a", "a\\b", "a/b\x00c"],
)
async def test_unsafe_names_are_refused_before_any_request(make_twin, tmp_path, name):
    """Dot segments, empty segments, leading '/', backslash, NUL: UnsafePath, nothing asked."""
    nowhere = _dead_endpoint_twin(make_twin)  # any request would be ConnectionFailed
    with pytest.raises((UnsafePath, ConfigError)) as info:
        await nowhere.fetch(name, tmp_path)
    assert "\n" not in str(info.value)
    assert [] == _entries(tmp_path)


async def test_stored_names_with_empty_segments_are_refused(twin, container, tmp_path):
    """Blobs the SDK stores as 'a//b', '//a', '/a' exist, but none of them maps to a file."""
    for name in ("a//b", "//a", "/a"):
        container.upload_blob(name, b"data")
    assert {"a//b", "//a", "/a"} <= {b.name for b in container.list_blobs()}
    dest = tmp_path / "dest"
    for name in ("a//b", "//a", "/a"):
        with pytest.raises(UnsafePath) as info:
            await twin.fetch(name, dest)
        _one_line_naming(info.value, name)
    assert [] == _entries(tmp_path)


@pytest.mark.parametrize(
    "name", ["ctl/a\nb", "ctl/tab\t", "ctl/\x7fdel", "ctl/\x1besc", "ctl/\rcr"]
)
async def test_control_characters_fetch_to_exactly_that_name(twin, container, tmp_path, name):
    """A name with control characters lands at exactly that name; errors about it stay one line."""
    data = os.urandom(1000)
    container.upload_blob(name, data)
    result = await twin.fetch(name, tmp_path)
    assert (tmp_path / name, data, True) == (result.path, result.path.read_bytes(), result.verified)
    assert [name.split("/")[1]] == os.listdir(tmp_path / "ctl")
    with pytest.raises(NotFound) as info:
        await twin.fetch(name + "-missing", tmp_path)
    _one_line_naming(info.value, name + "-missing")


@pytest.mark.parametrize(
    "segment",
    ["漢" * 85, "é" * 127 + "a", "x" * 255],
    ids=["3-byte", "2-byte", "ascii"],
)
async def test_a_segment_of_255_bytes_fetches(twin, container, tmp_path, segment):
    """255 bytes of UTF-8 in one segment is a legal file name: it is fetched."""
    assert 255 == len(segment.encode())
    name = f"long/{segment}"
    data = os.urandom(3000)
    container.upload_blob(name, data)
    result = await twin.fetch(name, tmp_path)
    assert (tmp_path / "long" / segment, data) == (result.path, result.path.read_bytes())
    assert [segment] == os.listdir(tmp_path / "long")


async def test_a_segment_of_255_bytes_in_four_byte_characters_fetches(twin, container, tmp_path):
    """63 emoji and 3 ASCII letters are 255 bytes, a legal file name; its fetch should work."""
    segment = "😀" * 63 + "abc"
    assert 255 == len(segment.encode())
    container.upload_blob(f"long/{segment}", b"data")
    result = await twin.fetch(f"long/{segment}", tmp_path)
    assert b"data" == result.path.read_bytes()


@pytest.mark.parametrize("segment", ["漢" * 85 + "a", "é" * 128, "😀" * 64])
async def test_a_segment_of_256_bytes_is_refused_before_any_request(make_twin, tmp_path, segment):
    """256 bytes in one segment (multi-byte characters) is refused in one line, nothing asked."""
    assert 256 == len(segment.encode())
    nowhere = _dead_endpoint_twin(make_twin)
    with pytest.raises(ConfigError) as info:
        await nowhere.fetch(f"d/{segment}", tmp_path)
    _one_line_naming(info.value, f"d/{segment}")
    assert "256 bytes" in str(info.value)
    assert [] == _entries(tmp_path)


# --- destinations -----------------------------------------------------------------------------


async def test_symlinked_target_pointing_outside_is_refused(twin, container, tmp_path):
    """dest/x.txt a symlink to a file outside, or dangling outside: refused, outside untouched."""
    container.upload_blob("x.txt", b"new")
    container.upload_blob("dangling.txt", b"new")
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"outside")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "x.txt").symlink_to(outside)
    (dest / "dangling.txt").symlink_to(tmp_path / "nowhere.txt")
    for name in ("x.txt", "dangling.txt"):
        with pytest.raises(UnsafePath) as info:
            await twin.fetch(name, dest)
        _one_line_naming(info.value, name)
    assert b"outside" == outside.read_bytes()
    assert not (tmp_path / "nowhere.txt").exists()
    assert (dest / "x.txt").is_symlink()
    assert (dest / "dangling.txt").is_symlink()
    assert ["dangling.txt", "x.txt"] == _entries(dest)


async def test_symlinked_directory_pointing_outside_is_refused(twin, container, tmp_path):
    """dest/sub a symlink to a directory outside: 'sub/f.bin' is refused, nothing lands there."""
    container.upload_blob("sub/f.bin", b"new")
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "sub").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePath):
        await twin.fetch("sub/f.bin", dest)
    assert [] == _entries(outside)


async def test_missing_destination_directories_are_created(twin, container, tmp_path):
    """A destination that does not exist yet is created, with the blob's directories below it."""
    data = os.urandom(5000)
    container.upload_blob("a/b/c.bin", data)
    dest = tmp_path / "not" / "yet"
    result = await twin.fetch("a/b/c.bin", dest)
    assert (dest / "a" / "b" / "c.bin", data) == (result.path, result.path.read_bytes())
    assert ["c.bin"] == os.listdir(dest / "a" / "b")


@pytest.mark.parametrize("below", [False, True], ids=["dest-is-a-file", "file-above-dest"])
async def test_destination_that_is_a_file_is_one_line_error(twin, container, tmp_path, below):
    """dest (or a directory above it) is a regular file: one error naming the blob, file kept."""
    container.upload_blob("a.txt", b"new")
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"old")
    dest = blocker / "sub" if below else blocker
    with pytest.raises(HeadwaterError) as info:
        await twin.fetch("a.txt", dest)
    assert isinstance(info.value, AlreadyExists)
    _one_line_naming(info.value, "a.txt")
    assert b"old" == blocker.read_bytes()
    assert ["blocker"] == _entries(tmp_path)


# --- an existing file keeps its content when the fetch fails -----------------------------------


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_wrong_content_md5_keeps_the_old_file(make_twin, container, tmp_path, concurrency):
    """A Content-MD5 set (by the SDK) to a wrong value fails the fetch; the old file stays."""
    data = os.urandom(5 * CHUNK + 17)
    container.upload_blob("f.bin", data)
    container.get_blob_client("f.bin").set_http_headers(
        # The MD5 of the bytes with the last one changed (flipped: never equal by chance).
        _settings(content_md5=bytearray(_md5(data[:-1] + bytes([data[-1] ^ 1]))))
    )
    (tmp_path / "f.bin").write_bytes(b"old content")
    inode = (tmp_path / "f.bin").stat().st_ino
    twin = make_twin(chunk_size=CHUNK, max_concurrency=concurrency)
    with pytest.raises(IntegrityError) as info:
        await twin.fetch("f.bin", tmp_path)
    _one_line_naming(info.value, "f.bin")
    assert "Content-MD5 mismatch" in str(info.value)
    assert b"old content" == (tmp_path / "f.bin").read_bytes()
    assert inode == (tmp_path / "f.bin").stat().st_ino
    assert ["f.bin"] == _entries(tmp_path)


@pytest.mark.parametrize("size", [0, 1])
async def test_wrong_content_md5_of_a_tiny_blob_keeps_the_old_file(twin, container, tmp_path, size):
    """0 and 1 bytes are checked as strictly: a wrong Content-MD5 fails, the old file stays."""
    container.upload_blob("t.bin", b"z" * size)
    container.get_blob_client("t.bin").set_http_headers(
        _settings(content_md5=bytearray(_md5(b"something else")))
    )
    (tmp_path / "t.bin").write_bytes(b"old")
    with pytest.raises(IntegrityError):
        await twin.fetch("t.bin", tmp_path)
    assert b"old" == (tmp_path / "t.bin").read_bytes()
    assert ["t.bin"] == _entries(tmp_path)


@pytest.mark.parametrize("concurrency", [1, 4])
@pytest.mark.parametrize("when", [1, 2], ids=["before-first-get", "mid-download"])
async def test_blob_replaced_during_fetch_keeps_the_old_file(
    make_twin, azurite, container, hook_proxy, tmp_path, concurrency, when
):
    """The blob is overwritten (same size) before the first or the second GET: the etag
    check fails the fetch; the old file keeps its content, no temporary file is left."""
    data = os.urandom(6 * CHUNK + 5)
    container.upload_blob("m.bin", data)

    def replace() -> None:
        container.upload_blob("m.bin", os.urandom(len(data)), overwrite=True)

    proxy = hook_proxy(_on_blob_get("m.bin", when, replace))
    (tmp_path / "m.bin").write_bytes(b"old content")
    twin = make_twin(account_url=proxy.url(azurite), chunk_size=CHUNK, max_concurrency=concurrency)
    with pytest.raises(IntegrityError) as info:
        await twin.fetch("m.bin", tmp_path)
    _one_line_naming(info.value, "m.bin")
    assert "changed" in str(info.value)
    assert b"old content" == (tmp_path / "m.bin").read_bytes()
    assert ["m.bin"] == _entries(tmp_path)


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_blob_deleted_mid_download_keeps_the_old_file(
    make_twin, azurite, container, hook_proxy, tmp_path, concurrency
):
    """The blob is deleted before the second GET: the fetch fails in one line naming it."""
    container.upload_blob("gone.bin", os.urandom(6 * CHUNK + 5))
    proxy = hook_proxy(
        _on_blob_get("gone.bin", 2, lambda: container.get_blob_client("gone.bin").delete_blob())
    )
    (tmp_path / "gone.bin").write_bytes(b"old content")
    twin = make_twin(account_url=proxy.url(azurite), chunk_size=CHUNK, max_concurrency=concurrency)
    with pytest.raises((NotFound, IntegrityError)) as info:
        await twin.fetch("gone.bin", tmp_path)
    _one_line_naming(info.value, "gone.bin")
    assert b"old content" == (tmp_path / "gone.bin").read_bytes()
    assert ["gone.bin"] == _entries(tmp_path)


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_file_size_limit_is_one_line_and_keeps_the_old_file(
    make_twin, container, tmp_path, concurrency
):
    """Writing fails (EFBIG, as a full disk would): one error naming the blob and the cause,
    never a raw OSError; the old file keeps its content, no temporary file is left."""
    container.upload_blob("big.bin", os.urandom(8 * CHUNK + 3))
    (tmp_path / "big.bin").write_bytes(b"old content")
    twin = make_twin(chunk_size=CHUNK, max_concurrency=concurrency)
    with _file_size_limit(3 * CHUNK), pytest.raises(HeadwaterError) as info:
        await twin.fetch("big.bin", tmp_path)
    assert isinstance(info.value, IntegrityError)
    _one_line_naming(info.value, "big.bin")
    assert "File too large" in str(info.value)
    assert b"old content" == (tmp_path / "big.bin").read_bytes()
    assert ["big.bin"] == _entries(tmp_path)


def test_afetch_that_fails_mid_parallel_download_leaves_no_task_writing(
    azurite, container, config, hook_proxy, tmp_path
):
    """
    One parallel range of an afetch is refused (403) while the others are still under way:
    the afetch fails, and the SDK's ranges still running afterwards write nothing and do
    not block the event loop (it keeps running; no file, no temporary file appear).
    """
    container.upload_blob("p.bin", os.urandom(10 * CHUNK))

    def hook(method: str, path: str) -> Any:
        if method != "GET" or not urlsplit(path).path.endswith("/p.bin"):
            return None
        with lock:
            gets.append(path)
            number = len(gets)
        if number == 2:
            return "forbid"
        return 0.4 if number > 2 else None  # the other ranges are slower than the refusal

    gets: list[str] = []
    lock = threading.Lock()
    proxy = hook_proxy(hook)
    outcome: dict[str, Any] = {}

    async def run() -> None:
        connector = AzureBlobConnector(
            {**config, "account_url": proxy.url(azurite), "chunk_size": CHUNK, "max_concurrency": 4}
        )
        try:
            try:
                await connector.afetch("p.bin", tmp_path)
            except HeadwaterError as exc:
                outcome["error"] = exc
            await asyncio.sleep(1.5)  # the slow ranges arrive meanwhile
            outcome["loop_alive"] = True
            await _settle_sdk_range_tasks()
        finally:
            await connector.aclose()

    _run_in_a_thread(run, "the event loop hung after the failed afetch")
    assert isinstance(outcome.get("error"), PermissionDenied)
    assert outcome.get("loop_alive")
    assert [] == _entries(tmp_path)


# --- sizes over parallel ranges -----------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 7 * CHUNK + 4097])
async def test_odd_sizes_at_concurrency_4_arrive_exactly(make_twin, container, tmp_path, size):
    """Concurrency 4 with sizes around and between chunk boundaries: exact bytes, verified."""
    data = os.urandom(size)
    container.upload_blob(
        "s.bin", data, content_settings=_settings(content_md5=bytearray(_md5(data)))
    )
    (tmp_path / "s.bin").write_bytes(b"previous, longer content than some blobs here")
    twin = make_twin(chunk_size=CHUNK, max_concurrency=4)
    result = await twin.fetch("s.bin", tmp_path)
    assert (data, size, True, f"md5:{_md5(data).hex()}") == (
        result.path.read_bytes(),
        result.size,
        result.verified,
        result.checksum,
    )
    assert ["s.bin"] == _entries(tmp_path)


async def test_block_blob_without_md5_is_size_checked_and_unverified(
    make_twin, container, tmp_path
):
    """A blob staged in blocks by the SDK (no Content-MD5) arrives exactly, reported unverified."""
    data = os.urandom(5 * CHUNK + 333)
    from azure.storage.blob import BlobBlock

    blob = container.get_blob_client("blocks.bin")
    ids = []
    for number, start in enumerate(range(0, len(data), CHUNK)):
        ids.append(f"{number:08d}")
        blob.stage_block(ids[-1], data[start : start + CHUNK])
    blob.commit_block_list([BlobBlock(block_id) for block_id in ids])
    assert (
        container.get_blob_client("blocks.bin").get_blob_properties().content_settings.content_md5
        is None
    )
    twin = make_twin(chunk_size=CHUNK, max_concurrency=4)
    result = await twin.fetch("blocks.bin", tmp_path)
    assert (data, False, None) == (result.path.read_bytes(), result.verified, result.checksum)


# --- Content-Encoding ---------------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_gzip_encoded_blob_is_fetched_as_stored_over_ranges(
    make_twin, container, tmp_path, concurrency
):
    """Content-Encoding gzip over several ranges: the file holds the stored (compressed) bytes."""
    plain = b"".join(b'{"id": "%s"}\n' % os.urandom(24).hex().encode() for _ in range(8000))
    stored = gzip.compress(plain, compresslevel=1)
    assert len(stored) > 2 * CHUNK
    container.upload_blob(
        "enc/e.jsonl",
        stored,
        content_settings=_settings(content_encoding="gzip", content_md5=bytearray(_md5(stored))),
    )
    twin = make_twin(chunk_size=CHUNK, max_concurrency=concurrency)
    result = await twin.fetch("enc/e.jsonl", tmp_path)
    assert (stored, len(stored), True) == (result.path.read_bytes(), result.size, result.verified)
    assert plain == gzip.decompress(result.path.read_bytes())


async def test_gzip_blob_whose_md5_is_of_the_decoded_bytes_is_refused(twin, container, tmp_path):
    """The Content-MD5 check is of the stored bytes: an MD5 of the decoded bytes fails it."""
    plain = b"a record\n" * 5000
    stored = gzip.compress(plain)
    container.upload_blob("enc/d.jsonl", stored)
    # Set afterwards: Azurite refuses an upload whose Content-MD5 does not match the body.
    container.get_blob_client("enc/d.jsonl").set_http_headers(
        _settings(content_encoding="gzip", content_md5=bytearray(_md5(plain)))
    )
    props = container.get_blob_client("enc/d.jsonl").get_blob_properties()
    assert "gzip" == props.content_settings.content_encoding
    (tmp_path / "enc").mkdir()
    (tmp_path / "enc" / "d.jsonl").write_bytes(b"old")
    with pytest.raises(IntegrityError) as info:
        await twin.fetch("enc/d.jsonl", tmp_path)
    _one_line_naming(info.value, "enc/d.jsonl")
    assert b"old" == (tmp_path / "enc" / "d.jsonl").read_bytes()
    assert ["enc", "enc/d.jsonl"] == _entries(tmp_path)


def test_readme_says_fetch_keeps_the_stored_bytes_and_checks_them():
    """The README documents what the tests above check: stored bytes, their Content-MD5."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "fetched compressed" in readme
    assert "verified against its size and Content-MD5" in readme


# --- secrets ------------------------------------------------------------------------------------


def _sas(azurite: Any, container: Any, **permissions: bool) -> str:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    return generate_container_sas(
        azurite.account_name,
        container.container_name,
        account_key=azurite.account_key,
        permission=ContainerSasPermissions(**permissions),
        expiry=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
    )


async def test_no_secret_in_any_fetch_error_or_log(
    make_twin, azurite, container, hook_proxy, tmp_path, caplog
):
    """Every way a fetch fails here, under a SAS and under the account key: neither the SAS,
    its signature nor the key appear in any error's str, repr, hint or chain, nor in a log."""
    from urllib.parse import parse_qs

    caplog.set_level(logging.DEBUG)
    data = os.urandom(3 * CHUNK + 1)
    container.upload_blob("ok.bin", data)
    container.upload_blob("bad.bin", data)
    container.get_blob_client("bad.bin").set_http_headers(
        _settings(content_md5=bytearray(_md5(b"other")))
    )
    container.upload_blob("moving.bin", data)
    read_sas = _sas(azurite, container, read=True, list=True)
    list_sas = _sas(azurite, container, list=True)
    proxy = hook_proxy(
        _on_blob_get(
            "moving.bin",
            2,
            lambda: container.upload_blob("moving.bin", os.urandom(len(data)), overwrite=True),
        )
    )
    common = {"chunk_size": CHUNK, "max_concurrency": 2}
    with_sas = make_twin(account_key=None, sas_token=read_sas, **common)
    sas_via_proxy = make_twin(
        account_key=None, sas_token=read_sas, account_url=proxy.url(azurite), **common
    )
    without_read = make_twin(account_key=None, sas_token=list_sas, **common)
    with_key = make_twin(**common)
    errors: list[BaseException] = []
    for twin, name in [
        (with_sas, "ghost.bin"),
        (with_sas, "bad.bin"),
        (sas_via_proxy, "moving.bin"),
        (without_read, "ok.bin"),
        (with_key, "ghost.bin"),
        (with_key, "bad.bin"),
    ]:
        with pytest.raises(HeadwaterError) as info:
            await twin.fetch(name, tmp_path)
        _one_line_naming(info.value, name)
        errors.append(info.value)
    with _file_size_limit(CHUNK), pytest.raises(HeadwaterError) as info:
        await with_sas.fetch("ok.bin", tmp_path)
    errors.append(info.value)
    assert [] == _entries(tmp_path)
    haystack = "\n".join(
        [caplog.text, *(repr(t.connector) for t in (with_sas, without_read, with_key))]
        + [text for error in errors for text in _texts_of(error)]
    )
    secrets = [azurite.account_key, read_sas, list_sas]
    for sas in (read_sas, list_sas):
        signature = parse_qs(sas)["sig"][0]
        secrets += [signature, quote(signature, safe="")]
    for secret in secrets:
        assert secret not in haystack


# --- blob types and encoded names ---------------------------------------------------------------


async def test_sparse_page_blob_arrives_exactly(make_twin, container, tmp_path):
    """A page blob with unwritten pages: the holes arrive as zeros, every byte exact."""
    size = 6 * CHUNK
    blob = container.get_blob_client("pages.bin")
    blob.create_page_blob(size)
    written = os.urandom(2 * 512)
    blob.upload_page(written[:512], offset=CHUNK + 512, length=512)
    blob.upload_page(written[512:], offset=4 * CHUNK, length=512)
    expected = bytearray(size)
    expected[CHUNK + 512 : CHUNK + 1024] = written[:512]
    expected[4 * CHUNK : 4 * CHUNK + 512] = written[512:]
    twin = make_twin(chunk_size=CHUNK, max_concurrency=4)
    result = await twin.fetch("pages.bin", tmp_path)
    assert (bytes(expected), size) == (result.path.read_bytes(), result.size)


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_append_blob_appended_mid_download_keeps_the_old_file(
    make_twin, azurite, container, hook_proxy, tmp_path, concurrency
):
    """An append blob that grows during the fetch fails it (etag): old file kept, no temp."""
    blob = container.get_blob_client("log.txt")
    blob.create_append_blob()
    for _ in range(5):
        blob.append_block(os.urandom(CHUNK))
    proxy = hook_proxy(_on_blob_get("log.txt", 2, lambda: blob.append_block(b"one more line\n")))
    (tmp_path / "log.txt").write_bytes(b"old log")
    twin = make_twin(account_url=proxy.url(azurite), chunk_size=CHUNK, max_concurrency=concurrency)
    with pytest.raises(IntegrityError) as info:
        await twin.fetch("log.txt", tmp_path)
    _one_line_naming(info.value, "log.txt")
    assert b"old log" == (tmp_path / "log.txt").read_bytes()
    assert ["log.txt"] == _entries(tmp_path)


@pytest.mark.parametrize("name", ["%2e%2e/x.bin", "%2E./y.bin", "a%2Fb.bin", "..%5cz.bin"])
async def test_percent_encoded_dots_and_slashes_are_literal_names(twin, container, tmp_path, name):
    """'%2e%2e', '%2F', '%5c' in a blob name are literal characters: the file lands at
    exactly that name inside dest, never one directory up."""
    data = os.urandom(100)
    container.upload_blob(name, data)
    assert [name] == [b.name for b in container.list_blobs()]
    dest = tmp_path / "dest"
    result = await twin.fetch(name, dest)
    assert (dest / name, data) == (result.path, result.path.read_bytes())
    assert [] == [p for p in _entries(tmp_path) if not p.startswith("dest")]


@pytest.mark.parametrize("name", ["dir/", "a/b/"])
async def test_a_name_ending_in_slash_is_refused_before_any_request(make_twin, tmp_path, name):
    """A directory name is not a blob to fetch: refused in one line, nothing asked or written."""
    nowhere = _dead_endpoint_twin(make_twin)
    with pytest.raises(ConfigError) as info:
        await nowhere.fetch(name, tmp_path)
    _one_line_naming(info.value, name)
    assert [] == _entries(tmp_path)


async def test_a_directory_at_the_target_is_refused_before_any_request(make_twin, tmp_path):
    """dest/x.bin is a directory: AlreadyExists before any request, the directory untouched."""
    (tmp_path / "x.bin").mkdir()
    (tmp_path / "x.bin" / "inside.txt").write_bytes(b"keep")
    nowhere = _dead_endpoint_twin(make_twin)
    with pytest.raises(AlreadyExists):
        await nowhere.fetch("x.bin", tmp_path)
    assert ["x.bin", "x.bin/inside.txt"] == _entries(tmp_path)
    assert b"keep" == (tmp_path / "x.bin" / "inside.txt").read_bytes()


def test_cancelled_afetch_keeps_the_old_file_and_the_loop_running(
    azurite, container, config, hook_proxy, tmp_path
):
    """
    An afetch cancelled while its parallel ranges are under way: the old file keeps its
    content, no temporary file is left, and the ranges the SDK had started write nothing
    afterwards and do not block the event loop.
    """
    container.upload_blob("c.bin", os.urandom(10 * CHUNK))
    second_get = threading.Event()

    def hook(method: str, path: str) -> Any:
        if method != "GET" or not urlsplit(path).path.endswith("/c.bin"):
            return None
        with lock:
            gets.append(path)
            number = len(gets)
        if number >= 2:
            second_get.set()
            return 0.4  # the ranges are still on their way when the task is cancelled
        return None

    gets: list[str] = []
    lock = threading.Lock()
    proxy = hook_proxy(hook)
    (tmp_path / "c.bin").write_bytes(b"old content")
    outcome: dict[str, Any] = {}

    async def run() -> None:
        connector = AzureBlobConnector(
            {**config, "account_url": proxy.url(azurite), "chunk_size": CHUNK, "max_concurrency": 4}
        )
        try:
            task = asyncio.ensure_future(connector.afetch("c.bin", tmp_path))
            while not second_get.is_set():
                await asyncio.sleep(0.01)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                outcome["cancelled"] = True
            await asyncio.sleep(1.5)  # the started ranges arrive meanwhile
            outcome["loop_alive"] = True
            await _settle_sdk_range_tasks()
        finally:
            await connector.aclose()

    _run_in_a_thread(run, "the event loop hung after the cancelled afetch")
    assert (True, True) == (outcome.get("cancelled"), outcome.get("loop_alive"))
    assert b"old content" == (tmp_path / "c.bin").read_bytes()
    assert ["c.bin"] == _entries(tmp_path)


@pytest.mark.parametrize("concurrency", [1, 4])
@pytest.mark.parametrize("which", [1, 3], ids=["first-range", "later-range"])
async def test_bytes_corrupted_in_transit_fail_the_fetch_and_keep_the_old_file(
    make_twin, azurite, container, hook_proxy, tmp_path, concurrency, which
):
    """One byte flipped in the body of the first or of a later range (with the blob's
    Content-MD5 set by the service): the fetch fails, never exits with wrong bytes, and
    the old file keeps its content."""
    data = os.urandom(6 * CHUNK + 77)
    container.upload_blob("flip.bin", data)
    assert container.get_blob_client("flip.bin").get_blob_properties().content_settings.content_md5
    proxy = hook_proxy(_on_blob_get("flip.bin", which, lambda: "corrupt"))
    (tmp_path / "flip.bin").write_bytes(b"old content")
    twin = make_twin(account_url=proxy.url(azurite), chunk_size=CHUNK, max_concurrency=concurrency)
    with pytest.raises(IntegrityError) as info:
        await twin.fetch("flip.bin", tmp_path)
    _one_line_naming(info.value, "flip.bin")
    assert "Content-MD5 mismatch" in str(info.value)
    assert b"old content" == (tmp_path / "flip.bin").read_bytes()
    assert ["flip.bin"] == _entries(tmp_path)


async def test_the_corrupting_proxy_flips_exactly_one_byte(
    make_twin, azurite, container, hook_proxy, tmp_path
):
    """The proxy of the test above really changes one byte (without Content-MD5 nothing
    could tell): the file then differs from the blob in exactly one byte, in range 3."""
    data = os.urandom(6 * CHUNK + 77)
    container.upload_blob("flip.bin", data)
    container.get_blob_client("flip.bin").set_http_headers(_settings(content_md5=None))
    proxy = hook_proxy(_on_blob_get("flip.bin", 3, lambda: "corrupt"))
    twin = make_twin(account_url=proxy.url(azurite), chunk_size=CHUNK, max_concurrency=1)
    result = await twin.fetch("flip.bin", tmp_path)
    got = result.path.read_bytes()
    assert (len(data), False) == (len(got), result.verified)
    differing = [i for i, (a, b) in enumerate(zip(data, got, strict=True)) if a != b]
    assert 1 == len(differing)
    assert 2 * CHUNK <= differing[0] < 3 * CHUNK


# --- the command line ---------------------------------------------------------------------------


def _cli_fetch(
    azurite: Any, container: Any, sas: str, item: str, dest: Path, *, fsize: int | None = None
) -> Any:
    """`headwater fetch az://CONTAINER ITEM DEST --overwrite` with a SAS, in a subprocess."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_STORAGE_")}

    def limit() -> None:  # runs in the child: EFBIG past ``fsize`` bytes (SIGXFSZ ignored)
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, resource.RLIM_INFINITY))

    return subprocess.run(
        [
            sys.executable, "-m", "headwater", "fetch", f"az://{container.container_name}",
            item, str(dest), "--overwrite", "--no-progress",
            "-c", f"account_url={azurite.blob_url}", "-c", f"sas_token={sas}",
            "-c", "chunk_size=65536",
        ],
        capture_output=True, text=True, timeout=120, check=False, env=env,
        preexec_fn=limit,  # only resource limits, set before the exec
    )  # fmt: skip


def test_cli_fetch_exit_status_means_exact_bytes(azurite, container, tmp_path):
    """`headwater fetch`: exit 0 with the exact bytes; each failure a nonzero exit, one
    error line naming the blob and the cause, no traceback, no SAS, the old file kept."""
    from urllib.parse import parse_qs

    data = os.urandom(5 * CHUNK + 9)
    container.upload_blob("cli/ok.bin", data)
    container.upload_blob("cli/bad.bin", data)
    container.get_blob_client("cli/bad.bin").set_http_headers(
        _settings(content_md5=bytearray(_md5(b"other")))
    )
    sas = _sas(azurite, container, read=True, list=True)
    signature = parse_qs(sas)["sig"][0]
    dest = tmp_path / "dest"

    done = _cli_fetch(azurite, container, sas, "cli/ok.bin", dest)
    assert 0 == done.returncode, done.stderr
    assert data == (dest / "cli" / "ok.bin").read_bytes()
    assert f"md5:{_md5(data).hex()}" in done.stdout

    (dest / "cli" / "bad.bin").write_bytes(b"old bad")
    (tmp_path / "a-file").write_bytes(b"not a directory")
    failures = [
        (_cli_fetch(azurite, container, sas, "cli/ghost.bin", dest), "cli/ghost.bin", "no such"),
        (_cli_fetch(azurite, container, sas, "cli/bad.bin", dest), "cli/bad.bin", "Content-MD5"),
        (
            _cli_fetch(azurite, container, sas, "cli/ok.bin", tmp_path / "a-file" / "sub"),
            "cli/ok.bin",
            "is a file",
        ),
        (
            _cli_fetch(azurite, container, sas, "cli/bad.bin", dest, fsize=2 * CHUNK),
            "cli/bad.bin",
            "File too large",
        ),
    ]
    for proc, item, cause in failures:
        assert 1 == proc.returncode, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert 1 == len(lines), proc.stderr
        assert lines[0].startswith("error: "), proc.stderr
        assert repr(item) in lines[0], proc.stderr
        assert cause in lines[0], proc.stderr
        for secret in (sas, signature, quote(signature, safe=""), azurite.account_key):
            assert secret not in proc.stdout + proc.stderr
    assert b"old bad" == (dest / "cli" / "bad.bin").read_bytes()
    assert b"not a directory" == (tmp_path / "a-file").read_bytes()
    assert ["cli", "cli/bad.bin", "cli/ok.bin"] == _entries(dest)

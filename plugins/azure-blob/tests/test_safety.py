"""
Safety against a real Azurite: path escapes, corrupt or changing blobs, connections cut
mid-download (through a loopback proxy), wrong credentials and secret leaks.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import http.client
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest

from headwater import (
    AuthFailed,
    Category,
    ConnectionFailed,
    HeadwaterError,
    IntegrityError,
    UnsafePath,
)

pytestmark = pytest.mark.integration

EVIL_NAMES = ["../../escape.txt", "/etc/x", "a/../../b", "..\\x", "C:\\x"]


def _files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


def _put_raw(azurite, container, name: str, data: bytes) -> None:
    """PUT a blob over plain HTTP with every character of its name percent-encoded, so no
    client library normalises ``..`` segments away before Azurite stores the name."""
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    sas = generate_container_sas(
        azurite.account_name,
        container.container_name,
        account_key=azurite.account_key,
        permission=ContainerSasPermissions(write=True, create=True),
        expiry=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
    )
    encoded = "".join(f"%{b:02X}" if chr(b) != "/" else "/" for b in name.encode())
    conn = http.client.HTTPConnection(azurite.host, azurite.port, timeout=10)
    try:
        conn.request(
            "PUT",
            f"/{azurite.account_name}/{container.container_name}/{encoded}?{sas}",
            body=data,
            headers={"x-ms-blob-type": "BlockBlob", "x-ms-version": "2021-08-06"},
        )
        response = conn.getresponse()
        response.read()
        assert 201 == response.status, name
    finally:
        conn.close()


# --- path safety ------------------------------------------------------------------------


async def test_evil_blob_names_never_escape(twin, azurite, container, tmp_path):
    """Blobs named to escape dest are refused with UnsafePath; nothing lands on disk."""
    for name in ("../../escape.txt", "a/../../b", "..\\x"):
        _put_raw(azurite, container, name, b"evil")
    for name in ("/etc/x", "C:\\x"):
        container.upload_blob(name, b"evil")
    container.upload_blob("ok/fine.txt", b"fine")
    dest = tmp_path / "one" / "two" / "dest"
    dest.mkdir(parents=True)
    etc_x_before = Path("/etc/x").exists()
    listed = [i.name for i in await twin.list(recursive=True)]
    assert "ok/fine.txt" in listed
    assert len(listed) >= 5  # Azurite stores '\' as '/': every evil name is listed in some form
    for name in [n for n in listed if n != "ok/fine.txt"] + EVIL_NAMES:
        with pytest.raises(UnsafePath):
            await twin.fetch(name, dest)
    assert [] == _files_under(tmp_path)
    assert etc_x_before == Path("/etc/x").exists()
    await twin.fetch("ok/fine.txt", dest)
    assert ["one/two/dest/ok/fine.txt"] == _files_under(tmp_path)


# --- integrity ----------------------------------------------------------------------------


async def test_bad_content_md5_refused(twin, container, tmp_path):
    """A blob whose Content-MD5 does not match its bytes is refused and leaves no file."""
    from azure.storage.blob import ContentSettings

    container.upload_blob("bad.bin", b"the real bytes")
    container.get_blob_client("bad.bin").set_http_headers(
        ContentSettings(
            content_md5=bytearray(hashlib.md5(b"other bytes", usedforsecurity=False).digest())
        )
    )
    with pytest.raises(IntegrityError) as info:
        await twin.fetch("bad.bin", tmp_path)
    assert "Content-MD5 mismatch" in info.value.message
    assert [] == _files_under(tmp_path)


class CuttingProxy:
    """
    A loopback TCP proxy in front of Azurite that breaks responses on purpose: while it
    has cuts left, a connection that has carried more than ``after`` response bytes is
    reset in the middle of the body. ``on_cut`` runs just before each cut.
    """

    def __init__(
        self, upstream: int, *, after: int, cuts: int, on_cut: Callable[[], None] | None = None
    ) -> None:
        self.upstream = upstream
        self.after = after
        self.cuts_left = cuts
        self.cuts_done = 0
        self.on_cut = on_cut
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            with self._lock:
                self._open.update({client, upstream})
            threading.Thread(target=self._pump_up, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump_down, args=(client, upstream), daemon=True).start()

    def _pump_up(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while data := client.recv(65536):
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            _quiet_close(upstream)

    def _pump_down(self, client: socket.socket, upstream: socket.socket) -> None:
        sent = 0
        try:
            while data := upstream.recv(65536):
                if sent + len(data) > self.after and self._take_cut():
                    client.sendall(data[: max(0, self.after - sent)])
                    # Reset (not a clean FIN): the client sees the body end early. Shutting
                    # down the read side first wakes the other pump blocked in recv(), so
                    # the close below really happens now.
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    client.shutdown(socket.SHUT_RD)
                    break
                client.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            _quiet_close(client)
            _quiet_close(upstream)

    def _take_cut(self) -> bool:
        with self._lock:
            if self.cuts_left <= 0:
                return False
            self.cuts_left -= 1
            self.cuts_done += 1
        if self.on_cut is not None:
            self.on_cut()
        return True

    def close(self) -> None:
        self._closed = True
        self._server.close()
        with self._lock:
            for sock in self._open:
                _quiet_close(sock)


def _quiet_close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


@pytest.fixture
def proxy_factory(azurite):
    made: list[CuttingProxy] = []

    def make(**options) -> CuttingProxy:
        proxy = CuttingProxy(azurite.port, **options)
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.close()


def _via(proxy: CuttingProxy, azurite) -> str:
    return f"http://127.0.0.1:{proxy.port}/{azurite.account_name}"


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_cut_download_resumes_to_verified_file(
    make_twin, azurite, container, proxy_factory, tmp_path, caplog, concurrency
):
    """Connections reset mid-body are resumed by range; the result is complete and verified."""
    data = os.urandom(1_000_000)
    container.upload_blob("cut.bin", data)  # a single put: the service stores Content-MD5
    proxy = proxy_factory(after=20_000, cuts=3)
    twin = make_twin(
        account_url=_via(proxy, azurite),
        chunk_size=64 * 1024,
        max_concurrency=concurrency,
        retry={"attempts": 4, "initial": 0.05, "jitter": 0.05},
        read_timeout=10,
    )
    caplog.set_level(logging.INFO, logger="headwater.azure_blob")
    result = await twin.fetch("cut.bin", tmp_path)
    assert 3 == proxy.cuts_done
    assert (data, True) == (result.path.read_bytes(), result.verified)
    assert ["cut.bin"] == _files_under(tmp_path)
    if concurrency == 1:
        # Three cuts in a row exhaust the SDK's own retries: our range resume finished it.
        assert "resuming the missing ranges" in caplog.text


async def test_cut_download_resumes_the_same_way_on_both_sides(
    config, azurite, container, proxy_factory, tmp_path, caplog
):
    """fetch() and afetch() through connections cut alike resume alike: same file, same result."""
    from headwater_azure_blob import AzureBlobConnector

    data = os.urandom(600_000)
    container.upload_blob("twin.bin", data)
    caplog.set_level(logging.INFO, logger="headwater.azure_blob")
    outcomes = []
    for side in ("sync", "async"):
        proxy = proxy_factory(after=20_000, cuts=3)
        options = {
            "chunk_size": 64 * 1024,
            "max_concurrency": 1,
            "retry": {"attempts": 4, "initial": 0.05, "jitter": 0.05},
            "read_timeout": 10,
        }
        connector = AzureBlobConnector({**config, **options, "account_url": _via(proxy, azurite)})
        caplog.clear()
        if side == "sync":
            result = connector.fetch("twin.bin", tmp_path / side)
        else:
            result = await connector.afetch("twin.bin", tmp_path / side)
        await connector.aclose()
        resumes = caplog.text.count("resuming the missing ranges")
        facts = (result.size, result.checksum, result.verified, result.path.read_bytes())
        outcomes.append((proxy.cuts_done, resumes > 0, facts))
    assert (3, True, (len(data), True, data)) == (
        outcomes[0][0],
        outcomes[0][1],
        (outcomes[0][2][0], outcomes[0][2][2], outcomes[0][2][3]),
    )
    assert outcomes[0] == outcomes[1]


async def test_download_that_keeps_failing_leaves_nothing(
    make_twin, azurite, container, proxy_factory, tmp_path
):
    """A stream that is cut every time ends in one clear network error and no partial file."""
    container.upload_blob("doomed.bin", os.urandom(300_000))
    proxy = proxy_factory(after=20_000, cuts=10_000)
    twin = make_twin(account_url=_via(proxy, azurite), chunk_size=64 * 1024, retry={"attempts": 2})
    with pytest.raises(ConnectionFailed) as info:
        await twin.fetch("doomed.bin", tmp_path)
    assert Category.NETWORK == info.value.category
    assert "gave up" in info.value.message
    assert [] == _files_under(tmp_path)


async def test_blob_replaced_mid_download_is_detected(
    make_twin, azurite, container, proxy_factory, tmp_path
):
    """The etag is pinned: a blob overwritten during the download fails it, leaving no file."""
    container.upload_blob("moving.bin", os.urandom(500_000))

    def replace() -> None:
        container.upload_blob("moving.bin", os.urandom(500_000), overwrite=True)

    proxy = proxy_factory(after=100_000, cuts=1, on_cut=replace)
    twin = make_twin(account_url=_via(proxy, azurite), chunk_size=64 * 1024, retry={"attempts": 4})
    with pytest.raises(IntegrityError) as info:
        await twin.fetch("moving.bin", tmp_path)
    assert "changed" in info.value.message
    assert [] == _files_under(tmp_path)


# --- credentials and secrets --------------------------------------------------------------


def _texts_of(error: BaseException) -> list[str]:
    """Every text an error carries along its chain."""
    texts = []
    seen = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current), str(getattr(current, "hint", "") or "")]
        current = current.__cause__ or current.__context__
    return texts


async def test_wrong_key_is_auth_and_never_shown(make_twin, azurite, container, tmp_path, caplog):
    """A wrong account key: check() says auth on account_key; no key appears anywhere."""
    wrong_key = base64.b64encode(os.urandom(64)).decode()
    caplog.set_level(logging.DEBUG)
    twin = make_twin(account_key=wrong_key)
    result = await twin.check()
    assert (False, Category.AUTH, "account_key") == (result.ok, result.category, result.field)
    errors: list[HeadwaterError] = []
    for call in (
        lambda: twin.list(),
        lambda: twin.fetch("x.bin", tmp_path),
        lambda: twin.read("x.jsonl"),
        lambda: twin.write("x.jsonl", [[{"a": 1}]]),
    ):
        with pytest.raises(AuthFailed) as info:
            await call()
        errors.append(info.value)
    haystack = "\n".join(
        [
            caplog.text,
            repr(twin.connector),
            str(twin.connector.config),
            repr(twin.connector.config),
            str(result),
            str(result.to_dict()),
            str(twin.connector.config.sanitized()),
        ]
        + [text for error in errors for text in _texts_of(error)]
    )
    for secret in (wrong_key, azurite.account_key):
        assert secret not in haystack
    assert [] == _files_under(tmp_path)


async def test_expired_sas_is_auth_and_never_shown(make_twin, expired_sas, caplog):
    """An expired SAS: check() says auth on sas_token; its signature appears nowhere."""
    from urllib.parse import parse_qs

    sas = expired_sas
    signature = parse_qs(sas)["sig"][0]
    caplog.set_level(logging.DEBUG)
    twin = make_twin(account_key=None, sas_token=sas)
    result = await twin.check()
    assert (False, Category.AUTH, "sas_token") == (result.ok, result.category, result.field)
    with pytest.raises(AuthFailed) as info:
        await twin.list()
    haystack = "\n".join([caplog.text, repr(twin.connector), str(result), *_texts_of(info.value)])
    for secret in (signature, quote(signature, safe=""), sas):
        assert secret not in haystack


async def test_connection_string_key_never_shown(make_twin, azurite, container, caplog):
    """A connection string with a wrong key: auth on connection_string, key shown nowhere."""
    wrong_key = base64.b64encode(os.urandom(64)).decode()
    connection_string = azurite.connection_string.replace(azurite.account_key, wrong_key)
    caplog.set_level(logging.DEBUG)
    twin = make_twin(account_url=None, account_key=None, connection_string=connection_string)
    result = await twin.check()
    assert (False, Category.AUTH, "connection_string") == (
        result.ok,
        result.category,
        result.field,
    )
    haystack = "\n".join([caplog.text, repr(twin.connector), str(result)])
    assert wrong_key not in haystack
    assert "AccountKey" not in repr(twin.connector)

"""
Azurite (the official Azure Storage emulator, from npm) for tests.

* Azurite is installed once into a cache directory outside the repository:
  ``--azurite-dir`` / ``HEADWATER_AZURITE_DIR`` (default ``~/.cache/headwater-tests/azurite``),
  under a file lock so parallel runs do not install it twice.
* ``azurite`` (session) starts ``azurite-blob`` on a free loopback port with a temporary
  location and stops it at the end. ``--azurite-blob-url`` / ``HEADWATER_TEST_AZURITE_BLOB_URL``
  uses an Azurite that is already running instead (``http://127.0.0.1:10000/devstoreaccount1``).
* Without node/npm (or when Azurite cannot start) the tests skip locally and fail in CI.

The process helpers (`ensure_installed`, `start_azurite`) raise `AzuriteUnavailable` and
do not need pytest at run time, so benchmarks start Azurite the same way.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._npm import npm_install
from tests.fix_services import free_port, port_open, service_unavailable

AZURITE_VERSION = "3.35.0"
#: Azurite's well-known development account (public, documented by Microsoft).
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
START_TIMEOUT = 45.0
INSTALL_TIMEOUT = 900.0


class AzuriteUnavailable(RuntimeError):
    """Azurite cannot be installed or started here; the message says why."""


def default_dir() -> Path:
    """Where Azurite is installed: ``HEADWATER_AZURITE_DIR`` or the user's cache."""
    configured = os.environ.get("HEADWATER_AZURITE_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "headwater-tests" / "azurite"


def ensure_installed(directory: Path) -> Path:
    """The ``azurite-blob`` executable, installing Azurite from npm first if needed."""
    binary = directory / "node_modules" / ".bin" / "azurite-blob"
    npm_install(
        directory,
        f"azurite@{AZURITE_VERSION}",
        binary,
        timeout=INSTALL_TIMEOUT,
        unavailable=AzuriteUnavailable,
    )
    return binary


@dataclasses.dataclass
class Azurite:
    """A running Azurite blob service."""

    host: str
    port: int
    process: subprocess.Popen[bytes] | None = None
    location: Path | None = None

    @property
    def blob_url(self) -> str:
        """The account's blob endpoint (path-style, as Azurite wants it)."""
        return f"http://{self.host}:{self.port}/{ACCOUNT_NAME}"

    @property
    def account_name(self) -> str:
        return ACCOUNT_NAME

    @property
    def account_key(self) -> str:
        return ACCOUNT_KEY

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};"
            f"AccountKey={ACCOUNT_KEY};BlobEndpoint={self.blob_url}"
        )

    def service_client(self, **options: Any) -> Any:
        """A sync ``BlobServiceClient`` for setting up test data."""
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient(
            self.blob_url,
            credential={"account_name": ACCOUNT_NAME, "account_key": ACCOUNT_KEY},
            **options,
        )

    def stop(self) -> None:
        """Stop the process (if this object started it) and remove its data."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.location is not None:
            shutil.rmtree(self.location, ignore_errors=True)


def start_azurite(directory: Path | None = None, location: Path | None = None) -> Azurite:
    """Install (if needed) and start ``azurite-blob`` on a free loopback port; wait for it."""
    binary = ensure_installed(directory or default_dir())
    port = free_port()
    location = location or Path(tempfile.mkdtemp(prefix="headwater-azurite-"))
    log = location / "azurite.stderr"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [
                str(binary),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(port),
                "--location",
                str(location),
                "--silent",
                "--skipApiVersionCheck",
                "--disableTelemetry",
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    azurite = Azurite("127.0.0.1", port, process, location)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (log.read_text(errors="replace").strip().splitlines() or ["(no output)"])[-1]
            azurite.stop()
            raise AzuriteUnavailable(f"azurite-blob exited with {process.returncode}: {tail}")
        if port_open("127.0.0.1", port, timeout=0.2):
            return azurite
        time.sleep(0.2)
    azurite.stop()
    raise AzuriteUnavailable(f"azurite-blob did not listen on port {port} in {START_TIMEOUT:.0f} s")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("azurite", "Azurite (Azure Storage emulator)")
    group.addoption(
        "--azurite-dir",
        default=str(default_dir()),
        help="Where Azurite is (or gets) installed (env HEADWATER_AZURITE_DIR).",
    )
    group.addoption(
        "--azurite-blob-url",
        default=os.environ.get("HEADWATER_TEST_AZURITE_BLOB_URL"),
        help="Use this running Azurite blob endpoint instead of starting one "
        "(env HEADWATER_TEST_AZURITE_BLOB_URL), e.g. http://127.0.0.1:10000/devstoreaccount1.",
    )


@pytest.fixture(scope="session")
def azurite(request: pytest.FixtureRequest) -> Iterator[Azurite]:
    """A running Azurite blob service for the session (skips locally / fails in CI without)."""
    from urllib.parse import urlsplit

    url = request.config.getoption("--azurite-blob-url")
    if url:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 10000
        if not port_open(host, port):
            service_unavailable(f"no Azurite answering at {url}")
        yield Azurite(host, port)
        return
    try:
        running = start_azurite(Path(request.config.getoption("--azurite-dir")))
    except AzuriteUnavailable as exc:
        service_unavailable(str(exc))
    try:
        yield running
    finally:
        running.stop()

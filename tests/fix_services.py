"""
Shared rules for tests that need a real service (PostgreSQL, Azurite, HTTP servers).

Outside CI a test whose service cannot be started is skipped with the reason; with
``CI=true`` the same situation is a failure, because a skipped integration test in CI
would hide exactly what CI is there to catch.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """True when CI=true (or 1) is set."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def service_unavailable(reason: str) -> NoReturn:
    """Skip (locally) or fail (in CI) because a required service is missing."""
    if in_ci():
        pytest.fail(f"required service unavailable in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def run_with_secret_service(home: Path, script: str) -> subprocess.CompletedProcess[str]:
    """
    Run the shell ``script`` in a private D-Bus session with an unlocked gnome-keyring
    (a real Secret Service), ``home`` as its home directory and working directory, and
    keyring's SecretService backend chosen. Skips, or fails in CI, without the tools.
    """
    if not (shutil.which("dbus-run-session") and shutil.which("gnome-keyring-daemon")):
        service_unavailable("gnome-keyring-daemon / dbus-run-session not installed")
    # Without --unlock every Secret Service call fails with "Prompt dismissed".
    (home / "secret-service.sh").write_text(
        "set -e\n"
        "printf unlock | gnome-keyring-daemon --unlock --components=secrets >/dev/null\n" + script
    )
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_RUNTIME_DIR": str(home),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.SecretService.Keyring",
    }
    return subprocess.run(
        ["dbus-run-session", "--", "sh", "secret-service.sh"],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

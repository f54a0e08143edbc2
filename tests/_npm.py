"""Installing a test service's npm package once into a cache directory (Azurite, oidc-provider)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path


def npm_install(
    directory: Path,
    package: str,
    marker: Path,
    *,
    timeout: float,
    unavailable: type[Exception],
) -> None:
    """
    ``npm install package`` into ``directory`` unless ``marker`` (a file the package
    installs) exists, under a cross-process lock so parallel runs do not install it twice.

    Raises:
        unavailable: node or npm is missing, or the install failed or timed out (the
            message says which, with npm's last line).
    """
    if marker.exists():
        return
    npm = shutil.which("npm")
    if not shutil.which("node") or not npm:
        raise unavailable(f"node and npm are needed to install {package} (not on PATH)")
    directory.mkdir(parents=True, exist_ok=True)
    with install_lock(directory / ".install.lock"):
        if marker.exists():  # another process installed it while this one waited
            return
        try:
            proc = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--prefix", str(directory), package],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise unavailable(f"npm install {package} timed out") from None
        if proc.returncode != 0 or not marker.exists():
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise unavailable(f"npm install {package} failed: {tail}")


@contextlib.contextmanager
def install_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` across processes (none where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock, install anyway
        yield
        return
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

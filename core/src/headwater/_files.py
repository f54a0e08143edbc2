"""
Local-file helpers every connector that downloads or writes files must use.

* `safe_destination` maps a remote item name to a path that is guaranteed to lie inside
  the destination directory, refusing names that would escape it.
* `atomic_file` writes to a temporary file in the target's directory and renames it into
  place only when the body finished without error, so the final path never holds a
  partial file.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from headwater.errors import UnsafePath

_DRIVE = re.compile(r"^[A-Za-z]:")


def safe_destination(dest: str | os.PathLike[str], name: str) -> Path:
    """
    The local path for item ``name`` under directory ``dest``, refusing unsafe names.

    Remote names use ``/`` as separator. A name is refused (`UnsafePath`) when it is
    empty, absolute, has a drive letter, contains a backslash, a NUL, or a ``..`` or
    ``.`` segment — rather than "cleaned", because two remote names mapping to one
    local file would silently lose data. The resolved result is checked once more
    against ``dest`` so a symlink inside ``dest`` cannot lead outside it either.
    """
    reason = None
    if not name or name.strip("/") == "":
        reason = "it is empty"
    elif "\x00" in name:
        reason = "it contains a NUL byte"
    elif "\\" in name:
        reason = "it contains a backslash"
    elif name.startswith("/"):
        reason = "it is an absolute path"
    elif _DRIVE.match(name):
        reason = "it starts with a drive letter"
    else:
        parts = PurePosixPath(name).parts
        segments = name.split("/")
        if any(part in {"..", "."} for part in segments):
            reason = "it contains a '..' or '.' segment"
        elif "" in segments[:-1]:
            # "a//b" would land on the same file as "a/b": refuse rather than collide.
            reason = "it contains an empty segment ('//')"
        elif not parts:
            reason = "it is empty"
    if reason is None:
        root = Path(dest).resolve()
        target = (root / Path(*PurePosixPath(name).parts)).resolve()
        if target != root and root not in target.parents:
            reason = "it resolves outside the destination (symlink?)"
        else:
            return target
    raise UnsafePath(
        f"refusing to write item {name!r}: {reason}",
        hint="headwater never writes outside the destination directory; rename the item "
        "or fetch it to an explicit file name",
    )


def temporary_prefix(target: Path) -> str:
    """
    How the temporary file of `atomic_file` for ``target`` starts (it ends in ``.part``).
    Capped, so a target whose name is near the file system's limit (255 bytes on Linux)
    can still be written.
    """
    return f".{target.name[:64]}."


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[bytes]]:
    """
    Open a temporary file beside ``path``; on success fsync and rename it to ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=temporary_prefix(target), suffix=".part", dir=target.parent
    )
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise

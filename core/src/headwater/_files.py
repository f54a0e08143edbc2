"""
Local-file helpers every connector that downloads or writes files must use.

* `safe_destination` maps a remote item name to a path that is guaranteed to lie inside
  the destination directory, refusing names that would escape it.
* `atomic_file` writes to a temporary file in the target's directory and renames it into
  place only when the body finished without error, so the final path never holds a
  partial file. Data gets the permissions any new file would (the umask decides; a
  replaced file keeps its own); ``private=True`` (state and sources files) makes it 0600.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
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
    Capped at 64 bytes of the name (whole characters), so a target whose name is near
    the file system's limit (255 bytes on Linux) can still be written: 64 characters
    could be 256 bytes.
    """
    kept, size = [], 0
    for char in target.name:
        size += len(os.fsencode(char))
        if size > 64:
            break
        kept.append(char)
    return f".{''.join(kept)}."


def create_temporary(target: Path, suffix: str, *, private: bool = False) -> tuple[int, str]:
    """
    Create a new temporary file beside ``target`` (``O_EXCL``, a random name); returns its
    descriptor and path.

    Its permissions are those of any new file — ``0666`` less the umask, applied by the
    kernel — or, when ``target`` exists, ``target``'s own, so renaming it into place
    changes the data only; ``private`` makes it ``0600`` whatever the umask.
    (`tempfile.mkstemp` would make every file 0600, a surprise for data meant to be shared.)
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        name = target.parent / f"{temporary_prefix(target)}{secrets.token_hex(6)}{suffix}"
        try:
            fd = os.open(name, flags, 0o600 if private else 0o666)
        except FileExistsError:
            continue
        break
    if not private and hasattr(os, "fchmod"):
        with contextlib.suppress(OSError):
            os.fchmod(fd, stat.S_IMODE(os.stat(target).st_mode))
    return fd, str(name)


@contextlib.contextmanager
def atomic_file(
    path: str | os.PathLike[str], mode: str = "wb", *, private: bool = False
) -> Iterator[IO[bytes]]:
    """
    Open a temporary file beside ``path``; on success fsync and rename it to ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched. The
    file gets the permissions a new file would (see `create_temporary`); pass
    ``private=True`` for one that only its owner may read (state, credentials).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = create_temporary(target, ".part", private=private)
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


def fsync_directory(path: Path) -> None:
    """
    Make a rename into, or a new file in, directory ``path`` durable. A no-op where a
    directory cannot be opened (Windows) or a file system refuses to sync one: the
    data itself has been synced by then.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

"""
Where a `SourceRegistry` keeps its sources: the `SourceStore` interface and two stores.

* `TomlSourceStore` — the TOML sources file (the CLI's default; see `headwater._sources`).
* `MemorySourceStore` — a dict in the process, for a service or a test that has no file,
  or that keeps its sources elsewhere and registers them at startup.

A store holds *entries*: for each source name, the JSON-like table the TOML file holds
(``connector``, ``config``, optional ``description``, ``owner``, ``environment``,
``labels``). The registry validates entries and refuses literal secrets before they
reach a store, so a store never sees a secret value, only references.

To keep sources in a database or a service the application already has, implement the
three methods of `SourceStore`; the registry does the validation, caching and locking of
live connectors around it.
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
import threading
import tomllib
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

import tomli_w

from headwater._files import atomic_file, fsync_directory
from headwater.errors import SourceError

__all__ = ["MemorySourceStore", "SourceStore", "TomlSourceStore"]

#: name -> the source's table (connector, config, description, owner, environment, labels)
Entries = dict[str, dict[str, Any]]

_HEADER: Final = (
    "# headwater named sources. Secret fields hold references only\n"
    "# (env:NAME, file:PATH, keyring:SERVICE/USER, encrypted:NAME), never values.\n\n"
)


@runtime_checkable
class SourceStore(Protocol):
    """
    Storage of named source entries for a `SourceRegistry`.

    An implementation must be safe to call from several threads. ``update`` must apply
    ``change`` to the *current* entries and save the result as one atomic step, so two
    writers (threads or processes sharing the store) never lose each other's change.
    """

    @property
    def location(self) -> str:
        """Where the sources are kept, for messages (``sources file /etc/...``)."""
        ...

    def version(self) -> Hashable:
        """
        A cheap token that changes whenever the entries may have changed.

        The registry re-reads the entries only when it differs from the last one seen.
        """
        ...

    def read(self) -> Entries:
        """The current entries, as a copy the caller may keep (an empty store: ``{}``)."""
        ...

    def update(self, change: Callable[[Entries], None]) -> Entries:
        """
        Apply ``change`` (which mutates the entries it is given) and save atomically.

        If ``change`` raises, nothing is saved and the exception propagates. Returns the
        entries as saved.
        """
        ...


class MemorySourceStore:
    """
    Sources kept in memory: nothing is written anywhere, everything is gone at exit.

    Args:
        entries: initial entries (name -> table), copied.
    """

    def __init__(self, entries: Entries | None = None) -> None:
        self._lock = threading.Lock()
        self._entries: Entries = copy.deepcopy(dict(entries or {}))
        self._version = 0

    @property
    def location(self) -> str:
        return "the in-memory source store"

    def version(self) -> Hashable:
        return self._version

    def read(self) -> Entries:
        with self._lock:
            return copy.deepcopy(self._entries)

    def update(self, change: Callable[[Entries], None]) -> Entries:
        with self._lock:
            # Changed on a copy, so a change that raises half-way leaves nothing behind.
            entries = copy.deepcopy(self._entries)
            change(entries)
            self._entries = entries
            self._version += 1
            return copy.deepcopy(entries)

    def __repr__(self) -> str:
        return f"<MemorySourceStore sources={len(self._entries)}>"


class TomlSourceStore:
    """
    Sources in a TOML file, ``[sources.NAME]`` tables (the CLI's store).

    Every write re-reads the file under an advisory lock on ``<file>.lock`` (POSIX), changes
    it, and replaces it atomically (temporary file beside it, fsync, rename; mode 0600),
    so two processes adding sources at once keep both. A symlinked file is written where
    the link points. Comments in a hand-edited file are not preserved by a write.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path).expanduser()

    @property
    def path(self) -> Path:
        """The TOML file."""
        return self._path

    @property
    def location(self) -> str:
        return f"sources file {self._path}"

    def __repr__(self) -> str:
        return f"<TomlSourceStore path={str(self._path)!r}>"

    def version(self) -> Hashable:
        try:
            st = self._path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SourceError(
                f"cannot read sources file {self._path}: {exc.strerror or type(exc).__name__}"
            ) from None
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def _read_document(self) -> dict[str, Any]:
        try:
            raw = self._path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise SourceError(
                f"cannot read sources file {self._path}: {exc.strerror or type(exc).__name__}"
            ) from None
        try:
            document = tomllib.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise SourceError(
                f"sources file {self._path} is not valid UTF-8",
                hint="fix or delete the file; it is plain TOML",
            ) from None
        except tomllib.TOMLDecodeError as exc:
            # The decoder's message says where: "Invalid value (at line 3, column 9)".
            raise SourceError(
                f"sources file {self._path} is not valid TOML: {exc}",
                hint="fix the file by hand or delete it; it is plain TOML",
            ) from None
        if not isinstance(document.get("sources", {}), dict):
            raise SourceError(f"sources file {self._path}: 'sources' must be a table")
        return document

    def read(self) -> Entries:
        sources: Entries = self._read_document().get("sources", {})
        return sources

    def update(self, change: Callable[[Entries], None]) -> Entries:
        directory = self._path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise SourceError(
                f"cannot create {directory}: {exc.strerror or type(exc).__name__}"
            ) from None
        lock_path = self._path.with_name(self._path.name + ".lock")
        with _interprocess_lock(lock_path):
            # Re-read under the lock: another process's change since is never lost.
            document = self._read_document()
            entries: Entries = document.setdefault("sources", {})
            change(entries)
            text = _HEADER + tomli_w.dumps(document)
            try:
                target = Path(os.path.realpath(self._path))
                with atomic_file(target, private=True) as handle:
                    handle.write(text.encode("utf-8"))
                fsync_directory(target.parent)
            except OSError as exc:
                raise SourceError(
                    f"cannot write sources file {self._path}: {exc.strerror or type(exc).__name__}"
                ) from None
            return copy.deepcopy(entries)


@contextlib.contextmanager
def _interprocess_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``path`` (created if needed), against other processes."""
    if sys.platform == "win32":
        # No flock on Windows: only the registry's in-process lock applies there.
        yield
        return
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock

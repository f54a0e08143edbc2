"""
The connectors a `headwater.SourceRegistry` has opened, and the metadata it has cached.

`SourceRegistry` keeps the saved sources (a store: TOML file, memory, ...) and validates
them; this module keeps what is *live* for them, thread-safe, with no knowledge of how
sources are stored: one connector per source name, built once however many threads ask
for it at the same time, replaced when its source changes or it was closed, and the
read-through metadata cache with its time-to-live. A source replaced or removed bumps
its generation, so a connector or an answer being made for the old one is discarded.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final, Generic, TypeVar

from headwater._connector import Connector
from headwater._redact import get_logger
from headwater.errors import HeadwaterError

logger = get_logger("headwater.sources")

#: A source as the registry parsed it: compared to know whether a live connector (or a
#: cached answer) still belongs to it.
S = TypeVar("S")

#: Entries beyond which expired metadata is swept on the next store.
_METADATA_SWEEP: Final = 1024


@dataclasses.dataclass(slots=True)
class _Live(Generic[S]):
    source: S
    connector: Connector[Any]


@dataclasses.dataclass(slots=True)
class _Cached(Generic[S]):
    expires: float
    source: S
    value: dict[str, Any]


def close_quietly(name: str, connector: Connector[Any]) -> None:
    """Close ``connector`` (of source ``name``), logging a failure instead of raising it."""
    try:
        connector.close()
    except Exception as exc:
        _log_close_failure(name, exc)


async def aclose_quietly(name: str, connector: Connector[Any]) -> None:
    """`close_quietly` with the connector's `aclose`."""
    try:
        await connector.aclose()
    except Exception as exc:
        _log_close_failure(name, exc)


def _log_close_failure(name: str, exc: Exception) -> None:
    message = exc.message if isinstance(exc, HeadwaterError) else type(exc).__name__
    logger.warning("closing the connector of source %s failed: %s", name, message)


class LiveConnectors(Generic[S]):
    """
    Live connectors and cached metadata per source name (thread-safe).

    Args:
        metadata_ttl: seconds a cached answer lives unless stored with its own ``ttl``.
        clock: monotonic seconds (tests inject a fake clock).
    """

    def __init__(self, *, metadata_ttl: float, clock: Callable[[], float]) -> None:
        self._metadata_ttl = metadata_ttl
        self._clock = clock
        self._lock = threading.RLock()
        self._live: dict[str, _Live[S]] = {}
        # One lock per name so that exactly one thread builds a source's connector.
        self._build_locks: dict[str, threading.Lock] = {}
        # Bumped when a name is replaced or removed, so an in-flight build is discarded.
        self._generation: dict[str, int] = {}
        self._metadata: dict[tuple[str, str], _Cached[S]] = {}

    def __len__(self) -> int:
        return len(self._live)

    # --- connectors ----------------------------------------------------------------------

    def reusable(self, name: str, source: S) -> Connector[Any] | None:
        """The live connector of ``name`` if it is open and made for ``source``."""
        with self._lock:
            live = self._live.get(name)
            if live is None or live.connector.closed or live.source != source:
                return None
            return live.connector

    def connector(
        self,
        name: str,
        current: Callable[[str], S],
        build: Callable[[S], Connector[Any]],
    ) -> Connector[Any]:
        """
        The live connector of ``name``: reused while it is open and its source (as
        ``current(name)`` gives it now) unchanged, else built with ``build`` by exactly
        one of the threads asking; one built for a source replaced meanwhile is closed
        and the build is made again.
        """
        while True:
            source = current(name)
            live = self.reusable(name, source)
            if live is not None:
                return live
            with self._lock:
                build_lock = self._build_locks.setdefault(name, threading.Lock())
            with build_lock:
                live = self.reusable(name, source)
                if live is not None:
                    return live
                generation = self.generation(name)
                built = build(source)
                with self._lock:
                    if self._generation.get(name, 0) == generation:
                        old = self._live.get(name)
                        self._live[name] = _Live(source, built)
                        stale = old.connector if old is not None else None
                        current_build = True
                    else:
                        # Removed or replaced while we were building: discard and retry.
                        stale, current_build = built, False
                if stale is not None:
                    close_quietly(name, stale)
                if current_build:
                    return built

    def generation(self, name: str) -> int:
        """How many times ``name`` was replaced or removed (what a build started under)."""
        with self._lock:
            return self._generation.get(name, 0)

    def forget(self, name: str) -> None:
        """Drop ``name``'s live connector (closed) and cached metadata: it changed or went."""
        with self._lock:
            self._generation[name] = self._generation.get(name, 0) + 1
            live = self._live.pop(name, None)
            for key in [k for k in self._metadata if k[0] == name]:
                del self._metadata[key]
        if live is not None:
            close_quietly(name, live.connector)

    def _take_all(self) -> list[tuple[str, Connector[Any]]]:
        with self._lock:
            live = [(name, entry.connector) for name, entry in self._live.items()]
            self._live.clear()
            self._metadata.clear()
        return live

    def close_all(self) -> None:
        """Close every live connector (all are tried; the first failure is then raised)."""
        first: Exception | None = None
        for name, connector in self._take_all():
            try:
                connector.close()
            except Exception as exc:
                first = first or exc
                _log_close_failure(name, exc)
        if first is not None:
            raise first

    async def aclose_all(self) -> None:
        """`close_all` with each connector's `aclose`."""
        first: Exception | None = None
        for name, connector in self._take_all():
            try:
                await connector.aclose()
            except Exception as exc:
                first = first or exc
                _log_close_failure(name, exc)
        if first is not None:
            raise first

    def stats(self) -> dict[str, Any]:
        """``{name: connector.stats()}`` of the open live connectors that hold pools."""
        with self._lock:
            live = [(name, entry.connector) for name, entry in sorted(self._live.items())]
        result: dict[str, Any] = {}
        for name, connector in live:
            stats = {} if connector.closed else connector.stats()
            if stats:
                result[name] = stats
        return result

    # --- metadata cache ----------------------------------------------------------------

    def lookup(self, name: str, item: str, source: S) -> dict[str, Any] | None:
        """A copy of the cached metadata of ``item``, unless absent, expired or stale."""
        with self._lock:
            cached = self._metadata.get((name, item))
            if cached is None:
                return None
            if cached.source != source or self._clock() >= cached.expires:
                del self._metadata[(name, item)]
                return None
            return copy.deepcopy(cached.value)

    def put(
        self,
        name: str,
        item: str,
        source: S,
        value: Mapping[str, Any],
        ttl: float | None,
        generation: int,
    ) -> None:
        """
        Cache ``value`` for ``ttl`` seconds (the default TTL when None; 0 keeps nothing),
        unless ``name`` was replaced or removed since ``generation``.
        """
        seconds = self._metadata_ttl if ttl is None else ttl
        if seconds < 0:
            raise ValueError("ttl must be >= 0")
        with self._lock:
            # A source replaced or removed meanwhile: the answer belongs to the old one.
            if seconds == 0 or self._generation.get(name, 0) != generation:
                return
            now = self._clock()
            if len(self._metadata) >= _METADATA_SWEEP:
                for stale in [k for k, c in self._metadata.items() if c.expires <= now]:
                    del self._metadata[stale]
            self._metadata[(name, item)] = _Cached(
                now + seconds, source, copy.deepcopy(dict(value))
            )

    def clear(self, name: str | None = None, item: str | None = None) -> int:
        """Drop cached metadata (of one item, one source, or all); how many were dropped."""
        with self._lock:
            doomed = [
                key
                for key in self._metadata
                if (name is None or key[0] == name) and (item is None or key[1] == item)
            ]
            for key in doomed:
                del self._metadata[key]
        return len(doomed)


__all__ = ["LiveConnectors", "aclose_quietly", "close_quietly"]

"""
The entry points of one group, read without importing `importlib.metadata` where that
gives importlib.metadata's own answer.

Importing `importlib.metadata` (the e-mail parser, zipfile, csv and friends) costs about
three times what its scan of the installed distributions does: most of a `headwater
connectors` run. Where every distribution it would find lies in a plain directory on
``sys.path`` found by the standard path finder, `entry_points` reads them as it does:
the same directories in the same order (``*.dist-info`` / ``*.egg-info`` per
``os.listdir``, grouped by normalized name), the first distribution of a name wins, and
``entry_points.txt`` parsed by its rules. Anything else — a finder of its own on
``sys.meta_path``, a zip file or an egg on ``sys.path``, a metadata directory whose name
it reads some other way, a file it cannot read or parse — goes to importlib.metadata
itself, for the whole scan.

The entry points and distributions given back do what headwater asks of
importlib.metadata's: ``name``, ``value``, ``group``, ``dist``, ``load()``,
``read_text()``; ``metadata`` and ``requires`` come from importlib.metadata.
"""

from __future__ import annotations

import os
import re
import sys
from importlib import import_module
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from importlib.metadata import PackageMetadata

__all__ = ["DistributionLike", "EntryPointLike", "entry_points"]

#: The metadata directories importlib.metadata names from their stem (``name-1.0.dist-info``).
_SUFFIXES = (".dist-info", ".egg-info")
#: What importlib.metadata's `read_text` takes for "no such file".
_MISSING = (FileNotFoundError, IsADirectoryError, KeyError, NotADirectoryError, PermissionError)
#: An entry point's value loaded here: ``module`` or ``module:attr`` (no extras).
_PLAIN_VALUE = re.compile(r"([\w.]+)\s*(?::\s*([\w.]+)\s*)?")


class DistributionLike(Protocol):
    """What headwater reads of a distribution."""

    def read_text(self, filename: str) -> str | None: ...

    @property
    def metadata(self) -> PackageMetadata: ...

    @property
    def requires(self) -> list[str] | None: ...


class EntryPointLike(Protocol):
    """What headwater reads of an entry point."""

    @property
    def name(self) -> str: ...

    @property
    def value(self) -> str: ...

    @property
    def dist(self) -> DistributionLike | None: ...

    def load(self) -> Any: ...


class _Distribution:
    """A distribution in a ``*.dist-info`` / ``*.egg-info`` directory."""

    __slots__ = ("_path",)

    def __init__(self, path: str) -> None:
        self._path = path

    def read_text(self, filename: str) -> str | None:
        try:
            with open(os.path.join(self._path, filename), encoding="utf-8") as handle:
                return handle.read()
        except _MISSING:
            return None

    def _standard(self) -> Any:
        from importlib.metadata import PathDistribution
        from pathlib import Path

        return PathDistribution(Path(self._path))

    @property
    def metadata(self) -> PackageMetadata:
        metadata: PackageMetadata = self._standard().metadata
        return metadata

    @property
    def requires(self) -> list[str] | None:
        requires: list[str] | None = self._standard().requires
        return requires

    def __repr__(self) -> str:
        return f"<distribution at {self._path!r}>"


class _EntryPoint:
    """One entry point, as importlib.metadata.EntryPoint loads it."""

    __slots__ = ("dist", "group", "name", "value")

    def __init__(self, name: str, value: str, group: str, dist: _Distribution) -> None:
        self.name = name
        self.value = value
        self.group = group
        self.dist = dist

    def load(self) -> Any:
        match = _PLAIN_VALUE.fullmatch(self.value)
        if match is None:  # extras, or something importlib.metadata reads its own way
            from importlib.metadata import EntryPoint

            return EntryPoint(self.name, self.value, self.group).load()
        obj: Any = import_module(match[1])
        for attr in filter(None, (match[2] or "").split(".")):
            obj = getattr(obj, attr)
        return obj

    def __repr__(self) -> str:
        return f"EntryPoint(name={self.name!r}, value={self.value!r}, group={self.group!r})"


def entry_points(group: str) -> list[EntryPointLike]:
    """The entry points of ``group``, in importlib.metadata's order."""
    found = _scan(group)
    if found is None:
        from importlib.metadata import entry_points as standard_entry_points

        return list(standard_entry_points(group=group))
    return list(found)


def _normalize(name: str) -> str:
    """importlib.metadata's `Prepared.normalize`: PEP 503, dashes as underscores."""
    return re.sub(r"[-_.]+", "-", name).lower().replace("-", "_")


def _standard_finders_only() -> bool:
    """Whether the path finder is the only finder on sys.meta_path that finds distributions."""
    from importlib.machinery import PathFinder

    return all(
        finder is PathFinder or getattr(finder, "find_distributions", None) is None
        for finder in sys.meta_path
    )


def _metadata_dirs(root: str) -> list[str] | None:
    """
    The metadata directories of one ``sys.path`` entry in importlib.metadata's order;
    ``None`` when importlib.metadata would read the entry some other way.
    """
    if os.path.basename(root).lower().endswith(".egg"):
        return None  # an egg: importlib.metadata looks for egg-info inside it
    try:
        children = os.listdir(root or ".")
    except FileNotFoundError:
        if os.path.lexists(root or "."):
            return None  # a zip file, say
        return []
    except OSError:
        return None
    grouped: dict[str, list[str]] = {}
    for child in children:
        low = child.lower()
        if not low.endswith(_SUFFIXES):
            continue
        if not child.endswith(_SUFFIXES):
            return None  # "X.DIST-INFO": importlib.metadata names it from its metadata
        stem = child.rpartition(".")[0]
        name = stem.partition("-")[0]
        if not name:
            return None  # no name in the stem: named from its metadata, too
        grouped.setdefault(_normalize(name), []).append(os.path.join(root, child))
    return [path for paths in grouped.values() for path in paths]


def _scan(group: str) -> list[_EntryPoint] | None:
    """The entry points of ``group``, or ``None`` where importlib.metadata must read them."""
    if not _standard_finders_only():
        return None
    seen: set[str] = set()
    found: list[_EntryPoint] = []
    for root in sys.path:
        entry: object = root  # sys.path may hold anything; importlib.metadata takes paths
        if not isinstance(entry, str):
            return None
        dirs = _metadata_dirs(entry)
        if dirs is None:
            return None
        for path in dirs:
            # The first distribution of a name wins, as in importlib.metadata's _unique.
            key = _normalize(os.path.basename(path).rpartition(".")[0].partition("-")[0])
            if key in seen:
                continue
            seen.add(key)
            dist = _Distribution(path)
            try:
                text = dist.read_text("entry_points.txt")
            except (OSError, ValueError):
                return None  # not text importlib.metadata reads quietly: let it say so
            if text is None:
                continue
            parsed = _parse(text, group, dist)
            if parsed is None:
                return None
            found.extend(parsed)
    return found


def _parse(text: str, group: str, dist: _Distribution) -> list[_EntryPoint] | None:
    """``group``'s entry points in ``entry_points.txt``; ``None`` on a line without ``=``."""
    found: list[_EntryPoint] = []
    section: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line.strip("[]")
            continue
        if section is None:
            continue
        name, sep, value = line.partition("=")
        if not sep:
            return None  # importlib.metadata raises on it, whatever its group
        if section == group:
            found.append(_EntryPoint(name.strip(), value.strip(), group, dist))
    return found

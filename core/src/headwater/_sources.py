"""
Named sources: a connector id plus its config, saved under a name in a TOML file.

The file holds secret *references* only (``env:NAME``, ``file:PATH``,
``keyring:SERVICE/USER``, or a scheme a plugin registers). `SourceRegistry.add` refuses
a literal secret or a Python callable in any `Secret` field, so no secret value is ever
written to disk. The file looks like::

    [sources.warehouse]
    connector = "postgres"
    description = "the reporting replica"

    [sources.warehouse.config]
    host = "db.internal"
    password = "keyring:warehouse/reporter"

A `SourceRegistry` is safe to share between threads. One re-entrant lock guards the
caches and every write; writers also take an advisory lock on ``<file>.lock`` (POSIX) so
two processes adding sources at once do not lose each other's entry. Every write
re-reads the file under that lock, changes one entry, and replaces the file atomically
(temporary file in the same directory, fsync, rename; mode 0600). Reads re-parse the
file only when its identity, size or timestamps changed, so edits made by another process
are picked up. Comments in a hand-edited file are not preserved by a write.
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import dataclasses
import os
import re
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import tomli_w
from pydantic import BaseModel

from headwater._connector import Connector, ConnectorConfig, validate_config
from headwater._files import atomic_file
from headwater._redact import get_logger, is_credential_name, redact
from headwater._secrets import Secret
from headwater.errors import ConfigError, HeadwaterError, SourceError

if TYPE_CHECKING:
    from types import TracebackType

    from headwater._plugins import Registry

__all__ = ["Source", "SourceRegistry", "default_sources_path"]

logger = get_logger("headwater.sources")

_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_HEADER: Final = (
    "# headwater named sources. Secret fields hold references only\n"
    "# (env:NAME, file:PATH, keyring:SERVICE/USER), never values.\n\n"
)
_REFERENCE_HINT: Final = (
    "store it with `headwater secrets set SERVICE USER` and use keyring:SERVICE/USER, "
    "or use env:NAME or file:PATH"
)
#: Above this many cached metadata entries, expired ones are swept on insert.
_METADATA_SWEEP: Final = 1024

#: A path into a config: keys of tables, indexes of arrays.
ConfigPath = tuple[str | int, ...]


def default_sources_path() -> Path:
    """
    Where sources are saved unless a path is given.

    ``$HEADWATER_SOURCES_FILE`` if set, else ``$XDG_CONFIG_HOME/headwater/sources.toml``
    (when that variable is an absolute path, as the XDG spec requires), else
    ``~/.config/headwater/sources.toml``.
    """
    explicit = os.environ.get("HEADWATER_SOURCES_FILE", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME", "").strip()
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".config"
    return base / "headwater" / "sources.toml"


@dataclasses.dataclass(frozen=True, repr=False)
class Source:
    """
    One saved source: a name, the connector id, and its config as saved.

    ``config`` is JSON-like data (what the TOML file holds); `Secret` fields hold their
    references (``env:PGPASSWORD``), never values.
    """

    name: str
    connector: str
    config: dict[str, Any]
    description: str = ""
    #: Where the config's `Secret` values sit, as found by validating it against the
    #: connector's model; ``None`` when unknown (connector not installed, invalid config),
    #: in which case `sanitized` masks by key name instead.
    secret_paths: frozenset[ConfigPath] | None = dataclasses.field(
        default=None, compare=False, kw_only=True
    )

    def sanitized(self) -> dict[str, Any]:
        """Name, connector, description and config, with every secret shown via `Secret.display`."""
        config = copy.deepcopy(self.config)
        if self.secret_paths is None:
            _mask_by_key(config)
        else:
            for path in self.secret_paths:
                _mask_at(config, path)
        # Whatever a hand-edited file holds elsewhere (a URL with its password) is
        # scrubbed as any text headwater shows.
        config = _redacted(config)
        return {
            "name": self.name,
            "connector": self.connector,
            "description": self.description,
            "config": config,
        }

    def __repr__(self) -> str:
        # The config is shown sanitized: a hand-edited file might hold a literal secret.
        view = self.sanitized()
        return (
            f"Source(name={self.name!r}, connector={self.connector!r}, "
            f"description={self.description!r}, config={view['config']!r})"
        )


def _display(value: Any) -> Any:
    if isinstance(value, str):
        return Secret.parse(value).display()
    return value


def _mask_at(config: Any, path: ConfigPath) -> None:
    node = config
    for step in path[:-1]:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return
    last = path[-1]
    present = (isinstance(node, dict) and last in node) or (
        isinstance(node, list) and isinstance(last, int) and 0 <= last < len(node)
    )
    if present:
        node[last] = _display(node[last])


def _redacted(node: Any) -> Any:
    if isinstance(node, str):
        return redact(node)
    if isinstance(node, dict):
        return {key: _redacted(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_redacted(item) for item in node]
    return node


def _mask_by_key(node: Any, secretish: bool = False) -> Any:
    """Mask literal-looking strings under secret-sounding keys (fallback, in place)."""
    if isinstance(node, dict):
        for key, value in node.items():
            node[key] = _mask_by_key(value, secretish or is_credential_name(str(key)))
        return node
    if isinstance(node, list):
        return [_mask_by_key(item, secretish) for item in node]
    return _display(node) if secretish else node


def _secrets_in(value: Any, path: ConfigPath = ()) -> Iterator[tuple[ConfigPath, Secret]]:
    """Every `Secret` inside a validated config, with its path in the dumped data."""
    if isinstance(value, Secret):
        yield path, value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _secrets_in(getattr(value, name, None), (*path, name))
        # Extra fields (a plugin auth scheme's settings) may be secrets too.
        for name, item in (value.model_extra or {}).items():
            yield from _secrets_in(item, (*path, name))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _secrets_in(item, (*path, str(key)))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _secrets_in(item, (*path, index))


def _declared_field(model: BaseModel, path: ConfigPath) -> bool:
    """Whether ``path`` ends at a field the config's models declare (not a map key or extra)."""
    node: Any = model
    for step in path[:-1]:
        if isinstance(node, BaseModel) and isinstance(step, str):
            node = getattr(node, step, None)
        elif isinstance(node, Mapping | list | tuple):
            try:
                node = node[step]  # type: ignore[index]
            except (KeyError, IndexError, TypeError):
                return False
        else:
            return False
    return isinstance(node, BaseModel) and path[-1] in type(node).model_fields


def _dotted(path: ConfigPath) -> str:
    return ".".join(str(step) for step in path)


def _check_tomlable(value: Any, path: ConfigPath) -> None:
    # TOML has no null; a None that survived exclude_defaults cannot be saved faithfully.
    if value is None:
        raise ConfigError(
            f"config field {_dotted(path)!r} is null, which a TOML sources file cannot hold",
            field=_dotted(path),
            hint="leave the field out to use its default",
        )
    if isinstance(value, dict):
        for key, item in value.items():
            _check_tomlable(item, (*path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_tomlable(item, (*path, index))


@contextlib.contextmanager
def _interprocess_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``path`` (created if needed), against other processes."""
    if sys.platform == "win32":
        # No flock on Windows: only the in-process lock applies there.
        yield
        return
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) on Windows.
    if sys.platform == "win32":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the data itself is synced
    finally:
        os.close(fd)


@dataclasses.dataclass(slots=True)
class _Live:
    source: Source
    connector: Connector[Any]


@dataclasses.dataclass(slots=True)
class _Cached:
    expires: float
    source: Source
    value: dict[str, Any]


_StatKey = tuple[int, int, int, int]


class SourceRegistry:
    """
    Named sources saved in a TOML file, and the live connectors opened for them.

    Args:
        path: the sources file; `default_sources_path` when omitted.
        registry: the plugin registry connectors come from; the process-wide one
            (`headwater.get_registry`) when omitted, looked up on first use.
        metadata_ttl: seconds a `metadata` answer is reused.
        clock: monotonic clock for the metadata cache (tests inject a fake one).

    Use it as a context manager, or call `close_all`, to close the live connectors.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        registry: Registry | None = None,
        metadata_ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if metadata_ttl < 0:
            raise ValueError("metadata_ttl must be >= 0")
        self._path = Path(path).expanduser() if path is not None else default_sources_path()
        self._registry = registry
        self._metadata_ttl = metadata_ttl
        self._clock = clock
        self._lock = threading.RLock()
        # Parsed file, and the stat key it was parsed at (None: file absent).
        self._sources: dict[str, Source] = {}
        self._stat_key: _StatKey | None = None
        self._loaded = False
        self._live: dict[str, _Live] = {}
        # One lock per name so that exactly one thread builds a source's connector.
        self._build_locks: dict[str, threading.Lock] = {}
        # Bumped when a name is replaced or removed, so an in-flight build is discarded.
        self._generation: dict[str, int] = {}
        self._metadata: dict[tuple[str, str], _Cached] = {}

    # --- basics ------------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The sources file."""
        return self._path

    @property
    def registry(self) -> Registry:
        """The plugin registry connectors are built from."""
        if self._registry is None:
            from headwater._plugins import get_registry

            self._registry = get_registry()
        return self._registry

    def __repr__(self) -> str:
        return f"<SourceRegistry path={str(self._path)!r} live={len(self._live)}>"

    def __enter__(self) -> SourceRegistry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close_all()

    # --- reading the file --------------------------------------------------------------------

    def _stat(self) -> _StatKey | None:
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
        """Parse the file now (an absent file is an empty document)."""
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
        sources = document.get("sources", {})
        if not isinstance(sources, dict):
            raise SourceError(f"sources file {self._path}: 'sources' must be a table")
        return document

    def _parse_sources(self, document: Mapping[str, Any]) -> dict[str, Source]:
        parsed: dict[str, Source] = {}
        for name, entry in document.get("sources", {}).items():
            where = f"sources file {self._path}: source {name!r}"
            if not isinstance(entry, dict):
                raise SourceError(f"{where} must be a table")
            connector = entry.get("connector")
            if not isinstance(connector, str) or not connector:
                raise SourceError(f'{where} needs connector = "<connector id>"')
            config = entry.get("config", {})
            if not isinstance(config, dict):
                raise SourceError(f"{where}: config must be a table")
            description = entry.get("description", "")
            if not isinstance(description, str):
                raise SourceError(f"{where}: description must be a string")
            parsed[name] = Source(
                name,
                connector,
                config,
                description,
                secret_paths=self._secret_paths(connector, config),
            )
        return parsed

    def _secret_paths(self, connector: str, config: dict[str, Any]) -> frozenset[ConfigPath] | None:
        # Only to know what to mask when showing; a source whose connector is missing or
        # whose config no longer validates is still listed, masked by key names instead.
        try:
            model = self.registry.connector_class(connector).Config.model_validate(config)
        except Exception:
            return None
        return frozenset(path for path, _secret in _secrets_in(model))

    def _current(self) -> dict[str, Source]:
        """The sources, re-read if the file changed since it was last parsed."""
        with self._lock:
            key = self._stat()
            if not self._loaded or key != self._stat_key:
                document = self._read_document()
                self._sources = self._parse_sources(document)
                self._stat_key = key
                self._loaded = True
            return self._sources

    # --- queries ------------------------------------------------------------------------------

    def get(self, name: str) -> Source:
        """The source saved as ``name``; `SourceError` if there is none."""
        sources = self._current()
        source = sources.get(name)
        if source is None:
            raise self._unknown(name, sources)
        return dataclasses.replace(source, config=copy.deepcopy(source.config))

    def _unknown(self, name: str, sources: Iterable[str]) -> SourceError:
        names = sorted(sources)
        if names:
            return SourceError(
                f"no source named {name!r} (known: {', '.join(names)})",
                field="name",
                hint="`headwater sources list` shows the saved sources",
            )
        return SourceError(
            f"no source named {name!r}: no sources are saved in {self._path}",
            field="name",
            hint="add one with `headwater sources add NAME CONNECTOR ...`",
        )

    def list(self) -> builtins.list[Source]:
        """Every saved source, sorted by name."""
        sources = self._current()
        return [
            dataclasses.replace(s, config=copy.deepcopy(s.config))
            for _name, s in sorted(sources.items())
        ]

    def show(self, name: str) -> dict[str, Any]:
        """The sanitized view of one source (secrets as references or ``***``)."""
        return self.get(name).sanitized()

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._current()

    # --- validation ---------------------------------------------------------------------------

    def _validate(
        self, connector: str, config: Mapping[str, Any]
    ) -> tuple[type[Connector[Any]], ConnectorConfig]:
        """Validate ``config`` and refuse anything but references in `Secret` fields."""
        cls = self.registry.connector_class(connector)
        model = validate_config(cls.Config, dict(config), connector_id=connector)
        secrets = list(_secrets_in(model))
        known: dict[str, Any] | None = None
        for path, secret in secrets:
            field = _dotted(path)
            # Messages name the field only: the value may be the secret itself.
            if secret.is_callable:
                raise ConfigError(
                    f"secret field {field!r} is a Python callable, which cannot be saved "
                    "in a sources file",
                    field=field,
                    hint=_REFERENCE_HINT,
                )
            if secret.is_literal or secret.reference is None:
                hint = _REFERENCE_HINT
                if not _declared_field(model, path):
                    # A secret by its name or a plugin's rule, not by the config's schema:
                    # the value may be no secret at all, and the config can say so.
                    hint += (
                        f"; if it is no secret, mark it plain where the connector allows "
                        f"(rest: {field}.plain=VALUE, or {{plain: VALUE}})"
                    )
                raise ConfigError(
                    f"secret field {field!r} holds a literal value; the sources file stores "
                    "secret references only",
                    field=field,
                    hint=hint,
                )
            if known is None:
                known = dict(self.registry.credential_resolvers())
            scheme = secret.reference.partition(":")[0]
            if scheme not in known:
                # "abc:xyz" may be a literal password containing a colon; saving it would
                # write the secret to disk, so unknown schemes are refused (not echoed).
                schemes = ", ".join(sorted(f"{s}:" for s in known)) or "none"
                raise ConfigError(
                    f"secret field {field!r} is not a reference with a known scheme "
                    f"(known: {schemes}); literal secrets are not saved",
                    field=field,
                    hint=_REFERENCE_HINT,
                )
        return cls, model

    @staticmethod
    def _check_faithful(
        connector: str,
        cls: type[Connector[Any]],
        model: ConnectorConfig,
        stored: dict[str, Any],
    ) -> None:
        """
        Refuse to save what would not read back as the same config.

        What is stored is the config's dump, which masks for display whatever a config
        model does not know to be a reference; a dump that lost something (a setting
        shown as ``***``) must fail here, not reach the connector later as ``***``.
        """
        try:
            again = cls.Config.model_validate(stored)
        except Exception:
            again = None
        if again != model:
            changed = sorted(
                key
                for key in {*stored, *model.model_dump(mode="json", exclude_defaults=True)}
                if again is None or getattr(again, key, None) != getattr(model, key, None)
            )
            fields = ", ".join(changed) or "config"
            raise ConfigError(
                f"{connector} config: field(s) {fields} would not be saved as given "
                "(the saved form reads back differently)",
                field=changed[0] if changed else None,
                hint="a value the connector cannot tell from a secret must be a secret "
                "reference, or be marked as plain where the connector allows it",
            )

    @staticmethod
    def _check_name(name: str) -> None:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConfigError(
                f"invalid source name {name!r}: use letters, digits, '_', '.' and '-', "
                "starting with a letter or digit",
                field="name",
            )

    # --- changes --------------------------------------------------------------------------------

    def add(
        self,
        name: str,
        connector: str,
        config: Mapping[str, Any],
        *,
        description: str = "",
        test: bool = False,
        replace: bool = False,
    ) -> Source:
        """
        Save a source.

        Args:
            name: the source's name (letters, digits, ``_``, ``.``, ``-``).
            connector: the connector id (``files``, ``postgres``, ...).
            config: the connector's config; `Secret` fields must be references.
            description: one line shown by ``headwater sources list``.
            test: connect and run the connector's check first; nothing is saved if it fails.
            replace: overwrite an existing source of that name (its live connector is closed).

        Raises:
            ConfigError: invalid name or config, or a literal/callable secret.
            SourceError: the name exists (without ``replace``), or the connection test failed.
        """
        self._check_name(name)
        if not isinstance(description, str):
            raise ConfigError("description must be a string", field="description")
        cls, model = self._validate(connector, config)
        stored = model.model_dump(mode="json", exclude_defaults=True)
        _check_tomlable(stored, ())
        self._check_faithful(connector, cls, model, stored)
        if not replace and name in self._current():
            raise self._exists(name)
        if test:
            self._test(name, cls, model)
        entry: dict[str, Any] = {"connector": connector}
        if description:
            entry["description"] = description
        entry["config"] = stored
        with self._lock:
            with self._writing() as document:
                sources = document.setdefault("sources", {})
                if name in sources and not replace:
                    raise self._exists(name)
                sources[name] = entry
            saved = self._sources[name]
        self._forget(name)
        return dataclasses.replace(saved, config=copy.deepcopy(saved.config))

    def _exists(self, name: str) -> SourceError:
        return SourceError(
            f"a source named {name!r} already exists in {self._path}",
            field="name",
            hint="pass replace=True (`--replace`) to overwrite it, or choose another name",
        )

    def _test(self, name: str, cls: type[Connector[Any]], model: ConnectorConfig) -> None:
        probe = cls(model, registry=self.registry)
        try:
            result = probe.check()
        finally:
            probe.close()
        if not result.ok:
            category = f" ({result.category})" if result.category else ""
            raise SourceError(
                f"connection test of source {name!r} failed{category}: {result.message}; "
                "nothing was saved",
                field=result.field,
                hint=result.hint,
            )

    def remove(self, name: str) -> None:
        """Delete a saved source and close its live connector; `SourceError` if unknown."""
        with self._lock, self._writing() as document:
            sources = document.get("sources", {})
            if name not in sources:
                raise self._unknown(name, sources)
            del sources[name]
        self._forget(name)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[dict[str, Any]]:
        """
        Yield the freshly read document to change; write it back atomically on success.

        The caller holds ``self._lock``; the inter-process lock is taken here, and the
        file is always re-read under it so another writer's change is never lost.
        """
        directory = self._path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise SourceError(
                f"cannot create {directory}: {exc.strerror or type(exc).__name__}"
            ) from None
        lock_path = self._path.with_name(self._path.name + ".lock")
        with _interprocess_lock(lock_path):
            document = self._read_document()
            yield document
            text = _HEADER + tomli_w.dumps(document)
            try:
                # atomic_file: temp file beside the target (mode 0600), fsync, rename. A
                # symlinked sources file (kept in a dotfiles repository, say) is written
                # where the link points, and stays a link.
                target = Path(os.path.realpath(self._path))
                with atomic_file(target, private=True) as handle:
                    handle.write(text.encode("utf-8"))
                _fsync_directory(target.parent)
            except OSError as exc:
                raise SourceError(
                    f"cannot write sources file {self._path}: {exc.strerror or type(exc).__name__}"
                ) from None
            self._sources = self._parse_sources(document)
            self._stat_key = self._stat()
            self._loaded = True

    def _forget(self, name: str) -> None:
        """Drop ``name``'s live connector and cached metadata (after replace/remove)."""
        with self._lock:
            self._generation[name] = self._generation.get(name, 0) + 1
            live = self._live.pop(name, None)
            for key in [k for k in self._metadata if k[0] == name]:
                del self._metadata[key]
        if live is not None:
            self._close_quietly(name, live.connector)

    @staticmethod
    def _close_quietly(name: str, connector: Connector[Any]) -> None:
        try:
            connector.close()
        except Exception as exc:
            message = exc.message if isinstance(exc, HeadwaterError) else type(exc).__name__
            logger.warning("closing the connector of source %s failed: %s", name, message)

    # --- live connectors --------------------------------------------------------------------

    def connector(self, name: str) -> Connector[Any]:
        """
        The live connector for source ``name``, built on first use and reused afterwards.

        Concurrent callers get the same object (exactly one is built). A closed connector,
        or one whose source was changed in the file since, is replaced by a new one.
        """
        while True:
            source = self.get(name)
            with self._lock:
                live = self._reusable(name, source)
                if live is not None:
                    return live
                build_lock = self._build_locks.setdefault(name, threading.Lock())
            with build_lock:
                with self._lock:
                    live = self._reusable(name, source)
                    if live is not None:
                        return live
                    generation = self._generation.get(name, 0)
                built = self._build(source)
                with self._lock:
                    if self._generation.get(name, 0) == generation:
                        old = self._live.get(name)
                        self._live[name] = _Live(source, built)
                        stale = old.connector if old is not None else None
                        current = True
                    else:
                        # Removed or replaced while we were building: discard and retry.
                        stale, current = built, False
                if stale is not None:
                    self._close_quietly(name, stale)
                if current:
                    logger.debug("opened connector %s for source %s", source.connector, name)
                    return built

    def _reusable(self, name: str, source: Source) -> Connector[Any] | None:
        live = self._live.get(name)
        if live is None or live.connector.closed or live.source != source:
            return None
        return live.connector

    def _build(self, source: Source) -> Connector[Any]:
        try:
            cls, model = self._validate(source.connector, source.config)
        except ConfigError as exc:
            raise ConfigError(
                f"source {source.name!r} in {self._path}: {exc.message}",
                field=exc.field,
                hint=exc.hint,
            ) from None
        return cls(model, registry=self.registry)

    def metadata(self, name: str, item: str) -> dict[str, Any]:
        """
        ``connector(name).metadata(item)``, reused for ``metadata_ttl`` seconds.

        Replacing or removing the source (or editing it in the file) drops its cached answers.
        """
        source = self.get(name)
        key = (name, item)
        with self._lock:
            cached = self._metadata.get(key)
            if cached is not None and cached.source == source and self._clock() < cached.expires:
                return copy.deepcopy(cached.value)
            generation = self._generation.get(name, 0)
        value = self.connector(name).metadata(item)
        with self._lock:
            if self._metadata_ttl > 0 and self._generation.get(name, 0) == generation:
                now = self._clock()
                if len(self._metadata) >= _METADATA_SWEEP:
                    for stale in [k for k, c in self._metadata.items() if c.expires <= now]:
                        del self._metadata[stale]
                self._metadata[key] = _Cached(
                    now + self._metadata_ttl, source, copy.deepcopy(value)
                )
        return value

    def close_all(self) -> None:
        """
        Close every live connector and drop cached metadata; calling it again does nothing.

        The registry stays usable: `connector` opens a new connector when next asked.
        Every connector is closed even if one fails; the first failure is then raised.
        """
        with self._lock:
            live = list(self._live.items())
            self._live.clear()
            self._metadata.clear()
        first: Exception | None = None
        for name, entry in live:
            try:
                entry.connector.close()
            except Exception as exc:
                first = first or exc
                message = exc.message if isinstance(exc, HeadwaterError) else type(exc).__name__
                logger.warning("closing the connector of source %s failed: %s", name, message)
        if first is not None:
            raise first

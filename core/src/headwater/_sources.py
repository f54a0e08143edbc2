"""
Named sources: a connector id plus its config, saved under a name in a store.

The store is the TOML file below by default (`TomlSourceStore`, what the CLI uses), or
any `SourceStore` — `MemorySourceStore` for a service that has no file. Each source may
carry descriptive metadata (``owner``, ``environment``, ``labels``) for people and for
filtering; it never affects the connection.

The file holds secret *references* only (``env:NAME``, ``file:PATH``,
``keyring:SERVICE/USER``, or a scheme a plugin registers). `SourceRegistry.add` refuses
a literal secret or a Python callable in any `Secret` field, so no secret value is ever
written to disk. The file looks like::

    [sources.warehouse]
    connector = "postgres"
    description = "the reporting replica"
    owner = "data-platform"
    environment = "prod"

    [sources.warehouse.config]
    host = "db.internal"
    password = "keyring:warehouse/reporter"

    [sources.warehouse.labels]
    team = "finance"

A `SourceRegistry` is safe to share between threads. One re-entrant lock guards the
caches and every write; writers also take an advisory lock on ``<file>.lock`` (POSIX) so
two processes adding sources at once do not lose each other's entry. Every write
re-reads the file under that lock, changes one entry, and replaces the file atomically
(temporary file in the same directory, fsync, rename; mode 0600). Reads re-parse the
file only when its identity, size or timestamps changed, so edits made by another process
are picked up. Comments in a hand-edited file are not preserved by a write.
"""

from __future__ import annotations

import asyncio
import builtins
import copy
import dataclasses
import os
import re
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pydantic import BaseModel

from headwater._connector import CheckResult, Connector, ConnectorConfig, validate_config
from headwater._live import LiveConnectors, aclose_quietly, close_quietly
from headwater._redact import get_logger, is_credential_name, redact
from headwater._secrets import Secret
from headwater._store import Entries, SourceStore, TomlSourceStore
from headwater.errors import ConfigError, SourceError

if TYPE_CHECKING:
    from types import TracebackType

    from headwater._plugins import Registry

__all__ = ["Source", "SourceRegistry", "default_sources_path"]

logger = get_logger("headwater.sources")

_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_LABEL: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./-]*")
_REFERENCE_HINT: Final = (
    "store it with `headwater secrets set SERVICE USER` and use keyring:SERVICE/USER, "
    "or `headwater secrets set --store encrypted NAME` and use encrypted:NAME, "
    "or use env:NAME or file:PATH"
)
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
    #: Who answers for the source (a team, a person); descriptive only.
    owner: str = dataclasses.field(default="", kw_only=True)
    #: Which environment it belongs to (``prod``, ``staging``); descriptive only.
    environment: str = dataclasses.field(default="", kw_only=True)
    #: Free key/value labels for filtering (``team=finance``); descriptive only.
    labels: dict[str, str] = dataclasses.field(default_factory=dict, kw_only=True)
    #: Where the config's `Secret` values sit, as found by validating it against the
    #: connector's model; ``None`` when unknown (connector not installed, invalid config),
    #: in which case `sanitized` masks by key name instead.
    secret_paths: frozenset[ConfigPath] | None = dataclasses.field(
        default=None, compare=False, kw_only=True
    )

    def sanitized(self) -> dict[str, Any]:
        """
        Name, connector, description, owner, environment, labels and config, with every
        secret shown via `Secret.display`.
        """
        config = copy.deepcopy(self.config)
        if self.secret_paths is None:
            _mask_by_key(config)
        else:
            for path in self.secret_paths:
                _mask_at(config, path)
        # Whatever a hand-edited file holds elsewhere (a URL with its password) is
        # scrubbed as any text headwater shows.
        config = _redacted(config)
        view: dict[str, Any] = {
            "name": self.name,
            "connector": self.connector,
            "description": self.description,
        }
        # Descriptive metadata only when set, so a plain source's view stays as it was.
        if self.owner:
            view["owner"] = redact(self.owner)
        if self.environment:
            view["environment"] = redact(self.environment)
        if self.labels:
            view["labels"] = _redacted(self.labels)
        view["config"] = config
        return view

    def matches(
        self,
        *,
        owner: str | None = None,
        environment: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> bool:
        """Whether the source has this owner, environment and every one of these labels."""
        if owner is not None and self.owner != owner:
            return False
        if environment is not None and self.environment != environment:
            return False
        return all(self.labels.get(key) == value for key, value in (labels or {}).items())

    def __repr__(self) -> str:
        # The config is shown sanitized: a hand-edited file might hold a literal secret.
        view = self.sanitized()
        return (
            f"Source(name={self.name!r}, connector={self.connector!r}, "
            f"description={self.description!r}, owner={view.get('owner', '')!r}, "
            f"environment={view.get('environment', '')!r}, labels={view.get('labels', {})!r}, "
            f"config={view['config']!r})"
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


class SourceRegistry:
    """
    Named sources kept in a store, and the live connectors opened for them.

    Args:
        path: the sources file (a `TomlSourceStore`); `default_sources_path` when neither
            ``path`` nor ``store`` is given.
        store: where sources are kept instead of a file: a `MemorySourceStore`, or any
            `SourceStore` (a table in the service's own database, say).
        registry: the plugin registry connectors come from; the process-wide one
            (`headwater.get_registry`) when omitted, looked up on first use.
        metadata_ttl: seconds a `metadata` answer (or a `cache_metadata` entry without a
            ``ttl`` of its own) is reused; ``0`` turns the read-through cache off.
        clock: monotonic clock for the metadata cache (tests inject a fake one).

    The methods that may block have an ``a``-prefixed async twin (`aadd`, `aconnector`,
    `atest`, `aremove`, `ametadata`, `astats`, `aclose_all`) that runs the work in a
    worker thread (or the connector's own async method), so an asyncio service's event
    loop never waits on a file, a lock or a connection.

    Use it as a context manager (sync or async), or call `close_all`, to close the live
    connectors.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        store: SourceStore | None = None,
        registry: Registry | None = None,
        metadata_ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if metadata_ttl < 0:
            raise ValueError("metadata_ttl must be >= 0")
        if store is not None and path is not None:
            raise ValueError("pass path= or store=, not both")
        if store is None:
            store = TomlSourceStore(path if path is not None else default_sources_path())
        self._store: SourceStore = store
        self._registry = registry
        self._lock = threading.RLock()
        # Parsed entries, and the store version they were parsed at.
        self._sources: dict[str, Source] = {}
        self._version: Hashable = None
        self._loaded = False
        self._live: LiveConnectors[Source] = LiveConnectors(metadata_ttl=metadata_ttl, clock=clock)

    # --- basics ------------------------------------------------------------------------------

    @property
    def store(self) -> SourceStore:
        """Where the sources are kept."""
        return self._store

    @property
    def path(self) -> Path | None:
        """The sources file, or ``None`` when the store is not a TOML file."""
        return self._store.path if isinstance(self._store, TomlSourceStore) else None

    @property
    def registry(self) -> Registry:
        """The plugin registry connectors are built from."""
        if self._registry is None:
            from headwater._plugins import get_registry

            self._registry = get_registry()
        return self._registry

    def __repr__(self) -> str:
        path = self.path
        where = f"path={str(path)!r}" if path is not None else f"store={self._store!r}"
        return f"<SourceRegistry {where} live={len(self._live)}>"

    def __enter__(self) -> SourceRegistry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close_all()

    async def __aenter__(self) -> SourceRegistry:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose_all()

    # --- reading the store -------------------------------------------------------------------

    def _parse_sources(self, entries: Mapping[str, Any]) -> dict[str, Source]:
        parsed: dict[str, Source] = {}
        for name, entry in entries.items():
            where = f"{self._store.location}: source {name!r}"
            if not isinstance(entry, dict):
                raise SourceError(f"{where} must be a table")
            connector = entry.get("connector")
            if not isinstance(connector, str) or not connector:
                raise SourceError(f'{where} needs connector = "<connector id>"')
            config = entry.get("config", {})
            if not isinstance(config, dict):
                raise SourceError(f"{where}: config must be a table")
            texts = {}
            for key in ("description", "owner", "environment"):
                value = entry.get(key, "")
                if not isinstance(value, str):
                    raise SourceError(f"{where}: {key} must be a string")
                texts[key] = value
            labels = entry.get("labels", {})
            if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
                raise SourceError(f"{where}: labels must be a table of strings")
            parsed[name] = Source(
                name,
                connector,
                config,
                texts["description"],
                owner=texts["owner"],
                environment=texts["environment"],
                labels=dict(labels),
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
        """The sources, re-read if the store changed since it was last parsed."""
        with self._lock:
            version = self._store.version()
            if not self._loaded or version != self._version:
                self._sources = self._parse_sources(self._store.read())
                self._version = version
                self._loaded = True
            return self._sources

    # --- queries ------------------------------------------------------------------------------

    def get(self, name: str) -> Source:
        """The source saved as ``name``; `SourceError` if there is none."""
        sources = self._current()
        source = sources.get(name)
        if source is None:
            raise self._unknown(name, sources)
        return _copied(source)

    def _unknown(self, name: str, sources: Iterable[str]) -> SourceError:
        names = sorted(sources)
        if names:
            return SourceError(
                f"no source named {name!r} (known: {', '.join(names)})",
                field="name",
                hint="`headwater sources list` shows the saved sources",
            )
        return SourceError(
            f"no source named {name!r}: no sources are saved in {self._store.location}",
            field="name",
            hint="add one with `headwater sources add NAME CONNECTOR ...`",
        )

    def list(
        self,
        *,
        owner: str | None = None,
        environment: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> builtins.list[Source]:
        """
        Every saved source, sorted by name; only those with this ``owner``, this
        ``environment`` and all of these ``labels`` when given.
        """
        sources = self._current()
        return [
            _copied(s)
            for _name, s in sorted(sources.items())
            if s.matches(owner=owner, environment=environment, labels=labels)
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
        owner: str = "",
        environment: str = "",
        labels: Mapping[str, str] | None = None,
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
            owner: who answers for the source (descriptive; `list` filters on it).
            environment: ``prod``, ``staging``, ... (descriptive; `list` filters on it).
            labels: key/value labels (descriptive; `list` filters on them).
            test: connect and run the connector's check first; nothing is saved if it fails.
            replace: overwrite an existing source of that name (its live connector is closed).

        Raises:
            ConfigError: invalid name, config or metadata, or a literal/callable secret.
            SourceError: the name exists (without ``replace``), or the connection test failed.
        """
        self._check_name(name)
        for field, value in (
            ("description", description),
            ("owner", owner),
            ("environment", environment),
        ):
            if not isinstance(value, str):
                raise ConfigError(f"{field} must be a string", field=field)
        label_map = self._check_labels(labels)
        cls, model = self._validate(connector, config)
        stored = model.model_dump(mode="json", exclude_defaults=True)
        _check_tomlable(stored, ())
        self._check_faithful(connector, cls, model, stored)
        if not replace and name in self._current():
            raise self._exists(name)
        if test:
            self._test(name, cls, model)
        entry: dict[str, Any] = {"connector": connector}
        for key, text in (
            ("description", description),
            ("owner", owner),
            ("environment", environment),
        ):
            if text:
                entry[key] = text
        if label_map:
            entry["labels"] = label_map
        entry["config"] = stored

        def change(entries: Entries) -> None:
            if name in entries and not replace:
                raise self._exists(name)
            entries[name] = entry

        with self._lock:
            self._saved(self._store.update(change))
            saved = self._sources[name]
        self._live.forget(name)
        return _copied(saved)

    @staticmethod
    def _check_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
        if labels is None:
            return {}
        if not isinstance(labels, Mapping):
            raise ConfigError("labels must be a mapping of strings to strings", field="labels")
        for key, value in labels.items():
            if not isinstance(key, str) or not _LABEL.fullmatch(key):
                raise ConfigError(
                    f"invalid label name {key!r}: use letters, digits, '_', '.', '/' and '-'",
                    field="labels",
                )
            if not isinstance(value, str):
                raise ConfigError(f"label {key!r} must be a string", field=f"labels.{key}")
        return dict(sorted(labels.items()))

    def _saved(self, entries: Entries) -> None:
        """Adopt the entries a store just saved (caller holds ``self._lock``)."""
        self._sources = self._parse_sources(entries)
        self._version = self._store.version()
        self._loaded = True

    def _exists(self, name: str) -> SourceError:
        return SourceError(
            f"a source named {name!r} already exists in {self._store.location}",
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

        def change(entries: Entries) -> None:
            if name not in entries:
                raise self._unknown(name, entries)
            del entries[name]

        with self._lock:
            self._saved(self._store.update(change))
        self._live.forget(name)

    def test(self, name: str) -> CheckResult:
        """
        The connector's check of source ``name``, as a `CheckResult` (never raises for a
        failed connection).

        Uses the live connector when there is one (no new connection is opened for a
        health endpoint polled every few seconds); otherwise a connector is opened for
        the check and closed again. A source whose saved config no longer validates
        raises `ConfigError`; an unknown name raises `SourceError`.
        """
        source = self.get(name)
        live = self._live.reusable(name, source)
        if live is not None:
            return live.check()
        probe = self._build(source)
        try:
            return probe.check()
        finally:
            close_quietly(name, probe)

    # --- live connectors --------------------------------------------------------------------

    def connector(self, name: str) -> Connector[Any]:
        """
        The live connector for source ``name``, built on first use and reused afterwards.

        Concurrent callers get the same object (exactly one is built). A closed connector,
        or one whose source was changed in the file since, is replaced by a new one.
        """
        return self._live.connector(name, self.get, self._build)

    def _build(self, source: Source) -> Connector[Any]:
        try:
            cls, model = self._validate(source.connector, source.config)
        except ConfigError as exc:
            raise ConfigError(
                f"source {source.name!r} in {self._store.location}: {exc.message}",
                field=exc.field,
                hint=exc.hint,
            ) from None
        logger.debug("opening connector %s for source %s", source.connector, source.name)
        return cls(model, registry=self.registry)

    # --- metadata cache ------------------------------------------------------------------------

    def metadata(self, name: str, item: str, *, ttl: float | None = None) -> dict[str, Any]:
        """
        ``connector(name).metadata(item)``, reused for ``ttl`` seconds (the registry's
        ``metadata_ttl`` when omitted): a read-through cache over `cached_metadata`.

        Replacing or removing the source (or editing it in the store) drops its cached answers.
        """
        source = self.get(name)
        hit = self._live.lookup(name, item, source)
        if hit is not None:
            return hit
        generation = self._live.generation(name)
        value = self.connector(name).metadata(item)
        self._live.put(name, item, source, value, ttl, generation)
        return value

    def cache_metadata(
        self, name: str, item: str, value: Mapping[str, Any], *, ttl: float | None = None
    ) -> None:
        """
        Store ``value`` as the metadata of ``item`` in source ``name`` (a copy is kept).

        It is answered by `cached_metadata` and `metadata` for ``ttl`` seconds (the
        registry's ``metadata_ttl`` when omitted). `SourceError` if ``name`` is unknown.
        """
        source = self.get(name)
        self._live.put(name, item, source, value, ttl, self._live.generation(name))

    def cached_metadata(self, name: str, item: str) -> dict[str, Any] | None:
        """The cached metadata of ``item`` in source ``name``, or ``None`` (absent or expired)."""
        try:
            source = self.get(name)
        except SourceError:
            return None
        return self._live.lookup(name, item, source)

    def clear_metadata(self, name: str | None = None, item: str | None = None) -> int:
        """
        Drop cached metadata: of one ``item`` of source ``name``, of every item of ``name``,
        or everything (no arguments). Returns how many entries were dropped.
        """
        if name is None and item is not None:
            raise ValueError("clear_metadata(item=...) needs the source name too")
        return self._live.clear(name, item)

    def close_all(self) -> None:
        """
        Close every live connector and drop cached metadata; calling it again does nothing.

        The registry stays usable: `connector` opens a new connector when next asked.
        Every connector is closed even if one fails; the first failure is then raised.
        """
        self._live.close_all()

    def stats(self) -> dict[str, Any]:
        """
        Pool statistics per source: ``{name: connector.stats()}`` (`Connector.stats`) for
        every live connector.

        Sources without a live connector are absent (nothing was opened for them, and
        nothing is opened here), as are live connectors that keep no pool to count.
        """
        return self._live.stats()

    # --- async twins: each runs its sync method in a worker thread --------------------------
    # The registry is thread-safe, and building a connector, reading or writing the store
    # and checking a connection may all block; the event loop must not.

    async def aadd(
        self,
        name: str,
        connector: str,
        config: Mapping[str, Any],
        *,
        description: str = "",
        owner: str = "",
        environment: str = "",
        labels: Mapping[str, str] | None = None,
        test: bool = False,
        replace: bool = False,
    ) -> Source:
        """Async twin of `add` (with ``test=True``, the connection test runs too)."""
        return await asyncio.to_thread(
            lambda: self.add(
                name,
                connector,
                config,
                description=description,
                owner=owner,
                environment=environment,
                labels=labels,
                test=test,
                replace=replace,
            )
        )

    async def aconnector(self, name: str) -> Connector[Any]:
        """Async twin of `connector`: the live connector for ``name``."""
        return await asyncio.to_thread(self.connector, name)

    async def atest(self, name: str) -> CheckResult:
        """
        Async twin of `test`; the check runs through the connector's `acheck` (a natively
        async connector needs no thread for it), and a connector opened for it is closed
        with `aclose`.
        """
        source = await asyncio.to_thread(self.get, name)
        live = self._live.reusable(name, source)
        if live is not None:
            return await live.acheck()
        probe = await asyncio.to_thread(self._build, source)
        try:
            return await probe.acheck()
        finally:
            await aclose_quietly(name, probe)

    async def aremove(self, name: str) -> None:
        """Async twin of `remove` (closes the source's live connector)."""
        await asyncio.to_thread(self.remove, name)

    async def ametadata(self, name: str, item: str, *, ttl: float | None = None) -> dict[str, Any]:
        """Async twin of `metadata`."""
        return await asyncio.to_thread(lambda: self.metadata(name, item, ttl=ttl))

    async def astats(self) -> dict[str, Any]:
        """Async twin of `stats`."""
        return await asyncio.to_thread(self.stats)

    async def aclose_all(self) -> None:
        """
        Async twin of `close_all`: every live connector is closed with its `aclose`;
        the first failure is raised after all were tried.
        """
        await self._live.aclose_all()


def _copied(source: Source) -> Source:
    """A copy of ``source`` the caller may change without changing the registry's."""
    return dataclasses.replace(
        source, config=copy.deepcopy(source.config), labels=dict(source.labels)
    )

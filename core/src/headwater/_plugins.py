"""
Plugin discovery and the registry built on the pluggy plugin manager.

This is the only module that calls ``pm.hook.*``: each hook implementation is called on
its own, so one plugin that raises is recorded (distribution, version, error) and every
other plugin keeps working. Entry points are read lazily, once per `Registry`, one at a
time, each in its own ``try`` — never through pluggy's ``load_setuptools_entrypoints``,
which stops at the first failure.

Environment variables, read when a registry first loads:

``HEADWATER_DISABLE_PLUGIN_AUTOLOAD=1``  load no entry points (core's built-ins stay)
``HEADWATER_DISABLE_PLUGINS=a,b``        block these (entry-point or distribution names)
``HEADWATER_PLUGINS=a,b``                allow only these
``HEADWATER_STRICT_PLUGINS=1``           any plugin failure raises `PluginLoadError`
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import re
import signal
import threading
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

import pluggy

from headwater import hookspecs
from headwater._naming import CONNECTOR_ID_RULE, is_connector_id
from headwater._redact import get_logger, redact
from headwater._version import API_VERSION, __version__
from headwater.errors import (
    ConfigError,
    DuplicateConnector,
    PluginError,
    PluginIncompatible,
    PluginLoadError,
    UnknownConnector,
)

if TYPE_CHECKING:
    from headwater._connector import Connector
    from headwater._entry_points import DistributionLike, EntryPointLike
    from headwater._secrets import CredentialResolver

logger = get_logger("headwater.plugins")

ENTRY_POINT_GROUP: Final = hookspecs.PROJECT_NAME
_CORE_SCHEMES: Final = frozenset({"env", "file", "keyring"})

#: Core's own behaviour, registered through the same hooks as any plugin.
BUILTIN_PLUGINS: Final = (
    ("headwater.resolvers", "headwater._builtin.resolvers"),
    ("headwater.files", "headwater._builtin.files"),
)

#: ``warning``: loaded and used, but something in it is probably a mistake (see ``warnings``).
PluginStatus = Literal["ok", "warning", "failed", "blocked", "incompatible"]
#: Statuses whose plugin's hooks are called.
_USABLE: Final = frozenset({"ok", "warning"})


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectorRef:
    """
    A connector named by import path, so listing connectors imports nothing.

    Return it from ``register_connectors``:
    ``ConnectorRef("postgres", "headwater_postgres._connector:PostgresConnector", summary=...)``.
    """

    id: str
    #: ``"package.module:ClassName"``
    target: str
    summary: str = ""

    def load(self) -> type[Connector[Any]]:
        """Import and return the connector class."""
        module_name, _, attr = self.target.partition(":")
        module = importlib.import_module(module_name)
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj  # type: ignore[return-value]


@dataclasses.dataclass(slots=True)
class PluginInfo:
    """What `headwater plugins` shows for one plugin."""

    name: str
    distribution: str | None
    version: str | None
    #: The plugin's requirement on core (``">=1.0,<2"``); ``None`` if it declares none.
    api: str | None
    status: PluginStatus
    error: str | None = None
    connectors: list[str] = dataclasses.field(default_factory=list)
    hooks: list[str] = dataclasses.field(default_factory=list)
    #: Seconds spent importing the entry-point module.
    import_time: float | None = None
    builtin: bool = False
    #: Probable mistakes that do not stop the plugin (a misspelt hook name).
    warnings: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        data = dataclasses.asdict(self)
        if self.import_time is not None:
            data["import_time"] = round(self.import_time, 6)
        return data


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectorEntry:
    """A connector id with where it came from."""

    id: str
    provider: type[Connector[Any]] | ConnectorRef
    plugin: PluginInfo

    @property
    def summary(self) -> str:
        """The one-line summary (without importing a `ConnectorRef`)."""
        if isinstance(self.provider, ConnectorRef):
            return self.provider.summary
        return self.provider.summary

    @property
    def origin(self) -> str:
        """``distribution version`` or the plugin name."""
        p = self.plugin
        return f"{p.distribution} {p.version}" if p.distribution else p.name


def _flag(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _names(environ: Mapping[str, str], name: str) -> set[str] | None:
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return None
    return {_normalize(part) for part in raw.split(",") if part.strip()}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


#: A requirement line: the distribution's name, its extras, and the rest (version, marker).
_REQUIREMENT_HEAD = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$", re.S)
#: One version clause of the kind plugins write ("headwater>=1.0,<2"): no wildcard, no
#: pre-, post- or local part, so comparing release numbers is all PEP 440 asks of it.
_PLAIN_CLAUSE = re.compile(r"\s*(>=|<=|==|!=|<|>)\s*(\d+(?:\.\d+)*)\s*")
_PLAIN_RELEASE = re.compile(r"\d+(?:\.\d+)*")


def _plain_clauses(spec: str) -> list[tuple[str, tuple[int, ...]]] | None:
    """``spec``'s clauses if every one is plain (`_PLAIN_CLAUSE`); ``None`` otherwise."""
    clauses = []
    for part in spec.split(","):
        match = _PLAIN_CLAUSE.fullmatch(part)
        if match is None:
            return None
        clauses.append((match[1], tuple(int(n) for n in match[2].split("."))))
    return clauses


class _Headers:
    """The header fields of a distribution's metadata file, looked up as on a Message."""

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self._fields = fields

    def __getitem__(self, name: str) -> str | None:
        wanted = name.lower()
        return next((value for key, value in self._fields if key.lower() == wanted), None)

    def get_all(self, name: str) -> list[str] | None:
        wanted = name.lower()
        found = [value for key, value in self._fields if key.lower() == wanted]
        return found or None


def _headers(dist: DistributionLike) -> Any:
    """
    ``dist``'s metadata headers (Name, Version, Requires-Dist), read once. Each read of
    ``dist.metadata`` (and ``.version``, ``.requires``) runs the e-mail parser over the
    whole file, description included: with dozens of plugins that was most of what
    `headwater connectors` spent beyond the entry-point scan. The headers end at the
    first empty line; a line starting with white space continues the one before. A
    file that does not read so goes to the e-mail parser.
    """
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO")
    if text is None:
        return dist.metadata
    fields: list[tuple[str, str]] = []
    for line in text.splitlines():
        if not line:
            break
        if line[0] in " \t":
            if not fields:
                return dist.metadata
            key, value = fields[-1]
            fields[-1] = (key, f"{value}\n{line}")
            continue
        key, colon, value = line.partition(":")
        if not colon:
            return dist.metadata
        fields.append((key, value.lstrip()))
    return _Headers(fields)


def _core_requirement(dist: DistributionLike, metadata: Any = None) -> str | None:
    """
    The specifier of ``dist``'s requirement on headwater ("" if unpinned; None if absent).
    ``metadata`` is ``dist.metadata`` when the caller has read it already: every read of
    a distribution's metadata parses its file again.
    """
    listed = metadata.get_all("Requires-Dist") if metadata is not None else None
    requires = listed or dist.requires or ()
    # packaging costs more to import (its parser compiles its grammar's patterns) than a
    # `headwater connectors` run spends on anything else of its own: the lines plugins
    # write are read here, and packaging reads the rest (markers, URLs, wildcards).
    for line in requires:
        head = _REQUIREMENT_HEAD.fullmatch(line)
        if head is None or _normalize(head[1]) != "headwater":
            continue  # another distribution's, or one packaging reads below
        rest = head[3].strip()
        if rest.startswith("(") and rest.endswith(")"):
            rest = rest[1:-1].strip()  # the older form, "headwater (>=1.0,<2)"
        if rest and _plain_clauses(rest) is None:
            break  # a marker, a URL, a wildcard: packaging's to read
        return rest
    else:
        if all(_REQUIREMENT_HEAD.fullmatch(line) for line in requires):
            return None
    return _core_requirement_by_packaging(requires)


def _core_requirement_by_packaging(requires: Iterable[str]) -> str | None:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    for line in requires:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if canonicalize_name(req.name) != "headwater":
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        # As the plugin wrote it ("headwater>=1.0,<2"), not packaging's reordering.
        written = line.split(";", 1)[0].strip()
        return re.sub(r"^[A-Za-z0-9._-]+\s*(\[[^\]]*\])?\s*", "", written).strip("() ") or ""
    return None


def _accepts(spec: str, version: str) -> bool:
    """Whether ``version`` satisfies ``spec`` (PEP 440, pre-releases included)."""
    clauses = _plain_clauses(spec)
    if clauses is None or not _PLAIN_RELEASE.fullmatch(version):
        from packaging.specifiers import SpecifierSet

        return SpecifierSet(spec).contains(version, prereleases=True)
    mine = tuple(int(n) for n in version.split("."))
    for op, release in clauses:
        # Release numbers compare padded with zeros: 1.0 == 1.0.0.
        width = max(len(mine), len(release))
        a, b = mine + (0,) * (width - len(mine)), release + (0,) * (width - len(release))
        ok = {
            ">=": a >= b,
            "<=": a <= b,
            "==": a == b,
            "!=": a != b,
            "<": a < b,
            ">": a > b,
        }[op]
        if not ok:
            return False
    return True


def _incompatibility(spec: str, dist_name: str) -> str | None:
    if not spec or _accepts(spec, __version__):
        return None
    return (
        f"{dist_name} requires headwater{spec}, but this is headwater {__version__} "
        f"(plugin API {API_VERSION}); install a release of {dist_name} built for plugin "
        f"API {API_VERSION} (one that accepts headwater>={API_VERSION}.0,<{API_VERSION + 1}), "
        f"or a headwater matching {spec!r}"
    )


def _is_connector_class(item: type) -> bool:
    # Imported here: a registry whose plugins return only ConnectorRefs never needs
    # the connector module (and pydantic) just to list connectors.
    from headwater._connector import Connector

    return issubclass(item, Connector)


def _describe(exc: BaseException) -> str:
    # One line, but the whole reason: pluggy puts the part that matters (which argument
    # of a hookimpl the spec lacks) on the lines after the hook name.
    lines = [line.strip() for line in f"{type(exc).__name__}: {exc}".splitlines()]
    return redact("; ".join(line for line in lines if line))


class _SigintWatch:
    """
    Tells a real Ctrl-C of the host from a `KeyboardInterrupt` plugin code raised itself.

    While plugin code runs in the main thread, SIGINT goes through a handler that notes
    its arrival before calling the previous one. Python delivers signals to the main
    thread only, so elsewhere (and when SIGINT is not Python's to handle) no interrupt can
    be real.
    """

    def __init__(self) -> None:
        self.received = False

    @contextlib.contextmanager
    def watching(self) -> Iterator[_SigintWatch]:
        previous = signal.getsignal(signal.SIGINT)
        if threading.current_thread() is not threading.main_thread() or not callable(previous):
            yield self
            return

        def handler(signum: int, frame: Any) -> None:
            self.received = True
            previous(signum, frame)

        try:
            signal.signal(signal.SIGINT, handler)
        except ValueError:  # not allowed here (an embedding interpreter): nothing to tell
            yield self
            return
        try:
            yield self
        finally:
            # Put back what was there, unless plugin code replaced the handler itself.
            if signal.getsignal(signal.SIGINT) is handler:
                signal.signal(signal.SIGINT, previous)

    def is_host_interrupt(self, exc: BaseException) -> bool:
        """Whether ``exc`` must propagate: a real Ctrl-C (or an exception a host must see)."""
        if isinstance(exc, KeyboardInterrupt):
            return self.received
        # SystemExit, GeneratorExit and other BaseExceptions raised by plugin code are
        # the plugin's failure: no plugin gets to end the host process.
        return False


class _PluginManager(pluggy.PluginManager):
    """
    pluggy's manager, looking a module plugin's plain functions up in its ``__dict__``.

    pluggy looks every name of a plugin up with ``inspect.getattr_static`` so that no
    descriptor runs; for a module's own plain function or plain value that lookup finds
    the module's ``__dict__`` entry, so reading the entry is the same answer at a
    fraction of the cost (registering the hook modules of ~50 distributions is a
    visible part of ``headwater connectors``). Everything else (classes, instances,
    static/class methods, bound methods, other callables) goes through pluggy's own
    lookup.
    ``parse_hookimpl_opts`` is the override pluggy documents for this.
    """

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        if type(plugin) is types.ModuleType:
            value = plugin.__dict__.get(name, _ABSENT)
            if type(value) is types.FunctionType:
                opts = getattr(value, self._impl_attr, None)
                return opts if isinstance(opts, dict) else None
            if value is not _ABSENT and not callable(value) and not isinstance(value, _WRAPPED):
                return None  # neither a routine nor a wrapper of one: never a hook
        return super().parse_hookimpl_opts(plugin, name)

    @property
    def _impl_attr(self) -> str:
        return self.project_name + "_impl"


_ABSENT: Final = object()
_WRAPPED: Final = (staticmethod, classmethod)


def _refuse_wrappers(pm: pluggy.PluginManager, name: str) -> None:
    """
    Refuse hook wrappers: headwater calls each implementation on its own (so one failing
    plugin costs only itself), so a wrapper would never wrap anything.
    """
    plugin = pm.get_plugin(name)
    for caller in pm.get_hookcallers(plugin) or []:
        for impl in caller.get_hookimpls():
            if impl.plugin_name == name and (impl.wrapper or impl.hookwrapper):
                raise PluginError(
                    f"hook {caller.name} is declared with wrapper=True/hookwrapper=True; "
                    "headwater calls every implementation on its own and supports no wrappers"
                )


def _contained(exc: BaseException) -> BaseException:
    """What a plugin raised, as an `Exception` (a plugin's SystemExit is not the host's)."""
    if isinstance(exc, Exception):
        return exc
    return PluginError(f"{type(exc).__name__} raised by plugin code ({exc or 'no detail'})")


class Registry:
    """
    The plugin manager and everything collected from it.

    Args:
        autoload: load plugins from entry points; default: unless
            ``HEADWATER_DISABLE_PLUGIN_AUTOLOAD`` is set.
        plugins: plugin objects (modules, classes, instances) to register explicitly.
        builtins: register core's built-in resolvers and the ``files`` connector.
        strict: raise on any plugin failure; default: ``HEADWATER_STRICT_PLUGINS``.
        environ: where to read the ``HEADWATER_*`` variables (``os.environ``).

    Tests and embedding programs build their own: ``Registry(autoload=False, plugins=[mine])``.
    Nothing is loaded until first use.
    """

    def __init__(
        self,
        *,
        autoload: bool | None = None,
        plugins: Iterable[object] = (),
        builtins: bool = True,
        strict: bool | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self._environ = dict(env)
        self._autoload = (
            not _flag(env, "HEADWATER_DISABLE_PLUGIN_AUTOLOAD") if autoload is None else autoload
        )
        self._strict = _flag(env, "HEADWATER_STRICT_PLUGINS") if strict is None else strict
        self._builtins = builtins
        self._explicit = list(plugins)
        self._pm = _PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self._records: dict[str, PluginInfo] = {}
        self._errors: dict[str, BaseException] = {}
        self._loaded = False
        self._lock = threading.RLock()
        # Hook results, computed once per set of registered plugins: the hooks promise
        # one call per registry, and a program that registers a plugin later (directly
        # on the pluggy manager, too) gets fresh results.
        self._cache: dict[str, tuple[tuple[object, ...], Any]] = {}

    # --- loading ---------------------------------------------------------------------------

    @property
    def pm(self) -> pluggy.PluginManager:
        """The pluggy plugin manager, with plugins loaded (``pm.hook.register_connectors()``)."""
        self.load()
        return self._pm

    def load(self) -> None:
        """Register built-ins, explicit plugins and entry points; runs once."""
        if not self._loaded:
            self._load()
        self._raise_if_strict()

    def _load(self) -> None:
        with self._lock:
            if self._loaded:  # another thread finished loading while we waited
                return
            if self._builtins:
                for name, module_name in BUILTIN_PLUGINS:
                    module = importlib.import_module(module_name)
                    self._pm.register(module, name=name)
                    self._records[name] = PluginInfo(
                        name=name,
                        distribution="headwater",
                        version=__version__,
                        api=f"=={__version__}",
                        status="ok",
                        builtin=True,
                    )
            for plugin in self._explicit:
                self.register(plugin)
            if self._autoload:
                self._load_entry_points()
            self._loaded = True
        self._check_hook_names()

    def _check_hook_names(self) -> None:
        """
        Record each plugin's hooks, and warn about a hook headwater will never call.

        A hookimpl without a spec may belong to hooks another plugin declares later (the
        REST connector adds its pagination hooks on first use), so only a near-miss of a
        declared hook name counts: that is a misspelling, and the plugin silently does
        less than its author thinks.
        """
        declared = [name for name in dir(self._pm.hook) if not name.startswith("_")]
        declared = [
            name
            for name in declared
            if getattr(self._pm.hook, name).spec is not None  # has a spec
        ]
        for info in self._records.values():
            info.hooks = self._hooks_of(info.name)
            plugin = self._pm.get_plugin(info.name)
            if plugin is None:
                continue
            warnings = []
            for caller in self._pm.get_hookcallers(plugin) or []:
                if caller.spec is not None:
                    continue
                import difflib  # only for a hook without a spec: most runs have none

                close = difflib.get_close_matches(caller.name, declared, n=1, cutoff=0.8)
                if close:
                    warnings.append(
                        f"unknown hook {caller.name!r} is never called (did you mean {close[0]!r}?)"
                    )
            info.warnings = warnings
            if info.status in _USABLE:
                info.status = "warning" if warnings else "ok"

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin object without an entry point; returns its name."""
        if name is None and not hasattr(plugin, "__name__"):
            # pluggy would name an instance str(id(plugin)): useless in messages.
            base = f"{type(plugin).__module__}.{type(plugin).__qualname__}"
            name, n = base, 1
            while self._pm.has_plugin(name):
                n += 1
                name = f"{base}#{n}"
        registered = self._pm.register(plugin, name=name)
        if registered is None:
            raise PluginError(f"plugin {name or plugin!r} is blocked or already registered")
        try:
            _refuse_wrappers(self._pm, registered)
        except PluginError:
            self._pm.unregister(name=registered)
            raise
        self._records[registered] = PluginInfo(
            name=registered,
            distribution=None,
            version=None,
            api=None,
            status="ok",
            hooks=self._hooks_of(registered),
        )
        return registered

    def unregister(self, name: str) -> None:
        """Remove a registered plugin (tests register throwaway plugins and remove them)."""
        self._pm.unregister(name=name)
        self._records.pop(name, None)

    def _hooks_of(self, name: str) -> list[str]:
        plugin = self._pm.get_plugin(name)
        if plugin is None:
            return []
        callers = self._pm.get_hookcallers(plugin) or []
        return sorted(caller.name for caller in callers)

    def _entry_points(self) -> Iterator[EntryPointLike]:
        # Read as importlib.metadata reads them, without importing it where that can be
        # done (its import costs more than the rest of `headwater connectors`).
        from headwater._entry_points import entry_points

        eps = entry_points(ENTRY_POINT_GROUP)
        yield from sorted(eps, key=lambda ep: ep.name)

    def _load_entry_points(self) -> None:
        blocked = _names(self._environ, "HEADWATER_DISABLE_PLUGINS") or set()
        allowed = _names(self._environ, "HEADWATER_PLUGINS")
        for ep in self._entry_points():
            dist = ep.dist
            metadata = _headers(dist) if dist is not None else None
            dist_name = metadata["Name"] if metadata is not None else None
            version = metadata["Version"] if metadata is not None else None
            api = _core_requirement(dist, metadata) if dist is not None else None
            record = PluginInfo(
                name=ep.name, distribution=dist_name, version=version, api=api, status="ok"
            )
            self._records[ep.name] = record
            names = {_normalize(ep.name)} | ({_normalize(dist_name)} if dist_name else set())
            if names & blocked:
                record.status = "blocked"
                record.error = "blocked by HEADWATER_DISABLE_PLUGINS"
                continue
            if allowed is not None and not names & allowed:
                record.status = "blocked"
                record.error = "not listed in HEADWATER_PLUGINS"
                continue
            problem = _incompatibility(api or "", dist_name or ep.name)
            if problem is not None:
                # Refused before a line of the plugin runs: nothing is imported.
                record.status = "incompatible"
                record.error = problem
                self._fail(record, PluginIncompatible(problem))
                continue
            started = time.perf_counter()
            watch = _SigintWatch()
            try:
                with watch.watching():
                    module = ep.load()
            except BaseException as exc:
                if watch.is_host_interrupt(exc):
                    raise
                record.import_time = time.perf_counter() - started
                self._fail(record, _contained(exc), f"failed to import {ep.value}")
                continue
            record.import_time = time.perf_counter() - started
            try:
                if self._pm.is_registered(module):
                    raise PluginError(f"module {ep.value} is already registered")
                self._pm.register(module, name=ep.name)
                _refuse_wrappers(self._pm, ep.name)
            except Exception as exc:
                if self._pm.is_registered(module):
                    self._pm.unregister(module)
                self._fail(record, exc, "invalid hook implementations")

    def _fail(self, record: PluginInfo, exc: BaseException, context: str | None = None) -> None:
        record.status = "incompatible" if isinstance(exc, PluginIncompatible) else "failed"
        detail = exc.message if isinstance(exc, PluginError) else _describe(exc)
        record.error = f"{context}: {detail}" if context else detail
        origin = f"{record.distribution} {record.version}" if record.distribution else record.name
        logger.warning("plugin %s (%s) %s", record.name, origin, record.error)
        self._errors[record.name] = exc
        if self._loaded:  # while loading, load() raises once everything is recorded
            self._raise_if_strict()

    def _raise_if_strict(self) -> None:
        """In strict mode, raise for the first failed plugin: on every use, not just once."""
        if not self._strict:
            return
        for record in self._records.values():
            if record.status not in ("failed", "incompatible"):
                continue
            origin = (
                f"{record.distribution} {record.version}" if record.distribution else record.name
            )
            exc = self._errors.get(record.name)
            error_cls = PluginIncompatible if record.status == "incompatible" else PluginLoadError
            raise error_cls(
                f"plugin {record.name} ({origin}): {record.error}",
                hint="HEADWATER_STRICT_PLUGINS is set, so plugin failures are errors",
            ) from (None if isinstance(exc, PluginError) else exc)

    # --- calling hooks, one implementation at a time ------------------------------------

    def _call_each(self, hook_name: str, **kwargs: Any) -> Iterator[tuple[PluginInfo, Any]]:
        """Call every implementation of a hook in pluggy's order, isolating failures."""
        self.load()
        caller = getattr(self._pm.hook, hook_name)
        # pluggy calls implementations last-registered-first (tryfirst/trylast respected);
        # get_hookimpls() lists them in the opposite order.
        for impl in reversed(caller.get_hookimpls()):
            record = self._records.get(impl.plugin_name) or PluginInfo(
                name=impl.plugin_name, distribution=None, version=None, api=None, status="ok"
            )
            self._records.setdefault(impl.plugin_name, record)
            if record.status not in _USABLE:
                continue
            watch = _SigintWatch()
            try:
                with watch.watching():
                    result = impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
            except BaseException as exc:
                if watch.is_host_interrupt(exc):
                    raise
                self._fail(record, _contained(exc), f"hook {hook_name} raised")
                continue
            yield record, result

    def plugins(self) -> list[PluginInfo]:
        """Every plugin seen: built-in, explicit and entry points, with status and connectors."""
        self.connectors()  # fills in each plugin's connector ids (and hook failures)
        self._check_hook_names()  # specs added since loading (a plugin's own hooks) count
        return sorted(self._records.values(), key=lambda r: (not r.builtin, r.name))

    def _cached(self, key: str, compute: Callable[[], Any]) -> Any:
        self.load()
        # The plugin objects themselves (not their ids, which a new object could reuse).
        generation = tuple(self._pm.get_plugins())
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] == generation:
                return hit[1]
            value = compute()
            self._cache[key] = (generation, value)
            return value

    def connectors(self) -> dict[str, list[ConnectorEntry]]:
        """Connector id → the plugins providing it (more than one is a conflict)."""
        result: dict[str, list[ConnectorEntry]] = self._cached(
            "connectors", self._collect_connectors
        )
        return {cid: list(entries) for cid, entries in result.items()}

    def _collect_connectors(self) -> dict[str, list[ConnectorEntry]]:
        found: dict[str, list[ConnectorEntry]] = {}
        for record in self._records.values():
            record.connectors = []
        for record, result in self._call_each("register_connectors"):
            entries: list[ConnectorEntry] = []
            try:
                items = list(result or ())
                for item in items:
                    cid: object
                    if isinstance(item, ConnectorRef):
                        cid = item.id
                    elif isinstance(item, type) and _is_connector_class(item):
                        cid = getattr(item, "id", None)
                    else:
                        raise PluginError(
                            f"register_connectors returned {item!r}; expected a Connector "
                            "subclass or a headwater.ConnectorRef"
                        )
                    if not is_connector_id(cid):
                        raise PluginError(
                            f"connector id {cid!r} is invalid; use {CONNECTOR_ID_RULE} "
                            "(e.g. 'azure-blob')"
                        )
                    entries.append(ConnectorEntry(cid, item, record))
            except Exception as exc:
                # All or nothing: a plugin with one bad item provides none of its ids.
                self._fail(record, exc, "hook register_connectors returned bad data")
                continue
            for entry in entries:
                found.setdefault(entry.id, []).append(entry)
                record.connectors.append(entry.id)
        return dict(sorted(found.items()))

    def connector_entry(self, connector_id: str) -> ConnectorEntry:
        """The single entry for ``connector_id``; raises on unknown or duplicated ids."""
        entries = self.connectors().get(connector_id)
        if not entries:
            known = ", ".join(self.connectors()) or "none"
            raise UnknownConnector(
                f"no installed plugin provides connector {connector_id!r} (installed: {known})",
                hint="pip install the plugin (headwater-<name>), or run `headwater plugins` "
                "to see plugins that failed to load",
            )
        if len(entries) > 1:
            origins = " and ".join(e.origin for e in entries)
            raise DuplicateConnector(
                f"connector id {connector_id!r} is provided by both {origins}",
                hint="uninstall one, or block it with HEADWATER_DISABLE_PLUGINS=<name>",
            )
        return entries[0]

    def connector_class(self, connector_id: str) -> type[Connector[Any]]:
        """The connector class for ``connector_id`` (imported now if it was a `ConnectorRef`)."""
        from headwater._connector import Connector

        entry = self.connector_entry(connector_id)
        provider = entry.provider
        if isinstance(provider, type):
            return provider
        watch = _SigintWatch()
        try:
            with watch.watching():
                cls = provider.load()
        except BaseException as exc:
            if watch.is_host_interrupt(exc):
                raise
            raise PluginLoadError(
                f"connector {connector_id!r} from {entry.origin}: cannot import "
                f"{provider.target} ({_describe(exc)})"
            ) from exc
        if not (isinstance(cls, type) and issubclass(cls, Connector)) or cls.id != connector_id:
            raise PluginLoadError(
                f"connector {connector_id!r} from {entry.origin}: {provider.target} is not a "
                f"Connector with id {connector_id!r}"
            )
        return cls

    def connector_for_url(self, url: str) -> str:
        """The connector id that handles ``url`` (the first plugin to claim it wins)."""
        for record, result in self._call_each("connector_for_url", url=url):
            if result is None:
                continue
            if isinstance(result, str) and result in self.connectors():
                return result
            # A plugin claiming URLs for a connector nobody provides would break every
            # URL (tryfirst): it is that plugin's failure, and the next plugin answers.
            self._fail(
                record,
                PluginError(
                    f"hook connector_for_url returned {result!r}, which is not an installed "
                    "connector id"
                ),
            )
        scheme = url.split("://", 1)[0] if "://" in url else url
        raise UnknownConnector(
            f"no installed connector handles URLs like {scheme}://…",
            hint="install the plugin for this kind of source, or save a source with "
            "`headwater sources add`",
        )

    def credential_resolvers(self) -> dict[str, CredentialResolver]:
        """Secret-reference scheme → resolver; core's env/file/keyring cannot be replaced."""
        resolvers: dict[str, CredentialResolver] = self._cached(
            "resolvers",
            lambda: self._collect_named("register_credential_resolvers", protected=_CORE_SCHEMES),
        )
        return dict(resolvers)

    def auth_schemes(self) -> dict[str, Callable[..., Any]]:
        """Auth scheme name → ``httpx.Auth`` factory."""
        schemes: dict[str, Callable[..., Any]] = self._cached(
            "auth_schemes",
            lambda: self._collect_named("register_auth_schemes", protected=frozenset()),
        )
        return dict(schemes)

    def _collect_named(self, hook_name: str, protected: frozenset[str]) -> dict[str, Any]:
        collected: dict[str, Any] = {}
        owners: dict[str, str] = {}
        results = list(self._call_each(hook_name))
        # Built-ins first, so a plugin can add schemes but never shadow core's own.
        results.sort(key=lambda pair: not pair[0].builtin)
        for record, result in results:
            if result is None:
                continue
            if not isinstance(result, Mapping) or not all(
                isinstance(key, str) and callable(value) for key, value in result.items()
            ):
                self._fail(
                    record,
                    PluginError(
                        f"hook {hook_name} returned {type(result).__name__}; expected a "
                        "mapping of name to callable"
                    ),
                )
                continue
            for key, value in result.items():
                if key in collected:
                    if key in protected or key in owners:
                        logger.warning(
                            "plugin %s: %s %r ignored, already provided by %s",
                            record.name,
                            hook_name,
                            key,
                            owners.get(key, "headwater"),
                        )
                    continue
                collected[key] = value
                owners[key] = record.name
        return collected

    # --- connecting ------------------------------------------------------------------------

    def connect(
        self, target: str, config: Mapping[str, Any] | None = None, **options: Any
    ) -> Connector[Any]:
        """
        A connector for ``target``: a connector id with ``config``, or a URL.

        ``connect("files", {"root": "data"})`` / ``connect("postgresql://u@h/db")``.
        ``env_prefix="BILLING_"`` (and optionally ``env_file=".env"``) also reads the config
        from ``BILLING_*`` environment variables (``__`` nests: ``BILLING_AUTH__TOKEN``);
        ``config`` and keywords win over them (see `headwater._settings`).
        """
        env_prefix = options.pop("env_prefix", None)
        env_file = options.pop("env_file", None)
        if env_prefix is not None or env_file is not None:
            if "://" in target or env_prefix is None:
                raise ConfigError(
                    "env_prefix= (and env_file=) apply to a connector id, not a URL; "
                    "env_file= needs env_prefix=",
                    field="env_prefix",
                    hint='connect("rest", env_prefix="BILLING_")',
                )
            from headwater._settings import config_from_env, merge_config

            cls = self.connector_class(target)
            found = config_from_env(cls.Config, prefix=env_prefix, env_file=env_file)
            config = merge_config(found, {**dict(config or {}), **options})
            options = {}
        if "://" in target:
            connector_id = self.connector_for_url(target)
            cls = self.connector_class(connector_id)
            connector = cls.from_url(target, **dict(config or {}), **options)
        else:
            cls = self.connector_class(target)
            connector = cls({**dict(config or {}), **options}, registry=self)
        connector._registry = self
        return connector


_default: Registry | None = None
_default_lock = threading.Lock()


def get_registry() -> Registry:
    """The process-wide registry, created (not loaded) on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Registry()
    return _default


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide pluggy manager, plugins loaded: ``get_plugin_manager().hook.<name>()``."""
    return get_registry().pm


def set_registry(registry: Registry | None) -> Registry | None:
    """Replace the process-wide registry (``None`` resets it); returns the previous one."""
    global _default
    with _default_lock:
        previous, _default = _default, registry
    return previous


def connect(target: str, config: Mapping[str, Any] | None = None, **options: Any) -> Connector[Any]:
    """
    A connector for a connector id plus config, or a URL, from the process-wide registry.

    ``env_prefix=`` (and ``env_file=``) read the config from the environment too: see
    `Registry.connect`.
    """
    return get_registry().connect(target, config, **options)

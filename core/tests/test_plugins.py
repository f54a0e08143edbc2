"""
The plugin registry in-process: private registries with explicit plugin objects.

Nothing here depends on what is installed: every registry is built with autoload off
(or with ``HEADWATER_DISABLE_PLUGIN_AUTOLOAD`` in its own ``environ``). Discovery through
real entry points is tested in ``tests/test_discovery*.py``.
"""

from __future__ import annotations

import ast
import logging
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import headwater
from headwater import hookimpl, hookspecs
from headwater._plugins import BUILTIN_PLUGINS, ConnectorRef, Registry
from headwater._redact import register_secret
from headwater._resolvers import resolve_env

BUILTIN_NAMES = sorted(name for name, _module in BUILTIN_PLUGINS)


# --- plugins used by the tests ---------------------------------------------------------------


class EchoConfig(headwater.ConnectorConfig):
    """Config of the test connector."""

    token: headwater.Secret | None = None
    root: str = "."


class EchoConnector(headwater.Connector[EchoConfig]):
    """A minimal connector registered as a class (not a `ConnectorRef`)."""

    id = "echo"
    Config = EchoConfig
    summary = "echoes"

    def check_connection(self) -> str:
        return "ok"

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> EchoConnector:
        return cls({"root": url.split("://", 1)[1], **overrides})


class OtherConnector(EchoConnector):
    """A second class, for a second id."""

    id = "other"


class EchoPlugin:
    """Provides ``echo`` (a class) and claims ``echo://`` URLs."""

    @hookimpl
    def register_connectors(self) -> list[Any]:
        return [EchoConnector]

    @hookimpl
    def connector_for_url(self, url: str) -> str | None:
        return "echo" if url.startswith("echo://") else None


class ConnectorsPlugin:
    """Returns whatever it is given from ``register_connectors``, counting calls."""

    def __init__(self, *items: Any) -> None:
        self.items = list(items)
        self.calls = 0

    @hookimpl
    def register_connectors(self) -> list[Any]:
        self.calls += 1
        return self.items


class RaisingPlugin:
    """Every hook it implements raises."""

    def __init__(self, message: str = "boom") -> None:
        self.message = message

    @hookimpl
    def register_connectors(self) -> list[Any]:
        raise RuntimeError(self.message)


class UrlPlugin:
    """Claims URLs with the given prefix for ``answer``."""

    def __init__(self, prefix: str, answer: str) -> None:
        self.prefix, self.answer = prefix, answer

    @hookimpl
    def connector_for_url(self, url: str) -> str | None:
        return self.answer if url.startswith(self.prefix) else None


class UrlPluginFirst(UrlPlugin):
    """Like `UrlPlugin`, asked before the others."""

    @hookimpl(tryfirst=True)
    def connector_for_url(self, url: str) -> str | None:
        return self.answer if url.startswith(self.prefix) else None


def provides(*ids: str) -> ConnectorsPlugin:
    """A plugin providing these connector ids (never imported): URL hooks may answer them."""
    return ConnectorsPlugin(*(ConnectorRef(cid, "nowhere:C") for cid in ids))


def private(*plugins: object, **kwargs: Any) -> Registry:
    """A registry that ignores installed plugins and the process environment."""
    return Registry(autoload=False, plugins=plugins, environ={}, **kwargs)


@pytest.fixture
def process_registry() -> Iterator[None]:
    """Restore the process-wide registry after a test replaces it."""
    previous = headwater.set_registry(None)
    yield
    headwater.set_registry(previous)


@pytest.fixture
def lazy_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A connector module on ``sys.path`` that nothing has imported yet; returns its name."""
    name = f"hw_lazy_{request.node.name.replace('[', '_').replace(']', '_').replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """\
            from headwater import Connector, ConnectorConfig


            class _Config(ConnectorConfig):
                pass


            class LazyConnector(Connector[_Config]):
                id = "lazy"
                Config = _Config
                summary = "imported on first use"

                def check_connection(self):
                    return "ok"


            class NotAConnector:
                id = "lazy"
            """
        ),
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    yield name
    sys.modules.pop(name, None)


# --- building registries ---------------------------------------------------------------------


def test_private_registry_holds_builtins_and_explicit_plugins_only() -> None:
    """autoload=False: the built-ins and the given plugins, nothing from entry points."""
    registry = private(EchoPlugin())
    infos = registry.plugins()
    assert BUILTIN_NAMES == sorted(i.name for i in infos if i.builtin)
    explicit = [i for i in infos if not i.builtin]
    assert 1 == len(explicit)
    assert (None, "ok", ["echo"]) == (
        explicit[0].distribution,
        explicit[0].status,
        explicit[0].connectors,
    )
    assert ["connector_for_url", "register_connectors"] == explicit[0].hooks
    assert ["echo", "files"] == sorted(registry.connectors())


def test_registry_without_builtins_is_empty() -> None:
    """builtins=False and no plugins: no connectors, no resolvers."""
    registry = private(builtins=False)
    assert ({}, {}, []) == (
        registry.connectors(),
        registry.credential_resolvers(),
        registry.plugins(),
    )


def test_environ_disables_autoload() -> None:
    """HEADWATER_DISABLE_PLUGIN_AUTOLOAD in environ: only built-ins, whatever is installed."""
    registry = Registry(environ={"HEADWATER_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert BUILTIN_NAMES == [i.name for i in registry.plugins()]
    assert all(i.builtin for i in registry.plugins())


def test_environ_replaces_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry given environ= ignores HEADWATER_* in os.environ."""
    monkeypatch.setenv("HEADWATER_STRICT_PLUGINS", "1")
    registry = private(RaisingPlugin(), ConnectorsPlugin(OtherConnector))
    assert ["files", "other"] == sorted(registry.connectors())


def test_building_a_registry_calls_no_plugin() -> None:
    """Construction is side-effect free: hooks run on first use only."""
    plugin = ConnectorsPlugin(OtherConnector)
    registry = private(plugin)
    assert 0 == plugin.calls
    registry.connectors()
    assert 1 <= plugin.calls


def test_import_headwater_has_no_side_effects() -> None:
    """`import headwater` imports neither pluggy, the registry, pydantic nor any entry point."""
    code = (
        "import sys, json, headwater; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pluggy', 'pydantic', 'headwater_rest', 'headwater_postgres', 'headwater_azure_blob')"
        " or m == 'headwater._plugins')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "[]" == out.strip()


# --- programmatic use ----------------------------------------------------------------------


def test_pm_register_object_without_entry_point() -> None:
    """registry.pm.register(obj) works and its hooks are called directly and by the registry."""
    registry = private()
    registry.pm.register(ConnectorsPlugin(OtherConnector), name="mine")
    results = registry.pm.hook.register_connectors()
    assert [OtherConnector] in results
    assert OtherConnector is registry.connector_class("other")
    assert "ok" == next(i.status for i in registry.plugins() if i.name == "mine")


def test_registry_register_and_unregister() -> None:
    """Registry.register adds a plugin after loading; unregister removes it and its ids."""
    registry = private()
    registry.connectors()
    name = registry.register(ConnectorsPlugin(OtherConnector), name="late")
    assert "late" == name
    assert "other" in registry.connectors()
    registry.unregister("late")
    assert "other" not in registry.connectors()
    assert "late" not in [i.name for i in registry.plugins()]


def test_get_plugin_manager_is_the_process_registry(process_registry: None) -> None:
    """headwater.get_plugin_manager() is the process-wide registry's loaded manager."""
    registry = private(ConnectorsPlugin(OtherConnector))
    headwater.set_registry(registry)
    pm = headwater.get_plugin_manager()
    assert registry.pm is pm
    assert [OtherConnector] in pm.hook.register_connectors()
    assert isinstance(headwater.connect("other"), OtherConnector)


def test_get_registry_is_created_once_lazily(process_registry: None) -> None:
    """get_registry() creates one registry on first use and returns it afterwards."""
    first = headwater.get_registry()
    assert first is headwater.get_registry()
    assert isinstance(first, Registry)


def test_plugin_can_add_hookspecs_of_its_own() -> None:
    """pm.add_hookspecs with headwater.hookspec: another plugin implements the new hook."""

    class PaginationSpecs:
        @headwater.hookspec
        def pagination_styles(self) -> list[str]:  # type: ignore[empty-body]
            """Pagination styles a plugin provides."""

    class CursorPlugin:
        @hookimpl
        def pagination_styles(self) -> list[str]:
            return ["cursor"]

    registry = private()
    registry.pm.add_hookspecs(PaginationSpecs)
    registry.register(CursorPlugin())
    assert [["cursor"]] == registry.pm.hook.pagination_styles()


def test_concurrent_first_use_loads_once() -> None:
    """Threads racing on first use see one load: every built-in registered exactly once."""
    registry = private(ConnectorsPlugin(OtherConnector))
    barrier = threading.Barrier(8)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def use() -> None:
        barrier.wait()
        try:
            results.append(sorted(registry.connectors()))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [] == errors
    assert [["files", "other"]] * 8 == results
    assert 3 == len(registry.pm.get_plugins())


# --- one test per hookspec (the meta-test below insists) --------------------------------------


def test_hook_register_connectors(lazy_module: str) -> None:
    """Classes and ConnectorRefs are both accepted; each id resolves to its class."""
    ref = ConnectorRef("lazy", f"{lazy_module}:LazyConnector", summary="by reference")
    registry = private(ConnectorsPlugin(EchoConnector, ref))
    found = registry.connectors()
    assert ["echo", "files", "lazy"] == list(found)
    assert "by reference" == found["lazy"][0].summary
    assert EchoConnector is registry.connector_class("echo")
    assert "LazyConnector" == registry.connector_class("lazy").__name__


def test_hook_register_connectors_called_once_per_registry() -> None:
    """hookspecs.register_connectors promises one call per registry, however often it is used."""
    plugin = ConnectorsPlugin(OtherConnector)
    registry = private(plugin)
    registry.connectors()
    registry.plugins()
    registry.connector_class("other")
    registry.connect("other")
    assert 1 == plugin.calls


def test_hook_register_credential_resolvers() -> None:
    """A plugin adds the vault: scheme; a connector's secret resolves through it at connect time."""
    seen: list[str] = []

    class VaultPlugin:
        @hookimpl
        def register_credential_resolvers(self) -> dict[str, Any]:
            def resolve(reference: str) -> str:
                seen.append(reference)
                return f"value-of-{reference}"

            return {"vault": resolve}

    registry = private(EchoPlugin(), VaultPlugin())
    assert {"env", "file", "keyring", "encrypted", "vault"} == set(registry.credential_resolvers())
    connector = registry.connect("echo", {"token": "vault:db/password"})
    assert [] == seen  # parsing the config resolved nothing
    assert "value-of-db/password" == connector.secret("token")
    assert ["db/password"] == seen


def test_core_secret_schemes_cannot_be_shadowed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A plugin returning env/file/keyring (even tryfirst) is ignored with a warning naming it."""
    called: list[str] = []

    def evil(reference: str) -> str:
        called.append(reference)
        return "stolen"

    class Shadow:
        @hookimpl(tryfirst=True)
        def register_credential_resolvers(self) -> dict[str, Any]:
            return {"env": evil, "file": evil, "keyring": evil, "extra": evil}

    monkeypatch.setenv("HW_TEST_SHADOW", "the-real-value")
    registry = private(EchoPlugin(), Shadow())
    with caplog.at_level(logging.WARNING, logger="headwater.plugins"):
        resolvers = registry.credential_resolvers()
    assert resolve_env is resolvers["env"]
    assert evil is resolvers["extra"]
    assert evil not in (resolvers["file"], resolvers["keyring"])
    connector = registry.connect("echo", {"token": "env:HW_TEST_SHADOW"})
    assert "the-real-value" == connector.secret("token")
    assert [] == called
    shadow_name = next(
        i.name
        for i in registry.plugins()
        if i.hooks == ["register_credential_resolvers"] and not i.builtin
    )
    assert any(shadow_name in r.getMessage() and "'env'" in r.getMessage() for r in caplog.records)


def test_credential_resolvers_hook_with_bad_data_is_isolated() -> None:
    """A plugin returning a non-mapping is recorded as failed; core's schemes still resolve."""

    class BadResolvers:
        @hookimpl
        def register_credential_resolvers(self) -> Any:
            return 42

    registry = private(BadResolvers())
    resolvers = registry.credential_resolvers()
    assert {"env", "file", "keyring"} <= set(resolvers)
    bad = next(i for i in registry.plugins() if not i.builtin)
    assert "failed" == bad.status
    assert "register_credential_resolvers" in (bad.error or "")


def test_hook_register_auth_schemes(caplog: pytest.LogCaptureFixture) -> None:
    """Auth factories are collected by name; on a clash the first plugin asked keeps it."""

    def first_factory(config: Any, secret: Any) -> str:
        return "first"

    def second_factory(config: Any, secret: Any) -> str:
        return "second"

    class First:
        @hookimpl(tryfirst=True)
        def register_auth_schemes(self) -> dict[str, Any]:
            return {"token": first_factory}

    class Second:
        @hookimpl
        def register_auth_schemes(self) -> dict[str, Any]:
            return {"token": second_factory, "other": second_factory}

    registry = private(First(), Second())
    with caplog.at_level(logging.WARNING, logger="headwater.plugins"):
        schemes = registry.auth_schemes()
    assert {"token": first_factory, "other": second_factory} == schemes
    assert any("'token' ignored" in r.getMessage() for r in caplog.records)


def test_hook_connector_for_url() -> None:
    """The first plugin (pluggy order, tryfirst respected) to claim a URL wins; same as pm.hook."""
    registry = private(
        UrlPluginFirst("x://", "first"),
        UrlPlugin("x://", "plain"),
        UrlPlugin("y://", "why"),
        provides("first", "plain", "why"),
    )
    assert "first" == registry.connector_for_url("x://host/path")
    assert registry.pm.hook.connector_for_url(url="x://host/path") == registry.connector_for_url(
        "x://host/path"
    )
    assert "why" == registry.connector_for_url("y://host")
    assert "files" == registry.connector_for_url("file:///tmp/data")


def test_connector_for_url_follows_registration_order() -> None:
    """Without tryfirst, pluggy asks the last-registered plugin first; the registry agrees."""
    registry = private(
        provides("early", "late"), UrlPlugin("x://", "early"), UrlPlugin("x://", "late")
    )
    assert registry.pm.hook.connector_for_url(url="x://a") == registry.connector_for_url("x://a")
    assert "late" == registry.connector_for_url("x://a")


def test_connector_for_url_unknown_scheme() -> None:
    """No plugin claims the URL: UnknownConnector naming the scheme."""
    registry = private(EchoPlugin())
    with pytest.raises(headwater.UnknownConnector, match=r"nope://"):
        registry.connector_for_url("nope://somewhere")


def test_connect_by_url_uses_connector_for_url() -> None:
    """connect(url) finds the connector through the hook and builds it with from_url."""
    registry = private(EchoPlugin())
    connector = registry.connect("echo://some/where")
    assert isinstance(connector, EchoConnector)
    assert "some/where" == connector.config.root
    assert registry is connector.registry


def test_every_hookspec_has_a_test() -> None:
    """Each hookspec in headwater.hookspecs has a test_hook_<name> under core/tests or tests."""
    specs = sorted(n for n, obj in vars(hookspecs).items() if hasattr(obj, "headwater_spec"))
    assert specs  # the scan below means nothing if no spec was found
    root = Path(__file__).resolve().parents[2]
    tested: set[str] = set()
    for directory in (root / "core" / "tests", root / "tests"):
        for path in directory.rglob("test_*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    tested.add(node.name)
    missing = [
        s
        for s in specs
        if not any(t == f"test_hook_{s}" or t.startswith(f"test_hook_{s}_") for t in tested)
    ]
    assert [] == missing


# --- failure isolation ------------------------------------------------------------------------


def test_hook_that_raises_is_recorded_and_others_work() -> None:
    """A raising register_connectors marks its plugin failed with the error; the rest work."""
    registry = private(RaisingPlugin("boom 42"), EchoPlugin())
    assert ["echo", "files"] == sorted(registry.connectors())
    bad = next(i for i in registry.plugins() if i.error)
    assert "failed" == bad.status
    assert "hook register_connectors raised: RuntimeError: boom 42" == bad.error
    assert isinstance(registry.connect("echo"), EchoConnector)


def test_hook_error_text_is_redacted() -> None:
    """A hook error quoting a known secret is stored redacted."""
    register_secret("hw-plugin-secret-8812")
    registry = private(RaisingPlugin("token hw-plugin-secret-8812 rejected"))
    registry.connectors()
    bad = next(i for i in registry.plugins() if i.error)
    assert "hw-plugin-secret-8812" not in (bad.error or "")
    assert "rejected" in (bad.error or "")


def test_raising_url_hook_is_isolated() -> None:
    """A connector_for_url that raises is recorded; the next plugin still answers."""

    class BadUrl:
        @hookimpl(tryfirst=True)
        def connector_for_url(self, url: str) -> str | None:
            raise ValueError("cannot parse")

    registry = private(BadUrl(), EchoPlugin())
    assert "echo" == registry.connector_for_url("echo://x")
    bad = next(i for i in registry.plugins() if i.error)
    assert ("failed", "hook connector_for_url raised: ValueError: cannot parse") == (
        bad.status,
        bad.error,
    )


@pytest.mark.parametrize("item", [object(), dict, "echo", None])
def test_register_connectors_bad_item_is_recorded(item: Any) -> None:
    """Items that are neither Connector classes nor ConnectorRefs fail only their plugin."""
    registry = private(ConnectorsPlugin(item), EchoPlugin())
    assert ["echo", "files"] == sorted(registry.connectors())
    bad = next(i for i in registry.plugins() if i.error)
    assert "failed" == bad.status
    assert "register_connectors returned bad data" in (bad.error or "")


@pytest.mark.parametrize(
    "bad_id", ["Echo", "with_underscore", "-lead", "trail-", "double--dash", "", "1abc", "a b"]
)
def test_invalid_connector_ids_are_refused(bad_id: str) -> None:
    """An id not made of lowercase words joined by single dashes fails its plugin."""
    registry = private(ConnectorsPlugin(ConnectorRef(bad_id, "x:Y")), EchoPlugin())
    assert ["echo", "files"] == sorted(registry.connectors())
    bad = next(i for i in registry.plugins() if i.error)
    assert "failed" == bad.status
    assert f"connector id {bad_id!r} is invalid" in (bad.error or "")


@pytest.mark.parametrize("good_id", ["a", "s3", "azure-blob", "x1-y2-z3"])
def test_valid_connector_ids_are_accepted(good_id: str) -> None:
    """Lowercase words with single dashes are valid ids."""
    registry = private(ConnectorsPlugin(ConnectorRef(good_id, "x:Y")))
    assert good_id in registry.connectors()


def test_bad_connector_data_contributes_nothing_and_is_stable() -> None:
    """A plugin whose list has one bad id provides none of its ids, on every call alike."""
    plugin = ConnectorsPlugin(ConnectorRef("partial-ok", "x:Y"), ConnectorRef("Bad_ID", "x:Y"))
    registry = private(plugin)
    first = sorted(registry.connectors())
    second = sorted(registry.connectors())
    assert ["files"] == first
    assert first == second


def test_duplicate_id_names_both_origins_and_other_ids_work() -> None:
    """Two plugins providing one id: using it raises DuplicateConnector naming both."""
    registry = Registry(autoload=False, environ={}, plugins=[])
    registry.register(ConnectorsPlugin(EchoConnector), name="plugin-a")
    registry.register(
        ConnectorsPlugin(ConnectorRef("echo", "x:Y"), OtherConnector), name="plugin-b"
    )
    assert 2 == len(registry.connectors()["echo"])
    with pytest.raises(headwater.DuplicateConnector) as info:
        registry.connect("echo")
    assert "plugin-a" in info.value.message
    assert "plugin-b" in info.value.message
    assert OtherConnector is registry.connector_class("other")
    assert "files" in registry.connectors()


def test_duplicate_id_from_unnamed_plugins_names_them_readably() -> None:
    """Plugins registered without a name appear by class name, not as a number, in the error."""

    class AlphaPlugin(ConnectorsPlugin):
        pass

    class BetaPlugin(ConnectorsPlugin):
        pass

    registry = private(AlphaPlugin(EchoConnector), BetaPlugin(EchoConnector))
    with pytest.raises(headwater.DuplicateConnector) as info:
        registry.connector_class("echo")
    assert "AlphaPlugin" in info.value.message
    assert "BetaPlugin" in info.value.message


def test_unknown_connector_lists_installed_ids() -> None:
    """An id nobody provides: UnknownConnector listing the installed ones, with a hint."""
    registry = private(EchoPlugin())
    with pytest.raises(headwater.UnknownConnector) as info:
        registry.connector_class("postgres")
    assert "'postgres'" in info.value.message
    assert "echo, files" in info.value.message
    assert "pip install" in (info.value.hint or "")


# --- ConnectorRef: named by import path, imported on first use ------------------------------


def test_connector_ref_is_imported_only_when_its_class_is_needed(lazy_module: str) -> None:
    """Listing connectors and plugins does not import the module; connector_class does."""
    ref = ConnectorRef("lazy", f"{lazy_module}:LazyConnector", summary="lazy one")
    registry = private(ConnectorsPlugin(ref))
    registry.connectors()
    registry.plugins()
    assert "lazy one" == registry.connector_entry("lazy").summary
    assert lazy_module not in sys.modules
    cls = registry.connector_class("lazy")
    assert lazy_module in sys.modules
    assert ("lazy", "LazyConnector") == (cls.id, cls.__name__)


def test_connector_ref_to_missing_module_fails_only_that_id() -> None:
    """A ConnectorRef that cannot be imported: PluginLoadError naming it; other ids work."""
    ref = ConnectorRef("ghost", "hw_no_such_module_xyz._c:Ghost")
    registry = Registry(autoload=False, environ={})
    registry.register(ConnectorsPlugin(ref, OtherConnector), name="haunted")
    with pytest.raises(headwater.PluginLoadError) as info:
        registry.connector_class("ghost")
    assert "hw_no_such_module_xyz._c:Ghost" in info.value.message
    assert "haunted" in info.value.message
    assert OtherConnector is registry.connector_class("other")


@pytest.mark.parametrize("attr", ["NotAConnector", "LazyConnector"])
def test_connector_ref_must_name_a_connector_with_that_id(lazy_module: str, attr: str) -> None:
    """The class behind a ConnectorRef must be a Connector whose id matches the ref's."""
    ref_id = "lazy" if attr == "NotAConnector" else "renamed"
    registry = private(ConnectorsPlugin(ConnectorRef(ref_id, f"{lazy_module}:{attr}")))
    with pytest.raises(headwater.PluginLoadError, match=f"is not a Connector with id '{ref_id}'"):
        registry.connector_class(ref_id)


# --- strict mode --------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["argument", "environ"])
def test_strict_mode_raises_plugin_load_error(how: str) -> None:
    """strict=True or HEADWATER_STRICT_PLUGINS=1: a raising hook is an error, one line."""
    plugins = [RaisingPlugin("boom strict"), EchoPlugin()]
    if how == "argument":
        registry = Registry(autoload=False, plugins=plugins, environ={}, strict=True)
    else:
        registry = Registry(
            autoload=False, plugins=plugins, environ={"HEADWATER_STRICT_PLUGINS": "1"}
        )
    with pytest.raises(headwater.PluginLoadError) as info:
        registry.connectors()
    assert "boom strict" in info.value.message
    assert "\n" not in info.value.message
    assert "HEADWATER_STRICT_PLUGINS" in (info.value.hint or "")


def test_strict_mode_keeps_failing_on_every_use() -> None:
    """A strict registry whose plugin failed raises on every use, not only the first."""
    registry = private(RaisingPlugin("boom again"), EchoPlugin(), strict=True)
    for _ in range(2):
        with pytest.raises(headwater.PluginLoadError, match="boom again"):
            registry.connectors()


def test_strict_mode_with_healthy_plugins_is_quiet() -> None:
    """Strict mode changes nothing while every plugin works."""
    registry = private(EchoPlugin(), strict=True)
    assert ["echo", "files"] == sorted(registry.connectors())


def test_module_hooks_are_found_as_pluggy_finds_them() -> None:
    """The registry's quick lookup of a module's hooks answers as pluggy's own does."""
    import types

    import pluggy

    from headwater._plugins import _PluginManager

    module = types.ModuleType("hw_lookup_probe")

    @hookimpl
    def register_connectors() -> list[Any]:
        return []

    def plain() -> None: ...

    def odd() -> None: ...

    odd.headwater_impl = "not a dict"  # type: ignore[attr-defined]

    class Holder:
        @hookimpl
        @staticmethod
        def register_resolvers() -> dict[str, Any]:
            return {}

    module.__dict__.update(
        register_connectors=register_connectors,
        plain=plain,
        odd=odd,
        static=staticmethod(hookimpl(plain)),
        builtin=len,
        klass=Holder,
        constant=42,
        text="headwater_impl",
        bound=Holder().__init__,
    )
    ours = _PluginManager(hookspecs.PROJECT_NAME)
    theirs = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    import headwater._builtin.files as files_hooks

    for plugin in (module, files_hooks, Holder, Holder()):
        for name in dir(plugin):
            assert ours.parse_hookimpl_opts(plugin, name) == theirs.parse_hookimpl_opts(
                plugin, name
            ), (plugin, name)
    assert ours.parse_hookimpl_opts(module, "register_connectors") is not None
    assert ours.parse_hookimpl_opts(module, "odd") is None

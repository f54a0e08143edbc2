"""
Hook-call overhead cases for ``bench_core`` (see there).

Importing this module builds the registry the cases share; the benchmark worker imports
a case's module before starting its clock, so only the calls are timed.
"""

from __future__ import annotations

from typing import Any


class _BenchPlugin:
    """One plugin providing three connectors by reference."""

    def __init__(self) -> None:
        from headwater import ConnectorRef

        self.refs = [
            ConnectorRef("files", "headwater._builtin.files_connector:FilesConnector"),
            ConnectorRef("bench-1", "not_imported.anywhere:One"),
            ConnectorRef("bench-2", "not_imported.anywhere:Two"),
        ]

    def register_connectors(self) -> list[Any]:
        return self.refs


_hook_state: tuple[Any, _BenchPlugin] | None = None


def _registry() -> tuple[Any, _BenchPlugin]:
    """The registry every hook case uses, built once per process."""
    global _hook_state
    if _hook_state is None:
        from headwater import Registry, hookimpl

        class Marked(_BenchPlugin):
            register_connectors = hookimpl(_BenchPlugin.register_connectors)

        plugin = Marked()
        registry = Registry(autoload=False, builtins=False, plugins=[plugin], environ={})
        registry.load()
        registry.connector_class("files")  # imports the connector module once
        _hook_state = registry, plugin
    return _hook_state


def hook_direct(calls: int) -> int:
    _registry_unused, plugin = _registry()
    fn = plugin.register_connectors
    for _ in range(calls):
        fn()
    return calls


def hook_pm(calls: int) -> int:
    registry, _ = _registry()
    hook = registry.pm.hook.register_connectors
    for _ in range(calls):
        hook()
    return calls


def hook_registry_connectors(calls: int) -> int:
    registry, _ = _registry()
    for _ in range(calls):
        registry.connectors()
    return calls


def hook_connector_class(calls: int) -> int:
    from headwater._builtin.files_connector import FilesConnector

    registry, _ = _registry()
    for _ in range(calls):
        if registry.connector_class("files") is not FilesConnector:
            raise AssertionError("wrong class")
    return calls


# The worker imports this module before it starts the clock: build the registry now, so
# the cases time their calls, not the import of headwater (the same for every case).
_registry()

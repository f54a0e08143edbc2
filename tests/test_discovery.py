"""
Entry-point discovery in-process, with real distributions on ``sys.path``.

Each test writes throwaway plugin distributions (``*.dist-info`` with ``entry_points.txt``
plus their modules, see ``tests/_dists.py``) into its own directory and puts it on
``sys.path``, where ``importlib.metadata`` finds them exactly as it finds installed ones.
Modules touch a marker file when imported, so "never imported" is checked, not assumed.
The CLI over a real virtual environment is in ``test_discovery_cli.py``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import headwater
import headwater._entry_points
from headwater._plugins import PluginInfo, Registry
from headwater._version import API_VERSION
from tests._dists import MARKER_ENV, PluginDist, hooks_source, scenario_dists

DISTS = {d.name: d for d in scenario_dists()}

Install = Callable[..., Path]


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Install]:
    """``install(*names_or_dists)`` puts distributions on sys.path; returns the marker dir."""
    site = tmp_path / "site"
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv(MARKER_ENV, str(markers))
    top_level: set[str] = set()

    def _install(*dists: str | PluginDist) -> Path:
        for dist in dists:
            dist = DISTS[dist] if isinstance(dist, str) else dist
            dist.install_unpacked(site)
            top_level.update(dist.top_level)
        monkeypatch.syspath_prepend(str(site))
        importlib.invalidate_caches()
        return markers

    yield _install
    for name in list(sys.modules):
        if name.split(".")[0] in top_level:
            del sys.modules[name]


def by_name(registry: Registry) -> dict[str, PluginInfo]:
    """The registry's plugins by name."""
    return {info.name: info for info in registry.plugins()}


def imported(markers: Path) -> set[str]:
    """Modules of generated distributions imported so far."""
    return {p.name for p in markers.iterdir()}


def test_discovery_isolates_a_plugin_that_fails_to_import(install: Install) -> None:
    """An entry point whose module cannot import is recorded with dist, version and error."""
    install("hwtest-good", "hwtest-broken")
    registry = Registry(environ={})
    broken = by_name(registry)["broken"]
    assert ("hwtest-broken", "0.3.0", "failed") == (
        broken.distribution,
        broken.version,
        broken.status,
    )
    assert (broken.error or "").startswith(
        "failed to import hwtest_broken.hooks: ModuleNotFoundError"
    )
    assert "good" == registry.connector_class("good").id


def test_discovery_records_a_raising_hook_with_its_distribution(install: Install) -> None:
    """A plugin whose register_connectors raises is failed (dist, version, error); others work."""
    install("hwtest-good", "hwtest-raises")
    registry = Registry(environ={})
    assert {"good", "shared"} <= set(registry.connectors())
    raises = by_name(registry)["raises"]
    assert ("hwtest-raises", "0.1.0", "failed") == (
        raises.distribution,
        raises.version,
        raises.status,
    )
    assert "hook register_connectors raised: RuntimeError: boom from hwtest-raises" == raises.error


def test_discovery_duplicate_id_names_both_distributions(install: Install) -> None:
    """hwtest-good and hwtest-dup both provide 'shared': the error names both; other ids work."""
    install("hwtest-good", "hwtest-dup")
    registry = Registry(environ={})
    with pytest.raises(headwater.DuplicateConnector) as info:
        registry.connector_class("shared")
    assert "hwtest-good 0.1.0" in info.value.message
    assert "hwtest-dup 0.2.0" in info.value.message
    assert "HEADWATER_DISABLE_PLUGINS" in (info.value.hint or "")
    assert "good" == registry.connector_class("good").id
    assert "dup-own" == registry.connector_class("dup-own").id


@pytest.mark.parametrize(
    ("value", "blocked"),
    [
        ("blockme", "blockme"),  # entry-point name
        ("hwtest-blocked-ep", "blockme"),  # distribution name
        ("HWTEST_Blocked.EP", "blockme"),  # distribution name, any spelling
        ("hwtest-blocked-dist", "other"),  # distribution name, entry point called otherwise
        (" x , other ", "other"),  # entry-point name in a list with spaces
    ],
)
def test_discovery_disable_plugins(install: Install, value: str, blocked: str) -> None:
    """HEADWATER_DISABLE_PLUGINS blocks by entry-point or distribution name, before import."""
    markers = install("hwtest-good", "hwtest-blocked-ep", "hwtest-blocked-dist")
    registry = Registry(environ={"HEADWATER_DISABLE_PLUGINS": value})
    infos = by_name(registry)
    assert ("blocked", "blocked by HEADWATER_DISABLE_PLUGINS") == (
        infos[blocked].status,
        infos[blocked].error,
    )
    assert [] == infos[blocked].connectors
    assert None is infos[blocked].import_time
    package = {"blockme": "hwtest_blocked_ep", "other": "hwtest_blocked_dist"}[blocked]
    assert not any(m.startswith(package) for m in imported(markers))
    assert "ok" == infos["good"].status
    unblocked = ({"blockme", "other"} - {blocked}).pop()
    assert "ok" == infos[unblocked].status


def test_discovery_allow_list(install: Install) -> None:
    """HEADWATER_PLUGINS allows only the named plugins (either name); built-ins stay."""
    markers = install("hwtest-good", "hwtest-allowed", "hwtest-broken")
    registry = Registry(environ={"HEADWATER_PLUGINS": "allowed,hwtest-good"})
    infos = by_name(registry)
    assert ("ok", "ok") == (infos["allowed"].status, infos["good"].status)
    assert ("blocked", "not listed in HEADWATER_PLUGINS") == (
        infos["broken"].status,
        infos["broken"].error,
    )
    assert "hwtest_broken" not in imported(markers)
    assert {"allowed", "files", "good", "shared"} <= set(registry.connectors())
    assert all(
        info.status == "blocked"
        for info in infos.values()
        if not info.builtin and info.name not in ("allowed", "good")
    )


def test_discovery_refuses_incompatible_plugin_before_its_code_runs(install: Install) -> None:
    """A plugin requiring headwater>=2,<3 is incompatible, never imported, told what fits."""
    markers = install("hwtest-good", "hwtest-future")
    registry = Registry(environ={})
    future = by_name(registry)["future"]
    assert "incompatible" == future.status
    assert set() == {m for m in imported(markers) if m.startswith("hwtest_future")}
    assert "hwtest_good.hooks" in imported(markers)
    error = future.error or ""
    assert "hwtest-future" in error
    assert f"headwater {headwater.__version__}" in error
    assert f">={API_VERSION}.0,<{API_VERSION + 1}" in error
    assert ">=2" in error
    assert "future" not in registry.connectors()


def test_discovery_autoload_disabled(install: Install) -> None:
    """HEADWATER_DISABLE_PLUGIN_AUTOLOAD=1: no entry point is even looked at; built-ins work."""
    markers = install("hwtest-good", "hwtest-broken")
    registry = Registry(environ={"HEADWATER_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert all(info.builtin for info in registry.plugins())
    assert ["files"] == list(registry.connectors())
    assert set() == imported(markers)


def test_discovery_is_lazy_and_scans_entry_points_once(
    install: Install, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing is scanned or imported until first use; then entry points are read once."""
    markers = install("hwtest-good")
    scans: list[Any] = []
    real = headwater._entry_points.entry_points

    def counting(group: str) -> Any:
        scans.append(group)
        return real(group)

    monkeypatch.setattr(headwater._entry_points, "entry_points", counting)
    registry = Registry(environ={})
    assert ([], set()) == (scans, imported(markers))
    registry.connectors()
    registry.plugins()
    assert "good" == registry.connector_for_url("good://x")
    registry.pm.hook.register_connectors()
    assert ["headwater"] == scans
    assert {"hwtest_good", "hwtest_good.hooks"} == imported(markers)
    registry.connector_class("good")
    assert "hwtest_good._connector" in imported(markers)


def test_discovery_records_api_and_import_time(install: Install) -> None:
    """A loaded plugin shows its requirement on headwater and its import time; hooks too."""
    install("hwtest-good")
    good = by_name(Registry(environ={}))["good"]
    assert ">=1.0" in (good.api or "")
    assert "<2" in (good.api or "")
    assert isinstance(good.import_time, float)
    assert good.import_time >= 0
    assert ["connector_for_url", "register_connectors"] == good.hooks
    assert ["good", "shared"] == good.connectors


def test_discovery_plugin_without_core_requirement_loads(install: Install) -> None:
    """A plugin that declares no requirement on headwater loads, with api None."""
    install(
        PluginDist(
            "hwtest-unpinned",
            {"hwtest_unpinned.hooks": hooks_source([("unpinned", "x:Y", "")])},
            {"unpinned": "hwtest_unpinned.hooks"},
            requires=(),
        )
    )
    info = by_name(Registry(environ={}))["unpinned"]
    assert ("ok", None, ["unpinned"]) == (info.status, info.api, info.connectors)


def test_discovery_invalid_hook_implementation_is_isolated(install: Install) -> None:
    """A hookimpl whose arguments do not match its spec fails only that plugin."""
    install(
        "hwtest-good",
        PluginDist(
            "hwtest-badsig",
            {
                "hwtest_badsig.hooks": """\
                    from headwater import hookimpl

                    @hookimpl
                    def connector_for_url(url, surprise):
                        return None
                    """
            },
            {"badsig": "hwtest_badsig.hooks"},
        ),
    )
    registry = Registry(environ={})
    info = by_name(registry)["badsig"]
    assert "failed" == info.status
    assert (info.error or "").startswith("invalid hook implementations")
    assert "good" == registry.connector_for_url("good://x")


@pytest.mark.parametrize(
    ("dists", "error"),
    [
        (("hwtest-good", "hwtest-broken"), headwater.PluginLoadError),
        (("hwtest-good", "hwtest-raises"), headwater.PluginLoadError),
        (("hwtest-good", "hwtest-future"), headwater.PluginIncompatible),
    ],
)
def test_discovery_strict_mode(
    install: Install, dists: tuple[str, ...], error: type[Exception]
) -> None:
    """HEADWATER_STRICT_PLUGINS=1 turns a failed or incompatible plugin into an error."""
    install(*dists)
    # Allow only this test's plugins: whatever else is installed must not decide the outcome.
    allowed = ",".join(DISTS[d].name for d in dists)
    registry = Registry(environ={"HEADWATER_STRICT_PLUGINS": "1", "HEADWATER_PLUGINS": allowed})
    with pytest.raises(error) as info:
        registry.connectors()
    assert DISTS[dists[1]].name in str(info.value)
    assert "\n" not in str(info.value)


def test_discovery_strict_mode_ignores_blocked_plugins(install: Install) -> None:
    """A blocked plugin is not a failure, even in strict mode."""
    install("hwtest-good", "hwtest-broken")
    registry = Registry(
        environ={
            "HEADWATER_STRICT_PLUGINS": "1",
            "HEADWATER_PLUGINS": "good,broken",
            "HEADWATER_DISABLE_PLUGINS": "broken",
        }
    )
    assert {"good", "shared"} <= set(registry.connectors())


def test_discovery_strict_mode_keeps_failing_on_every_use(install: Install) -> None:
    """Strict mode raises the same PluginLoadError on the second use too, not another error."""
    install("hwtest-good", "hwtest-broken")
    registry = Registry(
        environ={"HEADWATER_STRICT_PLUGINS": "1", "HEADWATER_PLUGINS": "good,broken"}
    )
    for _ in range(2):
        with pytest.raises(headwater.PluginLoadError, match="hwtest-broken"):
            registry.connectors()

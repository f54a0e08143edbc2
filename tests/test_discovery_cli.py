"""
`headwater plugins` / `headwater connectors` over real, installed throwaway plugins.

One fresh virtual environment per session gets headwater (from this repository) and the
wheels built by ``tests/_dists.py``: a good plugin, one that fails to import, one whose
hook raises, one duplicating a connector id, two to block (by entry-point name and by
distribution name), one for the allow-list, and one built for headwater 2. The CLI runs
there as a subprocess, exactly as a user would run it.

The last tests run the CLI in *this* environment, where the first-party plugins are
installed, and prove that listing connectors imports no heavy SDK.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests._dists import MARKER_ENV, make_venv, scenario_dists, venv_script
from tests.fix_services import service_unavailable

pytestmark = pytest.mark.slow

#: Entry-point name → distribution of every generated plugin.
PLUGINS = {ep: d.name for d in scenario_dists() for ep in d.entry_points}
BUILTINS = {"headwater.files", "headwater.resolvers"}
BLOCKED = "blockme,hwtest-blocked-dist"  # one by entry-point name, one by distribution name


@pytest.fixture(scope="session")
def plugin_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with headwater and every throwaway plugin installed."""
    base = tmp_path_factory.mktemp("plugin-venv")
    wheels = [dist.build_wheel(base / "wheels") for dist in scenario_dists()]
    try:
        return make_venv(base / "venv", wheels=wheels)
    except (RuntimeError, OSError) as exc:
        service_unavailable(f"cannot build a virtual environment: {exc}")


def run_cli(
    venv: Path, tmp_path: Path, *args: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``headwater ARGS`` in ``venv``; returns the process and the modules it imported."""
    markers = tmp_path / f"markers-{len(list(tmp_path.glob('markers-*')))}"
    markers.mkdir()
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("HEADWATER_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    proc = subprocess.run(
        [str(venv_script(venv, "headwater")), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**clean, MARKER_ENV: str(markers), "COLUMNS": "200", **env},
    )
    return proc, {p.name for p in markers.iterdir()}


def error_lines(stderr: str) -> list[str]:
    """Lines of stderr that are the CLI's one-line error."""
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_plugins_json_reports_every_status(plugin_venv: Path, tmp_path: Path) -> None:
    """`headwater plugins --json`: ok, failed, blocked and incompatible, each with its details."""
    proc, imported = run_cli(
        plugin_venv, tmp_path, "plugins", "--json", HEADWATER_DISABLE_PLUGINS=BLOCKED
    )
    assert 0 == proc.returncode, proc.stderr
    data = json.loads(proc.stdout)
    keys = {
        "name", "distribution", "version", "api", "status", "error",
        "connectors", "hooks", "import_time", "builtin", "warnings",
    }  # fmt: skip
    assert all(keys == set(item) for item in data)
    infos = {item["name"]: item for item in data}
    assert BUILTINS | set(PLUGINS) == set(infos)
    assert {
        "good": "ok",
        "dup": "ok",
        "allowed": "ok",
        "broken": "failed",
        "raises": "failed",
        "blockme": "blocked",
        "other": "blocked",
        "future": "incompatible",
    } == {name: infos[name]["status"] for name in PLUGINS}
    assert all(infos[name]["builtin"] and infos[name]["status"] == "ok" for name in BUILTINS)
    assert all(infos[name]["distribution"] == dist for name, dist in PLUGINS.items())

    broken = infos["broken"]
    assert "0.3.0" == broken["version"]
    assert broken["error"].startswith("failed to import hwtest_broken.hooks: ModuleNotFoundError")
    assert (
        "hook register_connectors raised: RuntimeError: boom from hwtest-raises"
        == (infos["raises"]["error"])
    )
    assert "hwtest-future" in infos["future"]["error"]
    assert ">=2" in infos["future"]["api"]
    good = infos["good"]
    assert (["good", "shared"], ["connector_for_url", "register_connectors"]) == (
        good["connectors"],
        good["hooks"],
    )
    assert isinstance(good["import_time"], float)
    assert ">=1.0" in good["api"]
    assert all(infos[n]["import_time"] is None for n in ("blockme", "other", "future"))
    # Blocked and incompatible plugins were refused before a line of them ran.
    assert not {m for m in imported if m.startswith(("hwtest_blocked", "hwtest_future"))}
    assert "hwtest_good.hooks" in imported


def test_connectors_json_lists_working_connectors(plugin_venv: Path, tmp_path: Path) -> None:
    """`headwater connectors --json`: good ids ok, the duplicate a conflict, nothing imported."""
    proc, imported = run_cli(
        plugin_venv, tmp_path, "connectors", "--json", HEADWATER_DISABLE_PLUGINS=BLOCKED
    )
    assert 0 == proc.returncode, proc.stderr
    data = json.loads(proc.stdout)
    assert all({"id", "summary", "origin", "status"} == set(item) for item in data)
    found = {item["id"]: item for item in data}
    assert {"files", "good", "shared", "dup-own", "allowed"} == set(found)
    assert {"ok"} == {found[i]["status"] for i in ("files", "good", "dup-own", "allowed")}
    assert ("a good connector", "hwtest-good 0.1.0") == (
        found["good"]["summary"],
        found["good"]["origin"],
    )
    shared = found["shared"]
    assert "conflict" == shared["status"]
    assert "hwtest-good 0.1.0" in shared["origin"]
    assert "hwtest-dup 0.2.0" in shared["origin"]
    # ConnectorRefs: listing imported the hooks modules but no connector module.
    assert not {m for m in imported if m.endswith("._connector")}


def test_using_a_duplicated_id_is_a_one_line_error(plugin_venv: Path, tmp_path: Path) -> None:
    """`headwater connectors show shared` fails with one line naming both distributions."""
    proc, _ = run_cli(plugin_venv, tmp_path, "connectors", "show", "shared")
    assert 1 == proc.returncode
    lines = error_lines(proc.stderr)
    assert 1 == len(lines)
    assert "hwtest-good 0.1.0" in lines[0]
    assert "hwtest-dup 0.2.0" in lines[0]
    assert "Traceback" not in proc.stderr


def test_connector_module_is_imported_on_use(plugin_venv: Path, tmp_path: Path) -> None:
    """`headwater connectors show good` imports the connector module named by its ref."""
    proc, imported = run_cli(plugin_venv, tmp_path, "connectors", "show", "good", "--json")
    assert 0 == proc.returncode, proc.stderr
    doc = json.loads(proc.stdout)
    assert ("good", "hwtest-good 0.1.0") == (doc["id"], doc["origin"])
    assert "name" in doc["config_schema"]["properties"]
    assert "hwtest_good._connector" in imported


def test_allow_list_loads_only_named_plugins(plugin_venv: Path, tmp_path: Path) -> None:
    """HEADWATER_PLUGINS=good,hwtest-allowed: those two load, every other plugin is blocked."""
    proc, imported = run_cli(
        plugin_venv, tmp_path, "plugins", "--json", HEADWATER_PLUGINS="good,hwtest-allowed"
    )
    assert 0 == proc.returncode, proc.stderr
    statuses = {item["name"]: item["status"] for item in json.loads(proc.stdout)}
    expected = dict.fromkeys(PLUGINS, "blocked") | {"good": "ok", "allowed": "ok"}
    assert expected | dict.fromkeys(BUILTINS, "ok") == statuses
    assert {"hwtest_good", "hwtest_good.hooks", "hwtest_allowed", "hwtest_allowed.hooks"} == (
        imported
    )


def test_strict_mode_fails_with_one_line(plugin_venv: Path, tmp_path: Path) -> None:
    """HEADWATER_STRICT_PLUGINS=1: `headwater plugins` exits non-zero with a one-line error."""
    proc, _ = run_cli(plugin_venv, tmp_path, "plugins", HEADWATER_STRICT_PLUGINS="1")
    assert 0 != proc.returncode
    lines = error_lines(proc.stderr)
    assert 1 == len(lines)
    assert "plugin broken (hwtest-broken 0.3.0)" in lines[0]
    assert "HEADWATER_STRICT_PLUGINS" in lines[0]
    assert "Traceback" not in proc.stderr
    assert "" == proc.stdout


def test_strict_mode_passes_when_loaded_plugins_are_healthy(
    plugin_venv: Path, tmp_path: Path
) -> None:
    """Strict mode with only healthy plugins allowed: exit 0, blocked ones are no failure."""
    proc, _ = run_cli(
        plugin_venv,
        tmp_path,
        "plugins",
        "--json",
        HEADWATER_STRICT_PLUGINS="1",
        HEADWATER_PLUGINS="good,allowed",
    )
    assert 0 == proc.returncode, proc.stderr
    assert {"ok", "blocked"} == {item["status"] for item in json.loads(proc.stdout)}


def test_autoload_disabled_shows_only_builtins(plugin_venv: Path, tmp_path: Path) -> None:
    """HEADWATER_DISABLE_PLUGIN_AUTOLOAD=1: only core's built-ins; no plugin module imported."""
    proc, imported = run_cli(
        plugin_venv, tmp_path, "plugins", "--json", HEADWATER_DISABLE_PLUGIN_AUTOLOAD="1"
    )
    assert 0 == proc.returncode, proc.stderr
    data = json.loads(proc.stdout)
    assert BUILTINS == {item["name"] for item in data}
    assert all(item["builtin"] for item in data)
    assert set() == imported


# --- the first-party plugins, in this environment ------------------------------------------

HEAVY = (
    "psycopg",
    "psycopg_pool",
    "azure",
    "azure.storage",
    "httpx",
    "aiohttp",
    "pyarrow",
    "duckdb",
    "jwt",
    "cryptography",
    "keyring",
    "tqdm",
)

_PROBE = """
import importlib.metadata, json, sys
from headwater._cli import main

out = {}
for argv in (["connectors", "--json"], ["plugins", "--json"]):
    try:
        main(argv)
    except SystemExit as exc:
        out[argv[0] + "_exit"] = exc.code
out["heavy"] = sorted(m for m in json.loads(sys.argv[1]) if m in sys.modules)
out["first_party"] = sorted(
    {ep.name: ep.dist.metadata["Name"] for ep in importlib.metadata.entry_points(group="headwater")
     if ep.dist is not None and ep.dist.metadata["Name"].startswith("headwater-")}.items()
)
print("\\n@@PROBE@@" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def probe() -> dict[str, Any]:
    """Run `connectors` then `plugins` in a fresh interpreter of this environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")}
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert 0 == proc.returncode, proc.stderr
    head, _, tail = proc.stdout.rpartition("\n@@PROBE@@")
    result: dict[str, Any] = json.loads(tail)
    # stdout holds the two JSON documents one after the other.
    decoder = json.JSONDecoder()
    result["connectors"], end = decoder.raw_decode(head)
    result["plugins"], _ = decoder.raw_decode(head[end:].lstrip())
    result["stderr"] = proc.stderr
    return result


def test_listing_connectors_imports_no_heavy_module(probe: dict[str, Any]) -> None:
    """`headwater connectors` and `plugins` import no SDK (psycopg, azure, httpx, pyarrow, ...)."""
    assert (0, 0) == (probe["connectors_exit"], probe["plugins_exit"])
    assert [] == probe["heavy"]


def test_first_party_plugins_load_and_list_their_connectors(probe: dict[str, Any]) -> None:
    """Every installed first-party plugin loads (so the check above is not vacuous)."""
    statuses = {p["name"]: (p["status"], p["error"]) for p in probe["plugins"]}
    listed = {c["id"] for c in probe["connectors"]}
    for ep_name, _dist in probe["first_party"]:
        assert ("ok", None) == statuses[ep_name], ep_name
        plugin = next(p for p in probe["plugins"] if p["name"] == ep_name)
        assert plugin["connectors"]
        assert set(plugin["connectors"]) <= listed

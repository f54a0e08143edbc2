"""
Each plugin's sdist is self-contained: it carries the shared test harness its tests import
(``tests.fix_*`` and their helpers, the root ``conftest.py`` registering them) at the same
paths, and the pytest settings as ``pytest.ini``. ``nox -s plugin_dists`` builds each sdist
and runs its tests against the installed wheel; these checks catch a harness module or a
setting left out without building anything.
"""

from __future__ import annotations

import ast
import configparser
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = sorted(p.parent for p in ROOT.glob("plugins/*/pyproject.toml"))
DIST_INI = ROOT / "tests" / "dist_pytest.ini"


def _meta(plugin: Path) -> dict[str, Any]:
    return tomllib.loads((plugin / "pyproject.toml").read_text(encoding="utf-8"))


def _carried(plugin: Path) -> dict[str, str]:
    """The sdist's force-include table: repository path -> path in the sdist."""
    sdist = _meta(plugin)["tool"]["hatch"]["build"]["targets"]["sdist"]
    return {
        str((plugin / source).resolve().relative_to(ROOT)): target
        for source, target in sdist.get("force-include", {}).items()
    }


def _harness_imports(path: Path) -> set[str]:
    """The ``tests.X`` modules ``path`` imports (at any depth) or registers as plugins."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Constant) and re.fullmatch(r"tests\.\w+", str(node.value)):
            found.add(str(node.value))  # a pytest_plugins entry
    return {name for name in found if name.startswith("tests.")}


def _needed_harness() -> set[str]:
    """Every repository file a plugin's tests reach through ``tests.*``, transitively."""
    todo = [ROOT / "conftest.py", *(f for p in PLUGINS for f in (p / "tests").rglob("*.py"))]
    seen: set[Path] = set()
    needed = {"conftest.py", "tests/__init__.py"}
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in _harness_imports(path):
            file = ROOT / (module.replace(".", "/") + ".py")
            assert file.is_file(), f"{path} imports {module}, which is not a file"
            needed.add(str(file.relative_to(ROOT)))
            todo.append(file)
            if "oidc/server.mjs" in file.read_text(encoding="utf-8").replace('" / "', "/"):
                needed.add("tests/oidc/server.mjs")
    return needed


@pytest.mark.parametrize("plugin", PLUGINS, ids=[p.name for p in PLUGINS])
def test_sdist_carries_the_harness_its_tests_import(plugin: Path) -> None:
    """The sdist force-includes every tests.* module reached, at the same path, and pytest.ini."""
    carried = _carried(plugin)
    expected = {path: path for path in _needed_harness()} | {"tests/dist_pytest.ini": "pytest.ini"}
    assert {} == {k: v for k, v in expected.items() if carried.get(k) != v}
    assert [] == [source for source in carried if not (ROOT / source).is_file()]


def test_every_plugin_carries_the_same_harness() -> None:
    """One table for all: a harness module added for one plugin is added for every plugin."""
    tables = {plugin.name: _carried(plugin) for plugin in PLUGINS}
    first = next(iter(tables.values()))
    assert dict.fromkeys(tables, first) == tables


@pytest.mark.parametrize("plugin", PLUGINS, ids=[p.name for p in PLUGINS])
def test_plugin_tests_do_not_import_through_the_repository_layout(plugin: Path) -> None:
    """`plugins.<name>.tests.x` only exists in the repository: helpers import relatively."""
    offenders = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in sorted((plugin / "tests").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom | ast.Import)
        for module in (
            [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else [a.name for a in node.names]
        )
        if module.startswith("plugins.")
    ]
    assert [] == offenders


@pytest.mark.parametrize("plugin", PLUGINS, ids=[p.name for p in PLUGINS])
def test_plugin_has_a_test_extra(plugin: Path) -> None:
    """`pip install 'headwater-x[test]'` brings pytest and the plugins the settings need."""
    test = _meta(plugin)["project"]["optional-dependencies"]["test"]
    names = {re.match(r"[\w.-]+", requirement)[0] for requirement in test}  # type: ignore[index]
    assert {"pytest", "pytest-asyncio", "pytest-timeout"} <= names


def test_dist_pytest_ini_matches_the_workspace_settings() -> None:
    """tests/dist_pytest.ini is the root pyproject's pytest settings, testpaths aside."""
    workspace = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    settings = dict(workspace["tool"]["pytest"]["ini_options"])
    assert ["core/tests", "plugins", "tests"] == settings.pop("testpaths")
    parser = configparser.ConfigParser()
    parser.read(DIST_INI, encoding="utf-8")
    ini = dict(parser["pytest"])
    assert "tests" == ini.pop("testpaths")

    def as_ini(value: object) -> str:
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, list):
            return " ".join(str(v) for v in value)
        return str(value)

    def lines(text: str) -> str:
        return " ".join(text.split())

    assert {k: lines(as_ini(v)) for k, v in settings.items()} == {
        k: lines(v) for k, v in ini.items()
    }

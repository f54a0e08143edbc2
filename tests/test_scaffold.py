"""
`headwater new-plugin` end to end: the generated project installs into a fresh venv next
to core, its own tests (the contract suite included) pass there, `headwater plugins`
lists it and `headwater read` reads from it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from headwater._scaffold import create_plugin, plugin_values
from headwater.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def run(
    *args: str | Path, cwd: Path | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    # The fresh venv must see neither this environment nor the repository's settings.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"} and not k.startswith("HEADWATER_")
    }
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def bin_dir(venv: Path) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin")


def make_venv(venv: Path, *requirements: str) -> Path:
    """A fresh venv with ``requirements`` installed (uv when available: much faster)."""
    uv = shutil.which("uv")
    python = bin_dir(venv) / "python"
    if uv:
        steps = [
            [uv, "venv", "-q", "--python", sys.executable, venv],
            [uv, "pip", "install", "-q", "--python", python, *requirements],
        ]
    else:
        steps = [
            [sys.executable, "-m", "venv", venv],
            [python, "-m", "pip", "install", "-q", *requirements],
        ]
    for step in steps:
        proc = run(*step, timeout=600)
        assert 0 == proc.returncode, proc.stderr
    return python


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_new_plugin_installs_passes_its_tests_and_is_usable(tmp_path: Path) -> None:
    """Scaffold, install into a fresh venv, run its tests, list it, read from it."""
    project = tmp_path / "headwater-acme-demo"
    created = run(sys.executable, "-m", "headwater", "new-plugin", "acme-demo", "--dir", project)
    assert 0 == created.returncode, created.stderr
    assert (project / "src" / "headwater_acme_demo" / "hooks.py").is_file()

    python = make_venv(tmp_path / "venv", "-e", str(ROOT / "core"), "-e", f"{project}[test]")

    tests = run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-ra", cwd=project)
    assert 0 == tests.returncode, tests.stdout + tests.stderr
    assert " passed" in tests.stdout
    assert "ConnectorContract" in (project / "tests" / "test_connector.py").read_text()

    headwater = bin_dir(tmp_path / "venv") / "headwater"
    listed = run(headwater, "plugins", "--json")
    assert 0 == listed.returncode, listed.stderr
    [plugin] = [p for p in json.loads(listed.stdout) if p["name"] == "acme-demo"]
    assert ("headwater-acme-demo", "ok", ["acme-demo"]) == (
        plugin["distribution"],
        plugin["status"],
        plugin["connectors"],
    )

    read = run(
        headwater, "read", "acme-demo://demo", "customers", "-c", "token=demo-token", "--limit", "5"
    )
    assert 0 == read.returncode, read.stderr
    assert [1, 2, 3, 4, 5] == [json.loads(line)["id"] for line in read.stdout.splitlines()]

    refused = run(headwater, "check", "acme-demo://demo", "-c", "token=wrong-token-value")
    assert 3 == refused.returncode
    assert "auth:" in refused.stderr
    assert "wrong-token-value" not in refused.stdout + refused.stderr

    docs = run(python, "-m", "headwater._docs", "--check", project)
    assert 0 == docs.returncode, docs.stdout + docs.stderr


def test_new_plugin_writes_a_complete_project(tmp_path: Path) -> None:
    """The project has pyproject (hatchling, entry point, core floor), package, README, tests."""
    import tomllib

    project = create_plugin("acme-crm", tmp_path / "p")
    meta = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert "hatchling.build" == meta["build-system"]["build-backend"]
    assert "headwater-acme-crm" == meta["project"]["name"]
    assert {"acme-crm": "headwater_acme_crm.hooks"} == meta["project"]["entry-points"]["headwater"]
    assert "headwater>=1.0,<2" in meta["project"]["dependencies"]
    assert "Typing :: Typed" in meta["project"]["classifiers"]
    package = project / "src" / "headwater_acme_crm"
    expected = {"__about__.py", "__init__.py", "_connector.py", "_demo.py", "hooks.py", "py.typed"}
    assert expected == {p.name for p in package.iterdir()}
    assert (project / "tests" / "test_connector.py").is_file()
    assert (project / "noxfile.py").is_file()
    assert (project / ".gitignore").is_file()
    readme = (project / "README.md").read_text(encoding="utf-8")
    assert "| `token` | secret | **required** |" in readme
    assert "{{" not in readme
    for path in project.rglob("*"):
        if path.is_file():
            assert "{{" not in path.read_text(encoding="utf-8"), path


def test_new_plugin_leaves_the_process_clean(tmp_path: Path) -> None:
    """Rendering the README imports the new package; nothing of it stays in sys.modules/path."""
    before = list(sys.path)
    create_plugin("clean-check", tmp_path / "p")
    assert before == sys.path
    assert [] == [m for m in sys.modules if m.startswith("headwater_clean_check")]


def test_new_plugin_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    """An existing, non-empty --dir is refused and left untouched."""
    target = tmp_path / "taken"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not an empty directory"):
        create_plugin("acme", target)
    assert ["keep.txt"] == [p.name for p in target.iterdir()]


@pytest.mark.parametrize(
    "name", ["Acme", "acme_crm", "acme--crm", "-acme", "files", "headwater-acme", ""]
)
def test_invalid_names_are_refused(name: str) -> None:
    """Names that are not valid ids, core's own ids or distribution names are refused."""
    with pytest.raises(ConfigError):
        plugin_values(name)


def test_names_derived_from_the_id() -> None:
    """acme-crm gives distribution, package, class and env prefix."""
    values = plugin_values("acme-crm")
    assert ("headwater-acme-crm", "headwater_acme_crm", "AcmeCrm", "ACME_CRM") == (
        values["dist"],
        values["package"],
        values["class"],
        values["env_prefix"],
    )


def test_cli_new_plugin_reports_errors_in_one_line(tmp_path: Path) -> None:
    """`headwater new-plugin` with a bad name exits 1 with a one-line error."""
    proc = run(sys.executable, "-m", "headwater", "new-plugin", "Bad_Name", "--dir", tmp_path / "x")
    assert 1 == proc.returncode
    assert 1 == len(proc.stderr.strip().splitlines())
    assert "not a valid connector id" in proc.stderr
    assert not (tmp_path / "x").exists()

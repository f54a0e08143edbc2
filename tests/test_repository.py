"""The repository's promises about itself: README commands, CI script, layout."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    setup = text.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", setup, re.DOTALL)


def test_readme_has_exactly_two_setup_commands():
    """README's set-up section holds two one-line commands: the main job and the tests."""
    commands = _readme_commands()
    assert len(commands) == 2
    assert all("\n" not in c for c in commands)
    assert commands[0].endswith("nox -s demo")


def test_ci_runs_the_readme_test_command():
    """.ci/run calls the README's test command verbatim."""
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert _readme_commands()[1] in script.splitlines()


def test_every_distribution_has_the_same_shape():
    """core and each plugin: pyproject with hatchling, src package with py.typed, README, tests."""
    dists = [ROOT / "core", *sorted(p.parent for p in ROOT.glob("plugins/*/pyproject.toml"))]
    for dist in dists:
        meta = tomllib.loads((dist / "pyproject.toml").read_text(encoding="utf-8"))
        assert meta["build-system"]["build-backend"] == "hatchling.build", dist.name
        packages = meta["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
        assert len(packages) == 1
        assert (dist / packages[0] / "py.typed").exists(), dist.name
        assert (dist / "README.md").exists(), dist.name
        assert (dist / "tests").is_dir(), dist.name
        if dist.name != "core":
            deps = meta["project"]["dependencies"]
            assert any(re.match(r"headwater\s*>=", d) for d in deps), dist.name
            assert "headwater" in meta["project"]["entry-points"], dist.name


def test_no_plugin_imports_a_private_core_module():
    """Plugins (code and tests) use headwater's public modules: headwater, .toolkit, .formats, .testing."""
    private = re.compile(r"^\s*(from|import)\s+headwater\._", re.MULTILINE)
    offenders = [
        f"{path.relative_to(ROOT)}:{text[: match.start()].count(chr(10)) + 1}"
        for path in sorted((ROOT / "plugins").rglob("*.py"))
        if "__pycache__" not in path.parts
        for text in [path.read_text("utf-8")]
        for match in private.finditer(text)
    ]
    assert [] == offenders

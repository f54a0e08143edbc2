"""
CONTRIBUTING.md cannot drift from the code: its marked code blocks are executed.

Fences and what happens to them:

* ```` ```python runnable ```` — executed in a fresh namespace, in an empty directory;
* ```` ```python runnable-pytest ```` — written as a test file into the walkthrough project
  and run with pytest in a fresh venv where the project is installed: it must pass;
* ```` ```LANG file=PATH ```` — a file of the walkthrough project: byte for byte what
  ``headwater new-plugin acme-crm`` writes at PATH (the scaffold is the one source);
* ```` ```sh runnable ```` — run with bash in an empty directory;
* ```` ```illustrative ```` and plain ```` ```sh ```` — shown, not run.

Every ```` ```python ```` fence must carry one of these modes, so nothing slips through.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from headwater import set_registry

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "CONTRIBUTING.md"
FENCE = re.compile(r"^```(?P<lang>[\w-]*)(?P<info>[^\n]*)\n(?P<code>.*?)^```\s*$", re.M | re.S)


@dataclasses.dataclass(frozen=True)
class Block:
    line: int
    lang: str
    info: str
    code: str

    @property
    def id(self) -> str:
        return f"{self.lang}-line-{self.line}"


def blocks() -> list[Block]:
    text = DOC.read_text(encoding="utf-8")
    return [
        Block(text.count("\n", 0, m.start()) + 1, m["lang"], m["info"].strip(), m["code"])
        for m in FENCE.finditer(text)
    ]


def select(lang: str, info: str) -> list[Block]:
    return [b for b in blocks() if b.lang == lang and b.info == info]


RUNNABLE = select("python", "runnable")
SHELL = select("sh", "runnable")


def test_every_python_block_has_a_mode():
    """Each ```python fence is runnable, runnable-pytest or a file= block."""
    modes = [b.info for b in blocks() if b.lang == "python"]
    assert modes
    assert [] == [
        m for m in modes if m not in ("runnable", "runnable-pytest") and not m.startswith("file=")
    ]


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """An empty working directory, restored environment and a fresh process-wide registry."""
    monkeypatch.chdir(tmp_path)
    saved = dict(os.environ)
    previous = set_registry(None)
    yield tmp_path
    set_registry(previous)
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
def test_runnable_python_block(block: Block, isolated: Path):
    """The block runs to completion (its asserts hold)."""
    code = compile(block.code, f"CONTRIBUTING.md:{block.line}", "exec")
    exec(code, {"__name__": f"contributing_{block.line}"})  # noqa: S102 - our own documentation


@pytest.mark.parametrize("block", SHELL, ids=[b.id for b in SHELL])
def test_runnable_shell_block(block: Block, tmp_path: Path):
    """The block exits 0 under bash -e, with this environment's scripts on PATH."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == proc.returncode, proc.stdout + proc.stderr


#: The connector id the walkthrough scaffolds (its ``sh runnable`` block runs new-plugin).
WALKTHROUGH = "acme-crm"


def walkthrough_project(directory: Path) -> Path:
    """The scaffold's project for the walkthrough's id, with the doc's file= blocks over it."""
    from headwater._scaffold import create_plugin

    project = create_plugin(WALKTHROUGH, directory)
    for block in blocks():
        if block.info.startswith("file="):
            (project / block.info.removeprefix("file=")).write_text(block.code, encoding="utf-8")
    return project


def test_walkthrough_is_the_scaffold(tmp_path: Path):
    """Each file= block is the file `headwater new-plugin` writes, byte for byte; all are named."""
    from headwater._scaffold import create_plugin

    assert any(f"headwater new-plugin {WALKTHROUGH} " in b.code for b in SHELL)
    project = create_plugin(WALKTHROUGH, tmp_path / "scaffold")
    files = {b.info.removeprefix("file="): b.code for b in blocks() if b.info.startswith("file=")}
    assert {"pyproject.toml", "tests/test_connector.py"} <= set(files)
    differ = [
        path
        for path, code in files.items()
        if not (project / path).is_file() or code != (project / path).read_text(encoding="utf-8")
    ]
    assert [] == differ, "regenerate these blocks from the scaffold (see Part 2)"
    written = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file())
    assert [] == [p for p in written if not (_documented(p) or _documented(Path(p).name))]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_walkthrough_plugin_passes_its_tests(tmp_path: Path):
    """The walkthrough's project installs as written (-e '.[test]' in a fresh venv) and its
    tests pass there, with the runnable-pytest blocks added."""
    from tests.test_scaffold import make_venv, run

    project = walkthrough_project(tmp_path / f"headwater-{WALKTHROUGH}")
    tests = select("python", "runnable-pytest")
    assert tests
    for index, block in enumerate(tests):
        (project / "tests" / f"test_contributing_{index}.py").write_text(
            block.code, encoding="utf-8"
        )
    python = make_venv(tmp_path / "venv", "-e", str(ROOT / "core"), "-e", f"{project}[test]")
    proc = run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-ra", cwd=project)
    assert 0 == proc.returncode, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert re.search(r"\d+ passed", proc.stdout)
    assert "failed" not in proc.stdout


def _documented(name: str) -> bool:
    return f"`{name}`" in DOC.read_text(encoding="utf-8")


def test_every_nox_session_is_documented():
    """Every session in noxfile.py is named in CONTRIBUTING.md."""
    tree = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    sessions = [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any("session" in ast.unparse(d) for d in node.decorator_list)
    ]
    assert "tests" in sessions
    assert [] == [s for s in sessions if not _documented(s)]


def test_every_hook_is_documented():
    """Every hook specification in headwater.hookspecs is named in CONTRIBUTING.md."""
    from headwater import hookspecs

    hooks = [n for n, f in vars(hookspecs).items() if hasattr(f, "headwater_spec")]
    assert "register_connectors" in hooks
    assert [] == [h for h in hooks if not _documented(h)]


def test_every_contract_check_is_documented():
    """Every check of the contract suite is listed in CONTRIBUTING.md's table."""
    from headwater.testing import ConnectorContract

    checks = [n for n in dir(ConnectorContract) if n.startswith("test_contract_")]
    assert 15 <= len(checks)
    assert [] == [c for c in checks if not _documented(c)]


def _layout_paths() -> list[str]:
    [layout] = [b for b in blocks() if b.lang == "text" and b.info == "layout"]
    return [line.split()[0] for line in layout.code.splitlines() if line.strip()]


def test_layout_paths_exist():
    """Every path in the layout block exists in the repository."""
    paths = _layout_paths()
    assert "noxfile.py" in paths
    assert [] == [p for p in paths if not (ROOT / p).exists()]


def test_layout_names_every_module():
    """The module map lists every module of core and of the first-party plugins."""
    listed = set(_layout_paths())
    # A plugin's fixed shape (README says it once) and the scaffold's template go unlisted.
    shape = {"__init__.py", "__about__.py", "hooks.py"}
    modules = [
        path.relative_to(ROOT)
        for pattern in ("core/src/headwater/**/*.py", "plugins/*/src/*/**/*.py")
        for path in sorted(ROOT.glob(pattern))
        if "template" not in path.parts
        and not (path.relative_to(ROOT).parts[0] == "plugins" and path.name in shape)
    ]
    assert 40 <= len(modules)
    assert [] == [m.as_posix() for m in modules if m.as_posix() not in listed]

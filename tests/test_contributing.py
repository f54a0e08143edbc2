"""
CONTRIBUTING.md cannot drift from the code: its marked code blocks are executed.

Fences and what happens to them:

* ```` ```python runnable ```` — executed in a fresh namespace, in an empty directory;
* ```` ```python runnable-pytest ```` — written as a test file into the walkthrough project
  (the ``file=`` blocks) and run with pytest in a subprocess: it must pass;
* ```` ```LANG file=PATH ```` — written to PATH in the walkthrough project (TOML parsed);
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
import tomllib
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


def test_walkthrough_plugin_passes_its_tests(tmp_path: Path):
    """The file= blocks form a plugin; the runnable-pytest blocks pass against it."""
    project = tmp_path / "headwater-items"
    files = [b for b in blocks() if b.info.startswith("file=")]
    assert files
    for block in files:
        path = project / block.info.removeprefix("file=")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block.code, encoding="utf-8")
        if path.suffix == ".toml":
            tomllib.loads(block.code)
        elif path.suffix == ".py":
            ast.parse(block.code, str(path))
    tests = select("python", "runnable-pytest")
    assert tests
    for index, block in enumerate(tests):
        (project / "tests").mkdir(exist_ok=True)
        (project / "tests" / f"test_contributing_{index}.py").write_text(
            block.code, encoding="utf-8"
        )
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
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


def test_layout_paths_exist():
    """Every path in the layout block exists in the repository."""
    [layout] = [b for b in blocks() if b.lang == "text" and b.info == "layout"]
    paths = [line.split()[0] for line in layout.code.splitlines() if line.strip()]
    assert "noxfile.py" in paths
    assert [] == [p for p in paths if not (ROOT / p).exists()]

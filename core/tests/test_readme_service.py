"""
core/README.md cannot drift from the code: its ```` ```python runnable ```` blocks run.

Each block runs in a fresh namespace, in an empty directory, with the environment and
the process-wide plugin registry restored afterwards (the "Embedding headwater in a
service" example sets variables as a deployment would).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from headwater import set_registry

README = Path(__file__).resolve().parent.parent / "README.md"
FENCE = re.compile(r"^```(?P<lang>[\w-]*)(?P<info>[^\n]*)\n(?P<code>.*?)^```\s*$", re.M | re.S)


def runnable() -> list[tuple[int, str]]:
    text = README.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, m.start()) + 1, m["code"])
        for m in FENCE.finditer(text)
        if m["lang"] == "python" and m["info"].strip() == "runnable"
    ]


BLOCKS = runnable()


def test_the_service_section_has_runnable_examples():
    """The section exists and its examples are marked to run (so this test runs them)."""
    text = README.read_text(encoding="utf-8")
    assert "## Embedding headwater in a service" in text
    assert len(BLOCKS) >= 2


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    saved = dict(os.environ)
    previous = set_registry(None)
    yield tmp_path
    set_registry(previous)
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.parametrize(("line", "code"), BLOCKS, ids=[f"line-{line}" for line, _ in BLOCKS])
def test_runnable_block(line: int, code: str, isolated: Path):
    """The block runs to completion (its asserts hold)."""
    compiled = compile(code, f"core/README.md:{line}", "exec")
    exec(compiled, {"__name__": f"readme_{line}"})  # noqa: S102 - our own documentation

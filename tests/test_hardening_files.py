"""
Bad input files, hand-edited state files, odd item names and file permissions, through
the real CLI: one clear line and a non-zero exit, never a raw Python exception, and
files written with the permissions they should have.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)


def run(
    *args: str, cwd: Path, umask: int | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")}
    environ.update({"HEADWATER_DISABLE_PLUGIN_AUTOLOAD": "1", **env})
    return subprocess.run(
        [sys.executable, "-m", "headwater", *args],
        env=environ,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        umask=-1 if umask is None else umask,
    )  # fmt: skip


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The CLI's error: exit 1, one line, no Python exception type in it."""
    assert 1 == proc.returncode, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert 1 == len(lines), proc.stderr
    for raw in ("Traceback", "OSError", "UnicodeDecodeError", "FileNotFoundError", "ValueError"):
        assert raw not in lines[0]
    return lines[0]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    (root / "ok.jsonl").write_text('{"id": 1}\n{"id": 2}\n')
    return root


def test_csv_unclosed_quote_names_file_and_line(data: Path) -> None:
    """A quote never closed swallows no row silently: an error naming the file and line."""
    rows = "".join(f"{i},y\n" for i in range(3, 2000))
    (data / "q.csv").write_text('a,b\n1,x\n2,"open\n' + rows)
    line = one_error_line(run("read", f"file://{data}", "q.csv", cwd=data))
    assert "q.csv: line 3:" in line
    assert "unterminated quoted field" in line


@pytest.mark.parametrize(
    ("name", "content", "where"),
    [
        ("latin.csv", b"id,name\n1,ok\n2,caf\xe9\n", "line 3"),
        ("latin.jsonl", b'{"id": 1}\n{"id": "caf\xe9"}\n', "line 2"),
    ],
)
def test_non_utf8_input_names_file_and_line(
    data: Path, name: str, content: bytes, where: str
) -> None:
    """A file that is not UTF-8: its name, the line, and how to say its encoding."""
    (data / name).write_bytes(content)
    line = one_error_line(run("read", f"file://{data}", name, cwd=data))
    assert f"{name}: " in line
    assert where in line
    assert "encoding" in line


def _state(data: Path, tmp_path: Path) -> Path:
    state = tmp_path / "state.json"
    out = tmp_path / "out.jsonl"
    proc = run(
        "read", f"file://{data}", "ok.jsonl", "-o", str(out), "--state", str(state), cwd=data
    )
    assert 0 == proc.returncode, proc.stderr
    return state


@pytest.mark.parametrize(
    ("part", "key", "value"),
    [
        ("source", "offset", -5),
        ("source", "offset", "x"),
        ("source", "rows", -1),
        ("sink", "bytes", -3),
    ],
)
def test_hand_edited_state_positions_are_refused(
    data: Path, tmp_path: Path, part: str, key: str, value: object
) -> None:
    """A negative or non-numeric position in a state file: a clear error, output untouched."""
    state = _state(data, tmp_path)
    saved = json.loads(state.read_text())
    saved[part][key] = value
    state.write_text(json.dumps(saved))
    out = tmp_path / "out.jsonl"
    before = out.read_bytes()
    line = one_error_line(
        run("read", f"file://{data}", "ok.jsonl", "-o", str(out), "--state", str(state), cwd=data)
    )
    assert "state" in line
    assert before == out.read_bytes()


def test_write_with_missing_input_is_a_clear_error(data: Path) -> None:
    line = one_error_line(run("write", f"file://{data}", "x.jsonl", "missing.jsonl", cwd=data))
    assert "missing.jsonl" in line


def test_symlinked_sources_file_stays_a_link(data: Path, tmp_path: Path) -> None:
    """Saving a source writes through a symlinked sources file (dotfiles) and keeps the link."""
    real = tmp_path / "dotfiles" / "sources.toml"
    real.parent.mkdir()
    real.write_text("")
    link = tmp_path / "config" / "sources.toml"
    link.parent.mkdir()
    link.symlink_to(real)
    proc = run(
        "sources", "add", "d", "files", "-c", f"root={data}", cwd=data,
        HEADWATER_SOURCES_FILE=str(link),
    )  # fmt: skip
    assert 0 == proc.returncode, proc.stderr
    assert link.is_symlink()
    assert "[sources.d]" in real.read_text()
    assert 0o600 == stat.S_IMODE(real.stat().st_mode)


def test_data_files_honour_the_umask_state_and_sources_stay_private(
    data: Path, tmp_path: Path
) -> None:
    """Outputs of read -o and fetch get 0666 less the umask; state and sources get 0600."""
    out, state, sources = tmp_path / "out.jsonl", tmp_path / "s.json", tmp_path / "src.toml"
    proc = run(
        "read", f"file://{data}", "ok.jsonl", "-o", str(out), "--state", str(state),
        cwd=data, umask=0o022,
    )  # fmt: skip
    assert 0 == proc.returncode, proc.stderr
    fetched = tmp_path / "fetched"
    proc = run("fetch", f"file://{data}", "ok.jsonl", str(fetched), cwd=data, umask=0o022)
    assert 0 == proc.returncode, proc.stderr
    proc = run(
        "sources", "add", "d", "files", "-c", f"root={data}", cwd=data, umask=0o022,
        HEADWATER_SOURCES_FILE=str(sources),
    )  # fmt: skip
    assert 0 == proc.returncode, proc.stderr
    modes = {
        p.name: stat.S_IMODE(p.stat().st_mode) for p in (out, fetched / "ok.jsonl", state, sources)
    }
    assert {"out.jsonl": 0o644, "ok.jsonl": 0o644, "s.json": 0o600, "src.toml": 0o600} == modes


def test_ls_escapes_control_characters_in_names(data: Path) -> None:
    """A name holding an escape sequence or a newline cannot drive the terminal or fake lines."""
    (data / "evil\x1b[31mred\nfake.jsonl").write_text("")
    proc = run("ls", f"file://{data}", cwd=data)
    assert 0 == proc.returncode, proc.stderr
    assert "\x1b" not in proc.stdout
    assert "evil\\x1b[31mred\\nfake.jsonl" in proc.stdout
    assert 2 == len(proc.stdout.strip().splitlines())


@pytest.mark.parametrize("value", ["x", "-5"])
def test_batch_bytes_read_option_is_checked(pg_dsn: str, tmp_path: Path, value: str) -> None:
    """-R batch_bytes=x / -5: a config error naming the option, not ValueError or acceptance."""
    proc = run(
        "read", pg_dsn, "select 1 as a", "-R", f"batch_bytes={value}", cwd=tmp_path,
        HEADWATER_DISABLE_PLUGIN_AUTOLOAD="", HEADWATER_PLUGINS="postgres",
    )  # fmt: skip
    line = one_error_line(proc)
    assert "batch_bytes" in line

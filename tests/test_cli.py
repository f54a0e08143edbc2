"""The `headwater` command line end to end, in real subprocesses, on the files connector."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)


def run(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headwater", *args],
        # Only core's built-ins: these tests must not depend on what else is installed.
        env={**os.environ, "HEADWATER_DISABLE_PLUGIN_AUTOLOAD": "1", **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    (root / "events.jsonl").write_text(
        "".join(json.dumps({"id": i, "name": f"n{i}", "note": 'ü, "q"'}) + "\n" for i in range(25))
    )
    (root / "table.csv").write_text('id,text\n1,"multi\nline"\n2,plain\n3,"a,b"\n')
    return root


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"HEADWATER_SOURCES_FILE": str(tmp_path / "sources.toml")}


def test_help_lists_every_command():
    """`headwater --help` documents every command of the design."""
    proc = run("--help")
    assert proc.returncode == 0
    for command in [
        "plugins",
        "doctor",
        "connectors",
        "check",
        "ls",
        "read",
        "fetch",
        "write",
        "copy",
        "upload",
        "sources",
        "secrets",
        "new-plugin",
    ]:
        assert command in proc.stdout
    for sub in (
        ["sources", "--help"],
        ["secrets", "--help"],
        ["read", "--help"],
        ["copy", "--help"],
        ["upload", "--help"],
        ["connectors", "show", "--help"],
    ):
        assert run(*sub).returncode == 0


def test_read_jsonl_to_stdout(data):
    """read writes JSON Lines to stdout and nothing else."""
    proc = run("read", data.as_uri(), "events.jsonl")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert list(range(25)) == [r["id"] for r in rows]
    assert proc.stderr == ""


def test_read_csv_format_and_limit(data):
    """--format csv writes a header and rows; --limit stops exactly."""
    proc = run("read", data.as_uri(), "table.csv", "--format", "csv", "--limit", "2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == 'id,text\n1,"multi\nline"\n2,plain\n'


def test_read_state_resume_appends(tmp_path, data):
    """--state with -o: an interrupted read resumes and the output ends up complete, once each."""
    out, state = tmp_path / "out.jsonl", tmp_path / "state.json"
    first = run(
        "read",
        data.as_uri(),
        "events.jsonl",
        "--limit",
        "10",
        "--batch-size",
        "3",
        "--state",
        str(state),
        "-o",
        str(out),
    )
    assert first.returncode == 0, first.stderr
    saved = json.loads(state.read_text())
    assert 10 == saved["records"]
    assert 10 == saved["source"]["rows"]
    second = run("read", data.as_uri(), "events.jsonl", "--state", str(state), "-o", str(out))
    assert second.returncode == 0, second.stderr
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert list(range(25)) == ids


def test_read_parquet(tmp_path, data):
    """--format parquet writes a Parquet file readable by pyarrow."""
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "e.parquet"
    proc = run("read", data.as_uri(), "events.jsonl", "--format", "parquet", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert pq.read_table(out).num_rows == 25


def test_progress_goes_to_stderr(data):
    """--progress draws on stderr; stdout stays pure data."""
    proc = run("read", data.as_uri(), "events.jsonl", "--progress")
    assert proc.returncode == 0
    assert "rec" in proc.stderr
    assert len(proc.stdout.splitlines()) == 25


def test_errors_are_one_line_with_exit_codes(data):
    """A missing stream exits 1 with one line; --debug adds the traceback; usage errors exit 2."""
    proc = run("read", data.as_uri(), "missing.jsonl")
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: no file 'missing.jsonl'")
    assert len(proc.stderr.strip().splitlines()) == 1
    debug = run("--debug", "read", data.as_uri(), "missing.jsonl")
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr
    usage = run("read")
    assert usage.returncode == 2


def test_check_exit_codes(tmp_path, data):
    """check exits 0 when healthy and 3 with category and field when not."""
    ok = run("check", data.as_uri())
    assert ok.returncode == 0
    assert ok.stdout.startswith("ok:")
    bad = run("check", (tmp_path / "absent").as_uri(), "--json")
    assert bad.returncode == 3
    result = json.loads(bad.stdout)
    assert {k: result[k] for k in ("ok", "category", "field")} == {
        "ok": False,
        "category": "not_found",
        "field": "root",
    }


def test_ls_and_connectors_show(data):
    """ls lists streams; connectors show gives capabilities and the config JSON Schema."""
    proc = run("ls", data.as_uri(), "--json")
    names = {json.loads(line)["name"] for line in proc.stdout.splitlines()}
    assert {"events.jsonl", "table.csv"} == names
    show = run("connectors", "show", "files", "--json")
    doc = json.loads(show.stdout)
    assert "read" in doc["capabilities"]
    assert "root" in doc["config_schema"]["properties"]
    assert doc["config_schema"]["additionalProperties"] is False


def test_write_then_read_back(tmp_path, data):
    """write loads a JSONL file into a stream; reading it back gives the same records."""
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"k": i, "v": "x" * i}) + "\n" for i in range(7)))
    proc = run("write", data.as_uri(), "copy.csv", str(src))
    assert proc.returncode == 0, proc.stderr
    assert "wrote 7 records" in proc.stdout
    again = run("write", data.as_uri(), "copy.csv", str(src))
    assert again.returncode == 1
    assert "exists" in again.stderr
    back = run("read", data.as_uri(), "copy.csv")
    assert [{"k": str(i), "v": "x" * i} for i in range(7)] == [
        json.loads(x) for x in back.stdout.splitlines()
    ]


def test_fetch_and_unsafe_name(tmp_path, data):
    """fetch copies atomically inside DEST; an escaping name is refused and writes nothing."""
    dest = tmp_path / "dest"
    proc = run("fetch", data.as_uri(), "events.jsonl", str(dest))
    assert proc.returncode == 0, proc.stderr
    assert (data / "events.jsonl").read_bytes() == (dest / "events.jsonl").read_bytes()
    assert "sha256:" in proc.stdout
    bad = run("fetch", data.as_uri(), "../events.jsonl", str(dest))
    assert bad.returncode == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "dest"]


def test_sources_lifecycle(data, env, tmp_path):
    """sources add (tested) / list / show / remove, then reads by name."""
    add = run(
        "sources",
        "add",
        "local",
        "files",
        "-c",
        f"root={data}",
        "--test",
        "--description",
        "demo",
        env=env,
    )
    assert add.returncode == 0, add.stderr
    listed = json.loads(run("sources", "list", "--json", env=env).stdout)
    assert [s["name"] for s in listed] == ["local"]
    shown = json.loads(run("sources", "show", "local", env=env).stdout)
    assert str(data) == shown["config"]["root"]
    read = run("read", "local", "events.jsonl", "--limit", "3", env=env)
    assert len(read.stdout.splitlines()) == 3
    failing = run(
        "sources", "add", "broken", "files", "-c", f"root={tmp_path / 'nope'}", "--test", env=env
    )
    assert failing.returncode == 1
    assert "broken" not in run("sources", "list", env=env).stdout
    assert run("sources", "remove", "local", env=env).returncode == 0
    gone = run("read", "local", "events.jsonl", env=env)
    assert gone.returncode == 1
    assert gone.stderr.startswith("error:")


def test_broken_pipe_is_quiet(data):
    """`headwater read ... | head -1` ends without a traceback."""
    proc = subprocess.run(
        f'"{sys.executable}" -m headwater read "{data.as_uri()}" events.jsonl --batch-size 1 | head -1',
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert len(proc.stdout.splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_doctor_json(env):
    """doctor reports versions, API and plugins as JSON."""
    proc = run("doctor", "--json", env=env)
    doc = json.loads(proc.stdout)
    assert doc["plugin_api"] == 1
    assert any(p["name"] == "headwater.files" for p in doc["plugins"])

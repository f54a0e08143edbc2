"""The data path from the command line: read -o, copy, write and upload on the files connector."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_cli import run

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    (root / "events.jsonl").write_text(
        "".join(json.dumps({"id": i, "name": f"n{i}"}) + "\n" for i in range(25))
    )
    (root / "ragged.jsonl").write_text('{"id": 1, "a": "x"}\n{"id": 2, "b": "y"}\n')
    return root


def test_output_format_comes_from_the_suffix(tmp_path, data):
    """-o x.csv writes CSV, -o x.jsonl.gz gzip JSON Lines; --format overrides."""
    out = tmp_path / "o.csv"
    proc = run("read", data.as_uri(), "events.jsonl", "-o", str(out))
    assert 0 == proc.returncode, proc.stderr
    assert out.read_text().startswith("id,name\n0,n0\n")
    forced = tmp_path / "o.txt"
    assert (
        0
        == run(
            "read", data.as_uri(), "events.jsonl", "-o", str(forced), "--format", "csv"
        ).returncode
    )
    assert forced.read_text() == out.read_text()
    unknown = run("read", data.as_uri(), "events.jsonl", "-o", str(tmp_path / "o.dat"))
    assert 1 == unknown.returncode
    assert "cannot tell the record format" in unknown.stderr
    assert not (tmp_path / "o.dat").exists()


def test_failed_read_leaves_an_existing_output_untouched(tmp_path, data):
    """A read that fails (missing stream) exits 1 and leaves the existing -o file as it was."""
    out = tmp_path / "keep.jsonl"
    out.write_text("precious\n")
    proc = run("read", data.as_uri(), "missing.jsonl", "-o", str(out))
    assert 1 == proc.returncode
    assert "precious\n" == out.read_text()
    assert ["data", "keep.jsonl"] == sorted(p.name for p in tmp_path.iterdir())


def test_reading_a_file_onto_itself_is_refused(data):
    """read -o the file being read exits 1 and the file is unchanged."""
    before = (data / "events.jsonl").read_bytes()
    proc = run("read", data.as_uri(), "events.jsonl", "-o", str(data / "events.jsonl"))
    assert 1 == proc.returncode
    assert "onto itself" in proc.stderr
    assert before == (data / "events.jsonl").read_bytes()


def test_csv_of_ragged_records_reads_back(tmp_path, data):
    """--format csv of records whose keys differ: a header with every field, and it reads back."""
    proc = run("read", data.as_uri(), "ragged.jsonl", "--format", "csv")
    assert 0 == proc.returncode, proc.stderr
    assert "id,a,b\n1,x,\n2,,y\n" == proc.stdout
    (data / "r.csv").write_text(proc.stdout)
    back = run("read", data.as_uri(), "r.csv")
    assert [{"id": "1", "a": "x", "b": None}, {"id": "2", "a": None, "b": "y"}] == [
        json.loads(line) for line in back.stdout.splitlines()
    ]


def test_parquet_read_with_state_and_limit_twice_continues(tmp_path, data):
    """`read -o x.parquet --state s --limit N` twice holds 2N rows, the second N after the first."""
    pq = pytest.importorskip("pyarrow.parquet")
    out, state = tmp_path / "x.parquet", tmp_path / "s.json"
    for _ in range(2):
        proc = run("read", data.as_uri(), "events.jsonl", "-o", str(out), "--state", str(state),
                   "--limit", "10")  # fmt: skip
        assert 0 == proc.returncode, proc.stderr
    assert list(range(20)) == pq.read_table(out).column("id").to_pylist()
    assert 20 == json.loads(state.read_text())["records"]


def test_copy_between_sources_and_files(tmp_path, data):
    """copy SRC STREAM DEST DEST_STREAM into a connector; copy FILE - DEST STREAM from a file."""
    proc = run("copy", data.as_uri(), "events.jsonl", data.as_uri(), "copied.csv")
    assert 0 == proc.returncode, proc.stderr
    assert "copied 25 records" in proc.stderr
    local = tmp_path / "local.csv"
    local.write_text("id,name\n1,a\n2,\n")
    proc = run("copy", str(local), "-", data.as_uri(), "from_local.jsonl")
    assert 0 == proc.returncode, proc.stderr
    assert [{"id": "1", "name": "a"}, {"id": "2", "name": None}] == [
        json.loads(line) for line in (data / "from_local.jsonl").read_text().splitlines()
    ]


def test_write_takes_write_options_and_compressed_files(tmp_path, data):
    """write reads .jsonl.gz by suffix; -W mode=overwrite is the connector's write option."""
    import gzip

    src = tmp_path / "in.jsonl.gz"
    src.write_bytes(gzip.compress(b'{"k": 1}\n{"k": 2}\n'))
    assert 0 == run("write", data.as_uri(), "w.jsonl", str(src)).returncode
    again = run("write", data.as_uri(), "w.jsonl", str(src))
    assert 1 == again.returncode
    assert "exists" in again.stderr
    forced = run("write", data.as_uri(), "w.jsonl", str(src), "-W", "mode=overwrite")
    assert 0 == forced.returncode, forced.stderr
    assert 2 == len((data / "w.jsonl").read_text().splitlines())


def test_upload_is_atomic_and_verified(tmp_path, data):
    """upload LOCAL ITEM stores the bytes (sha256 shown); an existing item needs --overwrite."""
    local = tmp_path / "blob.bin"
    local.write_bytes(os.urandom(300_000))
    proc = run("upload", data.as_uri(), str(local), "up/blob.bin", "--progress")
    assert 0 == proc.returncode, proc.stderr
    assert local.read_bytes() == (data / "up" / "blob.bin").read_bytes()
    assert "sha256:" in proc.stdout
    assert "B" in proc.stderr  # the byte progress bar
    again = run("upload", data.as_uri(), str(local), "up/blob.bin")
    assert 1 == again.returncode
    assert 0 == run("upload", data.as_uri(), str(local), "up/blob.bin", "--overwrite").returncode


def test_progress_shows_a_total_when_the_stream_can_tell(tmp_path, data):
    """A Parquet stream knows its rows: the bar shows N/N."""
    pytest.importorskip("pyarrow.parquet")
    assert 0 == run("read", data.as_uri(), "events.jsonl", "-o", str(data / "e.parquet")).returncode
    proc = run("read", data.as_uri(), "e.parquet", "-o", str(tmp_path / "x.jsonl"), "--progress")
    assert 0 == proc.returncode, proc.stderr
    assert "25/25" in proc.stderr


def test_pipe_to_head_exits_zero_quietly(data):
    """`read ... | head -1` exits 0 with no message."""
    proc = subprocess.run(
        ["bash", "-c", f'"{sys.executable}" -m headwater read "{data.as_uri()}" events.jsonl '
         '--batch-size 1 | head -1; exit "${PIPESTATUS[0]}"'],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert 0 == proc.returncode
    assert 1 == len(proc.stdout.splitlines())
    assert "" == proc.stderr


def test_ctrl_c_says_where_the_state_is(tmp_path):
    """SIGINT during a read with --state exits 130 naming the state file; resuming completes it."""
    root = tmp_path / "big"
    root.mkdir()
    with (root / "big.jsonl").open("w") as handle:
        for i in range(200_000):
            handle.write(f'{{"id": {i}}}\n')
    out, state = tmp_path / "o.jsonl", tmp_path / "s.json"
    args = [sys.executable, "-m", "headwater", "read", root.as_uri(), "big.jsonl", "-o", str(out),
            "--state", str(state), "--batch-size", "100", "--checkpoint-seconds", "0"]  # fmt: skip
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        deadline = time.monotonic() + 30
        while not state.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the read finished before the interrupt arrived")
    assert 130 == proc.returncode
    assert str(state) in stderr
    assert "run the same command again to resume" in stderr
    assert not out.exists()  # a fresh copy appears only when complete
    assert 0 == subprocess.run(args, capture_output=True, timeout=120, check=False).returncode
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert list(range(200_000)) == ids


def test_fetch_shows_bytes_with_a_total(tmp_path, data):
    """fetch --progress draws a byte bar with the item's size as its total."""
    (data / "big.bin").write_bytes(os.urandom(3_000_000))
    proc = run("fetch", data.as_uri(), "big.bin", str(tmp_path / "out"), "--progress")
    assert 0 == proc.returncode, proc.stderr
    assert (data / "big.bin").read_bytes() == (tmp_path / "out" / "big.bin").read_bytes()
    assert "3.00M/3.00M" in proc.stderr

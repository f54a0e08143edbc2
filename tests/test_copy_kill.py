"""
Kill-and-resume: a copy SIGKILLed at random points and run again ends with output equal
to the source, record for record (no duplicate, none missing), for every file sink and
for connector destinations (PostgreSQL and DuckDB, whose writes commit the copy state with
the rows).

The points are random; the seed is in every failure message (``HEADWATER_KILL_SEED``
replays one).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from headwater._builtin.files_connector import FilesConnector

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

RECORDS = 20_000
SEED = int(os.environ.get("HEADWATER_KILL_SEED", str(time.time_ns() % 1_000_000)))


def _source(root: Path, compressed: bool = False) -> list[dict[str, Any]]:
    rng = random.Random(7)
    records = [
        {
            "id": i,
            "name": f'name {i} ü, "quoted"' + ("\nsecond line" if i % 97 == 0 else ""),
            "amount": round(rng.uniform(-1000, 1000), 2),
            "maybe": None if i % 5 == 0 else ("" if i % 7 == 0 else f"m{i}"),
        }
        for i in range(RECORDS)
    ]
    root.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    (root / "events.jsonl").write_text(text, encoding="utf-8")
    if compressed:
        import gzip

        (root / "events.jsonl.gz").write_bytes(gzip.compress(text.encode("utf-8")))
    return records


def _timed(make_args: Callable[[int], list[str]]) -> float:
    """
    Seconds an uninterrupted run of ``headwater *make_args(i)`` takes (to aim the kills):
    the faster of two runs, since the first in a fresh environment also fills caches.
    """
    spans = []
    for attempt in range(2):
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "headwater", *make_args(attempt)],
            capture_output=True, text=True, timeout=240, check=False,
        )  # fmt: skip
        assert 0 == proc.returncode, proc.stderr
        spans.append(time.perf_counter() - started)
    return min(spans)


def _kill_and_resume(args: list[str], kills: int, rng: random.Random, span: float) -> list[float]:
    """
    Run ``headwater *args`` up to ``kills`` times, each SIGKILLed at a random point of
    ``span`` seconds (about one whole run, start-up included), then once to the end.
    Returns the delays of the runs that were killed.
    """
    command = [sys.executable, "-m", "headwater", *args]
    env = dict(os.environ)
    delays = []
    for attempt in range(kills):
        # The first run starts from nothing, so it takes about ``span``: killed in its
        # first half, it is killed even when this run is twice as fast as the timed one
        # (a machine whose load dropped), and the test never ends without a kill.
        delay = rng.uniform(0.05, 0.5 if attempt == 0 else 0.8) * span
        with subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        ) as process:
            try:
                process.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
                process.wait()
                delays.append(delay)
                continue
            assert process.stderr is not None
            assert 0 == process.returncode, process.stderr.read().decode()
            break
    final = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert 0 == final.returncode, final.stderr
    return delays


def _normalize_csv(record: dict[str, Any]) -> dict[str, Any]:
    return {k: None if v is None else str(v) for k, v in record.items()}


@pytest.mark.parametrize(
    ("stream", "name"),
    [
        ("events.jsonl", "out.jsonl"),
        ("events.jsonl", "out.csv"),
        ("events.jsonl", "out.jsonl.gz"),
        ("events.jsonl", "out.parquet"),
        ("events.jsonl.gz", "out.jsonl"),
    ],
)
def test_file_sink_survives_sigkill(tmp_path: Path, stream: str, name: str) -> None:
    """SIGKILL at random points, resume, and the file equals the source record for record."""
    if name.endswith(".parquet"):
        pytest.importorskip("pyarrow.parquet")
    rng = random.Random(f"{SEED}-{stream}-{name}")
    records = _source(tmp_path / "src", compressed=stream.endswith(".gz"))
    out, state = tmp_path / "dest" / name, tmp_path / "copy.state"
    out.parent.mkdir()

    def args(out: Path, state: Path) -> list[str]:
        return [
            "read", (tmp_path / "src").as_uri(), stream, "-o", str(out),
            "--state", str(state), "--batch-size", "50", "--checkpoint-seconds", "0",
        ]  # fmt: skip

    span = _timed(lambda i: args(tmp_path / f"t{i}-{name}", tmp_path / f"t{i}.state"))
    delays = _kill_and_resume(args(out, state), kills=5, rng=rng, span=span)
    got = [row for batch in FilesConnector({"root": out.parent}).read(name) for row in batch.rows()]
    expected = [_normalize_csv(r) for r in records] if name.endswith(".csv") else records
    if name.endswith(".parquet"):
        expected = records
    message = f"seed {SEED}, killed after {delays} s of runs taking {span:.2f} s"
    assert delays, f"no run was killed before it finished ({message})"
    assert len(expected) == len(got), message
    assert expected == got, message
    assert [] == [p.name for p in out.parent.iterdir() if p.name != name], message


@pytest.mark.integration
def test_postgres_destination_survives_sigkill(tmp_path, pg_dsn, pg_admin, pg_schema) -> None:
    """A copy into PostgreSQL killed at random points and resumed holds every record once."""
    pytest.importorskip("headwater_postgres")
    rng = random.Random(f"{SEED}-postgres")
    records = _source(tmp_path / "src")
    table = f'"{pg_schema}".events'
    for name in ("events", "timing"):
        pg_admin.execute(
            f'CREATE TABLE "{pg_schema}".{name} '
            "(id bigint, name text, amount double precision, maybe text)"
        )
    state = tmp_path / "copy.state"
    args = [
        "copy", (tmp_path / "src").as_uri(), "events.jsonl", pg_dsn, f"{pg_schema}.events",
        "--state", str(state), "--batch-size", "500", "--limit", "4000",
    ]  # fmt: skip
    timing = [
        "copy", (tmp_path / "src").as_uri(), "events.jsonl", pg_dsn, f"{pg_schema}.timing",
        "--batch-size", "500", "--limit", "4000",
    ]  # fmt: skip
    span = _timed(lambda _: timing)
    # Several limited runs, each one write transaction, killed at random points.
    delays: list[float] = []
    for _ in range(RECORDS // 4000):
        delays += _kill_and_resume(args, kills=2, rng=rng, span=span)
    rows = pg_admin.execute(f"SELECT id, name, amount, maybe FROM {table} ORDER BY id").fetchall()  # noqa: S608 - the test's own schema
    got = [dict(zip(("id", "name", "amount", "maybe"), row, strict=True)) for row in rows]
    message = f"seed {SEED}, killed after {delays} s of runs taking {span:.2f} s"
    assert delays, f"no run was killed before it finished ({message})"
    assert len(records) == len(got), message
    assert records == got, message


def test_duckdb_destination_survives_sigkill(tmp_path) -> None:
    """A copy into a DuckDB file killed at random points and resumed holds every record once."""
    duckdb_plugin = pytest.importorskip("headwater_duckdb")
    rng = random.Random(f"{SEED}-duckdb")
    records = _source(tmp_path / "src")
    path = tmp_path / "local.db"
    common = ["--batch-size", "500", "--limit", "4000", "-W", "create=true", "-W", "primary_key=id"]
    args = [
        "copy", (tmp_path / "src").as_uri(), "events.jsonl", f"duckdb:///{path}", "events",
        "--state", str(tmp_path / "copy.state"), *common,
    ]  # fmt: skip

    def timing(attempt: int) -> list[str]:
        return [
            "copy", (tmp_path / "src").as_uri(), "events.jsonl",
            f"duckdb:///{tmp_path / f'timing{attempt}.db'}", "events", *common,
        ]  # fmt: skip

    span = _timed(timing)
    # Several limited runs, each one write transaction, killed at random points.
    delays: list[float] = []
    for _ in range(RECORDS // 4000):
        delays += _kill_and_resume(args, kills=2, rng=rng, span=span)
    with duckdb_plugin.DuckDBConnector({"path": str(path)}) as duck:
        got = [row for batch in duck.read("events") for row in batch.rows()]
    message = f"seed {SEED}, killed after {delays} s of runs taking {span:.2f} s"
    assert delays, f"no run was killed before it finished ({message})"
    assert len(records) == len(got), message
    assert records == got, message

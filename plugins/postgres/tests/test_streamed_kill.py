"""
Kill-and-resume of a table's streamed dict read (`read` / `aread`, libpq's chunked rows):
a program that saves each batch's state only once the batch's rows are durable, SIGKILLed
at random points mid-read and run again from its saved state, ends with output equal to
the table, row for row and value for value (none twice, none missing, in order).

The points are random; the seed is in every failure message (``HEADWATER_KILL_SEED``
replays one).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

SEED = int(os.environ.get("HEADWATER_KILL_SEED", str(time.time_ns() % 1_000_000)))
ROWS = 3000
BATCH_SIZE = 25
KILLS = 5

#: The user program: reads the table from its saved state and, after each batch, appends
#: the batch's rows to the output (one JSON line each), fsyncs it, and only then replaces
#: the state file (temp + fsync + rename, then the directory fsynced). The state file holds
#: the read's state and how much output it covers (lines and bytes): a resumed run cuts
#: the output back to those bytes, dropping lines written after the last saved state (the
#: read gives them again) and a line torn by the kill.
READER = r"""
import asyncio, datetime, decimal, json, os, sys
from pathlib import Path

from headwater_postgres import PostgresConnector, _query

dsn, table, out, state_file, streams, mode, batch_size = sys.argv[1:]
out, state_file, streams = Path(out), Path(state_file), Path(streams)


class Counted(_query.RowStream):  # proof that the read streams: one line per stream made
    __slots__ = ()

    def __init__(self, *args):
        with open(streams, "a") as log:
            log.write("stream\n")
        super().__init__(*args)


_query.RowStream = Counted


def encode(value):
    if isinstance(value, datetime.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, decimal.Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, dict):
        return {"$object": value}  # a jsonb object, told apart from the markers above
    return value


saved = json.loads(state_file.read_text()) if state_file.exists() else None
lines, size = (saved["lines"], saved["bytes"]) if saved else (0, 0)
if saved is not None:
    assert saved["state"]["rows"] == lines, saved
fd = os.open(out, os.O_RDWR | os.O_CREAT, 0o644)
assert os.fstat(fd).st_size >= size, "the output lost bytes its saved state covers"
os.ftruncate(fd, size)
os.fsync(fd)
os.lseek(fd, 0, os.SEEK_END)


def save(state):
    tmp = state_file.with_name(state_file.name + ".tmp")
    with open(tmp, "w") as handle:
        json.dump({"state": state, "lines": lines, "bytes": size}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, state_file)
    directory = os.open(state_file.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def done(batch):
    global lines, size
    data = "".join(
        json.dumps({k: encode(v) for k, v in row.items()}, ensure_ascii=False) + "\n"
        for row in batch.rows()
    ).encode()
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.fsync(fd)  # the rows are durable ...
    lines += len(batch)
    size += len(data)
    save(batch.state)  # ... before the state that says they were read


state = saved["state"] if saved else None
if mode == "sync":
    with PostgresConnector({"url": dsn}) as connector:
        for batch in connector.read(table, state, batch_size=int(batch_size)):
            done(batch)
else:

    async def main():
        connector = PostgresConnector({"url": dsn})
        try:
            async for batch in connector.aread(table, state, batch_size=int(batch_size)):
                done(batch)
        finally:
            await connector.aclose()

    asyncio.run(main())
os.close(fd)
"""


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "$datetime" in value:
            return dt.datetime.fromisoformat(value["$datetime"])
        if "$decimal" in value:
            return Decimal(value["$decimal"])
        return value["$object"]
    return value


def _comparable(row: dict[str, Any]) -> list[tuple[str, str, str]]:
    """
    A row's values with their types and texts (``Decimal('1.50')`` is not
    ``Decimal('1.5')``); a timestamptz as its UTC time, whatever the session's time zone.
    """
    return [
        (
            name,
            type(value).__name__,
            value.astimezone(dt.UTC).isoformat()
            if isinstance(value, dt.datetime) and value.tzinfo is not None
            else repr(value),
        )
        for name, value in row.items()
    ]


def _make_table(admin: Any, schema: str, rng: random.Random) -> str:
    """ROWS rows of several types, NULLs here and there, inserted in random key order."""
    table = f'"{schema}".events'
    admin.execute(
        f"CREATE TABLE {table} (id bigint PRIMARY KEY, n integer, name text, doc jsonb, "
        "at timestamptz, amount numeric(14, 3), note text)"
    )
    base = dt.datetime(2024, 2, 29, 13, 14, 15, 123456, tzinfo=dt.UTC)
    rows = []
    for i in range(ROWS):
        doc: Any = {
            "i": i,
            "tags": ["a", f"t{i % 7}"],
            "nested": {"ok": i % 2 == 0, "x": None, "f": i / 8},
            "ü": "✓ 日本",
        }
        if i % 11 == 0:
            doc = [i, "list", {"k": i}]
        elif i % 13 == 0:
            doc = f"string {i}"
        rows.append(
            (
                i * 3 + (i % 2),  # gaps between keys
                None if i % 17 == 0 else rng.randint(-(2**31), 2**31 - 1),
                None if i % 37 == 0 else f'name {i} "quoted", ü\nline' if i % 29 == 0 else f"n{i}",
                None if i % 19 == 0 else json.dumps(doc, ensure_ascii=False),
                None if i % 23 == 0 else base + dt.timedelta(seconds=i * 61, microseconds=i),
                None if i % 31 == 0 else Decimal(f"{rng.randint(-(10**9), 10**9)}.{i % 1000:03d}"),
                None if i % 3 else f"note {i}",
            )
        )
    rng.shuffle(rows)
    with admin.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s, %s, %s)", rows)
    return f"{schema}.events"


def _line_count(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _saved_lines(state: Path) -> int:
    return json.loads(state.read_text())["lines"] if state.exists() else 0


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_streamed_read_resumes_after_sigkill(tmp_path, pg_dsn, pg_admin, pg_schema, mode):
    """SIGKILL mid-read at random points, resume from the saved state: the table exactly."""
    rng = random.Random(f"{SEED}-{mode}")
    table = _make_table(pg_admin, pg_schema, random.Random(7))
    program = tmp_path / "reader.py"
    program.write_text(READER, encoding="utf-8")
    out, state, streams = tmp_path / "out.jsonl", tmp_path / "read.state", tmp_path / "streams"
    command = [
        sys.executable, str(program), pg_dsn, table, str(out), str(state), str(streams), mode,
        str(BATCH_SIZE),
    ]  # fmt: skip

    killed: list[int] = []  # the output's line count the kill was aimed at, per killed run
    resumed_from: list[int] = []  # the saved state's line count each run started from
    for _ in range(KILLS):
        start = _saved_lines(state)
        resumed_from.append(start)
        # Killed once it has written some new rows (at least one batch: mid-read, never
        # in its start-up), past a random line, then after a random few milliseconds more.
        target = rng.randint(start + 1, start + max(1, (ROWS - start) // 3))
        extra = rng.uniform(0, 0.01)
        with subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        ) as process:
            deadline = time.monotonic() + 120
            while process.poll() is None and _line_count(out) < target:
                assert time.monotonic() < deadline, f"seed {SEED}: no progress"
                time.sleep(0.001)
            if process.poll() is None:
                time.sleep(extra)
                process.send_signal(signal.SIGKILL)
            process.wait()
            assert process.stderr is not None
            stderr = process.stderr.read().decode()
        if process.returncode == -signal.SIGKILL:
            killed.append(target)
            continue
        assert process.returncode == 0, f"seed {SEED}: {stderr}"
        break
    resumed_from.append(_saved_lines(state))
    final = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
    assert final.returncode == 0, f"seed {SEED}: {final.stderr}"

    message = f"seed {SEED}, {mode}: killed at lines {killed}, runs resumed from {resumed_from}"
    assert killed, f"no run was killed mid-read ({message})"
    assert any(resumed_from[1:]), f"no run resumed from a saved state ({message})"
    assert _line_count(streams) >= len(killed), f"the read did not stream ({message})"

    got = [
        {k: _decode(v) for k, v in json.loads(line).items()}
        for line in out.read_text(encoding="utf-8").splitlines()
    ]
    with pg_admin.cursor() as cur:
        cur.execute(f'SELECT * FROM "{pg_schema}".events ORDER BY id')
        names = [column.name for column in cur.description or ()]
        expected = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    assert len(expected) == ROWS
    assert [row["id"] for row in got] == [row["id"] for row in expected], message
    assert list(map(_comparable, got)) == list(map(_comparable, expected)), message
    assert json.loads(state.read_text())["lines"] == ROWS, message

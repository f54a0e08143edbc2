"""Partitions that ship: files ranges cover a stream exactly once; configs carry references only."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

import headwater
from headwater.toolkit import partitions, read_partition
from tests.fix_engines import assert_refuses_to_ship, pg_config

SECRET = "pw-7c1e9a-never-shipped"


def _rows(batches: Any) -> list[dict[str, Any]]:
    return [row for batch in batches for row in batch.rows()]


@pytest.fixture
def files_dir(tmp_path: Path) -> Path:
    """A JSON Lines file (CRLF, no final newline), a CSV file with a header, a Parquet file."""
    lines = [
        f'{{"id": {i}, "name": "{"x" * (i % 13)}", "ok": {str(i % 2 == 0).lower()}}}'
        for i in range(97)
    ]
    (tmp_path / "events.jsonl").write_bytes("\r\n".join(lines).encode())
    rows = ["id,name,note"]
    for i in range(83):
        note = f'"two\nlines {i}"' if i % 10 == 3 else f'"say ""hi"" {i}"' if i % 7 == 0 else ""
        rows.append(f"{i},{'y' * (i % 11)},{note}")
    (tmp_path / "people.csv").write_text("\n".join(rows) + "\n")
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"id": list(range(1000)), "v": [i * 0.5 for i in range(1000)]})
    pq.write_table(table, tmp_path / "numbers.parquet", row_group_size=150)
    return tmp_path


@pytest.mark.parametrize(
    ("stream", "records"), [("events.jsonl", 97), ("people.csv", 83), ("numbers.parquet", 1000)]
)
def test_partitions_together_are_the_whole_read(files_dir: Path, stream: str, records: int) -> None:
    """For n = 1..7 the partitions, read one after another, give the whole read record for record."""
    with headwater.connect("files", {"root": str(files_dir)}) as source:
        whole = _rows(source.read(stream))
        for n in range(1, 8):
            parts = partitions(source, stream, n)
            assert 1 <= len(parts) <= n
            union = [row for part in parts for row in _rows(read_partition(part, batch_size=7))]
            assert whole == union, f"n={n}"
    assert records == len(whole)


def test_tsv_partitions_are_cut_at_rows_after_quoted_fields(files_dir: Path) -> None:
    """
    A .tsv file (tab delimiter) with quoted fields holding newlines and tabs is cut into
    as many ranges as asked, each ending where a row does: the cutter is told the
    delimiter (with the default comma, a quote after a tab read as one inside an
    unquoted field, and nothing after it was cut).
    """
    rows = ["id\tnote"]
    for i in range(120):
        rows.append(f'{i}\t"tab\there\nand a line {i}"' if i % 3 else f"{i}\tplain {i}")
    (files_dir / "notes.tsv").write_text("\n".join(rows) + "\n")
    with headwater.connect("files", {"root": str(files_dir)}) as source:
        whole = _rows(source.read("notes.tsv"))
        assert 120 == len(whole)
        assert "tab\there\nand a line 1" == whole[1]["note"]
        parts = partitions(source, "notes.tsv", 4)
        assert 4 == len(parts)
        assert whole == [row for part in parts for row in _rows(read_partition(part))]


def test_files_partitions_split_where_they_can(files_dir: Path) -> None:
    """Byte ranges for a text file, whole row groups for Parquet, one partition for a .gz file."""
    import gzip

    (files_dir / "packed.jsonl.gz").write_bytes(gzip.compress(b'{"a": 1}\n{"a": 2}\n'))
    with headwater.connect("files", {"root": str(files_dir)}) as source:
        assert headwater.Capability.PARTITIONS in source.capabilities
        assert 4 == len(partitions(source, "events.jsonl", 4))
        groups = [p.bounds["rows"] for p in partitions(source, "numbers.parquet", 3)]
        assert all(lo % 150 == 0 for lo, _ in groups)
        assert 1000 == groups[-1][1]
        assert [1] == [p.count for p in partitions(source, "packed.jsonl.gz", 5)]


@pytest.mark.parametrize("stream", ["events.jsonl", "people.csv", "numbers.parquet"])
def test_a_partition_resumes_from_a_state_inside_it(files_dir: Path, stream: str) -> None:
    """The state after a batch in the middle of a partition resumes exactly after that batch."""
    with headwater.connect("files", {"root": str(files_dir)}) as source:
        part = partitions(source, stream, 3)[1]
        batches = list(read_partition(part, batch_size=5))
        assert len(batches) > 2
        resumed = _rows(read_partition(part, batch_size=5, state=batches[1].state))
    assert _rows(batches[2:]) == resumed


def test_a_state_outside_the_partition_is_refused(files_dir: Path) -> None:
    """A state of another partition is an error, not a silent re-read."""
    with headwater.connect("files", {"root": str(files_dir)}) as source:
        first, second = partitions(source, "events.jsonl", 2)
        state = list(read_partition(second))[-1].state
        with pytest.raises(headwater.ConfigError, match="outside"):
            list(read_partition(first, state=state))


def test_files_partitions_pickle_and_read_back(files_dir: Path) -> None:
    """Every files partition survives pickling and reads the same records after it."""
    with headwater.connect("files", {"root": str(files_dir)}) as source:
        for stream in ("events.jsonl", "people.csv", "numbers.parquet"):
            for part in partitions(source, stream, 4):
                again = pickle.loads(pickle.dumps(part))
                assert (part, "files") == (again, again.connector)
                assert _rows(read_partition(part)) == _rows(read_partition(again))


@pytest.fixture
def pg_table(pg_admin: Any, pg_schema: str) -> str:
    """A 500-row table with a bigint key."""
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".t (id bigint PRIMARY KEY, name text)')
    pg_admin.execute(
        f"INSERT INTO \"{pg_schema}\".t SELECT i, 'n' || i FROM generate_series(1, 500) i"  # noqa: S608 - the test's own schema
    )
    return f"{pg_schema}.t"


def test_postgres_partitions_ship_the_reference_not_the_secret(
    pg_dsn: str, pg_table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pickled partitions hold env:NAME, never the password or a DSN with it; they still read."""
    monkeypatch.setenv("HW_SHIP_TEST_PW", SECRET)
    config = pg_config(pg_dsn, "env:HW_SHIP_TEST_PW")
    with headwater.connect("postgres", config) as source:
        parts = partitions(source, pg_table, 4)
        shipped = pickle.dumps(parts)
    assert 4 == len(parts)
    assert SECRET.encode() not in shipped
    assert b"password=" not in shipped
    assert b"env:HW_SHIP_TEST_PW" in shipped
    assert SECRET not in repr(parts)
    ids = sorted(row["id"] for part in pickle.loads(shipped) for row in _rows(read_partition(part)))
    assert list(range(1, 501)) == ids


@pytest.mark.parametrize("password", [SECRET, lambda: SECRET], ids=["literal", "callable"])
def test_a_literal_or_callable_secret_refuses_to_ship(
    pg_dsn: str, pg_table: str, password: Any
) -> None:
    """A config whose password is a literal or a callable cannot ship: the error names the field and the ways out."""
    assert_refuses_to_ship(pg_dsn, password, lambda source: partitions(source, pg_table, 2))


@pytest.mark.engines
def test_the_dask_task_graph_holds_the_reference_not_the_secret(
    pg_dsn: str, pg_table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Dask read planned here (the secret resolved here) still serializes no secret."""
    import cloudpickle

    import headwater.dask

    monkeypatch.setenv("HW_SHIP_TEST_PW", SECRET)
    with headwater.connect("postgres", pg_config(pg_dsn, "env:HW_SHIP_TEST_PW")) as source:
        frame = headwater.dask.read(source, pg_table, npartitions=3)
    tasks = cloudpickle.dumps(dict(frame.__dask_graph__()))
    assert SECRET.encode() not in tasks
    assert b"env:HW_SHIP_TEST_PW" in tasks
    assert list(range(1, 501)) == sorted(frame.compute(scheduler="sync")["id"].tolist())


def test_a_saved_source_name_ships_its_saved_config(files_dir: Path, tmp_path: Path) -> None:
    """partitions("name", ...) of a saved source carry the saved connector id and config."""
    sources = headwater.SourceRegistry(tmp_path / "sources.toml")
    sources.add("exports", "files", {"root": str(files_dir), "batch_size": 10})
    parts = partitions("exports", "events.jsonl", 3, sources=sources)
    assert [("files", {"root": str(files_dir.resolve()), "batch_size": 10})] * 3 == [
        (p.connector, p.config) for p in parts
    ]
    assert 97 == sum(len(batch) for p in parts for batch in read_partition(p))

"""Part writes of the files connector: hidden part files replaced on retry, one atomic commit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import headwater
from headwater import Capability, IntegrityError

JOB = "0123456789abcdef"


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def files(tmp_path: Path) -> Any:
    with headwater.connect("files", {"root": str(tmp_path)}) as connector:
        yield connector


def test_files_declares_part_writes(files: Any) -> None:
    """The capability is declared, so engines know they may write files."""
    assert Capability.PART_WRITES in files.capabilities


def test_a_part_written_again_replaces_it_and_the_commit_is_in_order(
    files: Any, tmp_path: Path
) -> None:
    """Part 0 written twice (a retried task), part 1 once: the file holds each record once."""
    first = [{"id": i} for i in range(5)]
    second = [{"id": i} for i in range(5, 12)]
    assert 7 == files.write_part("out/all.jsonl", [second], job=JOB, index=1).records
    assert 2 == files.write_part("out/all.jsonl", [first[:2]], job=JOB, index=0).records
    assert 5 == files.write_part("out/all.jsonl", [first], job=JOB, index=0).records
    assert not (tmp_path / "out" / "all.jsonl").exists()  # nothing visible before the commit
    assert 12 == files.commit_parts("out/all.jsonl", job=JOB, parts={0: 5, 1: 7}).records
    assert first + second == _records(tmp_path / "out" / "all.jsonl")
    assert ["all.jsonl"] == sorted(p.name for p in (tmp_path / "out").iterdir())


def test_a_part_missing_or_short_writes_nothing(files: Any, tmp_path: Path) -> None:
    """A part not written, or holding another count: IntegrityError, no target file."""
    files.write_part("t.jsonl", [[{"id": 1}]], job=JOB, index=0)
    with pytest.raises(IntegrityError) as missing:
        files.commit_parts("t.jsonl", job=JOB, parts={0: 1, 1: 3})
    assert "part 1 of write job" in missing.value.message
    with pytest.raises(IntegrityError) as short:
        files.commit_parts("t.jsonl", job=JOB, parts={0: 2})
    assert "holds 1 records, not the 2" in short.value.message
    assert not (tmp_path / "t.jsonl").exists()
    files.abort_parts("t.jsonl", job=JOB)
    assert [] == list(tmp_path.iterdir())


def test_parquet_parts_and_an_append(files: Any, tmp_path: Path) -> None:
    """Parquet parts commit as one file; a second job appends with mode='append'."""
    files.write_part("t.parquet", [[{"id": 1, "v": "a"}]], job=JOB, index=0)
    files.write_part("t.parquet", [[]], job=JOB, index=1)  # an empty part writes nothing
    files.write_part("t.parquet", [[{"id": 2, "v": "b"}]], job=JOB, index=2)
    assert 2 == files.commit_parts("t.parquet", job=JOB, parts={0: 1, 1: 0, 2: 1}).records
    other = "fedcba9876543210"
    files.write_part("t.parquet", [[{"id": 3, "v": "c"}]], job=other, index=0)
    files.commit_parts("t.parquet", job=other, parts={0: 1}, mode="append")
    rows = [row for batch in files.read("t.parquet") for row in batch.rows()]
    assert [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}, {"id": 3, "v": "c"}] == rows
    assert ["t.parquet"] == [p.name for p in tmp_path.iterdir()]


@pytest.mark.engines
def test_dask_without_a_distributed_client_writes_in_this_process(tmp_path: Path) -> None:
    """No distributed client: the write tasks and the commit run on Dask's local scheduler."""
    import pandas as pd
    from dask import dataframe as dd

    import headwater.dask

    assert headwater.dask._client() is None
    frame = dd.from_pandas(pd.DataFrame({"id": range(100)}), npartitions=4, sort=False)
    result = headwater.dask.to_source(frame, tmp_path.as_uri(), "ids.jsonl")
    assert 100 == result.records
    assert [{"id": n} for n in range(100)] == _records(tmp_path / "ids.jsonl")
    assert ["ids.jsonl"] == [p.name for p in tmp_path.iterdir()]

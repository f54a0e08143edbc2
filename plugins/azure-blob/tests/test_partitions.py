"""
Partitions of azure-blob streams on Azurite: together they are the whole read, record for
record; they resume inside; a replaced blob fails; they ship references, never keys.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import os
import pickle
from collections.abc import Iterator
from typing import Any

import pytest

import headwater
from headwater import IntegrityError, Partition
from headwater.toolkit import partitions as shipped_partitions
from headwater_azure_blob import AzureBlobConnector

#: The account key reaches connectors through this variable only (an env: reference).
KEY_ENV = "HW_AZ_PARTITION_KEY"


def _rows(batches: Any) -> list[dict[str, Any]]:
    return [row for batch in batches for row in batch.rows()]


def _split(connector: AzureBlobConnector, mode: str, stream: str, n: int) -> list[Partition]:
    if mode == "async":
        return asyncio.run(connector.apartitions(stream, n))
    return connector.partitions(stream, n)


def _read(
    connector: AzureBlobConnector,
    mode: str,
    partition: Partition,
    state: dict[str, Any] | None = None,
    batch_size: int | None = None,
) -> list[Any]:
    if mode == "async":

        async def run() -> list[Any]:
            got = connector.aread_partition(partition, batch_size=batch_size, state=state)
            return [batch async for batch in got]

        return asyncio.run(run())
    return list(connector.read_partition(partition, batch_size=batch_size, state=state))


@pytest.fixture
def connector(config: dict[str, Any]) -> Iterator[AzureBlobConnector]:
    with AzureBlobConnector(config) as made:
        yield made


def _jsonl(lines: list[dict[str, Any]], end: str = "\n", last_newline: bool = True) -> bytes:
    text = end.join(json.dumps(line, ensure_ascii=False) for line in lines)
    return (text + (end if last_newline else "")).encode()


@pytest.fixture
def blobs(container: Any) -> dict[str, int]:
    """
    logs/: 23 small JSON Lines blobs of uneven sizes; big.jsonl (CRLF, no final newline,
    multi-byte text); people.csv (quoted newlines and quotes); numbers.parquet (7 row
    groups); packed.jsonl.gz. Values: records in each.
    """
    import gzip

    counts: dict[str, int] = {}
    for b in range(23):
        lines = [{"blob": b, "i": i, "pad": "p" * (b * 7 % 50)} for i in range(b % 6 + 1)]
        container.upload_blob(f"logs/part-{b:03d}.jsonl", _jsonl(lines))
        counts[f"logs/part-{b:03d}.jsonl"] = len(lines)
    big = [{"id": i, "text": "é" * (i % 17), "ok": i % 3 == 0} for i in range(613)]
    container.upload_blob("big.jsonl", _jsonl(big, "\r\n", last_newline=False))
    counts["big.jsonl"] = len(big)
    rows = ["id,name,note"]
    for i in range(211):
        note = f'"two\nlines {i}"' if i % 10 == 3 else f'"say ""hi"" {i}"' if i % 7 == 0 else ""
        rows.append(f"{i},{'y' * (i % 11)},{note}")
    container.upload_blob("people.csv", ("\n".join(rows) + "\n").encode())
    counts["people.csv"] = 211
    wide = [{"id": i, "text": chr(0x4E00 + i) * (9000 * (i % 4))} for i in range(40)]
    container.upload_blob("wide.jsonl", _jsonl(wide))  # lines past 64 KiB, 2 MiB in all
    counts["wide.jsonl"] = len(wide)
    container.upload_blob("packed.jsonl.gz", gzip.compress(_jsonl(big[:50])))
    counts["packed.jsonl.gz"] = 50
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    table = pa.table({"id": list(range(1000)), "v": [i * 0.5 for i in range(1000)]})
    pq.write_table(table, sink, row_group_size=150)
    container.upload_blob("numbers.parquet", sink.getvalue())
    counts["numbers.parquet"] = 1000
    return counts


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(
    "stream",
    [
        "logs/",
        "logs/part-01*.jsonl",
        "big.jsonl",
        "wide.jsonl",
        "people.csv",
        "numbers.parquet",
        "packed.jsonl.gz",
    ],
)
def test_partitions_together_are_the_whole_read(
    connector: AzureBlobConnector, blobs: dict[str, int], mode: str, stream: str
) -> None:
    """For n = 1..5 the partitions, read in order, give the whole read record for record."""
    whole = _rows(connector.read(stream))
    prefix = stream.split("*")[0]
    expected = sum(c for name, c in blobs.items() if name.startswith(prefix))
    assert expected == len(whole)
    for n in range(1, 6):
        parts = _split(connector, mode, stream, n)
        assert 1 <= len(parts) <= n, f"n={n}"
        assert [(i, len(parts)) for i in range(len(parts))] == [(p.index, p.count) for p in parts]
        union = [row for part in parts for row in _rows(_read(connector, mode, part, None, 9))]
        assert whole == union, f"n={n}"


def test_the_splits_are_the_expected_kinds(connector: AzureBlobConnector, blobs: Any) -> None:
    """Blobs one per partition or grouped; byte ranges of text; row groups; a .gz whole."""
    logs = connector.partitions("logs/", 5)
    assert 5 == len(logs)
    assert 23 == sum(len(p.bounds["blobs"]) for p in logs)
    names = [blob["name"] for p in logs for blob in p.bounds["blobs"]]
    assert sorted(names) == names
    ten = connector.partitions("logs/part-00*.jsonl", 5)  # 000..009
    assert (5, 10) == (len(ten), sum(len(p.bounds["blobs"]) for p in ten))
    few = connector.partitions("logs/part-02*.jsonl", 5)  # 020..022
    assert [1, 1, 1] == [len(p.bounds["blobs"]) for p in few]
    ranges = [p.bounds["bytes"] for p in connector.partitions("big.jsonl", 4)]
    assert 4 == len(ranges)
    assert 0 == ranges[0][0]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    assert [[0, 300], [300, 600], [600, 750], [750, 1000]] == [  # row groups of 150
        p.bounds["rows"] for p in connector.partitions("numbers.parquet", 4)
    ]
    packed = connector.partitions("packed.jsonl.gz", 4)
    assert [["packed.jsonl.gz"]] == [[b["name"] for b in p.bounds["blobs"]] for p in packed]
    assert "bytes" not in packed[0].bounds


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_tsv_partitions_are_cut_at_rows_after_quoted_fields(
    connector: AzureBlobConnector, container: Any, mode: str
) -> None:
    """
    A .tsv blob (tab delimiter) with quoted fields holding newlines and tabs is cut into
    as many ranges as asked, each ending where a row does: the cutter is told the
    delimiter (with the default comma, a quote after a tab read as one inside an
    unquoted field, and nothing after it was cut).
    """
    rows = ["id\tnote"]
    for i in range(120):
        rows.append(f'{i}\t"tab\there\nand a line {i}"' if i % 3 else f"{i}\tplain {i}")
    container.upload_blob("notes.tsv", ("\n".join(rows) + "\n").encode())
    whole = _rows(connector.read("notes.tsv"))
    assert 120 == len(whole)
    assert "tab\there\nand a line 1" == whole[1]["note"]
    parts = _split(connector, mode, "notes.tsv", 4)
    assert 4 == len(parts)
    assert whole == [row for part in parts for row in _rows(_read(connector, mode, part))]


def test_the_async_split_equals_the_sync_split(connector: AzureBlobConnector, blobs: Any) -> None:
    """apartitions gives what partitions gives, for every kind of stream and count."""
    for stream in ("logs/", "big.jsonl", "people.csv", "numbers.parquet", "packed.jsonl.gz"):
        for n in (1, 3, 5):
            assert connector.partitions(stream, n) == _split(connector, "async", stream, n)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(
    "stream", ["logs/", "big.jsonl", "wide.jsonl", "people.csv", "numbers.parquet"]
)
def test_a_partition_resumes_after_each_of_its_batches(
    connector: AzureBlobConnector, blobs: Any, mode: str, stream: str
) -> None:
    """From every batch's state, a partition yields exactly the records after that batch."""
    for part in _split(connector, mode, stream, 3)[1:]:
        batches = _read(connector, mode, part, None, 7)
        rows = _rows(batches)
        assert rows, "a partition of these streams is never empty"
        seen = 0
        for batch in batches[: len(batches) // 2 + 1]:
            seen += len(batch)
            resumed = _rows(_read(connector, mode, part, batch.state, 7))
            assert rows[seen:] == resumed


def test_a_state_from_another_partition_is_refused(
    connector: AzureBlobConnector, blobs: Any
) -> None:
    """A state outside the partition's range, or of another blob, is a ConfigError on the state."""
    first, second = connector.partitions("big.jsonl", 2)
    state = next(iter(connector.read_partition(second, batch_size=50))).state
    with pytest.raises(headwater.ConfigError) as caught:
        list(connector.read_partition(first, state=state))
    assert "state" == caught.value.field
    one, other = connector.partitions("logs/", 2)
    state = next(iter(connector.read_partition(other))).state
    with pytest.raises(headwater.ConfigError) as caught:
        list(connector.read_partition(one, state=state))
    assert "is not one of the partition's" in caught.value.message


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("stream", ["logs/", "big.jsonl"])
def test_a_blob_replaced_after_the_split_fails_naming_it(
    connector: AzureBlobConnector, container: Any, blobs: Any, mode: str, stream: str
) -> None:
    """A partition never mixes versions: the replaced blob fails the read, named."""
    parts = _split(connector, mode, stream, 2)
    target = parts[-1].bounds["blobs"][-1]["name"]
    container.upload_blob(target, _jsonl([{"new": True}] * 400), overwrite=True)
    if stream == "logs/":
        assert _rows(_read(connector, mode, parts[0]))  # another blob's partition: untouched
        parts = parts[-1:]
    for part in parts:  # big.jsonl: both byte ranges are of the replaced blob
        with pytest.raises(IntegrityError) as caught:
            _read(connector, mode, part)
        assert f"blob {target!r} was replaced" in caught.value.message


def test_a_blob_deleted_after_the_split_fails_naming_it(
    connector: AzureBlobConnector, container: Any, blobs: Any
) -> None:
    """A blob deleted since the split is reported as such, by name."""
    part = connector.partitions("logs/", 23)[4]
    container.delete_blob(part.bounds["blobs"][0]["name"])
    with pytest.raises(IntegrityError) as caught:
        list(connector.read_partition(part))
    assert "'logs/part-004.jsonl' was deleted" in caught.value.message


def test_shipped_partitions_hold_the_reference_never_the_key(
    azurite: Any, config: dict[str, Any], blobs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every pickled partition (env: key) holds the reference; the key appears nowhere."""
    monkeypatch.setenv(KEY_ENV, azurite.account_key)
    with AzureBlobConnector({**config, "account_key": f"env:{KEY_ENV}"}) as source:
        assert source.check().ok  # the reference resolves here
        for stream in ("logs/", "big.jsonl", "people.csv", "numbers.parquet"):
            for part in shipped_partitions(source, stream, 4):
                data = pickle.dumps(part)
                assert f"env:{KEY_ENV}".encode() in data
                assert azurite.account_key.encode() not in data
                assert azurite.account_key not in repr(part)
                assert pickle.loads(data) == part


def test_a_literal_key_refuses_to_ship(config: dict[str, Any], blobs: Any) -> None:
    """A literal account key cannot ship: a ConfigError naming the field, never the key."""
    with AzureBlobConnector(config) as source, pytest.raises(headwater.ConfigError) as caught:
        shipped_partitions(source, "logs/", 2)
    assert "account_key" == caught.value.field
    assert config["account_key"] not in str(caught.value)


# --- Dask --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine_worker_env(azurite: Any) -> dict[str, str]:
    """The Dask workers' environment (`tests.fix_engines`) holds the account key."""
    return {KEY_ENV: azurite.account_key}


@pytest.mark.engines
def test_blobs_on_dask_equal_to_pandas(
    dask_client: Any,
    azurite: Any,
    config: dict[str, Any],
    blobs: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """logs/ and big.jsonl on 2 workers (the key resolved there from env:) equal to_pandas."""
    import pandas as pd

    import headwater.dask

    assert KEY_ENV not in os.environ
    shipped = {**config, "account_key": f"env:{KEY_ENV}"}
    for stream, n in (("logs/", 4), ("big.jsonl", 3)):
        with AzureBlobConnector(shipped) as source:
            frame = headwater.dask.read(source, stream, npartitions=n)
            assert n == frame.npartitions
            got = frame.compute().reset_index(drop=True)
        with monkeypatch.context() as patch:
            patch.setenv(KEY_ENV, azurite.account_key)
            with AzureBlobConnector(shipped) as local:
                expected = headwater.to_pandas(local, stream)
        assert len(expected) > 0
        pd.testing.assert_frame_equal(expected, got)


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 8, 64])
def test_csv_record_ends_do_not_depend_on_chunking(chunk: int) -> None:
    """The CSV cut finder (pure logic) gives the same boundaries whatever the chunk size."""
    from headwater.formats import CsvRecordEnds

    data = b'id,note\n1,"a\nb"\n2,"say ""x""\n\n"\n3,plain\n4,"\n"\n5,end'
    expected = [8, 16, 16, 32, 32, 40, 46, 46, 51]  # newlines outside quotes: 7 15 31 39 45
    targets = [0, 9, 12, 18, 25, 34, 42, 44, 50]
    ends = CsvRecordEnds(targets)
    for start in range(0, len(data), chunk):
        ends.feed(data[start : start + chunk])
    assert expected == ends.finish(len(data))

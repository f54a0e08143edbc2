"""
The Arrow / pandas / polars hand-off (`headwater.record_batch_reader`, `to_arrow`,
`to_pandas`, `to_polars`) over the embedded ``files`` connector: one schema for a stream
of dict batches, Arrow batches untouched, the reader's look-ahead and its errors, the
optional extras. The other connectors are covered in ``tests/test_frames.py``.
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path
from typing import Any

import pytest

import headwater
from headwater import ConfigError
from headwater._builtin.files_connector import FilesConnector
from headwater.formats import JSON_FIELD_METADATA, arrow_rows

pa = pytest.importorskip("pyarrow")

#: Records whose first batch (of 3) has `score` all NULL and lacks `extra` and `doc`.
RECORDS: list[dict[str, Any]] = [
    {"id": 1, "name": "a", "score": None},
    {"id": 2, "name": None, "score": None},
    {"id": 3, "name": "", "score": None},
    {"id": 4, "name": "ü", "score": 1.5, "doc": {"k": [1, 2]}},
    {"id": 5, "name": "e", "score": -2.0, "doc": "text", "extra": 10},
    {"id": 6, "name": "f", "score": None, "doc": None, "extra": None},
    {"id": 7, "name": "g", "score": 0.25, "doc": [None, {"x": "y"}], "extra": 2**40},
]
COLUMNS = ["id", "name", "score", "doc", "extra"]


def _expected(records: list[dict[str, Any]] = RECORDS) -> list[dict[str, Any]]:
    """The records with every column present (NULL where a record lacks it)."""
    return [{name: record.get(name) for name in COLUMNS} for record in records]


@pytest.fixture
def files(tmp_path: Path) -> FilesConnector:
    """A files connector reading 3 records a batch, over events.jsonl (`RECORDS`)."""
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    return FilesConnector({"root": tmp_path, "batch_size": 3})


def test_to_arrow_one_schema_for_a_growing_stream(files):
    """A column NULL in the first batch takes its later type; late columns are NULL before."""
    table = headwater.to_arrow(files, "events.jsonl")
    assert COLUMNS == table.column_names
    assert pa.int64() == table.schema.field("id").type
    assert pa.float64() == table.schema.field("score").type
    assert pa.int64() == table.schema.field("extra").type
    assert JSON_FIELD_METADATA == table.schema.field("doc").metadata
    assert _expected() == arrow_rows(table)


def test_json_column_keeps_documents_and_strings(tmp_path):
    """A JSON column: a string stays a JSON string beside objects; NULL stays NULL."""
    lines = [{"d": "plain"}, {"d": None}, {"d": {"a": 1}}, {"e": 1}]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    files = FilesConnector({"root": tmp_path, "batch_size": 2})
    table = headwater.to_arrow(files, "d.jsonl")
    assert ['"plain"', None, '{"a": 1}', None] == table.column("d").to_pylist()
    expected = [{"d": "plain", "e": None}, {"d": None, "e": None}]
    expected += [{"d": {"a": 1}, "e": None}, {"d": None, "e": 1}]
    assert expected == arrow_rows(table)


def test_reader_reads_ahead_past_an_all_null_first_batch(files):
    """The reader's schema comes from the first records together: later-typed and late columns."""
    reader = headwater.record_batch_reader(files, "events.jsonl")
    assert pa.float64() == reader.schema.field("score").type
    assert pa.int64() == reader.schema.field("extra").type
    table = reader.read_all()
    assert reader.schema == table.schema
    assert _expected() == arrow_rows(table)


def test_reader_column_after_the_look_ahead_is_an_error_naming_it(files):
    """A column first seen after the look-ahead is an error naming it, never dropped."""
    reader = headwater.record_batch_reader(files, "events.jsonl", infer_rows=1)
    assert "extra" not in reader.schema.names
    with pytest.raises(ConfigError) as info:
        reader.read_all()
    assert info.value.field in {"score", "doc", "extra"}
    assert "schema=" in (info.value.hint or "")


def test_reader_with_a_given_schema(files):
    """schema= fixes the reader's schema: every batch is brought to it."""
    schema = pa.schema(
        [
            ("id", pa.int64()),
            ("name", pa.string()),
            ("score", pa.float64()),
            pa.field("doc", pa.string(), metadata=JSON_FIELD_METADATA),
            ("extra", pa.int64()),
        ]
    )
    reader = headwater.record_batch_reader(files, "events.jsonl", schema=schema, infer_rows=1)
    assert schema == reader.schema
    assert _expected() == arrow_rows(reader.read_all())


def test_given_schema_missing_a_column_is_an_error(files):
    """A schema without a column the stream has: an error naming that column."""
    schema = pa.schema([("id", pa.int64()), ("name", pa.string()), ("score", pa.float64())])
    with pytest.raises(ConfigError) as info:
        headwater.to_arrow(files, "events.jsonl", schema=schema)
    assert "doc" == info.value.field


def test_reader_is_lazy(tmp_path):
    """The reader pulls batches from the connector only as it is consumed."""
    (tmp_path / "n.jsonl").write_text("".join(json.dumps({"i": i}) + "\n" for i in range(1000)))
    pulled: list[int] = []

    class Counting(FilesConnector):
        def read(self, stream, state=None, *, batch_size=None, **options):
            for batch in super().read(stream, state, batch_size=batch_size, **options):
                pulled.append(len(batch))
                yield batch

    reader = headwater.record_batch_reader(
        Counting({"root": tmp_path, "batch_size": 10}), "n.jsonl", infer_rows=10
    )
    assert 1 == len(pulled)
    first = reader.read_next_batch()
    assert list(range(10)) == first.column("i").to_pylist()
    assert len(pulled) <= 2
    assert sum(range(10, 1000)) == sum(sum(b.column("i").to_pylist()) for b in reader)
    assert 100 == len(pulled)


def test_limit(files):
    """limit= stops after exactly that many records, mid-batch."""
    table = headwater.to_arrow(files, "events.jsonl", limit=4)
    assert [1, 2, 3, 4] == table.column("id").to_pylist()
    assert 5 == headwater.record_batch_reader(files, "events.jsonl", limit=5).read_all().num_rows
    with pytest.raises(ConfigError):
        headwater.to_arrow(files, "events.jsonl", limit=0)


def test_state_resumes(files):
    """state= from a batch of the connector's read gives exactly the records after it."""
    first = next(files.read("events.jsonl"))
    table = headwater.to_arrow(files, "events.jsonl", state=first.state)
    assert [4, 5, 6, 7] == table.column("id").to_pylist()


def test_arrow_batches_pass_untouched(tmp_path):
    """A Parquet file's Arrow batches reach the reader as they are (schema and values)."""
    import pyarrow.parquet as pq

    schema = pa.schema([("k", pa.int32()), ("v", pa.decimal128(5, 2)), ("t", pa.large_string())])
    source = pa.table(
        {
            "k": pa.array([1, None, 3], pa.int32()),
            "v": pa.array([None, None, None], pa.decimal128(5, 2)),
            "t": pa.array(["x", None, ""], pa.large_string()),
        },
        schema=schema,
    )
    pq.write_table(source, tmp_path / "t.parquet")
    files = FilesConnector({"root": tmp_path})
    reader = headwater.record_batch_reader(files, "t.parquet")
    assert schema == reader.schema
    assert source == reader.read_all()
    assert source == headwater.to_arrow(files, "t.parquet")


def test_csv_values_stay_text(tmp_path):
    """CSV fields are text as the file holds them; an unquoted empty field is NULL."""
    (tmp_path / "c.csv").write_text('a,b\n1,""\n2,\n')
    table = headwater.to_arrow(FilesConnector({"root": tmp_path}), "c.csv")
    assert [{"a": "1", "b": ""}, {"a": "2", "b": None}] == table.to_pylist()


def test_a_path_source_and_an_empty_stream(tmp_path):
    """A local file path is a source (connector opened and closed here); empty → no rows."""
    path = tmp_path / "e.jsonl"
    path.write_text("")
    assert 0 == headwater.to_arrow(path).num_rows
    path.write_text('{"a": 1}\n')
    assert [{"a": 1}] == headwater.to_arrow(str(path)).to_pylist()
    reader = headwater.record_batch_reader(path)
    assert [{"a": 1}] == reader.read_all().to_pylist()
    del reader
    gc.collect()


def test_to_pandas_arrow_dtypes(files):
    """to_pandas gives Arrow-backed dtypes, NULL as NA (not NaN), values as the records."""
    pd = pytest.importorskip("pandas")
    frame = headwater.to_pandas(files, "events.jsonl")
    assert COLUMNS == list(frame.columns)
    assert all(isinstance(dtype, pd.ArrowDtype) for dtype in frame.dtypes)
    assert pd.ArrowDtype(pa.float64()) == frame.dtypes["score"]
    assert [None, None, None, 1.5, -2.0, None, 0.25] == pa.array(frame["score"]).to_pylist()
    back = pa.Table.from_pandas(frame, preserve_index=False)
    assert _expected() == [
        {**row, "doc": None if row["doc"] is None else json.loads(row["doc"])}
        for row in back.to_pylist()
    ]


def test_to_polars(files):
    """to_polars gives the same records (JSON columns as their text)."""
    pl = pytest.importorskip("polars")
    frame = headwater.to_polars(files, "events.jsonl")
    assert isinstance(frame, pl.DataFrame)
    assert COLUMNS == frame.columns
    assert pl.Float64 == frame.schema["score"]
    assert _expected() == [
        {**row, "doc": None if row["doc"] is None else json.loads(row["doc"])}
        for row in frame.to_dicts()
    ]


@pytest.mark.parametrize(("function", "extra"), [("to_pandas", "pandas"), ("to_polars", "polars")])
def test_missing_extra_names_it(files, monkeypatch, function, extra):
    """Without pandas / polars installed, a ConfigError names the extra to install."""
    monkeypatch.setitem(sys.modules, extra, None)
    with pytest.raises(ConfigError) as info:
        getattr(headwater, function)(files, "events.jsonl")
    assert f"pip install 'headwater[{extra}]'" == info.value.hint


def test_duckdb_reads_the_reader(files):
    """DuckDB runs SQL over the reader (a replacement scan of the Python variable)."""
    duckdb = pytest.importorskip("duckdb")
    reader = headwater.record_batch_reader(files, "events.jsonl")
    assert reader is not None
    found = duckdb.sql(
        "SELECT count(*), sum(extra), count(score), min(name) FROM reader"
    ).fetchall()
    assert [(7, 10 + 2**40, 3, "")] == found


async def test_async_twins_give_what_the_sync_calls_give(files):
    """ato_arrow / ato_pandas / ato_polars: the same tables, the read off the event loop."""
    import threading

    pd = pytest.importorskip("pandas")
    pytest.importorskip("polars")
    loop_thread = threading.current_thread().name
    seen: list[str] = []
    original = FilesConnector.read

    def read(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(threading.current_thread().name)
        return original(self, *args, **kwargs)

    FilesConnector.read = read  # type: ignore[method-assign]
    try:
        table = await headwater.ato_arrow(files, "events.jsonl")
        frame = await headwater.ato_pandas(files, "events.jsonl")
        polars_frame = await headwater.ato_polars(files, "events.jsonl")
    finally:
        FilesConnector.read = original  # type: ignore[method-assign]
    assert headwater.to_arrow(files, "events.jsonl").equals(table)
    pd.testing.assert_frame_equal(headwater.to_pandas(files, "events.jsonl"), frame)
    assert headwater.to_polars(files, "events.jsonl").equals(polars_frame)
    assert 3 == len(seen)
    assert loop_thread not in seen
    assert "ato_pandas" == headwater.ato_pandas.__name__

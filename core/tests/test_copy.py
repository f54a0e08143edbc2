"""`headwater.copy` into file sinks: formats, resume, schema drift, never truncating first."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import headwater
from headwater import Batch, Capability, Connector, ConnectorConfig
from headwater._builtin.files_connector import FilesConnector


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def source(tmp_path: Path) -> FilesConnector:
    root = tmp_path / "src"
    root.mkdir()
    write_jsonl(root / "events.jsonl", [{"id": i, "name": f"n{i}"} for i in range(25)])
    return FilesConnector({"root": root})


class Listed(Connector[ConnectorConfig]):
    """A connector over batches given in the test (types that JSON Lines cannot show)."""

    id = "listed"
    Config = ConnectorConfig
    capabilities = frozenset({Capability.READ, Capability.RESUME})

    def __init__(self, batches: list[list[dict[str, Any]]]) -> None:
        super().__init__({})
        self.batches = batches

    def read(self, stream, state=None, *, batch_size=None, **options):  # type: ignore[no-untyped-def]
        start = state["next"] if state else 0
        for index in range(start, len(self.batches)):
            yield Batch(stream, self.batches[index], {"next": index + 1})


@pytest.mark.parametrize("name", ["out.jsonl", "out.csv", "out.jsonl.gz", "out.csv.zst"])
def test_copy_to_file_then_resume_continues_the_same_file(tmp_path, source, name):
    """A copy stopped at a limit and run again with its state ends with every record once."""
    pytest.importorskip("zstandard") if name.endswith(".zst") else None
    out, state = tmp_path / name, tmp_path / "copy.state"
    first = headwater.copy(source, "events.jsonl", out, state_file=state, limit=10, batch_size=3)
    assert 10 == first.records
    second = headwater.copy(source, "events.jsonl", out, state_file=state, batch_size=3)
    assert 15 == second.records
    records = list(FilesConnector({"root": tmp_path}).read(name))
    rows = [row for batch in records for row in batch.rows()]
    assert list(range(25)) == [int(r["id"]) for r in rows]
    assert 25 == json.loads(state.read_text())["records"]


def test_parquet_limit_then_resume_holds_every_row_once(tmp_path, source):
    """The Parquet file of a limited copy is continued, not rewritten from the resume point."""
    pq = pytest.importorskip("pyarrow.parquet")
    out, state = tmp_path / "out.parquet", tmp_path / "s.json"
    headwater.copy(source, "events.jsonl", out, state_file=state, limit=10, batch_size=4)
    assert list(range(10)) == pq.read_table(out).column("id").to_pylist()
    headwater.copy(source, "events.jsonl", out, state_file=state, batch_size=4)
    assert list(range(25)) == pq.read_table(out).column("id").to_pylist()
    assert not list(tmp_path.glob(".out.parquet*")), "staging files left behind"


def test_parquet_schema_unifies_across_batches(tmp_path):
    """All-NULL then typed, growing decimal precision, a new column: one file, every value."""
    pq = pytest.importorskip("pyarrow.parquet")
    batches = [
        [{"id": 1, "maybe": None, "amount": Decimal("1.5")}],
        [{"id": 2, "maybe": 7, "amount": Decimal("12345.125")}],
        [{"id": 3, "maybe": None, "amount": Decimal("2"), "extra": "new"}],
    ]
    out = tmp_path / "drift.parquet"
    assert 3 == headwater.copy(Listed(batches), "s", out).records
    table = pq.read_table(out)
    assert [
        {"id": 1, "maybe": None, "amount": Decimal("1.5"), "extra": None},
        {"id": 2, "maybe": 7, "amount": Decimal("12345.125"), "extra": None},
        {"id": 3, "maybe": None, "amount": Decimal("2"), "extra": "new"},
    ] == table.to_pylist()


def test_parquet_incompatible_types_fail_naming_the_column(tmp_path):
    """A column that changes to a type with no common Arrow type fails, naming it; no file."""
    pytest.importorskip("pyarrow")
    out = tmp_path / "bad.parquet"
    batches = [[{"id": 1, "v": 1}], [{"id": 2, "v": "text"}]]
    with pytest.raises(headwater.ConfigError, match="'v'"):
        headwater.copy(Listed(batches), "s", out)
    assert not out.exists()
    assert not list(tmp_path.iterdir()), "temporary files left behind"


def test_json_values_are_kept_as_json_text_in_parquet(tmp_path):
    """Objects and lists of varying shape are stored as JSON text, marked as JSON."""
    pq = pytest.importorskip("pyarrow.parquet")
    batches = [[{"j": {"a": 1}}, {"j": [1, {"b": None}]}, {"j": None}], [{"j": {"c": "x"}}]]
    out = tmp_path / "j.parquet"
    headwater.copy(Listed(batches), "s", out)
    table = pq.read_table(out)
    assert [{"a": 1}, [1, {"b": None}], None, {"c": "x"}] == [
        None if v is None else json.loads(v) for v in table.column("j").to_pylist()
    ]
    assert b"json" == table.schema.field("j").metadata[b"headwater.type"]


def test_csv_header_covers_ragged_records_and_reads_back(tmp_path):
    """Records whose keys differ get one header with every field; headwater reads it back."""
    batches = [[{"id": 1, "a": "x"}, {"id": 2, "b": "y"}, {"id": 3, "a": "", "b": None}]]
    out = tmp_path / "r.csv"
    headwater.copy(Listed(batches), "s", out)
    assert 'id,a,b\n1,x,\n2,,y\n3,"",\n' == out.read_text()
    back = [r for b in FilesConnector({"root": tmp_path}).read("r.csv") for r in b.rows()]
    assert [
        {"id": "1", "a": "x", "b": None},
        {"id": "2", "a": None, "b": "y"},
        {"id": "3", "a": "", "b": None},
    ] == back


def test_csv_new_field_after_the_header_is_an_error_and_nothing_is_left(tmp_path):
    """A field first seen after the header was written fails naming it; no output appears."""
    batches = [[{"id": 1}], [{"id": 2, "late": "x"}]]
    out = tmp_path / "late.csv"
    with pytest.raises(headwater.ConfigError, match="'late'"):
        headwater.copy(Listed(batches), "s", out)
    assert not list(tmp_path.iterdir())


def test_failed_copy_leaves_an_existing_output_untouched(tmp_path, source):
    """An existing output is replaced only by a complete one: a failing read leaves it as it was."""
    out = tmp_path / "keep.jsonl"
    out.write_text("precious\n")
    with pytest.raises(headwater.NotFound):
        headwater.copy(source, "missing.jsonl", out)
    assert "precious\n" == out.read_text()
    assert ["keep.jsonl", "src"] == sorted(p.name for p in tmp_path.iterdir())


def test_copy_replaces_an_existing_output_atomically(tmp_path, source):
    """Without a state, a complete copy replaces the existing file."""
    out = tmp_path / "old.jsonl"
    out.write_text("old\n")
    headwater.copy(source, "events.jsonl", out)
    assert 25 == len(read_jsonl(out))


def test_copy_onto_itself_is_refused(source):
    """Reading a file onto itself is refused before anything is written."""
    path = source.root / "events.jsonl"
    before = path.read_bytes()
    with pytest.raises(headwater.ConfigError, match="onto itself"):
        headwater.copy(source, "events.jsonl", path)
    with pytest.raises(headwater.ConfigError, match="onto itself"):
        headwater.copy(source, "events.jsonl", source, "events.jsonl")
    assert before == path.read_bytes()


def test_resume_cuts_back_what_the_state_does_not_cover(tmp_path, source):
    """Bytes written after the last commit (a crash) are cut before the copy continues."""
    out, state = tmp_path / "o.jsonl", tmp_path / "s.json"
    headwater.copy(source, "events.jsonl", out, state_file=state, limit=5, batch_size=5)
    with out.open("a") as handle:
        handle.write('{"id": 999, "torn": tr')  # what a SIGKILL mid-write leaves
    headwater.copy(source, "events.jsonl", out, state_file=state, batch_size=5)
    assert list(range(25)) == [r["id"] for r in read_jsonl(out)]


def test_interrupted_fresh_copy_resumes_into_its_staging_file(tmp_path, source):
    """A fresh copy that stops before the end leaves the target untouched and resumes."""
    out, state = tmp_path / "t.jsonl", tmp_path / "s.json"
    out.write_text("old\n")
    seen: list[int] = []

    def stop_after_two(count: int) -> None:
        seen.append(count)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        headwater.copy(
            source, "events.jsonl", out, state_file=state, batch_size=4,
            checkpoint_seconds=0, progress=stop_after_two,
        )  # fmt: skip
    assert "old\n" == out.read_text()
    saved = json.loads(state.read_text())
    assert 4 == saved["records"]  # the second batch was not yet durable when interrupted
    headwater.copy(source, "events.jsonl", out, state_file=state, batch_size=4)
    assert list(range(25)) == [r["id"] for r in read_jsonl(out)]


def test_limit_stops_exactly_even_between_batches(tmp_path, source):
    """--limit that does not fall on a batch boundary still stops exactly there."""
    out, state = tmp_path / "l.jsonl", tmp_path / "s.json"
    headwater.copy(source, "events.jsonl", out, state_file=state, limit=7, batch_size=5)
    assert list(range(7)) == [r["id"] for r in read_jsonl(out)]
    assert 7 == json.loads(state.read_text())["source"]["rows"]


def test_compressed_output_is_gzip_from_the_suffix(tmp_path, source):
    """-o x.jsonl.gz writes gzip that the gzip module reads."""
    out = tmp_path / "x.jsonl.gz"
    headwater.copy(source, "events.jsonl", out)
    lines = gzip.decompress(out.read_bytes()).decode().splitlines()
    assert 25 == len(lines)


def test_state_of_an_older_release_is_taken_as_the_source_state(tmp_path, source):
    """A state file holding a bare source state (earlier releases) resumes from it."""
    out, state = tmp_path / "o.jsonl", tmp_path / "s.json"
    first = next(source.read("events.jsonl", batch_size=20))
    state.write_text(json.dumps(first.state))
    headwater.copy(source, "events.jsonl", out, state_file=state)
    assert list(range(20, 25)) == [r["id"] for r in read_jsonl(out)]


async def test_acopy_equals_copy(tmp_path, source):
    """The async twin writes the same file and state as the sync copy."""
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    headwater.copy(source, "events.jsonl", a, state_file=tmp_path / "a.state", batch_size=7)
    result = await headwater.acopy(
        source, "events.jsonl", b, state_file=tmp_path / "b.state", batch_size=7
    )
    assert 25 == result.records
    assert a.read_bytes() == b.read_bytes()


def test_copy_into_a_connector_without_atomic_state_refuses_a_state(tmp_path, source):
    """A resumable copy into a destination that cannot commit state with data is refused."""

    class Sink(Connector[ConnectorConfig]):
        id = "sink"
        Config = ConnectorConfig
        capabilities = frozenset({Capability.WRITE})

        def write(self, stream, batches, **options):  # type: ignore[no-untyped-def]
            return headwater.WriteResult(stream, sum(len(b) for b in batches))

    with pytest.raises(headwater.ConfigError, match="twice"):
        headwater.copy(source, "events.jsonl", Sink({}), "x", state_file=tmp_path / "s")
    assert 25 == headwater.copy(source, "events.jsonl", Sink({}), "x").records


def test_a_state_of_another_stream_is_refused(tmp_path, source):
    """A state file kept for one stream is not silently applied to another."""
    write_jsonl(source.root / "other.jsonl", [{"id": 1}])
    state = tmp_path / "s.json"
    headwater.copy(source, "events.jsonl", tmp_path / "a.jsonl", state_file=state)
    with pytest.raises(headwater.ConfigError, match=r"'events\.jsonl', not 'other\.jsonl'"):
        headwater.copy(source, "other.jsonl", tmp_path / "b.jsonl", state_file=state)
    assert not (tmp_path / "b.jsonl").exists()


def test_connectors_opened_by_copy_are_closed_when_it_fails(tmp_path, monkeypatch):
    """A copy that opens its source itself closes it, also when the destination is refused."""
    closed: list[str] = []
    original = FilesConnector.release
    monkeypatch.setattr(
        FilesConnector, "release", lambda self: closed.append(self.id) or original(self)
    )
    (tmp_path / "x.jsonl").write_text('{"a": 1}\n')
    with pytest.raises(headwater.ConfigError, match="cannot tell the record format"):
        headwater.copy(tmp_path / "x.jsonl", None, tmp_path / "x.unknown")
    assert ["files"] == closed


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_an_output_name_near_the_file_system_limit_can_be_written(tmp_path, source, suffix):
    """Staging names stay short: a 250-byte output name is written and resumed."""
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    out = tmp_path / ("n" * (250 - len(suffix)) + suffix)
    state = tmp_path / "s.json"
    headwater.copy(source, "events.jsonl", out, state_file=state, limit=5, batch_size=5)
    headwater.copy(source, "events.jsonl", out, state_file=state, batch_size=5)
    rows = [r for b in FilesConnector({"root": tmp_path}).read(out.name) for r in b.rows()]
    assert list(range(25)) == [r["id"] for r in rows]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, "s.json", "src"])


@pytest.mark.parametrize(
    "dest", ["duckdb:///local.db", "duckdb:///out.jsonl", "postgresql://u:pw@db.example/wh"]
)
def test_a_url_destination_without_its_stream_is_refused(tmp_path, source, dest, monkeypatch):
    """A URL is a connector, not a file name: without DEST_STREAM nothing is written
    (it used to become a local path such as ``duckdb:/local.db``)."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(headwater.ConfigError, match="is a URL") as info:
        headwater.copy(source, "events.jsonl", dest)
    assert "dest_stream" == info.value.field
    assert "pw@" not in str(info.value)
    assert ["src"] == sorted(p.name for p in tmp_path.iterdir())


def test_objects_stay_objects_through_parquet_and_back(tmp_path, source):
    """JSON Lines → Parquet → JSON Lines: an object or list comes back as itself (it
    came back as the string of its JSON text, exit 0), the document null apart from NULL."""
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [
        {"id": 1, "o": {"a": [1, 2.5], "b": "x"}},
        {"id": 2, "o": None},
        {"id": 3, "o": [{"c": None}]},
    ]
    root = tmp_path / "src"
    write_jsonl(root / "nested.jsonl", rows)
    headwater.copy(source, "nested.jsonl", root / "nested.parquet")
    assert pq.read_schema(root / "nested.parquet").field("o").metadata == {
        b"headwater.type": b"json"
    }
    headwater.copy(source, "nested.parquet", tmp_path / "back.jsonl")
    assert rows == read_jsonl(tmp_path / "back.jsonl")
    from headwater.formats import JSON_NULL, arrow_rows

    table = headwater.formats.arrow_from_records([{"j": JSON_NULL}, {"j": None}])
    assert [{"j": JSON_NULL}, {"j": None}] == arrow_rows(table)


def test_arrow_values_python_cannot_hold_are_named(tmp_path):
    """A nanosecond timestamp has no Python datetime: a clear error naming the column
    (it was pyarrow's raw ValueError), never a value cut to microseconds."""
    pa = pytest.importorskip("pyarrow")
    batch = pa.record_batch(
        [pa.array([1, 2]), pa.array([1_000_000_001, None], pa.timestamp("ns"))],
        names=["id", "at"],
    )
    with pytest.raises(headwater.ConfigError, match="'at'") as info:
        Batch("s", batch, {}).rows()
    assert "at" == info.value.field
    assert "timestamp[ns]" in str(info.value)


# --- reading one batch ahead -----------------------------------------------------------------


def test_read_ahead_reads_on_one_other_thread_and_closes_there():
    """Made, advanced and closed on one thread that is not the caller's; closed before it returns."""
    import threading

    from headwater.toolkit import read_ahead

    threads: list[str] = []
    closed: list[str] = []

    def read():
        threads.append(threading.current_thread().name)
        try:
            for i in range(100):
                threads.append(threading.current_thread().name)
                yield i
        finally:
            closed.append(threading.current_thread().name)

    ahead = read_ahead(read)
    got = [next(ahead) for _ in range(3)]
    ahead.close()
    assert [0, 1, 2] == got
    assert ["headwater-read-ahead"] == sorted(set(threads + closed))
    # Closed on its thread before close() returned; at most one item was read ahead.
    assert 1 == len(closed)
    assert len(threads) <= 1 + 3 + 2


def test_read_ahead_hands_the_reads_failure_to_the_caller_in_order():
    """Items before a failure arrive first; the failure is the read's own exception."""
    from headwater.toolkit import read_ahead

    failure = headwater.ConnectorError("the server went away")

    def read():
        yield 1
        yield 2
        raise failure

    got: list[int] = []
    with pytest.raises(headwater.ConnectorError) as raised:
        got.extend(read_ahead(read))
    assert [1, 2] == got
    assert raised.value is failure


def test_a_copy_onto_its_own_source_connector_reads_on_the_callers_thread(tmp_path):
    """Source and destination one connector: no read ahead (its read and write never overlap)."""
    import threading

    seen: list[str] = []

    class Both(FilesConnector):
        def read(self, stream, state=None, **options):
            for batch in super().read(stream, state, **options):
                seen.append(threading.current_thread().name)
                yield batch

    (tmp_path / "a.jsonl").write_text('{"x": 1}\n{"x": 2}\n')
    with Both({"root": tmp_path}) as both:
        headwater.copy(both, "a.jsonl", both, "b.jsonl")
        assert {threading.current_thread().name} == set(seen)
        seen.clear()
        headwater.copy(both, "a.jsonl", tmp_path / "c.jsonl")
        assert {"headwater-read-ahead"} == set(seen)
    for copied in ("b.jsonl", "c.jsonl"):
        lines = (tmp_path / copied).read_text().splitlines()
        assert [{"x": 1}, {"x": 2}] == [json.loads(line) for line in lines]

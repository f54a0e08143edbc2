"""The files reference connector: check, list, metadata, read/resume, write, fetch, from_url."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import pytest

import headwater
from headwater import Batch, Category, WriteResult
from headwater._builtin.files_connector import FilesConnector
from headwater.formats import PIECE


def connector(root: Path, **config) -> FilesConnector:
    return FilesConnector({"root": str(root), **config})


def rows_of(batches) -> list[dict]:
    return [row for batch in batches for row in batch.rows()]


def csv_oracle(path: Path) -> list[dict]:
    """What the standard library's DictReader makes of a CSV file (extra cells under _extra)."""
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, restkey="_extra"))


# Quoted multi-line fields, CRLF and LF endings, doubled quotes, unicode (multi-byte, so
# byte offsets differ from character offsets), blank lines, short and long rows.
CSV_BYTES = (
    "id,name,note\r\n"
    '1,Ann,"multi\r\nline"\r\n'
    "\r\n"
    '2,Bö,"say ""hi"""\r\n'
    "3,short\r\n"
    "4,long,x,extra1,extra2\n"
    '5,"comma, inside",ü€😀\n'
    "\n"
    '6,"a\nb\nc",end\n'
    "7,last,no newline"
).encode()

JSONL_BYTES = (
    '{"id": 1, "name": "Ann"}\n'
    "\n"
    "   \n"
    '{"id": 2, "name": "Bö 😀", "nested": {"a": [1, 2]}}\r\n'
    '{"id": 3, "sep": "x\u2028y", "none": null}\n'
    '{"id": 4, "flag": true}'
).encode()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    (data / "sub" / "deeper").mkdir(parents=True)
    (data / "people.csv").write_bytes(CSV_BYTES)
    (data / "events.jsonl").write_bytes(JSONL_BYTES)
    (data / "more.ndjson").write_bytes(b'{"k": 1}\n')
    (data / "notes.txt").write_text("not a stream")
    (data / "sub" / "inner.jsonl").write_text('{"inner": true}\n')
    return data


def synthetic_records(n: int) -> list[dict]:
    return [
        {
            "id": str(i),
            "text": f"row {i} ünïcødé 😀" + ("\nsecond line, with comma" if i % 4 == 0 else ""),
            "quote": 'he said "x"' if i % 3 == 0 else "",
        }
        for i in range(n)
    ]


def write_synthetic(root: Path, n: int = 23) -> list[dict]:
    """Write the same records as CSV (CRLF, blank lines) and JSONL (blank lines); return them."""
    records = synthetic_records(n)
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=["id", "text", "quote"], lineterminator="\r\n")
    writer.writeheader()
    for i, record in enumerate(records):
        writer.writerow(record)
        if i % 5 == 0:
            buffer.write("\r\n")
    (root / "syn.csv").write_bytes(buffer.getvalue().encode())
    lines = []
    for i, record in enumerate(records):
        lines.append(json.dumps(record, ensure_ascii=False))
        if i % 5 == 0:
            lines.append("")
    (root / "syn.jsonl").write_bytes(("\n".join(lines) + "\n").encode())
    return records


# --- check -----------------------------------------------------------------------------------


def test_check_ok_counts_streams(root):
    """check() passes on an existing directory and counts the streams under it."""
    result = connector(root).check()
    assert result.ok is True
    assert result.message.startswith("4 streams under ")


def test_check_missing_root_is_not_found(tmp_path):
    """A missing root is a not_found result naming the root field."""
    result = connector(tmp_path / "missing").check()
    assert (False, Category.NOT_FOUND, "root") == (result.ok, result.category, result.field)
    assert result.hint


def test_check_file_as_root_is_config(tmp_path):
    """A root that is a file is a config result naming the root field."""
    path = tmp_path / "file.csv"
    path.write_text("a\n")
    result = connector(path).check()
    assert (False, Category.CONFIG, "root") == (result.ok, result.category, result.field)


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root can read any directory; permissions are not enforced"
)
def test_check_unreadable_root_is_permission(tmp_path):
    """An unreadable root is a permission result."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        result = connector(locked).check()
    finally:
        locked.chmod(0o700)
    assert (False, Category.PERMISSION, "root") == (result.ok, result.category, result.field)


async def test_acheck_equals_check(root):
    """The async check reports the same as the sync one."""
    conn = connector(root)
    sync, asynchronous = conn.check().to_dict(), (await conn.acheck()).to_dict()
    sync.pop("elapsed")
    asynchronous.pop("elapsed")
    assert sync == asynchronous


# --- list ------------------------------------------------------------------------------------


def test_list_root(root):
    """list() shows directories, streams (with format) and plain files, sorted, with sizes and times."""
    items = list(connector(root).list())
    assert [
        ("events.jsonl", "stream", len(JSONL_BYTES), {"format": "jsonl"}),
        ("more.ndjson", "stream", 9, {"format": "jsonl"}),
        ("notes.txt", "file", 12, {}),
        ("people.csv", "stream", len(CSV_BYTES), {"format": "csv"}),
        ("sub/", "directory", None, {}),
    ] == [(i.name, i.kind, i.size, i.extra) for i in items]
    people = next(i for i in items if i.name == "people.csv")
    mtime = datetime.fromtimestamp((root / "people.csv").stat().st_mtime, tz=UTC)
    assert mtime == people.modified


@pytest.mark.parametrize("path", ["sub", "sub/"])
def test_list_subdirectory(root, path):
    """list(path) shows a subdirectory's entries with names relative to root."""
    items = list(connector(root).list(path))
    assert [("sub/deeper/", "directory"), ("sub/inner.jsonl", "stream")] == [
        (i.name, i.kind) for i in items
    ]


def test_listed_names_can_be_read(root):
    """A stream name from list(path) is accepted by read()."""
    conn = connector(root)
    name = next(i.name for i in conn.list("sub") if i.kind == "stream")
    assert [{"inner": True}] == rows_of(conn.read(name))


def test_list_subdirectory_with_relative_root(root, monkeypatch):
    """A relative root works for list(path) too."""
    monkeypatch.chdir(root.parent)
    items = list(FilesConnector({"root": "data"}).list("sub"))
    assert ["sub/deeper/", "sub/inner.jsonl"] == [i.name for i in items]


def test_list_subdirectory_with_symlinked_root(root):
    """A root reached through a symlink works for list(path) (names stay relative to root)."""
    link = root.parent / "link"
    link.symlink_to(root, target_is_directory=True)
    items = list(connector(link).list("sub"))
    assert ["sub/deeper/", "sub/inner.jsonl"] == [i.name for i in items]


@pytest.mark.parametrize("path", ["..", "../", "sub/../..", "/etc", "sub/../../data"])
def test_list_refuses_paths_escaping_root(root, path):
    """A path that leaves root is refused with a ConfigError."""
    with pytest.raises(headwater.ConfigError):
        list(connector(root).list(path))


@pytest.mark.parametrize("path", ["missing", "people.csv"])
def test_list_of_non_directory_is_not_found(root, path):
    """Listing something that is not a directory under root is NotFound on field path."""
    with pytest.raises(headwater.NotFound) as info:
        list(connector(root).list(path))
    assert "path" == info.value.field


async def test_alist_equals_list(root):
    """alist yields what list yields."""
    conn = connector(root)
    assert list(conn.list("sub")) == [i async for i in conn.alist("sub")]


# --- metadata ------------------------------------------------------------------------------


def test_metadata_csv_columns(root):
    """metadata of a CSV stream gives size, time, format and the header as columns."""
    meta = connector(root).metadata("people.csv")
    stat = (root / "people.csv").stat()
    assert {
        "name": "people.csv",
        "size": stat.st_size,
        "modified": datetime.fromtimestamp(stat.st_mtime, tz=UTC).isoformat(),
        "format": "csv",
        "columns": ["id", "name", "note"],
    } == meta


def test_metadata_jsonl_columns(root):
    """metadata of a JSONL stream lists the first record's keys as columns."""
    meta = connector(root).metadata("events.jsonl")
    assert ("jsonl", ["id", "name"]) == (meta["format"], meta["columns"])


def test_metadata_header_only_csv_columns(root):
    """A CSV with a header and no rows still reports its header as the columns."""
    (root / "empty.csv").write_text("a,b,c\n")
    assert ["a", "b", "c"] == connector(root).metadata("empty.csv")["columns"]


def test_metadata_plain_file(root):
    """A plain file has no format and no columns."""
    meta = connector(root).metadata("notes.txt")
    assert (None, 12) == (meta["format"], meta["size"])
    assert "columns" not in meta


def test_metadata_missing_is_not_found(root):
    """metadata of a missing item is NotFound."""
    with pytest.raises(headwater.NotFound):
        connector(root).metadata("nope.csv")


# --- read ---------------------------------------------------------------------------------


def test_read_csv_matches_stdlib(root):
    """CSV records equal csv.DictReader's: multi-line quoted fields, CRLF, unicode, short/long rows."""
    records = rows_of(connector(root).read("people.csv"))
    assert csv_oracle(root / "people.csv") == records
    assert 7 == len(records)
    assert "multi\r\nline" == records[0]["note"]
    assert 'say "hi"' == records[1]["note"]
    assert {"id": "3", "name": "short", "note": None} == records[2]
    assert ["extra1", "extra2"] == records[3]["_extra"]
    assert "ü€😀" == records[4]["note"]
    assert "a\nb\nc" == records[5]["name"]
    assert {"id": "7", "name": "last", "note": "no newline"} == records[6]


def test_read_jsonl(root):
    """JSONL lines become dicts; blank lines, CRLF endings and U+2028 inside strings are handled."""
    assert [
        {"id": 1, "name": "Ann"},
        {"id": 2, "name": "Bö 😀", "nested": {"a": [1, 2]}},
        {"id": 3, "sep": "x\u2028y", "none": None},
        {"id": 4, "flag": True},
    ] == rows_of(connector(root).read("events.jsonl"))


@pytest.mark.parametrize(
    ("batch_size", "expected"), [(1, [1] * 7), (3, [3, 3, 1]), (7, [7]), (50, [7])]
)
def test_read_batch_sizes(root, batch_size, expected):
    """Batches hold batch_size records, the last one the remainder."""
    batches = list(connector(root).read("people.csv", batch_size=batch_size))
    assert expected == [len(b) for b in batches]


def test_read_default_batch_size_from_config(root):
    """Without batch_size, read uses the config's."""
    batches = list(connector(root, batch_size=2).read("events.jsonl"))
    assert [2, 2] == [len(b) for b in batches]


def test_read_states_track_stream_offset_and_rows(root):
    """Each batch's state names the stream, the byte offset after it and the rows so far."""
    batches = list(connector(root).read("events.jsonl", batch_size=3))
    assert [{"stream": "events.jsonl", "offset": len(JSONL_BYTES), "rows": 4}] == [
        batches[-1].state
    ]
    assert "events.jsonl" == batches[0].stream
    assert JSONL_BYTES.index(b'{"id": 4') == batches[0].state["offset"]


@pytest.mark.parametrize("name", ["empty.csv", "empty.jsonl", "header.csv", "blank.jsonl"])
def test_read_empty_streams(root, name):
    """Empty files, a header-only CSV and a JSONL of blank lines yield no batches."""
    contents = {
        "empty.csv": b"",
        "empty.jsonl": b"",
        "header.csv": b"a,b\r\n",
        "blank.jsonl": b"\n\n \n",
    }
    (root / name).write_bytes(contents[name])
    assert [] == list(connector(root).read(name))


def test_read_missing_stream(root):
    """Reading a missing stream is NotFound on field stream."""
    with pytest.raises(headwater.NotFound) as info:
        list(connector(root).read("nope.jsonl"))
    assert "stream" == info.value.field


@pytest.mark.parametrize("name", ["notes.txt", "../data/people.csv", "/etc/passwd"])
def test_read_refuses_non_streams_and_escapes(root, name):
    """Unsupported suffixes and names leaving root are ConfigErrors."""
    with pytest.raises(headwater.ConfigError):
        list(connector(root).read(name))


def test_read_unknown_option(root):
    """Unknown read options are refused, not ignored."""
    with pytest.raises(headwater.ConfigError, match="columns"):
        list(connector(root).read("people.csv", columns=["id"]))


def test_invalid_json_error_names_byte_offset(root):
    """An invalid JSON line raises a ConfigError with the byte offset of that line."""
    good = b'{"a": 1}\n{"a": "\xc3\xbc"}\n'
    (root / "bad.jsonl").write_bytes(good + b'{"a": oops}\n{"a": 3}\n')
    batches = connector(root).read("bad.jsonl", batch_size=1)
    assert [{"a": 1}, {"a": "ü"}] == [next(batches).rows()[0], next(batches).rows()[0]]
    with pytest.raises(headwater.ConfigError) as info:
        next(batches)
    assert f"bad.jsonl: invalid JSON at byte {len(good)} (line 3):" in str(info.value)
    assert "\n" not in str(info.value)


def test_non_object_json_line_refused(root):
    """A JSON line that is not an object names its offset and type."""
    (root / "arr.jsonl").write_bytes(b'{"a": 1}\n[1, 2]\n')
    with pytest.raises(headwater.ConfigError, match="byte 9 is a JSON list, expected an object"):
        list(connector(root).read("arr.jsonl"))


async def test_aread_equals_read(root):
    """aread yields the same batches as read."""
    conn = connector(root)
    assert list(conn.read("people.csv", batch_size=2)) == [
        b async for b in conn.aread("people.csv", batch_size=2)
    ]


# --- resumption -------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", ["syn.csv", "syn.jsonl", "people.csv", "events.jsonl"])
@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_resume_from_every_batch_yields_exactly_the_rest(root, stream, batch_size):
    """For every batch k, resuming from its state yields exactly the records after it."""
    write_synthetic(root)
    conn = connector(root)
    batches = list(conn.read(stream, batch_size=batch_size))
    everything = rows_of(batches)
    assert -(-len(everything) // batch_size) == len(batches)
    for k, batch in enumerate(batches):
        done = rows_of(batches[: k + 1])
        # A different batch size on resume: the state must not depend on it.
        rest = list(conn.read(stream, batch.state, batch_size=3))
        assert everything[len(done) :] == rows_of(rest)
        assert everything == done + rows_of(rest)
        if rest:
            assert len(everything) == rest[-1].state["rows"]


@pytest.mark.parametrize("stream", ["syn.csv", "syn.jsonl"])
def test_resume_preserves_record_content(root, stream):
    """Records read in resumed pieces equal the records that were written."""
    records = write_synthetic(root)
    conn = connector(root)
    collected, state = [], None
    while True:
        batch = next(conn.read(stream, state, batch_size=4), None)
        if batch is None:
            break
        collected.extend(batch.rows())
        state = batch.state
    if stream.endswith(".csv"):
        # csv.DictWriter writes '' unquoted, which is NULL in CSV (PostgreSQL's convention).
        records = [{k: v if v != "" else None for k, v in r.items()} for r in records]
    assert records == collected


def test_resume_at_end_yields_nothing(root):
    """Resuming from the final state of an unchanged file yields no batches."""
    conn = connector(root)
    last = list(conn.read("people.csv"))[-1]
    assert [] == list(conn.read("people.csv", last.state))


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_append_only_growth_yields_only_new_records(root, fmt):
    """After reading to the end, appended records (and only they) come on resume."""
    path = root / f"log.{fmt}"
    if fmt == "jsonl":
        path.write_bytes(b'{"n": 1}\n{"n": 2}\n')
        extra = b'{"n": 3}\n\n{"n": "vier \xc3\xbc"}\n'
        expected = [{"n": 3}, {"n": "vier ü"}]
    else:
        path.write_bytes(b"n,m\r\n1,a\r\n2,b\r\n")
        extra = b'3,"multi\r\nline"\r\n4,d\r\n'
        expected = [{"n": "3", "m": "multi\r\nline"}, {"n": "4", "m": "d"}]
    conn = connector(root)
    first = list(conn.read(path.name))
    assert 2 == len(rows_of(first))
    with path.open("ab") as handle:
        handle.write(extra)
    resumed = list(conn.read(path.name, first[-1].state))
    assert expected == rows_of(resumed)
    assert 4 == resumed[-1].state["rows"]


def test_state_for_another_stream_refused(root):
    """A state saved for one stream is refused for another, naming the state field."""
    conn = connector(root)
    state = next(conn.read("people.csv")).state
    with pytest.raises(headwater.ConfigError) as info:
        list(conn.read("events.jsonl", state))
    assert "state" == info.value.field


@pytest.mark.parametrize(
    "state", [{"offset": 3}, {"stream": "events.jsonl"}, {"stream": "events.jsonl", "offset": "9"}]
)
def test_malformed_state_refused(root, state):
    """A state without this stream's name or an integer offset is a ConfigError on state."""
    with pytest.raises(headwater.ConfigError) as info:
        list(connector(root).read("events.jsonl", state))
    assert "state" == info.value.field


def test_state_past_end_of_truncated_file_refused(root):
    """A state whose offset lies past the end (file truncated or replaced) is refused."""
    conn = connector(root)
    state = list(conn.read("events.jsonl"))[-1].state
    (root / "events.jsonl").write_bytes(b'{"id": 1}\n')
    with pytest.raises(headwater.ConfigError) as info:
        list(conn.read("events.jsonl", state))
    assert "state" == info.value.field
    assert "past the end" in str(info.value)


def test_read_memory_stays_bounded(tmp_path):
    """Reading a ~50 MB JSONL file in batches of 1000 keeps the traced peak under 10 MB."""
    path = tmp_path / "big.jsonl"
    pad = "x" * 1000
    with path.open("w") as handle:
        for start in range(0, 50_000, 1000):
            handle.write(
                "".join(f'{{"id": {i}, "pad": "{pad}"}}\n' for i in range(start, start + 1000))
            )
    size = path.stat().st_size
    assert size > 50_000_000
    conn = connector(tmp_path)
    count = 0
    tracemalloc.start()
    try:
        for batch in conn.read("big.jsonl", batch_size=1000):
            count += len(batch)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 50_000 == count
    assert peak < 10_000_000


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz", ".zst"])
def test_a_file_that_compresses_a_thousandfold_is_read_in_bounded_memory(tmp_path, suffix):
    """
    120 MB of JSON Lines of one repeated line, which compress 100 to 1,000 times, are
    read holding a few decompressed pieces of bounded size, not the file nor as much as
    one stored chunk inflates to (126-272 MB before pieces were bounded).
    """
    import bz2
    import gzip
    import lzma

    zstandard = pytest.importorskip("zstandard") if suffix == ".zst" else None
    compress = {
        ".gz": lambda data: gzip.compress(data, compresslevel=1),
        ".bz2": bz2.compress,
        ".xz": lambda data: lzma.compress(data, preset=0),
        ".zst": lambda data: zstandard.ZstdCompressor().compress(data),
    }[suffix]
    pad = "x" * 1000
    data = "".join(f'{{"id": {i}, "pad": "{pad}"}}\n' for i in range(120_000)).encode()
    stored = compress(data)
    assert len(stored) * 50 < len(data)
    (tmp_path / f"big.jsonl{suffix}").write_bytes(stored)
    del data, stored
    conn = connector(tmp_path)
    count = 0
    tracemalloc.start()
    try:
        for batch in conn.read(f"big.jsonl{suffix}", batch_size=1000):
            assert list(range(count, count + len(batch))) == [r["id"] for r in batch.rows()]
            count += len(batch)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert 120_000 == count
    # At most: the piece being decoded, the one decoded ahead, the one being made (twice
    # while CPython joins its blocks), each at most PIECE bytes, and a batch.
    assert peak < 5 * PIECE + 8_000_000, f"peak {peak} bytes reading 120 MB"


# --- write ----------------------------------------------------------------------------------


def test_write_jsonl_round_trip(root):
    """Batches and plain lists written to JSONL read back unchanged (types kept)."""
    records = [
        {"id": 1, "name": "Ann", "tags": ["a"]},
        {"id": 2, "name": "Bö", "x": None},
        {"id": 3},
    ]
    conn = connector(root)
    result = conn.write("out/new.jsonl", [Batch("src", records[:2], {}), records[2:]])
    assert WriteResult("out/new.jsonl", 3) == result
    assert records == rows_of(conn.read("out/new.jsonl"))


def test_write_csv_round_trip(root):
    """Records written to CSV read back as strings; None stays NULL, '' stays ''; tricky text survives."""
    records = [
        {"id": 1, "text": 'multi\nline, "quoted"', "n": None},
        {"id": 2, "text": "", "n": 2.5},
        {"id": 3, "text": "ü😀", "n": None},
    ]
    conn = connector(root)
    assert 3 == conn.write("new.csv", [records]).records
    assert [
        {"id": "1", "text": 'multi\nline, "quoted"', "n": None},
        {"id": "2", "text": "", "n": "2.5"},
        {"id": "3", "text": "ü😀", "n": None},
    ] == rows_of(conn.read("new.csv"))


def test_write_create_refuses_existing(root):
    """mode=create (the default) refuses an existing stream and leaves it alone."""
    with pytest.raises(headwater.AlreadyExists):
        connector(root).write("events.jsonl", [[{"id": 9}]])
    assert JSONL_BYTES == (root / "events.jsonl").read_bytes()


def failing_batches(count: int = 3000):
    """Enough rows to pass the CSV writer's buffer, then a failure; columns fit people.csv."""
    yield [{"id": str(i), "name": "n", "note": "x" * 50} for i in range(count)]
    raise RuntimeError("source failed midway")


@pytest.mark.parametrize("name", ["events.jsonl", "people.csv"])
def test_overwrite_is_atomic(root, name):
    """A failing overwrite leaves the original file intact and no temporary file behind."""
    original = (root / name).read_bytes()
    before = sorted(p.name for p in root.iterdir())
    conn = connector(root)
    with pytest.raises(RuntimeError, match="midway"):
        conn.write(name, failing_batches(), mode="overwrite")
    assert original == (root / name).read_bytes()
    assert before == sorted(p.name for p in root.iterdir())


def test_overwrite_replaces(root):
    """A successful overwrite replaces the content."""
    conn = connector(root)
    conn.write("events.jsonl", [[{"id": 9}]], mode="overwrite")
    assert [{"id": 9}] == rows_of(conn.read("events.jsonl"))


def test_create_failing_midway_leaves_nothing(root):
    """A failing create leaves no file at all."""
    before = sorted(p.name for p in root.iterdir())
    with pytest.raises(RuntimeError):
        connector(root).write("fresh.jsonl", failing_batches())
    assert before == sorted(p.name for p in root.iterdir())


def test_append_jsonl(root):
    """Append adds records after the existing ones."""
    conn = connector(root)
    assert 2 == conn.write("more.ndjson", [[{"k": 2}], [{"k": 3}]], mode="append").records
    assert [{"k": 1}, {"k": 2}, {"k": 3}] == rows_of(conn.read("more.ndjson"))


def test_append_csv_follows_existing_header(root):
    """Appending to a CSV writes no second header and orders fields by the existing header."""
    (root / "t.csv").write_bytes(b"a,b\n1,2\n")
    conn = connector(root)
    conn.write("t.csv", [[{"b": "4", "a": "3"}, {"a": "5"}]], mode="append")
    assert b"a,b\n1,2\n3,4\n5,\n" == (root / "t.csv").read_bytes()


def test_append_to_missing_creates(root):
    """mode=append on a missing stream creates it."""
    conn = connector(root)
    conn.write("new.csv", [[{"a": 1}]], mode="append")
    assert [{"a": "1"}] == rows_of(conn.read("new.csv"))


@pytest.mark.parametrize("name", ["events.jsonl", "people.csv"])
def test_append_failing_midway_truncates_back(root, name):
    """An append that fails midway restores the file to its original bytes."""
    original = (root / name).read_bytes()
    with pytest.raises(RuntimeError, match="midway"):
        connector(root).write(name, failing_batches(), mode="append")
    assert original == (root / name).read_bytes()


def test_csv_header_mismatch_on_create(root):
    """
    The header covers every field of the first batch; a later record with a new field is
    a ConfigError naming it, and nothing is left.
    """
    conn = connector(root)
    conn.write("u.csv", [[{"a": 1, "b": 2}, {"a": 1, "c": 3}]])
    assert [{"a": "1", "b": "2", "c": None}, {"a": "1", "b": None, "c": "3"}] == rows_of(
        conn.read("u.csv")
    )
    with pytest.raises(headwater.ConfigError, match=r"record 3 has field 'd'"):
        conn.write("h.csv", [[{"a": 1, "b": 2}, {"a": 1}], [{"a": 1, "d": 3}]])
    assert not (root / "h.csv").exists()


def test_csv_header_mismatch_on_append(root):
    """Appending a field the existing header lacks fails and leaves the file unchanged."""
    with pytest.raises(headwater.ConfigError, match="not in the CSV header"):
        connector(root).write("people.csv", [[{"id": "8", "colour": "red"}]], mode="append")
    assert CSV_BYTES == (root / "people.csv").read_bytes()


def test_write_bad_mode_and_option(root):
    """An unknown mode names the mode field; unknown options are refused."""
    conn = connector(root)
    with pytest.raises(headwater.ConfigError) as info:
        conn.write("x.jsonl", [[{"a": 1}]], mode="upsert")
    assert "mode" == info.value.field
    with pytest.raises(headwater.ConfigError, match="compression"):
        conn.write("x.jsonl", [[{"a": 1}]], compression="gzip")


@pytest.mark.parametrize("name", ["../escape.jsonl", "/tmp/abs.jsonl", "x.txt"])
def test_write_refuses_bad_names(root, name):
    """Writing outside root or to an unsupported suffix is refused and writes nothing."""
    before = sorted(p.name for p in root.parent.iterdir())
    with pytest.raises(headwater.ConfigError):
        connector(root).write(name, [[{"a": 1}]])
    assert before == sorted(p.name for p in root.parent.iterdir())


async def test_awrite_from_async_iterable(root):
    """awrite streams an async iterable into a file."""

    async def produce():
        for i in range(5):
            yield [{"i": i}]

    conn = connector(root)
    assert 5 == (await conn.awrite("async.jsonl", produce())).records
    assert [{"i": i} for i in range(5)] == rows_of(conn.read("async.jsonl"))


# --- fetch ---------------------------------------------------------------------------------


def test_fetch_copies_with_checksum(root, tmp_path):
    """fetch copies the bytes to dest/<name>, with size and a verified sha256."""
    data = os.urandom(1 << 20) * 2 + b"tail"  # several read chunks
    (root / "sub" / "blob.bin").write_bytes(data)
    result = connector(root).fetch("sub/blob.bin", tmp_path / "dest")
    assert tmp_path / "dest" / "sub" / "blob.bin" == result.path
    assert data == result.path.read_bytes()
    assert (len(data), f"sha256:{hashlib.sha256(data).hexdigest()}", True) == (
        result.size,
        result.checksum,
        result.verified,
    )


def test_fetch_refuses_overwrite_when_asked(root, tmp_path):
    """overwrite=False refuses an existing target and leaves it; overwrite=True replaces it."""
    target = tmp_path / "people.csv"
    target.write_bytes(b"old")
    conn = connector(root)
    with pytest.raises(headwater.AlreadyExists):
        conn.fetch("people.csv", tmp_path, overwrite=False)
    assert b"old" == target.read_bytes()
    conn.fetch("people.csv", tmp_path)
    assert CSV_BYTES == target.read_bytes()


def test_fetch_is_atomic(root, tmp_path, monkeypatch):
    """If the copy fails before the rename, the old target stays and no temp file is left."""
    dest = tmp_path / "dest"
    dest.mkdir()
    target = dest / "people.csv"
    target.write_bytes(b"old")

    def disk_failure(fd):
        raise OSError(5, "simulated I/O error")

    monkeypatch.setattr(os, "fsync", disk_failure)
    with pytest.raises(OSError, match="simulated"):
        connector(root).fetch("people.csv", dest)
    assert b"old" == target.read_bytes()
    assert ["people.csv"] == [p.name for p in dest.iterdir()]


@pytest.mark.parametrize(
    ("item", "error"),
    [
        ("nope.csv", headwater.NotFound),
        ("../x.csv", headwater.ConfigError),
        ("sub", headwater.NotFound),
    ],
)
def test_fetch_bad_items(root, tmp_path, item, error):
    """Missing items, directories and names escaping root are refused; dest stays empty."""
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(error):
        connector(root).fetch(item, dest)
    assert [] == list(dest.iterdir())


async def test_afetch_equals_fetch(root, tmp_path):
    """afetch gives the same bytes and checksum as fetch."""
    conn = connector(root)
    sync = conn.fetch("events.jsonl", tmp_path / "a")
    asynchronous = await conn.afetch("events.jsonl", tmp_path / "b")
    assert (sync.size, sync.checksum) == (asynchronous.size, asynchronous.checksum)
    assert sync.path.read_bytes() == asynchronous.path.read_bytes()


# --- from_url -------------------------------------------------------------------------------


def test_from_url(root):
    """file:// URLs (also with localhost and percent-escapes) root the connector; overrides apply."""
    spaced = root.parent / "my data"
    spaced.mkdir()
    conn = FilesConnector.from_url(f"file://{root}", batch_size=5)
    assert (root, 5) == (conn.config.root, conn.config.batch_size)
    assert root == FilesConnector.from_url(f"file://localhost{root}").config.root
    quoted = str(spaced).replace(" ", "%20")
    assert spaced == FilesConnector.from_url(f"file://{quoted}").config.root
    assert conn.check().ok


@pytest.mark.parametrize(
    "url", ["http://example.com/data", "file://otherhost/data", "s3://bucket/x"]
)
def test_from_url_refuses_non_local(url):
    """Non-file and remote-host URLs are ConfigErrors on field root."""
    with pytest.raises(headwater.ConfigError) as info:
        FilesConnector.from_url(url)
    assert "root" == info.value.field


def test_config_validation(tmp_path):
    """Bad config values are one-line ConfigErrors naming the field."""
    for data, field in [
        ({"root": str(tmp_path), "batch_size": 0}, "batch_size"),
        ({"root": str(tmp_path), "delimiter": ";;"}, "delimiter"),
        ({"root": str(tmp_path), "encoding": "klingon-8"}, "encoding"),
        ({}, "root"),
    ]:
        with pytest.raises(headwater.ConfigError) as info:
            FilesConnector(data)
        assert field == info.value.field


def test_semicolon_delimiter_and_latin1(tmp_path):
    """delimiter and encoding settings apply to reading and writing CSV."""
    (tmp_path / "l.csv").write_bytes("a;b\nü;ß\n".encode("latin-1"))
    conn = connector(tmp_path, delimiter=";", encoding="latin-1")
    assert [{"a": "ü", "b": "ß"}] == rows_of(conn.read("l.csv"))
    conn.write("l.csv", [[{"a": "é", "b": "x"}]], mode="append")
    assert "a;b\nü;ß\né;x\n".encode("latin-1") == (tmp_path / "l.csv").read_bytes()


def test_csv_with_a_bom_reads_its_first_column_name(tmp_path):
    """A CSV saved as 'CSV UTF-8' (a byte-order mark first) reads `id`, not `\\ufeffid`."""
    with (tmp_path / "excel.csv").open("w", encoding="utf-8-sig", newline="") as handle:
        csv.writer(handle).writerows([["id", "name"], ["1", "a"], ["2", "b"]])
    rows = rows_of(connector(tmp_path).read("excel.csv"))
    assert [{"id": "1", "name": "a"}, {"id": "2", "name": "b"}] == rows
    assert ["id", "name"] == connector(tmp_path).metadata("excel.csv")["columns"]


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz", ".zst"])
def test_compressed_streams_read_and_resume_exactly(tmp_path, suffix):
    """events.jsonl.gz (and .bz2, .xz, .zst) read by suffix; every state resumes exactly."""
    import bz2
    import gzip
    import lzma

    zstandard = pytest.importorskip("zstandard") if suffix == ".zst" else None
    compress = {
        ".gz": gzip.compress,
        ".bz2": bz2.compress,
        ".xz": lzma.compress,
        ".zst": lambda data: zstandard.ZstdCompressor().compress(data),
    }[suffix]
    records = synthetic_records(57)
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
    (tmp_path / f"events.jsonl{suffix}").write_bytes(compress(data))
    conn = connector(tmp_path)
    stream = f"events.jsonl{suffix}"
    batches = list(conn.read(stream, batch_size=10))
    assert records == [row for b in batches for row in b.rows()]
    for index, batch in enumerate(batches):
        assert records[10 * (index + 1) :] == rows_of(conn.read(stream, batch.state))
    listed = {item.name: item for item in conn.list()}
    assert "stream" == listed[stream].kind


def test_json_text_read_option_gives_documents_as_written(tmp_path):
    """read(json_text=[...]) keeps those fields' JSON text; a resumed read does too."""
    from headwater.formats import JsonText

    (tmp_path / "e.jsonl").write_bytes(
        b'{"id": 1, "doc": {"a": 2.50, "a": 1}}\n{"id": 2, "doc": null}\n{"id": 3, "doc": 1e400}\n'
    )
    files = FilesConnector({"root": tmp_path})
    first, *rest = files.read("e.jsonl", json_text=["doc"], batch_size=1)
    assert JsonText('{"a": 2.50, "a": 1}') == first.records[0]["doc"]
    assert type(first.records[0]["doc"]) is JsonText
    resumed = [
        r["doc"] for b in files.read("e.jsonl", first.state, json_text=["doc"]) for r in b.records
    ]
    assert [None, "1e400"] == resumed == [b.records[0]["doc"] for b in rest]
    with pytest.raises(headwater.ConfigError, match="json_text") as info:
        list(files.read("e.jsonl", json_text="doc"))
    assert "json_text" == info.value.field


def test_copy_into_a_json_column_asks_the_source_for_json_text(tmp_path):
    """copy asks a json_text source for the destination's json_fields (here: a stub dest)."""
    from headwater import Capability, Connector, ConnectorConfig

    (tmp_path / "e.jsonl").write_bytes(b'{"id": 1, "doc": {"n": 2.50}}\n')
    received: list[dict] = []

    class Dest(Connector[ConnectorConfig]):
        id = "dest-stub"
        Config = ConnectorConfig
        capabilities = frozenset({Capability.WRITE})

        def json_fields(self, stream):
            return frozenset({"doc"})

        def write(self, stream, batches, **options):
            for batch in batches:
                received.extend(batch.records)
            return WriteResult(stream=stream, records=len(received))

    headwater.copy(tmp_path / "e.jsonl", None, Dest({}), "t")
    assert [{"id": 1, "doc": '{"n": 2.50}'}] == received

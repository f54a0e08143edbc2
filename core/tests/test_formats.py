"""The shared format layer: encoders and decoders agree, NULL and '' stay apart, compression."""

from __future__ import annotations

import bz2
import datetime as dt
import gzip
import itertools
import json
import lzma
import math
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from headwater import ConfigError
from headwater import formats as f

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=10,
)
records = st.lists(st.dictionaries(st.text(max_size=6), values, max_size=5), max_size=20)


def _same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN (what a JSON round trip must keep)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _decode(fmt: str, data: bytes, **kwargs: Any) -> list[dict[str, Any]]:
    return [r for r, _ in f.decode_stream(f.make_decoder(fmt, "t", **kwargs), [data])]


@settings(max_examples=300, deadline=None)
@given(records)
def test_json_lines_round_trip_is_exact(rows):
    """Whatever the fast path takes, the lines read back as the same values (NaN included)."""
    data = f.JsonLinesEncoder().encode(rows)
    assert len(rows) == len(data.splitlines())
    back = _decode("jsonl", data)
    assert all(_same(a, b) for a, b in zip(rows, back, strict=True))


def test_json_lines_fast_and_stdlib_paths_agree_on_typed_values():
    """Decimal, datetimes, UUID and bytes come out the same from both paths."""
    rows = [
        {
            "n": Decimal("12345678901234567890.123"),
            "t": dt.datetime(2024, 1, 1, 12, 0, 0, 500, tzinfo=dt.UTC),
            "d": dt.date(2020, 2, 29),
            "u": uuid.UUID(int=7),
            "b": b"\x00\x01\xff",
            "big": 2**70,
            "x": 1e16,
        }
    ]
    fast = f.JsonLinesEncoder()
    slow = f.JsonLinesEncoder()
    slow._fast = False
    assert [json.loads(line) for line in fast.encode(rows).splitlines()] == [
        json.loads(line) for line in slow.encode(rows).splitlines()
    ]
    assert b'"n":"12345678901234567890.123"' in fast.encode(rows)


@pytest.mark.parametrize(
    "row",
    [{"x": math.nan}, {"l": [1.0, math.inf]}, {"t": (1, -math.inf)}, {"o": {"a": {"b": math.nan}}}],
)
def test_non_finite_floats_are_never_written_as_null(row):
    """orjson writes NaN as null; such batches take the exact path."""
    data = f.JsonLinesEncoder().encode([row])
    assert b"null" not in data
    assert _same(json.loads(json.dumps(row)), _decode("jsonl", data)[0])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {"a": st.none() | st.text(), "b": st.none() | st.text(), "c": st.none() | st.text()}
        ),
        min_size=1,
        max_size=10,
    ),
    st.sampled_from(["", "\\N", "NULL"]),
)
def test_csv_keeps_null_and_empty_string_apart(rows, null_string):
    """NULL and '' (and text equal to the NULL marker) survive a CSV round trip."""
    rows = [{k: v.replace("\r", "") if v else v for k, v in r.items()} for r in rows]
    data = f.CsvEncoder(null_string=null_string).encode(rows)
    assert rows == _decode("csv", data, null_string=null_string)


def test_csv_single_column_null_is_an_empty_line():
    """One column: NULL is an empty line (as PostgreSQL writes it), '' is quoted."""
    data = f.CsvEncoder().encode([{"v": None}, {"v": ""}, {"v": "x"}])
    assert b'v\n\n""\nx\n' == data
    assert [{"v": None}, {"v": ""}, {"v": "x"}] == _decode("csv", data)


def test_bom_is_skipped_and_utf16_refused():
    """A UTF-8 byte-order mark is not part of the first field name; UTF-16 is a clear error."""
    assert [{"id": "1"}] == _decode("csv", b"\xef\xbb\xbfid\n1\n")
    assert [{"id": 1}] == _decode("jsonl", b'\xef\xbb\xbf{"id": 1}\n')
    for fmt, text in (("csv", "id\n1\n"), ("jsonl", '{"id": 1}\n')):
        for encoding in ("utf-16", "utf-32"):
            with pytest.raises(ConfigError, match="UTF-16 or UTF-32 byte-order mark") as caught:
                _decode(fmt, text.encode(encoding))
            assert "recode the file to UTF-8" in (caught.value.hint or "")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-16-le", "utf-32"])
def test_json_lines_in_an_encoding_that_is_not_ascii_compatible_are_refused(encoding):
    """
    Lines are found by the LF byte, which in UTF-16 and UTF-32 is also part of other
    characters: refused up front naming the encoding and how to recode, not a JSON or
    decoding error at some line (the hint said to set encoding='utf-16', which never read).
    """
    data = '{"s": "xĊy"}\n{"s": "z"}\n'.encode(encoding)
    with pytest.raises(ConfigError, match=f"JSON Lines in {encoding} cannot be read") as caught:
        list(f.decode_stream(f.make_decoder("jsonl", "t.jsonl", encoding=encoding), [data]))
    assert "encoding" == caught.value.field
    assert "recode the file to UTF-8" in (caught.value.hint or "")


def test_json_lines_in_utf8_sig_read_as_utf8():
    """utf-8-sig: the file's byte-order mark is dropped and every line is parsed as UTF-8."""
    data = b'\xef\xbb\xbf{"s": "\xc3\xa9", "n": 123456789012345678901234567890}\n{"s": "z"}\n'
    decoder = f.make_decoder("jsonl", "t.jsonl", encoding="utf-8-sig")
    got = list(f.decode_stream(decoder, [data]))
    ends = [data.index(b"\n") + 1, len(data)]
    assert [
        ({"s": "é", "n": 123456789012345678901234567890}, ends[0]),
        ({"s": "z"}, ends[1]),
    ] == got


def test_large_csv_fields_are_read():
    """A field of several megabytes reads (csv's default limit is 128 KiB)."""
    big = "x" * (3 << 20)
    assert [{"v": big}] == _decode("csv", f.CsvEncoder().encode([{"v": big}]))


def _zstd_compress(data: bytes) -> bytes:
    """A zstd frame made by another library than the one headwater reads with."""
    return pytest.importorskip("zstandard").ZstdCompressor().compress(data)


_COMPRESS = {
    "gzip": gzip.compress,
    "bz2": bz2.compress,
    "xz": lzma.compress,
    "zstd": _zstd_compress,
}


@pytest.mark.parametrize(("compression", "compress"), sorted(_COMPRESS.items()))
def test_decompression_reads_every_member(compression, compress):
    """Concatenated members (an appended file) decode as one stream; truncation is an error."""
    data = compress(b'{"a": 1}\n') + compress(b'{"a": 2}\n')
    got = [r for r, _ in f.decode_stream(f.make_decoder("jsonl", "t"), [data], compression)]
    assert [{"a": 1}, {"a": 2}] == got
    with pytest.raises(ConfigError, match="ends before"):
        list(f.decode_stream(f.make_decoder("jsonl", "t"), [data[:-6]], compression))


@given(
    st.sampled_from(sorted(_COMPRESS)),
    st.lists(
        st.tuples(
            st.sampled_from([b"", b"x", b'{"a": 1}\n', bytes(range(256))]), st.integers(0, 3 << 20)
        ),
        min_size=1,
        max_size=3,
    ),
    st.lists(st.integers(min_value=1, max_value=1 << 16), max_size=4),
)
@settings(max_examples=40, deadline=None)
def test_decompressed_pieces_are_bounded_and_exact(compression, members, cuts):
    """
    However well each member compresses (up to several MiB of one repeated unit from a
    few bytes) and wherever the stored bytes are cut, the pieces join to the data and
    none is longer than `PIECE`; a stream cut short is an error, not a short read.
    """
    datas = [(unit * (size // max(len(unit), 1)))[:size] for unit, size in members]
    stored = b"".join(_COMPRESS[compression](data) for data in datas)
    bounds = sorted({min(cut, len(stored)) for cut in cuts} | {0, len(stored)})
    chunks = [stored[a:b] for a, b in itertools.pairwise(bounds)]
    pieces = list(f.decompressed(chunks, compression))
    assert b"".join(datas) == b"".join(pieces)
    assert all(0 < len(piece) <= f.PIECE for piece in pieces)
    with pytest.raises(ConfigError, match="ends before"):
        list(f.decompressed([stored[:-1]], compression))


def test_detect_reads_format_and_compression_from_the_name():
    """Suffixes give the format and compression; overrides and unknown names are clear."""
    assert f.FileFormat("jsonl", "gzip") == f.detect("a/b.jsonl.gz")
    assert f.FileFormat("csv", None, "\t") == f.detect("x.tsv")
    assert f.FileFormat("csv", None) == f.detect("x.txt", "csv")
    with pytest.raises(ConfigError, match="cannot tell the record format"):
        f.detect("x.dat")
    with pytest.raises(ConfigError, match="compress their own pages"):
        f.detect("x.parquet.gz")


def test_json_lines_decoder_keeps_big_integers_beside_long_digit_strings():
    """Integers beyond 64 bits stay exact; digit-heavy strings and float decimals do not slow it."""
    lines = [
        b'{"id": "3332880692313818482a", "x": 0.12345678901234567890}',
        b'{"big": 123456789012345678901234567890, "neg": -98765432109876543210}',
        b'{"list": [1, 18446744073709551616]}',
    ]
    got = _decode("jsonl", b"\n".join(lines) + b"\n")
    assert [json.loads(line) for line in lines] == got
    assert 123456789012345678901234567890 == got[1]["big"]
    assert isinstance(got[2]["list"][1], int)


def test_only_the_line_that_may_hold_a_big_integer_leaves_the_fast_path(monkeypatch):
    """
    Without msgspec (orjson line by line, which rounds integers beyond 64 bits), only
    lines with a run of 19 digits where a number can start are parsed on the exact path,
    alone: not their chunk, and not a UUID-like string whose digits follow a "-" inside it.
    """
    monkeypatch.setattr(f, "_line_parser", lambda: None)
    lines = [b'{"n": %d, "u": "0a1b2c3d-9e8f-4a7b-8c6d-0123456789ab"}' % i for i in range(50)]
    lines[3] = b'{"n": 3, "u": "0a1b2c3d-9e8f-4a7b-8c6d-12345678901234567890"}'
    lines[7] = b'{"n": 7, "big": 123456789012345678901234567890}'
    lines[9] = b'{"n": 9, "neg":-123456789012345678901234567890}'
    lines[11] = b'{"n": 11, "in": [-123456789012345678901234567890]}'
    exact: list[bytes] = []
    parse_one = f.JsonLinesDecoder._parse_one

    def spy(self: Any, line: bytes, *args: Any) -> dict[str, Any]:
        exact.append(line)
        return parse_one(self, line, *args)

    monkeypatch.setattr(f.JsonLinesDecoder, "_parse_one", spy)
    got = _decode("jsonl", b"\n".join(lines) + b"\n")
    assert [json.loads(line) for line in lines] == got
    assert 123456789012345678901234567890 == got[7]["big"]
    assert -123456789012345678901234567890 == got[9]["neg"] == got[11]["in"][0]
    assert [lines[7], lines[9], lines[11]] == exact


def test_msgspec_reads_a_chunk_without_the_exact_path_big_integers_exact(monkeypatch):
    """With msgspec, a chunk of valid lines never takes the line-by-line exact path."""
    lines = [b'{"n": %d, "big": %d}' % (i, 10**30 + i) for i in range(50)]
    lines[5] = b'{"neg": -123456789012345678901234567890, "x": 0.30000000000000004}'
    exact: list[bytes] = []
    parse_one = f.JsonLinesDecoder._parse_one
    monkeypatch.setattr(
        f.JsonLinesDecoder,
        "_parse_one",
        lambda self, line, *a: exact.append(line) or parse_one(self, line, *a),
    )
    assert f._line_parser() is not None
    got = _decode("jsonl", b"\n".join(lines) + b"\n")
    assert [json.loads(line) for line in lines] == got
    assert 10**30 + 49 == got[49]["big"]
    assert [] == exact


#: Lines as producers write them and as they go wrong: objects, blank lines of every kind,
#: two values on one line (msgspec's JSON Lines decoder reads both), brackets open across
#: lines, values msgspec refuses where json takes them (NaN, 1e400, lone surrogates), big
#: integers.
_LINE_PIECES = [
    b'{"a": 1}',
    b'  {"b": [1, 2, {"c": null}]}\t',
    b'{"big": 123456789012345678901234567890}',
    b"",
    b"   ",
    b"\t",
    b"\r",
    b"\x0c",
    b'{"a": 1} {"b": 2}',
    b'{"a": 1}{"b": 2}',
    b'{"a": 1}\r{"b": 2}',
    b'{"a": [1',
    b"2]}",
    b'{"a": [{}',
    b'{}]}, {"b": {}}',
    b'{"a":',
    b'1} {"b": 2}',
    b'{"x": NaN}',
    b'{"x": 1e400}',
    b'{"s": "\\ud800"}',
    b"[1, 2]",
    b"7",
    b'{"a": 01}',
    b'{"u": "\xc3\xa9"}',
    b'{"u": "\xff"}',
]


def _reference(lines: list[bytes]) -> list[dict[str, Any]] | None:
    """What json.loads line by line gives (blank lines skipped), None where it refuses."""
    out = []
    for line in lines:
        if not line or line.isspace():
            continue
        try:
            value = json.loads(line.decode("utf-8"))
        except ValueError:
            return None
        if not isinstance(value, dict):
            return None
        out.append(value)
    return out


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_LINE_PIECES), min_size=1, max_size=12), st.booleans())
# A line of two values beside a blank line of spaces: the counts agree, the lines do not.
@example([b'{"a": 1} {"b": 2}', b"   "], True)
@example([b"\r", b'{"a": 1}\r{"b": 2}', b'{"c": 3}'], True)
@example([b'{"a": [{}', b'{}]}, {"b": {}}'], True)
# An object open across two lines, then a second value: as many values as lines.
@example([b'{"a":', b'1} {"b": 2}'], True)
def test_json_lines_read_exactly_what_json_loads_reads_line_by_line(lines, msgspec):
    """Every path (msgspec, orjson, stdlib) gives json.loads' records, or fails as it does."""
    with pytest.MonkeyPatch.context() as patch:
        if not msgspec:
            patch.setattr(f, "_line_parser", lambda: None)
        data = b"\n".join(lines) + b"\n"
        expected = _reference(lines)
        # Alone, and as a file's second chunk (the first chunk of a file takes its own
        # path, for a byte-order mark), both with and without an unfinished line before.
        first = [b'{"first": 0}\n']
        for chunks in ([data], [*first, data], [*first, data[:5], data[5:]]):
            decoded = f.decode_stream(f.make_decoder("jsonl", "t"), chunks)
            if expected is None:
                with pytest.raises(ConfigError):
                    list(decoded)
            else:
                pairs = list(decoded)[len(chunks) > 1 :]
                got = [r for r, _ in pairs]
                assert all(_same(a, b) for a, b in zip(expected, got, strict=True))
                # Each record's offset is the end of its line: where a resume starts.
                base = len(chunks[0]) if len(chunks) > 1 else 0
                ends, at = [], base
                for line in lines:
                    at += len(line) + 1
                    if line and not line.isspace():
                        ends.append(at)
                assert ends == [end for _, end in pairs]


def test_a_bad_suspect_line_fails_after_the_records_before_it():
    """Records before an invalid line that the exact path judges are delivered first; the error names it."""
    data = b'{"a": 1}\n{"a": 2}\n{"a": -12345678901234567890,}\n{"a": 4}\n'
    decoded = f.decode_stream(f.make_decoder("jsonl", "t.jsonl"), [data])
    assert {"a": 1} == next(decoded)[0]
    assert {"a": 2} == next(decoded)[0]
    with pytest.raises(ConfigError, match=r"t.jsonl: invalid JSON at byte 18 \(line 3\)"):
        next(decoded)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(st.lists(_json_values, max_size=4), st.sampled_from(["", " ", "\t"]))
@settings(max_examples=150, deadline=None)
def test_json_text_fields_are_cut_out_exactly_as_written(values, space):
    """The text of a field's value, whatever it holds, and every other field as json gives it."""
    texts = [json.dumps(v, indent=None, separators=(f",{space}", f":{space}")) for v in values]
    line = "{" + f",{space}".join(f'"k{i}":{space}{t}' for i, t in enumerate(texts)) + "}"
    fields = frozenset(f"k{i}" for i in range(0, len(values), 2))
    record = f.object_with_json_text(space + line + space, fields)
    assert list(record) == [f"k{i}" for i in range(len(values))]
    for i, (value, text) in enumerate(zip(values, texts, strict=True)):
        if f"k{i}" in fields and value is not None:
            assert type(record[f"k{i}"]) is f.JsonText
            assert text == record[f"k{i}"]
        else:
            assert json.loads(text) == record[f"k{i}"]


def test_json_text_keeps_what_parsing_would_change():
    """Duplicate keys, 2.50, 1e400: the text; null is a missing value (None); keys unescaped."""
    line = '{"a": {"x":1, "x":2}, "b": 2.50, "c": 1e400, "d": null, "\\u00e9": [0.10], "e": 2.50}'
    record = f.object_with_json_text(line, frozenset({"a", "b", "c", "d", "é"}))
    assert '{"x":1, "x":2}' == record["a"]
    assert "2.50" == record["b"]
    assert "1e400" == record["c"]
    assert "[0.10]" == record["é"]
    assert record["d"] is None
    assert 2.5 == record["e"]
    for bad in ('{"a": 1,}', '{"a" 1}', '{"a": }', '{"a": 1} x', "{a: 1}", '{"a": [1}'):
        with pytest.raises(json.JSONDecodeError):
            f.object_with_json_text(bad, frozenset({"a"}))


def test_json_lines_decoder_gives_json_text_fields():
    """The decoder's json_text option: those fields as JsonText, offsets as without it."""
    data = b'{"id": 1, "doc": {"a": 2.50}}\n\n{"id": 2, "doc": null}\n{"id": 3, "doc": [1e400]}'
    decoder = f.make_decoder("jsonl", "t.jsonl", json_text=["doc"])
    plain = f.make_decoder("jsonl", "t.jsonl")
    got = list(f.decode_stream(decoder, [data]))
    assert [end for _r, end in got] == [end for _r, end in f.decode_stream(plain, [data])]
    assert [r["doc"] for r, _end in got] == ['{"a": 2.50}', None, "[1e400]"]
    with pytest.raises(ConfigError, match="invalid JSON at byte 0"):
        list(f.decode_stream(f.make_decoder("jsonl", "t", json_text=["doc"]), [b'{"doc": }\n']))
    with pytest.raises(ConfigError, match="expected an object"):
        list(f.decode_stream(f.make_decoder("jsonl", "t", json_text=["doc"]), [b"[1]\n"]))


@given(
    st.lists(st.integers(min_value=-(2**70), max_value=2**70), min_size=0, max_size=60),
    st.integers(min_value=1, max_value=7),
    st.integers(min_value=1, max_value=64),
    st.sampled_from(["jsonl", "csv"]),
)
@settings(max_examples=120, deadline=None)
def test_decode_batches_cut_what_decode_stream_gives(values, size, piece, fmt):
    """Batches of `size` in order, each ending where its last record ends, whatever the chunking."""
    if fmt == "jsonl":
        data = b"".join(b'{"v": %d, "u": "a-%d"}\n' % (v, abs(v)) for v in values)
    else:
        data = b"v,u\n" + b"".join(b'%d,"a\n%d"\n' % (v, abs(v)) for v in values)
    chunks = [data[i : i + piece] for i in range(0, len(data), piece)]
    pairs = list(f.decode_stream(f.make_decoder(fmt, "t"), chunks))
    batches = list(f.decode_batches(f.make_decoder(fmt, "t"), chunks, size))
    assert [r for r, _ in pairs] == [r for batch, _ in batches for r in batch]
    assert all(len(batch) == size for batch, _ in batches[:-1])
    ends = [end for _, end in pairs]
    assert [ends[min(len(ends), (i + 1) * size) - 1] for i in range(len(batches))] == [
        end for _, end in batches
    ]


_LINES = {
    "record": b'{"v": 1, "s": "x"}\n',
    "crlf record": b'{"v": 2}\r\n',
    "blank": b"\n",
    "crlf blank": b"\r\n",
    "spaces": b"  \t \n",
    "big integer": b'{"v": 123456789012345678901234567890}\n',
}


@given(
    st.booleans(),
    st.lists(st.sampled_from(sorted(_LINES)), max_size=40),
    st.booleans(),
    st.integers(min_value=1, max_value=50),
    st.integers(min_value=1, max_value=5),
)
@settings(max_examples=150, deadline=None)
def test_json_lines_batch_offsets_are_the_file_offsets(bom, kinds, unterminated, piece, size):
    """
    Each batch's offset is the byte just after its last record's line in the file
    (byte-order mark, blank, CRLF and whitespace lines counted, a last line without a
    newline too), and resuming from it gives exactly the records after the batch.
    """
    data = (b"\xef\xbb\xbf" if bom else b"") + b"".join(_LINES[kind] for kind in kinds)
    if unterminated:
        data += b'{"v": 3}'
    expected, ends = [], []
    for start, line in _lines_at(data):
        text = line.removeprefix(b"\xef\xbb\xbf") if start == 0 else line
        if text.strip():
            expected.append(json.loads(text))
            ends.append(start + len(line))
    chunks = [data[i : i + piece] for i in range(0, len(data), piece)]
    batches = list(f.decode_batches(f.make_decoder("jsonl", "t"), chunks, size))
    assert expected == [r for batch, _ in batches for r in batch]
    assert [ends[min(len(ends), (i + 1) * size) - 1] for i in range(len(batches))] == [
        end for _, end in batches
    ]
    for index, (_batch, end) in enumerate(batches):
        decoder = f.make_decoder("jsonl", "t", end)
        rest = [r for batch, _ in f.decode_batches(decoder, [data[end:]], size) for r in batch]
        assert expected[(index + 1) * size :] == rest


def _lines_at(data: bytes) -> list[tuple[int, bytes]]:
    """Each line of ``data`` (its newline kept) with the offset it starts at."""
    out, start = [], 0
    while start < len(data):
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end + 1
        out.append((start, data[start:end]))
        start = end
    return out


@pytest.mark.parametrize("compression", ["gzip", None])
def test_batch_cutter_refuses_an_offset_past_the_end(compression):
    """A state offset beyond the decompressed data is an error naming it, not an empty read."""
    data = b'{"a": 1}\n{"a": 2}\n'
    stored = gzip.compress(data) if compression else data
    decoder = f.make_decoder("jsonl", "t.jsonl", 40)
    with pytest.raises(ConfigError, match=r"state offset 40 is past the end of 't\.jsonl'"):
        list(f.decode_batches(decoder, [stored], 10, compression, skip=40))
    decoder = f.make_decoder("jsonl", "t.jsonl", len(data))
    assert [] == list(f.decode_batches(decoder, [stored], 10, compression, skip=len(data)))


def test_batch_cutter_cuts_what_it_is_fed_as_decode_batches_pulls_it():
    """The push driver gives the batches and offsets of the pull driver, fed piece by piece."""
    data = b"".join(b'{"n": %d}\n' % i for i in range(25)) + b'{"n": 25}'
    pulled = list(f.decode_batches(f.make_decoder("jsonl", "t"), [data], 4))
    cutter = f.BatchCutter(f.make_decoder("jsonl", "t"), 4)
    pushed = [pair for i in range(0, len(data), 7) for pair in cutter.feed(data[i : i + 7])]
    pushed += cutter.finish()
    assert pulled == pushed
    assert 26 == sum(len(batch) for batch, _ in pushed)


def test_decode_batches_raise_after_the_full_batches_before_a_bad_line():
    """Full batches before a bad line are delivered; then its error, naming the line."""
    good = b"".join(b'{"a": %d}\n' % i for i in range(7))
    data = good + b'{"a": 12345678901234567890123,}\n' + b'{"a": 8}\n'
    batches = f.decode_batches(f.make_decoder("jsonl", "t.jsonl"), [data], 3)
    assert [{"a": 0}, {"a": 1}, {"a": 2}] == next(batches)[0]
    assert [{"a": 3}, {"a": 4}, {"a": 5}] == next(batches)[0]
    with pytest.raises(ConfigError, match=r"t.jsonl: invalid JSON at byte \d+ \(line 8\)"):
        next(batches)

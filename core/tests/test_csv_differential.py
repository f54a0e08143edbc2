"""
CsvDecoder against Python's csv module on generated CSV text.

Each table is generated as rows of (value, quoted) fields and written out by hand (any
delimiter, CRLF and LF row endings, quotes, CR and LF inside quoted fields, quotes inside
unquoted fields, blank lines, short and long rows, a byte-order mark, no newline after
the last row, latin-1). ``csv.reader`` (strict, ``newline=""``) must read the text back
as the fields written, so the csv module is the judge of what the text holds; the
generated quoting says which empty (or ``null_string``) fields are NULL, which csv
cannot tell. headwater must give those records, fed whole or in pieces cut anywhere
(inside a multi-byte character, between CR and LF), gzip-compressed too, and each
batch's offset must resume to exactly the records after that batch.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from headwater import ConfigError
from headwater import formats as f

# Characters fields are made of: the delimiters, quotes, CR, LF, spaces, multi-byte text.
_ALPHABET = [
    *(",", ";", "\t", "|", '"', "\r", "\n", " ", "a", "Z", "0", "\\", "N"),
    *("é", "€", "😀", "\ufeff"),  # U+FEFF: a byte-order mark's character inside the text
]
_LATIN1 = [c for c in _ALPHABET if ord(c) < 256]


@st.composite
def tables(draw: Any) -> dict[str, Any]:
    """A CSV table as text, the fields csv must read from it and the records expected."""
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "latin-1"]))
    alphabet = _LATIN1 if encoding == "latin-1" else _ALPHABET
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    null = draw(st.sampled_from(["", "\\N"]))
    text = st.text(st.sampled_from(alphabet), max_size=6)
    width = draw(st.integers(min_value=1, max_value=4))
    names = draw(
        st.lists(
            st.text(st.sampled_from(alphabet), min_size=1, max_size=4).filter(
                lambda n: n != "_extra"
            ),
            min_size=width,
            max_size=width,
            unique=True,
        )
    )

    def field(value: str, quoted: bool) -> str:
        return '"' + value.replace('"', '""') + '"' if quoted else value

    def unquoted_ok(value: str) -> bool:
        # Outside quotes a field holds no delimiter, CR or LF and does not start with a
        # quote; a quote further on is a character of the value (csv reads it so).
        return not ({delimiter, "\r", "\n"} & set(value)) and not value.startswith('"')

    def ending() -> str:
        return draw(st.sampled_from(["\n", "\r\n"]))

    # A file's first character U+FEFF is its byte-order mark: the first name starting
    # with one is quoted.
    header_fields = [
        (n, draw(st.booleans()) or not unquoted_ok(n) or (i == 0 and n.startswith("\ufeff")))
        for i, n in enumerate(names)
    ]
    lines: list[str] = [delimiter.join(field(n, q) for n, q in header_fields) + ending()]
    # Whether a quote stands inside an unquoted field (a character of the value).
    literal = any(not q and '"' in n for n, q in header_fields)
    csv_rows: list[list[str]] = [names]
    # (record, index of its line in ``lines``) for every record headwater must give
    expected: list[tuple[dict[str, Any], int]] = []
    for _ in range(draw(st.integers(min_value=0, max_value=8))):
        if draw(st.integers(min_value=0, max_value=5)) == 0:
            lines.append(ending())  # a blank line
            csv_rows.append([])
            if width == 1 and null == "":
                expected.append(({names[0]: None}, len(lines) - 1))  # PostgreSQL's NULL line
            continue
        count = draw(st.integers(min_value=max(1, width - 1), max_value=width + 1))
        fields = []
        for _ in range(count):
            value = draw(text)
            quoted = draw(st.booleans()) or not unquoted_ok(value)
            fields.append((value, quoted))
            literal = literal or (not quoted and '"' in value)
        lines.append(delimiter.join(field(v, q) for v, q in fields) + ending())
        if len(fields) == 1 and fields[0] == ("", False):
            csv_rows.append([])  # an empty line: NULL of one column, else skipped
            if width == 1 and null == "":
                expected.append(({names[0]: None}, len(lines) - 1))
            continue
        csv_rows.append([v for v, _ in fields])
        values = [None if v == null and not q else v for v, q in fields]
        record: dict[str, Any] = dict(zip(names, values, strict=False))
        record.update(dict.fromkeys(names[len(values) :]))
        if len(values) > width:
            record["_extra"] = values[width:]
        expected.append((record, len(lines) - 1))
    if draw(st.booleans()) and lines[-1].strip("\r\n"):
        lines[-1] = lines[-1].rstrip("\n").rstrip("\r")  # the last row without a newline
    bom = encoding != "latin-1" and draw(st.booleans())
    plain = "utf-8" if encoding == "utf-8-sig" else encoding  # no mark before each line
    data = (b"\xef\xbb\xbf" if bom else b"") + "".join(lines).encode(plain)
    # The byte offset just after each line.
    ends, at = [], 3 if bom else 0
    for line in lines:
        at += len(line.encode(plain))
        ends.append(at)
    return {
        "data": data,
        "text": "".join(lines),
        "csv_rows": csv_rows,
        "records": [record for record, _ in expected],
        "ends": [ends[line] for _, line in expected],
        "header": names,
        "options": {"encoding": encoding, "delimiter": delimiter, "null_string": null},
        # The record boundaries a partition may be cut at: after each line's LF.
        "line_ends": [end for end, line in zip(ends, lines, strict=True) if line.endswith("\n")],
        "literal": literal,
    }


def _pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def _batches(data_chunks: list[bytes], size: int, offset: int = 0, **kwargs: Any) -> list[Any]:
    compression = kwargs.pop("compression", None)
    skip = kwargs.pop("skip", 0)
    decoder = f.make_decoder("csv", "t.csv", offset, **kwargs)
    return list(f.decode_batches(decoder, data_chunks, size, compression, skip=skip))


@settings(max_examples=1200, deadline=None)
@given(
    tables(),
    st.lists(st.integers(min_value=0, max_value=10**6), max_size=8),
    st.integers(min_value=1, max_value=4),
)
@example(  # a quote inside an unquoted field, then a NULL and a quoted empty string
    {
        "data": b'h,i,j,k\na",b",,""\n',
        "text": 'h,i,j,k\na",b",,""\n',
        "csv_rows": [["h", "i", "j", "k"], ['a"', 'b"', "", ""]],
        "records": [{"h": 'a"', "i": 'b"', "j": None, "k": ""}],
        "ends": [18],
        "header": ["h", "i", "j", "k"],
        "options": {"encoding": "utf-8", "delimiter": ",", "null_string": ""},
        "line_ends": [],
        "literal": True,
    },
    [],
    1,
)
@example(  # one quote inside an unquoted field: the row ends at its newline
    {
        "data": b'h,i\na"b,c\nd,e\n',
        "text": 'h,i\na"b,c\nd,e\n',
        "csv_rows": [["h", "i"], ['a"b', "c"], ["d", "e"]],
        "records": [{"h": 'a"b', "i": "c"}, {"h": "d", "i": "e"}],
        "ends": [10, 14],
        "header": ["h", "i"],
        "options": {"encoding": "utf-8", "delimiter": ",", "null_string": ""},
        "line_ends": [],
        "literal": True,
    },
    [7],
    1,
)
@example(  # a quoted field opened after a field holding a quote: its newline is data
    {
        "data": b'h,i\na","b\nc"\n',
        "text": 'h,i\na","b\nc"\n',
        "csv_rows": [["h", "i"], ['a"', "b\nc"]],
        "records": [{"h": 'a"', "i": "b\nc"}],
        "ends": [13],
        "header": ["h", "i"],
        "options": {"encoding": "utf-8", "delimiter": ",", "null_string": ""},
        "line_ends": [],
        "literal": True,
    },
    [],
    1,
)
def test_csv_records_and_offsets_match_the_csv_module(table, cuts, size):
    """
    Records equal what csv reads (NULL where the field was unquoted and the NULL marker),
    whole or in pieces, gzip-compressed too; each batch ends at its last record's line
    and resumes to exactly the records after it.
    """
    data, options = table["data"], table["options"]
    read = list(
        csv.reader(io.StringIO(table["text"], newline=""), strict=True, **_dialect(options))
    )
    assert table["csv_rows"] == read  # the text holds what was generated, as csv reads it
    expected, ends = table["records"], table["ends"]

    whole = [r for r, _ in f.decode_stream(f.make_decoder("csv", "t.csv", **options), [data])]
    assert expected == whole

    batches = _batches(_pieces(data, cuts), size, **options)
    assert expected == [r for batch, _ in batches for r in batch]
    assert all(len(batch) == size for batch, _ in batches[:-1])
    assert [ends[min(len(ends), (i + 1) * size) - 1] for i in range(len(batches))] == [
        end for _, end in batches
    ]
    for index, (_batch, end) in enumerate(batches):
        rest = _batches(_pieces(data[end:], cuts), size, end, header=table["header"], **options)
        assert expected[(index + 1) * size :] == [r for batch, _ in rest for r in batch]

    packed = gzip.compress(data)
    assert batches == _batches(_pieces(packed, cuts), size, compression="gzip", **options)
    if batches:
        end = batches[0][1]
        rest = _batches(
            [packed], size, end, header=table["header"], compression="gzip", skip=end, **options
        )
        assert expected[size:] == [r for batch, _ in rest for r in batch]


def _dialect(options: dict[str, Any]) -> dict[str, Any]:
    return {"delimiter": options["delimiter"]}


@settings(max_examples=1200, deadline=None)
@given(
    tables(),
    st.lists(st.integers(min_value=0, max_value=10**6), max_size=8),
    st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=5),
)
def test_partition_cuts_fall_on_record_ends(table, cuts, wanted):
    """
    `CsvRecordEnds` (where a partition of one CSV file is cut) gives record ends only,
    each after its target, fed in any pieces; with no quote inside an unquoted field the
    first record end after each target. The ranges between them read every record once.
    """
    data, options = table["data"], table["options"]
    targets = sorted(t % (len(data) + 1) for t in wanted)
    finder = f.CsvRecordEnds(targets, options["delimiter"])
    for piece in _pieces(data, cuts):
        finder.feed(piece)
    found = finder.finish(len(data))
    assert len(targets) == len(found)
    line_ends = table["line_ends"]
    for target, end in zip(targets, found, strict=True):
        if table["literal"]:
            assert end == len(data) or (end in line_ends and end > target)
        else:
            assert min((e for e in line_ends if e > target), default=len(data)) == end
    records = []
    for lo, hi in f.byte_ranges(len(data), found):
        header = table["header"] if lo else None
        decoder = f.make_decoder("csv", "t.csv", lo, header=header, **options)
        records += [r for r, _ in f.decode_stream(decoder, _pieces(data[lo:hi], cuts))]
    assert table["records"] == records


def test_a_quote_inside_an_unquoted_field_stops_the_partition_cuts():
    """
    ``a"b`` is a value to csv; counting it as a quote cut this file inside the quoted
    field of its 23rd line, and the second range read ``line,with`` and ``newlines"`` as
    records with no error. Cuts after such a quote are not made; those before it are.
    """
    text = (
        "id,note\n"
        + "".join(f"{i},plain\n" for i in range(20))
        + 'a"b,x\n'
        + 'q,"multi\nline,with\nnewlines"\n'
        + "".join(f"{i},tail\n" for i in range(20))
    )
    data = text.encode()
    targets = [20, len(data) // 2]
    finder = f.CsvRecordEnds(targets)
    finder.feed(data)
    assert [data.index(b"\n", 20) + 1, len(data)] == finder.finish(len(data))
    ranges = f.byte_ranges(len(data), finder.finish(len(data)))
    records = []
    for lo, hi in ranges:
        decoder = f.make_decoder("csv", "t.csv", lo, header=["id", "note"] if lo else None)
        records += [r for r, _ in f.decode_stream(decoder, [data[lo:hi]])]
    assert list(csv.DictReader(io.StringIO(text, newline=""))) == records


# --- text csv may refuse ---------------------------------------------------------------

_SOUP = ["a", "é", '"', '""', ",", "\n", "\r\n", "\r", " "]


@settings(max_examples=1500, deadline=None)
@given(
    st.lists(st.sampled_from(_SOUP), max_size=25),
    st.lists(st.integers(min_value=0, max_value=10**6), max_size=6),
)
def test_csv_soup_is_read_as_csv_reads_it_or_refused(tokens, cuts):
    """
    Any text after a header: headwater gives csv's records (``null_string`` set to a text
    the soup cannot hold, so no field is NULL), or a ConfigError; csv refuses it too
    then, or it holds a CR that does not end in LF outside quotes (rows end in LF or
    CRLF; the error says so).
    """
    text = "h,i\n" + "".join(tokens)
    data = text.encode()
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error:
        rows = None
    failure = None
    try:
        got = [r for batch, _ in _batches(_pieces(data, cuts), 3, null_string="\\N") for r in batch]
    except ConfigError as exc:
        failure = str(exc)
    if failure is not None:
        if rows is not None:
            assert "carriage return" in failure
            assert "\r" in text.replace("\r\n", "")
        return
    assert rows is not None, f"csv refuses {text!r}, headwater read {got!r}"
    expected = []
    for row in rows[1:]:
        if not row:
            continue
        record: dict[str, Any] = dict(zip(["h", "i"], row, strict=False))
        record.update(dict.fromkeys(["h", "i"][len(row) :]))
        if len(row) > 2:
            record["_extra"] = row[2:]
        expected.append(record)
    assert expected == got


# --- single cases --------------------------------------------------------------------------


def test_header_only_gives_no_records_and_keeps_the_header():
    """A header alone (with or without its newline, CRLF too) is no records, its names kept."""
    for data in (b"a,b\n", b"a,b", b"a,b\r\n", b"\xef\xbb\xbfa,b\r\n"):
        decoder = f.make_decoder("csv", "t.csv")
        assert [] == list(f.decode_stream(decoder, [data]))
        assert ["a", "b"] == decoder.header


def test_a_lone_carriage_return_row_end_is_an_error_naming_it():
    """Rows ending in a bare CR (csv's universal newlines read them) are refused, not misread."""
    with pytest.raises(ConfigError, match="carriage return"):
        list(f.decode_stream(f.make_decoder("csv", "t.csv"), [b"a,b\r1,2\r3,4\n"]))
    # Inside quotes a bare CR is data.
    decoded = f.decode_stream(f.make_decoder("csv", "t.csv"), [b'a,b\n"x\ry",2\n'])
    assert [{"a": "x\ry", "b": "2"}] == [r for r, _ in decoded]


def test_an_unterminated_quote_is_an_error_naming_its_line():
    """A quote never closed is an error naming the line the record began on, not a short read."""
    with pytest.raises(ConfigError, match="line 3: unterminated quoted field"):
        list(f.decode_stream(f.make_decoder("csv", "t.csv"), [b'a,b\n1,2\n3,"x\n4,5\n']))


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-16-le", "utf-32"])
def test_encodings_that_are_not_ascii_compatible_are_refused(encoding):
    """
    Rows are found by the LF and quote bytes: UTF-16 and UTF-32 are refused up front.
    In UTF-16-BE ``Ċ`` (U+010A) ends in the byte 0x0A: it was read as the end of a row,
    one record as two.
    """
    data = "a,b\n1,xĊy\n2,z\n".encode(encoding)
    with pytest.raises(ConfigError, match=f"CSV in {encoding} cannot be read") as caught:
        list(f.decode_stream(f.make_decoder("csv", "t.csv", encoding=encoding), [data]))
    assert "encoding" == caught.value.field


def test_utf8_sig_drops_the_byte_order_mark_of_the_file_only():
    """
    With encoding='utf-8-sig' a value starting with U+FEFF keeps it: only the file's
    first bytes are its byte-order mark (decoding each record as utf-8-sig dropped one
    from the start of every record: ``\ufeffx`` read as ``x``).
    """
    data = "\ufeffa,b\n\ufeffx,\ufeff\n".encode()
    decoder = f.make_decoder("csv", "t.csv", encoding="utf-8-sig")
    assert [{"a": "\ufeffx", "b": "\ufeff"}] == [r for r, _ in f.decode_stream(decoder, [data])]


def test_a_header_naming_a_column_twice_is_refused():
    """csv.DictReader keeps the last of two values under one name; here that is an error."""
    with pytest.raises(ConfigError, match="names column 'a' twice"):
        list(f.decode_stream(f.make_decoder("csv", "t.csv"), [b"a,b,a\n1,2,3\n"]))
    with pytest.raises(ConfigError, match="names column 'a' twice"):
        f.make_decoder("csv", "t.csv", 10, header=["a", "a"])


def test_a_long_row_under_a_header_holding_extra_is_refused():
    """The fields past the header go to ``_extra``: a column of that name would lose its value."""
    data = b"_extra,b\n1,2\n1,2,3\n"
    decoded = f.decode_stream(f.make_decoder("csv", "t.csv"), [data])
    assert ({"_extra": "1", "b": "2"}, 13) == next(decoded)
    with pytest.raises(ConfigError, match=r"line 3 \(byte 13\) has more fields than the header"):
        next(decoded)

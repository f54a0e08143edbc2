"""loads_json: the values of json.loads, digit for digit, whichever parser runs."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from headwater.toolkit import loads_json

#: Documents a fast parser could get wrong: integers beyond 64 bits, a number that
#: overflows a double, NaN/Infinity literals, a lone surrogate, duplicate keys, spacing.
TRICKY = [
    '{"big": 123456789012345678901234567890, "neg": -9999999999999999999}',
    "[18446744073709551615, -9223372036854775808, 0.1, 5e-324, 1.5e300, -0.0]",
    '{"inf": 1e400}',
    "[NaN, Infinity, -Infinity]",
    '"\\ud800 lone"',
    '{"a": 1, "a": 2}',
    '  {"spaced" :  [ 1 , 2 ] }  ',
    '"1234567890123456789012345 in a string"',
    '{"ünïcødé": "✓", "esc": "\\u00e9\\n"}',
    # Long documents take another path to find long integers than short ones.
    "[" + "12345678, " * 100 + "123456789012345678901234567890]",
    "[" + "1234567890123456.5, " * 100 + "0]",
]


@pytest.mark.parametrize("text", TRICKY)
@pytest.mark.parametrize("kind", ["bytes", "memoryview", "str"])
def test_tricky_documents_equal_the_stdlib(text, kind):
    """Every form of input gives exactly json.loads's value (repr: ints stay ints, nan)."""
    data = {"bytes": text.encode("utf-8", "surrogatepass"), "str": text}.get(kind)
    if kind == "memoryview":
        data = memoryview(text.encode("utf-8", "surrogatepass"))
    if kind != "str" and "ud800" in text:
        data = text.encode()  # the escape itself is ASCII; only its meaning is odd
    assert repr(json.loads(text)) == repr(loads_json(data))


@pytest.mark.parametrize(
    "data",
    [
        b'\xef\xbb\xbf{"bom": 1}',  # a UTF-8 byte-order mark, as some APIs send
        '{"utf": "16 ✓"}'.encode("utf-16"),
        '["utf-32-le"]'.encode("utf-32-le"),
        b'"\xed\xa0\x80 an encoded lone surrogate"',
        b"1" * 4000,  # beyond 64 bits, within int's digit limit
        b"[1.7976931348623159e308, 2.2250738585072011e-308]",
        b"[" * 100 + b"]" * 100,
    ],
)
def test_bytes_decode_as_the_stdlib_decodes_them(data):
    """Bytes json.loads reads (its encoding detection included) give its value exactly."""
    assert repr(json.loads(data)) == repr(loads_json(data))


def test_text_holding_a_lone_surrogate_equals_the_stdlib():
    """A str (not bytes) with an unpaired surrogate character, which UTF-8 cannot encode."""
    text = '{"k": "a\ud800b"}'
    assert repr(json.loads(text)) == repr(loads_json(text))


@pytest.mark.parametrize("text", ["", "{", "[1,]", "nul", "{} {}", b"\xff".decode("latin-1")])
def test_invalid_documents_raise_value_error(text):
    """Invalid JSON raises ValueError (json.JSONDecodeError), as json.loads does."""
    with pytest.raises(ValueError):  # noqa: PT011  the stdlib's type is the contract
        loads_json(text.encode("latin-1"))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_any_document_equals_the_stdlib(value):
    """For generated documents (integers of any size included), the same value as json.loads."""
    text = json.dumps(value, ensure_ascii=False)
    assert repr(json.loads(text)) == repr(loads_json(text.encode()))

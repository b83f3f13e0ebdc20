"""
Tests for L{jsonservice.codec}: strict decoding, encoding, framing.

Pure: no Twisted, no I/O.
"""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any

import pytest

from jsonservice.codec import (
    EncodeError,
    dumps,
    dumps_line,
    loads,
    loads_unterminated,
    may_hold_big_int,
)
from jsonservice.errors import ParseError, RPCError
from jsonservice.framing import Framer, LineTooLong
from jsonservice.limits import ORJSON_MAX_DEPTH

BIG = b"12345678901234567890"  # 20 digits: more than 64 bits, forces the fallback decoder
BIG_VALUE = 12345678901234567890


def parse_error(data: bytes, max_depth: int = ORJSON_MAX_DEPTH) -> ParseError:
    """Decode C{data}, expecting a ParseError; return it."""
    with pytest.raises(ParseError) as info:
        loads(data, max_depth)
    error = info.value
    assert error.code == -32700
    assert error.message == "Parse error"
    assert isinstance(error.data, str)
    assert error.data
    return error


def with_big_int(doc: bytes) -> bytes:
    """C{doc} inside an array next to a big integer: decoded by the fallback."""
    wrapped = b"[" + doc + b", " + BIG + b"]"
    assert may_hold_big_int(wrapped)
    return wrapped


def nested_arrays(depth: int, inner: bytes = b"1") -> bytes:
    return b"[" * depth + inner + b"]" * depth


def nested_objects(depth: int, inner: bytes = b"1") -> bytes:
    return b'{"a":' * depth + inner + b"}" * depth


def nested_mixed(depth: int, inner: bytes = b"1") -> bytes:
    """Alternating object / array levels, C{depth} levels in all."""
    opening = b"".join(b'{"k":' if i % 2 == 0 else b"[" for i in range(depth))
    closing = b"".join(b"}" if i % 2 == 0 else b"]" for i in reversed(range(depth)))
    return opening + inner + closing


def depth_of(value: Any) -> int:
    """Nesting depth: 0 for a scalar, 1 for C{[]}, iteratively (no recursion limit)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


# --- import hygiene -----------------------------------------------------------


def test_pure_layers_do_not_import_twisted() -> None:
    """The sans-IO modules can be used (and tested) without Twisted."""
    code = (
        "import sys\n"
        "import jsonservice.codec, jsonservice.jsonrpc, jsonservice.errors, jsonservice.limits\n"
        "bad = sorted(m for m in sys.modules if m == 'twisted' or m.startswith('twisted.'))\n"
        "print(repr(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "[]"


def test_sans_io_modules_themselves_do_not_import_twisted() -> None:
    """
    Even bypassing the package's C{__init__} (which may re-export the Twisted
    layers), the sans-IO modules import no Twisted of their own.
    """
    code = (
        "import importlib.util, sys, types\n"
        "spec = importlib.util.find_spec('jsonservice')\n"
        "pkg = types.ModuleType('jsonservice')\n"
        "pkg.__path__ = list(spec.submodule_search_locations)\n"
        "sys.modules['jsonservice'] = pkg\n"
        "import jsonservice.codec, jsonservice.framing, jsonservice.jsonrpc\n"
        "import jsonservice.errors, jsonservice.limits\n"
        "assert jsonservice.framing.Framer\n"
        "bad = sorted(m for m in sys.modules if m == 'twisted' or m.startswith('twisted.'))\n"
        "print(repr(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "[]"


# --- loads: valid input ---------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"null", None),
        (b"true", True),
        (b"false", False),
        (b"0", 0),
        (b"-0", 0),
        (b"1.5", 1.5),
        (b"-2.5e3", -2500.0),
        (b'"text"', "text"),
        (b"[]", []),
        (b"{}", {}),
        (b'{"a": [1, {"b": null}]}', {"a": [1, {"b": None}]}),
        ('"é😀"'.encode(), "é😀"),
        (b'"\\u00e9\\ud83d\\ude00"', "é😀"),
        (b'"a\\"b\\\\c\\/d\\n"', 'a"b\\c/d\n'),
        (b"  [1]  ", [1]),
        (b"[1]\r", [1]),
        (b"\r\n[1]\r\n", [1]),
        (b"\t{}\n", {}),
        (b'{"a":1,"a":2}', {"a": 2}),
    ],
)
def test_loads_valid(data: bytes, expected: Any) -> None:
    value = loads(data)
    assert value == expected
    assert type(value) is type(expected)


def test_loads_float_keeps_type() -> None:
    assert type(loads(b"1.0")) is float
    assert type(loads(b"1")) is int
    assert math.copysign(1.0, loads(b"-0.0")) == -1.0


# --- loads: strictness (orjson path and fallback path) -------------------------------

STRICT_REJECTS = [
    pytest.param(b"NaN", id="NaN"),
    pytest.param(b"Infinity", id="Infinity"),
    pytest.param(b"-Infinity", id="-Infinity"),
    pytest.param(b"[NaN]", id="NaN-in-array"),
    pytest.param(b"1e400", id="overflow"),
    pytest.param(b"-1e400", id="negative-overflow"),
    pytest.param(b'"\xff"', id="invalid-utf8"),
    pytest.param(b'"\xc3"', id="truncated-utf8"),
    pytest.param(b'"\xed\xa0\x80"', id="raw-surrogate-d800"),
    pytest.param(b'"\xed\xbf\xbf"', id="raw-surrogate-dfff"),
    pytest.param(b'"\\ud800"', id="escaped-lone-high-surrogate"),
    pytest.param(b'"\\udc00"', id="escaped-lone-low-surrogate"),
    pytest.param(b'"\\ud800x"', id="escaped-high-surrogate-then-char"),
    pytest.param(b'{"\\ud800": 1}', id="lone-surrogate-in-key"),
    pytest.param(b"[1] x", id="trailing-garbage"),
    pytest.param(b"[1]]", id="trailing-bracket"),
    pytest.param(b"1 2", id="two-values"),
    pytest.param(b'"a\x01b"', id="control-char-in-string"),
    pytest.param(b'"a\nb"', id="newline-in-string"),
    pytest.param(b'"a\tb"', id="tab-in-string"),
    pytest.param(b"", id="empty"),
    pytest.param(b"   ", id="blank"),
    pytest.param(b"\r", id="only-cr"),
    pytest.param(b"[1,]", id="trailing-comma"),
    pytest.param(b"{'a': 1}", id="single-quotes"),
    pytest.param(b"01", id="leading-zero"),
    pytest.param(b"[1", id="unterminated"),
    pytest.param(b"\xef\xbb\xbf[1]", id="bom"),
    pytest.param(b"tru", id="bad-literal"),
    pytest.param(b"\x00", id="nul"),
]


@pytest.mark.parametrize("data", STRICT_REJECTS)
def test_loads_rejects(data: bytes) -> None:
    parse_error(data)


@pytest.mark.parametrize("data", STRICT_REJECTS)
def test_fallback_rejects_the_same(data: bytes) -> None:
    """The exact decoder, used when a big integer may be present, is as strict."""
    blank = data.strip() == b"" or data == b"\r"
    # a blank member is still invalid: "[1,]"
    parse_error(b"[" + BIG + b"," + data + b"]" if blank else with_big_int(data))


def test_fallback_rejects_lone_surrogate_next_to_big_int_in_key_and_value() -> None:
    assert "surrogate" in parse_error(b'{"\\udfff": ' + BIG + b"}").data
    assert "surrogate" in parse_error(b'["\\ud800", ' + BIG + b"]").data


def test_fallback_accepts_escaped_surrogate_pair() -> None:
    assert loads(b'["\\ud83d\\ude00", ' + BIG + b"]") == ["😀", BIG_VALUE]


def test_fallback_rejects_bare_big_int_with_garbage() -> None:
    assert "byte" in parse_error(BIG + b" x").data


# --- ParseError.data says what and where -------------------------------------------


@pytest.mark.parametrize(
    ("data", "what", "where"),
    [
        (b"[1] x", "after document", "byte 4"),
        (b'"a\x01"', "control character", "byte 2"),
        (b"[1,]", "trailing comma", "byte 2"),
        (b"NaN", "expected a JSON value", "byte 0"),
        (b"1e400", "infinity", None),
        (b'"\\ud800"', "surrogate", None),
        (b'"\xff"', "UTF-8", None),
    ],
)
def test_parse_error_data_says_what_and_where(data: bytes, what: str, where: str | None) -> None:
    message = parse_error(data).data
    assert what in message
    if where is not None:
        assert where in message


@pytest.mark.parametrize(
    ("data", "what", "where"),
    [
        (BIG + b" x", "Extra data", "byte 21"),
        (b"[" + BIG + b', "a\x01"]', "control character", "byte 25"),
        (b'["\xff", ' + BIG + b"]", "invalid UTF-8", "byte 2"),
        ('["é", '.encode() + BIG + b", x]", "Expecting value", "byte 29"),
        (b"[" + BIG + b", NaN]", "NaN", None),
        (b"[" + BIG + b", 1e400]", "infinity", None),
    ],
)
def test_fallback_parse_error_data_says_what_and_where(data: bytes, what: str, where: str | None) -> None:
    message = parse_error(data).data
    assert what in message
    if where is not None:
        assert where in message


def test_parse_error_position_is_in_bytes() -> None:
    """
    The orjson path reports "at byte N": N must count bytes, like the
    fallback does, not characters (orjson's C{pos} is a character index).
    """
    data = '["é", x]'.encode()
    assert data.index(b"x") == 7
    assert "at byte 7" in parse_error(data).data


def test_parse_error_message_has_no_doubled_words() -> None:
    """The stdlib's message already ends in "at"; the fallback must not add another."""
    message = parse_error(b"[" + BIG + b', "a\x01"]').data
    assert " at at " not in message


def test_parse_error_is_an_rpc_error() -> None:
    error = parse_error(b"{")
    assert isinstance(error, RPCError)
    assert error.to_dict()["code"] == -32700


# --- depth ------------------------------------------------------------------------

NESTERS = [
    pytest.param(nested_arrays, id="arrays"),
    pytest.param(nested_objects, id="objects"),
    pytest.param(nested_mixed, id="mixed"),
]


@pytest.mark.parametrize("nest", NESTERS)
@pytest.mark.parametrize("inner", [b"1", BIG], ids=["orjson", "fallback"])
def test_depth_1024_accepted(nest: Any, inner: bytes) -> None:
    value = loads(nest(1024, inner))
    assert depth_of(value) == 1024


@pytest.mark.parametrize("nest", NESTERS)
@pytest.mark.parametrize("inner", [b"1", BIG], ids=["orjson", "fallback"])
def test_depth_1025_rejected(nest: Any, inner: bytes) -> None:
    assert parse_error(nest(1025, inner)).data == "nesting deeper than 1024"


@pytest.mark.parametrize("inner", [b"1", BIG], ids=["orjson", "fallback"])
def test_very_deep_input_is_a_parse_error_not_a_crash(inner: bytes) -> None:
    parse_error(nested_arrays(100_000, inner))
    parse_error(b"[" * 100_000 + inner)  # unterminated too


@pytest.mark.parametrize("nest", NESTERS)
@pytest.mark.parametrize("inner", [b"1", BIG], ids=["orjson", "fallback"])
@pytest.mark.parametrize("max_depth", [1, 2, 7, 100])
def test_smaller_max_depth(nest: Any, inner: bytes, max_depth: int) -> None:
    assert depth_of(loads(nest(max_depth, inner), max_depth)) == max_depth
    error = parse_error(nest(max_depth + 1, inner), max_depth)
    assert error.data == f"nesting deeper than {max_depth}"


@pytest.mark.parametrize("inner", [b"1", BIG], ids=["orjson", "fallback"])
def test_max_depth_counts_nesting_not_brackets(inner: bytes) -> None:
    """Many sibling containers, or brackets inside strings, are not depth."""
    siblings = b"[" + b",".join([b"[]"] * 50) + b"," + inner + b"]"
    assert len(loads(siblings, 2)) == 51
    in_string = b'["[[[[[{{{{{", ' + inner + b"]"
    assert loads(in_string, 1)[0] == "[[[[[{{{{{"
    escaped = b'["\\"[[[[[", ' + inner + b"]"
    assert loads(escaped, 1)[0] == '"[[[[['


def test_fallback_depth_ignores_brackets_in_strings_next_to_deep_value() -> None:
    data = b'["[[[[[[[[", ' + nested_arrays(1023, b"0") + b", " + BIG + b"]"
    assert depth_of(loads(data)) == 1024


def test_scalar_depth_with_max_depth_one() -> None:
    assert loads(b"[1]", 1) == [1]
    assert loads(b"1", 1) == 1


# --- big integers -------------------------------------------------------------------

BIG_INTS = [
    2**63 - 1,
    -(2**63),
    2**63,
    2**64 - 1,
    2**64,
    -(2**63) - 1,
    -(2**64),
    -(2**64) - 1,
    10**19,
    10**40 + 7,
    -(10**40) - 7,
    3**200,
    -(3**200),
]


@pytest.mark.parametrize("number", BIG_INTS)
def test_big_int_round_trips_exactly(number: int) -> None:
    text = str(number).encode()
    value = loads(text)
    assert type(value) is int
    assert value == number
    assert dumps(number) == text
    nested = {"n": [number, "x"], "m": -number}
    assert loads(dumps(nested)) == nested
    assert type(loads(dumps(nested))["n"][0]) is int


def test_orjson_would_have_lost_the_value() -> None:
    """Guards the premise: without the check, the value becomes a float."""
    value = loads(b"18446744073709551616", check_big_int=False)
    assert type(value) is float
    assert loads(b"18446744073709551616") == 18446744073709551616


def test_big_int_with_exponent_or_fraction_is_a_float() -> None:
    assert loads(BIG + b".5") == float("12345678901234567890.5")
    assert type(loads(BIG + b"e0")) is float
    assert loads(b"0.12345678901234567890123") == 0.12345678901234567890123


def test_digit_runs_inside_strings() -> None:
    data = b'{"id": "12345678901234567890123", "n": 1, "f": 1.5, "k": "\\u00e9"}'
    assert may_hold_big_int(data)
    assert loads(data) == {"id": "12345678901234567890123", "n": 1, "f": 1.5, "k": "é"}
    key = b'{"12345678901234567890": [true, null]}'
    assert loads(key) == {"12345678901234567890": [True, None]}


def test_fallback_result_equals_orjson_result() -> None:
    doc = b'{"a": [1, -2.5, 1e-7, true, false, null, "\\u00e9\\n", {"b": []}], "c": "\xf0\x9f\x98\x80"}'
    assert loads(doc) == loads(with_big_int(doc))[0]


def test_too_many_digits_is_rejected_not_changed() -> None:
    parse_error(b"1" * 5000)


def test_whitespace_around_big_int() -> None:
    assert loads(b" \t" + BIG + b"\r") == BIG_VALUE
    assert loads(b"-" + BIG) == -BIG_VALUE


# --- may_hold_big_int ------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", False),
        (b"1" * 18, False),
        (b"1" * 19, True),
        (b"-" + b"9" * 19, True),
        (b'"' + b"0" * 19 + b'"', True),
        (b"123456789.123456789", False),
        (b"[123456789012345678, 123456789012345678]", False),
        (b"x" + b"5" * 25 + b"x", True),
        (b"\xff" * 19, False),
    ],
)
def test_may_hold_big_int(data: bytes, expected: bool) -> None:
    assert may_hold_big_int(data) is expected


# --- dumps / dumps_line -------------------------------------------------------------


def test_dumps_is_compact_utf8() -> None:
    value = {"a": [1, 2.5, None, True, False], "b": {"c": "é😀\u2028"}}
    data = dumps(value)
    assert data == '{"a":[1,2.5,null,true,false],"b":{"c":"é😀\u2028"}}'.encode()
    assert b" " not in data
    assert b"\\u" not in data
    assert not data.endswith(b"\n")


def test_dumps_line_appends_exactly_one_newline() -> None:
    value = {"a": "x\ny"}
    assert dumps_line(value) == dumps(value) + b"\n"
    assert dumps_line(value).count(b"\n") == 1  # the one inside the string is escaped
    assert dumps_line([]) == b"[]\n"
    assert dumps_line("é") == '"é"\n'.encode()


@pytest.mark.parametrize("dump", [dumps, dumps_line], ids=["dumps", "dumps_line"])
def test_dumps_big_ints_exact(dump: Any) -> None:
    value = [2**64, {"k": -(2**70), "s": "é"}, 1.5]
    data = dump(value)
    assert data.rstrip(b"\n") == '[18446744073709551616,{"k":-1180591620717411303424,"s":"é"},1.5]'.encode()
    assert data.endswith(b"\n") is (dump is dumps_line)
    assert loads(data) == value


@pytest.mark.parametrize("dump", [dumps, dumps_line], ids=["dumps", "dumps_line"])
@pytest.mark.parametrize(
    "value",
    [
        float("nan"),
        float("inf"),
        -float("inf"),
        [1, float("nan")],
        {"a": {"b": [float("inf")]}},
        [None, float("nan")],
        [2**70, float("nan")],
    ],
)
def test_dumps_refuses_non_finite(dump: Any, value: Any) -> None:
    with pytest.raises(EncodeError):
        dump(value)


@pytest.mark.parametrize("dump", [dumps, dumps_line], ids=["dumps", "dumps_line"])
@pytest.mark.parametrize(
    "value",
    [
        object(),
        b"bytes",
        {1, 2},
        {"a": object()},
        [2**70, object()],
        {(1, 2): 1},
        "\ud800",
        [2**70, "\udc00"],
    ],
    ids=[
        "object",
        "bytes",
        "set",
        "nested-object",
        "big-int-and-object",
        "tuple-key",
        "surrogate",
        "big+surr",
    ],
)
def test_dumps_refuses_unserializable(dump: Any, value: Any) -> None:
    with pytest.raises(EncodeError) as info:
        dump(value)
    assert isinstance(info.value, ValueError)
    assert str(info.value)


def test_dumps_refuses_int_too_long_for_decimal_conversion() -> None:
    with pytest.raises(EncodeError):
        dumps(10**5000)


def test_dumps_non_string_keys() -> None:
    assert dumps({1: "a", 2.5: "b", None: "c"}) == b'{"1":"a","2.5":"b","null":"c"}'
    assert dumps({True: "x", False: "y"}) == b'{"true":"x","false":"y"}'
    assert dumps({1: 2**70}) == b'{"1":1180591620717411303424}'


def test_null_in_data_is_not_mistaken_for_nan() -> None:
    assert dumps([None, "null", {"null": None}]) == b'[null,"null",{"null":null}]'


def test_dumps_tuple_is_an_array() -> None:
    assert dumps((1, "a")) == b'[1,"a"]'


# --- loads_unterminated ------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"a": 1}', {"a": 1}),
        (b"[1, 2]", [1, 2]),
        (b'"text"', "text"),
        (b"[]  ", []),
        (b'{"a":1}\r', {"a": 1}),
        (b"[" + BIG + b"]", [BIG_VALUE]),
        (b'{"k": "\\ud83d\\ude00"}', {"k": "😀"}),
    ],
)
def test_loads_unterminated_complete(data: bytes, expected: Any) -> None:
    complete, value = loads_unterminated(data)
    assert complete is True
    assert value == expected


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b" ",
        b"{",
        b'{"a"',
        b'{"a":',
        b'{"a": [1, 2',
        b'{"a": [1, 2]',
        b'"abc',
        b'"abc\\',
        b'"\\u00',
        b'["\\ud800',
        b"[-",
        b"[t",
        b"[1.",
        b"[1e",
        b"[" + BIG,
        b'{"x": {"y": 1}',
    ],
)
def test_loads_unterminated_prefix(data: bytes) -> None:
    assert loads_unterminated(data) == (False, None)


def test_loads_unterminated_prefix_with_non_ascii() -> None:
    """A prefix holding non-ASCII text is still only a prefix (not invalid)."""
    assert loads_unterminated('{"name": "é", "x": {"y": 1}'.encode()) == (False, None)
    assert loads_unterminated('["é"'.encode()) == (False, None)


def test_loads_unterminated_prefix_ending_inside_a_utf8_sequence() -> None:
    """A chunk may end in the middle of a multi-byte character."""
    assert loads_unterminated(b'["\xc3') == (False, None)
    assert loads_unterminated(b'["\xf0\x9f\x98') == (False, None)


@pytest.mark.parametrize(
    "data",
    [
        b"[1] x",
        b"[1]]",
        b'{"a" 1}',
        b"NaN",
        b"[NaN",
        b"[1e400]",
        b'"\xff"',
        b'["\xff',
        b'["\\ud800"]',
        b'"a\x01',
        b"[tx",
        b"[1,,",
        b"[" * 1025,
        nested_arrays(1025),
        b"[" + BIG + b"] x",
        b'["\\ud800", ' + BIG + b"]",
    ],
)
def test_loads_unterminated_invalid(data: bytes) -> None:
    with pytest.raises(ParseError) as info:
        loads_unterminated(data)
    assert info.value.data


def test_loads_unterminated_applies_max_depth() -> None:
    assert loads_unterminated(nested_arrays(3), 3) == (True, [[[1]]])
    with pytest.raises(ParseError, match="Parse error"):
        loads_unterminated(nested_arrays(4), 3)


def test_loads_unterminated_every_prefix_of_a_document() -> None:
    doc = b'{"a": [1, 2.5e3, "x\\u00e9\\"y", true, false, null, {"b": -0}], "c": [' + BIG + b"]}"
    for end in range(len(doc)):
        assert loads_unterminated(doc[:end]) == (False, None), doc[:end]
    assert loads_unterminated(doc) == (True, loads(doc))


# --- Framer: splitting ------------------------------------------------------------


def feed_all(framer: Framer, chunks: list[bytes]) -> list[bytes | LineTooLong]:
    out: list[bytes | LineTooLong] = []
    for chunk in chunks:
        out.extend(framer.feed(chunk))
    return out


STREAM = b'{"a":1}\n[2]\r\n\n"three"\n\r\n4\n'
STREAM_LINES = [b'{"a":1}', b"[2]\r", b"", b'"three"', b"\r", b"4"]


def test_framer_whole_stream() -> None:
    framer = Framer(100)
    assert framer.feed(STREAM) == STREAM_LINES
    assert framer.buffered == 0
    assert framer.partial == b""


def test_framer_every_two_way_split() -> None:
    for cut in range(len(STREAM) + 1):
        framer = Framer(100)
        assert feed_all(framer, [STREAM[:cut], STREAM[cut:]]) == STREAM_LINES, cut


def test_framer_every_three_way_split() -> None:
    for first in range(len(STREAM) + 1):
        for second in range(first, len(STREAM) + 1):
            framer = Framer(100)
            chunks = [STREAM[:first], STREAM[first:second], STREAM[second:]]
            assert feed_all(framer, chunks) == STREAM_LINES, chunks


def test_framer_byte_by_byte() -> None:
    framer = Framer(100)
    assert feed_all(framer, [STREAM[i : i + 1] for i in range(len(STREAM))]) == STREAM_LINES


def test_framer_partial_is_kept_until_newline() -> None:
    framer = Framer(100)
    assert framer.feed(b'{"a"') == []
    assert framer.partial == b'{"a"'
    assert framer.buffered == 4
    assert framer.feed(b":1}") == []
    assert framer.buffered == 7
    assert framer.feed(b"\n[") == [b'{"a":1}']
    assert framer.partial == b"["
    assert framer.buffered == 1


def test_framer_crlf_split_between_chunks() -> None:
    framer = Framer(100)
    assert framer.feed(b"[1]\r") == []
    assert framer.feed(b"\n") == [b"[1]\r"]
    assert loads(b"[1]\r") == [1]


def test_framer_blank_lines_passed_through() -> None:
    framer = Framer(100)
    assert framer.feed(b"\n\n\r\n") == [b"", b"", b"\r"]


def test_framer_empty_feed() -> None:
    framer = Framer(100)
    assert framer.feed(b"") == []
    framer.feed(b"ab")
    assert framer.feed(b"") == []
    assert framer.partial == b"ab"


# --- Framer.may_hold_big_int ---------------------------------------------------------

HUGE = b"98765432109876543210"  # past 2**64: orjson would make it a float


def test_framer_big_int_flag_false_for_small_numbers() -> None:
    framer = Framer(100)
    assert framer.feed(b"[1, 123456789012345678]\n") == [b"[1, 123456789012345678]"]
    assert framer.may_hold_big_int is False


def test_framer_big_int_flag_in_one_chunk() -> None:
    framer = Framer(100)
    lines = framer.feed(b"[" + HUGE + b"]\n")
    assert framer.may_hold_big_int is True
    assert loads(lines[0], check_big_int=framer.may_hold_big_int) == [98765432109876543210]


def test_framer_big_int_flag_across_a_chunk_boundary() -> None:
    framer = Framer(100)
    assert framer.feed(b"[" + HUGE[:10]) == []
    lines = framer.feed(HUGE[10:] + b"]\n")
    assert framer.may_hold_big_int is True
    assert loads(lines[0], check_big_int=framer.may_hold_big_int) == [98765432109876543210]


def test_framer_big_int_flag_when_the_number_came_in_an_earlier_chunk() -> None:
    """The line is completed by a chunk with no digits; the big int came before."""
    framer = Framer(100)
    assert framer.feed(b"[" + HUGE) == []
    lines = framer.feed(b"]\n")
    assert lines == [b"[" + HUGE + b"]"]
    assert framer.may_hold_big_int is True
    value = loads(lines[0], check_big_int=framer.may_hold_big_int)
    assert value == [98765432109876543210]
    assert type(value[0]) is int


def test_framer_big_int_flag_with_unread_lines() -> None:
    framer = Framer(100)
    lines = framer.feed(b"[" + HUGE + b"]\n")
    framer.unread(lines)
    assert framer.feed(b"") == lines
    assert framer.may_hold_big_int is True


# --- Framer: line-length limit ------------------------------------------------------


def test_framer_line_at_limit_is_accepted() -> None:
    framer = Framer(5)
    assert framer.feed(b"12345\n") == [b"12345"]
    assert framer.feed(b"123") == []
    assert framer.feed(b"45") == []
    assert framer.feed(b"\n") == [b"12345"]


def test_framer_long_line_in_one_chunk() -> None:
    framer = Framer(5)
    assert framer.feed(b"ok\n123456\nnext\n") == [b"ok", LineTooLong(5), b"next"]
    assert framer.buffered == 0


def test_framer_long_lines_back_to_back() -> None:
    framer = Framer(3)
    assert framer.feed(b"aaaa\nbbbb\nc\n") == [LineTooLong(3), LineTooLong(3), b"c"]


def test_framer_long_tail_after_complete_lines() -> None:
    """The long line starts in a chunk that also completes other lines."""
    framer = Framer(5)
    assert framer.feed(b"ok\n1234567") == [b"ok", LineTooLong(5)]
    assert framer.buffered == 0
    assert framer.feed(b"89") == []
    assert framer.feed(b"0\nnext\n") == [b"next"]


def test_framer_long_line_over_many_chunks_reported_once() -> None:
    framer = Framer(5)
    events = [framer.feed(b"123") for _ in range(6)]
    events.append(framer.feed(b"456\nnext\n"))
    events.append(framer.feed(b"after\n"))
    flat = [event for chunk in events for event in chunk]
    assert flat == [LineTooLong(5), b"next", b"after"]
    assert events[1] == [LineTooLong(5)]  # reported as soon as it is known


def test_framer_long_line_without_newline_then_resync() -> None:
    framer = Framer(5)
    first = list(framer.feed(b"1234567"))
    second = list(framer.feed(b"89\nab\n"))
    assert first == [LineTooLong(5)]
    assert second == [b"ab"]


def test_framer_feed_results_are_independent_lists() -> None:
    """A list returned by feed() is the caller's: later feeds do not change it."""
    framer = Framer(5)
    first = framer.feed(b"1234567")
    snapshot = list(first)
    framer.feed(b"\nab\n")
    assert first == snapshot


def test_framer_long_line_resync_when_newline_is_the_next_byte() -> None:
    framer = Framer(5)
    assert feed_all(framer, [b"123456", b"\n", b"ok\n"]) == [LineTooLong(5), b"ok"]


def test_framer_limit_on_partial_without_newline() -> None:
    framer = Framer(5)
    assert framer.feed(b"12345") == []
    assert framer.partial == b"12345"
    assert framer.feed(b"6") == [LineTooLong(5)]
    assert framer.buffered == 0
    assert framer.unterminated(force=True) is None


def test_line_too_long_value_semantics() -> None:
    assert LineTooLong(5) == LineTooLong(5)
    assert LineTooLong(5) != LineTooLong(6)
    assert LineTooLong(5) != 5
    assert hash(LineTooLong(5)) == hash(LineTooLong(5))
    assert repr(LineTooLong(7)) == "LineTooLong(7)"
    assert LineTooLong(9).limit == 9


# --- Framer: unread --------------------------------------------------------------


def test_framer_unread_returns_lines_first() -> None:
    framer = Framer(100)
    lines = framer.feed(b"a\nb\nc\n")
    assert lines == [b"a", b"b", b"c"]
    framer.unread(lines[1:])
    assert framer.feed(b"d\n") == [b"b", b"c", b"d"]
    assert framer.feed(b"e\n") == [b"e"]


def test_framer_unread_then_empty_feed() -> None:
    framer = Framer(100)
    framer.unread([b"x"])
    assert framer.feed(b"") == [b"x"]
    assert framer.feed(b"") == []


def test_framer_unread_keeps_order_and_events() -> None:
    framer = Framer(3)
    framer.unread([b"c"])
    framer.unread([b"a", LineTooLong(3)])
    assert framer.feed(b"par") == [b"a", LineTooLong(3), b"c"]
    assert framer.partial == b"par"


def test_framer_unread_with_long_line_in_new_data() -> None:
    framer = Framer(3)
    framer.unread([b"x"])
    assert framer.feed(b"toolong") == [b"x", LineTooLong(3)]
    assert framer.feed(b"\ny\n") == [b"y"]


def test_framer_unread_while_discarding() -> None:
    framer = Framer(3)
    assert framer.feed(b"toolong") == [LineTooLong(3)]
    framer.unread([b"x"])
    assert framer.feed(b"more") == [b"x"]
    assert framer.feed(b"\ny\n") == [b"y"]


# --- Framer: unterminated candidates -----------------------------------------------


@pytest.mark.parametrize("data", [b'{"a":1}', b"[1]", b'"s"', b'{"a":1}  ', b"[1]\r", b'{"a":1} \t'])
def test_unterminated_candidate(data: bytes) -> None:
    framer = Framer(100)
    assert framer.feed(data) == []
    assert framer.unterminated() == data


@pytest.mark.parametrize("data", [b"", b"  ", b"\r", b"123", b"true", b"null", b'{"a":1', b'{"a":', b"[1,"])
def test_unterminated_not_a_candidate(data: bytes) -> None:
    framer = Framer(100)
    framer.feed(data)
    assert framer.unterminated() is None
    assert framer.unterminated(force=True) is None
    assert framer.retry_pending is False


def test_unterminated_after_complete_lines() -> None:
    framer = Framer(100)
    assert framer.feed(b'[1]\n{"b":2}') == [b"[1]"]
    assert framer.unterminated() == b'{"b":2}'


def test_unterminated_doubling_backoff() -> None:
    framer = Framer(1000)
    framer.feed(b"[1]")  # 3 bytes: offered, next offer at 6
    assert framer.unterminated() == b"[1]"
    assert framer.retry_pending is False
    framer.feed(b"]")  # 4 bytes: held back
    assert framer.unterminated() is None
    assert framer.retry_pending is True
    framer.feed(b"]")  # 5 bytes: still held back
    assert framer.unterminated() is None
    assert framer.retry_pending is True
    framer.feed(b"]")  # 6 bytes: doubled, offered again; next at 12
    assert framer.unterminated() == b"[1]]]]"
    assert framer.retry_pending is False
    framer.feed(b"]" * 5)  # 11 bytes
    assert framer.unterminated() is None
    framer.feed(b"]")  # 12 bytes
    assert framer.unterminated() == b"[1]" + b"]" * 9


def test_unterminated_backoff_counts_offers_not_calls() -> None:
    """A held-back call does not move the next offer further away."""
    framer = Framer(1000)
    framer.feed(b"[10]")  # 4 bytes; next at 8
    assert framer.unterminated() == b"[10]"
    for _ in range(3):
        framer.feed(b" ")
        assert framer.unterminated() is None
    framer.feed(b" ")  # 8 bytes
    assert framer.unterminated() == b"[10]    "


def test_unterminated_is_linear_over_many_chunks() -> None:
    """Offers over a growing buffer total O(n) bytes, not O(n^2)."""
    framer = Framer(10**7)
    offered = offers = 0
    for _ in range(20_000):
        framer.feed(b"[1]")  # every chunk ends like a complete value
        candidate = framer.unterminated()
        if candidate is not None:
            offers += 1
            offered += len(candidate)
    assert framer.buffered == 60_000
    assert offered <= 2 * framer.buffered
    assert offers <= 16


def test_retry_pending_and_force() -> None:
    framer = Framer(1000)
    framer.feed(b'{"a":')
    assert framer.unterminated() is None  # not a candidate: no offer, no backoff
    assert framer.retry_pending is False
    framer.feed(b"[1]")
    assert framer.unterminated() == b'{"a":[1]'  # 8 bytes; next at 16
    framer.feed(b"}")
    assert framer.unterminated() is None
    assert framer.retry_pending is True
    assert framer.unterminated(force=True) == b'{"a":[1]}'
    assert framer.retry_pending is False  # 9 bytes were just tried
    framer.feed(b" ")
    assert framer.retry_pending is True  # 10 bytes, ends with "}" once stripped
    framer.feed(b"x")
    assert framer.retry_pending is False  # does not end like a complete value
    assert framer.unterminated(force=True) is None


def test_newline_resets_backoff() -> None:
    framer = Framer(1000)
    framer.feed(b"[1000]")
    assert framer.unterminated() == b"[1000]"  # next at 12
    assert framer.feed(b"\n[2]") == [b"[1000]"]
    assert framer.unterminated() == b"[2]"


def test_unterminated_none_while_discarding() -> None:
    framer = Framer(4)
    assert framer.feed(b'["abcdef"]') == [LineTooLong(4)]
    assert framer.unterminated() is None
    assert framer.unterminated(force=True) is None
    assert framer.retry_pending is False


# --- Framer: take_partial ----------------------------------------------------------


def test_take_partial() -> None:
    framer = Framer(100)
    framer.feed(b'[1]\n{"a":2}')
    assert framer.unterminated() == b'{"a":2}'
    assert framer.take_partial() == b'{"a":2}'
    assert framer.buffered == 0
    assert framer.unterminated(force=True) is None
    assert framer.feed(b"[3]\n") == [b"[3]"]


def test_take_partial_resets_backoff() -> None:
    framer = Framer(100)
    framer.feed(b"[100]")
    assert framer.unterminated() == b"[100]"  # next at 10
    framer.take_partial()
    framer.feed(b"[2]")
    assert framer.unterminated() == b"[2]"


def test_take_partial_discard_rest() -> None:
    framer = Framer(100)
    framer.feed(b'{"a": x}')
    assert framer.take_partial(discard_rest=True) == b'{"a": x}'
    assert framer.feed(b"rest of the bad line") == []
    assert framer.unterminated(force=True) is None
    assert framer.feed(b' still bad"]}\n[4]\n') == [b"[4]"]
    assert framer.feed(b"[5]") == []
    assert framer.unterminated() == b"[5]"


def test_take_partial_discard_rest_when_next_byte_is_newline() -> None:
    framer = Framer(100)
    framer.feed(b"[1] x")
    framer.take_partial(discard_rest=True)
    assert framer.feed(b"\n[2]\n") == [b"[2]"]


def test_take_partial_empty() -> None:
    framer = Framer(100)
    assert framer.take_partial() == b""
    assert framer.feed(b"a\n") == [b"a"]


def test_fallback_encoder_writes_orjson_types_like_orjson() -> None:
    """A big integer sends a value to the exact encoder; its other parts keep their form."""
    import dataclasses
    import datetime
    import enum
    import uuid

    class Colour(enum.Enum):
        RED = "red"

    @dataclasses.dataclass
    class Point:
        x: int
        y: int

    parts = [
        datetime.date(2020, 1, 2),
        datetime.datetime(2020, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
        datetime.time(3, 4, 5),
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        Colour.RED,
        Point(1, 2),
    ]
    with_big = loads(dumps([2**70, *parts]))
    assert with_big[0] == 2**70
    assert with_big[1:] == loads(dumps(parts))  # orjson's own encoding of the same values
    with pytest.raises(EncodeError, match="not JSON serializable"):
        dumps([2**70, object()])

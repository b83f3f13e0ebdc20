"""
Tests for L{jsonservice.codec}: strict decoding, encoding, framing.

Pure: no Twisted, no I/O.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import decimal
import enum
import gc
import math
import subprocess
import sys
import time
import uuid
from typing import Any

import orjson
import pytest

from jsonservice import codec
from jsonservice._mypyc import compiled
from jsonservice.codec import (
    EncodeError,
    dumps,
    dumps_line,
    loads,
    may_hold_big_int,
)
from jsonservice.errors import ParseError, RPCError
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
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('twisted', 'zope'))\n"
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
        "import jsonservice.errors, jsonservice.limits, jsonservice.auth\n"
        "import jsonservice.connection, jsonservice.replies, jsonservice.interfaces\n"
        "assert jsonservice.framing.Framer\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('twisted', 'zope'))\n"
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
    value = loads(b"18446744073709551616", check_exact=False)
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
    # With a rich value, whichever orjson meets first; and nested, in a line.
    assert dumps({1: datetime.date(2024, 1, 2)}) == b'{"1":"2024-01-02"}'
    nested = {"d": datetime.date(2024, 1, 2), "k": {3: 1.5}}
    assert dumps(nested) == b'{"d":"2024-01-02","k":{"3":1.5}}'
    assert dumps_line({"result": {None: [1, {False: "x"}]}}) == b'{"result":{"null":[1,{"false":"x"}]}}\n'
    with pytest.raises(EncodeError):
        dumps({1: float("nan")})


def test_dict_keys_are_written_alike_whatever_sits_beside_them() -> None:
    """
    Key text is the stdlib's for numbers (repr of a float, never orjson's
    0.00001), ISO 8601 for dates and times (never orjson's five-digit
    microseconds), with or without a big integer in the same value (an
    attack run found both varying with a sibling); other key types and two
    keys written alike are refused.
    """
    assert dumps({1e-05: 1, 1.5e-07: 2, 1e16: 3}) == b'{"1e-05":1,"1.5e-07":2,"1e+16":3}'
    assert dumps({1e-05: 2**70}) == b'{"1e-05":1180591620717411303424}'
    time_key = datetime.time(1, 2, 3, 10000)
    colour = enum.Enum("Colour", {"RED": "red", "TWO": 2})
    for sibling, written in ((1, b"1"), (2**70, b"1180591620717411303424")):
        assert dumps({time_key: sibling}) == b'{"01:02:03.010000":' + written + b"}"
        assert dumps({datetime.date(2020, 1, 2): sibling}) == b'{"2020-01-02":' + written + b"}"
        uuid_key = b'"00000000-0000-0000-0000-000000000001":'
        assert dumps({uuid.UUID(int=1): sibling}) == b"{" + uuid_key + written + b"}"
        assert dumps({colour.RED: sibling, colour.TWO: 0}) == b'{"red":' + written + b',"2":0}'
        with pytest.raises(EncodeError, match="dict keys must be str, int, float, bool, None"):
            dumps({decimal.Decimal(1): sibling})
        with pytest.raises(EncodeError, match="two keys of one object would both be written as '1'"):
            dumps({1: sibling, "1": 0})
    assert dumps({enum.IntEnum("E", "A").A: 1}) == b'{"1":1}'
    assert dumps_line([{(1).__class__(7): {True: [{None: 1.5}]}}]) == b'[{"7":{"true":[{"null":1.5}]}}]\n'


@dataclasses.dataclass
class _Holder:
    mapping: dict[Any, Any]


def test_dict_keys_take_the_rule_wherever_the_dict_sits() -> None:
    """
    The same key text, or the same refusal, when orjson gives up before
    reaching the dict (a big integer first, nesting past its 255 levels) or
    the dict sits in a dataclass or a Struct (a second attack run found
    each taking other rules, by order).
    """
    import msgspec

    class Box(msgspec.Struct):
        mapping: dict[Any, Any]

    key = datetime.time(1, 2, 3, 10000)
    deep: Any = {key: 1}
    for _ in range(300):
        deep = [deep]
    assert dumps([2**70, {key: 1}]) == b'[1180591620717411303424,{"01:02:03.010000":1}]'
    assert dumps(_Holder({key: 1})) == b'{"mapping":{"01:02:03.010000":1}}'
    assert dumps([2**70, _Holder({key: 1})]) == b'[1180591620717411303424,{"mapping":{"01:02:03.010000":1}}]'
    assert dumps(deep) == b"[" * 300 + b'{"01:02:03.010000":1}' + b"]" * 300
    for value in (
        [2**70, {1: 1, "1": 2}],
        _Holder({1: 1, "1": 2}),
        Box({1: 1, "1": 2}),
        [{1: 1, "1": 2}, 2**70],
    ):
        with pytest.raises(EncodeError, match="two keys of one object would both be written as '1'"):
            dumps(value)
    too_deep: Any = {1: 1}
    for _ in range(5000):
        too_deep = [too_deep]
    with pytest.raises(EncodeError, match="nesting deeper than"):
        dumps([2**70, too_deep])


def test_null_in_data_is_not_mistaken_for_nan() -> None:
    assert dumps([None, "null", {"null": None}]) == b'[null,"null",{"null":null}]'


def test_dumps_tuple_is_an_array() -> None:
    assert dumps((1, "a")) == b'[1,"a"]'


# --- numbers that would change: underflow, the int/str conversion limit ----------------


@pytest.mark.parametrize(
    "data",
    [
        b"1e-400",
        b"-1e-400",
        b"1E-400",
        b"1.5e-00400",
        b"2e-324",  # nonzero, rounds to 0.0 (the smallest subnormal is 4.9e-324)
        b"0.000000000000000001e-306",
        b'[1, {"a": 1e-400}]',
        b"[1e-400, " + BIG + b"]",
        b"0." + b"0" * 400 + b"1",  # no exponent at all: a long run, the fallback
        b"1e-99999999999999999999",
    ],
)
def test_underflow_is_refused_not_changed(data: bytes) -> None:
    message = parse_error(data).data
    assert "underflows to 0.0" in message
    assert "below the float range" in message


def test_underflow_message_names_the_number() -> None:
    assert parse_error(b"1e-400").data == "number 1e-400 underflows to 0.0: below the float range"
    long_literal = parse_error(b"0." + b"0" * 100_000 + b"1").data
    assert len(long_literal) < 200  # a huge literal is cut, not quoted whole


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"0e-400", 0.0),
        (b"0.0e-999", 0.0),
        (b"-0.0e-400", -0.0),
        (b"0E-0400", 0.0),
        (b"5e-324", 5e-324),
        (b"3e-324", 5e-324),  # rounds to the smallest subnormal: not zero
        (b"2.2250738585072014e-308", 2.2250738585072014e-308),
        (b"0.000000000000000001e-305", 1e-323),
        (b"1e-5", 1e-5),
        (b"[1e-300, " + BIG + b"]", [1e-300, BIG_VALUE]),
        (b'"1e-400"', "1e-400"),  # a string, not a number
        (b'["x1e-400", 0.0]', ["x1e-400", 0.0]),
    ],
)
def test_zeros_and_subnormals_are_kept(data: bytes, expected: Any) -> None:
    value = loads(data)
    assert value == expected
    if isinstance(expected, float):
        assert math.copysign(1.0, value) == math.copysign(1.0, expected)


def test_underflow_check_keeps_common_lines_on_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a literal that could underflow costs the slower exact decoder."""

    def no_fallback(data: bytes, max_depth: int) -> Any:
        raise AssertionError(f"fallback used for {data!r}")

    monkeypatch.setattr(codec, "_loads_exact", no_fallback)
    for data in [
        b'{"jsonrpc":"2.0","method":"time-out","params":["re-use", "page-123", 1e-5, 2.5E-99],"id":1}',
        b'["release-2024", "e-400", 1e-99]',
    ]:
        assert loads(data) == orjson.loads(data)


DIGIT_LIMIT = sys.get_int_max_str_digits()


def test_the_interpreter_limit_is_the_default() -> None:
    """The premise of the tests below: nothing raised or removed the limit."""
    assert DIGIT_LIMIT == 4300


@pytest.mark.parametrize("sign", [b"", b"-"])
def test_integers_up_to_the_digit_limit_are_exact(sign: bytes) -> None:
    text = sign + b"7" * DIGIT_LIMIT
    number = int(text)
    assert loads(text) == number
    assert loads(b"[" + text + b', "x"]') == [number, "x"]
    assert dumps(number) == text
    assert loads(dumps({"n": [number]})) == {"n": [number]}


@pytest.mark.parametrize("sign", [b"", b"-"])
def test_integers_past_the_digit_limit_are_refused_naming_it(sign: bytes) -> None:
    message = parse_error(sign + b"1" * 5000).data
    assert message == "integer of 5000 digits exceeds the 4300-digit limit"
    assert "set_int_max_str_digits" not in message  # CPython's advice is not ours
    assert "4301 digits" in parse_error(b'{"n": [' + sign + b"1" * 4301 + b"]}").data
    assert sys.get_int_max_str_digits() == DIGIT_LIMIT  # never raised, not even for a moment


@pytest.mark.parametrize("dump", [dumps, dumps_line], ids=["dumps", "dumps_line"])
@pytest.mark.parametrize(
    "value",
    [10**4300, -(10**4300), [1, {"k": 10**5000}], {10**4300: 1}],
    ids=["4301-digits", "negative", "nested", "key"],
)
def test_dumps_refuses_integers_past_the_digit_limit_naming_it(dump: Any, value: Any) -> None:
    with pytest.raises(EncodeError, match="exceeds the 4300-digit limit") as info:
        dump(value)
    assert "set_int_max_str_digits" not in str(info.value)


def test_digit_limit_follows_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    """The limit is read at each call; the codec itself never changes it."""
    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)  # the lowest CPython allows
    try:
        assert loads(b"1" * 640) == int(b"1" * 640)
        assert parse_error(b"-" + b"1" * 641).data == "integer of 641 digits exceeds the 640-digit limit"
    finally:
        sys.set_int_max_str_digits(before)


# --- invalid UTF-8 is named, with its byte offset, on both paths -----------------------


@pytest.mark.parametrize(
    ("data", "offset"),
    [
        (b'"\xff"', 1),
        (b"\xff", 0),
        (b'["a", "\xc3"]', 7),
        (b'"\xed\xa0\x80"', 1),  # a surrogate encoded in UTF-8 is not UTF-8
        ('["é😀", "'.encode() + b'\xff"]', 12),
        (b"[1] \x80", 4),
    ],
)
@pytest.mark.parametrize("path", ["orjson", "fallback"])
def test_invalid_utf8_is_named_with_its_byte_offset(data: bytes, offset: int, path: str) -> None:
    if path == "fallback":
        data = BIG + b"," + data  # a long digit run first: the exact decoder
        offset += len(BIG) + 1
        assert may_hold_big_int(data)
    message = parse_error(data).data
    assert message.startswith(f"invalid UTF-8 at byte {offset} (")
    assert "surrogate" not in message


# --- NaN and infinities are refused wherever orjson would write null -------------------


class FloatEnum(float, enum.Enum):
    NAN = float("nan")


class PlainEnum(enum.Enum):
    NAN = float("nan")
    INF_IN_TUPLE = (1, float("inf"))


@dataclasses.dataclass
class Box:
    value: Any
    _private: Any = 0.0


@dataclasses.dataclass(slots=True)
class SlotBox:
    value: Any


class MyDict(dict[Any, Any]):
    pass


class MyList(list[Any]):
    pass


NAN = float("nan")
INF = float("inf")

NON_FINITE_ANYWHERE = [
    pytest.param((1, NAN), id="tuple"),
    pytest.param(((INF,),), id="tuple-in-tuple"),
    pytest.param(collections.OrderedDict(a=NAN), id="ordered-dict"),
    pytest.param(MyDict(a=[-INF]), id="dict-subclass"),
    pytest.param(MyList([NAN]), id="list-subclass"),
    pytest.param(Box(NAN), id="dataclass"),
    pytest.param(SlotBox(INF), id="slots-dataclass"),
    pytest.param(Box((1, {"a": SlotBox([NAN])})), id="dataclass-tuple-dict-dataclass"),
    pytest.param([{"a": (Box(NAN),)}], id="list-dict-tuple-dataclass"),
    pytest.param(collections.OrderedDict(a=Box(-INF)), id="ordered-dict-dataclass"),
    pytest.param(FloatEnum.NAN, id="float-enum"),
    pytest.param(PlainEnum.NAN, id="enum-value"),
    pytest.param({"k": PlainEnum.INF_IN_TUPLE}, id="enum-tuple-value"),
    pytest.param({NAN: 1}, id="nan-key"),
    pytest.param({INF: 1}, id="inf-key"),
    pytest.param((2**70, Box(NAN)), id="big-int-tuple-dataclass"),
    pytest.param([2**70, collections.OrderedDict(a=NAN)], id="big-int-ordered-dict"),
    pytest.param([2**70, PlainEnum.NAN], id="big-int-enum"),
]


@pytest.mark.parametrize("dump", [dumps, dumps_line], ids=["dumps", "dumps_line"])
@pytest.mark.parametrize("value", NON_FINITE_ANYWHERE)
def test_dumps_refuses_non_finite_in_any_container(dump: Any, value: Any) -> None:
    with pytest.raises(EncodeError, match="NaN and infinities cannot be written as JSON"):
        dump(value)


def test_dumps_writes_what_orjson_writes_of_dataclasses() -> None:
    """Only what orjson writes is checked (and written), big integer or not."""
    box = Box(1.5, _private=NAN)  # orjson leaves out "_" names: nothing to refuse
    assert dumps(box) == b'{"value":1.5}'
    assert dumps([box, 2**70]) == b'[{"value":1.5},1180591620717411303424]'
    assert dumps((SlotBox(None), None)) == b'[{"value":null},null]'


@pytest.mark.skipif(compiled(), reason="spies on a module function, which compiled code calls directly")
def test_non_finite_walk_only_when_null_is_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cheap guard stays: output without null costs no walk over the value."""
    calls: list[Any] = []

    def spy(value: Any) -> bool:
        calls.append(value)
        return False

    monkeypatch.setattr(codec, "_has_non_finite", spy)
    assert dumps((1.5, Box(2.5), collections.OrderedDict(a=[3.5]))) == b'[1.5,{"value":2.5},{"a":[3.5]}]'
    assert calls == []
    dumps((None,))
    assert calls == [(None,)]


# --- every input decodes in linear time -------------------------------------------------


def _fill(unit: bytes, size: int, head: bytes = b"", tail: bytes = b"") -> bytes:
    return head + unit * max(1, (size - len(head) - len(tail)) // len(unit)) + tail


#: Worst cases for each step on the path (regular expressions, the nesting
#: check, string checks, number conversion, error positions), each built at
#: a given size.  The first is the reported one: 40 KB took 6.3 s.
WORST_CASES = {
    "escaped-quotes-unclosed-fallback": lambda n: _fill(b'\\"', n, b"[" + BIG + b',"'),
    "escaped-quotes-closed-fallback": lambda n: _fill(b'\\"', n, b"[" + BIG + b',"', b'"]'),
    "escaped-quotes-unclosed-orjson": lambda n: _fill(b'\\"', n, b'["'),
    "escaped-backslashes-unclosed": lambda n: _fill(b"\\\\", n, b"[" + BIG + b',"'),
    "empty-strings": lambda n: _fill(b'"",', n, b"[" + BIG + b",", b"1]"),
    "unclosed-after-many-strings": lambda n: _fill(b'"ab",', n, b"[" + BIG + b",", b'"'),
    "brackets-in-strings": lambda n: _fill(b'"[[{{",', n, b"[" + BIG + b",", b"1]"),
    "deep-arrays-orjson": lambda n: _fill(b"[", n),
    "deep-arrays-fallback": lambda n: _fill(b"[", n, BIG),
    "deep-objects-fallback": lambda n: _fill(b'{"a":', n, BIG),
    "sibling-arrays-fallback": lambda n: _fill(b"[],", n, b"[" + BIG + b",", b"1]"),
    "surrogate-pairs-fallback": lambda n: _fill(b"\\ud83d\\ude00", n, b"[" + BIG + b',"', b'"]'),
    "surrogate-pairs-orjson": lambda n: _fill(b"\\ud83d\\ude00", n, b'["', b'"]'),
    "lone-surrogate-last": lambda n: _fill(b'"\\ud83d\\ude00",', n, b"[" + BIG + b",", b'"\\ud800"]'),
    "long-digit-run": lambda n: _fill(b"1", n),
    "many-4300-digit-ints": lambda n: _fill(b"7" * 4300 + b",", n, b"[", b"1]"),
    "long-fraction": lambda n: _fill(b"1", n, b"1."),
    "underflow-long-zeros": lambda n: _fill(b"0", n, b"0.", b"1"),
    "many-small-exponents": lambda n: _fill(b"5e-324,", n, b"[", b"1]"),
    "e-dash-in-strings": lambda n: _fill(b'"x1e-123",', n, b"[", b"1]"),
    "e-dash-after-letters": lambda n: _fill(b'"page-100",', n, b"[", b"1]"),
    "e-dash-zero-runs": lambda n: _fill(b'"E-0000000000",', n, b"[", b"1]"),
    "dashes": lambda n: _fill(b"-", n, b'"', b'"'),
    "non-ascii-error-orjson": lambda n: _fill("é".encode(), n, b'["', b'", x]'),
    "non-ascii-error-fallback": lambda n: _fill("é".encode(), n, b"[" + BIG + b',"', b'", x]'),
    "non-ascii-bad-utf8-orjson": lambda n: _fill("é".encode(), n, b'["', b'\xff"]'),
    "non-ascii-bad-utf8-fallback": lambda n: _fill("é".encode(), n, b"[" + BIG + b',"', b'\xff"]'),
    "many-ints-nan-last": lambda n: _fill(b"1,", n, b"[" + BIG + b",", b"NaN]"),
    "many-keys": lambda n: _fill(b'"k":1,', n, b"{", b'"z":' + BIG + b"}"),
}


def _best_time(data: bytes, rounds: int) -> float:
    """Best of C{rounds} timings of L{loads}, the garbage collector held off."""
    best = math.inf
    gc.collect()
    gc.disable()  # its passes depend on the whole test session's heap, not on data
    try:
        for _ in range(rounds):
            start = time.perf_counter()
            with contextlib.suppress(ParseError):
                loads(data)
            best = min(best, time.perf_counter() - start)
    finally:
        gc.enable()
    return best


@pytest.mark.parametrize("make", list(WORST_CASES.values()), ids=list(WORST_CASES))
def test_decoding_is_linear(make: Any) -> None:
    """
    Ten times the input takes about ten times as long, not a hundred.  The
    ratio bound leaves room for caches (1 MB and its copies outgrow them:
    up to x30 measured on a loaded machine) and noise; the absolute bound
    is generous (before the fix, the first case took about an hour at 1 MB).
    """
    small, large = make(100_000), make(1_000_000)
    for _ in range(6):  # a busy machine can spoil a measurement
        small_time, large_time = _best_time(small, 5), _best_time(large, 2)
        if large_time < 2.0 and large_time < 40 * small_time:
            break
    assert large_time < 2.0
    assert large_time / small_time < 40, (small_time, large_time)


def test_the_reported_case_is_fast() -> None:
    """The attack as reported: 40 KB took 6.3 s."""
    data = b"[" + BIG + b',"' + b'\\"' * 20_000
    assert "Unterminated string" in parse_error(data).data
    assert _best_time(data, 1) < 0.05


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

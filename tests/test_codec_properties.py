"""
Property tests for L{jsonservice.codec}: round trips, chunking, robustness.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jsonservice.codec import EncodeError, dumps, dumps_line, loads
from jsonservice.errors import ParseError

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
integers = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64),
    st.integers(min_value=-(10**60), max_value=10**60),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 2**64, -(2**64) - 1]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    integers,
    st.floats(allow_nan=False, allow_infinity=False),
    text,
)


def nested(keys: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Scalars, lists and dicts with C{keys}, nested."""
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=5),
            st.dictionaries(keys, children, max_size=5),
        ),
        max_leaves=20,
    )


json_values = nested(text)


def assert_same(a: Any, b: Any) -> None:
    """Equal and of the same types all the way down (1 is not 1.0 nor True)."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, float):
        assert a == b
        assert math.copysign(1.0, a) == math.copysign(1.0, b)
    else:
        assert a == b


def parse_error_from(function: Any, *args: Any) -> ParseError | None:
    """Call C{function}; return the ParseError it raised (any other error escapes)."""
    try:
        function(*args)
    except ParseError as error:
        return error
    return None


@SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_parse_error(data: bytes) -> None:
    error = parse_error_from(loads, data)
    if error is not None:
        assert error.code == -32700
        assert error.data


@SETTINGS
@given(st.binary(max_size=200), st.integers(1, 300))
def test_random_bytes_only_raise_parse_error_in_fallback(data: bytes, max_depth: int) -> None:
    error = parse_error_from(loads, b"[" + data + b",12345678901234567890]", max_depth)
    if error is not None:
        assert error.data


BIG = b"12345678901234567890"


def depth_of(value: Any) -> int:
    """Nesting depth: 0 for a scalar, 1 for C{[]}."""
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    return 0


# Strings full of what could fool a nesting scan: brackets, quotes, backslashes.
tricky_text = st.text(st.sampled_from('[]{}"\\\\\\u0/:,ab'), max_size=12)
tricky_values = st.recursive(
    st.one_of(st.none(), st.integers(-5, 5), tricky_text),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(tricky_text, children, max_size=4),
    ),
    max_leaves=30,
)


@SETTINGS
@given(tricky_values, st.integers(1, 12), st.booleans())
def test_max_depth_is_exact_whatever_the_strings_hold(value: Any, max_depth: int, fallback: bool) -> None:
    """The nesting check ignores brackets in strings, escaped quotes and all, on both paths."""
    data = dumps(value)
    if fallback:
        data = b"[" + data + b"," + BIG + b"]"
        value = [value, int(BIG)]
    if depth_of(value) <= max_depth:
        assert_same(loads(data, max_depth), value)
    else:
        error = parse_error_from(loads, data, max_depth)
        assert error is not None
        assert error.data == f"nesting deeper than {max_depth}"


@SETTINGS
@given(json_values)
def test_fallback_decodes_like_orjson(value: Any) -> None:
    assert_same(loads(b"[" + dumps(value) + b"," + BIG + b"]")[0], value)


@SETTINGS
@given(
    st.sampled_from(["", "-"]),
    st.from_regex(r"\A(0|[1-9][0-9]{0,17})(\.[0-9]{1,17})?\Z"),
    st.sampled_from(["e", "E"]),
    st.integers(-420, 320),
)
def test_number_literals_are_exact_or_refused(sign: str, mantissa: str, e: str, exponent: int) -> None:
    """A number decodes as Python's float() reads it, unless it underflows to zero."""
    text = f"{sign}{mantissa}{e}{exponent}"
    expected = float(text)
    nonzero = mantissa.strip("0.") != ""
    if math.isinf(expected):
        assert parse_error_from(loads, text.encode()) is not None
    elif expected == 0.0 and nonzero:
        error = parse_error_from(loads, text.encode())
        assert error is not None
        assert error.data.endswith(" underflows to 0.0: below the float range")
        if len(text) <= 40:  # longer literals are cut in the message
            assert error.data == f"number {text} underflows to 0.0: below the float range"
    else:
        assert_same(loads(text.encode()), expected)
        assert_same(loads(b"[" + text.encode() + b"," + BIG + b"]")[0], expected)


@SETTINGS
@given(st.integers(1, 4400), st.sampled_from(["", "-"]), st.integers(1, 9))
def test_integers_exact_up_to_the_digit_limit(digits: int, sign: str, lead: int) -> None:
    text = sign + str(lead) + "0" * (digits - 1)
    if digits <= 4300:
        assert loads(text.encode()) == int(text)
        assert dumps(int(text)) == text.encode()
    else:
        error = parse_error_from(loads, text.encode())
        assert error is not None
        assert error.data == f"integer of {digits} digits exceeds the 4300-digit limit"


@dataclasses.dataclass
class Holder:
    item: Any


def wrappers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Every container orjson writes: tuples, dict subclasses, dataclasses, lists."""
    return st.one_of(
        children.map(lambda x: (x,)),
        children.map(lambda x: collections.OrderedDict(k=x)),
        children.map(lambda x: {"k": x}),
        children.map(Holder),
        children.map(lambda x: [None, x]),
    )


@SETTINGS
@given(
    st.recursive(st.sampled_from([math.nan, math.inf, -math.inf]), wrappers, max_leaves=8),
    st.booleans(),
)
def test_non_finite_anywhere_is_refused(value: Any, big: bool) -> None:
    if big:
        value = (2**70, value)
    for dump in (dumps, dumps_line):
        try:
            dump(value)
        except EncodeError:
            continue
        raise AssertionError(f"{value!r} was written")


keys = st.one_of(
    text,
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e-05, 1e-07, 1.5e-07, 1e16, 1e22, -0.0, 2.5]),
    st.booleans(),
    st.none(),
)
keyed_values = nested(keys)


class Key(str):
    """A str subclass: orjson refuses it as a key; the stdlib writes it as it is."""


class Number(float):
    """A float subclass: written as the stdlib writes a float key."""


@SETTINGS
@given(st.one_of(json_values, keyed_values), st.sampled_from([None, Key("k"), Number(2.5)]))
def test_dict_keys_are_written_as_the_stdlib_writes_them(value: Any, wrap: Any) -> None:
    """
    Whatever the keys, the text of every number, boolean and null key is
    the stdlib json module's (a float by its repr: 1e-05, not orjson's
    0.00001), whatever else the value holds; values decode to what the
    stdlib wrote; keys written alike are refused.
    """
    if wrap is not None:
        value = {wrap: value}
    text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    if _has_duplicate_names(text):  # {1: ..., "1": ...}: refused, not written twice
        with pytest.raises(EncodeError, match="two keys of one object"):
            dumps(value)
        return
    expected = json.loads(text)
    assert_same(json.loads(dumps(value)), expected)
    assert_same(json.loads(dumps_line(value)), expected)
    reply = json.loads(dumps_line({"jsonrpc": "2.0", "result": value, "id": 7}, value))
    assert_same(reply["result"], expected)


def _has_duplicate_names(text: str) -> bool:
    found = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal found
        found = found or len({name for name, _ in items}) < len(items)
        return dict(items)

    json.loads(text, object_pairs_hook=pairs)
    return found

"""
Property tests for L{jsonservice.codec}: round trips, chunking, robustness.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jsonservice.codec import dumps, dumps_line, loads, loads_unterminated
from jsonservice.errors import ParseError
from jsonservice.framing import Framer, LineTooLong

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
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(text, children, max_size=5),
    ),
    max_leaves=20,
)


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


@SETTINGS
@given(json_values)
def test_round_trip_through_framer(value: Any) -> None:
    line = dumps_line(value)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert line == dumps(value) + b"\n"
    framer = Framer(len(line))
    lines = framer.feed(line)
    assert len(lines) == 1
    assert isinstance(lines[0], bytes)
    assert_same(loads(lines[0]), value)


@SETTINGS
@given(json_values, st.data())
def test_round_trip_in_chunks(value: Any, data: st.DataObject) -> None:
    line = dumps_line(value)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(line)), max_size=6)))
    chunks = [line[a:b] for a, b in zip([0, *cuts], [*cuts, len(line)], strict=True)]
    framer = Framer(len(line))
    out: list[Any] = []
    for chunk in chunks:
        lines = framer.feed(chunk)
        # as the protocol does: skip the big-int scan when the framer saw none
        out.extend(loads(line, check_big_int=framer.may_hold_big_int) for line in lines)
    assert len(out) == 1
    assert_same(out[0], value)


@SETTINGS
@given(json_values)
def test_complete_value_is_complete_unterminated(value: Any) -> None:
    data = dumps(value)
    complete, decoded = loads_unterminated(data)
    assert complete is True
    assert_same(decoded, value)


@SETTINGS
@given(
    st.one_of(st.lists(json_values, max_size=4), st.dictionaries(text, json_values, max_size=4)), st.data()
)
def test_every_prefix_of_a_container_is_a_prefix(value: Any, data: st.DataObject) -> None:
    """A proper prefix of an array or object text is never complete, never invalid."""
    encoded = dumps(value)
    end = data.draw(st.integers(0, len(encoded) - 1))
    assert loads_unterminated(encoded[:end]) == (False, None)


line_bytes = st.binary(max_size=30).map(lambda b: b.replace(b"\n", b""))


def split(stream: bytes, cuts: list[int]) -> list[bytes]:
    cuts = sorted(cuts)
    return [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]


@SETTINGS
@given(st.lists(line_bytes, max_size=8), st.data())
def test_chunking_does_not_change_lines(lines: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(line + b"\n" for line in lines)
    whole = Framer(100).feed(stream)
    assert whole == lines
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    framer = Framer(100)
    assert [event for chunk in split(stream, cuts) for event in framer.feed(chunk)] == lines


@SETTINGS
@given(st.lists(line_bytes, max_size=8), line_bytes, st.integers(1, 12), st.data())
def test_chunking_does_not_change_events_with_long_lines(
    lines: list[bytes], tail: bytes, limit: int, data: st.DataObject
) -> None:
    """With a line-length limit, every chunking gives the same lines and events."""
    stream = b"".join(line + b"\n" for line in lines) + tail
    expected: list[bytes | LineTooLong] = [
        line if len(line) <= limit else LineTooLong(limit) for line in lines
    ]
    if len(tail) > limit:
        expected.append(LineTooLong(limit))
    assert Framer(limit).feed(stream) == expected
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    framer = Framer(limit)
    assert [event for chunk in split(stream, cuts) for event in framer.feed(chunk)] == expected


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
    for error in (parse_error_from(loads, data), parse_error_from(loads_unterminated, data)):
        if error is not None:
            assert error.code == -32700
            assert error.data


@SETTINGS
@given(st.binary(max_size=200), st.integers(1, 300))
def test_random_bytes_only_raise_parse_error_in_fallback(data: bytes, max_depth: int) -> None:
    error = parse_error_from(loads, b"[" + data + b",12345678901234567890]", max_depth)
    if error is not None:
        assert error.data


@SETTINGS
@given(st.lists(st.binary(max_size=50), max_size=10), st.integers(1, 40))
def test_framer_never_raises(chunks: list[bytes], limit: int) -> None:
    framer = Framer(limit)
    total = 0
    for chunk in chunks:
        for event in framer.feed(chunk):
            assert isinstance(event, (bytes, LineTooLong))
            if isinstance(event, bytes):
                assert b"\n" not in event
                assert len(event) <= limit
            total += 1
        assert framer.buffered <= limit
        candidate = framer.unterminated()
        assert candidate is None or candidate == framer.partial
        assert isinstance(framer.retry_pending, bool)
    assert total <= sum(chunk.count(b"\n") for chunk in chunks) + len(chunks)

"""
The hot path's shape decoders (L{jsonservice.jsonrpc.decode_request},
L{decode_success<jsonservice.jsonrpc.decode_success>}) against the general
path they stand in for: L{loads<jsonservice.codec.loads>} followed by
L{request_parts<jsonservice.jsonrpc.request_parts>} or
L{response_parts<jsonservice.jsonrpc.response_parts>}.  A shape decoder may
always decline (L{None}: the general path decides); when it accepts, it
must give exactly the general path's parts, types included.  Pure: no
Twisted.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jsonservice.codec import loads, may_need_exact
from jsonservice.errors import ParseError
from jsonservice.jsonrpc import NO_ID, decode_request, decode_success, request_parts, response_parts

# Values chosen to sit on every edge of the request rules.
_TRICKY = st.sampled_from(
    [
        "2.0", "1.0", "", "echo", "\u00e9", "\\ud800", 2.0, 2, 0, -1, 1.5, -0.0, True, False, None,
        [], {}, [1], {"a": 1}, "x" * 3, 18446744073709551616, 10**30, [[[[1]]]],
    ]
)  # fmt: skip
_VALUE = st.recursive(
    _TRICKY | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8,
)
_KEYS = st.sampled_from(["jsonrpc", "method", "params", "id", "result", "error", "x"])
_OBJECT = st.dictionaries(_KEYS, _VALUE, max_size=6)
_RAW_NUMBERS = st.sampled_from(
    [
        "1e-400", "1E-400", "-1e-400", "1e400", "2.5e-320", "-0", "1" * 25, "0.0",
        "0." + "0" * 400 + "1", "0." + "0" * 300 + "1", "-" + "9" * 30, "7" * 5000,
        "0.1234567890123456789012345", "1" + "0" * 30 + ".5e-330", "1" * 19 + "e-5",
    ]
)  # fmt: skip


@st.composite
def _texts(draw: st.DrawFn) -> bytes:
    """JSON texts that look like requests and responses, with raw-text twists."""
    # A valid request or success response, then a few members changed:
    # most texts sit one edit away from the rules.
    if draw(st.booleans()):
        obj: dict[str, Any] = {"jsonrpc": "2.0", "method": "echo", "params": [1], "id": 1}
    else:
        obj = {"jsonrpc": "2.0", "result": "r", "id": 1}
    for _ in range(draw(st.integers(0, 2))):
        key = draw(_KEYS)
        if draw(st.integers(0, 3)) == 0:
            obj.pop(key, None)
        else:
            obj[key] = draw(_TRICKY if draw(st.booleans()) else _VALUE)
    if draw(st.integers(0, 5)) == 0:
        obj = draw(_OBJECT)
    text = json.dumps(obj, separators=(",", draw(st.sampled_from([":", ": "]))))
    twist = draw(st.integers(0, 5))
    if twist == 1 and len(text) > 2:  # a duplicate member: the last one counts
        key = draw(_KEYS)
        text = text[:-1] + ("," if len(text) > 2 else "") + f'"{key}":{json.dumps(draw(_VALUE))}' + "}"
    elif twist == 2:  # a number literal that only the exact path keeps
        key = draw(st.sampled_from(["id", "params", "result"]))
        raw = draw(_RAW_NUMBERS)
        literal = f"[{raw}]" if key == "params" else raw
        text = text[:-1] + ("," if len(text) > 2 else "") + f'"{key}":{literal}' + "}"
    elif twist == 3:  # a byte flipped
        index = draw(st.integers(0, max(0, len(text) - 1)))
        text = text[:index] + draw(st.sampled_from(["}", '"', "\\", "\x01", ",", "]"])) + text[index + 1 :]
    elif twist == 4:  # deep nesting in params
        depth = draw(st.integers(1, 40))
        text = '{"jsonrpc":"2.0","method":"m","params":' + "[" * depth + "]" * depth + ',"id":1}'
    data = text.encode("utf-8", "surrogatepass")
    if twist == 0 and draw(st.booleans()):  # an extra member whose bytes are wrong
        bad = draw(st.sampled_from([b'"\xff"', b'"\xed\xa0\x80"', b"1e400", b"[-1E+400]", b'{"\xff":1}']))
        data = data[:-1] + (b"," if len(data) > 2 else b"") + b'"x":' + bad + b"}"
    if twist == 5:
        data = data.replace(b"\\u00e9", b"\xc3") if b"\\u00e9" in data else data + b"\xff"
    return data


def _general(data: bytes, max_depth: int) -> Any:
    try:
        return loads(data, max_depth)
    except ParseError:
        return ParseError


def _same(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down (1, 1.0 and True differ)."""
    return repr(a) == repr(b) and json.dumps(a, sort_keys=True, default=repr) == json.dumps(
        b, sort_keys=True, default=repr
    )


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_texts(), max_depth=st.sampled_from([1, 2, 5, 1024]))
def test_decode_request_accepts_only_what_request_parts_accepts(data: bytes, max_depth: int) -> None:
    shape = decode_request(data, max_depth, may_need_exact(data, big_ints=False))
    if shape is None:
        return
    value = _general(data, max_depth)
    assert value.__class__ is dict, (data, value)
    parts = request_parts(value)
    assert parts is not None, data
    assert _same((shape.method, shape.params, shape.id), parts), (data, shape, parts)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_texts(), max_depth=st.sampled_from([1, 2, 5, 1024]))
def test_decode_success_accepts_only_what_response_parts_accepts(data: bytes, max_depth: int) -> None:
    shape = decode_success(data, max_depth, may_need_exact(data, big_ints=False))
    if shape is None or shape.method is not NO_ID or shape.error is not NO_ID:
        return
    value = _general(data, max_depth)
    assert value.__class__ is dict, (data, value)
    parts = response_parts(value)
    assert parts is not None, data
    assert _same((shape.id, shape.result), parts), (data, shape, parts)


@pytest.mark.parametrize(
    "line",
    [
        b'{"jsonrpc":"2.0","method":"echo","params":["hello"],"id":1}',
        b'{"jsonrpc": "2.0", "method": "echo", "params": {"a": [1, 2.5, null]}, "id": "x"}',
        b'{"id":null,"method":"n","jsonrpc":"2.0"}',
        b'{"jsonrpc":"2.0","method":"note"}',
        b'{"jsonrpc":"2.0","method":"m","params":[-1, -2.5e3],"id":-7}',
        b'{"jsonrpc":"2.0","method":"m","params":[' + b"9" * 30 + b", 0." + b"1" * 40 + b'],"id":1}',
    ],
)
def test_decode_request_takes_ordinary_requests(line: bytes) -> None:
    """The fast step is really taken for ordinary requests (else the property above proves nothing)."""
    shape = decode_request(line, 1024, may_need_exact(line, big_ints=False))
    assert shape is not None
    assert _same((shape.method, shape.params, shape.id), request_parts(loads(line)))


@pytest.mark.parametrize(
    "line",
    [
        b'{"jsonrpc":"2.0","method":"m","params":null,"id":1}',
        b'{"jsonrpc":"2.0","method":"m","id":true}',
        b'{"jsonrpc":"2.0","method":"m","id":[1]}',
        b'{"jsonrpc":2.0,"method":"m","id":1}',
        b'{"jsonrpc":"2.0","method":1,"id":1}',
        b'{"jsonrpc":"2.0","method":"m","params":[1e-400],"id":1}',
        b'{"jsonrpc":"2.0","method":"m","params":[0.' + b"0" * 400 + b'1],"id":1}',
        b'{"jsonrpc":"2.0","method":"m","params":[' + b"9" * 5000 + b'],"id":1}',
        b'{"jsonrpc":"2.0","method":"m","params":[[[1]]],"id":1}',
        b'{"jsonrpc":"2.0","method":"\\ud800","id":1}',
        b'["jsonrpc"]',
    ],
)
def test_decode_request_declines_what_the_general_path_must_judge(line: bytes) -> None:
    assert decode_request(line, 2, may_need_exact(line, big_ints=False)) is None


def test_decode_success_takes_an_ordinary_response_and_sees_extra_members() -> None:
    shape = decode_success(b'{"jsonrpc":"2.0","result":[1,{"a":2}],"id":3}', 1024, False)
    assert shape is not None
    assert shape.method is NO_ID
    assert shape.error is NO_ID
    assert (shape.id, shape.result) == (3, [1, {"a": 2}])
    mixed = decode_success(b'{"jsonrpc":"2.0","result":1,"error":null,"id":3}', 1024, False)
    assert mixed is not None
    assert mixed.error is None  # present: the caller refuses it

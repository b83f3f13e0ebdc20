"""
The specialised request encoder, L{jsonrpc.request_line} (with
L{codec.dumps_member}), writes exactly the bytes of the general one,
C{dumps_line(request(...))}, and refuses exactly what it refuses.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import math
import uuid
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jsonservice import jsonrpc
from jsonservice.codec import EncodeError, dumps, dumps_line, dumps_member
from jsonservice.jsonrpc import request, request_line

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Colour(enum.Enum):
    RED = "red"
    NAN = math.nan


class Pair(NamedTuple):
    left: Any
    right: Any


@dataclasses.dataclass
class Box:
    item: Any


# Any text, lone surrogates included (refused by both encoders).
any_text = st.text(max_size=12)
integers = st.one_of(
    st.integers(-(2**64), 2**64),
    st.sampled_from([2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**40]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    integers,
    st.floats(),  # NaN and infinities too: refused by both
    any_text,
    st.datetimes(),
    st.dates(),
    st.decimals(allow_nan=False),
    st.uuids(),
    st.sampled_from(list(Colour)),
    st.sampled_from([b"bytes", {1, 2}, object()]),  # refused by both
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(any_text, children, max_size=4),
        st.dictionaries(st.integers(-5, 5), children, max_size=3),
        st.builds(Pair, children, children),
        st.builds(Box, children),
    ),
    max_leaves=16,
)
params = st.one_of(
    st.none(),
    st.lists(values, max_size=4),
    st.lists(values, max_size=4).map(tuple),
    st.dictionaries(any_text, values, max_size=4),
)
ids = st.one_of(st.integers(0, 2**40), st.sampled_from([2**64, 2**70]))


def general(method: Any, params: Any, id_: Any) -> bytes | type[EncodeError]:
    """The general encoder's line, or EncodeError (a tuple of params is an array)."""
    if isinstance(params, tuple):
        params = list(params)
    try:
        return dumps_line(request(method, params, id_))
    except EncodeError:
        return EncodeError


def special(method: Any, params: Any, id_: Any) -> bytes | type[EncodeError]:
    try:
        return request_line(method, params, id_)
    except EncodeError:
        return EncodeError


@SETTINGS
@given(st.one_of(any_text, st.sampled_from(["echo", "add", "$/cancelRequest"])), params, ids)
def test_request_line_writes_what_the_general_encoder_writes(method: str, params: Any, id_: int) -> None:
    expected = general(method, params, id_)
    # The first line of a method is the general encoder's; later ones are built.
    assert special(method, params, id_) == expected
    assert special(method, params, id_) == expected


@SETTINGS
@given(values)
def test_dumps_member_writes_what_dumps_writes_or_declines(value: Any) -> None:
    data = dumps_member(value)
    if data is not None:
        assert data == dumps(value)
        assert dumps_line({"a": value}) == b'{"a":' + data + b"}\n"


def nested(depth: int, leaf: Any = 1e-7, kind: type = list) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value] if kind is list else {"k": value}
    return value


@pytest.mark.parametrize("kind", [list, dict])
@pytest.mark.parametrize("depth", range(248, 258))
def test_deep_params_at_orjson_limit(depth: int, kind: type) -> None:
    """
    Near orjson's nesting limit the general encoder takes its exact path
    (which writes some floats otherwise: 1e-07, not 1e-7): the built line
    follows it.
    """
    value = nested(depth, kind=kind)
    params = [value] if kind is list else {"k": value}
    request_line("deep", None, 1)  # the method's start is known
    assert special("deep", params, 7) == general("deep", params, 7)


def test_params_left_out_when_none() -> None:
    request_line("ping", None, 1)
    assert request_line("ping", None, 2) == b'{"jsonrpc":"2.0","method":"ping","id":2}\n'
    assert request_line("ping", ("x", 1), 3) == b'{"jsonrpc":"2.0","method":"ping","params":["x",1],"id":3}\n'


def test_non_finite_refused() -> None:
    request_line("m", None, 1)
    with pytest.raises(EncodeError):
        request_line("m", (math.nan,), 2)
    with pytest.raises(EncodeError):
        request_line("m", {"x": [None, -math.inf]}, 3)
    assert request_line("m", (None,), 4) == b'{"jsonrpc":"2.0","method":"m","params":[null],"id":4}\n'


def test_rich_params_take_the_general_path() -> None:
    when = datetime.datetime(2024, 1, 2, 3, 4, 5)
    line = request_line("m", (when, decimal.Decimal("1.10"), Pair(1, 2), uuid.UUID(int=1)), 5)
    assert line == general("m", [when, decimal.Decimal("1.10"), Pair(1, 2), uuid.UUID(int=1)], 5)


def test_starts_kept_for_so_many_methods(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the bound, lines are still right: the general encoder writes them."""
    monkeypatch.setattr(jsonrpc, "_PREFIXES", {})
    monkeypatch.setattr(jsonrpc, "_MOST_PREFIXES", 3)
    for n in range(10):
        assert request_line(f"m{n}", [n], n) == general(f"m{n}", [n], n)
        assert request_line(f"m{n}", [n], n) == general(f"m{n}", [n], n)
    assert sorted(jsonrpc._PREFIXES) == ["m0", "m1", "m2"]


def test_a_method_that_is_not_a_string_is_not_kept() -> None:
    """1, 1.0 and True are equal keys, a list is none: only strings are kept."""
    for method in (1, True, 1.0, [1], {"a": 1}):
        assert special(method, [1], 9) == general(method, [1], 9)
        assert special(method, [1], 9) == general(method, [1], 9)
    assert 1 not in jsonrpc._PREFIXES

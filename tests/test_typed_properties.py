"""
Property tests for typed handlers: any value of an annotated type
round-trips (client argument, server conversion, handler, result,
C{result_type=} on the client), and a wrong value is always -32602 with
the path of the first wrong value, never another error.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any, Optional

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jsonservice import InvalidParams, JSONService
from jsonservice.codec import dumps, loads
from jsonservice.testing import connected_pair
from jsonservice.typed import ConversionError, conversion_for

from . import typed_types
from .test_codec_properties import json_values
from .typed_types import Address, Color, Item, Kind, Level, Pair, Point, Tree, User

# Modest counts: each example runs a connected pair, and there are many types.
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
decimals = st.decimals(allow_nan=False, allow_infinity=False)
offsets = st.sampled_from(
    [
        None,
        datetime.timezone.utc,
        datetime.timezone(datetime.timedelta(hours=5, minutes=30)),
        datetime.timezone(-datetime.timedelta(hours=8)),
    ]
)
trees = st.recursive(
    st.builds(Tree, st.integers(), st.just([])),
    lambda children: st.builds(Tree, st.integers(), st.lists(children, max_size=3)),
    max_leaves=8,
)

ROUND_TRIPS: list[tuple[str, Any, Any]] = [
    ("int", int, st.integers()),
    ("big-int", int, st.integers(min_value=2**64, max_value=2**400) | st.integers(max_value=-(2**64))),
    ("float", float, st.floats(allow_nan=False, allow_infinity=False)),
    ("str", str, text),
    ("bool", bool, st.booleans()),
    ("list", list[int], st.lists(st.integers(), max_size=5)),
    (
        "dict",
        dict[str, float],
        st.dictionaries(text, st.floats(allow_nan=False, allow_infinity=False), max_size=4),
    ),
    ("tuple", tuple[int, str], st.tuples(st.integers(), text)),
    ("optional", Optional[int], st.none() | st.integers()),  # noqa: UP045
    ("union", int | str | None, st.none() | st.integers() | text),
    ("literal", Kind, st.sampled_from(["a", "b", 3])),
    ("enum", Color, st.sampled_from(Color)),
    ("int-enum", Level, st.sampled_from(Level)),
    ("datetime", datetime.datetime, st.datetimes(timezones=offsets)),
    ("date", datetime.date, st.dates()),
    ("time", datetime.time, st.times()),
    ("timedelta", datetime.timedelta, st.timedeltas()),
    ("uuid", uuid.UUID, st.uuids()),
    ("decimal", decimal.Decimal, decimals),
    (
        "dataclass",
        User,
        st.builds(
            User,
            name=text,
            born=st.dates(),
            address=st.builds(Address, city=text, zip=st.none() | text),
            tags=st.lists(text, max_size=3),
        ),
    ),
    ("typeddict", Point, st.fixed_dictionaries({"x": st.integers(), "y": st.integers()})),
    ("namedtuple", Pair, st.builds(Pair, st.integers(), text)),
    ("struct", Item, st.builds(Item, sku=text, price=decimals, color=st.sampled_from(Color))),
    ("recursive", Tree, trees),
]
Profile = getattr(typed_types, "Profile", None)
if Profile is not None:
    ROUND_TRIPS.append(
        (
            "pydantic",
            Profile,
            st.builds(
                Profile,
                displayName=text,
                address=st.builds(Address, city=text),
                score=st.floats(allow_nan=False, allow_infinity=False),
                tags=st.sets(st.integers(), max_size=3),
            ),
        )
    )


def same(a: Any, b: Any) -> bool:
    """Equal, of the same type, and for what equality hides, the same form."""
    if type(a) is not type(b) or a != b:
        return False
    if isinstance(a, decimal.Decimal):
        return str(a) == str(b)  # Decimal("1.10") == Decimal("1.1"), but they differ
    if isinstance(a, datetime.datetime):
        return a.utcoffset() == b.utcoffset()  # equal instants may differ in offset
    return True


def echo_service(annotation: Any) -> tuple[JSONService, list[Any]]:
    received: list[Any] = []
    service = JSONService()

    def echo(value):  # type: ignore[no-untyped-def]
        received.append(value)
        return value

    echo.__annotations__ = {"value": annotation, "return": annotation}
    service.add_method("echo", echo)
    return service, received


def ids(case: tuple[str, Any, Any]) -> str:
    return case[0]


def _check_round_trip(annotation: Any, value: Any) -> None:
    # The JSON form this side writes converts back to the same value...
    assert same(conversion_for(annotation).convert(loads(dumps(value))), value)
    # ...and over a connection: the handler gets it, the caller gets it back.
    service, received = echo_service(annotation)
    pair = connected_pair(service)
    result = pair.result_of(pair.client.call("echo", value, result_type=annotation))
    assert same(received[0], value)
    assert same(result, value)


def _round_trip_test(case: tuple[str, Any, Any]) -> Any:
    _, annotation, values = case

    @SETTINGS
    @given(values)
    def check(value: Any) -> None:
        _check_round_trip(annotation, value)

    return check


def test_any_accepted_value_round_trips() -> None:
    """Every type in turn (one hypothesis run each, so a failure names its value)."""
    for case in ROUND_TRIPS:
        try:
            _round_trip_test(case)()
        except Exception as exc:
            raise AssertionError(f"round trip of {case[0]}") from exc


@SETTINGS
@given(st.sampled_from(ROUND_TRIPS), json_values)
def test_any_json_value_is_converted_or_refused_with_a_path(case: tuple[str, Any, Any], value: Any) -> None:
    """Whatever JSON arrives for a typed param: a result, or -32602 naming a path in it."""
    annotation = case[1]
    service, received = echo_service(annotation)
    pair = connected_pair(service)
    done = pair.client.request("echo", [value])
    try:
        expected = conversion_for(annotation).convert(value, "$[0]")
    except ConversionError as exc:
        mismatch: ConversionError | None = exc
    else:
        mismatch = None
    if mismatch is None:
        pair.result_of(done)
        assert same(received[0], expected)
        return
    error = pair.failure_of(done, InvalidParams).value
    assert error.code == -32602
    assert error.data["path"] == mismatch.path
    assert error.data["path"].startswith("$[0]")
    assert error.data["reason"]
    assert received == []


scalar_kinds = {
    str: st.text(max_size=5),
    int: st.integers(),
    bool: st.booleans(),
    type(None): st.none(),
    list: st.lists(st.integers(), max_size=3),
    dict: st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
}


@SETTINGS
@given(st.sampled_from([str, int, bool]), st.data())
def test_a_value_of_another_json_kind_is_always_refused(annotation: Any, data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from([k for k in scalar_kinds if k is not annotation]))
    value = data.draw(scalar_kinds[kind])
    service, received = echo_service(annotation)
    pair = connected_pair(service)
    error = pair.failure_of(pair.client.call("echo", value=value), InvalidParams).value
    assert error.data["path"] == "$.value"
    assert error.data["reason"].startswith(f"expected {annotation.__name__}, got ")
    assert received == []


@SETTINGS
@given(st.lists(st.integers(), max_size=6), st.data())
def test_the_first_wrong_item_is_the_one_named(items: list[int], data: st.DataObject) -> None:
    index = data.draw(st.integers(min_value=0, max_value=len(items)))
    wrong = data.draw(
        st.text(max_size=3) | st.booleans() | st.none() | st.floats(allow_nan=False, allow_infinity=False)
    )
    bad: list[Any] = [*items[:index], wrong, *items[index:], "also wrong"]
    service, _ = echo_service(list[int])
    pair = connected_pair(service)
    error = pair.failure_of(pair.client.call("echo", bad), InvalidParams).value
    assert error.data["path"] == f"$[0][{index}]"


@SETTINGS
@given(
    st.sampled_from(["name", "born", "address", "tags"]),
    st.integers() | st.booleans() | st.lists(st.integers(), min_size=1, max_size=2),
)
def test_a_wrong_field_of_a_dataclass_is_named(field: str, wrong: Any) -> None:
    user = {"name": "a", "born": "2000-01-01", "address": {"city": "x"}, "tags": ["t"]}
    user[field] = wrong
    service, _ = echo_service(User)
    pair = connected_pair(service)
    error = pair.failure_of(pair.client.call("echo", value=user), InvalidParams).value
    if field == "tags" and isinstance(wrong, list):
        assert error.data["path"] == "$.value.tags[0]"
    else:
        assert error.data["path"] == f"$.value.{field}"


@SETTINGS
@given(
    st.sampled_from(
        [datetime.datetime, datetime.date, datetime.time, datetime.timedelta, uuid.UUID, decimal.Decimal]
    ),
    st.text(max_size=40) | st.from_regex(r"\A[0-9T:+\-.ZPDHMSW ]{0,40}\Z"),
)
def test_odd_strings_into_string_formed_types_are_converted_or_refused(annotation: Any, text: str) -> None:
    """Strings that look almost like dates, durations, UUIDs or numbers: a value or -32602, nothing else."""
    service, received = echo_service(annotation)
    pair = connected_pair(service)
    done = pair.client.call("echo", text)
    try:
        conversion_for(annotation).convert(text)
    except ConversionError:
        error = pair.failure_of(done, InvalidParams).value
        assert error.data["path"] == "$[0]"
        assert received == []
    else:
        pair.result_of(done)
        assert isinstance(received[0], annotation)

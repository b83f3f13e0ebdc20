"""
Typed handlers: annotated params are validated and converted before the
call (-32602 naming the path of the first wrong value otherwise), rich
results are encoded in their JSON forms, the client converts results
with C{result_type=}; unannotated handlers are untouched.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import math
import uuid
from typing import Any

import msgspec
import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.logger import globalLogPublisher

from jsonservice import CallContext, ConversionError, InternalError, InvalidParams, JSONService
from jsonservice.codec import EncodeError, dumps, dumps_line, loads
from jsonservice.service import Handler
from jsonservice.testing import connected_pair
from jsonservice.typed import conversion_for

from . import typed_types
from .typed_types import (
    Address,
    Color,
    Item,
    Kind,
    Level,
    MaybeInt,
    Pair,
    Point,
    Tree,
    User,
    pydantic,
)

# Annotations resolve in the module's globals (this module has
# "from __future__ import annotations"): the model is imported here.
Profile = getattr(typed_types, "Profile", None)

USER = {"name": "Ada", "born": "1815-12-10", "address": {"city": "London"}, "tags": ["math"]}


def typed_service(**options: Any) -> JSONService:
    service = JSONService(**options)

    @service.method
    def create_user(user: User, tags: list[str]) -> dict[str, Any]:
        return {"type": type(user).__name__, "born": type(user.born).__name__, "tags": tags}

    @service.method
    def echo(value: str) -> str:
        return value

    @service.method
    def add(a: int, b: int = 0) -> int:
        return a + b

    @service.method
    def untyped(value):  # type: ignore[no-untyped-def]
        return value

    return service


def call(service: JSONService, method: str, *args: Any, **kwargs: Any) -> Any:
    pair = connected_pair(service)
    return pair.result_of(pair.client.call(method, *args, **kwargs))


def refused(service: JSONService, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """The -32602 error's data for a call that must be refused."""
    pair = connected_pair(service)
    error = pair.failure_of(pair.client.call(method, *args, **kwargs), InvalidParams).value
    assert error.code == -32602
    data: dict[str, Any] = error.data
    assert data["message"] == f"{data['path']}: {data['reason']}"
    return data


# -- params are converted ------------------------------------------------------


def test_named_params_are_converted_before_the_call() -> None:
    result = call(typed_service(), "create_user", user=USER, tags=["x"])
    assert result == {"type": "User", "born": "date", "tags": ["x"]}


def test_positional_params_are_converted_too() -> None:
    assert call(typed_service(), "create_user", USER, ["x"])["type"] == "User"


def test_a_wrong_field_is_invalid_params_naming_its_path() -> None:
    bad = {**USER, "name": 5}
    data = refused(typed_service(), "create_user", user=bad, tags=[])
    assert data == {
        "message": "$.user.name: expected str, got int",
        "path": "$.user.name",
        "reason": "expected str, got int",
    }
    assert refused(typed_service(), "create_user", bad, [])["path"] == "$[0].name"


def test_the_path_goes_into_lists_and_nested_objects() -> None:
    service = typed_service()
    assert refused(service, "create_user", user=USER, tags=["a", 2])["path"] == "$.tags[1]"
    bad = {**USER, "address": {"city": ["London"]}}
    assert refused(service, "create_user", user=bad, tags=[])["path"] == "$.user.address.city"
    missing = {k: v for k, v in USER.items() if k != "born"}
    data = refused(service, "create_user", user=missing, tags=[])
    assert data["path"] == "$.user"
    assert data["reason"] == "object missing required field 'born'"


def test_the_handler_does_not_run_when_params_do_not_convert() -> None:
    ran: list[Any] = []
    service = JSONService()

    @service.method
    def store(count: int) -> None:
        ran.append(count)

    refused(service, "store", "3")
    refused(service, "store", count=True)  # a bool is not an int, as in JSON Schema
    refused(service, "store", 1.5)
    assert ran == []


def test_scalars_of_the_right_class_are_passed_as_they_are() -> None:
    service = typed_service()
    assert call(service, "echo", "hi") == "hi"
    assert call(service, "add", 2, 3) == 5
    assert call(service, "add", a=2) == 2
    assert refused(service, "echo", 5) == {
        "message": "$[0]: expected str, got int",
        "path": "$[0]",
        "reason": "expected str, got int",
    }
    assert refused(service, "add", 2, "3")["path"] == "$[1]"
    assert refused(service, "add", a=2, b="3")["path"] == "$.b"


def test_an_integer_is_a_float_and_integers_stay_exact() -> None:
    service = JSONService()

    @service.method
    def kinds(x: float, big: int, many: list[int]) -> list[str]:
        return [type(x).__name__, str(big), str(many[0])]

    huge = 2**200
    assert call(service, "kinds", 3, huge, [huge]) == ["float", str(huge), str(huge)]


SAMPLES: list[tuple[Any, Any, Any]] = [
    # (annotation, JSON value, the Python value the handler gets)
    (int | None, None, None),
    (MaybeInt, 4, 4),
    (int | str, "x", "x"),
    (Kind, 3, 3),
    (Kind, "b", "b"),
    (Color, "green", Color.GREEN),
    (Level, 2, Level.HIGH),
    (
        datetime.datetime,
        "2024-05-01T12:30:00Z",
        datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc),
    ),
    (datetime.datetime, "2024-05-01T12:30:00", datetime.datetime(2024, 5, 1, 12, 30)),
    (datetime.date, "2024-02-29", datetime.date(2024, 2, 29)),
    (datetime.time, "12:30:15.5", datetime.time(12, 30, 15, 500000)),
    (datetime.timedelta, "P1DT2H", datetime.timedelta(days=1, hours=2)),
    (uuid.UUID, "12345678-1234-5678-1234-567812345678", uuid.UUID("12345678-1234-5678-1234-567812345678")),
    (decimal.Decimal, "1.10", decimal.Decimal("1.10")),
    (decimal.Decimal, 2, decimal.Decimal(2)),
    (Point, {"x": 1, "y": 2}, {"x": 1, "y": 2}),
    (Pair, [1, "a"], Pair(1, "a")),
    (tuple[int, str], [1, "a"], (1, "a")),
    (set[int], [1, 2], {1, 2}),
    (dict[str, list[int]], {"a": [1]}, {"a": [1]}),
    (Item, {"sku": "x", "price": "9.99"}, Item("x", decimal.Decimal("9.99"))),
    (Tree, {"value": 1, "children": [{"value": 2}]}, Tree(1, [Tree(2)])),
]


@pytest.mark.parametrize(("annotation", "value", "expected"), SAMPLES, ids=lambda x: repr(x)[:40])
def test_each_kind_of_annotation_converts(annotation: Any, value: Any, expected: Any) -> None:
    got: list[Any] = []
    service = JSONService()

    def handler(x):  # type: ignore[no-untyped-def]
        got.append(x)

    handler.__annotations__ = {"x": annotation}
    service.add_method("take", handler)
    call(service, "take", value)
    call(service, "take", x=value)
    assert got == [expected, expected]
    assert all(type(x) is type(expected) for x in got)


WRONG: list[tuple[Any, Any, str, str]] = [
    (Kind, "c", "$[0]", "invalid enum value 'c'"),
    (Color, "blue", "$[0]", "invalid enum value 'blue'"),
    (datetime.datetime, "2024-05-01", "$[0]", "invalid RFC3339 encoded datetime"),
    (datetime.datetime, "2024-13-01T00:00:00Z", "$[0]", "invalid RFC3339 encoded datetime"),
    (datetime.datetime, "yesterday", "$[0]", "invalid RFC3339 encoded datetime"),
    (datetime.datetime, 1714566600, "$[0]", "expected datetime, got int"),
    (datetime.date, "2023-02-29", "$[0]", "invalid RFC3339 encoded date"),
    (uuid.UUID, "not-a-uuid", "$[0]", "invalid UUID"),
    (decimal.Decimal, "1.1.1", "$[0]", "invalid decimal string"),
    (dict[str, int], {"a": "1"}, "$[0][...]", "expected int, got str"),
    (Point, {"x": 1}, "$[0]", "object missing required field 'y'"),
    (tuple[int, str], [1], "$[0]", "expected array of length 2, got 1"),
    (float, 2**1100, "$[0]", "number out of range"),  # an integer past the float range
    (list[float], [0.5, -(2**1100)], "$[0][1]", "number out of range"),
    (Item, {"sku": "x", "price": "9.99", "color": "blue"}, "$[0].color", "invalid enum value 'blue'"),
]


@pytest.mark.parametrize(("annotation", "value", "path", "reason"), WRONG, ids=lambda x: repr(x)[:40])
def test_each_kind_of_wrong_value_names_path_and_reason(
    annotation: Any, value: Any, path: str, reason: str
) -> None:
    service = JSONService()

    def handler(x):  # type: ignore[no-untyped-def]
        raise AssertionError("must not run")

    handler.__annotations__ = {"x": annotation}
    service.add_method("take", handler)
    data = refused(service, "take", value)
    assert (data["path"], data["reason"]) == (path, reason)


# -- hostile params ---------------------------------------------------------------


def test_deep_nesting_into_a_recursive_type_is_invalid_params() -> None:
    service = JSONService()

    @service.method
    def depth(tree: Tree) -> int:
        return 1

    value: dict[str, Any] = {"value": 0}
    for _ in range(505):  # two levels each: within the protocol's nesting limit of 1024
        value = {"value": 0, "children": [value]}
    pair = connected_pair(service)
    error = pair.failure_of(pair.client.call("depth", value), InvalidParams).value
    assert error.data["reason"] == "nested too deeply to convert"
    assert error.data["path"] == "$[0]"
    # the connection goes on
    assert pair.result_of(pair.client.call("depth", {"value": 1})) == 1


def test_long_values_are_cut_in_the_error() -> None:
    service = JSONService()

    @service.method
    def pick(kind: Kind) -> Any:
        return kind

    data = refused(service, "pick", "x" * 100_000)
    assert len(data["reason"]) <= 200
    assert data["reason"].startswith("invalid enum value 'xxx")


def test_long_keys_are_cut_in_the_path() -> None:
    service = JSONService()

    @service.method
    def options(**flags: bool) -> int:
        return len(flags)

    assert call(service, "options", a=True, b=False) == 2
    data = refused(service, "options", **{"k" * 10_000: 1})
    assert len(data["path"]) <= 200
    assert refused(service, "options", **{"not a name": 1})["path"] == '$["not a name"]'


def test_a_bad_item_of_a_batch_is_answered_alone() -> None:
    pair = connected_pair(typed_service())
    pair.client_write(
        b'[{"jsonrpc":"2.0","method":"echo","params":["a"],"id":1},'
        b'{"jsonrpc":"2.0","method":"echo","params":[1],"id":2}]\n'
    )
    pair.flush()
    [replies] = pair.sent_by_server
    assert replies[0] == {"jsonrpc": "2.0", "result": "a", "id": 1}
    assert replies[1]["error"]["code"] == -32602
    assert replies[1]["error"]["data"]["path"] == "$[0]"


def test_arity_is_still_checked_first() -> None:
    pair = connected_pair(typed_service())
    error = pair.failure_of(pair.client.call("echo", "a", "b"), InvalidParams).value
    assert isinstance(error.data, str)
    assert "too many positional arguments" in error.data


# -- what passes through -------------------------------------------------------------


def test_unannotated_and_any_params_pass_unchanged() -> None:
    seen: list[Any] = []
    service = JSONService()

    @service.method
    def loose(a, b: Any, c: object, *rest):  # type: ignore[no-untyped-def]
        seen.extend([a, b, c, *rest])

    call(service, "loose", "1", [2], {"c": 3}, True)
    assert seen == ["1", [2], {"c": 3}, True]
    handler = service.methods["loose"]
    assert handler.converter is None
    # the very responder an unannotated handler always had
    assert "positional_responder" in repr(handler.respond)


def test_validation_can_be_turned_off_per_method() -> None:
    service = JSONService()

    @service.method(validate=False)
    def raw(user: User) -> Any:
        return user

    assert service.methods["raw"].converter is None
    assert call(service, "raw", {"name": 5}) == {"name": 5}


def test_validation_can_be_turned_off_per_service_and_back_on_per_method() -> None:
    service = typed_service(validate=False)
    assert call(service, "echo", 5) == 5
    assert all(handler.converter is None for handler in service.methods.values())

    @service.method(validate=True)
    def strict(value: str) -> str:
        return value

    refused(service, "strict", 5)


def test_validation_off_still_describes_the_types() -> None:
    service = typed_service(validate=False)
    [create_user] = [m for m in service.discover()["methods"] if m["name"] == "create_user"]
    assert create_user["params"][0]["schema"] == {"$ref": "#/components/schemas/User"}


class Opaque:
    """A class with no JSON form."""


def test_annotations_without_a_json_form_pass_through_and_are_logged() -> None:
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        service = JSONService()

        def handler(thing: Opaque, n: int) -> Any:
            return [thing, n]

        service.add_method("opaque", handler)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert call(service, "opaque", {"any": "thing"}, 2) == [{"any": "thing"}, 2]
    refused(service, "opaque", {}, "2")
    [warning] = [e for e in events if "no JSON form" in e.get("log_format", "")]
    assert warning["names"] == "thing"


def test_unresolvable_annotations_pass_through() -> None:
    service = JSONService()

    def handler(x: NoSuchType, y: int) -> Any:  # type: ignore[name-defined]  # noqa: F821
        return [x, y]

    service.add_method("odd", handler)
    assert call(service, "odd", "anything", 1) == ["anything", 1]
    assert refused(service, "odd", "anything", "1")["path"] == "$[1]"


def test_python_callers_may_pass_instances_of_the_type() -> None:
    service = typed_service()
    user = User("Ada", datetime.date(1815, 12, 10), Address("London"))
    assert service.dispatch("create_user", [user, []])["type"] == "User"


def test_annotations_are_compiled_at_registration_not_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    service = typed_service()
    compiled: list[Any] = []
    monkeypatch.setattr("jsonservice.typed.Conversion.__init__", lambda self, t: compiled.append(t))
    monkeypatch.setattr("jsonservice.typed._cache", {})
    for _ in range(3):
        assert call(service, "create_user", USER, ["x"])["type"] == "User"
        refused(service, "create_user", {**USER, "name": 1}, ["x"])
    assert compiled == []


def test_scalars_of_the_right_class_never_reach_msgspec(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path of scalar params: a class comparison, no msgspec call."""
    service = typed_service()

    def no_msgspec(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("msgspec.convert called")

    monkeypatch.setattr(msgspec, "convert", no_msgspec)
    assert call(service, "echo", "hi") == "hi"
    assert call(service, "add", 1, 2) == 3
    assert call(service, "add", a=1, b=2) == 3
    pair = connected_pair(service)
    pair.failure_of(pair.client.call("echo", 1), InternalError)  # the slow path did call it


# -- context, async, Deferreds, plain messages ------------------------------------------


def test_context_handlers_get_converted_params() -> None:
    service = JSONService()

    @service.method(context=True)
    def stamp(ctx: CallContext, when: datetime.date) -> str:
        return f"{ctx.method} {when.isoformat()} {type(when).__name__}"

    assert call(service, "stamp", "2024-01-02") == "stamp 2024-01-02 date"
    assert call(service, "stamp", when="2024-01-02") == "stamp 2024-01-02 date"
    assert refused(service, "stamp", when="2024-01-32")["path"] == "$.when"


def test_async_and_deferred_handlers_are_converted() -> None:
    service = JSONService()

    @service.method
    async def later(n: Level) -> str:
        return repr(n)

    @service.method
    def deferred(n: Level) -> Any:
        return succeed(repr(n))

    assert call(service, "later", 1) == "<Level.LOW: 1>"
    assert call(service, "deferred", n=2) == "<Level.HIGH: 2>"
    assert refused(service, "later", 3)["reason"] == "invalid enum value 3"


def test_variadic_params_are_converted_one_by_one() -> None:
    service = JSONService()

    @service.method
    def total(*amounts: decimal.Decimal) -> str:
        return str(sum(amounts, decimal.Decimal(0)))

    assert call(service, "total", "0.1", "0.2") == "0.3"
    assert refused(service, "total", "0.1", "x")["path"] == "$[1]"


def test_a_typed_message_handler_converts_the_message() -> None:
    service = JSONService()

    @service.message
    def on_point(point: Point) -> Any:
        return point["x"] + point["y"]

    pair = connected_pair(service)
    assert pair.result_of(pair.client.send({"x": 1, "y": 2})) == 3
    error = pair.failure_of(pair.client.send({"x": 1}), InvalidParams).value
    assert error.data["path"] == "$[0]"


def test_a_message_handler_may_turn_validation_off() -> None:
    service = JSONService()

    @service.message(validate=False)
    def on_point(point: Point) -> Any:
        return point

    assert service.message_handler is not None
    assert service.message_handler.converter is None
    pair = connected_pair(service)
    assert pair.result_of(pair.client.send({"x": "not an int"})) == {"x": "not an int"}


# -- results -----------------------------------------------------------------------------


class Mood(enum.Enum):
    """An enum result."""

    HAPPY = "happy"


RESULTS: list[tuple[Any, Any]] = [
    (
        User("Ada", datetime.date(1815, 12, 10), Address("London")),
        {**USER, "tags": [], "address": {"city": "London", "zip": None}},
    ),
    (Mood.HAPPY, "happy"),
    (datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc), "2024-05-01T12:30:00+00:00"),
    (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
    # orjson 3.13 itself writes this time as "00:00:00.10000" (ten times the value)
    (datetime.time(0, 0, 0, 10000), "00:00:00.010000"),
    ({datetime.date(2024, 1, 2): datetime.time(1, 2)}, {"2024-01-02": "01:02:00"}),
    (Pair(1, "a"), [1, "a"]),
    (decimal.Decimal("1.10"), "1.10"),
    (decimal.Decimal("1E+400"), "1E+400"),
    (datetime.timedelta(days=1, seconds=1), "P1DT1S"),
    (Item("x", decimal.Decimal("9.99")), {"sku": "x", "price": "9.99", "color": "red"}),
    ([Item("y", decimal.Decimal(1))], [{"sku": "y", "price": "1", "color": "red"}]),
    (
        {"big": 2**80, "item": Item("z", decimal.Decimal(0))},
        {"big": 2**80, "item": {"sku": "z", "price": "0", "color": "red"}},
    ),
]


@pytest.mark.parametrize(("result", "expected"), RESULTS, ids=lambda x: type(x).__name__)
def test_rich_results_are_sent_in_their_json_forms(result: Any, expected: Any) -> None:
    service = JSONService()
    service.add_method("get", lambda: result)
    pair = connected_pair(service)
    assert pair.result_of(pair.client.call("get")) == expected
    assert loads(dumps(result)) == expected


@pytest.mark.parametrize(
    "result",
    [
        {1, 2},
        b"bytes",
        Opaque(),
        float("nan"),
        [Item("x", decimal.Decimal(1)), Opaque()],
        Tree(1, [Tree(2)]).__class__,  # a class is not a value
    ],
    ids=["set", "bytes", "object", "nan", "object-in-list", "class"],
)
def test_other_results_are_still_internal_errors(result: Any) -> None:
    service = JSONService()
    service.add_method("get", lambda: result)
    pair = connected_pair(service)
    pair.failure_of(pair.client.call("get"), InternalError)
    with pytest.raises(EncodeError):
        dumps_line(result)


class Measured(msgspec.Struct):
    """A Struct that may hold NaN."""

    value: float


@dataclasses.dataclass
class Sample:
    """A dataclass holding a Struct."""

    inner: Measured


@pytest.mark.parametrize(
    "result",
    [
        Measured(float("nan")),
        [Measured(math.inf)],
        Sample(Measured(-math.inf)),
        {"a": {"b": Measured(float("nan"))}},
    ],
    ids=["struct", "in-list", "in-dataclass", "nested"],
)
def test_nan_inside_rich_results_is_refused_not_written_as_null(result: Any) -> None:
    with pytest.raises(EncodeError, match="NaN"):
        dumps(result)
    service = JSONService()
    service.add_method("get", lambda: result)
    pair = connected_pair(service)
    pair.failure_of(pair.client.call("get"), InternalError)


def test_a_null_in_a_rich_result_is_not_taken_for_nan() -> None:
    assert loads(dumps(Item("x", decimal.Decimal(1)).__class__("x", decimal.Decimal(1)))) == {
        "sku": "x",
        "price": "1",
        "color": "red",
    }
    assert loads(dumps({"none": None, "item": Address("Paris")})) == {
        "none": None,
        "item": {"city": "Paris", "zip": None},
    }
    assert loads(dumps({"none": None, "item": Item("x", decimal.Decimal(1))}))["none"] is None


def rich_handlers() -> JSONService:
    service = JSONService()

    @service.method
    def item() -> Item:
        return Item("x", decimal.Decimal("1.50"))

    @service.method
    async def when() -> datetime.datetime:
        return datetime.datetime(2024, 1, 2, 3, 4, 5, 10000, tzinfo=datetime.timezone.utc)

    @service.method
    def later() -> Deferred[Item | None]:
        return succeed(Item("y", decimal.Decimal(2)))

    @service.method
    def wrong() -> Item:
        return {1, 2}  # type: ignore[return-value]

    @service.method
    def nan() -> Measured:
        return Measured(float("nan"))

    return service


def test_annotated_rich_results_are_converted_by_the_responder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not left to the encoder's retry (an exception, then a second encoding): the same bytes, sooner."""
    service = rich_handlers()
    assert service.methods["item"].rich == frozenset({Item})
    assert service.methods["later"].rich == frozenset({Item})
    expected = {
        "item": {"sku": "x", "price": "1.50", "color": "red"},
        "when": "2024-01-02T03:04:05.010000+00:00",
        "later": {"sku": "y", "price": "2", "color": "red"},
    }
    for method, value in expected.items():
        assert call(service, method) == value

    def no_retry(*args: Any) -> bytes:
        raise AssertionError("the encoder's retry ran")

    monkeypatch.setattr("jsonservice.codec._dumps_rich", no_retry)
    for method, value in expected.items():
        assert call(service, method) == value


def test_rich_results_have_one_json_form_with_or_without_the_annotation() -> None:
    typed, untyped = rich_handlers(), JSONService()
    untyped.add_method("item", lambda: Item("x", decimal.Decimal("1.50")))
    one, two = connected_pair(typed), connected_pair(untyped)
    one.result_of(one.client.call("item"))
    two.result_of(two.client.call("item"))
    assert one.raw_sent_by_server == two.raw_sent_by_server


def test_annotated_results_that_are_not_json_are_still_internal_errors() -> None:
    pair = connected_pair(rich_handlers())
    pair.failure_of(pair.client.call("wrong"), InternalError)
    pair.failure_of(pair.client.call("nan"), InternalError)


# -- the client side --------------------------------------------------------------------------


def test_result_type_converts_the_result() -> None:
    service = JSONService()

    @service.method
    def make_user(name: str) -> User:
        return User(name, datetime.date(2000, 1, 2), Address("Oslo"))

    pair = connected_pair(service)
    user = pair.result_of(pair.client.call("make_user", "Bo", result_type=User))
    assert user == User("Bo", datetime.date(2000, 1, 2), Address("Oslo"))
    assert (
        pair.result_of(pair.client.request("make_user", ["Bo"], result_type=dict[str, Any]))["name"] == "Bo"
    )


def test_a_result_of_the_wrong_shape_fails_on_the_client_naming_the_path() -> None:
    service = JSONService()
    service.add_method("get", lambda: {"name": "x", "born": "2000-01-01", "address": {"city": 5}})
    pair = connected_pair(service)
    error = pair.failure_of(pair.client.call("get", result_type=User), ConversionError).value
    assert (error.method, error.path, error.reason) == ("get", "$.address.city", "expected str, got int")
    assert str(error) == "get result $.address.city: expected str, got int"


def test_a_result_type_without_a_json_form_fails_at_once() -> None:
    pair = connected_pair(typed_service())
    pair.failure_of(pair.client.call("echo", "x", result_type=Opaque), TypeError)
    assert pair.sent_by_client == []


def test_typed_arguments_are_sent_in_their_json_forms() -> None:
    service = JSONService()

    @service.method
    def buy(item: Item, when: datetime.date, count: decimal.Decimal) -> str:
        return f"{item.sku} {item.price} {when} {count}"

    pair = connected_pair(service)
    done = pair.client.call(
        "buy", Item("x", decimal.Decimal("2.50")), datetime.date(2024, 1, 2), decimal.Decimal("3")
    )
    assert pair.result_of(done) == "x 2.50 2024-01-02 3"
    assert pair.sent_by_client[0]["params"] == [
        {"sku": "x", "price": "2.50", "color": "red"},
        "2024-01-02",
        "3",
    ]


def test_conversion_for_is_cached_per_type() -> None:
    assert conversion_for(list[int]) is conversion_for(list[int])
    with pytest.raises(TypeError):
        conversion_for(Opaque)


# -- pydantic (optional) --------------------------------------------------------------------------


needs_pydantic = pytest.mark.skipif(pydantic is None, reason="pydantic is not installed")


@needs_pydantic
def test_pydantic_models_as_params_results_and_result_types() -> None:
    assert Profile is not None
    service = JSONService()

    @service.method
    def rename(profile: Profile, name: str) -> Profile:
        return profile.model_copy(update={"display_name": name})

    pair = connected_pair(service)
    sent = {"displayName": "a", "address": {"city": "Rome"}, "tags": [2, 1]}
    result = pair.result_of(pair.client.call("rename", sent, "b"))
    assert result == {
        "displayName": "b",
        "address": {"city": "Rome", "zip": None},
        "score": 0.0,
        "tags": [1, 2],
    }
    typed = pair.result_of(pair.client.call("rename", sent, "c", result_type=Profile))
    assert isinstance(typed, Profile)
    assert typed.display_name == "c"
    error = pair.failure_of(pair.client.call("rename", {**sent, "address": {"city": 1}}, "b"), InvalidParams)
    assert error.value.data["path"] == "$[0].address.city"
    assert error.value.data["reason"] == "Input should be a valid string"
    nested = pair.failure_of(
        pair.client.call("rename", profile=[sent, {"displayName": 1}], name="x"), InvalidParams
    )
    assert nested.value.data["path"].startswith("$.profile")


@needs_pydantic
def test_pydantic_results_holding_nan_are_refused() -> None:
    assert Profile is not None
    profile = Profile(displayName="a", address=Address("x"), score=float("nan"))
    with pytest.raises(EncodeError, match="NaN"):
        dumps(profile)


@needs_pydantic
def test_pydantic_models_in_containers_convert() -> None:
    assert Profile is not None
    converted = conversion_for(list[Profile]).convert([{"displayName": "a", "address": {"city": "x"}}])
    assert isinstance(converted[0], Profile)
    with pytest.raises(ConversionError) as caught:
        conversion_for(list[Profile]).convert([{"displayName": "a", "address": {"city": "x"}}, {}])
    assert caught.value.path.startswith("$[1]")


def test_handler_signature_still_takes_three_arguments() -> None:
    handler = Handler("x", lambda value: value, False)
    assert handler.respond(["a"], 1, None) == "a"

"""
Tests for L{jsonservice.jsonrpc} and L{jsonservice.errors}: classifying
messages, building replies, error objects.  Pure: no Twisted, no I/O.
"""

from __future__ import annotations

from typing import Any

import pytest

from jsonservice import errors
from jsonservice.codec import dumps, loads
from jsonservice.errors import (
    BatchTooLarge,
    InternalError,
    InvalidParams,
    InvalidRequest,
    MessageTooLarge,
    MethodNotFound,
    ParseError,
    RequestCancelled,
    RequestTimeout,
    RPCError,
    ServerBusy,
    Unauthorized,
)
from jsonservice.jsonrpc import (
    NO_ID,
    Batch,
    BatchReplies,
    Invalid,
    Plain,
    Request,
    Response,
    classify,
    error_reply,
    make_params,
    notification,
    request,
    result_reply,
)

try:
    from tests.spec_examples import EXAMPLES, NO_RESPONSE, SpecExample, by_name, without_error_data
except ImportError:  # tests/ is not a package: pytest put it on sys.path
    from spec_examples import EXAMPLES, NO_RESPONSE, SpecExample, by_name, without_error_data

V = {"jsonrpc": "2.0"}


def invalid_request(value: Any, expected_id: Any = None) -> InvalidRequest:
    """Classify C{value}, expecting an Invalid Request answered with C{expected_id}."""
    message = classify(value)
    assert type(message) is Invalid, message
    assert type(message.error) is InvalidRequest
    assert message.error.code == -32600
    assert message.error.message == "Invalid Request"
    assert isinstance(message.error.data, str)
    assert message.error.data
    assert message.id == expected_id
    assert type(message.id) is type(expected_id)
    return message.error


# --- requests and notifications --------------------------------------------------


def test_request_positional() -> None:
    message = classify({**V, "method": "subtract", "params": [42, 23], "id": 1})
    assert message == Request("subtract", [42, 23], 1)
    assert isinstance(message, Request)
    assert message.is_notification is False


def test_request_named() -> None:
    message = classify({**V, "method": "subtract", "params": {"minuend": 42, "subtrahend": 23}, "id": "a"})
    assert message == Request("subtract", {"minuend": 42, "subtrahend": 23}, "a")


def test_request_absent_params() -> None:
    message = classify({**V, "method": "ping", "id": 7})
    assert message == Request("ping", None, 7)


def test_request_empty_params() -> None:
    assert classify({**V, "method": "m", "params": [], "id": 1}) == Request("m", [], 1)
    assert classify({**V, "method": "m", "params": {}, "id": 1}) == Request("m", {}, 1)


@pytest.mark.parametrize("id_", ["abc", "", 0, -5, 2**70, 1.5, None], ids=repr)
def test_request_valid_ids(id_: Any) -> None:
    message = classify({**V, "method": "m", "id": id_})
    assert isinstance(message, Request)
    assert message.id == id_
    assert type(message.id) is type(id_)
    assert message.is_notification is False  # id null is still a request


def test_notification() -> None:
    message = classify({**V, "method": "update", "params": [1, 2, 3]})
    assert message == Request("update", [1, 2, 3], NO_ID)
    assert isinstance(message, Request)
    assert message.id is NO_ID
    assert message.is_notification is True


def test_notification_without_params() -> None:
    message = classify({**V, "method": "foobar"})
    assert isinstance(message, Request)
    assert message.params is None
    assert message.is_notification is True


def test_no_id_sentinel() -> None:
    assert repr(NO_ID) == "NO_ID"
    assert not NO_ID
    assert NO_ID is not None
    assert Request("m", None, NO_ID) != Request("m", None, None)


@pytest.mark.parametrize("params", [None, 5, "bar", True, 1.5])
def test_params_not_structured_is_invalid(params: Any) -> None:
    error = invalid_request({**V, "method": "m", "params": params, "id": 3}, 3)
    assert "params" in error.data


def test_params_invalid_in_notification() -> None:
    error = invalid_request({**V, "method": "m", "params": "x"}, None)
    assert "params" in error.data


@pytest.mark.parametrize("id_", [True, False, {"a": 1}, [1], []], ids=repr)
def test_bad_id_type_is_invalid_with_null_id(id_: Any) -> None:
    error = invalid_request({**V, "method": "m", "id": id_}, None)
    assert "id" in error.data


@pytest.mark.parametrize("method", [1, None, True, ["m"], {"m": 1}], ids=repr)
def test_method_not_a_string(method: Any) -> None:
    error = invalid_request({**V, "method": method, "id": "x"}, "x")
    assert "method" in error.data


@pytest.mark.parametrize("version", ["1.0", 2.0, 2, "2", "2.0 ", None, ["2.0"]], ids=repr)
def test_wrong_jsonrpc_version(version: Any) -> None:
    error = invalid_request({"jsonrpc": version, "method": "m", "id": 9}, 9)
    assert "jsonrpc" in error.data
    assert "2.0" in error.data


def test_wrong_version_with_bad_id() -> None:
    invalid_request({"jsonrpc": "1.0", "method": "m", "id": True}, None)


def test_neither_request_nor_response() -> None:
    error = invalid_request({**V}, None)
    assert "method" in error.data
    invalid_request({**V, "id": 5}, 5)
    invalid_request({**V, "params": [1], "id": "q"}, "q")


# --- responses ----------------------------------------------------------------------


@pytest.mark.parametrize("result", [19, None, "s", [1, 2], {"a": 1}, False], ids=repr)
def test_response_with_result(result: Any) -> None:
    message = classify({**V, "result": result, "id": 1})
    assert message == Response(1, result)
    assert isinstance(message, Response)
    assert message.error is None
    assert message.result == result


def test_response_id_null_and_string() -> None:
    assert classify({**V, "result": 1, "id": None}) == Response(None, 1)
    assert classify({**V, "result": 1, "id": "abc"}) == Response("abc", 1)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (-32700, ParseError),
        (-32600, InvalidRequest),
        (-32601, MethodNotFound),
        (-32602, InvalidParams),
        (-32603, InternalError),
        (-32000, RequestTimeout),
        (-32001, ServerBusy),
        (-32002, MessageTooLarge),
        (-32003, BatchTooLarge),
        (-32800, RequestCancelled),
    ],
)
def test_response_with_error_mapped_by_code(code: int, cls: type[RPCError]) -> None:
    message = classify({**V, "error": {"code": code, "message": "custom text", "data": {"x": [1]}}, "id": 4})
    assert isinstance(message, Response)
    assert message.id == 4
    assert message.result is None
    assert type(message.error) is cls
    assert message.error.code == code
    assert message.error.message == "custom text"
    assert message.error.data == {"x": [1]}


def test_response_with_unknown_error_code() -> None:
    message = classify({**V, "error": {"code": 42, "message": "mine"}, "id": "z"})
    assert isinstance(message, Response)
    assert type(message.error) is RPCError
    assert message.error == RPCError(42, "mine")
    assert message.error.data is None


def test_response_error_data_falsy_kept() -> None:
    message = classify({**V, "error": {"code": -32000, "message": "m", "data": 0}, "id": 1})
    assert isinstance(message, Response)
    assert message.error is not None
    assert message.error.data == 0
    assert message.error.to_dict() == {"code": -32000, "message": "m", "data": 0}


def test_response_with_result_and_error() -> None:
    error = invalid_request({**V, "result": 1, "error": {"code": 1, "message": "m"}, "id": 3}, 3)
    assert "result" in error.data
    assert "error" in error.data


@pytest.mark.parametrize(
    "error_obj",
    [
        "x",
        None,
        5,
        [],
        {},
        {"code": 1},
        {"message": "m"},
        {"code": "1", "message": "m"},
        {"code": 1.0, "message": "m"},
        {"code": True, "message": "m"},
        {"code": 1, "message": 2},
        {"code": 1, "message": None},
    ],
    ids=repr,
)
def test_response_with_bad_error_object(error_obj: Any) -> None:
    error = invalid_request({**V, "error": error_obj, "id": 8}, 8)
    assert "error" in error.data


@pytest.mark.parametrize(
    "obj",
    [
        {**V, "result": 1},
        {**V, "error": {"code": 1, "message": "m"}},
        {**V, "result": 1, "id": True},
        {**V, "result": 1, "id": [1]},
        {**V, "result": 1, "id": {"a": 1}},
    ],
    ids=repr,
)
def test_response_without_usable_id(obj: dict[str, Any]) -> None:
    error = invalid_request(obj, None)
    assert "id" in error.data


# --- plain messages -----------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [{"message": "hi"}, {}, {"method": "m", "id": 1}, "text", "", 0, 1.5, 2**70, None, True, False],
    ids=repr,
)
def test_plain_messages(value: Any) -> None:
    message = classify(value)
    assert type(message) is Plain
    assert message.value == value
    assert type(message.value) is type(value)


def test_plain_equality_and_repr() -> None:
    assert Plain(1) == Plain(1)
    assert Plain(1) != Plain(2)
    assert Plain(1) != 1
    assert repr(Plain({"a": 1})) == "Plain({'a': 1})"


# --- batches --------------------------------------------------------------------------


def test_empty_batch() -> None:
    message = classify([])
    assert type(message) is Invalid
    assert type(message.error) is InvalidRequest
    assert message.id is None
    assert message.error.data
    assert message.reply() == {
        "jsonrpc": "2.0",
        "error": {"code": -32600, "message": "Invalid Request", "data": message.error.data},
        "id": None,
    }


def test_batch_of_requests() -> None:
    message = classify(
        [
            {**V, "method": "a", "params": [1], "id": 1},
            {**V, "method": "b"},
            {**V, "method": "c", "params": {"k": 2}, "id": "x"},
        ]
    )
    assert message == Batch(
        [Request("a", [1], 1), Request("b", None, NO_ID), Request("c", {"k": 2}, "x")],
    )


def test_batch_at_limit() -> None:
    message = classify([{**V, "method": "m"}] * 3, max_batch=3)
    assert type(message) is Batch
    assert len(message.items) == 3


def test_batch_over_limit() -> None:
    message = classify([{**V, "method": "m"}] * 4, max_batch=3)
    assert type(message) is Invalid
    assert type(message.error) is BatchTooLarge
    assert message.error.code == -32003
    assert message.error.message == "Batch too large"
    assert message.id is None
    assert message.error.data == {"max_batch": 3, "items": 4}


def test_batch_default_limit_is_1000() -> None:
    assert type(classify([1] * 1000)) is Batch
    over = classify([1] * 1001)
    assert type(over) is Invalid
    assert type(over.error) is BatchTooLarge
    assert over.error.data["max_batch"] == 1000


def test_batch_mixed_valid_and_invalid() -> None:
    message = classify(
        [
            {**V, "method": "ok", "id": 1},
            {**V, "method": 5, "id": 2},
            {**V, "result": "r", "id": 3},
            {"method": "no version", "id": 4},
            {**V, "method": "n", "params": 1},
        ]
    )
    assert type(message) is Batch
    ok, bad_method, response, no_version, bad_params = message.items
    assert ok == Request("ok", None, 1)
    assert type(bad_method) is Invalid
    assert bad_method.id == 2
    assert response == Response(3, "r")
    assert type(no_version) is Invalid  # jsonrpc missing in a batch item
    assert no_version.id is None
    assert type(bad_params) is Invalid
    assert bad_params.id is None


@pytest.mark.parametrize(
    "item",
    [1, "s", None, True, 1.5, [], [1], [{**V, "method": "m", "id": 1}], {"method": "m"}, {}],
    ids=repr,
)
def test_batch_non_jsonrpc_items(item: Any) -> None:
    message = classify([item, {**V, "method": "m", "id": 1}])
    assert type(message) is Batch
    first, second = message.items
    assert type(first) is Invalid
    assert type(first.error) is InvalidRequest
    assert first.id is None
    assert second == Request("m", None, 1)


def test_batch_and_item_equality_and_repr() -> None:
    assert Batch([Request("m", None, 1)]) == Batch([Request("m", None, 1)])
    assert Batch([Request("m", None, 1)]) != Batch([Request("m", None, 2)])
    assert Batch([]) != []
    assert repr(Batch([])) == "Batch([])"
    assert repr(Request("m", [1], NO_ID)) == "Request('m', [1], NO_ID)"
    assert repr(Response(1, 2)) == "Response(1, 2, None)"
    assert Response(1, 2) != Response(1, 3)
    assert Response(1, error=MethodNotFound()) == Response(1, error=MethodNotFound())
    assert Invalid(InvalidRequest(), 1) == Invalid(InvalidRequest(), 1)
    assert Invalid(InvalidRequest(), 1) != Invalid(InvalidRequest(), 2)
    assert "InvalidRequest" in repr(Invalid(InvalidRequest(), 1))
    assert Request("m", None, 1) != ("m", None, 1)


@pytest.mark.parametrize("cls", [Request, Response, Invalid, Plain, Batch])
def test_messages_are_unhashable(cls: type) -> None:
    assert cls.__hash__ is None


# --- builders -------------------------------------------------------------------------


def test_result_reply() -> None:
    assert result_reply(1, 19) == {"jsonrpc": "2.0", "result": 19, "id": 1}
    assert result_reply("a", None) == {"jsonrpc": "2.0", "result": None, "id": "a"}
    assert dumps(result_reply(1, 19)) == b'{"jsonrpc":"2.0","result":19,"id":1}'


def test_error_reply() -> None:
    assert error_reply(None, ParseError()) == {
        "jsonrpc": "2.0",
        "error": {"code": -32700, "message": "Parse error"},
        "id": None,
    }
    reply = error_reply("x", RPCError(7, "seven", [1, 2]))
    assert reply == {"jsonrpc": "2.0", "error": {"code": 7, "message": "seven", "data": [1, 2]}, "id": "x"}


def test_invalid_reply() -> None:
    invalid = Invalid(InvalidRequest(data="why"), 5)
    assert invalid.reply() == {
        "jsonrpc": "2.0",
        "error": {"code": -32600, "message": "Invalid Request", "data": "why"},
        "id": 5,
    }
    assert Invalid(ServerBusy()).reply()["id"] is None


def test_request_builder() -> None:
    assert request("m", [1, 2], 3) == {"jsonrpc": "2.0", "method": "m", "params": [1, 2], "id": 3}
    assert request("m", {"a": 1}, "x") == {"jsonrpc": "2.0", "method": "m", "params": {"a": 1}, "id": "x"}
    assert request("m", None, 3) == {"jsonrpc": "2.0", "method": "m", "id": 3}
    assert request("m", [], 3)["params"] == []


def test_notification_builder() -> None:
    assert notification("n", [1]) == {"jsonrpc": "2.0", "method": "n", "params": [1]}
    assert notification("n", None) == {"jsonrpc": "2.0", "method": "n"}
    assert "id" not in notification("n", {"a": 1})


@pytest.mark.parametrize(
    "built",
    [
        request("m", [1], 1),
        request("m", {"k": "v"}, "s"),
        request("m", None, None),
        notification("n", [1]),
        notification("n", None),
        result_reply(1, {"r": [1]}),
        error_reply(2, MethodNotFound(data="x")),
    ],
    ids=repr,
)
def test_builders_classify_back(built: dict[str, Any]) -> None:
    message = classify(loads(dumps(built)))
    assert type(message) in (Request, Response)
    if "method" in built:
        assert message == Request(built["method"], built.get("params"), built.get("id", NO_ID))
    elif "result" in built:
        assert message == Response(built["id"], built["result"])
    else:
        assert message == Response(built["id"], error=RPCError.from_dict(built["error"]))


def test_make_params() -> None:
    assert make_params((), {}) is None
    assert make_params((1, 2), {}) == [1, 2]
    assert type(make_params((1,), {})) is list
    assert make_params((), {"a": 1}) == {"a": 1}
    with pytest.raises(TypeError, match="positional or named"):
        make_params((1,), {"a": 1})


# --- BatchReplies -----------------------------------------------------------------------


def test_batch_replies_in_item_order() -> None:
    replies = BatchReplies(3)
    assert replies.done is False
    assert replies.add(2, result_reply(3, "c")) is False
    assert replies.add(0, result_reply(1, "a")) is False
    assert replies.done is False
    assert replies.add(1, result_reply(2, "b")) is True
    assert replies.done is True
    assert [r["id"] for r in replies.replies()] == [1, 2, 3]


def test_batch_replies_skip_notifications() -> None:
    replies = BatchReplies(3)
    replies.add(0, None)
    replies.add(1, result_reply(1, "x"))
    assert replies.add(2, None) is True
    assert replies.replies() == [result_reply(1, "x")]


def test_batch_replies_all_notifications_send_nothing() -> None:
    replies = BatchReplies(2)
    assert replies.add(1, None) is False
    assert replies.add(0, None) is True
    assert replies.done is True
    assert replies.replies() == []


# --- RPCError and its subclasses ----------------------------------------------------------

DESIGN_TABLE = [
    (ParseError, -32700, "Parse error"),
    (InvalidRequest, -32600, "Invalid Request"),
    (MethodNotFound, -32601, "Method not found"),
    (InvalidParams, -32602, "Invalid params"),
    (InternalError, -32603, "Internal error"),
    (RequestTimeout, -32000, "Request timed out"),
    (ServerBusy, -32001, "Server busy"),
    (MessageTooLarge, -32002, "Message too large"),
    (BatchTooLarge, -32003, "Batch too large"),
    (Unauthorized, -32004, "Unauthorized"),
    (RequestCancelled, -32800, "Request cancelled"),
]


@pytest.mark.parametrize(("cls", "code", "message"), DESIGN_TABLE, ids=lambda x: getattr(x, "__name__", x))
def test_error_subclass_matches_design(cls: type[RPCError], code: int, message: str) -> None:
    assert cls.code == code  # a class attribute
    error = cls()
    assert isinstance(error, RPCError)
    assert isinstance(error, Exception)
    assert error.code == code
    assert error.message == message
    assert error.data is None
    assert error.to_dict() == {"code": code, "message": message}
    custom = cls("other words", {"why": 1})
    assert custom.code == code
    assert custom.message == "other words"
    assert custom.to_dict() == {"code": code, "message": "other words", "data": {"why": 1}}
    assert type(RPCError.from_dict(custom.to_dict())) is cls
    assert RPCError.from_dict(custom.to_dict()) == custom
    assert cls(data=[1]).data == [1]


def test_every_public_error_is_in_the_design_table() -> None:
    public = {getattr(errors, name) for name in errors.__all__ if name[0].isupper() and name != "OUTCOMES"}
    public -= {RPCError}
    assert public == {cls for cls, _, _ in DESIGN_TABLE}
    codes = [code for _, code, _ in DESIGN_TABLE]
    assert len(set(codes)) == len(codes)


def test_rpc_error_fields_and_to_dict() -> None:
    error = RPCError(-32099, "custom", {"a": [1]})
    assert (error.code, error.message, error.data) == (-32099, "custom", {"a": [1]})
    assert error.to_dict() == {"code": -32099, "message": "custom", "data": {"a": [1]}}
    assert RPCError(1, "m").to_dict() == {"code": 1, "message": "m"}


@pytest.mark.parametrize("data", [0, "", [], {}, False], ids=repr)
def test_falsy_data_is_kept(data: Any) -> None:
    assert RPCError(1, "m", data).to_dict() == {"code": 1, "message": "m", "data": data}


def test_from_dict_keeps_everything() -> None:
    error = RPCError.from_dict({"code": 12, "message": "twelve", "data": [None]})
    assert type(error) is RPCError
    assert (error.code, error.message, error.data) == (12, "twelve", [None])
    assert RPCError.from_dict({"code": 12, "message": "m"}).data is None


def test_from_dict_keeps_an_empty_message() -> None:
    """What came over the wire is what the caller sees, even for known codes."""
    assert RPCError.from_dict({"code": 5, "message": ""}).message == ""
    assert RPCError.from_dict({"code": -32601, "message": ""}).message == ""


def test_rpc_error_round_trips_through_json() -> None:
    for cls, _, _ in DESIGN_TABLE:
        error = cls(data={"n": 2**70})
        assert RPCError.from_dict(loads(dumps(error.to_dict()))) == error


def test_rpc_error_equality() -> None:
    assert RPCError(1, "m", [1]) == RPCError(1, "m", [1])
    assert RPCError(1, "m", [1]) != RPCError(1, "m", [2])
    assert RPCError(1, "m") != RPCError(2, "m")
    assert RPCError(1, "m") != RPCError(1, "n")
    assert MethodNotFound() == RPCError(-32601, "Method not found")
    assert MethodNotFound() != InvalidParams()
    assert RPCError(1, "m") != (1, "m", None)
    assert hash(RPCError(1, "m", [1])) == hash(RPCError(1, "m", [2]))  # unhashable data is fine
    assert {MethodNotFound(): 1}[RPCError(-32601, "Method not found")] == 1


def test_rpc_error_str_and_repr() -> None:
    assert str(RPCError(-32601, "Method not found")) == "Method not found (-32601)"
    assert str(MethodNotFound(data="frob")) == "Method not found (-32601): 'frob'"
    assert str(RPCError(1, "m", 0)) == "m (1): 0"
    assert repr(InvalidParams(data=[1])) == "InvalidParams(-32602, 'Invalid params', [1])"
    assert repr(RPCError(1, "m")) == "RPCError(1, 'm', None)"


def test_rpc_error_can_be_raised_and_caught() -> None:
    with pytest.raises(RPCError) as info:
        raise MessageTooLarge(data={"max_line_length": 10})
    assert info.value.code == -32002
    assert info.value.data == {"max_line_length": 10}
    assert info.value.args == (-32002, "Message too large", {"max_line_length": 10})


# --- the JSON-RPC 2.0 specification's examples (section 7) -------------------------------


def decode(example: SpecExample) -> Any:
    """What the codec makes of an example's request line."""
    assert example.request.endswith(b"\n")
    assert example.request.count(b"\n") == 1
    return loads(example.request.rstrip(b"\n"))


def test_spec_examples_are_all_here() -> None:
    names = [example.name for example in EXAMPLES]
    assert len(names) == len(set(names))
    assert len(EXAMPLES) == 15
    for example in EXAMPLES:
        if example.response is not NO_RESPONSE:
            assert loads(dumps(example.response)) == example.response


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("positional_1", Request("subtract", [42, 23], 1)),
        ("positional_2", Request("subtract", [23, 42], 2)),
        ("named_1", Request("subtract", {"subtrahend": 23, "minuend": 42}, 3)),
        ("named_2", Request("subtract", {"minuend": 42, "subtrahend": 23}, 4)),
        ("notification_update", Request("update", [1, 2, 3, 4, 5], NO_ID)),
        ("notification_foobar", Request("foobar", None, NO_ID)),
        ("method_not_found", Request("foobar", None, "1")),
    ],
)
def test_spec_example_requests(name: str, expected: Request) -> None:
    example = by_name(name)
    message = classify(decode(example))
    assert message == expected
    assert isinstance(message, Request)
    assert message.is_notification is (example.response is NO_RESPONSE)
    if example.response is not NO_RESPONSE:
        assert example.response["id"] == message.id


@pytest.mark.parametrize("name", ["invalid_json", "batch_invalid_json"])
def test_spec_example_invalid_json(name: str) -> None:
    example = by_name(name)
    with pytest.raises(ParseError) as info:
        decode(example)
    assert without_error_data(error_reply(None, info.value)) == example.response


@pytest.mark.parametrize("name", ["invalid_request", "empty_array"])
def test_spec_example_single_invalid(name: str) -> None:
    example = by_name(name)
    message = classify(decode(example))
    assert type(message) is Invalid
    assert without_error_data(message.reply()) == example.response


@pytest.mark.parametrize(("name", "size"), [("invalid_batch_not_empty", 1), ("invalid_batch", 3)])
def test_spec_example_invalid_batches(name: str, size: int) -> None:
    example = by_name(name)
    message = classify(decode(example))
    assert type(message) is Batch
    assert len(message.items) == size
    assert all(type(item) is Invalid and item.id is None for item in message.items)
    replies = [item.reply() for item in message.items if isinstance(item, Invalid)]
    assert without_error_data(replies) == example.response


def test_spec_example_mixed_batch() -> None:
    example = by_name("batch")
    message = classify(decode(example))
    assert type(message) is Batch
    assert len(message.items) == 6
    assert message.items[0] == Request("sum", [1, 2, 4], "1")
    assert message.items[1] == Request("notify_hello", [7], NO_ID)
    assert message.items[2] == Request("subtract", [42, 23], "2")
    invalid = message.items[3]
    assert type(invalid) is Invalid
    assert invalid.id is None
    assert message.items[4] == Request("foo.get", {"name": "myself"}, "5")
    assert message.items[5] == Request("get_data", None, "9")
    # The spec's response holds one reply per item but the notification, in order.
    answered = [item for item in message.items if not (isinstance(item, Request) and item.is_notification)]
    assert [getattr(item, "id", None) for item in answered] == [r["id"] for r in example.response]
    assert without_error_data(invalid.reply()) == example.response[2]


def test_spec_example_all_notification_batch() -> None:
    example = by_name("batch_all_notifications")
    message = classify(decode(example))
    assert message == Batch([Request("notify_sum", [1, 2, 4], NO_ID), Request("notify_hello", [7], NO_ID)])
    assert isinstance(message, Batch)
    replies = BatchReplies(len(message.items))
    for index, _ in enumerate(message.items):
        replies.add(index, None)
    assert replies.done
    assert replies.replies() == []
    assert example.response is NO_RESPONSE


def test_without_error_data() -> None:
    reply = error_reply(1, MethodNotFound(data="x"))
    assert without_error_data(reply) == {
        "jsonrpc": "2.0",
        "error": {"code": -32601, "message": "Method not found"},
        "id": 1,
    }
    assert "data" in reply["error"]  # the original is not changed
    assert without_error_data([reply, result_reply(2, 3)])[1] == result_reply(2, 3)

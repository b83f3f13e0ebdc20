"""
The examples of the JSON-RPC 2.0 specification, as data.

Source: JSON-RPC 2.0 Specification, section 7 "Examples"
(https://www.jsonrpc.org/specification#examples).  Each example is one
request line as it goes on the wire (the spec's multi-line batches are
written on one line here, since the framing is one JSON text per line) and
the response the spec shows, as a decoded JSON value, or L{NO_RESPONSE} where
the spec says nothing is returned.

The spec's responses carry no C{error.data}; jsonservice may add one (it says
what was wrong), so compare with L{without_error_data}.  The spec allows a
batch response in any order; jsonservice answers in item order, which is the
order shown here.

The examples assume a server with the methods in L{EXAMPLE_METHODS}: the
spec only shows their results, these are the obvious implementations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "EXAMPLES",
    "EXAMPLE_METHODS",
    "NO_RESPONSE",
    "SpecExample",
    "by_name",
    "without_error_data",
]


class _NoResponse:
    def __repr__(self) -> str:
        return "NO_RESPONSE"


#: The server sends nothing back (notifications, all-notification batches).
NO_RESPONSE: Any = _NoResponse()


@dataclass(frozen=True)
class SpecExample:
    """
    One exchange of the spec's examples.

    @ivar name: a short identifier, usable as a pytest id.
    @ivar title: the spec's heading for it (section 7).
    @ivar request: the bytes the client sends: one line ending in C{\\n}.
    @ivar response: the spec's response as a JSON value, or L{NO_RESPONSE}.
    """

    name: str
    title: str
    request: bytes
    response: Any


def _error(code: int, message: str, id: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": id}


_PARSE_ERROR = _error(-32700, "Parse error", None)
_INVALID_REQUEST = _error(-32600, "Invalid Request", None)

EXAMPLES: tuple[SpecExample, ...] = (
    # 7: "rpc call with positional parameters"
    SpecExample(
        "positional_1",
        "rpc call with positional parameters",
        b'{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}\n',
        {"jsonrpc": "2.0", "result": 19, "id": 1},
    ),
    SpecExample(
        "positional_2",
        "rpc call with positional parameters",
        b'{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}\n',
        {"jsonrpc": "2.0", "result": -19, "id": 2},
    ),
    # 7: "rpc call with named parameters"
    SpecExample(
        "named_1",
        "rpc call with named parameters",
        b'{"jsonrpc": "2.0", "method": "subtract", "params": {"subtrahend": 23, "minuend": 42}, "id": 3}\n',
        {"jsonrpc": "2.0", "result": 19, "id": 3},
    ),
    SpecExample(
        "named_2",
        "rpc call with named parameters",
        b'{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 42, "subtrahend": 23}, "id": 4}\n',
        {"jsonrpc": "2.0", "result": 19, "id": 4},
    ),
    # 7: "a Notification"
    SpecExample(
        "notification_update",
        "a Notification",
        b'{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}\n',
        NO_RESPONSE,
    ),
    SpecExample(
        "notification_foobar",
        "a Notification",
        b'{"jsonrpc": "2.0", "method": "foobar"}\n',
        NO_RESPONSE,
    ),
    # 7: "rpc call of non-existent method"
    SpecExample(
        "method_not_found",
        "rpc call of non-existent method",
        b'{"jsonrpc": "2.0", "method": "foobar", "id": "1"}\n',
        _error(-32601, "Method not found", "1"),
    ),
    # 7: "rpc call with invalid JSON"
    SpecExample(
        "invalid_json",
        "rpc call with invalid JSON",
        b'{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]\n',
        _PARSE_ERROR,
    ),
    # 7: "rpc call with invalid Request object"
    SpecExample(
        "invalid_request",
        "rpc call with invalid Request object",
        b'{"jsonrpc": "2.0", "method": 1, "params": "bar"}\n',
        _INVALID_REQUEST,
    ),
    # 7: "rpc call Batch, invalid JSON"
    SpecExample(
        "batch_invalid_json",
        "rpc call Batch, invalid JSON",
        b'[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},{"jsonrpc": "2.0", "method"]\n',
        _PARSE_ERROR,
    ),
    # 7: "rpc call with an empty Array"
    SpecExample("empty_array", "rpc call with an empty Array", b"[]\n", _INVALID_REQUEST),
    # 7: "rpc call with an invalid Batch (but not empty)"
    SpecExample(
        "invalid_batch_not_empty",
        "rpc call with an invalid Batch (but not empty)",
        b"[1]\n",
        [_INVALID_REQUEST],
    ),
    # 7: "rpc call with invalid Batch"
    SpecExample(
        "invalid_batch",
        "rpc call with invalid Batch",
        b"[1,2,3]\n",
        [_INVALID_REQUEST, _INVALID_REQUEST, _INVALID_REQUEST],
    ),
    # 7: "rpc call Batch"
    SpecExample(
        "batch",
        "rpc call Batch",
        b"["
        b'{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},'
        b'{"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},'
        b'{"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},'
        b'{"foo": "boo"},'
        b'{"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},'
        b'{"jsonrpc": "2.0", "method": "get_data", "id": "9"}'
        b"]\n",
        [
            {"jsonrpc": "2.0", "result": 7, "id": "1"},
            {"jsonrpc": "2.0", "result": 19, "id": "2"},
            _INVALID_REQUEST,
            _error(-32601, "Method not found", "5"),
            {"jsonrpc": "2.0", "result": ["hello", 5], "id": "9"},
        ],
    ),
    # 7: "rpc call Batch (all notifications)"
    SpecExample(
        "batch_all_notifications",
        "rpc call Batch (all notifications)",
        b"["
        b'{"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},'
        b'{"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}'
        b"]\n",
        NO_RESPONSE,
    ),
)


def by_name(name: str) -> SpecExample:
    """The example called C{name}."""
    for example in EXAMPLES:
        if example.name == name:
            return example
    raise KeyError(name)


def without_error_data(response: Any) -> Any:
    """
    A copy of a response (or a batch of them) with C{error.data} removed,
    to compare with the spec's responses, which have none.
    """
    if isinstance(response, list):
        return [without_error_data(item) for item in response]
    if isinstance(response, dict) and isinstance(response.get("error"), dict):
        error = {k: v for k, v in response["error"].items() if k != "data"}
        return {**response, "error": error}
    return response


# The methods the examples call.  "foobar" and "foo.get" do not exist.


def _subtract(minuend: int, subtrahend: int) -> int:
    return minuend - subtrahend


def _sum(*numbers: int) -> int:
    return sum(numbers)


def _ignore(*args: Any) -> None:
    return None


def _get_data() -> list[Any]:
    return ["hello", 5]


EXAMPLE_METHODS: dict[str, Any] = {
    "subtract": _subtract,
    "sum": _sum,
    "update": _ignore,
    "notify_hello": _ignore,
    "notify_sum": _ignore,
    "get_data": _get_data,
}

"""
JSON-RPC 2.0 messages: classify, validate, build replies.  Sans-IO.

L{classify} takes one decoded JSON value and says what it is: a
L{Request} (a notification when it has no id), a L{Response} to a call this
side made, a L{Batch} of those, an L{Invalid} message that must be answered
with an error, or a L{Plain} message (any JSON value that is not JSON-RPC).
The builders (L{result_reply}, L{error_reply}, L{request}, ...) make the
dicts that go back on the wire.  No I/O, no Twisted.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec

from .codec import dumps, dumps_line, dumps_member, shape_decoder
from .errors import BatchTooLarge, InvalidRequest, RPCError

__all__ = [
    "NO_ID",
    "Batch",
    "BatchReplies",
    "Id",
    "Invalid",
    "Message",
    "Plain",
    "Request",
    "Response",
    "classify",
    "decode_request",
    "decode_success",
    "error_reply",
    "notification",
    "request",
    "request_line",
    "request_parts",
    "response_parts",
    "result_reply",
]

#: A JSON-RPC id: a string, a number, or null.
Id = str | int | float | None

VERSION: Final = "2.0"


class _NoId:
    """The type of L{NO_ID}."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_ID"

    def __bool__(self) -> bool:
        return False


#: The id of a notification: the request had no C{id} member at all.
NO_ID: Final = _NoId()


class Request:
    """
    A request or, when C{id is NO_ID}, a notification.

    @ivar method: the method name.
    @ivar params: a list (positional), a dict (named) or L{None} (absent).
    @ivar id: the request id, or L{NO_ID} for a notification.
    """

    __slots__ = ("id", "method", "params")

    def __init__(self, method: str, params: list[Any] | dict[str, Any] | None, id: Id | _NoId) -> None:
        self.method = method
        self.params = params
        self.id = id

    @property
    def is_notification(self) -> bool:
        """Whether no reply may be sent for this request."""
        return self.id is NO_ID

    def __repr__(self) -> str:
        return f"Request({self.method!r}, {self.params!r}, {self.id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Request) and (self.method, self.params, self.id) == (
            other.method,
            other.params,
            other.id,
        )

    __hash__ = None  # type: ignore[assignment]


class Response:
    """
    A response to a call this side made: C{error} is L{None} on success.
    """

    __slots__ = ("error", "id", "result")

    def __init__(self, id: Id, result: Any = None, error: RPCError | None = None) -> None:
        self.id = id
        self.result = result
        self.error = error

    def __repr__(self) -> str:
        return f"Response({self.id!r}, {self.result!r}, {self.error!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Response) and (self.id, self.result, self.error) == (
            other.id,
            other.result,
            other.error,
        )

    __hash__ = None  # type: ignore[assignment]


class Invalid:
    """
    A message that is JSON-RPC in shape but not valid: answer C{error}
    with C{id} (L{None} unless the message carried a usable id).
    """

    __slots__ = ("error", "id")

    def __init__(self, error: RPCError, id: Id = None) -> None:
        self.error = error
        self.id = id

    def reply(self) -> dict[str, Any]:
        """The error response to send."""
        return error_reply(self.id, self.error)

    def __repr__(self) -> str:
        return f"Invalid({self.error!r}, {self.id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Invalid) and (self.error, self.id) == (other.error, other.id)

    __hash__ = None  # type: ignore[assignment]


class Plain:
    """A plain (non-JSON-RPC) message: any JSON value but an array or an
    object with a C{jsonrpc} member."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"Plain({self.value!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Plain) and self.value == other.value

    __hash__ = None  # type: ignore[assignment]


Item = Request | Response | Invalid


class Batch:
    """
    A batch: its items, each a L{Request}, L{Response} or L{Invalid}.
    """

    __slots__ = ("items",)

    def __init__(self, items: list[Item]) -> None:
        self.items = items

    def __repr__(self) -> str:
        return f"Batch({self.items!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Batch) and self.items == other.items

    __hash__ = None  # type: ignore[assignment]


Message = Request | Response | Invalid | Plain | Batch


#: The types a JSON-RPC id may have (C{bool} is not among them).
_ID_TYPES: Final = frozenset({str, int, float, type(None)})
_ABSENT: Final = object()


def _valid_id(value: Any) -> bool:
    return value.__class__ in _ID_TYPES


def request_parts(obj: dict[str, Any]) -> tuple[str, list[Any] | dict[str, Any] | None, Any] | None:
    """
    The C{(method, params, id)} of a valid JSON-RPC 2.0 request object, or
    L{None} when C{obj} is anything else (then L{classify} says what).

    The one test of request validity: L{classify} and the connection core
    both use it, so it is written for speed.  C{params} is L{None} when
    absent; C{id} is L{NO_ID} for a notification.
    """
    if obj.get("jsonrpc") != VERSION:
        return None
    method = obj.get("method")
    if method.__class__ is not str:
        return None
    params = obj.get("params", _ABSENT)
    if params is _ABSENT:
        params = None
    elif params.__class__ is not list and params.__class__ is not dict:
        return None
    id_ = obj.get("id", NO_ID)
    if id_ is not NO_ID and id_.__class__ not in _ID_TYPES:
        return None
    return method, params, id_


def response_parts(obj: dict[str, Any]) -> tuple[Any, Any] | None:
    """
    The C{(id, result)} of a valid JSON-RPC 2.0 success response, or
    L{None} when C{obj} is anything else (then L{classify} says what).
    The one test of success-response validity, like L{request_parts}.
    """
    if obj.get("jsonrpc") != VERSION or "method" in obj or "error" in obj or "result" not in obj:
        return None
    id_ = obj.get("id", _ABSENT)
    if id_.__class__ not in _ID_TYPES:
        return None
    return id_, obj["result"]


class RequestShape(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """
    A valid request, as L{decode_request} gives it: the same test as
    L{request_parts}, done by msgspec while it parses.  C{params} is
    L{None} when absent, but present and null is invalid.  A request with
    other members is valid too, but not this shape: msgspec skips unknown
    members without checking their bytes (UTF-8, number range), so such
    a request takes the general path.  Not tracked by the garbage
    collector (C{gc=False}: a third cheaper to decode): a decoded value
    cannot refer back to the shape holding it, so there is no cycle.
    """

    jsonrpc: Literal["2.0"]
    method: str
    params: list[Any] | dict[str, Any] = None  # type: ignore[assignment]
    id: str | int | float | None = NO_ID  # type: ignore[assignment]


class SuccessShape(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """
    A success response, as L{decode_success} gives it: L{response_parts}'s
    test, except that C{method} and C{error} must be checked absent by the
    caller (their fields hold L{NO_ID} when they are).
    """

    jsonrpc: Literal["2.0"]
    result: Any
    id: str | int | float | None
    method: Any = NO_ID
    error: Any = NO_ID


#: C{decode_request(line, max_depth, check_exact)}: the L{RequestShape}
#: a line is, or L{None}, meaning "decode it with L{loads
#: <jsonservice.codec.loads>} and classify it".
decode_request: Final = shape_decoder(RequestShape)

#: Like L{decode_request}, for L{SuccessShape}.
decode_success: Final = shape_decoder(SuccessShape)


def _invalid(why: str, obj: dict[str, Any]) -> Invalid:
    id_ = obj.get("id")
    return Invalid(InvalidRequest(data=why), id_ if _valid_id(id_) else None)


def _classify_object(obj: dict[str, Any]) -> Item:
    if obj["jsonrpc"] != VERSION:
        return _invalid(f"jsonrpc must be {VERSION!r}, got {obj['jsonrpc']!r}", obj)
    if "method" in obj:
        parts = request_parts(obj)
        if parts is not None:
            return Request(*parts)
        method = obj["method"]
        if type(method) is not str:
            return _invalid("method must be a string", obj)
        params = obj.get("params")
        if params is not None and type(params) is not list and type(params) is not dict:
            return _invalid("params must be an array or an object", obj)
        if "params" in obj and params is None:
            return _invalid("params must be an array or an object", obj)
        return Invalid(InvalidRequest(data="id must be a string, a number or null"))
    success = response_parts(obj)
    if success is not None:
        return Response(*success)
    has_result = "result" in obj
    if has_result or "error" in obj:
        if "id" not in obj or not _valid_id(obj["id"]):
            return Invalid(InvalidRequest(data="a response needs an id that is a string, a number or null"))
        if has_result:
            if "error" in obj:
                return _invalid("a response has either result or error, not both", obj)
            return Response(obj["id"], obj["result"])
        error = obj["error"]
        if (
            type(error) is not dict
            or type(error.get("code")) is not int
            or type(error.get("message")) is not str
        ):
            return _invalid("error must be an object with an integer code and a string message", obj)
        return Response(obj["id"], error=RPCError.from_dict(error))
    return _invalid("neither a request (method) nor a response (result or error)", obj)


def classify(value: Any, max_batch: int = 1000) -> Message:
    """
    Say what a decoded JSON value is.

    @param value: one decoded line.
    @param max_batch: most items a batch may have; a larger one is
        L{Invalid} with L{BatchTooLarge}.
    """
    kind = type(value)
    if kind is dict:
        if "jsonrpc" in value:
            return _classify_object(value)
        return Plain(value)
    if kind is list:
        if not value:
            return Invalid(InvalidRequest(data="empty batch"))
        if len(value) > max_batch:
            return Invalid(BatchTooLarge(data={"max_batch": max_batch, "items": len(value)}))
        items: list[Item] = []
        for item in value:
            if type(item) is dict and "jsonrpc" in item:
                items.append(_classify_object(item))
            else:
                items.append(Invalid(InvalidRequest(data="a batch item must be a JSON-RPC object")))
        return Batch(items)
    return Plain(value)


def result_reply(id: Id, result: Any) -> dict[str, Any]:
    """The success response for request C{id}."""
    return {"jsonrpc": VERSION, "result": result, "id": id}


def error_reply(id: Id, error: RPCError) -> dict[str, Any]:
    """The error response for request C{id} (L{None} when unknown)."""
    return {"jsonrpc": VERSION, "error": error.to_dict(), "id": id}


def request(method: str, params: list[Any] | dict[str, Any] | None, id: Id) -> dict[str, Any]:
    """A request object; C{params} of L{None} leaves the member out."""
    if params is None:
        return {"jsonrpc": VERSION, "method": method, "id": id}
    return {"jsonrpc": VERSION, "method": method, "params": params, "id": id}


# The start of each method's request line, up to the comma after the
# method, for request_line: kept for this many methods at most (the first
# ones called), so a caller naming endless methods does not grow it for ever.
_PREFIXES: dict[str, bytes] = {}
_MOST_PREFIXES: Final = 1000


def request_line(method: str, params: list[Any] | tuple[Any, ...] | dict[str, Any] | None, id: int) -> bytes:
    """
    The line of a request, C{dumps_line(request(method, params, id))} (a
    tuple of params is an array), built faster: the line's start is kept
    per method and only the params and the id are encoded.  Params that
    need more than orjson writes as they are (see L{dumps_member
    <jsonservice.codec.dumps_member>}) take the general path.

    @raise EncodeError: as L{dumps_line <jsonservice.codec.dumps_line>}.
    """
    # (Only strings are kept: a list is no key, and 1, 1.0 and True are one.)
    prefix = _PREFIXES.get(method) if method.__class__ is str else None
    if prefix is None or id.__class__ is not int:
        return _request_line(method, params, id)
    if params is None:
        return b'%s"id":%d}\n' % (prefix, id)
    data = dumps_member(params)
    if data is None:
        return _request_line(method, params, id)
    return b'%s"params":%s,"id":%d}\n' % (prefix, data, id)


def _request_line(method: str, params: list[Any] | tuple[Any, ...] | dict[str, Any] | None, id: Id) -> bytes:
    """L{request_line}'s general path, which also keeps the start of the line of a new method."""
    line = dumps_line(request(method, list(params) if params.__class__ is tuple else params, id))  # type: ignore[arg-type]
    if method.__class__ is str and method not in _PREFIXES and len(_PREFIXES) < _MOST_PREFIXES:
        # The method encoded in the line just written, so it encodes here.
        _PREFIXES[method] = b'{"jsonrpc":"2.0","method":%s,' % dumps(method)
    return line


def notification(method: str, params: list[Any] | dict[str, Any] | None) -> dict[str, Any]:
    """A notification object (a request with no id)."""
    if params is None:
        return {"jsonrpc": VERSION, "method": method}
    return {"jsonrpc": VERSION, "method": method, "params": params}


def make_params(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any] | dict[str, Any] | None:
    """
    Params for a call from Python arguments: positional or named, not
    both (JSON-RPC 2.0 has no mixed form).

    @raise TypeError: both were given.
    """
    if args and kwargs:
        raise TypeError("JSON-RPC params are positional or named, not both")
    if kwargs:
        return kwargs
    if args:
        return list(args)
    return None


class BatchReplies:
    """
    Collects the replies of one batch, in item order, until all are in.

    Items that need no reply (notifications) count as done at once.
    """

    __slots__ = ("_replies", "_waiting")

    def __init__(self, size: int) -> None:
        self._replies: list[dict[str, Any] | None] = [None] * size
        self._waiting = size

    @property
    def done(self) -> bool:
        """Whether every item has its reply (or needs none)."""
        return self._waiting == 0

    def add(self, index: int, reply: dict[str, Any] | None) -> bool:
        """
        Record item C{index}'s reply (L{None}: it needs none).

        @return: whether the batch is now complete.
        """
        self._replies[index] = reply
        self._waiting -= 1
        return self._waiting == 0

    def replies(self) -> list[dict[str, Any]]:
        """The replies to send, in item order; empty means send nothing."""
        return [reply for reply in self._replies if reply is not None]

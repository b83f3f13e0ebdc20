"""
Errors that travel on the wire.

Every JSON-RPC error code jsonservice uses is defined here, once, as a
subclass of L{RPCError} whose C{code} is a class attribute.  A handler may
raise any of them (or a plain C{RPCError} with its own code); it goes out
exactly as given, C{data} included.

This module imports nothing from Twisted: the sans-IO layers use it too.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

__all__ = [
    "OUTCOMES",
    "BatchTooLarge",
    "InternalError",
    "InvalidParams",
    "InvalidRequest",
    "MessageTooLarge",
    "MethodNotFound",
    "ParseError",
    "RPCError",
    "RequestCancelled",
    "RequestTimeout",
    "ServerBusy",
    "Unauthorized",
    "outcome_of",
]


class RPCError(Exception):
    """
    A JSON-RPC 2.0 error object as a Python exception.

    Raise it from a handler to answer with exactly this error.  On the
    calling side a failed C{call()} fails with an instance of it (or of the
    subclass matching its code).

    @ivar code: the integer error code.
    @ivar message: a short description, sent as C{error.message}.
    @ivar data: any JSON value sent as C{error.data}; L{None} omits it.
    """

    code: int
    message: str
    data: Any

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(code, message, data)
        self.code = code
        self.message = message
        self.data = data

    def __str__(self) -> str:
        text = f"{self.message} ({self.code})"
        if self.data is not None:
            text += f": {self.data!r}"
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r}, {self.data!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RPCError):
            return NotImplemented
        return (self.code, self.message, self.data) == (other.code, other.message, other.data)

    def __hash__(self) -> int:
        return hash((self.code, self.message))

    def to_dict(self) -> dict[str, Any]:
        """
        Return the JSON-RPC error object (C{code}, C{message}, maybe C{data}).
        """
        obj: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            obj["data"] = self.data
        return obj

    @staticmethod
    def from_dict(obj: dict[str, Any]) -> RPCError:
        """
        Build the error an error object describes, as the most specific
        subclass its code names (a plain L{RPCError} for other codes).
        """
        code = obj["code"]
        message = obj["message"]
        data = obj.get("data")
        cls = _BY_CODE.get(code)
        if cls is None:
            return RPCError(code, message, data)
        return cls(message, data)


class _CodedError(RPCError):
    """
    Base of the errors with a fixed code: C{Subclass(message=None, data=None)}.
    """

    default_message: ClassVar[str]

    def __init__(self, message: str | None = None, data: Any = None) -> None:
        super().__init__(type(self).code, self.default_message if message is None else message, data)


class ParseError(_CodedError):
    """Not JSON, not UTF-8, a non-finite number, or nested too deeply."""

    code = -32700
    default_message = "Parse error"


class InvalidRequest(_CodedError):
    """Valid JSON that is not a valid request (or a plain message nobody handles)."""

    code = -32600
    default_message = "Invalid Request"


class MethodNotFound(_CodedError):
    """The method does not exist."""

    code = -32601
    default_message = "Method not found"


class InvalidParams(_CodedError):
    """The params do not bind to the handler's signature."""

    code = -32602
    default_message = "Invalid params"


class InternalError(_CodedError):
    """The handler failed; C{data} carries the id under which it was logged."""

    code = -32603
    default_message = "Internal error"


class RequestTimeout(_CodedError):
    """The handler did not finish within the request timeout."""

    code = -32000
    default_message = "Request timed out"


class ServerBusy(_CodedError):
    """A connection or server limit was reached."""

    code = -32001
    default_message = "Server busy"


class MessageTooLarge(_CodedError):
    """A line was longer than the line-length limit (named in C{data})."""

    code = -32002
    default_message = "Message too large"


class BatchTooLarge(_CodedError):
    """A batch had more items than the batch limit (named in C{data})."""

    code = -32003
    default_message = "Batch too large"


class Unauthorized(_CodedError):
    """The connection has not authenticated (or gave a wrong token)."""

    code = -32004
    default_message = "Unauthorized"


class RequestCancelled(_CodedError):
    """The caller cancelled the request, or the server is shutting down."""

    code = -32800
    default_message = "Request cancelled"


_BY_CODE: dict[int, type[_CodedError]] = {
    cls.code: cls
    for cls in (
        ParseError,
        InvalidRequest,
        MethodNotFound,
        InvalidParams,
        InternalError,
        RequestTimeout,
        ServerBusy,
        MessageTooLarge,
        BatchTooLarge,
        Unauthorized,
        RequestCancelled,
    )
}


#: The outcome label of each error code (for metrics and request logs).
OUTCOMES: Final[dict[int, str]] = {
    -32700: "parse_error",
    -32600: "invalid_request",
    -32601: "method_not_found",
    -32602: "invalid_params",
    -32603: "internal_error",
    -32000: "timeout",
    -32001: "busy",
    -32002: "too_large",
    -32003: "batch_too_large",
    -32004: "unauthorized",
    -32800: "cancelled",
}


def outcome_of(error: BaseException) -> str:
    """The outcome label of an error (L{OUTCOMES}; C{"error"} for other codes)."""
    code = getattr(error, "code", None)
    return OUTCOMES.get(code, "error") if isinstance(code, int) else "error"

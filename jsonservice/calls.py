"""
The calling side of a connection: L{Caller}, the C{call}, C{request},
C{notify}, C{send} and C{write_message} methods of
L{JSONProtocol<jsonservice.protocol.JSONProtocol>}, and the L{Waiter} of
each call and plain message, with its Deferred, timeout and cancellation.

The connection core keeps the table of waiters (matched to responses by
id, and to plain replies in order) and resolves or rejects them.
"""

from __future__ import annotations

import typing
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, TimeoutError, fail
from twisted.internet.error import ConnectionLost
from twisted.logger import Logger

from .codec import EncodeError, dumps_line
from .connection import CANCEL_METHOD
from .jsonrpc import Id, make_params, notification, request_line
from .typed import conversion_for

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

    from .connection import Connection

__all__ = ["CANCEL_METHOD", "CallTimeout", "Caller", "ConnectionClosed", "Waiter"]

_log = Logger(namespace="jsonservice.protocol")


class ConnectionClosed(ConnectionLost):
    """
    The connection closed before the reply came: every pending call and
    plain message fails with this.
    """

    def __str__(self) -> str:
        return " ".join(str(arg) for arg in self.args) or "the connection closed before the reply"


class CallTimeout(TimeoutError):
    """A call made with a timeout got no reply in time (the peer was told
    to cancel it)."""


class Waiter:
    """
    One call (C{method} set) or plain message (C{method} L{None}) waiting
    for its reply: the connection core resolves or rejects it.

    @ivar deferred: fires with the reply; cancelling a call's tells the peer.
    @ivar timer: its timeout, if any.
    """

    __slots__ = ("deferred", "id", "method", "owner", "timer")

    def __init__(self, owner: Any, method: str | None, id_: Id) -> None:
        self.owner = owner
        self.method = method
        self.id = id_
        # A call's waiter is its Deferred's canceller (L{__call__}): no bound
        # method is made per call.  A plain message cannot be cancelled at
        # the peer: no canceller.
        self.deferred: Deferred[Any] = Deferred(self if method is not None else None)
        self.timer: IDelayedCall | None = None

    def start_timer(self, clock: IReactorTime, seconds: float) -> None:
        """Time the wait out after C{seconds} (0: wait for ever)."""
        if seconds:
            self.timer = clock.callLater(seconds, self._timed_out, seconds)

    def resolve(self, value: Any) -> None:
        """The reply came."""
        if self.timer is not None:
            self.stop_timer()
        deferred = self.deferred
        if not deferred.called:
            deferred.callback(value)

    def reject(self, error: BaseException) -> None:
        """The peer answered with an error (or the connection is gone)."""
        if self.timer is not None:
            self.stop_timer()
        deferred = self.deferred
        if not deferred.called:
            deferred.errback(error)

    def _forget(self) -> bool:
        calls = self.owner._core.calls
        if calls.get(self.id) is self:
            del calls[self.id]
            return True
        return False

    def __call__(self, deferred: Deferred[Any]) -> None:
        """The Deferred was cancelled: forget the call and tell the peer."""
        if self._forget():
            self.stop_timer()
            self.owner._cancel_at_peer(self.id)

    def _timed_out(self, seconds: float) -> None:
        self.timer = None
        if self.method is None:
            # A plain message: its place in the reply order stays, but
            # whatever arrives for it is dropped.
            self.reject(CallTimeout(f"no reply to a plain message within {seconds}s"))
        elif self._forget():
            self.owner._cancel_at_peer(self.id)
            self.reject(CallTimeout(f"no reply to {self.method!r} within {seconds}s"))

    def stop_timer(self) -> None:
        """Cancel the timeout (the reply came, or the wait ended)."""
        timer = self.timer
        if timer is not None and timer.active():
            timer.cancel()
        self.timer = None


class _Connection(typing.Protocol):
    """What the L{Caller} methods use of the protocol they are mixed into."""

    _core: Connection
    _closed: bool
    call_timeout: float
    transport: Any
    _log: Logger

    @property
    def clock(self) -> IReactorTime: ...

    def _cancel_at_peer(self, id_: Id) -> None: ...

    def request(
        self,
        method: str,
        params: list[Any] | dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        result_type: Any = None,
    ) -> Deferred[Any]: ...

    def notify_params(self, method: str, params: list[Any] | dict[str, Any] | None = None) -> None: ...


def _plain_line(message: Any) -> bytes:
    if isinstance(message, list) or (isinstance(message, dict) and "jsonrpc" in message):
        raise ValueError("a plain message is not an array nor an object with 'jsonrpc'; use call()")
    return dumps_line(message)


class Caller:
    """
    The calling side of a L{JSONProtocol<jsonservice.protocol.JSONProtocol>}:
    calls, notifications and plain messages to the peer.  A mixin: the
    protocol provides the connection, and its core the table of waiters.
    """

    def call(
        self: _Connection,
        method: str,
        *args: Any,
        timeout: float | None = None,
        result_type: Any = None,
        **kwargs: Any,
    ) -> Deferred[Any]:
        """
        Call the peer's method C{method} with positional C{args} or named
        C{kwargs} (not both).  Arguments of the rich types typed handlers
        take (dataclasses, msgspec C{Struct}s, pydantic models, enums,
        C{datetime}, C{UUID}, C{Decimal}...) are sent in their JSON forms.

        @param timeout: seconds to wait for the reply (default:
            C{call_timeout}; 0: forever).  On expiry the peer is told to
            cancel and the Deferred fails with L{CallTimeout}.
        @param result_type: convert the result to this type, as a typed
            handler's params are (C{User}, C{list[int]}, C{datetime}...);
            a result that does not convert fails the Deferred with
            L{ConversionError<jsonservice.typed.ConversionError>}, which
            names the path of the first wrong value.  L{None}: the result
            as decoded.
        @return: a Deferred firing with the result, or failing with the
            L{RPCError} the peer answered, L{ConnectionClosed}, or
            L{CallTimeout}.  Cancelling it tells the peer to cancel too.
        """
        if kwargs:
            if args:
                try:
                    make_params(args, kwargs)
                except TypeError:
                    return fail()
            params: tuple[Any, ...] | dict[str, Any] | None = kwargs
        else:
            params = args or None  # request_line writes the tuple as an array
        return Caller._start(self, method, params, timeout, result_type)

    def request(
        self: _Connection,
        method: str,
        params: list[Any] | dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        result_type: Any = None,
    ) -> Deferred[Any]:
        """
        Like L{call}, with the params given as one list or dict (for a
        named param called C{timeout} or C{result_type}, say).
        """
        return Caller._start(self, method, params, timeout, result_type)

    def _start(
        self: _Connection,
        method: str,
        params: list[Any] | tuple[Any, ...] | dict[str, Any] | None,
        timeout: float | None,
        result_type: Any,
    ) -> Deferred[Any]:
        """Send a call and return its Deferred: L{call} and L{request} both come here."""
        if self._closed or self.transport is None:
            return fail(ConnectionClosed(f"not connected: cannot call {method!r}"))
        if result_type is not None:
            try:
                conversion = conversion_for(result_type)
            except TypeError:
                return fail()
        core = self._core
        id_ = core.next_id()
        try:
            data = request_line(method, params, id_)
        except EncodeError:
            return fail()
        waiter = Waiter(self, method, id_)
        core.calls[id_] = waiter
        if timeout is None:
            timeout = self.call_timeout
        if timeout:
            waiter.start_timer(self.clock, timeout)
        core.write(data)
        if result_type is None:
            return waiter.deferred
        return waiter.deferred.addCallback(conversion.convert_result, method)

    def notify(self: _Connection, method: str, *args: Any, **kwargs: Any) -> None:
        """
        Send the peer a notification: no reply, no way to know it arrived.
        Dropped (and logged) when the connection is closed.
        """
        self.notify_params(method, make_params(args, kwargs))

    def notify_params(
        self: _Connection, method: str, params: list[Any] | dict[str, Any] | None = None
    ) -> None:
        """Like L{notify}, with the params given as one list or dict."""
        if self._closed or self.transport is None:
            self._log.info("Not connected: dropped notification {method!r}", method=method)
            return
        self._core.write(dumps_line(notification(method, params)))

    def send(self: _Connection, message: Any, *, timeout: float | None = None) -> Deferred[Any]:
        """
        Send a plain JSON message and wait for the peer's plain reply
        (replies are matched in order).

        @param message: any JSON value but an array or an object with a
            C{jsonrpc} member (those are JSON-RPC: use L{call}).
        @return: a Deferred firing with the reply.
        """
        if self._closed or self.transport is None:
            return fail(ConnectionClosed("not connected: cannot send"))
        try:
            data = _plain_line(message)
        except (EncodeError, ValueError):
            return fail()
        waiter = Waiter(self, None, None)
        self._core.plain_waiters.append(waiter)
        waiter.start_timer(self.clock, self.call_timeout if timeout is None else timeout)
        self._core.write(data)
        return waiter.deferred

    def write_message(self: _Connection, message: Any) -> None:
        """
        Send a plain JSON message that expects no reply.

        @raise ValueError: C{message} has a JSON-RPC shape (see L{send}).
        @raise EncodeError: C{message} is not JSON-serializable.
        """
        if self._closed or self.transport is None:
            raise ConnectionClosed("not connected: cannot send")
        self._core.write(_plain_line(message))

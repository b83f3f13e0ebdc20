"""
What one side of a connection waits for: its own calls (matched to
responses by id) and plain messages (matched to plain replies in order),
with their timeouts and cancellation.

L{PendingCalls} is owned by a L{JSONProtocol<jsonservice.protocol.JSONProtocol>},
whose public C{call}, C{request}, C{send} use it; it writes through the
protocol and learns of replies from it.
"""

from __future__ import annotations

import typing
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from twisted.internet.defer import Deferred, TimeoutError, fail
from twisted.internet.error import ConnectionLost
from twisted.logger import Logger

from .codec import EncodeError, dumps_line
from .jsonrpc import Id, Response, make_params, notification, request

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = ["CANCEL_METHOD", "CallTimeout", "Caller", "ConnectionClosed", "PendingCalls"]

#: The notification that asks the peer to cancel one of its running
#: handlers: C{{"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": ...}}}.
CANCEL_METHOD: Final = "$/cancelRequest"

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
    One call (C{id} set) or plain message (C{id} L{None}) waiting for its
    reply.

    @ivar deferred: fires with the reply; cancelling a call's tells the peer.
    @ivar timer: its timeout, if any.
    """

    __slots__ = ("deferred", "id", "method", "owner", "timer")

    def __init__(self, owner: PendingCalls, method: str | None, id_: Id) -> None:
        self.owner = owner
        self.method = method
        self.id = id_
        # A plain message cannot be cancelled at the peer: no canceller.
        self.deferred: Deferred[Any] = Deferred(self._cancel if method is not None else None)
        self.timer: IDelayedCall | None = None

    def _cancel(self, deferred: Deferred[Any]) -> None:
        self.owner.cancelled(self)

    def stop_timer(self) -> None:
        """Cancel the timeout (the reply came, or the wait ended)."""
        timer = self.timer
        if timer is not None and timer.active():
            timer.cancel()
        self.timer = None


class PendingCalls:
    """
    The calls and plain messages this side waits on.

    @ivar calls: the calls by id (the protocol's fast path reads it).
    @ivar plain: the plain messages, oldest first.
    """

    def __init__(
        self,
        clock: Callable[[], IReactorTime],
        cancel_at_peer: Callable[[Id], None],
    ) -> None:
        """
        @param clock: returns the clock for timeouts.
        @param cancel_at_peer: tells the peer to cancel call C{id} (a
            C{$/cancelRequest}); called only while connected.
        """
        self._clock = clock
        self._cancel_at_peer = cancel_at_peer
        self._next_id = 1
        self.calls: dict[Id, Waiter] = {}
        self.plain: deque[Waiter] = deque()
        self.closed = False

    def __len__(self) -> int:
        return len(self.calls) + len(self.plain)

    def next_id(self) -> int:
        """The id for the next call."""
        id_ = self._next_id
        self._next_id = id_ + 1
        return id_

    def add_call(self, method: str, id_: Id, timeout: float) -> Waiter:
        """Wait for the response to call C{id_} (C{timeout} 0: forever)."""
        waiter = Waiter(self, method, id_)
        self.calls[id_] = waiter
        self._start_timer(waiter, timeout)
        return waiter

    def add_plain(self, timeout: float) -> Waiter:
        """Wait for the plain reply to a plain message (C{timeout} 0: forever)."""
        waiter = Waiter(self, None, None)
        self.plain.append(waiter)
        self._start_timer(waiter, timeout)
        return waiter

    def _start_timer(self, waiter: Waiter, seconds: float) -> None:
        if seconds:
            waiter.timer = self._clock().callLater(seconds, self._timed_out, waiter, seconds)

    def cancelled(self, waiter: Waiter) -> None:
        """A call's Deferred was cancelled: forget it, tell the peer."""
        if self.calls.get(waiter.id) is waiter:
            del self.calls[waiter.id]
            waiter.stop_timer()
            if not self.closed:
                self._cancel_at_peer(waiter.id)

    def _timed_out(self, waiter: Waiter, seconds: float) -> None:
        waiter.timer = None
        if waiter.method is None:
            # A plain message: its place in the reply order stays, but
            # whatever arrives for it is dropped.
            waiter.deferred.errback(CallTimeout(f"no reply to a plain message within {seconds}s"))
            return
        if self.calls.pop(waiter.id, None) is waiter:
            if not self.closed:
                self._cancel_at_peer(waiter.id)
            waiter.deferred.errback(CallTimeout(f"no reply to {waiter.method!r} within {seconds}s"))

    def response(self, response: Response) -> None:
        """A response arrived: fire its call's Deferred (or log and drop it)."""
        waiter = self.calls.pop(response.id, None)
        if waiter is None and response.id is None and response.error is not None and self.plain:
            # This side's calls never use id null: an error with id null
            # answers the oldest plain message (no handler, handler failed,
            # parse error...), which would otherwise wait forever.
            waiter = self.plain.popleft()
            if waiter.deferred.called:
                return  # it timed out; its reply slot is consumed
        if waiter is None:
            if response.error is not None and response.id is None:
                _log.warn("The peer reported an error: {error}", error=response.error)
            else:
                _log.info("Dropped a response to unknown id {id!r}", id=response.id)
            return
        waiter.stop_timer()
        if response.error is None:
            waiter.deferred.callback(response.result)
        else:
            waiter.deferred.errback(response.error)

    def plain_reply(self, value: Any) -> bool:
        """
        A plain message arrived: if this side waits for a plain reply, it
        is that (replies come in order); fire it and return L{True}.
        """
        if not self.plain:
            return False
        waiter = self.plain.popleft()
        waiter.stop_timer()
        if not waiter.deferred.called:
            waiter.deferred.callback(value)
        return True

    def fail_all(self, why: str) -> None:
        """The connection is gone: fail everything with L{ConnectionClosed}."""
        self.closed = True
        waiters = [*self.calls.values(), *self.plain]
        self.calls.clear()
        self.plain.clear()
        for waiter in waiters:
            waiter.stop_timer()
            if not waiter.deferred.called:
                what = f"call {waiter.method!r}" if waiter.method else "plain message"
                waiter.deferred.errback(
                    ConnectionClosed(f"connection closed before the reply to {what}: {why}")
                )


class _Connection(typing.Protocol):
    """What the L{Caller} methods use of the protocol they are mixed into."""

    _pending: PendingCalls
    _closed: bool
    call_timeout: float
    transport: Any
    _log: Logger

    def _write(self, data: bytes) -> None: ...

    def _resume_for_call(self) -> None: ...

    def request(
        self, method: str, params: list[Any] | dict[str, Any] | None = None, *, timeout: float | None = None
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
    protocol provides the connection, and L{PendingCalls} the bookkeeping.
    """

    def call(
        self: _Connection, method: str, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> Deferred[Any]:
        """
        Call the peer's method C{method} with positional C{args} or named
        C{kwargs} (not both).

        @param timeout: seconds to wait for the reply (default:
            C{call_timeout}; 0: forever).  On expiry the peer is told to
            cancel and the Deferred fails with L{CallTimeout}.
        @return: a Deferred firing with the result, or failing with the
            L{RPCError} the peer answered, L{ConnectionClosed}, or
            L{CallTimeout}.  Cancelling it tells the peer to cancel too.
        """
        try:
            params = make_params(args, kwargs)
        except TypeError:
            return fail()
        return self.request(method, params, timeout=timeout)

    def request(
        self: _Connection,
        method: str,
        params: list[Any] | dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Deferred[Any]:
        """
        Like L{call}, with the params given as one list or dict (for a
        named param called C{timeout}, say).
        """
        if self._closed or self.transport is None:
            return fail(ConnectionClosed(f"not connected: cannot call {method!r}"))
        id_ = self._pending.next_id()
        try:
            data = dumps_line(request(method, params, id_))
        except EncodeError:
            return fail()
        waiter = self._pending.add_call(method, id_, self.call_timeout if timeout is None else timeout)
        self._write(data)
        self._resume_for_call()
        return waiter.deferred

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
        self._write(dumps_line(notification(method, params)))

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
        waiter = self._pending.add_plain(self.call_timeout if timeout is None else timeout)
        self._write(data)
        return waiter.deferred

    def write_message(self: _Connection, message: Any) -> None:
        """
        Send a plain JSON message that expects no reply.

        @raise ValueError: C{message} has a JSON-RPC shape (see L{send}).
        @raise EncodeError: C{message} is not JSON-serializable.
        """
        if self._closed or self.transport is None:
            raise ConnectionClosed("not connected: cannot send")
        self._write(_plain_line(message))

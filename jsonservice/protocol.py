"""
L{JSONProtocol}: the C{LineReceiver} that speaks newline-delimited JSON and
JSON-RPC 2.0, used on both ends of a connection.

It is the thin adapter between the sans-IO layers (L{codec}, L{jsonrpc})
and Twisted: it feeds bytes to the framer, hands requests to the service,
tracks what is running (timeouts, cancellation, backpressure) and what this
side is waiting for (its own calls and plain messages), and writes replies.
Replies produced while handling one C{dataReceived} go out in one
C{transport.write}.
"""

from __future__ import annotations

import contextlib
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from twisted.internet.defer import CancelledError, Deferred, TimeoutError, fail
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

from .codec import EncodeError, Framer, LineTooLong, dumps, dumps_line, loads, loads_unterminated
from .errors import (
    MessageTooLarge,
    MethodNotFound,
    ParseError,
    RequestCancelled,
    RequestTimeout,
    RPCError,
)
from .jsonrpc import (
    NO_ID,
    Batch,
    BatchReplies,
    Id,
    Invalid,
    Plain,
    Request,
    Response,
    classify,
    error_reply,
    make_params,
    notification,
    request,
)
from .limits import Limits
from .service import internal_error

if TYPE_CHECKING:
    from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime

    from .service import JSONService

__all__ = ["CANCEL_METHOD", "CallTimeout", "ConnectionClosed", "JSONFactoryBase", "JSONProtocol"]

#: The notification that asks the peer to cancel one of its running
#: handlers: C{{"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": ...}}}.
CANCEL_METHOD: Final = "$/cancelRequest"

#: How long an unterminated buffer that may be a complete JSON text waits
#: for more data before it is parsed anyway (only when the cheap, immediate
#: attempt was held back to keep long lines linear).
UNTERMINATED_DELAY: Final = 0.05

_DEFAULT_LIMITS: Final = Limits()
_WAITING: Final = object()


class ConnectionClosed(ConnectionLost):
    """
    The connection closed before the reply came: every pending call and
    plain message fails with this.
    """


class CallTimeout(TimeoutError):
    """A call made with a timeout got no reply in time (the peer was told
    to cancel it)."""


class _Dropped(Exception):
    """A handler cancelled because its connection is gone: no reply."""


class _Running:
    """An incoming request or plain message whose handler has not finished."""

    __slots__ = ("deferred", "key", "reason", "timer")

    def __init__(self, deferred: Deferred[Any], key: Any) -> None:
        self.deferred = deferred
        self.key = key
        self.reason: BaseException | None = None
        self.timer: IDelayedCall | None = None


class _Waiter:
    """An outgoing call (or plain message) waiting for its reply."""

    __slots__ = ("deferred", "method", "timer")

    def __init__(self, method: str | None) -> None:
        self.method = method
        self.deferred: Deferred[Any] = Deferred()
        self.timer: IDelayedCall | None = None


def _encode(reply: Any) -> bytes:
    """Encode one JSON-RPC reply; a result that is not JSON becomes -32603."""
    try:
        return dumps(reply)
    except EncodeError as exc:
        error = internal_error(Failure(exc), f"reply to request {reply.get('id')!r}")
        error.data["reason"] = f"result is not JSON-serializable: {exc}"
        return dumps(error_reply(reply.get("id"), error))


class JSONProtocol(LineReceiver):
    """
    Newline-delimited JSON and JSON-RPC 2.0 on one stream, both directions.

    As a server it answers requests with its C{service}; as a client it
    L{call}s, L{notify}s and L{send}s; a connection can do both at once.
    Build it with L{JSONServerFactory<jsonservice.server.JSONServerFactory>}
    or L{JSONClientFactory<jsonservice.client.JSONClientFactory>}, or
    directly.

    LineReceiver's contract holds: L{lineReceived} gets each line (it may
    end in C{\\r}), C{sendLine}, C{MAX_LENGTH}, C{pauseProducing} and raw
    mode work as documented there.

    @ivar service: the L{JSONService} answering the peer (L{None}: this side
        serves nothing and answers requests with -32601).
    @ivar limits: the L{Limits} in force.
    @ivar state: per-connection state for handlers (see L{CallContext}).
    """

    delimiter = b"\n"
    MAX_LENGTH = _DEFAULT_LIMITS.max_line_length
    _log = Logger(namespace="jsonservice.protocol")

    def __init__(
        self,
        service: JSONService | None = None,
        limits: Limits | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        self.service = service
        self.limits = limits = limits or _DEFAULT_LIMITS
        self.MAX_LENGTH = limits.max_line_length
        self._clock = clock
        self.state: dict[str, Any] = {}
        self._framer = Framer(limits.max_line_length)
        self._max_depth = limits.max_depth
        self._check_big = True
        self._out: list[bytes] | None = None
        self._reading = False
        self._closed = False
        # This side's calls and plain messages waiting for replies.
        self._next_id = 1
        self._calls: dict[Id, _Waiter] = {}
        self._plain_waiters: deque[_Waiter] = deque()
        # The peer's requests and plain messages still running here.
        self._running: dict[Any, _Running] = {}
        self._plain_slots: deque[list[Any]] = deque()
        self._pauses: set[str] = set()
        self._stall_timer: IDelayedCall | None = None
        self._idle_timer: IDelayedCall | None = None
        self._unterminated_timer: IDelayedCall | None = None
        self._last_active = 0.0
        #: Default timeout for L{call} and L{send}, in seconds (0: none).
        self.call_timeout = limits.call_timeout
        #: Set by L{drain}: new requests are answered -32800.
        self.draining = False

    # -- the reactor ------------------------------------------------------

    @property
    def clock(self) -> IReactorTime:
        """The clock used for timeouts (the global reactor unless given)."""
        if self._clock is None:
            from twisted.internet import reactor

            self._clock = reactor
        return self._clock

    @property
    def peer(self) -> IAddress:
        """The peer's address."""
        return self.transport.getPeer()  # type: ignore[union-attr]

    @property
    def in_flight(self) -> int:
        """How many of the peer's requests and plain messages are running here."""
        return len(self._running)

    @property
    def pending(self) -> int:
        """How many of this side's calls and plain messages await a reply."""
        return len(self._calls) + len(self._plain_waiters)

    # -- connection life --------------------------------------------------

    def connectionMade(self) -> None:
        """Start the idle timer and watch the transport's output buffer."""
        transport: Any = self.transport
        if hasattr(transport, "bufferSize"):
            # The transport pauses us (IPushProducer) once this much is unsent.
            transport.bufferSize = self.limits.max_unsent
        with contextlib.suppress(RuntimeError):  # another producer is registered already
            transport.registerProducer(self, True)
        idle = self.limits.idle_timeout
        if idle:
            self._last_active = self.clock.seconds()
            self._idle_timer = self.clock.callLater(idle, self._check_idle)
        factory = getattr(self, "factory", None)
        if isinstance(factory, JSONFactoryBase):
            factory.connection_made(self)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:  # noqa: B008
        """
        Fail everything this side waits for with L{ConnectionClosed} and
        cancel the peer's handlers still running (their replies could not
        be sent).
        """
        if self._closed:
            return
        partial = self._framer.partial
        if partial.strip() and self.line_mode:
            # A peer that closes after an unterminated reply: deliver it.
            try:
                complete, value = loads_unterminated(partial, self._max_depth)
            except ParseError:
                complete, value = False, None
            if complete:
                self._framer.take_partial()
                self.valueReceived(value)
        self._closed = True
        for timer in (self._idle_timer, self._stall_timer, self._unterminated_timer):
            if timer is not None and timer.active():
                timer.cancel()
        for running in list(self._running.values()):
            running.reason = _Dropped()
            running.deferred.cancel()
        calls = list(self._calls.values()) + list(self._plain_waiters)
        self._calls.clear()
        self._plain_waiters.clear()
        for waiter in calls:
            if waiter.timer is not None and waiter.timer.active():
                waiter.timer.cancel()
            if not waiter.deferred.called:
                what = f"call {waiter.method!r}" if waiter.method else "plain message"
                waiter.deferred.errback(
                    ConnectionClosed(f"connection closed before the reply to {what}: {reason.value}")
                )
        factory = getattr(self, "factory", None)
        if isinstance(factory, JSONFactoryBase):
            factory.connection_lost(self)

    def _check_idle(self) -> None:
        idle = self.limits.idle_timeout
        quiet = self.clock.seconds() - self._last_active
        if self._running or self._calls or self._plain_waiters or quiet < idle:
            wait = idle - quiet if quiet < idle else idle
            self._idle_timer = self.clock.callLater(wait, self._check_idle)
            return
        self._idle_timer = None
        self._log.info("Closing connection from {peer} idle for {idle}s", peer=self.peer, idle=idle)
        self.transport.loseConnection()  # type: ignore[union-attr]

    # -- reading ----------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """
        Split C{data} into lines and handle each (the fast path of
        C{LineReceiver.dataReceived}, with the same contract).
        """
        if not self.line_mode:
            self.rawDataReceived(data)  # type: ignore[no-untyped-call]
            return
        if self._reading:
            # Re-entered (resumeProducing from inside a handler): the outer
            # call goes on reading.
            if data:
                self._framer.unread(self._framer.feed(data))
            return
        if self._idle_timer is not None:
            self._last_active = self.clock.seconds()
        framer = self._framer
        lines = framer.feed(data)
        if lines:
            self._check_big = framer.may_hold_big_int
            out: list[bytes] = []
            self._out = out
            self._reading = True
            try:
                for index, line in enumerate(lines):
                    if self.paused or not self.line_mode or self.transport.disconnecting:  # type: ignore[union-attr]
                        self._stop_reading(lines[index:])
                        break
                    if line.__class__ is bytes:
                        self.lineReceived(line)
                    else:
                        self.lineLengthExceeded(line)
            finally:
                self._reading = False
                self._out = None
            if out:
                self.transport.write(b"".join(out))  # type: ignore[union-attr]
        if framer.buffered and self.line_mode and not self.paused:
            self._try_unterminated(False)

    def _stop_reading(self, rest: list[bytes | LineTooLong]) -> None:
        if self.transport.disconnecting:  # type: ignore[union-attr]
            return
        if not self.line_mode:
            lines = [line for line in rest if line.__class__ is bytes]
            raw = b"\n".join(lines) + b"\n" if lines else b""
            self.rawDataReceived(raw + self._framer.take_partial())  # type: ignore[no-untyped-call]
            return
        self._framer.unread(rest)

    def _try_unterminated(self, force: bool) -> None:
        """
        The unterminated-peer rule: a buffer holding one complete JSON text
        and no newline, with the peer waiting, is handled as a line.
        """
        framer = self._framer
        candidate = framer.unterminated(force)
        if candidate is None:
            if framer.retry_pending and self._unterminated_timer is None:
                self._unterminated_timer = self.clock.callLater(UNTERMINATED_DELAY, self._unterminated_due)
            return
        try:
            complete, value = loads_unterminated(candidate, self._max_depth)
        except ParseError as exc:
            framer.take_partial(discard_rest=True)
            self._reply_in_order(dumps_line(error_reply(None, exc)))
            return
        if complete:
            framer.take_partial()
            self._run_outside_read(value)

    def _unterminated_due(self) -> None:
        self._unterminated_timer = None
        if not self._closed and self.line_mode and not self.paused:
            self._try_unterminated(True)

    def _run_outside_read(self, value: Any) -> None:
        out: list[bytes] = []
        self._out = out
        self._reading = True
        try:
            self.valueReceived(value)
        finally:
            self._reading = False
            self._out = None
        if out:
            self.transport.write(b"".join(out))  # type: ignore[union-attr]

    def lineReceived(self, line: bytes) -> None:
        """
        Decode one line (blank lines are ignored) and handle its value; a
        line that is not strict JSON is answered -32700.
        """
        try:
            value = loads(line, self._max_depth, check_big_int=self._check_big)
        except ParseError as exc:
            if not line or line.isspace():  # b"".isspace() is False
                return
            self._reply_in_order(dumps_line(error_reply(None, exc)))
            return
        self.valueReceived(value)

    def lineLengthExceeded(self, line: Any) -> None:
        """
        A line longer than the limit: answer -32002 (naming the limit) and
        go on with the next line, instead of LineReceiver's disconnect.
        """
        error = MessageTooLarge(data={"max_line_length": self.limits.max_line_length})
        self._reply_in_order(dumps_line(error_reply(None, error)))

    def valueReceived(self, value: Any) -> None:
        """
        Handle one decoded JSON value: a request, notification, response,
        batch or plain message.  Override to see every value first.
        """
        message = classify(value, self.limits.max_batch)
        kind = message.__class__
        if kind is Request:
            reply = self._run(message)  # type: ignore[arg-type]
            if reply is None:
                return
            if reply.__class__ is dict:
                self._write(_encode(reply) + b"\n")
            else:
                reply.addCallback(self._write_reply)
        elif kind is Response:
            self._response_received(message)  # type: ignore[arg-type]
        elif kind is Plain:
            self._plain_received(message.value)  # type: ignore[union-attr]
        elif kind is Batch:
            self._batch_received(message)  # type: ignore[arg-type]
        else:
            invalid: Invalid = message  # type: ignore[assignment]
            self._reply_in_order(dumps_line(invalid.reply()))

    # -- answering the peer -----------------------------------------------

    def _write(self, data: bytes) -> None:
        out = self._out
        if out is not None:
            out.append(data)
        elif not self._closed:
            self.transport.write(data)  # type: ignore[union-attr]

    def sendLine(self, line: bytes) -> None:
        """Write one line, in order with the replies being written."""
        self._write(line + self.delimiter)

    def _write_reply(self, reply: dict[str, Any] | None) -> None:
        if reply is not None:
            self._write(_encode(reply) + b"\n")

    def _run(self, req: Request) -> Any:
        """
        Start one request: its reply (a dict), L{None} (a notification), or
        a Deferred firing with one of those.
        """
        method = req.method
        if method == CANCEL_METHOD:
            self._cancel_requested(req.params)
            return None if req.id is NO_ID else {"jsonrpc": "2.0", "result": None, "id": req.id}
        if self.draining:
            if req.id is NO_ID:
                return None
            return error_reply(req.id, RequestCancelled(data="the server is shutting down"))  # type: ignore[arg-type]
        try:
            service = self.service
            if service is None:
                raise MethodNotFound(data="this side serves no methods")
            result = service.dispatch(method, req.params, self, req.id)
        except RPCError as exc:
            return None if req.id is NO_ID else error_reply(req.id, exc)  # type: ignore[arg-type]
        if isinstance(result, Deferred):
            key = req.id if req.id is not NO_ID and req.id not in self._running else object()
            return self._track(result, key, method).addCallbacks(
                self._result_reply, self._failure_reply, callbackArgs=(req.id,), errbackArgs=(req.id,)
            )
        if req.id is NO_ID:
            return None
        return {"jsonrpc": "2.0", "result": result, "id": req.id}

    @staticmethod
    def _result_reply(result: Any, id: Any) -> dict[str, Any] | None:
        return None if id is NO_ID else {"jsonrpc": "2.0", "result": result, "id": id}

    @staticmethod
    def _failure_reply(failure: Failure, id: Any) -> dict[str, Any] | None:
        if id is NO_ID or failure.check(_Dropped):
            return None
        return error_reply(id, failure.value)  # type: ignore[arg-type]

    def _track(self, d: Deferred[Any], key: Any, what: str) -> Deferred[Any]:
        """
        Watch a running handler: count it in flight (pausing the peer at
        the cap), time it out, let it be cancelled; its failures come out
        as L{RPCError} (or L{_Dropped}: send nothing).
        """
        running = _Running(d, key)
        self._running[key] = running
        limits = self.limits
        if len(self._running) >= limits.max_in_flight:
            self._pause("in-flight")
        if limits.request_timeout:
            running.timer = self.clock.callLater(limits.request_timeout, self._expire, running)
        return d.addBoth(self._finished, running, what)

    def _finished(self, result: Any, running: _Running, what: str) -> Any:
        if self._running.get(running.key) is running:
            del self._running[running.key]
        timer = running.timer
        if timer is not None and timer.active():
            timer.cancel()
        if "in-flight" in self._pauses and len(self._running) < self.limits.max_in_flight:
            self._resume("in-flight")
        if self.draining and not self._running:
            # Close once the reply this result becomes has been written.
            self.clock.callLater(0, self._close_if_drained)
        if isinstance(result, Failure):
            if running.reason is not None:
                return Failure(running.reason)
            if result.check(RPCError):
                return result
            if result.check(CancelledError):
                return Failure(RequestCancelled(data="the handler was cancelled"))
            return Failure(internal_error(result, what))
        return result

    def _expire(self, running: _Running) -> None:
        running.timer = None
        running.reason = RequestTimeout(data={"request_timeout": self.limits.request_timeout})
        running.deferred.cancel()

    def _cancel_requested(self, params: Any) -> None:
        """The peer sent C{$/cancelRequest}: cancel that handler (-32800)."""
        id_ = params.get("id") if isinstance(params, dict) else None
        running = self._running.get(id_) if isinstance(id_, (str, int, float)) else None
        if running is None:
            self._log.debug("Cancel request for {id!r}, which is not running", id=id_)
            return
        running.reason = RequestCancelled(data="cancelled by the caller")
        running.deferred.cancel()

    def drain(self) -> None:
        """
        Begin a graceful close: requests from now on are answered -32800;
        the connection closes (after flushing) once no handler is running.
        """
        self.draining = True
        self._close_if_drained()

    def _close_if_drained(self) -> None:
        if not self._running and not self._closed and self.transport is not None:
            self.transport.loseConnection()

    def cancel_running(self, error: RPCError) -> int:
        """
        Cancel every handler still running for the peer, answering each
        with C{error} (used when a server shuts down).

        @return: how many were cancelled.
        """
        running = list(self._running.values())
        for item in running:
            item.reason = error
            item.deferred.cancel()
        return len(running)

    def _batch_received(self, batch: Batch) -> None:
        items = batch.items
        collected = BatchReplies(len(items))
        for index, item in enumerate(items):
            kind = item.__class__
            if kind is Request:
                reply = self._run(item)  # type: ignore[arg-type]
                if isinstance(reply, Deferred):
                    reply.addCallback(self._batch_item_done, collected, index)
                    continue
            elif kind is Response:
                self._response_received(item)  # type: ignore[arg-type]
                reply = None
            else:
                reply = item.reply()  # type: ignore[union-attr]
            collected.add(index, reply)
        if collected.done:
            self._write_batch(collected)

    def _batch_item_done(self, reply: dict[str, Any] | None, collected: BatchReplies, index: int) -> None:
        if collected.add(index, reply):
            self._write_batch(collected)

    def _write_batch(self, collected: BatchReplies) -> None:
        replies = collected.replies()
        if replies:
            self._write(b"[" + b",".join(map(_encode, replies)) + b"]\n")

    # -- plain messages ---------------------------------------------------

    def _plain_received(self, value: Any) -> None:
        waiters = self._plain_waiters
        if waiters:
            # A reply to this side's send(): replies come in order.
            waiter = waiters.popleft()
            if waiter.timer is not None and waiter.timer.active():
                waiter.timer.cancel()
            if not waiter.deferred.called:
                waiter.deferred.callback(value)
            return
        service = self.service
        if service is None:
            self._log.warn("Dropped a plain message nobody asked for: {value!r}", value=value)
            return
        if self.draining:
            error = RequestCancelled(data="the server is shutting down")
            self._reply_in_order(dumps_line(error_reply(None, error)))
            return
        try:
            reply = service.handle_message(value, self)
        except RPCError as exc:
            self._reply_in_order(dumps_line(error_reply(None, exc)))
            return
        if isinstance(reply, Deferred):
            slot = [_WAITING]
            self._plain_slots.append(slot)
            self._track(reply, object(), "message handler").addCallbacks(
                self._plain_done, self._plain_failed, callbackArgs=(slot,), errbackArgs=(slot,)
            )
        elif reply is not None:
            self._reply_in_order(self._encode_plain(reply))
        elif self._plain_slots:
            self._plain_slots.append([None])

    def _encode_plain(self, reply: Any) -> bytes:
        try:
            return dumps_line(reply)
        except EncodeError as exc:
            error = internal_error(Failure(exc), "message handler")
            error.data["reason"] = f"reply is not JSON-serializable: {exc}"
            return dumps_line(error_reply(None, error))

    def _plain_done(self, reply: Any, slot: list[Any]) -> None:
        slot[0] = None if reply is None else self._encode_plain(reply)
        self._flush_plain()

    def _plain_failed(self, failure: Failure, slot: list[Any]) -> None:
        slot[0] = None if failure.check(_Dropped) else dumps_line(error_reply(None, failure.value))  # type: ignore[arg-type]
        self._flush_plain()

    def _reply_in_order(self, data: bytes) -> None:
        """Write a reply to a non-JSON-RPC line after the ones before it."""
        if self._plain_slots:
            self._plain_slots.append([data])
        else:
            self._write(data)

    def _flush_plain(self) -> None:
        slots = self._plain_slots
        while slots and slots[0][0] is not _WAITING:
            data = slots.popleft()[0]
            if data:
                self._write(data)

    # -- this side calling the peer ---------------------------------------

    def call(self, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Deferred[Any]:
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
        self, method: str, params: list[Any] | dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> Deferred[Any]:
        """
        Like L{call}, with the params given as one list or dict (for a
        named param called C{timeout}, say).
        """
        if self._closed or self.transport is None:
            return fail(ConnectionClosed(f"not connected: cannot call {method!r}"))
        id_ = self._next_id
        self._next_id = id_ + 1
        try:
            data = dumps_line(request(method, params, id_))
        except EncodeError:
            return fail()
        waiter = _Waiter(method)
        waiter.deferred = Deferred(lambda _: self._call_cancelled(id_, waiter))
        self._calls[id_] = waiter
        self._start_timer(waiter, timeout, id_)
        self._write(data)
        return waiter.deferred

    def _start_timer(self, waiter: _Waiter, timeout: float | None, id_: Id) -> None:
        seconds = self.call_timeout if timeout is None else timeout
        if seconds:
            waiter.timer = self.clock.callLater(seconds, self._call_timed_out, id_, waiter, seconds)

    def _call_cancelled(self, id_: Id, waiter: _Waiter) -> None:
        if self._calls.get(id_) is waiter:
            del self._calls[id_]
            if waiter.timer is not None and waiter.timer.active():
                waiter.timer.cancel()
            if not self._closed:
                self.notify(CANCEL_METHOD, id=id_)

    def _call_timed_out(self, id_: Id, waiter: _Waiter, seconds: float) -> None:
        waiter.timer = None
        if id_ is None:
            # A plain message: its reply slot stays (replies come in order)
            # but whatever arrives for it is dropped.
            waiter.deferred.errback(CallTimeout(f"no reply to a plain message within {seconds}s"))
            return
        if self._calls.pop(id_, None) is waiter:
            if not self._closed:
                self.notify(CANCEL_METHOD, id=id_)
            waiter.deferred.errback(CallTimeout(f"no reply to {waiter.method!r} within {seconds}s"))

    def _response_received(self, response: Response) -> None:
        waiter = self._calls.pop(response.id, None)
        if waiter is None:
            if response.error is not None and response.id is None:
                self._log.warn("The peer reported an error: {error}", error=response.error)
            else:
                self._log.info("Dropped a response to unknown id {id!r}", id=response.id)
            return
        if waiter.timer is not None and waiter.timer.active():
            waiter.timer.cancel()
        if response.error is None:
            waiter.deferred.callback(response.result)
        else:
            waiter.deferred.errback(response.error)

    def notify(self, method: str, *args: Any, **kwargs: Any) -> None:
        """
        Send the peer a notification: no reply, no way to know it arrived.
        Dropped (and logged) when the connection is closed.
        """
        self.notify_params(method, make_params(args, kwargs))

    def notify_params(self, method: str, params: list[Any] | dict[str, Any] | None = None) -> None:
        """Like L{notify}, with the params given as one list or dict."""
        if self._closed or self.transport is None:
            self._log.info("Not connected: dropped notification {method!r}", method=method)
            return
        self._write(dumps_line(notification(method, params)))

    def send(self, message: Any, *, timeout: float | None = None) -> Deferred[Any]:
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
            data = self._plain_line(message)
        except (EncodeError, ValueError):
            return fail()
        waiter = _Waiter(None)
        self._plain_waiters.append(waiter)
        self._start_timer(waiter, timeout, None)
        self._write(data)
        return waiter.deferred

    def write_message(self, message: Any) -> None:
        """
        Send a plain JSON message that expects no reply.

        @raise ValueError: C{message} has a JSON-RPC shape (see L{send}).
        @raise EncodeError: C{message} is not JSON-serializable.
        """
        if self._closed or self.transport is None:
            raise ConnectionClosed("not connected: cannot send")
        self._write(self._plain_line(message))

    @staticmethod
    def _plain_line(message: Any) -> bytes:
        if isinstance(message, list) or (isinstance(message, dict) and "jsonrpc" in message):
            raise ValueError("a plain message is not an array nor an object with 'jsonrpc'; use call()")
        return dumps_line(message)

    # -- backpressure -----------------------------------------------------

    def _pause(self, reason: str) -> None:
        if not self._pauses:
            self.paused = True
            if self.transport is not None:
                self.transport.pauseProducing()  # type: ignore[attr-defined]
        self._pauses.add(reason)

    def _resume(self, reason: str) -> None:
        self._pauses.discard(reason)
        if self._pauses or self._closed:
            return
        self.paused = False
        self.transport.resumeProducing()  # type: ignore[union-attr]
        if not self._reading:
            self.dataReceived(b"")

    def pauseProducing(self) -> None:
        """
        The transport's output buffer is full (the peer does not read):
        stop reading its requests until it drains, and abort the connection
        if it stays stalled longer than the write-stall timeout.
        """
        self._pause("output")
        stall = self.limits.write_stall_timeout
        if stall and self._stall_timer is None and not self._closed:
            self._stall_timer = self.clock.callLater(stall, self._stalled)

    def resumeProducing(self) -> None:
        """The output buffer drained: read again."""
        if self._stall_timer is not None:
            if self._stall_timer.active():
                self._stall_timer.cancel()
            self._stall_timer = None
        self._resume("output")

    def stopProducing(self) -> None:
        """The transport is going away; nothing to do until C{connectionLost}."""

    def _stalled(self) -> None:
        self._stall_timer = None
        self._log.warn(
            "Aborting connection from {peer}: its output stayed stalled for {stall}s",
            peer=self.peer,
            stall=self.limits.write_stall_timeout,
        )
        self.transport.abortConnection()  # type: ignore[union-attr]

    def clearLineBuffer(self) -> bytes:
        """Clear and return the unfinished line (LineReceiver's contract)."""
        return self._framer.take_partial()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} running={len(self._running)} pending={self.pending}>"


class JSONFactoryBase(Factory):
    """
    What the server and client factories share: a service, limits, a clock,
    and the set of open connections.

    @ivar service: the L{JSONService} each connection answers with.
    @ivar limits: the L{Limits} each connection gets.
    @ivar connections: the open L{JSONProtocol}s.
    """

    protocol = JSONProtocol

    def __init__(
        self,
        service: JSONService | None = None,
        *,
        clock: IReactorTime | None = None,
        limits: Limits | None = None,
        **kwargs: Any,
    ) -> None:
        self.service = service
        self.limits = Limits.from_kwargs(limits, **kwargs)
        self.clock = clock
        self.connections: set[JSONProtocol] = set()

    def buildProtocol(self, addr: IAddress | None) -> JSONProtocol | None:
        """Build a L{JSONProtocol} with this factory's service and limits."""
        proto = self.protocol(self.service, self.limits, self.clock)
        proto.factory = self
        return proto

    def connection_made(self, proto: JSONProtocol) -> None:
        """Called by each connection once it is up."""
        self.connections.add(proto)

    def connection_lost(self, proto: JSONProtocol) -> None:
        """Called by each connection once it is gone."""
        self.connections.discard(proto)

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

import hmac
import time
from collections import deque
from collections.abc import Callable
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Final

from orjson import OPT_APPEND_NEWLINE, OPT_NON_STR_KEYS
from orjson import dumps as _orjson_dumps
from orjson import loads as _orjson_loads
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

from .calls import CANCEL_METHOD, Caller, CallTimeout, ConnectionClosed, PendingCalls
from .codec import EncodeError, dumps, dumps_line, loads, loads_unterminated
from .errors import (
    MessageTooLarge,
    MethodNotFound,
    ParseError,
    RequestCancelled,
    RPCError,
    Unauthorized,
)
from .flow import FlowControl
from .framing import Framer, LineTooLong
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
)
from .limits import ORJSON_MAX_DEPTH, Limits
from .observers import RequestObserver, outcome_of
from .running import Dropped, RunningHandlers
from .service import JSONService, internal_error

if TYPE_CHECKING:
    from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime

__all__ = ["CANCEL_METHOD", "CallTimeout", "ConnectionClosed", "JSONFactoryBase", "JSONProtocol"]

#: The method a connection calls first when the server requires a token:
#: C{{"jsonrpc": "2.0", "method": "rpc.authenticate", "params": {"token": "..."}, "id": 1}}.
AUTH_METHOD: Final = "rpc.authenticate"

#: How long an unterminated buffer that may be a complete JSON text waits
#: for more data before it is parsed anyway (only when the cheap, immediate
#: attempt was held back to keep long lines linear).
UNTERMINATED_DELAY: Final = 0.05

_DEFAULT_LIMITS: Final = Limits()
_WAITING: Final = object()


_NO_PARAMS: Final[list[Any]] = []


#: Replies gathered during one read are written early past this many bytes.
_FLUSH_AT: Final = 64 * 1024
_LINE_OPTIONS: Final = OPT_NON_STR_KEYS | OPT_APPEND_NEWLINE
#: Results that are surely not Deferreds or coroutines (skips an isinstance).
_JSON_TYPES: Final = frozenset({str, int, float, bool, type(None), list, dict})


def _encode(reply: Any, encode: Callable[[Any], bytes] = dumps) -> bytes:
    """Encode one JSON-RPC reply; a result that is not JSON becomes -32603."""
    try:
        return encode(reply)
    except EncodeError as exc:
        error = internal_error(Failure(exc), f"reply to request {reply.get('id')!r}")
        error.data["reason"] = f"result is not JSON-serializable: {exc}"
        return encode(error_reply(reply.get("id"), error))


def _reply_line(reply: Any) -> bytes:
    """L{_encode}, as one line."""
    return _encode(reply, dumps_line)


class JSONProtocol(Caller, LineReceiver):
    """
    Newline-delimited JSON and JSON-RPC 2.0 on one stream, both directions.

    As a server it answers requests with its C{service}; as a client it
    L{call<Caller.call>}s, L{notify<Caller.notify>}s and
    L{send<Caller.send>}s (see L{Caller}); a connection can do both at once.
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
        self._out_bytes = 0
        self._reading = False
        self._closed = False
        # This side's calls and plain messages waiting for replies (the
        # aliases are for the hot path: the containers never change).
        self._pending = PendingCalls(lambda: self.clock, self._cancel_at_peer)
        self._calls = self._pending.calls
        self._plain_waiters = self._pending.plain
        # The peer's requests and plain messages still running here.
        self._handlers = RunningHandlers(self)
        self._running = self._handlers.table
        self._plain_slots: deque[list[Any]] = deque()
        self._flow = FlowControl(self)
        self._pauses = self._flow.reasons  # why reading is paused
        self._idle_timer: IDelayedCall | None = None
        self._unterminated_timer: IDelayedCall | None = None
        self._last_active = 0.0
        #: Default timeout for L{Caller.call} and L{Caller.send}, in seconds (0: none).
        self.call_timeout = limits.call_timeout
        #: Set by L{drain}: new requests are answered -32800.
        self.draining = False
        #: False until the peer authenticates, when the factory has a token.
        self.authenticated = True
        self._auth_token: bytes | None = None
        self._auth_timer: IDelayedCall | None = None
        self._drain_call: IDelayedCall | None = None
        self._observers: tuple[RequestObserver, ...] = ()
        self._fast_table: dict[str, tuple[Any, int, int]] | None = None
        #: Counters for logs and metrics.
        self.requests_received = 0
        self.bytes_received = 0
        self.bytes_sent = 0
        self.opened_at = 0.0

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
        return len(self._pending)

    # -- connection life --------------------------------------------------

    def connectionMade(self) -> None:
        """Start the idle timer and watch the transport's output buffer."""
        self._flow.watch_output()
        idle = self.limits.idle_timeout
        self.opened_at = self._last_active = self.clock.seconds()
        if idle:
            self._idle_timer = self.clock.callLater(idle, self._check_idle)
        factory = getattr(self, "factory", None)
        if isinstance(factory, JSONFactoryBase):
            self._observers = tuple(factory.observers)
            if factory.auth_token is not None:
                self._auth_token = factory.auth_token
                self.authenticated = False
                self._auth_timer = self.clock.callLater(self.limits.auth_timeout, self._auth_too_late)
        self._update_fast_path()
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
        self._flow.stop()
        for timer in (
            self._idle_timer,
            self._unterminated_timer,
            self._auth_timer,
            self._drain_call,
        ):
            if timer is not None and timer.active():
                timer.cancel()
        self._handlers.cancel_all(Dropped())
        self._pending.fail_all(str(reason.value))
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
        self._breached("idle_timeout")
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
        self.bytes_received += len(data)
        framer = self._framer
        lines = framer.feed(data)
        if lines:
            if self._idle_timer is not None:
                # Only whole messages count as activity: a peer trickling
                # the bytes of a line it never ends is idle (slowloris).
                self._last_active = self.clock.seconds()
            self._check_big = framer.may_hold_big_int
            out: list[bytes] = []
            self._out = out
            self._reading = True
            try:
                self._read_lines(lines, out)
            finally:
                self._reading = False
                self._out = None
            if out:
                self._flush(out)
        if framer.buffered and self.line_mode and not self.paused:
            self._try_unterminated(False)

    def _update_fast_path(self) -> None:
        """
        Decide whether lines may take the fast path: a plain service (its
        dispatch not overridden), this class's line handling, no request
        observers, authenticated, not draining, the default depth limit.
        """
        service = self.service
        cls = type(self)
        eligible = (
            (service is None or type(service).dispatch is JSONService.dispatch)
            and (service is None or type(service).handle_message is JSONService.handle_message)
            and cls.lineReceived is JSONProtocol.lineReceived
            and cls.valueReceived is JSONProtocol.valueReceived
            and not self._observers
            and self.authenticated
            and not self.draining
            and self._max_depth == ORJSON_MAX_DEPTH
        )
        if not eligible:
            self._fast_table = None
        else:
            self._fast_table = service.fast_table() if service is not None else {}

    def _read_lines(self, lines: list[bytes | LineTooLong], out: list[bytes]) -> None:
        """
        Handle the lines of one read, stopping where the reader pauses.

        This is the hot loop, so the common case is inlined: a request
        with positional params (or none) and an int or string id, for a
        method whose signature needs only a length check, answered with a
        plain value.  Everything else (and any problem) goes through
        L{lineReceived} / L{valueReceived}, which give the same answers.
        """
        table = self._fast_table
        decode: Any = _orjson_loads if not self._check_big else loads
        append = out.append
        transport: Any = self.transport
        # Replies of one read go out in one write, unless they pile up: then
        # write them now, so the transport can pause us mid-read.
        flush_at = min(self.limits.max_unsent, _FLUSH_AT)
        self._out_bytes = 0
        fast_bytes = served = 0  # kept in locals: attribute writes cost
        for index, line in enumerate(lines):
            if fast_bytes + self._out_bytes >= flush_at:
                self._flush(out)
                out.clear()
                self._out_bytes = fast_bytes = 0
            if self.paused or not self.line_mode or transport.disconnecting:
                self._stop_reading(lines[index:])
                break
            if line.__class__ is not bytes:
                self.lineLengthExceeded(line)
                continue
            if table is None:
                self.lineReceived(line)
                continue
            try:
                value = decode(line)
            except (ValueError, ParseError):
                self.lineReceived(line)
                continue
            if value.__class__ is not dict:
                self.valueReceived(value)
                continue
            if value.get("jsonrpc") != "2.0":
                if "jsonrpc" in value or self._plain_waiters or self._plain_slots:
                    self.valueReceived(value)
                else:
                    self._plain_received(value)
                continue
            method: Any = value.get("method")
            id_ = value.get("id", NO_ID)
            if method is None:
                # A response to this side's call: the success case, directly.
                waiter = (
                    self._calls.pop(id_, None)
                    if (id_.__class__ is int or id_.__class__ is str)
                    and "result" in value
                    and "error" not in value
                    else None
                )
                if waiter is None:
                    self.valueReceived(value)
                    continue
                waiter.stop_timer()
                waiter.deferred.callback(value["result"])
                continue
            entry = table.get(method) if method.__class__ is str else None
            params = value.get("params", _NO_PARAMS)
            if (
                entry is None
                or (params.__class__ is not list and params is not _NO_PARAMS)
                or (id_.__class__ is not int and id_.__class__ is not str)
                or not entry[1] <= len(params) <= entry[2]
            ):
                self.valueReceived(value)
                continue
            served += 1
            try:
                result = entry[0](*params)
            except RPCError as exc:
                append(dumps_line(error_reply(id_, exc)))
                continue
            except Exception:
                append(dumps_line(error_reply(id_, internal_error(Failure(), method))))
                continue
            if result.__class__ not in _JSON_TYPES:
                if result.__class__ is CoroutineType:
                    result = Deferred.fromCoroutine(result)
                if isinstance(result, Deferred):
                    self._handlers.track(result, self._handlers.key_for(id_), method).addCallbacks(
                        self._result_reply, self._failure_reply, callbackArgs=(id_,), errbackArgs=(id_,)
                    ).addCallback(self._write_reply)
                    continue
            reply = {"jsonrpc": "2.0", "result": result, "id": id_}
            try:
                data = _orjson_dumps(reply, option=_LINE_OPTIONS)
            except TypeError:
                data = _reply_line(reply)  # big integers, deep nesting, or -32603
            else:
                # orjson writes NaN as null: a result that may hold a float
                # and whose line holds a null goes through the codec's check.
                kind = result.__class__
                if (kind is float or kind is list or kind is dict) and b"null" in data:
                    data = _reply_line(reply)
            append(data)
            fast_bytes += len(data)
        self.requests_received += served

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
            if self._idle_timer is not None:
                self._last_active = self.clock.seconds()
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
            self._flush(out)

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
        self._breached("max_line_length")
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
                self._write(_reply_line(reply))
            else:
                reply.addCallback(self._write_reply)
        elif kind is Response:
            self._pending.response(message)  # type: ignore[arg-type]
        elif kind is Plain:
            self._plain_received(message.value)  # type: ignore[union-attr]
        elif kind is Batch:
            self._batch_received(message)  # type: ignore[arg-type]
        else:
            invalid: Invalid = message  # type: ignore[assignment]
            if invalid.error.code == -32003:
                self._breached("max_batch")
            self._reply_in_order(dumps_line(invalid.reply()))

    # -- answering the peer -----------------------------------------------

    def _write(self, data: bytes) -> None:
        out = self._out
        if out is not None:
            out.append(data)
            self._out_bytes += len(data)
        elif not self._closed:
            self.bytes_sent += len(data)
            self.transport.write(data)  # type: ignore[union-attr]
            self._flow.check_output()

    def _flush(self, out: list[bytes]) -> None:
        data = b"".join(out)
        self.bytes_sent += len(data)
        self.transport.write(data)  # type: ignore[union-attr]
        self._flow.check_output()

    def sendLine(self, line: bytes) -> None:
        """Write one line, in order with the replies being written."""
        self._write(line + self.delimiter)

    def _write_reply(self, reply: dict[str, Any] | None) -> None:
        if reply is not None:
            self._write(_reply_line(reply))

    def _run(self, req: Request) -> Any:
        """
        Start one request: its reply (a dict), L{None} (a notification), or
        a Deferred firing with one of those.
        """
        method = req.method
        self.requests_received += 1
        if not self.authenticated:
            return self._auth_gate(req)
        if method == CANCEL_METHOD:
            self._cancel_requested(req.params)
            return None if req.id is NO_ID else {"jsonrpc": "2.0", "result": None, "id": req.id}
        if method == AUTH_METHOD:
            return None if req.id is NO_ID else {"jsonrpc": "2.0", "result": True, "id": req.id}
        if self.draining:
            if req.id is NO_ID:
                return None
            return error_reply(req.id, RequestCancelled(data="the server is shutting down"))  # type: ignore[arg-type]
        observers = self._observers
        started = time.perf_counter() if observers else 0.0
        try:
            service = self.service
            if service is None:
                raise MethodNotFound(data="this side serves no methods")
            result = service.dispatch(method, req.params, self, req.id)
        except RPCError as exc:
            if observers:
                self._observe(method, outcome_of(exc), started)
            return None if req.id is NO_ID else error_reply(req.id, exc)  # type: ignore[arg-type]
        if isinstance(result, Deferred):
            key = self._handlers.key_for(req.id)
            return self._handlers.track(result, key, method, started).addCallbacks(
                self._result_reply, self._failure_reply, callbackArgs=(req.id,), errbackArgs=(req.id,)
            )
        if observers:
            self._observe(method, "ok", started)
        if req.id is NO_ID:
            return None
        return {"jsonrpc": "2.0", "result": result, "id": req.id}

    def _observe(self, method: str, outcome: str, started: float) -> None:
        seconds = time.perf_counter() - started
        if outcome == "method_not_found":
            method = "<unknown>"
        for observer in self._observers:
            observer.request_done(self, method, outcome, seconds)

    def _breached(self, limit: str) -> None:
        for observer in self._observers:
            observer.limit_breached(self, limit)

    def _auth_gate(self, req: Request) -> dict[str, Any] | None:
        """
        Before authentication only C{rpc.authenticate} is served, and
        C{rpc.ping} (health checks: it tells nothing but "up").
        """
        if req.method == "rpc.ping":
            return None if req.id is NO_ID else {"jsonrpc": "2.0", "result": "pong", "id": req.id}
        if req.method != AUTH_METHOD:
            error = Unauthorized(data=f"authenticate first: call {AUTH_METHOD} with the token")
            if self._observers:
                self._observe(req.method, "unauthorized", time.perf_counter())
            return None if req.id is NO_ID else error_reply(req.id, error)  # type: ignore[arg-type]
        params = req.params
        token = params.get("token") if isinstance(params, dict) else (params[0] if params else None)
        token_bytes = token.encode("utf-8", "surrogatepass") if isinstance(token, str) else b""
        assert self._auth_token is not None
        if token_bytes and hmac.compare_digest(token_bytes, self._auth_token):
            self.authenticated = True
            self._update_fast_path()
            if self._auth_timer is not None and self._auth_timer.active():
                self._auth_timer.cancel()
            self._auth_timer = None
            return None if req.id is NO_ID else {"jsonrpc": "2.0", "result": True, "id": req.id}
        self._log.warn("Wrong or missing token from {peer}: closing", peer=self.peer)
        self._breached("auth")
        # Close once the error is written.
        self.clock.callLater(0, self._close)
        return None if req.id is NO_ID else error_reply(req.id, Unauthorized(data="wrong token"))  # type: ignore[arg-type]

    def _auth_too_late(self) -> None:
        self._auth_timer = None
        if not self.authenticated:
            self._log.warn(
                "No authentication from {peer} within {seconds}s: closing",
                peer=self.peer,
                seconds=self.limits.auth_timeout,
            )
            self._breached("auth_timeout")
            self._close()

    def _close(self) -> None:
        if not self._closed and self.transport is not None:
            self.transport.loseConnection()

    @staticmethod
    def _result_reply(result: Any, id: Any) -> dict[str, Any] | None:
        return None if id is NO_ID else {"jsonrpc": "2.0", "result": result, "id": id}

    @staticmethod
    def _failure_reply(failure: Failure, id: Any) -> dict[str, Any] | None:
        if id is NO_ID or failure.check(Dropped):
            return None
        return error_reply(id, failure.value)  # type: ignore[arg-type]

    def _handler_finished(self) -> None:
        """A handler finished: read again below the cap; close when drained."""
        if "in-flight" in self._pauses and len(self._running) < self.limits.max_in_flight:
            self._flow.resume("in-flight")
        if self.draining and not self._running and self._drain_call is None and not self._closed:
            # Close once the reply this result becomes has been written.
            self._drain_call = self.clock.callLater(0, self._close_if_drained)

    def _cancel_requested(self, params: Any) -> None:
        """The peer sent C{$/cancelRequest}: cancel that handler (-32800)."""
        id_ = params.get("id") if isinstance(params, dict) else None
        if not self._handlers.cancel(id_, RequestCancelled(data="cancelled by the caller")):
            self._log.debug("Cancel request for {id!r}, which is not running", id=id_)

    def drain(self) -> None:
        """
        Begin a graceful close: requests from now on are answered -32800;
        the connection closes (after flushing) once no handler is running.
        """
        self.draining = True
        self._fast_table = None
        self._close_if_drained()

    def _close_if_drained(self) -> None:
        self._drain_call = None
        if not self._running and not self._closed and self.transport is not None:
            self.transport.loseConnection()

    def cancel_running(self, error: RPCError) -> int:
        """
        Cancel every handler still running for the peer, answering each
        with C{error} (used when a server shuts down).

        @return: how many were cancelled.
        """
        return self._handlers.cancel_all(error)

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
                self._pending.response(item)  # type: ignore[arg-type]
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
        if self._pending.plain_reply(value):
            return  # a reply to this side's send(): replies come in order
        service = self.service
        if service is None:
            self._log.warn("Dropped a plain message nobody asked for: {value!r}", value=value)
            return
        if self.draining or not self.authenticated:
            if self.authenticated:
                error: RPCError = RequestCancelled(data="the server is shutting down")
            else:
                error = Unauthorized(data=f"authenticate first: call {AUTH_METHOD} with the token")
            self._reply_in_order(dumps_line(error_reply(None, error)))
            return
        self.requests_received += 1
        observers = self._observers
        started = time.perf_counter() if observers else 0.0
        try:
            reply = service.handle_message(value, self)
        except RPCError as exc:
            if observers:
                self._observe("<message>", outcome_of(exc), started)
            self._reply_in_order(dumps_line(error_reply(None, exc)))
            return
        if isinstance(reply, Deferred):
            slot = [_WAITING]
            self._plain_slots.append(slot)
            self._handlers.track(reply, object(), "<message>", started).addCallbacks(
                self._plain_done, self._plain_failed, callbackArgs=(slot,), errbackArgs=(slot,)
            )
            return
        if observers:
            self._observe("<message>", "ok", started)
        if reply is not None:
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
        slot[0] = None if failure.check(Dropped) else dumps_line(error_reply(None, failure.value))  # type: ignore[arg-type]
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

    def _resume_for_call(self) -> None:
        """This side made a call: a handler waiting for its reply needs it read."""
        if "in-flight" in self._pauses:
            self._flow.resume("in-flight")

    def _cancel_at_peer(self, id_: Id) -> None:
        self.notify(CANCEL_METHOD, id=id_)

    # -- backpressure -----------------------------------------------------

    def _read_buffered(self) -> None:
        """Reading resumed: handle the complete lines that waited."""
        if not self._reading:
            self.dataReceived(b"")

    def pauseProducing(self) -> None:
        """
        The transport's output is backing up (the peer is slow to read).
        Once more than C{max_unsent} bytes are unsent, stop reading its
        requests until it drains, and abort the connection if it stays
        stalled longer than the write-stall timeout.
        """
        self._flow.output_backed_up()

    def resumeProducing(self) -> None:
        """The output buffer drained: read again."""
        self._flow.output_drained()

    def stopProducing(self) -> None:
        """The transport is going away; nothing to do until C{connectionLost}."""

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
        #: Watchers of every request (metrics, request logs).
        self.observers: list[RequestObserver] = []
        #: The token connections must present first (L{None}: no authentication).
        self.auth_token: bytes | None = None
        #: Totals for metrics: connections accepted, bytes of closed ones.
        self.connections_opened = 0
        self.closed_bytes_received = 0
        self.closed_bytes_sent = 0

    def add_observer(self, observer: RequestObserver) -> None:
        """Watch the requests of connections made from now on."""
        self.observers.append(observer)

    def buildProtocol(self, addr: IAddress | None) -> JSONProtocol | None:
        """Build a L{JSONProtocol} with this factory's service and limits."""
        proto = self.protocol(self.service, self.limits, self.clock)
        proto.factory = self
        return proto

    def connection_made(self, proto: JSONProtocol) -> None:
        """Called by each connection once it is up."""
        self.connections.add(proto)
        self.connections_opened += 1

    def connection_lost(self, proto: JSONProtocol) -> None:
        """Called by each connection once it is gone."""
        self.connections.discard(proto)
        self.closed_bytes_received += proto.bytes_received
        self.closed_bytes_sent += proto.bytes_sent

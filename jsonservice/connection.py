"""
The connection core: one JSON / JSON-RPC 2.0 connection, sans-IO.

L{Connection} takes bytes in (L{Connection.receive_data},
L{Connection.receive_eof}) and the outcomes of handlers that finish later
(L{Connection.complete}, L{Connection.fail}), and puts reply bytes out
through its L{Host<jsonservice.interfaces.Host>}.  It owns everything
between: framing, classification, dispatch through the service's responder
table, batches and the order of plain replies (L{replies<jsonservice.replies>}),
this side's outstanding calls, the in-flight cap and the bytes it holds.
It never blocks, never imports Twisted and never looks at a clock (the host
owns timers, Deferreds and the transport), so it is tested exhaustively on
its own.

There is one request path: every request, whether alone, in a batch, or
gated by authentication or a drain, goes through C{Connection._call}, and
every reply through C{Connection._result_line} or C{Connection._error_line}.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from .codec import EncodeError, dumps_line, loads
from .errors import (
    InvalidRequest,
    MessageTooLarge,
    MethodNotFound,
    ParseError,
    RequestCancelled,
    RPCError,
    outcome_of,
)
from .framing import Framer, LineTooLong
from .interfaces import Host, Responder, ServiceTable, Task, Waiter
from .jsonrpc import (
    NO_ID,
    Batch,
    Invalid,
    Plain,
    Request,
    Response,
    classify,
    decode_request,
    decode_success,
    request_parts,
)
from .limits import Limits
from .replies import WAITING as _WAITING
from .replies import Batch as _Batch
from .replies import Replies, quote

__all__ = ["CANCEL_METHOD", "Connection", "Host", "ServiceTable", "Task", "Waiter", "quote"]

#: The notification that asks the peer to cancel one of its running
#: handlers: C{{"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": ...}}}.
CANCEL_METHOD: Final = "$/cancelRequest"

#: Replies gathered while handling input are written early past this many bytes.
FLUSH_AT: Final = 64 * 1024

#: While input is handled, this side's calls and notifications go out
#: every this many, at once (L{Host.flush}), instead of with the rest at
#: the read's end: the peer starts on them while this side goes on.  (A
#: client answering a read of 100 responses with 100 new calls otherwise
#: takes turns with its server, each idle while the other works.)  Replies
#: are not sent early: that costs a server more writes for no concurrency.
#: Nor are they sent at the read's end straight to the socket, skipping the
#: reactor's write turn: measured, that wakes a peer on the same machine
#: once per read instead of once per reactor turn, and the 50-connection
#: echo over loopback lost ~15 % (the server's kernel time per request +25 %).
CALLS_PER_FLUSH: Final = 32

#: What a running request is counted as in L{Connection.held_bytes} (the
#: server-wide C{max_buffered} budget): measured at 1.5 to 3.5 KiB each.
RUNNING_COST: Final = 2048

#: How many of a peer's unexpected messages (responses to unknown ids, its
#: error reports, cancellations of requests not running...) are logged per
#: connection; past it, one line says the rest are not.
LOGGED_PER_CONNECTION: Final = 20

#: Results that are surely not pending (no need to ask the host).
_JSON_TYPES: Final = frozenset({str, int, float, bool, type(None), list, dict})


class Connection(Replies):
    """
    One connection's JSON and JSON-RPC 2.0 logic, both directions.

    @ivar gate: when set, C{gate(method)} may put another responder in
        front of every request and plain message (C{method} L{None}):
        authentication and draining use it.  L{None}: no gate.
    @ivar specials: responders for reserved methods the connection itself
        answers (C{$/cancelRequest}, C{rpc.authenticate}); looked up only
        when the service's table has no such method.
    @ivar observe: when set, called as C{observe(method, outcome, seconds)}
        for every finished request and plain message.
    @ivar calls: this side's calls awaiting a response, by id.
    @ivar plain_waiters: this side's plain messages awaiting a plain reply, oldest first.
    @ivar requests_received: requests and plain messages handled.
    """

    def __init__(
        self,
        service: ServiceTable | None,
        host: Host,
        owner: Any = None,
        limits: Limits | None = None,
    ) -> None:
        """
        @param service: answers the peer (L{None}: this side serves nothing).
        @param owner: passed to responders, which build a L{CallContext
            <jsonservice.service.CallContext>} from it.
        """
        self.limits = limits = limits or Limits()
        self._service = service
        self._table: dict[str, Responder] = service.responders if service is not None else {}
        self._host = host
        self._owner = owner
        self._framer = Framer(limits.max_line_length)
        self._max_depth = limits.max_depth
        self._flush_at = min(limits.max_unsent, FLUSH_AT)
        self._read_ahead = max(limits.max_line_length, FLUSH_AT)
        # Input: lines received but not yet handled (while held), and how
        # many at the front were already searched for responses.
        self._queue: list[bytes | LineTooLong] = []
        self._queue_bytes = 0
        # Whether a queued line may need the exact decoder: the framer's
        # flag of every read whose lines are queued (a line held back keeps
        # its own read's flag, not the latest read's); and whether those
        # flags covered integers past 64 bits (reads looked at while the
        # msgspec shapes were tried did not: such lines that reach orjson
        # are looked at one by one).
        self._exact = False
        self._big_checked = True
        self._peeked = 0
        self._pumping = False
        self._reading = True
        self._holds: set[str] = set()
        self._input_closed = False
        self._discard = False
        self._close_after_write = False
        self._finishing = False
        self._closed = False
        # Output gathered while handling input, written in one go (copied
        # into one buffer at once: orjson's outputs each hold heap).
        self._out: bytearray | None = None
        self._gathered_calls = 0
        # Traffic: bytes each way, and when a whole message last came or
        # went (the host's idle timeout reads it; L{stamp} is its clock,
        # L{None} when nothing reads it).
        self.bytes_in = 0
        self.bytes_out = 0
        self.active_at = 0.0
        self.stamp: Callable[[], float] | None = None
        # The peer's requests still running here, and replies held back.
        self._running: dict[Any, Task] = {}
        self._plain: deque[list[Any]] = deque()
        self._queued_replies = 0
        self._held_out = 0
        self._batches = 0
        # This side's calls.
        self.calls: dict[Any, Waiter] = {}
        self.plain_waiters: deque[Waiter] = deque()
        self._next_id = 1
        self.gate: Callable[[str | None], Responder | None] | None = None
        self.specials: dict[str, Responder] = {CANCEL_METHOD: self._cancel_request}
        self.observe: Callable[[str, str, float], None] | None = None
        self.requests_received = 0
        self._reports_left = LOGGED_PER_CONNECTION
        #: Where each line goes; a subclass of the host may route it through
        #: an override (C{lineReceived}) that calls L{handle_line} in turn.
        self.line_handler: Callable[[bytes], None] = self.handle_line
        self._value_handler: Callable[[Any], None] = self.handle_value
        self._own_values = True
        # Whether handle_line tries the request / success shapes first.
        self._shapes = True

    # -- state -------------------------------------------------------------

    @property
    def value_handler(self) -> Callable[[Any], None]:
        """
        Where each decoded value goes: L{handle_value}, or an override
        (C{valueReceived}) that calls it in turn.
        """
        return self._value_handler

    @value_handler.setter
    def value_handler(self, handler: Callable[[Any], None]) -> None:
        self._value_handler = handler
        self._own_values = self._shapes = handler == self.handle_value

    @property
    def busy(self) -> bool:
        """Whether anything received is not yet answered (running, queued or held back)."""
        return bool(self._running or self._queue or self._plain or self._batches)

    @property
    def running(self) -> int:
        """Handlers still running."""
        return len(self._running)

    @property
    def held_bytes(self) -> int:
        """
        Bytes this connection holds: buffered input, replies waiting their
        turn, and L{RUNNING_COST} per request still running (its Deferred,
        params and timer live on the heap until it is answered).
        """
        gathered = len(self._out) if self._out is not None else 0
        running = len(self._running) * RUNNING_COST
        return self._framer.buffered + self._queue_bytes + self._held_out + gathered + running

    @property
    def holds(self) -> frozenset[str]:
        """Why requests are not being started now (empty: they are)."""
        return frozenset(self._holds)

    @property
    def framer(self) -> Framer:
        """The framer (its unfinished line, for LineReceiver's C{clearLineBuffer})."""
        return self._framer

    def next_id(self) -> int:
        """The id for this side's next call."""
        id_ = self._next_id
        self._next_id = id_ + 1
        return id_

    # -- input -------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """
        Bytes from the peer.  A read that completes a line that is not
        blank is activity (L{active_at}); one that only adds to an
        unfinished line (a peer trickling bytes) or brings blank lines is not.
        """
        if self._input_closed:
            return
        self.bytes_in += len(data)
        framer = self._framer
        # Lines the msgspec shapes decode need no look for big integers.
        framer.big_ints = not self._shapes
        lines = framer.feed(data)
        if lines:
            if self.stamp is not None and (not data.isspace() or _any_message(lines)):
                self.active_at = self.stamp()
            if self._queue or self._pumping:
                # (While pumping, lines taken from the queue are still
                # running with the flags so far: each may only widen.)
                self._enqueue(lines)
                self._exact = self._exact or framer.may_need_exact
                self._big_checked = self._big_checked and framer.covers_big_ints
            else:
                self._queue = lines
                self._exact = framer.may_need_exact
                self._big_checked = framer.covers_big_ints
        self._pump()

    def receive_message(self, data: bytes, length: int | None = None) -> None:
        """
        One whole message from a transport that frames messages itself (a
        WebSocket message, an HTTP request body): handled exactly as one
        line, whatever bytes it holds (the newlines of a pretty-printed
        value are whitespace, not line ends).

        @param length: the message's full length when the transport kept
            only C{data}, its start, and skipped the rest (past the limit,
            so it is answered -32002 like a line that is too long).
        """
        if self._input_closed:
            return
        self.bytes_in += len(data) if length is None else length
        blank = length is None and (not data or data.isspace())
        if self.stamp is not None and not blank:
            self.active_at = self.stamp()  # a message, not a blank one, is activity
        limit = self._framer.max_line_length
        if (len(data) if length is None else length) > limit:
            self._enqueue([LineTooLong(limit)])
        else:
            # The framer did not see these bytes: let the decoder check for
            # numbers that need the exact path itself.
            self._exact = True
            self._enqueue([data])
        self._pump()

    def receive_eof(self) -> None:
        """
        The peer will send nothing more (it half-closed): handle what was
        received, a final unterminated value included, answer it all, then
        close.
        """
        if self._input_closed:
            return
        rest = self._framer.take_partial()
        if rest.strip():
            self._exact = True  # (one line: the decoder checks it itself)
            self._enqueue([rest])
        self._finishing = True
        self._pump()
        self._input_closed = True
        self._maybe_close()

    def finish(self) -> None:
        """Close once every running handler is answered (a drain)."""
        self._finishing = True
        self._maybe_close()

    def close_input(self) -> None:
        """Read nothing more: drop what is buffered and unread (a wrong token)."""
        self._input_closed = True
        self._discard = True
        self._queue = []
        self._queue_bytes = self._peeked = 0
        self._framer.take_partial()
        self._holds.add("closing")
        self._close_after_write = True
        if not self._pumping:
            self._host.close()

    def take_unread(self) -> bytes:
        """
        Remove and return everything received but not handled: the queued
        lines (each with a C{\\n}) and the unfinished one (LineReceiver's
        raw mode takes over from here).
        """
        lines = [line for line in self._queue if type(line) is bytes]
        self._queue = []
        self._queue_bytes = self._peeked = 0
        data = b"".join(line + b"\n" for line in lines)
        return data + self._framer.take_partial()

    def hold(self, reason: str) -> None:
        """Stop starting requests for C{reason} (the peer's responses are still read)."""
        self._holds.add(reason)
        if not self._pumping:
            self._check_reading()

    def release(self, reason: str) -> None:
        """C{reason} is gone: start requests again once no reason is left."""
        if reason in self._holds:
            self._holds.discard(reason)
            if not self._holds:
                self._pump()

    def _enqueue(self, lines: list[bytes | LineTooLong]) -> None:
        self._queue.extend(lines)
        self._queue_bytes += sum(len(x) for x in lines if type(x) is bytes)

    def _pump(self) -> None:
        """Handle queued lines until the queue is empty or a hold stops it."""
        if self._pumping or self._closed:
            return
        self._pumping = True
        out = bytearray()
        self._out = out
        self._gathered_calls = 0
        try:
            while True:
                if self._queue and not self._holds:
                    lines, peeked = self._queue, self._peeked
                    self._queue = []
                    self._queue_bytes = self._peeked = 0
                    self._run_lines(lines, peeked)
                    continue
                if self._queue and not self._discard:
                    self._peek()  # a response may release the hold
                    if self._queue and not self._holds:
                        continue
                break
            if not self._queue and not self._holds and not self._input_closed and self._framer.buffered:
                self._unterminated()
        finally:
            self._out = None
            self._pumping = False
            if not self._queue:
                # A line handled outside a read (a direct lineReceived call)
                # is checked for numbers needing the exact decoder itself.
                self._exact = True
        if out:
            self._send(bytes(out))
        if self._close_after_write:
            self._host.close()
            return
        self._check_reading()
        if self._finishing:
            self._maybe_close()

    def _run_lines(self, lines: list[bytes | LineTooLong], peeked: int) -> None:
        handle = self.line_handler
        flush_at = self._flush_at
        out = self._out
        for index, line in enumerate(lines):
            if self._holds:
                if self._discard:
                    return
                # Put the rest back in front, remembering how much of it
                # was already searched for responses.
                rest = lines[index:]
                rest.extend(self._queue)
                self._queue = rest
                self._peeked = max(0, peeked - index)
                self._queue_bytes = sum(len(x) for x in rest if type(x) is bytes)
                return
            if type(line) is bytes:
                handle(line)
            else:
                self._too_long(line)  # type: ignore[arg-type]
            if out is not None and len(out) >= flush_at:
                self._flush()

    def _peek(self) -> None:
        """
        While held, still handle the peer's responses and cancellations
        (a handler may be waiting on one of this side's calls); the rest
        waits its turn, in order.
        """
        queue = self._queue
        index = self._peeked
        while index < len(queue):
            line = queue[index]
            if type(line) is bytes and b'"jsonrpc"' in line:
                try:
                    value = loads(line, self._max_depth)
                except ParseError:
                    value = None
                if (
                    type(value) is dict
                    and "jsonrpc" in value
                    and ("result" in value or "error" in value or value.get("method") == CANCEL_METHOD)
                ):
                    del queue[index]
                    self._queue_bytes -= len(line)
                    self._value_handler(value)
                    continue
            index += 1
        self._peeked = index

    def _check_reading(self) -> None:
        """
        Stop reading while held (backpressure), unless this side awaits
        responses that a held handler may need, and in any case once too
        much input waits; read again below half of that.
        """
        waiting = self._queue_bytes + self._framer.buffered
        holds = self._holds
        # (A "raw" hold is LineReceiver's raw mode: its bytes still flow.)
        stop = waiting > self._read_ahead or (bool(holds) and holds != {"raw"} and not self.calls)
        if self._reading:
            if stop:
                self._reading = False
                self._host.reading(False)
        elif not stop and waiting <= self._read_ahead // 2:
            self._reading = True
            self._host.reading(True)

    def handle_line(self, line: bytes) -> None:
        """
        Decode one line (blank lines are ignored) and handle its value; a
        line that is not strict JSON is answered -32700.
        """
        if not line:
            return  # blank lines are ignored (and cost a flood next to nothing)
        exact = self._exact
        if self._shapes:
            # handle_value's first step, done while decoding: most lines are
            # requests (or, with calls out, success responses), and msgspec
            # checks their shape as it parses.  Anything else is None here
            # and takes the general path below; after such a line the
            # shapes are not tried again until a JSON-RPC message comes, so
            # a peer sending plain messages does not pay for two decodes.
            # (Typed Any: the shapes' defaults lie outside their fields'
            # types, which a compiled build of this module would check.)
            if self.calls:
                success: Any = decode_success(line, self._max_depth, exact)
                if success is not None and success.method is NO_ID and success.error is NO_ID:
                    self._success(success.id, success.result)
                    return
            request: Any = decode_request(line, self._max_depth, exact)
            if request is not None:
                self._request(request.method, request.params, request.id)
                return
            self._shapes = False
        if line.isspace():
            return
        try:
            value = loads(line, self._max_depth, exact, self._big_checked)
        except ParseError as exc:
            self._reply_in_order(self._error_line(None, exc))
            return
        if type(value) is dict and "jsonrpc" in value and self._own_values:
            self._shapes = True
        self._value_handler(value)

    def _too_long(self, event: LineTooLong) -> None:
        self._host.breached("max_line_length")
        error = MessageTooLarge(data={"max_line_length": event.limit})
        self._reply_in_order(self._error_line(None, error))

    def handle_value(self, value: Any) -> None:
        """Handle one decoded JSON value: request, notification, response, batch or plain message."""
        if type(value) is dict:
            parts = request_parts(value)
            if parts is not None:
                method, params, id_ = parts
                self._request(method, params, id_)
                return
        message = classify(value, self.limits.max_batch)
        kind = type(message)
        if kind is Response:
            self._response(message)  # type: ignore[arg-type]
        elif kind is Plain:
            self._plain_received(message.value)  # type: ignore[union-attr]
        elif kind is Batch:
            self._batch(message)  # type: ignore[arg-type]
        elif kind is Request:  # only from a subclass's classify
            req: Request = message  # type: ignore[assignment]
            self._request(req.method, req.params, req.id)
        else:
            invalid: Invalid = message  # type: ignore[assignment]
            if invalid.error.code == -32003:
                self._host.breached("max_batch")
            self._reply_in_order(self._error_line(invalid.id, invalid.error))

    # -- the one request path ----------------------------------------------

    def _call(self, method: str | None, params: Any, id_: Any, batch: _Batch | None, index: int) -> Any:
        """
        Run one request (C{method} L{None}: a plain message) through the
        gate and the responder table: its result, or L{_WAITING} when it
        goes on running as a L{Task} (a batch item's task knows its
        C{batch} and C{index}).

        @raise RPCError: unknown method, bad params, what the handler
            raised, or -32603 for any other exception (logged by the host).
        """
        self.requests_received += 1
        observe = self.observe
        started = time.perf_counter() if observe is not None else 0.0
        try:
            gate = self.gate
            if gate is None or (respond := gate(method)) is None:
                # (No method is named None: a plain message misses the table.)
                respond = self._table.get(method) or self._responder_for(method)  # type: ignore[arg-type]
            result = respond(params, id_, self._owner)
        except RPCError as error:
            if observe is not None:
                self._observe(method, outcome_of(error), started)
            raise
        except Exception as exc:
            internal = self._host.internal_error(exc, method or "message handler")
            if observe is not None:
                self._observe(method, "internal_error", started)
            raise internal from None
        if type(result) not in _JSON_TYPES:
            pending = self._host.pending(result)
            if pending is not None:
                self._start_task(method, id_, batch, index, started, pending)
                return _WAITING
        if observe is not None:
            self._observe(method, "ok", started)
        return result

    def _responder_for(self, method: str | None) -> Responder:
        """The responder of a plain message or a special method, when the table has none."""
        if method is None:
            respond = self._service.message_responder if self._service is not None else None
            if respond is None:
                raise _no_message_handler(self._service)
            return respond
        respond = self.specials.get(method)
        if respond is None:
            raise MethodNotFound(data=f"no method named {quote(method)}")
        return respond

    def _start_task(
        self, method: str | None, id_: Any, batch: _Batch | None, index: int, started: float, pending: Any
    ) -> None:
        running = self._running
        key = id_ if id_ is not NO_ID and id_ not in running else object()
        task = Task(method, id_, key, started)
        task.batch = batch
        task.index = index
        if method is None:
            # Its place in the reply order; it counts in flight as running
            # until done, then as a queued reply.
            task.slot = [_WAITING, 0]
            self._plain.append(task.slot)
        running[key] = task
        self._hold_at_cap()
        # The host may finish it at once (an already-fired Deferred).
        self._host.start(task, pending)

    def _request(self, method: str, params: Any, id_: Any) -> None:
        """One request, not in a batch: the hot path."""
        try:
            result = self._call(method, params, id_, None, 0)
        except RPCError as error:
            if id_ is not NO_ID:
                self._write(self._error_line(id_, error))
            return
        if id_ is not NO_ID and result is not _WAITING:
            self._write(self._result_line(id_, result, method))

    def complete(self, task: Task, value: Any) -> None:
        """A task finished with C{value}."""
        if not self._finished(task):
            return
        self._observe(task.method, "ok", task.started)
        if task.batch is not None:
            self._batch_reply(task.batch, task.index, task.id, value, None, task.method)
        elif task.slot is not None:
            self._plain_done(task.slot, value, None)
        elif task.id is not NO_ID:
            self._write(self._result_line(task.id, value, task.method))
        self._after_task()

    def fail(self, task: Task, error: BaseException | None) -> None:
        """A task failed with C{error} (L{None}: dropped, nothing to answer)."""
        if not self._finished(task):
            return
        if error is not None and not isinstance(error, RPCError):
            error = self._host.internal_error(error, task.method or "message handler")
        if error is not None:
            self._observe(task.method, outcome_of(error), task.started)
        if task.batch is not None:
            self._batch_reply(task.batch, task.index, task.id, None, error, task.method)
        elif task.slot is not None:
            self._plain_done(task.slot, None, error)
        elif task.id is not NO_ID and error is not None:
            self._write(self._error_line(task.id, error))
        self._after_task()

    def _finished(self, task: Task) -> bool:
        if self._running.get(task.key) is task:
            del self._running[task.key]
            return not self._closed
        return False

    def _after_task(self) -> None:
        if "in-flight" in self._holds and self.in_flight < self.limits.max_in_flight:
            self.release("in-flight")
        if self._finishing:
            self._maybe_close()

    def _observe(self, method: str | None, outcome: str, started: float) -> None:
        observe = self.observe
        if observe is None:
            return
        if method is None:
            name = "<message>"
        elif method in self._table or method in self.specials:
            name = method
        else:
            name = "<unknown>"  # metrics labels only for methods that exist
        observe(name, outcome, time.perf_counter() - started)

    def _result_line(self, id_: Any, result: Any, method: str | None) -> bytes:
        """The reply line for a result; a result that is not JSON becomes -32603."""
        try:
            return dumps_line({"jsonrpc": "2.0", "result": result, "id": id_}, result)
        except EncodeError as exc:
            error = self._host.internal_error(exc, f"reply to {quote(method)}")
            error.data["reason"] = f"result is not JSON-serializable: {exc}"
            return self._error_line(id_, error)

    def _error_line(self, id_: Any, error: RPCError) -> bytes:
        """The reply line for an error; error data that is not JSON becomes -32603."""
        try:
            return dumps_line({"jsonrpc": "2.0", "error": error.to_dict(), "id": id_})
        except EncodeError as exc:
            internal = self._host.internal_error(exc, f"error {error.code} reply")
            internal.data["reason"] = f"error data is not JSON-serializable: {exc}"
            return dumps_line({"jsonrpc": "2.0", "error": internal.to_dict(), "id": id_})

    def _plain_line(self, value: Any) -> bytes:
        try:
            return dumps_line(value)
        except EncodeError as exc:
            error = self._host.internal_error(exc, "message handler")
            error.data["reason"] = f"reply is not JSON-serializable: {exc}"
            return self._error_line(None, error)

    # -- this side's calls ---------------------------------------------------

    def _success(self, id_: Any, result: Any) -> None:
        """A success response (the client's hot path)."""
        waiter = self.calls.pop(id_, None) if type(id_) is int or type(id_) is str else None
        if waiter is None:
            self._response(Response(id_, result))
        else:
            waiter.resolve(result)

    def _response(self, response: Response) -> None:
        if response.error is None:
            waiter = self.calls.pop(response.id, None) if type(response.id) in (int, str) else None
            if waiter is not None:
                waiter.resolve(response.result)
                return
            self._report("Dropped a response to unknown id {id}", id=quote(response.id))
            return
        waiter = self.calls.pop(response.id, None) if type(response.id) in (int, str) else None
        if waiter is None and response.id is None:
            # This side's calls never use id null: an error with id null
            # answers the oldest plain message (no handler, parse error...),
            # or, with none waiting, the one call waiting (the peer refused
            # its line: too long, too deep); with several it cannot be told.
            if self.plain_waiters:
                waiter = self.plain_waiters.popleft()
            elif len(self.calls) == 1:
                waiter = self.calls.pop(next(iter(self.calls)))
        if waiter is None:
            if response.id is None:
                error = quote(response.error, 200)
                self._report("The peer reported an error: {error}", warn=True, error=error)
            else:
                self._report("Dropped a response to unknown id {id}", id=quote(response.id))
            return
        waiter.reject(response.error)

    def _cancel_request(self, params: Any, id_: Any, owner: Any) -> None:
        """C{$/cancelRequest}: cancel the peer's running request C{params["id"]}."""
        target = params.get("id") if type(params) is dict else None
        task = self._running.get(target) if type(target) in (str, int, float) else None
        if task is not None and type(task.id) is not type(target):
            # 1 and 1.0 are equal keys: the other one was keyed apart (rare).
            task = next(
                (t for t in self._running.values() if t.id == target and type(t.id) is type(target)),
                None,
            )
        if task is None:
            self._report("Cancel request for {id}, which is not running", id=quote(target))
            return
        self._host.cancel(task, RequestCancelled(data="cancelled by the caller"))

    def _report(self, message: str, warn: bool = False, **fields: Any) -> None:
        """
        Log one of the peer's unexpected messages, up to
        L{LOGGED_PER_CONNECTION} per connection (a peer sending them by the
        thousand, before authenticating too, does not flood the log).
        """
        left = self._reports_left
        if left <= 0:
            return
        self._reports_left = left - 1
        if left == 1:
            message += " (further such messages from this peer are not logged)"
        if warn:
            self._host.warn(message, **fields)
        else:
            self._host.log(message, **fields)

    # -- output --------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """
        Write bytes in order with the replies being written (this side's
        calls, notifications); while input is handled, every
        L{CALLS_PER_FLUSH}th sends what is gathered at once.
        """
        out = self._out
        if out is None:
            self._send(data)
            return
        out += data
        self._gathered_calls += 1
        if self._gathered_calls >= CALLS_PER_FLUSH:
            self._gathered_calls = 0
            self._flush()
            self._host.flush()

    def _write(self, data: bytes) -> None:
        out = self._out
        if out is not None:
            out += data
        else:
            self._send(data)

    def _flush(self) -> None:
        out = self._out
        if out:
            data = bytes(out)
            out.clear()
            self._send(data)

    def _send(self, data: bytes) -> None:
        """Hand bytes to the host, counted; a message out is activity too."""
        if self._closed:
            return
        self.bytes_out += len(data)
        if self.stamp is not None:
            self.active_at = self.stamp()
        self._host.write(data)

    # -- ending ----------------------------------------------------------------

    def _maybe_close(self) -> None:
        if (
            not self._closed
            and not self._running
            and not self._queue
            and not self._plain
            and not self._batches
            and not self._pumping
        ):
            self._host.close()

    def cancel_all(self, error: RPCError | None) -> int:
        """Cancel every running handler, each answered C{error} (L{None}: no reply)."""
        tasks = list(self._running.values())
        for task in tasks:
            self._host.cancel(task, error)
        return len(tasks)

    def connection_lost(self) -> list[Waiter]:
        """
        The connection is gone: cancel the handlers still running (nothing
        will be answered) and return this side's waiters, which the host fails.
        """
        self._closed = True
        self._input_closed = True
        self._queue = []
        self.cancel_all(None)
        self._plain.clear()
        self._queued_replies = self._held_out = self._batches = 0
        waiters: list[Waiter] = [*self.calls.values(), *self.plain_waiters]
        self.calls.clear()
        self.plain_waiters.clear()
        return waiters

    def deliver_unterminated(self) -> None:
        """
        The peer closed: a complete value left without a newline is still
        handled (a classic server's last reply).
        """
        if not self._input_closed and self._framer.buffered:
            self._unterminated()

    def _unterminated(self) -> None:
        """
        The unterminated-peer rule: an unfinished line holding one complete
        JSON text (the classic peer's value with no newline, waiting for
        its reply) is handled as a line.  One that can no longer become
        valid is answered -32700 and the rest of its line dropped.
        """
        framer = self._framer
        candidate = framer.unterminated()
        if candidate is None:
            return
        try:
            value = loads(candidate, self._max_depth)
        except ParseError as exc:
            framer.take_partial(discard_rest=True)
            self._reply_in_order(self._error_line(None, exc))
            return
        framer.take_partial()
        if self.stamp is not None:
            self.active_at = self.stamp()  # a whole message, with no line end yet
        self._value_handler(value)


def _any_message(lines: list[bytes | LineTooLong]) -> bool:
    """Whether a read's lines hold more than blank lines (one that only brings a line's end)."""
    return any(type(line) is not bytes or (line and not line.isspace()) for line in lines)


def _no_message_handler(service: object) -> RPCError:
    return InvalidRequest(data="this service takes JSON-RPC 2.0 only, not plain messages")

"""
Replies that wait their turn, for the connection core: batches (one array
once every item has its reply) and the replies to plain messages (in
arrival order, behind a slow handler).  Both count toward C{max_unsent}
and C{max_in_flight}.  Sans-IO; mixed into
L{Connection<jsonservice.connection.Connection>}.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Final

from .errors import MessageTooLarge, RequestCancelled, RPCError, Unauthorized
from .jsonrpc import NO_ID, Invalid, Request, Response
from .jsonrpc import Batch as BatchMessage
from .limits import Limits

if TYPE_CHECKING:
    from .interfaces import Host, ServiceTable, Waiter

__all__ = ["WAITING", "Batch", "Replies", "quote"]

#: A reply slot whose handler is still running.
WAITING: Final = object()

#: Why a batch's requests after a wrong token get -32004, and those running then -32800.
_NOT_RUN: Final = "not run: a wrong token earlier in this batch ends the connection"
_CUT: Final = "cancelled: a wrong token later in this batch ends the connection"


def quote(value: object, limit: int = 80) -> str:
    """C{repr(value)} cut to C{limit} characters: for log lines that quote peer data."""
    text = repr(value)
    if len(text) <= limit:
        return text
    suffix = f"...({len(text)} chars)"
    return text[: max(0, limit - len(suffix))] + suffix


class Batch:
    """The replies of one batch, collected until every item has one."""

    __slots__ = ("nbytes", "replies", "waiting")

    def __init__(self, size: int) -> None:
        self.replies: list[bytes | None] = [None] * size
        self.waiting = size
        self.nbytes = 0


class Replies:
    """
    The batch and plain-message half of the connection core (a mixin: the
    attributes below are the core's).
    """

    limits: Limits
    _host: Host
    _service: ServiceTable | None
    _holds: set[str]
    _plain: deque[list[Any]]
    _queued_replies: int
    _held_out: int
    _batches: int
    _discard: bool
    plain_waiters: deque[Waiter]
    # The core's methods this half calls: stubs here (methods, not
    # Callable attributes, so that a compiled build of the core, mypyc,
    # sees them as methods).

    def _write(self, data: bytes) -> None:
        raise NotImplementedError

    def _call(self, method: str | None, params: Any, id_: Any, batch: Batch | None, index: int) -> Any:
        raise NotImplementedError

    def _result_line(self, id_: Any, result: Any, method: str | None) -> bytes:
        raise NotImplementedError

    def _error_line(self, id_: Any, error: RPCError) -> bytes:
        raise NotImplementedError

    def _plain_line(self, value: Any) -> bytes:
        raise NotImplementedError

    def _response(self, response: Response) -> None:
        raise NotImplementedError

    def release(self, reason: str) -> None:
        """Start requests again once no reason to hold is left (the core's)."""
        raise NotImplementedError

    def _report(self, message: str, warn: bool = False, **fields: Any) -> None:
        raise NotImplementedError

    _running: dict[Any, Any]

    @property
    def in_flight(self) -> int:
        """Requests and plain messages accepted and not yet answered."""
        return len(self._running) + self._queued_replies

    # -- batches -----------------------------------------------------------

    def _batch(self, batch: BatchMessage) -> None:
        items = batch.items
        collected = Batch(len(items))
        self._batches += 1
        unrun = len(items)
        for index, item in enumerate(items):
            if self._discard:
                unrun = index
                break
            kind = type(item)
            if kind is Request:
                req: Request = item  # type: ignore[assignment]
                try:
                    result = self._call(req.method, req.params, req.id, collected, index)
                except RPCError as error:
                    self._batch_reply(collected, index, req.id, None, error, req.method, write=False)
                    continue
                if result is not WAITING:
                    self._batch_reply(collected, index, req.id, result, None, req.method, write=False)
            else:
                if kind is Response:
                    self._response(item)  # type: ignore[arg-type]
                else:
                    invalid: Invalid = item  # type: ignore[assignment]
                    self._batch_reply(collected, index, invalid.id, None, invalid.error, None, write=False)
                    continue
                self._batch_reply(collected, index, NO_ID, None, None, None, write=False)
        if self._discard and collected.waiting:
            self._cut_short(collected, items, unrun)
        if not collected.waiting:
            self._write_batch(collected)

    def _cut_short(self, collected: Batch, items: list[Any], index: int) -> None:
        """
        A wrong token ran before C{items[index]}: nothing from there runs,
        and the batch reply goes out now (then the close), answering every
        request of it: what was answered, the invalid items from there their
        error, the requests from there -32004 "not run", and those still
        running -32800.
        """
        for at, item in enumerate(items):
            if collected.replies[at] is not None:
                continue
            kind = type(item)
            if kind is Request:
                req: Request = item
                if req.id is not NO_ID:
                    error: RPCError = (
                        Unauthorized(data=_NOT_RUN) if at >= index else RequestCancelled(data=_CUT)
                    )
                    collected.replies[at] = self._error_line(req.id, error)
            elif kind is Invalid and at >= index:
                invalid: Invalid = item
                collected.replies[at] = self._error_line(invalid.id, invalid.error)
        collected.waiting = 0

    def _batch_reply(
        self,
        collected: Batch,
        index: int,
        id_: Any,
        value: Any,
        error: RPCError | None,
        method: str | None,
        write: bool = True,
    ) -> None:
        if collected.waiting <= 0:
            return  # a wrong token cut the batch short: its reply went out
        if id_ is not NO_ID:
            if error is None and collected.nbytes > self.limits.max_unsent:
                # The reply would grow past what one connection may queue.
                error = MessageTooLarge(data={"max_unsent": self.limits.max_unsent, "reason": "batch reply"})
                self._host.breached("max_unsent")
            line = (
                self._error_line(id_, error) if error is not None else self._result_line(id_, value, method)
            )
            collected.replies[index] = line
            collected.nbytes += len(line)
            self._held_out += len(line)
        collected.waiting -= 1
        if write and not collected.waiting:
            self._write_batch(collected)
        else:
            self._check_held()

    def _write_batch(self, collected: Batch) -> None:
        self._batches -= 1
        self._held_out -= collected.nbytes
        lines = [line[:-1] for line in collected.replies if line is not None]
        if lines:
            self._write(b"[" + b",".join(lines) + b"]\n")
        self._check_held()

    # -- plain messages ----------------------------------------------------

    def _plain_received(self, value: Any) -> None:
        if self.plain_waiters:
            # A reply to this side's send(): replies come in order.
            self.plain_waiters.popleft().resolve(value)
            return
        if self._service is None:
            self._report("Dropped a plain message nobody asked for: {value}", value=quote(value))
            return
        try:
            result = self._call(None, [value], None, None, 0)
        except RPCError as error:
            self._reply_in_order(self._error_line(None, error))
            return
        if result is WAITING:
            return
        if result is not None:
            self._reply_in_order(self._plain_line(result))
        elif self._plain:
            self._plain.append([None, 1])
            self._queued_replies += 1

    def _plain_done(self, slot: list[Any], value: Any, error: RPCError | None) -> None:
        if error is not None:
            data: bytes | None = self._error_line(None, error)
        else:
            data = None if value is None else self._plain_line(value)
        slot[0] = data
        slot[1] = 1
        self._queued_replies += 1
        if data is not None:
            self._held_out += len(data)
        plain = self._plain
        while plain and plain[0][0] is not WAITING:
            done, count = plain.popleft()
            self._queued_replies -= count
            if done:
                self._held_out -= len(done)
                self._write(bytes(done))
        self._check_held()

    def _reply_in_order(self, data: bytes) -> None:
        """Write a reply to a plain (or unparsable) line after the ones before it."""
        plain = self._plain
        if not plain:
            self._write(data)
            return
        last = plain[-1]
        if last[0] is not WAITING and last[0] is not None:
            # Coalesce finished replies: one buffer, not one object each.
            if type(last[0]) is not bytearray:
                last[0] = bytearray(last[0])
            last[0] += data
            last[1] += 1
        else:
            plain.append([data, 1])
        self._queued_replies += 1
        self._held_out += len(data)
        self._hold_at_cap()
        self._check_held()

    def _hold_at_cap(self) -> None:
        """At C{max_in_flight} (running plus queued replies): start nothing more."""
        if self.in_flight >= self.limits.max_in_flight and "in-flight" not in self._holds:
            self._holds.add("in-flight")
            self._host.breached("max_in_flight")

    def _check_held(self) -> None:
        """Replies held back past C{max_unsent}: start nothing more until they go."""
        over = self._held_out > self.limits.max_unsent
        if over and "queued" not in self._holds:
            self._holds.add("queued")
            self._host.breached("max_unsent")
        elif not over and "queued" in self._holds:
            self.release("queued")
        if "in-flight" in self._holds and self.in_flight < self.limits.max_in_flight:
            self.release("in-flight")

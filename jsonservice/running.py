"""
The peer's requests and plain messages whose handlers are still running on
this side: how many are in flight (pausing the peer at the cap), their
request timeouts, and their cancellation (by the caller, at shutdown, or
because the connection is gone).

L{RunningHandlers} is owned by a L{JSONProtocol<jsonservice.protocol.JSONProtocol>}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

from .errors import RequestCancelled, RequestTimeout, RPCError
from .jsonrpc import NO_ID
from .observers import outcome_of
from .service import internal_error

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall

    from .protocol import JSONProtocol

__all__ = ["Dropped", "Running", "RunningHandlers"]


class Dropped(Exception):
    """A handler cancelled because its connection is gone: no reply."""


class Running:
    """
    One handler that has not finished.

    @ivar key: its key in the table: the request id, or a fresh object for
        a notification, a plain message or a duplicate id.
    @ivar reason: why this side cancelled it (the error to answer), if it did.
    @ivar started: when it started (C{time.perf_counter}), for observers.
    """

    __slots__ = ("deferred", "key", "reason", "started", "timer")

    def __init__(self, deferred: Deferred[Any], key: Any, started: float) -> None:
        self.deferred = deferred
        self.key = key
        self.started = started
        self.reason: BaseException | None = None
        self.timer: IDelayedCall | None = None


class RunningHandlers:
    """
    The handlers running for one connection's peer.

    @ivar table: the running handlers by key (read by the protocol).
    """

    def __init__(self, proto: JSONProtocol) -> None:
        self._proto = proto
        self.table: dict[Any, Running] = {}

    def __len__(self) -> int:
        return len(self.table)

    def key_for(self, id_: Any) -> Any:
        """The key for a handler of request C{id_} (L{NO_ID}: a notification)."""
        return id_ if id_ is not NO_ID and id_ not in self.table else object()

    def track(self, d: Deferred[Any], key: Any, what: str, started: float = 0.0) -> Deferred[Any]:
        """
        Watch a running handler: count it in flight (pausing the peer at
        the cap), time it out, let it be cancelled.

        @param what: the method name (or C{"<message>"}), for logs and observers.
        @return: C{d}, whose failures now come out as L{RPCError} (or
            L{Dropped}: send nothing).
        """
        proto = self._proto
        running = Running(d, key, started)
        self.table[key] = running
        limits = proto.limits
        if len(self.table) >= limits.max_in_flight and not proto._calls:
            # Not while this side awaits replies: its handlers may be
            # waiting for them, and a paused connection never reads them.
            proto._flow.pause("in-flight")
            proto._breached("max_in_flight")
        if limits.request_timeout:
            running.timer = proto.clock.callLater(limits.request_timeout, self._expire, running)
        return d.addBoth(self._finished, running, what)

    def _finished(self, result: Any, running: Running, what: str) -> Any:
        if self.table.get(running.key) is running:
            del self.table[running.key]
        timer = running.timer
        if timer is not None and timer.active():
            timer.cancel()
        proto = self._proto
        proto._handler_finished()
        if isinstance(result, Failure):
            if running.reason is not None:
                result = Failure(running.reason)
            elif result.check(CancelledError):
                result = Failure(RequestCancelled(data="the handler was cancelled"))
            elif not result.check(RPCError):
                result = Failure(internal_error(result, what))
            if proto._observers and not result.check(Dropped):
                proto._observe(what, outcome_of(result.value), running.started)
            return result
        if proto._observers:
            proto._observe(what, "ok", running.started)
        return result

    def _expire(self, running: Running) -> None:
        proto = self._proto
        proto._breached("request_timeout")
        running.timer = None
        running.reason = RequestTimeout(data={"request_timeout": proto.limits.request_timeout})
        running.deferred.cancel()

    def cancel(self, id_: Any, error: BaseException) -> bool:
        """Cancel the handler of request C{id_}, to be answered C{error}."""
        running = self.table.get(id_) if isinstance(id_, (str, int, float)) else None
        if running is None:
            return False
        running.reason = error
        running.deferred.cancel()
        return True

    def cancel_all(self, error: BaseException) -> int:
        """Cancel every running handler, each to be answered C{error}."""
        running = list(self.table.values())
        for item in running:
            item.reason = error
            item.deferred.cancel()
        return len(running)

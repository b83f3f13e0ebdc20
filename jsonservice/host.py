"""
L{TwistedHost}: the connection core's L{Host<jsonservice.interfaces.Host>}
in Twisted — writes go to the transport, pending results are Deferreds
(coroutines are wrapped), each running one has its request timeout, and
cancellation goes through C{Deferred.cancel}.
"""

from __future__ import annotations

from types import CoroutineType
from typing import TYPE_CHECKING, Any, Final

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

from .errors import RequestCancelled, RequestTimeout, RPCError
from .service import internal_error

if TYPE_CHECKING:
    from .interfaces import Task
    from .protocol import JSONProtocol

__all__ = ["TwistedHost"]

#: A task cancelled because its connection is gone: answer nothing.
_DROPPED: Final = object()


class TwistedHost:
    """
    What the connection core asks of Twisted, for one L{JSONProtocol}: the
    transport, Deferreds and their request timeouts, cancellation, logs.
    """

    __slots__ = ("_proto",)

    def __init__(self, proto: JSONProtocol) -> None:
        self._proto = proto

    def write(self, data: bytes) -> None:
        proto = self._proto
        if proto._closed or proto.transport is None:
            return
        proto.transport.write(data)
        watch = proto._watch
        if watch.backed_up:
            watch.check()
        budget = proto._budget
        if budget is not None and (watch.backed_up or proto in budget.charged):
            budget.charge(proto)

    def flush(self) -> None:
        self._proto._watch.send_now()

    @staticmethod
    def pending(result: Any) -> Deferred[Any] | None:
        if isinstance(result, Deferred):
            return result
        if result.__class__ is CoroutineType:
            return Deferred.fromCoroutine(result)
        return None

    def start(self, task: Task, pending: Deferred[Any]) -> None:
        proto = self._proto
        seconds = proto.limits.request_timeout
        timer = proto.clock.callLater(seconds, self._expire, task) if seconds else None
        task.handle = [pending, timer, None]  # the Deferred, its timer, why this side cancelled it
        pending.addCallbacks(self._done, self._failed, callbackArgs=(task,), errbackArgs=(task,))

    def _done(self, value: Any, task: Task) -> None:
        self._stop(task)
        self._proto._core.complete(task, value)
        self._recharge()

    def _failed(self, failure: Failure, task: Task) -> None:
        reason = self._stop(task)
        if reason is not None:
            error: Any = None if reason is _DROPPED else reason
        elif failure.check(CancelledError):
            error = RequestCancelled(data="the handler was cancelled")
        elif failure.check(RPCError):
            error = failure.value
        else:
            error = failure
        self._proto._core.fail(task, error)
        self._recharge()

    def _recharge(self) -> None:
        # A finished request no longer counts in the server-wide budget,
        # even when it wrote nothing (a notification).
        proto = self._proto
        budget = proto._budget
        if budget is not None and proto in budget.charged:
            budget.charge(proto)

    @staticmethod
    def _stop(task: Task) -> Any:
        _, timer, reason = task.handle
        if timer is not None and timer.active():
            timer.cancel()
        return reason

    def _expire(self, task: Task) -> None:
        proto = self._proto
        proto._breached("request_timeout")
        task.handle[1] = None
        self.cancel(task, RequestTimeout(data={"request_timeout": proto.limits.request_timeout}))

    @staticmethod
    def cancel(task: Task, error: RPCError | None) -> None:
        if task.handle[2] is None:
            task.handle[2] = _DROPPED if error is None else error
        task.handle[0].cancel()

    @staticmethod
    def internal_error(error: Any, what: str) -> RPCError:
        return internal_error(error if isinstance(error, Failure) else Failure(error), what)

    def close(self) -> None:
        self._proto._close()

    def reading(self, on: bool) -> None:
        self._proto._pause_reading("input", not on)

    def breached(self, limit: str) -> None:
        self._proto._breached(limit)

    def log(self, fmt: str, **fields: Any) -> None:
        self._proto._log.info(fmt, **fields)

    def warn(self, fmt: str, **fields: Any) -> None:
        self._proto._log.warn(fmt, **fields)

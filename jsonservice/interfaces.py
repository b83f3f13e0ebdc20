"""
The interfaces of the connection core (sans-IO): what it asks of the I/O
layer around it (L{Host}), of the service (L{ServiceTable}) and of this
side's waiting calls (L{Waiter}), and the L{Task} record of a handler that
goes on running.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import RPCError
    from .replies import Batch

__all__ = ["Host", "Responder", "ServiceTable", "Task", "Waiter"]

#: A handler wrapped for the core: C{respond(params, id, owner)}.
Responder = Callable[[Any, Any, Any], Any]


class ServiceTable(typing.Protocol):
    """What the core needs of a L{JSONService<jsonservice.service.JSONService>}."""

    #: Responders by method name (updated in place on registration).
    responders: dict[str, Responder]

    @property
    def message_responder(self) -> Responder | None:
        """The plain-message handler's responder, if any."""


class Waiter(typing.Protocol):
    """One of this side's calls or plain messages awaiting its reply."""

    #: The method called (L{None}: a plain message).
    method: str | None

    def resolve(self, value: Any) -> None:
        """The reply came: C{value}."""

    def reject(self, error: BaseException) -> None:
        """The peer answered with an error (or the connection is gone)."""


class Host(typing.Protocol):
    """What the core asks of the I/O layer around it (see L{protocol<jsonservice.protocol>})."""

    def write(self, data: bytes) -> None:
        """Send bytes to the peer (an event loop may send them at its next turn)."""

    def flush(self) -> None:
        """Send what was written now, not at the event loop's next turn (or do nothing)."""

    def pending(self, result: Any) -> Any:
        """
        If a handler's C{result} is not a value yet (a Deferred, a
        coroutine), return what to wait on; else L{None}.
        """

    def start(self, task: Task, pending: Any) -> None:
        """
        Wait for C{pending} (from L{pending}), then call
        L{Connection.complete} or L{Connection.fail} with C{task}.
        """

    def cancel(self, task: Task, error: RPCError | None) -> None:
        """Cancel a running task; it fails with C{error} (L{None}: no reply)."""

    def internal_error(self, error: BaseException, what: str) -> RPCError:
        """Log an unexpected failure; return the -32603 error to send."""

    def close(self) -> None:
        """Close the connection once what was written is flushed."""

    def reading(self, on: bool) -> None:
        """Stop (C{False}) or resume (C{True}) reading from the peer."""

    def breached(self, limit: str) -> None:
        """A limit was hit (for metrics and logs)."""

    def log(self, fmt: str, **fields: Any) -> None:
        """Log an event (a C{twisted.logger} format; peer data in C{fields} already L{quote}d)."""

    def warn(self, fmt: str, **fields: Any) -> None:
        """Like L{log}, for what an operator should look at."""


class Task:
    """
    One handler that did not finish at once.

    @ivar id: the request id (L{NO_ID}: a notification; L{None} for a plain message).
    @ivar method: the method name (L{None}: a plain message).
    @ivar handle: the host's own record of it (a Deferred and a timer, say).
    """

    __slots__ = ("batch", "handle", "id", "index", "key", "method", "slot", "started")

    def __init__(self, method: str | None, id_: Any, key: Any, started: float) -> None:
        self.method = method
        self.id = id_
        self.key = key
        self.started = started
        self.handle: Any = None
        self.batch: Batch | None = None
        self.index = 0
        self.slot: list[Any] | None = None

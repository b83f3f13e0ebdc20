"""
Output backpressure for one connection: a push producer registered with the
transport, separate from the protocol (whose C{pauseProducing} keeps
LineReceiver's meaning: stop delivering lines).

Past the transport's high-water mark the watch compares the unsent bytes
with C{max_unsent}; over it, the connection core starts no more requests
until the output drains, and a connection whose output stays stalled past
the write-stall timeout is aborted.  The watch also makes sure a close
requested while it was paused completes (Twisted's C{doWrite} resumes a
paused producer I{instead of} finishing a pending C{loseConnection}).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IPushProducer, ISSLTransport
from twisted.logger import Logger
from zope.interface import implementer

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall

    from .protocol import JSONProtocol

__all__ = ["OutputWatch", "unsent_bytes"]

_log = Logger(namespace="jsonservice.protocol")


def unsent_bytes(transport: Any) -> int | None:
    """
    Bytes a transport holds unsent, for Twisted's C{FileDescriptor}
    transports (TCP, UNIX); L{None} when it cannot be told.
    """
    try:
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen  # type: ignore[no-any-return]
    except (AttributeError, TypeError):
        return None


@implementer(IPushProducer)
class OutputWatch:
    """
    The producer one L{JSONProtocol} registers with its transport.

    @ivar backed_up: the transport said its output passed its high-water mark.
    """

    def __init__(self, proto: JSONProtocol) -> None:
        self._proto = proto
        self._watched: Any = None
        self.backed_up = False
        self._holding = False
        self._stall_timer: IDelayedCall | None = None

    def register(self) -> None:
        """Register with the transport (the TCP one under TLS)."""
        proto = self._proto
        transport: Any = proto.transport
        if ISSLTransport.providedBy(transport) and hasattr(transport, "transport"):
            # A TLS transport will not close while a producer is registered
            # with it (ITransport.loseConnection); watch the connection
            # under it instead, which counts the same bytes, encrypted.
            transport = transport.transport
        if hasattr(transport, "bufferSize"):
            # The transport pauses its producer once bufferSize bytes are
            # unsent.  Only ever lower it: a TCP connection also recv()s that
            # many bytes per read.  Past it, check() compares with max_unsent.
            transport.bufferSize = min(transport.bufferSize, proto.limits.max_unsent)
        self._watched = transport
        with contextlib.suppress(RuntimeError):  # another producer is registered already
            transport.registerProducer(self, True)

    def unregister(self) -> None:
        """Let go of the transport (before closing it, so the close completes)."""
        watched, self._watched = self._watched, None
        if watched is not None and getattr(watched, "producer", self) is self:
            watched.unregisterProducer()
        self._stop_timer()

    def send_now(self) -> None:
        """
        Send what the transport holds now, not when the reactor next finds
        the socket writable: C{doWrite} of Twisted's C{FileDescriptor}
        transports writes what the socket takes and keeps the rest for the
        reactor (other transports send in their own time).  Not while
        closing: C{doWrite} would then finish the close behind the reactor.
        An error is left for the reactor, which meets it at its next turn.
        """
        watched = self._watched
        if watched is not None and not watched.disconnecting and hasattr(watched, "doWrite"):
            watched.doWrite()

    @property
    def unsent(self) -> int:
        """
        Bytes written and not yet sent, once past the transport's high-water
        mark (below it, at most C{max_unsent}: not worth a look per write);
        0 when the transport cannot tell.
        """
        return (unsent_bytes(self._watched) or 0) if self.backed_up else 0

    def pauseProducing(self) -> None:
        """The transport's output passed its high-water mark."""
        self.backed_up = True
        self.check()

    def check(self) -> None:
        """While backed up: past C{max_unsent} unsent bytes, hold the core and time the stall."""
        if not self.backed_up or self._holding:
            return
        proto = self._proto
        unsent = unsent_bytes(self._watched)
        if unsent is not None and unsent <= proto.limits.max_unsent:
            return
        self._holding = True
        proto._core.hold("output")
        proto._breached("max_unsent")
        stall = proto.limits.write_stall_timeout
        if stall and self._stall_timer is None and not proto._closed:
            self._stall_timer = proto.clock.callLater(stall, self._stalled)

    def room_for(self, size: int, backlog: int) -> bool:
        """
        Whether C{size} more bytes (an event) keep the unsent output within
        C{backlog} and C{max_unsent}: events are dropped rather than queued
        past it.  Empty output always takes one.  A transport that cannot
        tell has room until it says it is backed up.
        """
        unsent = unsent_bytes(self._watched)
        if unsent is None:
            return not self.backed_up
        return unsent == 0 or unsent + size <= min(backlog, self._proto.limits.max_unsent)

    def lagging(self) -> None:
        """
        Events are being dropped for this connection: time the stall, so a
        subscriber that never reads again is aborted after the write-stall
        timeout (its output draining cancels that).
        """
        proto = self._proto
        stall = proto.limits.write_stall_timeout
        if stall and self._stall_timer is None and not proto._closed:
            self._stall_timer = proto.clock.callLater(stall, self._stalled)

    def caught_up(self) -> None:
        """Events are written again: a stall timed by L{lagging} is over, unless still backed up."""
        if not self.backed_up and not self._holding:
            self._stop_timer()

    def resumeProducing(self) -> None:
        """The transport's output drained: start requests again."""
        watched = self._watched
        if watched is not None and getattr(watched, "disconnecting", False):
            # Closing: step aside so the next doWrite finishes the close.
            self.unregister()
            with contextlib.suppress(AttributeError):
                watched.startWriting()
            return
        self.backed_up = False
        self._stop_timer()
        if self._holding:
            self._holding = False
            self._proto._core.release("output")

    def stopProducing(self) -> None:
        """The transport is going away; the protocol's C{connectionLost} cleans up."""
        self._stop_timer()

    def _stop_timer(self) -> None:
        if self._stall_timer is not None and self._stall_timer.active():
            self._stall_timer.cancel()
        self._stall_timer = None

    def _stalled(self) -> None:
        self._stall_timer = None
        if not self.backed_up and not self._holding:
            # Timed by lagging() below the transport's high-water mark: the
            # output drained since (no resumeProducing tells of that then).
            return
        proto = self._proto
        proto._breached("write_stall_timeout")
        _log.warn(
            "Aborting connection from {peer}: its output stayed stalled for {stall}s",
            peer=proto.peer,
            stall=proto.limits.write_stall_timeout,
        )
        proto.transport.abortConnection()  # type: ignore[union-attr]

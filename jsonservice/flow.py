"""
Backpressure for one connection: why its reading is paused, and the watch
on its unsent output.

Reading pauses for any of several reasons at once (too many requests in
flight, output piling up because the peer does not read) and resumes only
when none is left.  The output watch uses Twisted's producer machinery:
the connection registers with its transport as a streaming producer, and
past the transport's high-water mark compares the unsent bytes with
C{max_unsent} itself.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import ISSLTransport
from twisted.logger import Logger

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall

    from .protocol import JSONProtocol

__all__ = ["FlowControl", "unsent_bytes"]

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


class FlowControl:
    """
    The pause state of one L{JSONProtocol}'s reading.

    @ivar reasons: why reading is paused now (C{"in-flight"}, C{"output"});
        empty while reading.
    """

    def __init__(self, proto: JSONProtocol) -> None:
        self._proto = proto
        self.reasons: set[str] = set()
        self._watched: Any = None
        self._backed_up = False
        self._stall_timer: IDelayedCall | None = None

    def watch_output(self) -> None:
        """Register the connection as its transport's streaming producer."""
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
            # many bytes per read, and a 4 MiB read buffer makes every read
            # slow.  Past it, check_output compares with max_unsent itself.
            transport.bufferSize = min(transport.bufferSize, proto.limits.max_unsent)
        self._watched = transport
        with contextlib.suppress(RuntimeError):  # another producer is registered already
            transport.registerProducer(proto, True)

    def pause(self, reason: str) -> None:
        """Stop reading (if not stopped already) for C{reason}."""
        if not self.reasons:
            proto = self._proto
            proto.paused = True
            if proto.transport is not None:
                proto.transport.pauseProducing()  # type: ignore[attr-defined]
        self.reasons.add(reason)

    def resume(self, reason: str) -> None:
        """C{reason} is gone: read again if it was the last one."""
        self.reasons.discard(reason)
        proto = self._proto
        if self.reasons or proto.transport is None or proto._closed:
            return
        proto.paused = False
        proto.transport.resumeProducing()  # type: ignore[attr-defined]
        proto._read_buffered()

    def output_backed_up(self) -> None:
        """The transport says its output passed its high-water mark."""
        self._backed_up = True
        self.check_output()

    def check_output(self) -> None:
        """
        While output is backed up: past C{max_unsent} unsent bytes, stop
        reading and start the write-stall timer.
        """
        if not self._backed_up or "output" in self.reasons:
            return
        proto = self._proto
        unsent = unsent_bytes(self._watched)
        if unsent is not None and unsent <= proto.limits.max_unsent:
            return
        self.pause("output")
        proto._breached("max_unsent")
        stall = proto.limits.write_stall_timeout
        if stall and self._stall_timer is None and not proto._closed:
            self._stall_timer = proto.clock.callLater(stall, self._stalled)

    def output_drained(self) -> None:
        """The transport's output drained: read again."""
        self._backed_up = False
        self.stop()
        self.resume("output")

    def stop(self) -> None:
        """Cancel the write-stall timer."""
        if self._stall_timer is not None and self._stall_timer.active():
            self._stall_timer.cancel()
        self._stall_timer = None

    def _stalled(self) -> None:
        self._stall_timer = None
        proto = self._proto
        proto._breached("write_stall_timeout")
        _log.warn(
            "Aborting connection from {peer}: its output stayed stalled for {stall}s",
            peer=proto.peer,
            stall=proto.limits.write_stall_timeout,
        )
        proto.transport.abortConnection()  # type: ignore[union-attr]

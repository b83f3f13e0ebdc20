"""
Bounds on what a C{twisted.web} site reads, for the JSON-RPC resource of
L{jsonservice.web}: request bodies past the line limit are not kept, and a
request must arrive whole within the idle timeout (L{harden_site}).
"""

from __future__ import annotations

from io import BytesIO
from typing import TYPE_CHECKING, Any, Final

from twisted.internet.error import ConnectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel, _GenericHTTPChannelProtocol
from twisted.web.server import Request, Site

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall

    from .server import JSONServerFactory

__all__ = ["BodyLimitedRequest", "harden_site"]

_log = Logger(namespace="jsonservice.web")
_DONE: Final = Failure(ConnectionDone())


class BodyLimitedRequest(Request):
    """
    A C{twisted.web} request that keeps at most its site's C{max_body_size}
    bytes of body: past it, the rest is read and dropped, and the resource
    answers 413 with -32002, as the line protocol skips a line that is too
    long and goes on.  Installed by L{harden_site}.

    @ivar body_length: the bytes of body received.
    """

    def __init__(self, channel: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(channel, *args, **kwargs)  # type: ignore[no-untyped-call]
        self._limit: int | None = getattr(getattr(channel, "site", None), "max_body_size", None)
        self.body_length = 0

    def gotLength(self, length: int | None) -> None:
        """Keep the body in memory: it is bounded by the limit."""
        if self._limit is None:
            super().gotLength(length)  # type: ignore[no-untyped-call]
        else:
            self.content = BytesIO()

    def handleContentChunk(self, data: bytes) -> None:
        """Keep a chunk of body, or drop it once the body is over the limit."""
        self.body_length += len(data)
        limit = self._limit
        content: Any = self.content
        if limit is None or self.body_length <= limit:
            content.write(data)
        elif content.tell():
            self.content = BytesIO()  # over: keep nothing of it


class _DeadlineChannel(HTTPChannel):
    """
    An HTTP channel whose requests must arrive whole — request line,
    headers and body — within its site's C{request_deadline} seconds of
    their first byte, or the connection is aborted: twisted.web's own
    timeout restarts at every byte, so a slowloris peer trickling a request
    would hold the connection for ever (on a line connection, the bytes of
    an unfinished line are not activity either).
    """

    _deadline: IDelayedCall | None = None

    def dataReceived(self, data: bytes) -> None:
        if self._deadline is None and not self._handlingRequest:
            seconds = getattr(getattr(self, "site", None), "request_deadline", 0)
            if seconds:
                call_later: Any = self.callLater
                self._deadline = call_later(seconds, self._too_slow, seconds)
        super().dataReceived(data)  # type: ignore[no-untyped-call]

    def allContentReceived(self) -> None:
        self._stop_deadline()
        super().allContentReceived()  # type: ignore[no-untyped-call]

    def connectionLost(self, reason: Failure = _DONE) -> None:
        self._stop_deadline()
        super().connectionLost(reason)  # type: ignore[no-untyped-call]

    def _stop_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _too_slow(self, seconds: float) -> None:
        self._deadline = None
        transport: Any = self.transport
        _log.info(
            "Closing HTTP connection from {peer}: its request did not arrive whole within {seconds}s",
            peer=transport.getPeer() if transport is not None else None,
            seconds=seconds,
        )
        if transport is not None:
            transport.abortConnection()


def _deadline_channel() -> Any:
    # What twisted.web's Site builds (a wrapper that can switch to HTTP/2
    # under TLS), around the channel with the deadline.
    return _GenericHTTPChannelProtocol(_DeadlineChannel())  # type: ignore[no-untyped-call]


def harden_site(site: Site, factory: JSONServerFactory) -> Site:
    """
    Bound what C{site} reads, from C{factory}'s limits: request bodies past
    C{max_line_length} are not kept (L{BodyLimitedRequest}), a request
    must arrive whole within C{idle_timeout} of its first byte, and an idle
    connection is closed after C{idle_timeout} (twisted.web's own default
    is 12 hours).
    Use it on your own site when it mounts a L{JSONResource}.

    @return: C{site}.
    """
    limits = factory.limits
    site.protocol = _deadline_channel  # type: ignore[method-assign]
    site.requestFactory = BodyLimitedRequest
    site.max_body_size = limits.max_line_length  # type: ignore[attr-defined]
    site.request_deadline = limits.idle_timeout  # type: ignore[attr-defined]
    site.timeOut = limits.idle_timeout or None
    return site

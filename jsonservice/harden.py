"""
Bounds on what a C{twisted.web} site reads, for the JSON-RPC resource of
L{jsonservice.web}: request bodies past the line limit are not kept, and a
request must arrive whole within the idle timeout (L{harden_site}).
"""

from __future__ import annotations

from io import BytesIO
from typing import TYPE_CHECKING, Any, Final

from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel, _GenericHTTPChannelProtocol
from twisted.web.server import Request, Site

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

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


class _Place:
    """An HTTP connection's place under C{max_connections}: held while C{factory} is set."""

    __slots__ = ("factory",)

    def __init__(self, factory: JSONServerFactory | None) -> None:
        self.factory = factory


def count_channel(channel: Any, factory: JSONServerFactory) -> None:
    """
    Count C{channel} (what the site built, or the C{HTTPChannel} inside it,
    which requests know as C{request.channel}) in C{factory.http_channels}
    until it is lost or handed over.
    """
    place = getattr(channel, "jsonservice_place", None)
    if place is None:
        place = _Place(None)
        lost = channel.connectionLost

        def connection_lost(reason: Failure) -> None:
            uncount_channel(channel)
            lost(reason)

        channel.connectionLost = connection_lost
        channel.jsonservice_place = place
        inner = getattr(channel, "_channel", None)
        if inner is not None:
            inner.jsonservice_place = place
    if place.factory is None:
        place.factory = factory
        factory.http_channels += 1


def uncount_channel(channel: Any) -> JSONServerFactory | None:
    """
    Stop counting C{channel} (closed, or taken over by a WebSocket session
    that counts itself); the factory that counted it, if any.
    """
    place: _Place | None = getattr(channel, "jsonservice_place", None)
    if place is None:
        return None
    factory = place.factory
    if factory is not None:
        place.factory = None
        factory.http_channels -= 1
    return factory


class _BusyHTTP(Protocol):
    """
    An HTTP connection over the cap: once the client has sent something, a
    503 with the -32001 body, then the close (closing first would make its
    request bounce off as a reset); aborted if it sends nothing for a second.
    """

    def __init__(self, body: bytes, clock: IReactorTime) -> None:
        self.body = body
        self.clock = clock
        self._timer: IDelayedCall | None = None

    def connectionMade(self) -> None:
        self._timer = self.clock.callLater(1.0, self.transport.abortConnection)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        if self._timer is None:
            return
        self._timer.cancel()
        self._timer = None
        head = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
        head += b"content-length: %d\r\nconnection: close\r\n\r\n" % len(self.body)
        self.transport.write(head + self.body)  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = _DONE) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


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
    build = site.buildProtocol

    def build_counted(addr: Any) -> Any:
        # Every HTTP connection counts toward max_connections, idle
        # keep-alive ones too: uncounted, they could use up the process's
        # file descriptors (a WebSocket hands its count to its session).
        if factory.refusing():
            return _BusyHTTP(factory._busy_line, factory._reactor())
        channel = build(addr)  # type: ignore[no-untyped-call]
        count_channel(channel, factory)
        return channel

    site.buildProtocol = build_counted  # type: ignore[method-assign]
    site.protocol = _deadline_channel  # type: ignore[method-assign]
    site.requestFactory = BodyLimitedRequest
    site.max_body_size = limits.max_line_length  # type: ignore[attr-defined]
    site.request_deadline = limits.idle_timeout  # type: ignore[attr-defined]
    site.timeOut = limits.idle_timeout or None
    return site

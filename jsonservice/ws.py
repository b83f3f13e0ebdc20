"""
JSON and JSON-RPC 2.0 over WebSocket, with autobahn (the C{web} extra).

Each text (or binary) message is one JSON value, with exactly the line
protocol's semantics in both directions: an autobahn protocol carries an
ordinary L{JSONProtocol} — the same connection core, limits, backpressure,
timeouts, authentication and metrics — whose transport turns each line it
writes into one message, and whose input is each message, handed whole to
the core (L{JSONProtocol.message_received}).

Server side: L{JSONWebSocketFactory} (listen on any endpoint, or mount
L{websocket_resource} in a C{twisted.web} site).  Client side:
C{jsonservice.connect(reactor, "ws://host:port/ws")} (L{connect_ws}) gives a
L{JSONProtocol} with the usual C{call}, C{notify} and C{send}.

Messages are counted while they arrive and dropped past C{max_line_length}
(autobahn's own caps are off), so one that is too long is answered -32002
and the connection goes on, as a line would be; nothing past the limit is
ever held.  Text messages that are not UTF-8 fail the connection (RFC 6455
requires it); send binary messages for the line protocol's -32700 instead.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any, Final

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.internet.error import ConnectError, ConnectionDone, ConnectionLost
from twisted.internet.interfaces import ITransport
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from zope.interface import implementer

try:
    from autobahn.twisted.resource import WebSocketResource
    from autobahn.twisted.websocket import (
        WebSocketClientFactory,
        WebSocketClientProtocol,
        WebSocketServerFactory,
        WebSocketServerProtocol,
    )
    from autobahn.websocket.types import ConnectionDeny
    from autobahn.websocket.util import parse_url
except ImportError as _exc:  # pragma: no cover - the extra is installed in tests
    raise ImportError(
        "WebSocket support needs autobahn: pip install 'jsonservice[web]'", name=_exc.name
    ) from None

from .protocol import JSONProtocol
from .server import JSONServerFactory
from .web import is_loopback, origin_allowed, parse_bearer

if TYPE_CHECKING:
    from twisted.internet.interfaces import IAddress

    from .client import JSONClientFactory
    from .factory import JSONFactoryBase
    from .service import JSONService

__all__ = ["JSONWebSocketFactory", "connect_ws", "websocket_resource"]

#: How long the opening and the closing handshakes may take (seconds).
HANDSHAKE_TIMEOUT: Final = 10.0


@implementer(ITransport)
class _MessageTransport:
    """
    The transport of the L{JSONProtocol} inside a WebSocket: each line it
    writes goes as one text message; flow control, producers and the
    output buffer are the TCP connection's under the WebSocket, so the
    protocol's backpressure and write-stall checks see the real socket.
    """

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._rest = b""

    def write(self, data: bytes) -> None:
        ws = self._ws
        if ws.state != ws.STATE_OPEN:
            return
        if self._rest:
            data, self._rest = self._rest + data, b""
        # The core writes whole lines of compact JSON, where a raw newline
        # cannot occur but at the end: each line is one message.
        lines = data.split(b"\n")
        self._rest = lines.pop()
        send = ws.sendMessage
        for line in lines:
            if line:
                send(line, False)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        if self._ws.state == self._ws.STATE_OPEN:
            self._ws.sendClose(1000)

    def abortConnection(self) -> None:
        self._ws.dropConnection(abort=True)

    def getPeer(self) -> IAddress:
        return self._ws.transport.getPeer()  # type: ignore[no-any-return]

    def getHost(self) -> IAddress:
        return self._ws.transport.getHost()  # type: ignore[no-any-return]

    def pauseProducing(self) -> None:
        self._ws.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self._ws.transport.resumeProducing()

    def stopProducing(self) -> None:
        """The protocol's C{connectionLost} cleans up."""

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._ws.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self._ws.transport.unregisterProducer()

    @property
    def disconnecting(self) -> bool:
        return bool(getattr(self._ws.transport, "disconnecting", False))

    def __getattr__(self, name: str) -> Any:
        # The rest (producer, bufferSize, dataBuffer, startWriting...) is
        # the TCP transport's, for the output watch (flow.py).
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._ws.transport, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "bufferSize":
            self._ws.transport.bufferSize = value
        else:
            super().__setattr__(name, value)


class _Carrier:
    """
    What the server and client WebSocket protocols share: the L{JSONProtocol}
    they carry, and the messages they hand it whole, counted while they
    arrive and dropped past its C{max_line_length}.
    """

    inner: Any = None
    _limit = 0
    _parts: list[bytes]
    _size = 0

    def _start(self: Any, json_factory: JSONFactoryBase) -> Any:
        proto: Any = json_factory.buildProtocol(self.transport.getPeer())
        self.inner = proto
        if isinstance(proto, JSONProtocol):
            self._limit = proto.limits.max_line_length
        proto.makeConnection(_MessageTransport(self))
        return proto

    # autobahn's streaming interface, instead of its buffered one.
    def onMessageBegin(self, isBinary: bool) -> None:  # noqa: N803
        self._parts = []
        self._size = 0

    def onMessageFrameBegin(self, length: int) -> None:
        """Frames are streamed: nothing to do before their data."""

    def onMessageFrameData(self, payload: bytes) -> None:
        self._size += len(payload)
        if self._size <= self._limit:
            self._parts.append(payload)
        elif self._parts:
            self._parts = []  # too long: keep none of it
        inner = self.inner
        if isinstance(inner, JSONProtocol):
            # What is held of an unfinished message counts in the server-wide
            # budget, as an unfinished line does: over it, this reader pauses.
            inner.partial_bytes = self._size if self._size <= self._limit else 0
            budget = inner._budget
            if budget is not None:
                budget.charge(inner)

    def onMessageFrameEnd(self) -> None:
        """The frame's data went to L{onMessageFrameData}."""

    def onMessageEnd(self) -> None:
        inner = self.inner
        if isinstance(inner, JSONProtocol):
            size = self._size
            if size > self._limit:
                inner.message_received(b"", size)
            else:
                inner.message_received(b"".join(self._parts))
        self._parts = []

    def _lost(self, code: int | None, reason: str | None) -> None:
        inner, self.inner = self.inner, None
        if inner is not None:
            why: Exception = ConnectionDone() if code in (1000, 1001) else ConnectionLost(f"{code} {reason}")
            inner.connectionLost(Failure(why))


class _ServerProtocol(_Carrier, WebSocketServerProtocol):  # type: ignore[misc]
    """One WebSocket connection to a L{JSONWebSocketFactory}."""

    factory: JSONWebSocketFactory
    _token: bytes | None = None

    def connectionMade(self) -> None:
        transport: Any = self.transport
        producer = getattr(transport, "producer", None)
        if isinstance(producer, HTTPChannel):
            # Taken over from twisted.web (websocket_resource): the HTTP
            # channel is still registered as the socket's producer, which
            # would keep the output watch from registering.
            transport.unregisterProducer()
        super().connectionMade()

    def onConnect(self, request: Any) -> None:
        """
        The opening handshake: a browser page of another origin is refused
        (403, see L{origin_allowed<jsonservice.web.origin_allowed>}), and so
        is a wrong C{Authorization: Bearer} token (401).
        """
        origin = request.headers.get("origin")
        loopback = is_loopback(self.transport.getHost())  # type: ignore[union-attr]
        if not origin_allowed(origin, request.headers.get("host"), self.factory.allowed_origins, loopback):
            raise ConnectionDeny(403, "cross-origin WebSocket refused")  # type: ignore[no-untyped-call]
        expected = self.factory.json_factory.auth_token
        header = request.headers.get("authorization")
        if header is not None and expected is not None:
            given = parse_bearer(header.encode("utf-8", "surrogateescape"))
            if not hmac.compare_digest(given, expected):
                raise ConnectionDeny(401, "wrong token")  # type: ignore[no-untyped-call]
            self._token = given

    def onOpen(self) -> None:
        proto = self._start(self.factory.json_factory)
        if self._token is not None and isinstance(proto, JSONProtocol):
            proto._auth.authenticate({"token": self._token.decode("utf-8", "surrogateescape")}, None, proto)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N803
        self._lost(code, reason)


class JSONWebSocketFactory(WebSocketServerFactory):
    """
    Serves a L{JSONService} over WebSocket: listen with it on any endpoint
    (C{serverFromString(reactor, "tcp:8081").listen(JSONWebSocketFactory(service))})
    or mount it with L{websocket_resource}.

    @ivar json_factory: the L{JSONServerFactory} each connection's
        L{JSONProtocol} comes from (shared with other transports, it puts
        them all under one connection cap, drain and set of metrics).
    """

    protocol = _ServerProtocol  # type: ignore[assignment]

    def __init__(
        self,
        service: JSONService | JSONServerFactory,
        url: str | None = None,
        *,
        allowed_origins: Collection[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """
        @param service: the service, or the L{JSONServerFactory} to share.
        @param url: the WebSocket URL, if it matters (autobahn checks
            nothing against it for a server).
        @param allowed_origins: browser origins allowed besides the page's
            own (C{"*"}: any); see L{origin_allowed<jsonservice.web.origin_allowed>}.
        @param kwargs: for a service: L{JSONServerFactory} arguments.
        """
        super().__init__(url)  # type: ignore[no-untyped-call]
        self.allowed_origins = allowed_origins
        if isinstance(service, JSONServerFactory):
            self.json_factory = service
        else:
            self.json_factory = JSONServerFactory(service, **kwargs)
        _options(self, self.json_factory)


def _options(factory: Any, json_factory: JSONFactoryBase) -> None:
    factory.setProtocolOptions(
        # Messages are counted and cut by the carrier instead (see above).
        maxFramePayloadSize=0,
        maxMessagePayloadSize=0,
        openHandshakeTimeout=HANDSHAKE_TIMEOUT,
        closeHandshakeTimeout=HANDSHAKE_TIMEOUT,
        # Idle connections are the JSON protocol's idle_timeout to close.
        autoPingInterval=0,
        # A protocol error (a text message that is not UTF-8) is answered
        # with its close frame (1007...), not a bare TCP reset: the peer
        # learns why.  The close handshake timeout still bounds the wait.
        failByDrop=False,
    )


def websocket_resource(factory: JSONServerFactory | JSONService, **kwargs: Any) -> Any:
    """
    A C{twisted.web} resource that upgrades requests to WebSocket
    connections of a L{JSONWebSocketFactory} (mounted at C{/ws} by
    L{make_site<jsonservice.web.make_site>}).
    """
    return _CountedWebSocketResource(JSONWebSocketFactory(factory, **kwargs))  # type: ignore[no-untyped-call]


class _CountedWebSocketResource(WebSocketResource):
    """
    Hands the HTTP connection's place under C{max_connections} to the
    WebSocket session it becomes (the session counts itself; the HTTP
    channel never hears of the connection again).
    """

    def render(self, request: Any) -> Any:
        from .harden import count_channel, uncount_channel

        channel = request.channel
        # Before: the session is built (and checked against the cap) inside.
        factory = uncount_channel(channel)
        try:
            return super().render(request)  # type: ignore[no-untyped-call]
        finally:
            if factory is not None and channel.transport is not None:
                count_channel(channel, factory)  # not taken over: still HTTP


class _ClientProtocol(_Carrier, WebSocketClientProtocol):  # type: ignore[misc]
    """The client end: its L{JSONProtocol} is handed over once the handshake is done."""

    factory: _ClientFactory

    def onOpen(self) -> None:
        proto = self._start(self.factory.json_factory)
        opened = self.factory.opened
        if not opened.called:
            opened.callback(proto)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N803
        opened = self.factory.opened
        if not opened.called:
            opened.errback(ConnectError(string=f"WebSocket handshake failed: {reason or code}"))
        self._lost(code, reason)


class _ClientFactory(WebSocketClientFactory):
    protocol = _ClientProtocol  # type: ignore[assignment]

    def __init__(self, url: str, json_factory: JSONClientFactory, headers: dict[str, str]) -> None:
        super().__init__(url, headers=headers)  # type: ignore[no-untyped-call]
        self.json_factory = json_factory
        self.opened: Deferred[JSONProtocol] = Deferred()
        _options(self, json_factory)


def connect_ws(
    reactor: Any, url: str, factory: JSONClientFactory, auth_token: str | None = None
) -> Deferred[JSONProtocol]:
    """
    Connect to C{url} (C{ws://host:port/path} or C{wss://...}, the latter
    checked against the system's trust store) with C{factory}'s service and
    limits.  Use C{jsonservice.connect(reactor, url)}, which calls this.

    @param auth_token: sent as C{Authorization: Bearer TOKEN} in the handshake.
    @return: a Deferred firing with the L{JSONProtocol} once the WebSocket is open.
    """
    secure, host, port = parse_url(url)[:3]
    headers = {"Authorization": f"Bearer {auth_token}"} if auth_token is not None else {}
    ws_factory = _ClientFactory(url, factory, headers)
    escaped = host.replace(":", "\\:")
    description = f"{'tls' if secure else 'tcp'}:{escaped}:{port}"
    connected: Deferred[Any] = clientFromString(reactor, description).connect(ws_factory)

    def handshake(_: Any) -> Deferred[JSONProtocol]:
        return ws_factory.opened

    return connected.addCallback(handshake)

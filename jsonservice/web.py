"""
JSON-RPC over HTTP with C{twisted.web}: L{JSONResource} serves a
L{JSONService} at any path of a site::

    root.putChild(b"rpc", JSONResource(service))        # POST /rpc

Each C{POST} body is one JSON value — a request, a batch or a plain message —
handled by the same connection core as a line of the line protocol: the
body becomes one L{JSONProtocol} "connection" (an exchange) of a
L{JSONServerFactory}, which feeds it to the core as one message and closes
it once everything is answered, so every rule, limit, timeout, the
authentication gate, the drain and the metrics are the line protocol's.
What the core wrote is the response: C{application/json} with the reply,
or C{204 No Content} when there is none (notifications).  L{status_for}
maps a single error reply to an HTTP status.

L{make_site} builds what C{twistd jsonservice --http ENDPOINT} serves:
C{POST /rpc}, the WebSocket at C{/ws} (L{jsonservice.ws}), C{GET
/openrpc.json} and the explorer page at C{GET /}.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from twisted.internet.error import ConnectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from .calls import ConnectionClosed
from .codec import dumps_line, loads
from .errors import InvalidRequest, ParseError, RPCError, Unauthorized
from .flow import unsent_bytes
from .harden import BodyLimitedRequest, harden_site
from .jsonrpc import error_reply
from .pages import EXPLORER_FILES, ExplorerPage, NoContent, OpenRPCDocument
from .protocol import JSONProtocol
from .server import JSONServerFactory
from .service import JSONService

if TYPE_CHECKING:
    from twisted.internet.interfaces import IAddress

__all__ = [
    "STATUS_FOR_CODE",
    "BodyLimitedRequest",
    "ExplorerPage",
    "JSONResource",
    "OpenRPCDocument",
    "harden_site",
    "make_site",
    "origin_allowed",
    "status_for",
]

_log = Logger(namespace="jsonservice.web")

#: The HTTP status of a response that is one JSON-RPC error, by its code
#: (the JSON-RPC over HTTP conventions: the client's mistakes are 4xx, the
#: server's 5xx).  Other codes of the reserved range (-32099..-32000) are
#: 500; an application's own codes are 200: the method ran and answered.
STATUS_FOR_CODE: Final = {
    -32700: 400,  # Parse error
    -32600: 400,  # Invalid Request
    -32601: 404,  # Method not found
    -32602: 400,  # Invalid params
    -32603: 500,  # Internal error
    -32000: 504,  # Request timed out
    -32001: 503,  # Server busy
    -32002: 413,  # Message too large
    -32003: 413,  # Batch too large
    -32004: 401,  # Unauthorized
    -32800: 503,  # Request cancelled (a drain, or the batch's own $/cancelRequest)
}

# The core writes compact JSON with members in this order, so a reply's
# kind shows in its first bytes without decoding it.
_ERROR_PREFIX: Final = b'{"jsonrpc":"2.0","error":{"code":'
_REQUEST_PREFIX: Final = b'{"jsonrpc":"2.0","method":'
_JSON: Final = b"application/json"
#: Seconds between looks at a backed-up connection's output (see render_POST).
_ROOM_POLL: Final = 0.05


def status_for(reply: bytes) -> int:
    """
    The HTTP status of a response body the core wrote: 204 for none, the
    L{STATUS_FOR_CODE} status of a single error, else 200 (results, batches,
    whatever their items, and plain replies).
    """
    if not reply:
        return 204
    if not reply.startswith(_ERROR_PREFIX):
        return 200
    end = reply.find(b",", len(_ERROR_PREFIX))
    try:
        code = int(reply[len(_ERROR_PREFIX) : end])
    except ValueError:
        return 200
    if code in STATUS_FOR_CODE:
        return STATUS_FOR_CODE[code]
    return 500 if -32099 <= code <= -32000 else 200


def bearer_token(request: Request) -> bytes | None:
    """The token of an C{Authorization: Bearer TOKEN} header, if any."""
    header = request.getHeader(b"authorization")
    if header is None:
        return None
    return parse_bearer(header)


def parse_bearer(header: bytes) -> bytes:
    """The token of an C{Authorization} header's value (empty: not C{Bearer TOKEN})."""
    scheme, _, token = header.strip().partition(b" ")
    return token.strip() if scheme.lower() == b"bearer" else b""


def origin_allowed(
    origin: str | None, host: str | None, allowed: Collection[str] | None = None, loopback: bool = False
) -> bool:
    """
    Whether a browser's request from C{origin} may be served: requests
    without an C{Origin} header (curl, programs) may; a browser's only from
    the page's own origin (its host is the C{Host} the request was sent
    to), or from one of C{allowed} (C{"*"}: any).  Otherwise any web page a
    user visits could call the service from the user's browser: a
    cross-site C{POST} needs no preflight, and WebSockets are not subject
    to the same-origin policy at all.

    @param loopback: the request came to a loopback address.  Then the
        page's own origin must be named as a loopback host too
        (C{localhost}, C{127.0.0.1}, C{[::1]}): a page whose own name an
        attacker re-pointed at 127.0.0.1 (DNS rebinding) is the same
        origin by name, but not the same machine.
    """
    if origin is None:
        return True
    if allowed is not None and ("*" in allowed or origin in allowed):
        return True
    parts = urlsplit(origin) if origin != "null" else None
    if parts is None or not parts.netloc or host is None or parts.netloc.lower() != host.strip().lower():
        return False
    return not loopback or _loopback_name(parts.hostname)


def _loopback_name(hostname: str | None) -> bool:
    if hostname is None:
        return False
    if hostname == "localhost" or hostname.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def is_loopback(address: object) -> bool:
    """Whether C{address} (a Twisted address) is a loopback IP address."""
    host = getattr(address, "host", None)
    if not isinstance(host, str):
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def token_ok(expected: bytes | None, given: bytes | None) -> bool:
    """Whether C{given} is the token C{expected} (compared in constant time; none expected: yes)."""
    return expected is None or (given is not None and hmac.compare_digest(given, expected))


class _Exchange:
    """
    The transport of one HTTP request's L{JSONProtocol}: it collects what
    the core writes, and when the protocol closes it, answers the request
    with it.  HTTP has no way back to the client, so calls and
    notifications the service sends the client are dropped (a call fails
    with L{ConnectionClosed} at once).
    """

    disconnecting = False

    def __init__(self, request: Request) -> None:
        self.request = request
        self.proto: Any = None
        self._parts: list[bytes] = []
        #: Set while the resource sets the exchange up: a close then waits.
        self.holding = True
        self._closed = False
        self._answered = False

    # -- ITransport, as JSONProtocol uses it -----------------------------------

    def write(self, data: bytes) -> None:
        if self._answered:
            return
        if _REQUEST_PREFIX in data:
            data = self._drop_requests(data)
        self._parts.append(data)

    def writeSequence(self, data: list[bytes]) -> None:
        for part in data:
            self.write(part)

    def loseConnection(self) -> None:
        self._closed = self.disconnecting = True
        if not self.holding:
            self.answer()

    abortConnection = loseConnection

    def getPeer(self) -> IAddress:
        peer: IAddress = self.request.getClientAddress()
        return peer

    def getHost(self) -> IAddress:
        host: IAddress = self.request.getHost()
        return host

    # The body is read already: there is nothing to pause, and no output
    # buffer to watch (twisted.web's channel does that for the response).
    def pauseProducing(self) -> None:
        """Nothing to pause: the body was read whole."""

    def resumeProducing(self) -> None:
        """Nothing to resume."""

    def stopProducing(self) -> None:
        """Nothing to stop."""

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """The response is written at once: no producer needed."""

    def unregisterProducer(self) -> None:
        """See L{registerProducer}."""

    # -- the exchange ------------------------------------------------------------

    def release(self) -> None:
        """Setup is over: a close that came meanwhile answers now."""
        self.holding = False
        if self._closed:
            self.answer()

    def refuse(self, error: RPCError) -> None:
        """Answer C{error} alone (a wrong token), whatever was written."""
        self._parts = [dumps_line(error_reply(None, error))]
        self._closed = True
        self.release()

    def answer(self) -> None:
        """Respond with what the core wrote, then end the protocol."""
        if self._answered:
            return
        self._answered = True
        reply = b"".join(self._parts)
        self._parts = []
        request = self.request
        if not request.finished and not request._disconnected:
            status = status_for(reply)
            request.setResponseCode(status)
            request.setHeader(b"cache-control", b"no-store")
            if status == 401:
                request.setHeader(b"www-authenticate", b"Bearer")
            if reply:
                request.setHeader(b"content-type", _JSON)
                request.setHeader(b"content-length", b"%d" % len(reply))
                request.write(reply)
            request.finish()
        self.end(Failure(ConnectionDone("the HTTP exchange is over")))

    def end(self, reason: Failure) -> None:
        """The exchange is over (answered, or the client went away)."""
        self._answered = True
        proto = self.proto
        if proto is not None:
            self.proto = None
            proto.connectionLost(reason)

    def _drop_requests(self, data: bytes) -> bytes:
        kept: list[bytes] = []
        for line in data.split(b"\n"):
            if not line.startswith(_REQUEST_PREFIX):
                kept.append(line)
                continue
            try:
                message = loads(line)
            except ParseError:  # pragma: no cover - the core wrote it
                continue
            _log.info("HTTP has no way back to the client: dropped {method!r}", method=message.get("method"))
            if "id" in message and self.proto is not None:
                waiter = self.proto._core.calls.pop(message["id"], None)
                if waiter is not None:
                    # Later, not from inside the core's write.
                    error = ConnectionClosed("HTTP has no way back to the client: cannot call it")
                    self.proto.clock.callLater(0, waiter.reject, error)
        return b"\n".join(kept)


class JSONResource(Resource):
    """
    Serves a L{JSONService} over HTTP at the path it is mounted on: C{POST}
    a JSON-RPC request, a batch or a plain JSON value, get the reply as
    C{application/json} (C{204 No Content} when there is none); other
    methods get 405.  With an C{auth_token}, C{Authorization: Bearer TOKEN}
    authenticates the request (a wrong token: 401 and nothing run; none:
    the requests are answered -32004, 401, as on a line connection that
    has not authenticated).
    """

    isLeaf = True

    def __init__(
        self,
        service: JSONService | JSONServerFactory,
        *,
        allowed_origins: Collection[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """
        @param service: the service, or the L{JSONServerFactory} to share
            with other listeners (its limits, connection cap, drain, auth
            token and metrics then cover HTTP too).
        @param allowed_origins: browser origins allowed besides the site's
            own (C{"https://app.example"}; C{"*"}: any), see L{origin_allowed}.
        @param kwargs: for a service: L{JSONServerFactory} arguments
            (limits, C{auth_token}...).
        """
        super().__init__()  # type: ignore[no-untyped-call]
        self.allowed_origins = allowed_origins
        if isinstance(service, JSONServerFactory):
            if kwargs:
                raise TypeError("give the factory's arguments to the factory, not to JSONResource")
            self.factory = service
        else:
            self.factory = JSONServerFactory(service, **kwargs)

    def render(self, request: Request) -> Any:
        """C{POST}: an exchange; anything else: 405, with a JSON-RPC error body."""
        if request.method == b"POST":
            return self.render_POST(request)
        request.setResponseCode(405)
        request.setHeader(b"allow", b"POST")
        request.setHeader(b"content-type", _JSON)
        return dumps_line(error_reply(None, InvalidRequest(data="POST a JSON-RPC request here")))

    def render_POST(self, request: Request) -> Any:
        """Handle one exchange (see the class docstring)."""
        origin = request.getHeader(b"origin")
        host = request.getHeader(b"host")
        if origin is not None and not origin_allowed(
            origin.decode("latin-1"),
            host.decode("latin-1") if host else None,
            self.allowed_origins,
            is_loopback(request.getHost()),
        ):
            request.setResponseCode(403)
            request.setHeader(b"content-type", _JSON)
            error = InvalidRequest(data="cross-origin request refused (see allowed_origins)")
            return dumps_line(error_reply(None, error))
        if _unsent(request) > self.factory.limits.max_unsent:
            # A peer pipelining requests without reading the replies:
            # twisted.web would start the next one at once.  Wait for room,
            # as a line connection stops reading (and give up, as it does,
            # after write_stall_timeout).
            self._wait_for_room(request, self.factory._reactor().seconds())
            return NOT_DONE_YET
        return self._exchange(request)

    def _wait_for_room(self, request: Request, since: float) -> None:
        clock = self.factory._reactor()
        if request.finished or request._disconnected:
            return
        if _unsent(request) <= self.factory.limits.max_unsent:
            answer = self._exchange(request)
            if answer is not NOT_DONE_YET:
                request.write(answer)
                request.finish()
            return
        stall = self.factory.limits.write_stall_timeout
        if stall and clock.seconds() - since >= stall:
            transport: Any = request.channel.transport
            transport.abortConnection()
            return
        clock.callLater(_ROOM_POLL, self._wait_for_room, request, since)

    def _exchange(self, request: Request) -> Any:
        """Run one request body through a connection core of its own."""
        factory = self.factory
        limit = factory.limits.max_line_length
        data, length = _read_body(request, limit)
        if length is None and (not data or data.isspace()):
            # Not a message with no reply (204): no message at all.
            request.setResponseCode(400)
            request.setHeader(b"content-type", _JSON)
            error = ParseError(data="the request body is empty: it must hold one JSON value")
            return dumps_line(error_reply(None, error))
        exchange = _Exchange(request)
        # On a site of harden_site the connection already counts toward
        # max_connections; on any other site the request itself counts.
        place = getattr(request.channel, "jsonservice_place", None)
        if place is not None and place.factory is factory:
            proto: Any = factory.build_exchange(exchange.getPeer())
        else:
            proto = factory.buildProtocol(exchange.getPeer())
        if proto is None:  # pragma: no cover - JSONServerFactory always builds one
            request.setResponseCode(503)
            return b""
        if isinstance(proto, JSONProtocol):
            proto.log_connection = False
            exchange.proto = proto
        proto.makeConnection(exchange)
        if not isinstance(proto, JSONProtocol):  # a refusal (over the cap, draining): its line
            exchange.release()
            return NOT_DONE_YET
        token = bearer_token(request)
        if token is not None and factory.auth_token is not None:
            try:
                proto._auth.authenticate({"token": token.decode("utf-8", "surrogateescape")}, None, proto)
            except Unauthorized as error:
                exchange.refuse(error)
                return NOT_DONE_YET
        request.notifyFinish().addErrback(exchange.end)
        exchange.release()
        proto.message_received(data, length)
        proto.readConnectionLost()  # the whole message is in: answer it, then close
        return NOT_DONE_YET


def _unsent(request: Request) -> int:
    """Reply bytes the connection of C{request} has not sent yet (0 when unknown)."""
    channel = request.channel
    return (unsent_bytes(channel.transport) or 0) if channel is not None else 0


def _read_body(request: Request, limit: int) -> tuple[bytes, int | None]:
    """
    The body, and its full length when it is over C{limit} (then only the
    start is read: a L{BodyLimitedRequest} kept none of it anyway).
    """
    length: int | None = getattr(request, "body_length", None)
    content: Any = request.content
    if length is None:
        content.seek(0, 2)
        length = content.tell()
        content.seek(0)
    if length > limit:
        return b"", length
    return content.read(), None


def make_site(
    service: JSONService | JSONServerFactory,
    *,
    allowed_origins: Collection[str] | None = None,
    **kwargs: Any,
) -> Site:
    """
    The site of C{twistd jsonservice --http}: C{POST /rpc}, the WebSocket at
    C{/ws} (needs autobahn, the C{web} extra), C{GET /openrpc.json} and the
    explorer at C{GET /}, hardened with L{harden_site}.

    @param service: a service, or the L{JSONServerFactory} to share.
    @param allowed_origins: browser origins allowed to call besides the
        site's own (L{origin_allowed}).
    @param kwargs: for a service: L{JSONServerFactory} arguments.
    """
    from .ws import websocket_resource

    factory = service if isinstance(service, JSONServerFactory) else JSONServerFactory(service, **kwargs)
    root = Resource()
    root.putChild(b"rpc", JSONResource(factory, allowed_origins=allowed_origins))
    root.putChild(b"ws", websocket_resource(factory, allowed_origins=allowed_origins))
    root.putChild(b"openrpc.json", OpenRPCDocument(factory))
    for path, (name, content_type) in EXPLORER_FILES.items():
        root.putChild(path, ExplorerPage(name, content_type))
    root.putChild(b"favicon.ico", NoContent())  # browsers ask for it; a 404 would be logged
    return harden_site(Site(root, reactor=factory.clock), factory)

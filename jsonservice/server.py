"""
L{JSONServerFactory}: serves a L{JSONService} on any stream endpoint, with
a connection cap and a graceful drain; L{JSONServerService} wraps it as a
Twisted service that drains on C{stopService} (and so on SIGTERM in twistd).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Protocol
from twisted.logger import Logger

from .codec import dumps_line
from .errors import RequestCancelled, ServerBusy
from .factory import JSONFactoryBase
from .jsonrpc import error_reply
from .limits import Limits
from .observers import RequestLog
from .protocol import JSONProtocol

if TYPE_CHECKING:
    from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime

    from .pubsub import Backend
    from .service import JSONService

__all__ = ["JSONServerFactory", "JSONServerService"]

#: Below this share of C{max_connections}, a server that hit the cap accepts again.
RESUME_BELOW: Final = 0.95

_log = Logger(namespace="jsonservice.server")


class _Busy(Protocol):
    """Tells a connection over the cap why it is refused, then closes it."""

    def __init__(self, line: bytes) -> None:
        self.line = line

    def connectionMade(self) -> None:
        self.transport.write(self.line)  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]


class JSONServerFactory(JSONFactoryBase):
    """
    The server factory: each connection is a L{JSONProtocol} answering with
    C{service}::

        serverFromString(reactor, "tcp:8080").listen(JSONServerFactory(service))

    @param service: the L{JSONService} to serve.
    @param clock: the reactor for timeouts (default: the global reactor).
    @param limits: a L{Limits} to start from; keyword arguments named after
        its fields (C{max_line_length=...}, C{request_timeout=...}) override it.
    """

    def __init__(
        self,
        service: JSONService,
        *,
        clock: IReactorTime | None = None,
        limits: Limits | None = None,
        auth_token: str | bytes | None = None,
        log_requests: bool = False,
        pubsub: Backend | str | None = None,
        **kwargs: Any,
    ) -> None:
        """
        @param auth_token: when given, each connection must first call
            C{rpc.authenticate} with this token (within the C{auth_timeout}
            limit); compared in constant time.
        @param log_requests: log every request (method, outcome, duration)
            at info level; off by default, since it costs per message.
        @param pubsub: carry the service's published events through this
            backend: C{"redis://host:port/db"} or a L{Backend}, connected
            while the factory listens (default: the service's own, in
            process).  See L{PubSub.use<jsonservice.pubsub.PubSub.use>}.
        """
        super().__init__(service, clock=clock, limits=limits, **kwargs)
        if pubsub is not None:
            service.pubsub.use(pubsub)
        if isinstance(auth_token, str):
            auth_token = auth_token.encode("utf-8")
        if auth_token is not None and not auth_token:
            raise ValueError("the auth token must not be empty")
        self.auth_token = auth_token
        if log_requests:
            self.add_observer(RequestLog())
        self.draining = False
        #: Open HTTP connections of this factory's hardened sites: each
        #: counts toward C{max_connections} (the JSONProtocol of a request
        #: on it does not count again).
        self.http_channels = 0
        self._uncounted = 0
        self._refusing = False
        self._drained: list[Deferred[None]] = []
        self._abort_timer: IDelayedCall | None = None
        busy = ServerBusy(data={"max_connections": self.limits.max_connections})
        self._busy_line = dumps_line(error_reply(None, busy))

    def startFactory(self) -> None:
        """Listening: connect the service's pub/sub backend (Redis)."""
        if self.service is not None:
            self.service.pubsub.start(self._reactor())

    def stopFactory(self) -> None:
        """Not listening any more: disconnect the pub/sub backend (once no other factory uses it)."""
        if self.service is not None:
            self.service.pubsub.stop()

    def buildProtocol(self, addr: IAddress | None) -> Any:
        """A L{JSONProtocol}, or a refusal when over the cap or draining."""
        if self.refusing():
            return _Busy(self._busy_line)
        return super().buildProtocol(addr)

    def build_exchange(self, addr: IAddress | None) -> Any:
        """
        The L{JSONProtocol} of one HTTP request, on a connection the cap
        already counts (L{http_channels}): refused only while draining.
        """
        if self.draining:
            self._breached_cap()
            return _Busy(self._busy_line)
        proto = super().buildProtocol(addr)
        if proto is not None:
            proto.counted = False
        return proto

    def refusing(self) -> bool:
        """
        Whether a new connection is refused now: C{max_connections} are
        open (line and WebSocket connections, and every HTTP connection of
        a site built by L{harden_site<jsonservice.harden.harden_site>}, idle
        keep-alive ones included), or the server is draining.
        """
        count = len(self.connections) - self._uncounted + self.http_channels
        limit = self.limits.max_connections
        if self._refusing and count < limit * RESUME_BELOW:
            self._refusing = False
            _log.info("Accepting connections again ({count} open)", count=count)
        elif not self._refusing and count >= limit:
            self._refusing = True
            _log.warn("Connection limit {limit} reached: refusing new connections", limit=limit)
        if self._refusing or self.draining:
            self._breached_cap()
            return True
        return False

    def _breached_cap(self) -> None:
        for observer in self.observers:
            observer.limit_breached(None, "max_connections")

    def connection_made(self, proto: JSONProtocol) -> None:
        """Log and count a new connection."""
        super().connection_made(proto)
        if not proto.counted:
            self._uncounted += 1
        if not proto.log_connection:
            return
        _log.info(
            "Connection from {peer} opened ({count} open)", peer=proto.peer, count=len(self.connections)
        )

    def connection_lost(self, proto: JSONProtocol) -> None:
        """Forget a closed connection; fire L{drain}'s Deferreds after the last."""
        if not proto.counted and proto in self.connections:
            self._uncounted -= 1
        super().connection_lost(proto)
        clock = self._reactor()
        if proto.log_connection:
            _log.info(
                "Connection from {peer} closed after {duration:.3f}s: {requests} requests,"
                " {bytes_in} bytes in, {bytes_out} bytes out",
                peer=proto.peer,
                duration=clock.seconds() - proto.opened_at,
                requests=proto.requests_received,
                bytes_in=proto.bytes_received,
                bytes_out=proto.bytes_sent,
            )
        if self.draining and not self.connections:
            if self._abort_timer is not None and self._abort_timer.active():
                # Everything closed in time: no delayed call outlives the drain.
                self._abort_timer.cancel()
            self._abort_timer = None
            drained, self._drained = self._drained, []
            for d in drained:
                d.callback(None)

    def drain(self, grace: float | None = None) -> Deferred[None]:
        """
        Shut down gracefully: refuse new connections, answer new requests
        with -32800, let running handlers finish for C{grace} seconds
        (default: the C{shutdown_grace} limit), then cancel the rest
        (answered -32800), flush and close every connection.

        @return: a Deferred that fires once every connection is closed.
        """
        self.draining = True
        if not self.connections:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._drained.append(d)
        clock: IReactorTime = self._reactor()
        seconds = self.limits.shutdown_grace if grace is None else grace
        timer: IDelayedCall = clock.callLater(seconds, self._grace_over, clock)

        def stop_timer(result: None) -> None:
            if timer.active():
                timer.cancel()

        d.addCallback(stop_timer)
        running = sum(p.in_flight for p in self.connections)
        _log.info(
            "Draining {count} connection(s) with {running} request(s) running, grace {grace}s",
            count=len(self.connections),
            running=running,
            grace=seconds,
        )
        for proto in list(self.connections):
            proto.draining = True
        # Close idle connections only after the reactor has had a turn to
        # read requests that already arrived: they get -32800, not silence.
        clock.callLater(0, self._drain_connections)
        return d

    def _drain_connections(self) -> None:
        for proto in list(self.connections):
            proto.drain()

    def _grace_over(self, clock: IReactorTime) -> None:
        error = RequestCancelled(data="the server is shutting down")
        cancelled = sum(proto.cancel_running(error) for proto in list(self.connections))
        if cancelled:
            _log.warn("Shutdown grace over: cancelled {count} request(s)", count=cancelled)
        # Flushing is the transports' job; a peer that never reads is cut off.
        if self.connections and self._abort_timer is None:
            self._abort_timer = clock.callLater(5.0, self._abort_rest)

    def _abort_rest(self) -> None:
        self._abort_timer = None
        for proto in list(self.connections):
            proto.transport.abortConnection()  # type: ignore[union-attr]


class JSONServerService(Service):
    """
    A Twisted service that drains a L{JSONServerFactory} when stopped.
    Put it in the same C{MultiService} as the listening services, I{before}
    them, so ports close first (children stop in reverse order).
    """

    def __init__(self, factory: JSONServerFactory) -> None:
        self.factory = factory

    def stopService(self) -> Deferred[None]:
        """Drain the factory's connections (see L{JSONServerFactory.drain})."""
        super().stopService()  # type: ignore[no-untyped-call]
        return self.factory.drain()

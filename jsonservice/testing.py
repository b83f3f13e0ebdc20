"""
Test your jsonservice code without a network: an in-memory server and
client joined by L{twisted.test.iosim}, on a L{Clock<twisted.internet.task.Clock>}
you control, with every byte that crosses recorded and decoded.

It plays the part C{treq.testing.StubTreq} plays for treq: no ports, no
sleeps, no reactor; everything happens when you L{flush<ConnectedPair.flush>}
or L{advance<ConnectedPair.advance>}::

    from jsonservice import JSONService
    from jsonservice.testing import connected_pair

    def test_subtract():
        service = JSONService()

        @service.method
        def subtract(minuend, subtrahend):
            return minuend - subtrahend

        pair = connected_pair(service)
        assert pair.result_of(pair.client.call("subtract", 42, 23)) == 19
        assert pair.sent_by_client == [
            {"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}
        ]

The same code works in a C{twisted.trial.unittest.SynchronousTestCase}
(or C{TestCase}) and in a plain pytest or pytest-twisted test: nothing here
touches the global reactor.  Timeouts run on L{ConnectedPair.clock}::

    pair = connected_pair(service, request_timeout=5)
    d = pair.client.call("slow")
    pair.advance(5)                     # the server gives up: -32000
    pair.failure_of(d, RequestTimeout)

Several clients of one server (say, to test notifications between them)
share a L{MemoryServer}::

    server = MemoryServer(service)
    alice, bob = server.connect(), server.connect()
    alice.client.call("publish", "hi")
    server.flush()                      # moves the bytes of every connection

For the few tests that need real sockets, L{listen_loopback} serves on an
ephemeral loopback port of a real reactor and L{LoopbackServer.close}
closes the server, its connections and its clients, leaving the reactor
clean (the pytest plugin's C{jsonservice_server} fixture is built on it).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import Any, Final, TypeVar

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.task import Clock, deferLater
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, IOPump, connect

from .client import CLIENT_LIMITS, JSONClientFactory
from .codec import loads
from .errors import ParseError
from .limits import Limits
from .protocol import JSONProtocol
from .server import JSONServerFactory
from .service import JSONService

__all__ = [
    "MAX_PUMPS",
    "ConnectedPair",
    "LoopbackServer",
    "MemoryServer",
    "Wire",
    "connected_pair",
    "failure_of",
    "listen_loopback",
    "result_of",
]

#: Client ports of the in-memory connections (each pair's client gets its own).
_CLIENT_PORTS = itertools.count(40000)

#: How many rounds of pumping L{MemoryServer.flush} allows before it decides
#: the two ends talk to each other forever.
MAX_PUMPS: Final = 10_000

T = TypeVar("T")

_NOT_FIRED: Final = object()


class Wire:
    """
    What went over one direction of an in-memory connection, in order.

    @ivar lines: every complete line (without its C{\\n}, nor a C{\\r}
        before it; blank lines left out).
    @ivar messages: each of C{lines} decoded as strict JSON.  A line that is
        not JSON (as a test may send on purpose) appears as its raw
        L{bytes}, which no JSON value decodes to.
    """

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.messages: list[Any] = []
        self._chunks: list[bytes] = []
        self._partial = b""

    @property
    def raw(self) -> bytes:
        """Every byte delivered (since the last L{clear}), as one L{bytes}."""
        if len(self._chunks) > 1:
            self._chunks = [b"".join(self._chunks)]
        return self._chunks[0] if self._chunks else b""

    def record(self, data: bytes) -> None:
        """Add C{data}, just delivered, to the record."""
        self._chunks.append(data)
        *complete, self._partial = (self._partial + data).split(b"\n")
        for line in complete:
            line = line.removesuffix(b"\r")
            if not line.strip():
                continue
            self.lines.append(line)
            try:
                self.messages.append(loads(line))
            except ParseError:
                self.messages.append(line)

    @property
    def unterminated(self) -> bytes:
        """Bytes delivered after the last newline (an unfinished line, or
        a classic client's unterminated message)."""
        return self._partial

    def take(self) -> list[Any]:
        """Return L{messages} and forget them (and L{lines} and L{raw})."""
        messages = self.messages
        self.clear()
        return messages

    def clear(self) -> None:
        """Forget everything recorded so far (an unfinished line is kept)."""
        self._chunks = []
        self.lines = []
        self.messages = []

    def __iter__(self) -> Iterator[Any]:
        return iter(self.messages)

    def __len__(self) -> int:
        return len(self.messages)

    def __repr__(self) -> str:
        return f"<Wire {len(self.messages)} message(s), {sum(map(len, self._chunks))} bytes>"


class _RecordingTransport(FakeTransport):
    """A L{FakeTransport} that records what it delivers to its protocol."""

    def __init__(self, protocol: Any, is_server: bool, wire: Wire, host: Any, peer: Any) -> None:
        super().__init__(protocol, is_server, hostAddress=host, peerAddress=peer)  # type: ignore[no-untyped-call]
        self.wire = wire

    def bufferReceived(self, buf: Any) -> None:
        if isinstance(buf, bytes):
            self.wire.record(buf)
        super().bufferReceived(buf)  # type: ignore[no-untyped-call]


def _limits(base: Limits, common: Mapping[str, Any], side: Mapping[str, Any] | Limits | None) -> Limits:
    if isinstance(side, Limits):
        return Limits.from_kwargs(side, **common)
    return Limits.from_kwargs(base, **{**common, **(side or {})})


class MemoryServer:
    """
    A L{JSONServerFactory} that clients connect to in memory: each
    L{connect} builds a server protocol with the factory (so connection
    limits, L{drain<JSONServerFactory.drain>} and per-connection state
    behave as on a real port) and a client protocol, joined by an
    L{IOPump}.  All connections share one L{Clock}.

    @ivar factory: the server factory.
    @ivar clock: the clock every timeout of every connection runs on.
    @ivar pairs: the connections made so far (closed ones included).
    """

    def __init__(
        self,
        service: JSONService | JSONServerFactory,
        *,
        clock: Clock | None = None,
        limits: Limits | None = None,
        **kwargs: Any,
    ) -> None:
        """
        @param service: the L{JSONService} to serve, or a ready
            L{JSONServerFactory} (a subclass with its own hooks, say); a
            factory built without a clock is given this server's.
        @param clock: the clock for timeouts (default: the factory's own
            L{Clock} if it has one, else a new L{Clock}).
        @param limits: a L{Limits} to start from; keyword arguments named
            after its fields override it, as for L{JSONServerFactory}
            (only with a service, not a factory).
        @raise TypeError: limits given along with a factory.
        """
        if isinstance(service, JSONServerFactory):
            if limits is not None or kwargs:
                raise TypeError("pass limits to the JSONServerFactory itself, not with it")
            if clock is None:
                clock = service.clock if isinstance(service.clock, Clock) else Clock()
            if service.clock is None:
                service.clock = clock
            self.clock = clock
            self.factory = service
        else:
            self.clock = clock if clock is not None else Clock()
            self.factory = JSONServerFactory(service, clock=self.clock, limits=limits, **kwargs)
        self.pairs: list[ConnectedPair] = []

    def connect(
        self,
        client_service: JSONService | None = None,
        *,
        limits: Limits | None = None,
        **kwargs: Any,
    ) -> ConnectedPair:
        """
        Connect a new client and deliver its C{connectionMade} (and any
        greeting the server writes).

        @param client_service: the service that answers the server's calls
            and notifications to this client (L{None}: none).
        @param limits: the client's L{Limits} (default: the client
            defaults, no idle timeout); keyword arguments override it.
        @return: the connected pair.
        @raise AssertionError: the server refused the connection (over
            its connection cap, or draining).
        """
        client_factory = JSONClientFactory(
            client_service, clock=self.clock, limits=limits or CLIENT_LIMITS, **kwargs
        )
        # Loopback TCP addresses, so handlers using ctx.peer.host work in tests.
        server_address = IPv4Address("TCP", "127.0.0.1", 8080)
        client_address = IPv4Address("TCP", "127.0.0.1", next(_CLIENT_PORTS))
        server = self.factory.buildProtocol(client_address)
        client = client_factory.buildProtocol(server_address)
        assert client is not None
        from_client, from_server = Wire(), Wire()
        server_transport = _RecordingTransport(server, True, from_client, server_address, client_address)
        client_transport = _RecordingTransport(client, False, from_server, client_address, server_address)
        pump = connect(server, server_transport, client, client_transport, greet=False, clock=self.clock)
        pair = ConnectedPair(self, server, client, pump, from_client, from_server, client_factory)
        self.pairs.append(pair)
        self.flush()
        if not isinstance(server, JSONProtocol):
            self.pairs.remove(pair)
            raise AssertionError(f"the server refused the connection: {from_server.messages!r}")
        return pair

    def pump(self) -> bool:
        """
        Move the bytes written so far, one round, on every connection;
        run what is due on the clock now.

        @return: whether anything moved.
        """
        moved = False
        for pair in self.pairs:
            if pair.pump.pump():
                moved = True
        return moved

    def flush(self) -> None:
        """
        Pump every connection until nothing moves any more (replies,
        replies to replies, notifications, closes).

        @raise AssertionError: still moving after L{MAX_PUMPS} rounds.
        """
        for _ in range(MAX_PUMPS):
            if not self.pump():
                return
        raise AssertionError(f"connections still busy after {MAX_PUMPS} pumps: an endless exchange?")

    def advance(self, seconds: float) -> None:
        """Move the clock on by C{seconds} (running what falls due), then L{flush}."""
        self.flush()
        self.clock.advance(seconds)
        self.flush()

    def drain(self, grace: float | None = None) -> Deferred[None]:
        """
        Shut the server down gracefully (L{JSONServerFactory.drain}) and
        flush; advance the clock to let the grace period run out.
        """
        d = self.factory.drain(grace)
        self.flush()
        return d


class ConnectedPair:
    """
    One in-memory connection: a server L{JSONProtocol} and a client
    L{JSONProtocol}, with what went over the wire each way.  Build it with
    L{connected_pair} or L{MemoryServer.connect}.

    Nothing moves until you L{flush} (or L{advance}, or ask for
    L{result_of} a Deferred, which flushes first).

    @ivar server: the server's protocol.
    @ivar client: the client's protocol.
    @ivar clock: the clock both ends' timeouts run on.
    @ivar pump: the L{IOPump} moving bytes between them.
    @ivar from_client: the L{Wire} record of what the client sent.
    @ivar from_server: the L{Wire} record of what the server sent.
    @ivar memory_server: the L{MemoryServer} this connection belongs to.
    @ivar client_factory: the L{JSONClientFactory} that built C{client}.
    """

    def __init__(
        self,
        memory_server: MemoryServer,
        server: JSONProtocol,
        client: JSONProtocol,
        pump: IOPump,
        from_client: Wire,
        from_server: Wire,
        client_factory: JSONClientFactory,
    ) -> None:
        self.memory_server = memory_server
        self.server = server
        self.client = client
        self.pump = pump
        self.from_client = from_client
        self.from_server = from_server
        self.client_factory = client_factory
        self.clock = memory_server.clock

    @property
    def server_factory(self) -> JSONServerFactory:
        """The server's factory (shared by every connection of its L{MemoryServer})."""
        return self.memory_server.factory

    @property
    def sent_by_client(self) -> list[Any]:
        """The JSON values the client sent, one per line, in order (see L{Wire})."""
        return self.from_client.messages

    @property
    def sent_by_server(self) -> list[Any]:
        """The JSON values the server sent, one per line, in order (see L{Wire})."""
        return self.from_server.messages

    @property
    def raw_sent_by_client(self) -> bytes:
        """Every byte the client sent, as delivered."""
        return self.from_client.raw

    @property
    def raw_sent_by_server(self) -> bytes:
        """Every byte the server sent, as delivered."""
        return self.from_server.raw

    @property
    def connected(self) -> bool:
        """Whether neither end has closed (or started closing) the connection."""
        transports = (self.server.transport, self.client.transport)
        return not any(t is None or t.disconnecting for t in transports)  # type: ignore[attr-defined]

    def clear(self) -> None:
        """Forget what was recorded on the wire so far, both ways."""
        self.from_client.clear()
        self.from_server.clear()

    def flush(self) -> None:
        """Pump until quiet (every connection of the same L{MemoryServer})."""
        self.memory_server.flush()

    def advance(self, seconds: float) -> None:
        """Advance the clock by C{seconds} and flush (see L{MemoryServer.advance})."""
        self.memory_server.advance(seconds)

    def client_write(self, data: bytes) -> None:
        """Write raw C{data} from the client (garbage, half lines...) and flush."""
        self.client.transport.write(data)  # type: ignore[union-attr]
        self.flush()

    def server_write(self, data: bytes) -> None:
        """Write raw C{data} from the server and flush."""
        self.server.transport.write(data)  # type: ignore[union-attr]
        self.flush()

    def disconnect(self, by_server: bool = False) -> None:
        """
        Close the connection cleanly from the client (or the server) and
        flush, so both ends see C{connectionLost}; the client's calls still
        waiting fail with L{ConnectionClosed<jsonservice.protocol.ConnectionClosed>}.
        """
        proto = self.server if by_server else self.client
        proto.transport.loseConnection()  # type: ignore[union-attr]
        self.flush()

    def result_of(self, d: Deferred[T]) -> T:
        """
        Flush, then return the result of C{d}.

        @raise BaseException: what C{d} failed with (the failure is
            consumed).
        @raise AssertionError: C{d} has not fired yet.
        """
        self.flush()
        return result_of(d)

    def failure_of(self, d: Deferred[Any], *expected: type[BaseException]) -> Failure:
        """
        Flush, then return the L{Failure} C{d} failed with (consuming it).

        @param expected: exception types the failure must match (any, if
            none given).
        @raise AssertionError: C{d} has not fired, succeeded, or failed
            with something else.
        """
        self.flush()
        return failure_of(d, *expected)

    def __repr__(self) -> str:
        return f"<ConnectedPair server={self.server!r} client={self.client!r}>"


def connected_pair(
    service: JSONService | JSONServerFactory,
    client_service: JSONService | None = None,
    clock: Clock | None = None,
    *,
    server_limits: Mapping[str, Any] | Limits | None = None,
    client_limits: Mapping[str, Any] | Limits | None = None,
    **limits: Any,
) -> ConnectedPair:
    """
    Connect a client to a server serving C{service}, in memory::

        pair = connected_pair(service, request_timeout=5)
        d = pair.client.call("echo", 1)
        assert pair.result_of(d) == 1

    @param service: the L{JSONService} the server serves, or a ready
        L{JSONServerFactory} (then C{limits} and C{server_limits} apply to
        nothing and are refused: set them on the factory).
    @param client_service: the service answering the server's calls and
        notifications to the client (L{None}: none).
    @param clock: the clock for every timeout (default: a new L{Clock},
        then available as C{pair.clock}).
    @param server_limits: L{Limits} (or a dict of its fields) for the
        server only.
    @param client_limits: L{Limits} (or a dict of its fields) for the
        client only; the client otherwise starts from the client defaults
        (no idle timeout).
    @param limits: L{Limits} fields for both ends, e.g. C{call_timeout=5},
        C{request_timeout=1}, C{max_line_length=100}.
    @return: the connected pair, its greeting (if any) delivered.
    @raise TypeError: an unknown limit, or server limits with a factory.
    """
    client_side = _limits(CLIENT_LIMITS, limits, client_limits)
    if isinstance(service, JSONServerFactory):
        if limits or server_limits is not None:
            raise TypeError("with a JSONServerFactory, set the server's limits on the factory")
        memory = MemoryServer(service, clock=clock)
    else:
        memory = MemoryServer(service, clock=clock, limits=_limits(Limits(), limits, server_limits))
    return memory.connect(client_service, limits=client_side)


class _TrackingClientFactory(JSONClientFactory):
    """A client factory that can tell when all its connections are gone."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._waiting: list[Deferred[None]] = []

    def connection_lost(self, proto: JSONProtocol) -> None:
        super().connection_lost(proto)
        if not self.connections:
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.callback(None)

    def all_lost(self) -> Deferred[None]:
        """A Deferred firing once no connection of this factory is open."""
        if not self.connections:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        return d


class LoopbackServer:
    """
    A L{JSONServerFactory} listening on an ephemeral loopback TCP port of
    a real reactor, with clients that L{close} shuts down too.  Build it
    with L{listen_loopback}; the pytest plugin's C{jsonservice_server}
    fixture does, and closes it for you.

    @ivar factory: the server factory.
    @ivar listening_port: the C{IListeningPort}.
    @ivar host: the address listened on (C{127.0.0.1}).
    @ivar port: the port number the system chose.
    @ivar reactor: the reactor it runs on.
    """

    def __init__(self, reactor: Any, factory: JSONServerFactory, host: str = "127.0.0.1") -> None:
        """
        Listen now (synchronously) on C{host}, on a port the system picks.

        @param reactor: an C{IReactorTCP} and C{IReactorTime} provider.
        @param factory: the server factory to listen with.
        @param host: the interface to bind, a loopback address.
        """
        self.reactor = reactor
        self.factory = factory
        self.host = host
        self.listening_port: Any = reactor.listenTCP(0, factory, interface=host)
        self.port: int = self.listening_port.getHost().port
        self._client_factories: list[_TrackingClientFactory] = []
        self._close_started = False
        self._close_outcome: Any = _NOT_FIRED
        self._close_waiters: list[Deferred[None]] = []

    @property
    def endpoint(self) -> str:
        """A client endpoint description for this server, e.g. C{tcp:127.0.0.1:43210}."""
        host = self.host.replace(":", "\\:")
        kind = "tcp6" if ":" in self.host else "tcp"
        return f"{kind}:{host}:{self.port}"

    def connect(
        self, service: JSONService | None = None, *, timeout: float = 5.0, **limits: Any
    ) -> Deferred[JSONProtocol]:
        """
        Connect a client; L{close} will close it.

        @param service: answers the server's calls to this client, if any.
        @param timeout: seconds before the attempt fails with
            C{TimeoutError}.
        @param limits: the client's L{Limits} fields, e.g. C{call_timeout=5}.
        @return: a Deferred firing with the client's L{JSONProtocol}.
        """
        from twisted.internet.endpoints import clientFromString

        factory = _TrackingClientFactory(service, clock=self.reactor, **limits)
        self._client_factories.append(factory)
        endpoint = clientFromString(self.reactor, self.endpoint)
        connecting: Deferred[Any] = endpoint.connect(factory)
        return connecting.addTimeout(timeout, self.reactor)

    def close(self, timeout: float = 5.0) -> Deferred[None]:
        """
        Close every client this server's L{connect} made, drain and close
        the server's connections (handlers still running are cancelled),
        and stop listening.

        @param timeout: seconds before giving up with C{TimeoutError}.
        @return: a Deferred firing once every connection and the port
            are closed; calling again returns one firing at the same time.
        """
        result: Deferred[None] = Deferred()
        self._close_waiters.append(result)
        if self._close_started:
            if self._close_outcome is not _NOT_FIRED:
                self._fire_closed()
            return result
        self._close_started = True
        steps: list[Deferred[Any]] = []
        for factory in self._client_factories:
            for proto in list(factory.connections):
                proto.transport.loseConnection()  # type: ignore[union-attr]
            steps.append(factory.all_lost())
        steps.append(self.factory.drain(grace=0))
        steps.append(maybeDeferred(self.listening_port.stopListening))
        done: Deferred[Any] = gatherResults(steps, consumeErrors=True)
        done.addTimeout(timeout, self.reactor)
        # One more turn of the reactor, so that calls the closing scheduled
        # for "now" (callLater(0, ...)) have run: trial counts them as a
        # dirty reactor otherwise.
        done.addCallback(lambda _: deferLater(self.reactor, 0, lambda: None))
        done.addBoth(self._closed)
        return result

    def _closed(self, outcome: Any) -> None:
        self._close_outcome = outcome
        self._fire_closed()

    def _fire_closed(self) -> None:
        outcome = self._close_outcome
        waiters, self._close_waiters = self._close_waiters, []
        for d in waiters:
            if isinstance(outcome, Failure):
                d.errback(outcome)
            else:
                d.callback(None)

    def __repr__(self) -> str:
        return f"<LoopbackServer {self.endpoint}>"


def listen_loopback(
    service: JSONService | JSONServerFactory,
    reactor: Any = None,
    *,
    host: str = "127.0.0.1",
    limits: Limits | None = None,
    **kwargs: Any,
) -> LoopbackServer:
    """
    Serve C{service} on an ephemeral loopback port of a real reactor, for
    integration tests (trial's asynchronous C{TestCase}, pytest-twisted)::

        server = listen_loopback(service)
        self.addCleanup(server.close)
        client = await server.connect()
        self.assertEqual(await client.call("ping"), "pong")

    @param service: the L{JSONService} to serve, or a ready
        L{JSONServerFactory} (then no limits may be given).
    @param reactor: the reactor (default: the global reactor, imported now).
    @param host: the loopback address to bind (C{::1} for IPv6).
    @param limits: a L{Limits} for the server; keyword arguments named
        after its fields override it.
    @return: the listening server.
    @raise TypeError: limits given along with a factory.
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    if isinstance(service, JSONServerFactory):
        if limits is not None or kwargs:
            raise TypeError("pass limits to the JSONServerFactory itself, not with it")
        factory = service
    else:
        factory = JSONServerFactory(service, clock=reactor, limits=limits, **kwargs)
    return LoopbackServer(reactor, factory, host)


def _outcome(d: Deferred[Any]) -> Any:
    """
    What C{d} fired with so far (a result or a L{Failure}, the failure
    consumed), or L{_NOT_FIRED}.  Like trial's C{successResultOf}, but
    a Deferred that fires later keeps its result.
    """
    box: list[Any] = []
    looking = True

    def grab(result: Any) -> Any:
        if not looking:
            return result
        box.append(result)
        return None if isinstance(result, Failure) else result

    d.addBoth(grab)
    looking = False
    return box[0] if box else _NOT_FIRED


def result_of(d: Deferred[T]) -> T:
    """
    The result C{d} has already fired with (no flushing: see
    L{ConnectedPair.result_of} for that).

    @raise BaseException: what C{d} failed with (the failure is consumed).
    @raise AssertionError: C{d} has not fired yet.
    """
    outcome = _outcome(d)
    if outcome is _NOT_FIRED:
        raise AssertionError(f"{d!r} has not fired (yet): flush more, or advance the clock?")
    if isinstance(outcome, Failure):
        outcome.raiseException()
    result: T = outcome
    return result


def failure_of(d: Deferred[Any], *expected: type[BaseException]) -> Failure:
    """
    The L{Failure} C{d} has already failed with, consumed (no flushing:
    see L{ConnectedPair.failure_of} for that).

    @param expected: exception types the failure must match (any, if none
        given).
    @raise AssertionError: C{d} has not fired, succeeded, or failed with
        something else.
    """
    outcome = _outcome(d)
    if outcome is _NOT_FIRED:
        raise AssertionError(f"{d!r} has not fired (yet): flush more, or advance the clock?")
    if not isinstance(outcome, Failure):
        raise AssertionError(f"{d!r} succeeded with {outcome!r} instead of failing")
    if expected and not outcome.check(*expected):
        names = ", ".join(e.__name__ for e in expected)
        raise AssertionError(f"{d!r} failed with {outcome.value!r}, not one of {names}")
    return outcome

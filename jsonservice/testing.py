"""
Test your jsonservice code without a network: an in-memory server and
client joined by L{twisted.test.iosim}, on a L{Clock<twisted.internet.task.Clock>}
you control, with every byte that crosses recorded and decoded.

It plays the part C{treq.testing.StubTreq} plays for treq: no ports, no
sleeps, no reactor; everything happens when you L{flush<ConnectedPair.flush>}
or L{advance<ConnectedPair.advance>}.

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
touches the global reactor.  Timeouts run on L{ConnectedPair.clock}:

    pair = connected_pair(service, request_timeout=5)
    d = pair.client.call("slow")
    pair.advance(5)                     # the server gives up: -32000
    pair.failure_of(d, RequestTimeout)

Several clients of one server (say, to test notifications between them)
share a L{MemoryServer}:

    server = MemoryServer(service)
    alice, bob = server.connect(), server.connect()
    alice.client.call("publish", "hi")
    server.flush()                      # moves the bytes of every connection
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.test.iosim import FakeAddress, FakeTransport, IOPump, connect

from .client import CLIENT_LIMITS, JSONClientFactory
from .codec import loads
from .errors import ParseError
from .limits import Limits
from .protocol import JSONProtocol
from .server import JSONServerFactory
from .service import JSONService

__all__ = ["MAX_PUMPS", "ConnectedPair", "MemoryServer", "Wire", "connected_pair", "failure_of", "result_of"]

#: How many rounds of pumping L{MemoryServer.flush} allows before it decides
#: the two ends talk to each other forever.
MAX_PUMPS: Final = 10_000

T = TypeVar("T")


class Wire:
    """
    What went over one direction of an in-memory connection, in order.

    @ivar raw: every byte delivered, as one L{bytes}.
    @ivar lines: every complete line (without its C{\\n}, nor a C{\\r}
        before it; blank lines left out).
    @ivar messages: each of C{lines} decoded as strict JSON.  A line that is
        not JSON (as a test may send on purpose) appears as its raw
        L{bytes}, which no JSON value decodes to.
    """

    def __init__(self) -> None:
        self.raw = b""
        self.lines: list[bytes] = []
        self.messages: list[Any] = []
        self._partial = b""

    def record(self, data: bytes) -> None:
        """Add C{data}, just delivered, to the record."""
        self.raw += data
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
        self.raw = b""
        self.lines = []
        self.messages = []

    def __iter__(self) -> Iterator[Any]:
        return iter(self.messages)

    def __len__(self) -> int:
        return len(self.messages)

    def __repr__(self) -> str:
        return f"<Wire {len(self.messages)} message(s), {len(self.raw)} bytes>"


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
        service: JSONService,
        *,
        clock: Clock | None = None,
        limits: Limits | None = None,
        **kwargs: Any,
    ) -> None:
        """
        @param service: the L{JSONService} to serve.
        @param clock: the clock for timeouts (default: a new L{Clock}).
        @param limits: a L{Limits} to start from; keyword arguments named
            after its fields override it, as for L{JSONServerFactory}.
        """
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
        server_address = FakeAddress()
        client_address = FakeAddress()
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
    service: JSONService,
    client_service: JSONService | None = None,
    clock: Clock | None = None,
    *,
    server_limits: Mapping[str, Any] | Limits | None = None,
    client_limits: Mapping[str, Any] | Limits | None = None,
    **limits: Any,
) -> ConnectedPair:
    """
    Connect a client to a server serving C{service}, in memory.

        pair = connected_pair(service, request_timeout=5)
        d = pair.client.call("echo", 1)
        assert pair.result_of(d) == 1

    @param service: the L{JSONService} the server serves.
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
    """
    server_side = _limits(Limits(), limits, server_limits)
    client_side = _limits(CLIENT_LIMITS, limits, client_limits)
    memory = MemoryServer(service, clock=clock, limits=server_side)
    return memory.connect(client_service, limits=client_side)


_NOT_FIRED: Final = object()


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

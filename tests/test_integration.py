"""
Real-loopback integration tests (pytest-twisted): a L{JSONServerFactory}
listening on 127.0.0.1 (and ::1 where there is IPv6), driven by
L{jsonservice.connect} and by classic blocking-socket clients in threads.

Every Deferred a test waits on has a timeout, and every test closes its
listening port and its connections and checks it left no delayed call
behind (a dirty reactor).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.endpoints import TCP6ClientEndpoint, serverFromString
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

import jsonservice
from jsonservice import (
    CallContext,
    ConnectionClosed,
    JSONProtocol,
    JSONServerFactory,
    JSONService,
    RPCError,
)
from jsonservice.demo import make_demo_service

try:
    from tests.memory_helpers import when_lost
except ImportError:  # pragma: no cover - tests/ on sys.path (rootdir import mode)
    from memory_helpers import when_lost

#: The longest any single step may take before the test fails (not hangs).
STEP = 5.0

IPV4 = "tcp:0:interface=127.0.0.1"
IPV6 = r"tcp6:0:interface=\:\:1"


def within(d: Deferred[Any], seconds: float = STEP) -> Deferred[Any]:
    """C{d} with a timeout, so that a broken test fails instead of hanging."""
    from twisted.internet import reactor

    return d.addTimeout(seconds, reactor)


class Server:
    """One listening factory, its client connections, and their cleanup."""

    def __init__(self, reactor: Any, service: JSONService, **limits: Any) -> None:
        self.reactor = reactor
        self.factory = JSONServerFactory(service, **limits)
        self.port: Any = None
        self.clients: list[tuple[JSONProtocol, Deferred[None]]] = []
        self._calls_before = set(reactor.getDelayedCalls())

    async def listen(self, description: str = IPV4) -> Server:
        endpoint = serverFromString(self.reactor, description)
        self.port = await within(endpoint.listen(self.factory))
        return self

    @property
    def number(self) -> int:
        return int(self.port.getHost().port)

    async def connect(self, endpoint: Any = None, **limits: Any) -> JSONProtocol:
        target = endpoint if endpoint is not None else f"tcp:127.0.0.1:{self.number}"
        proto: JSONProtocol = await within(jsonservice.connect(self.reactor, target, **limits))
        self.clients.append((proto, when_lost(proto)))
        return proto

    async def close(self) -> None:
        """Stop listening, drain the server side, close the clients."""
        if self.port is not None:
            await within(maybeDeferred(self.port.stopListening))
        await within(self.factory.drain(grace=0))
        for proto, lost in self.clients:
            if proto.transport is not None and not lost.called:
                proto.transport.loseConnection()
            await within(lost)
        assert not self.factory.connections

    def leftover_calls(self) -> list[Any]:
        """Delayed calls scheduled since this server was made and still pending."""
        return [
            call
            for call in self.reactor.getDelayedCalls()
            if call.active() and call not in self._calls_before
        ]


async def serving(
    reactor: Any,
    service: JSONService,
    body: Callable[[Server], Awaitable[None]],
    description: str = IPV4,
    **limits: Any,
) -> None:
    """Run C{body} against a listening server; always clean up after."""
    server = Server(reactor, service, **limits)
    await server.listen(description)
    try:
        await body(server)
    finally:
        await server.close()
    # Let the reactor run the zero-delay calls that closing scheduled.
    await within(deferLater(reactor, 0.01, lambda: None))
    assert server.leftover_calls() == []


def kitchen_sink(reactor: Any) -> tuple[JSONService, list[Any]]:
    """A service using every kind of handler; also returns what it was notified."""
    service = JSONService()
    notified: list[Any] = []

    @service.method
    def subtract(minuend: int, subtrahend: int) -> int:
        return minuend - subtrahend

    @service.method("math.sum")
    async def total(*numbers: int) -> int:
        return sum(numbers)

    @service.method
    def later(value: Any, delay: float) -> Deferred[Any]:
        return deferLater(reactor, delay, lambda: value)

    @service.method
    def log(*items: Any) -> None:
        notified.extend(items)

    @service.method
    def seen() -> list[Any]:
        return list(notified)

    @service.method
    def fail() -> None:
        raise RPCError(4000, "no luck", {"why": "asked to"})

    @service.message
    def plain(message: Any) -> Any:
        return None if message == "quiet" else {"echo": message}

    return service, notified


# -- blocking clients, run in threads --------------------------------------


def classic_client(port: int, message: Any, host: str = "127.0.0.1") -> Any:
    """The classic example client, unchanged: no newline, one recv."""
    with socket.create_connection((host, port), timeout=STEP) as sock:
        sock.send(json.dumps(message).encode())
        return json.loads(sock.recv(1024).decode())


def exchange_lines(port: int, data: bytes, count: int) -> list[Any]:
    """Send C{data} in one go; read C{count} reply lines (or until EOF)."""
    with socket.create_connection(("127.0.0.1", port), timeout=STEP) as sock:
        sock.sendall(data)
        buffer = b""
        while buffer.count(b"\n") < count:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buffer += chunk
    return [json.loads(line) for line in buffer.splitlines()]


# -- the tests --------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_calls_notifications_and_plain_messages(reactor: Any) -> None:
    service, notified = kitchen_sink(reactor)

    async def body(server: Server) -> None:
        proto = await server.connect()
        assert await within(proto.call("subtract", 42, 23)) == 19
        assert await within(proto.call("subtract", subtrahend=23, minuend=42)) == 19
        assert await within(proto.call("math.sum", 1, 2, 3, 4)) == 10
        assert await within(proto.call("later", "slow", 0.01)) == "slow"
        # Notifications are never answered, and run before the next request.
        assert proto.notify("log", "a", 1) is None
        proto.notify("log", {"b": [2]})
        assert await within(proto.call("seen")) == ["a", 1, {"b": [2]}]
        assert notified == ["a", 1, {"b": [2]}]
        # Plain messages, answered in order; a None reply sends nothing.
        assert await within(proto.send({"x": 1})) == {"echo": {"x": 1}}
        proto.write_message("quiet")
        assert await within(proto.send(7)) == {"echo": 7}
        # Errors come back as RPCError with their code and data.
        with pytest.raises(RPCError) as info:
            await within(proto.call("fail"))
        assert (info.value.code, info.value.data) == (4000, {"why": "asked to"})
        with pytest.raises(RPCError) as info:
            await within(proto.call("missing"))
        assert info.value.code == -32601
        with pytest.raises(RPCError) as info:
            await within(proto.call("subtract", 1))
        assert info.value.code == -32602
        assert proto.pending == 0

    await serving(reactor, service, body)


@pytest_twisted.ensureDeferred
@pytest.mark.usefixtures("ipv6")
async def test_ipv6_loopback(reactor: Any) -> None:
    async def body(server: Server) -> None:
        assert server.port.getHost().host == "::1"
        proto = await server.connect(TCP6ClientEndpoint(reactor, "::1", server.number))
        assert await within(proto.call("echo", {"v": 6})) == {"v": 6}
        assert await within(proto.send("hi")) == {"message": "Hello from server"}
        assert proto.peer.host == "::1"

    await serving(reactor, make_demo_service(), body, IPV6)


@pytest_twisted.ensureDeferred
async def test_classic_socket_client(reactor: Any) -> None:
    async def body(server: Server) -> None:
        reply = await within(deferToThread(classic_client, server.number, {"request": "hello"}))
        assert reply == {"message": "Hello from server"}
        # The classic client sending a JSON-RPC request, also unterminated.
        request = {"jsonrpc": "2.0", "method": "echo", "params": ["x"], "id": 1}
        reply = await within(deferToThread(classic_client, server.number, request))
        assert reply == {"jsonrpc": "2.0", "result": "x", "id": 1}

    await serving(reactor, make_demo_service(), body)


@pytest_twisted.ensureDeferred
async def test_bad_json_then_next_line_served(reactor: Any) -> None:
    async def body(server: Server) -> None:
        data = b'{"oops": \n{"jsonrpc":"2.0","method":"ping","id":"p"}\n[]\n"hi"\r\n\n'
        replies = await within(deferToThread(exchange_lines, server.number, data, 4))
        assert replies[0]["error"]["code"] == -32700
        assert replies[0]["id"] is None
        assert replies[1] == {"jsonrpc": "2.0", "result": "pong", "id": "p"}
        assert replies[2]["error"]["code"] == -32600
        assert replies[3] == {"message": "Hello from server"}

    await serving(reactor, make_demo_service(), body)


@pytest_twisted.ensureDeferred
async def test_many_pipelined_calls_one_connection(reactor: Any) -> None:
    service, _ = kitchen_sink(reactor)

    async def body(server: Server) -> None:
        proto = await server.connect()
        # Later calls finish first: replies come back out of order, by id.
        calls = [proto.call("later", index, (index % 7) * 0.002) for index in range(300)]
        calls += [proto.call("subtract", index, 1) for index in range(300)]
        sends = [proto.send(index) for index in range(100)]
        results = await within(gatherResults(calls + sends))
        assert results[:300] == list(range(300))
        assert results[300:600] == [index - 1 for index in range(300)]
        assert results[600:] == [{"echo": index} for index in range(100)]
        assert proto.pending == 0

    await serving(reactor, service, body)


@pytest_twisted.ensureDeferred
async def test_pipelined_raw_lines_and_batch(reactor: Any) -> None:
    count = 1000
    lines = [
        json.dumps({"jsonrpc": "2.0", "method": "echo", "params": [index], "id": index})
        for index in range(count)
    ]
    batch = [{"jsonrpc": "2.0", "method": "ping", "id": "b1"}, {"jsonrpc": "2.0", "method": "ping"}]
    data = ("\n".join([*lines, json.dumps(batch)]) + "\n").encode()

    async def body(server: Server) -> None:
        replies = await within(deferToThread(exchange_lines, server.number, data, count + 1))
        assert [reply["result"] for reply in replies[:count]] == list(range(count))
        assert [reply["id"] for reply in replies[:count]] == list(range(count))
        assert replies[count] == [{"jsonrpc": "2.0", "result": "pong", "id": "b1"}]

    await serving(reactor, make_demo_service(), body)


@pytest_twisted.ensureDeferred
async def test_server_calls_the_client_back(reactor: Any) -> None:
    server_side = JSONService()

    @server_side.method(context=True)
    async def greet(ctx: CallContext, name: str) -> str:
        ctx.notify("progress", "greeting")
        title = await ctx.call("title_of", name)
        return f"Hello, {title} {name}"

    client_side = JSONService()
    progress: list[str] = []

    @client_side.method
    def title_of(name: str) -> str:
        return "Dr." if name == "Who" else "Ms."

    @client_side.method("progress")
    def progress_report(step: str) -> None:
        progress.append(step)

    async def body(server: Server) -> None:
        target = f"tcp:127.0.0.1:{server.number}"
        proto = await within(jsonservice.connect(reactor, target, client_side))
        server.clients.append((proto, when_lost(proto)))
        assert await within(proto.call("greet", "Who")) == "Hello, Dr. Who"
        assert progress == ["greeting"]

    await serving(reactor, server_side, body)


@pytest_twisted.ensureDeferred
async def test_disconnect_fails_pending_calls_and_cancels_handlers(reactor: Any) -> None:
    service = JSONService()
    cancelled: Deferred[str] = Deferred()
    started: Deferred[None] = Deferred()

    @service.method
    def forever() -> Deferred[None]:
        started.callback(None)
        return Deferred(lambda _: cancelled.callback("cancelled"))

    async def body(server: Server) -> None:
        proto = await server.connect()
        pending = proto.call("forever")
        await within(started)
        proto.transport.loseConnection()
        with pytest.raises(ConnectionClosed):
            await within(pending)
        # A FIN may be a half-close (IHalfCloseableProtocol): the server does
        # not cancel what it was asked; its reply will find the peer gone.
        assert not cancelled.called

    await serving(reactor, service, body)


@pytest_twisted.ensureDeferred
async def test_drain_finishes_running_requests_then_closes(reactor: Any) -> None:
    service, _ = kitchen_sink(reactor)

    async def body(server: Server) -> None:
        proto = await server.connect()
        lost = server.clients[-1][1]
        slow = proto.call("later", "done", 0.1)
        assert await within(proto.call("subtract", 2, 1)) == 1  # the slow one is running
        drained = server.factory.drain(grace=STEP)
        with pytest.raises(RPCError) as info:
            await within(proto.call("subtract", 2, 1))
        assert info.value.code == -32800
        assert await within(slow) == "done"
        await within(drained)
        await within(lost)
        # A new connection while draining is refused with a -32001 line.
        refused = await within(deferToThread(exchange_lines, server.number, b"", 1))
        assert refused[0]["error"]["code"] == -32001

    await serving(reactor, service, body)


@pytest_twisted.ensureDeferred
async def test_drain_grace_over_cancels_with_32800(reactor: Any) -> None:
    service = JSONService()

    @service.method
    def forever() -> Deferred[None]:
        return Deferred()

    async def body(server: Server) -> None:
        proto = await server.connect()
        lost = server.clients[-1][1]
        stuck = proto.call("forever")
        await within(deferLater(reactor, 0.02, lambda: None))
        drained = server.factory.drain(grace=0.05)
        with pytest.raises(RPCError) as info:
            await within(stuck)
        assert info.value.code == -32800
        await within(drained)
        await within(lost)

    # serving() also checks that no abort timer outlives the drain.
    await serving(reactor, service, body)


@pytest_twisted.ensureDeferred
async def test_connection_cap(reactor: Any) -> None:
    async def body(server: Server) -> None:
        first = await server.connect()
        assert await within(first.call("ping")) == "pong"
        request = b'{"jsonrpc":"2.0","method":"ping","id":1}\n'
        refused = await within(deferToThread(exchange_lines, server.number, request, 2))
        assert len(refused) == 1
        assert refused[0]["error"]["code"] == -32001
        assert refused[0]["error"]["data"] == {"max_connections": 1}
        assert await within(first.call("ping")) == "pong"

    await serving(reactor, make_demo_service(), body, max_connections=1)

"""
PROXY protocol (Twisted's C{haproxy:} endpoint wrapper): behind a load
balancer that sends a PROXY header, C{transport.getPeer()} and so
L{CallContext.peer} give the real client's address.  In process, on
loopback, with raw blocking sockets in threads; every wait bounded.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.threads import deferToThread

from jsonservice import CallContext, JSONServerFactory, JSONService
from jsonservice.tap import Options, makeService

STEP = 5.0

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def peer_service() -> JSONService:
    service = JSONService()

    @service.method(context=True)
    def peer(ctx: CallContext) -> list[Any]:
        """The peer's address as the connection sees it."""
        address: Any = ctx.peer
        return [str(address.host), int(address.port)]

    return service


def exchange(port: int, data: bytes) -> bytes:
    """Send C{data}, read until a newline or EOF (blocking; run in a thread)."""
    with socket.create_connection(("127.0.0.1", port), timeout=STEP) as sock:
        sock.sendall(data)
        received = b""
        while not received.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def request(method: str = "peer") -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": method}).encode() + b"\n"


def proxy_v2(source: str, source_port: int, dest: str, dest_port: int) -> bytes:
    """A PROXY protocol v2 header for a TCP over IPv4 connection."""
    addresses = socket.inet_aton(source) + socket.inet_aton(dest) + struct.pack("!HH", source_port, dest_port)
    return V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", len(addresses)) + addresses


class ProxiedServer:
    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.factory = JSONServerFactory(peer_service())
        self.port: Any = None

    async def __aenter__(self) -> int:
        from twisted.internet.endpoints import serverFromString

        endpoint = serverFromString(self.reactor, "haproxy:tcp:0:interface=127.0.0.1")
        self.port = await endpoint.listen(self.factory).addTimeout(STEP, self.reactor)
        return int(self.port.getHost().port)

    async def __aexit__(self, *exc: object) -> None:
        await maybeDeferred(self.port.stopListening).addTimeout(STEP, self.reactor)
        await self.factory.drain(grace=0).addTimeout(STEP, self.reactor)

    def talk(self, port: int, data: bytes) -> Deferred[bytes]:
        d: Deferred[bytes] = deferToThread(exchange, port, data)
        return d.addTimeout(STEP, self.reactor)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"PROXY TCP4 203.0.113.7 127.0.0.1 56324 8080\r\n", ["203.0.113.7", 56324]),
        (b"PROXY TCP6 2001:db8::7 ::1 40000 8080\r\n", ["2001:db8::7", 40000]),
        (proxy_v2("198.51.100.9", 1234, "127.0.0.1", 8080), ["198.51.100.9", 1234]),
    ],
    ids=["v1-tcp4", "v1-tcp6", "v2-tcp4"],
)
@pytest_twisted.ensureDeferred
async def test_peer_is_the_address_from_the_proxy_header(
    reactor: Any, header: bytes, expected: list[Any]
) -> None:
    server = ProxiedServer(reactor)
    async with server as port:
        reply = json.loads(await server.talk(port, header + request()))
    assert reply == {"jsonrpc": "2.0", "id": 1, "result": expected}


@pytest_twisted.ensureDeferred
async def test_header_and_request_in_separate_writes(reactor: Any) -> None:
    def slow_client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=STEP) as sock:
            for piece in (b"PROXY TCP4 192.0.2.1 ", b"127.0.0.1 5000 80\r\n", request()[:10], request()[10:]):
                sock.sendall(piece)
            return sock.makefile("rb").readline()

    server = ProxiedServer(reactor)
    async with server as port:
        line = await deferToThread(slow_client, port).addTimeout(STEP, reactor)
    assert json.loads(line)["result"] == ["192.0.2.1", 5000]


@pytest_twisted.ensureDeferred
async def test_a_connection_without_a_proxy_header_is_dropped(reactor: Any) -> None:
    server = ProxiedServer(reactor)
    async with server as port:
        # A direct client skipping the load balancer: no header, no service.
        received = await server.talk(port, request())
        assert received == b""
        assert not server.factory.connections


def test_twistd_listens_with_the_haproxy_wrapper() -> None:
    options = Options()
    options.parseOptions(["--listen", "haproxy:tcp:8081:interface=127.0.0.1"])
    assert options["endpoints"] == ["haproxy:tcp:8081:interface=127.0.0.1"]
    assert len(list(makeService(options))) == 2

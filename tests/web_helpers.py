"""
Helpers for the HTTP and WebSocket tests: the site of C{--http} driven over a
L{StringTransport} with a L{Clock} (no ports), a small HTTP/1.1 response
parser, and a loopback server for the tests that need real sockets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.server import Site

from jsonservice.demo import make_demo_service
from jsonservice.errors import RPCError
from jsonservice.server import JSONServerFactory
from jsonservice.service import CallContext, JSONService
from jsonservice.web import make_site

PEER = IPv4Address("TCP", "127.0.0.1", 40000)
HOST = IPv4Address("TCP", "127.0.0.1", 8081)


@dataclass
class Response:
    """One parsed HTTP response."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


def parse_responses(data: bytes) -> list[Response]:
    """Every complete response in C{data} (Content-Length or no body; no chunking)."""
    found: list[Response] = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, data
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        assert "chunked" not in headers.get("transfer-encoding", ""), headers
        length = int(headers.get("content-length", "0"))
        found.append(Response(status, headers, rest[:length]))
        data = rest[length:]
    return found


@dataclass
class HTTPHarness:
    """A site and one HTTP connection to it over a L{StringTransport}."""

    site: Site
    factory: JSONServerFactory
    clock: Clock
    transport: StringTransport = field(default_factory=lambda: StringTransport(HOST, PEER))
    channel: Any = None

    def __post_init__(self) -> None:
        self.site.doStart()
        self.channel = self.site.buildProtocol(PEER)
        self.channel.makeConnection(self.transport)

    def send(self, raw: bytes) -> list[Response]:
        """Feed raw bytes; the responses completed since the last call."""
        self.channel.dataReceived(raw)
        return self.take()

    def take(self) -> list[Response]:
        data = self.transport.value()
        self.transport.clear()
        return parse_responses(data)

    def post(self, body: bytes, path: bytes = b"/rpc", headers: dict[bytes, bytes] | None = None) -> Response:
        """POST C{body}; exactly one response must come at once."""
        [response] = self.send(request_bytes(body, path, headers))
        return response

    def close(self) -> None:
        self.site.doStop()


def request_bytes(
    body: bytes, path: bytes = b"/rpc", headers: dict[bytes, bytes] | None = None, method: bytes = b"POST"
) -> bytes:
    """A raw HTTP/1.1 request with a Content-Length."""
    lines = [method + b" " + path + b" HTTP/1.1", b"Host: 127.0.0.1"]
    for name, value in (headers or {}).items():
        lines.append(name + b": " + value)
    if method == b"POST":
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def http_harness(service: JSONService, clock: Clock | None = None, **kwargs: Any) -> HTTPHarness:
    """The C{--http} site of C{service} (factory arguments in C{kwargs}) on a fake connection."""
    clock = clock or Clock()
    factory = JSONServerFactory(service, clock=clock, **kwargs)
    return HTTPHarness(make_site(factory), factory, clock)


#: The longest any one step of a loopback test may take before it fails.
STEP = 5.0


def within(d: Any, seconds: float = STEP) -> Any:
    """C{d} with a timeout, so that a broken test fails instead of hanging."""
    from twisted.internet import reactor

    return d.addTimeout(seconds, reactor)


class WebServer:
    """The C{--http} site on an ephemeral 127.0.0.1 port of the real reactor."""

    def __init__(self, service: JSONService, **kwargs: Any) -> None:
        from twisted.internet import reactor

        self.reactor = reactor
        self.factory = JSONServerFactory(service, **kwargs)
        self.site = make_site(self.factory)
        self.port: Any = None

    async def start(self) -> WebServer:
        from twisted.internet.endpoints import serverFromString

        endpoint = serverFromString(self.reactor, "tcp:0:interface=127.0.0.1")
        self.port = await within(endpoint.listen(self.site))
        return self

    def url(self, path: str = "/ws", scheme: str = "ws") -> str:
        return f"{scheme}://127.0.0.1:{self.port.getHost().port}{path}"

    async def stop(self) -> None:
        """Stop listening and wait for every connection of the factory to end."""
        from twisted.internet.task import deferLater

        await self.port.stopListening()
        for _ in range(int(STEP / 0.01)):
            if not self.factory.connections:
                return
            await deferLater(self.reactor, 0.01, lambda: None)
        raise AssertionError(f"connections left open: {self.factory.connections}")


class Recorder:
    """A request observer (what metrics implement)."""

    def __init__(self) -> None:
        self.done: list[tuple[str, str]] = []
        self.breached: list[str] = []

    def request_done(self, proto: Any, method: str, outcome: str, seconds: float) -> None:
        self.done.append((method, outcome))

    def limit_breached(self, proto: Any, limit: str) -> None:
        self.breached.append(limit)


def slow_service() -> tuple[JSONService, list[Deferred[Any]]]:
    service = make_demo_service()
    running: list[Deferred[Any]] = []

    @service.method
    def slow() -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        running.append(d)
        return d

    @service.method
    def fail() -> None:
        raise RuntimeError("boom")

    @service.method
    def refuse() -> None:
        raise RPCError(7, "no funds", {"balance": 0})

    @service.method(context=True)
    def chatty(ctx: CallContext) -> str:
        ctx.notify("note", 1)
        return "done"

    return service, running

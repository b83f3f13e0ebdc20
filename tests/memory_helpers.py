"""
In-memory helpers for the protocol-behaviour tests: a L{JSONProtocol} on a
L{StringTransport} that counts writes, and a connected server/client pair
over L{twisted.test.iosim}, both driven by a L{Clock}.  No ports, no sleeps.
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.test.iosim import IOPump, connectedServerAndClient

from jsonservice.jsonrpc import NO_ID
from jsonservice.limits import Limits
from jsonservice.protocol import JSONProtocol
from jsonservice.service import JSONService

__all__ = [
    "CapturedLog",
    "CountingTransport",
    "Pair",
    "connected_pair",
    "parse_lines",
    "server_on_string_transport",
]


class CountingTransport(StringTransport):
    """A L{StringTransport} that remembers every C{write} call separately."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        super().write(data)

    def take(self) -> list[Any]:
        """The JSON values written since the last call, one per line."""
        data = self.value()
        self.clear()
        self.writes.clear()
        return parse_lines(data)


def parse_lines(data: bytes) -> list[Any]:
    """Every line of C{data} decoded; each line must end with C{\\n}."""
    if not data:
        return []
    assert data.endswith(b"\n"), data
    return [orjson.loads(line) for line in data[:-1].split(b"\n")]


def server_on_string_transport(
    service: JSONService | None, clock: Clock | None = None, **limits: Any
) -> tuple[JSONProtocol, CountingTransport, Clock]:
    """A connected L{JSONProtocol} serving C{service}, writing to a L{CountingTransport}."""
    clock = clock if clock is not None else Clock()
    proto = JSONProtocol(service, Limits.from_kwargs(**limits), clock)
    transport = CountingTransport()
    proto.makeConnection(transport)
    return proto, transport, clock


class Pair:
    """A server and a client L{JSONProtocol} joined by an L{IOPump}."""

    def __init__(self, server: JSONProtocol, client: JSONProtocol, pump: IOPump, clock: Clock) -> None:
        self.server = server
        self.client = client
        self.pump = pump
        self.clock = clock

    def flush(self) -> None:
        self.pump.flush()


def connected_pair(
    service: JSONService | None,
    client_service: JSONService | None = None,
    clock: Clock | None = None,
    server_limits: dict[str, Any] | None = None,
    client_limits: dict[str, Any] | None = None,
) -> Pair:
    """Connect a server protocol (serving C{service}) to a client protocol in memory."""
    clock = clock if clock is not None else Clock()
    s_limits = Limits.from_kwargs(**(server_limits or {}))
    c_limits = Limits.from_kwargs(**{"idle_timeout": 0, **(client_limits or {})})
    client, server, pump = connectedServerAndClient(
        lambda: JSONProtocol(service, s_limits, clock),
        lambda: JSONProtocol(client_service, c_limits, clock),
        clock=clock,
    )
    return Pair(server, client, pump, clock)


class CapturedLog:
    """Collects twisted.logger events while active (a context manager)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._observer = self.events.append

    def __enter__(self) -> CapturedLog:
        globalLogPublisher.addObserver(self._observer)
        return self

    def __exit__(self, *exc: object) -> None:
        globalLogPublisher.removeObserver(self._observer)

    def with_key(self, key: str) -> list[dict[str, Any]]:
        return [event for event in self.events if key in event]


def rpc(method: str, params: Any = None, id: Any = 1) -> bytes:
    """One JSON-RPC request line (a notification when C{id} is L{NO_ID})."""
    obj: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        obj["params"] = params
    if id is not NO_ID:
        obj["id"] = id
    return orjson.dumps(obj) + b"\n"


def when_lost(proto: JSONProtocol) -> Deferred[None]:
    """A Deferred that fires once C{proto}'s C{connectionLost} has run."""
    lost: Deferred[None] = Deferred()
    original = proto.connectionLost

    def connection_lost(*args: Any, **kwargs: Any) -> None:
        original(*args, **kwargs)
        if not lost.called:
            lost.callback(None)

    proto.connectionLost = connection_lost  # type: ignore[method-assign]
    return lost

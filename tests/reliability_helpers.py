"""
Helpers shared by the reliability tests (adversarial input, backpressure,
protocol properties): a server L{JSONProtocol} on an in-memory transport
driven by a L{Clock}, a transport that models Twisted's output buffer
(pausing its streaming producer past C{bufferSize}), and a hostile-minded
service.  No ports, no sleeps.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher

from jsonservice.limits import Limits
from jsonservice.protocol import JSONProtocol
from jsonservice.service import JSONService

__all__ = [
    "BufferedTransport",
    "CapturedLog",
    "Wire",
    "good_request",
    "good_result",
    "hostile_service",
    "parse_replies",
]


def parse_replies(data: bytes) -> list[Any]:
    """
    Every line of C{data} decoded with the stdlib (exact big integers);
    every line must be terminated by C{\\n}.
    """
    if not data:
        return []
    assert data.endswith(b"\n"), data[-200:]
    return [json.loads(line) for line in data[:-1].split(b"\n")]


def good_request(tag: str) -> bytes:
    """A request that must always be answered: C{echo(tag)} with id C{tag}."""
    return b'{"jsonrpc":"2.0","method":"echo","params":["%s"],"id":"%s"}\n' % (tag.encode(), tag.encode())


def good_result(tag: str) -> dict[str, Any]:
    """The reply to L{good_request}C{(tag)}."""
    return {"jsonrpc": "2.0", "result": tag, "id": tag}


class BufferedTransport(StringTransport):
    """
    A L{StringTransport} that behaves like Twisted's C{FileDescriptor} with
    a peer that does not read: output accumulates, and once more than
    C{bufferSize} bytes are unsent the registered streaming producer is
    paused.  L{peer_reads} is the peer finally reading: the buffer empties
    and the producer is resumed.  C{producerState} (from L{StringTransport})
    says whether the protocol told the transport to stop I{reading}.
    """

    bufferSize = 2**16

    def __init__(self) -> None:
        super().__init__()
        self.producer_paused = False
        self.aborted = False
        self.most_unsent = 0

    def write(self, data: bytes) -> None:
        super().write(data)
        unsent = len(self.io.getvalue())
        self.most_unsent = max(self.most_unsent, unsent)
        if self.producer is not None and self.streaming and unsent > self.bufferSize:
            self.producer_paused = True
            self.producer.pauseProducing()

    def peer_reads(self) -> bytes:
        """The peer reads everything: return it and resume the producer."""
        data = self.value()
        self.clear()
        if self.producer_paused and self.producer is not None:
            self.producer_paused = False
            self.producer.resumeProducing()
        return data

    def abortConnection(self) -> None:
        self.aborted = True
        super().abortConnection()


class Wire:
    """
    One server L{JSONProtocol} on an in-memory transport with a L{Clock}.

    @ivar written: the reply values parsed so far, in order.
    """

    def __init__(
        self, service: JSONService | None, transport: StringTransport | None = None, **limits: Any
    ) -> None:
        self.clock = Clock()
        self.transport = transport if transport is not None else StringTransport()
        self.proto = JSONProtocol(service, Limits.from_kwargs(**limits), self.clock)
        self.proto.makeConnection(self.transport)

    def feed(self, data: bytes) -> None:
        """Deliver C{data} to the protocol as one read."""
        self.proto.dataReceived(data)

    def replies(self) -> list[Any]:
        """The replies written since the last call, decoded."""
        data = self.transport.value()
        self.transport.clear()
        return parse_replies(data)

    def exchange(self, *chunks: bytes) -> list[Any]:
        """Deliver each chunk as one read; return the replies written."""
        for chunk in chunks:
            self.feed(chunk)
        return self.replies()

    def lose(self) -> None:
        """The peer is gone."""
        from twisted.internet.error import ConnectionLost
        from twisted.python.failure import Failure

        self.transport.loseConnection()
        self.proto.connectionLost(Failure(ConnectionLost("peer went away")))


class CapturedLog:
    """Collects twisted.logger events while active (a context manager)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> CapturedLog:
        globalLogPublisher.addObserver(self.events.append)
        return self

    def __exit__(self, *exc: object) -> None:
        globalLogPublisher.removeObserver(self.events.append)

    def formats(self) -> list[str]:
        return [str(event.get("log_format", "")) for event in self.events]

    def failures(self) -> list[dict[str, Any]]:
        return [event for event in self.events if "log_failure" in event]


class HostileService(JSONService):
    """A L{JSONService} whose test hooks are visible attributes."""

    counted: int
    slow: list[Deferred[Any]]
    cancelled: list[str]


def hostile_service() -> HostileService:
    """
    The service the adversarial tests talk to: C{echo}, C{count} (counts its
    calls), handlers that raise, hang, answer later or return what JSON
    cannot hold, and a plain-message handler answering C{{"echo": message}}.
    """
    service = HostileService()
    service.counted = 0
    service.slow = []
    service.cancelled = []

    @service.method
    def echo(value: Any) -> Any:
        return value

    @service.method
    def count() -> int:
        service.counted += 1
        return service.counted

    @service.method
    def boom() -> None:
        raise ValueError("a handler bug with a secret in it: hunter2")

    @service.method
    async def async_boom() -> None:
        raise KeyError("async secret")

    @service.method
    def deferred_boom() -> Deferred[None]:
        d: Deferred[None] = Deferred()
        d.errback(ZeroDivisionError("deferred secret"))
        return d

    @service.method
    def hang(name: str = "hang") -> Deferred[None]:
        return Deferred(lambda _: service.cancelled.append(name))

    @service.method
    def slow() -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        service.slow.append(d)
        return d

    @service.method
    def blob(size: int) -> str:
        return "x" * size

    unserializable = {
        "a_set": lambda: {1, 2},
        "a_nan": lambda: float("nan"),
        "an_infinity": lambda: [1.0, float("-inf")],
        "an_object": object,
        "a_surrogate": lambda: "\ud800",
        "some_bytes": lambda: b"raw",
    }
    for name, func in unserializable.items():
        service.add_method(name, func)

    @service.message
    def plain(message: Any) -> Any:
        if message == "unserializable":
            return {1, 2}
        return {"echo": message}

    return service

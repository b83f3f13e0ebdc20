"""
L{HTTPClient} against a hostile HTTP server (real loopback TCP): a reply
body is read up to C{max_reply} and no further, announced or not.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater

from jsonservice.httpclient import HTTPClient, ReplyTooLarge


class _Server(Protocol):
    """Answers the first request with C{head}, then C{body} pieces as the client reads them."""

    head = b""
    piece = b""
    pieces = 0

    def connectionMade(self) -> None:
        self.sent = 0
        self.started = False
        self.stopped = False

    def dataReceived(self, data: bytes) -> None:
        if self.started or b"\r\n\r\n" not in data:
            return
        self.started = True
        self.transport.write(self.head)  # type: ignore[union-attr]
        self.transport.registerProducer(self, True)  # type: ignore[union-attr]
        self.resumeProducing()

    def resumeProducing(self) -> None:
        # Write a little at a time while the client reads; stop when it closes.
        while not self.stopped and self.sent < self.pieces:
            self.sent += 1
            self.transport.write(self.piece)  # type: ignore[union-attr]
            if self.sent % 16 == 0:
                return

    def pauseProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        self.stopped = True

    def connectionLost(self, reason: Any = None) -> None:
        self.stopped = True
        self.factory.lost.append(self.sent)  # type: ignore[attr-defined]


async def _call(
    reactor: Any, head: bytes, piece: bytes, pieces: int, max_reply: int
) -> tuple[Any, list[int]]:
    factory = Factory.forProtocol(_Server)
    factory.lost = []  # type: ignore[attr-defined]
    _Server.head, _Server.piece, _Server.pieces = head, piece, pieces
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    client = HTTPClient(
        reactor, f"http://127.0.0.1:{port.getHost().port}/rpc", call_timeout=10, max_reply=max_reply
    )
    try:
        try:
            outcome: Any = await client.call("echo", 1)
        except Exception as exc:  # the outcome is what the test looks at
            outcome = exc
        if pieces:  # the server sees its connection go (bounded wait)
            for _ in range(250):
                if factory.lost:  # type: ignore[attr-defined]
                    break
                await deferLater(reactor, 0.02, lambda: None)
    finally:
        await client.close()
        await port.stopListening()
    return outcome, factory.lost  # type: ignore[attr-defined]


@pytest_twisted.ensureDeferred
async def test_an_announced_body_past_the_limit_is_not_read(reactor: Any) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 500000000\r\n\r\n"
    outcome, lost = await _call(reactor, head, b"x" * 65536, 10_000, max_reply=1 << 20)
    assert isinstance(outcome, ReplyTooLarge)
    assert "longer than 1048576 bytes" in str(outcome)
    assert lost
    assert lost[0] < 200  # the server was cut off, far short of 10,000 pieces


@pytest.mark.parametrize("chunked", [True, False])
@pytest_twisted.ensureDeferred
async def test_an_endless_body_is_cut_at_the_limit(reactor: Any, chunked: bool) -> None:
    if chunked:
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        piece = b"10000\r\n" + b"x" * 65536 + b"\r\n"
    else:  # no length: the body runs until the connection closes
        head = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
        piece = b"x" * 65536
    outcome, lost = await _call(reactor, head, piece, 10_000, max_reply=1 << 20)
    assert isinstance(outcome, ReplyTooLarge)
    assert lost
    assert lost[0] < 200


@pytest_twisted.ensureDeferred
async def test_a_reply_within_the_limit_is_read(reactor: Any) -> None:
    body = b'{"jsonrpc":"2.0","result":"' + b"y" * 1000 + b'","id":1}'
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    outcome, _ = await _call(reactor, head, b"", 0, max_reply=2000)
    assert outcome == "y" * 1000
    outcome, _ = await _call(reactor, head, b"", 0, max_reply=500)
    assert isinstance(outcome, ReplyTooLarge)

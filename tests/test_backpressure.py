"""
Backpressure (issue 5 item 1, DESIGN §5): the in-flight cap pauses reading
and resumes below it; a peer that does not read its replies stops being
read once its unsent output passes C{max_unsent} and is aborted after the
write-stall timeout; memory stays bounded while a client floods requests
without reading.

The protocol-level cases run on an in-memory transport that models
Twisted's output buffer, with a L{Clock}; the flood runs on real loopback.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time
from typing import Any

import pytest_twisted
from twisted.internet.defer import maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from jsonservice import JSONServerFactory

try:
    from tests.reliability_helpers import (
        BufferedTransport,
        CapturedLog,
        Wire,
        good_request,
        good_result,
        hostile_service,
    )
except ImportError:  # run from inside tests/
    from reliability_helpers import (  # type: ignore[no-redef]
        BufferedTransport,
        CapturedLog,
        Wire,
        good_request,
        good_result,
        hostile_service,
    )


def slow_request(id: int) -> bytes:
    return b'{"jsonrpc":"2.0","method":"slow","id":%d}\n' % id


def blob_request(id: int, size: int) -> bytes:
    return b'{"jsonrpc":"2.0","method":"blob","params":[%d],"id":%d}\n' % (size, id)


# -- the in-flight cap ------------------------------------------------------------------


def test_in_flight_cap_pauses_reading_and_resumes_below_it() -> None:
    service = hostile_service()
    wire = Wire(service, max_in_flight=3)
    proto, transport = wire.proto, wire.transport
    wire.feed(b"".join(slow_request(i) for i in range(5)) + good_request("queued"))
    # At the cap: three running, the transport told to stop reading, nothing lost.
    assert proto.in_flight == 3
    assert proto.paused
    assert transport.producerState == "paused"
    assert wire.replies() == []
    # More data while paused (a transport may still deliver what it had) waits too.
    wire.feed(good_request("late"))
    assert wire.replies() == []
    assert proto.in_flight == 3
    service.slow[0].callback("r0")
    # Below the cap: reading resumes, the 4th request starts, the cap is hit again.
    assert wire.replies() == [{"jsonrpc": "2.0", "result": "r0", "id": 0}]
    assert proto.in_flight == 3
    assert transport.producerState == "paused"
    service.slow[1].callback("r1")
    assert proto.in_flight == 3  # the 5th started
    service.slow[2].callback("r2")
    # Now only two run: the queued echo requests are answered (in order),
    # reading goes on.  Replies of concurrent requests come in any order.
    replies = wire.replies()
    assert sorted(map(str, (r["id"] for r in replies))) == ["1", "2", "late", "queued"]
    echoes = [r for r in replies if isinstance(r["id"], str)]
    assert echoes == [good_result("queued"), good_result("late")]
    assert proto.in_flight == 2
    assert not proto.paused
    assert transport.producerState == "producing"
    for d in service.slow[3:]:
        d.callback("rest")
    assert sorted(r["id"] for r in wire.replies()) == [3, 4]
    assert proto.in_flight == 0


def test_in_flight_cap_with_batches_and_plain_messages() -> None:
    """A batch is never split: its items all start, then reading pauses."""
    service = hostile_service()
    wire = Wire(service, max_in_flight=2)
    batch = b"[" + b",".join(slow_request(i).strip() for i in range(4)) + b"]\n"
    wire.feed(batch + good_request("after"))
    assert wire.proto.in_flight == 4
    assert wire.transport.producerState == "paused"
    service.slow[0].callback("x")
    service.slow[1].callback("x")
    assert wire.replies() == []  # 2 still running: at the cap, the echo waits
    assert wire.transport.producerState == "paused"
    service.slow[2].callback("x")
    # One running, below the cap: reading resumed; the batch replies once, when complete.
    assert wire.replies() == [good_result("after")]
    assert wire.transport.producerState == "producing"
    service.slow[3].callback("x")
    (batch_reply,) = wire.replies()
    assert sorted(r["id"] for r in batch_reply) == [0, 1, 2, 3]


def test_in_flight_pause_survives_connection_loss() -> None:
    """Losing a paused connection cancels its handlers and leaves no timer."""
    service = hostile_service()
    wire = Wire(service, max_in_flight=2, request_timeout=30)
    wire.feed(b"".join(slow_request(i) for i in range(4)))
    assert wire.proto.in_flight == 2
    wire.lose()
    assert wire.proto.in_flight == 0
    assert wire.clock.getDelayedCalls() == []
    for d in service.slow:
        assert d.called
    assert wire.transport.value() == b""


# -- a peer that does not read ----------------------------------------------------------


def test_stalled_output_stops_reading_then_drains() -> None:
    service = hostile_service()
    transport = BufferedTransport()
    wire = Wire(service, transport, max_unsent=1024, write_stall_timeout=10)
    assert transport.bufferSize == 1024  # the protocol set the transport's high-water mark
    wire.feed(b"".join(blob_request(i, 300) for i in range(10)))
    # Over max_unsent: the transport paused the protocol, which stopped reading.
    assert transport.producer_paused
    assert wire.proto.paused
    assert transport.producerState == "paused"
    written = len(transport.value())
    wire.feed(b"".join(good_request(f"q{i}") for i in range(5)))
    assert len(transport.value()) == written  # not read, not answered: queued
    wire.clock.advance(9.9)
    assert not transport.aborted
    # The peer reads: output drains, reading resumes, the queued requests are answered.
    # Replies come as the peer reads; the protocol stops and resumes on the way.
    replies: list[Any] = []
    for _ in range(50):
        replies += json.loads(b"[" + transport.peer_reads().strip().replace(b"\n", b",") + b"]")
        if len(replies) >= 15:
            break
    assert [r["id"] for r in replies[:10]] == list(range(10))
    assert replies[10:] == [good_result(f"q{i}") for i in range(5)]
    assert transport.producerState == "producing"
    assert not wire.proto.paused
    wire.clock.advance(100)
    assert not transport.aborted  # the stall timer was cancelled on resume


def test_stalled_output_is_aborted_after_write_stall_timeout() -> None:
    service = hostile_service()
    transport = BufferedTransport()
    wire = Wire(service, transport, max_unsent=1024, write_stall_timeout=10)
    wire.feed(b"".join(blob_request(i, 300) for i in range(10)))
    wire.feed(slow_request(99))  # queued, never started
    assert transport.producerState == "paused"
    with CapturedLog() as log:
        wire.clock.advance(9.99)
        assert not transport.aborted
        wire.clock.advance(0.02)
    assert transport.aborted
    assert any("stalled" in f for f in log.formats())
    assert service.slow == []  # the queued request never ran
    wire.lose()
    assert wire.clock.getDelayedCalls() == []


def test_write_stall_timeout_zero_never_aborts() -> None:
    transport = BufferedTransport()
    wire = Wire(hostile_service(), transport, max_unsent=1024, write_stall_timeout=0)
    wire.feed(b"".join(blob_request(i, 300) for i in range(10)))
    assert transport.producerState == "paused"
    wire.clock.advance(10_000)
    assert not transport.aborted


def test_in_flight_and_output_pauses_combine() -> None:
    """Reading resumes only once both the output drained and the cap allows."""
    service = hostile_service()
    transport = BufferedTransport()
    wire = Wire(service, transport, max_unsent=1024, max_in_flight=1)
    wire.feed(blob_request(0, 2000))
    wire.feed(slow_request(1) + good_request("last"))
    assert transport.producer_paused
    assert transport.producerState == "paused"
    assert service.slow == []  # paused by output before the slow request started
    assert transport.peer_reads().count(b"\n") == 1
    assert len(service.slow) == 1  # output drained: the slow one started, cap reached
    assert transport.producerState == "paused"
    service.slow[0].callback("done")
    replies = wire.replies()
    assert len(replies) == 2
    assert {"jsonrpc": "2.0", "result": "done", "id": 1} in replies
    assert good_result("last") in replies
    assert transport.producerState == "producing"


def test_one_read_cannot_queue_unbounded_output() -> None:
    """
    A read of many small requests whose replies are large (amplification)
    must stop being processed once its output passes C{max_unsent}.
    """
    transport = BufferedTransport()
    wire = Wire(hostile_service(), transport, max_unsent=1024)
    wire.feed(b"".join(blob_request(i, 10_000) for i in range(100)))
    assert transport.most_unsent <= 4 * (1024 + 10_100), transport.most_unsent
    # The rest of the read waits until the peer reads.
    answered = 0
    for _ in range(200):
        data = transport.peer_reads()
        answered += data.count(b"\n")
        if answered == 100:
            break
    assert answered == 100


# -- a client that floods without reading: real loopback -----------------------------------


FLOOD_SECONDS = 2.0
MAX_UNSENT = 256 * 1024


def _request_block(start: int, count: int) -> bytes:
    return b"".join(
        b'{"jsonrpc":"2.0","method":"echo","params":[%d],"id":%d}\n' % (i, i)
        for i in range(start, start + count)
    )


def _flood(port: int, seconds: float) -> tuple[socket.socket, int, bytes, int]:
    """
    Write requests as fast as the socket takes them for C{seconds}, never
    reading.  Return the socket, the number of complete requests sent, the
    unsent rest of the last one, and how many times the socket was full.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setblocking(False)
    deadline = time.monotonic() + seconds
    next_id = 0
    pending = b""
    sent_lines = 0
    full = 0
    line_cut = False
    while time.monotonic() < deadline:
        if not pending:
            pending = _request_block(next_id, 1000)
            next_id += 1000
        try:
            n = sock.send(pending[:65536])
        except BlockingIOError:
            full += 1
            select.select([], [sock], [], 0.05)
            continue
        if n:
            sent_lines += pending[:n].count(b"\n")
            line_cut = not pending[:n].endswith(b"\n")
            pending = pending[n:]
    # The unsent rest of a line the last send cut, if any: sent later.
    rest = pending[: pending.find(b"\n") + 1] if line_cut else b""
    if rest:
        sent_lines += 1
    return sock, sent_lines, rest, full


def _finish(sock: socket.socket, rest: bytes, expected: int, seconds: float = 10.0) -> list[int]:
    """Send C{rest}, read replies until C{expected} arrived; return their ids."""
    buffer = bytearray()
    lines = 0
    deadline = time.monotonic() + seconds
    while (lines < expected or rest) and time.monotonic() < deadline:
        readable, writable, _ = select.select([sock], [sock] if rest else [], [], 0.1)
        if writable and rest:
            with contextlib.suppress(BlockingIOError):
                rest = rest[sock.send(rest) :]
        if readable:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            buffer += chunk
            lines += chunk.count(b"\n")
    sock.close()
    return [json.loads(line)["id"] for line in bytes(buffer).splitlines()]


@pytest_twisted.ensureDeferred
async def test_flooding_client_that_never_reads_keeps_memory_bounded(reactor: Any) -> None:
    calls_before = set(reactor.getDelayedCalls())
    factory = JSONServerFactory(hostile_service(), max_unsent=MAX_UNSENT)
    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(factory)
    flood = deferToThread(_flood, port.getHost().port, FLOOD_SECONDS)
    most_backlog = most_unsent = 0
    paused_seen = 0
    samples = 0
    try:
        while not flood.called:
            await deferLater(reactor, 0.01, lambda: None)
            for proto in factory.connections:
                backlog = proto._core.framer.buffered + proto._core._queue_bytes
                t: Any = proto.transport
                unsent = len(t.dataBuffer) - t.offset + t._tempDataLen
                most_backlog = max(most_backlog, backlog)
                most_unsent = max(most_unsent, unsent)
                paused_seen += "output" in proto._core.holds
                samples += 1
        sock, sent, rest, full = await flood
        assert samples > 20
        assert full > 0, "the client's socket never filled: the server kept reading"
        assert paused_seen > 0, "the server never paused reading for its stalled output"
        # Bounded: one read's worth of requests waiting, a few x max_unsent of output.
        assert most_backlog <= 2 * MAX_UNSENT, most_backlog
        assert most_unsent <= 3 * MAX_UNSENT, most_unsent
        # Nothing lost: once the client reads, every request it sent is answered once.
        print(
            f"flood: {sent} requests sent in {FLOOD_SECONDS}s, socket full {full}x; "
            f"most framer backlog {most_backlog} B, most unsent output {most_unsent} B "
            f"(max_unsent {MAX_UNSENT} B), paused in {paused_seen}/{samples} samples"
        )
        ids = await deferToThread(_finish, sock, rest, sent)
        assert len(ids) == sent
        assert ids == list(range(sent))
    finally:
        await maybeDeferred(port.stopListening)
        for proto in list(factory.connections):
            proto.transport.loseConnection()
        for _ in range(100):
            if not factory.connections:
                break
            await deferLater(reactor, 0.01, lambda: None)
    assert not factory.connections
    await deferLater(reactor, 0.01, lambda: None)
    assert [c for c in reactor.getDelayedCalls() if c.active() and c not in calls_before] == []

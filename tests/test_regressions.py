"""
Regression tests, at the Twisted adapter, for what an outside review and
attack found in the first version (the core-rework issue): the close that
never completed behind a paused producer, half-close, idle timeouts and
outgoing messages, the server-wide memory budget, log and metrics bounds.
The sans-IO core has its own exhaustive tests (test_connection.py).
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure

from jsonservice import JSONServerFactory, JSONService
from jsonservice.protocol import JSONProtocol

try:
    from tests.memory_helpers import server_on_string_transport
    from tests.reliability_helpers import CapturedLog
except ImportError:  # run from inside tests/
    from memory_helpers import server_on_string_transport  # type: ignore[no-redef]
    from reliability_helpers import CapturedLog  # type: ignore[no-redef]


def _service() -> JSONService:
    service = JSONService()
    service.add_method("echo", lambda value: value)
    service.add_method("blob", lambda n: "x" * n)
    return service


def _lines(data: bytes) -> list[Any]:
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def _request(method: str, params: Any, id_: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": id_}).encode() + b"\n"


async def _until(reactor: Any, predicate: Any, seconds: float = 10.0) -> bool:
    for _ in range(int(seconds / 0.02)):
        if predicate():
            return True
        await deferLater(reactor, 0.02, lambda: None)
    return bool(predicate())


# -- the close always completes -------------------------------------------------------


def _unread_then_close(port: int, requests: int) -> int:
    """Pipeline requests without reading, wait, then read everything and close."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    sock.sendall(b"".join(_request("blob", [20_000], i) for i in range(requests)))
    time.sleep(1.0)  # the server's idle timeout fires while its output is backed up
    return _read_to_end(sock).count(b"\n")


def _read_to_end(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes, then close."""
    received = []
    while chunk := sock.recv(1 << 16):
        received.append(chunk)
    sock.close()
    return b"".join(received)


@pytest_twisted.ensureDeferred
async def test_close_behind_a_paused_producer_completes(reactor: Any) -> None:
    """
    Closing while the output watch is paused (replies backed up) used to
    leave the socket in CLOSE-WAIT for ever: Twisted's doWrite resumed the
    paused producer instead of finishing the close.
    """
    factory = JSONServerFactory(_service(), idle_timeout=0.3, max_unsent=64 * 1024)
    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(factory)
    try:
        replies = deferToThread(_unread_then_close, port.getHost().port, 400)
        count = await replies
        assert count == 400  # every reply written before the close arrived
        assert await _until(reactor, lambda: not factory.connections), "the close never completed"
    finally:
        await port.stopListening()


# -- half-close ------------------------------------------------------------------------


def _half_close(port: int, payload: bytes) -> bytes:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(payload)
    sock.shutdown(socket.SHUT_WR)
    return _read_to_end(sock)


@pytest_twisted.ensureDeferred
async def test_half_closing_peers_get_every_reply(reactor: Any) -> None:
    """C{printf '...' | nc -N}: terminated, unterminated and pipelined requests are all answered."""
    service = _service()
    slow: list[Deferred[str]] = []

    @service.method
    def later() -> Deferred[str]:
        d: Deferred[str] = Deferred()
        slow.append(d)
        reactor.callLater(0.05, d.callback, "late")
        return d

    factory = JSONServerFactory(service)
    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(factory)
    number = port.getHost().port
    try:
        for _ in range(10):
            got = _lines(await deferToThread(_half_close, number, _request("echo", ["t"], 1)))
            assert got == [{"jsonrpc": "2.0", "result": "t", "id": 1}]
        got = _lines(await deferToThread(_half_close, number, _request("echo", ["u"], 2).rstrip()))
        assert got == [{"jsonrpc": "2.0", "result": "u", "id": 2}]
        pipelined = _request("later", [], "a") + _request("echo", [3], 3) + b'{"jsonrpc": "2.0", "meth'
        got = _lines(await deferToThread(_half_close, number, pipelined))
        assert {r["id"] for r in got} == {"a", 3, None}
        assert [r["error"]["code"] for r in got if r["id"] is None] == [-32700]
        assert await _until(reactor, lambda: not factory.connections)
    finally:
        await port.stopListening()


def test_half_close_waits_for_running_handlers() -> None:
    service = _service()
    gate: Deferred[str] = Deferred()
    service.add_method("wait", lambda: gate)
    proto, transport, _ = server_on_string_transport(service)
    proto.dataReceived(_request("wait", [], 1) + _request("echo", [2], 2))
    proto.readConnectionLost()
    assert not transport.disconnecting  # a reply is still owed
    gate.callback("done")
    assert {r["id"] for r in _lines(transport.value())} == {1, 2}
    assert transport.disconnecting


# -- idle timeout ------------------------------------------------------------------------


def test_outgoing_notifications_keep_a_connection_alive() -> None:
    proto, transport, clock = server_on_string_transport(_service(), idle_timeout=3)
    for _ in range(20):
        proto.notify("tick")
        clock.advance(0.5)
    assert not transport.disconnecting
    clock.advance(3)
    clock.advance(1)
    assert transport.disconnecting


def test_idle_timer_lets_pending_input_be_read_first() -> None:
    """A stall longer than the idle timeout (SIGSTOP/SIGCONT) must not drop requests already sent."""
    proto, transport, clock = server_on_string_transport(_service(), idle_timeout=3)
    clock.advance(10)  # the timer fires late, as after a stall ...
    proto.dataReceived(_request("echo", ["kept"], 1))  # ... and the reactor reads what arrived
    clock.advance(1)
    assert not transport.disconnecting
    assert _lines(transport.value()) == [{"jsonrpc": "2.0", "result": "kept", "id": 1}]


# -- the server-wide memory budget ------------------------------------------------------


def test_memory_budget_pauses_the_heaviest_readers_and_resumes() -> None:
    clock = Clock()
    factory = JSONServerFactory(_service(), clock=clock, max_buffered=100_000, idle_timeout=0)
    protos: list[tuple[JSONProtocol, StringTransport]] = []
    for _ in range(5):
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        protos.append((proto, transport))
    light, _ = protos[0]
    light.dataReceived(b'{"a": "' + b"x" * 100)
    for proto, transport in protos[1:]:
        for _ in range(4):
            if transport.producerState == "producing":  # a paused transport delivers nothing
                proto.dataReceived(b"y" * 10_000)  # an unfinished line, growing
    paused = [t.producerState == "paused" for _, t in protos]
    assert paused[0] is False  # the light reader keeps reading
    assert any(paused[1:])
    assert factory.budget.total <= 100_000 + 2 * 10_000 + 200
    # Paused connections read no more; their lines finish elsewhere or close.
    for proto, transport in protos[1:]:
        transport.loseConnection()
        proto.connectionLost(Failure(ConnectionDone()))
    assert all(t.producerState == "producing" for _, t in protos[:1])
    assert factory.budget.total < 1000


def test_running_requests_count_in_the_memory_budget() -> None:
    """
    Requests still running hold memory (the attack run: 200 connections x
    1,000 hanging calls, +700 MB): they count toward max_buffered, so a peer
    piling them up stops being read while a light one is still served.
    """
    clock = Clock()
    service = _service()
    hanging: list[Deferred[Any]] = []
    service.add_method("hang", lambda: hanging.append(Deferred()) or hanging[-1])
    factory = JSONServerFactory(
        service, clock=clock, max_buffered=64 * 1024, idle_timeout=0, max_in_flight=1000
    )
    heavy = factory.buildProtocol(None)
    heavy_transport = StringTransport()
    heavy.makeConnection(heavy_transport)
    light = factory.buildProtocol(None)
    light_transport = StringTransport()
    light.makeConnection(light_transport)
    for i in range(60):
        if heavy_transport.producerState == "producing":
            heavy.dataReceived(_request("hang", [], i))
    assert heavy_transport.producerState == "paused"
    assert 32 <= len(hanging) < 60  # stopped near 64 KiB of running requests
    light.dataReceived(_request("echo", ["still served"], 1))
    assert _lines(light_transport.value()) == [{"jsonrpc": "2.0", "result": "still served", "id": 1}]
    for d in hanging:
        d.callback(None)
    assert heavy_transport.producerState == "producing"
    assert factory.budget.total < 1000  # finished requests are uncharged at once


def test_finished_notifications_leave_the_memory_budget() -> None:
    """A request that writes nothing when it ends (a notification) is uncharged too."""
    clock = Clock()
    service = _service()
    hanging: list[Deferred[Any]] = []
    service.add_method("hang", lambda: hanging.append(Deferred()) or hanging[-1])
    factory = JSONServerFactory(service, clock=clock, idle_timeout=0)
    proto = factory.buildProtocol(None)
    proto.makeConnection(StringTransport())
    proto.dataReceived(b"".join(b'{"jsonrpc":"2.0","method":"hang"}\n' for _ in range(5)))
    assert factory.budget.total == 5 * 2048
    for d in hanging:
        d.callback(None)
    assert factory.budget.total == 0


# -- bounded logs and labels --------------------------------------------------------------


def test_logged_peer_data_is_bounded() -> None:
    proto, _, _ = server_on_string_transport(_service())
    huge = "z" * 1_000_000
    with CapturedLog() as log:
        proto.dataReceived(json.dumps({"jsonrpc": "2.0", "result": 1, "id": huge}).encode() + b"\n")
        proto.dataReceived(
            json.dumps({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": huge}}).encode()
            + b"\n"
        )
    sizes = [len(str(event.get("id", ""))) for event in log.events]
    assert len(sizes) == 2
    assert max(sizes) < 200


def test_metrics_labels_only_for_registered_methods() -> None:
    seen: list[str] = []

    class Observer:
        def request_done(self, proto: Any, method: str, outcome: str, seconds: float) -> None:
            seen.append(method)

        def limit_breached(self, proto: Any, limit: str) -> None:
            pass

    factory = JSONServerFactory(_service(), clock=Clock(), auth_token="secret")
    factory.add_observer(Observer())
    proto = factory.buildProtocol(None)
    proto.makeConnection(StringTransport())
    proto.dataReceived(b"".join(_request(f"junk{i}", [], i) for i in range(300)))
    assert set(seen) == {"<unknown>"}
    proto.dataReceived(_request("rpc.authenticate", {"token": "secret"}, "a"))
    proto.dataReceived(_request("echo", [1], 1) + _request("nope", [], 2))
    assert seen[-3:] == ["rpc.authenticate", "echo", "<unknown>"]


class _Reactor:
    """Just enough reactor for a FileDescriptor: it only notes who wants to write."""

    def __init__(self) -> None:
        self.writers: set[Any] = set()

    def addReader(self, fd: Any) -> None: ...
    def removeReader(self, fd: Any) -> None: ...

    def addWriter(self, fd: Any) -> None:
        self.writers.add(fd)

    def removeWriter(self, fd: Any) -> None:
        self.writers.discard(fd)


def _file_descriptor() -> Any:
    from twisted.internet.abstract import FileDescriptor

    class Socketless(FileDescriptor):
        accepting = 0  # how many bytes the "socket" takes per write

        def __init__(self, reactor: Any) -> None:
            super().__init__(reactor=reactor)
            self.sent = b""

        def writeSomeData(self, data: bytes) -> int:
            taken = min(len(data), self.accepting)
            self.sent += bytes(data[:taken])
            return taken

        def getPeer(self) -> Any:
            return "peer"

        def getHost(self) -> Any:
            return "host"

    fd = Socketless(reactor=_Reactor())
    fd.connected = True
    return fd


def test_close_completes_though_the_output_watch_was_paused() -> None:
    """
    Twisted's doWrite resumes a paused producer I{instead of} finishing a
    pending loseConnection: the connection must step aside so that the
    close completes once the output drains (it used to stay in CLOSE-WAIT).
    """
    fd = _file_descriptor()
    proto = JSONProtocol(_service(), None, Clock())
    fd.protocol = proto
    proto.makeConnection(fd)
    assert fd.producer is proto._watch
    proto.dataReceived(_request("blob", [200_000], 1))
    fd.doWrite()  # nothing sent yet: the buffer is past the high-water mark
    assert fd.producerPaused
    proto._close()  # e.g. the idle timeout, or a wrong token
    fd.accepting = 1 << 30  # the peer reads everything
    outcome = None
    for _ in range(5):  # the reactor calls doWrite only while the fd wants to write
        if fd not in fd.reactor.writers:
            break
        outcome = fd.doWrite()
        if outcome is not None:
            break
    assert outcome is not None, "doWrite resumed the producer instead of closing"


def test_calls_made_while_responses_are_handled_are_sent_at_once() -> None:
    """
    A client answering a read of responses with new calls sends each 32 of
    them to the socket as it goes (its server starts on them meanwhile);
    the rest waits for the reactor's next turn.  Not while closing: the
    reactor's doWrite finishes a close.
    """
    from jsonservice import JSONClientFactory

    fd = _file_descriptor()
    fd.accepting = 1 << 30
    proto = JSONClientFactory(clock=Clock()).buildProtocol(None)
    fd.protocol = proto
    proto.makeConnection(fd)

    def again(_: Any) -> None:
        proto.call("echo", 1)

    for _ in range(40):
        proto.call("echo", 1).addCallback(again)
    fd.doWrite()  # the reactor sends the first 40
    assert fd.sent.count(b"\n") == 40
    proto.dataReceived(b"".join(b'{"jsonrpc":"2.0","result":1,"id":%d}\n' % i for i in range(1, 41)))
    assert fd.sent.count(b"\n") == 40 + 32  # sent during the read
    fd.doWrite()
    assert fd.sent.count(b"\n") == 80
    assert [line["id"] for line in _lines(fd.sent)] == list(range(1, 81))
    fd.disconnecting = True  # closing: the reactor's doWrite sends (and then closes)
    for _ in range(40):
        proto.call("echo", 1).addCallback(again)
    proto.dataReceived(b"".join(b'{"jsonrpc":"2.0","result":1,"id":%d}\n' % i for i in range(81, 121)))
    assert fd.sent.count(b"\n") == 80
    unsent = b"".join(fd._tempDataBuffer)
    assert [line["id"] for line in _lines(unsent)] == list(range(81, 161))


def test_a_peer_address_that_is_not_an_address_is_refused() -> None:
    """A haproxy: listener takes the peer's address from the PROXY header, unchecked."""
    from twisted.internet.address import IPv4Address

    for host, port in (("evil\x1b[31mhost", 1234), ("127.0.0.1", 99999)):
        factory = JSONServerFactory(_service(), clock=Clock())
        proto = factory.buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
        with CapturedLog() as log:
            proto.makeConnection(transport)
            proto.dataReceived(_request("echo", [1], 1))
        assert transport.disconnecting
        assert transport.value() == b""  # nothing was served
        [event] = [e for e in log.events if "not an address" in e.get("log_format", "")]
        assert "\x1b" not in str(event["peer"]) or "\\x1b" in str(event["peer"])
    proto = JSONServerFactory(_service(), clock=Clock()).buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "::1", 80))
    proto.makeConnection(transport)
    proto.dataReceived(_request("echo", [1], 1))
    assert not transport.disconnecting
    assert _lines(transport.value()) == [{"jsonrpc": "2.0", "result": 1, "id": 1}]


@pytest_twisted.ensureDeferred
async def test_a_forged_proxy_header_is_refused(reactor: Any) -> None:
    """Through a real haproxy: listener, a header whose source is not an address gets nothing."""
    factory = JSONServerFactory(_service())
    port = await serverFromString(reactor, "haproxy:tcp:0:interface=127.0.0.1").listen(factory)
    number = port.getHost().port

    def send(header: bytes) -> bytes:
        sock = socket.create_connection(("127.0.0.1", number), timeout=10)
        received = b""
        try:
            sock.sendall(header + _request("echo", ["hi"], 1))
            while not received.endswith(b"\n") and (chunk := sock.recv(4096)):
                received += chunk
        except OSError:  # the server aborted: a reset
            pass
        sock.close()
        return received

    try:
        assert await deferToThread(send, b"PROXY TCP4 notanip 127.0.0.1 5555 80\r\n") == b""
        good = await deferToThread(send, b"PROXY TCP4 192.0.2.7 127.0.0.1 5555 80\r\n")
        assert _lines(good) == [{"jsonrpc": "2.0", "result": "hi", "id": 1}]
    finally:
        await port.stopListening()

"""
JSON-RPC over WebSocket (L{jsonservice.ws}) on real 127.0.0.1 sockets: a
third-party client (the C{websockets} library, in a thread) and
C{jsonservice.connect(reactor, "ws://...")}, against the C{--http} site.
"""

from __future__ import annotations

import json
import select
import socket
import threading
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.sync.client import connect as ws_connect
from websockets.uri import parse_uri

import jsonservice
from jsonservice import CallContext, JSONService, RPCError

try:
    from tests.web_helpers import STEP, Recorder, WebServer, slow_service, within
except ImportError:  # pragma: no cover - tests/ on sys.path
    from web_helpers import STEP, Recorder, WebServer, slow_service, within  # type: ignore[no-redef]


def rpc(method: str, params: Any = None, id_: Any = None) -> str:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    if id_ is not None:
        message["id"] = id_
    return json.dumps(message)


def ws_service() -> JSONService:
    service, _ = slow_service()

    @service.method(context=True)
    async def add_at_client(ctx: CallContext, a: int, b: int) -> Any:
        """The server calls the client back."""
        return await ctx.call("client.add", a, b)

    return service


async def started(service: JSONService | None = None, **kwargs: Any) -> WebServer:
    return await WebServer(service or ws_service(), **kwargs).start()


@pytest_twisted.ensureDeferred
async def test_websockets_library_client() -> None:
    """A third-party client: every kind of message, both directions, limits and cancellation."""
    server = await started(max_line_length=100_000)

    def client(url: str) -> list[Any]:
        got: list[Any] = []
        with ws_connect(url) as ws:

            def exchange(message: str | bytes) -> Any:
                ws.send(message)
                return json.loads(ws.recv(timeout=STEP))

            got.append(exchange(rpc("echo", [1], 1)))
            # Pretty-printed: its newlines are whitespace, the message is one value.
            got.append(
                exchange('{\n "jsonrpc": "2.0",\n "method": "echo",\n "params": ["a\\nb"],\n "id": 2\n}')
            )
            got.append(exchange("[" + rpc("echo", [1], 3) + "," + rpc("ping", None, 4) + "]"))
            got.append(exchange('{"name": "John"}'))
            got.append(exchange(rpc("notify_me", ["ding"], 5)))
            got.append(json.loads(ws.recv(timeout=STEP)))  # the notification it sends
            got.append(exchange('"' + "x" * 300_000 + '"'))  # too long: -32002, and on
            got.append(exchange(b"\xff\xfe"))  # binary, not UTF-8: -32700 as on a line
            got.append(exchange(rpc("echo", [12345678901234567890123], 6)))
            ws.send(rpc("slow", None, 7))
            got.append(exchange(rpc("$/cancelRequest", {"id": 7})))  # answers the cancelled call
            # The server calls the client, which answers.
            ws.send(rpc("add_at_client", [2, 3], 8))
            call = json.loads(ws.recv(timeout=STEP))
            got.append(call["method"])
            got.append(
                exchange(json.dumps({"jsonrpc": "2.0", "result": sum(call["params"]), "id": call["id"]}))
            )
        return got

    try:
        got = await within(deferToThread(client, server.url()))
    finally:
        await server.stop()
    assert got[0] == {"jsonrpc": "2.0", "result": 1, "id": 1}
    assert got[1]["result"] == "a\nb"
    assert [item["result"] for item in got[2]] == [1, "pong"]
    assert got[3] == {"message": "Hello from server"}
    assert got[4]["result"] is True
    assert got[5] == {"jsonrpc": "2.0", "method": "notice", "params": ["ding"]}
    assert got[6]["error"]["code"] == -32002
    assert got[6]["error"]["data"] == {"max_line_length": 100_000}
    assert got[7]["error"]["code"] == -32700
    assert got[8]["result"] == 12345678901234567890123
    assert (got[9]["id"], got[9]["error"]["code"]) == (7, -32800)
    assert got[10] == "client.add"
    assert got[11] == {"jsonrpc": "2.0", "result": 5, "id": 8}


@pytest_twisted.ensureDeferred
async def test_jsonservice_client_over_websocket(reactor: Any) -> None:
    """C{connect(reactor, "ws://...")}: the same call/notify/send API, and a service answering the server."""
    server = await started()
    heard: list[str] = []
    client_service = JSONService()
    client_service.add_method("notice", heard.append)
    client_service.add_method("client.add", lambda a, b: a + b)
    proto = await within(jsonservice.connect(reactor, server.url(), client_service))
    try:
        assert await within(proto.call("echo", {"a": [1, 2]})) == {"a": [1, 2]}
        assert await within(proto.send({"name": "John"})) == {"message": "Hello from server"}
        assert await within(proto.call("add_at_client", 20, 22)) == 42
        proto.notify("notify_me", "hi")
        with pytest.raises(RPCError) as caught:
            await within(proto.call("nope"))
        assert caught.value.code == -32601
        for _ in range(100):
            if heard:
                break
            await deferLater(reactor, 0.01, lambda: None)
        assert heard == ["hi"]
        # Many calls in flight on one WebSocket, answered to the right callers.
        results = await within(Deferred.fromCoroutine(_gather([proto.call("echo", i) for i in range(500)])))
        assert results == list(range(500))
    finally:
        proto.transport.loseConnection()
        await server.stop()
    assert proto.pending == 0


async def _gather(calls: list[Deferred[Any]]) -> list[Any]:
    return [await call for call in calls]


@pytest_twisted.ensureDeferred
async def test_pipelined_messages_under_the_in_flight_cap(reactor: Any) -> None:
    """Thousands of messages sent without waiting, to slow handlers with a small cap: all answered."""
    service = JSONService()

    @service.method
    def later(value: int) -> Deferred[int]:
        return deferLater(reactor, 0, lambda: value)

    server = await started(service, max_in_flight=8)

    def client(url: str) -> list[int]:
        with ws_connect(url) as ws:
            for i in range(2000):
                ws.send(rpc("later", [i], i))
            return sorted(json.loads(ws.recv(timeout=STEP))["id"] for _ in range(2000))

    try:
        ids = await within(deferToThread(client, server.url()), 20)
    finally:
        await server.stop()
    assert ids == list(range(2000))


def _send_buffer_max() -> int:
    """The kernel's largest TCP send buffer (what the server's can grow to)."""
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as wmem:
            return int(wmem.read().split()[2])
    except (OSError, IndexError, ValueError):  # pragma: no cover - not Linux
        return 4 * 1024 * 1024


def unread_client(port: int, url: str, requests: list[bytes], go: threading.Event) -> list[int]:
    """
    A WebSocket peer that sends every request and reads nothing until C{go},
    then reads every reply (the ids, in order).  Sans-I/O (websockets'
    C{ClientProtocol}) on a non-blocking socket, in one thread: the sync
    client would deadlock here, its C{send} holds the lock its reader needs
    while C{sendall} waits for a server that stopped reading.
    """
    sock = socket.socket()
    # Before connecting: a small window, so the kernel cannot take every reply.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.settimeout(STEP)
    sock.connect(("127.0.0.1", port))
    ws = ClientProtocol(parse_uri(url), max_size=None)
    ws.send_request(ws.connect())
    for data in ws.data_to_send():
        sock.sendall(data)
    while not isinstance(event := next(iter(ws.events_received()), None), Response):
        ws.receive_data(sock.recv(65536))
    assert event.status_code == 101, event
    for request in requests:
        ws.send_text(request)
    out = memoryview(b"".join(ws.data_to_send()))
    sock.setblocking(False)
    while out and not go.is_set():  # write only
        if select.select([], [sock], [], 0.01)[1]:
            out = out[sock.send(out) :]
    go.wait(STEP * 2)
    ids: list[int] = []
    message = b""
    while len(ids) < len(requests):
        readable, writable, _ = select.select([sock], [sock] if out else [], [], STEP)
        assert readable or writable, f"stalled after {len(ids)} replies"
        if writable:
            out = out[sock.send(out) :]
        if readable:
            data = sock.recv(65536)
            assert data, f"closed after {len(ids)} replies"
            ws.receive_data(data)
            for frame in ws.events_received():
                if frame.opcode in (Opcode.TEXT, Opcode.CONT):
                    message += frame.data
                    if frame.fin:
                        ids.append(json.loads(message)["id"])
                        message = b""
            out = memoryview(bytes(out) + b"".join(ws.data_to_send()))  # pongs
    ws.send_close(1000)
    sock.setblocking(True)
    for data in ws.data_to_send():
        if data:
            sock.sendall(data)
    sock.close()
    return ids


@pytest_twisted.ensureDeferred
async def test_a_peer_that_does_not_read_is_backpressured(reactor: Any) -> None:
    """
    Replies pile up unread: past max_unsent the connection stops starting
    requests and reading (the output watch sees the real socket under the
    WebSocket); once the peer reads, every reply arrives, in order.
    """
    size = 32 * 1024
    # More replies than the kernel's buffers can take: the server must hold.
    count = max(200, (_send_buffer_max() + 2 * 1024 * 1024) // size)
    payload = "y" * size
    server = await started(max_unsent=128 * 1024)
    recorder = Recorder()
    server.factory.add_observer(recorder)
    go = threading.Event()
    requests = [rpc("echo", [payload], i).encode() for i in range(count)]
    done = deferToThread(unread_client, server.port.getHost().port, server.url(), requests, go)
    try:
        held = False
        for _ in range(int(STEP * 2 / 0.01)):
            held = any("output" in proto._core.holds for proto in server.factory.connections)
            if held:
                break
            await deferLater(reactor, 0.01, lambda: None)
        go.set()
        ids = await within(done, STEP * 3)
    finally:
        go.set()
        await server.stop()
    assert held
    assert "max_unsent" in recorder.breached
    assert ids == list(range(count))


@pytest_twisted.ensureDeferred
async def test_bearer_token_in_the_handshake() -> None:
    server = await started(auth_token="s3cret")

    def client(url: str) -> list[Any]:
        got: list[Any] = []
        try:
            ws_connect(url, additional_headers={"Authorization": "Bearer wrong"})
        except InvalidStatus as exc:
            got.append(exc.response.status_code)
        with ws_connect(url, additional_headers={"Authorization": "Bearer s3cret"}) as ws:
            ws.send(rpc("echo", [1], 1))
            got.append(json.loads(ws.recv(timeout=STEP)))
        with ws_connect(url) as ws:  # no header: the line protocol's way
            ws.send(rpc("echo", [1], 1))
            got.append(json.loads(ws.recv(timeout=STEP))["error"]["code"])
            ws.send(rpc("rpc.authenticate", {"token": "s3cret"}, 2))
            ws.send(rpc("echo", [2], 3))
            got.append(json.loads(ws.recv(timeout=STEP))["result"])
            got.append(json.loads(ws.recv(timeout=STEP))["result"])
        return got

    try:
        got = await within(deferToThread(client, server.url()))
    finally:
        await server.stop()
    assert got == [401, {"jsonrpc": "2.0", "result": 1, "id": 1}, -32004, True, 2]


@pytest_twisted.ensureDeferred
async def test_connection_cap_covers_websockets_too() -> None:
    """
    A WebSocket counts toward max_connections once: over the cap the next
    connection's handshake gets 503 with the -32001 body; when the first
    closes there is room again.
    """
    server = await started(max_connections=1)

    seen: list[Any] = []

    def recording(url: str) -> list[Any]:
        with ws_connect(url) as first:
            first.send(rpc("ping", None, 1))
            seen.append(json.loads(first.recv(timeout=STEP))["result"])
            try:
                with ws_connect(url):
                    seen.append("second connected")
            except InvalidStatus as refused:
                response = refused.response
                seen.append((response.status_code, json.loads(response.body)["error"]["code"]))
        with ws_connect(url) as third:  # the first is gone: room again
            third.send(rpc("ping", None, 2))
            seen.append(json.loads(third.recv(timeout=STEP))["result"])
        return seen

    try:
        got = await within(deferToThread(recording, server.url()))
    finally:
        await server.stop()
    assert got == ["pong", (503, -32001), "pong"]


@pytest_twisted.ensureDeferred
async def test_cross_origin_websocket_is_refused() -> None:
    """WebSockets ignore the same-origin policy: a page of another site is refused at the handshake."""
    server = await started()

    def client(url: str) -> list[Any]:
        got: list[Any] = []
        try:
            ws_connect(url, origin="https://evil.example")  # type: ignore[arg-type]
        except InvalidStatus as exc:
            got.append(exc.response.status_code)
        with ws_connect(url, origin=url.replace("ws://", "http://").rsplit("/", 1)[0]) as ws:  # type: ignore[arg-type]
            ws.send(rpc("ping", None, 1))
            got.append(json.loads(ws.recv(timeout=STEP))["result"])
        return got

    try:
        got = await within(deferToThread(client, server.url()))
    finally:
        await server.stop()
    assert got == [403, "pong"]


@pytest_twisted.ensureDeferred
async def test_unfinished_messages_count_in_the_server_wide_budget(reactor: Any) -> None:
    """A message that never ends holds bytes like an unfinished line: past max_buffered, its reader pauses."""
    server = await started(max_buffered=64 * 1024)
    recorder = Recorder()
    breaches = recorder.breached
    server.factory.add_observer(recorder)
    sock = socket.create_connection(("127.0.0.1", server.port.getHost().port), timeout=STEP)

    def start_a_message() -> bytes:
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        answer = sock.recv(4096)
        payload = b"[" + b"1," * 100_000  # 200 KB of a text frame without FIN: never finished
        sock.sendall(bytes([0x01, 0x80 | 127]) + len(payload).to_bytes(8, "big") + b"\0\0\0\0" + payload)
        return answer

    try:
        assert b" 101 " in await within(deferToThread(start_a_message))
        for _ in range(int(STEP / 0.01)):
            if "max_buffered" in breaches:
                break
            await deferLater(reactor, 0.01, lambda: None)
        [proto] = server.factory.connections
        assert "max_buffered" in breaches
        assert proto in server.factory.budget.paused
    finally:
        sock.close()
        for proto in list(server.factory.connections):
            # Paused, it would notice the close only at its idle timeout.
            proto.transport.abortConnection()
        await server.stop()
    assert server.factory.budget.total == 0


@pytest_twisted.ensureDeferred
async def test_idle_websocket_is_closed() -> None:
    """A peer that sends only the start of a message is idle, as on a line: closed after idle_timeout."""
    server = await started(idle_timeout=0.3)

    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=STEP) as sock:
            sock.sendall(
                b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(4096)
            # The first fragment (no FIN) of a text message that never ends.
            fragment = b'{"jsonrpc": "2.0", '
            sock.sendall(bytes([0x01, 0x80 | len(fragment)]) + b"\0\0\0\0" + fragment)
            data = data.split(b"\r\n\r\n", 1)[1]
            while len(data) < 4:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data[:4]  # the server's close frame: opcode 8, its status code

    try:
        frame = await within(deferToThread(client, server.port.getHost().port))
    finally:
        await server.stop()
    assert frame[0] == 0x88  # FIN + close
    assert int.from_bytes(frame[2:4], "big") == 1000


@pytest_twisted.ensureDeferred
async def test_text_message_that_is_not_utf8_gets_close_1007() -> None:
    """RFC 6455: a text message that is not UTF-8 fails the connection with close code 1007 (not a reset)."""
    server = await started()

    def raw(port: int) -> bytes:
        import socket

        with socket.create_connection(("127.0.0.1", port), timeout=STEP) as sock:
            sock.sendall(
                b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(4096)
            assert head.startswith(b"HTTP/1.1 101"), head
            rest = head.split(b"\r\n\r\n", 1)[1]
            mask = b"\x01\x02\x03\x04"
            payload = b"\xff\xfe"
            masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            sock.sendall(b"\x81" + bytes([0x80 | len(payload)]) + mask + masked)  # FIN, text, masked
            while len(rest) < 4:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                rest += chunk
            return rest

    try:
        frame = await within(deferToThread(raw, server.port.getHost().port))
    finally:
        await server.stop()
    assert frame[0] == 0x88, frame  # a close frame
    assert int.from_bytes(frame[2:4], "big") == 1007, frame

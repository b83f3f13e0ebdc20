"""
Operations features of issue 7, items 2-5: shared-secret authentication
(C{rpc.authenticate}, C{--auth-token-file}), structured logs
(C{twisted.logger} events, C{log_requests}, L{jsonservice.logs.json_observer}),
Prometheus metrics (L{PrometheusMetrics}, C{--metrics}) and the built-in
C{rpc.ping} / C{rpc.discover} methods.

Almost everything runs in memory (C{StringTransport} or L{MemoryServer}
over C{iosim}) on a L{Clock}; a few tests use real loopback sockets (the
client's C{auth_token}, the metrics page over HTTP) and three run a real,
short C{twistd} process (SIGTERM at the end, every wait bounded).
"""

from __future__ import annotations

import hmac
import io
import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional

import pytest
import pytest_twisted
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.logger import Logger, formatEvent, globalLogPublisher
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.web.server import Site

import jsonservice
from jsonservice import CallContext, JSONServerFactory, JSONService, Unauthorized
from jsonservice.errors import InvalidParams, MethodNotFound, RequestTimeout
from jsonservice.logs import json_line, json_observer
from jsonservice.observers import OUTCOMES, RequestLog
from jsonservice.protocol import AUTH_METHOD, ConnectionClosed, JSONProtocol
from jsonservice.server import JSONServerService
from jsonservice.tap import Options, makeService, read_token
from jsonservice.testing import MemoryServer, listen_loopback
from tests.ops_helpers import WAIT, LineClient, kill, start_twistd, twistd_env, wait_for, wait_port

TOKEN = "s3cret-token"
AUTH_TIMEOUT = 5.0
NOT_YET = "authenticate first: call rpc.authenticate with the token"
PEER = IPv4Address("TCP", "10.0.0.7", 5555)
TWISTD = Path(sys.executable).parent / "twistd"
needs_twistd = pytest.mark.skipif(not TWISTD.exists(), reason=f"no twistd next to {sys.executable}")


# -- helpers ------------------------------------------------------------------


def make_service() -> JSONService:
    """echo, hang (never answers), boom (raises), a plain-message handler; calls are recorded."""
    service = JSONService()
    service.ran = []  # type: ignore[attr-defined]

    @service.method
    def echo(value: Any) -> Any:
        service.ran.append(("echo", value))  # type: ignore[attr-defined]
        return value

    @service.method
    def hang() -> Deferred[None]:
        return Deferred()

    @service.method
    def boom() -> None:
        raise RuntimeError("kaboom")

    @service.method
    def boom_later() -> Deferred[None]:
        return fail(RuntimeError("kaboom later"))

    @service.message
    def on_message(message: Any) -> Any:
        service.ran.append(("message", message))  # type: ignore[attr-defined]
        return {"got": message}

    return service


def rpc(method: str, params: Any = None, id: Any = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    if id is not None:
        message["id"] = id
    return message


class Conn:
    """One server L{JSONProtocol} on a C{StringTransport}, its factory on a L{Clock}."""

    def __init__(self, factory: JSONServerFactory) -> None:
        self.factory = factory
        self.clock: Clock = factory.clock  # type: ignore[assignment]
        self.transport = StringTransport(peerAddress=PEER)
        proto = factory.buildProtocol(PEER)
        assert isinstance(proto, JSONProtocol)
        self.proto = proto
        proto.makeConnection(self.transport)
        self.sent = b""

    def send(self, *messages: Any) -> None:
        data = b"".join(json.dumps(m).encode() + b"\n" for m in messages)
        self.sent += data
        self.proto.dataReceived(data)

    def replies(self) -> list[Any]:
        """The lines written since the last call, decoded."""
        data = self.transport.value()
        self.transport.clear()
        return [json.loads(line) for line in data.splitlines() if line.strip()]

    @property
    def closing(self) -> bool:
        return bool(self.transport.disconnecting)

    def lose(self) -> None:
        """Deliver C{connectionLost}, as the reactor would after a close."""
        self.proto.connectionLost(Failure(ConnectionDone()))


def auth_factory(service: JSONService | None = None, **kwargs: Any) -> JSONServerFactory:
    return JSONServerFactory(
        service or make_service(), clock=Clock(), auth_token=TOKEN, auth_timeout=AUTH_TIMEOUT, **kwargs
    )


def error_of(reply: dict[str, Any]) -> tuple[int, Any]:
    return reply["error"]["code"], reply["error"].get("data")


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    """Every twisted.logger event published during the test."""
    captured: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(captured.append)
    try:
        yield captured
    finally:
        globalLogPublisher.removeObserver(captured.append)


def ours(events: list[dict[str, Any]], namespace: str = "jsonservice") -> list[dict[str, Any]]:
    return [e for e in events if str(e.get("log_namespace", "")).startswith(namespace)]


async def wait_until(reactor: Any, predicate: Callable[[], Any], what: str, timeout: float = 5.0) -> None:
    deadline = reactor.seconds() + timeout
    while not predicate():
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await deferLater(reactor, 0.01, lambda: None)


async def fetch(reactor: Any, url: str) -> tuple[int, list[bytes], bytes]:
    """GET C{url} with twisted.web's Agent (no persistent connections)."""
    from twisted.internet.protocol import Protocol
    from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone

    class Collect(Protocol):
        def __init__(self) -> None:
            self.chunks: list[bytes] = []
            self.done: Deferred[bytes] = Deferred()

        def dataReceived(self, data: bytes) -> None:
            self.chunks.append(data)

        def connectionLost(self, reason: Failure = Failure(ResponseDone())) -> None:  # noqa: B008
            if reason.check(ResponseDone):
                self.done.callback(b"".join(self.chunks))
            else:
                self.done.errback(reason)

    pool = HTTPConnectionPool(reactor, persistent=False)
    response = await Agent(reactor, pool=pool).request(b"GET", url.encode()).addTimeout(WAIT, reactor)
    collect = Collect()
    response.deliverBody(collect)
    body = await collect.done.addTimeout(WAIT, reactor)
    await pool.closeCachedConnections()
    return response.code, response.headers.getRawHeaders(b"content-type", []), body


async def settle(reactor: Any, before: set[Any]) -> None:
    """Wait (bounded) until the delayed calls made since C{before} are gone: nothing left behind."""
    await wait_until(
        reactor,
        lambda: not [c for c in reactor.getDelayedCalls() if c.active() and c not in before],
        "the delayed calls of closed connections to go",
    )


def samples(text: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The samples of a Prometheus text page, by (name, labels)."""
    from prometheus_client.parser import text_string_to_metric_families

    found = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            found[sample.name, frozenset(sample.labels.items())] = sample.value
    return found


def sample(found: dict[Any, float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def stop_twistd(proc: subprocess.Popen[bytes], log: Path) -> str:
    """SIGTERM, wait (bounded) and check the exit was clean; return the log."""
    proc.send_signal(signal.SIGTERM)
    status = proc.wait(WAIT)
    output = log.read_text(encoding="utf-8", errors="replace")
    assert status in (0, -signal.SIGTERM), f"exit status {status}:\n{output}"
    assert "Traceback" not in output, output
    return output


# -- authentication: in memory ------------------------------------------------


def test_without_a_token_everything_gets_unauthorized_until_the_deadline_closes() -> None:
    service = make_service()
    conn = Conn(auth_factory(service))
    assert conn.proto.authenticated is False
    conn.send(rpc("echo", [1], id=1), rpc("nosuch", id="b"), {"plain": True}, rpc("rpc.ping", id=3))
    replies = conn.replies()
    assert [r["id"] for r in replies] == [1, "b", None, 3]
    assert [error_of(r) for r in replies[:3]] == [(Unauthorized.code, NOT_YET)] * 3
    # rpc.ping (health checks) is answered before authentication: it tells nothing.
    assert replies[3] == {"jsonrpc": "2.0", "result": "pong", "id": 3}
    assert service.ran == []  # type: ignore[attr-defined]
    # The connection stays open until the deadline, answering the same way.
    conn.clock.advance(AUTH_TIMEOUT - 0.01)
    assert not conn.closing
    conn.send(rpc("echo", [2], id=4))
    assert [error_of(r) for r in conn.replies()] == [(Unauthorized.code, NOT_YET)]
    conn.clock.advance(0.01)
    assert conn.closing
    assert conn.proto.authenticated is False
    conn.lose()
    assert conn.clock.getDelayedCalls() == []


@pytest.mark.parametrize(
    "params",
    [
        ["wrong"],
        {"token": "wrong"},
        [TOKEN + "x"],
        [TOKEN[:-1]],
        [],
        {"token": 123},
        {"tok": TOKEN},
        [""],
        None,
    ],
)
def test_a_wrong_token_is_answered_then_the_connection_closes(params: Any) -> None:
    service = make_service()
    conn = Conn(auth_factory(service))
    conn.send(rpc(AUTH_METHOD, params, id=1))
    # The reply is written first ...
    assert [error_of(r) for r in conn.replies()] == [(Unauthorized.code, "wrong token")]
    # ... and the connection closes right after it, before anything else is read.
    assert conn.closing
    assert conn.proto.authenticated is False
    conn.lose()
    assert conn.clock.getDelayedCalls() == []
    assert service.ran == []  # type: ignore[attr-defined]


def test_a_wrong_token_in_memory_fails_the_call_and_closes_both_ends() -> None:
    server = MemoryServer(auth_factory())
    pair = server.connect()
    d = pair.client.call(AUTH_METHOD, "wrong")
    failure = pair.failure_of(d, Unauthorized)
    assert failure.value.data == "wrong token"
    pair.advance(0)
    assert not pair.connected
    assert server.factory.connections == set()


def test_a_token_after_the_deadline_is_never_accepted() -> None:
    conn = Conn(auth_factory())
    conn.clock.advance(AUTH_TIMEOUT)
    assert conn.closing
    # Bytes still in flight when the deadline hit are not read.
    conn.send(rpc(AUTH_METHOD, [TOKEN], id=1), rpc("echo", [1], id=2))
    assert conn.replies() == []
    assert conn.proto.authenticated is False
    conn.lose()

    pair = MemoryServer(auth_factory()).connect()
    pair.advance(AUTH_TIMEOUT)
    assert not pair.connected
    pair.failure_of(pair.client.call(AUTH_METHOD, TOKEN), ConnectionClosed)
    assert pair.server.authenticated is False


def test_a_token_just_before_the_deadline_is_accepted_and_cancels_it() -> None:
    conn = Conn(auth_factory())
    conn.clock.advance(AUTH_TIMEOUT - 0.001)
    conn.send(rpc(AUTH_METHOD, [TOKEN], id=1))
    assert conn.replies() == [{"jsonrpc": "2.0", "result": True, "id": 1}]
    assert conn.proto.authenticated is True
    conn.clock.advance(AUTH_TIMEOUT * 3)
    assert not conn.closing
    conn.lose()


@pytest.mark.parametrize("named", [False, True])
def test_the_right_token_authenticates_then_requests_are_served(named: bool) -> None:
    service = make_service()
    pair = MemoryServer(auth_factory(service)).connect()
    d = pair.client.call(AUTH_METHOD, token=TOKEN) if named else pair.client.call(AUTH_METHOD, TOKEN)
    assert pair.result_of(d) is True
    assert pair.server.authenticated is True
    assert pair.sent_by_client[0]["params"] == ({"token": TOKEN} if named else [TOKEN])
    assert pair.result_of(pair.client.call("echo", 5)) == 5
    assert pair.result_of(pair.client.send("hi")) == {"got": "hi"}
    assert pair.result_of(pair.client.call("rpc.ping")) == "pong"
    # Authenticating again is harmless; the deadline no longer applies.
    assert pair.result_of(pair.client.call(AUTH_METHOD, TOKEN)) is True
    pair.advance(AUTH_TIMEOUT * 3)
    assert pair.connected
    assert service.ran == [("echo", 5), ("message", "hi")]  # type: ignore[attr-defined]


def test_notifications_before_authentication_are_not_answered_nor_run() -> None:
    service = make_service()
    conn = Conn(auth_factory(service))
    conn.send(rpc("echo", [1]), rpc("nosuch"))
    assert conn.replies() == []
    assert service.ran == []  # type: ignore[attr-defined]
    assert not conn.closing
    # rpc.authenticate as a notification authenticates silently.
    conn.send(rpc(AUTH_METHOD, {"token": TOKEN}))
    assert conn.replies() == []
    assert conn.proto.authenticated is True
    conn.send(rpc("echo", [2], id=7))
    assert conn.replies() == [{"jsonrpc": "2.0", "result": 2, "id": 7}]
    conn.lose()


def test_a_wrong_token_in_a_notification_closes_silently() -> None:
    conn = Conn(auth_factory())
    conn.send(rpc(AUTH_METHOD, ["nope"]))
    conn.clock.advance(0)
    assert conn.replies() == []
    assert conn.closing
    conn.lose()


def test_batches_before_authentication_get_unauthorized_per_item() -> None:
    service = make_service()
    conn = Conn(auth_factory(service))
    conn.send([rpc("echo", [1], id=1), rpc("echo", [2]), rpc("nosuch", id=2)])
    [batch] = conn.replies()
    assert [item["id"] for item in batch] == [1, 2]
    assert [error_of(item) for item in batch] == [(Unauthorized.code, NOT_YET)] * 2
    assert service.ran == []  # type: ignore[attr-defined]
    # Items run in order: a batch that authenticates first is served after it.
    conn.send([rpc(AUTH_METHOD, [TOKEN], id="a"), rpc("echo", ["x"], id="b")])
    [batch] = conn.replies()
    assert batch == [
        {"jsonrpc": "2.0", "result": True, "id": "a"},
        {"jsonrpc": "2.0", "result": "x", "id": "b"},
    ]
    conn.lose()


def test_the_token_is_compared_with_hmac_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    good, bad = Conn(auth_factory()), Conn(auth_factory())
    good.send(rpc(AUTH_METHOD, [TOKEN], id=1))
    bad.send(rpc(AUTH_METHOD, ["nope"], id=1))
    assert compared == [(TOKEN.encode(), TOKEN.encode()), (b"nope", TOKEN.encode())]
    assert good.proto.authenticated is True
    assert bad.proto.authenticated is False
    good.lose()
    bad.lose()


def test_rpc_authenticate_on_a_server_without_auth_answers_true() -> None:
    pair = MemoryServer(make_service()).connect()
    assert pair.server.authenticated is True
    assert pair.result_of(pair.client.call(AUTH_METHOD, "anything")) is True
    assert pair.result_of(pair.client.call(AUTH_METHOD, token="")) is True
    assert pair.result_of(pair.client.call("echo", 1)) == 1


def test_the_factory_takes_str_or_bytes_tokens_but_not_empty_ones() -> None:
    assert JSONServerFactory(JSONService(), auth_token="tök").auth_token == "tök".encode()
    assert JSONServerFactory(JSONService(), auth_token=b"raw").auth_token == b"raw"
    assert JSONServerFactory(JSONService()).auth_token is None
    for empty in ("", b""):
        with pytest.raises(ValueError, match="must not be empty"):
            JSONServerFactory(JSONService(), auth_token=empty)


# -- authentication: options and real sockets --------------------------------


@pytest.mark.parametrize("content", [b"", b"  \n\t\n"])
def test_an_empty_token_file_is_a_usage_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "token"
    path.write_bytes(content)
    with pytest.raises(usage.UsageError, match="is empty"):
        Options().parseOptions(["--auth-token-file", str(path)])


def test_a_missing_token_file_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-token"
    with pytest.raises(usage.UsageError, match="--auth-token-file"):
        Options().parseOptions(["--auth-token-file", str(missing)])
    with pytest.raises(usage.UsageError, match="no-such-token"):
        read_token(str(missing))


def test_the_token_file_is_stripped_and_reaches_the_factory(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_bytes(b"  " + TOKEN.encode() + b"\n")
    options = Options()
    options.parseOptions(["--auth-token-file", str(path), "--port", "tcp:0:interface=127.0.0.1"])
    assert options["auth_token"] == TOKEN.encode()
    [factory] = [svc.factory for svc in makeService(options) if isinstance(svc, JSONServerService)]
    assert isinstance(factory, JSONServerFactory)
    assert factory.auth_token == TOKEN.encode()
    no_auth = Options()
    no_auth.parseOptions([])
    assert no_auth["auth_token"] is None


@pytest_twisted.ensureDeferred
async def test_connect_with_auth_token_over_loopback(reactor: Any) -> None:
    before = set(reactor.getDelayedCalls())
    server = listen_loopback(JSONServerFactory(make_service(), clock=reactor, auth_token=TOKEN))
    protos: list[JSONProtocol] = []
    try:
        proto = await jsonservice.connect(reactor, server.endpoint, auth_token=TOKEN).addTimeout(
            WAIT, reactor
        )
        protos.append(proto)
        assert await proto.call("echo", "in").addTimeout(WAIT, reactor) == "in"

        refused = jsonservice.connect(reactor, server.endpoint, auth_token="wrong").addTimeout(WAIT, reactor)
        with pytest.raises(Unauthorized) as caught:
            await refused
        assert caught.value.data == "wrong token"
        # Both ends close: only the good connection remains on the server.
        await wait_until(
            reactor, lambda: len(server.factory.connections) == 1, "the refused connection to close"
        )
        assert [p.authenticated for p in server.factory.connections] == [True]
    finally:
        for proto in protos:
            proto.transport.loseConnection()
        await wait_until(reactor, lambda: not server.factory.connections, "the connections to close")
        await server.close()
    await settle(reactor, before)


@needs_twistd
def test_twistd_with_an_auth_token_file(tmp_path: Path, free_port: Callable[..., int]) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n")
    port = free_port()
    proc = start_twistd(tmp_path, ["--auth-token-file", str(tmp_path / "token"), "--port", str(port)])
    try:
        wait_port(port, proc)
        anonymous = LineClient("127.0.0.1", port)
        anonymous.send("echo", "hi")
        reply = anonymous.receive()
        assert error_of(reply) == (Unauthorized.code, NOT_YET)
        anonymous.close()

        client = LineClient("127.0.0.1", port)
        assert client.call(AUTH_METHOD, TOKEN) is True
        assert client.call("echo", "hi") == "hi"
        client.close()
        output = stop_twistd(proc, tmp_path / "twistd.log")
        assert "Server Shut Down." in output
    finally:
        kill(proc)


# -- structured logs ----------------------------------------------------------


def test_connection_open_and_close_are_logged_with_peer_and_counts(events: list[dict[str, Any]]) -> None:
    conn = Conn(JSONServerFactory(make_service(), clock=Clock()))
    conn.send(rpc("echo", [1], id=1), rpc("echo", [2]), {"plain": 1})
    conn.clock.advance(2.5)
    conn.transport.loseConnection()
    conn.lose()
    opened, closed = ours(events, "jsonservice.server")
    assert opened["peer"] == PEER
    assert opened["count"] == 1
    assert "opened" in formatEvent(opened)
    assert closed["peer"] == PEER
    assert closed["requests"] == 3
    assert closed["bytes_in"] == len(conn.sent)
    assert closed["bytes_out"] == len(conn.transport.value()) > 0
    assert closed["duration"] == pytest.approx(2.5)
    text = formatEvent(closed)
    assert "10.0.0.7" in text
    assert "2.500s" in text
    assert "3 requests" in text


def test_no_per_request_logs_unless_asked_for(events: list[dict[str, Any]]) -> None:
    conn = Conn(JSONServerFactory(make_service(), clock=Clock()))
    for n in range(20):
        conn.send(rpc("echo", [n], id=n), rpc("nosuch", id=-n), {"m": n})
    conn.lose()
    assert len(conn.replies()) == 60
    assert [e["log_format"].split(" ")[0] for e in ours(events)] == ["Connection", "Connection"]


def test_log_requests_logs_one_event_per_request(events: list[dict[str, Any]]) -> None:
    factory = JSONServerFactory(make_service(), clock=Clock(), log_requests=True)
    assert any(isinstance(o, RequestLog) for o in factory.observers)
    conn = Conn(factory)
    conn.send(rpc("echo", [1], id=1), rpc("nosuch", id=2), rpc("echo", [1, 2], id=3), rpc("echo", [4]))
    conn.send({"plain": 1}, rpc("hang", id=5))
    conn.clock.advance(30)  # the default request timeout
    conn.lose()
    logged = ours(events, "jsonservice.requests")
    per_request = [e for e in logged if "method" in e]
    assert [(e["method"], e["outcome"]) for e in per_request] == [
        ("echo", "ok"),
        ("<unknown>", "method_not_found"),
        ("echo", "invalid_params"),
        ("echo", "ok"),
        ("<message>", "ok"),
        ("hang", "timeout"),
    ]
    # Limit breaches are logged too, one event each.
    assert [e["limit"] for e in logged if "limit" in e] == ["request_timeout"]
    assert len(per_request) == 6
    for event in per_request:
        assert event["peer"] == PEER
        assert isinstance(event["ms"], float)
        assert event["ms"] >= 0
    assert "echo ok" in formatEvent(per_request[0])


@pytest.mark.parametrize("method", ["boom", "boom_later"])
def test_an_internal_error_logs_the_error_id_its_reply_carries(
    events: list[dict[str, Any]], method: str
) -> None:
    conn = Conn(JSONServerFactory(make_service(), clock=Clock()))
    conn.send(rpc(method, id=1))
    [reply] = conn.replies()
    assert reply["error"]["code"] == -32603
    error_id = reply["error"]["data"]["error_id"]
    assert "kaboom" not in json.dumps(reply)  # no traceback nor message on the wire
    [logged] = [e for e in ours(events) if "log_failure" in e]
    assert logged["error_id"] == error_id
    assert logged["log_failure"].check(RuntimeError)
    assert error_id in formatEvent(logged)
    assert method in formatEvent(logged)
    conn.lose()


def test_json_observer_writes_one_json_object_per_line() -> None:
    out = io.StringIO()
    log = Logger(namespace="jsonservice.test", observer=json_observer(out))
    log.info("Connection from {peer} closed: {requests} requests", peer=PEER, requests=3)
    log.warn("line with\nnewline {x}", x="é")
    try:
        raise RuntimeError("inside")
    except RuntimeError:
        log.failure("Handler {what} failed (error id {error_id})", what="boom", error_id="abc123")
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    parsed = [json.loads(line) for line in lines]
    assert all(isinstance(obj, dict) and "text" in obj for obj in parsed)
    assert parsed[0]["text"] == f"Connection from {PEER} closed: 3 requests"
    assert parsed[0]["requests"] == 3
    assert parsed[0]["peer"] == f"{PEER.host}:{PEER.port}"  # an address, not an unpersistable object
    assert parsed[0]["log_namespace"] == "jsonservice.test"
    assert parsed[1]["text"] == "line with\nnewline é"
    assert parsed[2]["error_id"] == "abc123"
    assert parsed[2]["log_level"]["name"] == "critical"
    assert json_line({"log_format": "plain", "text": "given"}).endswith("\n")
    assert json.loads(json_line({"log_format": "plain", "text": "given"}))["text"] == "given"


@needs_twistd
def test_twistd_logger_json_observer_logs_json_lines(tmp_path: Path, free_port: Callable[..., int]) -> None:
    port = free_port()
    log = tmp_path / "out.log"
    command = [str(TWISTD), "--pidfile=", "--logger", "jsonservice.logs.json_observer"]
    command += ["-n", "jsonservice", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            cwd=tmp_path,
            env=twistd_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_port(port, proc)
        client = LineClient("127.0.0.1", port)
        assert client.call("echo", 1) == 1
        client.close()
        wait_for(lambda: '"requests": 1' in log.read_text(), "the close event in the log")
        output = stop_twistd(proc, log)
    finally:
        kill(proc)
    lines = [line for line in output.splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]
    assert all(isinstance(obj, dict) and "text" in obj for obj in parsed)
    closes = [e for e in parsed if e.get("log_namespace") == "jsonservice.server" and e.get("requests") == 1]
    assert len(closes) == 1
    assert closes[0]["bytes_in"] > 0
    assert closes[0]["bytes_out"] > 0
    assert "127.0.0.1" in closes[0]["text"]
    assert any(e["text"] == "Server Shut Down." for e in parsed)


# -- metrics --------------------------------------------------------------------


def metered(
    service: JSONService | None = None, clock: Clock | None = None, **kwargs: Any
) -> tuple[Any, MemoryServer]:
    """A L{PrometheusMetrics} watching a factory served in memory."""
    from jsonservice.metrics import PrometheusMetrics

    metrics = PrometheusMetrics()
    service = make_service() if service is None else service
    factory = JSONServerFactory(service, clock=clock or Clock(), **kwargs)
    metrics.watch(factory)
    return metrics, MemoryServer(factory)


def test_metrics_count_requests_outcomes_latency_connections_and_bytes() -> None:
    metrics, server = metered(request_timeout=5)
    first = server.connect()
    client = first.client
    assert first.result_of(client.call("echo", 1)) == 1
    assert first.result_of(client.call("echo", 2)) == 2
    first.failure_of(client.call("nosuch"), MethodNotFound)
    first.failure_of(client.call("echo", 1, 2), InvalidParams)
    first.failure_of(client.call("boom"))
    assert first.result_of(client.send("plain")) == {"got": "plain"}
    first.disconnect()

    second = server.connect()
    hanging = second.client.call("hang")
    second.flush()
    found = samples(metrics.render())
    assert sample(found, "jsonservice_connections") == 1
    assert sample(found, "jsonservice_in_flight") == 1
    second.advance(5)
    second.failure_of(hanging, RequestTimeout)
    found = samples(metrics.render())
    assert sample(found, "jsonservice_in_flight") == 0

    counts = {
        ("echo", "ok"): 2,
        ("<unknown>", "method_not_found"): 1,
        ("echo", "invalid_params"): 1,
        ("boom", "internal_error"): 1,
        ("<message>", "ok"): 1,
        ("hang", "timeout"): 1,
    }
    for (method, outcome), count in counts.items():
        assert sample(found, "jsonservice_requests_total", method=method, outcome=outcome) == count
    assert sum(v for (name, _), v in found.items() if name == "jsonservice_requests_total") == 7
    assert (
        b'jsonservice_requests_total{method="<unknown>",outcome="method_not_found"} 1.0' in metrics.render()
    )
    assert sample(found, "jsonservice_request_duration_seconds_count", method="echo") == 3
    assert sample(found, "jsonservice_request_duration_seconds_bucket", method="echo", le="+Inf") == 3
    assert sample(found, "jsonservice_request_duration_seconds_count", method="hang") == 1
    assert sample(found, "jsonservice_limit_breaches_total", limit="request_timeout") == 1
    assert sample(found, "jsonservice_connections") == 1
    assert sample(found, "jsonservice_connections_opened_total") == 2
    # Bytes of the closed connection and of the open one.
    received = len(first.raw_sent_by_client) + len(second.raw_sent_by_client)
    sent = len(first.raw_sent_by_server) + len(second.raw_sent_by_server)
    assert sample(found, "jsonservice_received_bytes_total") == received
    assert sample(found, "jsonservice_sent_bytes_total") == sent
    second.disconnect()
    found = samples(metrics.render())
    assert sample(found, "jsonservice_connections") == 0
    assert sample(found, "jsonservice_received_bytes_total") == received


def test_plain_messages_are_measured_from_their_arrival() -> None:
    clock = Clock()
    service = JSONService()

    @service.message
    def later(message: Any) -> Deferred[Any]:
        return deferLater(clock, 2, lambda: {"late": message})

    metrics, server = metered(service, clock)
    pair = server.connect()
    d = pair.client.send("x")
    pair.advance(2)
    assert pair.result_of(d) == {"late": "x"}
    found = samples(metrics.render())
    assert sample(found, "jsonservice_requests_total", method="<message>", outcome="ok") == 1
    assert sample(found, "jsonservice_request_duration_seconds_count", method="<message>") == 1
    # Handler time (real time, not the test clock), not time since some epoch.
    assert sample(found, "jsonservice_request_duration_seconds_sum", method="<message>") < 1.0

    # Synchronous replies and refusals are counted too.
    metrics, server = metered()
    pair = server.connect()
    assert pair.result_of(pair.client.send("y")) == {"got": "y"}
    no_handler = metered(JSONService())
    other = no_handler[1].connect()
    other.failure_of(other.client.send("z"))
    assert (
        sample(samples(metrics.render()), "jsonservice_requests_total", method="<message>", outcome="ok") == 1
    )
    refused = samples(no_handler[0].render())
    assert sample(refused, "jsonservice_requests_total", method="<message>", outcome="invalid_request") == 1


def test_every_outcome_label_is_a_known_code() -> None:
    assert OUTCOMES[Unauthorized.code] == "unauthorized"
    assert len(set(OUTCOMES.values())) == len(OUTCOMES)


def test_metrics_count_limit_breaches() -> None:
    metrics, server = metered(max_line_length=100, max_connections=1)
    pair = server.connect()
    pair.client_write(b'"' + b"x" * 200 + b'"\n')
    assert pair.sent_by_server[-1]["error"]["code"] == -32002
    with pytest.raises(AssertionError, match="refused"):
        server.connect()
    found = samples(metrics.render())
    assert sample(found, "jsonservice_limit_breaches_total", limit="max_line_length") == 1
    assert sample(found, "jsonservice_limit_breaches_total", limit="max_connections") == 1
    assert sample(found, "jsonservice_connections") == 1


def test_metrics_count_authentication_failures() -> None:
    metrics, server = metered(auth_token=TOKEN, auth_timeout=AUTH_TIMEOUT)
    wrong = server.connect()
    wrong.failure_of(wrong.client.call(AUTH_METHOD, "nope"), Unauthorized)
    late = server.connect()
    late.failure_of(late.client.call("echo", 1), Unauthorized)
    late.advance(AUTH_TIMEOUT)
    found = samples(metrics.render())
    assert sample(found, "jsonservice_limit_breaches_total", limit="auth") == 1
    assert sample(found, "jsonservice_limit_breaches_total", limit="auth_timeout") == 1
    assert sample(found, "jsonservice_connections") == 0
    # Requests refused before authentication are not counted as served.
    assert sample(found, "jsonservice_requests_total", method="echo", outcome="ok") == 0


@pytest_twisted.ensureDeferred
async def test_the_metrics_resource_over_http(reactor: Any) -> None:
    from prometheus_client import CONTENT_TYPE_LATEST

    metrics, server = metered()
    pair = server.connect()
    assert pair.result_of(pair.client.call("echo", 1)) == 1
    before = set(reactor.getDelayedCalls())
    port = reactor.listenTCP(0, Site(metrics.resource()), interface="127.0.0.1")
    try:
        code, types, body = await fetch(reactor, f"http://127.0.0.1:{port.getHost().port}/metrics")
    finally:
        await port.stopListening()
    await settle(reactor, before)
    assert code == 200
    assert types == [CONTENT_TYPE_LATEST.encode()]
    assert sample(samples(body), "jsonservice_requests_total", method="echo", outcome="ok") == 1
    assert sample(samples(body), "jsonservice_connections") == 1


def test_metrics_option_needs_prometheus_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(usage.UsageError, match=r"jsonservice\[metrics\]"):
        Options().parseOptions(["--metrics", "tcp:0"])


@pytest_twisted.ensureDeferred
async def test_the_metrics_option_adds_a_listener_in_make_service(reactor: Any) -> None:
    options = Options()
    options.parseOptions(["--port", "tcp:0:interface=127.0.0.1", "--metrics", "tcp:0:interface=127.0.0.1"])
    top = makeService(options)
    listeners = [svc for svc in top if isinstance(svc, StreamServerEndpointService)]
    [page] = [svc for svc in listeners if isinstance(svc.factory, Site)]
    [json_port] = [svc for svc in listeners if isinstance(svc.factory, JSONServerFactory)]
    factory = json_port.factory
    metrics = page.factory.resource.metrics
    assert metrics.factories == [factory]
    assert factory.observers == [metrics]
    before = set(reactor.getDelayedCalls())
    top.startService()
    try:
        page_port = await page._waitingForPort
        rpc_port = await json_port._waitingForPort
        proto = await jsonservice.connect(reactor, f"tcp:127.0.0.1:{rpc_port.getHost().port}")
        assert await proto.call("echo", "m").addTimeout(WAIT, reactor) == "m"
        proto.transport.loseConnection()
        await wait_until(reactor, lambda: not factory.connections, "the client to close")
        code, _, body = await fetch(reactor, f"http://127.0.0.1:{page_port.getHost().port}/")
    finally:
        await top.stopService()
    await settle(reactor, before)
    assert code == 200
    found = samples(body)
    assert sample(found, "jsonservice_requests_total", method="echo", outcome="ok") == 1
    assert sample(found, "jsonservice_connections_opened_total") == 1
    assert sample(found, "jsonservice_received_bytes_total") > 0


def test_no_metrics_option_no_metrics_listener() -> None:
    options = Options()
    options.parseOptions(["--port", "tcp:0:interface=127.0.0.1"])
    listeners = [svc for svc in makeService(options) if isinstance(svc, StreamServerEndpointService)]
    assert [type(svc.factory) for svc in listeners] == [JSONServerFactory]
    assert listeners[0].factory.observers == []


# -- built-ins: rpc.ping and rpc.discover -----------------------------------


def documented_service() -> JSONService:
    service = JSONService(title="Calculator", version="1.2.3")

    @service.method
    def add(a: int, b: int = 0) -> int:
        """
        Add two integers.

        Both must be integers;
        C{b} defaults to zero.
        """
        return a + b

    @service.method
    def tag(name: str, values: list[int], label: Optional[str] = None) -> dict[str, int]:  # noqa: UP045
        """Tag some values."""
        return {name: sum(values)}

    @service.method
    def total(*numbers: float) -> float:
        return sum(numbers)

    @service.method(context=True)
    def whoami(ctx: CallContext, greeting: str) -> str:
        """Greet the caller."""
        return f"{greeting} {ctx.peer}"

    @service.method("bare")
    def bare(x, y=1):  # type: ignore[no-untyped-def]
        return x

    def weird(x: NoSuchName, y: int) -> AlsoMissing:  # type: ignore[name-defined]  # noqa: F821
        """Still described."""

    service.add_method("weird", weird)
    return service


def test_rpc_ping_answers_pong() -> None:
    pair = MemoryServer(JSONService()).connect()
    assert pair.result_of(pair.client.call("rpc.ping")) == "pong"
    assert pair.sent_by_server == [{"jsonrpc": "2.0", "result": "pong", "id": 1}]
    pair.failure_of(pair.client.call("rpc.ping", 1), InvalidParams)


def test_rpc_discover_describes_the_user_methods() -> None:
    pair = MemoryServer(documented_service()).connect()
    doc = pair.result_of(pair.client.call("rpc.discover"))
    assert doc == documented_service().discover()
    assert isinstance(doc["openrpc"], str)
    assert doc["openrpc"].startswith("1.")
    assert doc["info"] == {"title": "Calculator", "version": "1.2.3"}
    methods = {m["name"]: m for m in doc["methods"]}
    assert sorted(methods) == ["add", "bare", "tag", "total", "weird", "whoami"]
    assert not [name for name in methods if name.startswith("rpc.")]

    add = methods["add"]
    assert add["params"] == [
        {"name": "a", "schema": {"type": "integer"}, "required": True},
        {"name": "b", "schema": {"type": "integer"}},
    ]
    assert add["result"] == {"name": "result", "schema": {"type": "integer"}}
    assert add["summary"] == "Add two integers."
    assert add["description"] == "Both must be integers;\nC{b} defaults to zero."

    tag = methods["tag"]
    assert tag["params"] == [
        {"name": "name", "schema": {"type": "string"}, "required": True},
        {"name": "values", "schema": {"type": "array", "items": {"type": "integer"}}, "required": True},
        # anyOf, not oneOf: for int | float a JSON integer matches both.
        {"name": "label", "schema": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
    ]
    assert tag["result"]["schema"] == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert tag["summary"] == "Tag some values."
    assert "description" not in tag

    total = methods["total"]
    assert total["params"][0]["name"] == "numbers"
    assert total["params"][0]["schema"] == {"type": "array", "items": {"type": "number"}}
    assert "required" not in total["params"][0]
    assert total["paramStructure"] == "by-position"
    assert "summary" not in total

    whoami = methods["whoami"]
    assert [p["name"] for p in whoami["params"]] == ["greeting"]
    assert whoami["params"][0] == {"name": "greeting", "schema": {"type": "string"}, "required": True}

    assert methods["bare"]["params"] == [
        {"name": "x", "schema": {}, "required": True},
        {"name": "y", "schema": {}},
    ]
    assert methods["bare"]["result"] == {"name": "result", "schema": {}}

    weird = methods["weird"]
    assert [p["name"] for p in weird["params"]] == ["x", "y"]
    assert weird["params"][0]["schema"] == {}
    assert weird["result"]["schema"] == {}
    assert weird["summary"] == "Still described."


def test_pep604_unions_are_one_of() -> None:
    from jsonservice.openrpc import schema_for

    assert schema_for(int | None) == {"anyOf": [{"type": "integer"}, {"type": "null"}]}
    assert schema_for(Optional[int]) == schema_for(int | None)  # noqa: UP045
    assert schema_for(list) == {"type": "array"}
    assert schema_for(str) == {"type": "string"}


def test_rpc_discover_of_an_empty_service() -> None:
    doc = JSONService().discover()
    assert doc["methods"] == []
    assert doc["info"] == {"title": "jsonservice", "version": "0"}


@pytest.mark.parametrize(
    "name", ["rpc.ping", "rpc.discover", "rpc.authenticate", "rpc.mine", "$/cancelRequest"]
)
def test_user_code_cannot_register_reserved_names(name: str) -> None:
    service = JSONService()
    with pytest.raises(ValueError, match="reserved"):
        service.add_method(name, lambda: None)
    with pytest.raises(ValueError, match="reserved"):
        service.method(name)(lambda: None)
    assert name not in service
    assert len(service) == 0


def test_a_user_method_named_ping_does_not_shadow_rpc_ping() -> None:
    service = JSONService()
    service.add_method("ping", lambda: "user pong")
    pair = MemoryServer(service).connect()
    assert pair.result_of(pair.client.call("ping")) == "user pong"
    assert pair.result_of(pair.client.call("rpc.ping")) == "pong"


def test_builtins_are_listed_nowhere_but_answered() -> None:
    service = documented_service()
    assert "rpc.ping" not in service
    assert "rpc.discover" not in list(service)
    with pytest.raises(MethodNotFound):
        service.dispatch("rpc.nosuch", None)

"""
The client side over real loopback TCP (pytest-twisted): L{connect} with an
endpoint or a description, calls, notifications and plain messages, call
timeouts and cancellation seen by the server, pending calls failing when
the connection drops, both directions on one connection, and
L{ReconnectingClient}.

Also the classic example server of the introduction (a blocking socket in
a thread that reads once with C{recv(1024)}, answers with no newline and
closes), talked to by L{JSONProtocol.send} and by the command line.

Everything listens on 127.0.0.1 port 0; every Deferred a test waits on has
a timeout; every test closes its ports, connections, services and threads
and checks it left no delayed call behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import CancelledError, Deferred, DeferredList, maybeDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

import jsonservice
from jsonservice import (
    CallContext,
    CallTimeout,
    ConnectionClosed,
    JSONClientFactory,
    JSONProtocol,
    JSONServerFactory,
    JSONService,
    ReconnectingClient,
    RPCError,
)
from jsonservice.protocol import CANCEL_METHOD

ROOT = Path(__file__).resolve().parent.parent

#: The longest any single step may take before the test fails (not hangs).
STEP = 5.0

#: Retry quickly: these tests restart connections on purpose.
FAST_RETRY: Callable[[int], float] = lambda attempt: 0.05  # noqa: E731


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def within(d: Deferred[Any], seconds: float = STEP) -> Deferred[Any]:
    """C{d} with a timeout, so that a broken test fails instead of hanging."""
    return d.addTimeout(seconds, _reactor())


async def sleep(seconds: float) -> None:
    await deferLater(_reactor(), seconds, lambda: None)


async def wait_until(predicate: Callable[[], bool], seconds: float = STEP, what: str = "") -> None:
    """Poll C{predicate} every 10 ms until it holds; fail after C{seconds}."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or predicate}")
        await sleep(0.01)


async def failure_of(d: Deferred[Any], seconds: float = STEP) -> Failure:
    """
    The failure C{d} fails with; the test fails if C{d} succeeds, or hangs
    for C{seconds} (kept apart from C{d}'s own timeouts, which are tested).
    """
    outcome: Deferred[list[Any]] = Deferred()

    def settle(result: Any) -> None:
        if not outcome.called:
            outcome.callback([result])

    d.addBoth(settle)
    timer = _reactor().callLater(seconds, settle, _HUNG)
    (result,) = await outcome
    if timer.active():
        timer.cancel()
    if result is _HUNG:
        d.cancel()
        pytest.fail(f"no result after {seconds}s")
    if not isinstance(result, Failure):
        pytest.fail(f"expected a failure, got {result!r}")
    return result


_HUNG = object()


# -- a server that records what it sees --------------------------------------


class RecordingProtocol(JSONProtocol):
    """A server-side L{JSONProtocol} that notes every value it receives."""

    def valueReceived(self, value: Any) -> None:
        self.factory.seen.append(value)
        super().valueReceived(value)


class RecordingFactory(JSONServerFactory):
    protocol = RecordingProtocol

    def __init__(self, service: JSONService, **limits: Any) -> None:
        super().__init__(service, **limits)
        self.seen: list[Any] = []

    def methods_seen(self) -> list[str]:
        return [v.get("method") for v in self.seen if isinstance(v, dict) and "method" in v]

    def only_connection(self) -> JSONProtocol:
        (proto,) = self.connections
        return proto


class Backend:
    """What the test service's handlers did."""

    def __init__(self) -> None:
        self.notes: list[Any] = []
        self.messages: list[Any] = []
        self.hanging: list[Deferred[Any]] = []
        self.cancelled = 0
        self.hang_calls = 0


def make_service(backend: Backend) -> JSONService:
    service = JSONService()

    @service.method
    def echo(value: Any) -> Any:
        return value

    @service.method
    def subtract(minuend: int, subtrahend: int) -> int:
        return minuend - subtrahend

    @service.method
    def fail() -> None:
        raise RPCError(4000, "custom failure", {"why": ["data", 1]})

    @service.method
    def note(*args: Any, **kwargs: Any) -> None:
        backend.notes.append(kwargs or list(args))

    @service.method
    def notes() -> list[Any]:
        return backend.notes

    @service.method
    def hang() -> Deferred[None]:
        """Never answers by itself; counts how it was cancelled."""
        backend.hang_calls += 1

        def cancelled(d: Deferred[None]) -> None:
            backend.cancelled += 1

        d: Deferred[None] = Deferred(cancelled)
        backend.hanging.append(d)
        return d

    @service.method
    def hang_calls() -> int:
        return backend.hang_calls

    @service.message
    def on_message(message: Any) -> Any:
        backend.messages.append(message)
        if isinstance(message, dict) and message.get("quiet"):
            return None
        return {"got": message}

    return service


class Net:
    """Listening ports, connections and services of one test, and their cleanup."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.backend = Backend()
        self.service = make_service(self.backend)
        self.factories: list[JSONServerFactory | JSONClientFactory] = []
        self.ports: list[Any] = []
        self.clients: list[JSONProtocol] = []
        self.services: list[ReconnectingClient] = []
        self._calls_before = set(reactor.getDelayedCalls())

    async def serve(self, port: int = 0, **limits: Any) -> tuple[RecordingFactory, int]:
        """Listen on 127.0.0.1:C{port}; returns the factory and the port number."""
        factory = RecordingFactory(self.service, **limits)
        endpoint = TCP4ServerEndpoint(self.reactor, port, interface="127.0.0.1")
        listening = await within(endpoint.listen(factory))
        self.ports.append(listening)
        self.factories.append(factory)
        return factory, listening.getHost().port

    async def stop_listening(self, number: int) -> None:
        for listening in list(self.ports):
            if listening.getHost().port == number:
                self.ports.remove(listening)
                await within(maybeDeferred(listening.stopListening))

    async def connect(self, endpoint: Any, service: JSONService | None = None, **limits: Any) -> JSONProtocol:
        proto: JSONProtocol = await within(jsonservice.connect(self.reactor, endpoint, service, **limits))
        self.clients.append(proto)
        return proto

    def reconnecting(self, port: int, **kwargs: Any) -> ReconnectingClient:
        kwargs.setdefault("retry_policy", FAST_RETRY)
        client = ReconnectingClient(self.reactor, f"tcp:127.0.0.1:{port}", **kwargs)
        self.services.append(client)
        self.factories.append(client.factory)
        return client

    def open_connections(self) -> list[JSONProtocol]:
        protos = {p for f in self.factories for p in f.connections}
        protos.update(p for p in self.clients if not p._closed)
        return list(protos)

    async def close(self) -> None:
        for client in self.services:
            if client.running:
                await within(client.stopService())
        for listening in self.ports:
            await within(maybeDeferred(listening.stopListening))
        for proto in self.open_connections():
            if proto.transport is not None:
                proto.transport.abortConnection()
        await wait_until(lambda: not self.open_connections(), what="every connection closed")
        for d in self.backend.hanging:
            if not d.called:
                d.cancel()
        # Let the zero-delay calls that closing scheduled run.
        await sleep(0.02)
        left = [c for c in self.reactor.getDelayedCalls() if c.active() and c not in self._calls_before]
        assert left == [], f"delayed calls left behind: {left}"


@pytest_twisted.async_yield_fixture
async def net(reactor: Any) -> Any:
    network = Net(reactor)
    try:
        yield network
    finally:
        await network.close()


# -- connect() ----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_connect_with_an_endpoint_object(net: Net, reactor: Any) -> None:
    _, port = await net.serve()
    proto = await net.connect(TCP4ClientEndpoint(reactor, "127.0.0.1", port))
    assert isinstance(proto, JSONProtocol)
    assert isinstance(proto.factory, JSONClientFactory)
    assert await within(proto.call("echo", "object")) == "object"


@pytest_twisted.ensureDeferred
async def test_connect_with_a_description_string(net: Net) -> None:
    _, port = await net.serve()
    proto = await net.connect(f"tcp:127.0.0.1:{port}")
    assert await within(proto.call("echo", "string")) == "string"
    assert proto.peer.port == port


@pytest.mark.parametrize("endpoint", [8080, b"tcp:127.0.0.1:8080", None, ("127.0.0.1", 8080), object()])
def test_connect_bad_endpoint_type_is_a_type_error(reactor: Any, endpoint: Any) -> None:
    with pytest.raises(TypeError, match="expected an endpoint"):
        jsonservice.connect(reactor, endpoint)
    with pytest.raises(TypeError, match="expected an endpoint"):
        ReconnectingClient(reactor, endpoint)


def test_connect_unknown_limit_is_a_type_error(reactor: Any) -> None:
    with pytest.raises(TypeError, match="unknown limit"):
        jsonservice.connect(reactor, "tcp:127.0.0.1:8080", call_timout=5)


@pytest_twisted.ensureDeferred
async def test_connect_to_a_closed_port_fails(net: Net, reactor: Any) -> None:
    _, port = await net.serve()
    await net.stop_listening(port)
    failure = await failure_of(jsonservice.connect(reactor, f"tcp:127.0.0.1:{port}"))
    assert failure.check(ConnectionRefusedError) or "refused" in failure.getErrorMessage().lower()


# -- calls, notifications, plain messages ------------------------------------


@pytest_twisted.ensureDeferred
async def test_calls_notifications_and_plain_send_over_tcp(net: Net) -> None:
    factory, port = await net.serve()
    proto = await net.connect(f"tcp:127.0.0.1:{port}")

    assert await within(proto.call("subtract", 42, 23)) == 19
    assert await within(proto.call("subtract", subtrahend=23, minuend=42)) == 19
    assert await within(proto.request("subtract", {"minuend": 1, "subtrahend": 2})) == -1
    value = {"text": "héllo ☃", "list": [1, 2.5, None, True], "big": 2**70}
    assert await within(proto.call("echo", value)) == value

    # Notifications are never answered; the server runs them in order.
    assert proto.notify("note", "first") is None
    proto.notify("note", key="second")
    proto.notify_params("note", ["third"])
    assert await within(proto.call("notes")) == [["first"], {"key": "second"}, ["third"]]

    # Plain messages: send() gets the reply, write_message() expects none.
    assert await within(proto.send({"name": "John"})) == {"got": {"name": "John"}}
    proto.write_message({"quiet": True})
    assert await within(proto.send("again")) == {"got": "again"}
    assert net.backend.messages == [{"name": "John"}, {"quiet": True}, "again"]
    assert proto.pending == 0

    requests = [v for v in factory.seen if isinstance(v, dict) and "id" in v]
    assert all(v["jsonrpc"] == "2.0" for v in requests)
    assert len({v["id"] for v in requests}) == len(requests)  # ids are unique


@pytest_twisted.ensureDeferred
async def test_rpc_errors_keep_code_message_and_data(net: Net) -> None:
    _, port = await net.serve()
    proto = await net.connect(f"tcp:127.0.0.1:{port}")

    error = (await failure_of(proto.call("fail"))).value
    assert isinstance(error, RPCError)
    assert (error.code, error.message, error.data) == (4000, "custom failure", {"why": ["data", 1]})

    missing = (await failure_of(proto.call("no.such.method"))).value
    assert isinstance(missing, RPCError)
    assert missing.code == -32601

    wrong = (await failure_of(proto.call("subtract", 1))).value
    assert isinstance(wrong, RPCError)
    assert wrong.code == -32602

    # The connection goes on after errors.
    assert await within(proto.call("echo", 1)) == 1


@pytest_twisted.ensureDeferred
async def test_bad_arguments_to_call_and_send_fail_without_sending(net: Net) -> None:
    factory, port = await net.serve()
    proto = await net.connect(f"tcp:127.0.0.1:{port}")
    (await failure_of(proto.call("echo", 1, value=1))).trap(TypeError)
    (await failure_of(proto.call("echo", object()))).trap(Exception)
    (await failure_of(proto.send([1, 2]))).trap(ValueError)
    (await failure_of(proto.send({"jsonrpc": "2.0", "method": "echo"}))).trap(ValueError)
    with pytest.raises(ValueError, match="plain message"):
        proto.write_message([1])
    assert proto.pending == 0
    assert await within(proto.call("echo", "still fine")) == "still fine"
    assert factory.methods_seen() == ["echo"]


@pytest_twisted.ensureDeferred
async def test_thousands_of_calls_answered_out_of_order(net: Net) -> None:
    count = 2000
    waiting: list[tuple[int, Deferred[int]]] = []

    def backwards(index: int) -> Deferred[int]:
        d: Deferred[int] = Deferred()
        waiting.append((index, d))
        if len(waiting) == count:
            # Every call is outstanding: answer them last to first.
            for i, pending in reversed(waiting):
                pending.callback(i * 10)
        return d

    net.service.add_method("backwards", backwards)
    _, port = await net.serve(max_in_flight=count + 1)
    proto = await net.connect(f"tcp:127.0.0.1:{port}")
    calls = [proto.call("backwards", i) for i in range(count)]
    assert proto.pending == count
    results = await within(DeferredList(calls, fireOnOneErrback=True, consumeErrors=True))
    assert [value for _, value in results] == [i * 10 for i in range(count)]
    assert proto.pending == 0


# -- timeouts and cancellation -------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_per_call_timeout_cancels_on_the_server(net: Net) -> None:
    factory, port = await net.serve()
    proto = await net.connect(f"tcp:127.0.0.1:{port}")
    started = time.monotonic()
    failure = await failure_of(proto.call("hang", timeout=0.2))
    assert failure.check(CallTimeout)
    assert 0.15 < time.monotonic() - started < 2
    assert "'hang'" in str(failure.value)
    assert proto.pending == 0

    await wait_until(lambda: net.backend.cancelled == 1, what="the handler cancelled")
    cancels = [v for v in factory.seen if isinstance(v, dict) and v.get("method") == CANCEL_METHOD]
    hang_id = next(v["id"] for v in factory.seen if v.get("method") == "hang")
    assert cancels == [{"jsonrpc": "2.0", "method": CANCEL_METHOD, "params": {"id": hang_id}}]
    # The server answered -32800 for the cancelled id: the client dropped
    # that late reply and the connection goes on.
    assert await within(proto.call("echo", "after")) == "after"


@pytest_twisted.ensureDeferred
async def test_factory_default_call_timeout(net: Net) -> None:
    factory, port = await net.serve()
    proto = await net.connect(f"tcp:127.0.0.1:{port}", call_timeout=0.2)
    assert proto.call_timeout == 0.2
    failure = await failure_of(proto.call("hang"))
    assert failure.check(CallTimeout)
    (await failure_of(proto.send({"quiet": True}))).trap(CallTimeout)
    await wait_until(lambda: net.backend.cancelled == 1, what="the handler cancelled")
    assert CANCEL_METHOD in factory.methods_seen()
    # A per-call timeout of 0 overrides the default: wait for ever.
    forever = proto.call("hang", timeout=0)
    await sleep(0.3)
    assert not forever.called
    forever.cancel()
    (await failure_of(forever)).trap(CancelledError)
    await wait_until(lambda: net.backend.cancelled == 2, what="the second handler cancelled")


@pytest_twisted.ensureDeferred
async def test_cancelling_a_call_tells_the_server(net: Net) -> None:
    factory, port = await net.serve()
    proto = await net.connect(f"tcp:127.0.0.1:{port}")
    d = proto.call("hang")
    await wait_until(lambda: net.backend.hang_calls == 1, what="the call to arrive")
    d.cancel()
    (await failure_of(d)).trap(CancelledError)
    assert proto.pending == 0
    await wait_until(lambda: net.backend.cancelled == 1, what="the handler cancelled")
    assert factory.methods_seen() == ["hang", CANCEL_METHOD]
    assert factory.only_connection().in_flight == 0
    assert await within(proto.call("echo", "after")) == "after"


# -- losing the connection ---------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_losing_the_connection_fails_every_pending_call(net: Net) -> None:
    factory, port = await net.serve()
    proto = await net.connect(f"tcp:127.0.0.1:{port}")
    calls = [proto.call("hang") for _ in range(100)]
    sent = proto.send({"quiet": True})
    await wait_until(lambda: net.backend.hang_calls == 100, what="100 calls running on the server")
    assert proto.pending == 101

    started = time.monotonic()
    factory.only_connection().transport.abortConnection()
    results = await within(DeferredList([*calls, sent], consumeErrors=True), 2)
    assert time.monotonic() - started < 1
    for ok, failure in results:
        assert not ok
        assert failure.check(ConnectionClosed), failure
    assert "'hang'" in str(results[0][1].value)
    assert proto.pending == 0
    # The server cancelled its handlers, whose replies could not be sent.
    await wait_until(lambda: net.backend.cancelled == 100, what="every handler cancelled")

    # Afterwards: calls fail at once, notifications are dropped.
    (await failure_of(proto.call("echo", 1))).trap(ConnectionClosed)
    (await failure_of(proto.send("x"))).trap(ConnectionClosed)
    proto.notify("note", "dropped")
    with pytest.raises(ConnectionClosed):
        proto.write_message("x")


@pytest_twisted.ensureDeferred
async def test_client_closing_fails_its_own_pending_calls(net: Net) -> None:
    _, port = await net.serve()
    proto = await net.connect(f"tcp:127.0.0.1:{port}")
    d = proto.call("hang")
    await wait_until(lambda: net.backend.hang_calls == 1, what="the call to arrive")
    proto.transport.loseConnection()
    (await failure_of(d)).trap(ConnectionClosed)
    # The server cannot tell a close from a half-close (both are a FIN):
    # it lets the handler finish, then its reply finds the peer gone.
    assert net.backend.cancelled == 0
    net.backend.hanging[0].callback(None)
    await wait_until(lambda: not net.factories[0].connections, what="the server to see it close")


# -- both directions -------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_server_handler_calls_and_notifies_the_client(net: Net) -> None:
    @net.service.method(context=True)
    async def greet(ctx: CallContext, name: str) -> str:
        ctx.notify("client.log", f"greeting {name}")
        title = await ctx.call("client.title", name=name)
        total = await ctx.protocol.call("client.add", 2, 3)
        return f"hello {title} {name}, 2+3={total}"

    @net.service.method(context=True)
    async def ask_plain_client(ctx: CallContext) -> Any:
        try:
            await ctx.call("client.add", 1, 1)
        except RPCError as exc:
            return exc.code
        return None

    client_log: list[str] = []
    client_service = JSONService()

    @client_service.method("client.log")
    def log(line: str) -> None:
        client_log.append(line)

    @client_service.method("client.title")
    def title(name: str) -> str:
        return "Dr." if name == "Ada" else "M."

    @client_service.method("client.add")
    def add(a: int, b: int) -> int:
        return a + b

    _, port = await net.serve()
    proto = await net.connect(f"tcp:127.0.0.1:{port}", client_service)
    results = await within(DeferredList([proto.call("greet", "Ada"), proto.call("greet", "Bob")]))
    assert [value for _, value in results] == ["hello Dr. Ada, 2+3=5", "hello M. Bob, 2+3=5"]
    assert sorted(client_log) == ["greeting Ada", "greeting Bob"]

    # A client without a service answers the server's calls with -32601.
    plain = await net.connect(f"tcp:127.0.0.1:{port}")
    assert await within(plain.call("ask_plain_client")) == -32601


# -- ReconnectingClient --------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_reconnecting_client_reconnects_after_the_server_drops_it(net: Net) -> None:
    factory, port = await net.serve()
    client = net.reconnecting(port)
    client.startService()
    first = await within(client.protocol())
    assert await within(client.call("echo", 1)) == 1
    assert await within(client.send("hi")) == {"got": "hi"}

    factory.only_connection().transport.abortConnection()
    await wait_until(lambda: first not in client.factory.connections, what="the drop seen")
    second = await within(client.protocol())
    assert second is not first
    assert await within(client.call("echo", 2)) == 2
    assert len(factory.connections) == 1

    # And again: it keeps reconnecting.
    factory.only_connection().transport.abortConnection()
    await wait_until(lambda: second not in client.factory.connections, what="the second drop")
    assert await within(client.call("echo", 3)) == 3

    await within(client.stopService())
    assert not client.running
    await wait_until(lambda: not factory.connections, what="the server to see it close")


@pytest_twisted.ensureDeferred
async def test_reconnecting_client_call_while_disconnected_waits(net: Net) -> None:
    factory, port = await net.serve()
    client = net.reconnecting(port)
    client.startService()
    first = await within(client.protocol())

    # The server goes away entirely: reconnection attempts are refused.
    await net.stop_listening(port)
    factory.only_connection().transport.abortConnection()
    await wait_until(lambda: first not in client.factory.connections, what="the drop seen")

    notified = client.notify("note", "queued")
    late = client.call("echo", "late")
    sent = client.send("late message")

    async def notify_then_call() -> Any:
        # Resumed when the connection comes: calling again from there works.
        await client.notify("note", "chained")
        return await client.call("echo", "after notify")

    chained = Deferred.fromCoroutine(notify_then_call())
    await sleep(0.3)  # several refused attempts
    assert not late.called
    assert not notified.called

    factory, _ = await net.serve(port)
    assert await within(late) == "late"
    assert await within(sent) == {"got": "late message"}
    assert await within(notified) is None
    assert await within(chained) == "after notify"
    assert await within(client.call("notes")) == [["queued"], ["chained"]]


@pytest_twisted.ensureDeferred
async def test_reconnecting_client_retry_from_the_connection_closed_errback(net: Net) -> None:
    """Calling again as soon as a call fails with ConnectionClosed waits for the next connection."""
    factory, port = await net.serve()
    client = net.reconnecting(port)
    client.startService()

    def retry(failure: Failure) -> Deferred[Any]:
        failure.trap(ConnectionClosed)
        return client.call("echo", "retried")

    in_flight = client.call("hang").addErrback(retry)
    await wait_until(lambda: net.backend.hang_calls == 1, what="the call to arrive")
    factory.only_connection().transport.abortConnection()
    assert await within(in_flight) == "retried"


@pytest_twisted.ensureDeferred
async def test_reconnecting_client_call_timeout_while_disconnected(net: Net) -> None:
    _, port = await net.serve()
    await net.stop_listening(port)
    client = net.reconnecting(port, call_timeout=0.3)
    client.startService()
    started = time.monotonic()
    failure = await failure_of(client.call("echo", 1, timeout=0.2))
    # It waited (up to the call's timeout) for a connection that never came.
    assert failure.check(CallTimeout), failure
    assert 0.15 < time.monotonic() - started < 2
    # The factory's default applies too.
    (await failure_of(client.call("echo", 1))).trap(CallTimeout)
    (await failure_of(client.send("x"))).trap(CallTimeout)


@pytest_twisted.ensureDeferred
async def test_reconnecting_client_timeout_is_one_budget(net: Net) -> None:
    """The wait for a connection and the wait for the reply share the call's timeout."""
    _, port = await net.serve()
    await net.stop_listening(port)
    client = net.reconnecting(port)
    client.startService()
    call = client.call("hang", timeout=0.6)
    await sleep(0.4)
    await net.serve(port)
    started = time.monotonic()
    (await failure_of(call)).trap(CallTimeout)
    # About 0.2 s left of the 0.6 s budget, not a fresh 0.6 s.
    assert time.monotonic() - started < 0.45


@pytest_twisted.ensureDeferred
async def test_reconnecting_client_call_in_flight_fails_and_is_not_resent(net: Net) -> None:
    factory, port = await net.serve()
    client = net.reconnecting(port)
    client.startService()
    first = await within(client.protocol())
    in_flight = client.call("hang")
    await wait_until(lambda: net.backend.hang_calls == 1, what="the call to arrive")

    factory.only_connection().transport.abortConnection()
    failure = await failure_of(in_flight)
    assert failure.check(ConnectionClosed)
    await wait_until(lambda: first not in client.factory.connections, what="the drop seen")

    second = await within(client.protocol())
    assert second is not first
    assert await within(client.call("echo", "next")) == "next"
    await sleep(0.1)
    assert await within(client.call("hang_calls")) == 1  # not resent
    assert factory.methods_seen().count("hang") == 1


@pytest_twisted.ensureDeferred
async def test_reconnecting_client_per_call_timeout_when_connected(net: Net) -> None:
    factory, port = await net.serve()
    client = net.reconnecting(port)
    client.startService()
    (await failure_of(client.call("hang", timeout=0.2))).trap(CallTimeout)
    await wait_until(lambda: net.backend.cancelled == 1, what="the handler cancelled")
    assert CANCEL_METHOD in factory.methods_seen()


@pytest_twisted.ensureDeferred
async def test_reconnecting_client_with_a_service_answers_the_server(net: Net) -> None:
    @net.service.method(context=True)
    async def callback(ctx: CallContext) -> Any:
        return await ctx.call("whoami")

    client_service = JSONService()
    client_service.add_method("whoami", lambda: "the reconnecting client")
    _, port = await net.serve()
    client = net.reconnecting(port, service=client_service)
    client.startService()
    assert await within(client.call("callback")) == "the reconnecting client"


@pytest_twisted.ensureDeferred
async def test_reconnecting_client_stop_service_closes_it(net: Net) -> None:
    factory, port = await net.serve()
    client = net.reconnecting(port)
    client.startService()
    proto = await within(client.protocol())
    pending = client.call("hang")
    await wait_until(lambda: net.backend.hang_calls == 1, what="the call to arrive")

    await within(client.stopService())
    # Right after the stop (still in ClientService's own callbacks): a clear failure.
    (await failure_of(client.call("echo", 1), 1)).trap(CancelledError)
    assert not client.running
    assert proto._closed
    (await failure_of(pending)).trap(ConnectionClosed)
    # A FIN may be a half-close: the server answers what it received first.
    net.backend.hanging[0].callback(None)
    await wait_until(lambda: not factory.connections, what="the server to see it close")

    # Stopped: calls fail at once instead of waiting for ever, and no
    # reconnection is attempted.
    (await failure_of(client.call("echo", 1), 1)).trap(CancelledError)
    await sleep(0.2)
    assert not factory.connections


# -- the classic example server ---------------------------------------------------------

CLASSIC_REPLY = {"message": "Hello from server"}
JOHN = {"name": "John", "age": 30, "city": "New York"}


class ClassicServer:
    """
    The classic example server, in a thread: accept one connection, read
    once with C{recv(1024)}, C{json.loads} it, answer C{json.dumps} with no
    newline (optionally in pieces, with a pause between them), then close.
    """

    def __init__(self, pieces: int = 1, pause: float = 0.0, linger: float = 0.0) -> None:
        self.pieces = pieces
        self.pause = pause
        self.linger = linger
        self.received: list[Any] = []
        self.errors: list[BaseException] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.sock.settimeout(STEP * 2)
        self.port: int = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, name="classic-server", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
            with conn:
                conn.settimeout(STEP)
                data = conn.recv(1024)
                self.received.append(json.loads(data.decode("utf-8")))
                reply = json.dumps(CLASSIC_REPLY).encode("utf-8")
                step = -(-len(reply) // self.pieces)
                for start in range(0, len(reply), step):
                    if start:
                        time.sleep(self.pause)
                    conn.sendall(reply[start : start + step])
                time.sleep(self.linger)
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            self.sock.close()

    def close(self) -> None:
        if self.thread.is_alive():
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)  # wakes up accept()
        self.thread.join(STEP * 2)
        assert not self.thread.is_alive()


@pytest.fixture
def classic() -> Any:
    servers: list[ClassicServer] = []

    def start(**kwargs: Any) -> ClassicServer:
        server = ClassicServer(**kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest_twisted.ensureDeferred
async def test_send_to_the_classic_server(net: Net, classic: Any) -> None:
    server = classic()
    proto = await net.connect(f"tcp:127.0.0.1:{server.port}")
    assert await within(proto.send(JOHN)) == CLASSIC_REPLY
    await wait_until(lambda: proto._closed, what="the classic server to close")
    assert server.received == [JOHN]
    assert server.errors == []


@pytest_twisted.ensureDeferred
async def test_classic_server_reply_in_two_packets(net: Net, classic: Any) -> None:
    server = classic(pieces=2, pause=0.2)
    proto = await net.connect(f"tcp:127.0.0.1:{server.port}")
    assert await within(proto.send(JOHN)) == CLASSIC_REPLY
    await wait_until(lambda: proto._closed, what="the classic server to close")
    assert server.received == [JOHN]
    assert server.errors == []


@pytest_twisted.ensureDeferred
async def test_classic_server_reply_comes_before_the_close(net: Net, classic: Any) -> None:
    """A complete unterminated reply is delivered while the peer waits, not only at close."""
    server = classic(linger=0.5)
    proto = await net.connect(f"tcp:127.0.0.1:{server.port}")
    started = time.monotonic()
    assert await within(proto.send(JOHN)) == CLASSIC_REPLY
    assert time.monotonic() - started < 0.4
    assert not proto._closed
    await wait_until(lambda: proto._closed, what="the classic server to close")


def test_cli_send_to_the_classic_server(classic: Any) -> None:
    server = classic()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "jsonservice",
            "send",
            json.dumps(JOHN),
            "--connect",
            f"tcp:127.0.0.1:{server.port}",
        ],
        capture_output=True,
        text=True,
        timeout=STEP * 3,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert json.loads(done.stdout) == CLASSIC_REPLY
    assert done.stdout == '{"message":"Hello from server"}\n'
    server.close()
    assert server.received == [JOHN]
    assert server.errors == []


def test_cli_send_to_the_classic_server_in_two_packets(classic: Any) -> None:
    server = classic(pieces=2, pause=0.2)
    done = subprocess.run(
        [sys.executable, "-m", "jsonservice", "send", json.dumps(JOHN), "-c", f"tcp:127.0.0.1:{server.port}"],
        capture_output=True,
        text=True,
        timeout=STEP * 3,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert json.loads(done.stdout) == CLASSIC_REPLY

"""
Tests of the public test kit, L{jsonservice.testing}, and of the pytest
plugin's fixtures (L{jsonservice.pytest_plugin}), run by pytest.

The same kit is exercised under trial by C{tests/test_trial_kit.py}.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.task import Clock

from jsonservice import (
    CallContext,
    CallTimeout,
    ConnectionClosed,
    JSONProtocol,
    JSONService,
    MethodNotFound,
    RequestTimeout,
    RPCError,
)
from jsonservice.demo import make_demo_service
from jsonservice.testing import (
    MAX_PUMPS,
    ConnectedPair,
    LoopbackServer,
    MemoryServer,
    Wire,
    connected_pair,
    failure_of,
    result_of,
)

STEP = 5.0


def make_service() -> JSONService:
    """A service with a bit of everything: values, Deferreds, callbacks to the peer."""
    service = JSONService()

    @service.method
    def subtract(minuend: int, subtrahend: int) -> int:
        return minuend - subtrahend

    @service.method
    def forever() -> Deferred[None]:
        return Deferred()

    @service.method(context=True)
    async def ask_back(ctx: CallContext, question: str) -> Any:
        return await ctx.call("answer", question)

    @service.method(context=True)
    def shout(ctx: CallContext, text: str) -> None:
        ctx.notify("heard", text.upper())

    @service.message
    def on_message(message: Any) -> Any:
        return {"echo": message}

    return service


def client_service(heard: list[Any]) -> JSONService:
    """What a client serves back: C{answer} and the C{heard} notification."""
    service = JSONService()

    @service.method
    def answer(question: str) -> str:
        return f"{question}? 42"

    @service.method
    def heard_(text: str) -> None:
        heard.append(text)

    service.add_method("heard", heard_)
    return service


# -- connected_pair ------------------------------------------------------


def test_call_and_wire_record() -> None:
    """A call goes over in memory; both directions are recorded, decoded and raw."""
    pair = connected_pair(make_service())
    assert pair.result_of(pair.client.call("subtract", 42, 23)) == 19
    assert pair.sent_by_client == [{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}]
    assert pair.sent_by_server == [{"jsonrpc": "2.0", "result": 19, "id": 1}]
    assert pair.raw_sent_by_client == b'{"jsonrpc":"2.0","method":"subtract","params":[42,23],"id":1}\n'
    assert pair.raw_sent_by_server == b'{"jsonrpc":"2.0","result":19,"id":1}\n'
    assert pair.from_client.lines == [pair.raw_sent_by_client[:-1]]


def test_nothing_moves_until_flushed() -> None:
    """Writes wait in the transport until the pair is pumped."""
    pair = connected_pair(make_service())
    d = pair.client.call("subtract", 1, 1)
    assert pair.sent_by_client == []
    assert not d.called
    pair.flush()
    assert d.called
    assert result_of(d) == 0


def test_named_params_and_errors() -> None:
    """RPC errors come back as the exception the client raises."""
    pair = connected_pair(make_service())
    assert pair.result_of(pair.client.call("subtract", subtrahend=2, minuend=5)) == 3
    with pytest.raises(MethodNotFound):
        pair.result_of(pair.client.call("nope"))
    failure = pair.failure_of(pair.client.call("subtract", 1), RPCError)
    assert failure.value.code == -32602  # type: ignore[attr-defined]


def test_plain_messages() -> None:
    """send() and a plain reply; the wire shows the plain values."""
    pair = connected_pair(make_service())
    assert pair.result_of(pair.client.send("hi")) == {"echo": "hi"}
    assert pair.sent_by_client == ["hi"]
    assert pair.sent_by_server == [{"echo": "hi"}]


def test_default_clock_is_fresh_and_exposed() -> None:
    """Without a clock the pair makes a new Clock, used by both ends."""
    one, two = connected_pair(make_service()), connected_pair(make_service())
    assert isinstance(one.clock, Clock)
    assert one.clock is not two.clock
    assert one.server.clock is one.clock
    assert one.client.clock is one.clock
    assert one.clock.seconds() == 0


def test_given_clock_is_used() -> None:
    clock = Clock()
    pair = connected_pair(make_service(), clock=clock)
    assert pair.clock is clock
    assert pair.server.clock is clock


def test_request_timeout_on_advance() -> None:
    """The server's request timeout runs on the pair's clock."""
    pair = connected_pair(make_service(), request_timeout=5)
    d = pair.client.call("forever")
    pair.advance(4.9)
    assert not d.called
    pair.advance(0.1)
    error = pair.failure_of(d, RequestTimeout).value
    assert error.code == -32000  # type: ignore[attr-defined]
    assert pair.sent_by_server[-1]["error"]["code"] == -32000


def test_client_call_timeout() -> None:
    """client_limits reach only the client: its call times out, the server is told to cancel."""
    pair = connected_pair(make_service(), client_limits={"call_timeout": 2})
    assert pair.client.limits.call_timeout == 2
    assert pair.server.limits.call_timeout == 0
    d = pair.client.call("forever")
    pair.advance(2)
    pair.failure_of(d, CallTimeout)
    assert pair.sent_by_client[-1] == {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 1}}
    assert pair.server.in_flight == 0


def test_limits_for_both_ends_and_per_side() -> None:
    pair = connected_pair(make_service(), max_batch=7, server_limits={"max_line_length": 100})
    assert pair.server.limits.max_batch == pair.client.limits.max_batch == 7
    assert pair.server.limits.max_line_length == 100
    assert pair.client.limits.max_line_length != 100
    # The client keeps the client defaults: no idle timeout.
    assert pair.client.limits.idle_timeout == 0
    assert pair.server.limits.idle_timeout > 0


def test_unknown_limit_is_refused() -> None:
    with pytest.raises(TypeError, match="unknown limit"):
        connected_pair(make_service(), max_bananas=1)


def test_server_calls_and_notifies_the_client() -> None:
    """A client_service answers the server's calls and gets its notifications."""
    heard: list[Any] = []
    pair = connected_pair(make_service(), client_service(heard))
    assert pair.result_of(pair.client.call("ask_back", "six times seven")) == "six times seven? 42"
    pair.result_of(pair.client.call("shout", "hello"))
    assert heard == ["HELLO"]
    assert {"jsonrpc": "2.0", "method": "heard", "params": ["HELLO"]} in pair.sent_by_server


def test_raw_writes_garbage_and_crlf() -> None:
    """Lines that are not JSON are recorded as bytes; CRLF and blank lines are handled."""
    pair = connected_pair(make_service())
    pair.client_write(b"not json\r\n\r\n")
    assert pair.sent_by_client == [b"not json"]
    assert pair.sent_by_server[0]["error"]["code"] == -32700
    pair.server_write(b'{"unsolicited": true}\n')
    assert pair.sent_by_server[-1] == {"unsolicited": True}


def test_unterminated_classic_message() -> None:
    """A classic client's unterminated message: answered, and kept in Wire.unterminated."""
    pair = connected_pair(make_demo_service())
    pair.client_write(b'{"name": "John", "age": 30}')
    assert pair.from_client.lines == []
    assert pair.from_client.unterminated == b'{"name": "John", "age": 30}'
    assert pair.sent_by_server == [{"message": "Hello from server"}]


def test_wire_take_and_clear() -> None:
    pair = connected_pair(make_service())
    pair.result_of(pair.client.call("subtract", 2, 1))
    assert pair.from_server.take() == [{"jsonrpc": "2.0", "result": 1, "id": 1}]
    assert pair.sent_by_server == []
    assert pair.raw_sent_by_server == b""
    pair.result_of(pair.client.send(1))
    pair.clear()
    assert (pair.sent_by_client, pair.sent_by_server) == ([], [])
    assert len(pair.from_client) == 0


def test_wire_splits_lines_across_chunks() -> None:
    wire = Wire()
    wire.record(b'{"a":')
    assert wire.messages == []
    wire.record(b'1}\n[1,2]\n"x"')
    assert wire.messages == [{"a": 1}, [1, 2]]
    assert list(wire) == wire.messages
    assert wire.unterminated == b'"x"'
    wire.record(b"\n18446744073709551616\n")
    # A big integer is decoded exactly, as jsonservice itself does.
    assert wire.messages[-2:] == ["x", 18446744073709551616]
    assert "4 message(s)" in repr(wire)


def test_disconnect_fails_pending_calls() -> None:
    pair = connected_pair(make_service())
    d = pair.client.call("forever")
    pair.flush()
    assert pair.server.in_flight == 1
    assert pair.connected
    pair.disconnect()
    assert not pair.connected
    pair.failure_of(d, ConnectionClosed)
    assert pair.server.in_flight == 0
    assert pair.server_factory.connections == set()


def test_disconnect_by_server() -> None:
    pair = connected_pair(make_service())
    d = pair.client.call("forever")
    pair.disconnect(by_server=True)
    pair.failure_of(d, ConnectionClosed)


def test_result_of_not_fired() -> None:
    pair = connected_pair(make_service())
    d = pair.client.call("forever")
    with pytest.raises(AssertionError, match="has not fired"):
        pair.result_of(d)
    with pytest.raises(AssertionError, match="has not fired"):
        pair.failure_of(d)
    # Looking did not take the result away: it still arrives later.
    d.cancel()
    pair.failure_of(d, CancelledError)


def test_failure_of_mismatch() -> None:
    with pytest.raises(AssertionError, match="succeeded with 3"):
        failure_of(succeed(3))
    with pytest.raises(AssertionError, match="not one of KeyError"):
        failure_of(fail(ValueError("x")), KeyError)
    assert failure_of(fail(ValueError("x")), ValueError).check(ValueError)


def test_result_of_raises_and_consumes_the_failure() -> None:
    d: Deferred[Any] = fail(ZeroDivisionError())
    with pytest.raises(ZeroDivisionError):
        result_of(d)
    # Consumed: the Deferred now holds None, no "Unhandled error" later.
    assert result_of(d) is None


def test_result_of_keeps_a_success_result() -> None:
    d = succeed([1])
    assert result_of(d) == [1]
    assert result_of(d) == [1]


def test_endless_exchange_is_reported() -> None:
    """Two ends that answer each other's plain messages forever: flush gives up."""
    ping_pong = JSONService()

    @ping_pong.message
    def bounce(message: int) -> int:
        return message + 1

    pair = connected_pair(ping_pong, ping_pong)
    with pytest.raises(AssertionError, match="still busy"):
        pair.client_write(b"0\n")
    assert len(pair.sent_by_server) >= MAX_PUMPS / 2
    pair.disconnect()


# -- MemoryServer ----------------------------------------------------------


def test_memory_server_many_clients_share_one_factory() -> None:
    heard_a: list[Any] = []
    heard_b: list[Any] = []
    server = MemoryServer(make_service())
    a = server.connect(client_service(heard_a))
    b = server.connect(client_service(heard_b))
    assert a.server_factory is b.server_factory is server.factory
    assert server.factory.connections == {a.server, b.server}
    assert server.pairs == [a, b]

    # A server-side broadcast to every connection reaches both.
    for proto in server.factory.connections:
        proto.notify("heard", "all")
    server.flush()
    assert heard_a == heard_b == ["all"]
    assert isinstance(a, ConnectedPair)
    assert "ConnectedPair" in repr(a)


def test_memory_server_refuses_over_the_cap() -> None:
    server = MemoryServer(make_service(), max_connections=1)
    server.connect()
    with pytest.raises(AssertionError, match="-32001"):
        server.connect()
    assert len(server.pairs) == 1


def test_memory_server_drain() -> None:
    """drain() in memory: running requests get the grace period, then -32800."""
    server = MemoryServer(make_service())
    pair = server.connect()
    d = pair.client.call("forever")
    server.flush()
    drained = server.drain(grace=3)
    assert not drained.called
    server.advance(3)
    pair.failure_of(d, RPCError)
    assert pair.sent_by_server[-1]["error"]["code"] == -32800
    assert result_of(drained) is None
    assert not pair.connected


# -- the pytest plugin -----------------------------------------------------


def test_plugin_is_registered(request: pytest.FixtureRequest) -> None:
    """The pytest11 entry point loaded the plugin (the package is installed)."""
    assert request.config.pluginmanager.hasplugin("jsonservice")


def test_plugin_import_is_light() -> None:
    """Importing the plugin imports neither the reactor nor Twisted's networking."""
    code = (
        "import sys, jsonservice.pytest_plugin\n"
        "heavy = [m for m in ('twisted.internet.reactor', 'twisted.internet.defer', 'jsonservice.testing')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_pair_fixture(jsonservice_pair: Any) -> None:
    pair = jsonservice_pair(make_service(), request_timeout=1)
    assert isinstance(pair, ConnectedPair)
    assert pair.result_of(pair.client.call("subtract", 3, 1)) == 2


@pytest_twisted.ensureDeferred
async def test_server_fixture_over_loopback(jsonservice_server: Any) -> None:
    """A real server on 127.0.0.1, two clients; teardown closes everything."""
    from twisted.internet import reactor

    server = jsonservice_server(make_service(), request_timeout=2)
    assert isinstance(server, LoopbackServer)
    assert server.port > 0
    assert server.endpoint == f"tcp:127.0.0.1:{server.port}"
    assert server.factory.limits.request_timeout == 2
    heard: list[Any] = []
    alice = await server.connect(client_service(heard))
    bob = await server.connect()
    assert await alice.call("ask_back", "why").addTimeout(STEP, reactor) == "why? 42"
    assert await bob.call("subtract", 5, 3).addTimeout(STEP, reactor) == 2
    await alice.call("shout", "hi").addTimeout(STEP, reactor)
    assert heard == ["HI"]
    assert len(server.factory.connections) == 2


@pytest_twisted.ensureDeferred
async def test_server_fixture_default_service(jsonservice_server: Any) -> None:
    """Without a service, the jsonservice_service fixture (the demo) is served."""
    from twisted.internet import reactor

    client = await jsonservice_server().connect()
    assert await client.call("ping").addTimeout(STEP, reactor) == "pong"
    assert await client.send({"hello": 1}).addTimeout(STEP, reactor) == {"message": "Hello from server"}


@pytest_twisted.ensureDeferred
async def test_loopback_close_leaves_the_reactor_clean() -> None:
    """LoopbackServer.close: every connection and the port gone, no timer left behind."""
    from twisted.internet import reactor

    from jsonservice.testing import listen_loopback

    before = set(reactor.getDelayedCalls())
    server = listen_loopback(make_service())
    client = await server.connect()
    running = client.call("forever")
    # Closing fails it: the connection goes, or the drain cancels it first.
    running.addErrback(lambda f: f.trap(ConnectionClosed, RPCError))
    await client.call("subtract", 1, 1).addTimeout(STEP, reactor)
    closing, again = server.close(), server.close()
    await closing
    await again
    await server.close()  # closing a closed server is fine
    assert server.factory.connections == set()
    assert client.transport is None or client.transport.disconnected  # type: ignore[attr-defined]
    await running
    left = [call for call in reactor.getDelayedCalls() if call not in before and call.active()]
    assert left == []


class TestClientFixture:
    """C{jsonservice_client}, with the served service overridden for this class."""

    @pytest.fixture
    def jsonservice_service(self) -> JSONService:
        return make_service()

    @pytest_twisted.ensureDeferred
    async def test_client_fixture(self, jsonservice_client: JSONProtocol) -> None:
        from twisted.internet import reactor

        assert isinstance(jsonservice_client, JSONProtocol)
        assert await jsonservice_client.call("subtract", 10, 4).addTimeout(STEP, reactor) == 6

    def test_client_fixture_in_a_plain_test(self, jsonservice_client: JSONProtocol) -> None:
        """The fixture is usable from a synchronous test too (it is connected already)."""
        assert jsonservice_client.transport is not None
        assert jsonservice_client.peer.host == "127.0.0.1"  # type: ignore[attr-defined]


def test_plugin_in_another_project(tmp_path: Path) -> None:
    """
    A project that merely installed jsonservice gets the fixtures; without
    pytest-twisted the loopback fixtures fail with a clear message instead
    of hanging.
    """
    (tmp_path / "test_theirs.py").write_text(
        textwrap.dedent(
            """
            def test_in_memory(jsonservice_pair):
                from jsonservice.demo import make_demo_service
                pair = jsonservice_pair(make_demo_service())
                assert pair.result_of(pair.client.call("ping")) == "pong"

            def test_loopback(jsonservice_server):
                jsonservice_server()
            """
        ),
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:twisted",
            "-p",
            "no:cacheprovider",
            "-q",
            "test_theirs.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert "1 passed, 1 error" in run.stdout, run.stdout + run.stderr
    assert "needs pytest-twisted" in run.stdout


def test_pair_from_a_factory() -> None:
    """A ready server factory (say, a subclass with hooks) is used as given, on the pair's clock."""
    from jsonservice import JSONServerFactory

    factory = JSONServerFactory(make_service(), request_timeout=3)
    pair = connected_pair(factory, client_limits={"call_timeout": 9})
    assert pair.server_factory is factory
    assert factory.clock is pair.clock
    assert pair.client.limits.call_timeout == 9
    d = pair.client.call("forever")
    pair.advance(3)
    pair.failure_of(d, RequestTimeout)
    with pytest.raises(TypeError, match="on the factory"):
        connected_pair(JSONServerFactory(make_service()), request_timeout=1)
    with pytest.raises(TypeError, match="JSONServerFactory itself"):
        MemoryServer(JSONServerFactory(make_service()), max_batch=2)


def test_memory_server_keeps_a_factory_clock() -> None:
    from jsonservice import JSONServerFactory

    clock = Clock()
    server = MemoryServer(JSONServerFactory(make_service(), clock=clock))
    assert server.clock is clock
